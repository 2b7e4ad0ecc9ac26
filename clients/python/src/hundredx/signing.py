"""Request signing (docs/API.md, "Signed requests"): Ed25519 over
``METHOD\\nPATH\\nSORTED_QUERY\\nTIMESTAMP\\nWINDOW\\nBODY``."""

from __future__ import annotations

import base64
import time

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

DEFAULT_WINDOW_MS = 5_000


def message(method: str, path: str, query: str, timestamp_ms: int, window_ms: int, body: bytes) -> bytes:
    """The bytes a request signs: the query's ``name=value`` pairs exactly as sent, sorted."""
    pairs = sorted(p for p in query.split("&") if p) if query else []
    head = f"{method.upper()}\n{path}\n{'&'.join(pairs)}\n{timestamp_ms}\n{window_ms}\n"
    return head.encode() + body


class Signer:
    """An API key: the private key stays here; the server knows only the public key."""

    def __init__(self, private_key: Ed25519PrivateKey, window_ms: int = DEFAULT_WINDOW_MS):
        self.private_key = private_key
        self.window_ms = window_ms

    @classmethod
    def generate(cls) -> "Signer":
        return cls(Ed25519PrivateKey.generate())

    @classmethod
    def from_seed(cls, seed: bytes) -> "Signer":
        return cls(Ed25519PrivateKey.from_private_bytes(seed))

    @property
    def public_key(self) -> str:
        """Base64 of the 32-byte public key (what the server registers)."""
        raw = self.private_key.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)
        return base64.b64encode(raw).decode()

    def headers(self, method: str, path: str, query: str, body: bytes, now_ms: int | None = None) -> dict[str, str]:
        ts = int(time.time() * 1000) if now_ms is None else now_ms
        sig = self.private_key.sign(message(method, path, query, ts, self.window_ms, body))
        return {
            "X-API-Key": self.public_key,
            "X-Timestamp": str(ts),
            "X-Window": str(self.window_ms),
            "X-Signature": base64.b64encode(sig).decode(),
        }

    def ws_auth(self, now_ms: int | None = None) -> dict:
        """The push connection's signed ``auth`` frame."""
        ts = int(time.time() * 1000) if now_ms is None else now_ms
        sig = self.private_key.sign(message("AUTH", "/api/v1/ws", "", ts, self.window_ms, b""))
        return {
            "op": "auth",
            "api_key": self.public_key,
            "timestamp": ts,
            "window": self.window_ms,
            "signature": base64.b64encode(sig).decode(),
        }
