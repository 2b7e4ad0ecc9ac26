//! The state machine: [`Engine::apply`] takes one command and emits its outputs.
//!
//! Pure and synchronous: no I/O, no clock (time is `Command::ts_ns`), no randomness (hash maps use
//! a fixed hasher and nothing observable depends on their iteration order). The same command log
//! always produces the same outputs and the same [`Engine::state_hash`].
//!
//! Money flows, in one place each (`Engine::settle`), keep the conservation equation of docs/DESIGN.md
//! true after every command; [`Engine::apply`] asserts it in O(1) from running totals and
//! [`Engine::check_conservation`] recomputes it from scratch.
//!
//! One file per concern, each an `impl Engine` block; [`Engine::apply`] (here) is the one
//! dispatch: `accounts` (balances), `prices` (ticks and the triggers they run), `open`, `close`
//! (closes, liquidation, settlement, added margin), `queries` (views), `windows` (request ids
//! and idempotency keys remembered), `invariants` (conservation, summary, state hash).

use crate::table::Table;

use crate::command::{
    AccountId, CloseSize, Command, CommandKind, Credential, IdempotencyKey, Login, MarketId,
    OpenRequest, OrderId, OrderKind, OrderRequest, PositionId, PositionStatus, RequestId, Size,
    Tick, TrailDistance,
};
use crate::config::{ConfigError, EngineConfig, MAX_AMOUNT, MarketConfig};
use crate::event::{
    AccountView, Change, ChangeRecord, CloseInfo, CloseReason, Event, Item, MarketView, OrderEnd,
    OrderView, Output, PositionView, Reason, ReplyData, Sink, StateSummary,
};
use crate::idempotency::{self, KeyEntry};
use crate::index::{MarketIndex, OrderedSet, Triggers};
use crate::math::{Scale, Side};
use crate::num::{Price, Qty, Usdc};
use crate::slab::PosRef;

mod account;
mod accounts;
mod admin;
mod close;
mod controls;
mod counters;
pub(crate) mod cross;
mod cross_funds;
mod desk;
mod dispatch;
mod explain;
pub use explain::ExplainedLevel;
mod financing;
mod groups;
mod invariants;
mod keys;
mod margin_call;
mod netting;
mod open;
mod orders;
mod prices;
mod queries;
mod sessions;
mod sources;
mod totp;

pub(crate) use sources::Quote;
mod trailing;
mod triggers;
mod windows;

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
    pub(crate) trails: crate::trail::Trails,
    /// The last financing period charged (0: none yet).
    pub(crate) financed_period: u64,
    /// Open, halted or reduce-only (operators).
    pub(crate) mode: crate::command::MarketMode,
    /// Maximum leverage of new positions (from the config; operators may change it).
    pub(crate) max_leverage: u32,
    /// Maintenance margin rate of new positions (likewise).
    pub(crate) mmr: crate::num::Ppm,
    /// Open positions and Σ quantity, long then short.
    pub(crate) open_interest: [(u32, i64); 2],
    /// Per side (long, short): Σ entry × quantity of its open positions, in ticks × steps (the
    /// house's unrealized P&L on the side in O(1): `mark × open interest − this`).
    pub(crate) entry_sum: [i128; 2],
    /// The price sources' latest quotes and the guard (markets with `sources` only).
    pub(crate) sources: sources::Sources,
    /// Leverage brackets by notional, ascending (empty: one bracket, the market's own).
    pub(crate) tiers: Vec<crate::tier::Tier>,
    /// Client groups' own brackets here, `[group]` (empty: the market's; no group has any:
    /// empty).
    pub(crate) group_tiers: Vec<Vec<crate::tier::Tier>>,
    /// Its band and its cross accounts' trigger keys.
    pub(crate) cross: cross::CrossMarket,
}

impl Market {
    /// The bracket of a position of `q` entered at `e` (by its notional at entry, rounded up)
    /// under client group `group`'s brackets (the market's if it has none of its own); `None`
    /// without brackets.
    pub(crate) fn tier(&self, group: u16, e: Price, q: Qty) -> Option<crate::tier::Tier> {
        let own = self.group_tiers.get(usize::from(group)).filter(|t| !t.is_empty());
        let tiers = own.unwrap_or(&self.tiers);
        let last = *tiers.last()?;
        let within = |t: &&crate::tier::Tier| self.scale.notional_at_most(e, q, t.cap);
        Some(tiers.iter().find(within).copied().unwrap_or(last))
    }

    /// A new (or newly sized) position's maintenance rate and amount under `group`'s brackets
    /// (the market's rate and 0 without brackets), refused `leverage_above_bracket` when
    /// `leverage` is above its bracket's.
    pub(crate) fn bracket_terms(
        &self,
        group: u16,
        (e, q): (Price, Qty),
        leverage: u32,
    ) -> Result<(crate::num::Ppm, Usdc), Reason> {
        match self.tier(group, e, q) {
            Some(t) if leverage > t.max_leverage => Err(Reason::LeverageAboveBracket),
            Some(t) => Ok((t.mmr, t.cum)),
            None => Ok((self.mmr, Usdc::ZERO)),
        }
    }

    /// A position's maintenance amount (0 without brackets), by the brackets it keeps.
    pub(crate) fn cum(&self, p: &Position) -> Usdc {
        self.tier(p.bracket_group, p.entry, p.qty).map_or(Usdc::ZERO, |t| t.cum)
    }

    /// The mark a position of `side` is valued at: bid for a long, ask for a short.
    fn mark(&self, side: Side) -> Price {
        match side {
            Side::Long => self.bid,
            Side::Short => self.ask,
        }
    }
}

pub(crate) use crate::position::{NewPosition, Position};
pub(crate) use account::Account;

/// The index's view of a position (kept here: the index sits above the position type).
impl Position {
    /// The liquidation price: derived from entry, quantity, margin, rate and the bracket's
    /// maintenance amount (which counts as margin: equity = mmr × notional − cum is the same
    /// equation with `margin + cum`), never stored (the index keeps it as its key; removing the
    /// key derives it again, the same way).
    pub(crate) fn liq(&self, m: &Market) -> Price {
        if self.cross {
            // A cross account's positions are stopped out with the account, never alone.
            return Price(0);
        }
        let margin = add(self.margin(), m.cum(self));
        m.scale.liquidation_price(self.side, self.entry, self.qty, margin, self.mmr())
    }

    pub(crate) fn triggers(&self, m: &Market) -> Triggers {
        Triggers {
            liq: self.liq(m),
            tp: self.tp(),
            sl: self.sl(),
            mc: self.mc,
            mc_armed: self.mc_armed,
        }
    }
}

pub use counters::Counters;

/// The whole business state, owned by one thread.
#[derive(Debug, Clone)]
pub struct Engine {
    pub(crate) cfg: EngineConfig,
    pub(crate) markets: Vec<Market>,
    /// `accounts[i]` is `AccountId(i + 1)`.
    pub(crate) accounts: Vec<Account>,
    pub(crate) logins: crate::logins::LoginIndex,
    /// API keys by public key: (owner, key id); the keys themselves are in their accounts'
    /// lists.
    pub(crate) api_keys: Table<[u8; 32], (AccountId, crate::command::KeyId)>,
    /// The next API key's id.
    pub(crate) next_key_id: u64,
    /// Live sessions' owners (the sessions are in their accounts' lists), by expiry
    /// `(expires_at_ns, id)`, and the next id.
    pub(crate) sessions: Table<crate::command::SessionId, AccountId>,
    pub(crate) session_expiries: OrderedSet,
    pub(crate) next_session_id: u64,
    /// Accounts never charged or paid financing (from `swap_free_logins`).
    pub(crate) swap_free: rustc_hash::FxHashSet<Login>,
    pub(crate) positions: crate::slab::Slab,
    pub(crate) next_position_id: u64,
    pub(crate) orders: Table<OrderId, OrderView>,
    pub(crate) next_order_id: u64,
    /// Good-till-time orders by expiry: `(expires_at_ns, order id)`.
    pub(crate) expiries: OrderedSet,
    /// Armed dead-man's switches: each account's time, and by time `(at_ns, account id)`.
    pub(crate) cancel_schedules: Table<AccountId, u64>,
    pub(crate) cancel_due: OrderedSet,
    /// Running Σ of pending orders' reservations (a term of the conservation equation).
    pub(crate) total_reserved: Usdc,
    pub(crate) insurance_fund: Usdc,
    pub(crate) house_balance: Usdc,
    /// Spread markups and commissions paid by the client groups: lines of the books apart from
    /// the house balance (terms of the conservation equation).
    pub(crate) spread_revenue: Usdc,
    pub(crate) commission_revenue: Usdc,
    /// Each group's terms per market, `[group][market]`, and whether it is swap-free.
    pub(crate) groups: Vec<Vec<crate::config::GroupTerms>>,
    pub(crate) swap_free_groups: Vec<bool>,
    /// Each group's margin-call level (the engine's where the group sets none).
    pub(crate) group_levels: Vec<crate::num::Ppm>,
    /// Each group's cross stop-out level (likewise).
    pub(crate) group_stop_levels: Vec<crate::num::Ppm>,
    pub(crate) total_deposits: Usdc,
    pub(crate) total_withdrawals: Usdc,
    /// Running Σ available and Σ open margins, so conservation is checked in O(1) per command.
    pub(crate) total_available: Usdc,
    pub(crate) total_margin: Usdc,
    /// Replies to recent state-changing requests with their fingerprints, for request-id
    /// deduplication.
    pub(crate) requests: crate::requests::RequestWindow,
    /// Highest request id of a state-changing command applied: a restarted submitter continues
    /// above it (ids of queries may be reused: they are never remembered).
    pub(crate) max_request_id: u64,
    /// Reused for the ids a tick triggers: no allocation per tick once warm.
    pub(crate) scratch: Vec<crate::slab::PosRef>,
    /// Reused for the slots the trigger index returns.
    pub(crate) slot_scratch: Vec<crate::slab::Slot>,
    pub(crate) order_scratch: Vec<OrderId>,
    /// Reused for the positions a close-all closes.
    pub(crate) id_scratch: Vec<PositionId>,
    /// Cross accounts to review before the command ends (indices), and the list being reviewed.
    pub(crate) cross_dirty: Vec<u32>,
    pub(crate) cross_work: Vec<u32>,
    /// Reused for the cross keys a tick reaches, and for one account's sums when re-keyed.
    pub(crate) key_scratch: Vec<crate::index::OrderKey>,
    pub(crate) legs_scratch: Vec<cross::Legs>,
    pub(crate) counters: Counters,
    /// Journal sequence of the last state-changing command applied (queries take none): the
    /// `seq` of the [`ChangeRecord`]s it emits. Restored from snapshots; not hashed.
    pub(crate) seq: u64,
    /// Index of the next change the current command emits.
    pub(crate) change_n: u32,
    /// Receive time of the command being applied.
    pub(crate) now_ns: u64,
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
                trails: crate::trail::Trails::default(),
                financed_period: 0,
                mode: crate::command::MarketMode::Open,
                max_leverage: m.max_leverage,
                mmr: m.maintenance_margin_rate,
                open_interest: [(0, 0); 2],
                entry_sum: [0; 2],
                sources: sources::Sources::default(),
                tiers: crate::tier::tiers(&m.brackets),
                group_tiers: crate::tier::group_tiers(&cfg, &m.symbol),
                cross: cross::CrossMarket::default(),
            })
            .collect();
        let max_accounts = usize_from(cfg.max_accounts);
        let max_positions = usize_from(cfg.max_open_positions);
        let request_window = usize_from(cfg.request_id_window);
        let max_orders = usize_from(cfg.max_pending_orders);
        Ok(Engine {
            markets,
            accounts: Vec::with_capacity(max_accounts),
            logins: crate::logins::LoginIndex::with_capacity(max_accounts),
            api_keys: Table::with_capacity(usize_from(cfg.max_api_keys)),
            next_key_id: 1,
            // Grows past this (on sign-ins, not ticks) rather than reserving every session.
            sessions: Table::with_capacity(usize_from(cfg.max_sessions).min(65_536)),
            session_expiries: OrderedSet::default(),
            next_session_id: 1,
            swap_free: cfg.swap_free_logins.iter().filter_map(|l| Login::new(l)).collect(),
            positions: crate::slab::Slab::with_capacity(max_positions),
            next_position_id: 1,
            orders: Table::with_capacity(max_orders),
            next_order_id: 1,
            expiries: OrderedSet::default(),
            // Armed by bots only: grows past this (rarely) rather than reserving per account.
            cancel_schedules: Table::with_capacity(max_accounts.min(65_536)),
            cancel_due: OrderedSet::default(),
            total_reserved: Usdc::ZERO,
            insurance_fund: Usdc::ZERO,
            house_balance: Usdc::ZERO,
            spread_revenue: Usdc::ZERO,
            commission_revenue: Usdc::ZERO,
            groups: cfg.group_terms(),
            swap_free_groups: cfg.groups.iter().map(|g| g.swap_free).collect(),
            group_levels: cfg
                .groups
                .iter()
                .map(|g| g.margin_call_level.unwrap_or(cfg.margin_call_level))
                .collect(),
            group_stop_levels: cfg
                .groups
                .iter()
                .map(|g| g.stop_out_level.unwrap_or(cfg.stop_out_level))
                .collect(),
            total_deposits: Usdc::ZERO,
            total_withdrawals: Usdc::ZERO,
            total_available: Usdc::ZERO,
            total_margin: Usdc::ZERO,
            requests: crate::requests::RequestWindow::new(request_window),
            max_request_id: 0,
            scratch: Vec::with_capacity(1024),
            slot_scratch: Vec::with_capacity(1024),
            order_scratch: Vec::with_capacity(1024),
            id_scratch: Vec::with_capacity(usize_from(cfg.max_positions_per_account).min(1024)),
            cross_dirty: Vec::with_capacity(1024),
            cross_work: Vec::with_capacity(1024),
            key_scratch: Vec::with_capacity(1024),
            legs_scratch: Vec::with_capacity(2 * cfg.markets.len()),
            counters: Counters::default(),
            seq: 0,
            change_n: 0,
            now_ns: 0,
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

    /// Journal sequence of the last state-changing command applied (0 for a new engine): a
    /// journal replayed onto this engine continues at `seq() + 1`.
    pub fn seq(&self) -> u64 {
        self.seq
    }

    /// Emits one state change of the command being applied, numbered.
    pub(crate) fn record<S: Sink>(&mut self, sink: &mut S, change: Change) {
        debug_assert!(self.seq > 0, "only state-changing commands emit changes");
        sink.emit(Output::Change(ChangeRecord {
            seq: self.seq,
            n: self.change_n,
            at_ns: self.now_ns,
            change,
        }));
        self.change_n += 1;
    }

    /// The time of the last state-changing command (ns since the epoch; 0 before any): the
    /// engine's only clock.
    pub fn now_ns(&self) -> u64 {
        self.now_ns
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
        if !cmd.kind.is_read_only() {
            // The journal numbers exactly these commands, so `seq` is the journal's sequence.
            self.seq += 1;
            self.change_n = 0;
            self.now_ns = cmd.ts_ns;
            if self.seq.is_multiple_of(crate::event::CHECKPOINT_EVERY) {
                self.record(sink, Change::Checkpoint);
            }
            // Time moves only with commands: whatever expired by this one's time ends first, so
            // an expired order can never fill or be counted.
            self.expire_orders(cmd.ts_ns, sink);
            self.fire_cancel_schedules(cmd.ts_ns, sink);
            self.expire_sessions(cmd.ts_ns);
        }
        let rid = cmd.request_id;
        if rid == RequestId::NONE && matches!(cmd.kind, CommandKind::Noop) {
            return;
        }
        let remember =
            rid != RequestId::NONE && !cmd.kind.is_read_only() && self.cfg.request_id_window > 0;
        let keyed = idempotency::keyed(cmd).filter(|_| self.cfg.idempotency_keys_per_account > 0);
        let fingerprint =
            if remember || keyed.is_some() { idempotency::fingerprint(cmd) } else { 0 };
        if remember && let Some((first_fingerprint, first)) = self.requests.get(rid) {
            // Applied before (a redelivery): answer as the first time, change nothing. The same
            // id on a different command (a squatter's, or a bug) gets no one else's result.
            self.counters.duplicates += 1;
            let result =
                if first_fingerprint == fingerprint { first } else { Err(Reason::RequestIdReused) };
            sink.emit(Output::Reply { request_id: rid, result, seq: self.seq });
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
                // Cross accounts the command changed or whose triggers it reached are checked
                // before it is answered.
                if !self.cross_dirty.is_empty() {
                    self.cross_settle(cmd.ts_ns, sink);
                }
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
            self.requests.remember(rid, fingerprint, outcome);
        }
        if rid != RequestId::NONE {
            sink.emit(Output::Reply { request_id: rid, result: outcome, seq: self.seq });
        }
        self.assert_conservation();
    }
}

// ----- pure helpers -----

/// maintenance rate × level, rounded up (a warning a little early, never late); 0 when off.
pub(super) fn margin_call_rate(mmr: crate::num::Ppm, level: crate::num::Ppm) -> crate::num::Ppm {
    let one = i128::from(crate::num::PPM_ONE);
    let rate = crate::num::div_ceil(i128::from(mmr.0) * i128::from(level.0), one);
    crate::num::Ppm(i64::try_from(rate).expect("validated: mmr * level < 1"))
}

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

/// Long: liquidated when bid <= liq. Short: when ask >= liq.
/// A liquidation price of 0 is none: a cross position's (and a long's at 1x).
fn liquidatable(side: Side, mark: Price, liq: Price) -> bool {
    liq.0 > 0
        && match side {
            Side::Long => mark <= liq,
            Side::Short => mark >= liq,
        }
}
