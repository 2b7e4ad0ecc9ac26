// A small bot: a grid of limit orders under the market, a dead-man's switch renewed every 10 s
// (if the bot dies, its orders are cancelled within 30 s), fills followed by push, orders
// re-read after any reconnect.
//
//   HX_URL=http://127.0.0.1:8080 HX_KEY_SEED=<64 hex chars> node dist/examples/bot.js
//
// The key: `Signer.generate()`, its `publicKey` registered from a signed-in session
// (POST /api/v1/user/api-keys, scopes read and trade); keep the seed secret.
import { Client, PushStream, Signer } from "../src/index.js";

const url = process.env.HX_URL ?? "http://127.0.0.1:8080";
const signer = Signer.fromSeed(Buffer.from(process.env.HX_KEY_SEED ?? "", "hex"));
const client = new Client(url, { signer });

const [market] = await client.markets();
const mid = (Number(market.bid) + Number(market.ask)) / 2;
const grid = [1, 2, 3].map((step) => ({
  market: market.symbol, side: "long", type: "limit", price: (mid * (1 - step / 200)).toFixed(2),
  leverage: 5, margin: "20", client_order_id: `grid-${step}`,
}));
console.log("placed:", (await client.batch(grid)).map((r) => r.order?.id ?? r.error?.code));
setInterval(() => void client.cancelAfter(30_000), 10_000);
await client.cancelAfter(30_000);

for await (const e of new PushStream(url, ["orders", "positions"], { signer })) {
  if (e.kind === "resync") console.log("resync:", e.reason, "orders now:", (await client.orders()).map((o) => o.id));
  else if (["filled", "opened", "closed"].includes(e.data.event)) console.log(e.channel, e.data);
}
