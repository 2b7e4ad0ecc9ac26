//! The back office's account controls (docs/DESIGN.md, "Account controls"): an operator's
//! action on one account, always journaled with who and why, and the gates they set: a
//! suspended account may only query, a close-only one may not add exposure, credit may be
//! traded and lost but never withdrawn.

use super::{
    AccountId, Change, Engine, Market, Outcome, Reason, ReplyData, Sink, Usdc, add, check_amount,
    sub,
};
use crate::access::AccountControls;
use crate::command::{CommandKind, Note, RequestId, SessionScope};
use crate::desk::{AccountAction, AccountStatus};

impl Engine {
    /// An operator's action on `account`, with its reason (the audit log's line).
    pub(super) fn admin_account<S: Sink>(
        &mut self,
        (by, account): (AccountId, AccountId),
        action: AccountAction,
        note: &Note,
        sink: &mut S,
    ) -> Outcome {
        self.check_admin(by)?;
        if note.as_str().trim().is_empty() {
            return Err(Reason::ReasonRequired);
        }
        let ai = self.account_index(account)?;
        // Four eyes: an operator's own account is another operator's to act on.
        if by == account {
            return Err(Reason::OwnAccount);
        }
        match action {
            AccountAction::SetStatus(status) => {
                if status != AccountStatus::Active {
                    // A pending order would open exposure when it fills.
                    self.cancel_orders_of(ai, None, RequestId::NONE, sink);
                }
                self.accounts[ai].status = status;
            }
            AccountAction::AdjustBalance(amount) => self.adjust_balance(ai, amount, sink)?,
            AccountAction::AdjustCredit(amount) => self.adjust_credit(ai, amount, sink)?,
            AccountAction::MoveGroup(group) => {
                let login = self.accounts[ai].login;
                self.set_group(by, &login, group, sink)?;
            }
            AccountAction::RevokeAccess => {
                self.revoke_sessions(account, SessionScope::All, sink)?;
                while let Some(key) = self.accounts[ai].lists().api_keys.first().map(|k| k.id) {
                    self.revoke_api_key(account, key, sink)?;
                }
            }
        }
        let (available, credit) = (self.accounts[ai].available, self.accounts[ai].lists().credit);
        let change =
            Change::AccountControlled { account, by, action, note: *note, available, credit };
        self.record(sink, change);
        Ok(ReplyData::Controls(self.controls(ai)))
    }

    /// Pays the account from the house (positive) or takes from what it may withdraw
    /// (negative) into the house.
    fn adjust_balance<S: Sink>(
        &mut self,
        ai: usize,
        amount: Usdc,
        sink: &mut S,
    ) -> Result<(), Reason> {
        let size = adjustment_size(amount)?;
        if amount.0 > 0 {
            self.pay_from_house(ai, size, sink)?;
        } else {
            if size > self.withdrawable(ai) {
                return Err(Reason::InsufficientBalance);
            }
            self.take_for_house(ai, size, sink);
        }
        Ok(())
    }

    /// Grants credit from the house (positive) or takes it back (negative; at most the credit
    /// the account still has, from its available balance).
    fn adjust_credit<S: Sink>(
        &mut self,
        ai: usize,
        amount: Usdc,
        sink: &mut S,
    ) -> Result<(), Reason> {
        let size = adjustment_size(amount)?;
        if amount.0 > 0 {
            self.pay_from_house(ai, size, sink)?;
            let lists = self.accounts[ai].lists_mut();
            lists.credit = add(lists.credit, size);
        } else {
            if size > self.effective_credit(ai) {
                return Err(Reason::InvalidAmount);
            }
            if size > self.accounts[ai].available {
                return Err(Reason::InsufficientBalance);
            }
            if self.is_cross(ai) {
                self.cross_withdraw_check(ai, size)?;
            }
            self.take_for_house(ai, size, sink);
            let lists = self.accounts[ai].lists_mut();
            lists.credit = sub(lists.credit, size);
        }
        Ok(())
    }

    /// Moves `size` from the house balance to the account (refused past the money ceiling, as
    /// a deposit). Credit lost before this money arrived stays lost.
    fn pay_from_house<S: Sink>(
        &mut self,
        ai: usize,
        size: Usdc,
        sink: &mut S,
    ) -> Result<(), Reason> {
        self.check_room(size)?;
        self.settle_credit(ai, sink);
        self.credit(ai, size);
        self.house_balance = sub(self.house_balance, size);
        self.cross_touch(ai, true);
        Ok(())
    }

    /// Moves `size` (checked by the caller) from the account's available balance to the house.
    fn take_for_house<S: Sink>(&mut self, ai: usize, size: Usdc, sink: &mut S) {
        self.settle_credit(ai, sink);
        self.debit(ai, size);
        self.house_balance = add(self.house_balance, size);
        self.cross_touch(ai, true);
    }

    /// The account's money: available, position margins and order margin (no unrealized PnL).
    /// O(its open positions).
    fn money(&self, ai: usize) -> Usdc {
        let a = &self.accounts[ai];
        let margins =
            a.open.iter().fold(Usdc::ZERO, |s, &r| add(s, self.positions.get(r).margin()));
        add(add(a.available, a.reserved), margins)
    }

    /// What the account may withdraw: its available balance, less the credit its margins do
    /// not hold, and for a cross account what keeps it above its stop-out.
    pub(super) fn withdrawable(&self, ai: usize) -> Usdc {
        let a = &self.accounts[ai];
        let credit = a.lists().credit;
        let mut free = a.available;
        if credit.0 > 0 {
            free = Usdc(free.0.min(sub(self.money(ai), credit).0.max(0)));
        }
        if self.is_cross(ai) {
            free = Usdc(free.0.min(self.free_margin(ai).0.0.max(0)));
        }
        free
    }

    /// Its credit now: what was granted, at most its money (what trading lost of it is lost).
    fn effective_credit(&self, ai: usize) -> Usdc {
        let credit = self.accounts[ai].lists().credit;
        if credit.0 == 0 { credit } else { Usdc(credit.0.min(self.money(ai).0)) }
    }

    /// Credit is lost as the account's money falls below it: recorded before money arrives
    /// from outside (a deposit, a balance adjustment, a credit change), so new money never
    /// brings lost credit back. (A trading profit may: the house's favour either way, since
    /// until then the credit that is counted is at most the money.)
    pub(super) fn settle_credit<S: Sink>(&mut self, ai: usize, sink: &mut S) {
        let credit = self.accounts[ai].lists().credit;
        if credit.0 == 0 {
            return;
        }
        let money = self.money(ai);
        if money < credit {
            let lost = sub(credit, money);
            self.accounts[ai].lists_mut().credit = money;
            let account = AccountId::at(ai);
            self.record(sink, Change::CreditLost { account, amount: lost, credit: money });
        }
    }

    /// The account's controls now.
    pub(super) fn controls(&self, ai: usize) -> AccountControls {
        let a = &self.accounts[ai];
        AccountControls {
            account: AccountId::at(ai),
            status: a.status,
            credit: self.effective_credit(ai),
            withdrawable: self.withdrawable(ai),
            group: a.group,
            admin: a.admin,
        }
    }

    /// Refuses every command of a suspended account but queries, sign-in and sign-out and
    /// revoking its own keys. O(1).
    pub(super) fn check_status(&self, kind: &CommandKind) -> Result<(), Reason> {
        let account = match kind {
            CommandKind::Deposit { account, .. }
            | CommandKind::Withdraw { account, .. }
            | CommandKind::ClosePosition { account, .. }
            | CommandKind::AddMargin { account, .. }
            | CommandKind::CancelOrder { account, .. }
            | CommandKind::SetTriggers { account, .. }
            | CommandKind::SetTrailingStop { account, .. }
            | CommandKind::SetMarginMode { account, .. }
            | CommandKind::SetPositionMode { account, .. }
            | CommandKind::CancelAllOrders { account, .. }
            | CommandKind::CloseAllPositions { account, .. }
            | CommandKind::AmendOrder { account, .. }
            | CommandKind::ScheduleCancel { account, .. }
            | CommandKind::EnrolTotp { account, .. } => *account,
            CommandKind::OpenPosition(req) => req.account,
            CommandKind::PlaceOrder(req) => req.account,
            CommandKind::CreateApiKey(new) => new.account,
            _ => return Ok(()),
        };
        let i = super::usize_from(account.0).wrapping_sub(1);
        match self.accounts.get(i).map(|a| a.status) {
            Some(AccountStatus::Suspended) => Err(Reason::AccountSuspended),
            _ => Ok(()),
        }
    }

    /// Refuses new exposure for a close-only account, then as its market's mode says.
    pub(super) fn check_new_exposure(&self, ai: usize, m: &Market) -> Result<(), Reason> {
        match self.accounts[ai].status {
            AccountStatus::Active => super::admin::check_mode(m),
            AccountStatus::CloseOnly => Err(Reason::AccountCloseOnly),
            AccountStatus::Suspended => Err(Reason::AccountSuspended),
        }
    }
}

/// An adjustment's size: nonzero and at most the money ceiling either way.
fn adjustment_size(amount: Usdc) -> Result<Usdc, Reason> {
    let size = Usdc(amount.0.checked_abs().ok_or(Reason::InvalidAmount)?);
    check_amount(size)?;
    Ok(size)
}
