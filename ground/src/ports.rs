//! The ports the binary wires adapters through: how an API reaches an engine
//! ([`EngineClient`], implemented here for an engine in this process, [`LocalEngine`], and by the
//! Redis bridge for one behind Redis), and where a price feed's ticks go ([`TickSink`]).

use std::sync::Mutex;
use std::time::Duration;

use engine_core::command::{CommandKind, RequestId, Tick};
use engine_core::processor::{EngineError, Response, Submitter};

use crate::time::now_ns;

/// A boxed future, as the client trait returns them.
pub type BoxFuture<'a, T> = std::pin::Pin<Box<dyn std::future::Future<Output = T> + Send + 'a>>;

/// Why a request did not get its reply, whatever carried it. Each adapter says it in its own
/// terms (the HTTP API as a status and a stable code).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PortError {
    /// The engine in this process could not take the request, or stopped.
    #[error(transparent)]
    Engine(#[from] EngineError),
    /// Sent, but no reply within the client's timeout: it may still be applied (retry with the
    /// same idempotency key).
    #[error("no reply from the engine in time")]
    Timeout,
    /// Too many requests await replies: not sent; retry shortly.
    #[error("{0}")]
    Busy(&'static str),
    /// The transport is down or refused the request: not sent. `code` is a stable snake_case
    /// name of what failed (e.g. `redis_unavailable`).
    #[error("{message}")]
    Unavailable {
        /// Stable code.
        code: &'static str,
        /// What is wrong, in our words.
        message: String,
    },
}

/// How an API reaches an engine: the same contract for the engine in this process and for one
/// behind a transport. Both register the caller in the one waiter registry
/// ([`engine_core::waiters::Waiters`]) before sending; [`EngineClient::call`] is written once.
pub trait EngineClient: Send + Sync + 'static {
    /// Registers `on_reply` (it runs when the reply arrives; it must not block) and sends `kind`;
    /// returns the request id, for [`EngineClient::cancel`].
    fn submit(
        &self,
        kind: CommandKind,
        on_reply: Box<dyn FnOnce(Response) + Send>,
    ) -> BoxFuture<'_, Result<RequestId, PortError>>;

    /// Stops waiting for `id` (a reply that still comes is counted as late).
    fn cancel(&self, id: RequestId);

    /// How long [`EngineClient::call`] waits for a reply.
    fn timeout(&self) -> Duration;

    /// Sends `kind` and awaits its reply; after [`EngineClient::timeout`] the wait is cancelled
    /// and the answer is [`PortError::Timeout`] (the request may still apply).
    fn call(&self, kind: CommandKind) -> BoxFuture<'_, Result<Response, PortError>> {
        Box::pin(async move {
            let (tx, rx) = tokio::sync::oneshot::channel();
            let on_reply = Box::new(move |r: Response| {
                let _ = tx.send(r);
            });
            let id = self.submit(kind, on_reply).await?;
            match tokio::time::timeout(self.timeout(), rx).await {
                Ok(Ok(r)) => Ok(r),
                Ok(Err(_)) => Err(PortError::Engine(EngineError::Shutdown)),
                Err(_) => {
                    self.cancel(id);
                    Err(PortError::Timeout)
                }
            }
        })
    }

    /// The engine's counters, if this client can see them.
    fn counters(&self) -> Option<engine_core::state::Counters> {
        None
    }
    /// Requests awaiting their reply.
    fn in_flight(&self) -> usize {
        0
    }
    /// Events lost by slow subscribers.
    fn events_dropped(&self) -> u64 {
        0
    }
}

/// An engine in this process, reached through its in-ring.
pub struct LocalEngine {
    submitter: Mutex<Submitter>,
    timeout: Duration,
}

impl std::fmt::Debug for LocalEngine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LocalEngine").field("timeout", &self.timeout).finish_non_exhaustive()
    }
}

impl LocalEngine {
    /// A client of the engine behind `submitter`, giving up on a reply after `timeout`.
    pub fn new(submitter: Submitter, timeout: Duration) -> LocalEngine {
        LocalEngine { submitter: Mutex::new(submitter), timeout }
    }

    fn submitter(&self) -> std::sync::MutexGuard<'_, Submitter> {
        self.submitter.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl EngineClient for LocalEngine {
    fn submit(
        &self,
        kind: CommandKind,
        on_reply: Box<dyn FnOnce(Response) + Send>,
    ) -> BoxFuture<'_, Result<RequestId, PortError>> {
        let sent = self.submitter().submit_with(now_ns(), kind, on_reply);
        Box::pin(std::future::ready(sent.map_err(PortError::Engine)))
    }

    fn cancel(&self, id: RequestId) {
        self.submitter().cancel(id);
    }

    fn timeout(&self) -> Duration {
        self.timeout
    }

    fn counters(&self) -> Option<engine_core::state::Counters> {
        Some(self.submitter().counters())
    }

    fn in_flight(&self) -> usize {
        self.submitter().in_flight()
    }

    fn events_dropped(&self) -> u64 {
        self.submitter().events_dropped()
    }
}

/// Where a price feed's ticks go: the engine's in-ring (embedded) or a Redis stream (service
/// mode). The feed does not know which.
pub trait TickSink: Send {
    /// A new tick, already validated and deduplicated.
    fn publish(&mut self, tick: Tick);
    /// Every text frame as received (for recording); ignored by default.
    fn raw(&mut self, _frame: &str) {}
}

/// Where the quotes of several price sources go (docs/DESIGN.md, "Index price"): the engine's
/// in-ring (embedded) or `price-stream` (service mode).
pub trait SourceSink: Send + 'static {
    /// Publishes `tick` as source `source`'s quote.
    fn quote(&mut self, source: engine_core::command::SourceId, tick: Tick);
    /// Time passes: the engine looks at which sources are still fresh.
    fn check(&mut self);
}

/// Runs a stress scenario on a copy of the engine's state (docs/DESIGN.md, "Stress replay"):
/// the binary's, which recovers the copy from the data directory. Absent in service mode's api.
pub trait StressRunner: Send + Sync + std::fmt::Debug {
    /// The bundled scenarios, by name.
    fn scenarios(&self) -> Vec<&'static str>;
    /// Runs the bundled scenario `name`: the report as JSON, or why not
    /// ([`StressError`]).
    fn run<'a>(&'a self, name: &'a str) -> BoxFuture<'a, Result<String, StressError>>;
}

/// Why a stress run did not happen.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StressError {
    /// No bundled scenario has that name.
    #[error("no scenario {0:?}")]
    Unknown(String),
    /// Another run is under way (one at a time: it recovers a whole copy of the state).
    #[error("a stress run is under way")]
    Busy,
    /// The copy could not be made or the run failed (its words, for the log).
    #[error("{0}")]
    Failed(String),
}

/// The hedger's status as the console reads it (docs/DESIGN.md, "A-book hedging"): the
/// binary's link to `hundredx hedger --metrics-listen`'s `/status`.
pub trait HedgeStatus: Send + Sync + std::fmt::Debug {
    /// Its `/status` JSON, or why it could not be read.
    fn status(&self) -> BoxFuture<'_, Result<String, String>>;
    /// Its `/days` JSON for UTC days `from_day..=to_day` (days since the epoch): each day's cash
    /// and closing positions, the day before `from_day` first.
    fn days(&self, from_day: u64, to_day: u64) -> BoxFuture<'_, Result<String, String>>;
}
