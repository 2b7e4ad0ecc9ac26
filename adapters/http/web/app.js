// hundredx trading terminal: plain JavaScript, no build step. Everything it shows comes from the
// engine: prices, candles and the caller's positions and balance are pushed over /api/v1/ws;
// lists are read over REST after a (re)connect, so a gap in the push never leaves them stale.
"use strict";

const $ = (id) => document.getElementById(id);
const INTERVALS = ["1m", "5m", "15m", "1h", "4h", "1d"];
const st = {
  token: localStorage.getItem("hx-token"),
  admin: localStorage.getItem("hx-admin") === "1",
  deposits: localStorage.getItem("hx-deposits") !== "0",
  markets: [], prices: {}, market: null, interval: "1m",
  side: "long", tab: "open", trail: "", open: new Map(), ws: null, retry: 500, chart: null, series: null,
};

// ----- REST -----

async function api(method, path, body) {
  const headers = { "content-type": "application/json" };
  if (st.token) headers.authorization = `Bearer ${st.token}`;
  const r = await fetch(path, { method, headers, body: body === undefined ? undefined : JSON.stringify(body) });
  const data = await r.json().catch(() => ({}));
  if (!r.ok) {
    // A 401 about the session ends it here; a wrong one-time code does not.
    const code = data.error ? data.error.code : "";
    if (r.status === 401 && st.token && code !== "invalid_totp" && code !== "totp_required") signOut();
    throw new Error(data.error ? data.error.message : `HTTP ${r.status}`);
  }
  return data;
}

// Margin calls and liquidations stay until clicked: a trader must not miss them.
const STICKY = new Set(["margin-call", "liquidation"]);

function toast(text, kind = "info") {
  const t = document.createElement("div");
  t.className = `toast ${kind}`;
  t.textContent = text;
  $("toasts").append(t);
  if (STICKY.has(kind)) { t.title = "click to dismiss"; t.onclick = () => t.remove(); } else setTimeout(() => t.remove(), 6000);
}

const fail = (e) => toast(e.message, "error");
const num = (s) => (s === null || s === undefined || s === "" ? NaN : Number(s));
const fmt = (v, d = 2) => (Number.isFinite(v) ? v.toFixed(d) : "–");

// ----- auth -----

async function signIn(ev) {
  ev?.preventDefault();
  const email = $("email").value.trim().toLowerCase();
  const body = { email, password: $("password").value };
  if ($("otp").value.trim()) body.totp = $("otp").value.trim();
  // A device token from an earlier sign-in of this login: it gets the owner past a guessing
  // flood. Kept per login, and across sign-outs (it grants nothing without the password).
  let devices = {};
  try { devices = JSON.parse(localStorage.getItem("hx-devices") || "{}") || {}; } catch { devices = {}; }
  if (typeof devices[email] === "string") body.device = devices[email];
  try {
    const r = await api("POST", "/api/v1/user/signin", body);
    if (typeof r.device === "string") {
      devices[email] = r.device;
      localStorage.setItem("hx-devices", JSON.stringify(devices));
    }
    st.token = r.token;
    st.admin = r.admin === true;
    st.deposits = r.demo_deposits !== false;
    localStorage.setItem("hx-deposits", st.deposits ? "1" : "0");
    localStorage.setItem("hx-token", r.token);
    localStorage.setItem("hx-admin", st.admin ? "1" : "0");
    onSignedIn();
  } catch (e) { fail(e); }
}

async function signUp() {
  try {
    await api("POST", "/api/v1/user/signup", { email: $("email").value, password: $("password").value });
    await signIn();
  } catch (e) { fail(e); }
}

// Signs this session out on the server too (its token stops working everywhere), then locally.
function signOutHere() {
  if (st.token) api("POST", "/api/v1/user/signout", {}).catch(() => {});
  signOut();
}

function signOut() {
  st.token = null;
  st.admin = false;
  localStorage.removeItem("hx-token");
  localStorage.removeItem("hx-admin");
  $("operator").hidden = true;
  $("auth").hidden = false; $("order").hidden = true; $("balance").hidden = true;
  $("positions").replaceChildren();
  if (st.ws) st.ws.close();
}

function onSignedIn() {
  $("auth").hidden = true; $("order").hidden = false; $("balance").hidden = false;
  if (st.ws) st.ws.close(); // reconnect with the token: private channels
  $("operator").hidden = !st.admin;
  $("deposit-open").hidden = !st.deposits; // demo deposits off: no button that can only fail
  refreshAll();
}

// ----- markets, chart -----

async function loadMarkets() {
  const r = await api("GET", "/api/v1/markets");
  st.markets = r.markets;
  const rows = r.markets.map((m) => {
    const tr = document.createElement("tr");
    tr.id = `m-${m.symbol}`;
    tr.tabIndex = 0;
    const mode = m.mode === "open" ? "" : `<span class="mode">${m.mode.replace("_", " ")}</span>`;
    // A market priced from several venues: its guard, and how many venues make its index.
    const guard = !m.price_guard || m.price_guard === "open" ? ""
      : `<span class="mode" title="too few venues agree: new positions wait">price ${m.price_guard.replace("_", " ")}</span>`;
    const src = m.sources
      ? `<span class="sources" title="venues agreeing / configured">${m.sources.agreeing}/${m.sources.configured}</span>` : "";
    tr.innerHTML = `<td>${m.symbol}${mode}${guard}${src}</td><td class="bid">${m.bid ?? "–"}</td><td class="ask">${m.ask ?? "–"}</td>`;
    tr.onclick = () => selectMarket(m.symbol);
    tr.onkeydown = (e) => { if (e.key === "Enter") selectMarket(m.symbol); };
    if (m.bid) st.prices[m.symbol] = { bid: m.bid, ask: m.ask };
    return tr;
  });
  $("markets").replaceChildren(...rows);
  if (!st.market && r.markets.length) selectMarket(r.markets[0].symbol);
}

function marketCfg() { return st.markets.find((m) => m.symbol === st.market); }

function selectMarket(symbol) {
  const before = candleChannel();
  st.market = symbol;
  document.querySelectorAll("#markets tr").forEach((tr) => tr.classList.toggle("sel", tr.id === `m-${symbol}`));
  $("chart-title").textContent = symbol;
  const m = marketCfg();
  $("leverage").max = m.max_leverage;
  if (Number($("leverage").value) > m.max_leverage) $("leverage").value = m.max_leverage;
  $("lev-out").textContent = $("leverage").value;
  resubscribeCandles(before);
  loadCandles();
  estimate();
}

function candleChannel() { return st.market ? `candles.${st.market}.${st.interval}` : null; }

function resubscribeCandles(before) {
  if (!st.ws || st.ws.readyState !== WebSocket.OPEN) return;
  if (before) send({ op: "unsubscribe", channels: [before] });
  send({ op: "subscribe", channels: [candleChannel()] });
}

function setupChart() {
  st.chart = LightweightCharts.createChart($("chart"), {
    autoSize: true,
    layout: { background: { color: "#0e1116" }, textColor: "#8b949e" },
    grid: { vertLines: { color: "#1f2630" }, horzLines: { color: "#1f2630" } },
    timeScale: { timeVisible: true, secondsVisible: false },
  });
  st.series = st.chart.addCandlestickSeries({ upColor: "#26a69a", downColor: "#ef5350", wickUpColor: "#26a69a", wickDownColor: "#ef5350", borderVisible: false });
  $("intervals").replaceChildren(...INTERVALS.map((i) => {
    const b = document.createElement("button");
    b.type = "button"; b.textContent = i; b.id = `iv-${i}`;
    b.classList.toggle("active", i === st.interval);
    b.onclick = () => {
      const before = candleChannel();
      st.interval = i;
      document.querySelectorAll("#intervals button").forEach((x) => x.classList.toggle("active", x.id === `iv-${i}`));
      resubscribeCandles(before);
      loadCandles();
    };
    return b;
  }));
}

const bar = (c) => ({ time: Math.floor(c.time / 1000), open: num(c.open), high: num(c.high), low: num(c.low), close: num(c.close) });

async function loadCandles() {
  if (!st.market) return;
  try {
    const r = await api("GET", `/api/v1/candles?market=${st.market}&interval=${st.interval}&limit=300`);
    st.series.setData(r.candles.map(bar));
    // Candles from before the engine's first are the venue's history (its trades), said so.
    const venue = r.candles.filter((c) => c.source === "venue").length;
    $("chart-source").textContent = venue ? `${venue} earlier candles: ${r.venue} history` : "";
  } catch (e) { st.series.setData([]); $("chart-source").textContent = ""; }
}

// ----- order form -----

const orderType = () => $("order-type").value;

function setOrderType() {
  const pending = orderType() !== "market";
  $("price-box").hidden = !pending; $("expiry-box").hidden = !pending; $("slip-box").hidden = pending;
  $("place").textContent = pending ? "Place order" : "Open position";
  estimate();
}

function estimate() {
  const m = marketCfg(); const p = st.prices[st.market];
  if (!m || !p) return;
  const lev = Number($("leverage").value);
  // A pending order is estimated at its trigger price (it fills there or, for a stop, beyond).
  const price = orderType() === "market" ? num(st.side === "long" ? p.ask : p.bid) : num($("order-price").value);
  const size = num($("size").value);
  const byMargin = $("size-kind").value === "margin";
  const margin = byMargin ? size : (size * price) / lev;
  const qty = byMargin ? (size * lev) / price : size;
  // The leverage bracket of this size (by notional), if the market has brackets.
  const notional = qty * price;
  const bracket = (m.brackets || []).find((b) => b.notional_cap === null || notional <= num(b.notional_cap));
  const mmr = num(bracket ? bracket.maintenance_margin_rate : m.maintenance_margin_rate);
  const amount = bracket ? num(bracket.maintenance_amount) : 0;
  $("e-bracket").textContent = !bracket ? "–"
    : lev > bracket.max_leverage ? `above this size's ${bracket.max_leverage}x` : `up to ${bracket.max_leverage}x`;
  // Estimate only: the engine computes the exact liquidation price on open.
  const move = (margin + amount - mmr * qty * price) / qty;
  const liq = st.side === "long" ? price - move : price + move;
  $("e-price").textContent = fmt(price, m.price_decimals);
  $("e-notional").textContent = fmt(qty * price);
  $("e-margin").textContent = fmt(margin);
  $("e-liq").textContent = liq > 0 ? fmt(liq, m.price_decimals) : "none";
  // What the account's group charges on this open (and again on the close), before it is placed.
  const t = st.terms && st.terms.markets.find((x) => x.symbol === st.market);
  const spread = t ? num(t.markup) * qty + (t.markup_bps / 10000) * qty * price : 0;
  const commission = t ? num(t.commission_rate) * qty * price + num(t.commission_per_lot) * qty : 0;
  $("e-charges").textContent = t ? `${fmt(spread + commission)} (${st.terms.group})` : "–";
  // The fill price moved out by the markup (ticks, then bps of the price): a buyer's is higher.
  const away = t ? num(t.markup) + (t.markup_bps / 10000) * price : 0;
  $("e-quote").textContent = fmt(st.side === "long" ? price + away : price - away, m.price_decimals);
  if (t && Number($("leverage").max) > t.max_leverage) $("leverage").max = t.max_leverage;
}

async function placeOrder(ev) {
  ev.preventDefault();
  const body = { market: st.market, side: st.side, leverage: Number($("leverage").value) };
  body[$("size-kind").value] = $("size").value;
  if ($("tp").value) body.take_profit = $("tp").value;
  if ($("sl").value) body.stop_loss = $("sl").value;
  if (orderType() !== "market") return placePending(body);
  if ($("slip").value) {
    body.max_slippage_bps = Number($("slip").value);
    const p = st.prices[st.market];
    body.expected_price = st.side === "long" ? p.ask : p.bid;
  }
  try {
    const v = await api("POST", "/api/v1/positions", body);
    toast(`Opened ${v.side} ${v.quantity} ${v.market} at ${v.entry_price}`);
    refreshAll();
  } catch (e) { fail(e); }
}

async function placePending(body) {
  body.type = orderType();
  body.price = $("order-price").value;
  if ($("expiry").value) body.expires_at = Date.now() + Number($("expiry").value);
  try {
    const o = await api("POST", "/api/v1/orders", body);
    toast(`Placed ${o.type} ${o.side} ${o.market} at ${o.price} (${o.reserved} held)`);
    refreshAll();
  } catch (e) { fail(e); }
}

// ----- positions, balance -----

function setBalance(b) {
  $("b-available").textContent = b.available; $("b-locked").textContent = b.locked_margin; $("b-orders").textContent = b.order_margin;
  $("b-equity").textContent = b.equity; $("b-upnl").textContent = b.unrealized_pnl;
  $("b-mode").value = b.margin_mode;
  const l = b.margin_level;
  $("b-level-box").hidden = !l;
  if (l) {
    const call = l.margin_call_level ? `call ${l.margin_call_level}, ` : "";
    $("b-level").textContent = `${l.level ?? "–"} (${call}stop-out ${l.stop_out_level})`;
    $("b-level").title = `equity ${l.equity} / maintenance margin ${l.maintenance_margin}`;
  }
}

async function setMarginMode() {
  const mode = $("b-mode").value;
  try {
    setBalance(await api("POST", "/api/v1/user/margin-mode", { mode }));
    toast(`Margin mode: ${mode}`);
  } catch (e) {
    $("b-mode").value = mode === "cross" ? "isolated" : "cross";
    fail(e);
  }
}

async function setPositionMode() {
  const mode = $("b-pmode").value;
  try {
    $("b-pmode").value = (await api("POST", "/api/v1/user/position-mode", { mode })).mode;
    toast(`Position mode: ${mode}`);
  } catch (e) {
    $("b-pmode").value = mode === "netting" ? "hedging" : "netting";
    fail(e);
  }
}

// ----- API keys -----

async function renderKeys() {
  const { keys } = await api("GET", "/api/v1/user/api-keys");
  const rows = keys.map((k) => {
    const tr = document.createElement("tr");
    const cells = [k.id, k.label, k.scopes.join(" "), k.networks.join(" ") || "any", k.expires_at ? new Date(k.expires_at).toISOString() : "never"];
    for (const c of cells) { const td = document.createElement("td"); td.textContent = c; tr.append(td); }
    const td = document.createElement("td");
    const b = document.createElement("button");
    b.type = "button"; b.textContent = "Revoke"; b.className = "key-revoke";
    b.onclick = () => api("DELETE", `/api/v1/user/api-keys/${k.id}`).then(() => { toast(`Key ${k.id} revoked`); return renderKeys(); }).catch(fail);
    td.append(b); tr.append(td);
    return tr;
  });
  $("keys-list").replaceChildren(...rows);
}

async function renderSessions() {
  const { sessions } = await api("GET", "/api/v1/user/sessions");
  const rows = sessions.map((x) => {
    const tr = document.createElement("tr");
    const cells = [new Date(x.created_at).toISOString().slice(0, 16).replace("T", " "), x.ip, x.agent || "–", x.current ? "this one" : ""];
    for (const c of cells) { const td = document.createElement("td"); td.textContent = c; tr.append(td); }
    const td = document.createElement("td");
    if (!x.current) {
      const b = document.createElement("button");
      b.type = "button"; b.textContent = "Sign out"; b.className = "session-revoke";
      b.onclick = () => api("DELETE", `/api/v1/user/sessions/${x.id}`).then(() => renderSessions()).catch(fail);
      td.append(b);
    }
    tr.append(td);
    return tr;
  });
  $("sessions-list").replaceChildren(...rows);
}

async function changePassword(ev) {
  if (ev.submitter?.value !== "change") return;
  ev.preventDefault();
  try {
    const r = await api("POST", "/api/v1/user/password", { current_password: $("password-current").value, new_password: $("password-new").value });
    toast(`Password changed; ${r.signed_out} other session(s) signed out`);
    $("password-current").value = ""; $("password-new").value = "";
    await renderSessions();
  } catch (e) { fail(e); }
}

// Two-factor sign-in: its state; turning it on shows the QR code (an SVG drawn by the server)
// and the recovery codes once.
async function renderTwoFactor() {
  const t = await api("GET", "/api/v1/user/2fa");
  $("tfa-state").textContent = t.enabled ? `On (${t.recovery_codes_left} recovery codes left)` : t.pending ? "Waiting for your first code" : "Off";
  $("tfa-on").hidden = t.enabled;
  $("tfa-off").hidden = !t.enabled;
}

async function startTwoFactor() {
  const e = await api("POST", "/api/v1/user/2fa/enrol", {});
  $("tfa-qr").src = `data:image/svg+xml;base64,${btoa(e.qr_svg)}`;
  $("tfa-qr").hidden = false;
  $("tfa-secret").textContent = e.secret;
  $("tfa-codes").textContent = e.recovery_codes.join("  ");
  $("tfa-new").hidden = false;
  await renderTwoFactor();
}

async function twoFactorCode(path, done) {
  try {
    await api("POST", path, { code: $("tfa-code").value.trim() });
    $("tfa-code").value = ""; $("tfa-new").hidden = true; $("tfa-qr").hidden = true;
    toast(done);
    await renderTwoFactor();
  } catch (e) { fail(e); }
}

async function addKey(ev) {
  ev.preventDefault();
  const scopes = ["read", "trade", "withdraw"].filter((s) => $(`key-${s}`).checked);
  const networks = $("key-networks").value.split(",").map((n) => n.trim()).filter(Boolean);
  try {
    const body = { label: $("key-label").value, public_key: $("key-public").value.trim(), scopes, networks };
    if ($("key-otp").value.trim()) body.totp = $("key-otp").value.trim();
    const k = await api("POST", "/api/v1/user/api-keys", body);
    $("key-otp").value = "";
    toast(`Key ${k.id} added: ${k.scopes.join(", ")}`);
    $("key-public").value = "";
    await renderKeys();
  } catch (e) { fail(e); }
}

async function refreshAll() {
  if (!st.token) return;
  try {
    setBalance(await api("GET", "/api/v1/user/balance"));
    $("b-pmode").value = (await api("GET", "/api/v1/user/position-mode")).mode;
    st.terms = await api("GET", "/api/v1/user/terms");
    estimate();
    await renderPositions();
    if (st.admin) await renderRisk();
  } catch (e) { fail(e); }
}

// ----- operator -----

async function renderRisk() {
  const r = await api("GET", "/api/v1/admin/risk?top=20");
  $("r-fund").textContent = r.insurance_fund; $("r-house").textContent = r.house_balance; $("r-open").textContent = r.open_positions;
  $("r-exposure").replaceChildren(...r.exposure.map((e) => row(`x-${e.market}-${e.side}`, [e.market, e.side, e.positions, e.open_interest, e.notional])));
  $("r-accounts").replaceChildren(...r.accounts_at_risk.map((a) => row(`ka-${a.user_id}`, [a.user_id, a.margin_level.equity, a.margin_level.maintenance_margin, a.margin_level.level ?? "–"])));
  $("r-risk").replaceChildren(...r.at_risk.map((a) => row(`k-${a.position_id}`, [a.position_id, a.user_id, a.market, a.side, a.mark, a.liquidation_price, `${(a.distance_bps / 100).toFixed(2)}%`])));
}

async function applyMarket(e) {
  e.preventDefault();
  const body = {};
  if ($("m-mode").value) body.mode = $("m-mode").value;
  if ($("m-lev").value) body.max_leverage = Number($("m-lev").value);
  if ($("m-mmr").value) body.maintenance_margin_rate = $("m-mmr").value;
  try {
    const m = await api("PUT", `/api/v1/admin/markets/${st.market}`, body);
    toast(`${m.symbol}: ${m.mode}, max ${m.max_leverage}x, maintenance ${m.maintenance_margin_rate}`);
    await loadMarkets();
    await renderRisk();
  } catch (err) { fail(err); }
}

async function renderPositions() {
  if (st.tab === "orders") return renderOrders();
  const closed = st.tab === "closed";
  const r = await api("GET", `/api/v1/positions?status=${closed ? "closed&limit=100" : "open"}`);
  const head = closed
    ? ["Id", "Market", "Side", "Qty", "Entry", "Exit", "PnL", "Fee", "Reason", ""]
    : ["Id", "Market", "Side", "Qty", "Entry", "Margin", "Lev", "Liq.", "uPnL", "TP", "SL", "Trail", ""];
  setHead(head);
  st.open = new Map();
  const rows = r.positions.map((p) => {
    const cells = closed
      ? [p.id, p.market, p.side, p.quantity, p.entry_price, p.exit_price, p.realized_pnl, p.fee, p.close_reason]
      : [p.id, p.market, p.side, p.quantity, p.entry_price, p.margin, `${p.leverage}x`, p.liquidation_price ?? "none", p.unrealized_pnl, p.take_profit ?? "–", p.stop_loss ?? "–", p.trailing_stop?.stop_price ?? "–"];
    const tr = row(`p-${p.id}`, cells);
    if (closed) {
      const td = document.createElement("td");
      if (p.close_reason !== "manual") td.append(button("Why?", () => explain(p.id)));
      tr.append(td);
    }
    if (!closed) {
      st.open.set(p.id, tr);
      tr.children[8].className = "upnl " + (num(p.unrealized_pnl) >= 0 ? "up" : "down");
      tr.children[9].className = "tp"; tr.children[10].className = "sl"; tr.children[11].className = "trail";
      const td = document.createElement("td");
      td.append(button("Close", () => closePosition(p.id)), button("Part", () => closePart(p)), button("+Margin", () => addMargin(p.id)), button("TP/SL", () => editTriggers(p)));
      tr.append(td);
    }
    return tr;
  });
  $("positions").replaceChildren(...rows);
}

// Why a position was closed or called: what fired and the rule's inputs, from the history store.
async function explain(id) {
  try {
    const r = await api("GET", `/api/v1/positions/${id}/explain`);
    const lines = [];
    for (const e of r.events) {
      lines.push(`${e.trigger.replace("_", " ")} at ${new Date(e.at).toLocaleString()} (journal seq ${e.seq})`);
      lines.push(`${e.market} ${e.side} ${e.quantity} at ${e.entry_price}`);
      lines.push(e.trigger_price ? `reached ${e.trigger_price}: bid ${e.bid}, ask ${e.ask} (marked at ${e.mark})` : `bid ${e.bid}, ask ${e.ask}`);
      lines.push(`margin ${e.margin}, PnL at the mark ${e.unrealized_pnl}, maintenance ${e.maintenance_margin} (rate ${e.maintenance_rate}): level ${e.margin_level ?? "–"}${e.call_level ? `, call level ${e.call_level}` : ""}`);
      if (e.account) lines.push(`account: equity ${e.account.equity}, maintenance ${e.account.maintenance_margin}, level ${e.account.level ?? "–"}`);
      if (e.sources) lines.push(`venues: ${e.sources.quotes.map((q, i) => `#${i} ${q ? `${q[0]}/${q[1]}` : "none"}`).join(", ")}; ${e.sources.fresh} fresh, ${e.sources.agreeing} agreeing`);
      if (e.close) lines.push(`closed at ${e.close.exit_price}: PnL ${e.close.realized_pnl}, fee ${e.close.fee}, paid ${e.close.payout}`);
      lines.push("");
    }
    if (!r.events.length) lines.push("Nothing fired on this position: it was closed by you.");
    lines.push(`An operator can check it against the journal: ${r.verify}`);
    $("why-id").textContent = id;
    $("why-text").textContent = lines.join("\n");
    $("why").showModal();
  } catch (e) { fail(e); }
}

async function renderOrders() {
  const r = await api("GET", "/api/v1/orders");
  setHead(["Id", "Market", "Side", "Type", "Price", "Size", "Lev", "Held", "TP", "SL", "Good till", ""]);
  const rows = r.orders.map((o) => {
    const till = o.expires_at ? new Date(o.expires_at).toLocaleString() : "cancelled";
    const size = o.quantity ?? `${o.margin} USDC`;
    const tr = row(`o-${o.id}`, [o.id, o.market, o.side, o.type, o.price, size, `${o.leverage}x`, o.reserved, o.take_profit ?? "–", o.stop_loss ?? "–", till]);
    const td = document.createElement("td");
    td.append(button("Cancel", () => cancelOrder(o.id)));
    tr.append(td);
    return tr;
  });
  $("positions").replaceChildren(...rows);
}

function setHead(head) { $("pos-head").innerHTML = `<tr>${head.map((h) => `<th>${h}</th>`).join("")}</tr>`; }

function row(id, cells) {
  const tr = document.createElement("tr");
  tr.id = id;
  for (const c of cells) { const td = document.createElement("td"); td.textContent = c; tr.append(td); }
  return tr;
}

async function cancelOrder(id) {
  try {
    const o = await api("DELETE", `/api/v1/orders/${id}`);
    toast(`Cancelled order ${o.id}: ${o.reserved} released`);
    refreshAll();
  } catch (e) { fail(e); }
}

function editTriggers(p) {
  $("tr-id").textContent = p.id;
  $("tr-tp").value = p.take_profit ?? ""; $("tr-sl").value = p.stop_loss ?? "";
  const t = p.trailing_stop;
  st.trail = t ? (t.distance ?? `${t.distance_bps / 100}%`) : "";
  $("tr-trail").value = st.trail;
  $("triggers").showModal();
}

async function saveTriggers(e) {
  if (e.submitter?.value !== "ok") return;
  const body = {};
  if ($("tr-tp").value) body.take_profit = $("tr-tp").value;
  if ($("tr-sl").value) body.stop_loss = $("tr-sl").value;
  const id = $("tr-id").textContent;
  try {
    let p = await api("PUT", `/api/v1/positions/${id}/triggers`, body);
    const trail = $("tr-trail").value.trim();
    if (trail !== st.trail) p = await api("PUT", `/api/v1/positions/${id}/trailing-stop`, trailBody(trail));
    const tr = p.trailing_stop ? `, trailing stop at ${p.trailing_stop.stop_price}` : "";
    toast(`Position ${p.id}: TP ${p.take_profit ?? "none"}, SL ${p.stop_loss ?? "none"}${tr}`);
    refreshAll();
  } catch (err) { fail(err); }
}

// "500" is a price distance; "1.5%" is 150 basis points (whole basis points only).
function trailBody(text) {
  if (!text) return {};
  if (!text.endsWith("%")) return { distance: text };
  const bps = Math.round(Number(text.slice(0, -1)) * 100);
  return { distance_bps: Number.isFinite(bps) ? bps : -1 };
}

function button(text, onclick) { const b = document.createElement("button"); b.type = "button"; b.textContent = text; b.onclick = onclick; return b; }

async function closePosition(id, quantity) {
  try {
    const v = await api("POST", `/api/v1/positions/${id}/close`, quantity ? { quantity } : undefined);
    toast(`Closed ${v.quantity} ${v.market}: PnL ${v.realized_pnl}`);
    refreshAll();
  } catch (e) { fail(e); }
}

function closePart(p) {
  const q = prompt(`Quantity to close (of ${p.quantity})`);
  if (q) closePosition(p.id, q);
}

async function addMargin(id) {
  const amount = prompt("Margin to add (USDC)");
  if (!amount) return;
  try { await api("POST", `/api/v1/positions/${id}/margin`, { amount }); refreshAll(); } catch (e) { fail(e); }
}

// ----- push -----

function send(m) { if (st.ws && st.ws.readyState === WebSocket.OPEN) st.ws.send(JSON.stringify(m)); }

function connect() {
  // The token goes in the first frame, never in the URL (proxies log URLs).
  const ws = new WebSocket(`${location.protocol === "https:" ? "wss" : "ws"}://${location.host}/api/v1/ws`);
  st.ws = ws;
  ws.onopen = () => {
    st.retry = 500;
    $("conn").textContent = "live"; $("conn").className = "conn on";
    const channels = ["prices", candleChannel()].filter(Boolean);
    if (st.token) {
      send({ op: "auth", token: st.token });
      channels.push("positions", "balance", "notices", "orders");
    }
    send({ op: "subscribe", channels });
    refreshAll(); // whatever happened while disconnected
    loadCandles();
  };
  ws.onclose = (e) => {
    if (st.ws !== ws) return;
    if (e.code === 4004 && st.token) { signOut(); toast("session expired: sign in again", "error"); }
    $("conn").textContent = "reconnecting…"; $("conn").className = "conn off";
    setTimeout(connect, st.retry);
    st.retry = Math.min(st.retry * 2, 10000);
  };
  ws.onmessage = (e) => onPush(JSON.parse(e.data));
}

function onPush(m) {
  if (m.op === "error") { toast(m.message, "error"); return; }
  const d = m.data;
  if (m.channel === "prices") {
    st.prices[d.market] = d;
    const tr = $(`m-${d.market}`);
    if (tr) { tr.querySelector(".bid").textContent = d.bid; tr.querySelector(".ask").textContent = d.ask; }
    if (d.market === st.market) estimate();
  } else if (m.channel === candleChannel()) {
    st.series.update(bar(d));
  } else if (m.channel === "balance") {
    setBalance(d);
  } else if (m.channel === "positions") {
    if (d.event === "marks") {
      for (const p of d.positions) {
        const cell = st.open.get(p.position_id)?.querySelector(".upnl");
        if (cell) { cell.textContent = p.unrealized_pnl; cell.className = "upnl " + (num(p.unrealized_pnl) >= 0 ? "up" : "down"); }
      }
      return;
    }
    if (d.event === "increased") toast(`Added ${d.added_quantity} at ${d.price}: position ${d.position_id} is now ${d.quantity} at ${d.entry_price}`, "fill");
    if (d.reason === "netted") toast(`Netted: ${d.quantity} of position ${d.of_position} closed at ${d.exit_price}, PnL ${d.realized_pnl}`);
    if (d.event === "financed") toast(`Financing on position ${d.position_id}: ${num(d.amount) >= 0 ? "charged" : "paid"} ${d.amount.replace("-", "")} (margin now ${d.margin})`);
    if (d.reason === "take_profit" || d.reason === "stop_loss" || d.reason === "trailing_stop") {
      const what = { take_profit: "Take-profit", stop_loss: "Stop-loss", trailing_stop: "Trailing stop" }[d.reason];
      toast(`${what}: position ${d.position_id} closed at ${d.exit_price}, PnL ${d.realized_pnl}`, d.reason);
    }
    renderPositions().catch(fail);
  } else if (m.channel === "orders") {
    onOrder(d);
  } else if (m.channel === "notices") {
    if (d.notice === "margin_call") toast(`Margin call: position ${d.position_id} at ${d.mark} (called below ${d.margin_call_price}, liquidation at ${d.liquidation_price ?? "none"}). Add margin or reduce.`, "margin-call");
    if (d.notice === "liquidation") toast(`Liquidated: position ${d.position.position_id} at ${d.position.exit_price}`, "liquidation");
    if (d.notice === "account_margin_call") toast(`Margin call: your account's level is ${d.level} (equity ${d.equity}, maintenance ${d.maintenance_margin}). Deposit or reduce.`, "margin-call");
    if (d.notice === "stop_out") toast(`Stop-out at level ${d.level ?? "–"}: closing your most losing positions`, "liquidation");
    if (d.notice === "bad_debt") toast(`Loss beyond margin on ${d.position_id}: ${d.amount} covered`, "liquidation");
  }
}

function onOrder(d) {
  if (d.event === "filled") toast(`Order ${d.order_id} filled: position ${d.position_id}`, "fill");
  if (d.event === "rejected") toast(`Order ${d.order_id} could not fill (${d.reason}): cancelled, ${d.released} released`, "error");
  if (d.event === "expired") toast(`Order ${d.order_id} expired: ${d.released} released`);
  renderPositions().catch(fail);
}

// ----- wiring -----

// The statement is fetched with the session's token (a plain link would carry none), then
// saved from a blob.
async function downloadStatement() {
  const from = Date.parse(`${$("statement-from").value}T00:00:00Z`);
  const to = Date.parse(`${$("statement-to").value}T00:00:00Z`) + 86400000;
  if (!Number.isFinite(from) || !Number.isFinite(to) || to <= from) throw new Error("choose a range: from on or before to");
  const format = $("statement-format").value;
  const r = await fetch(`/api/v1/user/statement?from=${from}&to=${to}&format=${format}`, { headers: { authorization: `Bearer ${st.token}` } });
  if (!r.ok) {
    const data = await r.json().catch(() => ({}));
    throw new Error(data.error ? data.error.message : `HTTP ${r.status}`);
  }
  const a = document.createElement("a");
  a.href = URL.createObjectURL(await r.blob());
  a.download = `statement-${$("statement-from").value}-${$("statement-to").value}.${format}`;
  a.click();
  setTimeout(() => URL.revokeObjectURL(a.href), 10000);
}

function init() {
  setupChart();
  $("auth").onsubmit = signIn;
  $("signup").onclick = signUp;
  $("signout").onclick = signOutHere;
  $("sessions-open").onclick = () => { $("sessions").showModal(); renderSessions().catch(fail); };
  $("sessions-others").onclick = () => api("POST", "/api/v1/user/signout", { scope: "others" })
    .then((r) => { toast(`${r.signed_out} other session(s) signed out`); return renderSessions(); }).catch(fail);
  $("password-form").onsubmit = changePassword;
  $("tfa-open").onclick = () => { $("tfa").showModal(); renderTwoFactor().catch(fail); };
  $("tfa-start").onclick = () => startTwoFactor().catch(fail);
  $("tfa-confirm").onclick = () => twoFactorCode("/api/v1/user/2fa/confirm", "Two-factor sign-in is on");
  $("tfa-off").onclick = () => twoFactorCode("/api/v1/user/2fa/disable", "Two-factor sign-in is off");
  $("order").onsubmit = placeOrder;
  $("long").onclick = () => { st.side = "long"; $("long").classList.add("active"); $("short").classList.remove("active"); estimate(); };
  $("short").onclick = () => { st.side = "short"; $("short").classList.add("active"); $("long").classList.remove("active"); estimate(); };
  $("leverage").oninput = () => { $("lev-out").textContent = $("leverage").value; estimate(); };
  for (const id of ["size", "size-kind"]) $(id).oninput = estimate;
  const tabs = [["tab-open", "open"], ["tab-orders", "orders"], ["tab-closed", "closed"]];
  for (const [id, tab] of tabs) {
    $(id).onclick = () => {
      st.tab = tab;
      for (const [other, t] of tabs) { $(other).classList.toggle("active", t === tab); $(other).setAttribute("aria-selected", t === tab); }
      renderPositions().catch(fail);
    };
  }
  $("order-type").onchange = setOrderType;
  $("order-price").oninput = estimate;
  $("triggers-form").onsubmit = saveTriggers;
  $("market-form").onsubmit = applyMarket;
  $("risk-refresh").onclick = () => renderRisk().catch(fail);
  $("b-mode").onchange = setMarginMode;
  $("b-pmode").onchange = setPositionMode;
  $("withdraw-open").onclick = () => $("withdraw").showModal();
  $("keys-open").onclick = () => { $("keys").showModal(); renderKeys().catch(fail); };
  $("key-add").onclick = addKey;
  $("withdraw-form").onsubmit = async (e) => {
    if (e.submitter?.value !== "ok") return;
    try {
      const w = { amount: $("withdraw-amount").value };
      if ($("withdraw-otp").value.trim()) w.totp = $("withdraw-otp").value.trim();
      setBalance(await api("POST", "/api/v1/user/withdraw", w));
      $("withdraw-otp").value = "";
      toast(`Withdrew ${$("withdraw-amount").value} USDC`);
    } catch (err) { fail(err); }
  };
  $("statement-open").onclick = () => {
    const today = new Date().toISOString().slice(0, 10);
    if (!$("statement-to").value) $("statement-to").value = today;
    if (!$("statement-from").value) $("statement-from").value = `${today.slice(0, 4)}-01-01`;
    $("statement").showModal();
  };
  $("statement-form").onsubmit = (e) => {
    if (e.submitter?.value === "ok") downloadStatement().catch(fail);
  };
  $("deposit-open").onclick = () => $("deposit").showModal();
  $("deposit-form").onsubmit = async (e) => {
    if (e.submitter?.value !== "ok") return;
    try { setBalance(await api("POST", "/api/v1/user/deposit", { amount: $("deposit-amount").value })); } catch (err) { fail(err); }
  };
  loadMarkets().catch(fail).finally(connect);
  if (st.token) onSignedIn();
}

init();
