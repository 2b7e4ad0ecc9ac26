//! What the engine does on its own, unasked: [`Event`]s (a triggered close, a bad debt, a
//! refused tick, a price guard's change), apart from the replies to requests and the changes
//! for read models.

use crate::command::{AccountId, MarketId, PositionId};
use crate::num::Usdc;
use crate::reason::Reason;
use crate::view::PositionView;

/// Something the engine did on its own.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Event {
    /// A position closed by take-profit, stop-loss or liquidation.
    PositionClosed(PositionView),
    /// A close whose loss exceeded the margin: who paid the deficit.
    BadDebt {
        /// Position.
        position: PositionId,
        /// Owner.
        account: AccountId,
        /// Deficit: loss beyond margin (and fee).
        amount: Usdc,
        /// Paid by the insurance fund.
        insurance_paid: Usdc,
        /// Paid by the house (what the fund could not).
        house_paid: Usdc,
    },
    /// A tick was not applied.
    PriceRejected {
        /// Market (raw id, may be unknown).
        market: MarketId,
        /// Why.
        reason: Reason,
        /// The tick's update id.
        update_id: u64,
    },
    /// A market's price guard changed: too few fresh, agreeing sources (`reduce_only`), none
    /// fresh (`halted`), or agreement again for the quiet period (`open`).
    PriceGuard {
        /// Market.
        market: MarketId,
        /// The guard's mode now (the market's effective mode is the stricter of it and the
        /// operators').
        mode: crate::command::MarketMode,
        /// Fresh sources.
        fresh: u8,
        /// Fresh sources that agree.
        agreeing: u8,
    },
}
