//! Outputs: what the engine writes to the out-ring. Fixed-size, `Copy`, no heap.
//!
//! Every command with a request id gets exactly one [`Output::Reply`]. List queries first emit one
//! [`Output::Item`] per element with the same request id. Unsolicited events
//! ([`Output::Event`]) report what the engine did on its own: TP/SL/liquidation closes, bad debt,
//! rejected prices.
//!
//! Over 600 lines on purpose: the catalogue of every state change a read model may see, one
//! enum whose variants carry their documented fields; split, a read model's author would lose
//! the one list to match.

use crate::command::{AccountId, MarketId, OrderId, PositionId, RequestId, TrailDistance};
use crate::math::Side;
use crate::num::{Price, Qty, Usdc};
pub use crate::reason::{CloseReason, Reason, Trigger};
pub use crate::unsolicited::Event;
pub use crate::view::{
    AccountView, ApiKeyView, AtRisk, CloseInfo, CrossLevel, Exposure, Item, MarketView, OrderEnd,
    OrderView, PositionView, ReplyData, SessionView, StateSummary, Trailing,
};

/// A state change, numbered, for read models (the history store, statements, push): every money
/// movement and every step in the life of an account or a position, in the order the engine made
/// them. `(seq, n)` is unique and increasing across runs, so a consumer that stores its cursor
/// with what it wrote can neither lose nor repeat one (see the history adapter).
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct ChangeRecord {
    /// Journal sequence of the command that made the change.
    pub seq: u64,
    /// Its index among that command's changes (0, 1, …).
    pub n: u32,
    /// The command's receive time.
    pub at_ns: u64,
    /// What changed.
    pub change: Change,
}

/// What a [`ChangeRecord`] reports. Money is what moved, never a view to diff.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Change {
    /// A new account, with the demo balance it was credited (0 when demo deposits are off).
    AccountCreated {
        /// The account.
        account: AccountId,
        /// Credited at creation.
        initial_deposit: Usdc,
    },
    /// Money in.
    Deposited {
        /// The account.
        account: AccountId,
        /// How much.
        amount: Usdc,
    },
    /// Money out.
    Withdrawn {
        /// The account.
        account: AccountId,
        /// How much.
        amount: Usdc,
    },
    /// A position opened: `margin` moved from available to locked, `fee` to the house.
    Opened {
        /// The position.
        position: PositionId,
        /// Owner.
        account: AccountId,
        /// Market.
        market: MarketId,
        /// Side.
        side: Side,
        /// Quantity.
        quantity: Qty,
        /// Fill price.
        entry_price: Price,
        /// Locked margin.
        margin: Usdc,
        /// Leverage.
        leverage: u32,
        /// Open fee (to the house), the client group's charges included.
        fee: Usdc,
        /// Of `fee`, the client group's spread markup and commission (to their revenue lines;
        /// a `Charged` change right before splits them).
        #[serde(default)]
        charges: Usdc,
        /// Liquidation price (0: never).
        liquidation_price: Price,
        /// Take-profit trigger.
        take_profit: Option<Price>,
        /// Stop-loss trigger.
        stop_loss: Option<Price>,
    },
    /// A position, or part of one, closed: `margin_released` left the position, the trader got
    /// `payout = max(margin_released + realized_pnl - fee, 0)`; the fee went to the house (manual,
    /// TP, SL) or the insurance fund (liquidation); a deficit was paid by the fund, then the house.
    Closed {
        /// The closed position, or a partial close's own id.
        position: PositionId,
        /// The position it was part of (equal to `position` for a full close).
        of_position: PositionId,
        /// Owner.
        account: AccountId,
        /// Market.
        market: MarketId,
        /// Side.
        side: Side,
        /// Quantity closed.
        quantity: Qty,
        /// Entry price.
        entry_price: Price,
        /// Exit price (the mark).
        exit_price: Price,
        /// Margin released.
        margin_released: Usdc,
        /// PnL before fees, rounded toward -infinity.
        realized_pnl: Usdc,
        /// Close fee or liquidation fee, the client group's charges included.
        fee: Usdc,
        /// Of `fee`, the client group's spread markup and commission (a `Charged` change right
        /// before splits them; never on a liquidation).
        #[serde(default)]
        charges: Usdc,
        /// Credited to the trader.
        payout: Usdc,
        /// Why.
        reason: CloseReason,
        /// The loss beyond margin nobody charged the trader for.
        bad_debt: Usdc,
        /// Of which the insurance fund paid.
        insurance_paid: Usdc,
        /// Of which the house paid.
        house_paid: Usdc,
    },
    /// Margin moved from available to an open position.
    MarginAdded {
        /// The position.
        position: PositionId,
        /// Owner.
        account: AccountId,
        /// How much.
        amount: Usdc,
        /// The position's margin after.
        margin: Usdc,
        /// Its new liquidation price.
        liquidation_price: Price,
    },
    /// A pending order was placed: `order.reserved` moved from available to held.
    OrderPlaced {
        /// The order.
        order: OrderView,
    },
    /// A pending order ended: `released` moved back from held to available (for a fill, just
    /// before the `Opened` change that follows it takes the position's margin and fee).
    OrderEnded {
        /// The order.
        order: OrderId,
        /// Owner.
        account: AccountId,
        /// Market.
        market: MarketId,
        /// The reservation given back.
        released: Usdc,
        /// How.
        end: OrderEnd,
    },
    /// An open position's take-profit and stop-loss were replaced (`None`: removed).
    TriggersSet {
        /// The position.
        position: PositionId,
        /// Owner.
        account: AccountId,
        /// Take-profit now.
        take_profit: Option<Price>,
        /// Stop-loss now.
        stop_loss: Option<Price>,
    },
    /// An open position's trailing stop was set, changed or removed (`None`).
    TrailingStopSet {
        /// The position.
        position: PositionId,
        /// Owner.
        account: AccountId,
        /// The distance now.
        distance: Option<TrailDistance>,
        /// Where the stop stands now.
        stop_price: Option<Price>,
    },
    /// An operator changed a market (the fields it set; `None`: unchanged).
    MarketChanged {
        /// The operator.
        by: AccountId,
        /// Market.
        market: MarketId,
        /// New mode.
        mode: Option<crate::command::MarketMode>,
        /// New maximum leverage for new positions.
        max_leverage: Option<u32>,
        /// New maintenance margin rate for new positions.
        maintenance_margin_rate: Option<crate::num::Ppm>,
    },
    /// The operator role was granted or revoked (from the command line).
    RoleSet {
        /// The account.
        account: AccountId,
        /// Operator or not.
        admin: bool,
    },
    /// Financing was charged to (positive `amount`) or paid to (negative) a position, from or
    /// into its margin — which moves its liquidation price — and to or from the house.
    Financed {
        /// The position.
        position: PositionId,
        /// Owner.
        account: AccountId,
        /// Market.
        market: MarketId,
        /// The period.
        period: u64,
        /// Taken from the margin (negative: added to it).
        amount: Usdc,
        /// The margin after.
        margin: Usdc,
        /// The liquidation price after.
        liquidation_price: Price,
    },
    /// A position's margin level (equity / maintenance margin) fell below the configured
    /// margin-call level: a warning to its owner, once per crossing (re-armed when the mark is
    /// back above the level).
    MarginCall {
        /// The position.
        position: PositionId,
        /// Owner.
        account: AccountId,
        /// Market.
        market: MarketId,
        /// The mark that crossed.
        mark: Price,
        /// The price at which the level is crossed.
        margin_call_price: Price,
        /// The liquidation price.
        liquidation_price: Price,
    },
    /// Nothing changed that a read model stores: the command at `seq` is a multiple of
    /// [`CHECKPOINT_EVERY`]. A reader that has this has every change up to it.
    Checkpoint,
    /// A tick was applied: the market's bid and ask from now on (before the closes it triggers).
    /// Candles are built from these.
    PriceApplied {
        /// Market.
        market: MarketId,
        /// New bid.
        bid: Price,
        /// New ask.
        ask: Price,
        /// The tick's update id.
        update_id: u64,
    },
    /// An operator moved an account to another client group.
    GroupSet {
        /// The account.
        account: AccountId,
        /// The operator.
        by: AccountId,
        /// The group's index.
        group: u16,
    },
    /// What a fill cost beyond the market's fee, by the account's group: the spread markup and
    /// the commission (each also counted in the `Opened`/`Closed` change's `fee`, which comes
    /// right after it).
    Charged {
        /// The account.
        account: AccountId,
        /// The position (for a partial close, the position it came from).
        position: PositionId,
        /// Spread markup, to the house's spread revenue.
        spread: Usdc,
        /// Commission, to the house's commission revenue.
        commission: Usdc,
    },
    /// An operator changed a client group's terms on a market (what changed; `None`: kept).
    GroupTermsSet {
        /// The operator.
        by: AccountId,
        /// The group's index.
        group: u16,
        /// Market.
        market: MarketId,
        /// What changed.
        edit: crate::command::GroupEdit,
    },
    /// The account's margin mode changed (it held no positions and no orders).
    MarginModeSet {
        /// The account.
        account: AccountId,
        /// The new mode.
        mode: crate::command::MarginMode,
    },
    /// Margin moved between two positions of one cross account: the closing position `to`
    /// lost more than its own margin, and the account's other positions' margins cover it
    /// (after its available balance, which moves with a `MarginAdded`). Its balance is
    /// unchanged.
    MarginMoved {
        /// The account.
        account: AccountId,
        /// The position that gives margin.
        from: PositionId,
        /// The closing position that receives it.
        to: PositionId,
        /// How much.
        amount: Usdc,
    },
    /// A cross account's margin level fell to its margin-call level: a warning, once per
    /// crossing (re-armed when the account is next checked above the level).
    AccountMarginCall {
        /// The account.
        account: AccountId,
        /// The account's margin level at the check.
        level: CrossLevel,
    },
    /// Why a position is being closed or called (docs/DESIGN.md, "Every close explained"):
    /// recorded right before the `closed` (or `margin_call`) change it explains, in the same
    /// command, with the inputs of the rule that fired.
    Explained {
        /// The position.
        position: PositionId,
        /// Owner.
        account: AccountId,
        /// Market.
        market: MarketId,
        /// What fired.
        trigger: Trigger,
        /// Long or short.
        side: Side,
        /// Its quantity then.
        quantity: Qty,
        /// Its entry price.
        entry_price: Price,
        /// The price that was reached: the take-profit, stop-loss, trailing stop, liquidation
        /// or margin-call price (0 for a stop-out: the account's level decided, see `stop_out`).
        trigger_price: Price,
        /// The market's bid and ask at that moment (a long is marked at the bid, a short at
        /// the ask).
        bid: Price,
        /// See `bid`.
        ask: Price,
        /// The position's margin then.
        margin: Usdc,
        /// Its maintenance margin rate (its bracket's).
        maintenance_rate: crate::num::Ppm,
        /// Its bracket's maintenance amount.
        maintenance_amount: Usdc,
        /// The margin-call level applied (margin calls; 0 otherwise).
        call_level: crate::num::Ppm,
    },
    /// The price sources' quotes behind the bid and ask of the `explained` change before it
    /// (markets made from several venues only).
    SourceQuotes {
        /// Owner of the explained position.
        account: AccountId,
        /// The explained position.
        position: PositionId,
        /// Market.
        market: MarketId,
        /// Each configured source's latest (bid, ask), by source id ((0, 0): none yet).
        quotes: [(Price, Price); crate::limits::SOURCES_MAX],
        /// How many were fresh, and how many of those agreed (docs/DESIGN.md, "Index price").
        fresh: u8,
        /// See `fresh`.
        agreeing: u8,
    },
    /// A cross account's margin level fell to the stop-out level: its positions are closed,
    /// the most losing first (the `Closed` changes with reason `stop_out` follow), until it
    /// recovers.
    StopOut {
        /// The account.
        account: AccountId,
        /// The account's margin level when the stop-out began.
        level: CrossLevel,
    },
    /// The account's position mode changed (it held no positions and no orders).
    PositionModeSet {
        /// The account.
        account: AccountId,
        /// The new mode.
        mode: crate::command::PositionMode,
    },
    /// A netting account's order on its position's side added to it (docs/DESIGN.md,
    /// "Netting"): `added_quantity` filled at `price`, the entry is the weighted average
    /// (rounded against the trader), `added_margin` locked, `fee` paid as for an open.
    Increased {
        /// The position (its id stays).
        position: PositionId,
        /// Owner.
        account: AccountId,
        /// Market.
        market: MarketId,
        /// Side.
        side: Side,
        /// The quantity added.
        added_quantity: Qty,
        /// Its fill price.
        price: Price,
        /// The position's quantity after.
        quantity: Qty,
        /// The position's entry price after: the weighted average.
        entry_price: Price,
        /// Margin locked by the addition.
        added_margin: Usdc,
        /// The position's margin after.
        margin: Usdc,
        /// The position's leverage after: the larger of its own and the order's.
        leverage: u32,
        /// Fee of the addition (to the house), the client group's charges included.
        fee: Usdc,
        /// Of `fee`, the client group's spread markup and commission (a `Charged` change
        /// right before splits them).
        charges: Usdc,
        /// Liquidation price after (0: never, or a cross account's).
        liquidation_price: Price,
        /// Take-profit after.
        take_profit: Option<Price>,
        /// Stop-loss after.
        stop_loss: Option<Price>,
    },
    /// An API key was created (its public key: nothing secret).
    ApiKeyCreated {
        /// The key.
        key: crate::view::ApiKeyView,
    },
    /// An API key was revoked.
    ApiKeyRevoked {
        /// Owner.
        account: AccountId,
        /// The key.
        key: crate::command::KeyId,
    },
    /// A pending order was amended in place: `released` (its reservation before) moved back
    /// from held to available, then `order.reserved` from available to held.
    OrderAmended {
        /// The order as it is now (same id).
        order: OrderView,
        /// The reservation it held before.
        released: Usdc,
    },
    /// The account's dead-man's switch was armed, renewed (`at_ns`) or disarmed (`None`).
    CancelScheduled {
        /// The account.
        account: AccountId,
        /// When its pending orders will be cancelled.
        at_ns: Option<u64>,
    },
    /// A session signed in (`session.id` is its tokens' `sid`).
    SessionOpened {
        /// The session.
        session: crate::view::SessionView,
    },
    /// Sessions were signed out (by their owner, a password change, or the oldest making room
    /// for a new one): their tokens are refused from now on.
    SessionsRevoked {
        /// Owner.
        account: AccountId,
        /// Which.
        scope: crate::command::SessionScope,
        /// How many.
        count: u32,
    },
    /// The account's password changed (the `sessions_revoked` of the others follows).
    PasswordChanged {
        /// The account.
        account: AccountId,
    },
    /// A two-factor enrolment began (pending its first code; the secret is not in the
    /// change).
    TotpEnrolled {
        /// The account.
        account: AccountId,
    },
    /// A one-time code was spent (for `confirm`, two-factor sign-in is now on; for `disable`,
    /// off).
    CodeSpent {
        /// The account.
        account: AccountId,
        /// What for.
        purpose: crate::command::TotpUse,
        /// A recovery code (else a TOTP code).
        recovery: bool,
    },
    /// The account's dead-man's switch fired: its `cancelled` pending orders are cancelled
    /// (the `order_ended` changes follow).
    CancelScheduleFired {
        /// The account.
        account: AccountId,
        /// The time it was set for.
        at_ns: u64,
        /// Orders cancelled.
        cancelled: u32,
    },
    /// An operator acted on an account (docs/DESIGN.md, "Account controls"): the audit log's
    /// line, with the account's money and credit after it.
    AccountControlled {
        /// The account.
        account: AccountId,
        /// The operator.
        by: AccountId,
        /// What.
        action: crate::desk::AccountAction,
        /// Why.
        note: crate::command::Note,
        /// Its available balance after the action.
        available: Usdc,
        /// Its credit after the action.
        credit: Usdc,
    },
    /// The account's money fell below its credit: `amount` of credit was lost (found at its
    /// next deposit, withdrawal or credit change; no money moves).
    CreditLost {
        /// The account.
        account: AccountId,
        /// Credit lost.
        amount: Usdc,
        /// Its credit now.
        credit: Usdc,
    },
}

impl Change {
    /// The account the change belongs to (none for a checkpoint or a price).
    pub const fn account(&self) -> Option<AccountId> {
        match *self {
            Change::AccountCreated { account, .. }
            | Change::Deposited { account, .. }
            | Change::Withdrawn { account, .. }
            | Change::Opened { account, .. }
            | Change::Closed { account, .. }
            | Change::MarginAdded { account, .. }
            | Change::OrderPlaced { order: OrderView { account, .. } }
            | Change::OrderEnded { account, .. }
            | Change::TriggersSet { account, .. }
            | Change::TrailingStopSet { account, .. }
            | Change::Financed { account, .. }
            | Change::MarketChanged { by: account, .. }
            | Change::RoleSet { account, .. }
            | Change::MarginCall { account, .. }
            | Change::GroupSet { account, .. }
            | Change::Charged { account, .. }
            | Change::GroupTermsSet { by: account, .. }
            | Change::MarginModeSet { account, .. }
            | Change::MarginMoved { account, .. }
            | Change::AccountMarginCall { account, .. }
            | Change::StopOut { account, .. }
            | Change::Explained { account, .. }
            | Change::SourceQuotes { account, .. }
            | Change::PositionModeSet { account, .. }
            | Change::Increased { account, .. }
            | Change::ApiKeyCreated { key: crate::view::ApiKeyView { account, .. } }
            | Change::ApiKeyRevoked { account, .. }
            | Change::OrderAmended { order: OrderView { account, .. }, .. }
            | Change::CancelScheduled { account, .. }
            | Change::CancelScheduleFired { account, .. }
            | Change::SessionOpened { session: crate::view::SessionView { account, .. } }
            | Change::SessionsRevoked { account, .. }
            | Change::PasswordChanged { account }
            | Change::TotpEnrolled { account }
            | Change::CodeSpent { account, .. }
            | Change::AccountControlled { account, .. }
            | Change::CreditLost { account, .. } => Some(account),
            Change::Checkpoint | Change::PriceApplied { .. } => None,
        }
    }
}

pub use crate::limits::CHECKPOINT_EVERY;

/// One out-ring entry.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
pub enum Output {
    /// An empty slot (the ring factory's default).
    #[default]
    Empty,
    /// The one reply to a request.
    Reply {
        /// The request.
        request_id: RequestId,
        /// Accepted with data, or rejected with a reason.
        result: Result<ReplyData, Reason>,
        /// The engine's sequence when it answered: for a state-changing command, its own. A
        /// read model whose cursor has reached it holds this command's changes (read-your-
        /// writes for the history routes).
        seq: u64,
    },
    /// One element of a list reply, before the reply itself.
    Item {
        /// The request.
        request_id: RequestId,
        /// The element.
        item: Item,
    },
    /// An unsolicited event.
    Event(Event),
    /// A state change, for read models.
    Change(ChangeRecord),
}

/// Where [`crate::Engine::apply`] writes its outputs. Implemented for `Vec<Output>` and by the
/// processor for the out-ring, so the same code path runs in tests and on the engine thread.
pub trait Sink {
    /// Emits one output.
    fn emit(&mut self, output: Output);
}

impl Sink for Vec<Output> {
    fn emit(&mut self, output: Output) {
        self.push(output);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_are_snake_case_unique_and_round_trip() {
        let mut seen = std::collections::HashSet::new();
        for &r in Reason::ALL {
            assert!(r.code().bytes().all(|b| b.is_ascii_lowercase() || b == b'_'), "{r:?}");
            assert!(seen.insert(r.code()), "duplicate {}", r.code());
            assert_eq!(Reason::from_code(r.code()), Some(r));
        }
        assert_eq!(Reason::from_code("nope"), None);
    }

    #[test]
    fn slot_size_is_bounded() {
        assert!(std::mem::size_of::<Output>() <= 256, "{}", std::mem::size_of::<Output>());
    }
}
