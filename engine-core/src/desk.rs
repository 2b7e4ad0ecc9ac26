//! The back office's account controls (docs/DESIGN.md, "Account controls"): what an operator
//! may do to one account. Each is one journaled command naming who acted and why
//! ([`crate::command::CommandKind::AdminAccount`]); the change it records is the audit log's
//! line.

use crate::num::Usdc;

/// What an account may do.
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize,
)]
#[serde(rename_all = "snake_case")]
pub enum AccountStatus {
    /// Everything.
    #[default]
    Active,
    /// Close, cancel, reduce, add margin, deposit and withdraw; nothing that opens exposure
    /// (its pending orders are cancelled when it is set).
    CloseOnly,
    /// Queries, sign-in and sign-out, revoking its own keys: nothing that moves money or
    /// exposure (its pending orders are cancelled when it is set). The engine still closes its
    /// positions at their TP, SL, liquidation or stop-out: suspending an account never leaves
    /// the house a position nobody may close.
    Suspended,
}

impl AccountStatus {
    /// The stable code (`active`, `close_only`, `suspended`).
    pub const fn as_str(self) -> &'static str {
        match self {
            AccountStatus::Active => "active",
            AccountStatus::CloseOnly => "close_only",
            AccountStatus::Suspended => "suspended",
        }
    }
}

/// An operator's action on one account.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AccountAction {
    /// Suspend, set close-only, or reinstate (`Active`).
    SetStatus(AccountStatus),
    /// Pays the account (positive) or takes from what it may withdraw (negative): the house
    /// balance moves the other way, so the conservation identity holds.
    AdjustBalance(Usdc),
    /// Grants (positive) or removes (negative) credit: money from the house that the account
    /// may trade with and lose but never withdraw (MetaTrader 5's credit).
    AdjustCredit(Usdc),
    /// Moves it to another client group (index into the configuration's `groups`).
    MoveGroup(u16),
    /// Signs every session out and revokes every API key.
    RevokeAccess,
}

impl AccountAction {
    /// The stable code of the action (`suspend`, `close_only`, `reinstate`, `adjust_balance`,
    /// `adjust_credit`, `move_group`, `revoke_access`).
    pub const fn code(&self) -> &'static str {
        match self {
            AccountAction::SetStatus(AccountStatus::Suspended) => "suspend",
            AccountAction::SetStatus(AccountStatus::CloseOnly) => "close_only",
            AccountAction::SetStatus(AccountStatus::Active) => "reinstate",
            AccountAction::AdjustBalance(_) => "adjust_balance",
            AccountAction::AdjustCredit(_) => "adjust_credit",
            AccountAction::MoveGroup(_) => "move_group",
            AccountAction::RevokeAccess => "revoke_access",
        }
    }
}
