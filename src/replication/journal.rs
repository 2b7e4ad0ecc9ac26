//! What the replication logic needs of a replicated journal, whichever system holds it: Redis
//! ([`super::log::RedisLog`]: a stream, a Lua-fenced append and `WAIT`) or NATS JetStream
//! ([`super::nats::NatsLog`]: a Raft-replicated stream, appends fenced by the expected last
//! sequence). The standby, the takeover, the leader's input stage, hash comparison and trimming
//! ([`super::node`], [`super::stage`]) are written once against [`ReplicatedLog`].

use std::time::Duration;

/// One record as read back from the log: its sequence and the journal record's bytes.
pub type Entry = (u64, Vec<u8>);

/// Records read from the log: the genuine ones, in order, and the ids of entries skipped
/// because they are not signed by the bridge key (or sit where no record may).
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Read {
    /// Entries signed by the bridge key at their own sequence.
    pub entries: Vec<Entry>,
    /// Ids of the entries skipped.
    pub forged: Vec<String>,
}

/// The outcome of [`ReplicatedLog::keep`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Kept {
    /// Ours, renewed.
    Renewed,
    /// It had vanished (`vanished`) or held a forged or stale value (`forged`): taken again.
    Retaken(&'static str),
    /// Another engine holds it (its token): this one is deposed.
    Lost(String),
    /// It changed while we looked: try again at the next round.
    Unsure,
}

/// How a state hash compared with the board's.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HashCheck {
    /// Recorded, or equal to the one recorded.
    Same,
    /// Another engine recorded this different hash at the sequence.
    Differs(String),
    /// The board held a value not signed by the bridge key: replaced with ours.
    Forged(String),
}

/// The journal's system could not be reached or answered with an error: try again.
#[derive(Debug, thiserror::Error)]
pub enum LogError {
    /// Redis unreachable, failing over, or refusing.
    #[error("redis: {0}")]
    Redis(#[from] redis::RedisError),
    /// NATS unreachable, without a JetStream leader (no quorum), or refusing.
    #[error("nats: {0}")]
    Nats(String),
}

/// Why an append did not make it.
#[derive(Debug, thiserror::Error)]
pub enum AppendError {
    /// Another engine extended the log (a record signed by the bridge key sits where ours
    /// would): this engine has been deposed and must not apply the batch.
    #[error("deposed: {0}")]
    Fenced(String),
    /// The lease value is not ours (another engine's, expired, or forged): see
    /// [`ReplicatedLog::keep`] before trying again.
    #[error("the lease is not ours")]
    Lease,
    /// The log ends before our batch: it lost acknowledged entries.
    #[error("engine-journal has a gap: {0}")]
    Gap(String),
    /// Written, but not confirmed by enough replicas within the wait: not yet acknowledged.
    #[error("no replica confirmed the batch within {0:?}")]
    NotReplicated(Duration),
    /// The system is unreachable, failing over or without quorum: try again.
    #[error(transparent)]
    Unavailable(#[from] LogError),
}

impl From<redis::RedisError> for AppendError {
    fn from(e: redis::RedisError) -> Self {
        AppendError::Unavailable(LogError::Redis(e))
    }
}

/// A replicated input journal with a lease, as one engine sees it. Every method makes one
/// attempt (the callers retry); records are `(seq, journal record bytes)` with consecutive
/// sequences, each signed by the bridge key wherever it is stored.
pub trait ReplicatedLog: Send + std::fmt::Debug {
    /// Appends `records` as the leader holding `token`, returning once the system counts them
    /// durable (Redis: `WAIT replicas` within `wait`; JetStream: a majority of the stream's
    /// replicas). Refused ([`AppendError::Fenced`]) when another engine extended the log.
    fn append(
        &mut self,
        token: &str,
        records: &[(u64, &[u8])],
        replicas: u32,
        wait: Duration,
    ) -> Result<(), AppendError>;

    /// Called by a standby that won the lease and read the log to its end (`last_seq`): from
    /// now on an older leader's append must fail. `Ok(false)`: the log grew meanwhile (an old
    /// leader appended): read on and call again.
    fn seal(&mut self, token: &str, last_seq: u64) -> Result<bool, AppendError>;

    /// Up to `count` records after `seq`, waiting up to `block` for the first (0: not at all),
    /// each checked against its signature.
    fn read_after(&mut self, seq: u64, count: usize, block: Duration) -> Result<Read, LogError>;

    /// Up to `count` records at or before `seq`, newest first, each checked.
    fn read_back(&mut self, seq: u64, count: usize) -> Result<Read, LogError>;

    /// The sequences of the log's first and last records (`None`: empty).
    fn bounds(&mut self) -> Result<Option<(u64, u64)>, LogError>;

    /// Who holds the lease now (its token), if anyone does by a valid value.
    fn holder(&mut self, lease: Duration) -> Result<Option<String>, LogError>;

    /// Takes the lease if nobody holds it (or its holder stopped renewing for `lease`).
    fn try_lead(&mut self, token: &str, lease: Duration) -> Result<bool, LogError>;

    /// The lease holder's round: renew, or take it again when it vanished or was forged.
    fn keep(&mut self, token: &str, lease: Duration) -> Result<Kept, LogError>;

    /// Gives the lease up (clean shutdown: the standby need not wait it out).
    fn release(&mut self, token: &str) -> Result<(), LogError>;

    /// Records this engine's state hash at `seq` and compares it with another engine's there.
    fn compare_hash(&mut self, seq: u64, hash: &str) -> Result<HashCheck, LogError>;

    /// Records the oldest snapshot `node` holds (0: none): the log is kept from there on.
    fn register(&mut self, node: &str, oldest_snapshot: u64) -> Result<(), LogError>;

    /// Says that `node` is alive now.
    fn seen(&mut self, node: &str) -> Result<(), LogError>;

    /// Every engine that said it is alive, and how long ago (milliseconds).
    fn last_seen(&mut self) -> Result<Vec<(String, u64)>, LogError>;

    /// Trims the log below the oldest snapshot every registered engine holds, once two are
    /// registered. Returns the sequence trimmed below, if any.
    fn trim(&mut self) -> Result<Option<u64>, LogError>;
}
