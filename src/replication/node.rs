//! One engine in replicated mode: standby (follow the log), takeover, leader (renew the lease).

use std::collections::VecDeque;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::Ordering;

use std::time::{Duration, Instant};
use tokio_util::sync::CancellationToken;

use anyhow::{Result, bail};
use crossbeam_channel::Receiver;
use engine_core::command::Command;
use engine_core::persist::RecordReader;
use engine_core::processor::Submitter;
use tracing::{error, info, warn};

use super::journal::{AppendError, Entry, HashCheck, ReplicatedLog};
use super::lease::{backoff, hold_round};
use super::{EXIT_DIVERGED, ReplicationOptions, SEEN_EVERY, STANDBY_LOST_AFTER, Shared};
use crate::durability::DataDir;

/// Request ids a standby remembers from the log (the bridge's replay window holds as many).
const RECENT_MAX: usize = 1_000_000;
/// Entries read per round trip while following.
const READ_MAX: usize = 4_096;
/// How long a blocking read waits for the leader's next batch.
const READ_BLOCK: Duration = Duration::from_millis(100);
/// How often the leader trims the log.
const TRIM_EVERY: Duration = Duration::from_secs(10);
/// Request ids at most this old are remembered as applied (the bridge refuses entries older
/// than 30 s anyway; the rest is room for clocks).
const RECENT_AGE_MS: u64 = 60_000;

/// What a standby hands over when it takes over.
#[derive(Debug)]
pub struct Takeover {
    /// The last sequence of the log, applied.
    pub last_seq: u64,
    /// `(request id, ms)` of the most recent commands of the log: requests already applied,
    /// which the bridge must not apply again when the old leader's pending entries come back.
    pub recent: Vec<(u64, u64)>,
    /// When the lease was won.
    pub won_at: Instant,
}

/// An engine in replicated mode.
#[derive(Debug)]
pub struct Node {
    opts: ReplicationOptions,
    shared: Arc<Shared>,
    log: Box<dyn ReplicatedLog>,
    data_dir: PathBuf,
    hashes: Receiver<(u64, [u8; 32])>,
    recent: VecDeque<(u64, u64)>,
}

impl Node {
    /// A node for `opts`, reading snapshot hashes from `hashes` (the snapshot writer's reports).
    pub fn new(
        opts: ReplicationOptions,
        shared: Arc<Shared>,
        data_dir: PathBuf,
        hashes: Receiver<(u64, [u8; 32])>,
    ) -> Node {
        let log = opts.open_log(READ_BLOCK + Duration::from_secs(2));
        Node { opts, shared, log, data_dir, hashes, recent: VecDeque::new() }
    }

    /// Checks that the log continues the local state (`local_seq`) and registers this engine.
    pub fn check_start(&mut self, local_seq: u64) -> Result<()> {
        // A plain engine that crashed leaves its lease to expire: wait one lease period out.
        let deadline = Instant::now() + self.opts.lease + self.opts.lease / 2;
        loop {
            let lease = self.opts.lease;
            let holder = retry("reading engine-leader", || self.log.holder(lease))?;
            let Some(h) = holder.filter(|h| h.starts_with(super::single::SINGLE_PREFIX)) else {
                break;
            };
            if Instant::now() >= deadline {
                bail!(
                    "an engine that is not replicated leads on this Redis (engine-leader = {h}): \
                     it writes no engine-journal to follow, so this standby would take over with \
                     a state of its own. Stop it and start every engine with --standby"
                );
            }
            std::thread::sleep(self.opts.lease / 8);
        }
        let bounds = retry("reading engine-journal", || self.log.bounds())?;
        match bounds {
            Some((first, _)) if first > local_seq + 1 => bail!(
                "engine-journal starts at {first} but this data directory ends at {local_seq}: \
                 copy a snapshot at or after seq {} from the other engine's data directory \
                 (snapshots/) into this one, then start again",
                first - 1
            ),
            Some((_, last)) if last < local_seq => bail!(
                "this data directory ends at {local_seq}, past engine-journal's end ({last}): \
                 Redis lost acknowledged entries, or this directory belongs to another log"
            ),
            None if local_seq > 0 => warn!(
                local_seq,
                "engine-journal is empty: this engine's local history starts the replicated log \
                 (a new standby then needs a copy of one of its snapshots)"
            ),
            _ => {}
        }
        self.prime_recent(local_seq)?;
        let oldest = self.oldest_snapshot();
        retry("registering in engine-journal:nodes", || self.log.register(&self.opts.node, oldest))
    }

    /// Remembers the request ids of the log's last minute up to `local_seq` — what this engine
    /// recovered from its own journal rather than followed: if it takes over, a request among
    /// them still pending on `engine-stream` (a crash before its acknowledgement) must be
    /// refused, not applied again.
    fn prime_recent(&mut self, local_seq: u64) -> Result<()> {
        let oldest_ms = (crate::now_ns() / 1_000_000).saturating_sub(RECENT_AGE_MS);
        let mut back: Vec<(u64, u64)> = Vec::new();
        let mut at = local_seq;
        'pages: while at > 0 && back.len() < RECENT_MAX {
            let page = retry("reading engine-journal back", || self.log.read_back(at, READ_MAX))?;
            let Some(&(last, _)) = page.entries.last() else { break };
            for (_, bytes) in &page.entries {
                let Some(Ok((_, cmd))) = RecordReader::new(bytes).next() else { continue };
                if cmd.ts_ns / 1_000_000 < oldest_ms {
                    break 'pages;
                }
                if cmd.request_id.0 != 0 {
                    back.push((cmd.request_id.0, cmd.ts_ns / 1_000_000));
                }
            }
            at = last.saturating_sub(1);
        }
        self.recent.extend(back.into_iter().rev());
        Ok(())
    }

    fn oldest_snapshot(&self) -> u64 {
        DataDir::create(&self.data_dir)
            .and_then(|d| d.snapshot_files())
            .ok()
            .and_then(|s| s.first().map(|s| s.0))
            .unwrap_or(0)
    }

    /// Follows the log from `local_seq` until this engine holds the lease and has submitted the
    /// whole log (`Some`), or `stop` is cancelled (`None`).
    pub fn follow(
        &mut self,
        submitter: &mut Submitter,
        local_seq: u64,
        stop: &CancellationToken,
    ) -> Result<Option<Takeover>> {
        let mut applied = local_seq;
        let mut tried = Instant::now() - self.opts.lease;
        let mut backoff = backoff();
        let mut seen = Instant::now() - SEEN_EVERY;
        info!(node = %self.opts.node, from = applied + 1, "standby: following engine-journal");
        while !stop.is_cancelled() {
            self.compare_hashes(true);
            if seen.elapsed() >= SEEN_EVERY {
                seen = Instant::now();
                if let Err(e) = self.log.seen(&self.opts.node) {
                    warn!(error = %e, "standby: could not say it is alive");
                }
            }
            if tried.elapsed() >= READ_BLOCK {
                tried = Instant::now();
                match self.log.try_lead(&self.shared.token, self.opts.lease) {
                    Ok(true) => return self.finish(submitter, applied).map(Some),
                    Ok(false) => {}
                    Err(e) => warn!(error = %e, "standby: lease check failed"),
                }
            }
            match self.log.read_after(applied, READ_MAX, READ_BLOCK) {
                Ok(read) => {
                    backoff.reset();
                    applied = self.submit(submitter, applied, &read.entries)?;
                    if read.entries.is_empty() && !read.forged.is_empty() {
                        // Only forged entries past the log's end: the leader removes them at
                        // its next append. Poll instead of reading them again at once.
                        std::thread::sleep(READ_BLOCK);
                    }
                }
                Err(e) => {
                    warn!(error = %e, "standby: engine-journal unreachable; retrying");
                    std::thread::sleep(backoff.next());
                }
            }
        }
        Ok(None)
    }

    /// The lease is ours: read the log to its end and seal it there, so that an older
    /// leader's next append fails; what the log holds then is final.
    fn finish(&mut self, submitter: &mut Submitter, mut applied: u64) -> Result<Takeover> {
        let won_at = Instant::now();
        loop {
            let batch = retry("finishing engine-journal", || {
                self.log.read_after(applied, READ_MAX, Duration::ZERO)
            })?
            .entries;
            if !batch.is_empty() {
                applied = self.submit(submitter, applied, &batch)?;
                continue;
            }
            let token = self.shared.token.clone();
            let sealed =
                retry("sealing engine-journal", || match self.log.seal(&token, applied) {
                    Err(AppendError::Fenced(why)) => super::lease::deposed(&why),
                    other => other,
                })?;
            if sealed {
                break;
            } // else an older leader appended meanwhile: read on
        }
        info!(node = %self.opts.node, last_seq = applied, "standby: lease won, log finished; leading");
        let now_ms = crate::now_ns() / 1_000_000;
        let recent =
            self.recent.iter().copied().filter(|(_, ts)| now_ms.abs_diff(*ts) <= RECENT_AGE_MS);
        Ok(Takeover { last_seq: applied, recent: recent.collect(), won_at })
    }

    /// Decodes `batch` (which must continue at `applied + 1`) and hands it to the engine.
    fn submit(&mut self, submitter: &mut Submitter, applied: u64, batch: &[Entry]) -> Result<u64> {
        let mut cmds: Vec<Command> = Vec::with_capacity(batch.len());
        let mut expect = applied + 1;
        for (seq, bytes) in batch {
            let record = RecordReader::new(bytes).next();
            let Some(Ok((rseq, cmd))) = record else {
                bail!("engine-journal entry {seq} does not decode as a journal record");
            };
            if *seq != expect || rseq != expect {
                bail!("engine-journal: expected seq {expect}, found entry {seq} (record {rseq})");
            }
            if cmd.request_id.0 != 0 {
                if self.recent.len() == RECENT_MAX {
                    self.recent.pop_front();
                }
                self.recent.push_back((cmd.request_id.0, cmd.ts_ns / 1_000_000));
            }
            cmds.push(cmd);
            expect += 1;
        }
        if cmds.is_empty() {
            return Ok(applied);
        }
        // Before publishing: the stage must see them as the log's, not ours.
        self.shared.follow_upto.store(expect - 1, Ordering::Release);
        for chunk in cmds.chunks(1_024) {
            submitter.publish_batch(chunk);
        }
        Ok(expect - 1)
    }

    /// Compares the hashes of snapshots written since the last call with the board's; a standby
    /// that differs exits ([`EXIT_DIVERGED`]) — it must never take over.
    fn compare_hashes(&mut self, standby: bool) {
        while let Ok((seq, hash)) = self.hashes.try_recv() {
            let mine = engine_core::hash::hex(&hash);
            match self.log.compare_hash(seq, &mine) {
                Ok(HashCheck::Same | HashCheck::Forged(_)) => {}
                Ok(HashCheck::Differs(theirs)) if standby => {
                    error!(seq, %mine, %theirs, exit_code = EXIT_DIVERGED,
                        "DIVERGED: this standby's state differs from the leader's; exiting");
                    std::process::exit(EXIT_DIVERGED);
                }
                Ok(HashCheck::Differs(theirs)) => error!(seq, %mine, %theirs,
                    "a standby reported a different state hash at this sequence"),
                Err(e) => warn!(error = %e, seq, "could not record the state hash"),
            }
            let oldest = self.oldest_snapshot();
            if let Err(e) = self.log.register(&self.opts.node, oldest) {
                warn!(error = %e, "could not register the oldest snapshot");
            }
        }
    }

    /// Leads: renews the lease every quarter of it until `stop` is cancelled, then gives it up. Exits the
    /// process if the lease turns out to be someone else's. Takes it again when it vanished or
    /// holds a forged value; reports standbys that fell silent.
    pub fn lead(self, stop: CancellationToken) -> std::io::Result<std::thread::JoinHandle<()>> {
        self.shared.leading.store(true, Ordering::Release);
        // The renewals on a connection and a thread of their own: the board's work (hashes,
        // standbys, trimming) is several round trips, and on a loaded JetStream it once held a
        // renewal back for a whole lease, so that a standby took over from a live leader
        // (found by the takeover bench).
        let (token, lease) = (self.shared.token.clone(), self.opts.lease);
        let mut log = self.opts.open_log(lease);
        let board_stop = stop.clone();
        let board = std::thread::Builder::new().name("hundredx-board".into()).spawn(move || {
            self.keep_board(&board_stop);
        })?;
        std::thread::Builder::new().name("hundredx-lease".into()).spawn(move || {
            while !stop.is_cancelled() {
                hold_round(log.as_mut(), &token, lease);
                std::thread::sleep(lease / 4);
            }
            let _ = board.join();
            if let Err(e) = log.release(&token) {
                warn!(error = %e, "leader: could not release the lease (it expires by itself)");
            }
        })
    }

    /// The leader's board, every quarter lease until `stop`: state hashes compared, standbys
    /// watched, the log trimmed every [`TRIM_EVERY`].
    fn keep_board(mut self, stop: &CancellationToken) {
        let mut trimmed = Instant::now();
        let mut lost: Vec<String> = Vec::new();
        while !stop.is_cancelled() {
            self.compare_hashes(false);
            self.watch_standbys(&mut lost);
            if self.opts.trim && trimmed.elapsed() >= TRIM_EVERY {
                trimmed = Instant::now();
                match self.log.trim() {
                    Ok(Some(below)) => info!(below, "engine-journal trimmed"),
                    Ok(None) => {}
                    Err(e) => warn!(error = %e, "engine-journal trim failed"),
                }
            }
            std::thread::sleep(self.opts.lease / 4);
        }
    }

    /// Says the leader is alive, and raises an alert for every other engine that fell silent
    /// for [`STANDBY_LOST_AFTER`] (once, until it is back): without a standby a failure of
    /// this engine stops the service. `lost` holds the engines reported.
    fn watch_standbys(&mut self, lost: &mut Vec<String>) {
        if let Err(e) = self.log.seen(&self.opts.node) {
            warn!(error = %e, "leader: could not say it is alive");
        }
        let seen = match self.log.last_seen() {
            Ok(seen) => seen,
            Err(e) => return warn!(error = %e, "leader: could not read engine-journal:seen"),
        };
        let lost_after = u64::try_from(STANDBY_LOST_AFTER.as_millis()).unwrap_or(u64::MAX);
        for (node, age_ms) in seen.into_iter().filter(|(n, _)| *n != self.opts.node) {
            let was_lost = lost.contains(&node);
            if age_ms >= lost_after && !was_lost {
                error!(standby = %node, silent_ms = age_ms, "ALERT: standby lost: it has not \
                    followed engine-journal for a while; a failure of this leader would now \
                    stop the service. Restart it (or HDEL engine-journal:seen {node} if it \
                    was retired)");
                lost.push(node);
            } else if age_ms < lost_after && was_lost {
                info!(standby = %node, "standby back: following engine-journal again");
                lost.retain(|n| *n != node);
            }
        }
    }
}

/// Calls `f` until it succeeds (Redis may be failing over), for at most a minute.
fn retry<T, E: std::fmt::Display>(what: &str, mut f: impl FnMut() -> Result<T, E>) -> Result<T> {
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut backoff = backoff();
    loop {
        match f() {
            Ok(v) => return Ok(v),
            Err(e) if Instant::now() < deadline => {
                warn!(error = %e, "{what}: retrying");
                std::thread::sleep(backoff.next());
            }
            Err(e) => bail!("{what}: {e}"),
        }
    }
}
