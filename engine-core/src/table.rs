//! A hash map reserved at its maximum whose copy holds only its entries: [`Table`].

use std::hash::Hash;
use std::ops::{Deref, DerefMut};

use rustc_hash::FxHashMap;

/// The engine's hash maps are reserved at their configured maximum so that no event allocates.
/// A derived `Clone` would copy that whole reservation — hashbrown copies every bucket of a
/// `Copy` payload, capacity not length — and the engine thread clones its state for every
/// snapshot: a nearly empty engine stopped for 100–300 ms per snapshot. A copy of a `Table` is
/// sized to its entries (the copy is only serialized, never grown).
#[derive(Debug, Default)]
pub struct Table<K, V>(FxHashMap<K, V>);

impl<K: Eq + Hash, V> Table<K, V> {
    /// Room for `n` entries before anything is allocated again.
    pub fn with_capacity(n: usize) -> Table<K, V> {
        Table(FxHashMap::with_capacity_and_hasher(n, Default::default()))
    }
}

impl<K: Clone + Eq + Hash, V: Clone> Clone for Table<K, V> {
    fn clone(&self) -> Self {
        let mut copy = FxHashMap::with_capacity_and_hasher(self.0.len(), Default::default());
        copy.extend(self.0.iter().map(|(k, v)| (k.clone(), v.clone())));
        Table(copy)
    }
}

impl<K, V> Deref for Table<K, V> {
    type Target = FxHashMap<K, V>;

    fn deref(&self) -> &Self::Target {
        &self.0
    }
}

impl<K, V> DerefMut for Table<K, V> {
    fn deref_mut(&mut self) -> &mut Self::Target {
        &mut self.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_copy_holds_the_entries_not_the_reservation() {
        let mut t: Table<u64, [u8; 256]> = Table::with_capacity(100_000);
        t.insert(1, [7; 256]);
        t.insert(2, [9; 256]);
        let copy = t.clone();
        assert!(t.capacity() >= 100_000);
        assert!(copy.capacity() < 100, "sized to its entries: {}", copy.capacity());
        assert_eq!(copy.len(), 2);
        assert_eq!(copy.get(&1), Some(&[7; 256]));
        assert_eq!(copy.get(&2), t.get(&2));
    }
}
