"""A small bot: a grid of limit orders under the market, a dead-man's switch renewed every 10 s
(if the bot dies, its orders are cancelled within 30 s), fills followed by push, state re-read
after any reconnect.

    HX_URL=http://127.0.0.1:8080 HX_KEY_SEED=<64 hex chars> python3 examples/bot.py

The key: make one with ``Signer.generate()``, register its ``public_key`` from a signed-in
session (``POST /api/v1/user/api-keys``, scopes read and trade) and keep the seed secret."""

import asyncio
import os
from decimal import Decimal

from hundredx import AsyncClient, Message, PushStream, Resync, Signer


async def main() -> None:
    url = os.environ.get("HX_URL", "http://127.0.0.1:8080")
    signer = Signer.from_seed(bytes.fromhex(os.environ["HX_KEY_SEED"]))
    client = AsyncClient(url, signer=signer)
    market = (await client.request("GET", "/api/v1/markets"))["markets"][0]
    mid = (Decimal(market["bid"]) + Decimal(market["ask"])) / 2
    batch = [
        {"market": market["symbol"], "side": "long", "type": "limit",
         "price": str((mid * (1 - Decimal(step) / 200)).quantize(Decimal("0.01"))),
         "leverage": 5, "margin": "20", "client_order_id": f"grid-{step}"}
        for step in range(1, 4)
    ]
    results = (await client.request("POST", "/api/v1/orders/batch", body={"orders": batch}))["results"]
    print("placed:", [r.get("order", {}).get("id") or r["error"]["code"] for r in results])

    async def heartbeat() -> None:
        while True:
            await client.request("POST", "/api/v1/orders/cancel-after", body={"after_ms": 30_000})
            await asyncio.sleep(10)

    asyncio.create_task(heartbeat())
    async for event in PushStream(url, ["orders", "positions"], signer=signer):
        if isinstance(event, Resync):
            print("resync:", event.reason, "orders now:", [o.id for o in await client.orders()])
        elif isinstance(event, Message) and event.data.get("event") in ("filled", "opened", "closed"):
            print(event.channel, event.data)


if __name__ == "__main__":
    asyncio.run(main())
