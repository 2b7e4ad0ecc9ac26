//! The API's bodies as types: every request body is parsed into one of these, every response
//! body is one of these, and the OpenAPI document is generated from them (utoipa), so the
//! document cannot drift from what is served. Decimals are strings (exact), ids are strings
//! (u64 does not survive JavaScript), times are milliseconds since the Unix epoch.
//!
//! Over 600 lines on purpose: some sixty small types, each a few lines with the documentation
//! the OpenAPI document shows; one file is the schema's table of contents.

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

// ----- requests -----

/// Sign-up and sign-in.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Credentials {
    /// An email address (trimmed, lower-cased), at most 64 bytes.
    #[schema(example = "trader@example.com")]
    pub email: String,
    /// 10 to 128 characters, at least 5 different ones.
    #[schema(example = "correct horse")]
    pub password: String,
}

/// A sign-in: the credentials, and the device token an earlier sign-in of this login returned.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SignIn {
    /// An email address (trimmed, lower-cased), at most 64 bytes.
    #[schema(example = "trader@example.com")]
    pub email: String,
    /// The password.
    #[schema(example = "correct horse")]
    pub password: String,
    /// The `device` of an earlier successful sign-in of this login (keep it with the client).
    /// With it the sign-in skips the per-login ceiling and hashes on a lane of its own, so a
    /// flood of guesses from many addresses cannot lock the owner out. Invalid, expired or
    /// another login's: ignored (the sign-in is treated as from a new device).
    #[serde(default)]
    pub device: Option<String>,
    /// With two-factor sign-in on: the authenticator's 6-digit code, or an unused recovery
    /// code (`totp_required` without one).
    #[serde(default)]
    pub totp: Option<String>,
}

/// A demo deposit or a withdrawal.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AmountBody {
    /// USDC, up to 6 decimals, > 0 (a string or a number).
    #[schema(value_type = String, example = "100.5")]
    pub amount: Dec,
    /// With two-factor sign-in on, a withdrawal needs a code: the authenticator's 6 digits or
    /// an unused recovery code.
    #[serde(default)]
    pub totp: Option<String>,
}

/// Open a position: exactly one of `margin` or `quantity`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct OpenBody {
    /// A configured market, e.g. `BTC_USDC`.
    #[schema(example = "BTC_USDC")]
    pub market: String,
    /// `long` or `short`.
    #[schema(value_type = Side, example = "long")]
    pub side: String,
    /// 1 to the market's `max_leverage`.
    #[schema(example = 10)]
    pub leverage: u64,
    /// Margin in USDC (the quantity is margin × leverage / fill price, rounded down).
    #[schema(value_type = Option<String>, example = "100")]
    pub margin: Option<Dec>,
    /// Quantity of the base asset, in the market's quantity decimals.
    #[schema(value_type = Option<String>)]
    pub quantity: Option<Dec>,
    /// With `max_slippage_bps`: refuse a fill worse than this by more than that.
    #[schema(value_type = Option<String>)]
    pub expected_price: Option<Dec>,
    /// 0..=10000, with `expected_price`.
    pub max_slippage_bps: Option<u32>,
    /// On the profitable side of the fill.
    #[schema(value_type = Option<String>)]
    pub take_profit: Option<Dec>,
    /// On the losing side of the fill.
    #[schema(value_type = Option<String>)]
    pub stop_loss: Option<Dec>,
    /// 1..=36 printable ASCII: a retry with the same id never opens twice.
    pub client_order_id: Option<String>,
}

/// Place a pending entry order: exactly one of `margin` or `quantity`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct OrderBody {
    /// A configured market, e.g. `BTC_USDC`.
    #[schema(example = "BTC_USDC")]
    pub market: String,
    /// `long` or `short`: the side of the position it opens.
    #[schema(value_type = Side, example = "long")]
    pub side: String,
    /// `limit` (fills at this price or better: a long when ask <= price, a short when
    /// bid >= price) or `stop` (fills when the price reaches it, at the tick's price: a long when
    /// ask >= price, a short when bid <= price).
    #[serde(rename = "type")]
    #[schema(value_type = OrderType, example = "limit")]
    pub kind: String,
    /// Trigger price; must not be crossed now.
    #[schema(value_type = String, example = "59000")]
    pub price: Dec,
    /// 1 to the market's `max_leverage`.
    #[schema(example = 10)]
    pub leverage: u64,
    /// Margin in USDC.
    #[schema(value_type = Option<String>, example = "100")]
    pub margin: Option<Dec>,
    /// Quantity of the base asset.
    #[schema(value_type = Option<String>)]
    pub quantity: Option<Dec>,
    /// Take-profit of the position it opens (on the profitable side of `price`).
    #[schema(value_type = Option<String>)]
    pub take_profit: Option<Dec>,
    /// Stop-loss of the position it opens (on the losing side of `price`).
    #[schema(value_type = Option<String>)]
    pub stop_loss: Option<Dec>,
    /// Good till this time (ms since the epoch); absent: good till cancelled.
    pub expires_at: Option<u64>,
    /// 1..=36 printable ASCII: a retry with the same id never places twice.
    pub client_order_id: Option<String>,
}

/// `POST /orders/batch`: up to `http.batch_orders_max` orders, each placed on its own.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct BatchOrdersBody {
    /// The orders, placed in this order.
    pub orders: Vec<OrderBody>,
}

/// One order's result in a batch: `status` as if it had been placed alone.
#[derive(Debug, Serialize, ToSchema)]
pub struct BatchResult {
    /// 201 placed (or, for a repeated `client_order_id`, placed before), else the status its
    /// error would have had.
    pub status: u16,
    /// The order, when placed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub order: Option<Order>,
    /// Why not, when refused.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<ErrorDetail>,
}

/// `POST /orders/batch`'s answer: one result per order, in the request's order.
#[derive(Debug, Serialize, ToSchema)]
pub struct BatchOrders {
    /// The results.
    pub results: Vec<BatchResult>,
}

/// `PATCH /orders/{id}`: what changes (absent: kept; `null` removes a TP/SL or makes the
/// order good till cancelled). At most one of `margin` or `quantity`.
#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AmendBody {
    /// New trigger price (must not be crossed now).
    #[schema(value_type = Option<String>)]
    pub price: Option<Dec>,
    /// New margin in USDC.
    #[schema(value_type = Option<String>)]
    pub margin: Option<Dec>,
    /// New quantity of the base asset.
    #[schema(value_type = Option<String>)]
    pub quantity: Option<Dec>,
    /// New expiry (ms since the epoch); `null`: good till cancelled.
    #[serde(default, deserialize_with = "present")]
    #[schema(value_type = Option<u64>)]
    pub expires_at: Option<Option<u64>>,
    /// New take-profit; `null` removes it.
    #[serde(default, deserialize_with = "present")]
    #[schema(value_type = Option<String>)]
    pub take_profit: Option<Option<Dec>>,
    /// New stop-loss; `null` removes it.
    #[serde(default, deserialize_with = "present")]
    #[schema(value_type = Option<String>)]
    pub stop_loss: Option<Option<Dec>>,
}

/// A field that is present (its value, `null` included) as `Some`; absent stays `None`
/// through `#[serde(default)]`.
fn present<'de, D: serde::Deserializer<'de>, T: Deserialize<'de>>(
    d: D,
) -> Result<Option<Option<T>>, D::Error> {
    Option::<T>::deserialize(d).map(Some)
}

/// One market, or every market when absent.
#[derive(Debug, Default, Deserialize, utoipa::IntoParams, ToSchema)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct MarketFilter {
    /// A configured market, e.g. `BTC_USDC`.
    pub market: Option<String>,
}

/// `DELETE /orders`: the orders cancelled, ascending id.
#[derive(Debug, Serialize, ToSchema)]
pub struct CancelledAll {
    /// The cancelled orders (their holds are back in available).
    pub cancelled: Vec<Order>,
}

/// `POST /positions/close-all`: what closed, and what could not close now.
#[derive(Debug, Serialize, ToSchema)]
pub struct ClosedAll {
    /// The closed positions, ascending id.
    pub closed: Vec<Position>,
    /// How many could not close now (e.g. `stale_price`): they stay open.
    pub failed: u32,
    /// The first failure's code.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub first_failure: Option<&'static str>,
}

/// `POST /orders/cancel-after`: the dead-man's switch.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CancelAfterBody {
    /// Cancel every pending order this many ms from now unless sent again before
    /// (5000..=86400000); `null` disarms.
    pub after_ms: Option<u32>,
}

/// The dead-man's switch now.
#[derive(Debug, Serialize, ToSchema)]
pub struct CancelSchedule {
    /// When every pending order will be cancelled (ms since the epoch); `null`: disarmed.
    pub cancel_at: Option<u64>,
}

/// A pending order.
#[derive(Debug, Serialize, ToSchema)]
pub struct Order {
    /// Id.
    pub id: String,
    /// Symbol.
    pub market: String,
    /// `long` or `short`.
    #[schema(value_type = Side)]
    pub side: &'static str,
    /// `limit` or `stop`.
    #[serde(rename = "type")]
    #[schema(value_type = OrderType)]
    pub kind: &'static str,
    /// Trigger price.
    pub price: String,
    /// Leverage.
    pub leverage: u32,
    /// Margin, when sized by margin.
    pub margin: Option<String>,
    /// Quantity, when sized by quantity.
    pub quantity: Option<String>,
    /// Take-profit of the position it opens.
    pub take_profit: Option<String>,
    /// Stop-loss of the position it opens.
    pub stop_loss: Option<String>,
    /// Expiry (ms); `null`: good till cancelled.
    pub expires_at: Option<u64>,
    /// Margin and open fee held for it (at the order's price).
    pub reserved: String,
    /// When it was placed (ms).
    pub placed_at: u64,
}

/// `GET /orders`: the caller's pending orders, ascending id.
#[derive(Debug, Serialize, ToSchema)]
pub struct Orders {
    /// The orders.
    pub orders: Vec<Order>,
}

/// A trailing stop: one of the distances, and where it stands now.
#[derive(Debug, Serialize, ToSchema)]
pub struct TrailingStop {
    /// Distance in price, when set so.
    pub distance: Option<String>,
    /// Distance in basis points of the best mark, when set so.
    pub distance_bps: Option<u32>,
    /// Where it stands now: it follows the best mark since it was set and never comes back.
    pub stop_price: String,
}

/// Set (one of the two distances) or remove (neither) an open position's trailing stop.
#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct TrailingBody {
    /// Distance behind the best mark, in price (a long's stop is best bid - distance).
    #[schema(value_type = Option<String>, example = "500")]
    pub distance: Option<Dec>,
    /// Distance in basis points of the best mark, 1..=5000.
    #[schema(example = 150)]
    pub distance_bps: Option<u32>,
}

/// Replace an open position's take-profit and stop-loss: a missing or `null` field removes it.
#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct TriggersBody {
    /// On the profitable side of the current mark.
    #[schema(value_type = Option<String>, example = "65000")]
    pub take_profit: Option<Dec>,
    /// On the losing side of the current mark.
    #[schema(value_type = Option<String>, example = "58000")]
    pub stop_loss: Option<Dec>,
}

/// Close all of a position (empty body or no `quantity`) or part of it.
#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CloseBody {
    /// Base asset to close, a whole number of the market's quantity steps.
    #[schema(value_type = Option<String>, example = "0.25")]
    pub quantity: Option<Dec>,
}

/// `GET /positions?status=`.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct ListQuery {
    /// `open` (default) or `closed`.
    #[param(value_type = Option<PositionStatusName>)]
    pub status: Option<String>,
    /// Closed only: the `next_cursor` of the previous page.
    pub cursor: Option<String>,
    /// Closed only: rows per page, 1..=500 (default 100).
    pub limit: Option<u32>,
}

/// `GET /candles`.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct CandlesQuery {
    /// Market symbol, e.g. `BTC_USDC`.
    pub market: String,
    /// `1m`, `5m`, `15m`, `1h`, `4h` or `1d`.
    #[param(value_type = Interval)]
    pub interval: String,
    /// Candles, the latest ones, 1..=500 (default 200).
    pub limit: Option<u32>,
}

/// One candle: OHLC of the engine's applied bid, or of a venue's trades before the engine's first.
#[derive(Debug, Serialize, ToSchema)]
pub struct Candle {
    /// Bucket start (ms since the epoch, aligned to the interval in UTC).
    pub time: u64,
    /// First bid of the bucket.
    pub open: String,
    /// Highest bid.
    pub high: String,
    /// Lowest bid.
    pub low: String,
    /// Last bid.
    pub close: String,
    /// Ticks applied in the bucket (0 in a venue's candle).
    pub ticks: u64,
    /// Whose candle: the engine's own, or the venue's history from before the engine's first
    /// candle (read from the venue's public endpoint at start; its trades, not the engine's
    /// bid).
    pub source: CandleSource,
}

/// Whose candle it is.
#[derive(Debug, Clone, Copy, Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum CandleSource {
    /// The engine's applied bid.
    Engine,
    /// A venue's candle (`Candles::venue` names it), from before the engine's first.
    Venue,
}

/// `GET /candles`: oldest first.
#[derive(Debug, Serialize, ToSchema)]
pub struct Candles {
    /// Symbol.
    pub market: String,
    /// Interval.
    #[schema(value_type = Interval)]
    pub interval: String,
    /// The candles.
    pub candles: Vec<Candle>,
    /// The venue whose history came before the engine's candles, when this server read one.
    pub venue: Option<String>,
}

/// `GET /user/ledger`.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct LedgerQuery {
    /// Only rows at or after this time (ms since the epoch).
    pub from: Option<u64>,
    /// Only rows before this time (ms since the epoch).
    pub to: Option<u64>,
    /// The `next_cursor` of the previous page.
    pub cursor: Option<String>,
    /// Rows per page, 1..=500 (default 100).
    pub limit: Option<u32>,
}

/// `GET /user/statement`: a date range and a file format.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct StatementQuery {
    /// Only lines at or after this time (ms since the epoch).
    pub from: Option<u64>,
    /// Only lines before this time (ms since the epoch).
    pub to: Option<u64>,
    /// `csv` (the default) or `jsonl`.
    pub format: Option<String>,
}

// ----- responses -----

/// Sign-up's uniform answer (the same whether the email was new or taken).
#[derive(Debug, Serialize, ToSchema)]
pub struct SignupAccepted {
    /// Always `accepted`.
    pub status: &'static str,
    /// What to do next.
    pub message: &'static str,
}

/// A session.
#[derive(Debug, Serialize, ToSchema)]
pub struct Token {
    /// A JWT (HS256) for `Authorization: Bearer`.
    pub token: String,
    /// Expiry, seconds since the Unix epoch.
    pub expires_at: u64,
    /// The account id.
    pub user_id: String,
    /// The account holds the operator role (the token says so too).
    pub admin: bool,
    /// `POST /user/deposit` is open (demo deposits on): a page shows its button only then.
    pub demo_deposits: bool,
    /// A device token for this login: send it as `device` with the next sign-ins (see
    /// `SignIn.device`). Valid for `remembered_device_days` (90 by default).
    pub device: String,
    /// The session this sign-in opened (its token's `sid`; `GET /user/sessions` lists it).
    pub session_id: String,
}

/// `POST /user/2fa/enrol`: what to put in the authenticator, shown once.
#[derive(Debug, Serialize, ToSchema)]
pub struct TotpEnrolled {
    /// The secret, base32 (to type in by hand).
    pub secret: String,
    /// `otpauth://totp/…` (RFC 6238, SHA-1, 6 digits, 30 s).
    pub otpauth_uri: String,
    /// The URI as a QR code, an SVG document.
    pub qr_svg: String,
    /// Ten single-use recovery codes: keep them somewhere safe; they are not shown again.
    pub recovery_codes: Vec<String>,
}

/// A one-time code.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CodeBody {
    /// The authenticator's 6 digits (or, to turn it off, a recovery code).
    pub code: String,
}

/// The caller's two-factor state.
#[derive(Debug, Serialize, ToSchema)]
pub struct TotpStatus {
    /// On: sign-in, key creation and withdrawal need a code.
    pub enabled: bool,
    /// An enrolment waits for its first code.
    pub pending: bool,
    /// Recovery codes not yet used.
    pub recovery_codes_left: u8,
}

/// One of the caller's live sessions.
#[derive(Debug, Serialize, ToSchema)]
pub struct Session {
    /// Id.
    pub id: String,
    /// When it signed in (ms).
    pub created_at: u64,
    /// When its token expires (ms).
    pub expires_at: u64,
    /// The address it signed in from.
    pub ip: String,
    /// The start of its `User-Agent`.
    pub agent: String,
    /// It is the caller's own.
    pub current: bool,
}

/// `GET /user/sessions`.
#[derive(Debug, Serialize, ToSchema)]
pub struct Sessions {
    /// Live sessions, oldest first.
    pub sessions: Vec<Session>,
}

/// `POST /user/signout`: which sessions end.
#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SignOutBody {
    /// `this` (the default), `others` (every session but this one) or `all` (everywhere).
    #[serde(default)]
    #[schema(value_type = Option<String>, example = "all")]
    pub scope: Option<String>,
}

/// How many sessions a sign-out or a password change ended.
#[derive(Debug, Serialize, ToSchema)]
pub struct SignedOut {
    /// Sessions signed out.
    pub signed_out: u32,
}

/// `POST /user/password`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PasswordBody {
    /// The password now.
    pub current_password: String,
    /// The new one (10 to 128 characters, at least 5 different).
    pub new_password: String,
}

/// An operator's change to a market: any of the fields (absent: unchanged).
#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AdminMarketBody {
    /// `open`, `halted` (no opens, no new orders; closes go on) or `reduce_only`.
    #[schema(example = "halted")]
    pub mode: Option<String>,
    /// Maximum leverage of positions opened from now on.
    pub max_leverage: Option<u64>,
    /// Maintenance margin rate of positions opened from now on (open positions keep theirs).
    #[schema(value_type = Option<String>, example = "0.01")]
    pub maintenance_margin_rate: Option<Dec>,
}

/// `GET /admin/risk`.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct RiskQuery {
    /// Positions closest to liquidation to list, 0..=100 (default 20).
    pub top: Option<u32>,
}

/// What the caller pays by its client group.
#[derive(Debug, Serialize, ToSchema)]
pub struct Terms {
    /// The group's name.
    pub group: String,
    /// Per market, in configuration order.
    pub markets: Vec<MarketTerms>,
}

/// What the caller pays on one market, beside the market's own fees.
#[derive(Debug, Serialize, ToSchema)]
pub struct MarketTerms {
    /// Symbol.
    pub symbol: String,
    /// Spread markup a side, per unit of quantity (a price): `markup × quantity` on each open
    /// and close, rounded up.
    pub markup: String,
    /// Further spread markup a side in basis points of the price (`markup_bps / 10 000 ×
    /// price × quantity`, rounded up).
    pub markup_bps: u32,
    /// Commission on the notional a side, e.g. `0.000200`.
    pub commission_rate: String,
    /// Further commission a side per lot (one whole unit of the base asset), in USDC.
    pub commission_per_lot: String,
    /// Financing per period on a long (negative: paid to the caller), e.g. `0.000100`; zero for
    /// a swap-free account.
    pub financing_long_rate: String,
    /// Financing per period on a short.
    pub financing_short_rate: String,
    /// Highest leverage of the caller's new positions here (the market's, or its group's if
    /// lower).
    pub max_leverage: u32,
    /// The market's bid less the markup (ticks and bps): what a sale is worth to the caller now.
    pub quoted_bid: Option<String>,
    /// The market's ask plus the markup (ticks and bps): what a purchase costs the caller now.
    pub quoted_ask: Option<String>,
    /// The leverage brackets the caller's new positions get here: its group's own, else the
    /// market's (absent: one bracket, `max_leverage` and the market's rate).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub brackets: Vec<MarketBracket>,
}

/// An operator's move of an account to a client group.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AdminGroupBody {
    /// The group's name, from the configuration's `groups`.
    pub group: String,
}

/// An operator's change of a group's terms on a market (what is omitted is kept).
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AdminGroupTermsBody {
    /// Spread markup a side, as a price (`"0.50"`), at most the market's decimals.
    #[schema(value_type = Option<String>)]
    pub markup: Option<Dec>,
    /// Spread markup a side in basis points of the price (0..=1000).
    pub markup_bps: Option<u32>,
    /// Commission on the notional a side (`"0.0002"`).
    #[schema(value_type = Option<String>)]
    pub commission_rate: Option<Dec>,
    /// Commission a side per lot, one whole base unit, in USDC (`"3.5"`, at most 1000).
    #[schema(value_type = Option<String>)]
    pub commission_per_lot: Option<Dec>,
    /// Leverage cap of new positions.
    pub max_leverage: Option<u32>,
    /// The group's financing per period on a long (`"0.0003"`, within ±0.01; the short side,
    /// if not given, keeps the group's rate, else the market's).
    #[schema(value_type = Option<String>)]
    pub financing_long_rate: Option<Dec>,
    /// The same on a short.
    #[schema(value_type = Option<String>)]
    pub financing_short_rate: Option<Dec>,
}

/// A group's terms on a market.
#[derive(Debug, Serialize, ToSchema)]
pub struct GroupTerms {
    /// The group's name.
    pub group: String,
    /// The market's symbol.
    pub market: String,
    /// Spread markup a side.
    pub markup: String,
    /// Further spread markup a side in basis points of the price.
    pub markup_bps: u32,
    /// Commission on the notional a side.
    pub commission_rate: String,
    /// Further commission a side per lot.
    pub commission_per_lot: String,
    /// Leverage cap (none: the market's).
    pub max_leverage: Option<u32>,
    /// The group's financing per period on a long (none: the market's).
    pub financing_long_rate: Option<String>,
    /// The group's financing per period on a short (none: the market's).
    pub financing_short_rate: Option<String>,
}

/// An account's client group.
#[derive(Debug, Serialize, ToSchema)]
pub struct AccountGroup {
    /// The account's email.
    pub email: String,
    /// Its group's name.
    pub group: String,
}

/// One market side's exposure.
#[derive(Debug, Serialize, ToSchema)]
pub struct Exposure {
    /// Symbol.
    pub market: String,
    /// `long` or `short`.
    #[schema(value_type = Side)]
    pub side: &'static str,
    /// Open positions.
    pub positions: u32,
    /// Σ quantity.
    pub open_interest: String,
    /// Σ quantity × mark.
    pub notional: String,
    /// The side's traders' unrealized P&L at the mark.
    pub unrealized_pnl: String,
    /// The house's: the traders' with the sign turned (what it holds as their counterparty).
    pub house_unrealized_pnl: String,
    /// The side's open-interest cap (absent: none).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub open_interest_cap: Option<String>,
}

/// A position near liquidation.
#[derive(Debug, Serialize, ToSchema)]
pub struct AtRisk {
    /// Position id.
    pub position_id: String,
    /// Owner's account id.
    pub user_id: String,
    /// Symbol.
    pub market: String,
    /// `long` or `short`.
    #[schema(value_type = Side)]
    pub side: &'static str,
    /// Margin.
    pub margin: String,
    /// Mark now.
    pub mark: String,
    /// Liquidation price.
    pub liquidation_price: String,
    /// Distance to it in basis points of the mark.
    pub distance_bps: u64,
}

/// The operator's risk view.
#[derive(Debug, Serialize, ToSchema)]
pub struct Risk {
    /// Insurance fund.
    pub insurance_fund: String,
    /// House balance.
    pub house_balance: String,
    /// The client groups' spread markups, on their own line.
    pub spread_revenue: String,
    /// The client groups' commissions, on their own line.
    pub commission_revenue: String,
    /// Open positions.
    pub open_positions: u32,
    /// Per market and side.
    pub exposure: Vec<Exposure>,
    /// Closest to liquidation first.
    pub at_risk: Vec<AtRisk>,
    /// Cross accounts closest to their stop-out, lowest margin level first.
    pub accounts_at_risk: Vec<AccountAtRisk>,
}

/// A cross account near its stop-out.
#[derive(Debug, Serialize, ToSchema)]
pub struct AccountAtRisk {
    /// The account's id.
    pub user_id: String,
    /// Its margin level now (no call or stop-out levels: those are the account's group's).
    pub margin_level: MarginLevel,
}

/// Balances in USDC.
#[derive(Debug, Serialize, ToSchema)]
pub struct Balance {
    /// Free to trade or withdraw.
    pub available: String,
    /// Held as margin by open positions.
    pub locked_margin: String,
    /// Held for pending orders (their margin and open fee).
    pub order_margin: String,
    /// available + locked_margin + order_margin + unrealized_pnl.
    pub equity: String,
    /// Of open positions at the current marks.
    pub unrealized_pnl: String,
    /// `isolated` or `cross`.
    pub margin_mode: MarginModeName,
    /// A cross account's margin level (absent while isolated).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub margin_level: Option<MarginLevel>,
}

/// A market with its latest price (`null`s before the first tick).
#[derive(Debug, Serialize, ToSchema)]
pub struct Market {
    /// E.g. `BTC_USDC`.
    pub symbol: String,
    /// Best bid.
    pub bid: Option<String>,
    /// Best ask.
    pub ask: Option<String>,
    /// When the engine received the price (ms).
    pub updated_at: Option<u64>,
    /// Price decimals.
    pub price_decimals: u32,
    /// Quantity decimals.
    pub qty_decimals: u32,
    /// Highest leverage of new positions.
    pub max_leverage: u32,
    /// Maintenance margin rate of new positions, e.g. `0.005000`.
    pub maintenance_margin_rate: String,
    /// `open`, `halted` or `reduce_only` (set by operators).
    pub mode: &'static str,
    /// A market priced from several venues: its price guard, `open`, `reduce_only` (too few
    /// fresh, agreeing sources) or `halted` (none heard from). New positions need both `mode`
    /// and `price_guard` open.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub price_guard: Option<&'static str>,
    /// A market priced from several venues: its sources now.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sources: Option<SourcesState>,
    /// Leverage brackets by notional at entry, ascending (docs/DESIGN.md, "Tiered margin");
    /// absent: one bracket, `max_leverage` and `maintenance_margin_rate` above.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub brackets: Vec<MarketBracket>,
    /// Most open quantity of all longs together, in base units (absent: none).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub open_interest_cap_long: Option<String>,
    /// Most open quantity of all shorts together (absent: none).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub open_interest_cap_short: Option<String>,
    /// Most difference between the longs' and the shorts' open quantity (absent: none).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub skew_cap: Option<String>,
}

/// One leverage bracket of a market.
#[derive(Debug, Serialize, ToSchema)]
pub struct MarketBracket {
    /// The largest notional at entry in it, USDC; none for the last.
    pub notional_cap: Option<String>,
    /// Highest leverage in it.
    pub max_leverage: u32,
    /// Its maintenance margin rate.
    pub maintenance_margin_rate: String,
    /// Its maintenance amount: maintenance margin is `rate × notional − amount`.
    pub maintenance_amount: String,
}

/// A market's price sources at the moment of the request (docs/DESIGN.md, "Index price").
#[derive(Debug, Serialize, ToSchema)]
pub struct SourcesState {
    /// Venues configured.
    pub configured: u8,
    /// Quoted within `max_source_age`.
    pub fresh: u8,
    /// Fresh and within `max_deviation_bps` of the median: those the index is made of.
    pub agreeing: u8,
}

/// Every market.
#[derive(Debug, Serialize, ToSchema)]
pub struct Markets {
    /// In configuration order.
    pub markets: Vec<Market>,
}

/// A position; the `close` fields appear once it is closed.
#[derive(Debug, Serialize, ToSchema)]
pub struct Position {
    /// Id (a partial close's closed part has its own).
    pub id: String,
    /// Market symbol.
    pub market: String,
    /// `long` or `short`.
    #[schema(value_type = Side)]
    pub side: &'static str,
    /// `open` or `closed`.
    #[schema(value_type = PositionStatusName)]
    pub status: &'static str,
    /// Base asset.
    pub quantity: String,
    /// Fill price.
    pub entry_price: String,
    /// USDC locked (closed: released).
    pub margin: String,
    /// Leverage.
    pub leverage: u32,
    /// Where the engine liquidates it (`null`: never, e.g. a 1x long).
    pub liquidation_price: Option<String>,
    /// Take-profit trigger.
    pub take_profit: Option<String>,
    /// Stop-loss trigger.
    pub stop_loss: Option<String>,
    /// The trailing stop, if set.
    pub trailing_stop: Option<TrailingStop>,
    /// At the current mark (0 once closed).
    pub unrealized_pnl: String,
    /// Opening time (ms).
    pub opened_at: u64,
    /// Closed: the mark it closed at.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub exit_price: Option<String>,
    /// Closed: PnL of the closed quantity, before fees.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub realized_pnl: Option<String>,
    /// Closed: close or liquidation fee.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub fee: Option<String>,
    /// Closed: what the trader received.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub payout: Option<String>,
    /// Closed: `manual`, `take_profit`, `stop_loss`, `trailing_stop`, `liquidation` or
    /// `stop_out`.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<CloseReasonName>)]
    pub close_reason: Option<&'static str>,
    /// Closed: when (ms).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub closed_at: Option<u64>,
    /// Closed: the position it closed (itself, or the one a partial close left open).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub position_id: Option<String>,
}

/// The caller's positions, newest closed first.
#[derive(Debug, Serialize, ToSchema)]
pub struct Positions {
    /// The list (closed: newest first).
    pub positions: Vec<Position>,
    /// Closed, from the history store: pass as `cursor` for the next page (absent on the last).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub next_cursor: Option<String>,
    /// Closed, from the history store: it held every change up to this engine sequence.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub consistent_to: Option<u64>,
}

/// One row of the statement.
#[derive(Debug, Serialize, ToSchema)]
pub struct LedgerEntry {
    /// The engine sequence of the command that moved the money.
    pub seq: u64,
    /// `deposit`, `withdrawal`, `open_fee`, `financing`, `realized_pnl`, `close_fee`,
    /// `liquidation_fee`, `loss_forgiven` (a loss beyond the margin that the fund or the house
    /// paid), `spread_markup` and `commission` (the client group's charges on an open or a close,
    /// just before its fee row, which is then the market's fee alone).
    #[schema(value_type = LedgerKind)]
    pub kind: String,
    /// Signed USDC.
    pub amount: String,
    /// Balance (available + locked margin) after it.
    pub balance: String,
    /// The position it concerns.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub position_id: Option<String>,
    /// When (ms).
    pub at: u64,
}

/// `GET /user/ledger`: the statement, oldest first.
#[derive(Debug, Serialize, ToSchema)]
pub struct Ledger {
    /// Rows in engine order.
    pub entries: Vec<LedgerEntry>,
    /// Pass as `cursor` for the next page (absent on the last).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub next_cursor: Option<String>,
    /// The store held every change up to this engine sequence.
    pub consistent_to: u64,
}

/// One line of `GET /user/statement?format=jsonl`.
#[derive(Debug, Serialize, ToSchema)]
pub struct StatementLine {
    /// The journal sequence of the command that moved the money.
    pub seq: u64,
    /// When, RFC 3339 in UTC with milliseconds.
    pub time: String,
    /// When (ms since the epoch).
    pub at: u64,
    /// What moved the money (as the ledger's `kind`).
    pub kind: String,
    /// Signed USDC.
    pub amount: String,
    /// Balance (available + locked margin) after it.
    pub balance: String,
    /// The position it concerns.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub position_id: Option<String>,
}

/// The history store's writer, in `/healthz`.
#[derive(Debug, Serialize, ToSchema)]
pub struct HistoryHealth {
    /// Engine sequence of the last change written.
    pub written_seq: u64,
    /// How far behind the engine the last batch was (ms).
    pub lag_ms: u64,
    /// The database is unreachable (the writer retries and holds a bounded backlog; the engine
    /// never waits for it).
    pub stalled: bool,
    /// History is degraded: the store refused a batch or fell too far behind. Its routes answer
    /// 503 `history_unavailable`; trading is unaffected; the next start catches the store up.
    pub degraded: bool,
}

/// Every error: a stable code and a message in our words.
#[derive(Debug, Serialize, ToSchema)]
pub struct ErrorBody {
    /// The error.
    pub error: ErrorDetail,
}

/// See [`ErrorBody`].
#[derive(Debug, Serialize, ToSchema)]
pub struct ErrorDetail {
    /// Stable snake_case code: an engine refusal is one of `ReasonCode`
    /// (`insufficient_balance`, ...); the edge adds its own (`rate_limited`, `busy`,
    /// `invalid_json`, ...; see docs/API.md).
    #[schema(example = "insufficient_balance")]
    pub code: String,
    /// For people.
    pub message: String,
}

/// `/healthz`: the engine, each market's price age, the feed.
#[derive(Debug, Serialize, ToSchema)]
pub struct Health {
    /// `ok`, `no_prices` or `unavailable`.
    pub status: &'static str,
    /// `alive` or `not answering`.
    pub engine: &'static str,
    /// Seconds since this process started.
    pub uptime_s: u64,
    /// Per market.
    pub markets: Vec<MarketHealth>,
    /// The feed's own report (serve), if any.
    #[schema(value_type = Option<Object>)]
    pub feed: Option<serde_json::Value>,
    /// The history store's writer (serve), if any.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub history: Option<HistoryHealth>,
    /// Present with `no_prices`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<ErrorDetail>,
}

/// A market's price age.
#[derive(Debug, Serialize, ToSchema)]
pub struct MarketHealth {
    /// Symbol.
    pub symbol: String,
    /// Since the engine received its price (ms), `null` before the first.
    pub price_age_ms: Option<u64>,
    /// Younger than the market's `max_price_age`.
    pub fresh: bool,
}

/// The errors every authenticated call can answer (documented once, used in every operation).
#[derive(Debug, utoipa::IntoResponses)]
#[allow(dead_code)] // a description of responses, never built
pub enum AuthedErrors {
    /// Missing, bad or expired token.
    #[response(status = 401)]
    Unauthorized(ErrorBody),
    /// Rate limited; `Retry-After` says when to come back.
    #[response(status = 429)]
    RateLimited(ErrorBody),
    /// The engine or Redis is unavailable, or bounded work is full (`busy`); `Retry-After`.
    #[response(status = 503)]
    Unavailable(ErrorBody),
    /// No reply in time: the request may still apply (retry with the same key or id).
    #[response(status = 504)]
    Timeout(ErrorBody),
}

/// The errors of reading a JSON body.
#[derive(Debug, utoipa::IntoResponses)]
#[allow(dead_code)] // a description of responses, never built
pub enum BodyErrors {
    /// The body is larger than the limit.
    #[response(status = 413)]
    TooLarge(ErrorBody),
    /// Not `application/json`.
    #[response(status = 415)]
    UnsupportedMediaType(ErrorBody),
}

// ----- Closed sets of values: declared as enums in the OpenAPI document, so generated clients
// get them. The fields stay strings in Rust (inputs are checked by the handlers, which answer
// with their own stable codes).

/// A position's or an order's side.
#[derive(Debug, Clone, Copy, Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Side {
    /// Buys: gains when the price rises.
    Long,
    /// Sells: gains when the price falls.
    Short,
}

/// A pending order's type.
#[derive(Debug, Clone, Copy, Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum OrderType {
    /// Fills at its price or better.
    Limit,
    /// Fills when the price reaches it, at the tick's price.
    Stop,
}

/// A position's status.
#[derive(Debug, Clone, Copy, Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum PositionStatusName {
    /// Open.
    Open,
    /// Closed (entirely).
    Closed,
}

/// Why a position was closed.
#[derive(Debug, Clone, Copy, Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum CloseReasonName {
    /// By its owner.
    Manual,
    /// Its take-profit.
    TakeProfit,
    /// Its stop-loss.
    StopLoss,
    /// Its trailing stop.
    TrailingStop,
    /// Liquidated.
    Liquidation,
    /// Closed by its cross account's stop-out.
    StopOut,
    /// Reduced or closed by an opposite order of its netting account.
    Netted,
}

/// How an account's positions are margined.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, ToSchema, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum MarginModeName {
    /// Each position on its own margin, liquidated at its own price.
    Isolated,
    /// The whole account: balance, margins and PnL defend every position; stopped out, most
    /// losing position first, at the stop-out level.
    Cross,
}

/// How an account's orders meet its positions.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, ToSchema, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum PositionModeName {
    /// Every order opens a position of its own; both sides may be held.
    Hedging,
    /// One position per market: an order on its side adds to it (weighted average entry),
    /// an opposite order reduces, closes or reverses it.
    Netting,
}

/// Choose the position mode (only without open positions or pending orders); also the reply.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PositionModeBody {
    /// `hedging` or `netting`.
    pub mode: PositionModeName,
}

/// Choose the margin mode (only without open positions or pending orders).
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct MarginModeBody {
    /// `isolated` or `cross`.
    pub mode: MarginModeName,
}

/// A cross account's margin level and what makes it.
#[derive(Debug, Serialize, ToSchema)]
pub struct MarginLevel {
    /// Available + Σ position margins + Σ unrealized PnL at the marks.
    pub equity: String,
    /// Σ maintenance margins at the marks.
    pub maintenance_margin: String,
    /// equity / maintenance margin (6 decimals, rounded down; absent without positions).
    pub level: Option<String>,
    /// Notice below this (absent: margin calls off, or in an explanation).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub margin_call_level: Option<String>,
    /// Stopped out at or below this (absent in an explanation).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub stop_out_level: Option<String>,
}

/// A candle interval.
#[derive(Debug, Clone, Copy, Serialize, ToSchema)]
pub enum Interval {
    /// One minute.
    #[serde(rename = "1m")]
    M1,
    /// Five minutes.
    #[serde(rename = "5m")]
    M5,
    /// Fifteen minutes.
    #[serde(rename = "15m")]
    M15,
    /// One hour.
    #[serde(rename = "1h")]
    H1,
    /// Four hours.
    #[serde(rename = "4h")]
    H4,
    /// One day.
    #[serde(rename = "1d")]
    D1,
}

/// What moved the money in a statement row.
#[derive(Debug, Clone, Copy, Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum LedgerKind {
    /// A deposit.
    Deposit,
    /// A withdrawal.
    Withdrawal,
    /// The fee of an open.
    OpenFee,
    /// Financing (swap) charged on an open position.
    Financing,
    /// Profit or loss realized by a close.
    RealizedPnl,
    /// The fee of a close.
    CloseFee,
    /// The fee of a liquidation.
    LiquidationFee,
    /// A loss beyond the margin that the fund or the house paid.
    LossForgiven,
    /// The client group's spread markup on an open or a close (its fee row leaves it out).
    SpreadMarkup,
    /// The client group's commission on an open or a close (its fee row leaves it out).
    Commission,
}

/// An engine reason code: why a command was refused, or an order ended (every
/// `engine_core::event::Reason`, generated from the engine's own list).
#[derive(Debug, Clone, Copy)]
pub struct ReasonCode;

impl utoipa::PartialSchema for ReasonCode {
    fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
        let codes = engine_core::event::Reason::ALL.iter().map(|r| r.code());
        utoipa::openapi::schema::ObjectBuilder::new()
            .schema_type(utoipa::openapi::schema::Type::String)
            .description(Some("An engine reason code (stable, snake_case)."))
            .enum_values(Some(codes))
            .into()
    }
}

impl ToSchema for ReasonCode {}

/// A decimal input: a JSON string or number, kept as text for exact parsing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Dec(pub String);

impl<'de> Deserialize<'de> for Dec {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        match serde_json::Value::deserialize(d)? {
            serde_json::Value::String(s) => Ok(Dec(s)),
            serde_json::Value::Number(n) => Ok(Dec(n.to_string())),
            _ => Err(serde::de::Error::custom("expected a decimal as a string or number")),
        }
    }
}

/// Why a position was closed or called (docs/DESIGN.md, "Every close explained").
#[derive(Debug, Serialize, ToSchema)]
pub struct Explanation {
    /// The position.
    pub position_id: String,
    /// Its triggered closes and margin calls, oldest first (none: it was never called, and
    /// closed by its owner if at all).
    pub events: Vec<ExplainedEvent>,
    /// How an operator checks it against the journal: the same inputs give the same close and
    /// the same state hash.
    pub verify: String,
}

/// One triggered close or margin call with the inputs of the rule that fired.
#[derive(Debug, Serialize, ToSchema)]
pub struct ExplainedEvent {
    /// The journal sequence of the command that fired it.
    pub seq: u64,
    /// When the engine received that command (ms).
    pub at: u64,
    /// `take_profit`, `stop_loss`, `trailing_stop`, `liquidation`, `margin_call` or `stop_out`.
    pub trigger: &'static str,
    /// E.g. `BTC_USDC`.
    pub market: String,
    /// `long` or `short`.
    pub side: &'static str,
    /// Quantity then.
    pub quantity: String,
    /// Entry price.
    pub entry_price: String,
    /// The price reached (absent for a stop-out: the account's level decided).
    pub trigger_price: Option<String>,
    /// The market's bid then.
    pub bid: String,
    /// The market's ask then.
    pub ask: String,
    /// What the position was valued at: the bid for a long, the ask for a short.
    pub mark: String,
    /// Margin then.
    pub margin: String,
    /// Maintenance margin rate (its bracket's).
    pub maintenance_rate: String,
    /// Its bracket's maintenance amount.
    pub maintenance_amount: String,
    /// Unrealized PnL at the mark, rounded down.
    pub unrealized_pnl: String,
    /// ⌈rate × mark × quantity⌉ − amount.
    pub maintenance_margin: String,
    /// (margin + unrealized PnL) / maintenance margin, 6 decimals rounded down: at or below 1
    /// a position is liquidated, at or below `call_level` called.
    pub margin_level: Option<String>,
    /// The margin-call level applied (margin calls).
    pub call_level: Option<String>,
    /// A cross account's level when it was stopped out (stop-outs).
    pub account: Option<MarginLevel>,
    /// On a market made from several venues: each source's quote then.
    pub sources: Option<SourcesThen>,
    /// The close it caused (absent for a margin call).
    pub close: Option<ExplainedClose>,
}

/// The venues' quotes behind a price.
#[derive(Debug, Serialize, ToSchema)]
pub struct SourcesThen {
    /// Each configured source's latest bid and ask, by source id (`null`: none yet).
    pub quotes: Vec<Option<[String; 2]>>,
    /// How many were fresh.
    pub fresh: u8,
    /// How many of those agreed (the index is the median of theirs).
    pub agreeing: u8,
}

/// What a triggered close paid.
#[derive(Debug, Serialize, ToSchema)]
pub struct ExplainedClose {
    /// The price it closed at (the mark).
    pub exit_price: String,
    /// Realized PnL.
    pub realized_pnl: String,
    /// Fee (for a liquidation, to the insurance fund).
    pub fee: String,
    /// What the trader received.
    pub payout: String,
    /// Loss beyond the margin, forgiven.
    pub bad_debt: String,
}

/// An API key's scope.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, ToSchema, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum ScopeName {
    /// Balances, positions, orders, history.
    Read,
    /// Open, close, place, amend, cancel.
    Trade,
    /// Withdraw (never on unless asked for).
    Withdraw,
}

/// A new API key: the client made an Ed25519 key pair and sends only the public key.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ApiKeyBody {
    /// A label for you, 1..=32 bytes.
    pub label: String,
    /// Base64 of the 32-byte Ed25519 public key.
    pub public_key: String,
    /// At least one of `read`, `trade`, `withdraw` (default `["read"]`).
    #[serde(default)]
    pub scopes: Vec<ScopeName>,
    /// Up to 4 client networks it may be used from, CIDR (`203.0.113.0/24`, `2001:db8::/48`, or
    /// a bare address); none: any.
    #[serde(default)]
    pub networks: Vec<String>,
    /// When it stops working, ms since the epoch (absent: never).
    #[serde(default)]
    pub expires_at: Option<u64>,
    /// With two-factor sign-in on: a code (6 digits, or a recovery code).
    #[serde(default)]
    pub totp: Option<String>,
}

/// An API key (the server holds only its public key).
#[derive(Debug, Serialize, ToSchema)]
pub struct ApiKey {
    /// Its id.
    pub id: String,
    /// Its label.
    pub label: String,
    /// Base64 of its Ed25519 public key: the `X-API-Key` header.
    pub public_key: String,
    /// What it may do.
    pub scopes: Vec<ScopeName>,
    /// Where it may be used from (empty: anywhere).
    pub networks: Vec<String>,
    /// When it stops working, ms (absent: never).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub expires_at: Option<u64>,
    /// When it was created, ms.
    pub created_at: u64,
}

/// The caller's API keys, ascending id.
#[derive(Debug, Serialize, ToSchema)]
pub struct ApiKeys {
    /// Its keys.
    pub keys: Vec<ApiKey>,
}

// ----- the back office (docs/DESIGN.md, "Account controls") -----

/// An operator's action on one account. `reason` is required (it goes to the audit log).
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AccountActionBody {
    /// `suspend`, `close_only`, `reinstate`, `adjust_balance`, `adjust_credit`, `move_group` or
    /// `revoke_access`.
    #[schema(example = "adjust_balance")]
    pub action: String,
    /// For `adjust_balance` and `adjust_credit`: a signed USDC amount (`"250.00"` pays or
    /// grants, `"-250.00"` takes back), at most 6 decimals.
    #[schema(value_type = Option<String>, example = "250.00")]
    pub amount: Option<Dec>,
    /// For `move_group`: the group's name.
    pub group: Option<String>,
    /// Why: 1 to 120 bytes of printable text.
    #[schema(example = "ticket 4711: refund of a disputed fill")]
    pub reason: String,
}

/// An account's controls.
#[derive(Debug, Serialize, ToSchema)]
pub struct AccountControls {
    /// The account's id.
    pub account_id: String,
    /// `active`, `close_only` or `suspended`.
    pub status: String,
    /// Credit: traded with, lost with losses, never withdrawable.
    pub credit: String,
    /// What it may withdraw now.
    pub withdrawable: String,
    /// Its client group.
    pub group: String,
    /// Holds the operator role.
    pub admin: bool,
}

/// An account as the back office sees it.
#[derive(Debug, Serialize, ToSchema)]
pub struct AdminAccount {
    /// Status, credit, group.
    pub controls: AccountControls,
    /// Balances.
    pub balance: Balance,
    /// Open positions.
    pub positions: Vec<Position>,
    /// Pending orders.
    pub orders: Vec<Order>,
    /// API keys.
    pub api_keys: Vec<ApiKey>,
    /// Live sessions (`current` is never set here).
    pub sessions: Vec<Session>,
}

/// `GET /admin/audit`: a page.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct AuditQuery {
    /// The `next_cursor` of the previous page.
    pub cursor: Option<String>,
    /// Rows per page, 1..=500 (default 100).
    pub limit: Option<u32>,
}

/// One operator's action, as the engine journaled it.
#[derive(Debug, Serialize, ToSchema)]
pub struct AuditEntry {
    /// The journal sequence of the command.
    pub seq: u64,
    /// When (ms since the epoch, the command's time).
    pub at: u64,
    /// The change's kind: `account_controlled`, `market_changed`, `group_set`,
    /// `group_terms_set` or `role_set`.
    pub kind: String,
    /// The operator's account id (absent for a role granted from the command line).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub by: Option<String>,
    /// The account acted on, if one was.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub account_id: Option<String>,
    /// For `account_controlled`: the action's code.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub action: Option<String>,
    /// For `account_controlled`: the operator's reason.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// The change as the engine recorded it.
    #[schema(value_type = Object)]
    pub change: serde_json::Value,
}

/// A page of the audit log, newest first.
#[derive(Debug, Serialize, ToSchema)]
pub struct Audit {
    /// Newest first.
    pub entries: Vec<AuditEntry>,
    /// Pass as `cursor` for the next (older) page.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub next_cursor: Option<String>,
    /// The store held every change up to this engine sequence.
    pub consistent_to: u64,
}

/// `GET /admin/reports/daily`: a range of UTC days.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct ReportQuery {
    /// First day, `YYYY-MM-DD` (UTC).
    pub from: String,
    /// Last day, included, `YYYY-MM-DD` (UTC); at most 366 days after `from`.
    pub to: String,
    /// `json` (the default) or `csv`.
    pub format: Option<String>,
}

/// The house's P&L of one UTC day by source: what it gained (positive) or paid (negative).
#[derive(Debug, Serialize, ToSchema)]
pub struct ReportDay {
    /// `YYYY-MM-DD` (UTC).
    pub day: String,
    /// The client groups' spread markups (the spread revenue line).
    pub spread_markup: String,
    /// The client groups' commissions (the commission revenue line).
    pub commission: String,
    /// The markets' open and close fees (the house).
    pub market_fees: String,
    /// Liquidation fees (the insurance fund).
    pub liquidation_fees: String,
    /// Financing charged (positive) or paid (negative) by the house.
    pub financing: String,
    /// The house's side of the traders' realized P&L (B-book: minus their P&L).
    pub trading_pnl: String,
    /// Losses beyond the traders' margins, paid by the insurance fund or the house.
    pub bad_debt: String,
    /// Operators' payments (negative) and charges (positive).
    pub adjustments: String,
    /// Credit granted (negative) and taken back (positive).
    pub credit: String,
    /// The sum: exactly what the house balance, the insurance fund and the revenue lines moved
    /// this day.
    pub total: String,
    /// The traders' deposits (for context: not the house's).
    pub deposits: String,
    /// The traders' withdrawals.
    pub withdrawals: String,
    /// The A-book's P&L that day at the venue (the hedger's fills' cash and its positions'
    /// change of value at the engine's daily closes), when a hedger is linked; outside `total`
    /// and the conservation identity: the hedge's money is the venue account's.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub hedge_pnl: Option<String>,
}

/// The daily report.
#[derive(Debug, Serialize, ToSchema)]
pub struct DailyReport {
    /// Days with any movement, oldest first.
    pub days: Vec<ReportDay>,
    /// The store held every change up to this engine sequence.
    pub consistent_to: u64,
}

/// `POST /admin/stress`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct StressBody {
    /// A bundled scenario's name (`GET /admin/stress` lists them).
    #[schema(example = "flash-crash")]
    pub scenario: String,
}

/// `GET /admin/stress`.
#[derive(Debug, Serialize, ToSchema)]
pub struct StressScenarios {
    /// Their names.
    pub scenarios: Vec<String>,
}

/// One market of the hedge.
#[derive(Debug, Serialize, ToSchema)]
pub struct HedgePosition {
    /// The engine's symbol.
    pub market: String,
    /// Signed, in base units (positive: long at the venue).
    pub quantity: String,
    /// The engine's price it is valued at (the bid for a long, the ask for a short).
    pub mark: String,
    /// What it is worth there (a short: negative, what buying it back costs).
    pub value: String,
}

/// The A-book: the hedger's position and P&L.
#[derive(Debug, Serialize, ToSchema)]
pub struct Hedge {
    /// Why the hedger stopped, if it did.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub halted: Option<String>,
    /// Orders it sent.
    pub orders: u64,
    /// Orders of unknown outcome.
    pub pending: u64,
    /// Per market.
    pub positions: Vec<HedgePosition>,
    /// What its fills cost (negative) or brought, USDC.
    pub cash: String,
    /// Its positions at the mark.
    pub value: String,
    /// cash + value: the A-book's P&L.
    pub pnl: String,
}

/// One venue's latest quote against the index.
#[derive(Debug, Serialize, ToSchema)]
pub struct SourceView {
    /// The venue's name (its position in `--feed` when the server does not know it).
    pub source: String,
    /// Its bid (absent before its first quote).
    pub bid: Option<String>,
    /// Its ask.
    pub ask: Option<String>,
    /// Milliseconds since it quoted.
    pub age_ms: Option<u64>,
    /// Within the market's `max_source_age`.
    pub fresh: bool,
    /// Its mid's distance from the index's mid, basis points (rounded down).
    pub deviation_bps: Option<u64>,
}

/// A market's index against each venue.
#[derive(Debug, Serialize, ToSchema)]
pub struct MarketSourcesView {
    /// Symbol.
    pub market: String,
    /// The index's bid (the market's price).
    pub index_bid: Option<String>,
    /// The index's ask.
    pub index_ask: Option<String>,
    /// A source further than this from the median does not count toward the index.
    pub max_deviation_bps: u32,
    /// Every configured source, by id.
    pub sources: Vec<SourceView>,
}
