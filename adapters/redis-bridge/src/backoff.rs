//! Capped exponential backoff, the one retry schedule of every Redis loop (connect, read, write).

use std::time::Duration;

/// Waits `initial`, then twice as long each time, never more than `max`; [`Backoff::reset`]
/// after a success.
///
/// ```
/// use std::time::Duration;
/// use redis_bridge::backoff::Backoff;
/// let mut b = Backoff::new(Duration::from_millis(100), Duration::from_millis(300));
/// let waits: Vec<u128> = (0..4).map(|_| b.next().as_millis()).collect();
/// assert_eq!(waits, [100, 200, 300, 300]);
/// b.reset();
/// assert_eq!(b.peek(), Duration::from_millis(100));
/// ```
#[derive(Debug, Clone, Copy)]
pub struct Backoff {
    initial: Duration,
    max: Duration,
    next: Duration,
}

impl Backoff {
    /// A schedule from `initial` doubling up to `max`.
    pub fn new(initial: Duration, max: Duration) -> Backoff {
        assert!(initial <= max, "backoff: initial above max");
        Backoff { initial, max, next: initial }
    }

    /// The connect-retry schedule: 100 ms doubling to 10 s.
    pub fn connect() -> Backoff {
        Backoff::new(Duration::from_millis(100), Duration::from_secs(10))
    }

    /// The write-retry schedule: 50 ms doubling to 5 s.
    pub fn write() -> Backoff {
        Backoff::new(Duration::from_millis(50), Duration::from_secs(5))
    }

    /// The wait to take now; the following one doubles (capped).
    #[allow(clippy::should_implement_trait)] // not an iterator: it never ends
    pub fn next(&mut self) -> Duration {
        let now = self.next;
        self.next = self.next.saturating_mul(2).min(self.max);
        now
    }

    /// The wait [`Backoff::next`] would return (for logs).
    pub fn peek(&self) -> Duration {
        self.next
    }

    /// Back to `initial` (after a success).
    pub fn reset(&mut self) {
        self.next = self.initial;
    }
}
