//! Sessions this api instance has recently confirmed with the engine (docs/DESIGN.md,
//! "Sessions"). Every request with a token names its session; the engine is asked whether it
//! is live at most once per `CONFIRMED_FOR` per session, and a sign-out seen in the engine's
//! change stream forgets it at once. So a sign-out holds on the instance that served it at
//! once, on the others as soon as the change reaches them, and — should a change be lost on
//! the way — within `CONFIRMED_FOR` in any case.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use engine_core::command::{AccountId, SessionId, SessionScope};

/// How long a confirmation is believed without asking the engine again: the bound on how long
/// a signed-out session can still be used on an instance that missed its change.
pub const CONFIRMED_FOR: Duration = Duration::from_secs(2);

/// Most sessions remembered; when full, the expired confirmations are dropped, then all (each
/// is asked again once: a flood of sessions costs engine queries, never memory).
pub const CONFIRMED_MAX: usize = 100_000;

/// Confirmed sessions: id → (owner, until when believed).
#[derive(Debug, Default)]
pub struct LiveSessions(Mutex<HashMap<u64, (AccountId, Instant)>>);

impl LiveSessions {
    /// Was `sid` of `account` confirmed within [`CONFIRMED_FOR`]?
    pub fn confirmed(&self, account: AccountId, sid: SessionId) -> bool {
        let held = self.0.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        held.get(&sid.0).is_some_and(|(a, until)| *a == account && Instant::now() < *until)
    }

    /// Records that the engine confirmed `sid` of `account` just now.
    pub fn confirm(&self, account: AccountId, sid: SessionId) {
        let mut held = self.0.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        let now = Instant::now();
        if held.len() >= CONFIRMED_MAX {
            held.retain(|_, (_, until)| now < *until);
            if held.len() >= CONFIRMED_MAX {
                held.clear();
            }
        }
        held.insert(sid.0, (account, now + CONFIRMED_FOR));
    }

    /// Forgets the sessions of `account` that `scope` signed out.
    pub fn revoke(&self, account: AccountId, scope: SessionScope) {
        let mut held = self.0.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        held.retain(|id, (a, _)| *a != account || !scope.ends(SessionId(*id)));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_sign_out_forgets_exactly_what_it_names() {
        let live = LiveSessions::default();
        let (a, b) = (AccountId(1), AccountId(2));
        for (account, sid) in [(a, 1), (a, 2), (a, 3), (b, 4)] {
            live.confirm(account, SessionId(sid));
        }
        assert!(!live.confirmed(b, SessionId(1)), "another account's id");
        live.revoke(a, SessionScope::One(SessionId(1)));
        assert!(!live.confirmed(a, SessionId(1)));
        live.revoke(a, SessionScope::Others(SessionId(2)));
        assert!(live.confirmed(a, SessionId(2)) && !live.confirmed(a, SessionId(3)));
        live.revoke(a, SessionScope::All);
        assert!(!live.confirmed(a, SessionId(2)));
        assert!(live.confirmed(b, SessionId(4)), "not b's");
        assert!(SessionScope::Others(SessionId(2)).ends(SessionId(3)));
        assert!(!SessionScope::Others(SessionId(2)).ends(SessionId(2)));
    }
}
