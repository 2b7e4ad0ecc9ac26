//! Idempotency that no other account can break: keys remembered per account, bounded by count and
//! by age, and request fingerprints so a reused key or request id never returns another
//! request's result.
//!
//! Why per account: one global window let a flood of cheap requests from other accounts evict a
//! victim's key, and the victim's retry then applied twice. Here an account's keys live in its own
//! [`KeyWindow`]; only that account's own requests can push them out, and the window and its age
//! limit are configuration ([`crate::config::EngineConfig::idempotency_keys_per_account`],
//! [`crate::config::EngineConfig::idempotency_ttl_ns`]).
//!
//! Why fingerprints: a key (or a request id) reused for a *different* request must be refused,
//! not answered with the first result. The fingerprint is FNV-1a over the command's canonical
//! bytes (postcard into a stack buffer: no allocation), deterministic across runs and machines.

use std::collections::VecDeque;

use serde::{Deserialize, Serialize};

use crate::command::{AccountId, Command, CommandKind, IdempotencyKey};
use crate::event::{Reason, ReplyData};

/// Result of an applied command, as remembered.
pub type Outcome = Result<ReplyData, Reason>;

/// One remembered keyed request of an account.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct KeyEntry {
    /// The caller's key.
    pub key: IdempotencyKey,
    /// Fingerprint of the command it was first used with.
    pub fingerprint: u64,
    /// Command time it was first applied at (ns since the epoch).
    pub at_ns: u64,
    /// The first result.
    pub outcome: Outcome,
}

/// An account's recent keys, oldest first.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct KeyWindow {
    entries: VecDeque<KeyEntry>,
}

impl KeyWindow {
    /// An empty window (no storage until its first key).
    pub const fn new() -> KeyWindow {
        KeyWindow { entries: VecDeque::new() }
    }

    /// The live entry for `key` at time `now_ns` (entries older than `ttl_ns` are forgotten).
    pub fn find(&self, key: &IdempotencyKey, now_ns: u64, ttl_ns: u64) -> Option<&KeyEntry> {
        self.entries.iter().rev().find(|e| e.key == *key && !expired(e, now_ns, ttl_ns))
    }

    /// Remembers `entry`, first dropping expired entries and, when `cap` are held, the oldest.
    /// The window's storage is reserved once, at the account's first keyed request.
    pub fn insert(&mut self, entry: KeyEntry, cap: usize, ttl_ns: u64) {
        assert!(cap > 0, "a zero window remembers nothing: callers skip it");
        if self.entries.capacity() == 0 {
            self.entries.reserve_exact(cap);
        }
        while self.entries.front().is_some_and(|e| expired(e, entry.at_ns, ttl_ns)) {
            self.entries.pop_front();
        }
        if self.entries.len() >= cap {
            self.entries.pop_front();
        }
        self.entries.push_back(entry);
        assert!(self.entries.len() <= cap);
    }

    /// Entries, oldest first (snapshots and the state hash).
    pub fn iter(&self) -> impl Iterator<Item = &KeyEntry> {
        self.entries.iter()
    }

    /// Number of entries held (expired ones included until the next insert).
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// True if nothing is remembered.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// A window holding `entries` (oldest first), trimmed to the newest `cap`.
    pub fn from_entries(entries: &[KeyEntry], cap: usize) -> KeyWindow {
        let skip = entries.len().saturating_sub(cap);
        KeyWindow { entries: entries[skip..].iter().copied().collect() }
    }
}

fn expired(e: &KeyEntry, now_ns: u64, ttl_ns: u64) -> bool {
    now_ns.saturating_sub(e.at_ns) > ttl_ns
}

/// The (account, key) a command is made idempotent by, if any: an open's or a pending order's
/// `client_order_id`, or the key of a deposit, withdrawal, close, margin addition, order
/// cancel or TP/SL edit.
pub fn keyed(cmd: &Command) -> Option<(AccountId, IdempotencyKey)> {
    match cmd.kind {
        CommandKind::OpenPosition(req) => req.client_order_id.map(|k| (req.account, k)),
        CommandKind::PlaceOrder(req) => req.client_order_id.map(|k| (req.account, k)),
        CommandKind::Deposit { account, key, .. }
        | CommandKind::Withdraw { account, key, .. }
        | CommandKind::ClosePosition { account, key, .. }
        | CommandKind::AddMargin { account, key, .. }
        | CommandKind::CancelOrder { account, key, .. }
        | CommandKind::SetTriggers { account, key, .. }
        | CommandKind::SetTrailingStop { account, key, .. }
        | CommandKind::CancelAllOrders { account, key, .. }
        | CommandKind::CloseAllPositions { account, key, .. }
        | CommandKind::AmendOrder { account, key, .. } => key.map(|k| (account, k)),
        _ => None,
    }
}

/// The reason a reused key with a different request gets.
pub fn reused_reason(cmd: &Command) -> Reason {
    match cmd.kind {
        CommandKind::OpenPosition(_) | CommandKind::PlaceOrder(_) => Reason::ClientOrderIdReused,
        _ => Reason::IdempotencyKeyReused,
    }
}

/// FNV-1a over the canonical bytes of what the command asks for (its kind, key included; not its
/// request id or receive time, which differ between a request and its retry).
pub fn fingerprint(cmd: &Command) -> u64 {
    let mut buf = [0u8; crate::command::MAX_ENCODED_BYTES];
    let bytes = postcard::to_slice(&cmd.kind, &mut buf)
        .expect("a command always fits MAX_ENCODED_BYTES (inline strings are bounded)");
    bytes.iter().fold(0xcbf2_9ce4_8422_2325_u64, |h, b| {
        (h ^ u64::from(*b)).wrapping_mul(0x0000_0100_0000_01b3)
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::command::RequestId;
    use crate::num::Usdc;

    fn entry(key: &str, at_ns: u64) -> KeyEntry {
        KeyEntry {
            key: IdempotencyKey::new(key).unwrap(),
            fingerprint: 1,
            at_ns,
            outcome: Err(Reason::InvalidRequest),
        }
    }

    #[test]
    fn window_is_bounded_by_count_and_age() {
        let mut w = KeyWindow::default();
        let k = |s: &str| IdempotencyKey::new(s).unwrap();
        for i in 0..5 {
            w.insert(entry(&format!("k{i}"), 100 + i), 3, 1_000);
        }
        assert_eq!(w.len(), 3);
        assert!(w.find(&k("k1"), 110, 1_000).is_none(), "evicted by count");
        assert!(w.find(&k("k4"), 110, 1_000).is_some());
        assert!(w.find(&k("k4"), 104 + 1_001, 1_000).is_none(), "expired by age");
        w.insert(entry("late", 5_000), 3, 1_000);
        assert_eq!(w.len(), 1, "expired entries are dropped on insert");
    }

    #[test]
    fn fingerprint_ignores_request_id_and_time_but_not_body_or_key() {
        let deposit = |amount: i64, key: Option<IdempotencyKey>| CommandKind::Deposit {
            account: AccountId(1),
            amount: Usdc::from_whole(amount),
            key,
        };
        let key = IdempotencyKey::new("abc");
        let a = Command::new(RequestId(1), 10, deposit(5, key));
        let b = Command::new(RequestId(2), 20, deposit(5, key));
        let c = Command::new(RequestId(1), 10, deposit(6, key));
        let d = Command::new(RequestId(1), 10, deposit(5, None));
        assert_eq!(fingerprint(&a), fingerprint(&b));
        assert_ne!(fingerprint(&a), fingerprint(&c));
        assert_ne!(fingerprint(&a), fingerprint(&d));
    }
}
