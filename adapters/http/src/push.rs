//! Live push over WebSocket: `GET /api/v1/ws`.
//!
//! Client → server (JSON text frames): `{"op":"subscribe","channels":[…]}`,
//! `{"op":"unsubscribe","channels":[…]}`, `{"op":"auth","token":"<JWT>"}` (or the token on the
//! upgrade as `Authorization: Bearer`; never in the URL — `?token=` is refused with 400
//! `token_in_url`, since URLs end up in proxies' logs), `{"op":"ping"}`. At most
//! `client_frames_per_second` frames a second (burst twice that), else the connection is
//! closed 4008 `rate_limited`; it is closed 4004 `token_expired` when its token expires,
//! unless an `auth` with a newer token of the same account came first.
//! Server → client: `{"channel":…,"seq":n,"data":…}`, with `seq` counting 1, 2, 3… per channel
//! per connection, and `{"op":"subscribed"|"unsubscribed"|"authed"|"pong"|"error",…}` answers.
//!
//! Channels: `prices` (public: the engine's applied bid/ask per market, from its `PriceApplied`
//! changes, published at most `price_updates_per_second` times a second — latest wins),
//! `candles.<MARKET>.<INTERVAL>` (public: the latest candle from the history store), and,
//! after auth, the
//! caller's own `positions` (opened, closed or partially closed with the reason, margin added,
//! and `marks` refreshes with uPnL), `balance` (on every change of the account and every
//! `refresh`), `notices` (liquidation, bad debt).
//!
//! Nothing here can hold back the engine or another client: prices are a `watch` (latest
//! value), changes go to per-account queues filled with `try_send` (only the owner's connections
//! wake for a change, whatever the number connected). A connection whose queue is full, or whose
//! socket does not take a frame within `send_timeout`, is closed
//! (4001 `slow_consumer`); one silent for `idle_timeout` is closed (4002 `idle`). After any gap
//! a client re-reads state over REST.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::extract::ws::{CloseFrame, Message, Utf8Bytes, WebSocket, WebSocketUpgrade};
use axum::extract::{Query, State};
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Response};
use engine_core::command::{AccountId, CommandKind, MarketId, PositionStatus};
use engine_core::config::MarketConfig;
use engine_core::event::{Change, ChangeRecord, CloseReason, Item, OrderEnd, ReplyData};
use engine_core::num::Price;
use futures_util::SinkExt;
use serde::Deserialize;
use serde_json::{Value, json};
use tokio::sync::{mpsc, watch};

use crate::AppState;
use crate::convert::{balance_dto, money, ms, px};
use crate::error::ApiError;
use crate::extract::ClientIp;

/// Limits of the push API (`--config`, section `http.push`).
#[derive(Clone, Debug, serde::Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PushLimits {
    /// WebSocket connections at once (beyond: 503 `busy`).
    pub max_connections: usize,
    /// WebSocket connections at once from one address (an IPv6 /64; beyond: 429).
    pub per_ip: usize,
    /// Of those, connections not signed in (no token on the upgrade) at once: signed-in
    /// traders keep the rest whatever anonymous clients hold (beyond: 503 `busy`).
    pub anonymous_max_connections: usize,
    /// Connections not signed in, at once from one address (beyond: 429).
    pub anonymous_per_ip: usize,
    /// A connection still not signed in this long after it opened is closed (4003
    /// `sign_in_required`; the page reconnects): public prices cannot hold a slot for ever (ms).
    pub anonymous_life_ms: u64,
    /// At most this many price sends a second to one connection (each carries every market
    /// that changed; the latest wins). A price waits up to `1 / price_updates_per_second` for
    /// its send: the default 50 keeps that at 20 ms; 20 halves the push CPU at 1000
    /// connections but lets a price wait 50 ms (docs/BENCHMARKS.md, push fan-out).
    pub price_updates_per_second: u32,
    /// How often `balance` and `positions` marks are refreshed for a subscriber (ms).
    pub refresh_ms: u64,
    /// Ping interval (ms).
    pub heartbeat_ms: u64,
    /// A connection that sends nothing (not even a pong) this long is closed (ms).
    pub idle_timeout_ms: u64,
    /// A frame the socket does not take within this long closes the connection (ms).
    pub send_timeout_ms: u64,
    /// Changes of its account a connection may fall behind before it is closed as slow.
    pub lag_capacity: usize,
    /// Frames a client may send a second (burst twice that); beyond, the connection is closed
    /// (4008 `rate_limited`): each subscribe costs the server work.
    pub client_frames_per_second: u32,
}

impl Default for PushLimits {
    fn default() -> Self {
        PushLimits {
            max_connections: 2_000,
            per_ip: 20,
            anonymous_max_connections: 500,
            anonymous_per_ip: 4,
            anonymous_life_ms: 600_000,
            price_updates_per_second: 50,
            refresh_ms: 1_000,
            heartbeat_ms: 15_000,
            idle_timeout_ms: 60_000,
            send_timeout_ms: 5_000,
            lag_capacity: 4_096,
            client_frames_per_second: 20,
        }
    }
}

impl PushLimits {
    /// Every limit in range.
    pub fn validate(&self) -> Result<(), String> {
        let ok = self.max_connections >= 1
            && self.per_ip >= 1
            && (1..=self.max_connections).contains(&self.anonymous_max_connections)
            && (1..=self.per_ip).contains(&self.anonymous_per_ip)
            && (1_000..=86_400_000).contains(&self.anonymous_life_ms)
            && (1..=100).contains(&self.price_updates_per_second)
            && (50..=60_000).contains(&self.refresh_ms)
            && (100..=300_000).contains(&self.heartbeat_ms)
            && self.idle_timeout_ms > self.heartbeat_ms
            && (10..=60_000).contains(&self.send_timeout_ms)
            && (16..=1_048_576).contains(&self.lag_capacity)
            && (1..=10_000).contains(&self.client_frames_per_second);
        if ok { Ok(()) } else { Err("http.push limits out of range".into()) }
    }
}

/// One account's change, ready to send.
#[derive(Debug)]
pub(crate) struct Private {
    account: AccountId,
    channel: &'static str,
    /// Serialized once here, not once per connection.
    data: Option<Arc<str>>,
}

/// One market's latest applied price, serialized once for every connection.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct PriceEntry {
    market: String,
    update_id: u64,
    json: Arc<str>,
}

/// The latest candle of one candle channel, serialized once.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct CandleEntry {
    channel: usize,
    json: Arc<str>,
}

/// What the push API has done, for `/metrics`.
#[derive(Debug, Default)]
pub struct PushStats {
    /// Connections open.
    pub open: AtomicUsize,
    /// Frames sent.
    pub sent: AtomicU64,
    /// Connections closed for falling behind.
    pub slow_closed: AtomicU64,
    /// Connections closed for silence.
    pub idle_closed: AtomicU64,
    /// Upgrades refused by the caps.
    pub refused: AtomicU64,
    /// Changes refused by the service-mode tail as replays (a genuine `engine-events` entry
    /// written again): shared with the tail, which counts them.
    pub replayed: Arc<AtomicU64>,
}

/// One connection's queue: its id, and the sender the hub fills.
type Route = (u64, mpsc::Sender<Arc<Private>>);

/// The fan-out: latest prices, per-account change queues, the caps.
#[derive(Debug)]
pub struct Hub {
    markets: Vec<MarketConfig>,
    prices: watch::Sender<Arc<Vec<PriceEntry>>>,
    /// `candles.<MARKET>.<INTERVAL>` for every market and span, with what each names.
    candle_channels: Vec<(String, MarketId, &'static str)>,
    /// The latest candle of each channel that has one, from the history store.
    candles: watch::Sender<Arc<Vec<CandleEntry>>>,
    candle_subscribers: AtomicUsize,
    /// Prices applied since the last publication, by market; the pump publishes them at most
    /// `price_updates_per_second` times a second (see [`pump_prices`]).
    pending_prices: Mutex<HashMap<String, PriceEntry>>,
    price_ready: tokio::sync::Notify,
    /// Each signed-in connection's queue, by account: a change wakes only its owner's
    /// connections, so its cost does not grow with the number connected.
    routes: Mutex<HashMap<AccountId, Vec<Route>>>,
    next_route: AtomicU64,
    lag: usize,
    /// Connections per address key, and (second) those not signed in.
    per_ip: Mutex<HashMap<IpAddr, (usize, usize)>>,
    anonymous_open: AtomicUsize,
    poller: std::sync::OnceLock<()>,
    /// Counters.
    pub stats: PushStats,
    /// Each account's last change: the history routes' read-your-writes.
    pub own_writes: crate::own_writes::OwnWrites,
}

impl Hub {
    /// A hub for `markets`, a connection falling `lag` changes behind being cut off.
    pub fn new(markets: Vec<MarketConfig>, lag: usize) -> Hub {
        let mut candle_channels = Vec::new();
        for (i, m) in markets.iter().enumerate() {
            let id = MarketId(u16::try_from(i).unwrap_or(u16::MAX));
            for (span, _) in ground::history::SPANS {
                candle_channels.push((format!("candles.{}.{span}", m.symbol), id, span));
            }
        }
        Hub {
            candle_channels,
            candles: watch::channel(Arc::new(Vec::new())).0,
            candle_subscribers: AtomicUsize::new(0),
            pending_prices: Mutex::new(HashMap::new()),
            price_ready: tokio::sync::Notify::new(),
            markets,
            prices: watch::channel(Arc::new(Vec::new())).0,
            routes: Mutex::new(HashMap::new()),
            next_route: AtomicU64::new(1),
            lag: lag.max(16),
            per_ip: Mutex::new(HashMap::new()),
            anonymous_open: AtomicUsize::new(0),
            poller: std::sync::OnceLock::new(),
            stats: PushStats::default(),
            own_writes: crate::own_writes::OwnWrites::default(),
        }
    }

    /// Fans out one state change of the engine to its account's connections. Never waits.
    pub fn publish(&self, c: &ChangeRecord) {
        if let Change::PriceApplied { market, bid, ask, update_id } = c.change {
            self.price(market, bid, ask, update_id, c.at_ns);
            return;
        }
        let Some(account) = c.change.account() else { return };
        self.own_writes.record(account, c.seq);
        let mut routes = self.routes.lock().unwrap_or_else(|e| e.into_inner());
        let Some(queues) = routes.get_mut(&account) else {
            return; // nobody of that account is connected: nothing to build
        };
        for p in self.messages(c) {
            let p = Arc::new(p);
            // A full queue is a connection too far behind: unrouted, it sees its queue end
            // and closes as slow. Never waits.
            queues.retain(|(_, q)| q.try_send(Arc::clone(&p)).is_ok());
        }
        if queues.is_empty() {
            routes.remove(&account);
        }
    }

    /// A queue for one connection of `account`, and its id (to [`Hub::unroute`] it).
    fn route(&self, account: AccountId) -> (u64, mpsc::Receiver<Arc<Private>>) {
        let (tx, rx) = mpsc::channel(self.lag);
        let id = self.next_route.fetch_add(1, Ordering::Relaxed);
        let mut routes = self.routes.lock().unwrap_or_else(|e| e.into_inner());
        routes.entry(account).or_default().push((id, tx));
        (id, rx)
    }

    fn unroute(&self, account: AccountId, id: u64) {
        let mut routes = self.routes.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(queues) = routes.get_mut(&account) {
            queues.retain(|(i, _)| *i != id);
            if queues.is_empty() {
                routes.remove(&account);
            }
        }
    }

    /// The latest applied price of `market`, serialized once for every connection and left for
    /// the pump ([`pump_prices`]) to publish: connections wake at its rate, not the feed's.
    fn price(&self, market: MarketId, bid: Price, ask: Price, update_id: u64, at_ns: u64) {
        let Some(m) = self.markets.get(usize::from(market.0)) else { return };
        let data = json!({"market": m.symbol, "bid": px(bid, m), "ask": px(ask, m),
            "update_id": update_id, "time": ms(at_ns)});
        let entry =
            PriceEntry { market: m.symbol.clone(), update_id, json: Arc::from(data.to_string()) };
        // Latest wins; at most one entry a market.
        let mut pending = self.pending_prices.lock().unwrap_or_else(|e| e.into_inner());
        pending.insert(entry.market.clone(), entry);
        drop(pending);
        self.price_ready.notify_one();
    }

    /// The messages a change makes: `data: None` only marks the balance as changed.
    fn messages(&self, c: &ChangeRecord) -> Vec<Private> {
        self.values(c)
            .into_iter()
            .map(|(account, channel, data)| Private {
                account,
                channel,
                data: data.map(|v| Arc::from(v.to_string())),
            })
            .collect()
    }

    fn values(&self, c: &ChangeRecord) -> Vec<(AccountId, &'static str, Option<Value>)> {
        let Some(account) = c.change.account() else { return Vec::new() };
        let mut out = vec![(account, "balance", None)];
        let market = |id: MarketId| self.markets.get(usize::from(id.0));
        match c.change {
            Change::Opened {
                position,
                market: mid,
                side,
                quantity,
                entry_price,
                margin,
                leverage,
                fee,
                liquidation_price,
                take_profit,
                stop_loss,
                ..
            } => {
                let Some(m) = market(mid) else { return out };
                let data = json!({"event": "opened", "position_id": position.0.to_string(),
                    "market": m.symbol, "side": side.as_str(),
                    "quantity": engine_core::num::format_fixed(i128::from(quantity.0), m.qty_decimals),
                    "entry_price": px(entry_price, m), "margin": money(margin), "leverage": leverage,
                    "fee": money(fee),
                    "liquidation_price": (liquidation_price.0 > 0).then(|| px(liquidation_price, m)),
                    "take_profit": take_profit.map(|p| px(p, m)), "stop_loss": stop_loss.map(|p| px(p, m)),
                    "at": ms(c.at_ns)});
                out.push((account, "positions", Some(data)));
            }
            Change::Closed {
                position,
                of_position,
                market: mid,
                quantity,
                exit_price,
                realized_pnl,
                fee,
                payout,
                reason,
                bad_debt,
                insurance_paid,
                house_paid,
                ..
            } => {
                let Some(m) = market(mid) else { return out };
                let event = if position == of_position { "closed" } else { "partially_closed" };
                let data = json!({"event": event, "position_id": position.0.to_string(),
                    "of_position": of_position.0.to_string(), "market": m.symbol,
                    "quantity": engine_core::num::format_fixed(i128::from(quantity.0), m.qty_decimals),
                    "exit_price": px(exit_price, m), "realized_pnl": money(realized_pnl),
                    "fee": money(fee), "payout": money(payout), "reason": reason.as_str(),
                    "at": ms(c.at_ns)});
                out.push((account, "positions", Some(data.clone())));
                if reason == CloseReason::Liquidation {
                    let n = json!({"notice": "liquidation", "position": data});
                    out.push((account, "notices", Some(n)));
                }
                if bad_debt.0 > 0 {
                    let n = json!({"notice": "bad_debt", "position_id": position.0.to_string(),
                        "amount": money(bad_debt), "insurance_paid": money(insurance_paid),
                        "house_paid": money(house_paid)});
                    out.push((account, "notices", Some(n)));
                }
            }
            Change::MarginAdded { position, amount, margin, liquidation_price, .. } => {
                let data = json!({"event": "margin_added", "position_id": position.0.to_string(),
                    "amount": money(amount), "margin": money(margin),
                    "liquidation_price_ticks": liquidation_price.0, "at": ms(c.at_ns)});
                out.push((account, "positions", Some(data)));
            }
            _ => self.order_values(c, account, &mut out),
        }
        out
    }

    /// Orders, TP/SL edits and margin calls.
    fn order_values(
        &self,
        c: &ChangeRecord,
        account: AccountId,
        out: &mut Vec<(AccountId, &'static str, Option<Value>)>,
    ) {
        let market = |id: MarketId| self.markets.get(usize::from(id.0));
        match c.change {
            Change::OrderPlaced { order } => {
                let Some(m) = market(order.market) else { return };
                let mut data = json!(crate::convert::order_dto(&order, m));
                data["event"] = json!("placed");
                out.push((account, "orders", Some(data)));
            }
            Change::OrderEnded { order, market: mid, released, end, .. } => {
                let Some(m) = market(mid) else { return };
                let data = json!({"event": end.as_str(), "order_id": order.0.to_string(),
                    "market": m.symbol, "released": money(released),
                    "position_id": match end { OrderEnd::Filled(p) => Some(p.0.to_string()), _ => None },
                    "reason": match end { OrderEnd::Rejected(r) => Some(r.code()), _ => None },
                    "at": ms(c.at_ns)});
                out.push((account, "orders", Some(data)));
            }
            Change::TriggersSet { position, take_profit, stop_loss, .. } => {
                out.push((
                    account,
                    "positions",
                    Some(json!({"event": "triggers_set",
                    "position_id": position.0.to_string(),
                    "take_profit_ticks": take_profit.map(|p| p.0),
                    "stop_loss_ticks": stop_loss.map(|p| p.0), "at": ms(c.at_ns)})),
                ));
            }
            Change::Financed {
                position, market: mid, amount, margin, liquidation_price, ..
            } => {
                let Some(m) = market(mid) else { return };
                out.push((account, "positions", Some(json!({"event": "financed",
                    "position_id": position.0.to_string(), "amount": money(amount),
                    "margin": money(margin),
                    "liquidation_price": (liquidation_price.0 > 0).then(|| px(liquidation_price, m)),
                    "at": ms(c.at_ns)}))));
            }
            Change::TrailingStopSet { position, stop_price, .. } => {
                out.push((
                    account,
                    "positions",
                    Some(json!({"event": "trailing_stop_set",
                    "position_id": position.0.to_string(),
                    "stop_price_ticks": stop_price.map(|p| p.0), "at": ms(c.at_ns)})),
                ));
            }
            Change::MarginCall {
                position,
                market: mid,
                mark,
                margin_call_price,
                liquidation_price,
                ..
            } => {
                let Some(m) = market(mid) else { return };
                let n = json!({"notice": "margin_call", "position_id": position.0.to_string(),
                    "market": m.symbol, "mark": px(mark, m),
                    "margin_call_price": px(margin_call_price, m),
                    "liquidation_price": (liquidation_price.0 > 0).then(|| px(liquidation_price, m)),
                    "at": ms(c.at_ns)});
                out.push((account, "notices", Some(n)));
            }
            _ => {}
        }
    }

    /// Takes a connection slot for the address `key` (a [`ClientIp`]: already an IPv6 /64),
    /// signed in or not, or says why not.
    fn admit(
        self: &Arc<Self>,
        key: IpAddr,
        limits: &PushLimits,
        signed_in: bool,
    ) -> Result<Slot, ApiError> {
        let mut per_ip = self.per_ip.lock().unwrap_or_else(|e| e.into_inner());
        let anonymous_full =
            self.anonymous_open.load(Ordering::Relaxed) >= limits.anonymous_max_connections;
        if self.stats.open.load(Ordering::Relaxed) >= limits.max_connections
            || (!signed_in && anonymous_full)
        {
            self.stats.refused.fetch_add(1, Ordering::Relaxed);
            return Err(ApiError::busy("too many push connections"));
        }
        let (all, anonymous) = per_ip.entry(key).or_insert((0, 0));
        if *all >= limits.per_ip || (!signed_in && *anonymous >= limits.anonymous_per_ip) {
            self.stats.refused.fetch_add(1, Ordering::Relaxed);
            return Err(ApiError::rate_limited(1));
        }
        *all += 1;
        if !signed_in {
            *anonymous += 1;
            self.anonymous_open.fetch_add(1, Ordering::Relaxed);
        }
        self.stats.open.fetch_add(1, Ordering::Relaxed);
        Ok(Slot { hub: Arc::clone(self), key, anonymous: !signed_in })
    }
}

/// A connection's place under the caps, given back on drop.
struct Slot {
    hub: Arc<Hub>,
    key: IpAddr,
    /// Counted among the connections not signed in.
    anonymous: bool,
}

impl Slot {
    /// The connection signed in: it leaves the anonymous budget.
    fn signed_in(&mut self) {
        if std::mem::take(&mut self.anonymous) {
            let mut per_ip = self.hub.per_ip.lock().unwrap_or_else(|e| e.into_inner());
            if let Some((_, anonymous)) = per_ip.get_mut(&self.key) {
                *anonymous = anonymous.saturating_sub(1);
            }
            self.hub.anonymous_open.fetch_sub(1, Ordering::Relaxed);
        }
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        self.signed_in();
        let mut per_ip = self.hub.per_ip.lock().unwrap_or_else(|e| e.into_inner());
        if let Some((all, _)) = per_ip.get_mut(&self.key) {
            *all -= 1;
            if *all == 0 {
                per_ip.remove(&self.key);
            }
        }
        self.hub.stats.open.fetch_sub(1, Ordering::Relaxed);
    }
}

/// Publishes applied prices to every connection: at once, or — within `1 / per_second` of the
/// last publication — the latest when that time comes. So each connection wakes at most
/// `per_second` times a second for prices however fast ticks arrive, and a price waits at most
/// that long.
async fn pump_prices(hub: Arc<Hub>, per_second: u32) {
    let gap = Duration::from_millis(1_000 / u64::from(per_second.max(1)));
    let mut last = tokio::time::Instant::now() - gap;
    loop {
        hub.price_ready.notified().await;
        tokio::time::sleep_until(last + gap).await;
        last = tokio::time::Instant::now();
        let fresh: Vec<PriceEntry> = {
            let mut pending = hub.pending_prices.lock().unwrap_or_else(|e| e.into_inner());
            pending.drain().map(|(_, p)| p).collect()
        };
        if fresh.is_empty() {
            continue;
        }
        hub.prices.send_modify(|all| {
            let mut next: Vec<PriceEntry> = all
                .iter()
                .filter(|p| !fresh.iter().any(|f| f.market == p.market))
                .cloned()
                .collect();
            next.extend(fresh);
            *all = Arc::new(next);
        });
    }
}

/// Reads the latest candle of every channel from the history store at the price rate, while
/// anyone subscribes to candles, and publishes those that changed. The store is the one source:
/// what is pushed is what `GET /api/v1/candles` returns next.
async fn poll_candles(state: Arc<AppState>) {
    let hz = u64::from(state.push_limits().price_updates_per_second.max(1));
    let mut every = tokio::time::interval(Duration::from_millis(1_000 / hz));
    every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    let hub = state.hub();
    loop {
        every.tick().await;
        let Some(h) = state.history.get() else { continue };
        if hub.candle_subscribers.load(Ordering::Relaxed) == 0 {
            continue;
        }
        let mut latest = Vec::new();
        for (i, (_, market, span)) in hub.candle_channels.iter().enumerate() {
            let Ok(got) = h.store.candles(*market, span, 1).await else { continue };
            let (Some(c), Some(m)) = (got.last(), hub.markets.get(usize::from(market.0))) else {
                continue;
            };
            let data = json!({"time": ms(c.start_ns), "open": px(c.open, m), "high": px(c.high, m),
                "low": px(c.low, m), "close": px(c.close, m), "ticks": c.ticks});
            latest.push(CandleEntry { channel: i, json: Arc::from(data.to_string()) });
        }
        hub.candles.send_if_modified(|old| {
            let changed = **old != latest;
            if changed {
                *old = Arc::new(latest);
            }
            changed
        });
    }
}

/// Largest client frame and message. tungstenite's own frame limit (16 MiB) applies before the
/// message limit and reserves a declared frame's length as its bytes arrive: both must be set,
/// or one unauthenticated client holds 16 MiB per socket.
pub const CLIENT_FRAME_MAX_BYTES: usize = 4_096;
/// How long a closing connection waits for the client's close frame.
const CLOSE_WAIT: Duration = Duration::from_secs(1);
/// The socket's read buffer (tungstenite's default is 128 KiB per connection).
const READ_BUFFER_BYTES: usize = 8_192;
/// Server frames are written once this much is buffered (each send also flushes).
const WRITE_BUFFER_BYTES: usize = 16_384;
/// A socket whose write buffer would pass this fails the send (and the connection closes):
/// the largest server frame, a full positions list, fits well inside it.
const WRITE_BUFFER_MAX_BYTES: usize = 1 << 20;

#[derive(Debug, Deserialize)]
pub(crate) struct WsQuery {
    token: Option<String>,
}

/// `GET /api/v1/ws`.
pub(crate) async fn upgrade(
    State(state): State<Arc<AppState>>,
    ClientIp(ip): ClientIp,
    headers: HeaderMap,
    Query(q): Query<WsQuery>,
    conn_slot: Option<axum::Extension<Arc<crate::server::ConnSlot>>>,
    ws: WebSocketUpgrade,
) -> Response {
    let limits = state.push_limits().clone();
    // A token on the upgrade authenticates the connection from the start; a bad one is refused.
    let bearer = headers
        .get(axum::http::header::AUTHORIZATION)
        .and_then(|h| h.to_str().ok())
        .and_then(|h| h.split_once(' '))
        .filter(|(s, _)| s.eq_ignore_ascii_case("bearer"))
        .map(|(_, t)| t.trim().to_owned());
    if q.token.is_some() {
        let why = "send the token as {\"op\":\"auth\"} after connecting, or in an \
                   Authorization header: URLs are kept in proxies' logs";
        return ApiError::bad_request("token_in_url", why).into_response();
    }
    let account = match bearer {
        Some(t) => match state.verify_token_life(&t) {
            Ok(a) => Some(a),
            Err(e) => return e.into_response(),
        },
        None => None,
    };
    let slot = match state.hub().admit(ip, &limits, account.is_some()) {
        Ok(s) => s,
        Err(e) => return e.into_response(),
    };
    state.hub().poller.get_or_init(|| {
        tokio::spawn(pump_prices(state.hub(), limits.price_updates_per_second));
        tokio::spawn(poll_candles(Arc::clone(&state)));
    });
    ws.max_message_size(CLIENT_FRAME_MAX_BYTES)
        .max_frame_size(CLIENT_FRAME_MAX_BYTES)
        .read_buffer_size(READ_BUFFER_BYTES)
        .write_buffer_size(WRITE_BUFFER_BYTES)
        .max_write_buffer_size(WRITE_BUFFER_MAX_BYTES)
        .on_upgrade(move |socket| async move {
            // The server's slot for this socket stays taken while it is open (one budget for
            // HTTP and push), and shedding it closes the socket.
            let conn_slot = conn_slot.map(|axum::Extension(s)| s);
            Conn::new(state, account, limits, slot, conn_slot).run(socket).await;
        })
}

/// One connection's state.
struct Conn {
    state: Arc<AppState>,
    account: Option<AccountId>,
    /// When the token that signed it in expires (then it is closed, unless re-authed).
    expires: Option<tokio::time::Instant>,
    /// The client's frame allowance (`client_frames_per_second`).
    frames: governor::DefaultDirectRateLimiter,
    limits: PushLimits,
    subscribed: Vec<&'static str>,
    /// Candle channels subscribed (indexes into the hub's list), with their own numbering and
    /// what was last sent on each.
    candle_subs: Vec<usize>,
    candle_seq: HashMap<usize, u64>,
    sent_candles: HashMap<usize, Arc<str>>,
    seq: HashMap<&'static str, u64>,
    /// Per market, the update id last sent.
    sent_prices: HashMap<String, u64>,
    balance_dirty: bool,
    last_balance: Option<Value>,
    last_marks: Option<Value>,
    /// The account may have open positions (marks to refresh).
    has_open: bool,
    /// This connection's queue of its account's changes (once signed in), and its route id.
    private: Option<mpsc::Receiver<Arc<Private>>>,
    route: Option<u64>,
    /// The push caps' slot (leaves the anonymous budget on sign-in).
    slot: Slot,
    /// The server's slot for the socket, when served by [`crate::server::run`].
    conn_slot: Option<Arc<crate::server::ConnSlot>>,
}

/// Sleeps until `at`, or for ever when there is no such time.
async fn sleep_until_some(at: Option<tokio::time::Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

/// The next of the account's changes, or never (not signed in).
async fn next_private(rx: &mut Option<mpsc::Receiver<Arc<Private>>>) -> Option<Arc<Private>> {
    match rx {
        Some(rx) => rx.recv().await,
        None => std::future::pending().await,
    }
}

/// A channel named in a subscribe or unsubscribe.
enum Picked {
    Named(&'static str),
    Candles(usize),
}

/// Every channel a client may name.
pub const CHANNELS: [&str; 5] = ["prices", "positions", "balance", "notices", "orders"];

/// The protocol as an AsyncAPI 3.0 document (`GET /api/v1/asyncapi.json`).
pub const ASYNCAPI: &str = include_str!("../asyncapi.json");

/// `GET /api/v1/asyncapi.json`.
pub(crate) async fn asyncapi() -> Response {
    ([(axum::http::header::CONTENT_TYPE, "application/json")], ASYNCAPI).into_response()
}

/// Why a connection ends.
enum End {
    Closed,
    Slow,
    Idle,
    /// Not signed in within `anonymous_life_ms`.
    Anonymous,
    /// Its server slot was given to another address's connection.
    Shed,
    /// Its token expired.
    Expired,
    /// It sent frames faster than `client_frames_per_second`.
    Flooding,
}

impl Conn {
    fn new(
        state: Arc<AppState>,
        signed_in: Option<(AccountId, Duration)>,
        limits: PushLimits,
        slot: Slot,
        conn_slot: Option<Arc<crate::server::ConnSlot>>,
    ) -> Conn {
        let per_second = std::num::NonZeroU32::new(limits.client_frames_per_second)
            .unwrap_or(std::num::NonZeroU32::MIN);
        let burst = per_second.saturating_mul(std::num::NonZeroU32::MIN.saturating_add(1));
        let quota = governor::Quota::per_second(per_second).allow_burst(burst);
        Conn {
            state,
            account: signed_in.map(|(a, _)| a),
            expires: signed_in.map(|(_, life)| tokio::time::Instant::now() + life),
            frames: governor::RateLimiter::direct(quota),
            limits,
            subscribed: Vec::new(),
            candle_subs: Vec::new(),
            candle_seq: HashMap::new(),
            sent_candles: HashMap::new(),
            seq: HashMap::new(),
            sent_prices: HashMap::new(),
            balance_dirty: true,
            last_balance: None,
            last_marks: None,
            has_open: true,
            private: None,
            route: None,
            slot,
            conn_slot,
        }
    }

    /// Starts receiving the account's changes.
    fn sign_in(&mut self, account: AccountId) {
        self.account = Some(account);
        self.slot.signed_in();
        if self.route.is_none() {
            let (id, rx) = self.state.hub().route(account);
            self.route = Some(id);
            self.private = Some(rx);
        }
    }

    async fn run(mut self, mut socket: WebSocket) {
        let hub = self.state.hub();
        let mut prices = hub.prices.subscribe();
        let mut candles = hub.candles.subscribe();
        if let Some(a) = self.account {
            self.sign_in(a);
        }
        let end = self.serve(&mut socket, &mut prices, &mut candles).await;
        hub.candle_subscribers.fetch_sub(self.candle_subs.len(), Ordering::Relaxed);
        if let (Some(a), Some(id)) = (self.account, self.route) {
            hub.unroute(a, id);
        }
        let (code, reason) = match end {
            End::Closed => return,
            End::Slow => {
                hub.stats.slow_closed.fetch_add(1, Ordering::Relaxed);
                (4001, "slow_consumer")
            }
            End::Idle => {
                hub.stats.idle_closed.fetch_add(1, Ordering::Relaxed);
                (4002, "idle")
            }
            End::Anonymous => (4003, "sign_in_required"),
            End::Expired => (4004, "token_expired"),
            End::Flooding => (4008, "rate_limited"),
            End::Shed => (1013, "try_again_later"),
        };
        let close =
            Message::Close(Some(CloseFrame { code, reason: Utf8Bytes::from_static(reason) }));
        let _ = tokio::time::timeout(Duration::from_millis(500), socket.send(close)).await;
        // The closing handshake: wait (bounded) for the client's close, discarding what it
        // still sends. A socket dropped with unread data is reset, and a reset client may lose
        // the close frame, and with it the reason.
        let _ = tokio::time::timeout(CLOSE_WAIT, async {
            while let Some(Ok(m)) = socket.recv().await {
                if matches!(m, Message::Close(_)) {
                    break;
                }
            }
        })
        .await;
    }

    async fn serve(
        &mut self,
        socket: &mut WebSocket,
        prices: &mut watch::Receiver<Arc<Vec<PriceEntry>>>,
        candles: &mut watch::Receiver<Arc<Vec<CandleEntry>>>,
    ) -> End {
        let mut private = self.private.take();
        let mut refresh = tokio::time::interval(Duration::from_millis(self.limits.refresh_ms));
        let mut heartbeat = tokio::time::interval(Duration::from_millis(self.limits.heartbeat_ms));
        let idle = Duration::from_millis(self.limits.idle_timeout_ms);
        let mut last_heard = tokio::time::Instant::now();
        let anonymous_until = last_heard + Duration::from_millis(self.limits.anonymous_life_ms);
        let conn_slot = self.conn_slot.clone();
        let shed = async move {
            match conn_slot {
                Some(s) => s.shed().await,
                None => std::future::pending().await,
            }
        };
        let mut shed = std::pin::pin!(shed);
        loop {
            let step = tokio::select! {
                () = &mut shed => Err(End::Shed),
                () = tokio::time::sleep_until(anonymous_until), if self.account.is_none() => {
                    Err(End::Anonymous)
                }
                () = sleep_until_some(self.expires) => Err(End::Expired),
                m = socket.recv() => match m {
                    Some(Ok(m)) => {
                        last_heard = tokio::time::Instant::now();
                        if self.frames.check().is_err() {
                            Err(End::Flooding)
                        } else {
                            self.on_message(socket, m).await
                        }
                    }
                    _ => Err(End::Closed),
                },
                r = prices.changed() => match r {
                    Ok(()) => {
                        let latest = Arc::clone(&prices.borrow_and_update());
                        // At most price_updates_per_second of these: the pump's rate.
                        self.on_prices(socket, &latest).await
                    }
                    Err(_) => Err(End::Closed),
                },
                r = candles.changed() => match r {
                    Ok(()) => {
                        let latest = Arc::clone(&candles.borrow_and_update());
                        self.on_candles(socket, &latest).await
                    }
                    Err(_) => Err(End::Closed),
                },
                p = next_private(&mut private) => match p {
                    Some(p) => self.on_private(socket, &p).await,
                    // Unrouted by the hub: its queue was full.
                    None => Err(End::Slow),
                },
                _ = refresh.tick() => self.on_refresh(socket).await,
                _ = heartbeat.tick() => {
                    if last_heard.elapsed() >= idle {
                        Err(End::Idle)
                    } else {
                        self.send(socket, Message::Ping(Default::default())).await
                    }
                }
            };
            if let Err(end) = step {
                return end;
            }
            if private.is_none() {
                private = self.private.take(); // signed in by this step
            }
        }
    }

    /// Sends one frame, or gives up on a socket that does not take it in time.
    async fn send(&self, socket: &mut WebSocket, m: Message) -> Result<(), End> {
        self.io(socket.send(m)).await?;
        self.state.hub().stats.sent.fetch_add(1, Ordering::Relaxed);
        Ok(())
    }

    /// A socket operation within `send_timeout`.
    async fn io(
        &self,
        op: impl std::future::Future<Output = Result<(), axum::Error>>,
    ) -> Result<(), End> {
        let limit = Duration::from_millis(self.limits.send_timeout_ms);
        match tokio::time::timeout(limit, op).await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(_)) => Err(End::Closed),
            Err(_) => Err(End::Slow),
        }
    }

    async fn send_json(&self, socket: &mut WebSocket, v: &Value) -> Result<(), End> {
        self.send(socket, Message::Text(v.to_string().into())).await
    }

    /// `{"channel", "seq", "data"}` on a subscribed channel, numbered.
    async fn push(
        &mut self,
        socket: &mut WebSocket,
        channel: &'static str,
        data: &str,
    ) -> Result<(), End> {
        match self.frame(channel, data) {
            Some(m) => self.send(socket, m).await,
            None => Ok(()),
        }
    }

    /// The numbered frame of `data` on `channel`, if subscribed. `data` is JSON already
    /// (serialized once for every connection): only the envelope is this connection's.
    fn frame(&mut self, channel: &'static str, data: &str) -> Option<Message> {
        if !self.subscribed.contains(&channel) {
            return None;
        }
        let seq = self.seq.entry(channel).or_insert(0);
        *seq += 1;
        let msg = format!(r#"{{"channel":"{channel}","seq":{seq},"data":{data}}}"#);
        Some(Message::Text(msg.into()))
    }

    async fn error(&self, socket: &mut WebSocket, code: &str, message: &str) -> Result<(), End> {
        self.send_json(socket, &json!({"op": "error", "code": code, "message": message})).await
    }

    async fn on_message(&mut self, socket: &mut WebSocket, m: Message) -> Result<(), End> {
        let text = match m {
            Message::Text(t) => t,
            Message::Close(_) => return Err(End::Closed),
            Message::Binary(_) => {
                return self.error(socket, "invalid_message", "send JSON text frames").await;
            }
            Message::Ping(_) | Message::Pong(_) => return Ok(()),
        };
        let Ok(v) = serde_json::from_str::<Value>(text.as_str()) else {
            return self.error(socket, "invalid_message", "not JSON").await;
        };
        match v["op"].as_str() {
            Some("ping") => self.send_json(socket, &json!({"op": "pong"})).await,
            Some("auth") => self.on_auth(socket, v["token"].as_str().unwrap_or("")).await,
            Some("subscribe") => self.on_subscribe(socket, &v["channels"], true).await,
            Some("unsubscribe") => self.on_subscribe(socket, &v["channels"], false).await,
            _ => {
                self.error(
                    socket,
                    "invalid_message",
                    "op must be subscribe, unsubscribe, auth or ping",
                )
                .await
            }
        }
    }

    async fn on_auth(&mut self, socket: &mut WebSocket, token: &str) -> Result<(), End> {
        match self.state.verify_token_life(token) {
            Ok((a, life)) if self.account.is_none_or(|mine| mine == a) => {
                // A newer token extends the connection's life; an older one never shortens it.
                let until = tokio::time::Instant::now() + life;
                self.expires = Some(self.expires.map_or(until, |e| e.max(until)));
                self.sign_in(a);
                self.send_json(socket, &json!({"op": "authed", "user_id": a.0.to_string()})).await
            }
            // One connection, one account: a second identity needs a second connection.
            Ok(_) => {
                self.error(socket, "invalid_message", "this connection is another user's").await
            }
            Err(e) => self.error(socket, e.code, &e.message).await,
        }
    }

    async fn on_subscribe(
        &mut self,
        socket: &mut WebSocket,
        names: &Value,
        on: bool,
    ) -> Result<(), End> {
        let Some(names) = names.as_array() else {
            return self.error(socket, "invalid_message", "channels must be a list").await;
        };
        // All or nothing: every name is checked before any is applied.
        let hub = self.state.hub();
        let mut picked = Vec::with_capacity(names.len());
        for name in names {
            let name = name.as_str().unwrap_or_default();
            if let Some(i) = hub.candle_channels.iter().position(|(c, _, _)| c == name) {
                picked.push(Picked::Candles(i));
                continue;
            }
            let Some(ch) = CHANNELS.iter().copied().find(|c| *c == name) else {
                let all = "channels: prices, positions, balance, notices, orders, \
                           candles.<MARKET>.<1m|5m|15m|1h|4h|1d>";
                return self.error(socket, "unknown_channel", all).await;
            };
            if ch != "prices" && self.account.is_none() {
                let why = "private channels need auth first";
                return self.error(socket, "auth_required", why).await;
            }
            picked.push(Picked::Named(ch));
        }
        let mut done: Vec<String> = Vec::new();
        for p in picked {
            match p {
                Picked::Candles(i) => {
                    self.toggle_candles(&hub, i, on);
                    done.push(hub.candle_channels[i].0.clone());
                }
                Picked::Named(ch) => {
                    self.subscribed.retain(|c| *c != ch);
                    if on {
                        self.subscribed.push(ch);
                    }
                    done.push(ch.to_owned());
                }
            }
        }
        let op = if on { "subscribed" } else { "unsubscribed" };
        self.send_json(socket, &json!({"op": op, "channels": done})).await?;
        let named = |c: &str| done.iter().any(|d| d == c);
        if on && named("prices") {
            // A new subscriber gets every market's latest price at once.
            self.sent_prices.clear();
            let latest = Arc::clone(&self.state.hub().prices.borrow());
            self.on_prices(socket, &latest).await?;
        }
        if on && (named("balance") || named("positions")) {
            self.balance_dirty = true;
            self.last_balance = None;
            self.last_marks = None;
            self.has_open = true;
            self.on_refresh(socket).await?;
        }
        if on && done.iter().any(|d| d.starts_with("candles.")) {
            let latest = Arc::clone(&hub.candles.borrow());
            self.on_candles(socket, &latest).await?;
        }
        Ok(())
    }

    fn toggle_candles(&mut self, hub: &Hub, i: usize, on: bool) {
        let had = self.candle_subs.contains(&i);
        self.candle_subs.retain(|c| *c != i);
        if on {
            self.candle_subs.push(i);
            self.sent_candles.remove(&i);
        }
        match (had, on) {
            (false, true) => hub.candle_subscribers.fetch_add(1, Ordering::Relaxed),
            (true, false) => hub.candle_subscribers.fetch_sub(1, Ordering::Relaxed),
            _ => 0,
        };
    }

    async fn on_prices(
        &mut self,
        socket: &mut WebSocket,
        latest: &[PriceEntry],
    ) -> Result<(), End> {
        if !self.subscribed.contains(&"prices") {
            return Ok(());
        }
        // Every changed market in one write: frames are queued, then flushed once.
        let mut queued = 0;
        for p in latest {
            if self.sent_prices.get(&p.market) == Some(&p.update_id) {
                continue;
            }
            self.sent_prices.insert(p.market.clone(), p.update_id);
            if let Some(m) = self.frame("prices", &p.json) {
                self.io(socket.feed(m)).await?;
                queued += 1;
            }
        }
        if queued > 0 {
            self.io(socket.flush()).await?;
            self.state.hub().stats.sent.fetch_add(queued, Ordering::Relaxed);
        }
        Ok(())
    }

    /// The subscribed candle channels whose latest candle changed, numbered per channel.
    async fn on_candles(
        &mut self,
        socket: &mut WebSocket,
        latest: &[CandleEntry],
    ) -> Result<(), End> {
        for e in latest {
            if !self.candle_subs.contains(&e.channel)
                || self.sent_candles.get(&e.channel) == Some(&e.json)
            {
                continue;
            }
            self.sent_candles.insert(e.channel, Arc::clone(&e.json));
            let seq = self.candle_seq.entry(e.channel).or_insert(0);
            *seq += 1;
            let name = &self.state.hub().candle_channels[e.channel].0;
            let msg = format!(r#"{{"channel":"{name}","seq":{seq},"data":{}}}"#, e.json);
            self.send(socket, Message::Text(msg.into())).await?;
        }
        Ok(())
    }

    async fn on_private(&mut self, socket: &mut WebSocket, p: &Private) -> Result<(), End> {
        if self.account != Some(p.account) {
            return Ok(()); // another account's: never delivered
        }
        match &p.data {
            None => {
                self.balance_dirty = true;
                Ok(())
            }
            Some(data) => {
                if p.channel == "positions" {
                    self.has_open = true; // worth asking for marks again
                }
                self.push(socket, p.channel, data).await
            }
        }
    }

    /// Balance when it changed (or was never sent), positions' marks every refresh.
    async fn on_refresh(&mut self, socket: &mut WebSocket) -> Result<(), End> {
        let Some(account) = self.account else { return Ok(()) };
        if self.subscribed.contains(&"balance") && self.balance_dirty {
            self.balance_dirty = false;
            if let Ok(r) = self.state.call(CommandKind::QueryAccount { account }).await
                && let Ok(ReplyData::Account(a)) = r.result
                && a.id == account
            {
                let v = serde_json::to_value(balance_dto(&a)).unwrap_or_default();
                if self.last_balance.as_ref() != Some(&v) {
                    self.last_balance = Some(v.clone());
                    self.push(socket, "balance", &v.to_string()).await?;
                }
            }
        }
        if self.subscribed.contains(&"positions") && self.has_open {
            let kind = CommandKind::QueryPositions { account, status: PositionStatus::Open };
            if let Ok(r) = self.state.call(kind).await {
                let marks: Vec<Value> = r.items.iter().filter_map(|i| match i {
                    Item::Position(v) if v.account == account => Some(json!({
                        "position_id": v.id.0.to_string(), "unrealized_pnl": money(v.unrealized_pnl),
                        "margin": money(v.margin)})),
                    _ => None,
                }).collect();
                // An account without open positions is not asked again until it opens one.
                self.has_open = !marks.is_empty();
                let v = json!({"event": "marks", "positions": marks});
                if self.last_marks.as_ref() != Some(&v) {
                    self.last_marks = Some(v.clone());
                    // uPnL moves with every price: the balance (equity) does too.
                    self.balance_dirty = true;
                    self.push(socket, "positions", &v.to_string()).await?;
                }
            }
        }
        Ok(())
    }
}
