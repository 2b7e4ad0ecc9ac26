//! The leader's input stage: each batch goes to the replicated journal (Redis + a replica, or
//! a JetStream majority) before the local journal and before the engine sees it.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use engine_core::command::Command;
use engine_core::persist::{MAX_RECORD_BYTES, encode_record};
use engine_core::processor::InputStage;
use tracing::{error, warn};

use super::journal::{AppendError, ReplicatedLog};
use super::lease::{backoff, deposed, hold_round};
use super::{ReplicationOptions, Shared};
use crate::durability::Journal;

/// Commands in one replicated batch at most (a larger ring batch is split).
const BATCH_MAX: usize = 4_096;

/// The replicated journal: [`ReplicatedLog::append`] (Redis + `WAIT`, or a JetStream
/// majority), then the local [`Journal`].
///
/// Commands at or below [`Shared::follow_upto`] came from `engine-journal` (this engine is, or
/// was until a moment ago, the standby): they go to the local journal only. Everything after is
/// this engine's own and is appended to Redis first; until a replica confirms it the stage
/// waits (the engine applies nothing meanwhile), and if the append is refused because another
/// engine leads, the process exits ([`super::EXIT_DEPOSED`]) without applying or answering the batch.
/// A forged lease value or forged entries in the way are replaced or removed, not obeyed.
pub struct ReplicatedJournal {
    local: Journal,
    log: Box<dyn ReplicatedLog>,
    shared: Arc<Shared>,
    opts: ReplicationOptions,
    pending: Vec<(u64, Command)>,
    bytes: Vec<u8>,
    spans: Vec<(u64, usize, usize)>,
    record: [u8; MAX_RECORD_BYTES],
}

impl std::fmt::Debug for ReplicatedJournal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ReplicatedJournal").field("local", &self.local).finish_non_exhaustive()
    }
}

impl ReplicatedJournal {
    /// Wraps `local`.
    pub fn new(local: Journal, shared: Arc<Shared>, opts: ReplicationOptions) -> Self {
        let timeout = opts.wait + Duration::from_secs(2);
        let log = opts.open_log(timeout);
        ReplicatedJournal {
            local,
            log,
            shared,
            opts,
            pending: Vec::with_capacity(BATCH_MAX),
            bytes: Vec::with_capacity(BATCH_MAX * 128),
            spans: Vec::with_capacity(BATCH_MAX),
            record: [0; MAX_RECORD_BYTES],
        }
    }

    fn flush(&mut self) {
        if self.pending.is_empty() {
            return;
        }
        self.bytes.clear();
        self.spans.clear();
        for (seq, cmd) in &self.pending {
            let n = encode_record(*seq, cmd, &mut self.record);
            let start = self.bytes.len();
            self.bytes.extend_from_slice(&self.record[..n]);
            self.spans.push((*seq, start, start + n));
        }
        self.replicate();
        let last = self.spans.len() - 1;
        for (i, &(seq, a, b)) in self.spans.iter().enumerate() {
            self.local.on_encoded(seq, &self.bytes[a..b], i == last);
        }
        self.pending.clear();
    }

    /// Appends the encoded batch until a replica holds it; exits the process if deposed.
    fn replicate(&mut self) {
        let records: Vec<(u64, &[u8])> =
            self.spans.iter().map(|&(seq, a, b)| (seq, &self.bytes[a..b])).collect();
        let mut backoff = backoff();
        loop {
            let r =
                self.log.append(&self.shared.token, &records, self.opts.replicas, self.opts.wait);
            match r {
                Ok(()) => return,
                Err(AppendError::Fenced(why)) => deposed(&why),
                // Expired while we waited, vanished, or forged: take it again unless another
                // engine holds it (then this one is deposed, inside hold_round).
                Err(AppendError::Lease) => {
                    if !hold_round(self.log.as_mut(), &self.shared.token, self.opts.lease) {
                        std::thread::sleep(backoff.next());
                    }
                }
                Err(AppendError::Gap(why)) => {
                    // Redis lost entries it had confirmed: nothing safe to do but stop loudly.
                    error!(%why, "engine-journal lost acknowledged entries; stopping");
                    std::process::exit(crate::EXIT_FAIL_STOP);
                }
                Err(e) => {
                    warn!(error = %e, first = records[0].0, "replication: batch not confirmed yet; retrying");
                    std::thread::sleep(backoff.next());
                }
            }
        }
    }
}

impl InputStage for ReplicatedJournal {
    fn on_command(&mut self, seq: u64, cmd: &Command, end_of_batch: bool) {
        self.shared.journaled_seq.store(seq, Ordering::Relaxed);
        if seq <= self.shared.follow_upto.load(Ordering::Acquire) {
            // From engine-journal already: local only (after anything of ours, in order).
            self.flush();
            self.local.on_command(seq, cmd, end_of_batch);
            return;
        }
        self.pending.push((seq, *cmd));
        if end_of_batch || self.pending.len() == BATCH_MAX {
            self.flush();
        }
    }

    fn end_batch(&mut self) {
        self.flush();
        self.local.end_batch();
    }
}
