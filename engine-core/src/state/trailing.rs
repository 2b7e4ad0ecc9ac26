//! Trailing stops on open positions: set, changed, removed; the books live in
//! [`crate::trail`].

use super::{
    AccountId, Change, Engine, Outcome, PosRef, Position, PositionId, Reason, ReplyData, Side,
    Sink, TrailDistance,
};
use crate::trail;

use crate::limits::TRAIL_BPS_MAX;

impl Engine {
    /// Sets (or replaces, or with `None` removes) a position's trailing stop. It starts at the
    /// current mark, which must be fresh: the stop then follows the best mark from here on.
    pub(super) fn set_trailing_stop<S: Sink>(
        &mut self,
        ts: u64,
        account: AccountId,
        id: PositionId,
        distance: Option<TrailDistance>,
        sink: &mut S,
    ) -> Outcome {
        let (r, p) = self.owned(account, id)?;
        let mark = self.fresh_mark(p.market, p.side, ts)?;
        let ok = match distance {
            None => true,
            Some(TrailDistance::Price(d)) => d.0 > 0 && (p.side == Side::Short || d < mark),
            Some(TrailDistance::Bps(b)) => (1..=TRAIL_BPS_MAX).contains(&b),
        };
        if !ok {
            return Err(Reason::InvalidTrailingStop);
        }
        self.untrail(r, &p);
        let mut now = Position { trail_group: 0, ..p };
        now.set_trail(distance);
        if let Some(d) = distance {
            let m = &mut self.markets[usize::from(p.market.0)];
            let x = trail::x(p.side, m.bid, m.ask);
            now.trail_group = m.trails.book(p.side, d).insert(r, trail::raw(d), x);
        }
        *self.positions.get_mut(r) = now;
        let view = self.view(&now);
        let stop_price = view.trailing_stop.map(|t| t.stop_price);
        self.record(sink, Change::TrailingStopSet { position: id, account, distance, stop_price });
        Ok(ReplyData::Position(view))
    }

    /// Takes a position's trailing stop (if any) out of its market's book.
    pub(super) fn untrail(&mut self, r: PosRef, p: &Position) {
        if let Some(d) = p.trail() {
            let book = self.markets[usize::from(p.market.0)].trails.book(p.side, d);
            book.remove(r, trail::raw(d), p.trail_group);
        }
    }
}
