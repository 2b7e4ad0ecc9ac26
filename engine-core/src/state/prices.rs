//! Prices: validating and applying ticks, which run the triggers (TP/SL, liquidation, pending
//! orders, margin calls).

use super::close::LiquidatedBy;
use super::{
    Change, CloseReason, Engine, Event, Market, MarketId, Outcome, Output, PosRef, Price, Reason,
    ReplyData, Side, Sink, Tick,
};
use crate::event::Trigger;

impl Engine {
    // ----- prices -----

    pub(super) fn market(&self, id: MarketId) -> Result<&Market, Reason> {
        self.markets.get(usize::from(id.0)).ok_or(Reason::UnknownMarket)
    }

    pub(super) fn validate_tick(&self, tick: &Tick) -> Result<(), Reason> {
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

    pub(super) fn tick<S: Sink>(&mut self, ts: u64, tick: Tick, sink: &mut S) -> Outcome {
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
        let applied = Change::PriceApplied {
            market: tick.market,
            bid: tick.bid,
            ask: tick.ask,
            update_id: tick.update_id,
        };
        self.record(sink, applied);

        // Trailing stops follow the new marks first (a new best mark can only move them away).
        let (markets, positions) = (&mut self.markets, &mut self.positions);
        markets[mi].trails.lift(tick.bid, tick.ask, &mut |r, group| {
            positions.get_mut(r).trail_group = group;
        });
        // Take-profit, stop-loss and trailing stops first, then liquidations, then pending
        // orders, then margin calls; each group in ascending id order (a `PosRef` orders by id).
        let mut ids = std::mem::take(&mut self.scratch);
        let mut slots = std::mem::take(&mut self.slot_scratch);
        ids.clear();
        slots.clear();
        self.markets[mi].index.collect_tp_sl(tick.bid, tick.ask, &mut slots);
        self.refs_of(&slots, &mut ids);
        self.markets[mi].trails.collect_triggered(tick.bid, tick.ask, &mut ids);
        ids.sort_unstable();
        ids.dedup();
        for &r in &ids {
            let p = *self.positions.get(r);
            let mark = self.markets[mi].mark(p.side);
            // Long: TP when bid >= tp, SL when bid <= sl; short the other way.
            let (tp_hit, sl_hit) = match p.side {
                Side::Long => {
                    (p.tp().is_some_and(|tp| mark >= tp), p.sl().is_some_and(|sl| mark <= sl))
                }
                Side::Short => {
                    (p.tp().is_some_and(|tp| mark <= tp), p.sl().is_some_and(|sl| mark >= sl))
                }
            };
            let (reason, fired) = match (tp_hit, sl_hit, p.tp(), p.sl(), p.trail()) {
                (true, _, Some(tp), _, _) => (CloseReason::TakeProfit, (Trigger::TakeProfit, tp)),
                (false, true, _, Some(sl), _) => (CloseReason::StopLoss, (Trigger::StopLoss, sl)),
                (_, _, _, _, d) => {
                    let d = d.expect("a trailing stop fired");
                    let stop = self.markets[mi].trails.stop_price(p.side, d, p.trail_group);
                    (CloseReason::TrailingStop, (Trigger::TrailingStop, stop))
                }
            };
            self.explain(&p, fired, sink);
            let view = self.close_part(ts, r, p.qty, reason, sink);
            sink.emit(Output::Event(Event::PositionClosed(view)));
        }
        ids.clear();
        slots.clear();
        self.markets[mi].index.collect_liquidations(tick.bid, tick.ask, &mut slots);
        self.refs_of(&slots, &mut ids);
        ids.sort_unstable();
        for &r in &ids {
            let view = self.liquidate(ts, r, LiquidatedBy::Tick, sink);
            sink.emit(Output::Event(Event::PositionClosed(view)));
        }
        ids.clear();
        slots.clear();
        self.scratch = ids;
        self.slot_scratch = slots;
        self.fill_orders(ts, mi, sink);
        self.margin_calls(mi, sink);
        // Cross accounts last: reviewed after the command, with every close above settled.
        self.cross_tick(mi);
        Ok(ReplyData::PriceApplied)
    }

    /// Appends the references of the positions in `slots` (the quiet tick has none: it
    /// returns before building an iterator).
    #[inline]
    fn refs_of(&self, slots: &[crate::slab::Slot], ids: &mut Vec<PosRef>) {
        if slots.is_empty() {
            return;
        }
        ids.extend(slots.iter().map(|&s| self.positions.at(s)));
    }

    /// The mark a `side` position trades at now, if fresh.
    pub(super) fn fresh_mark(
        &self,
        market: MarketId,
        side: Side,
        ts: u64,
    ) -> Result<Price, Reason> {
        let m = self.market(market)?;
        if !m.has_price {
            return Err(Reason::NoPrice);
        }
        if ts.saturating_sub(m.updated_at_ns) > m.cfg.max_price_age_ns {
            return Err(Reason::StalePrice);
        }
        Ok(m.mark(side))
    }
}
