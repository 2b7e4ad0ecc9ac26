//! `engine-journal` and the lease, as seen from one engine: every Redis operation replication
//! makes, on a blocking connection to the current master (re-resolved through Sentinel after a
//! failure). No I/O policy here beyond one attempt per call: the callers retry.

use std::time::Duration;

use redis::{Connection, RedisResult, Script, cmd};
use redis_bridge::link::lost_master;
use redis_bridge::signing::BridgeKey;
use redis_bridge::target::RedisTarget;

use super::{HASHES_KEY, HEAD_KEY, JOURNAL_STREAM, LEASE_KEY, NODES_KEY};

/// Appends a batch of records with explicit ids `<seq>-0`, only for the lease holder and only
/// right after the log's last entry; a retry of a batch already written (the same bytes) is
/// accepted. KEYS: journal, lease, head. ARGV: token, first seq, last seq, then per record:
/// id, bytes, signature. Every call writes the head key, so the `WAIT` after it always has something to
/// wait for (a retry on a new connection included).
const APPEND_SCRIPT: &str = r"
local first, last = tonumber(ARGV[2]), tonumber(ARGV[3])
local n = (#ARGV - 3) / 3
local top = 0
local newest = redis.call('XREVRANGE', KEYS[1], '+', '-', 'COUNT', 1)
if #newest > 0 then
  top = tonumber(string.match(newest[1][1], '^(%d+)'))
else
  top = tonumber(redis.call('GET', KEYS[3]) or '0')
end
if top >= first then
  local have = redis.call('XRANGE', KEYS[1], ARGV[4], ARGV[#ARGV - 2])
  if #have ~= n then return redis.error_reply('FENCED the log moved past ' .. ARGV[2]) end
  for i = 1, n do
    if have[i][2][2] ~= ARGV[2 + 3 * i] then
      return redis.error_reply('FENCED another engine wrote ' .. have[i][1])
    end
  end
  redis.call('SET', KEYS[3], tostring(top))
  return 0
end
if redis.call('GET', KEYS[2]) ~= ARGV[1] then
  return redis.error_reply('FENCED the lease is not ours')
end
if top ~= 0 and top ~= first - 1 then
  return redis.error_reply('GAP the log ends at ' .. tostring(top))
end
for i = 1, n do
  redis.call('XADD', KEYS[1], ARGV[1 + 3 * i], 'r', ARGV[2 + 3 * i], 's', ARGV[3 + 3 * i])
end
redis.call('SET', KEYS[3], ARGV[3])
return n
";

/// Extends the lease if this engine holds it. KEYS: lease. ARGV: token, ms.
const RENEW_SCRIPT: &str = r"
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('PEXPIRE', KEYS[1], ARGV[2])
end
return 0
";

/// Why an append did not make it.
#[derive(Debug, thiserror::Error)]
pub enum AppendError {
    /// Another engine leads (the lease, or an entry at our sequence, is someone else's): this
    /// engine has been deposed and must not apply the batch.
    #[error("deposed: {0}")]
    Fenced(String),
    /// The log ends before our batch: Redis lost acknowledged entries (both nodes' data).
    #[error("engine-journal has a gap: {0}")]
    Gap(String),
    /// Written, but no replica confirmed it within the wait: not yet acknowledged.
    #[error("no replica confirmed the batch within {0:?}")]
    NotReplicated(Duration),
    /// Redis unreachable or failing over: try again.
    #[error("redis: {0}")]
    Redis(#[from] redis::RedisError),
}

/// Why records could not be read.
#[derive(Debug, thiserror::Error)]
pub enum ReadError {
    /// Redis unreachable or failing over: try again.
    #[error("redis: {0}")]
    Redis(#[from] redis::RedisError),
    /// An entry not signed with the bridge key (or altered): never applied.
    #[error("engine-journal entry {0} is not signed by the bridge key")]
    Forged(String),
}

/// One record as read back from the log.
pub type Entry = (u64, Vec<u8>);

/// A blocking connection to the master holding `engine-journal`.
pub struct RedisLog {
    target: RedisTarget,
    /// Signs each record appended, checks each record read (bound to its sequence).
    key: BridgeKey,
    /// Longest a reply may take (WAIT and blocking reads add their own time to this).
    reply_timeout: Duration,
    con: Option<Connection>,
    append: Script,
    renew: Script,
}

impl std::fmt::Debug for RedisLog {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisLog").field("target", &self.target).finish_non_exhaustive()
    }
}

impl RedisLog {
    /// Connects lazily, on the first call; records are signed and checked with `key`.
    pub fn new(target: RedisTarget, key: BridgeKey, reply_timeout: Duration) -> RedisLog {
        RedisLog {
            target,
            key,
            reply_timeout,
            con: None,
            append: Script::new(APPEND_SCRIPT),
            renew: Script::new(RENEW_SCRIPT),
        }
    }

    fn with<T>(&mut self, f: impl FnOnce(&mut Connection) -> RedisResult<T>) -> RedisResult<T> {
        if self.con.is_none() {
            let client = self.target.resolve_blocking()?;
            let con = client.get_connection_with_timeout(Duration::from_secs(2))?;
            con.set_read_timeout(Some(self.reply_timeout))?;
            con.set_write_timeout(Some(self.reply_timeout))?;
            self.con = Some(con);
        }
        let con = self.con.as_mut().expect("connected above");
        let r = f(con);
        if let Err(e) = &r
            && lost_master(e)
        {
            self.con = None;
        }
        r
    }

    /// Appends `records` (consecutive sequences, the first at `records[0].0`) as the holder of
    /// `token`, then waits up to `wait` for `replicas` replicas to hold them.
    pub fn append(
        &mut self,
        token: &str,
        records: &[(u64, &[u8])],
        replicas: u32,
        wait: Duration,
    ) -> Result<(), AppendError> {
        let (Some(&(first, _)), Some(&(last, _))) = (records.first(), records.last()) else {
            return Ok(());
        };
        assert_eq!(last - first + 1, records.len() as u64, "a batch is consecutive sequences");
        let script = self.append.clone();
        let mut call = script.prepare_invoke();
        call.key(JOURNAL_STREAM).key(LEASE_KEY).key(HEAD_KEY).arg(token).arg(first).arg(last);
        for (seq, bytes) in records {
            let sig = self.key.sign_bytes(JOURNAL_STREAM, *seq, bytes);
            call.arg(format!("{seq}-0")).arg(*bytes).arg(sig);
        }
        let wait_ms = u64::try_from(wait.as_millis()).unwrap_or(u64::MAX);
        let written: RedisResult<u64> = self.with(|con| {
            let _: i64 = call.invoke(con)?;
            if replicas == 0 {
                return Ok(0);
            }
            cmd("WAIT").arg(replicas).arg(wait_ms).query(con)
        });
        match written {
            Ok(n) if replicas == 0 || n >= u64::from(replicas) => Ok(()),
            Ok(_) => Err(AppendError::NotReplicated(wait)),
            Err(e) => match (e.code(), e.detail()) {
                (Some("FENCED"), d) => Err(AppendError::Fenced(d.unwrap_or_default().to_owned())),
                (Some("GAP"), d) => Err(AppendError::Gap(d.unwrap_or_default().to_owned())),
                _ => Err(AppendError::Redis(e)),
            },
        }
    }

    /// Up to `count` records after `seq`, waiting up to `block` for the first (0: not at all),
    /// each checked against its signature.
    pub fn read_after(
        &mut self,
        seq: u64,
        count: usize,
        block: Duration,
    ) -> Result<Vec<Entry>, ReadError> {
        let after = format!("{seq}-0");
        let reply: redis::Value = self.with(|con| {
            if block.is_zero() {
                cmd("XRANGE")
                    .arg(JOURNAL_STREAM)
                    .arg(format!("({after}"))
                    .arg("+")
                    .arg("COUNT")
                    .arg(count)
                    .query(con)
            } else {
                let ms = u64::try_from(block.as_millis()).unwrap_or(1_000);
                let r: redis::Value = cmd("XREAD")
                    .arg("COUNT")
                    .arg(count)
                    .arg("BLOCK")
                    .arg(ms)
                    .arg("STREAMS")
                    .arg(JOURNAL_STREAM)
                    .arg(&after)
                    .query(con)?;
                Ok(first_stream_entries(r))
            }
        })?;
        self.checked(parse_entries(reply)?)
    }

    fn checked(&self, entries: Vec<(Entry, Option<String>)>) -> Result<Vec<Entry>, ReadError> {
        entries
            .into_iter()
            .map(|((seq, record), sig)| {
                let ok = sig.is_some_and(|s| {
                    self.key.verify_bytes(JOURNAL_STREAM, seq, &s, &record).is_ok()
                });
                if ok { Ok((seq, record)) } else { Err(ReadError::Forged(format!("{seq}-0"))) }
            })
            .collect()
    }

    /// Up to `count` records at or before `seq`, newest first, each checked.
    pub fn read_back(&mut self, seq: u64, count: usize) -> Result<Vec<Entry>, ReadError> {
        let reply: redis::Value = self.with(|con| {
            cmd("XREVRANGE")
                .arg(JOURNAL_STREAM)
                .arg(format!("{seq}-0"))
                .arg("-")
                .arg("COUNT")
                .arg(count)
                .query(con)
        })?;
        self.checked(parse_entries(reply)?)
    }

    /// The sequences of the log's first and last entries (`None`: empty).
    pub fn bounds(&mut self) -> RedisResult<Option<(u64, u64)>> {
        let ends = |con: &mut Connection, dir: &str| -> RedisResult<Option<u64>> {
            let (a, b) = if dir == "XRANGE" { ("-", "+") } else { ("+", "-") };
            let r: redis::Value =
                cmd(dir).arg(JOURNAL_STREAM).arg(a).arg(b).arg("COUNT").arg(1).query(con)?;
            Ok(parse_entries(r)?.first().map(|e| e.0.0))
        };
        self.with(|con| Ok(ends(con, "XRANGE")?.zip(ends(con, "XREVRANGE")?)))
    }

    /// Takes the lease if nobody holds it.
    pub fn try_lead(&mut self, token: &str, lease: Duration) -> RedisResult<bool> {
        let ms = u64::try_from(lease.as_millis()).unwrap_or(u64::MAX);
        let r: Option<String> = self.with(|con| {
            cmd("SET").arg(LEASE_KEY).arg(token).arg("NX").arg("PX").arg(ms).query(con)
        })?;
        Ok(r.is_some())
    }

    /// Who holds the lease now (its token), if anyone.
    pub fn holder(&mut self) -> RedisResult<Option<String>> {
        self.with(|con| cmd("GET").arg(LEASE_KEY).query(con))
    }

    /// Extends the lease; `false`: it is not ours any more.
    pub fn renew(&mut self, token: &str, lease: Duration) -> RedisResult<bool> {
        let ms = u64::try_from(lease.as_millis()).unwrap_or(u64::MAX);
        let script = self.renew.clone();
        let mut call = script.prepare_invoke();
        call.key(LEASE_KEY).arg(token).arg(ms);
        let r: i64 = self.with(|con| call.invoke(con))?;
        Ok(r == 1)
    }

    /// Gives the lease up (clean shutdown of the leader: the standby need not wait it out).
    pub fn release(&mut self, token: &str) -> RedisResult<()> {
        let script = self.renew.clone();
        let mut call = script.prepare_invoke();
        call.key(LEASE_KEY).arg(token).arg(1);
        self.with(|con| call.invoke::<i64>(con)).map(|_| ())
    }

    /// Records this engine's state hash at `seq`; returns the hash another engine recorded
    /// there if it differs.
    pub fn compare_hash(&mut self, seq: u64, hash: &str) -> RedisResult<Option<String>> {
        self.with(|con| {
            let fresh: bool = cmd("HSETNX").arg(HASHES_KEY).arg(seq).arg(hash).query(con)?;
            if fresh {
                return Ok(None);
            }
            let theirs: Option<String> = cmd("HGET").arg(HASHES_KEY).arg(seq).query(con)?;
            Ok(theirs.filter(|t| t != hash))
        })
    }

    /// Records the oldest snapshot `node` holds (0: none): the log is kept from there on.
    pub fn register(&mut self, node: &str, oldest_snapshot: u64) -> RedisResult<()> {
        self.with(|con| cmd("HSET").arg(NODES_KEY).arg(node).arg(oldest_snapshot).query(con))
    }

    /// Trims the log below the oldest snapshot every registered engine holds, once two are
    /// registered (a lone leader keeps everything a new standby would need). Returns the
    /// sequence trimmed below, if any.
    pub fn trim(&mut self) -> RedisResult<Option<u64>> {
        let nodes: Vec<u64> = self.with(|con| cmd("HVALS").arg(NODES_KEY).query(con))?;
        let Some(&min) = nodes.iter().min() else { return Ok(None) };
        if nodes.len() < 2 || min == 0 {
            return Ok(None);
        }
        self.with(|con| {
            cmd("XTRIM")
                .arg(JOURNAL_STREAM)
                .arg("MINID")
                .arg(format!("{}-0", min + 1))
                .query::<u64>(con)?;
            // Hashes of snapshots nobody can compare any more.
            let seqs: Vec<u64> = cmd("HKEYS").arg(HASHES_KEY).query(con)?;
            let old: Vec<u64> = seqs.into_iter().filter(|s| *s < min).collect();
            if !old.is_empty() {
                cmd("HDEL").arg(HASHES_KEY).arg(old).query::<u64>(con)?;
            }
            Ok(Some(min))
        })
    }
}

/// XREAD's reply for one stream: its entries (or nil).
fn first_stream_entries(r: redis::Value) -> redis::Value {
    // [[name, entries]] in RESP2; a map {name: entries} in RESP3.
    match r {
        redis::Value::Array(mut streams) if !streams.is_empty() => match streams.swap_remove(0) {
            redis::Value::Array(mut pair) if pair.len() == 2 => pair.swap_remove(1),
            _ => redis::Value::Nil,
        },
        redis::Value::Map(mut m) if !m.is_empty() => m.swap_remove(0).1,
        _ => redis::Value::Nil,
    }
}

/// `[[id, ["r", record, "s", signature]], ...]` into `((seq, record bytes), signature)`.
fn parse_entries(v: redis::Value) -> RedisResult<Vec<(Entry, Option<String>)>> {
    let redis::Value::Array(items) = v else { return Ok(Vec::new()) };
    let mut out = Vec::with_capacity(items.len());
    for item in items {
        let (id, fields): (String, Vec<Vec<u8>>) = redis::from_redis_value(item)?;
        let seq = id.split_once('-').and_then(|(s, _)| s.parse::<u64>().ok());
        let mut fields = fields.into_iter();
        let (Some(seq), Some(_), Some(record)) = (seq, fields.next(), fields.next()) else {
            return Err(bad_entry(&id));
        };
        let sig = fields.nth(1).and_then(|s| String::from_utf8(s).ok());
        out.push(((seq, record), sig));
    }
    Ok(out)
}

fn bad_entry(id: &str) -> redis::RedisError {
    redis::RedisError::from((redis::ErrorKind::Parse, "engine-journal entry", id.to_owned()))
}
