//! Trailing stops without a per-tick scan: positions grouped by the running peak since they were
//! set, kept as a monotonic stack.
//!
//! Work in "x" space, where higher is better for the position: a long's bid, a short's negated
//! ask. A trailing stop set at time `t` follows `peak(t) = max x since t`, which is non-increasing
//! in `t`: stops set earlier have peaks at least as high. So the groups, oldest at the bottom,
//! have strictly decreasing peaks, and a new high `x` only ever lifts the top groups — every
//! group whose peak is `<= x` merges into one with peak `x`. Each group triggers first through
//! its member with the smallest distance, at `level = stop(peak, smallest)`.
//!
//! Per tick: compare `x` with the top group's peak (merge while `<=`), and compare `x` with the
//! highest level — the top group's own, or the cached maximum of the others in an ordered set.
//! A tick that lifts no group past another and triggers nothing is O(1) whatever the number of
//! trailing stops. A merge moves the smaller group's members into the larger (each member moves
//! O(log n) times in its life) and removes one level from the set: amortised over the `set`
//! commands that created the groups, never per tick.

use std::collections::BTreeSet;

use crate::command::TrailDistance;
use crate::index::OrderedSet;
use crate::math::Side;
use crate::num::Price;
use crate::slab::PosRef;

/// Basis points in one.
const BPS_ONE: i64 = 10_000;

/// How a book's stop prices follow the peak.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Unit {
    /// `stop = peak - distance` (ticks).
    Price,
    /// A long: `stop = ceil(peak * (1 - bps))`. Rounded toward the mark: never further than
    /// asked.
    BpsLong,
    /// A short (x = -ask): `stop_ask = floor(trough * (1 + bps))`, toward the mark.
    BpsShort,
}

impl Unit {
    /// The stop, in x space, of a member `distance` behind `peak`.
    pub fn stop(self, peak: i64, distance: u64) -> i64 {
        let d = i128::from(distance);
        let p = i128::from(peak);
        let one = i128::from(BPS_ONE);
        let x = match self {
            Unit::Price => p - d,
            Unit::BpsLong => crate::num::div_ceil(p * (one - d), one),
            // x = -ask: -floor(ask * (1 + bps)) = ceil(x * (1 + bps)).
            Unit::BpsShort => crate::num::div_ceil(p * (one + d), one),
        };
        i64::try_from(x).unwrap_or(i64::MIN)
    }
}

#[derive(Debug, Clone, Default)]
struct Group {
    peak: i64,
    /// The group nearer the bottom (higher peak).
    below: Option<u32>,
    /// The group nearer the top (lower peak).
    above: Option<u32>,
    /// `(distance, position id)`, smallest distance first.
    members: BTreeSet<(u64, u64)>,
    /// The smallest distance (cached: a quiet tick reads it instead of descending the set).
    min: u64,
}

/// One side's trailing stops of one kind of distance in one market.
#[derive(Debug, Clone)]
pub struct TrailBook {
    unit: Unit,
    groups: Vec<Group>,
    free: Vec<u32>,
    top: Option<u32>,
    /// `(level, group)` of every group but the top one.
    levels: OrderedSet,
    len: usize,
}

impl TrailBook {
    /// An empty book.
    pub fn new(unit: Unit) -> TrailBook {
        TrailBook {
            unit,
            groups: Vec::new(),
            free: Vec::new(),
            top: None,
            levels: OrderedSet::default(),
            len: 0,
        }
    }

    /// Trailing stops held.
    #[inline]
    pub fn len(&self) -> usize {
        self.len
    }

    /// True if none.
    #[inline]
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    fn level(&self, g: u32) -> i64 {
        let group = &self.groups[g as usize];
        debug_assert_eq!(group.members.first().map(|m| m.0), Some(group.min));
        self.unit.stop(group.peak, group.min)
    }

    /// Re-reads a group's smallest distance after its members changed.
    fn refresh_min(&mut self, g: u32) {
        let group = &mut self.groups[g as usize];
        group.min = group.members.first().map_or(0, |m| m.0);
    }

    /// The peak of group `g` (what its members' stops follow).
    pub fn peak(&self, g: u32) -> i64 {
        self.groups[g as usize].peak
    }

    /// Adds a stop `distance` behind `x` (the current mark, which no peak is below: the caller
    /// lifted the book with it); returns its group. Joins the top group if its peak is `x`;
    /// otherwise `x` is below every peak and starts a new top group.
    pub(crate) fn insert(&mut self, id: PosRef, distance: u64, x: i64) -> u32 {
        // Every tick lifts the top group to the mark, so no peak is below the mark: a new stop
        // never has to merge anything (which would move members without telling their owners).
        assert!(
            self.top.is_none_or(|t| self.groups[t as usize].peak >= x),
            "a trailing group's peak is below the mark"
        );
        let g = match self.top {
            Some(t) if self.groups[t as usize].peak == x => t,
            top => {
                assert!(top.is_none_or(|t| self.groups[t as usize].peak > x), "stack order");
                if let Some(t) = top {
                    let fresh = self.levels.insert((self.level(t), u64::from(t)));
                    assert!(fresh);
                }
                let g = self.alloc(Group {
                    peak: x,
                    below: top,
                    above: None,
                    members: BTreeSet::new(),
                    min: 0, // set below, with its first member
                });
                if let Some(t) = top {
                    self.groups[t as usize].above = Some(g);
                }
                self.top = Some(g);
                g
            }
        };
        let fresh = self.groups[g as usize].members.insert((distance, id.raw()));
        assert!(fresh, "position {} trails twice", id.raw());
        self.refresh_min(g);
        self.len += 1;
        g
    }

    /// Removes a stop from group `g`: re-levels the group, or unlinks it once empty.
    pub(crate) fn remove(&mut self, id: PosRef, distance: u64, g: u32) {
        let is_top = self.top == Some(g);
        if !is_top {
            let was = self.levels.remove(&(self.level(g), u64::from(g)));
            assert!(was, "group {g} missing from the levels");
        }
        let was = self.groups[g as usize].members.remove(&(distance, id.raw()));
        assert!(was, "position {} missing from its trailing group", id.raw());
        self.refresh_min(g);
        self.len -= 1;
        if !self.groups[g as usize].members.is_empty() {
            if !is_top {
                self.levels.insert((self.level(g), u64::from(g)));
            }
            return;
        }
        // Unlink: the neighbours now rest on each other.
        let (below, above) = (self.groups[g as usize].below, self.groups[g as usize].above);
        if let Some(b) = below {
            self.groups[b as usize].above = above;
        }
        match above {
            Some(a) => self.groups[a as usize].below = below,
            None => {
                self.top = below;
                if let Some(b) = below {
                    let was = self.levels.remove(&(self.level(b), u64::from(b)));
                    assert!(was);
                }
            }
        }
        self.release(g);
    }

    /// A new mark `x`: every top group whose peak is `<= x` merges into one at peak `x`.
    /// `moved(position, group)` is told of each member that changes group.
    pub(crate) fn lift(&mut self, x: i64, moved: &mut dyn FnMut(PosRef, u32)) {
        let Some(mut t) = self.top else { return };
        if self.groups[t as usize].peak >= x {
            return; // not a new high for anyone: the common case, O(1)
        }
        self.groups[t as usize].peak = x;
        while let Some(b) = self.groups[t as usize].below {
            if self.groups[b as usize].peak > x {
                break;
            }
            let was = self.levels.remove(&(self.level(b), u64::from(b)));
            assert!(was);
            t = self.merge(t, b, moved);
            self.groups[t as usize].peak = x;
        }
        self.top = Some(t);
    }

    /// Merges top group `t` with `b` just below it (small into large); the survivor takes
    /// `b`'s place and is the new top.
    fn merge(&mut self, t: u32, b: u32, moved: &mut dyn FnMut(PosRef, u32)) -> u32 {
        let below = self.groups[b as usize].below;
        let (big, small) =
            if self.groups[t as usize].members.len() >= self.groups[b as usize].members.len() {
                (t, b)
            } else {
                (b, t)
            };
        let members = std::mem::take(&mut self.groups[small as usize].members);
        for (d, id) in members {
            self.groups[big as usize].members.insert((d, id));
            moved(PosRef::from_raw(id), big);
        }
        self.refresh_min(big);
        self.groups[big as usize].below = below;
        self.groups[big as usize].above = None;
        if let Some(b) = below {
            self.groups[b as usize].above = Some(big);
        }
        self.release(small);
        big
    }

    /// Appends the members whose stop `x` has reached (`x <= stop`), ascending distance within
    /// each group. O(1) when none has.
    pub(crate) fn collect_triggered(&self, x: i64, out: &mut Vec<PosRef>) {
        if let Some(t) = self.top
            && self.level(t) >= x
        {
            self.collect_group(t, x, out);
        }
        if self.levels.last_key().is_some_and(|(level, _)| level >= x) {
            for (_, g) in self.levels.at_or_above(x) {
                self.collect_group(u32::try_from(g).expect("group index"), x, out);
            }
        }
    }

    fn collect_group(&self, g: u32, x: i64, out: &mut Vec<PosRef>) {
        let group = &self.groups[g as usize];
        for &(d, id) in &group.members {
            if self.unit.stop(group.peak, d) < x {
                break; // larger distances stop lower still
            }
            out.push(PosRef::from_raw(id));
        }
    }

    fn alloc(&mut self, g: Group) -> u32 {
        match self.free.pop() {
            Some(i) => {
                self.groups[i as usize] = g;
                i
            }
            None => {
                self.groups.push(g);
                u32::try_from(self.groups.len() - 1).expect("fewer than 2^32 groups")
            }
        }
    }

    fn release(&mut self, g: u32) {
        self.groups[g as usize] = Group::default();
        self.free.push(g);
    }
}

/// A market's trailing stops: per side, one book for price distances and one for bps (their
/// order by distance does not depend on the peak, so each book's groups stay sorted).
#[derive(Debug, Clone)]
pub struct Trails {
    /// Indexed by [`slot`]: long price, long bps, short price, short bps.
    books: [TrailBook; 4],
}

impl Default for Trails {
    fn default() -> Self {
        let unit = |slot| [Unit::Price, Unit::BpsLong, Unit::Price, Unit::BpsShort][slot];
        Trails { books: std::array::from_fn(|i| TrailBook::new(unit(i))) }
    }
}

/// A distance as a book stores it.
pub fn raw(d: TrailDistance) -> u64 {
    match d {
        TrailDistance::Price(p) => u64::try_from(p.0).unwrap_or(0),
        TrailDistance::Bps(b) => u64::from(b),
    }
}

/// The mark in x space: a long's bid, a short's negated ask (higher is better for both).
pub fn x(side: Side, bid: Price, ask: Price) -> i64 {
    match side {
        Side::Long => bid.0,
        Side::Short => -ask.0,
    }
}

/// A price back from x space.
fn from_x(side: Side, v: i64) -> Price {
    Price(if side == Side::Long { v } else { -v })
}

/// The book of `side` and `d`'s kind.
fn slot(side: Side, d: TrailDistance) -> usize {
    let kind = usize::from(matches!(d, TrailDistance::Bps(_)));
    2 * usize::from(side == Side::Short) + kind
}

impl Trails {
    /// The book of `side` and `d`'s kind.
    pub fn book(&mut self, side: Side, d: TrailDistance) -> &mut TrailBook {
        &mut self.books[slot(side, d)]
    }

    /// A tick: every book follows its side's new mark.
    #[inline]
    pub(crate) fn lift(&mut self, bid: Price, ask: Price, moved: &mut dyn FnMut(PosRef, u32)) {
        if self.is_empty() {
            return;
        }
        for (i, book) in self.books.iter_mut().enumerate() {
            book.lift(x(side_of(i), bid, ask), moved);
        }
    }

    /// Appends the positions whose trailing stop the tick reached (unsorted across books).
    #[inline]
    pub(crate) fn collect_triggered(&self, bid: Price, ask: Price, out: &mut Vec<PosRef>) {
        if self.is_empty() {
            return;
        }
        for (i, book) in self.books.iter().enumerate() {
            book.collect_triggered(x(side_of(i), bid, ask), out);
        }
    }

    /// The peak (in price: a long's highest bid, a short's lowest ask) of a stop in `group`.
    pub fn peak_price(&self, side: Side, d: TrailDistance, group: u32) -> Price {
        from_x(side, self.books[slot(side, d)].peak(group))
    }

    /// Where a stop in `group` stands now, in price.
    pub fn stop_price(&self, side: Side, d: TrailDistance, group: u32) -> Price {
        let book = &self.books[slot(side, d)];
        from_x(side, book.unit.stop(book.peak(group), raw(d)))
    }

    /// Trailing stops held, both sides.
    #[inline]
    pub fn len(&self) -> usize {
        self.books.iter().map(TrailBook::len).sum()
    }

    /// True if none.
    #[inline]
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// The side of book `slot`.
fn side_of(slot: usize) -> Side {
    if slot < 2 { Side::Long } else { Side::Short }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::command::PositionId;
    use crate::slab::Slot;

    fn r(id: u64) -> PosRef {
        PosRef::new(PositionId(id), Slot(7))
    }

    #[test]
    fn groups_merge_on_new_highs_and_trigger_at_peak_minus_distance() {
        let mut b = TrailBook::new(Unit::Price);
        b.insert(r(1), 10, 100); // stop 90
        b.lift(95, &mut |_, _| {});
        let g2 = b.insert(r(2), 3, 95); // peak 95, stop 92
        let mut out = Vec::new();
        b.collect_triggered(93, &mut out);
        assert!(out.is_empty());
        b.collect_triggered(92, &mut out);
        assert_eq!(out, vec![r(2)]);
        out.clear();
        // A new high of 120 lifts both: stops 110 and 117.
        let mut moves = Vec::new();
        b.lift(120, &mut |id, g| moves.push((id, g)));
        assert_eq!(moves.len(), 1, "the smaller group moved");
        b.collect_triggered(118, &mut out);
        assert!(out.is_empty());
        b.collect_triggered(110, &mut out);
        assert_eq!(out, vec![r(2), r(1)]);
        let g = if moves[0].0 == r(1) { moves[0].1 } else { g2 };
        b.remove(r(2), 3, g);
        b.remove(r(1), 10, g);
        assert!(b.is_empty());
    }

    #[test]
    fn bps_stops_round_toward_the_mark() {
        assert_eq!(Unit::BpsLong.stop(10_001, 100), 9_901); // 9 900.99 -> up
        // Short at ask 10 001 (x = -10 001), 1%: 10 101.01 -> down to 10 101, x = -10 101.
        assert_eq!(Unit::BpsShort.stop(-10_001, 100), -10_101);
    }
}
