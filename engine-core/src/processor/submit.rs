//! Producers of the in-ring: [`Submitter`] publishes commands and registers their waiters.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use crossbeam_channel::Receiver;
use disruptor::Producer;

use crate::command::{Command, CommandKind, RequestId};
use crate::event::Output;
use crate::state::Counters;
use crate::waiters::{Delivery, RegisterError};

use super::replies::{Shared, Subscriber};
use super::{EngineError, InProducer, Response, Subscription, Ticket};

/// A cloneable, `Send` way to put commands into the in-ring from any thread.
pub struct Submitter {
    pub(super) producer: InProducer,
    pub(super) shared: Arc<Shared>,
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
    fn register(&self, to: Delivery<Response>) -> Result<RequestId, EngineError> {
        let id = RequestId(self.shared.next_request_id.fetch_add(1, Ordering::Relaxed));
        self.register_as(id, to)?;
        Ok(id)
    }

    fn register_as(&self, id: RequestId, to: Delivery<Response>) -> Result<(), EngineError> {
        // Registered before publishing, so a fast reply always finds its waiter.
        self.shared.waiters.register(id.0, to).map_err(|e| match e {
            RegisterError::Full => EngineError::TooManyInFlight,
            RegisterError::Duplicate => EngineError::DuplicateInFlight,
        })
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
            self.shared.waiters.cancel(request_id.0);
            return Err(EngineError::RingFull);
        }
        self.shared.input_parker.wake();
        Ok(())
    }

    fn register_ticket(&self) -> Result<(RequestId, Receiver<Response>), EngineError> {
        let (tx, rx) = crossbeam_channel::bounded(1);
        Ok((self.register(Delivery::Channel(tx))?, rx))
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
        let request_id = self.register(Delivery::Callback(on_reply))?;
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
        self.register_as(request_id, Delivery::Callback(on_reply))?;
        self.try_publish_registered(request_id, ts_ns, kind)
    }

    /// The engine's counters as of its last completed batch.
    pub fn counters(&self) -> Counters {
        self.shared.counters.load()
    }

    /// Requests awaiting their reply now.
    pub fn in_flight(&self) -> usize {
        self.shared.waiters.len()
    }

    /// Outputs lost because a subscriber's channel was full.
    pub fn events_dropped(&self) -> u64 {
        self.shared.events_dropped.load(Ordering::Relaxed)
    }

    /// Forgets the waiter of `request_id` (its caller gave up, e.g. timed out); a late reply is
    /// then counted and dropped.
    pub fn cancel(&self, request_id: RequestId) {
        self.shared.waiters.cancel(request_id.0);
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
    /// dropped and counted ([`EngineHandle::events_dropped`](super::EngineHandle::events_dropped)).
    pub fn subscribe(&self, what: Subscription, capacity: usize) -> Receiver<Output> {
        let (tx, rx) = crossbeam_channel::bounded(capacity);
        self.shared.subscribers().push(Subscriber { what, tx });
        rx
    }
}
