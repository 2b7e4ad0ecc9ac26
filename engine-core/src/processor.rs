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
//!   It may be pinned to a core ([`EngineConfig::pin_core`]) and busy-spin ([`WaitMode::BusySpin`]),
//!   or use the default adaptive wait: spin, yield, then park until a producer wakes it, so an
//!   idle engine uses no CPU (measured: ~10 wake-ups a second per thread, from the park timeout).
//! - The reply thread consumes the out-ring: it hands each reply (with the items that preceded
//!   it) to the [`Ticket`] waiting for it, and copies unsolicited events to subscribers. It never
//!   blocks: a full subscriber channel loses the event and counts it.
//! - Shutdown: when the handle and every submitter are dropped, the in-ring drains and the engine
//!   thread stops; the out-ring then drains and the reply thread stops. [`EngineHandle::shutdown`]
//!   does that and returns the final [`Engine`] state.

use std::cell::{Cell, RefCell};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering, fence};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock};
use std::thread::Thread;
use std::time::Duration;

use crossbeam_channel::{Receiver, Sender, TrySendError};
use disruptor::{
    MultiProducer, ProcessorSettings, Producer, Sequence, SingleConsumerBarrier, SingleProducer,
};
use rustc_hash::FxHashMap;

use crate::command::{Command, CommandKind, RequestId};
use crate::config::{ConfigError, EngineConfig, WaitMode};
use crate::event::{Item, Output, Reason, ReplyData, Sink};
use crate::state::{Counters, Engine};

/// The one reply to a submitted command.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Response {
    /// The request it answers.
    pub request_id: RequestId,
    /// Accepted with data, or rejected with a reason code.
    pub result: Result<ReplyData, Reason>,
    /// For list queries: the items, in order.
    pub items: Vec<Item>,
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
}

type InProducer = MultiProducer<Command, SingleConsumerBarrier>;
type OutProducer = SingleProducer<Output, SingleConsumerBarrier>;

/// Where a reply goes.
enum ReplyTo {
    /// A [`Ticket`]'s channel.
    Ticket(Sender<Response>),
    /// A callback, run on the reply thread (see [`Submitter::submit_with`]).
    Callback(Box<dyn FnOnce(Response) + Send>),
}

struct Waiter {
    to: ReplyTo,
    items: Vec<Item>,
}

struct Subscriber {
    what: Subscription,
    tx: Sender<Output>,
}

/// Counter snapshot published by the engine thread at the end of each batch.
#[derive(Default)]
struct SharedCounters {
    values: [AtomicU64; Counters::LEN],
}

impl SharedCounters {
    fn store(&self, c: &Counters) {
        for (slot, x) in self.values.iter().zip(c.to_array()) {
            slot.store(x, Ordering::Relaxed);
        }
    }

    fn load(&self) -> Counters {
        Counters::from_array(std::array::from_fn(|i| self.values[i].load(Ordering::Relaxed)))
    }
}

struct Shared {
    next_request_id: AtomicU64,
    max_in_flight: usize,
    waiters: Mutex<FxHashMap<RequestId, Waiter>>,
    subscribers: Mutex<Vec<Subscriber>>,
    events_dropped: AtomicU64,
    late_replies: AtomicU64,
    snapshots_skipped: AtomicU64,
    counters: SharedCounters,
    /// Wakes the in-ring's first consumer (journal or engine thread) when it is parked.
    input_parker: Arc<Parker>,
}

impl Shared {
    fn waiters(&self) -> MutexGuard<'_, FxHashMap<RequestId, Waiter>> {
        // A panic while holding the lock cannot leave the map inconsistent (single inserts and
        // removes), so a poisoned lock is still usable.
        self.waiters.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn subscribers(&self) -> MutexGuard<'_, Vec<Subscriber>> {
        self.subscribers.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// A pending reply.
#[must_use = "a ticket is the only way to receive the reply"]
#[derive(Debug)]
pub struct Ticket {
    request_id: RequestId,
    rx: Receiver<Response>,
    shared: Arc<Shared>,
}

impl std::fmt::Debug for Shared {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Shared").finish_non_exhaustive()
    }
}

impl Ticket {
    /// The request id assigned to the command.
    pub fn request_id(&self) -> RequestId {
        self.request_id
    }

    /// Blocks until the reply arrives.
    pub fn wait(self) -> Result<Response, EngineError> {
        self.rx.recv().map_err(|_| EngineError::Shutdown)
    }

    /// Blocks until the reply arrives or `timeout` passes; on timeout the waiter is removed.
    pub fn wait_timeout(self, timeout: Duration) -> Result<Response, EngineError> {
        match self.rx.recv_timeout(timeout) {
            Ok(r) => Ok(r),
            Err(crossbeam_channel::RecvTimeoutError::Disconnected) => Err(EngineError::Shutdown),
            Err(crossbeam_channel::RecvTimeoutError::Timeout) => {
                self.shared.waiters().remove(&self.request_id);
                // The reply may have landed between the timeout and the removal.
                self.rx.try_recv().map_err(|_| EngineError::Timeout)
            }
        }
    }

    /// The reply if it has arrived.
    pub fn try_get(&self) -> Option<Response> {
        self.rx.try_recv().ok()
    }
}

/// A cloneable, `Send` way to put commands into the in-ring from any thread.
pub struct Submitter {
    producer: InProducer,
    shared: Arc<Shared>,
}

impl std::fmt::Debug for Submitter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Submitter").finish_non_exhaustive()
    }
}

impl Clone for Submitter {
    fn clone(&self) -> Self {
        Submitter { producer: self.producer.clone(), shared: Arc::clone(&self.shared) }
    }
}

impl Submitter {
    fn register(&self, to: ReplyTo) -> Result<RequestId, EngineError> {
        let id = RequestId(self.shared.next_request_id.fetch_add(1, Ordering::Relaxed));
        self.register_as(id, to)?;
        Ok(id)
    }

    fn register_as(&self, id: RequestId, to: ReplyTo) -> Result<(), EngineError> {
        let mut waiters = self.shared.waiters();
        if waiters.len() >= self.shared.max_in_flight {
            return Err(EngineError::TooManyInFlight);
        }
        if waiters.contains_key(&id) {
            return Err(EngineError::DuplicateInFlight);
        }
        // Registered before publishing, so a fast reply always finds its waiter.
        waiters.insert(id, Waiter { to, items: Vec::new() });
        Ok(())
    }

    /// Publishes a registered request without spinning; on a full ring the waiter is removed.
    fn try_publish_registered(
        &mut self,
        request_id: RequestId,
        ts_ns: u64,
        kind: CommandKind,
    ) -> Result<(), EngineError> {
        let published =
            self.producer.try_publish(|slot| *slot = Command::new(request_id, ts_ns, kind));
        if published.is_err() {
            self.shared.waiters().remove(&request_id);
            return Err(EngineError::RingFull);
        }
        self.shared.input_parker.wake();
        Ok(())
    }

    fn register_ticket(&self) -> Result<(RequestId, Receiver<Response>), EngineError> {
        let (tx, rx) = crossbeam_channel::bounded(1);
        Ok((self.register(ReplyTo::Ticket(tx))?, rx))
    }

    /// Submits a command whose reply is handed to `on_reply`, which runs on the reply thread and
    /// must not block (an async adapter sends it on a oneshot channel). Fails like
    /// [`Submitter::try_submit`] (never spins). Returns the request id, for [`Submitter::cancel`].
    pub fn submit_with(
        &mut self,
        ts_ns: u64,
        kind: CommandKind,
        on_reply: Box<dyn FnOnce(Response) + Send>,
    ) -> Result<RequestId, EngineError> {
        let request_id = self.register(ReplyTo::Callback(on_reply))?;
        self.try_publish_registered(request_id, ts_ns, kind)?;
        Ok(request_id)
    }

    /// As [`Submitter::submit_with`], under a request id chosen by the caller (e.g. a bridge
    /// relaying another process's ids, so the engine recognises redeliveries). The id must not
    /// be [`RequestId::NONE`] nor already in flight.
    pub fn submit_with_id(
        &mut self,
        request_id: RequestId,
        ts_ns: u64,
        kind: CommandKind,
        on_reply: Box<dyn FnOnce(Response) + Send>,
    ) -> Result<(), EngineError> {
        if request_id == RequestId::NONE {
            return Err(EngineError::DuplicateInFlight);
        }
        self.register_as(request_id, ReplyTo::Callback(on_reply))?;
        self.try_publish_registered(request_id, ts_ns, kind)
    }

    /// The engine's counters as of its last completed batch.
    pub fn counters(&self) -> Counters {
        self.shared.counters.load()
    }

    /// Requests awaiting their reply now.
    pub fn in_flight(&self) -> usize {
        self.shared.waiters().len()
    }

    /// Outputs lost because a subscriber's channel was full.
    pub fn events_dropped(&self) -> u64 {
        self.shared.events_dropped.load(Ordering::Relaxed)
    }

    /// Forgets the waiter of `request_id` (its caller gave up, e.g. timed out); a late reply is
    /// then counted and dropped.
    pub fn cancel(&self, request_id: RequestId) {
        self.shared.waiters().remove(&request_id);
    }

    /// Submits a command received at `ts_ns` (nanoseconds since the epoch: the engine has no
    /// clock of its own); spins while the in-ring is full. The ticket yields the reply.
    pub fn submit(&mut self, ts_ns: u64, kind: CommandKind) -> Result<Ticket, EngineError> {
        let (request_id, rx) = self.register_ticket()?;
        self.producer.publish(|slot| *slot = Command::new(request_id, ts_ns, kind));
        self.shared.input_parker.wake();
        Ok(Ticket { request_id, rx, shared: Arc::clone(&self.shared) })
    }

    /// As [`Submitter::submit`], but fails with [`EngineError::RingFull`] instead of spinning.
    pub fn try_submit(&mut self, ts_ns: u64, kind: CommandKind) -> Result<Ticket, EngineError> {
        let (request_id, rx) = self.register_ticket()?;
        self.try_publish_registered(request_id, ts_ns, kind)?;
        Ok(Ticket { request_id, rx, shared: Arc::clone(&self.shared) })
    }

    /// Publishes commands as they are (request ids included, no waiters registered) in one
    /// batch claim; spins while the ring lacks room. For benchmarks and bridges that read replies
    /// from the out-ring themselves. `cmds` must be non-empty and at most the ring size.
    pub fn publish_batch(&mut self, cmds: &[Command]) {
        self.producer.batch_publish(cmds.len(), |slots| {
            for (slot, cmd) in slots.zip(cmds) {
                *slot = *cmd;
            }
        });
        self.shared.input_parker.wake();
    }

    /// As [`Submitter::publish_batch`], but fails with [`EngineError::RingFull`] (publishing
    /// nothing) instead of spinning.
    pub fn try_publish_batch(&mut self, cmds: &[Command]) -> Result<(), EngineError> {
        self.producer
            .try_batch_publish(cmds.len(), |slots| {
                for (slot, cmd) in slots.zip(cmds) {
                    *slot = *cmd;
                }
            })
            .map_err(|_| EngineError::RingFull)?;
        self.shared.input_parker.wake();
        Ok(())
    }

    /// Publishes a command that wants no reply (e.g. a feed's price tick); spins while full.
    pub fn send(&mut self, ts_ns: u64, kind: CommandKind) {
        self.producer.publish(|slot| *slot = Command::new(RequestId::NONE, ts_ns, kind));
        self.shared.input_parker.wake();
    }

    /// As [`Submitter::send`], but fails with [`EngineError::RingFull`] instead of spinning.
    pub fn try_send(&mut self, ts_ns: u64, kind: CommandKind) -> Result<(), EngineError> {
        self.producer
            .try_publish(|slot| *slot = Command::new(RequestId::NONE, ts_ns, kind))
            .map_err(|_| EngineError::RingFull)?;
        self.shared.input_parker.wake();
        Ok(())
    }

    /// Submits and waits up to `timeout` for the reply.
    pub fn call(
        &mut self,
        ts_ns: u64,
        kind: CommandKind,
        timeout: Duration,
    ) -> Result<Response, EngineError> {
        self.submit(ts_ns, kind)?.wait_timeout(timeout)
    }

    /// A receiver of outputs (see [`Subscription`]); at most `capacity` buffered, the rest
    /// dropped and counted ([`EngineHandle::events_dropped`]).
    pub fn subscribe(&self, what: Subscription, capacity: usize) -> Receiver<Output> {
        let (tx, rx) = crossbeam_channel::bounded(capacity);
        self.shared.subscribers().push(Subscriber { what, tx });
        rx
    }
}

/// The running engine: submit commands, subscribe to events, shut down.
#[derive(Debug)]
pub struct EngineHandle {
    submitter: Submitter,
    final_state: Receiver<(Engine, u64)>,
    markets: Vec<crate::config::MarketConfig>,
    output_poller: Option<OutputPoller>,
}

/// A stage that sees every command before the engine does, in ring order: the journaller.
///
/// The engine thread only sees a command after the stage has returned from the call that carried
/// `end_of_batch == true` for its batch, so a stage that makes each batch durable there
/// guarantees that no reply leaves the engine before its command is durable.
pub trait InputStage: Send + 'static {
    /// `seq` is the command's journal sequence number (`StartOptions::first_seq` + ring index).
    fn on_command(&mut self, seq: u64, cmd: &Command, end_of_batch: bool);
}

/// When the engine thread hands a copy of its state to the snapshot writer.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SnapshotPolicy {
    /// After this many commands since the last snapshot.
    pub every_commands: Option<u64>,
    /// When this much command time (`Command::ts_ns`) has passed since the last snapshot.
    pub every_ns: Option<u64>,
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

/// Options of [`EngineHandle::start_with`].
#[derive(Default)]
pub struct StartOptions {
    /// Journal sequence of the first command this run publishes (last recovered + 1). Default 1.
    pub first_seq: u64,
    /// Runs before the engine on its own thread (the journaller).
    pub input_stage: Option<Box<dyn InputStage>>,
    /// Periodic and on-demand (`AdminSnapshot`) snapshots go to this channel. A copy is dropped
    /// (and counted) if the writer is still busy with the previous one.
    pub snapshots: Option<(SnapshotPolicy, Sender<SnapshotRequest>)>,
    /// Hand the out-ring to the caller as an [`OutputPoller`] (see
    /// [`EngineHandle::take_output_poller`]) instead of running the reply thread: tickets and
    /// subscriptions then receive nothing. For benchmarks that read results on their own thread.
    pub poll_outputs: bool,
}

/// Reads the out-ring directly (the disruptor's event poller), on the caller's thread.
pub struct OutputPoller {
    poller: disruptor::EventPoller<Output, disruptor::SingleProducerBarrier>,
}

impl std::fmt::Debug for OutputPoller {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OutputPoller").finish_non_exhaustive()
    }
}

impl OutputPoller {
    /// Hands every output available now to `f`; returns how many, or `Err(EngineError::Shutdown)`
    /// once the engine has stopped and everything was read. Never blocks.
    pub fn poll(&mut self, mut f: impl FnMut(&Output)) -> Result<usize, EngineError> {
        match self.poller.poll() {
            Ok(mut guard) => {
                let mut n = 0;
                for o in &mut guard {
                    f(o);
                    n += 1;
                }
                Ok(n)
            }
            Err(disruptor::Polling::NoEvents) => Ok(0),
            Err(disruptor::Polling::Shutdown) => Err(EngineError::Shutdown),
        }
    }
}

impl std::fmt::Debug for StartOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StartOptions")
            .field("first_seq", &self.first_seq)
            .field("input_stage", &self.input_stage.is_some())
            .field("snapshots", &self.snapshots.as_ref().map(|s| s.0))
            .field("poll_outputs", &self.poll_outputs)
            .finish()
    }
}

impl EngineHandle {
    /// Starts a fresh engine with `config` on its own thread.
    pub fn start(config: EngineConfig) -> Result<EngineHandle, ConfigError> {
        Self::start_with(Engine::new(config)?, StartOptions::default())
    }

    /// Starts an engine from existing state (e.g. recovered), with a journal stage and snapshots.
    /// Request ids continue above the highest one the engine has applied.
    pub fn start_with(engine: Engine, options: StartOptions) -> Result<EngineHandle, ConfigError> {
        let cfg = engine.config().clone();
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
            max_in_flight: cfg.max_in_flight,
            waiters: Mutex::new(FxHashMap::default()),
            subscribers: Mutex::new(Vec::new()),
            events_dropped: AtomicU64::new(0),
            late_replies: AtomicU64::new(0),
            snapshots_skipped: AtomicU64::new(0),
            counters: SharedCounters::default(),
            input_parker: Arc::new(Parker::new(cfg.wait)),
        });
        // With an input stage the engine thread has its own parker, woken by the stage's thread.
        let engine_parker = match options.input_stage {
            Some(_) => Arc::new(Parker::new(cfg.wait)),
            None => Arc::clone(&shared.input_parker),
        };
        let reply_parker = Arc::new(Parker::new(cfg.wait));

        // The out-ring is built first, on this thread: `pin_at_core` checks the core against the
        // calling thread's affinity, so nothing here may run on an already pinned thread.
        let router_shared = Arc::clone(&shared);
        let out_builder =
            disruptor::build_single_producer(cfg.out_ring_size, Output::default, wait);
        let (out, output_poller): (OutProducer, _) = if options.poll_outputs {
            let (poller, builder) = out_builder.new_event_poller();
            (builder.build(), Some(OutputPoller { poller }))
        } else {
            let out = out_builder
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
            (out, None)
        };

        let (state_tx, final_state) = crossbeam_channel::bounded(1);
        let first_seq = options.first_seq.max(1);
        let input_parker = Arc::clone(&shared.input_parker);
        let engine_shared = Arc::clone(&shared);
        let (snapshot_policy, snapshot_tx) = match options.snapshots {
            Some((p, tx)) => (p, Some(tx)),
            None => (SnapshotPolicy::default(), None),
        };
        let engine_handler =
            |t: &mut EngineThread, cmd: &Command, seq: Sequence, end: bool| t.step(cmd, seq, end);
        let stage_wakes = Arc::clone(&engine_parker);
        let engine_init = move || {
            engine_parker.register_current_thread();
            EngineThread {
                engine: Some(engine),
                out: OutSink(out),
                shared: engine_shared,
                reply_parker,
                state_tx,
                first_seq,
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
            Some(stage) => builder
                .thread_name("hundredx-journal")
                .handle_events_and_state_with(
                    |s: &mut StageThread, cmd: &Command, seq: Sequence, end: bool| {
                        s.step(cmd, seq, end)
                    },
                    move || {
                        input_parker.register_current_thread();
                        DOWNSTREAM.with_borrow_mut(|d| *d = Some(Arc::clone(&stage_wakes)));
                        StageThread {
                            stage,
                            first_seq,
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
        Ok(EngineHandle {
            submitter: Submitter { producer, shared },
            final_state,
            markets: cfg.markets,
            output_poller,
        })
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
        self.submitter.shared.late_replies.load(Ordering::Relaxed)
    }

    /// The out-ring poller, if started with [`StartOptions::poll_outputs`] (once).
    pub fn take_output_poller(&mut self) -> Option<OutputPoller> {
        self.output_poller.take()
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
    /// applied (`first_seq - 1` if none was).
    pub fn shutdown_at(self) -> Result<(Engine, u64), EngineError> {
        let EngineHandle { submitter, final_state, output_poller, .. } = self;
        drop(output_poller);
        drop(submitter);
        final_state.recv().map_err(|_| EngineError::Shutdown)
    }
}

/// The engine thread's state: the engine and its out-ring producer. On drop (the in-ring shut
/// down) it hands the engine back to [`EngineHandle::shutdown`], then drops the out-ring producer,
/// which drains and stops the reply thread.
struct EngineThread {
    engine: Option<Engine>,
    out: OutSink,
    shared: Arc<Shared>,
    reply_parker: Arc<Parker>,
    state_tx: Sender<(Engine, u64)>,
    first_seq: u64,
    last_seq: u64,
    snapshot_policy: SnapshotPolicy,
    snapshot_tx: Option<Sender<SnapshotRequest>>,
    since_snapshot: u64,
    last_snapshot_ns: Option<u64>,
}

impl EngineThread {
    #[inline]
    fn step(&mut self, cmd: &Command, seq: Sequence, end_of_batch: bool) {
        let engine = self.engine.as_mut().expect("engine present until drop");
        engine.apply(cmd, &mut self.out);
        self.last_seq = self.first_seq + seq_u64(seq);
        if end_of_batch {
            self.shared.counters.store(&engine.counters());
            self.reply_parker.wake();
        }
        if self.snapshot_tx.is_some() {
            self.since_snapshot += 1;
            if self.snapshot_due(cmd) {
                self.take_snapshot();
            }
        }
    }

    fn snapshot_due(&mut self, cmd: &Command) -> bool {
        let started = *self.last_snapshot_ns.get_or_insert(cmd.ts_ns);
        matches!(cmd.kind, CommandKind::AdminSnapshot)
            || self.snapshot_policy.every_commands.is_some_and(|n| self.since_snapshot >= n)
            || self.snapshot_policy.every_ns.is_some_and(|n| cmd.ts_ns.saturating_sub(started) >= n)
    }

    /// Copies the state (the only time the engine thread allocates on purpose) and hands it to
    /// the writer; serialization and I/O happen there.
    #[cold]
    fn take_snapshot(&mut self) {
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

/// The input stage's thread state.
struct StageThread {
    stage: Box<dyn InputStage>,
    first_seq: u64,
    engine_parker: Arc<Parker>,
    batch_start: bool,
}

impl StageThread {
    #[inline]
    fn step(&mut self, cmd: &Command, seq: Sequence, end_of_batch: bool) {
        // The engine's barrier is this stage's cursor, which the ring stores only after a whole
        // batch. So the engine is woken once that store has happened: at the start of the next
        // batch here, or (when idle) on this thread's first wait, see `Wait::wait_for`.
        if self.batch_start {
            self.engine_parker.wake();
        }
        self.batch_start = end_of_batch;
        self.stage.on_command(self.first_seq + seq_u64(seq), cmd, end_of_batch);
    }
}

/// Pins the next processor only when a core is configured.
trait PinIf: Sized {
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

fn seq_u64(seq: Sequence) -> u64 {
    u64::try_from(seq).expect("ring sequences start at 0")
}

struct OutSink(OutProducer);

impl Sink for OutSink {
    #[inline]
    fn emit(&mut self, output: Output) {
        self.0.publish(|slot| *slot = output);
    }
}

/// The reply thread's handler.
fn route(shared: &Shared, output: &Output) {
    match output {
        Output::Empty => return,
        Output::Item { request_id, item } => {
            if let Some(w) = shared.waiters().get_mut(request_id) {
                w.items.push(*item);
            }
        }
        Output::Reply { request_id, result } => {
            // Take the waiter out first: the lock must not be held while a callback runs.
            let waiter = shared.waiters().remove(request_id);
            match waiter {
                Some(w) => {
                    let response =
                        Response { request_id: *request_id, result: *result, items: w.items };
                    match w.to {
                        // Capacity 1 and one reply per request: never full. Disconnected means
                        // the ticket was dropped unread, which is the caller's choice.
                        ReplyTo::Ticket(tx) => {
                            let _ = tx.try_send(response);
                        }
                        ReplyTo::Callback(f) => f(response),
                    }
                }
                None => {
                    shared.late_replies.fetch_add(1, Ordering::Relaxed);
                }
            }
        }
        Output::Event(_) => {}
    }
    let mut subscribers = shared.subscribers();
    if subscribers.is_empty() {
        return;
    }
    let is_event = matches!(output, Output::Event(_));
    subscribers.retain(|s| {
        if s.what == Subscription::Events && !is_event {
            return true;
        }
        match s.tx.try_send(*output) {
            Ok(()) => true,
            Err(TrySendError::Full(_)) => {
                shared.events_dropped.fetch_add(1, Ordering::Relaxed);
                true
            }
            Err(TrySendError::Disconnected(_)) => false,
        }
    });
}

/// Lets a producer wake a consumer thread that parked itself (the adaptive wait strategy).
///
/// Lost wake-ups are prevented Dekker-style: the consumer stores `parked = true`, fences, and
/// returns once so the ring is checked again before it really parks; a producer publishes,
/// fences, then loads `parked`. With both fences, either the consumer sees the new event or the
/// producer sees `parked` and unparks it. A park also times out (100 ms) as a backstop.
#[derive(Debug)]
struct Parker {
    enabled: bool,
    parked: AtomicBool,
    thread: OnceLock<Thread>,
}

impl Parker {
    fn new(mode: WaitMode) -> Parker {
        Parker {
            enabled: mode == WaitMode::Adaptive,
            parked: AtomicBool::new(false),
            thread: OnceLock::new(),
        }
    }

    /// Called on the consumer thread before its loop starts.
    fn register_current_thread(self: &Arc<Self>) {
        let _ = self.thread.set(std::thread::current());
        PARKER.with_borrow_mut(|p| *p = Some(Arc::clone(self)));
    }

    /// Called by a producer after publishing. Costs a fence and a load unless the consumer is
    /// parked; busy-spin mode skips even that.
    #[inline]
    fn wake(&self) {
        if !self.enabled {
            return;
        }
        fence(Ordering::SeqCst);
        if self.parked.load(Ordering::Relaxed)
            && let Some(t) = self.thread.get()
        {
            t.unpark();
        }
    }
}

/// The wait strategy of both processor threads.
#[derive(Clone, Copy, Debug)]
struct Wait(WaitMode);

thread_local! {
    /// (sequence waited for, consecutive waits for it): the adaptive strategy's backoff state.
    static IDLE: Cell<(Sequence, u32)> = const { Cell::new((Sequence::MIN, 0)) };
    /// This processor thread's parker, set before its loop starts.
    static PARKER: RefCell<Option<Arc<Parker>>> = const { RefCell::new(None) };
    /// The parker of the consumer that depends on this thread's cursor, if that one is only
    /// advanced after a batch (the input stage's): woken on the first wait after a batch.
    static DOWNSTREAM: RefCell<Option<Arc<Parker>>> = const { RefCell::new(None) };
}

impl disruptor::wait_strategies::WaitStrategy for Wait {
    #[inline]
    fn wait_for(&self, sequence: Sequence) {
        if self.0 == WaitMode::BusySpin {
            return;
        }
        let n = IDLE.with(|c| {
            let (s, n) = c.get();
            let n = if s == sequence { n.saturating_add(1) } else { 0 };
            c.set((sequence, n));
            n
        });
        if n == 0 {
            // This thread just finished a batch and stored its cursor: wake whoever waits on it.
            DOWNSTREAM.with_borrow(|d| d.as_ref().map(|p| p.wake()));
        }
        // Spin ~100 times (a hand-off in flight arrives within ~100 ns), yield ~100 times, then
        // park until a producer wakes us: an idle engine uses no CPU.
        match n {
            0..100 => std::hint::spin_loop(),
            100..200 => std::thread::yield_now(),
            _ => PARKER.with_borrow(|p| match p {
                Some(p) if !p.parked.load(Ordering::Relaxed) => {
                    p.parked.store(true, Ordering::Relaxed);
                    fence(Ordering::SeqCst);
                    // Return without parking: the ring is checked once more first.
                }
                Some(p) => {
                    std::thread::park_timeout(Duration::from_millis(100));
                    p.parked.store(false, Ordering::Relaxed);
                }
                None => {
                    // Every processor thread registers its parker before its loop; a thread
                    // without one is a wiring bug. Degrade to sleeping rather than spinning.
                    debug_assert!(false, "processor thread without a parker");
                    std::thread::sleep(Duration::from_millis(1));
                }
            }),
        }
    }
}
