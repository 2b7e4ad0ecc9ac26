//! `engine-journal` and the lease, as seen from one engine: every Redis operation replication
//! makes, on a blocking connection to the current master (re-resolved through Sentinel after a
//! failure). No I/O policy here beyond one attempt per call: the callers retry.
//!
//! Everything replication reads back from Redis is signed with the bridge key, because anyone
//! who can write to Redis could otherwise steer it: each journal record (bound to its
//! sequence), the lease value (bound to its expiry) and each state hash (bound to its
//! sequence). What does not verify is never acted on: a forged record is skipped and removed
//! by the leader, a forged lease is replaced, a forged hash is overwritten — each with an
//! `ALERT` log line.
//!
//! Over 600 lines on purpose: every Redis call replication makes is here, so that what is
//! signed, what is verified and what each call costs on the leader's path are reviewed in one
//! place.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use ground::time::now_ms;
use redis::{Connection, RedisResult, Script, cmd};
use redis_bridge::link::lost_master;
use redis_bridge::signing::BridgeKey;
use redis_bridge::target::RedisTarget;
use tracing::error;

pub use super::journal::{AppendError, Entry, HashCheck, Kept, Read};
use super::journal::{LogError, ReplicatedLog};
use super::{HASHES_KEY, HEAD_KEY, JOURNAL_STREAM, LEASE_KEY, NODES_KEY, SEEN_KEY};

/// Appends a batch of records with explicit ids `<seq>-0`, only for the lease holder and only
/// right after the log's last entry; a retry of a batch already written (the same bytes, and
/// nothing after them) is accepted. KEYS: journal, lease, head. ARGV: token, first seq, last
/// seq, then per record: id, bytes, signature. Every call writes the head key, so the `WAIT`
/// after it always has something to wait for (a retry on a new connection included).
///
/// Errors: `LEASE` (the lease value is not ours), `CONFLICT` (entries at or after the batch
/// that are not exactly it: another engine's, or forged — the caller tells which by their
/// signatures), `GAP` (the log ends before the batch).
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
  local have = redis.call('XRANGE', KEYS[1], ARGV[4], '+', 'COUNT', n + 1)
  local same = #have == n
  for i = 1, n do
    if not same then break end
    same = have[i][1] == ARGV[1 + 3 * i] and have[i][2][2] == ARGV[2 + 3 * i]
  end
  if not same then
    return redis.error_reply('CONFLICT entries at or after ' .. ARGV[4] .. ' are not this batch')
  end
  redis.call('SET', KEYS[3], tostring(top))
  return 0
end
local lease = redis.call('GET', KEYS[2])
if not lease or string.sub(lease, 1, #ARGV[1] + 1) ~= ARGV[1] .. '|' then
  return redis.error_reply('LEASE the lease is not ours')
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

/// Deletes entries found forged, then moves the stream's last id back to its newest entry (or
/// the head), so that the genuine record can take the sequence again; only for the lease
/// holder. KEYS: journal, lease, head. ARGV: token, then the ids.
const REPAIR_SCRIPT: &str = r"
local lease = redis.call('GET', KEYS[2])
if not lease or string.sub(lease, 1, #ARGV[1] + 1) ~= ARGV[1] .. '|' then
  return redis.error_reply('LEASE the lease is not ours')
end
for i = 2, #ARGV do
  redis.call('XDEL', KEYS[1], ARGV[i])
end
local newest = redis.call('XREVRANGE', KEYS[1], '+', '-', 'COUNT', 1)
if #newest > 0 then
  redis.call('XSETID', KEYS[1], newest[1][1])
elseif redis.call('EXISTS', KEYS[1]) == 1 then
  redis.call('XSETID', KEYS[1], (redis.call('GET', KEYS[3]) or '0') .. '-0')
end
return #ARGV - 1
";

/// Writes a new value of ours (a later expiry) if this engine holds the lease. KEYS: lease.
/// ARGV: token, value, ms.
const RENEW_SCRIPT: &str = r"
local v = redis.call('GET', KEYS[1])
if v and string.sub(v, 1, #ARGV[1] + 1) == ARGV[1] .. '|' then
  redis.call('SET', KEYS[1], ARGV[2], 'PX', ARGV[3])
  return 1
end
return 0
";

/// Replaces exactly the value `ARGV[1]` (found forged or long expired) with ours. KEYS: lease.
/// ARGV: the value seen, ours, ms.
const REPLACE_SCRIPT: &str = r"
if redis.call('GET', KEYS[1]) == ARGV[1] then
  redis.call('SET', KEYS[1], ARGV[2], 'PX', ARGV[3])
  return 1
end
return 0
";

/// Deletes the lease if it is ours. KEYS: lease. ARGV: token.
const RELEASE_SCRIPT: &str = r"
local v = redis.call('GET', KEYS[1])
if v and string.sub(v, 1, #ARGV[1] + 1) == ARGV[1] .. '|' then
  return redis.call('DEL', KEYS[1])
end
return 0
";

/// Forged ids remembered so that each is reported once.
const FORGED_REPORTED_MAX: usize = 64;

/// What `engine-leader` holds, as checked with the bridge key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Lease {
    /// Nobody holds it.
    Vacant,
    /// Signed, and not expired by more than a lease period: this token leads.
    Held(String),
    /// Not signed by the bridge key, or expired long ago but kept (no time to live): nobody
    /// leads by it. The raw value, to replace exactly it.
    Invalid(String),
}

/// A blocking connection to the master holding `engine-journal`.
pub struct RedisLog {
    target: RedisTarget,
    /// Signs each record appended, checks each record read (bound to its sequence).
    key: BridgeKey,
    /// Longest a reply may take (WAIT and blocking reads add their own time to this).
    reply_timeout: Duration,
    con: Option<Connection>,
    append: Script,
    repair: Script,
    renew: Script,
    replace: Script,
    release: Script,
    /// An invalid lease value seen while not leading, and since when: replaced only after it
    /// stayed for a lease period, so that a healthy leader (which replaces it at once) wins.
    suspect: Option<(String, Instant)>,
    reported: VecDeque<String>,
}

impl std::fmt::Debug for RedisLog {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisLog").field("target", &self.target).finish_non_exhaustive()
    }
}

fn ms(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
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
            repair: Script::new(REPAIR_SCRIPT),
            renew: Script::new(RENEW_SCRIPT),
            replace: Script::new(REPLACE_SCRIPT),
            release: Script::new(RELEASE_SCRIPT),
            suspect: None,
            reported: VecDeque::new(),
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

    /// One try: `Ok(false)` when entries at or after the batch are not exactly it.
    fn append_once(
        &mut self,
        token: &str,
        records: &[(u64, &[u8])],
        sigs: &[String],
        replicas: u32,
        wait: Duration,
    ) -> Result<bool, AppendError> {
        let (first, last) = (records[0].0, records[records.len() - 1].0);
        let script = self.append.clone();
        let mut call = script.prepare_invoke();
        call.key(JOURNAL_STREAM).key(LEASE_KEY).key(HEAD_KEY).arg(token).arg(first).arg(last);
        for ((seq, bytes), sig) in records.iter().zip(sigs) {
            call.arg(format!("{seq}-0")).arg(*bytes).arg(sig);
        }
        let written: RedisResult<u64> = self.with(|con| {
            let _: i64 = call.invoke(con)?;
            if replicas == 0 {
                return Ok(0);
            }
            cmd("WAIT").arg(replicas).arg(ms(wait)).query(con)
        });
        match written {
            Ok(n) if replicas == 0 || n >= u64::from(replicas) => Ok(true),
            Ok(_) => Err(AppendError::NotReplicated(wait)),
            Err(e) => match (e.code(), e.detail()) {
                (Some("CONFLICT"), _) => Ok(false),
                (Some("LEASE"), _) => Err(AppendError::Lease),
                (Some("GAP"), d) => Err(AppendError::Gap(d.unwrap_or_default().to_owned())),
                _ => Err(e.into()),
            },
        }
    }

    /// The entries from `records`' first sequence on are not exactly the batch: if any is
    /// signed by the bridge key and differs, another engine wrote it (deposed); the forged
    /// ones are deleted.
    fn clear_forged(&mut self, token: &str, records: &[(u64, &[u8])]) -> Result<(), AppendError> {
        let first = records[0].0;
        let raw = self.with(|con| {
            let r: redis::Value = cmd("XRANGE")
                .arg(JOURNAL_STREAM)
                .arg(format!("{first}-0"))
                .arg("+")
                .arg("COUNT")
                .arg(records.len() + 1_024)
                .query(con)?;
            parse_entries(r)
        })?;
        let mut forged: Vec<String> = Vec::new();
        for e in raw {
            let mine = e.seq.and_then(|s| records.get(usize::try_from(s - first).ok()?));
            match (self.genuine(&e), mine) {
                (true, Some((_, bytes))) if *bytes == e.record.as_slice() => {}
                (true, _) => {
                    return Err(AppendError::Fenced(format!("another engine wrote {}", e.id)));
                }
                (false, _) => forged.push(e.id),
            }
        }
        if forged.is_empty() {
            return Ok(());
        }
        error!(ids = ?forged, "ALERT: engine-journal held entries not signed by the bridge key \
            (a Redis writer without the secret?); removed them");
        let script = self.repair.clone();
        let mut call = script.prepare_invoke();
        call.key(JOURNAL_STREAM).key(LEASE_KEY).key(HEAD_KEY).arg(token);
        for id in &forged {
            call.arg(id);
        }
        match self.with(|con| call.invoke::<i64>(con)) {
            Ok(_) => Ok(()),
            Err(e) if e.code() == Some("LEASE") => Err(AppendError::Lease),
            Err(e) => Err(e.into()),
        }
    }

    /// Is this entry signed by the bridge key at its own id `<seq>-0`?
    fn genuine(&self, e: &RawEntry) -> bool {
        match (e.seq, &e.sig) {
            (Some(seq), Some(sig)) => {
                self.key.verify_bytes(JOURNAL_STREAM, seq, sig, &e.record).is_ok()
            }
            _ => false,
        }
    }

    fn checked(&mut self, raw: Vec<RawEntry>) -> Read {
        let mut read = Read::default();
        for e in raw {
            match e.seq {
                Some(seq) if self.genuine(&e) => read.entries.push((seq, e.record)),
                _ => read.forged.push(e.id),
            }
        }
        for id in &read.forged {
            if self.reported.contains(id) {
                continue;
            }
            error!(
                id,
                "ALERT: engine-journal holds an entry not signed by the bridge key \
                (a Redis writer without the secret?); skipped, never applied"
            );
            if self.reported.len() == FORGED_REPORTED_MAX {
                self.reported.pop_front();
            }
            self.reported.push_back(id.clone());
        }
        read
    }

    /// The signed lease value of `token`, valid until `lease` from now.
    fn lease_value(&self, token: &str, lease: Duration) -> String {
        let until = now_ms().saturating_add(ms(lease));
        let sig = self.key.sign_bytes(LEASE_KEY, until, token.as_bytes());
        format!("{token}|{until}|{sig}")
    }

    /// Reads `engine-leader`. A value counts only if signed by the bridge key and expired by
    /// less than `lease` (room for the clocks of two machines): Redis expires a genuine lease
    /// by itself, so an older one was kept on purpose, by someone without the key.
    pub fn lease(&mut self, lease: Duration) -> RedisResult<Lease> {
        let raw: Option<String> = self.with(|con| cmd("GET").arg(LEASE_KEY).query(con))?;
        let Some(raw) = raw else { return Ok(Lease::Vacant) };
        let mut parts = raw.rsplitn(3, '|');
        let (Some(sig), Some(until), Some(token)) = (parts.next(), parts.next(), parts.next())
        else {
            return Ok(Lease::Invalid(raw));
        };
        let until_ms: Option<u64> = until.parse().ok().filter(|u: &u64| u.to_string() == until);
        let valid = until_ms.is_some_and(|u| {
            self.key.verify_bytes(LEASE_KEY, u, sig, token.as_bytes()).is_ok()
                && now_ms() <= u.saturating_add(ms(lease))
        });
        Ok(if valid { Lease::Held(token.to_owned()) } else { Lease::Invalid(raw) })
    }

    fn replace_invalid(&mut self, raw: &str, token: &str, lease: Duration) -> RedisResult<bool> {
        let value = self.lease_value(token, lease);
        let script = self.replace.clone();
        let mut call = script.prepare_invoke();
        call.key(LEASE_KEY).arg(raw).arg(value).arg(ms(lease));
        let replaced = self.with(|con| call.invoke::<i64>(con))? == 1;
        if replaced {
            error!(
                value = raw,
                "ALERT: engine-leader held a value not signed by the bridge key \
                (or expired long ago and kept): a Redis writer without the secret? Replaced it"
            );
        }
        Ok(replaced)
    }

    /// Extends the lease; `false`: it is not ours any more.
    pub fn renew(&mut self, token: &str, lease: Duration) -> RedisResult<bool> {
        let value = self.lease_value(token, lease);
        let script = self.renew.clone();
        let mut call = script.prepare_invoke();
        call.key(LEASE_KEY).arg(token).arg(value).arg(ms(lease));
        let r: i64 = self.with(|con| call.invoke(con))?;
        Ok(r == 1)
    }
}

impl ReplicatedLog for RedisLog {
    /// Nothing to do: every append checks, in the same script, that the lease is this
    /// engine's and that the log ends right before the batch.
    fn seal(&mut self, _token: &str, _last_seq: u64) -> Result<bool, AppendError> {
        Ok(true)
    }

    /// Appends `records` (consecutive sequences, the first at `records[0].0`) as the holder of
    /// `token`, then waits up to `wait` for `replicas` replicas to hold them. Entries in the
    /// way that are not signed by the bridge key are removed (with an `ALERT`) and the append
    /// is tried again: a forged tail cannot depose the leader.
    fn append(
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
        let sigs: Vec<String> =
            records.iter().map(|(seq, b)| self.key.sign_bytes(JOURNAL_STREAM, *seq, b)).collect();
        if self.append_once(token, records, &sigs, replicas, wait)? {
            return Ok(());
        }
        self.clear_forged(token, records)?;
        if self.append_once(token, records, &sigs, replicas, wait)? {
            return Ok(());
        }
        Err(AppendError::from(redis::RedisError::from((
            redis::ErrorKind::Client,
            "engine-journal changed during its repair",
        ))))
    }

    /// Up to `count` records after `seq`, waiting up to `block` for the first (0: not at all),
    /// each checked against its signature.
    fn read_after(&mut self, seq: u64, count: usize, block: Duration) -> Result<Read, LogError> {
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
                let r: redis::Value = cmd("XREAD")
                    .arg("COUNT")
                    .arg(count)
                    .arg("BLOCK")
                    .arg(ms(block).max(1))
                    .arg("STREAMS")
                    .arg(JOURNAL_STREAM)
                    .arg(&after)
                    .query(con)?;
                Ok(first_stream_entries(r))
            }
        })?;
        Ok(self.checked(parse_entries(reply)?))
    }

    /// Up to `count` records at or before `seq`, newest first, each checked.
    fn read_back(&mut self, seq: u64, count: usize) -> Result<Read, LogError> {
        let reply: redis::Value = self.with(|con| {
            cmd("XREVRANGE")
                .arg(JOURNAL_STREAM)
                .arg(format!("{seq}-0"))
                .arg("-")
                .arg("COUNT")
                .arg(count)
                .query(con)
        })?;
        Ok(self.checked(parse_entries(reply)?))
    }

    /// The sequences of the log's first and last genuine entries (`None`: none), looking at
    /// most 64 entries in from either end (forged entries are not the log).
    fn bounds(&mut self) -> Result<Option<(u64, u64)>, LogError> {
        let ends = |con: &mut Connection, dir: &str| -> RedisResult<Vec<RawEntry>> {
            let (a, b) = if dir == "XRANGE" { ("-", "+") } else { ("+", "-") };
            let r: redis::Value =
                cmd(dir).arg(JOURNAL_STREAM).arg(a).arg(b).arg("COUNT").arg(64).query(con)?;
            parse_entries(r)
        };
        let (head, tail) = self.with(|con| Ok((ends(con, "XRANGE")?, ends(con, "XREVRANGE")?)))?;
        let first = head.into_iter().find(|e| self.genuine(e)).and_then(|e| e.seq);
        let last = tail.into_iter().find(|e| self.genuine(e)).and_then(|e| e.seq);
        Ok(first.zip(last))
    }

    /// Who holds the lease now (its token), if anyone does by a valid value.
    fn holder(&mut self, lease: Duration) -> Result<Option<String>, LogError> {
        Ok(match self.lease(lease)? {
            Lease::Held(token) => Some(token),
            Lease::Vacant | Lease::Invalid(_) => None,
        })
    }

    /// Takes the lease if nobody holds it. An invalid value (forged, or kept past its expiry)
    /// is replaced once it has stayed for a whole `lease`: a healthy leader replaces it sooner.
    fn try_lead(&mut self, token: &str, lease: Duration) -> Result<bool, LogError> {
        let value = self.lease_value(token, lease);
        let set: Option<String> = self.with(|con| {
            cmd("SET").arg(LEASE_KEY).arg(&value).arg("NX").arg("PX").arg(ms(lease)).query(con)
        })?;
        if set.is_some() {
            self.suspect = None;
            return Ok(true);
        }
        let Lease::Invalid(raw) = self.lease(lease)? else {
            self.suspect = None;
            return Ok(false);
        };
        match &self.suspect {
            Some((seen, since)) if *seen == raw && since.elapsed() >= lease => {
                let taken = self.replace_invalid(&raw, token, lease)?;
                self.suspect = None;
                Ok(taken)
            }
            Some((seen, _)) if *seen == raw => Ok(false),
            _ => {
                self.suspect = Some((raw, Instant::now()));
                Ok(false)
            }
        }
    }

    /// The lease holder's round: renews the lease, or takes it again at once when it vanished
    /// (a Redis that restarted without its data) or holds a value nobody signed.
    fn keep(&mut self, token: &str, lease: Duration) -> Result<Kept, LogError> {
        if self.renew(token, lease)? {
            return Ok(Kept::Renewed);
        }
        Ok(match self.lease(lease)? {
            Lease::Held(other) => Kept::Lost(other),
            Lease::Vacant => {
                let value = self.lease_value(token, lease);
                let set: Option<String> = self.with(|con| {
                    let px = ms(lease);
                    cmd("SET").arg(LEASE_KEY).arg(&value).arg("NX").arg("PX").arg(px).query(con)
                })?;
                if set.is_some() { Kept::Retaken("vanished") } else { Kept::Unsure }
            }
            Lease::Invalid(raw) => {
                if self.replace_invalid(&raw, token, lease)? {
                    Kept::Retaken("forged")
                } else {
                    Kept::Unsure
                }
            }
        })
    }

    /// Gives the lease up (clean shutdown of the leader: the standby need not wait it out).
    fn release(&mut self, token: &str) -> Result<(), LogError> {
        let script = self.release.clone();
        let mut call = script.prepare_invoke();
        call.key(LEASE_KEY).arg(token);
        self.with(|con| call.invoke::<i64>(con))?;
        Ok(())
    }

    /// Records this engine's state hash at `seq` (signed, bound to `seq`) and compares it with
    /// the one another engine recorded there. A value not signed by the bridge key is
    /// overwritten with ours.
    fn compare_hash(&mut self, seq: u64, hash: &str) -> Result<HashCheck, LogError> {
        let ours = format!("{hash}|{}", self.key.sign_bytes(HASHES_KEY, seq, hash.as_bytes()));
        let theirs: Option<String> = self.with(|con| {
            let fresh: bool = cmd("HSETNX").arg(HASHES_KEY).arg(seq).arg(&ours).query(con)?;
            if fresh { Ok(None) } else { cmd("HGET").arg(HASHES_KEY).arg(seq).query(con) }
        })?;
        let Some(theirs) = theirs else { return Ok(HashCheck::Same) };
        let signed = theirs
            .split_once('|')
            .filter(|(h, sig)| self.key.verify_bytes(HASHES_KEY, seq, sig, h.as_bytes()).is_ok());
        match signed {
            Some((h, _)) if h == hash => Ok(HashCheck::Same),
            Some((h, _)) => Ok(HashCheck::Differs(h.to_owned())),
            None => {
                self.with(|con| cmd("HSET").arg(HASHES_KEY).arg(seq).arg(&ours).query::<i64>(con))?;
                error!(seq, value = %theirs, "ALERT: engine-journal:hashes held a state hash not \
                    signed by the bridge key (a Redis writer without the secret?); replaced it");
                Ok(HashCheck::Forged(theirs))
            }
        }
    }

    /// Records the oldest snapshot `node` holds (0: none): the log is kept from there on.
    fn register(&mut self, node: &str, oldest_snapshot: u64) -> Result<(), LogError> {
        Ok(self.with(|con| cmd("HSET").arg(NODES_KEY).arg(node).arg(oldest_snapshot).query(con))?)
    }

    /// Says that `node` is alive now (a standby following, or the leader).
    fn seen(&mut self, node: &str) -> Result<(), LogError> {
        let now = now_ms();
        Ok(self.with(|con| cmd("HSET").arg(SEEN_KEY).arg(node).arg(now).query(con))?)
    }

    /// Every engine that said it is alive, and how long ago (milliseconds).
    fn last_seen(&mut self) -> Result<Vec<(String, u64)>, LogError> {
        let all: Vec<(String, String)> =
            self.with(|con| cmd("HGETALL").arg(SEEN_KEY).query(con))?;
        let now = now_ms();
        Ok(all
            .into_iter()
            .filter_map(|(node, at)| Some((node, now.saturating_sub(at.parse::<u64>().ok()?))))
            .collect())
    }

    /// Trims the log below the oldest snapshot every registered engine holds, once two are
    /// registered (a lone leader keeps everything a new standby would need). Returns the
    /// sequence trimmed below, if any.
    fn trim(&mut self) -> Result<Option<u64>, LogError> {
        let nodes: Vec<String> = self.with(|con| cmd("HVALS").arg(NODES_KEY).query(con))?;
        let nodes: Vec<u64> = nodes.iter().filter_map(|n| n.parse().ok()).collect();
        let Some(&min) = nodes.iter().min() else { return Ok(None) };
        if nodes.len() < 2 || min == 0 {
            return Ok(None);
        }
        Ok(self.with(|con| {
            cmd("XTRIM")
                .arg(JOURNAL_STREAM)
                .arg("MINID")
                .arg(format!("{}-0", min + 1))
                .query::<u64>(con)?;
            // Hashes of snapshots nobody can compare any more (and fields that are no sequence).
            let seqs: Vec<String> = cmd("HKEYS").arg(HASHES_KEY).query(con)?;
            let old: Vec<String> =
                seqs.into_iter().filter(|s| s.parse::<u64>().map_or(true, |s| s < min)).collect();
            if !old.is_empty() {
                cmd("HDEL").arg(HASHES_KEY).arg(old).query::<u64>(con)?;
            }
            Ok(Some(min))
        })?)
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

/// An entry as Redis holds it, before its signature is checked.
struct RawEntry {
    id: String,
    /// The sequence, when the id is `<seq>-0` (the only place a record may sit).
    seq: Option<u64>,
    record: Vec<u8>,
    sig: Option<String>,
}

/// `[[id, ["r", record, "s", signature]], ...]` into raw entries; anything else in the field
/// list makes an entry without a record or signature (so: forged).
fn parse_entries(v: redis::Value) -> RedisResult<Vec<RawEntry>> {
    let redis::Value::Array(items) = v else { return Ok(Vec::new()) };
    let mut out = Vec::with_capacity(items.len());
    for item in items {
        let (id, fields): (String, Vec<Vec<u8>>) = redis::from_redis_value(item)?;
        let seq = id.strip_suffix("-0").and_then(|s| s.parse::<u64>().ok());
        let field = |name: &[u8]| {
            fields.chunks(2).find(|p| p.len() == 2 && p[0] == name).map(|p| p[1].clone())
        };
        let record = field(b"r").unwrap_or_default();
        let sig = field(b"s").and_then(|s| String::from_utf8(s).ok());
        out.push(RawEntry { id, seq, record, sig });
    }
    Ok(out)
}
