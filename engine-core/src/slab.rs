//! Open positions in a slab (`Slab`), addressed by slot, named by `PosRef`.
//!
//! A position lives in one slot of a dense array reserved at `max_open_positions`, so opening
//! one allocates nothing and its bytes are exactly `size_of::<Position>()` — no hash bucket, no
//! tree node. A closed position's slot is reused (last freed, first reused). Nothing maps a
//! `PositionId` to its slot: every command that names a position also names its account, and
//! the account's open list holds `PosRef`s (id and slot in one word, ordered by id), so the
//! lookup is a binary search in that short list; the trigger index holds slots directly.
//!
//! Slots are not part of the state: a snapshot stores positions by id, and a restored engine
//! may put them in other slots. Everything observable is ordered by id (or by price, then id)
//! whatever the slots, so a restored engine behaves exactly like the one that wrote the snapshot.

use crate::command::PositionId;
use crate::position::Position;

pub(crate) use crate::limits::SLOT_BITS;
pub use crate::limits::{POSITION_ID_LIMIT, SLOTS_MAX};

/// Where an open position lives in its [`Slab`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub(crate) struct Slot(pub(crate) u32);

/// An open position's id and slot in one word: `id << 24 | slot`. Ordered by id (ids are
/// unique), so a list of them sorted by id is sorted as numbers.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub(crate) struct PosRef(u64);

impl PosRef {
    pub(crate) fn new(id: PositionId, slot: Slot) -> PosRef {
        assert!(id.0 < POSITION_ID_LIMIT, "position id {} beyond the limit", id.0);
        assert!(slot.0 <= SLOTS_MAX, "slot {} beyond the limit", slot.0);
        PosRef(id.0 << SLOT_BITS | u64::from(slot.0))
    }

    pub(crate) fn id(self) -> PositionId {
        PositionId(self.0 >> SLOT_BITS)
    }

    pub(crate) fn slot(self) -> Slot {
        Slot(u32::try_from(self.0 & u64::from(SLOTS_MAX)).expect("masked to 24 bits"))
    }

    /// The word itself (the trailing-stop books keep it).
    pub(crate) fn raw(self) -> u64 {
        self.0
    }

    pub(crate) fn from_raw(raw: u64) -> PosRef {
        PosRef(raw)
    }
}

/// The open positions. A vacant slot holds a position with id 0 (ids start at 1).
#[derive(Debug, Clone)]
pub(crate) struct Slab {
    items: Vec<Position>,
    /// Vacant slots, the last freed on top.
    free: Vec<u32>,
    len: usize,
}

impl Slab {
    /// Room for `n` positions (at most [`SLOTS_MAX`]) before anything allocates again.
    pub(crate) fn with_capacity(n: usize) -> Slab {
        assert!(n <= SLOTS_MAX as usize, "the config bounds max_open_positions");
        Slab { items: Vec::with_capacity(n), free: Vec::with_capacity(n), len: 0 }
    }

    pub(crate) fn len(&self) -> usize {
        self.len
    }

    /// Stores `p`; returns its reference.
    pub(crate) fn insert(&mut self, p: Position) -> PosRef {
        assert!(p.id.0 != 0, "id 0 marks a vacant slot");
        let slot = match self.free.pop() {
            Some(s) => {
                assert!(self.items[s as usize].id.0 == 0, "a free slot is vacant");
                self.items[s as usize] = p;
                s
            }
            None => {
                self.items.push(p);
                u32::try_from(self.items.len() - 1).expect("bounded by SLOTS_MAX")
            }
        };
        self.len += 1;
        PosRef::new(p.id, Slot(slot))
    }

    /// Takes the position out of `r`'s slot.
    pub(crate) fn remove(&mut self, r: PosRef) -> Position {
        let item = &mut self.items[r.slot().0 as usize];
        assert_eq!(item.id, r.id(), "the slot holds the position named");
        let p = *item;
        item.id = PositionId(0);
        self.free.push(r.slot().0);
        self.len -= 1;
        p
    }

    pub(crate) fn get(&self, r: PosRef) -> &Position {
        let p = &self.items[r.slot().0 as usize];
        assert_eq!(p.id, r.id(), "the slot holds the position named");
        p
    }

    pub(crate) fn get_mut(&mut self, r: PosRef) -> &mut Position {
        let p = &mut self.items[r.slot().0 as usize];
        assert_eq!(p.id, r.id(), "the slot holds the position named");
        p
    }

    /// The reference of whatever occupies `slot` (the trigger index holds slots).
    pub(crate) fn at(&self, slot: Slot) -> PosRef {
        self.occupant(slot).expect("the index names only occupied slots")
    }

    /// The reference of whatever occupies `slot`, if anything.
    pub(crate) fn occupant(&self, slot: Slot) -> Option<PosRef> {
        let p = self.items.get(slot.0 as usize)?;
        (p.id.0 != 0).then(|| PosRef::new(p.id, slot))
    }

    /// The open positions, in slot order.
    pub(crate) fn values(&self) -> impl Iterator<Item = &Position> {
        self.items.iter().filter(|p| p.id.0 != 0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::command::{AccountId, MarketId};
    use crate::math::Side;
    use crate::num::{Ppm, Price, Qty, Usdc};
    use crate::position::NewPosition;

    fn position(id: u64) -> Position {
        Position::new(NewPosition {
            id: PositionId(id),
            account: AccountId(1),
            market: MarketId(0),
            side: Side::Long,
            qty: Qty(10),
            entry: Price(100),
            margin: Usdc(1_000),
            leverage: 10,
            mc: Price(0),
            tp: None,
            sl: Some(Price(90)),
            opened_at_ns: 7,
            mmr: Ppm(5_000),
            cross: false,
            bracket_group: 0,
        })
    }

    #[test]
    fn a_ref_orders_by_id_whatever_the_slot() {
        let a = PosRef::new(PositionId(5), Slot(SLOTS_MAX));
        let b = PosRef::new(PositionId(6), Slot(0));
        assert!(a < b);
        assert_eq!((a.id(), a.slot()), (PositionId(5), Slot(SLOTS_MAX)));
        assert_eq!(PosRef::from_raw(b.raw()), b);
        let last = PosRef::new(PositionId(POSITION_ID_LIMIT - 1), Slot(3));
        assert_eq!(last.id(), PositionId(POSITION_ID_LIMIT - 1));
    }

    #[test]
    #[should_panic(expected = "beyond the limit")]
    fn an_id_past_the_limit_is_a_bug() {
        let _ = PosRef::new(PositionId(POSITION_ID_LIMIT), Slot(0));
    }

    #[test]
    fn slots_are_reused_last_freed_first_and_checked_on_access() {
        let mut slab = Slab::with_capacity(4);
        let (a, b, c) =
            (slab.insert(position(1)), slab.insert(position(2)), slab.insert(position(3)));
        assert_eq!([a.slot(), b.slot(), c.slot()], [Slot(0), Slot(1), Slot(2)]);
        assert_eq!(slab.remove(b).id, PositionId(2));
        assert_eq!(slab.remove(a).id, PositionId(1));
        assert_eq!(slab.len(), 1);
        assert_eq!(slab.occupant(Slot(1)), None);
        let d = slab.insert(position(4));
        assert_eq!(d.slot(), Slot(0), "the last freed slot first");
        assert_eq!(slab.occupant(Slot(0)), Some(d));
        assert_eq!(slab.at(Slot(2)), c);
        assert_eq!(slab.get(d).sl(), Some(Price(90)));
        let mut ids: Vec<u64> = slab.values().map(|p| p.id.0).collect();
        ids.sort_unstable();
        assert_eq!(ids, [3, 4]);
        // A stale reference (same slot, other position) is caught, not served.
        let stale = std::panic::catch_unwind(|| slab.get(a).id);
        assert!(stale.is_err(), "a reference to a freed slot's old position is refused");
    }

    #[test]
    fn the_packed_fields_read_back() {
        let mut p = position(9);
        assert_eq!((p.tp(), p.sl(), p.trail()), (None, Some(Price(90)), None));
        assert_eq!(p.margin(), Usdc(1_000));
        p.set_trail(Some(crate::command::TrailDistance::Bps(250)));
        assert_eq!(p.trail(), Some(crate::command::TrailDistance::Bps(250)));
        p.set_trail(Some(crate::command::TrailDistance::Price(Price(1_234))));
        assert_eq!(p.trail(), Some(crate::command::TrailDistance::Price(Price(1_234))));
        p.set_margin(crate::config::MAX_AMOUNT);
        assert_eq!(p.margin(), crate::config::MAX_AMOUNT);
        assert_eq!(std::mem::size_of::<Position>(), 96);
    }
}
