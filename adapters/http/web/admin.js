// hundredx operator console (/admin): plain JavaScript, no build step. Prices and the house's
// risk view are pushed over /api/v1/ws (the operators' `risk` channel); everything else is
// read over REST, and every action is an engine command journaled with the operator and a
// reason (docs/DESIGN.md, "Account controls"). The engine checks the role on every call.
"use strict";

const $ = (id) => document.getElementById(id);
const st = { token: sessionStorage.getItem("hx-desk-token"), ws: null, retry: 500, account: null, auditNext: null, markets: [], risk: null, hedge: null, hedgeTimer: null };

// ----- REST -----

async function api(method, path, body) {
  const headers = { "content-type": "application/json" };
  if (st.token) headers.authorization = `Bearer ${st.token}`;
  const r = await fetch(path, { method, headers, body: body === undefined ? undefined : JSON.stringify(body) });
  const data = await r.json().catch(() => ({}));
  if (!r.ok) {
    if (r.status === 401 && st.token) signOut();
    const e = new Error(data.error ? data.error.message : `HTTP ${r.status}`);
    e.code = data.error ? data.error.code : "";
    throw e;
  }
  return data;
}

// A file behind the token (a link cannot carry the Authorization header).
async function download(path, name) {
  const r = await fetch(path, { headers: { authorization: `Bearer ${st.token}` } });
  if (!r.ok) { const d = await r.json().catch(() => ({})); throw new Error(d.error ? d.error.message : `HTTP ${r.status}`); }
  const url = URL.createObjectURL(await r.blob());
  const a = document.createElement("a");
  a.href = url; a.download = name; a.click();
  setTimeout(() => URL.revokeObjectURL(url), 1000);
}

function toast(text, kind = "info") {
  const t = document.createElement("div");
  t.className = `toast ${kind}`;
  t.textContent = text;
  $("toasts").append(t);
  setTimeout(() => t.remove(), 8000);
}
const fail = (e) => toast(e.message, "error");
const num = (s) => (s === null || s === undefined || s === "" ? NaN : Number(s));

// A table row of text cells (never HTML: every value is data).
function row(cells, cls) {
  const tr = document.createElement("tr");
  if (cls) tr.className = cls;
  for (const c of cells) {
    const td = document.createElement("td");
    td.textContent = c ?? "–";
    if (typeof c === "string" && /^-?\d+(\.\d+)?$/.test(c)) {
      td.classList.add("num");
      if (num(c) < 0) td.classList.add("down");
    }
    tr.append(td);
  }
  return tr;
}

function facts(dl, pairs) {
  dl.replaceChildren();
  for (const [k, v, cls] of pairs) {
    const dt = document.createElement("dt"); dt.textContent = k;
    const dd = document.createElement("dd"); dd.textContent = v ?? "–";
    if (cls) dd.className = cls;
    dl.append(dt, dd);
  }
}

// ----- sign-in -----

async function signIn(ev) {
  ev.preventDefault();
  const body = { email: $("email").value.trim().toLowerCase(), password: $("password").value };
  if ($("otp").value.trim()) body.totp = $("otp").value.trim();
  try {
    const r = await api("POST", "/api/v1/user/signin", body);
    if (r.admin !== true) {
      // Signed in, but not an operator: this session is of no use here.
      st.token = r.token;
      await api("POST", "/api/v1/user/signout", {}).catch(() => {});
      st.token = null;
      throw new Error("this account does not hold the operator role");
    }
    st.token = r.token;
    sessionStorage.setItem("hx-desk-token", r.token);
    onSignedIn();
  } catch (e) { fail(e); }
}

function signOut() {
  if (st.token) fetch("/api/v1/user/signout", { method: "POST", headers: { authorization: `Bearer ${st.token}`, "content-type": "application/json" }, body: "{}" }).catch(() => {});
  st.token = null;
  sessionStorage.removeItem("hx-desk-token");
  clearInterval(st.hedgeTimer);
  $("desk").hidden = true; $("lines").hidden = true; $("auth").hidden = false;
  if (st.ws) { const ws = st.ws; st.ws = null; ws.close(); }
}

function onSignedIn() {
  $("auth").hidden = true; $("desk").hidden = false; $("lines").hidden = false;
  const today = new Date().toISOString().slice(0, 10);
  if (!$("report-from").value) { $("report-from").value = today; $("report-to").value = today; }
  loadMarkets().catch(fail);
  loadAudit(true).catch(fail);
  loadScenarios().catch(fail);
  loadGroups().catch(fail);
  loadHedge();
  clearInterval(st.hedgeTimer);
  st.hedgeTimer = setInterval(loadHedge, 5000);
  connect();
}

// ----- markets -----

async function loadMarkets() {
  const { markets } = await api("GET", "/api/v1/markets");
  st.markets = markets; // in configuration order: index = the engine's market id
  $("markets").replaceChildren(...markets.map((m) => {
    const tr = row([m.symbol, m.bid, m.ask, null, String(m.max_leverage), sourcesText(m)]);
    tr.id = `m-${m.symbol}`;
    tr.cells[1].classList.add("bid"); tr.cells[2].classList.add("ask");
    const sel = document.createElement("select");
    sel.setAttribute("aria-label", `${m.symbol} mode`);
    for (const mode of ["open", "reduce_only", "halted"]) sel.add(new Option(mode.replace("_", "-"), mode, false, mode === m.mode));
    sel.onchange = () => setMode(m.symbol, sel.value);
    tr.cells[3].replaceChildren(sel);
    if (m.sources) {
      const b = document.createElement("button");
      b.type = "button"; b.textContent = "venues"; b.className = "venues";
      b.onclick = () => showVenues(m.symbol).catch(fail);
      tr.cells[5].append(" ", b);
    }
    return tr;
  }));
}

// A market with several venues: how many quote now, and how many agree (the index is their
// median); the price guard shows in its mode.
function sourcesText(m) {
  if (!m.sources) return "one feed";
  const s = m.sources;
  return `${s.fresh}/${s.configured} fresh, ${s.agreeing} agreeing`;
}

// A market made from several venues: each one's latest quote against the index.
async function showVenues(symbol) {
  const v = await api("GET", `/api/v1/admin/markets/${encodeURIComponent(symbol)}/sources`);
  $("venues-title").textContent = `${v.market}: index ${v.index_bid ?? "–"} / ${v.index_ask ?? "–"} against each venue (a venue more than ${v.max_deviation_bps} bps away does not count)`;
  $("venues").replaceChildren(...v.sources.map((q) => row([
    q.source, q.bid, q.ask, q.age_ms === null ? null : String(q.age_ms), q.fresh ? "yes" : "no", q.deviation_bps === null ? null : String(q.deviation_bps)])));
  $("venues-box").hidden = false;
}

async function setMode(symbol, mode) {
  if (!confirm(`Set ${symbol} ${mode.replace("_", "-")}?`)) { loadMarkets().catch(fail); return; }
  try {
    await api("PUT", `/api/v1/admin/markets/${encodeURIComponent(symbol)}`, { mode });
    toast(`${symbol}: ${mode}`);
    loadAudit(true).catch(fail);
  } catch (e) { fail(e); loadMarkets().catch(fail); }
}

// ----- the house's book (pushed) -----

function onRisk(r) {
  st.risk = r;
  renderBooks();
  $("l-fund").textContent = r.insurance_fund;
  $("l-house").textContent = r.house_balance;
  $("l-spread").textContent = r.spread_revenue;
  $("l-commission").textContent = r.commission_revenue;
  $("l-open").textContent = String(r.open_positions);
  const house = r.exposure.reduce((s, e) => s + num(e.house_unrealized_pnl), 0);
  $("l-upnl").textContent = house.toFixed(6);
  $("l-upnl").className = house >= 0 ? "up" : "down";
  $("book").replaceChildren(...r.exposure.map((e) => row([
    e.market, e.side, String(e.positions), e.open_interest, e.open_interest_cap ?? "none", e.notional,
    e.unrealized_pnl, e.house_unrealized_pnl], e.side)));
  $("at-risk").replaceChildren(...r.at_risk.map((a) => row([
    a.position_id, a.user_id, a.market, a.side, a.margin, a.mark, a.liquidation_price, `${(a.distance_bps / 100).toFixed(2)} %`])));
  $("accounts-at-risk").replaceChildren(...r.accounts_at_risk.map((a) => row([
    a.user_id, a.margin_level.level, a.margin_level.equity, a.margin_level.maintenance_margin])));
}

// ----- client groups -----

async function loadGroups() {
  const groups = await api("GET", "/api/v1/admin/groups");
  $("groups").replaceChildren(...groups.flatMap((g) => g.markets.map((m) => row([
    g.group, m.symbol, m.markup, String(m.markup_bps), m.commission_rate, m.commission_per_lot, String(m.max_leverage), m.quoted_bid, m.quoted_ask]))));
}

// ----- B-book and A-book -----

// The B-book: what the house made against its clients (its balance and the groups' revenue
// lines) and its open result on their positions; the A-book: the hedge's P&L at the venue.
function renderBooks() {
  const r = st.risk, h = st.hedge;
  const pairs = [];
  if (r) {
    const realized = num(r.house_balance) + num(r.spread_revenue) + num(r.commission_revenue);
    const open = r.exposure.reduce((s, e) => s + num(e.house_unrealized_pnl), 0);
    pairs.push(["B-book realized (house balance + revenue)", realized.toFixed(6)], ["B-book open result", open.toFixed(6)]);
  }
  if (h && h.pnl !== undefined) pairs.push(["A-book (hedge) P&L", h.pnl], ["Hedge cash", h.cash], ["Hedge value at mark", h.value]);
  facts($("books"), pairs);
}

async function loadHedge() {
  try {
    st.hedge = await api("GET", "/api/v1/admin/hedge");
    $("hedge-state").textContent = st.hedge.halted ? `The hedger stopped: ${st.hedge.halted}` : `Hedging: ${st.hedge.orders} orders, ${st.hedge.pending} of unknown outcome`;
    $("hedge-state").className = st.hedge.halted ? "hint down" : "hint";
    $("hedge").replaceChildren(...st.hedge.positions.map((p) => row([p.market, p.quantity, p.mark, p.value])));
  } catch (e) {
    st.hedge = null;
    $("hedge-state").textContent = e.code === "hedger_unlinked" ? "No hedger linked (serve --hedger-url): everything is B-book." : `Hedger: ${e.message}`;
    $("hedge").replaceChildren();
  }
  renderBooks();
}

// ----- push -----

function send(m) { if (st.ws && st.ws.readyState === WebSocket.OPEN) st.ws.send(JSON.stringify(m)); }

function connect() {
  const ws = new WebSocket(`${location.protocol === "https:" ? "wss" : "ws"}://${location.host}/api/v1/ws`);
  st.ws = ws;
  ws.onopen = () => {
    st.retry = 500;
    $("conn").textContent = "live"; $("conn").className = "conn on";
    send({ op: "auth", token: st.token });
    send({ op: "subscribe", channels: ["prices", "risk"] });
    loadMarkets().catch(fail); // whatever changed while disconnected
  };
  ws.onclose = (e) => {
    if (st.ws !== ws) return;
    if (e.code === 4004 || e.code === 4006) { signOut(); toast("session ended: sign in again", "error"); return; }
    $("conn").textContent = "reconnecting…"; $("conn").className = "conn off";
    setTimeout(connect, st.retry);
    st.retry = Math.min(st.retry * 2, 10000);
  };
  ws.onmessage = (e) => {
    const m = JSON.parse(e.data);
    if (m.op === "error") { toast(m.message, "error"); return; }
    if (m.channel === "risk") onRisk(m.data);
    if (m.channel === "prices") {
      const tr = $(`m-${m.data.market}`);
      if (tr) { tr.querySelector(".bid").textContent = m.data.bid; tr.querySelector(".ask").textContent = m.data.ask; }
    }
  };
}

// ----- accounts -----

async function openAccount(ev) {
  ev?.preventDefault();
  const who = $("who").value.trim();
  if (!who) return;
  try {
    const a = await api("GET", `/api/v1/admin/accounts/${encodeURIComponent(who)}`);
    st.account = a.controls.account_id;
    const c = a.controls, b = a.balance;
    facts($("acct-facts"), [
      ["Account", `${c.account_id}${c.admin ? " (operator)" : ""}`],
      ["Status", c.status, `status-${c.status}`],
      ["Group", c.group],
      ["Available", b.available], ["Locked margin", b.locked_margin], ["Order margin", b.order_margin],
      ["Unrealized P&L", b.unrealized_pnl], ["Equity", b.equity],
      ["Credit", c.credit], ["Withdrawable", c.withdrawable],
      ["Margin mode", b.margin_mode], ["Margin level", b.margin_level ? b.margin_level.level : "isolated"],
    ]);
    $("acct-positions").replaceChildren(...a.positions.map((p) => row([
      p.id, p.market, p.side, p.quantity, p.entry_price, p.margin, p.liquidation_price, p.unrealized_pnl])));
    $("acct-orders").replaceChildren(...a.orders.map((o) => row([o.id, o.market, o.side, o.type, o.price, o.quantity ?? `margin ${o.margin}`])));
    $("acct-access").textContent = `${a.api_keys.length} API key(s)${a.api_keys.length ? ": " + a.api_keys.map((k) => k.label).join(", ") : ""}; ` +
      `${a.sessions.length} live session(s)${a.sessions.length ? ": " + a.sessions.map((s) => s.ip).join(", ") : ""}`;
    $("account").hidden = false;
  } catch (e) { $("account").hidden = true; fail(e); }
}

async function act(ev) {
  ev.preventDefault();
  if (!st.account) return;
  const action = $("act-action").value;
  const body = { action, reason: $("act-reason").value };
  if (action === "adjust_balance" || action === "adjust_credit") body.amount = $("act-amount").value.trim();
  if (action === "move_group") body.group = $("act-group").value.trim();
  try {
    const c = await api("POST", `/api/v1/admin/accounts/${st.account}/actions`, body);
    toast(`Account ${c.account_id}: ${action.replace("_", " ")} done (status ${c.status}, credit ${c.credit})`);
    $("act-reason").value = ""; $("act-amount").value = "";
    await openAccount();
    await loadAudit(true);
  } catch (e) { fail(e); }
}

// ----- audit log -----

async function loadAudit(fresh) {
  const q = fresh || !st.auditNext ? "?limit=50" : `?limit=50&cursor=${encodeURIComponent(st.auditNext)}`;
  try {
    const page = await api("GET", `/api/v1/admin/audit${q}`);
    const rows = page.entries.map((e) => row([
      String(e.seq), new Date(e.at).toISOString().replace("T", " ").slice(0, 19), e.kind, e.by, e.account_id, e.action, e.reason]));
    if (fresh) $("audit").replaceChildren(...rows); else $("audit").append(...rows);
    st.auditNext = page.next_cursor ?? null;
    $("audit-more").hidden = !st.auditNext;
  } catch (e) {
    if (e.code === "history_disabled") $("audit").replaceChildren(row(["this server keeps no history store"]));
    else throw e;
  }
}

// ----- daily report -----

function reportPath(csv) {
  return `/api/v1/admin/reports/daily?from=${$("report-from").value}&to=${$("report-to").value}${csv ? "&format=csv" : ""}`;
}

async function showReport(ev) {
  ev.preventDefault();
  try {
    const r = await api("GET", reportPath(false));
    $("report").replaceChildren(...r.days.map((d) => row([d.day, d.spread_markup, d.commission, d.market_fees,
      d.liquidation_fees, d.financing, d.trading_pnl, d.bad_debt, d.adjustments, d.credit, d.total, d.deposits, d.withdrawals])));
    if (!r.days.length) $("report").replaceChildren(row(["no movement in these days"]));
  } catch (e) { fail(e); }
}

// ----- stress -----

async function loadScenarios() {
  try {
    const { scenarios } = await api("GET", "/api/v1/admin/stress");
    $("stress-scenario").replaceChildren(...scenarios.map((s) => new Option(s, s)));
  } catch (e) {
    $("stress-go").disabled = true;
    if (e.code !== "stress_unavailable") throw e;
  }
}

async function runStress(ev) {
  ev.preventDefault();
  $("stress-go").disabled = true;
  try {
    const r = await api("POST", "/api/v1/admin/stress", { scenario: $("stress-scenario").value });
    const usd = (micros) => (Number(micros) / 1e6).toFixed(6);
    facts($("stress-summary"), [
      ["Steps", String(r.steps)],
      ["Open positions", `${r.open_positions[0]} → ${r.open_positions[1]}`],
      ["Liquidated", String(r.liquidated.length)],
      ["Stopped out", `${r.stopped_out.length} positions of ${r.stop_out_accounts.length} accounts`],
      ["Margin calls", String(r.margin_calls)],
      ["Bad debt", usd(r.bad_debt_total)],
      ["Paid by the insurance fund", usd(r.insurance_paid)],
      ["Paid by the house", usd(r.house_paid)],
      ["Insurance fund", `${usd(r.insurance_fund[0])} → ${usd(r.insurance_fund[1])}`],
      ["House balance", `${usd(r.house_balance[0])} → ${usd(r.house_balance[1])}`],
    ]);
    const closed = [...r.liquidated.map((c) => ["liquidated", c]), ...r.stopped_out.map((c) => ["stopped out", c]), ...r.triggered.map((c) => [c.reason, c])];
    // The report speaks the engine's units: a market's id and a price in ticks.
    const market = (id) => st.markets[id] ?? { symbol: String(id), price_decimals: 0 };
    const price = (id, ticks) => (ticks / 10 ** market(id).price_decimals).toFixed(market(id).price_decimals);
    $("stress-closed").replaceChildren(...closed.map(([what, c]) => row([
      what, String(c.account), String(c.position), market(c.market).symbol, c.side, price(c.market, c.exit_price), usd(c.realized_pnl), usd(c.payout)])));
  } catch (e) { fail(e); } finally { $("stress-go").disabled = false; }
}

// ----- wiring -----

$("auth").addEventListener("submit", signIn);
$("signout").onclick = signOut;
$("find").addEventListener("submit", openAccount);
$("act").addEventListener("submit", act);
$("audit-more").onclick = () => loadAudit(false).catch(fail);
$("audit-refresh").onclick = () => loadAudit(true).catch(fail);
$("report-form").addEventListener("submit", showReport);
$("report-csv").onclick = () => download(reportPath(true), `report-${$("report-from").value}-${$("report-to").value}.csv`).catch(fail);
$("acct-statement").onclick = () => st.account && download(`/api/v1/admin/accounts/${st.account}/statement?format=csv`, `statement-${st.account}.csv`).catch(fail);
$("stress-form").addEventListener("submit", runStress);
if (st.token) onSignedIn();
