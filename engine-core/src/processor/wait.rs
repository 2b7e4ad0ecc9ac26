//! The wait strategy: busy-spin, or adaptive spin / yield / park with a lost-wake-up-free parker.

use std::cell::{Cell, RefCell};
use std::sync::atomic::{AtomicBool, Ordering, fence};
use std::sync::{Arc, OnceLock};
use std::thread::Thread;
use std::time::Duration;

use disruptor::Sequence;

use crate::config::WaitMode;

/// Lets a producer wake a consumer thread that parked itself (the adaptive wait strategy).
///
/// Lost wake-ups are prevented Dekker-style: the consumer stores `parked = true`, fences, and
/// returns once so the ring is checked again before it really parks; a producer publishes,
/// fences, then loads `parked`. With both fences, either the consumer sees the new event or the
/// producer sees `parked` and unparks it. A park also times out (100 ms) as a backstop.
#[derive(Debug)]
pub(super) struct Parker {
    pub(super) enabled: bool,
    pub(super) parked: AtomicBool,
    pub(super) thread: OnceLock<Thread>,
}

impl Parker {
    pub(super) fn new(mode: WaitMode) -> Parker {
        Parker {
            enabled: mode == WaitMode::Adaptive,
            parked: AtomicBool::new(false),
            thread: OnceLock::new(),
        }
    }

    /// Called on the consumer thread before its loop starts.
    pub(super) fn register_current_thread(self: &Arc<Self>) {
        let _ = self.thread.set(std::thread::current());
        PARKER.with_borrow_mut(|p| *p = Some(Arc::clone(self)));
    }

    /// Called by a producer after publishing. Costs a fence and a load unless the consumer is
    /// parked; busy-spin mode skips even that.
    #[inline]
    pub(super) fn wake(&self) {
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
pub(super) struct Wait(pub(super) WaitMode);

thread_local! {
    /// (sequence waited for, consecutive waits for it): the adaptive strategy's backoff state.
    static IDLE: Cell<(Sequence, u32)> = const { Cell::new((Sequence::MIN, 0)) };
    /// This processor thread's parker, set before its loop starts.
    static PARKER: RefCell<Option<Arc<Parker>>> = const { RefCell::new(None) };
    /// The parker of the consumer that depends on this thread's cursor, if that one is only
    /// advanced after a batch (the input stage's): woken on the first wait after a batch.
    pub(super) static DOWNSTREAM: RefCell<Option<Arc<Parker>>> = const { RefCell::new(None) };
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
        // Spin ~100 times (a hand-off in flight arrives within ~100 ns), yield 10 times, then
        // park until a producer wakes us: an idle engine uses no CPU. (100 yields made the
        // journal and engine threads of `serve` spend most of their time in sched_yield between
        // HTTP requests: 108 µs of CPU per request at 10k req/s, 78 µs with 10; measured with
        // scripts/bench-http-oha.)
        match n {
            0..100 => std::hint::spin_loop(),
            100..110 => std::thread::yield_now(),
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
