//! The trigger index: per market and side, open positions ordered by liquidation price, by
//! take-profit, by stop-loss and by margin-call price (armed and already called), and pending
//! entry orders ordered by limit and by stop price.
//!
//! A tick asks each ordered set for the range that the new bid/ask crosses, so its cost is
//! `O(log n + k)` for `k` triggered positions, whatever the number `n` of open positions. Position
//! keys are `price << 24 | slot` (`PosKey`); order keys `(price_ticks, order_id)`.

use std::collections::BTreeSet;
use std::ops::Bound::{Included, Unbounded};

use crate::command::{OrderId, OrderKind};
use crate::limits::{SLOT_BITS, SLOTS_MAX};
use crate::math::Side;
use crate::num::Price;
use crate::slab::Slot;

/// A key of an ordered set: a price first, then something that keeps equal prices apart.
pub(crate) trait IndexKey: Ord + Copy + std::fmt::Debug {
    /// Its price.
    fn price(self) -> i64;
    /// The smallest key with price `p` (`p` within the keys' price range).
    fn lowest(p: i64) -> Self;
    /// The largest key with price `p`.
    fn highest(p: i64) -> Self;
}

/// Pending orders and expiries: `(price or time, order id)`.
pub(crate) type OrderKey = (i64, u64);

/// A command time (ns) as the first half of an [`OrderKey`] (order expiries, dead-man's
/// switches, session expiries). Times beyond `i64` never arrive: the edges refuse them.
pub(crate) fn time_key(ns: u64) -> i64 {
    i64::try_from(ns).unwrap_or(i64::MAX)
}

impl IndexKey for OrderKey {
    #[inline]
    fn price(self) -> i64 {
        self.0
    }
    #[inline]
    fn lowest(p: i64) -> Self {
        (p, 0)
    }
    #[inline]
    fn highest(p: i64) -> Self {
        (p, u64::MAX)
    }
}

/// Open positions: `price << 24 | slot` in one word, half the bytes of `(price, id)` — the
/// index is a third of the memory an open position costs. Prices are at most
/// `max_price_ticks` (<= 10^12 < 2^40); a liquidation or margin-call price beyond 2^40 - 1 (a
/// short at low leverage) is stored as 2^40 - 1, which compares with every price a tick can
/// carry exactly as the real price does. Equal prices are ordered by slot: the engine sorts
/// what a tick triggers by id before acting, so slots never decide an outcome.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) struct PosKey(u64);

use crate::limits::KEY_PRICE_MAX;

impl PosKey {
    #[inline]
    pub(crate) fn new(price: Price, slot: Slot) -> PosKey {
        assert!(price.0 >= 0, "indexed prices are not negative");
        let p = u64::try_from(price.0.min(KEY_PRICE_MAX)).expect("clamped above");
        PosKey(p << SLOT_BITS | u64::from(slot.0))
    }

    #[inline]
    pub(crate) fn slot(self) -> Slot {
        Slot(u32::try_from(self.0 & u64::from(SLOTS_MAX)).expect("masked to 24 bits"))
    }
}

impl IndexKey for PosKey {
    #[inline]
    fn price(self) -> i64 {
        i64::try_from(self.0 >> SLOT_BITS).expect("40 bits")
    }
    #[inline]
    fn lowest(p: i64) -> Self {
        PosKey(u64::try_from(p.clamp(0, KEY_PRICE_MAX)).expect("clamped") << SLOT_BITS)
    }
    #[inline]
    fn highest(p: i64) -> Self {
        let p = u64::try_from(p.clamp(0, KEY_PRICE_MAX)).expect("clamped");
        PosKey(p << SLOT_BITS | u64::from(SLOTS_MAX))
    }
}

/// An ordered set that also keeps its smallest and largest key at hand, so "does this tick
/// trigger anything?" is two comparisons instead of a tree descent: a tick that triggers nothing
/// costs O(1) whatever the number of positions; only a tick that does trigger walks the tree.
#[derive(Debug, Clone)]
pub(crate) struct OrderedSet<K = OrderKey> {
    set: BTreeSet<K>,
    first: Option<K>,
    last: Option<K>,
}

impl<K> Default for OrderedSet<K> {
    fn default() -> Self {
        OrderedSet { set: BTreeSet::new(), first: None, last: None }
    }
}

impl<K: IndexKey> OrderedSet<K> {
    #[inline]
    pub(crate) fn insert(&mut self, k: K) -> bool {
        let fresh = self.set.insert(k);
        if self.first.is_none_or(|f| k < f) {
            self.first = Some(k);
        }
        if self.last.is_none_or(|l| k > l) {
            self.last = Some(k);
        }
        fresh
    }

    #[inline]
    pub(crate) fn remove(&mut self, k: &K) -> bool {
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
        self.first.is_some_and(|f| f.price() <= p)
    }

    /// True if some key has price >= `p` (O(1)).
    #[inline]
    fn any_at_or_above(&self, p: i64) -> bool {
        self.last.is_some_and(|l| l.price() >= p)
    }

    /// Appends the keys with price <= `p`, ascending. O(1) when there are none: the quiet
    /// tick asks every set, so nothing is built (not even an empty range) before the check.
    #[inline]
    pub(crate) fn extend_at_or_below(&self, p: i64, out: &mut impl Extend<K>) {
        if self.any_at_or_below(p) {
            out.extend(self.set.range((Unbounded, Included(K::highest(p)))).copied());
        }
    }

    /// Appends the keys with price >= `p`, ascending. O(1) when there are none.
    #[inline]
    pub(crate) fn extend_at_or_above(&self, p: i64, out: &mut impl Extend<K>) {
        if self.any_at_or_above(p) {
            out.extend(self.set.range((Included(K::lowest(p)), Unbounded)).copied());
        }
    }

    /// The keys with price >= `p`, ascending (a descent even when there are none: callers
    /// check first).
    pub(crate) fn at_or_above(&self, p: i64) -> impl Iterator<Item = K> + '_ {
        self.set.range((Included(K::lowest(p)), Unbounded)).copied()
    }

    #[inline]
    pub(crate) fn len(&self) -> usize {
        self.set.len()
    }

    /// Takes out every key with price >= `p` (in place, walking the range once: no lookup per
    /// key, no allocation), appending them.
    fn take_at_or_above(&mut self, p: i64, out: &mut impl Extend<K>) {
        if !self.any_at_or_above(p) {
            return;
        }
        out.extend(self.set.extract_if(K::lowest(p).., |_| true));
        self.first = self.set.first().copied();
        self.last = self.set.last().copied();
    }

    /// Takes out every key with price <= `p`, appending them.
    fn take_at_or_below(&mut self, p: i64, out: &mut impl Extend<K>) {
        if !self.any_at_or_below(p) {
            return;
        }
        out.extend(self.set.extract_if(..=K::highest(p), |_| true));
        self.first = self.set.first().copied();
        self.last = self.set.last().copied();
    }

    /// The largest key, O(1).
    #[inline]
    pub(crate) fn last_key(&self) -> Option<K> {
        self.last
    }

    /// The smallest key, O(1).
    #[inline]
    pub(crate) fn first_key(&self) -> Option<K> {
        self.first
    }

    /// All keys, ascending.
    pub(crate) fn iter(&self) -> impl DoubleEndedIterator<Item = K> + '_ {
        self.set.iter().copied()
    }
}

/// Collects the ids of the order keys a set gives.
pub(crate) struct OrderIds<'a>(pub(crate) &'a mut Vec<OrderId>);

impl Extend<OrderKey> for OrderIds<'_> {
    fn extend<I: IntoIterator<Item = OrderKey>>(&mut self, keys: I) {
        self.0.extend(keys.into_iter().map(|k| OrderId(k.1)));
    }
}

/// Collects the slots of the position keys a set gives.
struct SlotsOf<'a>(&'a mut Vec<Slot>);

impl Extend<PosKey> for SlotsOf<'_> {
    fn extend<I: IntoIterator<Item = PosKey>>(&mut self, keys: I) {
        self.0.extend(keys.into_iter().map(PosKey::slot));
    }
}

/// The orderings for one side of one market.
#[derive(Debug, Default, Clone)]
struct SideIndex {
    liq: OrderedSet<PosKey>,
    tp: OrderedSet<PosKey>,
    sl: OrderedSet<PosKey>,
    /// Margin-call prices of positions not yet called (since the last crossing back).
    mc_armed: OrderedSet<PosKey>,
    /// Margin-call prices of positions called: re-armed when the mark is back above the level.
    mc_called: OrderedSet<PosKey>,
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
    fn mc_set(self, s: &mut SideIndex) -> &mut OrderedSet<PosKey> {
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

    /// Indexes the triggers of the position in `slot`.
    #[inline]
    pub(crate) fn insert(&mut self, slot: Slot, side: Side, t: Triggers) {
        let s = self.side(side);
        let k = |p: Price| PosKey::new(p, slot);
        if t.liq.0 > 0 {
            let fresh = s.liq.insert(k(t.liq));
            assert!(fresh, "slot {} indexed twice", slot.0);
        }
        if let Some(tp) = t.tp {
            s.tp.insert(k(tp));
        }
        if let Some(sl) = t.sl {
            s.sl.insert(k(sl));
        }
        if t.mc.0 > 0 {
            t.mc_set(s).insert(k(t.mc));
        }
    }

    /// Removes a position's triggers; `t` must be what was inserted.
    #[inline]
    pub(crate) fn remove(&mut self, slot: Slot, side: Side, t: Triggers) {
        self.remove_but_armed_call(slot, side, t);
        if t.mc.0 > 0 && t.mc_armed {
            let was = self.side(side).mc_armed.remove(&PosKey::new(t.mc, slot));
            assert!(was, "slot {} missing from the margin-call index", slot.0);
        }
    }

    /// Removes a position's triggers but an armed margin-call entry, which a liquidation by
    /// the tick being applied leaves for that tick's margin-call pass to take out with the
    /// others ([`MarketIndex::take_margin_calls`]): a liquidated position's margin-call price
    /// is at least as close to the mark as its liquidation price, which the mark reached, so
    /// the entry is always in the range that pass takes.
    pub(crate) fn remove_but_armed_call(&mut self, slot: Slot, side: Side, t: Triggers) {
        let s = self.side(side);
        let k = |p: Price| PosKey::new(p, slot);
        if t.liq.0 > 0 {
            let was = s.liq.remove(&k(t.liq));
            assert!(was, "slot {} missing from the liquidation index", slot.0);
        }
        if let Some(tp) = t.tp {
            s.tp.remove(&k(tp));
        }
        if let Some(sl) = t.sl {
            s.sl.remove(&k(sl));
        }
        if t.mc.0 > 0 && !t.mc_armed {
            let was = s.mc_called.remove(&k(t.mc));
            assert!(was, "slot {} missing from the margin-call index", slot.0);
        }
    }

    /// Re-indexes a position whose triggers changed from `old` to `new` (partial close, added
    /// margin, edited TP/SL, a margin call fired or re-armed). Only the sets whose key changed
    /// are touched: an added margin moves the liquidation and margin-call keys, a TP/SL edit only
    /// its own — each B-tree re-filing is a walk of cold nodes.
    pub(crate) fn replace(&mut self, slot: Slot, side: Side, old: Triggers, new: Triggers) {
        let s = self.side(side);
        let k = |p: Price| PosKey::new(p, slot);
        if old.liq != new.liq {
            if old.liq.0 > 0 {
                assert!(
                    s.liq.remove(&k(old.liq)),
                    "slot {} missing from the liquidation index",
                    slot.0
                );
            }
            if new.liq.0 > 0 {
                assert!(s.liq.insert(k(new.liq)), "slot {} indexed twice", slot.0);
            }
        }
        if old.tp != new.tp {
            if let Some(tp) = old.tp {
                s.tp.remove(&k(tp));
            }
            if let Some(tp) = new.tp {
                s.tp.insert(k(tp));
            }
        }
        if old.sl != new.sl {
            if let Some(sl) = old.sl {
                s.sl.remove(&k(sl));
            }
            if let Some(sl) = new.sl {
                s.sl.insert(k(sl));
            }
        }
        if (old.mc, old.mc_armed) != (new.mc, new.mc_armed) {
            if old.mc.0 > 0 {
                let was = old.mc_set(s).remove(&k(old.mc));
                assert!(was, "slot {} missing from the margin-call index", slot.0);
            }
            if new.mc.0 > 0 {
                new.mc_set(s).insert(k(new.mc));
            }
        }
    }

    /// Indexes a pending order under its trigger price.
    pub fn insert_order(&mut self, id: OrderId, side: Side, kind: OrderKind, price: Price) {
        let s = self.side(side);
        let set = match kind {
            OrderKind::Limit => &mut s.limit,
            OrderKind::Stop => &mut s.stop,
        };
        let fresh = set.insert((price.0, id.0));
        assert!(fresh, "order {} indexed twice", id.0);
    }

    /// Removes a pending order.
    pub fn remove_order(&mut self, id: OrderId, side: Side, kind: OrderKind, price: Price) {
        let s = self.side(side);
        let set = match kind {
            OrderKind::Limit => &mut s.limit,
            OrderKind::Stop => &mut s.stop,
        };
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
        let out = &mut OrderIds(out);
        self.long.limit.extend_at_or_above(ask.0, out);
        self.long.stop.extend_at_or_below(ask.0, out);
        self.short.limit.extend_at_or_below(bid.0, out);
        self.short.stop.extend_at_or_above(bid.0, out);
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
    /// appends their slots — some may be of positions this tick just liquidated.
    pub(crate) fn take_margin_calls(&mut self, bid: Price, ask: Price, out: &mut Vec<Slot>) {
        let mut keys = SlotsOf(out);
        self.long.mc_armed.take_at_or_above(bid.0, &mut keys);
        self.short.mc_armed.take_at_or_below(ask.0, &mut keys);
    }

    /// Files a position under the called margin-call set (after [`Self::take_margin_calls`]).
    pub(crate) fn insert_called(&mut self, slot: Slot, side: Side, mc: Price) {
        let fresh = self.side(side).mc_called.insert(PosKey::new(mc, slot));
        assert!(fresh, "slot {} called twice", slot.0);
    }

    /// Appends the slots of the called positions the tick takes back above the level: long
    /// when bid > mc, short when ask < mc.
    #[inline]
    pub(crate) fn collect_rearms(&self, bid: Price, ask: Price, out: &mut Vec<Slot>) {
        let out = &mut SlotsOf(out);
        self.long.mc_called.extend_at_or_below(bid.0 - 1, out);
        self.short.mc_called.extend_at_or_above(ask.0 + 1, out);
    }

    /// Appends the slots of positions whose take-profit or stop-loss the tick crosses.
    /// Long: TP when bid >= tp, SL when bid <= sl. Short: TP when ask <= tp, SL when ask >= sl.
    #[inline]
    pub(crate) fn collect_tp_sl(&self, bid: Price, ask: Price, out: &mut Vec<Slot>) {
        let out = &mut SlotsOf(out);
        self.long.tp.extend_at_or_below(bid.0, out);
        self.long.sl.extend_at_or_above(bid.0, out);
        self.short.tp.extend_at_or_above(ask.0, out);
        self.short.sl.extend_at_or_below(ask.0, out);
    }

    /// Appends the slots of positions the tick liquidates: long when bid <= liq, short when
    /// ask >= liq.
    #[inline]
    pub(crate) fn collect_liquidations(&self, bid: Price, ask: Price, out: &mut Vec<Slot>) {
        let out = &mut SlotsOf(out);
        self.long.liq.extend_at_or_above(bid.0, out);
        self.short.liq.extend_at_or_below(ask.0, out);
    }

    /// The slots of at least `n` positions of `side` nearest their liquidation price (a long's
    /// highest liquidation prices: the bid falls onto them; a short's lowest), and of every
    /// other position at the last of those prices, so the caller's order by id decides ties
    /// and not the slots.
    pub(crate) fn nearest_liquidations(&self, side: Side, n: usize) -> Vec<Slot> {
        let pick = |keys: &mut dyn Iterator<Item = PosKey>| {
            let mut out: Vec<PosKey> = Vec::new(); // a query, not the hot path
            for k in keys {
                if out.len() >= n && out.last().is_none_or(|l| l.price() != k.price()) {
                    break;
                }
                out.push(k);
            }
            out.into_iter().map(PosKey::slot).collect()
        };
        match side {
            Side::Long => pick(&mut self.long.liq.iter().rev()),
            Side::Short => pick(&mut self.short.liq.iter()),
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
        ix.insert(Slot(1), Side::Long, t(90, Some(120), Some(95)));
        ix.insert(Slot(2), Side::Short, t(110, Some(80), Some(105)));
        ix.insert(Slot(3), Side::Long, t(0, None, None)); // 1x: never liquidated
        let mut out = Vec::new();
        ix.collect_tp_sl(Price(100), Price(101), &mut out);
        assert!(out.is_empty());
        ix.collect_tp_sl(Price(120), Price(121), &mut out);
        assert_eq!(out, vec![Slot(1), Slot(2)]); // long TP, short SL (ask >= 105)
        out.clear();
        ix.collect_tp_sl(Price(79), Price(80), &mut out);
        assert_eq!(out, vec![Slot(1), Slot(2)]); // long SL, short TP
        out.clear();
        ix.collect_liquidations(Price(90), Price(91), &mut out);
        assert_eq!(out, vec![Slot(1)]);
        out.clear();
        ix.collect_liquidations(Price(91), Price(109), &mut out);
        assert!(out.is_empty());
        ix.collect_liquidations(Price(109), Price(110), &mut out);
        assert_eq!(out, vec![Slot(2)]);
        assert_eq!(ix.len(), 6);
        ix.remove(Slot(1), Side::Long, t(90, Some(120), Some(95)));
        ix.replace(Slot(2), Side::Short, t(110, Some(80), Some(105)), t(115, Some(80), Some(105)));
        out.clear();
        ix.collect_liquidations(Price(1), Price(114), &mut out);
        assert!(out.is_empty());
        assert_eq!(ix.len(), 3);
    }

    #[test]
    fn nearest_liquidations_keep_every_tie_at_the_cut() {
        let mut ix = MarketIndex::default();
        ix.insert(Slot(9), Side::Long, t(95, None, None));
        ix.insert(Slot(2), Side::Long, t(95, None, None));
        ix.insert(Slot(5), Side::Long, t(90, None, None));
        // One asked for; both at 95 returned, so the caller's order by id picks, not the slot.
        assert_eq!(ix.nearest_liquidations(Side::Long, 1), vec![Slot(9), Slot(2)]);
        assert_eq!(ix.nearest_liquidations(Side::Long, 3).len(), 3);
        assert!(ix.nearest_liquidations(Side::Long, 0).is_empty());
    }

    #[test]
    fn prices_past_the_key_range_compare_like_the_real_price() {
        // A 1x short's liquidation price can exceed 2^40 ticks: stored at the clamp, never
        // reached by a tick (ticks are at most 10^12 ticks).
        let mut ix = MarketIndex::default();
        ix.insert(Slot(1), Side::Short, t(i64::MAX, None, None));
        let mut out = Vec::new();
        ix.collect_liquidations(Price(1), Price(crate::config::MAX_PRICE_TICKS_LIMIT), &mut out);
        assert!(out.is_empty());
        ix.remove(Slot(1), Side::Short, t(i64::MAX, None, None));
        assert!(ix.is_empty());
    }
}
