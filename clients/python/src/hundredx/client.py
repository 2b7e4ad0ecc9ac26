"""HTTP clients, sync (:class:`Client`) and async (:class:`AsyncClient`), with the same methods.

Authentication is a session token (:meth:`Client.signin`) or an API key (``signer=``): a signed
request carries ``X-API-Key``, ``X-Timestamp``, ``X-Window`` and ``X-Signature`` over the exact
bytes sent (docs/API.md, "Signed requests")."""

from __future__ import annotations

import json
from typing import Any, Optional
from urllib.parse import urlencode, urlsplit

import httpx

from .models import ApiError, ApiKey, Balance, Order, Position, Session, error_of
from .signing import Signer


def _request(method: str, path: str, params: Optional[dict], body: Any) -> tuple[str, str, bytes]:
    query = urlencode({k: v for k, v in (params or {}).items() if v is not None})
    data = b"" if body is None else json.dumps(body, separators=(",", ":")).encode()
    return (f"{path}?{query}" if query else path), query, data


class _Base:
    def __init__(self, base_url: str, token: Optional[str], signer: Optional[Signer]):
        self.base_url = base_url.rstrip("/")
        self.token, self.signer = token, signer

    def _headers(self, method: str, path: str, query: str, data: bytes, idempotency_key: Optional[str]) -> dict:
        h = {"content-type": "application/json"} if data else {}
        if idempotency_key:
            h["Idempotency-Key"] = idempotency_key
        if self.signer is not None:
            h.update(self.signer.headers(method, urlsplit(path).path, query, data))
        elif self.token:
            h["Authorization"] = f"Bearer {self.token}"
        return h

    @staticmethod
    def _answer(r: httpx.Response) -> Any:
        body = r.json() if r.content and r.headers.get("content-type", "").startswith("application/json") else r.text
        if r.status_code >= 400:
            raise error_of(r.status_code, body, r.headers.get("retry-after"))
        return body


class Client(_Base):
    """A blocking client."""

    def __init__(self, base_url: str, token: Optional[str] = None, signer: Optional[Signer] = None, timeout: float = 10):
        super().__init__(base_url, token, signer)
        self.http = httpx.Client(base_url=self.base_url, timeout=timeout)

    def close(self) -> None:
        self.http.close()

    def request(self, method: str, path: str, params: Optional[dict] = None, body: Any = None,
                idempotency_key: Optional[str] = None) -> Any:
        target, query, data = _request(method, path, params, body)
        headers = self._headers(method, path, query, data, idempotency_key)
        return self._answer(self.http.request(method, target, content=data or None, headers=headers))

    # ----- account -----
    def signup(self, email: str, password: str) -> None:
        self.request("POST", "/api/v1/user/signup", body={"email": email, "password": password})

    def signin(self, email: str, password: str, totp: Optional[str] = None) -> Session:
        body = {"email": email, "password": password, **({"totp": totp} if totp else {})}
        s = Session.of(self.request("POST", "/api/v1/user/signin", body=body))
        self.token = s.token
        return s

    def balance(self) -> Balance:
        return Balance.of(self.request("GET", "/api/v1/user/balance"))

    def create_api_key(self, label: str, public_key: str, scopes: list[str], totp: Optional[str] = None) -> ApiKey:
        body = {"label": label, "public_key": public_key, "scopes": scopes, **({"totp": totp} if totp else {})}
        return ApiKey.of(self.request("POST", "/api/v1/user/api-keys", body=body))

    # ----- trading -----
    def markets(self) -> list[dict]:
        return self.request("GET", "/api/v1/markets")["markets"]

    def open_position(self, market: str, side: str, leverage: int, margin: Optional[str] = None,
                      quantity: Optional[str] = None, client_order_id: Optional[str] = None, **extra: Any) -> Position:
        body = {"market": market, "side": side, "leverage": leverage, **extra}
        body.update({k: v for k, v in (("margin", margin), ("quantity", quantity), ("client_order_id", client_order_id)) if v})
        return Position.of(self.request("POST", "/api/v1/positions", body=body))

    def close_position(self, position_id: str, quantity: Optional[str] = None, idempotency_key: Optional[str] = None) -> Position:
        body = {"quantity": quantity} if quantity else None
        return Position.of(self.request("POST", f"/api/v1/positions/{position_id}/close", body=body, idempotency_key=idempotency_key))

    def positions(self, status: str = "open") -> list[Position]:
        return [Position.of(p) for p in self.request("GET", "/api/v1/positions", params={"status": status})["positions"]]

    def place_order(self, **order: Any) -> Order:
        return Order.of(self.request("POST", "/api/v1/orders", body=order))

    def orders(self) -> list[Order]:
        return [Order.of(o) for o in self.request("GET", "/api/v1/orders")["orders"]]

    def cancel_all(self, market: Optional[str] = None) -> list[Order]:
        answer = self.request("DELETE", "/api/v1/orders", params={"market": market})
        return [Order.of(o) for o in answer["cancelled"]]

    def close_all(self, market: Optional[str] = None) -> dict:
        return self.request("POST", "/api/v1/positions/close-all", body={"market": market} if market else {})

    def cancel_after(self, after_ms: Optional[int]) -> Optional[int]:
        return self.request("POST", "/api/v1/orders/cancel-after", body={"after_ms": after_ms})["cancel_at"]


class AsyncClient(_Base):
    """The same methods, awaitable."""

    def __init__(self, base_url: str, token: Optional[str] = None, signer: Optional[Signer] = None, timeout: float = 10):
        super().__init__(base_url, token, signer)
        self.http = httpx.AsyncClient(base_url=self.base_url, timeout=timeout)

    async def aclose(self) -> None:
        await self.http.aclose()

    async def request(self, method: str, path: str, params: Optional[dict] = None, body: Any = None,
                      idempotency_key: Optional[str] = None) -> Any:
        target, query, data = _request(method, path, params, body)
        headers = self._headers(method, path, query, data, idempotency_key)
        return self._answer(await self.http.request(method, target, content=data or None, headers=headers))

    async def balance(self) -> Balance:
        return Balance.of(await self.request("GET", "/api/v1/user/balance"))

    async def positions(self, status: str = "open") -> list[Position]:
        answer = await self.request("GET", "/api/v1/positions", params={"status": status})
        return [Position.of(p) for p in answer["positions"]]

    async def open_position(self, market: str, side: str, leverage: int, margin: Optional[str] = None,
                            quantity: Optional[str] = None, client_order_id: Optional[str] = None, **extra: Any) -> Position:
        body = {"market": market, "side": side, "leverage": leverage, **extra}
        body.update({k: v for k, v in (("margin", margin), ("quantity", quantity), ("client_order_id", client_order_id)) if v})
        return Position.of(await self.request("POST", "/api/v1/positions", body=body))

    async def close_position(self, position_id: str, idempotency_key: Optional[str] = None) -> Position:
        return Position.of(await self.request("POST", f"/api/v1/positions/{position_id}/close", idempotency_key=idempotency_key))

    async def orders(self) -> list[Order]:
        return [Order.of(o) for o in (await self.request("GET", "/api/v1/orders"))["orders"]]


__all__ = ["Client", "AsyncClient", "ApiError"]
