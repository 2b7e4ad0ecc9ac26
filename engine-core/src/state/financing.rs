//! Financing (swap, funding): a per-market rate per period for longs and for shorts, applied to
//! every open position at the period boundaries the adapter's scheduler sends as commands.
//!
//! Charged to the position's **margin**, not the available balance: isolated margin stays
//! isolated (a position's costs never reach the trader's other money), and the liquidation and
//! margin-call prices move accordingly (a charge brings them closer, a payment moves them away).
//! A charge is capped at the margin; a position the charge leaves liquidatable at the current
//! mark is liquidated by the same command. The house takes charges and pays payments. A
//! market's `skew_financing_rate` adds a charge to the heavier side, scaled by the skew; a
//! client group may set its own rates.

use super::close::LiquidatedBy;
use super::{
    Change, Engine, Event, MAX_AMOUNT, MarketId, Outcome, Output, PosRef, Reason, ReplyData, Side,
    Sink, Usdc, add, liquidatable, sub,
};
use crate::num::Ppm;

impl Engine {
    pub(super) fn charge_financing<S: Sink>(
        &mut self,
        ts: u64,
        market: MarketId,
        period: u64,
        sink: &mut S,
    ) -> Outcome {
        let m = self.market(market)?;
        if period <= m.financed_period {
            return Err(Reason::FinancingAlreadyCharged);
        }
        if !m.has_price {
            return Err(Reason::NoPrice);
        }
        let mi = usize::from(market.0);
        self.markets[mi].financed_period = period;
        // Accounts in id order, each one's positions in id order: deterministic, and O(open
        // positions) once a period, never per tick.
        let mut ids = std::mem::take(&mut self.scratch);
        ids.clear();
        for (ai, a) in self.accounts.iter().enumerate() {
            if self.is_swap_free(ai) {
                continue;
            }
            ids.extend(a.open.iter().filter(|&&r| self.positions.get(r).market == market));
        }
        let skew = self.skew_charge(mi);
        let (mut positions, mut net) = (0u32, Usdc::ZERO);
        for &r in &ids {
            if let Some(amount) = self.finance(ts, r, (period, skew), sink) {
                positions += 1;
                net = add(net, amount);
            }
        }
        ids.clear();
        self.scratch = ids;
        Ok(ReplyData::Financing { market, period, positions, net })
    }

    /// The heavier side and what it pays on top of its rate this period:
    /// `skew_financing_rate × |long − short| / (long + short)`, rounded up, from the open
    /// quantities when the period is charged (before any of its closes). `None`: balanced, or
    /// no skew rate.
    fn skew_charge(&self, mi: usize) -> Option<(Side, Ppm)> {
        let m = &self.markets[mi];
        let rate = i128::from(m.cfg.skew_financing_rate.0);
        let (long, short) = (i128::from(m.open_interest[0].1), i128::from(m.open_interest[1].1));
        if rate == 0 || long == short {
            return None;
        }
        let (skew, total) = ((long - short).abs(), long + short);
        let extra = (rate * skew + total - 1) / total; // ≤ rate: fits i64
        let heavy = if long > short { Side::Long } else { Side::Short };
        Some((heavy, Ppm(i64::try_from(extra).expect("at most the rate"))))
    }

    /// Charges or pays one position; returns what was taken from it (negative: paid to it), or
    /// `None` if a payment would take its margin past the engine's bound on amounts (skipped).
    fn finance<S: Sink>(
        &mut self,
        ts: u64,
        r: PosRef,
        (period, skew): (u64, Option<(Side, Ppm)>),
        sink: &mut S,
    ) -> Option<Usdc> {
        let p = *self.positions.get(r);
        let m = &self.markets[usize::from(p.market.0)];
        let mark = m.mark(p.side);
        // The account's group may set its own rates on this market (docs/DESIGN.md, "Client
        // groups"); the group is read when the period is charged.
        let ai = usize::try_from(p.account.0 - 1).expect("account ids fit usize");
        let (long, short) = self.financing_rates(self.terms(ai, p.market), p.market);
        let rate = match p.side {
            Side::Long => long,
            Side::Short => short,
        };
        let rate = match skew {
            Some((heavy, extra)) if heavy == p.side => Ppm(rate.0 + extra.0),
            _ => rate,
        };
        // House-favoured both ways: a charge rounds up (capped at the margin), a payment down.
        let amount = if rate.0 >= 0 {
            Usdc(m.scale.rate_of_value_ceil(rate, mark, p.qty).0.min(p.margin().0))
        } else {
            Usdc(-m.scale.rate_of_value_floor(crate::num::Ppm(-rate.0), mark, p.qty).0)
        };
        let margin = sub(p.margin(), amount);
        if margin > MAX_AMOUNT {
            return None;
        }
        self.total_margin = sub(self.total_margin, amount);
        self.house_balance = add(self.house_balance, amount);
        let now = self.resize(r, p.qty, margin);
        let liq = now.liq(&self.markets[usize::from(p.market.0)]);
        let change = Change::Financed {
            position: p.id,
            account: p.account,
            market: p.market,
            period,
            amount,
            margin,
            liquidation_price: liq,
        };
        self.record(sink, change);
        self.cross_touch(ai, true);
        if liquidatable(p.side, mark, liq) {
            let view = self.liquidate(ts, r, LiquidatedBy::Command, sink);
            sink.emit(Output::Event(Event::PositionClosed(view)));
        }
        Some(amount)
    }
}
