//! Every close explained (docs/DESIGN.md, "Every close explained"): a triggered close or a
//! margin call records, right before it, what fired and the inputs of the rule — the price
//! reached, the market's bid and ask, the position's margin, rate and maintenance amount, and,
//! on a market made from several venues, each source's quote. A trader who disputes a
//! liquidation gets the numbers, and `hundredx explain` replays the journal to check them.

use super::{Change, Engine, Position, Price, Sink};
use crate::event::Trigger;
use crate::limits::SOURCES_MAX;
use crate::num::Ppm;

impl Engine {
    /// Records why `p` is closed or called now (before its `closed` or `margin_call` change).
    pub(super) fn explain<S: Sink>(
        &mut self,
        p: &Position,
        (trigger, trigger_price): (Trigger, Price),
        sink: &mut S,
    ) {
        let mi = usize::from(p.market.0);
        let call_level = match trigger {
            Trigger::MarginCall => self.margin_call_level(super::usize_from(p.account.0) - 1),
            _ => Ppm(0),
        };
        let m = &self.markets[mi];
        let change = Change::Explained {
            position: p.id,
            account: p.account,
            market: p.market,
            trigger,
            side: p.side,
            quantity: p.qty,
            entry_price: p.entry,
            trigger_price,
            bid: m.bid,
            ask: m.ask,
            margin: p.margin(),
            maintenance_rate: p.mmr(),
            maintenance_amount: m.cum(p),
            call_level,
        };
        let n = usize::from(m.cfg.sources);
        let sources = (n > 0).then(|| {
            let index = super::sources::index(&m.sources.quotes[..n], self.now_ns, &m.cfg);
            let mut quotes = [(Price(0), Price(0)); SOURCES_MAX];
            for (q, s) in quotes.iter_mut().zip(&m.sources.quotes[..n]) {
                *q = (s.bid, s.ask);
            }
            Change::SourceQuotes {
                account: p.account,
                position: p.id,
                market: p.market,
                quotes,
                fresh: index.fresh,
                agreeing: index.agreeing,
            }
        });
        self.record(sink, change);
        if let Some(quotes) = sources {
            self.record(sink, quotes);
        }
    }
}

/// What an `explained` change's inputs give at its mark (the isolated rule; a stop-out's level
/// is the account's, in its `stop_out` change).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ExplainedLevel {
    /// The bid for a long, the ask for a short.
    pub mark: Price,
    /// PnL at the mark, rounded down.
    pub pnl: crate::num::Usdc,
    /// ⌈rate × mark × quantity⌉ − the bracket's amount, in micro-USDC.
    pub maintenance_margin: i128,
    /// (margin + PnL) / maintenance margin in millionths, rounded down (`None` without
    /// maintenance margin).
    pub level: Option<i128>,
}

impl Change {
    /// For an `explained` change, the level its own inputs give (docs/DESIGN.md, "Every close
    /// explained"): what a reader re-evaluates to check the rule. `None` for other changes.
    pub fn explained_level(&self, scale: crate::math::Scale) -> Option<ExplainedLevel> {
        let Change::Explained {
            side,
            quantity,
            entry_price,
            bid,
            ask,
            margin,
            maintenance_rate,
            maintenance_amount,
            ..
        } = *self
        else {
            return None;
        };
        let mark = if side == crate::math::Side::Long { bid } else { ask };
        let pnl = scale.pnl_floor(side, entry_price, mark, quantity);
        let mm =
            scale.rate_of_value_ceil(maintenance_rate, mark, quantity).0 - maintenance_amount.0;
        let level =
            (mm > 0).then(|| ((margin.0 + pnl.0) * i128::from(crate::num::PPM_ONE)).div_euclid(mm));
        Some(ExplainedLevel { mark, pnl, maintenance_margin: mm, level })
    }
}
