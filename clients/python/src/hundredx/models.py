"""Typed answers. Decimals stay strings (exact, as the API sends them) with ``Decimal`` views."""

from __future__ import annotations

from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any, Optional


class ApiError(Exception):
    """An error answer: its HTTP status, stable ``code`` (docs/DESIGN.md, "Reason codes") and
    message; ``retry_after`` seconds for a 429 or 503."""

    def __init__(self, status: int, code: str, message: str, retry_after: Optional[int] = None):
        super().__init__(f"{status} {code}: {message}")
        self.status, self.code, self.message, self.retry_after = status, code, message, retry_after


@dataclass(frozen=True)
class Balance:
    available: str
    locked_margin: str
    order_margin: str
    equity: str
    raw: dict = field(repr=False, compare=False, default_factory=dict)

    @property
    def available_decimal(self) -> Decimal:
        return Decimal(self.available)

    @classmethod
    def of(cls, d: dict) -> "Balance":
        return cls(d["available"], d["locked_margin"], d.get("order_margin", "0"), d["equity"], d)


@dataclass(frozen=True)
class Position:
    id: str
    market: str
    side: str
    status: str
    quantity: str
    entry_price: str
    margin: str
    leverage: int
    raw: dict = field(repr=False, compare=False, default_factory=dict)

    @classmethod
    def of(cls, d: dict) -> "Position":
        return cls(d["id"], d["market"], d["side"], d["status"], d["quantity"], d["entry_price"],
                   d["margin"], d["leverage"], d)


@dataclass(frozen=True)
class Order:
    id: str
    market: str
    side: str
    type: str
    price: str
    reserved: str
    raw: dict = field(repr=False, compare=False, default_factory=dict)

    @classmethod
    def of(cls, d: dict) -> "Order":
        return cls(d["id"], d["market"], d["side"], d["type"], d["price"], d["reserved"], d)


@dataclass(frozen=True)
class ApiKey:
    id: str
    label: str
    scopes: list
    raw: dict = field(repr=False, compare=False, default_factory=dict)

    @classmethod
    def of(cls, d: dict) -> "ApiKey":
        return cls(d["id"], d["label"], list(d["scopes"]), d)


@dataclass(frozen=True)
class Session:
    token: str
    user_id: str
    expires_at: int
    session_id: str

    @classmethod
    def of(cls, d: dict) -> "Session":
        return cls(d["token"], d["user_id"], d["expires_at"], d.get("session_id", ""))


def error_of(status: int, body: Any, retry_after: Optional[str]) -> ApiError:
    err = body.get("error", {}) if isinstance(body, dict) else {}
    retry = int(retry_after) if retry_after and retry_after.isdigit() else None
    return ApiError(status, err.get("code", "http_error"), err.get("message", str(body)), retry)
