//! What runs beside the engine: the input stage (the journaller), snapshot requests, and the
//! start options.

use crossbeam_channel::Sender;

use crate::command::Command;
use crate::state::Engine;

/// A stage that sees every state-changing command before the engine does, in ring order: the
/// journaller. Read-only commands (queries) are not shown to it — like exchange-core, only
/// mutations are journaled: they cannot change the state, so replay needs none of them, and a
/// batch of reads waits for no fsync.
///
/// The engine thread only sees a command after the stage has returned from the call that ended
/// its batch (`on_command` with `end_of_batch == true`, or `end_batch`), so a stage that makes
/// each batch durable there guarantees that no reply leaves the engine before its command is
/// durable.
pub trait InputStage: Send + 'static {
    /// A state-changing command; `seq` is its journal sequence number, continuing from the
    /// starting engine's [`crate::state::Engine::seq`]
    /// for the first, then one more for each state-changing command (dense: queries take none).
    fn on_command(&mut self, seq: u64, cmd: &Command, end_of_batch: bool);

    /// The batch ended on a read-only command (so no `on_command` carried `end_of_batch`).
    fn end_batch(&mut self);
}

/// When the engine thread hands a copy of its state to the snapshot writer.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SnapshotPolicy {
    /// After this many commands since the last snapshot.
    pub every_commands: Option<u64>,
    /// When this much command time (`Command::ts_ns`) has passed since the last snapshot.
    pub every_ns: Option<u64>,
    /// Count `every_commands` from sequence 0 instead of from the last snapshot: snapshots fall
    /// on multiples of it whatever the engine's start point, so two engines applying the same
    /// journal (a leader and its standby) snapshot at the same sequences and can compare
    /// their state hashes there.
    pub aligned: bool,
}

/// A copy of the state at journal sequence `seq` (the last command it contains), for the
/// snapshot writer to serialize off the engine thread.
#[derive(Debug)]
pub struct SnapshotRequest {
    /// Journal sequence of the last command applied to `engine`.
    pub seq: u64,
    /// The copy.
    pub engine: Engine,
}

/// Options of [`super::EngineHandle::start_with`].
#[derive(Default)]
pub struct StartOptions {
    /// Runs before the engine on its own thread (the journaller).
    pub input_stage: Option<Box<dyn InputStage>>,
    /// Periodic and on-demand (`AdminSnapshot`) snapshots go to this channel. A copy is dropped
    /// (and counted) if the writer is still busy with the previous one.
    pub snapshots: Option<(SnapshotPolicy, Sender<SnapshotRequest>)>,
    /// Rings, wait strategy, pinning.
    pub runtime: crate::config::RuntimeConfig,
    /// Subscribers present from the first command on (see [`super::Subscription`]): a read model
    /// that must miss nothing subscribes here, not after the start.
    pub subscribers: Vec<(super::Subscription, Sender<crate::event::Output>)>,
}

impl std::fmt::Debug for StartOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StartOptions")
            .field("input_stage", &self.input_stage.is_some())
            .field("snapshots", &self.snapshots.as_ref().map(|s| s.0))
            .field("runtime", &self.runtime)
            .field("subscribers", &self.subscribers.len())
            .finish()
    }
}
