//! The engine's state changes on `engine-events`, for read models in other processes (the
//! history store in service mode).
//!
//! The publisher writes each change as a signed entry `{"change": ChangeRecord, "prev": [seq, n]}`
//! in engine order, and in the same MULTI/EXEC sets [`PUBLISHED_KEY`] to the last one: after a
//! crash the engine reads that key, recovers from a snapshot at or before it and publishes again
//! what comes after — nothing missing, nothing twice. `prev` chains every entry to the one
//! before it, so a reader can tell a gap (the stream trimmed past it, or Redis lost its data)
//! from a run of commands that changed nothing it stores: it refuses to skip one.
//!
//! Publishing is idempotent: a script writes only the changes after [`PUBLISHED_KEY`] and moves
//! it, atomically. Two engines applying the same journal (a leader and its hot standby, see
//! the `hundredx` crate's `replication`) may both publish; every change appears once, and
//! after a takeover the new leader publishes whatever the old one had not.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use engine_core::event::ChangeRecord;
use redis::streams::StreamReadReply;
use redis::{RedisResult, cmd};
use tracing::warn;

use crate::ENGINE_EVENTS_STREAM;
use crate::entries::{Entry, ensure_named_group};
use crate::link::blocking_connection;
use crate::signing::BridgeKey;
use crate::target::RedisTarget;
use ground::backoff::Backoff;

/// Where the publisher keeps the last change it published: `"<seq> <n>"`.
pub const PUBLISHED_KEY: &str = "engine-events:published";

/// Most changes per script call.
const PUBLISH_BATCH_MAX: usize = 1_024;

/// Writes the changes after the cursor and moves it. KEYS: engine-events, the cursor key.
/// ARGV: maxlen, then per change: seq, n, data, ts, sig (strings, compared as numbers).
const PUBLISH_SCRIPT: &str = r"
local cs, cn = -1, -1
local cur = redis.call('GET', KEYS[2])
if cur then
  local a, b = string.match(cur, '^(%d+) (%-?%d+)$')
  cs, cn = tonumber(a), tonumber(b)
end
local last = nil
for i = 2, #ARGV, 5 do
  local s, n = tonumber(ARGV[i]), tonumber(ARGV[i + 1])
  if s > cs or (s == cs and n > cn) then
    redis.call('XADD', KEYS[1], 'MAXLEN', '~', ARGV[1], '*',
      'data', ARGV[i + 2], 'ts', ARGV[i + 3], 'sig', ARGV[i + 4])
    cs, cn, last = s, n, i
  end
end
if last then redis.call('SET', KEYS[2], ARGV[last] .. ' ' .. ARGV[last + 1]) end
return last and 1 or 0
";

/// A change as published. `prev`: the change published before it (`[0, -1]` before the first);
/// `null` when the publisher does not know it (Redis lost [`PUBLISHED_KEY`]): a reader that
/// does not already hold this change must stop, its history has a hole.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ChangeEntry {
    /// The change.
    pub change: ChangeRecord,
    /// The change before it.
    pub prev: Option<(u64, i64)>,
}

/// The JSON body of a change entry.
pub fn encode_change(entry: &ChangeEntry) -> String {
    serde_json::to_string(entry).unwrap_or_default()
}

/// A change entry, or `None` for the other entries of `engine-events` (unsolicited events).
pub fn decode_change(data: &str) -> Option<ChangeEntry> {
    serde_json::from_str(data).ok()
}

fn parse_cursor(s: &str) -> Option<(u64, i64)> {
    let (seq, n) = s.split_once(' ')?;
    Some((seq.parse().ok()?, n.parse().ok()?))
}

/// The last change published (`None`: nothing was, or Redis lost the key).
pub async fn published(
    con: &mut impl redis::aio::ConnectionLike,
) -> RedisResult<Option<(u64, i64)>> {
    let v: Option<String> = cmd("GET").arg(PUBLISHED_KEY).query_async(con).await?;
    Ok(v.as_deref().and_then(parse_cursor))
}

/// Publishes what arrives on `rx` until it closes: batches in one script call each (the entries
/// after [`PUBLISHED_KEY`], and the key), retried until written — the engine waits meanwhile
/// (its changes subscription is lossless), it never skips one. After each batch `published_seq` holds the
/// sequence of the last change written (the journal after it must be kept).
pub async fn publish_changes(
    mut con: crate::link::Link,
    key: BridgeKey,
    maxlen: usize,
    mut rx: tokio::sync::mpsc::Receiver<ChangeRecord>,
    mut prev: Option<(u64, i64)>,
    published_seq: Arc<AtomicU64>,
) {
    let mut batch = Vec::with_capacity(PUBLISH_BATCH_MAX);
    let script = redis::Script::new(PUBLISH_SCRIPT);
    while let Some(first) = rx.recv().await {
        batch.clear();
        batch.push(first);
        while batch.len() < PUBLISH_BATCH_MAX {
            match rx.try_recv() {
                Ok(c) => batch.push(c),
                Err(_) => break,
            }
        }
        let mut call = script.prepare_invoke();
        call.key(ENGINE_EVENTS_STREAM).key(PUBLISHED_KEY).arg(maxlen);
        let mut last = prev;
        let ts = ground::time::now_ms();
        for c in &batch {
            let body = encode_change(&ChangeEntry { change: *c, prev: last });
            let sig = key.sign(ENGINE_EVENTS_STREAM, ts, &body);
            call.arg(c.seq).arg(c.n).arg(body).arg(ts).arg(sig);
            last = Some((c.seq, i64::from(c.n)));
        }
        let Some((seq, _)) = last else { continue };
        let mut wait = Backoff::write();
        while let Err(e) = call.invoke_async::<()>(&mut con).await {
            warn!(error = %e, "changes: engine-events write failed, retrying");
            tokio::time::sleep(wait.next()).await;
        }
        prev = last;
        published_seq.store(seq, Ordering::Release);
    }
}

/// Reads change entries from `engine-events` as consumer `consumer` of group `group`: this
/// consumer's pending entries first (after a restart), then new ones. Entries that are not
/// changes (events) are acknowledged and skipped; a change entry that is not signed with the
/// bridge key is counted in `refused` and skipped.
#[derive(Debug)]
pub struct ChangeReader {
    read: redis::aio::MultiplexedConnection,
    key: BridgeKey,
    group: String,
    consumer: String,
    cursor: &'static str,
    /// Entries refused (unsigned or badly signed).
    pub refused: u64,
}

impl ChangeReader {
    /// Connects and creates the group (from the start of the stream) if needed.
    pub async fn connect(
        target: &RedisTarget,
        key: BridgeKey,
        group: &str,
        consumer: &str,
    ) -> RedisResult<ChangeReader> {
        let mut read = blocking_connection(target).await?;
        ensure_named_group(&mut read, ENGINE_EVENTS_STREAM, group).await?;
        Ok(ChangeReader {
            read,
            key,
            group: group.into(),
            consumer: consumer.into(),
            cursor: "0",
            refused: 0,
        })
    }

    /// The next entries (at most `count`, waiting up to `block_ms` for one): the stream ids to
    /// acknowledge once handled, and the changes among them in stream order.
    pub async fn next(
        &mut self,
        count: usize,
        block_ms: u64,
    ) -> RedisResult<(Vec<String>, Vec<ChangeEntry>)> {
        let reply: Option<StreamReadReply> = cmd("XREADGROUP")
            .arg("GROUP")
            .arg(&self.group)
            .arg(&self.consumer)
            .arg("COUNT")
            .arg(count)
            .arg("BLOCK")
            .arg(block_ms)
            .arg("STREAMS")
            .arg(ENGINE_EVENTS_STREAM)
            .arg(self.cursor)
            .query_async(&mut self.read)
            .await?;
        let mut ids = Vec::new();
        let mut changes = Vec::new();
        for key in reply.map(|r| r.keys).unwrap_or_default() {
            for e in key.ids {
                let e = Entry::from_stream_id(&e);
                ids.push(e.id.clone());
                let Some(c) = decode_change(&e.data) else { continue };
                match e.verify(&self.key, ENGINE_EVENTS_STREAM) {
                    Ok(_) => changes.push(c),
                    Err(why) => {
                        self.refused += 1;
                        warn!(entry = %e.id, why = why.code(), "changes: refused an entry");
                    }
                }
            }
        }
        if self.cursor == "0" && ids.is_empty() {
            self.cursor = ">"; // pending ones done: new entries from now on
        }
        Ok((ids, changes))
    }

    /// Acknowledges handled entries.
    pub async fn ack(&mut self, ids: &[String]) -> RedisResult<()> {
        if ids.is_empty() {
            return Ok(());
        }
        cmd("XACK")
            .arg(ENGINE_EVENTS_STREAM)
            .arg(&self.group)
            .arg(ids)
            .query_async(&mut self.read)
            .await
    }
}

/// How old (by its signed time stamp) a change entry may be when the tail reads it: a genuine
/// one is read within moments of its publication; an older one is a copy written again.
pub const TAIL_MAX_AGE_MS: u64 = 30_000;

/// Follows the changes on `engine-events` from now on (no consumer group: every api instance
/// sees all of them) and hands each correctly signed one to `on_change`, until `stop`. For live
/// views: reconnects with backoff and resumes after the last entry seen; changes written while
/// disconnected for longer than the stream keeps are missed (views re-read over REST).
///
/// A genuine entry written again (a replay by someone who can write to Redis) is not handed on:
/// changes arrive in order of `(seq, n)`, so one at or before the last handed on is a copy, and
/// so is one signed more than [`TAIL_MAX_AGE_MS`] ago (before any change was seen). Refused
/// entries are counted in `refused`.
pub async fn tail_changes(
    target: &crate::target::RedisTarget,
    key: BridgeKey,
    mut on_change: impl FnMut(&ChangeRecord),
    refused: Arc<AtomicU64>,
    stop: impl std::future::Future<Output = ()>,
) {
    tokio::pin!(stop);
    let mut tail = Tail { last: "$".to_owned(), handed: None, refused };
    let mut backoff = Backoff::connect();
    loop {
        let session = tail_session(target, &key, &mut tail, &mut on_change);
        tokio::select! {
            () = &mut stop => return,
            r = session => if let Err(e) = r {
                warn!(error = %e, retry_in = ?backoff.peek(), "changes: engine-events tail lost");
            },
        }
        tokio::select! {
            () = &mut stop => return,
            () = tokio::time::sleep(backoff.next()) => {}
        }
    }
}

/// Where a tail is: the last stream id read, the last change handed on.
struct Tail {
    last: String,
    handed: Option<(u64, u32)>,
    refused: Arc<AtomicU64>,
}

impl Tail {
    /// Hands `c` on unless it is a copy (see [`tail_changes`]).
    fn admit(&mut self, c: &ChangeRecord, signed_ms: u64, now_ms: u64) -> bool {
        let at = (c.seq, c.n);
        let fresh = crate::signing::fresh(signed_ms, now_ms, TAIL_MAX_AGE_MS);
        if !fresh || self.handed.is_some_and(|h| at <= h) {
            self.refused.fetch_add(1, Ordering::Relaxed);
            warn!(seq = c.seq, n = c.n, fresh, "changes: a replayed engine-events entry refused");
            return false;
        }
        self.handed = Some(at);
        true
    }
}

async fn tail_session(
    target: &crate::target::RedisTarget,
    key: &BridgeKey,
    tail: &mut Tail,
    on_change: &mut impl FnMut(&ChangeRecord),
) -> RedisResult<()> {
    let mut con = blocking_connection(target).await?;
    loop {
        let reply: Option<StreamReadReply> = cmd("XREAD")
            .arg("COUNT")
            .arg(1_024)
            .arg("BLOCK")
            .arg(1_000)
            .arg("STREAMS")
            .arg(ENGINE_EVENTS_STREAM)
            .arg(tail.last.as_str())
            .query_async(&mut con)
            .await?;
        for stream in reply.map(|r| r.keys).unwrap_or_default() {
            for e in stream.ids {
                let e = Entry::from_stream_id(&e);
                tail.last.clone_from(&e.id);
                if let Some(c) = decode_change(&e.data)
                    && let Ok(signed_ms) = e.verify(key, ENGINE_EVENTS_STREAM)
                    && tail.admit(&c.change, signed_ms, ground::time::now_ms())
                {
                    on_change(&c.change);
                }
            }
        }
    }
}
#[cfg(test)]
mod tests {
    use engine_core::prelude::*;

    use super::*;

    #[test]
    fn change_entries_round_trip_and_events_are_not_changes() {
        let change = ChangeRecord {
            seq: 7,
            n: 1,
            at_ns: 5,
            change: Change::Deposited { account: AccountId(3), amount: Usdc(10) },
        };
        let e = ChangeEntry { change, prev: Some((7, 0)) };
        assert_eq!(decode_change(&encode_change(&e)), Some(e));
        let event =
            Event::PriceRejected { market: MarketId(0), reason: Reason::StaleUpdate, update_id: 1 };
        assert_eq!(decode_change(&serde_json::to_string(&event).unwrap()), None);
        assert_eq!(parse_cursor("12 -1"), Some((12, -1)));
        assert_eq!(parse_cursor("12"), None);
    }

    #[test]
    fn the_tail_hands_on_each_change_once_and_nothing_stale() {
        let c = |seq, n| ChangeRecord {
            seq,
            n,
            at_ns: 5,
            change: Change::Deposited { account: AccountId(3), amount: Usdc(10) },
        };
        let refused = Arc::new(AtomicU64::new(0));
        let mut t = Tail { last: "$".into(), handed: None, refused: Arc::clone(&refused) };
        let now = 1_000_000;
        assert!(!t.admit(&c(1, 0), now - TAIL_MAX_AGE_MS - 1, now), "signed too long ago");
        assert!(t.admit(&c(2, 0), now, now));
        assert!(t.admit(&c(2, 1), now, now), "the next change of the same command");
        assert!(!t.admit(&c(2, 1), now, now), "the same change again");
        assert!(!t.admit(&c(2, 0), now, now), "an earlier one");
        assert!(t.admit(&c(3, 0), now - 1_000, now));
        assert_eq!(refused.load(Ordering::Relaxed), 3);
    }
}
