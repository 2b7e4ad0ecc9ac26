//! Operator controls: the operator role, market modes and limits for new positions, and the
//! risk view. Every change is a journaled command naming who made it.

use super::{
    AccountId, Change, Engine, Item, Login, Market, MarketId, Outcome, Output, Qty, Reason,
    ReplyData, RequestId, Side, Sink, Usdc,
};
use crate::command::MarketMode;
use crate::event::{AtRisk, Exposure};
use crate::num::Ppm;

use crate::limits::AT_RISK_MAX;

impl Engine {
    pub(super) fn set_role<S: Sink>(
        &mut self,
        login: &Login,
        admin: bool,
        sink: &mut S,
    ) -> Outcome {
        let account = self.account_of_login(login).ok_or(Reason::UnknownAccount)?;
        let i = self.account_index(account)?;
        self.accounts[i].admin = admin;
        self.record(sink, Change::RoleSet { account, admin });
        Ok(ReplyData::Role { account, admin })
    }

    pub(super) fn check_admin(&self, by: AccountId) -> Result<(), Reason> {
        let i = self.account_index(by).map_err(|_| Reason::NotAdmin)?;
        if self.accounts[i].admin { Ok(()) } else { Err(Reason::NotAdmin) }
    }

    pub(super) fn admin_set_market<S: Sink>(
        &mut self,
        by: AccountId,
        market: MarketId,
        (mode, max_leverage, mmr): (Option<MarketMode>, Option<u32>, Option<Ppm>),
        sink: &mut S,
    ) -> Outcome {
        self.check_admin(by)?;
        let m = self.market(market)?;
        let lev = max_leverage.unwrap_or(m.max_leverage);
        let rate = mmr.unwrap_or(m.mmr);
        // The rules of the configuration: leverage 1..=1000, 0 < mmr and mmr * leverage < 1,
        // and room for the margin-call level above it.
        let one = i128::from(crate::num::PPM_ONE);
        let level = i128::from(self.cfg.margin_call_level.0);
        if !(1..=1_000).contains(&lev) {
            return Err(Reason::InvalidLeverage);
        }
        // A market with brackets takes its rates from them (the configuration's).
        if mmr.is_some() && !m.tiers.is_empty() {
            return Err(Reason::InvalidRequest);
        }
        if rate.0 <= 0
            || i128::from(rate.0) * i128::from(lev) >= one
            || (level > 0 && i128::from(rate.0) * level >= one * one)
        {
            return Err(Reason::InvalidRequest);
        }
        let m = &mut self.markets[usize::from(market.0)];
        m.mode = mode.unwrap_or(m.mode);
        m.max_leverage = lev;
        m.mmr = rate;
        let change =
            Change::MarketChanged { by, market, mode, max_leverage, maintenance_margin_rate: mmr };
        self.record(sink, change);
        Ok(ReplyData::Market(self.market_view(market)))
    }

    /// Exposure per market and side, then the `top` positions closest to liquidation: from each
    /// side's liquidation index, nearest first, so O(markets + top · log n), not a scan.
    pub(super) fn risk<S: Sink>(
        &self,
        rid: RequestId,
        by: AccountId,
        top: u32,
        sink: &mut S,
    ) -> Outcome {
        self.check_admin(by)?;
        let mut count = 0u32;
        for (i, m) in self.markets.iter().enumerate() {
            let market = MarketId(u16::try_from(i).expect("validated: at most 65535 markets"));
            for (k, side) in [Side::Long, Side::Short].into_iter().enumerate() {
                let (positions, qty) = m.open_interest[k];
                let notional = if m.has_price {
                    m.scale.notional_ceil(m.mark(side), Qty(qty))
                } else {
                    Usdc::ZERO
                };
                let unrealized_pnl = if m.has_price {
                    // Σ (mark − entry) × q for longs, Σ (entry − mark) × q for shorts.
                    let at_mark = i128::from(m.mark(side).0) * i128::from(qty);
                    let diff = match side {
                        Side::Long => at_mark - m.entry_sum[k],
                        Side::Short => m.entry_sum[k] - at_mark,
                    };
                    Usdc((diff * m.scale.num()).div_euclid(m.scale.den()))
                } else {
                    Usdc::ZERO
                };
                let item = Exposure {
                    market,
                    side,
                    positions,
                    open_interest: Qty(qty),
                    notional,
                    unrealized_pnl,
                };
                sink.emit(Output::Item { request_id: rid, item: Item::Exposure(item) });
                count += 1;
            }
        }
        let mut nearest: Vec<AtRisk> = Vec::new(); // a query, not the hot path
        let top = top.min(AT_RISK_MAX) as usize;
        for (i, m) in self.markets.iter().enumerate().filter(|(_, m)| m.has_price) {
            for side in [Side::Long, Side::Short] {
                for slot in m.index.nearest_liquidations(side, top) {
                    let p = self.positions.get(self.positions.at(slot));
                    let mark = m.mark(side);
                    let liq = p.liq(m);
                    let gap = (i128::from(mark.0) - i128::from(liq.0)).unsigned_abs();
                    let distance_bps =
                        u64::try_from(gap * 10_000 / mark.0.max(1).unsigned_abs() as u128)
                            .unwrap_or(u64::MAX);
                    let market = MarketId(u16::try_from(i).expect("validated"));
                    nearest.push(AtRisk {
                        position: p.id,
                        account: p.account,
                        market,
                        side,
                        margin: p.margin(),
                        mark,
                        liquidation_price: liq,
                        distance_bps,
                    });
                }
            }
        }
        nearest.sort_by_key(|r| (r.distance_bps, r.position));
        for r in nearest.into_iter().take(top) {
            sink.emit(Output::Item { request_id: rid, item: Item::AtRisk(r) });
            count += 1;
        }
        for (account, level) in self.cross_nearest(top) {
            sink.emit(Output::Item {
                request_id: rid,
                item: Item::AccountAtRisk { account, level },
            });
            count += 1;
        }
        Ok(ReplyData::Risk {
            insurance_fund: self.insurance_fund,
            house_balance: self.house_balance,
            open_positions: u32::try_from(self.positions.len()).unwrap_or(u32::MAX),
            count,
            spread_revenue: self.spread_revenue,
            commission_revenue: self.commission_revenue,
        })
    }

    /// Counts a position into (or, with `sign` -1, out of) its market side's open interest, and
    /// its entry × quantity (`entry_delta`, ticks × steps) into the side's entry sum.
    pub(super) fn count_open_interest(
        &mut self,
        market: MarketId,
        side: Side,
        (positions, qty): (i32, i64),
        entry_delta: i128,
    ) {
        let k = usize::from(side == Side::Short);
        let m = &mut self.markets[usize::from(market.0)];
        m.entry_sum[k] += entry_delta;
        let oi = &mut m.open_interest[k];
        oi.0 = u32::try_from(i64::from(oi.0) + i64::from(positions)).expect("open interest count");
        oi.1 += qty;
        assert!(oi.1 >= 0, "open interest below zero");
    }
}

/// Refuses new exposure on a halted or reduce-only market: by its operators or by its price
/// guard, whichever is stricter.
pub(super) fn check_mode(m: &Market) -> Result<(), Reason> {
    match m.mode.stricter(m.sources.guard) {
        MarketMode::Open => Ok(()),
        MarketMode::Halted => Err(Reason::MarketHalted),
        MarketMode::ReduceOnly => Err(Reason::MarketReduceOnly),
    }
}
