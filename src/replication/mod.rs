//! Replication: the input journal on a Redis stream, a hot standby, automatic failover.
//!
//! LMAX replicated its input journal to a standby before the business logic ran; we do it on
//! Redis (primary + replica behind Sentinel). See docs/REPLICATION.md for the guarantees.
//!
//! - [`journal`]: what the logic below needs of a replicated journal ([`ReplicatedLog`]),
//!   whichever system holds it: Redis ([`log`]) or NATS JetStream ([`nats`]).
//! - [`nats`]: the journal as a JetStream stream with three replicas (Raft: an append is
//!   acknowledged once a majority stored it), fenced by the expected last sequence, and the
//!   lease as a key-value entry updated by revision.
//! - [`log`]: `engine-journal` (one entry per command, id `<seq>-0`, the journal record as
//!   bytes), the lease key, the state-hash board and the trim rule — every Redis call.
//! - [`stage`]: the leader's input stage: append + `WAIT`, then the local journal, then the
//!   engine. An append is refused unless this engine holds the lease *and* the log ends right
//!   before the batch: two engines can never both extend it.
//! - [`lease`]: the lease holder's round (renew, take again, or exit deposed), shared.
//! - [`single`]: the same lease for an engine that is not replicated, so that two engines on
//!   one Redis never both serve `engine-stream`.
//! - [`node`]: what an engine in replicated mode does: catch up from the log, follow it as a
//!   standby (same commands, same sequence, same state hash), take the lease when it expires,
//!   finish the log, then lead (renewing the lease, comparing hashes, trimming).

pub mod journal;
pub mod lease;
pub mod log;
pub mod nats;
pub mod node;
pub mod single;
pub mod stage;

use std::sync::atomic::AtomicU64;
use std::time::Duration;

use redis_bridge::signing::BridgeKey;
use redis_bridge::target::RedisTarget;

pub use journal::ReplicatedLog;

/// The replicated journal stream.
pub const JOURNAL_STREAM: &str = "engine-journal";
/// Who should lead: `SET engine-leader <token>|<until ms>|<signature> NX PX <lease>`, renewed
/// by the leader with a new expiry and signature.
pub const LEASE_KEY: &str = "engine-leader";
/// The last sequence appended (written with every append, so `WAIT` always waits for it).
pub const HEAD_KEY: &str = "engine-journal:head";
/// State hash per snapshot sequence, written by whichever engine snapshots there first.
pub const HASHES_KEY: &str = "engine-journal:hashes";
/// The oldest snapshot each engine holds: the log is trimmed below the smallest.
pub const NODES_KEY: &str = "engine-journal:nodes";
/// When each engine last said it is alive (ms since the epoch): the leader raises an alert
/// when one falls silent ([`STANDBY_LOST_AFTER`]).
pub const SEEN_KEY: &str = "engine-journal:seen";
/// How long an engine may stay silent in [`SEEN_KEY`] before the leader reports it lost. A
/// standby says it is alive every [`SEEN_EVERY`]; five missed rounds is not a hiccup.
pub const STANDBY_LOST_AFTER: Duration = Duration::from_secs(5);
/// How often an engine writes [`SEEN_KEY`].
pub const SEEN_EVERY: Duration = Duration::from_secs(1);
const _: () = assert!(STANDBY_LOST_AFTER.as_millis() >= 3 * SEEN_EVERY.as_millis());

/// Exit code of an engine that found another one leading (`EX_TEMPFAIL`): restart it, it
/// rejoins as a standby.
pub const EXIT_DEPOSED: i32 = 75;
/// Exit code of a standby whose state hash differs from the leader's (`EX_SOFTWARE`): a bug;
/// it must not take over.
pub const EXIT_DIVERGED: i32 = 70;

/// Settings of replicated mode.
#[derive(Clone, Debug)]
pub struct ReplicationOptions {
    /// Redis (through Sentinel in production).
    pub target: RedisTarget,
    /// Signs every record appended to `engine-journal` and checks every record read (the
    /// bridge secret: a Redis writer cannot forge a command a standby would apply).
    pub key: BridgeKey,
    /// This engine's stable name (its row in [`NODES_KEY`], its consumer name when it leads).
    pub node: String,
    /// The lease: a standby takes over this long after the leader last renewed.
    pub lease: Duration,
    /// How long one `WAIT` may take before the batch is retried (and the engine waits).
    pub wait: Duration,
    /// Replicas that must hold a batch before it is applied (`WAIT <replicas>`; 0: none).
    pub replicas: u32,
    /// The leader trims the log below the oldest snapshot every engine holds (off: keep all,
    /// like `--keep-journal` for the local journal).
    pub trim: bool,
    /// The journal and the lease on NATS JetStream instead of Redis (the requests and replies
    /// stay on Redis streams).
    pub nats: Option<NatsJournal>,
}

/// Where the JetStream journal lives.
#[derive(Clone)]
pub struct NatsJournal {
    /// `nats://[user:password@]host:port[,host:port…]` (credentials: from the environment,
    /// never the command line).
    pub url: String,
    /// Replicas of the journal stream and the lease bucket (3 on a three-node cluster; an
    /// append is acknowledged once a majority of them stored it).
    pub replicas: usize,
}

impl std::fmt::Debug for NatsJournal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NatsJournal")
            .field("url", &nats::redacted(&self.url))
            .field("replicas", &self.replicas)
            .finish()
    }
}

impl ReplicationOptions {
    /// Lease 2 s, WAIT up to 1 s for one replica.
    pub fn new(target: RedisTarget, key: BridgeKey, node: &str) -> ReplicationOptions {
        ReplicationOptions {
            target,
            key,
            node: node.to_owned(),
            lease: Duration::from_secs(2),
            wait: Duration::from_secs(1),
            replicas: 1,
            trim: true,
            nats: None,
        }
    }

    /// The replicated journal these options name, connected on first use; `reply_timeout` is
    /// the longest one call may take (blocking reads add their own wait).
    pub fn open_log(&self, reply_timeout: Duration) -> Box<dyn ReplicatedLog> {
        match &self.nats {
            Some(n) => Box::new(nats::NatsLog::new(n.clone(), self.key.clone(), reply_timeout)),
            None => {
                Box::new(log::RedisLog::new(self.target.clone(), self.key.clone(), reply_timeout))
            }
        }
    }
}

/// What the stage and the node share.
#[derive(Debug)]
pub struct Shared {
    /// This process's lease token: `<node>:<random>`.
    pub token: String,
    /// Commands at or below this sequence came from `engine-journal`.
    pub follow_upto: AtomicU64,
    /// This engine leads (holds the lease and appends to the log).
    pub leading: std::sync::atomic::AtomicBool,
    /// The last sequence journaled here (the log's, applied, on a standby; appended on the
    /// leader): the leader's minus a standby's is how far that standby is behind.
    pub journaled_seq: AtomicU64,
}

impl Shared {
    /// This process's state for a node whose lease token is `token`.
    pub fn new(token: String) -> Shared {
        Shared {
            token,
            follow_upto: AtomicU64::new(0),
            leading: std::sync::atomic::AtomicBool::new(false),
            journaled_seq: AtomicU64::new(0),
        }
    }
}
