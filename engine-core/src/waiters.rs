//! The one registry of callers waiting for replies, keyed by request id (exchange-core keeps a
//! single promises map keyed by sequence; this is ours). The engine's reply thread and the Redis
//! client's reply reader both deliver through it; a caller waits blocking (a channel, see
//! [`crate::processor::Ticket`]) or asynchronously (a callback that completes a future).
//!
//! ```
//! use engine_core::waiters::{Delivery, Waiters};
//! let waiters: Waiters<String, Vec<u32>> = Waiters::new(2);
//! let (tx, rx) = crossbeam_channel::bounded(1);
//! waiters.register(7, Delivery::Channel(tx)).unwrap();
//! assert!(waiters.accumulate(7, |parts| parts.push(1)));
//! assert!(waiters.complete(7, |parts| format!("{parts:?}")));
//! assert_eq!(rx.recv().unwrap(), "[1]");
//! assert!(!waiters.complete(7, |_| String::new()), "answered once; a second reply is late");
//! assert_eq!(waiters.late(), 1);
//! ```

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, MutexGuard};

use crossbeam_channel::Sender;
use rustc_hash::FxHashMap;

/// Where a completed wait delivers.
pub enum Delivery<T> {
    /// A channel the caller blocks on.
    Channel(Sender<T>),
    /// A function run on the delivering thread (e.g. completing an async caller's future). It
    /// must be quick: it runs on the reply thread.
    Callback(Box<dyn FnOnce(T) + Send>),
}

impl<T> std::fmt::Debug for Delivery<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Delivery::Channel(_) => "Delivery::Channel",
            Delivery::Callback(_) => "Delivery::Callback",
        })
    }
}

/// Why a wait could not be registered.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum RegisterError {
    /// `capacity` waits are already registered.
    #[error("too many requests awaiting replies")]
    Full,
    /// This request id is already awaited.
    #[error("a request with this id is already awaited")]
    Duplicate,
}

struct Entry<T, A> {
    to: Delivery<T>,
    acc: A,
}

/// Bounded waits keyed by request id, each with an accumulator `A` for what arrives before the
/// reply itself (the engine's list items; `()` where nothing does).
pub struct Waiters<T, A = ()> {
    map: Mutex<FxHashMap<u64, Entry<T, A>>>,
    capacity: usize,
    late: AtomicU64,
}

impl<T, A> std::fmt::Debug for Waiters<T, A> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Waiters")
            .field("capacity", &self.capacity)
            .field("late", &self.late.load(Ordering::Relaxed))
            .finish_non_exhaustive()
    }
}

impl<T, A: Default> Waiters<T, A> {
    /// A registry holding at most `capacity` waits.
    pub fn new(capacity: usize) -> Waiters<T, A> {
        Waiters { map: Mutex::new(FxHashMap::default()), capacity, late: AtomicU64::new(0) }
    }

    fn map(&self) -> MutexGuard<'_, FxHashMap<u64, Entry<T, A>>> {
        // Each operation is one insert, lookup or remove: a panic elsewhere while the lock was
        // held cannot leave the map inconsistent, so a poisoned lock is still usable.
        self.map.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Awaits request `id`.
    pub fn register(&self, id: u64, to: Delivery<T>) -> Result<(), RegisterError> {
        let mut map = self.map();
        if map.len() >= self.capacity {
            return Err(RegisterError::Full);
        }
        if map.contains_key(&id) {
            return Err(RegisterError::Duplicate);
        }
        map.insert(id, Entry { to, acc: A::default() });
        Ok(())
    }

    /// Adds to what `id` has received so far; `false` if nobody awaits it.
    pub fn accumulate(&self, id: u64, f: impl FnOnce(&mut A)) -> bool {
        match self.map().get_mut(&id) {
            Some(e) => {
                f(&mut e.acc);
                true
            }
            None => false,
        }
    }

    /// Delivers `make(accumulated)` to whoever awaits `id` and forgets the wait; `false` (and
    /// counted as late) if nobody does any more (it timed out, or was cancelled). Delivery runs
    /// outside the lock.
    pub fn complete(&self, id: u64, make: impl FnOnce(A) -> T) -> bool {
        let entry = self.map().remove(&id);
        match entry {
            Some(Entry { to, acc }) => {
                let value = make(acc);
                match to {
                    // A receiver dropped meanwhile (the caller gave up) just loses the value.
                    Delivery::Channel(tx) => {
                        let _ = tx.try_send(value);
                    }
                    Delivery::Callback(f) => f(value),
                }
                true
            }
            None => {
                self.late.fetch_add(1, Ordering::Relaxed);
                false
            }
        }
    }

    /// Stops awaiting `id` (a timeout, or a request that was never sent); `true` if it was
    /// awaited.
    pub fn cancel(&self, id: u64) -> bool {
        self.map().remove(&id).is_some()
    }

    /// Waits registered now.
    pub fn len(&self) -> usize {
        self.map().len()
    }

    /// Nothing is awaited.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Replies that came when nobody awaited them any more.
    pub fn late(&self) -> u64 {
        self.late.load(Ordering::Relaxed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bounded_unique_and_cancellable() {
        let w: Waiters<u32> = Waiters::new(2);
        let (tx, rx) = crossbeam_channel::bounded(1);
        w.register(1, Delivery::Channel(tx.clone())).unwrap();
        assert_eq!(w.register(1, Delivery::Channel(tx.clone())), Err(RegisterError::Duplicate));
        let (done_tx, done_rx) = crossbeam_channel::bounded(1);
        w.register(2, Delivery::Callback(Box::new(move |v| done_tx.send(v).unwrap()))).unwrap();
        assert_eq!(w.register(3, Delivery::Channel(tx)), Err(RegisterError::Full));
        assert!(w.cancel(1));
        assert!(!w.complete(1, |()| 10), "cancelled: the reply is late");
        assert!(rx.try_recv().is_err());
        assert!(w.complete(2, |()| 20));
        assert_eq!(done_rx.recv().unwrap(), 20);
        assert!(w.is_empty());
        assert_eq!(w.late(), 1);
    }
}
