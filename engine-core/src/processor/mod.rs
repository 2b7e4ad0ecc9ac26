//! The processor: the [`Engine`] on its own thread between two `disruptor` rings.
//!
//! ```text
//!  Submitter(s) ──publish──► in-ring (multi-producer) ──► engine thread: Engine::apply
//!                                                              │ publish
//!  Ticket::wait ◄── waiter map ◄── reply thread ◄── out-ring ◄─┘
//!  subscribe()  ◄── bounded channels ◄─┘
//! ```
//!
//! - The in-ring is multi-producer: every [`Submitter`] (cloned from the handle) owns a producer.
//! - The engine thread is the only consumer of the in-ring and the only producer of the out-ring.
//!   It may be pinned to a core ([`crate::config::RuntimeConfig::pin_core`]) and busy-spin ([`crate::config::WaitMode::BusySpin`]),
//!   or use the default adaptive wait: spin, yield, then park until a producer wakes it, so an
//!   idle engine uses no CPU (measured: ~10 wake-ups a second per thread, from the park timeout).
//! - The reply thread consumes the out-ring: it hands each reply (with the items that preceded
//!   it) to the [`Ticket`] waiting for it, and copies unsolicited events to subscribers. It never
//!   blocks: a full subscriber channel loses the event and counts it.
//! - Shutdown: when the handle and every submitter are dropped, the in-ring drains and the engine
//!   thread stops; the out-ring then drains and the reply thread stops. [`EngineHandle::shutdown`]
//!   does that and returns the final [`Engine`] state.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crossbeam_channel::Receiver;
use disruptor::{
    MultiProducer, ProcessorSettings, Sequence, SingleConsumerBarrier, SingleProducer,
};

use crate::command::{Command, CommandKind, RequestId};
use crate::config::{ConfigError, EngineConfig};
use crate::event::{Item, Output, Reason, ReplyData};
use crate::state::{Counters, Engine};

// The pipeline, in the order a command travels (wired in `EngineHandle::start_with` below):
// submit (producers -> in-ring) -> stages (input stage: the journal) -> threads (engine thread:
// Engine::apply -> out-ring) -> replies (reply thread: waiters, subscribers); `wait` is how each
// consumer waits for the ring before it.
mod replies;
mod stages;
mod submit;
mod threads;
mod wait;

pub use replies::Ticket;
use replies::*;
pub use stages::{InputStage, SnapshotPolicy, SnapshotRequest, StartOptions};
pub use submit::Submitter;
use threads::*;
use wait::*;

/// The one reply to a submitted command.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Response {
    /// The request it answers.
    pub request_id: RequestId,
    /// Accepted with data, or rejected with a reason code.
    pub result: Result<ReplyData, Reason>,
    /// For list queries: the items, in order.
    pub items: Vec<Item>,
    /// The engine's sequence when it answered ([`Output::Reply`]'s): for a state-changing
    /// command, its own (0 from a peer that does not send it).
    pub seq: u64,
}

/// Why a command could not be submitted or its reply not received.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum EngineError {
    /// The in-ring has no free slot (only from the `try_` methods).
    #[error("the engine's input ring is full")]
    RingFull,
    /// `max_in_flight` requests already await replies.
    #[error("too many requests in flight")]
    TooManyInFlight,
    /// A request with this id is already awaiting its reply (or the id is reserved).
    #[error("a request with this id is already in flight")]
    DuplicateInFlight,
    /// No reply within the timeout; the waiter was removed and a late reply is discarded.
    #[error("timed out waiting for the engine's reply")]
    Timeout,
    /// The engine stopped before replying.
    #[error("the engine has shut down")]
    Shutdown,
}

/// What a subscriber receives.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Subscription {
    /// Only unsolicited events ([`Output::Event`]).
    Events,
    /// Every output, in out-ring order (replies, items and events). For audits and tests.
    All,
    /// Only state changes ([`Output::Change`]), and **without loss**: when the channel is full
    /// the reply thread waits, so a slow reader holds back the engine (through the out-ring)
    /// instead of missing a change. For read models that must hold every change (the history
    /// store); a reader that stops must drop its receiver.
    Changes,
    /// Only state changes, dropped (and counted) when the channel is full, like events: for
    /// live views (push to browsers) that must never hold back the engine and re-read state
    /// after a gap.
    ChangesBestEffort,
}

type InProducer = MultiProducer<Command, SingleConsumerBarrier>;
type OutProducer = SingleProducer<Output, SingleConsumerBarrier>;

/// The running engine: submit commands, subscribe to events, shut down.
#[derive(Debug)]
pub struct EngineHandle {
    submitter: Submitter,
    final_state: Receiver<(Engine, u64)>,
    markets: Vec<crate::config::MarketConfig>,
}

impl EngineHandle {
    /// Starts a fresh engine with `config` on its own thread.
    pub fn start(config: EngineConfig) -> Result<EngineHandle, ConfigError> {
        Self::start_with(Engine::new(config)?, StartOptions::default())
    }

    /// Starts an engine from existing state (e.g. recovered), with a journal stage and snapshots.
    /// Request ids continue above the highest one the engine has applied.
    // Longer than the ~70-line rule on purpose: this is the pipeline's wiring, kept in one place
    // and in the order a command travels (out-ring and reply thread, then the in-ring with the
    // input stage and the engine thread), as exchange-core wires its pipeline.
    pub fn start_with(engine: Engine, options: StartOptions) -> Result<EngineHandle, ConfigError> {
        engine.config().validate()?;
        let markets = engine.config().markets.clone();
        let cfg = options.runtime;
        cfg.validate()?;
        if let Some(core) = cfg.pin_core {
            let available = core_affinity::get_core_ids().unwrap_or_default();
            if !available.iter().any(|c| c.id == core) {
                return Err(ConfigError::NoSuchCore(core));
            }
        }
        let wait = Wait(cfg.wait);
        let shared = Arc::new(Shared {
            next_request_id: AtomicU64::new(engine.max_request_id() + 1),
            waiters: crate::waiters::Waiters::new(cfg.max_in_flight),
            // Registered before the first command, so they see every output of this run.
            subscribers: Mutex::new(
                options.subscribers.into_iter().map(|(what, tx)| Subscriber { what, tx }).collect(),
            ),
            events_dropped: AtomicU64::new(0),
            snapshots_skipped: AtomicU64::new(0),
            counters: SharedCounters::default(),
            input_parker: Arc::new(Parker::new(cfg.wait)),
        });
        // With an input stage on its own thread the engine thread has its own parker, woken by
        // the stage's thread.
        let stage_thread = options.input_stage.is_some() && !cfg.inline_input_stage;
        let engine_parker = if stage_thread {
            Arc::new(Parker::new(cfg.wait))
        } else {
            Arc::clone(&shared.input_parker)
        };
        let reply_parker = Arc::new(Parker::new(cfg.wait));

        // The out-ring is built first, on this thread: `pin_at_core` checks the core against the
        // calling thread's affinity, so nothing here may run on an already pinned thread.
        let router_shared = Arc::clone(&shared);
        let out: OutProducer =
            disruptor::build_single_producer(cfg.out_ring_size, Output::default, wait)
                .thread_name("hundredx-replies")
                .handle_events_and_state_with(
                    |s: &mut Arc<Shared>, o: &Output, _: Sequence, _: bool| route(s, o),
                    {
                        let parker = Arc::clone(&reply_parker);
                        move || {
                            parker.register_current_thread();
                            router_shared
                        }
                    },
                )
                .build();

        let (state_tx, final_state) = crossbeam_channel::bounded(1);
        // The journal continues where the engine's state ends.
        let first_seq = engine.seq() + 1;
        let input_parker = Arc::clone(&shared.input_parker);
        let engine_shared = Arc::clone(&shared);
        let (snapshot_policy, snapshot_tx) = match options.snapshots {
            Some((p, tx)) => (p, Some(tx)),
            None => (SnapshotPolicy::default(), None),
        };
        let engine_handler =
            |t: &mut EngineThread, cmd: &Command, _: Sequence, end: bool| t.step(cmd, end);
        let stage_wakes = Arc::clone(&engine_parker);
        let engine_init = move || {
            engine_parker.register_current_thread();
            EngineThread {
                engine: Some(engine),
                out: OutSink(out),
                shared: engine_shared,
                reply_parker,
                state_tx,
                last_seq: first_seq - 1,
                snapshot_policy,
                snapshot_tx,
                since_snapshot: 0,
                last_snapshot_ns: None,
            }
        };
        let builder = disruptor::build_multi_producer(cfg.in_ring_size, Command::default, wait);
        let producer = match options.input_stage {
            None => builder
                .thread_name("hundredx-engine")
                .pin_at_core_if(cfg.pin_core)
                .handle_events_and_state_with(engine_handler, engine_init)
                .build(),
            Some(stage) if cfg.inline_input_stage => builder
                .thread_name("hundredx-engine")
                .pin_at_core_if(cfg.pin_core)
                .handle_events_and_state_with(
                    |t: &mut InlineThread, cmd: &Command, _: Sequence, end: bool| t.step(cmd, end),
                    move || InlineThread {
                        feed: StageFeed { stage, next_seq: first_seq },
                        held: Vec::with_capacity(INLINE_CHUNK),
                        engine: engine_init(),
                    },
                )
                .build(),
            Some(stage) => builder
                .thread_name("hundredx-journal")
                .handle_events_and_state_with(
                    |s: &mut StageThread, cmd: &Command, _: Sequence, end: bool| s.step(cmd, end),
                    move || {
                        input_parker.register_current_thread();
                        DOWNSTREAM.with_borrow_mut(|d| *d = Some(Arc::clone(&stage_wakes)));
                        StageThread {
                            feed: StageFeed { stage, next_seq: first_seq },
                            engine_parker: stage_wakes,
                            batch_start: true,
                        }
                    },
                )
                .and_then()
                .thread_name("hundredx-engine")
                .pin_at_core_if(cfg.pin_core)
                .handle_events_and_state_with(engine_handler, engine_init)
                .build(),
        };
        Ok(EngineHandle { submitter: Submitter { producer, shared }, final_state, markets })
    }

    /// Another submitter for another thread.
    pub fn submitter(&self) -> Submitter {
        self.submitter.clone()
    }

    /// See [`Submitter::submit`].
    pub fn submit(&mut self, ts_ns: u64, kind: CommandKind) -> Result<Ticket, EngineError> {
        self.submitter.submit(ts_ns, kind)
    }

    /// See [`Submitter::try_submit`].
    pub fn try_submit(&mut self, ts_ns: u64, kind: CommandKind) -> Result<Ticket, EngineError> {
        self.submitter.try_submit(ts_ns, kind)
    }

    /// See [`Submitter::send`].
    pub fn send(&mut self, ts_ns: u64, kind: CommandKind) {
        self.submitter.send(ts_ns, kind)
    }

    /// See [`Submitter::try_send`].
    pub fn try_send(&mut self, ts_ns: u64, kind: CommandKind) -> Result<(), EngineError> {
        self.submitter.try_send(ts_ns, kind)
    }

    /// See [`Submitter::call`].
    pub fn call(
        &mut self,
        ts_ns: u64,
        kind: CommandKind,
        timeout: Duration,
    ) -> Result<Response, EngineError> {
        self.submitter.call(ts_ns, kind, timeout)
    }

    /// See [`Submitter::subscribe`].
    pub fn subscribe(&self, what: Subscription, capacity: usize) -> Receiver<Output> {
        self.submitter.subscribe(what, capacity)
    }

    /// The engine's counters as of its last completed batch.
    pub fn counters(&self) -> Counters {
        self.submitter.shared.counters.load()
    }

    /// Outputs lost because a subscriber's channel was full.
    pub fn events_dropped(&self) -> u64 {
        self.submitter.shared.events_dropped.load(Ordering::Relaxed)
    }

    /// Replies that arrived after their ticket timed out.
    pub fn late_replies(&self) -> u64 {
        self.submitter.shared.waiters.late()
    }

    /// The markets the engine runs with, in market-id order.
    pub fn config_markets(&self) -> Vec<crate::config::MarketConfig> {
        self.markets.clone()
    }

    /// Snapshot copies dropped because the writer was still busy.
    pub fn snapshots_skipped(&self) -> u64 {
        self.submitter.shared.snapshots_skipped.load(Ordering::Relaxed)
    }

    /// Stops the engine once every command already published is applied, and returns its final
    /// state. Blocks until every other [`Submitter`] is dropped too.
    pub fn shutdown(self) -> Result<Engine, EngineError> {
        self.shutdown_at().map(|(engine, _)| engine)
    }

    /// As [`EngineHandle::shutdown`], also returning the journal sequence of the last command
    /// applied (the starting engine's `seq()` if none was).
    pub fn shutdown_at(self) -> Result<(Engine, u64), EngineError> {
        let EngineHandle { submitter, final_state, .. } = self;
        drop(submitter);
        final_state.recv().map_err(|_| EngineError::Shutdown)
    }
}
