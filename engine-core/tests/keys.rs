//! API keys as engine state (docs/DESIGN.md, "API keys"): created with scopes, networks and
//! an expiry; looked up by public key as they stand at the command's time (expired refused,
//! revoked gone); one account never touches another's; limits; kept by snapshots.

mod common;

use common::*;
use engine_core::command::{KeyId, KeyLabel, KeyScopes, NewApiKey};
use engine_core::prelude::*;

fn new_key(account: AccountId, pk: u8, scopes: u8, expires_at_ns: Option<u64>) -> NewApiKey {
    NewApiKey {
        account,
        public_key: [pk; 32],
        label: KeyLabel::new("bot").unwrap(),
        scopes: KeyScopes(scopes),
        networks: [None; 4],
        expires_at_ns,
    }
}

fn create(h: &mut Harness, k: NewApiKey) -> Result<ApiKeyView, Reason> {
    match h.run(CommandKind::CreateApiKey(k))? {
        ReplyData::ApiKey(v) => Ok(v),
        other => panic!("create replied {other:?}"),
    }
}

fn lookup(h: &mut Harness, pk: u8) -> Result<ApiKeyView, Reason> {
    match h.run(CommandKind::QueryApiKey { public_key: [pk; 32] })? {
        ReplyData::ApiKey(v) => Ok(v),
        other => panic!("lookup replied {other:?}"),
    }
}

#[test]
fn a_key_is_found_by_its_public_key_until_it_expires_or_is_revoked() {
    let mut h = Harness::new();
    let a = h.account("a@x");
    let b = h.account("b@x");
    let read_trade = KeyScopes::READ | KeyScopes::TRADE;
    let k1 = create(&mut h, new_key(a, 1, read_trade, None)).unwrap();
    assert_eq!((k1.id, k1.account, k1.scopes), (KeyId(1), a, KeyScopes(3)));
    assert!(!k1.scopes.allows(KeyScopes::WITHDRAW));
    assert_eq!(lookup(&mut h, 1), Ok(k1));
    assert_eq!(lookup(&mut h, 9), Err(Reason::UnknownApiKey));
    // A public key is one key's; scopes must be known and some; an expiry in the future.
    assert_eq!(create(&mut h, new_key(b, 1, 1, None)), Err(Reason::ApiKeyExists));
    assert_eq!(create(&mut h, new_key(b, 2, 0, None)), Err(Reason::InvalidRequest));
    assert_eq!(create(&mut h, new_key(b, 2, 8, None)), Err(Reason::InvalidRequest));
    let now = h.now;
    assert_eq!(create(&mut h, new_key(b, 2, 1, Some(now))), Err(Reason::InvalidExpiry));
    let k2 = create(&mut h, new_key(b, 2, 1, Some(now + 1_000))).unwrap();
    assert_eq!(lookup(&mut h, 2), Ok(k2));
    h.advance(1_000);
    assert_eq!(lookup(&mut h, 2), Err(Reason::ApiKeyExpired), "at its expiry");

    // Only its owner revokes it; then it is gone.
    let revoke = |account, key| CommandKind::RevokeApiKey { account, key };
    assert_eq!(h.run(revoke(b, k1.id)), Err(Reason::UnknownApiKey));
    assert_eq!(lookup(&mut h, 1), Ok(k1));
    assert_eq!(h.run(revoke(a, k1.id)), Ok(ReplyData::ApiKey(k1)));
    assert_eq!(lookup(&mut h, 1), Err(Reason::UnknownApiKey));
    assert_eq!(h.run(revoke(a, k1.id)), Err(Reason::UnknownApiKey));
}

#[test]
fn an_account_holds_at_most_its_limit_and_snapshots_keep_every_key() {
    let cfg = EngineConfig { max_api_keys_per_account: 2, ..EngineConfig::default() };
    let mut h = Harness::with(cfg);
    let a = h.account("a@x");
    create(&mut h, new_key(a, 1, 1, None)).unwrap();
    let later = Some(h.now + 5);
    create(&mut h, new_key(a, 2, 7, later)).unwrap();
    assert_eq!(create(&mut h, new_key(a, 3, 1, None)), Err(Reason::TooManyApiKeys));
    let from = h.out.len();
    assert_eq!(
        h.run(CommandKind::QueryApiKeys { account: a }),
        Ok(ReplyData::ApiKeys { count: 2 })
    );
    let listed: Vec<KeyId> = h.out[from..]
        .iter()
        .filter_map(|o| match o {
            Output::Item { item: Item::ApiKey(k), .. } => Some(k.id),
            _ => None,
        })
        .collect();
    assert_eq!(listed, [KeyId(1), KeyId(2)]);

    let restored = Engine::restore(h.engine.config().clone(), &h.engine.snapshot()).unwrap();
    assert_eq!(restored.state_hash(), h.engine.state_hash());
    h.engine = restored;
    assert_eq!(lookup(&mut h, 2).map(|k| k.scopes), Ok(KeyScopes(7)));
    h.run(CommandKind::RevokeApiKey { account: a, key: KeyId(1) }).unwrap();
    // The next key's id continues after the restore.
    assert_eq!(create(&mut h, new_key(a, 4, 1, None)).map(|k| k.id), Ok(KeyId(3)));
}
