//! The state machine: [`Engine::apply`] takes one command and emits its outputs.
//!
//! Pure and synchronous: no I/O, no clock (time is `Command::ts_ns`), no randomness (hash maps use
//! a fixed hasher and nothing observable depends on their iteration order). The same command log
//! always produces the same outputs and the same [`Engine::state_hash`].
//!
//! Money flows, in one place each (`Engine::settle`), keep the conservation equation of DESIGN.md
//! true after every command; [`Engine::apply`] asserts it in O(1) from running totals and
//! [`Engine::check_conservation`] recomputes it from scratch.

use std::collections::VecDeque;

use rustc_hash::FxHashMap;

use crate::command::{
    AccountId, Command, CommandKind, Credential, IdempotencyKey, Login, MarketId, OpenRequest,
    PositionId, PositionStatus, RequestId, Size, Tick,
};
use crate::config::{ConfigError, EngineConfig, MAX_AMOUNT, MarketConfig};
use crate::event::{
    AccountView, CloseInfo, CloseReason, Event, Item, MarketView, Output, PositionView, Reason,
    ReplyData, Sink, StateSummary,
};
use crate::idempotency::{self, KeyEntry, KeyWindow};
use crate::index::{MarketIndex, Triggers};
use crate::math::{Scale, Side};
use crate::num::{Price, Qty, Usdc};

/// A market's configuration, latest price and trigger index.
#[derive(Debug, Clone)]
pub(crate) struct Market {
    pub(crate) cfg: MarketConfig,
    pub(crate) scale: Scale,
    pub(crate) bid: Price,
    pub(crate) ask: Price,
    pub(crate) update_id: u64,
    pub(crate) updated_at_ns: u64,
    pub(crate) exchange_time_us: u64,
    pub(crate) has_price: bool,
    pub(crate) index: MarketIndex,
}

impl Market {
    /// The mark a position of `side` is valued at: bid for a long, ask for a short.
    fn mark(&self, side: Side) -> Price {
        match side {
            Side::Long => self.bid,
            Side::Short => self.ask,
        }
    }
}

#[derive(Debug, Clone)]
pub(crate) struct Account {
    pub(crate) login: Login,
    pub(crate) credential: Credential,
    pub(crate) available: Usdc,
    /// Open positions, ascending id (ids are assigned increasing, removal keeps order).
    pub(crate) open: Vec<PositionId>,
    /// Closed positions and closed parts, oldest first, at most `closed_history_per_account`.
    pub(crate) history: VecDeque<PositionView>,
    /// This account's recent idempotency keys (client order ids included).
    pub(crate) keys: KeyWindow,
}

#[derive(Debug, Clone, Copy)]
pub(crate) struct Position {
    pub(crate) id: PositionId,
    pub(crate) account: AccountId,
    pub(crate) market: MarketId,
    pub(crate) side: Side,
    pub(crate) qty: Qty,
    pub(crate) entry: Price,
    pub(crate) margin: Usdc,
    pub(crate) leverage: u32,
    pub(crate) liq: Price,
    pub(crate) tp: Option<Price>,
    pub(crate) sl: Option<Price>,
    pub(crate) opened_at_ns: u64,
}

impl Position {
    pub(crate) fn triggers(&self) -> Triggers {
        Triggers { liq: self.liq, tp: self.tp, sl: self.sl }
    }
}

/// Counts of what the engine has done, for metrics. Not part of the state hash.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Counters {
    /// Commands applied (including no-ops).
    pub commands: u64,
    /// Commands rejected with a reason.
    pub rejections: u64,
    /// Ticks applied.
    pub ticks_applied: u64,
    /// Ticks rejected.
    pub ticks_rejected: u64,
    /// Positions opened.
    pub opened: u64,
    /// Take-profit closes.
    pub take_profits: u64,
    /// Stop-loss closes.
    pub stop_losses: u64,
    /// Liquidations.
    pub liquidations: u64,
    /// Closes that left bad debt.
    pub bad_debts: u64,
    /// Commands whose request id was already applied (answered with the first reply).
    pub duplicates: u64,
}

impl Counters {
    /// Number of counters.
    pub const LEN: usize = 10;

    /// The counters in declaration order (for lock-free publication as atomics).
    pub fn to_array(&self) -> [u64; Counters::LEN] {
        let c = self;
        [
            c.commands,
            c.rejections,
            c.ticks_applied,
            c.ticks_rejected,
            c.opened,
            c.take_profits,
            c.stop_losses,
            c.liquidations,
            c.bad_debts,
            c.duplicates,
        ]
    }

    /// Inverse of [`Counters::to_array`].
    pub fn from_array(a: [u64; Counters::LEN]) -> Counters {
        let [
            commands,
            rejections,
            ticks_applied,
            ticks_rejected,
            opened,
            take_profits,
            stop_losses,
            liquidations,
            bad_debts,
            duplicates,
        ] = a;
        Counters {
            commands,
            rejections,
            ticks_applied,
            ticks_rejected,
            opened,
            take_profits,
            stop_losses,
            liquidations,
            bad_debts,
            duplicates,
        }
    }
}

/// The whole business state, owned by one thread.
#[derive(Debug, Clone)]
pub struct Engine {
    pub(crate) cfg: EngineConfig,
    pub(crate) markets: Vec<Market>,
    /// `accounts[i]` is `AccountId(i + 1)`.
    pub(crate) accounts: Vec<Account>,
    pub(crate) logins: FxHashMap<Login, AccountId>,
    pub(crate) positions: FxHashMap<PositionId, Position>,
    pub(crate) next_position_id: u64,
    pub(crate) insurance_fund: Usdc,
    pub(crate) house_balance: Usdc,
    pub(crate) total_deposits: Usdc,
    pub(crate) total_withdrawals: Usdc,
    /// Running Σ available and Σ open margins, so conservation is checked in O(1) per command.
    pub(crate) total_available: Usdc,
    pub(crate) total_margin: Usdc,
    /// Replies to recent state-changing requests with their fingerprints, for request-id
    /// deduplication.
    pub(crate) requests: FxHashMap<RequestId, (u64, Outcome)>,
    pub(crate) request_fifo: VecDeque<RequestId>,
    /// Highest request id of a state-changing command applied: a restarted submitter continues
    /// above it (ids of queries may be reused: they are never remembered).
    pub(crate) max_request_id: u64,
    /// Reused for the ids a tick triggers: no allocation per tick once warm.
    pub(crate) scratch: Vec<PositionId>,
    pub(crate) counters: Counters,
}

pub(crate) use crate::idempotency::Outcome;

impl Engine {
    /// A fresh engine. Validates the configuration and reserves every bounded collection.
    pub fn new(cfg: EngineConfig) -> Result<Engine, ConfigError> {
        cfg.validate()?;
        let markets = cfg
            .markets
            .iter()
            .map(|m| Market {
                cfg: m.clone(),
                scale: Scale::new(m.price_decimals, m.qty_decimals),
                bid: Price(0),
                ask: Price(0),
                update_id: 0,
                updated_at_ns: 0,
                exchange_time_us: 0,
                has_price: false,
                index: MarketIndex::default(),
            })
            .collect();
        let max_accounts = usize_from(cfg.max_accounts);
        let max_positions = usize_from(cfg.max_open_positions);
        let request_window = usize_from(cfg.request_id_window);
        Ok(Engine {
            markets,
            accounts: Vec::with_capacity(max_accounts),
            logins: FxHashMap::with_capacity_and_hasher(max_accounts, Default::default()),
            positions: FxHashMap::with_capacity_and_hasher(max_positions, Default::default()),
            next_position_id: 1,
            insurance_fund: Usdc::ZERO,
            house_balance: Usdc::ZERO,
            total_deposits: Usdc::ZERO,
            total_withdrawals: Usdc::ZERO,
            total_available: Usdc::ZERO,
            total_margin: Usdc::ZERO,
            requests: FxHashMap::with_capacity_and_hasher(request_window, Default::default()),
            request_fifo: VecDeque::with_capacity(request_window),
            max_request_id: 0,
            scratch: Vec::with_capacity(1024),
            counters: Counters::default(),
            cfg,
        })
    }

    /// The configuration the engine runs with.
    pub fn config(&self) -> &EngineConfig {
        &self.cfg
    }

    /// What the engine has done so far.
    pub fn counters(&self) -> Counters {
        self.counters
    }

    /// Number of open positions.
    pub fn open_positions(&self) -> usize {
        self.positions.len()
    }

    /// Applies one command and returns its outputs (allocates a `Vec`: for tests and tools; the
    /// engine thread uses [`Engine::apply`] with its out-ring as the sink).
    pub fn apply_collect(&mut self, cmd: &Command) -> Vec<Output> {
        let mut out = Vec::new();
        self.apply(cmd, &mut out);
        out
    }

    /// Applies one command, writing its outputs to `sink`: for a command with a request id exactly
    /// one [`Output::Reply`] (after any [`Output::Item`]s), plus unsolicited [`Output::Event`]s.
    pub fn apply<S: Sink>(&mut self, cmd: &Command, sink: &mut S) {
        self.counters.commands += 1;
        let rid = cmd.request_id;
        if rid == RequestId::NONE && matches!(cmd.kind, CommandKind::Noop) {
            return;
        }
        let remember =
            rid != RequestId::NONE && !cmd.kind.is_read_only() && self.cfg.request_id_window > 0;
        let keyed = idempotency::keyed(cmd).filter(|_| self.cfg.idempotency_keys_per_account > 0);
        let fingerprint =
            if remember || keyed.is_some() { idempotency::fingerprint(cmd) } else { 0 };
        if remember && let Some(&(first_fingerprint, first)) = self.requests.get(&rid) {
            // Applied before (a redelivery): answer as the first time, change nothing. The same
            // id on a different command (a squatter's, or a bug) gets no one else's result.
            self.counters.duplicates += 1;
            let result =
                if first_fingerprint == fingerprint { first } else { Err(Reason::RequestIdReused) };
            sink.emit(Output::Reply { request_id: rid, result });
            return;
        }
        if remember {
            // Only state changes move it: a query must not change the state hash.
            self.max_request_id = self.max_request_id.max(rid.0);
        }
        let first = keyed.and_then(|(account, key)| self.remembered_key(account, &key, cmd.ts_ns));
        let outcome = match first {
            Some(first) => {
                self.counters.duplicates += 1;
                if first.fingerprint == fingerprint {
                    first.outcome
                } else {
                    Err(idempotency::reused_reason(cmd))
                }
            }
            None => {
                let outcome = self.dispatch(cmd, sink);
                if let Some((account, key)) = keyed
                    && outcome.is_ok()
                {
                    // Only what changed state is remembered: a rejected request changed nothing,
                    // so its retry is simply evaluated again.
                    let entry = KeyEntry { key, fingerprint, at_ns: cmd.ts_ns, outcome };
                    self.remember_key(account, entry);
                }
                outcome
            }
        };
        if outcome.is_err() {
            self.counters.rejections += 1;
        }
        if remember {
            self.remember_request(rid, fingerprint, outcome);
        }
        if rid != RequestId::NONE {
            sink.emit(Output::Reply { request_id: rid, result: outcome });
        }
        self.assert_conservation();
    }

    /// The one dispatch from a command to the function that applies it.
    fn dispatch<S: Sink>(&mut self, cmd: &Command, sink: &mut S) -> Outcome {
        let (rid, ts) = (cmd.request_id, cmd.ts_ns);
        match &cmd.kind {
            CommandKind::Noop => Err(Reason::InvalidRequest),
            CommandKind::CreateAccount { login, credential } => {
                self.create_account(*login, *credential)
            }
            CommandKind::Deposit { account, amount, .. } => self.deposit(*account, *amount),
            CommandKind::Withdraw { account, amount, .. } => self.withdraw(*account, *amount),
            CommandKind::PriceTick(tick) => self.tick(ts, *tick, sink),
            CommandKind::OpenPosition(req) => self.open(ts, req).map(ReplyData::Opened),
            CommandKind::ClosePosition { account, position, quantity, .. } => {
                self.close_manual(ts, *account, *position, *quantity, sink)
            }
            CommandKind::AddMargin { account, position, amount, .. } => {
                self.add_margin(*account, *position, *amount)
            }
            CommandKind::QueryAccount { account } => {
                self.account_view(*account).map(ReplyData::Account)
            }
            CommandKind::QueryPositions { account, status } => {
                self.list_positions(rid, *account, *status, sink)
            }
            CommandKind::QueryPosition { account, position } => {
                self.find_position(*account, *position).map(ReplyData::Position)
            }
            CommandKind::QueryCredential { login } => self.credential(login),
            CommandKind::QueryMarkets => Ok(self.list_markets(rid, sink)),
            CommandKind::QueryStateHash => Ok(ReplyData::State(self.summary())),
            CommandKind::AdminSnapshot => Ok(ReplyData::SnapshotRequested),
        }
    }

    fn remembered_key(
        &self,
        account: AccountId,
        key: &IdempotencyKey,
        now: u64,
    ) -> Option<KeyEntry> {
        let i = self.account_index(account).ok()?;
        self.accounts[i].keys.find(key, now, self.cfg.idempotency_ttl_ns).copied()
    }

    fn remember_key(&mut self, account: AccountId, entry: KeyEntry) {
        let cap = usize_from(self.cfg.idempotency_keys_per_account);
        let ttl = self.cfg.idempotency_ttl_ns;
        if let Ok(i) = self.account_index(account) {
            self.accounts[i].keys.insert(entry, cap, ttl);
        }
    }

    fn remember_request(&mut self, rid: RequestId, fingerprint: u64, outcome: Outcome) {
        if self.request_fifo.len() >= usize_from(self.cfg.request_id_window)
            && let Some(old) = self.request_fifo.pop_front()
        {
            self.requests.remove(&old);
        }
        self.request_fifo.push_back(rid);
        self.requests.insert(rid, (fingerprint, outcome));
    }

    /// Highest request id applied so far (0 if none).
    pub fn max_request_id(&self) -> u64 {
        self.max_request_id
    }

    /// The first reply to `rid` if it is still in the request-id window.
    pub fn remembered_reply(&self, rid: RequestId) -> Option<Result<ReplyData, Reason>> {
        self.requests.get(&rid).map(|r| r.1)
    }

    // ----- accounts -----

    fn create_account(&mut self, login: Login, credential: Credential) -> Outcome {
        if login.is_empty() {
            return Err(Reason::InvalidLogin);
        }
        if self.logins.contains_key(&login) {
            return Err(Reason::DuplicateLogin);
        }
        if self.accounts.len() >= usize_from(self.cfg.max_accounts) {
            return Err(Reason::AccountCapacity);
        }
        let id = AccountId(u32::try_from(self.accounts.len() + 1).map_err(|_| Reason::Overflow)?);
        let initial = if self.cfg.demo_deposits { self.cfg.initial_balance } else { Usdc::ZERO };
        self.accounts.push(Account {
            login,
            credential,
            available: initial,
            open: Vec::with_capacity(usize_from(self.cfg.max_positions_per_account)),
            history: VecDeque::new(),
            keys: KeyWindow::default(),
        });
        self.logins.insert(login, id);
        self.total_deposits = add(self.total_deposits, initial);
        self.total_available = add(self.total_available, initial);
        Ok(ReplyData::AccountCreated { account: id })
    }

    fn account_index(&self, id: AccountId) -> Result<usize, Reason> {
        let i = usize_from(id.0).checked_sub(1).ok_or(Reason::UnknownAccount)?;
        if i < self.accounts.len() { Ok(i) } else { Err(Reason::UnknownAccount) }
    }

    fn deposit(&mut self, account: AccountId, amount: Usdc) -> Outcome {
        let i = self.account_index(account)?;
        check_amount(amount)?;
        self.credit(i, amount);
        self.total_deposits = add(self.total_deposits, amount);
        self.account_view(account).map(ReplyData::Account)
    }

    fn withdraw(&mut self, account: AccountId, amount: Usdc) -> Outcome {
        let i = self.account_index(account)?;
        check_amount(amount)?;
        if self.accounts[i].available < amount {
            return Err(Reason::InsufficientBalance);
        }
        self.debit(i, amount);
        self.total_withdrawals = add(self.total_withdrawals, amount);
        self.account_view(account).map(ReplyData::Account)
    }

    fn credit(&mut self, i: usize, amount: Usdc) {
        assert!(amount.0 >= 0);
        let a = &mut self.accounts[i];
        a.available = add(a.available, amount);
        self.total_available = add(self.total_available, amount);
    }

    fn debit(&mut self, i: usize, amount: Usdc) {
        assert!(amount.0 >= 0 && self.accounts[i].available >= amount, "debit below zero");
        let a = &mut self.accounts[i];
        a.available = sub(a.available, amount);
        self.total_available = sub(self.total_available, amount);
    }

    fn credential(&self, login: &Login) -> Outcome {
        let id = *self.logins.get(login).ok_or(Reason::UnknownAccount)?;
        let i = self.account_index(id)?;
        Ok(ReplyData::Credential { account: id, credential: self.accounts[i].credential })
    }

    // ----- prices -----

    fn market(&self, id: MarketId) -> Result<&Market, Reason> {
        self.markets.get(usize::from(id.0)).ok_or(Reason::UnknownMarket)
    }

    fn validate_tick(&self, tick: &Tick) -> Result<(), Reason> {
        let m = self.market(tick.market)?;
        if tick.bid.0 <= 0 || tick.ask < tick.bid {
            return Err(Reason::InvalidPrice);
        }
        if tick.ask.0 > m.cfg.max_price_ticks {
            return Err(Reason::PriceOutOfRange);
        }
        if m.has_price && tick.update_id <= m.update_id {
            return Err(Reason::StaleUpdate);
        }
        Ok(())
    }

    fn tick<S: Sink>(&mut self, ts: u64, tick: Tick, sink: &mut S) -> Outcome {
        if let Err(reason) = self.validate_tick(&tick) {
            self.counters.ticks_rejected += 1;
            let ev =
                Event::PriceRejected { market: tick.market, reason, update_id: tick.update_id };
            sink.emit(Output::Event(ev));
            return Err(reason);
        }
        self.counters.ticks_applied += 1;
        let mi = usize::from(tick.market.0);
        let m = &mut self.markets[mi];
        m.bid = tick.bid;
        m.ask = tick.ask;
        m.update_id = tick.update_id;
        m.updated_at_ns = ts;
        m.exchange_time_us = tick.exchange_time_us;
        m.has_price = true;

        // Take-profit and stop-loss first, then liquidations; each group in ascending id order.
        let mut ids = std::mem::take(&mut self.scratch);
        ids.clear();
        self.markets[mi].index.collect_tp_sl(tick.bid, tick.ask, &mut ids);
        ids.sort_unstable();
        ids.dedup();
        for &id in &ids {
            let p = self.positions[&id];
            let mark = self.markets[mi].mark(p.side);
            let reason = match (p.side, p.tp) {
                (Side::Long, Some(tp)) if mark >= tp => CloseReason::TakeProfit,
                (Side::Short, Some(tp)) if mark <= tp => CloseReason::TakeProfit,
                _ => CloseReason::StopLoss,
            };
            let view = self.close_part(ts, id, p.qty, reason, sink);
            sink.emit(Output::Event(Event::PositionClosed(view)));
        }
        ids.clear();
        self.markets[mi].index.collect_liquidations(tick.bid, tick.ask, &mut ids);
        ids.sort_unstable();
        for &id in &ids {
            let view = self.liquidate(ts, id, sink);
            sink.emit(Output::Event(Event::PositionClosed(view)));
        }
        ids.clear();
        self.scratch = ids;
        Ok(ReplyData::PriceApplied)
    }

    /// The mark a `side` position trades at now, if fresh.
    fn fresh_mark(&self, market: MarketId, side: Side, ts: u64) -> Result<Price, Reason> {
        let m = self.market(market)?;
        if !m.has_price {
            return Err(Reason::NoPrice);
        }
        if ts.saturating_sub(m.updated_at_ns) > m.cfg.max_price_age_ns {
            return Err(Reason::StalePrice);
        }
        Ok(m.mark(side))
    }

    // ----- opening -----

    fn open(&mut self, ts: u64, req: &OpenRequest) -> Result<PositionView, Reason> {
        let ai = self.account_index(req.account)?;
        let m = self.market(req.market)?;
        let cfg = &m.cfg;
        if req.leverage == 0 || req.leverage > cfg.max_leverage {
            return Err(Reason::InvalidLeverage);
        }
        match req.size {
            Size::Margin(a) => check_amount(a)?,
            Size::Quantity(q) if q.0 <= 0 || q.0 > cfg.max_qty_steps => {
                return Err(Reason::InvalidQuantity);
            }
            Size::Quantity(_) => {}
        }
        let price_ok = |p: Option<Price>| p.is_none_or(|p| p.0 > 0 && p.0 <= cfg.max_price_ticks);
        if !price_ok(req.expected_price) {
            return Err(Reason::InvalidPrice);
        }
        if !price_ok(req.take_profit) {
            return Err(Reason::InvalidTakeProfit);
        }
        if !price_ok(req.stop_loss) {
            return Err(Reason::InvalidStopLoss);
        }
        // Fill: a long buys at the ask, a short sells at the bid.
        let fill_side = match req.side {
            Side::Long => Side::Short,
            Side::Short => Side::Long,
        };
        let e = self.fresh_mark(req.market, fill_side, ts)?;
        check_slippage(req, e)?;
        let (q, margin, fee) = size_position(m, req, e)?;
        if q.0 < cfg.min_qty {
            return Err(Reason::QuantityTooSmall);
        }
        if margin < cfg.min_margin {
            return Err(Reason::MarginTooSmall);
        }
        check_tp_sl(req, e)?;
        let account = &self.accounts[ai];
        if account.open.len() >= usize_from(self.cfg.max_positions_per_account) {
            return Err(Reason::TooManyPositions);
        }
        if self.positions.len() >= usize_from(self.cfg.max_open_positions) {
            return Err(Reason::PositionCapacity);
        }
        let cost = margin.checked_add(fee).ok_or(Reason::Overflow)?;
        if account.available < cost {
            return Err(Reason::InsufficientBalance);
        }
        let liq = m.scale.liquidation_price(req.side, e, q, margin, cfg.maintenance_margin_rate);
        if liquidatable(req.side, m.mark(req.side), liq) {
            return Err(Reason::WouldLiquidate);
        }

        // Accepted: from here on nothing can fail.
        let id = self.allocate_position_id();
        let p = Position {
            id,
            account: req.account,
            market: req.market,
            side: req.side,
            qty: q,
            entry: e,
            margin,
            leverage: req.leverage,
            liq,
            tp: req.take_profit,
            sl: req.stop_loss,
            opened_at_ns: ts,
        };
        self.debit(ai, cost);
        self.house_balance = add(self.house_balance, fee);
        self.total_margin = add(self.total_margin, margin);
        self.markets[usize::from(req.market.0)].index.insert(id, req.side, p.triggers());
        self.accounts[ai].open.push(id);
        let fresh = self.positions.insert(id, p).is_none();
        assert!(fresh, "position id reused");
        self.counters.opened += 1;
        Ok(self.view(&p))
    }

    /// The next position id (open positions and partial closes' closed parts share the
    /// sequence, so no two views ever share an id).
    fn allocate_position_id(&mut self) -> PositionId {
        let id = PositionId(self.next_position_id);
        self.next_position_id += 1;
        id
    }

    // ----- closing -----

    fn owned(&self, account: AccountId, id: PositionId) -> Result<Position, Reason> {
        let ai = self.account_index(account)?;
        match self.positions.get(&id) {
            Some(p) if p.account == account => Ok(*p),
            _ if self.accounts[ai].history.iter().any(|h| h.id == id) => {
                Err(Reason::PositionClosed)
            }
            _ => Err(Reason::UnknownPosition),
        }
    }

    fn close_manual<S: Sink>(
        &mut self,
        ts: u64,
        account: AccountId,
        id: PositionId,
        quantity: Option<Qty>,
        sink: &mut S,
    ) -> Outcome {
        let p = self.owned(account, id)?;
        let qc = quantity.unwrap_or(p.qty);
        if qc.0 <= 0 || qc > p.qty {
            return Err(Reason::InvalidQuantity);
        }
        let min_qty = self.market(p.market)?.cfg.min_qty;
        if qc < p.qty && p.qty.0 - qc.0 < min_qty {
            return Err(Reason::QuantityTooSmall);
        }
        self.fresh_mark(p.market, p.side, ts)?;
        Ok(ReplyData::Closed(self.close_part(ts, id, qc, CloseReason::Manual, sink)))
    }

    /// Closes `qc` of position `id` at its market's current mark (manual, TP, SL). Releases margin
    /// pro rata (rounded down, so what stays locked never shrinks below its share).
    fn close_part<S: Sink>(
        &mut self,
        ts: u64,
        id: PositionId,
        qc: Qty,
        reason: CloseReason,
        sink: &mut S,
    ) -> PositionView {
        let p = self.positions[&id];
        assert!(qc.0 > 0 && qc <= p.qty, "close quantity out of range");
        let full = qc == p.qty;
        // A partial close's closed part is a position of its own in the history (its own id
        // from the same sequence, its close info naming the position it came from).
        let part = if full { p.id } else { self.allocate_position_id() };
        let m = &self.markets[usize::from(p.market.0)];
        let mark = m.mark(p.side);
        let released = if full {
            p.margin
        } else {
            Usdc(crate::num::div_floor(p.margin.0 * i128::from(qc.0), i128::from(p.qty.0)))
        };
        let pnl = m.scale.pnl_floor(p.side, p.entry, mark, qc);
        let fee = m.scale.rate_of_value_ceil(m.cfg.close_fee_rate, mark, qc);
        let value = sub(add(released, pnl), fee);
        let info = CloseInfo {
            exit_price: mark,
            realized_pnl: pnl,
            fee,
            payout: Usdc(value.0.max(0)),
            reason,
            closed_at_ns: ts,
            position: p.id,
        };
        self.settle(&p, released, info, false, sink);
        if full {
            self.remove_position(&p);
        } else {
            self.shrink_position(&p, qc, released);
        }
        match reason {
            CloseReason::TakeProfit => self.counters.take_profits += 1,
            CloseReason::StopLoss => self.counters.stop_losses += 1,
            _ => {}
        }
        let closed = PositionView { id: part, ..self.closed_view(&p, qc, released, info) };
        self.remember_closed(p.account, closed);
        closed
    }

    /// Liquidates the whole position at its market's current mark. Fee = min(max(equity, 0),
    /// rate * p * q) to the insurance fund; the trader gets max(equity - fee, 0).
    fn liquidate<S: Sink>(&mut self, ts: u64, id: PositionId, sink: &mut S) -> PositionView {
        let p = self.positions[&id];
        let m = &self.markets[usize::from(p.market.0)];
        let mark = m.mark(p.side);
        debug_assert!(liquidatable(p.side, mark, p.liq));
        let pnl = m.scale.pnl_floor(p.side, p.entry, mark, p.qty);
        let equity = add(p.margin, pnl);
        let fee_full = m.scale.rate_of_value_ceil(m.cfg.liquidation_fee_rate, mark, p.qty);
        let fee = Usdc(equity.0.max(0).min(fee_full.0));
        let info = CloseInfo {
            exit_price: mark,
            realized_pnl: pnl,
            fee,
            payout: Usdc(sub(equity, fee).0.max(0)),
            reason: CloseReason::Liquidation,
            closed_at_ns: ts,
            position: p.id,
        };
        self.settle(&p, p.margin, info, true, sink);
        self.remove_position(&p);
        self.counters.liquidations += 1;
        let closed = self.closed_view(&p, p.qty, p.margin, info);
        self.remember_closed(p.account, closed);
        closed
    }

    /// Moves the money of a close. `released` margin leaves the position; the trader is owed
    /// `value = released + pnl - fee` and gets `max(value, 0)`; the fee goes to the insurance fund
    /// (liquidation) or the house (close); a deficit (`value < 0`) is paid by the insurance fund,
    /// then the house; the house takes the rest: the trader's loss, or pays the trader's profit.
    fn settle<S: Sink>(
        &mut self,
        p: &Position,
        released: Usdc,
        info: CloseInfo,
        fee_to_insurance: bool,
        sink: &mut S,
    ) {
        let value = sub(add(released, info.realized_pnl), info.fee);
        assert_eq!(info.payout, Usdc(value.0.max(0)), "payout is max(value, 0)");
        let deficit = Usdc((-value.0).max(0));
        let insurance_paid = Usdc(deficit.0.min(self.insurance_fund.0));
        let house_paid = sub(deficit, insurance_paid);
        let insurance_fee = if fee_to_insurance { info.fee } else { Usdc::ZERO };
        let insurance_delta = sub(insurance_fee, insurance_paid);
        // Conservation: released = payout + Δinsurance + Δhouse.
        let house_delta = sub(sub(released, info.payout), insurance_delta);

        self.total_margin = sub(self.total_margin, released);
        self.credit(usize_from(p.account.0) - 1, info.payout);
        self.insurance_fund = add(self.insurance_fund, insurance_delta);
        self.house_balance = add(self.house_balance, house_delta);
        assert!(self.insurance_fund.0 >= 0, "insurance fund below zero");
        if deficit.0 > 0 {
            self.counters.bad_debts += 1;
            sink.emit(Output::Event(Event::BadDebt {
                position: p.id,
                account: p.account,
                amount: deficit,
                insurance_paid,
                house_paid,
            }));
        }
    }

    fn remove_position(&mut self, p: &Position) {
        self.markets[usize::from(p.market.0)].index.remove(p.id, p.side, p.triggers());
        self.positions.remove(&p.id);
        let open = &mut self.accounts[usize_from(p.account.0) - 1].open;
        let at = open.binary_search(&p.id).expect("open list holds every open position");
        open.remove(at);
    }

    fn shrink_position(&mut self, p: &Position, qc: Qty, released: Usdc) {
        let m = &self.markets[usize::from(p.market.0)];
        let qty = Qty(p.qty.0 - qc.0);
        let margin = sub(p.margin, released);
        let liq =
            m.scale.liquidation_price(p.side, p.entry, qty, margin, m.cfg.maintenance_margin_rate);
        self.markets[usize::from(p.market.0)].index.move_liq(p.id, p.side, p.liq, liq);
        let pos = self.positions.get_mut(&p.id).expect("position is open");
        pos.qty = qty;
        pos.margin = margin;
        pos.liq = liq;
    }

    fn remember_closed(&mut self, account: AccountId, closed: PositionView) {
        let limit = usize_from(self.cfg.closed_history_per_account);
        if limit == 0 {
            return;
        }
        let history = &mut self.accounts[usize_from(account.0) - 1].history;
        if history.len() >= limit {
            history.pop_front();
        }
        history.push_back(closed);
    }

    // ----- margin -----

    fn add_margin(&mut self, account: AccountId, id: PositionId, amount: Usdc) -> Outcome {
        let p = self.owned(account, id)?;
        check_amount(amount)?;
        let ai = self.account_index(account)?;
        if self.accounts[ai].available < amount {
            return Err(Reason::InsufficientBalance);
        }
        let margin = p.margin.checked_add(amount).ok_or(Reason::Overflow)?;
        if margin > MAX_AMOUNT {
            return Err(Reason::InvalidAmount);
        }
        let m = &self.markets[usize::from(p.market.0)];
        let liq = m.scale.liquidation_price(
            p.side,
            p.entry,
            p.qty,
            margin,
            m.cfg.maintenance_margin_rate,
        );
        self.debit(ai, amount);
        self.total_margin = add(self.total_margin, amount);
        self.markets[usize::from(p.market.0)].index.move_liq(id, p.side, p.liq, liq);
        let pos = self.positions.get_mut(&id).expect("owned position is open");
        pos.margin = margin;
        pos.liq = liq;
        let pos = *pos;
        Ok(ReplyData::Position(self.view(&pos)))
    }

    // ----- views and queries -----

    fn view(&self, p: &Position) -> PositionView {
        let m = &self.markets[usize::from(p.market.0)];
        let upnl = if m.has_price {
            m.scale.pnl_floor(p.side, p.entry, m.mark(p.side), p.qty)
        } else {
            Usdc::ZERO
        };
        PositionView {
            id: p.id,
            account: p.account,
            market: p.market,
            side: p.side,
            status: PositionStatus::Open,
            quantity: p.qty,
            entry_price: p.entry,
            margin: p.margin,
            leverage: p.leverage,
            liquidation_price: p.liq,
            take_profit: p.tp,
            stop_loss: p.sl,
            unrealized_pnl: upnl,
            opened_at_ns: p.opened_at_ns,
            close: None,
        }
    }

    fn closed_view(&self, p: &Position, qc: Qty, released: Usdc, info: CloseInfo) -> PositionView {
        PositionView {
            status: PositionStatus::Closed,
            quantity: qc,
            margin: released,
            unrealized_pnl: Usdc::ZERO,
            close: Some(info),
            ..self.view(p)
        }
    }

    fn account_view(&self, id: AccountId) -> Result<AccountView, Reason> {
        let a = &self.accounts[self.account_index(id)?];
        let mut locked = Usdc::ZERO;
        let mut upnl = Usdc::ZERO;
        for pid in &a.open {
            let v = self.view(&self.positions[pid]);
            locked = add(locked, v.margin);
            upnl = add(upnl, v.unrealized_pnl);
        }
        Ok(AccountView {
            id,
            available: a.available,
            locked_margin: locked,
            unrealized_pnl: upnl,
            equity: add(add(a.available, locked), upnl),
            open_positions: u32::try_from(a.open.len()).unwrap_or(u32::MAX),
        })
    }

    fn list_positions<S: Sink>(
        &self,
        rid: RequestId,
        account: AccountId,
        status: PositionStatus,
        sink: &mut S,
    ) -> Outcome {
        let a = &self.accounts[self.account_index(account)?];
        let mut count = 0u32;
        let mut emit = |v: PositionView| {
            count += 1;
            sink.emit(Output::Item { request_id: rid, item: Item::Position(v) });
        };
        match status {
            PositionStatus::Open => {
                a.open.iter().for_each(|id| emit(self.view(&self.positions[id])))
            }
            PositionStatus::Closed => a.history.iter().rev().for_each(|v| emit(*v)),
        }
        Ok(ReplyData::List { count })
    }

    fn find_position(&self, account: AccountId, id: PositionId) -> Result<PositionView, Reason> {
        let ai = self.account_index(account)?;
        if let Some(p) = self.positions.get(&id).filter(|p| p.account == account) {
            return Ok(self.view(p));
        }
        self.accounts[ai]
            .history
            .iter()
            .rev()
            .find(|v| v.id == id)
            .copied()
            .ok_or(Reason::UnknownPosition)
    }

    fn list_markets<S: Sink>(&self, rid: RequestId, sink: &mut S) -> ReplyData {
        for (i, m) in self.markets.iter().enumerate() {
            let view = MarketView {
                market: MarketId(u16::try_from(i).expect("validated: at most 65535 markets")),
                bid: m.bid,
                ask: m.ask,
                update_id: m.update_id,
                updated_at_ns: m.updated_at_ns,
            };
            sink.emit(Output::Item { request_id: rid, item: Item::Market(view) });
        }
        ReplyData::List { count: u32::try_from(self.markets.len()).unwrap_or(u32::MAX) }
    }

    // ----- invariants -----

    fn assert_conservation(&self) {
        let lhs = sub(self.total_deposits, self.total_withdrawals);
        let rhs = add(
            add(self.total_available, self.total_margin),
            add(self.insurance_fund, self.house_balance),
        );
        assert_eq!(lhs, rhs, "conservation violated");
    }

    /// Recomputes every total from scratch and checks DESIGN.md's conservation equation, that no
    /// balance is negative, and that no open position is liquidatable at its market's mark.
    /// O(accounts + positions): for tests and audits, not the hot path.
    pub fn check_conservation(&self) -> Result<(), String> {
        let available = self.accounts.iter().fold(Usdc::ZERO, |s, a| add(s, a.available));
        let margin = self.positions.values().fold(Usdc::ZERO, |s, p| add(s, p.margin));
        if available != self.total_available || margin != self.total_margin {
            return Err(format!(
                "running totals drifted: available {available:?} vs {:?}, margin {margin:?} vs {:?}",
                self.total_available, self.total_margin
            ));
        }
        let lhs = sub(self.total_deposits, self.total_withdrawals);
        let rhs = add(add(available, margin), add(self.insurance_fund, self.house_balance));
        if lhs != rhs {
            return Err(format!("deposits - withdrawals {lhs:?} != held {rhs:?}"));
        }
        if let Some(a) = self.accounts.iter().find(|a| a.available.0 < 0) {
            return Err(format!("negative balance: {:?}", a.login));
        }
        if self.insurance_fund.0 < 0 {
            return Err("negative insurance fund".into());
        }
        for p in self.positions.values() {
            let m = &self.markets[usize::from(p.market.0)];
            if m.has_price && liquidatable(p.side, m.mark(p.side), p.liq) {
                return Err(format!("position {} left open past its liquidation price", p.id.0));
            }
        }
        Ok(())
    }

    /// The state hash and conservation totals.
    pub fn summary(&self) -> StateSummary {
        StateSummary {
            hash: self.state_hash(),
            net_deposits: sub(self.total_deposits, self.total_withdrawals),
            total_available: self.total_available,
            total_margin: self.total_margin,
            insurance_fund: self.insurance_fund,
            house_balance: self.house_balance,
            accounts: u32::try_from(self.accounts.len()).unwrap_or(u32::MAX),
            open_positions: u32::try_from(self.positions.len()).unwrap_or(u32::MAX),
        }
    }

    /// SHA-256 over a canonical encoding of the business state: markets' prices, accounts in id
    /// order with their history, positions in id order, the funds, and the idempotency window in
    /// arrival order. Counters and configuration are not included.
    pub fn state_hash(&self) -> [u8; 32] {
        let mut h = crate::hash::Canonical::new();
        h.u64(self.markets.len() as u64);
        for m in &self.markets {
            h.bool(m.has_price).i64(m.bid.0).i64(m.ask.0).u64(m.update_id);
            h.u64(m.updated_at_ns).u64(m.exchange_time_us);
        }
        h.u64(self.accounts.len() as u64);
        for a in &self.accounts {
            h.bytes(a.login.as_bytes()).bytes(a.credential.as_bytes()).i128(a.available.0);
            h.u64(a.open.len() as u64);
            a.open.iter().for_each(|id| {
                h.u64(id.0);
            });
            h.u64(a.history.len() as u64);
            a.history.iter().for_each(|v| {
                h.view(v);
            });
            h.u64(a.keys.len() as u64);
            for k in a.keys.iter() {
                h.bytes(k.key.as_bytes()).u64(k.fingerprint).u64(k.at_ns);
                h.bytes(&crate::persist::encode_value(&k.outcome));
            }
        }
        let mut ids: Vec<&PositionId> = self.positions.keys().collect();
        ids.sort_unstable();
        h.u64(ids.len() as u64);
        for id in ids {
            h.view(&self.view(&self.positions[id]));
        }
        h.u64(self.next_position_id);
        for v in
            [self.insurance_fund, self.house_balance, self.total_deposits, self.total_withdrawals]
        {
            h.i128(v.0);
        }
        h.u64(self.max_request_id).u64(self.request_fifo.len() as u64);
        for rid in &self.request_fifo {
            let (fingerprint, outcome) = &self.requests[rid];
            h.u64(rid.0).u64(*fingerprint).bytes(&crate::persist::encode_value(outcome));
        }
        h.finish()
    }
}

// ----- pure helpers -----

pub(crate) fn usize_from(n: u32) -> usize {
    usize::try_from(n).expect("u32 fits usize on supported targets")
}

/// Money addition that cannot overflow for validated inputs; overflow is a bug, so it is loud.
fn add(a: Usdc, b: Usdc) -> Usdc {
    a.checked_add(b).expect("money overflow: amounts are bounded by validation")
}

fn sub(a: Usdc, b: Usdc) -> Usdc {
    a.checked_sub(b).expect("money overflow: amounts are bounded by validation")
}

fn check_amount(amount: Usdc) -> Result<(), Reason> {
    if amount.0 <= 0 || amount > MAX_AMOUNT { Err(Reason::InvalidAmount) } else { Ok(()) }
}

/// Long: liquidated when bid <= liq (liq 0 = never). Short: when ask >= liq.
fn liquidatable(side: Side, mark: Price, liq: Price) -> bool {
    match side {
        Side::Long => liq.0 > 0 && mark <= liq,
        Side::Short => mark >= liq,
    }
}

/// Long rejects if e > expected * (1 + bps/10^4); short if e < expected * (1 - bps/10^4).
fn check_slippage(req: &OpenRequest, e: Price) -> Result<(), Reason> {
    let Some(expected) = req.expected_price else { return Ok(()) };
    let e = i128::from(e.0) * 10_000;
    let bps = i128::from(req.max_slippage_bps);
    let too_far = match req.side {
        Side::Long => e > i128::from(expected.0) * (10_000 + bps),
        Side::Short => e < i128::from(expected.0) * (10_000 - bps),
    };
    if too_far { Err(Reason::SlippageExceeded) } else { Ok(()) }
}

/// TP on the profitable side of the fill, SL on the losing side.
fn check_tp_sl(req: &OpenRequest, e: Price) -> Result<(), Reason> {
    let (tp_ok, sl_ok) = match req.side {
        Side::Long => {
            (req.take_profit.is_none_or(|tp| tp > e), req.stop_loss.is_none_or(|sl| sl < e))
        }
        Side::Short => {
            (req.take_profit.is_none_or(|tp| tp < e), req.stop_loss.is_none_or(|sl| sl > e))
        }
    };
    if !tp_ok {
        return Err(Reason::InvalidTakeProfit);
    }
    if !sl_ok {
        return Err(Reason::InvalidStopLoss);
    }
    Ok(())
}

/// Quantity, margin and open fee. Margin form: q = floor(m * L / e), margin exactly m, fee on
/// m * L. Quantity form: margin = ceil(q * e / L), fee on q * e (rounded up).
fn size_position(m: &Market, req: &OpenRequest, e: Price) -> Result<(Qty, Usdc, Usdc), Reason> {
    let rate = m.cfg.open_fee_rate;
    match req.size {
        Size::Margin(margin) => {
            let q = m.scale.qty_from_margin(margin, req.leverage, e).ok_or(Reason::Overflow)?;
            if q.0 > m.cfg.max_qty_steps {
                return Err(Reason::InvalidQuantity);
            }
            let notional = Usdc(margin.0 * i128::from(req.leverage));
            let fee = Scale::fee_on_notional(notional, rate).ok_or(Reason::Overflow)?;
            Ok((q, margin, fee))
        }
        Size::Quantity(q) => {
            let margin = m.scale.margin_from_qty(q, req.leverage, e);
            Ok((q, margin, m.scale.rate_of_value_ceil(rate, e, q)))
        }
    }
}
