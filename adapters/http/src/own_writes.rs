//! Read-your-writes for the history routes: the sequence of each account's last state change,
//! as the engine published it, so a read from the history store (written a moment behind the
//! engine) can wait until the store holds the caller's own last change.
//!
//! Bounded: two generations of at most [`GENERATION_MAX`] accounts each; when the newer fills,
//! the older is dropped. An account dropped (or a change lost by a best-effort subscription)
//! only means that read does not wait: it answers as before, with `consistent_to` saying how
//! far the store is.

use std::collections::HashMap;
use std::sync::Mutex;

use engine_core::command::AccountId;

/// Accounts remembered per generation: twice this at most (16 bytes each, plus the map's).
pub const GENERATION_MAX: usize = 65_536;

/// Each account's last change sequence.
#[derive(Debug, Default)]
pub struct OwnWrites {
    inner: Mutex<Generations>,
}

#[derive(Debug, Default)]
struct Generations {
    newer: HashMap<AccountId, u64>,
    older: HashMap<AccountId, u64>,
}

impl OwnWrites {
    /// Records that `account` changed at journal sequence `seq`.
    pub fn record(&self, account: AccountId, seq: u64) {
        let mut g = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        if g.newer.len() >= GENERATION_MAX && !g.newer.contains_key(&account) {
            g.older = std::mem::take(&mut g.newer);
        }
        let at = g.newer.entry(account).or_insert(seq);
        *at = (*at).max(seq);
    }

    /// The sequence of `account`'s last change, if remembered.
    pub fn last(&self, account: AccountId) -> Option<u64> {
        let g = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        g.newer.get(&account).or_else(|| g.older.get(&account)).copied()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_last_change_is_kept_per_account_and_the_table_is_bounded() {
        let w = OwnWrites::default();
        w.record(AccountId(1), 10);
        w.record(AccountId(1), 7); // out of order: the later one stays
        assert_eq!(w.last(AccountId(1)), Some(10));
        assert_eq!(w.last(AccountId(2)), None);
        let n = u32::try_from(2 * GENERATION_MAX).unwrap();
        for a in 0..n {
            w.record(AccountId(a + 100), u64::from(a));
        }
        let g = w.inner.lock().unwrap();
        assert!(g.newer.len() + g.older.len() <= 2 * GENERATION_MAX);
        drop(g);
        assert_eq!(w.last(AccountId(1)), None, "the oldest generation was dropped");
        assert_eq!(w.last(AccountId(n + 99)), Some(u64::from(n) - 1));
    }
}
