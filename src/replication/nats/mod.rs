//! The replicated journal on NATS JetStream: a stream replicated by Raft across the cluster
//! (three replicas on three nodes), so an append is acknowledged only once a majority stored
//! it, and no failover can lose it (see docs/REPLICATION.md).
//!
//! - **The journal**: stream [`STREAM`], one message per batch — the batch's journal records
//!   back to back, headers `Hx-First`/`Hx-Last` (its sequences), `Hx-Token` (the leader's
//!   lease token) and `Hx-Sig` (the bridge key's signature over all of it, bound to the first
//!   sequence: a NATS writer without the secret cannot forge a command).
//! - **Fencing by the log itself**: every append carries `Nats-Expected-Last-Sequence`, the
//!   stream sequence of this leader's previous message; JetStream refuses it if anything came
//!   after. A standby that wins the lease reads the log to its end and *seals* it (an empty
//!   batch of its own, appended the same way): from then on the old leader's next append fails
//!   and it exits deposed. Whatever the old leader got acknowledged before the seal is in the
//!   log, and the new leader applies it before serving.
//! - **Retries**: `Nats-Msg-Id` is `<token>:<first seq>`, so a retry after a lost
//!   acknowledgement is deduplicated by JetStream (and recognized as ours if it is refused).
//! - **The lease**: key `leader` in bucket [`BUCKET`] (as many replicas), updated by revision
//!   (compare-and-set). The holder renews it every quarter lease; a standby takes it when its
//!   revision has not moved for a whole lease by the standby's own clock (no clocks compared
//!   between machines). The lease decides who *tries* to lead; the seal decides who can.
//! - **The board**: `hash.<seq>` (state hashes at snapshots), `node.<name>` (each engine's
//!   oldest snapshot, for trimming), `seen.<name>` (liveness), in the same bucket.

mod link;
mod read;
pub mod transport;

pub use link::redacted;

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use async_nats::HeaderMap;
use bytes::Bytes;
use ground::time::now_ms;
use redis_bridge::signing::BridgeKey;
use tracing::error;

pub use link::Link;
pub use transport::{Msg, StreamState, Transport};

use super::NatsJournal;
use super::journal::{AppendError, HashCheck, Kept, LogError, Read, ReplicatedLog};

/// The journal stream.
pub const STREAM: &str = "ENGINE_JOURNAL";
/// Its one subject.
pub const SUBJECT: &str = "hundredx.engine.journal";
/// The lease, the state-hash board, the nodes' oldest snapshots and their liveness.
pub const BUCKET: &str = "HUNDREDX_ENGINE";
const LEASE_KEY: &str = "leader";
/// Signing domains (the same as on Redis: a record means the same wherever it is stored).
const JOURNAL_DOMAIN: &str = super::JOURNAL_STREAM;
const LEASE_DOMAIN: &str = super::LEASE_KEY;
const HASH_DOMAIN: &str = super::HASHES_KEY;
/// A message's payload at most: under NATS's default 1 MiB `max_payload`, with room for
/// the headers. A larger batch goes as several messages, each fenced like the first.
const PAYLOAD_MAX_BYTES: usize = 768 * 1024;
/// How long a read back waits for the next messages of a consumer (they exist: only a log
/// that ends before the sequence asked for waits it out, once).
const READ_BACK_WAIT: Duration = Duration::from_millis(500);
/// Messages looked at past forged or deleted ones before giving up on finding a genuine one.
const SCAN_MAX: u64 = 64;
/// JetStream's deduplication window: a retry within it is recognized by its message id.
const DUPLICATE_WINDOW: Duration = Duration::from_secs(120);
/// Forged stream sequences remembered so that each is reported once.
const FORGED_REPORTED_MAX: usize = 64;

/// One genuine journal message: signed by the bridge key.
#[derive(Debug)]
struct Batch {
    stream_seq: u64,
    first: u64,
    last: u64,
    token: String,
    payload: Bytes,
}

/// The replicated journal on JetStream, as one engine sees it (blocking calls on a runtime of
/// its own: the engine's input stage and the standby's loop are plain threads).
pub struct NatsLog<T: Transport = Link> {
    link: T,
    key: BridgeKey,
    /// Where this engine's last append or seal ended: (stream sequence, last record's sequence).
    tail: Option<(u64, u64)>,
    /// Where the next read continues: (stream sequence, record sequence expected next).
    cursor: Option<(u64, u64)>,
    /// The lease's revision when first seen held by another, and since when (this machine's
    /// monotonic clock): taken once it has not moved for a whole lease.
    watched: Option<(u64, Instant)>,
    reported: VecDeque<u64>,
}

impl<T: Transport> std::fmt::Debug for NatsLog<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NatsLog").field("tail", &self.tail).finish_non_exhaustive()
    }
}

impl NatsLog<Link> {
    /// Connects lazily, on the first call; `reply_timeout` bounds each call (an append: until
    /// a majority acknowledged it).
    pub fn new(cfg: NatsJournal, key: BridgeKey, reply_timeout: Duration) -> NatsLog {
        let link = Link { cfg, timeout: reply_timeout, rt: None, conn: None, follower: None };
        NatsLog::with_transport(link, key)
    }
}

impl<T: Transport> NatsLog<T> {
    /// The log over `link` (a simulation's, for one).
    pub fn with_transport(link: T, key: BridgeKey) -> NatsLog<T> {
        NatsLog { link, key, tail: None, cursor: None, watched: None, reported: VecDeque::new() }
    }

    fn signed(token: &str, last: u64, payload: &[u8]) -> Vec<u8> {
        let mut v = Vec::with_capacity(token.len() + 24 + payload.len());
        v.extend_from_slice(token.as_bytes());
        v.push(b'|');
        v.extend_from_slice(last.to_string().as_bytes());
        v.push(b'|');
        v.extend_from_slice(payload);
        v
    }

    /// A batch message of `token` holding records `first..=last` (none: a seal after `last`).
    fn headers(&self, token: &str, first: u64, last: u64, payload: &[u8]) -> HeaderMap {
        let sig = self.key.sign_bytes(JOURNAL_DOMAIN, first, &Self::signed(token, last, payload));
        let mut h = HeaderMap::new();
        h.insert("Hx-First", first.to_string().as_str());
        h.insert("Hx-Last", last.to_string().as_str());
        h.insert("Hx-Token", token);
        h.insert("Hx-Sig", sig.as_str());
        h
    }

    /// Where this leader's appends continue: the newest genuine message, which must be its own
    /// (its seal or its last batch); anything else means another engine leads.
    fn find_tail(&mut self, token: &str) -> Result<(u64, u64), AppendError> {
        let st = self.link.state()?;
        match self.genuine_back(st.last_sequence, st.first_sequence)? {
            Some(b) if b.token == token => Ok((b.stream_seq, b.last)),
            Some(b) => Err(AppendError::Fenced(format!(
                "{STREAM} ends with a batch of another engine ({})",
                node_of(&b.token)
            ))),
            None => Err(AppendError::Fenced(format!("{STREAM} holds no seal of this engine"))),
        }
    }

    /// The append after `tail` was refused: something came after it. Ours (a retry whose
    /// first try made it) → done; another engine's → deposed; forged → deleted, try again.
    fn after_refusal(
        &mut self,
        token: &str,
        tail: u64,
        first: u64,
    ) -> Result<Option<u64>, AppendError> {
        let st = self.link.state()?;
        for s in tail + 1..=st.last_sequence {
            let Some(m) = self.link.get(s)? else { continue };
            match self.batch(m) {
                Some(b) if b.token == token && b.first == first => return Ok(Some(s)),
                Some(b) => {
                    return Err(AppendError::Fenced(format!(
                        "engine {} appended at stream seq {s}",
                        node_of(&b.token)
                    )));
                }
                None => {
                    error!(stream_seq = s, "ALERT: removed a forged message from {STREAM}");
                    self.link.delete(s)?;
                }
            }
        }
        self.tail = Some((st.last_sequence, first - 1));
        Ok(None)
    }

    /// Appends one message of records `first..=last` after this leader's tail.
    fn append_one(
        &mut self,
        token: &str,
        first: u64,
        last: u64,
        payload: Bytes,
    ) -> Result<(), AppendError> {
        let (tail, tail_last) = match self.tail {
            Some(t) => t,
            None => self.find_tail(token)?,
        };
        self.tail = Some((tail, tail_last));
        if tail_last >= last {
            return Ok(()); // written by an earlier try
        }
        if tail_last + 1 != first {
            return Err(AppendError::Gap(format!(
                "{STREAM} ends at {tail_last}, not {}",
                first - 1
            )));
        }
        let id = format!("{token}:{first}");
        let mut tail = tail;
        // Twice at most: the second time after forged messages in the way were removed.
        for _ in 0..2 {
            let headers = self.headers(token, first, last, &payload);
            let seq = match self.link.publish(headers, payload.clone(), &id, tail)? {
                Some(seq) => seq,
                None => match self.after_refusal(token, tail, first)? {
                    Some(seq) => seq,
                    None => {
                        tail = self.tail.map_or(tail, |t| t.0);
                        continue;
                    }
                },
            };
            self.tail = Some((seq, last));
            return Ok(());
        }
        Err(AppendError::NotReplicated(Duration::ZERO)) // forged messages keep coming: again
    }

    fn lease_value(&self, token: &str) -> Bytes {
        let at = now_ms();
        let sig = self.key.sign_bytes(LEASE_DOMAIN, at, token.as_bytes());
        Bytes::from(format!("{token}|{at}|{sig}"))
    }

    /// The token of a lease value signed by the bridge key.
    fn lease_token(&self, raw: &[u8]) -> Option<String> {
        let raw = std::str::from_utf8(raw).ok()?;
        let mut parts = raw.rsplitn(3, '|');
        let (sig, at, token) = (parts.next()?, parts.next()?, parts.next()?);
        let at: u64 = at.parse().ok()?;
        self.key.verify_bytes(LEASE_DOMAIN, at, sig, token.as_bytes()).ok()?;
        Some(token.to_owned())
    }
}

/// The node name in a lease token `<node>:<random>`.
fn node_of(token: &str) -> &str {
    token.rsplit_once(':').map_or(token, |(n, _)| n)
}

impl<T: Transport> ReplicatedLog for NatsLog<T> {
    fn append(
        &mut self,
        token: &str,
        records: &[(u64, &[u8])],
        _replicas: u32,
        _wait: Duration,
    ) -> Result<(), AppendError> {
        let mut i = 0;
        while i < records.len() {
            let mut payload = Vec::with_capacity(PAYLOAD_MAX_BYTES.min(records.len() * 128));
            let first = records[i].0;
            while i < records.len()
                && (payload.is_empty() || payload.len() + records[i].1.len() <= PAYLOAD_MAX_BYTES)
            {
                payload.extend_from_slice(records[i].1);
                i += 1;
            }
            let last = records[i - 1].0;
            if let Err(e) = self.append_one(token, first, last, Bytes::from(payload)) {
                if !matches!(e, AppendError::NotReplicated(_)) {
                    self.tail = None; // look it up again before the next try
                }
                return Err(e);
            }
        }
        Ok(())
    }

    fn seal(&mut self, token: &str, last_seq: u64) -> Result<bool, AppendError> {
        let st = self.link.state()?;
        if let Some(b) = self.genuine_back(st.last_sequence, st.first_sequence)?
            && b.last > last_seq
        {
            return Ok(false);
        }
        let id = format!("{token}:seal:{last_seq}");
        let headers = self.headers(token, last_seq + 1, last_seq, &[]);
        match self.link.publish(headers, Bytes::new(), &id, st.last_sequence)? {
            Some(seq) => {
                self.tail = Some((seq, last_seq));
                Ok(true)
            }
            None => Ok(false),
        }
    }

    /// Without a wait (a takeover finishing the log, a check): message by message up to the
    /// stream's end. With one (a standby following): through an ordered consumer, which the
    /// server feeds as batches are committed.
    fn read_after(&mut self, seq: u64, count: usize, block: Duration) -> Result<Read, LogError> {
        if block.is_zero() {
            return self.read_once(seq, count);
        }
        let from = match self.cursor {
            Some((s, next)) if next == seq + 1 => s,
            _ => self.locate(seq + 1)?,
        };
        let messages = self.link.follow(from, count, block)?;
        let mut read = Read::default();
        let mut s = from;
        for m in messages {
            s = m.sequence + 1;
            self.take(m, seq + 1..=u64::MAX, &mut read)?;
        }
        let next = read.entries.last().map_or(seq + 1, |e| e.0 + 1);
        self.cursor = Some((s, next));
        Ok(read)
    }

    /// Finds where record `seq - count + 1` is (a binary search), then reads forward to `seq`
    /// through a consumer: a request per batch read backwards made a restarted standby spend
    /// seconds on the last minute of the log before following (found by the takeover bench).
    fn read_back(&mut self, seq: u64, count: usize) -> Result<Read, LogError> {
        let oldest = seq.saturating_sub(u64::try_from(count).unwrap_or(u64::MAX)) + 1;
        let mut s = self.locate(oldest)?;
        let mut read = Read::default();
        while read.entries.last().is_none_or(|e| e.0 < seq) {
            let messages = self.link.follow(s, 1_024, READ_BACK_WAIT)?;
            if messages.is_empty() {
                break; // the log's end, before `seq`
            }
            for m in messages {
                s = m.sequence + 1;
                self.take(m, oldest..=seq, &mut read)?;
            }
        }
        read.entries.reverse();
        Ok(read)
    }

    fn bounds(&mut self) -> Result<Option<(u64, u64)>, LogError> {
        let st = self.link.state()?;
        if st.messages == 0 {
            return Ok(None);
        }
        let first = self.genuine_from(st.first_sequence, st.last_sequence + 1)?;
        let last = self.genuine_back(st.last_sequence, st.first_sequence)?;
        Ok(first.zip(last).map(|(a, b)| (a.first, b.last)))
    }

    fn holder(&mut self, _lease: Duration) -> Result<Option<String>, LogError> {
        Ok(self.link.entry(LEASE_KEY)?.and_then(|(raw, _)| self.lease_token(&raw)))
    }

    fn try_lead(&mut self, token: &str, lease: Duration) -> Result<bool, LogError> {
        let Some((raw, rev)) = self.link.entry(LEASE_KEY)? else {
            self.watched = None;
            return self.link.swap(LEASE_KEY, self.lease_value(token), 0);
        };
        if self.lease_token(&raw).as_deref() == Some(token) {
            return Ok(true);
        }
        match self.watched {
            Some((seen, since)) if seen == rev && since.elapsed() >= lease => {
                self.watched = None;
                self.link.swap(LEASE_KEY, self.lease_value(token), rev)
            }
            Some((seen, _)) if seen == rev => Ok(false),
            _ => {
                self.watched = Some((rev, Instant::now()));
                Ok(false)
            }
        }
    }

    fn keep(&mut self, token: &str, _lease: Duration) -> Result<Kept, LogError> {
        let Some((raw, rev)) = self.link.entry(LEASE_KEY)? else {
            let taken = self.link.swap(LEASE_KEY, self.lease_value(token), 0)?;
            return Ok(if taken { Kept::Retaken("vanished") } else { Kept::Unsure });
        };
        let holder = self.lease_token(&raw);
        if let Some(other) = holder.as_ref().filter(|t| *t != token) {
            return Ok(Kept::Lost(other.clone()));
        }
        // Ours, or not signed by the bridge key: written again, only if it did not change.
        let renewed = self.link.swap(LEASE_KEY, self.lease_value(token), rev)?;
        Ok(match (holder, renewed) {
            (_, false) => Kept::Unsure,
            (Some(_), true) => Kept::Renewed,
            (None, true) => {
                error!("ALERT: the lease held a value not signed by the bridge key; replaced it");
                Kept::Retaken("forged")
            }
        })
    }

    fn release(&mut self, token: &str) -> Result<(), LogError> {
        match self.link.entry(LEASE_KEY)? {
            Some((raw, rev)) if self.lease_token(&raw).as_deref() == Some(token) => {
                self.link.remove(LEASE_KEY, Some(rev))
            }
            _ => Ok(()),
        }
    }

    fn compare_hash(&mut self, seq: u64, hash: &str) -> Result<HashCheck, LogError> {
        let key = format!("hash.{seq}");
        let sig = self.key.sign_bytes(HASH_DOMAIN, seq, hash.as_bytes());
        let ours = Bytes::from(format!("{hash}|{sig}"));
        if self.link.swap(&key, ours.clone(), 0)? {
            return Ok(HashCheck::Same);
        }
        let theirs = self.link.entry(&key)?.map(|(v, _)| String::from_utf8_lossy(&v).into_owned());
        let Some(theirs) = theirs else { return Ok(HashCheck::Same) };
        let signed = theirs
            .split_once('|')
            .filter(|(h, sig)| self.key.verify_bytes(HASH_DOMAIN, seq, sig, h.as_bytes()).is_ok());
        match signed {
            Some((h, _)) if h == hash => Ok(HashCheck::Same),
            Some((h, _)) => Ok(HashCheck::Differs(h.to_owned())),
            None => {
                self.link.put(&key, ours)?;
                error!(
                    seq,
                    "ALERT: a state hash not signed by the bridge key was on the board; \
                    replaced it"
                );
                Ok(HashCheck::Forged(theirs))
            }
        }
    }

    fn register(&mut self, node: &str, oldest_snapshot: u64) -> Result<(), LogError> {
        self.link.put(&format!("node.{node}"), Bytes::from(oldest_snapshot.to_string()))
    }

    fn seen(&mut self, node: &str) -> Result<(), LogError> {
        self.link.put(&format!("seen.{node}"), Bytes::from(now_ms().to_string()))
    }

    fn last_seen(&mut self) -> Result<Vec<(String, u64)>, LogError> {
        let now = now_ms();
        let mut out = Vec::new();
        for key in self.link.keys()? {
            let Some(node) = key.strip_prefix("seen.") else { continue };
            let at = self
                .link
                .entry(&key)?
                .and_then(|(v, _)| std::str::from_utf8(&v).ok()?.parse::<u64>().ok());
            if let Some(at) = at {
                out.push((node.to_owned(), now.saturating_sub(at)));
            }
        }
        Ok(out)
    }

    fn trim(&mut self) -> Result<Option<u64>, LogError> {
        let keys = self.link.keys()?;
        let mut oldest: Vec<u64> = Vec::new();
        for key in keys.iter().filter(|k| k.starts_with("node.")) {
            let v = self
                .link
                .entry(key)?
                .and_then(|(v, _)| std::str::from_utf8(&v).ok()?.parse::<u64>().ok());
            oldest.extend(v);
        }
        let Some(&min) = oldest.iter().min() else { return Ok(None) };
        if oldest.len() < 2 || min == 0 {
            return Ok(None);
        }
        // Never the last message: it is the leader's tail (its seal or last batch).
        let below = self.locate(min + 1)?.min(self.link.state()?.last_sequence);
        self.link.purge_below(below)?;
        self.cursor = None;
        for key in &keys {
            let old = key
                .strip_prefix("hash.")
                .and_then(|s| s.parse::<u64>().ok())
                .is_some_and(|s| s < min);
            if old {
                self.link.remove(key, None)?;
            }
        }
        Ok(Some(min))
    }
}
