//! Outputs: what the engine writes to the out-ring. Fixed-size, `Copy`, no heap.
//!
//! Every command with a request id gets exactly one [`Output::Reply`]. List queries first emit one
//! [`Output::Item`] per element with the same request id. Unsolicited events
//! ([`Output::Event`]) report what the engine did on its own: TP/SL/liquidation closes, bad debt,
//! rejected prices.

use crate::command::{
    AccountId, Credential, MarketId, OrderId, OrderKind, PositionId, PositionStatus, RequestId,
    Size, TrailDistance,
};
use crate::math::Side;
use crate::num::{Price, Qty, Usdc};

/// Declares [`Reason`], its stable codes and the list of all of them from one table, so a
/// variant cannot be added without its code (the three were written out by hand).
macro_rules! reasons {
    ($( $(#[$meta:meta])* $variant:ident => $code:literal, )*) => {
        /// Why a command was rejected. The codes ([`Reason::code`]) are stable API.
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
        #[serde(rename_all = "snake_case")]
        pub enum Reason {
            $( $(#[$meta])* $variant, )*
        }

        impl Reason {
            /// Every reason, for lookups by code.
            pub const ALL: &'static [Reason] = &[ $(Reason::$variant,)* ];

            /// The stable snake_case code.
            pub const fn code(self) -> &'static str {
                match self { $(Reason::$variant => $code,)* }
            }
        }
    };
}

reasons! {
    /// The market id is not configured.
    UnknownMarket => "unknown_market",
    /// No such account.
    UnknownAccount => "unknown_account",
    /// No such position, or it belongs to another account.
    UnknownPosition => "unknown_position",
    /// The position is already closed.
    PositionClosed => "position_closed",
    /// An amount is zero, negative or above the engine's maximum.
    InvalidAmount => "invalid_amount",
    /// Leverage is 0 or above the market's maximum.
    InvalidLeverage => "invalid_leverage",
    /// Quantity is zero, negative, above the limit or above the position's quantity.
    InvalidQuantity => "invalid_quantity",
    /// The resulting quantity is below the market's minimum.
    QuantityTooSmall => "quantity_too_small",
    /// The margin is below the market's minimum.
    MarginTooSmall => "margin_too_small",
    /// Available balance does not cover margin + fee (or the withdrawal).
    InsufficientBalance => "insufficient_balance",
    /// The position would be liquidatable at the current price.
    WouldLiquidate => "would_liquidate",
    /// No price has been received for the market.
    NoPrice => "no_price",
    /// The latest price is older than `max_price_age`.
    StalePrice => "stale_price",
    /// The fill price is worse than `expected_price` by more than `max_slippage_bps`.
    SlippageExceeded => "slippage_exceeded",
    /// Take-profit not on the profitable side of the fill.
    InvalidTakeProfit => "invalid_take_profit",
    /// Stop-loss not on the losing side of the fill.
    InvalidStopLoss => "invalid_stop_loss",
    /// Another account already has this login.
    DuplicateLogin => "duplicate_login",
    /// Empty login.
    InvalidLogin => "invalid_login",
    /// The account holds `max_positions_per_account` open positions.
    TooManyPositions => "too_many_positions",
    /// The engine holds `max_open_positions`.
    PositionCapacity => "position_capacity",
    /// The engine holds `max_accounts`.
    AccountCapacity => "account_capacity",
    /// A price is <= 0 or the ask is below the bid.
    InvalidPrice => "invalid_price",
    /// A price is above the market's `max_price_ticks`.
    PriceOutOfRange => "price_out_of_range",
    /// A tick's update id is not greater than the last applied one.
    StaleUpdate => "stale_update",
    /// A value overflowed the engine's representation.
    Overflow => "overflow",
    /// The command is malformed (e.g. a no-op with a request id).
    InvalidRequest => "invalid_request",
    /// This account already used the `client_order_id` for a different open.
    ClientOrderIdReused => "client_order_id_reused",
    /// This account already used the idempotency key for a different request.
    IdempotencyKeyReused => "idempotency_key_reused",
    /// The request id was already applied to a different command (nothing applied now).
    RequestIdReused => "request_id_reused",
    /// No such pending order of this account (never placed, filled, cancelled or expired).
    UnknownOrder => "unknown_order",
    /// A limit not on the better side of the current price, or a stop not on the worse side:
    /// it would fill at once (open a position instead).
    InvalidOrderPrice => "invalid_order_price",
    /// A good-till-time order whose expiry is not after the command's time.
    InvalidExpiry => "invalid_expiry",
    /// The account holds `max_orders_per_account` pending orders.
    TooManyOrders => "too_many_orders",
    /// The engine holds `max_pending_orders`.
    OrderCapacity => "order_capacity",
    /// A trailing distance of zero, above 50 % (5000 bps), or at least the mark itself.
    InvalidTrailingStop => "invalid_trailing_stop",
    /// Financing for this period (or a later one) was already charged on this market.
    FinancingAlreadyCharged => "financing_already_charged",
    /// The market is halted: no opens and no new orders.
    MarketHalted => "market_halted",
    /// The market is reduce-only: no opens and no new orders.
    MarketReduceOnly => "market_reduce_only",
    /// The account does not hold the operator role.
    NotAdmin => "not_admin",
    /// The deposit (or sign-up credit) would take the money all accounts hold past the engine's
    /// ceiling (`config::MAX_AMOUNT`, 10^12 USDC).
    BalanceLimit => "balance_limit",
}

impl Reason {
    /// The reason with this code.
    pub fn from_code(code: &str) -> Option<Reason> {
        Reason::ALL.iter().copied().find(|r| r.code() == code)
    }
}

impl std::fmt::Display for Reason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.code())
    }
}

/// Why a position was closed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CloseReason {
    /// By its owner.
    Manual,
    /// Take-profit triggered.
    TakeProfit,
    /// Stop-loss triggered.
    StopLoss,
    /// Trailing stop triggered.
    TrailingStop,
    /// Liquidated.
    Liquidation,
}

impl CloseReason {
    /// `"manual"`, `"take_profit"`, `"stop_loss"`, `"trailing_stop"`, `"liquidation"`.
    pub const fn as_str(self) -> &'static str {
        match self {
            CloseReason::Manual => "manual",
            CloseReason::TakeProfit => "take_profit",
            CloseReason::StopLoss => "stop_loss",
            CloseReason::TrailingStop => "trailing_stop",
            CloseReason::Liquidation => "liquidation",
        }
    }
}

/// How a position (or a closed part of it) ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct CloseInfo {
    /// The mark it closed at (the tick's bid for a long, ask for a short).
    pub exit_price: Price,
    /// PnL of the closed quantity at the exit price, rounded toward -infinity, before fees.
    pub realized_pnl: Usdc,
    /// Close fee (to the house) or liquidation fee (to the insurance fund).
    pub fee: Usdc,
    /// What the trader received: margin released + PnL - fee, floored at 0.
    pub payout: Usdc,
    /// Why.
    pub reason: CloseReason,
    /// Receive time of the command that closed it.
    pub closed_at_ns: u64,
    /// The position this closed: the view's own id for a full close or a liquidation; for a
    /// partial close, the position that stays open (the closed part has an id of its own, so a
    /// closed list never shows one id twice).
    pub position: PositionId,
}

/// A position as the API shows it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct PositionView {
    /// Id.
    pub id: PositionId,
    /// Owner.
    pub account: AccountId,
    /// Market.
    pub market: MarketId,
    /// Side.
    pub side: Side,
    /// Open, or closed (`close` is set).
    pub status: PositionStatus,
    /// Quantity (for a closed part: the quantity closed).
    pub quantity: Qty,
    /// Fill price at open.
    pub entry_price: Price,
    /// Locked margin (for a closed part: the margin released).
    pub margin: Usdc,
    /// Leverage chosen at open.
    pub leverage: u32,
    /// The price at which the engine liquidates it; 0 means never (a long at 1x).
    pub liquidation_price: Price,
    /// Take-profit trigger.
    pub take_profit: Option<Price>,
    /// Stop-loss trigger.
    pub stop_loss: Option<Price>,
    /// The trailing stop, if set.
    pub trailing_stop: Option<Trailing>,
    /// Unrealized PnL at the current mark (0 when closed or no price).
    pub unrealized_pnl: Usdc,
    /// Receive time of the open command.
    pub opened_at_ns: u64,
    /// Set once closed.
    pub close: Option<CloseInfo>,
}

/// A pending entry order as the API shows it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct OrderView {
    /// Id.
    pub id: OrderId,
    /// Owner.
    pub account: AccountId,
    /// Market.
    pub market: MarketId,
    /// Side of the position it opens.
    pub side: Side,
    /// Limit or stop.
    pub kind: OrderKind,
    /// Trigger price.
    pub price: Price,
    /// Leverage.
    pub leverage: u32,
    /// Margin or quantity.
    pub size: Size,
    /// Take-profit of the position it opens.
    pub take_profit: Option<Price>,
    /// Stop-loss of the position it opens.
    pub stop_loss: Option<Price>,
    /// Expiry (command time, ns); `None`: good till cancelled.
    pub expires_at_ns: Option<u64>,
    /// Margin plus open fee held for it (computed at the order's price).
    pub reserved: Usdc,
    /// Receive time of the place command.
    pub placed_at_ns: u64,
}

/// A position's trailing stop as shown.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Trailing {
    /// How far behind the best mark since it was set.
    pub distance: TrailDistance,
    /// Where it stands now.
    pub stop_price: Price,
}

/// How a pending order ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OrderEnd {
    /// Its trigger was crossed and it opened this position.
    Filled(PositionId),
    /// Its owner cancelled it.
    Cancelled,
    /// A command arrived at or after its expiry.
    Expired,
    /// Its trigger was crossed but the open was refused at that moment (e.g. `would_liquidate`,
    /// `insufficient_balance`): cancelled with the reason.
    Rejected(Reason),
}

impl OrderEnd {
    /// `"filled"`, `"cancelled"`, `"expired"`, `"rejected"`.
    pub const fn as_str(self) -> &'static str {
        match self {
            OrderEnd::Filled(_) => "filled",
            OrderEnd::Cancelled => "cancelled",
            OrderEnd::Expired => "expired",
            OrderEnd::Rejected(_) => "rejected",
        }
    }
}

/// An account's balances.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct AccountView {
    /// Id.
    pub id: AccountId,
    /// Free balance.
    pub available: Usdc,
    /// Sum of open positions' margins.
    pub locked_margin: Usdc,
    /// Held for pending orders (their margin and open fee).
    pub order_margin: Usdc,
    /// Sum of open positions' uPnL at current marks.
    pub unrealized_pnl: Usdc,
    /// available + locked_margin + order_margin + unrealized_pnl.
    pub equity: Usdc,
    /// Open positions.
    pub open_positions: u32,
}

/// A market's latest price.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct MarketView {
    /// Market.
    pub market: MarketId,
    /// Latest bid (0 before the first tick).
    pub bid: Price,
    /// Latest ask (0 before the first tick).
    pub ask: Price,
    /// Update id of the latest tick.
    pub update_id: u64,
    /// Receive time of the latest tick (0 before the first).
    pub updated_at_ns: u64,
    /// Open, halted or reduce-only.
    pub mode: crate::command::MarketMode,
    /// Maximum leverage of new positions (operators may change it).
    pub max_leverage: u32,
    /// Maintenance margin rate of new positions (operators may change it).
    pub maintenance_margin_rate: crate::num::Ppm,
}

/// The state hash and the conservation totals.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct StateSummary {
    /// SHA-256 of the canonical state encoding.
    pub hash: [u8; 32],
    /// Σ deposits − Σ withdrawals.
    pub net_deposits: Usdc,
    /// Σ available.
    pub total_available: Usdc,
    /// Σ open margins.
    pub total_margin: Usdc,
    /// Insurance fund.
    pub insurance_fund: Usdc,
    /// House balance.
    pub house_balance: Usdc,
    /// Accounts.
    pub accounts: u32,
    /// Open positions.
    pub open_positions: u32,
}

/// The data of an accepted command.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ReplyData {
    /// The new account.
    AccountCreated {
        /// Its id.
        account: AccountId,
    },
    /// Balances after a deposit, withdrawal or account query.
    Account(AccountView),
    /// The tick was applied.
    PriceApplied,
    /// The opened position (or, for a repeated client order id, the first result).
    Opened(PositionView),
    /// The closed part, as a closed position.
    Closed(PositionView),
    /// The position after adding margin, or a single-position query.
    Position(PositionView),
    /// End of a list; `count` items preceded it.
    List {
        /// Items emitted before this reply.
        count: u32,
    },
    /// Login lookup result.
    Credential {
        /// The account.
        account: AccountId,
        /// Its stored credential.
        credential: Credential,
        /// It holds the operator role.
        admin: bool,
    },
    /// The operator role was granted or revoked.
    Role {
        /// The account.
        account: AccountId,
        /// Operator or not.
        admin: bool,
    },
    /// A market's mode and limits after an operator's change.
    Market(MarketView),
    /// The risk view's totals (its items precede it).
    Risk {
        /// Insurance fund.
        insurance_fund: Usdc,
        /// House balance.
        house_balance: Usdc,
        /// Open positions.
        open_positions: u32,
        /// Exposure items then at-risk items emitted.
        count: u32,
    },
    /// State hash and totals.
    State(StateSummary),
    /// The placed (or, for a repeated client order id, first-placed) or cancelled order.
    Order(OrderView),
    /// A financing charge was applied to a market.
    Financing {
        /// Market.
        market: MarketId,
        /// Period.
        period: u64,
        /// Positions charged or paid (swap-free accounts' are not counted).
        positions: u32,
        /// Net taken from traders (negative: paid to them).
        net: Usdc,
    },
    /// A snapshot was requested; the processor writes it after this command.
    SnapshotRequested,
}

/// An element of a list reply.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Item {
    /// A position.
    Position(PositionView),
    /// A market.
    Market(MarketView),
    /// A pending order.
    Order(OrderView),
    /// One market side's exposure (risk view).
    Exposure(Exposure),
    /// A position close to liquidation (risk view).
    AtRisk(AtRisk),
}

/// One side of one market, for operators.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Exposure {
    /// Market.
    pub market: MarketId,
    /// Side.
    pub side: Side,
    /// Open positions.
    pub positions: u32,
    /// Open interest: Σ quantity.
    pub open_interest: Qty,
    /// Σ quantity × mark, rounded up.
    pub notional: Usdc,
}

/// A position near its liquidation price, for operators.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct AtRisk {
    /// Position.
    pub position: PositionId,
    /// Owner.
    pub account: AccountId,
    /// Market.
    pub market: MarketId,
    /// Side.
    pub side: Side,
    /// Margin.
    pub margin: Usdc,
    /// Mark now.
    pub mark: Price,
    /// Liquidation price.
    pub liquidation_price: Price,
    /// How far the mark is from it, in basis points of the mark (rounded down).
    pub distance_bps: u64,
}

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
}

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
        /// Open fee (to the house).
        fee: Usdc,
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
        /// Close fee or liquidation fee.
        fee: Usdc,
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
            | Change::MarginCall { account, .. } => Some(account),
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
