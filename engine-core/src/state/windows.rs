//! The bounded memories of the engine: the request-id window (redeliveries answered once)
//! and the per-account idempotency keys.

use super::{
    AccountId, Engine, IdempotencyKey, KeyEntry, Reason, ReplyData, RequestId, usize_from,
};

impl Engine {
    pub(super) fn remembered_key(
        &self,
        account: AccountId,
        key: &IdempotencyKey,
        now: u64,
    ) -> Option<KeyEntry> {
        let i = self.account_index(account).ok()?;
        self.accounts[i].lists().keys.find(key, now, self.cfg.idempotency_ttl_ns).copied()
    }

    pub(super) fn remember_key(&mut self, account: AccountId, entry: KeyEntry) {
        let cap = usize_from(self.cfg.idempotency_keys_per_account);
        let ttl = self.cfg.idempotency_ttl_ns;
        if let Ok(i) = self.account_index(account) {
            self.accounts[i].lists_mut().keys.insert(entry, cap, ttl);
        }
    }

    /// Highest request id applied so far (0 if none).
    pub fn max_request_id(&self) -> u64 {
        self.max_request_id
    }

    /// The first reply to `rid` if it is still in the request-id window.
    pub fn remembered_reply(&self, rid: RequestId) -> Option<Result<ReplyData, Reason>> {
        self.requests.get(rid).map(|r| r.1)
    }
}
