//! Who may act for an account, as the engine holds it: its API keys, its sessions and its
//! two-factor state (docs/DESIGN.md, "API keys", "Sessions", "Two-factor sign-in").

use crate::command::AccountId;

/// An API key as the engine holds it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct ApiKeyView {
    /// Its id.
    pub id: crate::command::KeyId,
    /// Owner.
    pub account: AccountId,
    /// Its Ed25519 public key.
    pub public_key: [u8; 32],
    /// Its label.
    pub label: crate::command::KeyLabel,
    /// What it may do.
    pub scopes: crate::command::KeyScopes,
    /// Where it may be used from (none: anywhere).
    pub networks: [Option<crate::command::Network>; crate::command::KEY_NETWORKS_MAX],
    /// When it stops working.
    pub expires_at_ns: Option<u64>,
    /// When it was created (the command's time).
    pub created_at_ns: u64,
}

/// An account's two-factor state as the engine keeps it (snapshots too).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct TotpState {
    /// On (else: pending its first code).
    pub enabled: bool,
    /// The secret.
    pub secret: [u8; 20],
    /// The last TOTP step spent.
    pub last_step: u64,
    /// Unused recovery codes' hashes (zero: used).
    pub recovery: [crate::command::RecoveryHash; crate::command::RECOVERY_CODES],
}

/// A session as the engine holds it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct SessionView {
    /// Its id (its tokens' `sid`).
    pub id: crate::command::SessionId,
    /// Owner.
    pub account: AccountId,
    /// When it signed in (command time, ns).
    pub created_at_ns: u64,
    /// When its tokens stop working.
    pub expires_at_ns: u64,
    /// Where it signed in from.
    pub client: crate::command::SessionClient,
}

/// An account's controls as the back office sees them (`ReplyData::Controls`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct AccountControls {
    /// The account.
    pub account: AccountId,
    /// What it may do.
    pub status: crate::desk::AccountStatus,
    /// Its credit: at most its money (available, margins and order margin), none of it
    /// withdrawable.
    pub credit: crate::num::Usdc,
    /// What it may withdraw now (its available balance less the credit that margins do not
    /// hold, and for a cross account what keeps it above its stop-out).
    pub withdrawable: crate::num::Usdc,
    /// Its client group's index.
    pub group: u16,
    /// Holds the operator role.
    pub admin: bool,
}
