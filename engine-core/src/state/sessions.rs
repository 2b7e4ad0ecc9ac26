//! Sessions (docs/DESIGN.md, "Sessions"): engine state, journaled, so that a sign-out holds for
//! the next request on every api instance. A sign-in opens one (its id is its tokens' `sid`);
//! a sign-out ends one, the others, or all; a password change ends the others. Sessions expire
//! with their tokens, in time order as commands move time (O(1) when none is due).

use super::{
    AccountId, Change, Engine, Item, Outcome, Output, Reason, ReplyData, Sink, usize_from,
};
use crate::command::{Credential, NewSession, RequestId, SessionId, SessionScope};
use crate::index::time_key;
use crate::view::SessionView;

impl Engine {
    pub(super) fn open_session<S: Sink>(
        &mut self,
        ts: u64,
        new: &NewSession,
        sink: &mut S,
    ) -> Outcome {
        let ai = self.account_index(new.account)?;
        if new.expires_at_ns <= ts || i64::try_from(new.expires_at_ns).is_err() {
            return Err(Reason::InvalidExpiry);
        }
        let held = self.accounts[ai].lists().sessions.len();
        let full = held >= usize_from(self.cfg.max_sessions_per_account);
        if !full && self.sessions.len() >= usize_from(self.cfg.max_sessions) {
            return Err(Reason::SessionCapacity);
        }
        if full {
            // The account's oldest signs out to make room: its owner's new sign-in wins.
            let oldest = self.accounts[ai].lists().sessions[0].id;
            self.end_session(ai, 0);
            let scope = SessionScope::One(oldest);
            self.record(sink, Change::SessionsRevoked { account: new.account, scope, count: 1 });
        }
        let session = SessionView {
            id: SessionId(self.next_session_id),
            account: new.account,
            created_at_ns: ts,
            expires_at_ns: new.expires_at_ns,
            client: new.client,
        };
        self.next_session_id += 1;
        self.index_session(session);
        self.record(sink, Change::SessionOpened { session });
        Ok(ReplyData::Session(session))
    }

    /// Adds a session to its account's list (ascending id) and to the expiry index.
    pub(crate) fn index_session(&mut self, s: SessionView) {
        let ai = usize_from(s.account.0) - 1;
        let list = &mut self.accounts[ai].lists_mut().sessions;
        assert!(list.last().is_none_or(|l| l.id < s.id), "session ids increase");
        list.push(s);
        let fresh = self.sessions.insert(s.id, s.account).is_none();
        assert!(fresh, "session id reused");
        let fresh = self.session_expiries.insert((time_key(s.expires_at_ns), s.id.0));
        assert!(fresh, "session {} has two expiries", s.id.0);
    }

    /// Ends the `at`-th session of account `ai`.
    fn end_session(&mut self, ai: usize, at: usize) {
        let s = self.accounts[ai].lists_mut().sessions.remove(at);
        self.sessions.remove(&s.id);
        let was = self.session_expiries.remove(&(time_key(s.expires_at_ns), s.id.0));
        assert!(was, "session {} missing from the expiry index", s.id.0);
    }

    pub(super) fn revoke_sessions<S: Sink>(
        &mut self,
        account: AccountId,
        scope: SessionScope,
        sink: &mut S,
    ) -> Outcome {
        let ai = self.account_index(account)?;
        let list = &self.accounts[ai].lists().sessions;
        let named = match scope {
            SessionScope::One(id) | SessionScope::Others(id) => Some(id),
            SessionScope::All => None,
        };
        if named.is_some_and(|id| list.binary_search_by_key(&id, |s| s.id).is_err()) {
            return Err(Reason::UnknownSession);
        }
        let mut count = 0u32;
        let mut at = 0;
        while at < self.accounts[ai].lists().sessions.len() {
            if scope.ends(self.accounts[ai].lists().sessions[at].id) {
                self.end_session(ai, at);
                count += 1;
            } else {
                at += 1;
            }
        }
        self.record(sink, Change::SessionsRevoked { account, scope, count });
        Ok(ReplyData::SessionsRevoked { count })
    }

    pub(super) fn change_password<S: Sink>(
        &mut self,
        account: AccountId,
        credential: &Credential,
        keep: SessionId,
        sink: &mut S,
    ) -> Outcome {
        let ai = self.account_index(account)?;
        let list = &self.accounts[ai].lists().sessions;
        if list.binary_search_by_key(&keep, |s| s.id).is_err() {
            return Err(Reason::UnknownSession);
        }
        self.accounts[ai].credential = *credential;
        self.record(sink, Change::PasswordChanged { account });
        self.revoke_sessions(account, SessionScope::Others(keep), sink)
    }

    pub(super) fn list_sessions<S: Sink>(
        &self,
        rid: RequestId,
        (account, ts): (AccountId, u64),
        sink: &mut S,
    ) -> Outcome {
        let ai = self.account_index(account)?;
        let mut count = 0u32;
        // A query changes nothing: a session past its expiry is held until the next
        // state-changing command, but not shown.
        for &s in self.accounts[ai].lists().sessions.iter().filter(|s| ts < s.expires_at_ns) {
            count += 1;
            sink.emit(Output::Item { request_id: rid, item: Item::Session(s) });
        }
        Ok(ReplyData::Sessions { count })
    }

    /// The session, if it is the account's and live at `ts`.
    pub(super) fn session(&self, ts: u64, account: AccountId, id: SessionId) -> Outcome {
        let ai = self.account_index(account)?;
        let list = &self.accounts[ai].lists().sessions;
        match list.binary_search_by_key(&id, |s| s.id) {
            Ok(at) if ts < list[at].expires_at_ns => Ok(ReplyData::Session(list[at])),
            _ => Err(Reason::UnknownSession),
        }
    }

    /// Ends every session whose tokens expired at or before `ts` (nothing is recorded: the
    /// tokens stopped working by themselves). O(1) when none is due.
    #[inline]
    pub(super) fn expire_sessions(&mut self, ts: u64) {
        let now = time_key(ts);
        while let Some((at, id)) = self.session_expiries.first_key().filter(|k| k.0 <= now) {
            let account = *self.sessions.get(&SessionId(id)).expect("an indexed session");
            let ai = usize_from(account.0) - 1;
            let list = &self.accounts[ai].lists().sessions;
            let pos = list.binary_search_by_key(&SessionId(id), |s| s.id);
            let pos = pos.expect("an account lists its sessions");
            debug_assert_eq!(time_key(list[pos].expires_at_ns), at);
            self.end_session(ai, pos);
        }
    }
}
