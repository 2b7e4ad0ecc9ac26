//! Margin calls: a warning to a position's owner when its margin level (equity / maintenance
//! margin) first falls below the configured level — once per crossing, from the same ordered
//! index as liquidation, so a tick that calls nobody costs O(1).

use super::{Change, Engine, PosRef, Position, Price, Qty, Side, Sink, Usdc};
use crate::state::open::margin_call_price;

impl Engine {
    /// Calls the armed positions of market `mi` whose margin-call price the current mark has
    /// reached (ascending id), then re-arms the called ones the mark has taken back above it.
    /// The reached entries leave the armed set in one walk per side; those of positions this
    /// tick liquidated (left there by [`Engine::liquidate`]) are dropped with them.
    pub(super) fn margin_calls<S: Sink>(&mut self, mi: usize, sink: &mut S) {
        let (bid, ask) = (self.markets[mi].bid, self.markets[mi].ask);
        if !self.markets[mi].index.margin_calls_due(bid, ask) {
            return;
        }
        let mut slots = std::mem::take(&mut self.slot_scratch);
        let mut ids = std::mem::take(&mut self.scratch);
        slots.clear();
        ids.clear();
        self.markets[mi].index.take_margin_calls(bid, ask, &mut slots);
        // The entries of positions this tick liquidated are in the range too, and their slots
        // are vacant now or hold a position this tick's order fills opened: the occupant was
        // taken out of the armed set only if its own entry is in the range, so it is called
        // only if it is armed and reached (a slot then shows up twice: deduplicated).
        let reached = |p: &Position| {
            p.mc_armed
                && p.mc.0 > 0
                && match p.side {
                    Side::Long => p.mc >= bid,
                    Side::Short => p.mc <= ask,
                }
        };
        let occupants = slots.iter().filter_map(|&s| self.positions.occupant(s));
        ids.extend(occupants.filter(|&r| reached(self.positions.get(r))));
        ids.sort_unstable();
        ids.dedup();
        for &r in &ids {
            let old = *self.positions.get(r);
            let p = Position { mc_armed: false, ..old };
            self.markets[mi].index.insert_called(r.slot(), p.side, p.mc);
            *self.positions.get_mut(r) = p;
            self.explain(&p, (crate::event::Trigger::MarginCall, p.mc), sink);
            let change = Change::MarginCall {
                position: p.id,
                account: p.account,
                market: p.market,
                mark: self.markets[mi].mark(p.side),
                margin_call_price: p.mc,
                liquidation_price: p.liq(&self.markets[mi]),
            };
            self.record(sink, change);
        }
        slots.clear();
        self.markets[mi].index.collect_rearms(bid, ask, &mut slots);
        for &s in &slots {
            let r = self.positions.at(s);
            self.rearm(r);
        }
        ids.clear();
        slots.clear();
        self.scratch = ids;
        self.slot_scratch = slots;
    }

    /// Arms the position's margin call again (its mark went back above the level).
    fn rearm(&mut self, r: PosRef) -> Position {
        let old = *self.positions.get(r);
        let new = Position { mc_armed: true, ..old };
        let m = &mut self.markets[usize::from(old.market.0)];
        m.index.replace(r.slot(), old.side, old.triggers(m), new.triggers(m));
        *self.positions.get_mut(r) = new;
        new
    }

    /// Gives an open position a new quantity and margin (partial close, added margin) and
    /// re-derives what depends on them: its bracket (by its new notional at entry, on a market
    /// with brackets), the liquidation and margin-call prices, re-indexed.
    pub(super) fn resize(&mut self, r: PosRef, qty: Qty, margin: Usdc) -> Position {
        let old = *self.positions.get(r);
        let shape = (qty, old.entry, margin, old.leverage);
        self.reprice(r, shape, None, Unbracketed::KeepOwnRate)
    }

    /// The position becomes `(qty, entry, margin, leverage)` under its account's group's
    /// brackets now, with new TP/SL when given (`Some`); its margin-call price, index entries
    /// and its market's open interest follow.
    pub(super) fn reprice(
        &mut self,
        r: PosRef,
        (qty, entry, margin, leverage): (Qty, Price, Usdc, u32),
        triggers: Option<(Option<Price>, Option<Price>)>,
        unbracketed: Unbracketed,
    ) -> Position {
        let old = *self.positions.get(r);
        let ai = super::usize_from(old.account.0) - 1;
        let (level, group) = (self.margin_call_level(ai), self.accounts[ai].group);
        let m = &self.markets[usize::from(old.market.0)];
        let rate = match unbracketed {
            Unbracketed::KeepOwnRate if old.bracket_group == group => old.mmr(),
            Unbracketed::KeepOwnRate | Unbracketed::MarketRate => m.mmr,
        };
        let tier = m.tier(group, entry, qty);
        let (mmr, cum) = tier.map_or((rate, Usdc::ZERO), |t| (t.mmr, t.cum));
        let mc = if old.cross {
            Price(0)
        } else {
            margin_call_price(m, old.side, entry, qty, (margin, cum), mmr, level)
        };
        let mut new = Position { qty, entry, mc, leverage, bracket_group: group, ..old };
        new.mmr_ppm = u32::try_from(mmr.0).expect("rates are below 10^6");
        new.set_margin(margin);
        if let Some((tp, sl)) = triggers {
            new.set_tp_sl(tp, sl);
        }
        let m = &mut self.markets[usize::from(old.market.0)];
        m.index.replace(r.slot(), old.side, old.triggers(m), new.triggers(m));
        *self.positions.get_mut(r) = new;
        let entry_delta = i128::from(entry.0) * i128::from(qty.0)
            - i128::from(old.entry.0) * i128::from(old.qty.0);
        self.count_open_interest(old.market, old.side, (0, qty.0 - old.qty.0), entry_delta);
        new
    }
}

/// The maintenance rate of a repriced position on a market (or group) without brackets.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Unbracketed {
    /// Its own, from when it opened (an operator's change of the market's rate is for new
    /// positions), unless it leaves another group's brackets: then the market's.
    KeepOwnRate,
    /// The market's now, as for an open (a netting addition).
    MarketRate,
}
