"""hundredx: a client for the hundredx trading API (docs/API.md)."""

from .client import AsyncClient, Client
from .models import ApiError, ApiKey, Balance, Order, Position, Session
from .signing import Signer, message
from .stream import Message, PushStream, Resync

__all__ = [
    "AsyncClient", "Client", "ApiError", "ApiKey", "Balance", "Order", "Position", "Session",
    "Signer", "message", "Message", "PushStream", "Resync",
]
__version__ = "0.1.0"
