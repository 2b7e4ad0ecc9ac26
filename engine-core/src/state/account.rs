//! An account as the engine holds it: its balance, its open list (grown as it is used), its
//! cross-margin keys, and the lists it holds only once it has used them.

use std::collections::VecDeque;

use super::cross;
use crate::command::{Credential, Login, OrderId};
use crate::event::PositionView;
use crate::idempotency::KeyWindow;
use crate::num::Usdc;

#[derive(Debug, Clone)]
pub(crate) struct Account {
    pub(crate) login: Login,
    pub(crate) credential: Credential,
    pub(crate) available: Usdc,
    /// Open positions, ascending id (ids are assigned increasing, removal keeps order).
    pub(crate) open: Vec<crate::slab::PosRef>,
    /// Its closed positions, idempotency keys and pending orders, once it has any (see
    /// [`AccountLists`]).
    lists: Option<Box<AccountLists>>,
    /// Holds the operator role (granted from the command line only).
    pub(crate) admin: bool,
    /// What an operator lets it do.
    pub(crate) status: crate::desk::AccountStatus,
    /// Σ of its pending orders' reservations.
    pub(crate) reserved: Usdc,
    /// Its client group (index into the configuration's `groups`; 0: the default).
    pub(crate) group: u16,
    /// Isolated or cross.
    pub(crate) mode: crate::command::MarginMode,
    /// Hedging or netting.
    pub(crate) position_mode: crate::command::PositionMode,
    /// Its cross-margin keys (empty while isolated).
    pub(crate) cross: cross::CrossBook,
}

/// What an account holds only once it has used it: 120 bytes that a dormant account (most of
/// a broker's) keeps as one empty pointer instead.
#[derive(Debug, Clone, Default)]
pub(crate) struct AccountLists {
    /// Closed positions and closed parts, oldest first, at most `closed_history_per_account`.
    pub(crate) history: VecDeque<PositionView>,
    /// Its recent idempotency keys (client order ids included).
    pub(crate) keys: KeyWindow,
    /// Pending orders, ascending id.
    pub(crate) orders: Vec<OrderId>,
    /// Its API keys, ascending id.
    pub(crate) api_keys: Vec<crate::view::ApiKeyView>,
    /// Its live sessions, ascending id.
    pub(crate) sessions: Vec<crate::view::SessionView>,
    /// Its two-factor enrolment, on or pending.
    pub(crate) totp: Option<Box<crate::view::TotpState>>,
    /// Credit an operator granted (docs/DESIGN.md, "Account controls"): part of its money that
    /// it may trade with but never withdraw; lowered to its money when that falls below it.
    pub(crate) credit: Usdc,
}

static NO_LISTS: AccountLists = AccountLists {
    history: VecDeque::new(),
    keys: KeyWindow::new(),
    orders: Vec::new(),
    api_keys: Vec::new(),
    sessions: Vec::new(),
    totp: None,
    credit: Usdc::ZERO,
};

impl Account {
    /// A new account with nothing but its login, credential and balance.
    pub(crate) fn new(login: Login, credential: Credential, available: Usdc) -> Account {
        Account {
            login,
            credential,
            available,
            open: Vec::new(),
            lists: None,
            admin: false,
            status: crate::desk::AccountStatus::Active,
            reserved: Usdc::ZERO,
            group: 0,
            mode: crate::command::MarginMode::Isolated,
            position_mode: crate::command::PositionMode::Hedging,
            cross: cross::CrossBook::default(),
        }
    }

    /// Adds a newly opened position (ids increase: the list stays sorted). The list grows by a
    /// quarter (at least 2, at most to `max`) when full: a dormant account holds none, a busy
    /// one at most a quarter more than the most it has held, and an open allocates only when
    /// the account holds more positions than ever before — never in a steady state.
    pub(crate) fn push_open(&mut self, r: crate::slab::PosRef, max: usize) {
        assert!(self.open.last().is_none_or(|l| *l < r), "ids increase: the list stays sorted");
        assert!(self.open.len() < max, "the caller checked max_positions_per_account");
        if self.open.len() == self.open.capacity() {
            let grow = (self.open.len() / 4).max(2).min(max - self.open.len());
            self.open.reserve_exact(grow);
        }
        self.open.push(r);
    }

    /// Its lists (empty ones until it has used any).
    pub(crate) fn lists(&self) -> &AccountLists {
        self.lists.as_deref().unwrap_or(&NO_LISTS)
    }

    /// Its lists, allocated at the first use (once an account, like its key window's storage).
    pub(crate) fn lists_mut(&mut self) -> &mut AccountLists {
        self.lists.get_or_insert_with(Box::default)
    }
}
