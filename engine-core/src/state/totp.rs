//! Two-factor sign-in (docs/DESIGN.md, "Two-factor sign-in"): the engine keeps each account's
//! TOTP secret and recovery codes' hashes, and spends one-time codes exactly once across every
//! api instance. It never computes a code (that needs HMAC and a clock): the adapter checks a
//! code against the secret at the request's time and asks the engine to spend its time step
//! (refused unless above the last one spent: a code cannot be replayed within its step) or its
//! recovery hash (refused unless unused).

use super::{AccountId, Change, Engine, Outcome, Reason, ReplyData, Sink};
use crate::command::{OneTimeCode, TotpEnrolment, TotpUse};
use crate::view::TotpState;

impl Engine {
    pub(super) fn enrol_totp<S: Sink>(
        &mut self,
        account: AccountId,
        enrolment: &TotpEnrolment,
        sink: &mut S,
    ) -> Outcome {
        let ai = self.account_index(account)?;
        if self.accounts[ai].lists().totp.as_ref().is_some_and(|t| t.enabled) {
            return Err(Reason::TotpState);
        }
        if enrolment.secret == [0; 20] || enrolment.recovery.contains(&[0; 16]) {
            return Err(Reason::InvalidRequest);
        }
        let state = TotpState {
            enabled: false,
            secret: enrolment.secret,
            last_step: 0,
            recovery: enrolment.recovery,
        };
        self.accounts[ai].lists_mut().totp = Some(Box::new(state));
        self.record(sink, Change::TotpEnrolled { account });
        Ok(self.totp_view(ai))
    }

    pub(super) fn spend_code<S: Sink>(
        &mut self,
        account: AccountId,
        code: OneTimeCode,
        purpose: TotpUse,
        sink: &mut S,
    ) -> Outcome {
        let ai = self.account_index(account)?;
        let Some(t) = self.accounts[ai].lists().totp.as_deref().copied() else {
            return Err(Reason::TotpState);
        };
        // Confirming needs a pending enrolment; everything else needs it on.
        if t.enabled == (purpose == TotpUse::Confirm) {
            return Err(Reason::TotpState);
        }
        let mut next = t;
        let recovery = match code {
            OneTimeCode::Step(step) if step > t.last_step => {
                next.last_step = step;
                false
            }
            // A pending enrolment is confirmed by its TOTP only (the user proves the app has
            // the secret).
            OneTimeCode::Recovery(hash) if purpose != TotpUse::Confirm && hash != [0; 16] => {
                let at = t.recovery.iter().position(|h| *h == hash).ok_or(Reason::InvalidTotp)?;
                next.recovery[at] = [0; 16];
                true
            }
            _ => return Err(Reason::InvalidTotp),
        };
        next.enabled |= purpose == TotpUse::Confirm;
        let kept = (purpose != TotpUse::Disable).then(|| Box::new(next));
        self.accounts[ai].lists_mut().totp = kept;
        self.record(sink, Change::CodeSpent { account, purpose, recovery });
        Ok(self.totp_view(ai))
    }

    pub(super) fn query_totp(&self, account: AccountId) -> Outcome {
        Ok(self.totp_view(self.account_index(account)?))
    }

    fn totp_view(&self, ai: usize) -> ReplyData {
        let account = AccountId::at(ai);
        let t = self.accounts[ai].lists().totp.as_deref().copied().unwrap_or_default();
        let present = self.accounts[ai].lists().totp.is_some();
        let left = t.recovery.iter().filter(|h| **h != [0; 16]).count();
        ReplyData::Totp {
            account,
            enabled: t.enabled,
            pending: present && !t.enabled,
            secret: t.secret,
            last_step: t.last_step,
            recovery_left: u8::try_from(left).unwrap_or(u8::MAX),
        }
    }
}
