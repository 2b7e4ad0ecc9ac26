//! The reply path: tickets (the blocking wait on the one waiter registry,
//! [`crate::waiters::Waiters`]), the subscribers, and the reply thread's handler that routes
//! every output of the out-ring.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use crossbeam_channel::{Receiver, Sender, TrySendError};

use crate::command::RequestId;
use crate::event::{Item, Output};
use crate::state::Counters;
use crate::waiters::Waiters;

use super::wait::Parker;
use super::{EngineError, Response, Subscription};

pub(super) struct Subscriber {
    pub(super) what: Subscription,
    pub(super) tx: Sender<Output>,
}

/// Counter snapshot published by the engine thread at the end of each batch.
#[derive(Default)]
pub(super) struct SharedCounters {
    pub(super) values: [AtomicU64; Counters::LEN],
}

impl SharedCounters {
    pub(super) fn store(&self, c: &Counters) {
        for (slot, x) in self.values.iter().zip(c.to_array()) {
            slot.store(x, Ordering::Relaxed);
        }
    }

    pub(super) fn load(&self) -> Counters {
        Counters::from_array(std::array::from_fn(|i| self.values[i].load(Ordering::Relaxed)))
    }
}

pub(super) struct Shared {
    pub(super) next_request_id: AtomicU64,
    /// Who awaits which reply (with the list items that came before it).
    pub(super) waiters: Waiters<Response, Vec<Item>>,
    pub(super) subscribers: Mutex<Vec<Subscriber>>,
    pub(super) events_dropped: AtomicU64,
    pub(super) snapshots_skipped: AtomicU64,
    pub(super) counters: SharedCounters,
    /// Wakes the in-ring's first consumer (journal or engine thread) when it is parked.
    pub(super) input_parker: Arc<Parker>,
}

impl Shared {
    pub(super) fn subscribers(&self) -> MutexGuard<'_, Vec<Subscriber>> {
        self.subscribers.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// A pending reply.
#[must_use = "a ticket is the only way to receive the reply"]
#[derive(Debug)]
pub struct Ticket {
    pub(super) request_id: RequestId,
    pub(super) rx: Receiver<Response>,
    pub(super) shared: Arc<Shared>,
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
                self.shared.waiters.cancel(self.request_id.0);
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

/// The reply thread's handler.
pub(super) fn route(shared: &Shared, output: &Output) {
    match output {
        Output::Empty => return,
        Output::Item { request_id, item } => {
            shared.waiters.accumulate(request_id.0, |items| items.push(*item));
        }
        Output::Reply { request_id, result, seq } => {
            // Delivered outside the registry's lock; a reply nobody awaits is counted as late.
            shared.waiters.complete(request_id.0, |items| Response {
                request_id: *request_id,
                result: *result,
                items,
                seq: *seq,
            });
        }
        Output::Event(_) | Output::Change(_) => {}
    }
    let mut subscribers = shared.subscribers();
    if subscribers.is_empty() {
        return;
    }
    subscribers.retain(|s| {
        let wanted = match s.what {
            Subscription::Events => matches!(output, Output::Event(_)),
            Subscription::Changes | Subscription::ChangesBestEffort => {
                matches!(output, Output::Change(_))
            }
            Subscription::All => true,
        };
        if !wanted {
            return true;
        }
        if s.what == Subscription::Changes {
            // Lossless: waits for room. A slow reader slows this thread, then the out-ring,
            // then the engine (bounded lag), and loses nothing; a reader that hangs up is dropped.
            return s.tx.send(*output).is_ok();
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
