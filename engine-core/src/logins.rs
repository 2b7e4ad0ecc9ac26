//! Accounts by login, without storing the login twice: [`LoginIndex`].

use std::hash::BuildHasher;

use hashbrown::HashTable;

use crate::command::{AccountId, Login};

/// Account ids by login. The table holds each account's index and a 32-bit hash of its login
/// (8 bytes a bucket, against 72 for a copy of the login and its id); a lookup compares the
/// login with the account's own, so colliding hashes only cost a comparison. Reserved at the configured maximum, so that no sign-up allocates; a copy
/// is sized to its entries (see [`crate::table::Table`]).
#[derive(Debug, Default)]
pub(crate) struct LoginIndex {
    table: HashTable<(u32, u32)>,
}

/// The stored hash: fixed (not per process; nothing observable depends on it).
fn short_hash(login: &Login) -> u32 {
    let h = rustc_hash::FxBuildHasher.hash_one(login.as_bytes());
    let [a, b, c, d, e, f, g, i] = h.to_le_bytes();
    u32::from_le_bytes([a, b, c, d]) ^ u32::from_le_bytes([e, f, g, i])
}

/// The table's hash, a function of the stored one alone (so a copy can be rebuilt without the
/// logins): spread over 64 bits, as the table reads its top bits and its bottom ones.
fn spread(short: u32) -> u64 {
    u64::from(short).wrapping_mul(0x9E37_79B9_7F4A_7C15)
}

impl LoginIndex {
    /// Room for `n` logins before anything is allocated again.
    pub(crate) fn with_capacity(n: usize) -> LoginIndex {
        LoginIndex { table: HashTable::with_capacity(n) }
    }

    /// The account of `login`; `login_of(i)` is account index `i`'s login.
    pub(crate) fn get<'a>(
        &self,
        login: &Login,
        login_of: impl Fn(usize) -> &'a Login,
    ) -> Option<AccountId> {
        let h = short_hash(login);
        let found = self.table.find(spread(h), |&(s, i)| s == h && login_of(i as usize) == login);
        found.map(|&(_, i)| AccountId(i + 1))
    }

    /// Adds `id`, whose login is `login` and not yet indexed.
    pub(crate) fn insert(&mut self, login: &Login, id: AccountId) {
        let h = short_hash(login);
        self.table.insert_unique(spread(h), (h, id.0 - 1), |&(h, _)| spread(h));
    }

    #[cfg(test)]
    fn len(&self) -> usize {
        self.table.len()
    }
}

impl Clone for LoginIndex {
    fn clone(&self) -> Self {
        let mut table = HashTable::with_capacity(self.table.len());
        for &entry in &self.table {
            table.insert_unique(spread(entry.0), entry, |&(h, _)| spread(h));
        }
        LoginIndex { table }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn logins_are_found_by_the_accounts_own_and_a_copy_holds_the_entries() {
        let logins: Vec<Login> =
            (0..1000).map(|i| Login::new(&format!("u{i}@x")).unwrap()).collect();
        let mut index = LoginIndex::with_capacity(100_000);
        for (i, l) in logins.iter().enumerate() {
            assert_eq!(index.get(l, |j| &logins[j]), None);
            index.insert(l, AccountId(u32::try_from(i).unwrap() + 1));
        }
        let copy = index.clone();
        for (i, l) in logins.iter().enumerate() {
            let id = Some(AccountId(u32::try_from(i).unwrap() + 1));
            assert_eq!((index.get(l, |j| &logins[j]), copy.get(l, |j| &logins[j])), (id, id));
        }
        assert_eq!(index.get(&Login::new("nobody@x").unwrap(), |j| &logins[j]), None);
        assert!(copy.table.capacity() < 2_000, "sized to its entries");
        assert_eq!(copy.len(), 1000);
    }
}
