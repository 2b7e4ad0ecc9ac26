//! Capped exponential backoff, the one retry schedule of every loop that reconnects or retries
//! (Redis links, the replicated log, a venue's WebSocket), with optional "equal jitter" so that
//! many clients cut off at once do not come back at once.

use std::time::Duration;

use rand::rngs::Xoshiro256PlusPlus;
use rand::{RngExt, SeedableRng};

/// Waits `initial`, then twice as long each time, never more than `max`; [`Backoff::reset`]
/// after a success. With [`Backoff::jittered`], each wait is half fixed, half random.
///
/// ```
/// use std::time::Duration;
/// use ground::backoff::Backoff;
/// let mut b = Backoff::new(Duration::from_millis(100), Duration::from_millis(300));
/// let waits: Vec<u128> = (0..4).map(|_| b.next().as_millis()).collect();
/// assert_eq!(waits, [100, 200, 300, 300]);
/// b.reset();
/// assert_eq!(b.peek(), Duration::from_millis(100));
/// ```
#[derive(Debug, Clone)]
pub struct Backoff {
    initial: Duration,
    max: Duration,
    next: Duration,
    jitter: Option<Xoshiro256PlusPlus>,
}

impl Backoff {
    /// A schedule from `initial` doubling up to `max`.
    pub fn new(initial: Duration, max: Duration) -> Backoff {
        assert!(initial <= max, "backoff: initial above max");
        Backoff { initial, max, next: initial, jitter: None }
    }

    /// The same schedule, each wait drawn from `[d/2, d]` ("equal jitter"), seeded with `seed`
    /// (e.g. the clock: the jitter spreads clients, it protects nothing).
    pub fn jittered(initial: Duration, max: Duration, seed: u64) -> Backoff {
        Backoff {
            jitter: Some(Xoshiro256PlusPlus::seed_from_u64(seed)),
            ..Backoff::new(initial, max)
        }
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
        let base = self.next;
        self.next = self.next.saturating_mul(2).min(self.max);
        match &mut self.jitter {
            None => base,
            Some(rng) => {
                let half = base / 2;
                let spread = u64::try_from(half.as_nanos()).unwrap_or(u64::MAX);
                half + Duration::from_nanos(rng.random_range(0..=spread))
            }
        }
    }

    /// The (unjittered) wait [`Backoff::next`] would start from (for logs).
    pub fn peek(&self) -> Duration {
        self.next
    }

    /// Back to `initial` (after a success).
    pub fn reset(&mut self) {
        self.next = self.initial;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn jittered_waits_stay_within_half_and_whole_of_the_schedule() {
        let ms = Duration::from_millis;
        let mut b = Backoff::jittered(ms(100), ms(800), 7);
        for base in [100, 200, 400, 800, 800] {
            let w = b.next();
            assert!(w >= ms(base / 2) && w <= ms(base), "{w:?} for {base} ms");
        }
        b.reset();
        assert_eq!(b.peek(), ms(100));
    }
}
