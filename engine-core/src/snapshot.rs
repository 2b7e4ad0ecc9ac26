//! The engine's state as plain, canonical data: what a snapshot file holds.
//!
//! [`Engine::snapshot`] lists everything in a canonical order (accounts by id, positions by id,
//! idempotency windows oldest first), so equal states give equal bytes. [`Engine::restore`]
//! rebuilds the maps and trigger indexes from it and checks every invariant before the engine may
//! run: the markets must match the configuration, the limits must hold, and money must conserve.

use serde::{Deserialize, Serialize};

use crate::command::{
    AccountId, Credential, Login, MarketId, PositionId, RequestId, TrailDistance,
};
use crate::event::{OrderView, PositionView, Reason, ReplyData};
use crate::idempotency::KeyEntry;
use crate::math::Side;
use crate::num::{Price, Qty, Usdc};
use crate::state::{Counters, Engine, Position};

/// Why a snapshot file could not be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SnapshotError {
    /// Not a snapshot, wrong version, or cut short.
    #[error("not a complete hundredx snapshot (bad magic or length)")]
    Malformed,
    /// The payload's checksum does not match.
    #[error("snapshot checksum mismatch")]
    Checksum,
    /// The payload does not decode.
    #[error("snapshot payload does not decode")]
    Undecodable,
    /// The restored state's hash differs from the one recorded in the file.
    #[error("restored state hash differs from the recorded one")]
    HashMismatch,
    /// The snapshot does not fit the configuration (different markets, limits too small).
    #[error("snapshot does not fit the configuration: {0}")]
    Config(String),
}

/// A market's identity and latest price.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct MarketSnapshot {
    /// Symbol (checked against the configuration on restore).
    pub symbol: String,
    /// Price decimals (checked).
    pub price_decimals: u32,
    /// Quantity decimals (checked).
    pub qty_decimals: u32,
    /// A price has been received.
    pub has_price: bool,
    /// Latest bid.
    pub bid: Price,
    /// Latest ask.
    pub ask: Price,
    /// Latest update id.
    pub update_id: u64,
    /// Receive time of the latest tick.
    pub updated_at_ns: u64,
    /// Exchange time of the latest tick.
    pub exchange_time_us: u64,
    /// The last financing period charged.
    pub financed_period: u64,
    /// Open, halted or reduce-only.
    pub mode: crate::command::MarketMode,
    /// Maximum leverage of new positions.
    pub max_leverage: u32,
    /// Maintenance margin rate of new positions.
    pub mmr: crate::num::Ppm,
}

/// An account (its id is its index + 1).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AccountSnapshot {
    /// Login.
    pub login: Login,
    /// Credential.
    pub credential: Credential,
    /// Available balance.
    pub available: Usdc,
    /// Closed positions, oldest first.
    pub history: Vec<PositionView>,
    /// Idempotency keys, oldest first.
    pub keys: Vec<KeyEntry>,
    /// Holds the operator role.
    pub admin: bool,
}

/// An open position.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PositionSnapshot {
    /// Id.
    pub id: PositionId,
    /// Owner.
    pub account: AccountId,
    /// Market.
    pub market: MarketId,
    /// Side.
    pub side: Side,
    /// Quantity.
    pub qty: Qty,
    /// Entry price.
    pub entry: Price,
    /// Margin.
    pub margin: Usdc,
    /// Leverage.
    pub leverage: u32,
    /// Liquidation price as stored (not recomputed: it is part of the state).
    pub liq: Price,
    /// Take-profit.
    pub tp: Option<Price>,
    /// Stop-loss.
    pub sl: Option<Price>,
    /// Open time.
    pub opened_at_ns: u64,
    /// Margin-call price as stored.
    pub mc: Price,
    /// Margin call armed (not called since the mark was last above the level).
    pub mc_armed: bool,
    /// Trailing stop distance.
    pub trail: Option<TrailDistance>,
    /// The best mark since the trailing stop was set (0 without one).
    pub trail_peak: Price,
    /// The maintenance margin rate it opened with.
    pub mmr: crate::num::Ppm,
}

/// The one conversion each way between the engine's position and its snapshot form: a field
/// added to the snapshot fails to compile here until the position has it too (destructured).
impl From<&Position> for PositionSnapshot {
    fn from(p: &Position) -> PositionSnapshot {
        PositionSnapshot {
            id: p.id,
            account: p.account,
            market: p.market,
            side: p.side,
            qty: p.qty,
            entry: p.entry,
            margin: p.margin(),
            leverage: p.leverage,
            liq: Price(0), // derived: filled in by the engine, which holds the markets' scales
            tp: p.tp(),
            sl: p.sl(),
            opened_at_ns: p.opened_at_ns,
            mc: p.mc,
            mc_armed: p.mc_armed,
            trail: p.trail(),
            trail_peak: Price(0), // filled in by the engine, which holds the books
            mmr: p.mmr(),
        }
    }
}

impl PositionSnapshot {
    /// What [`Position`] can hold (it packs options and the margin); checked before restoring.
    pub(crate) fn fits(&self) -> Result<(), String> {
        let positive = |p: Option<Price>| p.is_none_or(|p| p.0 > 0);
        let trail_ok = match self.trail {
            None => true,
            Some(TrailDistance::Price(d)) => d.0 > 0,
            Some(TrailDistance::Bps(b)) => b > 0,
        };
        let ok = self.margin.0 >= 0
            && self.margin <= crate::config::MAX_AMOUNT
            && (0..crate::num::PPM_ONE).contains(&self.mmr.0)
            && positive(self.tp)
            && positive(self.sl)
            && trail_ok
            && self.mc.0 >= 0
            && self.id.0 < crate::slab::POSITION_ID_LIMIT;
        if ok { Ok(()) } else { Err(format!("position {} out of bounds", self.id.0)) }
    }
}

impl From<&PositionSnapshot> for Position {
    fn from(p: &PositionSnapshot) -> Position {
        let PositionSnapshot {
            id,
            account,
            market,
            side,
            qty,
            entry,
            margin,
            leverage,
            liq: _, // derived again, and checked against this by the restore
            tp,
            sl,
            opened_at_ns,
            mc,
            mc_armed,
            trail,
            trail_peak: _, // a place in the book, rebuilt from the peak on restore
            mmr,
        } = *p;
        let n = crate::state::NewPosition {
            id,
            account,
            market,
            side,
            qty,
            entry,
            margin,
            leverage,
            mc,
            tp,
            sl,
            opened_at_ns,
            mmr,
            cross: false,     // the account's mode says (set by the restore)
            bracket_group: 0, // the snapshot's `bracket_groups` say (set by the restore)
        };
        let mut pos = Position::new(n);
        pos.mc_armed = mc_armed;
        pos.set_trail(trail);
        pos
    }
}

/// The whole business state.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct EngineSnapshot {
    /// Markets in id order.
    pub markets: Vec<MarketSnapshot>,
    /// Accounts in id order.
    pub accounts: Vec<AccountSnapshot>,
    /// Open positions in id order.
    pub positions: Vec<PositionSnapshot>,
    /// Next position id.
    pub next_position_id: u64,
    /// Pending orders in id order.
    pub orders: Vec<OrderView>,
    /// Next order id.
    pub next_order_id: u64,
    /// Insurance fund.
    pub insurance_fund: Usdc,
    /// House balance.
    pub house_balance: Usdc,
    /// Σ deposits.
    pub total_deposits: Usdc,
    /// Σ withdrawals.
    pub total_withdrawals: Usdc,
    /// Request id window, oldest first, with each request's fingerprint.
    pub requests: Vec<(RequestId, u64, Result<ReplyData, Reason>)>,
    /// Highest request id applied.
    pub max_request_id: u64,
    /// Counters (not hashed, kept so metrics continue across restarts).
    pub counters: Counters,
    /// Journal sequence of the last state-changing command in this state (not hashed).
    pub seq: u64,
    /// Each market's price sources, in market order (empty for a market without sources).
    /// Last, so that a snapshot written before sources existed decodes with none (see
    /// `persist::decode_snapshot`).
    pub sources: Vec<SourcesSnapshot>,
    /// Accounts outside the default client group: (account, group).
    pub groups: Vec<(AccountId, u16)>,
    /// Spread markups the client groups paid.
    pub spread_revenue: Usdc,
    /// Commissions the client groups paid.
    pub commission_revenue: Usdc,
    /// Every group's terms per market, `[group][market]` as (markup ticks, commission, leverage
    /// cap): operators may have changed the configuration's.
    pub group_terms: Vec<Vec<(i64, crate::num::Ppm, u32)>>,
    /// The rest of every group's terms per market, `[group][market]` as (markup bps,
    /// commission per lot, financing rates): last, so that a snapshot written before they
    /// existed decodes with none (the configuration's then stand).
    pub group_pricing: Vec<Vec<GroupPricing>>,
    /// Cross accounts and the cross counters: last, so that a snapshot written before cross
    /// margin existed decodes with none (every account isolated).
    pub cross: Option<CrossSnapshot>,
    /// Netting accounts, ascending: last, so that a snapshot written before netting existed
    /// decodes with none (every account hedging).
    pub netting: Vec<AccountId>,
    /// Open positions that keep another group's brackets than group 0's, ascending id, with
    /// that group: last, so that a snapshot written before groups had brackets decodes with
    /// none.
    pub bracket_groups: Vec<(PositionId, u16)>,
    /// API keys, ascending id: last, so that a snapshot written before keys existed decodes
    /// with none.
    pub api_keys: Vec<crate::view::ApiKeyView>,
    /// The next API key's id (0 in a snapshot from before keys: 1).
    pub next_key_id: u64,
    /// Armed dead-man's switches, ascending account, with their time: last, so that a
    /// snapshot written before they existed decodes with none.
    pub cancel_schedules: Vec<(AccountId, u64)>,
    /// Live sessions, ascending id: last, so that a snapshot written before sessions existed
    /// decodes with none.
    pub sessions: Vec<crate::view::SessionView>,
    /// The next session's id (0 in a snapshot from before sessions: 1).
    pub next_session_id: u64,
    /// Two-factor enrolments (on or pending), ascending account: last, so that a snapshot
    /// written before them decodes with none.
    pub totp: Vec<(AccountId, crate::view::TotpState)>,
    /// Accounts an operator suspended, set close-only or granted credit, ascending: last, so
    /// that a snapshot written before account controls decodes with none.
    pub controls: Vec<(AccountId, crate::desk::AccountStatus, Usdc)>,
}

/// Cross margin's state: which accounts are cross, and whether each one's margin call is
/// armed (their keys and the markets' bands are rebuilt: any conservative keys give the same
/// outputs), and the counters added with it.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct CrossSnapshot {
    /// (account, armed) of every cross account, ascending.
    pub accounts: Vec<(AccountId, bool)>,
    /// Stop-out closes, exact checks, band crossings.
    pub counters: (u64, u64, u64),
}

/// A group's markup in bps, commission per lot and financing rates (long, short) on a market.
pub type GroupPricing = (u32, Usdc, Option<(crate::num::Ppm, crate::num::Ppm)>);

/// A market's price sources: each one's latest quote, and the guard.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SourcesSnapshot {
    /// (bid, ask, update id, receive time ns) per source; update id 0: no quote yet.
    pub quotes: Vec<(Price, Price, u64, u64)>,
    /// The guard's mode.
    pub guard: crate::command::MarketMode,
    /// Since when enough sources agree (0: they do not).
    pub agreed_since_ns: u64,
}

impl Engine {
    /// The state as canonical plain data. Allocates; O(state).
    pub fn snapshot(&self) -> EngineSnapshot {
        let mut positions: Vec<PositionSnapshot> = self
            .positions
            .values()
            .map(|p| PositionSnapshot {
                liq: p.liq(&self.markets[usize::from(p.market.0)]),
                trail_peak: p.trail().map_or(Price(0), |d| {
                    self.markets[usize::from(p.market.0)].trails.peak_price(
                        p.side,
                        d,
                        p.trail_group,
                    )
                }),
                ..PositionSnapshot::from(p)
            })
            .collect();
        positions.sort_unstable_by_key(|p| p.id);
        let mut orders: Vec<OrderView> = self.orders.values().copied().collect();
        orders.sort_unstable_by_key(|o| o.id);
        EngineSnapshot {
            markets: self
                .markets
                .iter()
                .map(|m| MarketSnapshot {
                    symbol: m.cfg.symbol.clone(),
                    price_decimals: m.cfg.price_decimals,
                    qty_decimals: m.cfg.qty_decimals,
                    has_price: m.has_price,
                    bid: m.bid,
                    ask: m.ask,
                    update_id: m.update_id,
                    updated_at_ns: m.updated_at_ns,
                    exchange_time_us: m.exchange_time_us,
                    financed_period: m.financed_period,
                    mode: m.mode,
                    max_leverage: m.max_leverage,
                    mmr: m.mmr,
                })
                .collect(),
            accounts: self
                .accounts
                .iter()
                .map(|a| AccountSnapshot {
                    login: a.login,
                    credential: a.credential,
                    available: a.available,
                    history: a.lists().history.iter().copied().collect(),
                    keys: a.lists().keys.iter().copied().collect(),
                    admin: a.admin,
                })
                .collect(),
            positions,
            next_position_id: self.next_position_id,
            orders,
            next_order_id: self.next_order_id,
            insurance_fund: self.insurance_fund,
            house_balance: self.house_balance,
            total_deposits: self.total_deposits,
            total_withdrawals: self.total_withdrawals,
            requests: self.requests.iter().collect(),
            max_request_id: self.max_request_id,
            counters: self.counters,
            seq: self.seq,
            sources: self
                .markets
                .iter()
                .map(|m| SourcesSnapshot {
                    quotes: m.sources.quotes[..usize::from(m.cfg.sources)]
                        .iter()
                        .map(|q| (q.bid, q.ask, q.update_id, q.at_ns))
                        .collect(),
                    guard: m.sources.guard,
                    agreed_since_ns: m.sources.agreed_since_ns,
                })
                .collect(),
            groups: self
                .accounts
                .iter()
                .enumerate()
                .filter(|(_, a)| a.group != 0)
                .map(|(i, a)| (AccountId::at(i), a.group))
                .collect(),
            spread_revenue: self.spread_revenue,
            commission_revenue: self.commission_revenue,
            group_terms: self
                .groups
                .iter()
                .map(|g| {
                    g.iter().map(|t| (t.markup_ticks, t.commission_rate, t.max_leverage)).collect()
                })
                .collect(),
            group_pricing: self
                .groups
                .iter()
                .map(|g| {
                    g.iter().map(|t| (t.markup_bps, t.commission_per_lot, t.financing)).collect()
                })
                .collect(),
            cross: Some(CrossSnapshot {
                accounts: (0..self.accounts.len())
                    .filter(|&i| self.is_cross(i))
                    .map(|i| {
                        let id = AccountId::at(i);
                        (id, self.accounts[i].cross.armed)
                    })
                    .collect(),
                counters: (
                    self.counters.stop_outs,
                    self.counters.cross_checks,
                    self.counters.band_crossings,
                ),
            }),
            api_keys: {
                let mut keys: Vec<crate::view::ApiKeyView> =
                    self.accounts.iter().flat_map(|a| a.lists().api_keys.iter().copied()).collect();
                keys.sort_unstable_by_key(|k| k.id);
                keys
            },
            next_key_id: self.next_key_id,
            sessions: {
                let mut v: Vec<crate::view::SessionView> =
                    self.accounts.iter().flat_map(|a| a.lists().sessions.iter().copied()).collect();
                v.sort_unstable_by_key(|s| s.id);
                v
            },
            next_session_id: self.next_session_id,
            totp: (0..self.accounts.len())
                .filter_map(|i| {
                    let t = self.accounts[i].lists().totp.as_deref()?;
                    Some((AccountId::at(i), *t))
                })
                .collect(),
            controls: (0..self.accounts.len())
                .filter_map(|i| {
                    let a = &self.accounts[i];
                    let credit = a.lists().credit;
                    (a.status != crate::desk::AccountStatus::Active || credit.0 != 0).then(|| {
                        let id = AccountId::at(i);
                        (id, a.status, credit)
                    })
                })
                .collect(),
            cancel_schedules: {
                let mut v: Vec<(AccountId, u64)> =
                    self.cancel_schedules.iter().map(|(a, at)| (*a, *at)).collect();
                v.sort_unstable();
                v
            },
            bracket_groups: {
                let mut v: Vec<(PositionId, u16)> = self
                    .positions
                    .values()
                    .filter(|p| p.bracket_group != 0)
                    .map(|p| (p.id, p.bracket_group))
                    .collect();
                v.sort_unstable();
                v
            },
            netting: (0..self.accounts.len())
                .filter(|&i| self.is_netting(i))
                .map(AccountId::at)
                .collect(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::{Change, ChangeRecord, CloseReason, Trigger};
    use crate::persist::{decode_snapshot, encode_snapshot};
    use crate::prelude::*;

    #[test]
    fn snapshot_restores_to_the_same_hash_and_behaviour() {
        let mut e = Engine::new(EngineConfig::default()).unwrap();
        let mut out = Vec::new();
        let mut rid = 0;
        let mut run = |e: &mut Engine, kind| {
            rid += 1;
            e.apply(&Command::new(RequestId(rid), 1_000, kind), &mut out);
        };
        let login = Login::new("a@x").unwrap();
        run(
            &mut e,
            CommandKind::CreateAccount { login, credential: Credential::new("c").unwrap() },
        );
        let tick = Tick {
            market: MarketId(0),
            bid: Price(6_000_000),
            ask: Price(6_000_000),
            update_id: 1,
            exchange_time_us: 0,
        };
        run(&mut e, CommandKind::PriceTick(tick));
        let open = OpenRequest {
            account: AccountId(1),
            market: MarketId(0),
            side: Side::Long,
            leverage: 10,
            size: Size::Margin(Usdc::from_whole(100)),
            expected_price: None,
            max_slippage_bps: 0,
            take_profit: Some(Price(7_000_000)),
            stop_loss: None,
            client_order_id: ClientOrderId::new("c1"),
        };
        run(&mut e, CommandKind::OpenPosition(open));
        run(&mut e, CommandKind::OpenPosition(OpenRequest { client_order_id: None, ..open }));
        run(
            &mut e,
            CommandKind::ClosePosition {
                account: AccountId(1),
                position: PositionId(2),
                quantity: None,
                key: None,
            },
        );

        let snap = e.snapshot();
        let bytes = encode_snapshot(5, &e.state_hash(), &snap);
        let file = decode_snapshot(&bytes).unwrap();
        assert_eq!(file.seq, 5);
        let mut r = Engine::restore(EngineConfig::default(), &file.snapshot).unwrap();
        assert_eq!(r.state_hash(), e.state_hash());
        assert_eq!(r.snapshot(), snap);

        // Both continue identically: the TP triggers in both; a repeated request id is recognised.
        let up = Tick { update_id: 2, bid: Price(7_000_000), ask: Price(7_000_000), ..tick };
        for engine in [&mut e, &mut r] {
            let outs = engine.apply_collect(&Command::new(
                RequestId::NONE,
                2_000,
                CommandKind::PriceTick(up),
            ));
            assert!(
                matches!(
                    outs[..],
                    [
                        Output::Change(ChangeRecord { change: Change::PriceApplied { .. }, .. }),
                        Output::Change(ChangeRecord {
                            change: Change::Explained { trigger: Trigger::TakeProfit, .. },
                            ..
                        }),
                        Output::Change(ChangeRecord {
                            change: Change::Closed { reason: CloseReason::TakeProfit, .. },
                            ..
                        }),
                        Output::Event(_)
                    ]
                ),
                "{outs:?}"
            );
            let again = engine.apply_collect(&Command::new(
                RequestId(3),
                2_000,
                CommandKind::OpenPosition(open),
            ));
            assert!(matches!(again[..], [Output::Reply { result: Ok(ReplyData::Opened(_)), .. }]));
        }
        assert_eq!(r.state_hash(), e.state_hash());
        assert_eq!(r.counters().duplicates, 1);
    }

    #[test]
    fn damaged_or_mismatched_snapshots_are_refused() {
        let e = Engine::new(EngineConfig::default()).unwrap();
        let bytes = encode_snapshot(0, &e.state_hash(), &e.snapshot());
        let mut flipped = bytes.clone();
        let last = flipped.len() - 1;
        flipped[last] ^= 1;
        assert_eq!(decode_snapshot(&flipped), Err(SnapshotError::Checksum));
        assert_eq!(decode_snapshot(&bytes[..bytes.len() - 1]), Err(SnapshotError::Malformed));
        assert_eq!(decode_snapshot(b"nope"), Err(SnapshotError::Malformed));
        let mut cfg = EngineConfig::default();
        cfg.markets.pop();
        assert!(matches!(Engine::restore(cfg, &e.snapshot()), Err(SnapshotError::Config(_))));
    }
}
