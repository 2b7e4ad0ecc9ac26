//! Two-factor sign-in's engine side (docs/DESIGN.md, "Two-factor sign-in"): an enrolment waits
//! for its first TOTP code; a code's time step is spent once (never again, nor an earlier
//! one); a recovery code once; off needs a code; snapshots keep it all.

mod common;

use common::*;
use engine_core::prelude::*;

fn enrolment() -> TotpEnrolment {
    let mut recovery = [[0u8; 16]; 10];
    for (i, r) in recovery.iter_mut().enumerate() {
        r[0] = 1 + u8::try_from(i).unwrap();
    }
    TotpEnrolment { secret: [7; 20], recovery }
}

fn spend(
    h: &mut Harness,
    a: AccountId,
    code: OneTimeCode,
    purpose: TotpUse,
) -> Result<ReplyData, Reason> {
    h.run(CommandKind::SpendCode { account: a, code, purpose })
}

fn state(h: &mut Harness, a: AccountId) -> (bool, bool, u64, u8) {
    match h.run(CommandKind::QueryTotp { account: a }) {
        Ok(ReplyData::Totp { enabled, pending, last_step, recovery_left, .. }) => {
            (enabled, pending, last_step, recovery_left)
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn an_enrolment_is_confirmed_by_a_code_and_each_step_is_spent_once() {
    let mut h = Harness::new();
    let (a, b) = (h.account("a@x"), h.account("b@x"));
    // Nothing to spend before an enrolment.
    assert_eq!(spend(&mut h, a, OneTimeCode::Step(10), TotpUse::SignIn), Err(Reason::TotpState));
    h.run(CommandKind::EnrolTotp { account: a, enrolment: enrolment() }).unwrap();
    assert_eq!(state(&mut h, a), (false, true, 0, 10));
    // Pending: a sign-in code is not taken; a recovery code cannot confirm.
    assert_eq!(spend(&mut h, a, OneTimeCode::Step(10), TotpUse::SignIn), Err(Reason::TotpState));
    let r1 = OneTimeCode::Recovery(enrolment().recovery[0]);
    assert_eq!(spend(&mut h, a, r1, TotpUse::Confirm), Err(Reason::InvalidTotp));
    spend(&mut h, a, OneTimeCode::Step(100), TotpUse::Confirm).unwrap();
    assert_eq!(state(&mut h, a), (true, false, 100, 10));
    // On: re-enrolling is refused; the same step again, or an earlier one, is refused.
    let again = CommandKind::EnrolTotp { account: a, enrolment: enrolment() };
    assert_eq!(h.run(again), Err(Reason::TotpState));
    assert_eq!(spend(&mut h, a, OneTimeCode::Step(100), TotpUse::SignIn), Err(Reason::InvalidTotp));
    assert_eq!(spend(&mut h, a, OneTimeCode::Step(99), TotpUse::SignIn), Err(Reason::InvalidTotp));
    spend(&mut h, a, OneTimeCode::Step(101), TotpUse::Withdraw).unwrap();
    // A recovery code once; an unknown one never; b's state is its own.
    spend(&mut h, a, r1, TotpUse::SignIn).unwrap();
    assert_eq!(spend(&mut h, a, r1, TotpUse::SignIn), Err(Reason::InvalidTotp));
    let unknown = OneTimeCode::Recovery([99; 16]);
    assert_eq!(spend(&mut h, a, unknown, TotpUse::SignIn), Err(Reason::InvalidTotp));
    assert_eq!(state(&mut h, a), (true, false, 101, 9));
    assert_eq!(state(&mut h, b), (false, false, 0, 0));
    // Snapshots keep it.
    let snap = h.engine.snapshot();
    let restored = Engine::restore(h.engine.config().clone(), &snap).unwrap();
    assert_eq!(restored.state_hash(), h.engine.state_hash());
    // Off needs a code; then nothing is asked.
    spend(&mut h, a, OneTimeCode::Step(102), TotpUse::Disable).unwrap();
    assert_eq!(state(&mut h, a), (false, false, 0, 0));
}

#[test]
fn the_secret_never_appears_in_a_change() {
    let mut h = Harness::new();
    let a = h.account("a@x");
    let from = h.out.len();
    h.run(CommandKind::EnrolTotp { account: a, enrolment: enrolment() }).unwrap();
    spend(&mut h, a, OneTimeCode::Step(5), TotpUse::Confirm).unwrap();
    assert_eq!(
        changes_since(&h, from),
        vec![
            Change::TotpEnrolled { account: a },
            Change::CodeSpent { account: a, purpose: TotpUse::Confirm, recovery: false }
        ]
    );
}
