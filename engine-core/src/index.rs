//! The trigger index: per market and side, open positions ordered by liquidation price, by
//! take-profit, by stop-loss and by margin-call price (armed and already called), and pending
//! entry orders ordered by limit and by stop price.
//!
//! A tick asks each ordered set for the range that the new bid/ask crosses, so its cost is
//! `O(log n + k)` for `k` triggered positions, whatever the number `n` of open positions. Keys are
//! `(price_ticks, position_id)` so that equal prices stay distinct and ordered by id.

use std::collections::BTreeSet;
use std::ops::Bound::{Included, Unbounded};

use crate::command::{OrderId, OrderKind, PositionId};
use crate::math::Side;
use crate::num::Price;

type Key = (i64, u64);

/// An ordered set that also keeps its smallest and largest key at hand, so "does this tick
/// trigger anything?" is two comparisons instead of a tree descent: a tick that triggers nothing
/// costs O(1) whatever the number of positions; only a tick that does trigger walks the tree.
#[derive(Debug, Default, Clone)]
pub(crate) struct OrderedSet {
    set: BTreeSet<Key>,
    first: Option<Key>,
    last: Option<Key>,
}

impl OrderedSet {
    pub(crate) fn insert(&mut self, k: Key) -> bool {
        let fresh = self.set.insert(k);
        if self.first.is_none_or(|f| k < f) {
            self.first = Some(k);
        }
        if self.last.is_none_or(|l| k > l) {
            self.last = Some(k);
        }
        fresh
    }

    pub(crate) fn remove(&mut self, k: &Key) -> bool {
        let was = self.set.remove(k);
        if self.first == Some(*k) {
            self.first = self.set.first().copied();
        }
        if self.last == Some(*k) {
            self.last = self.set.last().copied();
        }
        was
    }

    /// True if some key has price <= `p` (O(1)).
    #[inline]
    pub(crate) fn any_at_or_below(&self, p: i64) -> bool {
        self.first.is_some_and(|f| f.0 <= p)
    }

    /// True if some key has price >= `p` (O(1)).
    #[inline]
    fn any_at_or_above(&self, p: i64) -> bool {
        self.last.is_some_and(|l| l.0 >= p)
    }

    /// Appends the ids with price <= `p`, ascending. O(1) when there are none.
    #[inline]
    fn collect_at_or_below(&self, p: i64, out: &mut Vec<PositionId>) {
        if self.first.is_some_and(|f| f.0 <= p) {
            let range = self.set.range((Unbounded, Included((p, u64::MAX))));
            out.extend(range.map(|k| PositionId(k.1)));
        }
    }

    /// Appends the ids with price >= `p`, ascending. O(1) when there are none.
    #[inline]
    fn collect_at_or_above(&self, p: i64, out: &mut Vec<PositionId>) {
        if self.last.is_some_and(|l| l.0 >= p) {
            out.extend(self.set.range((Included((p, 0)), Unbounded)).map(|k| PositionId(k.1)));
        }
    }

    /// Appends the order ids with key <= `p`, ascending (the expiry set uses it with times).
    #[inline]
    pub(crate) fn orders_at_or_below(&self, p: i64, out: &mut Vec<OrderId>) {
        if self.first.is_some_and(|f| f.0 <= p) {
            let range = self.set.range((Unbounded, Included((p, u64::MAX))));
            out.extend(range.map(|k| OrderId(k.1)));
        }
    }

    #[inline]
    fn orders_at_or_above(&self, p: i64, out: &mut Vec<OrderId>) {
        if self.last.is_some_and(|l| l.0 >= p) {
            out.extend(self.set.range((Included((p, 0)), Unbounded)).map(|k| OrderId(k.1)));
        }
    }

    pub(crate) fn len(&self) -> usize {
        self.set.len()
    }

    /// Takes out every key with price >= `p` (in place, walking the range once: no lookup per
    /// key, no allocation), appending their ids.
    fn take_at_or_above(&mut self, p: i64, out: &mut Vec<PositionId>) {
        if !self.any_at_or_above(p) {
            return;
        }
        out.extend(self.set.extract_if((p, 0).., |_| true).map(|k| PositionId(k.1)));
        self.first = self.set.first().copied();
        self.last = self.set.last().copied();
    }

    /// Takes out every key with price <= `p`, appending their ids.
    fn take_at_or_below(&mut self, p: i64, out: &mut Vec<PositionId>) {
        if !self.any_at_or_below(p) {
            return;
        }
        out.extend(self.set.extract_if(..=(p, u64::MAX), |_| true).map(|k| PositionId(k.1)));
        self.first = self.set.first().copied();
        self.last = self.set.last().copied();
    }

    /// The largest key, O(1).
    pub(crate) fn last_key(&self) -> Option<Key> {
        self.last
    }

    /// The keys with price >= `p`, ascending.
    pub(crate) fn keys_at_or_above(&self, p: i64) -> impl Iterator<Item = Key> + '_ {
        self.set.range((Included((p, 0)), Unbounded)).copied()
    }
}

/// The orderings for one side of one market.
#[derive(Debug, Default, Clone)]
struct SideIndex {
    liq: OrderedSet,
    tp: OrderedSet,
    sl: OrderedSet,
    /// Margin-call prices of positions not yet called (since the last crossing back).
    mc_armed: OrderedSet,
    /// Margin-call prices of positions called: re-armed when the mark is back above the level.
    mc_called: OrderedSet,
    /// Pending limit orders by limit price.
    limit: OrderedSet,
    /// Pending stop orders by stop price.
    stop: OrderedSet,
}

/// The trigger prices of one position, as indexed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Triggers {
    /// Liquidation price (a long's 0 means never and is not indexed).
    pub liq: Price,
    /// Take-profit.
    pub tp: Option<Price>,
    /// Stop-loss.
    pub sl: Option<Price>,
    /// Margin-call price (0: none, like a long's liquidation price).
    pub mc: Price,
    /// True until the margin call fires; false until the mark is back above the level.
    pub mc_armed: bool,
}

impl Triggers {
    fn mc_set(self, s: &mut SideIndex) -> &mut OrderedSet {
        if self.mc_armed { &mut s.mc_armed } else { &mut s.mc_called }
    }
}

/// Trigger index of one market.
#[derive(Debug, Default, Clone)]
pub struct MarketIndex {
    long: SideIndex,
    short: SideIndex,
}

impl MarketIndex {
    fn side(&mut self, side: Side) -> &mut SideIndex {
        match side {
            Side::Long => &mut self.long,
            Side::Short => &mut self.short,
        }
    }

    /// Indexes a position's triggers.
    pub fn insert(&mut self, id: PositionId, side: Side, t: Triggers) {
        let s = self.side(side);
        if t.liq.0 > 0 {
            let fresh = s.liq.insert((t.liq.0, id.0));
            assert!(fresh, "position {} indexed twice", id.0);
        }
        if let Some(tp) = t.tp {
            s.tp.insert((tp.0, id.0));
        }
        if let Some(sl) = t.sl {
            s.sl.insert((sl.0, id.0));
        }
        if t.mc.0 > 0 {
            t.mc_set(s).insert((t.mc.0, id.0));
        }
    }

    /// Removes a position's triggers; `t` must be what was inserted.
    pub fn remove(&mut self, id: PositionId, side: Side, t: Triggers) {
        self.remove_but_armed_call(id, side, t);
        if t.mc.0 > 0 && t.mc_armed {
            let was = self.side(side).mc_armed.remove(&(t.mc.0, id.0));
            assert!(was, "position {} missing from the margin-call index", id.0);
        }
    }

    /// Removes a position's triggers but an armed margin-call entry, which a liquidation by
    /// the tick being applied leaves for that tick's margin-call pass to take out with the
    /// others ([`MarketIndex::take_margin_calls`]): a liquidated position's margin-call price
    /// is at least as close to the mark as its liquidation price, which the mark reached, so
    /// the entry is always in the range that pass takes.
    pub fn remove_but_armed_call(&mut self, id: PositionId, side: Side, t: Triggers) {
        let s = self.side(side);
        if t.liq.0 > 0 {
            let was = s.liq.remove(&(t.liq.0, id.0));
            assert!(was, "position {} missing from the liquidation index", id.0);
        }
        if let Some(tp) = t.tp {
            s.tp.remove(&(tp.0, id.0));
        }
        if let Some(sl) = t.sl {
            s.sl.remove(&(sl.0, id.0));
        }
        if t.mc.0 > 0 && !t.mc_armed {
            let was = s.mc_called.remove(&(t.mc.0, id.0));
            assert!(was, "position {} missing from the margin-call index", id.0);
        }
    }

    /// Re-indexes a position whose triggers changed from `old` to `new` (partial close, added
    /// margin, edited TP/SL, a margin call fired or re-armed).
    pub fn replace(&mut self, id: PositionId, side: Side, old: Triggers, new: Triggers) {
        self.remove(id, side, old);
        self.insert(id, side, new);
    }

    /// Indexes a pending order under its trigger price.
    pub fn insert_order(&mut self, id: OrderId, side: Side, kind: OrderKind, price: Price) {
        let s = self.side(side);
        let set = if kind == OrderKind::Limit { &mut s.limit } else { &mut s.stop };
        let fresh = set.insert((price.0, id.0));
        assert!(fresh, "order {} indexed twice", id.0);
    }

    /// Removes a pending order.
    pub fn remove_order(&mut self, id: OrderId, side: Side, kind: OrderKind, price: Price) {
        let s = self.side(side);
        let set = if kind == OrderKind::Limit { &mut s.limit } else { &mut s.stop };
        let was = set.remove(&(price.0, id.0));
        assert!(was, "order {} missing from the order index", id.0);
    }

    /// Appends the ids of the pending orders the tick triggers. A long buys at the ask: a limit
    /// when ask <= limit, a stop when ask >= stop. A short sells at the bid: a limit when
    /// bid >= limit, a stop when bid <= stop.
    #[inline]
    pub fn collect_orders(&self, bid: Price, ask: Price, out: &mut Vec<OrderId>) {
        if !self.orders_crossed(bid, ask) {
            return;
        }
        self.long.limit.orders_at_or_above(ask.0, out);
        self.long.stop.orders_at_or_below(ask.0, out);
        self.short.limit.orders_at_or_below(bid.0, out);
        self.short.stop.orders_at_or_above(bid.0, out);
    }

    /// True if the tick crosses some pending order (O(1)): the quiet tick's early exit.
    #[inline]
    pub fn orders_crossed(&self, bid: Price, ask: Price) -> bool {
        self.long.limit.any_at_or_above(ask.0)
            || self.long.stop.any_at_or_below(ask.0)
            || self.short.limit.any_at_or_below(bid.0)
            || self.short.stop.any_at_or_above(bid.0)
    }

    /// True if the tick calls or re-arms some position (O(1)).
    #[inline]
    pub fn margin_calls_due(&self, bid: Price, ask: Price) -> bool {
        self.long.mc_armed.any_at_or_above(bid.0)
            || self.short.mc_armed.any_at_or_below(ask.0)
            || self.long.mc_called.any_at_or_below(bid.0 - 1)
            || self.short.mc_called.any_at_or_above(ask.0 + 1)
    }

    /// Takes out the armed entries the tick reaches (long: mc >= bid; short: mc <= ask) and
    /// appends their ids — some may be positions this tick just liquidated.
    pub fn take_margin_calls(&mut self, bid: Price, ask: Price, out: &mut Vec<PositionId>) {
        self.long.mc_armed.take_at_or_above(bid.0, out);
        self.short.mc_armed.take_at_or_below(ask.0, out);
    }

    /// Files a position under the called margin-call set (after [`Self::take_margin_calls`]).
    pub fn insert_called(&mut self, id: PositionId, side: Side, mc: Price) {
        let fresh = self.side(side).mc_called.insert((mc.0, id.0));
        assert!(fresh, "position {} called twice", id.0);
    }

    /// Appends the called positions the tick takes back above the level: long when bid > mc,
    /// short when ask < mc.
    #[inline]
    pub fn collect_rearms(&self, bid: Price, ask: Price, out: &mut Vec<PositionId>) {
        self.long.mc_called.collect_at_or_below(bid.0 - 1, out);
        self.short.mc_called.collect_at_or_above(ask.0 + 1, out);
    }

    /// Appends the ids of positions whose take-profit or stop-loss the tick crosses.
    /// Long: TP when bid >= tp, SL when bid <= sl. Short: TP when ask <= tp, SL when ask >= sl.
    #[inline]
    pub fn collect_tp_sl(&self, bid: Price, ask: Price, out: &mut Vec<PositionId>) {
        self.long.tp.collect_at_or_below(bid.0, out);
        self.long.sl.collect_at_or_above(bid.0, out);
        self.short.tp.collect_at_or_above(ask.0, out);
        self.short.sl.collect_at_or_below(ask.0, out);
    }

    /// Appends the ids of positions the tick liquidates: long when bid <= liq, short when
    /// ask >= liq.
    #[inline]
    pub fn collect_liquidations(&self, bid: Price, ask: Price, out: &mut Vec<PositionId>) {
        self.long.liq.collect_at_or_above(bid.0, out);
        self.short.liq.collect_at_or_below(ask.0, out);
    }

    /// Up to `n` positions of `side` nearest their liquidation price: a long's highest
    /// liquidation prices (the bid falls onto them), a short's lowest.
    pub fn nearest_liquidations(&self, side: Side, n: usize) -> Vec<PositionId> {
        let ids = |k: &Key| PositionId(k.1);
        match side {
            Side::Long => self.long.liq.set.iter().rev().take(n).map(ids).collect(),
            Side::Short => self.short.liq.set.iter().take(n).map(ids).collect(),
        }
    }

    /// Number of indexed entries (every ordering, both sides), for tests and memory accounting.
    pub fn len(&self) -> usize {
        [&self.long, &self.short]
            .iter()
            .map(|s| {
                let positions = s.liq.len() + s.tp.len() + s.sl.len();
                positions + s.mc_armed.len() + s.mc_called.len() + s.limit.len() + s.stop.len()
            })
            .sum()
    }

    /// True if nothing is indexed.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(liq: i64, tp: Option<i64>, sl: Option<i64>) -> Triggers {
        Triggers {
            liq: Price(liq),
            tp: tp.map(Price),
            sl: sl.map(Price),
            mc: Price(0),
            mc_armed: true,
        }
    }

    #[test]
    fn ranges_match_trigger_rules() {
        let mut ix = MarketIndex::default();
        ix.insert(PositionId(1), Side::Long, t(90, Some(120), Some(95)));
        ix.insert(PositionId(2), Side::Short, t(110, Some(80), Some(105)));
        ix.insert(PositionId(3), Side::Long, t(0, None, None)); // 1x: never liquidated
        let mut out = Vec::new();
        ix.collect_tp_sl(Price(100), Price(101), &mut out);
        assert!(out.is_empty());
        ix.collect_tp_sl(Price(120), Price(121), &mut out);
        assert_eq!(out, vec![PositionId(1), PositionId(2)]); // long TP, short SL (ask >= 105)
        out.clear();
        ix.collect_tp_sl(Price(79), Price(80), &mut out);
        assert_eq!(out, vec![PositionId(1), PositionId(2)]); // long SL, short TP
        out.clear();
        ix.collect_liquidations(Price(90), Price(91), &mut out);
        assert_eq!(out, vec![PositionId(1)]);
        out.clear();
        ix.collect_liquidations(Price(91), Price(109), &mut out);
        assert!(out.is_empty());
        ix.collect_liquidations(Price(109), Price(110), &mut out);
        assert_eq!(out, vec![PositionId(2)]);
        assert_eq!(ix.len(), 6);
        ix.remove(PositionId(1), Side::Long, t(90, Some(120), Some(95)));
        ix.replace(
            PositionId(2),
            Side::Short,
            t(110, Some(80), Some(105)),
            t(115, Some(80), Some(105)),
        );
        out.clear();
        ix.collect_liquidations(Price(1), Price(114), &mut out);
        assert!(out.is_empty());
        assert_eq!(ix.len(), 3);
    }
}
