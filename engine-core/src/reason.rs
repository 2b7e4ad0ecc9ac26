//! Why a command was rejected ([`Reason`], whose codes are stable API) and why a position
//! closed ([`CloseReason`]). Below every output type: replies, views and events name them.

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
    /// A source quote names a source the market does not have (`sources` in its configuration).
    UnknownSource => "unknown_source",
    /// An operator named a client group that is not configured.
    UnknownGroup => "unknown_group",
    /// The open (or the order's fill) would take its side's open quantity past the market's
    /// `open_interest_cap_steps`.
    OpenInterestCap => "open_interest_cap",
    /// The open (or the order's fill) would take the difference between longs and shorts past
    /// the market's `skew_cap_steps`, and make it larger.
    SkewCap => "skew_cap",
    /// The leverage is above what the position's notional bracket allows (the market's
    /// `brackets`).
    LeverageAboveBracket => "leverage_above_bracket",
    /// The account holds open positions or pending orders: its margin mode cannot change.
    PositionsOpen => "positions_open",
    /// No such API key (never created, or revoked).
    UnknownApiKey => "unknown_api_key",
    /// The API key's expiry has passed.
    ApiKeyExpired => "api_key_expired",
    /// Another key already has this public key.
    ApiKeyExists => "api_key_exists",
    /// The account holds `max_api_keys_per_account` keys (or the engine `max_api_keys`).
    TooManyApiKeys => "too_many_api_keys",
    /// The session was signed out (or expired, or never existed): sign in again.
    UnknownSession => "unknown_session",
    /// Every session the engine holds is taken (`max_sessions`).
    SessionCapacity => "session_capacity",
    /// A one-time code (TOTP step or recovery code) that is not valid now, or was used.
    InvalidTotp => "invalid_totp",
    /// Two-factor sign-in is already on (disable it first), or not on (enrol first).
    TotpState => "totp_state",
    /// An operator suspended the account: it may query, sign in and out, nothing else.
    AccountSuspended => "account_suspended",
    /// An operator set the account close-only: nothing that opens exposure.
    AccountCloseOnly => "account_close_only",
    /// An operator's action on an account without its reason.
    ReasonRequired => "reason_required",
    /// An operator may not move money into or out of their own account.
    OwnAccount => "own_account",
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
    /// Closed by its cross account's stop-out (the most losing position first).
    StopOut,
    /// Reduced or closed by an opposite order in a netting account.
    Netted,
}

impl CloseReason {
    /// `"manual"`, `"take_profit"`, `"stop_loss"`, `"trailing_stop"`, `"liquidation"`,
    /// `"stop_out"`, `"netted"`.
    pub const fn as_str(self) -> &'static str {
        match self {
            CloseReason::Manual => "manual",
            CloseReason::TakeProfit => "take_profit",
            CloseReason::StopLoss => "stop_loss",
            CloseReason::TrailingStop => "trailing_stop",
            CloseReason::Liquidation => "liquidation",
            CloseReason::StopOut => "stop_out",
            CloseReason::Netted => "netted",
        }
    }
}

/// What fired a close or a margin call.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Trigger {
    /// The take-profit price was reached.
    TakeProfit,
    /// The stop-loss price was reached.
    StopLoss,
    /// The trailing stop was reached.
    TrailingStop,
    /// The liquidation price was reached (or financing took the margin past it).
    Liquidation,
    /// The margin-call price was reached.
    MarginCall,
    /// The account's stop-out.
    StopOut,
}

impl Trigger {
    /// `"take_profit"`, `"stop_loss"`, `"trailing_stop"`, `"liquidation"`, `"margin_call"`,
    /// `"stop_out"`.
    pub const fn as_str(self) -> &'static str {
        match self {
            Trigger::TakeProfit => "take_profit",
            Trigger::StopLoss => "stop_loss",
            Trigger::TrailingStop => "trailing_stop",
            Trigger::Liquidation => "liquidation",
            Trigger::MarginCall => "margin_call",
            Trigger::StopOut => "stop_out",
        }
    }
}
