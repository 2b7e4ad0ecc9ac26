//! The engine thread (in-ring consumer, out-ring producer) and the input-stage thread.

use std::sync::Arc;
use std::sync::atomic::Ordering;

use crossbeam_channel::Sender;
use disruptor::{ProcessorSettings, Producer};

use crate::command::{Command, CommandKind};
use crate::event::{Output, Sink};
use crate::state::Engine;

use super::replies::Shared;
use super::wait::{Parker, Wait};
use super::{InputStage, OutProducer, SnapshotPolicy, SnapshotRequest};

/// The engine thread's state: the engine and its out-ring producer. On drop (the in-ring shut
/// down) it hands the engine back to [`EngineHandle::shutdown`], then drops the out-ring producer,
/// which drains and stops the reply thread.
pub(super) struct EngineThread {
    pub(super) engine: Option<Engine>,
    pub(super) out: OutSink,
    pub(super) shared: Arc<Shared>,
    pub(super) reply_parker: Arc<Parker>,
    pub(super) state_tx: Sender<(Engine, u64)>,
    /// Journal sequence of the last state-changing command applied.
    pub(super) last_seq: u64,
    pub(super) snapshot_policy: SnapshotPolicy,
    pub(super) snapshot_tx: Option<Sender<SnapshotRequest>>,
    pub(super) since_snapshot: u64,
    pub(super) last_snapshot_ns: Option<u64>,
}

impl EngineThread {
    #[inline]
    pub(super) fn step(&mut self, cmd: &Command, end_of_batch: bool) {
        let engine = self.engine.as_mut().expect("engine present until drop");
        engine.apply(cmd, &mut self.out);
        // The journal sequence counts state-changing commands only (see `InputStage`).
        if !cmd.kind.is_read_only() {
            self.last_seq += 1;
        }
        // Paired with the input stage's numbering: the engine counts the same commands.
        assert_eq!(engine.seq(), self.last_seq, "engine and journal sequence diverged");
        if end_of_batch {
            self.shared.counters.store(&engine.counters());
            self.reply_parker.wake();
        }
        if self.snapshot_tx.is_some() {
            self.since_snapshot += u64::from(!cmd.kind.is_read_only());
            if self.snapshot_due(cmd) {
                self.take_snapshot();
            }
        }
    }

    pub(super) fn snapshot_due(&mut self, cmd: &Command) -> bool {
        let started = *self.last_snapshot_ns.get_or_insert(cmd.ts_ns);
        matches!(cmd.kind, CommandKind::AdminSnapshot)
            || self.snapshot_policy.every_commands.is_some_and(|n| {
                if self.snapshot_policy.aligned {
                    !cmd.kind.is_read_only() && self.last_seq.is_multiple_of(n)
                } else {
                    self.since_snapshot >= n
                }
            })
            || self.snapshot_policy.every_ns.is_some_and(|n| cmd.ts_ns.saturating_sub(started) >= n)
    }

    /// Copies the state (the only time the engine thread allocates on purpose) and hands it to
    /// the writer; serialization and I/O happen there.
    #[cold]
    pub(super) fn take_snapshot(&mut self) {
        let (Some(engine), Some(tx)) = (&self.engine, &self.snapshot_tx) else { return };
        self.since_snapshot = 0;
        self.last_snapshot_ns = None;
        let request = SnapshotRequest { seq: self.last_seq, engine: engine.clone() };
        if tx.try_send(request).is_err() {
            self.shared.snapshots_skipped.fetch_add(1, Ordering::Relaxed);
        }
    }
}

impl Drop for EngineThread {
    fn drop(&mut self) {
        if std::thread::panicking() {
            return; // state may be half-applied: do not hand it out
        }
        if let Some(engine) = self.engine.take() {
            let _ = self.state_tx.send((engine, self.last_seq));
        }
    }
}

/// The input stage with the journal sequence of the next state-changing command: what both
/// [`StageThread`] and [`InlineThread`] show each command to.
pub(super) struct StageFeed {
    pub(super) stage: Box<dyn InputStage>,
    pub(super) next_seq: u64,
}

impl StageFeed {
    /// Shows `cmd` to the stage: a state-changing command with its journal sequence, a
    /// read-only one only as the end of a batch.
    #[inline]
    fn show(&mut self, cmd: &Command, end_of_batch: bool) {
        if cmd.kind.is_read_only() {
            if end_of_batch {
                self.stage.end_batch();
            }
        } else {
            self.stage.on_command(self.next_seq, cmd, end_of_batch);
            self.next_seq += 1;
        }
    }
}

/// The input stage's thread state.
pub(super) struct StageThread {
    pub(super) feed: StageFeed,
    pub(super) engine_parker: Arc<Parker>,
    pub(super) batch_start: bool,
}

impl StageThread {
    #[inline]
    pub(super) fn step(&mut self, cmd: &Command, end_of_batch: bool) {
        // The engine's barrier is this stage's cursor, which the ring stores only after a whole
        // batch. So the engine is woken once that store has happened: at the start of the next
        // batch here, or (when idle) on this thread's first wait, see `Wait::wait_for`.
        if self.batch_start {
            self.engine_parker.wake();
        }
        self.batch_start = end_of_batch;
        self.feed.show(cmd, end_of_batch);
    }
}

/// Commands the inline stage holds at most before ending its batch early (so the copies are
/// bounded: 1024 × `size_of::<Command>()` <= 256 KiB, reserved once).
pub(super) const INLINE_CHUNK: usize = 1_024;

/// The input stage and the engine on one thread ([`crate::config::RuntimeConfig::inline_input_stage`]).
/// Each command is shown to the stage and copied aside; when the ring's batch ends (or
/// [`INLINE_CHUNK`] commands are held) the stage's batch is ended — made durable, by the
/// stage's contract — and only then does the engine apply the held commands: no reply leaves
/// before its command is durable, as with the stage on its own thread.
pub(super) struct InlineThread {
    pub(super) feed: StageFeed,
    pub(super) held: Vec<Command>,
    pub(super) engine: EngineThread,
}

impl InlineThread {
    #[inline]
    pub(super) fn step(&mut self, cmd: &Command, end_of_batch: bool) {
        let chunk_end = end_of_batch || self.held.len() + 1 == INLINE_CHUNK;
        self.feed.show(cmd, chunk_end);
        self.held.push(*cmd);
        if chunk_end {
            let n = self.held.len();
            for (i, held) in self.held.iter().enumerate() {
                self.engine.step(held, i + 1 == n);
            }
            self.held.clear();
        }
        // Paired: the engine has applied exactly what the stage has seen.
        assert!(
            !chunk_end || self.engine.last_seq + 1 == self.feed.next_seq,
            "stage and engine diverged"
        );
    }
}

/// Pins the next processor only when a core is configured.
pub(super) trait PinIf: Sized {
    fn pin_at_core_if(self, core: Option<usize>) -> Self;
}

impl<T: ProcessorSettings<Command, Wait>> PinIf for T {
    fn pin_at_core_if(self, core: Option<usize>) -> Self {
        match core {
            Some(c) => self.pin_at_core(c),
            None => self,
        }
    }
}

pub(super) struct OutSink(pub(super) OutProducer);

impl Sink for OutSink {
    #[inline]
    fn emit(&mut self, output: Output) {
        self.0.publish(|slot| *slot = output);
    }
}
