//! Accounts: creation, deposits, withdrawals, and every credit and debit of a balance.

use super::{
    Account, AccountId, Change, Credential, Engine, Login, MAX_AMOUNT, Outcome, Reason, ReplyData,
    Sink, Usdc, add, check_amount, sub, usize_from,
};

impl Engine {
    // ----- accounts -----

    pub(super) fn create_account<S: Sink>(
        &mut self,
        login: Login,
        credential: Credential,
        sink: &mut S,
    ) -> Outcome {
        if login.is_empty() {
            return Err(Reason::InvalidLogin);
        }
        if self.account_of_login(&login).is_some() {
            return Err(Reason::DuplicateLogin);
        }
        if self.accounts.len() >= usize_from(self.cfg.max_accounts) {
            return Err(Reason::AccountCapacity);
        }
        let id = AccountId(u32::try_from(self.accounts.len() + 1).map_err(|_| Reason::Overflow)?);
        let initial = if self.cfg.demo_deposits { self.cfg.initial_balance } else { Usdc::ZERO };
        self.check_room(initial)?;
        self.accounts.push(Account::new(login, credential, initial));
        self.logins.insert(&login, id);
        self.total_deposits = add(self.total_deposits, initial);
        self.total_available = add(self.total_available, initial);
        self.record(sink, Change::AccountCreated { account: id, initial_deposit: initial });
        Ok(ReplyData::AccountCreated { account: id })
    }

    /// The account whose login is `login`.
    pub(crate) fn account_of_login(&self, login: &Login) -> Option<AccountId> {
        self.logins.get(login, |i| &self.accounts[i].login)
    }

    pub(super) fn account_index(&self, id: AccountId) -> Result<usize, Reason> {
        let i = usize_from(id.0).checked_sub(1).ok_or(Reason::UnknownAccount)?;
        if i < self.accounts.len() { Ok(i) } else { Err(Reason::UnknownAccount) }
    }

    pub(super) fn deposit<S: Sink>(
        &mut self,
        account: AccountId,
        amount: Usdc,
        sink: &mut S,
    ) -> Outcome {
        let i = self.account_index(account)?;
        check_amount(amount)?;
        self.check_room(amount)?;
        self.settle_credit(i, sink);
        self.credit(i, amount);
        self.cross_touch(i, true);
        self.total_deposits = add(self.total_deposits, amount);
        self.record(sink, Change::Deposited { account, amount });
        self.account_view(account).map(ReplyData::Account)
    }

    pub(super) fn withdraw<S: Sink>(
        &mut self,
        account: AccountId,
        amount: Usdc,
        sink: &mut S,
    ) -> Outcome {
        let i = self.account_index(account)?;
        check_amount(amount)?;
        if self.accounts[i].available < amount {
            return Err(Reason::InsufficientBalance);
        }
        if self.is_cross(i) {
            self.cross_withdraw_check(i, amount)?;
        }
        if self.accounts[i].lists().credit.0 > 0 && amount > self.withdrawable(i) {
            return Err(Reason::InsufficientBalance);
        }
        self.debit(i, amount);
        self.cross_touch(i, true);
        self.total_withdrawals = add(self.total_withdrawals, amount);
        self.record(sink, Change::Withdrawn { account, amount });
        self.account_view(account).map(ReplyData::Account)
    }

    /// Refuses money that would take what all accounts hold together (available, order margin,
    /// position margins) past [`MAX_AMOUNT`]: the one ceiling every balance and total stays
    /// under, whatever users deposit (see its doc for why it is that value).
    pub(super) fn check_room(&self, amount: Usdc) -> Result<(), Reason> {
        let held = add(add(self.total_available, self.total_margin), self.total_reserved);
        match held.checked_add(amount) {
            Some(after) if after <= MAX_AMOUNT => Ok(()),
            _ => Err(Reason::BalanceLimit),
        }
    }

    pub(super) fn credit(&mut self, i: usize, amount: Usdc) {
        assert!(amount.0 >= 0);
        let a = &mut self.accounts[i];
        a.available = add(a.available, amount);
        self.total_available = add(self.total_available, amount);
    }

    pub(super) fn debit(&mut self, i: usize, amount: Usdc) {
        assert!(amount.0 >= 0 && self.accounts[i].available >= amount, "debit below zero");
        let a = &mut self.accounts[i];
        a.available = sub(a.available, amount);
        self.total_available = sub(self.total_available, amount);
    }

    pub(super) fn credential(&self, login: &Login) -> Outcome {
        let id = self.account_of_login(login).ok_or(Reason::UnknownAccount)?;
        self.credential_of(id)
    }

    pub(super) fn credential_of(&self, id: AccountId) -> Outcome {
        let i = self.account_index(id)?;
        let a = &self.accounts[i];
        Ok(ReplyData::Credential { account: id, credential: a.credential, admin: a.admin })
    }
}
