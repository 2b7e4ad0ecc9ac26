//! The request-id window: the first replies to the most recent state-changing requests, so a
//! redelivered request (a stream entry read again after a crash) is answered with its first
//! reply instead of being applied twice: [`RequestWindow`].

use std::collections::VecDeque;

use crate::command::RequestId;
use crate::idempotency::Outcome;
use crate::table::Table;

/// The last `capacity` remembered requests, oldest first.
///
/// The replies live in a ring in arrival order and the hash table maps a request id to its
/// fingerprint and its place in that ring — 24-byte entries rather than a whole reply in every
/// bucket. Remembering a request then writes one reply sequentially at the ring's end (memory
/// the previous one warmed) and one small entry in the table, instead of copying the reply into
/// a random bucket of a table of `capacity` replies (22 MB at the default 100 000) and back out
/// of another on eviction.
#[derive(Debug, Clone, Default)]
pub(crate) struct RequestWindow {
    /// Request id → (fingerprint, ordinal); the ordinal counts remembered requests.
    index: Table<RequestId, (u64, u64)>,
    /// The replies, oldest first; the front one has ordinal `next - replies.len()`.
    replies: VecDeque<(RequestId, Outcome)>,
    /// The ordinal the next remembered request gets.
    next: u64,
    capacity: usize,
}

impl RequestWindow {
    /// Room for `capacity` requests, reserved now (no allocation when remembering one).
    pub(crate) fn new(capacity: usize) -> RequestWindow {
        RequestWindow {
            index: Table::with_capacity(capacity),
            replies: VecDeque::with_capacity(capacity),
            next: 0,
            capacity,
        }
    }

    /// The fingerprint of the command first applied under `rid`, and its reply.
    pub(crate) fn get(&self, rid: RequestId) -> Option<(u64, Outcome)> {
        let &(fingerprint, ordinal) = self.index.get(&rid)?;
        let front = self.next - self.replies.len() as u64;
        let at = usize::try_from(ordinal - front).expect("an ordinal within the ring");
        let (stored, outcome) = self.replies[at];
        assert_eq!(stored, rid, "the index and the ring agree");
        Some((fingerprint, outcome))
    }

    /// Remembers `rid` (not remembered yet), forgetting the oldest one when full.
    pub(crate) fn remember(&mut self, rid: RequestId, fingerprint: u64, outcome: Outcome) {
        if self.capacity == 0 {
            return;
        }
        if self.replies.len() >= self.capacity
            && let Some((old, _)) = self.replies.pop_front()
        {
            let was = self.index.remove(&old);
            assert!(was.is_some(), "a remembered request is in the index");
        }
        let fresh = self.index.insert(rid, (fingerprint, self.next)).is_none();
        assert!(fresh, "request {} remembered twice", rid.0);
        self.replies.push_back((rid, outcome));
        self.next += 1;
        assert_eq!(self.index.len(), self.replies.len(), "one index entry per reply");
    }

    /// Remembered requests.
    pub(crate) fn len(&self) -> usize {
        self.replies.len()
    }

    /// Every remembered request, oldest first: (id, fingerprint, reply).
    pub(crate) fn iter(&self) -> impl Iterator<Item = (RequestId, u64, Outcome)> + '_ {
        self.replies.iter().map(|&(rid, outcome)| (rid, self.index[&rid].0, outcome))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::{Reason, ReplyData};

    fn ok(n: u32) -> Outcome {
        Ok(ReplyData::List { count: n })
    }

    #[test]
    fn the_oldest_is_forgotten_and_the_rest_answer_with_their_first_reply() {
        let mut w = RequestWindow::new(3);
        for i in 1..=5u64 {
            w.remember(RequestId(i), 100 + i, ok(u32::try_from(i).unwrap()));
        }
        assert_eq!(w.len(), 3);
        assert_eq!(w.get(RequestId(1)), None);
        assert_eq!(w.get(RequestId(2)), None);
        assert_eq!(w.get(RequestId(3)), Some((103, ok(3))));
        assert_eq!(w.get(RequestId(5)), Some((105, ok(5))));
        let all: Vec<_> = w.iter().collect();
        assert_eq!(
            all,
            vec![
                (RequestId(3), 103, ok(3)),
                (RequestId(4), 104, ok(4)),
                (RequestId(5), 105, ok(5))
            ]
        );
        w.remember(RequestId(9), 7, Err(Reason::InsufficientBalance));
        assert_eq!(w.get(RequestId(3)), None);
        assert_eq!(w.get(RequestId(9)), Some((7, Err(Reason::InsufficientBalance))));
    }

    #[test]
    fn a_window_of_zero_remembers_nothing() {
        let mut w = RequestWindow::new(0);
        w.remember(RequestId(1), 1, ok(1));
        assert_eq!((w.len(), w.get(RequestId(1))), (0, None));
    }
}
