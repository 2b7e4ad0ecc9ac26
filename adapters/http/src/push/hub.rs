//! The fan-out: the latest prices and candles (watch channels: latest wins), each signed-in
//! connection's queue of its account's changes (only the owner's connections wake), the caps
//! and their slots, the changes turned into messages once for every connection.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use engine_core::command::{AccountId, MarketId};
use engine_core::config::MarketConfig;
use engine_core::event::{Change, ChangeRecord, CloseReason, OrderEnd};
use engine_core::num::Price;
use serde_json::{Value, json};
use tokio::sync::{mpsc, watch};

use crate::convert::{money, ms, px, rate};
use crate::error::ApiError;

use super::{PushLimits, PushStats};

/// One account's change, ready to send.
#[derive(Debug)]
pub(crate) struct Private {
    pub(super) account: AccountId,
    pub(super) channel: &'static str,
    /// Serialized once here, not once per connection.
    pub(super) data: Option<Arc<str>>,
}

/// One market's latest applied price, serialized once for every connection.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct PriceEntry {
    pub(super) market: String,
    pub(super) update_id: u64,
    pub(super) json: Arc<str>,
}

/// The latest candle of one candle channel, serialized once.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct CandleEntry {
    pub(super) channel: usize,
    pub(super) json: Arc<str>,
}

/// One connection's queue: its id, and the sender the hub fills.
pub(super) type Route = (u64, mpsc::Sender<Arc<Private>>);

/// The fan-out: latest prices, per-account change queues, the caps.
#[derive(Debug)]
pub struct Hub {
    pub(super) markets: Vec<MarketConfig>,
    pub(super) prices: watch::Sender<Arc<Vec<PriceEntry>>>,
    /// `candles.<MARKET>.<INTERVAL>` for every market and span, with what each names.
    pub(super) candle_channels: Vec<(String, MarketId, &'static str)>,
    /// The latest candle of each channel that has one, from the history store.
    pub(super) candles: watch::Sender<Arc<Vec<CandleEntry>>>,
    pub(super) candle_subscribers: AtomicUsize,
    /// Prices applied since the last publication, by market; the pump publishes them at most
    /// `price_updates_per_second` times a second (see [`pump_prices`]).
    pub(super) pending_prices: Mutex<HashMap<String, PriceEntry>>,
    pub(super) price_ready: tokio::sync::Notify,
    /// Each signed-in connection's queue, by account: a change wakes only its owner's
    /// connections, so its cost does not grow with the number connected.
    pub(super) routes: Mutex<HashMap<AccountId, Vec<Route>>>,
    pub(super) next_route: AtomicU64,
    pub(super) lag: usize,
    /// Connections per address key, and (second) those not signed in.
    pub(super) per_ip: Mutex<HashMap<IpAddr, (usize, usize)>>,
    pub(super) anonymous_open: AtomicUsize,
    pub(super) poller: std::sync::OnceLock<()>,
    /// Counters.
    pub stats: PushStats,
    /// Each account's last change: the history routes' read-your-writes.
    pub own_writes: crate::own_writes::OwnWrites,
    /// Sessions confirmed live with the engine (a sign-out in the changes forgets them).
    pub sessions: crate::sessions::LiveSessions,
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
            sessions: crate::sessions::LiveSessions::default(),
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
        if let Change::SessionsRevoked { scope, .. } = c.change {
            self.sessions.revoke(account, scope);
        }
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
    pub(super) fn route(&self, account: AccountId) -> (u64, mpsc::Receiver<Arc<Private>>) {
        let (tx, rx) = mpsc::channel(self.lag);
        let id = self.next_route.fetch_add(1, Ordering::Relaxed);
        let mut routes = self.routes.lock().unwrap_or_else(|e| e.into_inner());
        routes.entry(account).or_default().push((id, tx));
        (id, rx)
    }

    pub(super) fn unroute(&self, account: AccountId, id: u64) {
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
    pub(super) fn price(
        &self,
        market: MarketId,
        bid: Price,
        ask: Price,
        update_id: u64,
        at_ns: u64,
    ) {
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
    pub(super) fn messages(&self, c: &ChangeRecord) -> Vec<Private> {
        self.values(c)
            .into_iter()
            .map(|(account, channel, data)| Private {
                account,
                channel,
                data: data.map(|v| Arc::from(v.to_string())),
            })
            .collect()
    }

    pub(super) fn values(&self, c: &ChangeRecord) -> Vec<(AccountId, &'static str, Option<Value>)> {
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
            Change::Increased {
                position,
                market: mid,
                added_quantity,
                price,
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
                let qty = |q: engine_core::num::Qty| {
                    engine_core::num::format_fixed(i128::from(q.0), m.qty_decimals)
                };
                let data = json!({"event": "increased", "position_id": position.0.to_string(),
                    "market": m.symbol, "added_quantity": qty(added_quantity),
                    "price": px(price, m), "quantity": qty(quantity),
                    "entry_price": px(entry_price, m), "margin": money(margin),
                    "leverage": leverage, "fee": money(fee),
                    "liquidation_price": (liquidation_price.0 > 0).then(|| px(liquidation_price, m)),
                    "take_profit": take_profit.map(|p| px(p, m)), "stop_loss": stop_loss.map(|p| px(p, m)),
                    "at": ms(c.at_ns)});
                out.push((account, "positions", Some(data)));
            }
            // Not a channel of its own: tells a connection signed in by this key to close.
            Change::ApiKeyRevoked { key, .. } => {
                out.push((account, "keys", Some(json!({"revoked": key.0}))));
            }
            // Likewise for a connection signed in by a token of a session signed out.
            Change::SessionsRevoked { scope, .. } => {
                out.push((account, "keys", Some(json!({"sessions": scope}))));
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
    pub(super) fn order_values(
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
            Change::AccountMarginCall { level, .. } | Change::StopOut { level, .. } => {
                let notice = match c.change {
                    Change::StopOut { .. } => "stop_out",
                    _ => "account_margin_call",
                };
                let n = json!({"notice": notice, "equity": money(level.equity),
                    "maintenance_margin": money(level.maintenance_margin),
                    "level": (level.level.0 != i64::MAX).then(|| rate(level.level)),
                    "at": ms(c.at_ns)});
                out.push((account, "notices", Some(n)));
            }
            Change::MarginMoved { from, to, amount, .. } => {
                out.push((
                    account,
                    "positions",
                    Some(json!({"event": "margin_moved",
                    "from_position": from.0.to_string(), "to_position": to.0.to_string(),
                    "amount": money(amount), "at": ms(c.at_ns)})),
                ));
            }
            Change::OrderAmended { order, released } => {
                let Some(m) = market(order.market) else { return };
                let mut data = json!(crate::convert::order_dto(&order, m));
                data["event"] = json!("amended");
                data["released"] = json!(money(released));
                out.push((account, "orders", Some(data)));
            }
            Change::CancelScheduled { at_ns, .. } => {
                let n = json!({"notice": "cancel_scheduled", "cancel_at": at_ns.map(ms),
                    "at": ms(c.at_ns)});
                out.push((account, "notices", Some(n)));
            }
            Change::CancelScheduleFired { at_ns, cancelled, .. } => {
                let n = json!({"notice": "cancel_schedule_fired", "cancel_at": ms(at_ns),
                    "cancelled": cancelled, "at": ms(c.at_ns)});
                out.push((account, "notices", Some(n)));
            }
            _ => {}
        }
    }

    /// Takes a connection slot for the address `key` (a [`ClientIp`]: already an IPv6 /64),
    /// signed in or not, or says why not.
    pub(super) fn admit(
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
pub(super) struct Slot {
    pub(super) hub: Arc<Hub>,
    pub(super) key: IpAddr,
    /// Counted among the connections not signed in.
    pub(super) anonymous: bool,
}

impl Slot {
    /// The connection signed in: it leaves the anonymous budget.
    pub(super) fn signed_in(&mut self) {
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
