//! Sessions (docs/DESIGN.md, "Sessions"): opened at sign-in, listed, signed out one, the others
//! or all, a password change signing out the others, the oldest making room, expiry in time
//! order, and snapshots keeping them.

mod common;

use common::*;
use engine_core::prelude::*;

const HOUR: u64 = 3_600_000_000_000;

fn client(agent: &str) -> SessionClient {
    let mut addr = [0u8; 16];
    addr[..4].copy_from_slice(&[203, 0, 113, 7]);
    SessionClient { addr, v6: false, agent: engine_core::command::InlineStr::new(agent).unwrap() }
}

fn open(h: &mut Harness, account: AccountId, ttl: u64, agent: &str) -> SessionView {
    let new = NewSession { account, expires_at_ns: h.now + ttl, client: client(agent) };
    match h.run(CommandKind::OpenSession(new)) {
        Ok(ReplyData::Session(s)) => s,
        other => panic!("open session: {other:?}"),
    }
}

fn live(h: &mut Harness, account: AccountId) -> Vec<SessionId> {
    let from = h.out.len();
    h.run(CommandKind::QuerySessions { account }).unwrap();
    h.out[from..]
        .iter()
        .filter_map(|o| match o {
            Output::Item { item: Item::Session(s), .. } => Some(s.id),
            _ => None,
        })
        .collect()
}

fn check(h: &mut Harness, account: AccountId, session: SessionId) -> Result<ReplyData, Reason> {
    h.run(CommandKind::QuerySession { account, session })
}

#[test]
fn sign_out_one_the_others_or_all_and_nobody_elses() {
    let mut h = Harness::new();
    let (a, b) = (h.account("a@x"), h.account("b@x"));
    let s1 = open(&mut h, a, 24 * HOUR, "laptop");
    let s2 = open(&mut h, a, 24 * HOUR, "phone");
    let s3 = open(&mut h, a, 24 * HOUR, "bot");
    let theirs = open(&mut h, b, 24 * HOUR, "x");
    assert_eq!(s1.client.agent.as_str(), "laptop");
    assert_eq!(live(&mut h, a), vec![s1.id, s2.id, s3.id]);
    // One: the phone.
    let r = h.run(CommandKind::RevokeSessions { account: a, scope: SessionScope::One(s2.id) });
    assert_eq!(r, Ok(ReplyData::SessionsRevoked { count: 1 }));
    assert_eq!(check(&mut h, a, s2.id), Err(Reason::UnknownSession));
    // Another account's session is not one of a's: unknown, and it stays.
    let r = h.run(CommandKind::RevokeSessions { account: a, scope: SessionScope::One(theirs.id) });
    assert_eq!(r, Err(Reason::UnknownSession));
    assert_eq!(check(&mut h, a, theirs.id), Err(Reason::UnknownSession), "not a's");
    assert!(check(&mut h, b, theirs.id).is_ok());
    // The others: only the laptop stays.
    let r = h.run(CommandKind::RevokeSessions { account: a, scope: SessionScope::Others(s1.id) });
    assert_eq!(r, Ok(ReplyData::SessionsRevoked { count: 1 }));
    assert_eq!(live(&mut h, a), vec![s1.id]);
    // Everywhere.
    let r = h.run(CommandKind::RevokeSessions { account: a, scope: SessionScope::All });
    assert_eq!(r, Ok(ReplyData::SessionsRevoked { count: 1 }));
    assert!(live(&mut h, a).is_empty());
    assert_eq!(live(&mut h, b), vec![theirs.id]);
}

#[test]
fn a_password_change_keeps_the_caller_and_signs_the_others_out() {
    let mut h = Harness::new();
    let a = h.account("a@x");
    let (s1, s2) = (open(&mut h, a, HOUR, "one"), open(&mut h, a, HOUR, "two"));
    let credential = Credential::new("new-hash").unwrap();
    let from = h.out.len();
    let r = h.run(CommandKind::ChangePassword { account: a, credential, keep: s2.id });
    assert_eq!(r, Ok(ReplyData::SessionsRevoked { count: 1 }));
    assert_eq!(
        changes_since(&h, from),
        vec![
            Change::PasswordChanged { account: a },
            Change::SessionsRevoked { account: a, scope: SessionScope::Others(s2.id), count: 1 }
        ]
    );
    assert_eq!(live(&mut h, a), vec![s2.id]);
    assert_eq!(check(&mut h, a, s1.id), Err(Reason::UnknownSession));
    let login = Login::new("a@x").unwrap();
    let Ok(ReplyData::Credential { credential: now, .. }) =
        h.run(CommandKind::QueryCredential { login })
    else {
        panic!()
    };
    assert_eq!(now.as_str(), "new-hash");
    // From a session that is gone: refused, the credential unchanged.
    let again = Credential::new("other").unwrap();
    let r = h.run(CommandKind::ChangePassword { account: a, credential: again, keep: s1.id });
    assert_eq!(r, Err(Reason::UnknownSession));
}

#[test]
fn sessions_expire_with_their_tokens_and_the_oldest_makes_room() {
    let mut h =
        Harness::with(EngineConfig { max_sessions_per_account: 3, ..EngineConfig::default() });
    let a = h.account("a@x");
    let short = open(&mut h, a, HOUR, "short");
    let long = open(&mut h, a, 48 * HOUR, "long");
    assert_eq!(
        h.run(CommandKind::OpenSession(NewSession {
            account: a,
            expires_at_ns: h.now,
            client: client("past")
        })),
        Err(Reason::InvalidExpiry)
    );
    // At its expiry a query no longer shows it; the next command ends it.
    h.advance(HOUR);
    assert_eq!(check(&mut h, a, short.id), Err(Reason::UnknownSession));
    assert_eq!(live(&mut h, a), vec![long.id]);
    h.price(BTC, usd(60_000));
    assert_eq!(h.engine.snapshot().sessions.len(), 1, "expired and gone");
    // Three held: a fourth signs the oldest out.
    let s3 = open(&mut h, a, HOUR, "3");
    let s4 = open(&mut h, a, HOUR, "4");
    let from = h.out.len();
    let s5 = open(&mut h, a, HOUR, "5");
    assert!(h.out[from..].iter().any(|o| matches!(
        o,
        Output::Change(ChangeRecord {
            change: Change::SessionsRevoked { scope: SessionScope::One(id), count: 1, .. },
            ..
        }) if *id == long.id
    )));
    assert_eq!(live(&mut h, a), vec![s3.id, s4.id, s5.id]);
}

#[test]
fn the_engine_wide_bound_refuses_a_sign_in_beyond_it() {
    let mut h = Harness::with(EngineConfig { max_sessions: 2, ..EngineConfig::default() });
    let (a, b) = (h.account("a@x"), h.account("b@x"));
    open(&mut h, a, HOUR, "1");
    open(&mut h, b, HOUR, "2");
    let new = NewSession { account: a, expires_at_ns: h.now + HOUR, client: client("3") };
    assert_eq!(h.run(CommandKind::OpenSession(new)), Err(Reason::SessionCapacity));
}

#[test]
fn sessions_survive_a_snapshot_and_expire_the_same_after_restore() {
    let mut h = Harness::new();
    let (a, b) = (h.account("a@x"), h.account("b@x"));
    let s1 = open(&mut h, a, HOUR, "1");
    let s2 = open(&mut h, b, 2 * HOUR, "2");
    open(&mut h, a, 3 * HOUR, "3");
    h.run(CommandKind::RevokeSessions { account: a, scope: SessionScope::One(s1.id) }).unwrap();
    let snap = h.engine.snapshot();
    let mut restored = Engine::restore(h.engine.config().clone(), &snap).unwrap();
    assert_eq!(restored.state_hash(), h.engine.state_hash());
    assert_eq!(restored.snapshot().sessions, snap.sessions);
    // Both at 2.5 h: b's session ends on both, the same way; the next id continues.
    let tick =
        Tick { market: BTC, bid: usd(60_000), ask: usd(60_000), update_id: 9, exchange_time_us: 0 };
    let at = h.now + 5 * HOUR / 2;
    let cmds = [
        Command::new(RequestId::NONE, at, CommandKind::PriceTick(tick)),
        Command::new(
            RequestId(9_000),
            at,
            CommandKind::OpenSession(NewSession {
                account: b,
                expires_at_ns: at + HOUR,
                client: client("4"),
            }),
        ),
    ];
    let (mut x, mut y) = (Vec::new(), Vec::new());
    for c in &cmds {
        h.engine.apply(c, &mut x);
        restored.apply(c, &mut y);
    }
    assert_eq!(x, y);
    assert_eq!(restored.state_hash(), h.engine.state_hash());
    let sessions = restored.snapshot().sessions;
    assert!(sessions.iter().all(|s| s.id != s2.id), "expired");
    assert_eq!(sessions.last().map(|s| s.id), Some(SessionId(4)));
}
