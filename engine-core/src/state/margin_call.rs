//! Margin calls: a warning to a position's owner when its margin level (equity / maintenance
//! margin) first falls below the configured level — once per crossing, from the same ordered
//! index as liquidation, so a tick that calls nobody costs O(1).

use super::*;
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
        let mut ids = std::mem::take(&mut self.scratch);
        ids.clear();
        self.markets[mi].index.take_margin_calls(bid, ask, &mut ids);
        ids.retain(|id| self.positions.contains_key(id));
        ids.sort_unstable();
        for &id in &ids {
            let old = self.positions[&id];
            assert!(old.mc_armed, "only armed positions are in the armed set");
            let p = Position { mc_armed: false, ..old };
            self.markets[mi].index.insert_called(id, p.side, p.mc);
            self.positions.insert(id, p);
            let change = Change::MarginCall {
                position: p.id,
                account: p.account,
                market: p.market,
                mark: self.markets[mi].mark(p.side),
                margin_call_price: p.mc,
                liquidation_price: p.liq,
            };
            self.record(sink, change);
        }
        ids.clear();
        self.markets[mi].index.collect_rearms(bid, ask, &mut ids);
        for &id in &ids {
            self.set_armed(id, true);
        }
        ids.clear();
        self.scratch = ids;
    }

    fn set_armed(&mut self, id: PositionId, armed: bool) -> Position {
        let old = self.positions[&id];
        let new = Position { mc_armed: armed, ..old };
        let index = &mut self.markets[usize::from(old.market.0)].index;
        index.replace(id, old.side, old.triggers(), new.triggers());
        self.positions.insert(id, new);
        new
    }

    /// Gives an open position a new quantity and margin (partial close, added margin) and
    /// re-derives what depends on them: the liquidation and margin-call prices, re-indexed.
    pub(super) fn resize(&mut self, id: PositionId, qty: Qty, margin: Usdc) -> Position {
        let old = self.positions[&id];
        let m = &self.markets[usize::from(old.market.0)];
        let liq = m.scale.liquidation_price(old.side, old.entry, qty, margin, old.mmr);
        let level = self.cfg.margin_call_level;
        let mc = margin_call_price(m, old.side, old.entry, qty, margin, old.mmr, level);
        let new = Position { qty, margin, liq, mc, ..old };
        let index = &mut self.markets[usize::from(old.market.0)].index;
        index.replace(id, old.side, old.triggers(), new.triggers());
        self.positions.insert(id, new);
        self.count_open_interest(old.market, old.side, 0, qty.0 - old.qty.0);
        new
    }
}
