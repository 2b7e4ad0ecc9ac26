//! Commands: what enters the in-ring. Fixed-size, `Copy`, no heap: a ring slot is written in place.
//!
//! Over 600 lines on purpose: the catalogue of every command the engine takes, one enum whose
//! variants carry their documented fields, with the ids and small types they use; split, a
//! reader would lose the one list that says what can enter the ring.

use crate::math::Side;
use crate::num::{Price, Qty, Usdc};

pub use crate::limits::MAX_ENCODED_BYTES;

/// Identifies a request; assigned by the adapter that accepted it. `RequestId::NONE` (0) asks for
/// no reply (fire-and-forget price ticks from a feed).
#[derive(
    Clone,
    Copy,
    Debug,
    Default,
    PartialEq,
    Eq,
    Hash,
    PartialOrd,
    Ord,
    serde::Serialize,
    serde::Deserialize,
)]
pub struct RequestId(pub u64);

impl RequestId {
    /// "Do not reply".
    pub const NONE: RequestId = RequestId(0);
}

/// Dense account id, assigned by the engine in creation order (1, 2, ...).
#[derive(
    Clone,
    Copy,
    Debug,
    Default,
    PartialEq,
    Eq,
    Hash,
    PartialOrd,
    Ord,
    serde::Serialize,
    serde::Deserialize,
)]
pub struct AccountId(pub u32);

impl AccountId {
    /// The id of the account at 0-based index `i` in the engine's table (ids start at 1).
    pub(crate) fn at(i: usize) -> AccountId {
        AccountId(u32::try_from(i + 1).expect("account ids fit u32"))
    }
}

/// Dense market id: the index of the market in [`crate::config::EngineConfig::markets`].
#[derive(
    Clone,
    Copy,
    Debug,
    Default,
    PartialEq,
    Eq,
    Hash,
    PartialOrd,
    Ord,
    serde::Serialize,
    serde::Deserialize,
)]
pub struct MarketId(pub u16);

/// One of a market's price sources (venues), 0-based, below [`crate::limits::SOURCES_MAX`].
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize,
)]
pub struct SourceId(pub u8);

/// Position id, assigned by the engine in open order (1, 2, ...). A partial close keeps the id.
#[derive(
    Clone,
    Copy,
    Debug,
    Default,
    PartialEq,
    Eq,
    Hash,
    PartialOrd,
    Ord,
    serde::Serialize,
    serde::Deserialize,
)]
pub struct PositionId(pub u64);

/// Pending-order id, assigned by the engine in placement order (1, 2, ...); its own sequence.
#[derive(
    Clone,
    Copy,
    Debug,
    Default,
    PartialEq,
    Eq,
    Hash,
    PartialOrd,
    Ord,
    serde::Serialize,
    serde::Deserialize,
)]
pub struct OrderId(pub u64);

/// A short string stored inline (no heap), at most `N` bytes of UTF-8.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct InlineStr<const N: usize> {
    len: u8,
    bytes: [u8; N],
}

impl<const N: usize> InlineStr<N> {
    /// Capacity in bytes.
    pub const CAPACITY: usize = N;

    /// The empty string.
    pub const fn empty() -> Self {
        InlineStr { len: 0, bytes: [0; N] }
    }

    /// Copies `s`; `None` if longer than `N` bytes (or than 255).
    pub fn new(s: &str) -> Option<Self> {
        if s.len() > N || s.len() > usize::from(u8::MAX) {
            return None;
        }
        let mut bytes = [0u8; N];
        bytes[..s.len()].copy_from_slice(s.as_bytes());
        Some(InlineStr { len: u8::try_from(s.len()).ok()?, bytes })
    }

    /// The string.
    pub fn as_str(&self) -> &str {
        // Constructed only from a `&str`, so the prefix is valid UTF-8; fall back to "" rather
        // than panic if a future constructor ever broke that.
        std::str::from_utf8(&self.bytes[..usize::from(self.len)]).unwrap_or("")
    }

    /// The bytes.
    pub fn as_bytes(&self) -> &[u8] {
        &self.bytes[..usize::from(self.len)]
    }

    /// Length in bytes.
    pub fn len(&self) -> usize {
        usize::from(self.len)
    }

    /// True if empty.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }
}

impl<const N: usize> Default for InlineStr<N> {
    fn default() -> Self {
        Self::empty()
    }
}

impl<const N: usize> serde::Serialize for InlineStr<N> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

impl<'de, const N: usize> serde::Deserialize<'de> for InlineStr<N> {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        InlineStr::new(&s)
            .ok_or_else(|| serde::de::Error::invalid_length(s.len(), &"a short string"))
    }
}

impl<const N: usize> std::fmt::Debug for InlineStr<N> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{:?}", self.as_str())
    }
}

/// A login (normalised email), at most 64 bytes.
pub type Login = InlineStr<64>;
/// An opaque credential (the adapter's password hash, e.g. an argon2id PHC string), at most 128 bytes.
pub type Credential = InlineStr<128>;
/// A client-chosen order id, unique per account, at most 36 bytes (fits a UUID).
pub type ClientOrderId = InlineStr<36>;

/// A caller's idempotency key (e.g. an HTTP `Idempotency-Key`): at most 36 bytes, remembered per
/// account (see [`crate::idempotency`]).
pub type IdempotencyKey = InlineStr<36>;

/// How big a position should be: exactly one of margin or quantity.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Size {
    /// Lock this margin; quantity = margin * leverage / price, rounded down.
    Margin(Usdc),
    /// Open this quantity; margin = quantity * price / leverage, rounded up.
    Quantity(Qty),
}

/// Parameters of an open-position command.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct OpenRequest {
    /// Owner.
    pub account: AccountId,
    /// Market.
    pub market: MarketId,
    /// Long or short.
    pub side: Side,
    /// Integer leverage, 1..=max_leverage.
    pub leverage: u32,
    /// Margin or quantity.
    pub size: Size,
    /// With `max_slippage_bps`: reject if the fill is worse than this by more than the slippage.
    pub expected_price: Option<Price>,
    /// Allowed slippage from `expected_price`, in basis points.
    pub max_slippage_bps: u32,
    /// Take-profit trigger price.
    pub take_profit: Option<Price>,
    /// Stop-loss trigger price.
    pub stop_loss: Option<Price>,
    /// Idempotency key: a repeat by the same account returns the first result.
    pub client_order_id: Option<ClientOrderId>,
}

impl OpenRequest {
    /// An open at the market price, with no slippage guard, no take-profit or stop-loss and no
    /// client order id; set those fields on the result where wanted:
    ///
    /// ```
    /// use engine_core::prelude::*;
    /// let size = Size::Margin(Usdc::from_whole(100));
    /// let req = OpenRequest::new(AccountId(1), MarketId(0), Side::Long, 10, size);
    /// let with_tp = OpenRequest { take_profit: Some(Price(7_000_000)), ..req };
    /// assert_eq!((with_tp.leverage, with_tp.stop_loss), (10, None));
    /// ```
    pub const fn new(
        account: AccountId,
        market: MarketId,
        side: Side,
        leverage: u32,
        size: Size,
    ) -> OpenRequest {
        OpenRequest {
            account,
            market,
            side,
            leverage,
            size,
            expected_price: None,
            max_slippage_bps: 0,
            take_profit: None,
            stop_loss: None,
            client_order_id: None,
        }
    }
}

/// When a pending entry order fills.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OrderKind {
    /// At a better price than now: a long when ask <= price, a short when bid >= price.
    Limit,
    /// At a worse price than now (a breakout): a long when ask >= price, a short when bid <= price.
    Stop,
}

impl OrderKind {
    /// `"limit"` / `"stop"`.
    pub const fn as_str(self) -> &'static str {
        match self {
            OrderKind::Limit => "limit",
            OrderKind::Stop => "stop",
        }
    }
}

/// Parameters of a pending entry order: an open that waits for its trigger price.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct OrderRequest {
    /// Owner.
    pub account: AccountId,
    /// Market.
    pub market: MarketId,
    /// The side of the position it opens.
    pub side: Side,
    /// Limit or stop.
    pub kind: OrderKind,
    /// Trigger price (for a limit, also the worst fill).
    pub price: Price,
    /// Integer leverage, 1..=max_leverage.
    pub leverage: u32,
    /// Margin or quantity, as for an open.
    pub size: Size,
    /// Take-profit of the position it opens.
    pub take_profit: Option<Price>,
    /// Stop-loss of the position it opens.
    pub stop_loss: Option<Price>,
    /// Good till this command time (ns; expired when a command at or after it arrives);
    /// `None`: good till cancelled.
    pub expires_at_ns: Option<u64>,
    /// Idempotency key (shares the account's window with open's client order ids).
    pub client_order_id: Option<ClientOrderId>,
}

/// A trailing stop's distance behind the best mark since it was set.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TrailDistance {
    /// In price ticks.
    Price(Price),
    /// In basis points of the best mark (the stop is rounded toward the mark: never further
    /// than asked).
    Bps(u32),
}

/// Whether a market takes new exposure.
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize,
)]
#[serde(rename_all = "snake_case")]
pub enum MarketMode {
    /// Normal trading.
    #[default]
    Open,
    /// Incident stop: no opens, no new orders, pending orders that trigger are cancelled
    /// (`market_halted`); closes, TP/SL, liquidations and margin additions go on.
    Halted,
    /// Wind-down: the same restrictions with `reduce_only`: positions may only be reduced.
    ReduceOnly,
}

impl MarketMode {
    /// The stricter of two modes: halted over reduce-only over open.
    pub const fn stricter(self, other: MarketMode) -> MarketMode {
        const fn rank(m: MarketMode) -> u8 {
            match m {
                MarketMode::Open => 0,
                MarketMode::ReduceOnly => 1,
                MarketMode::Halted => 2,
            }
        }
        if rank(other) > rank(self) { other } else { self }
    }

    /// `"open"`, `"halted"`, `"reduce_only"`.
    pub const fn as_str(self) -> &'static str {
        match self {
            MarketMode::Open => "open",
            MarketMode::Halted => "halted",
            MarketMode::ReduceOnly => "reduce_only",
        }
    }
}

/// Which positions a query lists.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PositionStatus {
    /// Open positions, ascending id.
    #[default]
    Open,
    /// Closed positions kept in history, newest first.
    Closed,
}

impl PositionStatus {
    /// `"open"` / `"closed"`.
    pub const fn as_str(self) -> &'static str {
        match self {
            PositionStatus::Open => "open",
            PositionStatus::Closed => "closed",
        }
    }
}

/// A price update for one market.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Tick {
    /// Market.
    pub market: MarketId,
    /// Best bid (longs are valued and closed here; shorts open here).
    pub bid: Price,
    /// Best ask (shorts are valued and closed here; longs open here).
    pub ask: Price,
    /// The exchange's update id; must increase.
    pub update_id: u64,
    /// The exchange's event time, in microseconds since the epoch (informational).
    pub exchange_time_us: u64,
}

/// What a command asks for.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CommandKind {
    /// An empty slot (the ring factory's default). Ignored.
    #[default]
    Noop,
    /// Create an account; login must be unique.
    CreateAccount {
        /// Unique login.
        login: Login,
        /// Opaque credential.
        credential: Credential,
    },
    /// Credit `amount` to an account's available balance.
    Deposit {
        /// Account.
        account: AccountId,
        /// Positive amount.
        amount: Usdc,
        /// Idempotency key: a repeat by the same account returns the first result.
        key: Option<IdempotencyKey>,
    },
    /// Debit `amount` from an account's available balance.
    Withdraw {
        /// Account.
        account: AccountId,
        /// Positive amount, at most the available balance.
        amount: Usdc,
        /// Idempotency key: a repeat by the same account returns the first result.
        key: Option<IdempotencyKey>,
    },
    /// A new best bid/ask.
    PriceTick(Tick),
    /// Open a position.
    OpenPosition(OpenRequest),
    /// Close all or part of a position at the current mark.
    ClosePosition {
        /// Owner (a position of another account is `unknown_position`).
        account: AccountId,
        /// Position.
        position: PositionId,
        /// Part to close; `None` closes all.
        quantity: Option<CloseSize>,
        /// Idempotency key: a repeat by the same account returns the first result.
        key: Option<IdempotencyKey>,
    },
    /// Move `amount` from available balance into a position's margin.
    AddMargin {
        /// Owner.
        account: AccountId,
        /// Position.
        position: PositionId,
        /// Positive amount.
        amount: Usdc,
        /// Idempotency key: a repeat by the same account returns the first result.
        key: Option<IdempotencyKey>,
    },
    /// The account's balances.
    QueryAccount {
        /// Account.
        account: AccountId,
    },
    /// The account's positions: one item per position, then the reply.
    QueryPositions {
        /// Account.
        account: AccountId,
        /// Open or closed.
        status: PositionStatus,
    },
    /// One position (open or in history) of the account.
    QueryPosition {
        /// Owner.
        account: AccountId,
        /// Position.
        position: PositionId,
    },
    /// The account id and credential stored for a login (for sign-in).
    QueryCredential {
        /// Login.
        login: Login,
    },
    /// Every market's latest price: one item per market, then the reply.
    QueryMarkets,
    /// The canonical state hash and conservation check.
    QueryStateHash,
    /// Ask the processor to write a snapshot after this command (journaled like any other; the
    /// engine itself only acknowledges it).
    AdminSnapshot,
    // Added after the first release: new variants go last, so journals written before keep
    // their encoding.
    /// Place a pending entry order (limit or stop); reserves its margin and fee.
    PlaceOrder(OrderRequest),
    /// Cancel a pending order; releases its reservation.
    CancelOrder {
        /// Owner.
        account: AccountId,
        /// The order.
        order: OrderId,
        /// Idempotency key.
        key: Option<IdempotencyKey>,
    },
    /// Set, change or remove an open position's take-profit and stop-loss (both replaced).
    SetTriggers {
        /// Owner.
        account: AccountId,
        /// Position.
        position: PositionId,
        /// New take-profit (`None` removes it).
        take_profit: Option<Price>,
        /// New stop-loss (`None` removes it).
        stop_loss: Option<Price>,
        /// Idempotency key.
        key: Option<IdempotencyKey>,
    },
    /// Set, change or remove an open position's trailing stop: it closes the position when the
    /// mark falls `distance` behind the best mark since it was set.
    SetTrailingStop {
        /// Owner.
        account: AccountId,
        /// Position.
        position: PositionId,
        /// The distance (`None` removes the trailing stop).
        distance: Option<TrailDistance>,
        /// Idempotency key.
        key: Option<IdempotencyKey>,
    },
    /// Charge (or pay) financing for `period` to every open position of `market`: sent by the
    /// adapter's scheduler at each period boundary, so replaying the journal charges exactly
    /// the same. A period at or below the last one charged is refused (a redelivery never
    /// charges twice).
    ChargeFinancing {
        /// Market.
        market: MarketId,
        /// The period's number (e.g. seconds since the epoch / period length).
        period: u64,
    },
    /// Grant or revoke the operator role. Issued only by the `hundredx admin` command line
    /// (journaled like any command), never by the public API.
    SetRole {
        /// The account's login.
        login: Login,
        /// Operator or not.
        admin: bool,
    },
    /// An operator changes a market: its mode, and the maximum leverage and maintenance
    /// margin rate of positions opened from now on (open positions keep theirs).
    AdminSetMarket {
        /// The operator (refused with `not_admin` unless the account holds the role).
        by: AccountId,
        /// Market.
        market: MarketId,
        /// New mode.
        mode: Option<MarketMode>,
        /// New maximum leverage.
        max_leverage: Option<u32>,
        /// New maintenance margin rate.
        maintenance_margin_rate: Option<crate::num::Ppm>,
    },
    /// An operator's risk view: insurance fund and house balance (in the reply), exposure per
    /// market and side, then the `top` positions closest to liquidation (items).
    QueryRisk {
        /// The operator.
        by: AccountId,
        /// How many positions closest to liquidation, at most 100.
        top: u32,
    },
    /// The account's pending orders: one item per order, ascending id, then the reply.
    QueryOrders {
        /// Account.
        account: AccountId,
    },
    /// One price source's best bid/ask for a market with `sources` (docs/DESIGN.md, "Index
    /// price"): stored, and the market's index made again from every source's latest quote.
    /// The tick's update id is the source's own and must increase per source.
    SourceQuote {
        /// Which of the market's sources (0-based, below its `sources`).
        source: SourceId,
        /// The quote.
        tick: Tick,
    },
    /// Time passes for the price guards: every market with sources checks which are still
    /// fresh (a feed sends one every half second, so a market whose sources all fall silent is
    /// guarded although no quote arrives).
    SourceCheck,
    /// An operator moves an account to another client group (docs/DESIGN.md, "Client groups"):
    /// its markup and commission from its next command.
    AdminSetGroup {
        /// The operator (refused with `not_admin` unless the account holds the role).
        by: AccountId,
        /// The account's login.
        login: Login,
        /// The group's index in the configuration's `groups`.
        group: u16,
    },
    /// An operator changes a client group's terms on one market (from the next command; open
    /// positions are charged the new terms when they close).
    AdminSetGroupTerms {
        /// The operator.
        by: AccountId,
        /// The group's index.
        group: u16,
        /// Market.
        market: MarketId,
        /// New markup a side, in price ticks (0..=max_price_ticks / 2).
        markup_ticks: Option<i64>,
        /// New commission on the notional (0..0.1).
        commission_rate: Option<crate::num::Ppm>,
        /// New leverage cap (1..; above the market's: the market's).
        max_leverage: Option<u32>,
    },
    /// What the account pays per market by its client group: one `Item::Terms` per market,
    /// then `ReplyData::Group` naming the group.
    QueryTerms {
        /// Account.
        account: AccountId,
    },
    /// An operator edits any of a client group's terms on one market (from the next command;
    /// open positions are charged the new terms when they close, financed at the new rates at
    /// the next period). Supersedes `AdminSetGroupTerms`, which old journals still hold.
    AdminEditGroup {
        /// The operator.
        by: AccountId,
        /// The group's index.
        group: u16,
        /// Market.
        market: MarketId,
        /// What changes.
        edit: GroupEdit,
    },
    /// The account chooses how its positions are margined (docs/DESIGN.md, "Cross margin"):
    /// refused with `positions_open` while it holds open positions or pending orders.
    SetMarginMode {
        /// Account.
        account: AccountId,
        /// Isolated (each position on its own margin) or cross (the whole account).
        mode: MarginMode,
    },
    /// The account chooses how its orders meet its positions (docs/DESIGN.md, "Netting"):
    /// refused with `positions_open` while it holds open positions or pending orders.
    SetPositionMode {
        /// Account.
        account: AccountId,
        /// Hedging (every order opens a position of its own) or netting (one position per
        /// market, which an opposite order reduces, closes or reverses).
        mode: PositionMode,
    },
    /// The account's position mode: `ReplyData::PositionMode`.
    QueryPositionMode {
        /// Account.
        account: AccountId,
    },
    /// A signed-in user adds an API key (docs/DESIGN.md, "API keys"): its Ed25519 public key,
    /// scopes, allowed networks and expiry.
    CreateApiKey(NewApiKey),
    /// Revokes one of the account's API keys (effective for the next request that names it).
    RevokeApiKey {
        /// Owner.
        account: AccountId,
        /// The key.
        key: KeyId,
    },
    /// The account's API keys: one `Item::ApiKey` each, then `ReplyData::ApiKeys`.
    QueryApiKeys {
        /// Account.
        account: AccountId,
    },
    /// The key with this public key, as it stands at the command's time: `ReplyData::ApiKey`,
    /// `unknown_api_key` (none, or revoked) or `api_key_expired`.
    QueryApiKey {
        /// Its Ed25519 public key.
        public_key: [u8; 32],
    },
    /// Cancels every pending order of the account, or of one market (docs/DESIGN.md, "Safety
    /// controls"): an `Item::Order` for each, then `ReplyData::Bulk`.
    CancelAllOrders {
        /// Owner.
        account: AccountId,
        /// Only this market's (`None`: every market's).
        market: Option<MarketId>,
        /// Idempotency key.
        key: Option<IdempotencyKey>,
    },
    /// Closes every open position of the account, or of one market, at its mark: an
    /// `Item::Position` for each closed one, then `ReplyData::Bulk` (one that cannot close now
    /// — no fresh price — is counted as failed, with the first reason; the others close).
    CloseAllPositions {
        /// Owner.
        account: AccountId,
        /// Only this market's (`None`: every market's).
        market: Option<MarketId>,
        /// Idempotency key.
        key: Option<IdempotencyKey>,
    },
    /// Changes a pending order in place: it keeps its id; its reservation is made again for
    /// the new terms, checked as a new order would be. Refused: nothing changes.
    AmendOrder {
        /// Owner.
        account: AccountId,
        /// The order.
        order: OrderId,
        /// What changes.
        edit: OrderEdit,
        /// Idempotency key.
        key: Option<IdempotencyKey>,
    },
    /// The dead-man's switch: every pending order of the account is cancelled by the first
    /// command at or after `after_ms` from this one's time, unless renewed (sent again) or
    /// disarmed (`None`) before. `ReplyData::CancelSchedule`.
    ScheduleCancel {
        /// Owner.
        account: AccountId,
        /// Milliseconds from now (`limits::CANCEL_AFTER_MS_MIN..=MAX`); `None` disarms.
        after_ms: Option<u32>,
    },
    /// A sign-in (docs/DESIGN.md, "Sessions"): the adapter checked the password; the engine
    /// records the session, whose id its tokens carry. `ReplyData::Session`.
    OpenSession(NewSession),
    /// Signs sessions out: their tokens are refused from the next request on, on every api
    /// instance. `ReplyData::SessionsRevoked`.
    RevokeSessions {
        /// Owner.
        account: AccountId,
        /// Which.
        scope: SessionScope,
    },
    /// A new password (the adapter checked the old one): every other session is signed out.
    ChangePassword {
        /// Owner.
        account: AccountId,
        /// The new credential (the adapter's hash).
        credential: Credential,
        /// The session that changed it (kept).
        keep: SessionId,
    },
    /// The account's live sessions: one `Item::Session` each, then `ReplyData::Sessions`.
    QuerySessions {
        /// Owner.
        account: AccountId,
    },
    /// Starts a two-factor enrolment (docs/DESIGN.md, "Two-factor sign-in"): pending until a
    /// code confirms it (`SpendCode` with `TotpUse::Confirm`); refused `totp_state` while on.
    EnrolTotp {
        /// Owner.
        account: AccountId,
        /// The secret and the recovery codes' hashes.
        enrolment: TotpEnrolment,
    },
    /// Spends a one-time code the adapter checked: a TOTP step above the last one spent, or an
    /// unused recovery code; `Confirm` turns the pending enrolment on, `Disable` turns it off.
    /// `ReplyData::Totp`, or `invalid_totp` (nothing spent).
    SpendCode {
        /// Owner.
        account: AccountId,
        /// The code.
        code: OneTimeCode,
        /// What for.
        purpose: TotpUse,
    },
    /// The account's two-factor state and secret (for the adapter to check a code):
    /// `ReplyData::Totp`.
    QueryTotp {
        /// Owner.
        account: AccountId,
    },
    /// The credential stored for an account (a password change checks the old password):
    /// `ReplyData::Credential`.
    QueryCredentialOf {
        /// The account.
        account: AccountId,
    },
    /// One live session of the account at the command's time: `ReplyData::Session` or
    /// `unknown_session`.
    QuerySession {
        /// Owner.
        account: AccountId,
        /// The session.
        session: SessionId,
    },
    /// An operator's action on one account (docs/DESIGN.md, "Account controls"), with its
    /// reason: `ReplyData::Controls` with the account's controls after it.
    AdminAccount {
        /// The operator.
        by: AccountId,
        /// The account acted on.
        account: AccountId,
        /// What.
        action: crate::desk::AccountAction,
        /// Why (required).
        note: Note,
    },
    /// An account's status, credit and group: `ReplyData::Controls`.
    QueryControls {
        /// The account.
        account: AccountId,
    },
    /// The house's lines and the book's size in O(1), for monitoring: `ReplyData::Book`.
    QueryBook,
    /// Every source's latest quote on `market` (an `Item::SourceQuote` each, then
    /// `ReplyData::List`): the index against each venue, for operators' screens.
    QuerySources {
        /// The market.
        market: MarketId,
    },
    /// A client group's terms on every market (an `Item::Terms` each, as `QueryTerms` gives
    /// an account of the group), then `ReplyData::Group` with account 0. Operators only.
    QueryGroupTerms {
        /// The operator.
        by: AccountId,
        /// The group.
        group: u16,
    },
}

/// A session's id (engine-assigned, increasing): the `sid` of its tokens.
#[derive(
    Clone,
    Copy,
    Debug,
    Default,
    PartialEq,
    Eq,
    Hash,
    PartialOrd,
    Ord,
    serde::Serialize,
    serde::Deserialize,
)]
pub struct SessionId(pub u64);

/// Where and with what a session signed in (for its owner's list): the client's address and
/// the start of its `User-Agent`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct SessionClient {
    /// The address's octets (IPv4: the first 4, the rest 0).
    pub addr: [u8; 16],
    /// IPv6.
    pub v6: bool,
    /// The first 48 bytes of its `User-Agent` (cut at a character boundary).
    pub agent: InlineStr<48>,
}

/// A new session, after its password (and second factor) were checked by the adapter.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct NewSession {
    /// Owner.
    pub account: AccountId,
    /// When its tokens stop working (command time, ns; after the command's).
    pub expires_at_ns: u64,
    /// Where it signed in from.
    pub client: SessionClient,
}

/// Which of an account's sessions a sign-out ends.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SessionScope {
    /// This one.
    One(SessionId),
    /// Every one but this (the caller's).
    Others(SessionId),
    /// Every one.
    All,
}

impl SessionScope {
    /// Does this sign-out end session `id` (of the account it names)?
    pub fn ends(self, id: SessionId) -> bool {
        match self {
            SessionScope::One(one) => one == id,
            SessionScope::Others(keep) => keep != id,
            SessionScope::All => true,
        }
    }
}

/// Most recovery codes a two-factor enrolment holds.
pub const RECOVERY_CODES: usize = 10;

/// A recovery code as the engine keeps it: the first 16 bytes of its SHA-256 (a code is random,
/// about 50 bits: 128 bits of its hash leave nothing to search; 16 bytes keep the enrolment
/// command within a ring slot).
pub type RecoveryHash = [u8; 16];

/// A two-factor enrolment (RFC 6238 TOTP), made by the adapter: the shared secret (the engine
/// keeps it to hand back for checks: it never computes codes) and each recovery code's hash
/// (the codes themselves are shown once to the user and kept nowhere).
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct TotpEnrolment {
    /// The TOTP secret (160 bits, RFC 4226's recommendation).
    pub secret: [u8; 20],
    /// Each recovery code's hash.
    pub recovery: [RecoveryHash; RECOVERY_CODES],
}

/// A one-time code the adapter checked against the secret, for the engine to spend once.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OneTimeCode {
    /// A TOTP code that matched this time step (30 s): spent if above the last step spent.
    Step(u64),
    /// A recovery code's hash: spent if it is one of the account's unused ones.
    Recovery(RecoveryHash),
}

/// What a one-time code is spent on (kept in the change for the account's audit trail).
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TotpUse {
    /// Turning two-factor sign-in on (the pending enrolment's first code).
    Confirm,
    /// A sign-in.
    SignIn,
    /// Creating an API key.
    CreateKey,
    /// A withdrawal.
    Withdraw,
    /// Turning two-factor sign-in off.
    Disable,
}

/// An amendment of a pending order: what is `None` is kept.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct OrderEdit {
    /// New trigger price.
    pub price: Option<Price>,
    /// New size (margin or quantity).
    pub size: Option<Size>,
    /// New expiry (`Some(None)`: good till cancelled).
    pub expires_at_ns: Option<Option<u64>>,
    /// New take-profit (`Some(None)` removes it).
    pub take_profit: Option<Option<Price>>,
    /// New stop-loss (`Some(None)` removes it).
    pub stop_loss: Option<Option<Price>>,
}

/// An API key's id (engine-assigned, increasing).
#[derive(
    Clone,
    Copy,
    Debug,
    Default,
    PartialEq,
    Eq,
    Hash,
    PartialOrd,
    Ord,
    serde::Serialize,
    serde::Deserialize,
)]
pub struct KeyId(pub u64);

/// An API key's label.
pub type KeyLabel = InlineStr<32>;

/// Why an operator acted on an account: required, at most 120 bytes of UTF-8, kept in the
/// journal and shown in the audit log.
pub type Note = InlineStr<120>;

/// What an API key may do (bits of [`KeyScopes::READ`], [`KeyScopes::TRADE`],
/// [`KeyScopes::WITHDRAW`]).
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize,
)]
pub struct KeyScopes(pub u8);

impl KeyScopes {
    /// Read balances, positions, orders, history.
    pub const READ: u8 = 1;
    /// Open, close, place, amend and cancel.
    pub const TRADE: u8 = 2;
    /// Withdraw (never on unless asked for).
    pub const WITHDRAW: u8 = 4;

    /// Holds every bit of `scope`.
    pub const fn allows(self, scope: u8) -> bool {
        self.0 & scope == scope
    }
}

/// A client network an API key may be used from: `addr/prefix`.
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize,
)]
pub struct Network {
    /// The network's address, its octets in order (IPv4: the first 4, the rest 0).
    pub addr: [u8; 16],
    /// Its prefix length (at most 32 for IPv4, 128 for IPv6).
    pub prefix: u8,
    /// IPv6.
    pub v6: bool,
}

/// Most networks an API key may name.
pub const KEY_NETWORKS_MAX: usize = 4;

/// A new API key.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct NewApiKey {
    /// Owner.
    pub account: AccountId,
    /// Its Ed25519 public key (the client keeps the private key).
    pub public_key: [u8; 32],
    /// A label for its owner.
    pub label: KeyLabel,
    /// What it may do (at least one scope).
    pub scopes: KeyScopes,
    /// The client networks it may be used from (none: any).
    pub networks: [Option<Network>; KEY_NETWORKS_MAX],
    /// When it stops working (`None`: never).
    pub expires_at_ns: Option<u64>,
}

/// How an account's orders meet its positions.
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize,
)]
#[serde(rename_all = "snake_case")]
pub enum PositionMode {
    /// Every order opens a position of its own; both sides may be held at once.
    #[default]
    Hedging,
    /// One position per market: an order on its side adds to it (at the weighted average
    /// entry), an opposite order reduces it, closes it, or closes it and opens the rest on
    /// the other side.
    Netting,
}

impl PositionMode {
    /// `"hedging"` / `"netting"`.
    pub const fn as_str(self) -> &'static str {
        match self {
            PositionMode::Hedging => "hedging",
            PositionMode::Netting => "netting",
        }
    }
}

/// How an account's positions are margined.
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize,
)]
#[serde(rename_all = "snake_case")]
pub enum MarginMode {
    /// Each position stands on its own margin and is liquidated at its own price.
    #[default]
    Isolated,
    /// The account's balance and every position's margin and PnL defend each other; the
    /// account is stopped out, most losing position first, when its margin level falls to the
    /// stop-out level.
    Cross,
}

impl MarginMode {
    /// `"isolated"` / `"cross"`.
    pub const fn as_str(self) -> &'static str {
        match self {
            MarginMode::Isolated => "isolated",
            MarginMode::Cross => "cross",
        }
    }
}

/// An edit of a client group's terms on one market: what is `None` is kept. The ranges are
/// the configuration's (docs/DESIGN.md, "Client groups").
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct GroupEdit {
    /// Markup a side in price ticks (0..=max_price_ticks / 2).
    pub markup_ticks: Option<i64>,
    /// Markup a side in basis points of the price (0..=1000).
    pub markup_bps: Option<u32>,
    /// Commission on the notional (0..0.1).
    pub commission_rate: Option<crate::num::Ppm>,
    /// Commission per lot, one whole base unit (0..=1000 USDC).
    pub commission_per_lot: Option<Usdc>,
    /// Leverage cap (1..; above the market's: the market's).
    pub max_leverage: Option<u32>,
    /// Financing per period on a long (-0.01..=0.01); the other side, if not given, keeps the
    /// group's rate, else the market's.
    pub financing_long_rate: Option<crate::num::Ppm>,
    /// Financing per period on a short (-0.01..=0.01).
    pub financing_short_rate: Option<crate::num::Ppm>,
}

impl CommandKind {
    /// True for commands that never change business state (queries, snapshot requests): their
    /// replies are not remembered for request-id deduplication.
    pub const fn is_read_only(&self) -> bool {
        matches!(
            self,
            CommandKind::Noop
                | CommandKind::QueryAccount { .. }
                | CommandKind::QueryOrders { .. }
                | CommandKind::QueryRisk { .. }
                | CommandKind::QueryPositions { .. }
                | CommandKind::QueryPosition { .. }
                | CommandKind::QueryCredential { .. }
                | CommandKind::QueryMarkets
                | CommandKind::QueryStateHash
                | CommandKind::AdminSnapshot
                | CommandKind::QueryTerms { .. }
                | CommandKind::QueryPositionMode { .. }
                | CommandKind::QueryApiKeys { .. }
                | CommandKind::QueryApiKey { .. }
                | CommandKind::QuerySessions { .. }
                | CommandKind::QuerySession { .. }
                | CommandKind::QueryCredentialOf { .. }
                | CommandKind::QueryTotp { .. }
                | CommandKind::QueryControls { .. }
                | CommandKind::QueryBook
                | CommandKind::QueryGroupTerms { .. }
                | CommandKind::QuerySources { .. }
        )
    }
}

/// How much of a position to close.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CloseSize {
    /// In the market's quantity steps.
    Steps(Qty),
    /// A decimal amount of the base asset as the trader wrote it; the engine converts it with the
    /// position's market (one round trip from the edge) and refuses it (`invalid_quantity`) if it
    /// is not a whole number of steps.
    Decimal(crate::num::ExactDecimal),
}

/// One in-ring entry.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
pub struct Command {
    /// Assigned by the adapter; echoed in the reply.
    pub request_id: RequestId,
    /// When the adapter received it, in nanoseconds since the epoch. The engine's only clock.
    pub ts_ns: u64,
    /// What to do.
    pub kind: CommandKind,
}

impl Command {
    /// A command.
    pub const fn new(request_id: RequestId, ts_ns: u64, kind: CommandKind) -> Command {
        Command { request_id, ts_ns, kind }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn inline_str_bounds() {
        assert_eq!(Login::new("a@b.c").map(|l| l.len()), Some(5));
        assert!(Login::new(&"x".repeat(64)).is_some());
        assert!(Login::new(&"x".repeat(65)).is_none());
        assert_eq!(ClientOrderId::new("ü").map(|c| c.as_str().to_owned()), Some("ü".into()));
    }

    #[test]
    fn slot_size_is_bounded() {
        // A ring slot is copied in place; keep it within a few cache lines.
        assert!(std::mem::size_of::<Command>() <= 256, "{}", std::mem::size_of::<Command>());
    }
}
