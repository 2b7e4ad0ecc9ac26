"""The push stream (docs/API.md, "Live push"): one WebSocket that signs in (token or API key),
subscribes, and on any drop reconnects with backoff, signs in and subscribes again. Messages
carry a ``seq`` counting per channel per connection: a gap, or a reconnect (which may have
missed messages), yields a ``Resync`` so the caller re-reads state over REST."""

from __future__ import annotations

import asyncio
import json
import random
from dataclasses import dataclass
from typing import AsyncIterator, Optional, Union

import websockets

from .signing import Signer


@dataclass(frozen=True)
class Message:
    """One pushed message."""

    channel: str
    seq: int
    data: dict


@dataclass(frozen=True)
class Resync:
    """Messages of these channels may have been missed (a gap, or a reconnect): re-read them."""

    channels: tuple
    reason: str


class PushStream:
    """``async for event in PushStream(url, channels, signer=...)`` — :class:`Message` and
    :class:`Resync` events, for ever (until :meth:`close`)."""

    def __init__(self, base_url: str, channels: list[str], token: Optional[str] = None,
                 signer: Optional[Signer] = None, backoff_max_s: float = 5.0):
        self.url = base_url.replace("http://", "ws://").replace("https://", "wss://").rstrip("/") + "/api/v1/ws"
        self.channels, self.token, self.signer = list(channels), token, signer
        self.backoff_max_s = backoff_max_s
        self.reconnects = 0
        self._closed = False
        self._ws = None

    async def close(self) -> None:
        self._closed = True
        if self._ws is not None:
            await self._ws.close()

    async def _connect(self):
        ws = await websockets.connect(self.url, open_timeout=5, close_timeout=1)
        if self.signer is not None:
            await ws.send(json.dumps(self.signer.ws_auth()))
        elif self.token:
            await ws.send(json.dumps({"op": "auth", "token": self.token}))
        if self.signer is not None or self.token:
            answer = json.loads(await asyncio.wait_for(ws.recv(), 5))
            if answer.get("op") != "authed":
                await ws.close()
                raise PermissionError(f"push sign-in refused: {answer}")
        await ws.send(json.dumps({"op": "subscribe", "channels": self.channels}))
        return ws

    async def __aiter__(self) -> AsyncIterator[Union[Message, Resync]]:
        delay = 0.1
        first = True
        while not self._closed:
            try:
                self._ws = await self._connect()
            except PermissionError:
                raise
            except (OSError, asyncio.TimeoutError, websockets.WebSocketException):
                await asyncio.sleep(delay * (0.5 + random.random()))
                delay = min(delay * 2, self.backoff_max_s)
                continue
            delay = 0.1
            if not first:
                self.reconnects += 1
                yield Resync(tuple(self.channels), "reconnected")
            first = False
            seen: dict[str, int] = {}
            try:
                async for raw in self._ws:
                    m = json.loads(raw)
                    channel = m.get("channel")
                    if channel is None:
                        continue  # an op answer (subscribed, pong)
                    seq = int(m.get("seq", 0))
                    if channel in seen and seq != seen[channel] + 1:
                        yield Resync((channel,), f"gap: {seen[channel]} then {seq}")
                    seen[channel] = seq
                    yield Message(channel, seq, m.get("data") or {})
            except websockets.WebSocketException:
                pass
            self._ws = None
