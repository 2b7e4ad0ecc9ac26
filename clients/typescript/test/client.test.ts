// Against a real `hundredx serve`: sign up, create a key, trade signed, receive the fills by
// push, survive a server restart (the stream reconnects, resubscribes and asks for a resync;
// the key still signs); the signing rule byte for byte; a gap in seq asks for a resync.
import assert from "node:assert/strict";
import { test } from "node:test";
import { WebSocketServer } from "ws";
import { ApiError, Client, message, PushStream, Signer, type StreamEvent } from "../src/index.js";
import { Server } from "./server.js";

test("the worked example of docs/API.md", () => {
  const s = Signer.fromSeed(Uint8Array.from({ length: 32 }, (_, i) => i + 1));
  assert.equal(s.publicKey, "ebVWLo/mVPlAeLES6KmLp5AfhTrmlb7X4OORC60ElmQ=");
  const body = Buffer.from('{"market":"BTC_USDC","side":"long","leverage":10,"margin":"100"}');
  assert.equal(s.headers("POST", "/api/v1/positions", "", body, 1765000000000)["X-Signature"],
    "5gBLjv4EWSiu/T+e+/vwl66YqrHPPHrlOSNVGwAGVMK8PtH/2bzK1j7JnlEUIP251AcD5mOPg0BPzWULaeE1DA==");
  assert.equal(message("GET", "/api/v1/positions", "status=closed&limit=2", 1765000000000, 5000, new Uint8Array()).toString(),
    "GET\n/api/v1/positions\nlimit=2&status=closed\n1765000000000\n5000\n");
  assert.equal(s.headers("GET", "/api/v1/positions", "status=closed&limit=2", new Uint8Array(), 1765000000000)["X-Signature"],
    "o88ZOob/pPm+TO3Po76DlR6fN1Lj/irmnxBegK5n3thW3uxESjaY774QjJg5bnTnL4cXX+QFSka//B6NibYPAg==");
});

async function waitForPrice(c: Client): Promise<void> {
  const deadline = Date.now() + 30_000;
  while (!(await c.markets()).some((m) => m.symbol === "BTC_USDC" && m.bid)) {
    assert.ok(Date.now() < deadline, "no BTC_USDC price");
    await new Promise((r) => setTimeout(r, 100));
  }
}

/** Events of `it` until one matches, within `ms`; returns those seen. */
async function until(it: AsyncIterator<StreamEvent>, match: (e: StreamEvent) => boolean, ms: number, what: string): Promise<StreamEvent[]> {
  const seen: StreamEvent[] = [];
  const deadline = Date.now() + ms;
  for (;;) {
    const left = deadline - Date.now();
    assert.ok(left > 0, `no ${what}; saw ${JSON.stringify(seen).slice(0, 2000)}`);
    const next = await Promise.race([it.next(), new Promise<null>((r) => setTimeout(() => r(null), left))]);
    assert.ok(next && !next.done, `no ${what}; saw ${JSON.stringify(seen).slice(0, 2000)}`);
    seen.push(next.value);
    if (match(next.value)) return seen;
  }
}

const opened = (id: string) => (e: StreamEvent) => e.kind === "message" && e.channel === "positions" && e.data.event === "opened" && e.data.position_id === id;

async function openWhenPriced(c: Client, p: Parameters<Client["openPosition"]>[0]) {
  const deadline = Date.now() + 30_000;
  for (;;) {
    try {
      return await c.openPosition(p);
    } catch (e) {
      if (!(e instanceof ApiError) || !["no_price", "stale_price"].includes(e.code) || Date.now() > deadline) throw e;
      await new Promise((r) => setTimeout(r, 200));
    }
  }
}

test("a bot trades signed and follows its fills through a restart", { timeout: 120_000 }, async () => {
  const server = new Server();
  await server.start();
  try {
    const c = new Client(server.url);
    await c.signup("ts-bot@example.com", "correct horse battery");
    await c.signin("ts-bot@example.com", "correct horse battery");
    await waitForPrice(c);
    const signer = Signer.generate();
    const key = await c.createApiKey("bot", signer.publicKey, ["read", "trade"]);
    assert.deepEqual(key.scopes, ["read", "trade"]);
    const bot = new Client(server.url, { signer });
    assert.equal((await bot.balance()).available, "5000.000000");
    await assert.rejects(bot.request("POST", "/api/v1/user/withdraw", { body: { amount: "1" } }),
      (e: ApiError) => e.status === 403 && e.code === "missing_scope");

    const stream = new PushStream(server.url, ["positions", "balance"], { signer });
    const it = stream[Symbol.asyncIterator]();
    await until(it, (e) => e.kind === "message" && e.channel === "balance", 20_000, "first balance");
    const p1 = await bot.openPosition({ market: "BTC_USDC", side: "long", leverage: 5, margin: "100", client_order_id: "ts-1" });
    await until(it, opened(p1.id), 20_000, `push of ${p1.id}`);

    await server.restart();
    const p2 = await openWhenPriced(bot, { market: "BTC_USDC", side: "short", leverage: 3, margin: "50", client_order_id: "ts-2" });
    // Its push may have gone out before the stream was back: the stream says to resync.
    const seen = await until(it, (e) => e.kind === "resync", 30_000, "resync");
    const resync = seen[seen.length - 1];
    assert.ok(resync.kind === "resync" && resync.reason === "reconnected" && resync.channels.includes("positions"));
    assert.ok(stream.reconnects >= 1);
    const ids = new Set((await bot.positions()).map((p) => p.id));
    assert.ok(ids.has(p1.id) && ids.has(p2.id), "the restart kept both: the journal replayed");
    const p3 = await openWhenPriced(bot, { market: "BTC_USDC", side: "long", leverage: 2, margin: "20", client_order_id: "ts-3" });
    await until(it, opened(p3.id), 30_000, `push of ${p3.id}`);
    stream.close();
  } finally {
    await server.stop();
    server.cleanup();
  }
});

test("a gap in seq asks for a resync", async () => {
  const wss = new WebSocketServer({ host: "127.0.0.1", port: 0 });
  wss.on("connection", (ws) => {
    ws.once("message", () => {
      for (const seq of [1, 2, 4]) ws.send(JSON.stringify({ channel: "orders", seq, data: {} }));
    });
  });
  await new Promise((r) => wss.once("listening", r));
  const port = (wss.address() as { port: number }).port;
  const stream = new PushStream(`http://127.0.0.1:${port}`, ["orders"]);
  const it = stream[Symbol.asyncIterator]();
  const got = [];
  for (let i = 0; i < 4; i++) got.push((await it.next()).value as StreamEvent);
  stream.close();
  wss.close();
  assert.deepEqual(got.map((e) => e.kind), ["message", "message", "resync", "message"]);
  assert.ok(got[2].kind === "resync" && got[2].reason.startsWith("gap"));
});
