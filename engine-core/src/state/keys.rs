//! API keys (docs/DESIGN.md, "API keys"): engine state, journaled like any command, so that a
//! revocation holds for the next request on every api instance. The engine keeps each key's
//! Ed25519 public key, scopes, networks and expiry; the adapters verify signatures and ask the
//! engine for the key on every signed request.

use super::{
    AccountId, Change, Engine, Item, Outcome, Output, Reason, ReplyData, Sink, usize_from,
};
use crate::command::{KeyId, KeyScopes, NewApiKey, RequestId};
use crate::view::ApiKeyView;

impl Engine {
    pub(super) fn create_api_key<S: Sink>(
        &mut self,
        ts: u64,
        new: &NewApiKey,
        sink: &mut S,
    ) -> Outcome {
        let ai = self.account_index(new.account)?;
        check_new_key(ts, new)?;
        if self.api_keys.contains_key(&new.public_key) {
            return Err(Reason::ApiKeyExists);
        }
        let held = self.accounts[ai].lists().api_keys.len();
        if held >= usize_from(self.cfg.max_api_keys_per_account)
            || self.api_keys.len() >= usize_from(self.cfg.max_api_keys)
        {
            return Err(Reason::TooManyApiKeys);
        }
        let key = ApiKeyView {
            id: KeyId(self.next_key_id),
            account: new.account,
            public_key: new.public_key,
            label: new.label,
            scopes: new.scopes,
            networks: new.networks,
            expires_at_ns: new.expires_at_ns,
            created_at_ns: ts,
        };
        self.next_key_id += 1;
        self.api_keys.insert(key.public_key, (key.account, key.id));
        self.accounts[ai].lists_mut().api_keys.push(key);
        self.record(sink, Change::ApiKeyCreated { key });
        Ok(ReplyData::ApiKey(key))
    }

    pub(super) fn revoke_api_key<S: Sink>(
        &mut self,
        account: AccountId,
        key: KeyId,
        sink: &mut S,
    ) -> Outcome {
        let ai = self.account_index(account)?;
        let keys = &self.accounts[ai].lists().api_keys;
        let at = keys.binary_search_by_key(&key, |k| k.id).map_err(|_| Reason::UnknownApiKey)?;
        let gone = self.accounts[ai].lists_mut().api_keys.remove(at);
        self.api_keys.remove(&gone.public_key);
        self.record(sink, Change::ApiKeyRevoked { account, key });
        Ok(ReplyData::ApiKey(gone))
    }

    pub(super) fn list_api_keys<S: Sink>(
        &self,
        rid: RequestId,
        account: AccountId,
        sink: &mut S,
    ) -> Outcome {
        let ai = self.account_index(account)?;
        let keys = &self.accounts[ai].lists().api_keys;
        for &k in keys {
            sink.emit(Output::Item { request_id: rid, item: Item::ApiKey(k) });
        }
        Ok(ReplyData::ApiKeys { count: u32::try_from(keys.len()).unwrap_or(u32::MAX) })
    }

    /// The key with `public_key` at time `ts`: revoked keys are gone, expired ones refused.
    pub(super) fn api_key(&self, ts: u64, public_key: &[u8; 32]) -> Outcome {
        let &(account, id) = self.api_keys.get(public_key).ok_or(Reason::UnknownApiKey)?;
        let ai = self.account_index(account)?;
        let keys = &self.accounts[ai].lists().api_keys;
        let at = keys.binary_search_by_key(&id, |k| k.id).map_err(|_| Reason::UnknownApiKey)?;
        let key = keys[at];
        if key.expires_at_ns.is_some_and(|at| at <= ts) {
            return Err(Reason::ApiKeyExpired);
        }
        Ok(ReplyData::ApiKey(key))
    }
}

/// At least one scope and no unknown bit; networks with a prefix their family allows; an expiry
/// after the command's time.
fn check_new_key(ts: u64, new: &NewApiKey) -> Result<(), Reason> {
    let all = KeyScopes::READ | KeyScopes::TRADE | KeyScopes::WITHDRAW;
    if new.scopes.0 == 0 || new.scopes.0 & !all != 0 {
        return Err(Reason::InvalidRequest);
    }
    let network_ok = |n: &crate::command::Network| {
        if n.v6 { n.prefix <= 128 } else { n.prefix <= 32 && n.addr[4..].iter().all(|&b| b == 0) }
    };
    if !new.networks.iter().flatten().all(network_ok) {
        return Err(Reason::InvalidRequest);
    }
    if new.expires_at_ns.is_some_and(|at| at <= ts) {
        return Err(Reason::InvalidExpiry);
    }
    Ok(())
}
