//! What [`super::NatsLog`] asks of JetStream, as one trait: the real connection
//! ([`super::link::Link`]) implements it, and so does the deterministic simulation
//! (`tests/simulation.rs`), which runs the same log logic against an in-memory stream with
//! injected faults.

use std::time::Duration;

use async_nats::HeaderMap;
use bytes::Bytes;

use crate::replication::journal::LogError;

/// A stream message as the log reads it.
#[derive(Debug, Clone)]
pub struct Msg {
    /// Its stream sequence.
    pub sequence: u64,
    /// Its headers.
    pub headers: HeaderMap,
    /// Its payload.
    pub payload: Bytes,
}

/// The stream's extent.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct StreamState {
    /// Messages held.
    pub messages: u64,
    /// The lowest sequence still held.
    pub first_sequence: u64,
    /// The last sequence assigned.
    pub last_sequence: u64,
}

/// One JetStream stream (the journal) and one key-value bucket (the lease and the board).
pub trait Transport: Send {
    /// The stream's extent.
    fn state(&mut self) -> Result<StreamState, LogError>;
    /// The message at `seq`; `None` when there is none (never written, deleted or purged).
    fn get(&mut self, seq: u64) -> Result<Option<Msg>, LogError>;
    /// Up to `max` messages from `from` on, waiting up to `wait` for the first.
    fn follow(&mut self, from: u64, max: usize, wait: Duration) -> Result<Vec<Msg>, LogError>;
    /// Appends a message with id `id` if the stream's last sequence is `after`: its sequence,
    /// or `None` when the stream's last sequence was another. A retry of an id already stored
    /// (within the deduplication window) answers that message's sequence.
    fn publish(
        &mut self,
        headers: HeaderMap,
        payload: Bytes,
        id: &str,
        after: u64,
    ) -> Result<Option<u64>, LogError>;
    /// Deletes the message at `seq`.
    fn delete(&mut self, seq: u64) -> Result<(), LogError>;
    /// Removes every message below `seq`.
    fn purge_below(&mut self, seq: u64) -> Result<(), LogError>;
    /// A key's value and revision (`None`: absent or deleted).
    fn entry(&mut self, key: &str) -> Result<Option<(Bytes, u64)>, LogError>;
    /// Writes `key` only if absent (`revision` 0) or still at `revision`; `false`: it changed.
    fn swap(&mut self, key: &str, value: Bytes, revision: u64) -> Result<bool, LogError>;
    /// Writes `key`.
    fn put(&mut self, key: &str, value: Bytes) -> Result<(), LogError>;
    /// Deletes `key` (if still at `revision`, when given).
    fn remove(&mut self, key: &str, revision: Option<u64>) -> Result<(), LogError>;
    /// Every key.
    fn keys(&mut self) -> Result<Vec<String>, LogError>;
}
