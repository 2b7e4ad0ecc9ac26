"""Against a real ``hundredx serve``: sign up, create a key, trade signed, receive the fills by
push, survive a server restart (the stream reconnects, resubscribes and asks for a resync; the
key still signs), and a gap in ``seq`` is reported."""

from __future__ import annotations

import asyncio
import json
import time

import pytest
import websockets

from hundredx import ApiError, AsyncClient, Client, Message, PushStream, Resync, Signer


def wait_for_price(c: Client) -> None:
    deadline = time.time() + 30
    while not any(m.get("bid") for m in c.markets() if m["symbol"] == "BTC_USDC"):
        assert time.time() < deadline, "no BTC_USDC price"
        time.sleep(0.1)


async def next_opened(events, position_id: str, timeout: float = 20) -> list:
    """Events until the push of `position_id` opening; returns the ones seen before."""
    seen = []

    async def scan():
        async for e in events:
            seen.append(e)
            if isinstance(e, Message) and e.channel == "positions" and e.data.get("event") == "opened" \
                    and e.data.get("position_id") == position_id:
                return

    try:
        await asyncio.wait_for(scan(), timeout)
    except asyncio.TimeoutError:
        raise AssertionError(f"no push of position {position_id} opening; saw {seen}") from None
    return seen


def test_a_bot_trades_signed_and_follows_its_fills_through_a_restart(server):
    c = Client(server.url)
    c.signup("bot@example.com", "correct horse battery")
    c.signin("bot@example.com", "correct horse battery")
    wait_for_price(c)
    signer = Signer.generate()
    key = c.create_api_key("bot", signer.public_key, ["read", "trade"])
    assert key.scopes == ["read", "trade"]
    bot = Client(server.url, signer=signer)
    assert bot.balance().available == "5000.000000"
    with pytest.raises(ApiError) as refused:
        bot.request("POST", "/api/v1/user/withdraw", body={"amount": "1"})
    assert (refused.value.status, refused.value.code) == (403, "missing_scope")

    async def run():
        stream = PushStream(server.url, ["positions", "balance"], signer=signer)
        events = stream.__aiter__()
        # Subscribed before the first trade: wait for the balance the subscription sends.
        first = await asyncio.wait_for(events.__anext__(), 20)
        assert isinstance(first, Message)
        trader = AsyncClient(server.url, signer=signer)
        p = await trader.open_position("BTC_USDC", "long", 5, margin="100", client_order_id="py-1")
        await next_opened(events, p.id)
        # The server restarts: the stream reconnects by itself and says what to re-read.
        await asyncio.get_running_loop().run_in_executor(None, server.restart)
        await asyncio.get_running_loop().run_in_executor(None, wait_for_price, Client(server.url))
        p2 = None
        deadline = time.time() + 30
        while p2 is None:
            try:
                p2 = await trader.open_position("BTC_USDC", "short", 3, margin="50", client_order_id="py-2")
            except ApiError as e:
                assert e.code in ("no_price", "stale_price") and time.time() < deadline, e
                await asyncio.sleep(0.2)
        # Its push may have been sent before the stream was back: the stream says to resync,
        # and the re-read over REST has it.
        async def until_resync():
            async for e in events:
                if isinstance(e, Resync):
                    return e

        resync = await asyncio.wait_for(until_resync(), 30)
        assert resync.reason == "reconnected" and "positions" in resync.channels
        assert stream.reconnects >= 1
        ids = {x.id for x in await trader.positions()}
        assert {p.id, p2.id} <= ids, "the restart kept both: the journal replayed"
        # From here on the fills come by push again.
        p3 = await trader.open_position("BTC_USDC", "long", 2, margin="20", client_order_id="py-3")
        await next_opened(events, p3.id, timeout=30)
        await trader.aclose()
        await stream.close()

    asyncio.run(run())


def test_a_gap_in_seq_asks_for_a_resync():
    async def run():
        async def serve(ws):
            await ws.recv()  # subscribe
            for seq in (1, 2, 4):
                await ws.send(json.dumps({"channel": "orders", "seq": seq, "data": {}}))
            await asyncio.sleep(5)

        async with websockets.serve(serve, "127.0.0.1", 0) as s:
            port = s.sockets[0].getsockname()[1]
            stream = PushStream(f"http://127.0.0.1:{port}", ["orders"])
            got = []
            async for e in stream:
                got.append(e)
                if len(got) == 4:
                    break
            await stream.close()
        assert [type(e).__name__ for e in got] == ["Message", "Message", "Resync", "Message"]
        assert got[2].channels == ("orders",) and "gap" in got[2].reason

    asyncio.run(run())
