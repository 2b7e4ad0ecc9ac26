//! Views: the engine's state as replies, items and events show it (positions, orders, accounts,
//! markets, exposure), split from [`crate::event`] so that the outputs' envelopes and the
//! shapes they carry are read apart. Fixed-size, `Copy`, no heap.

pub use crate::access::{ApiKeyView, SessionView, TotpState};
use crate::command::{
    AccountId, Credential, MarketId, OrderId, OrderKind, PositionId, PositionStatus, Size,
    TrailDistance,
};
use crate::math::Side;
use crate::num::{Price, Qty, Usdc};
use crate::reason::{CloseReason, Reason};

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
    /// Isolated or cross.
    pub margin_mode: crate::command::MarginMode,
    /// A cross account's margin level and what it is made of (`None` while isolated).
    pub margin_level: Option<CrossLevel>,
    /// Its margin-call level (its group's or the engine's; 0: off).
    pub margin_call_level: crate::num::Ppm,
    /// The cross stop-out level.
    pub stop_out_level: crate::num::Ppm,
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
    /// Spread markups the client groups paid (a term of the conservation equation).
    pub spread_revenue: Usdc,
    /// Commissions the client groups paid (likewise).
    pub commission_revenue: Usdc,
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
    Account(#[serde(deserialize_with = "account_view_compat")] AccountView),
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
        /// The client groups' spread markups.
        spread_revenue: Usdc,
        /// The client groups' commissions.
        commission_revenue: Usdc,
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
    /// An account's client group after an operator moved it.
    Group {
        /// The account.
        account: AccountId,
        /// The group's index.
        group: u16,
    },
    /// A client group's terms on a market after an operator's change.
    GroupTerms {
        /// The group's index.
        group: u16,
        /// Market.
        market: MarketId,
        /// The terms now.
        terms: crate::config::GroupTerms,
    },
    /// An account's position mode (its query, or its change). Not a field of
    /// [`AccountView`]: snapshots keep account replies in their request window, and a view
    /// that grows would not decode from an older snapshot.
    PositionMode {
        /// The account.
        account: AccountId,
        /// Hedging or netting.
        mode: crate::command::PositionMode,
    },
    /// An API key (created, revoked, or looked up).
    ApiKey(ApiKeyView),
    /// The end of an account's keys list (`Item::ApiKey`s before it).
    ApiKeys {
        /// How many.
        count: u32,
    },
    /// A cancel-all or close-all: how many were done (an item each before this reply), how
    /// many could not be, and the first reason why.
    Bulk {
        /// Cancelled or closed.
        done: u32,
        /// Not closed (cancels never fail).
        failed: u32,
        /// The first failure's reason.
        first_failure: Option<Reason>,
    },
    /// The account's dead-man's switch after the command.
    CancelSchedule {
        /// When its orders will be cancelled (`None`: disarmed).
        at_ns: Option<u64>,
    },
    /// A session (opened, or looked up).
    Session(SessionView),
    /// The end of an account's sessions list (`Item::Session`s before it).
    Sessions {
        /// How many.
        count: u32,
    },
    /// Sessions signed out (or, for a password change, the others).
    SessionsRevoked {
        /// How many.
        count: u32,
    },
    /// An account's two-factor state (its recovery codes' hashes stay in the engine).
    Totp {
        /// Owner.
        account: AccountId,
        /// On: sign-in, key creation and withdrawal need a code.
        enabled: bool,
        /// An enrolment waits for its first code.
        pending: bool,
        /// The secret (on, or pending; zero with neither).
        secret: [u8; 20],
        /// The last TOTP step spent (a code of it or before is refused).
        last_step: u64,
        /// Recovery codes not yet used.
        recovery_left: u8,
    },
    /// An account's status, credit and group (after an operator's action, or queried).
    Controls(crate::access::AccountControls),
    /// The house's lines and the book's size (`QueryBook`).
    Book {
        /// Insurance fund.
        insurance_fund: Usdc,
        /// House balance.
        house_balance: Usdc,
        /// The groups' spread markups.
        spread_revenue: Usdc,
        /// The groups' commissions.
        commission_revenue: Usdc,
        /// Open positions.
        open_positions: u32,
        /// Accounts.
        accounts: u32,
    },
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
    /// A cross account close to its stop-out (risk view), lowest level first.
    AccountAtRisk {
        /// The account.
        account: AccountId,
        /// Its margin level now.
        level: CrossLevel,
    },
    /// One price source's latest quote on a market (`QuerySources`, for operators).
    SourceQuote {
        /// Market.
        market: MarketId,
        /// The source.
        source: crate::command::SourceId,
        /// Its bid (0 before its first quote).
        bid: Price,
        /// Its ask.
        ask: Price,
        /// When it arrived (command time; 0 before its first quote).
        at_ns: u64,
    },
    /// A market made from price sources: its guard and its sources now (follows its
    /// [`Item::Market`] in the markets list).
    MarketSources {
        /// Market.
        market: MarketId,
        /// The price guard's mode (the market's effective mode is the stricter of it and the
        /// operators').
        guard: crate::command::MarketMode,
        /// Sources configured.
        sources: u8,
        /// Fresh at the query's time.
        fresh: u8,
        /// Fresh and agreeing.
        agreeing: u8,
    },
    /// What an account pays on one market by its client group.
    Terms {
        /// Market.
        market: MarketId,
        /// Spread markup a side, in price ticks, per unit of quantity.
        markup_ticks: i64,
        /// Commission on the notional a side.
        commission_rate: crate::num::Ppm,
        /// Highest leverage of its new positions there (the market's, or the group's if lower).
        max_leverage: u32,
        /// Spread markup a side in basis points of the fill price, on top of `markup_ticks`.
        markup_bps: u32,
        /// Commission a side per lot (one whole base unit), on top of `commission_rate`.
        commission_per_lot: crate::num::Usdc,
        /// Financing per period it pays (negative: earns) on a long, then on a short: its
        /// group's rates, else the market's; zero when swap-free.
        financing_rates: (crate::num::Ppm, crate::num::Ppm),
    },
    /// One of an account's API keys.
    ApiKey(ApiKeyView),
    /// One of an account's live sessions.
    Session(SessionView),
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
    /// The side's traders' unrealized P&L at the mark, Σ over its positions before each one's
    /// rounding (the house's is its negative: a B-book's open result).
    pub unrealized_pnl: Usdc,
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

/// A cross account's margin level and what it is made of (docs/DESIGN.md, "Cross margin").
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct CrossLevel {
    /// Available balance + Σ position margins + Σ unrealized PnL at the marks (each rounded
    /// down).
    pub equity: Usdc,
    /// Σ maintenance margins at the marks (each rounded up, less its bracket's amount).
    pub maintenance_margin: Usdc,
    /// `equity / maintenance_margin` in millionths, rounded down (`i64::MAX` without
    /// maintenance margin).
    pub level: crate::num::Ppm,
}

// ----- account views as snapshots before cross margin hold them -----

thread_local! {
    /// Set while a snapshot from before cross margin decodes (see [`account_view_compat`]).
    static LEGACY_ACCOUNT_VIEWS: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

/// Reads account views in their shape before cross margin for as long as it lives.
pub(crate) struct LegacyAccountViews;

impl LegacyAccountViews {
    pub(crate) fn set(on: bool) -> Option<LegacyAccountViews> {
        on.then(|| {
            LEGACY_ACCOUNT_VIEWS.set(true);
            LegacyAccountViews
        })
    }
}

impl Drop for LegacyAccountViews {
    fn drop(&mut self) {
        LEGACY_ACCOUNT_VIEWS.set(false);
    }
}

/// An account view as HXSNAP04 and older snapshots hold it (in their request window's replies).
#[derive(serde::Serialize, serde::Deserialize)]
pub(crate) struct AccountView04 {
    id: crate::command::AccountId,
    available: crate::num::Usdc,
    locked_margin: crate::num::Usdc,
    order_margin: crate::num::Usdc,
    unrealized_pnl: crate::num::Usdc,
    equity: crate::num::Usdc,
    open_positions: u32,
}

impl From<&AccountView> for AccountView04 {
    fn from(v: &AccountView) -> AccountView04 {
        AccountView04 {
            id: v.id,
            available: v.available,
            locked_margin: v.locked_margin,
            order_margin: v.order_margin,
            unrealized_pnl: v.unrealized_pnl,
            equity: v.equity,
            open_positions: v.open_positions,
        }
    }
}

/// The start of `ReplyData` as an account reply encoded before cross margin: the variant index
/// (1) and the 7-field view.
#[derive(serde::Serialize)]
pub(crate) enum AccountReply04 {
    /// Index 0 (`AccountCreated`), never built.
    #[allow(dead_code)]
    AccountCreated,
    /// Index 1.
    Account(AccountView04),
}

/// Decodes a reply's account view: in its current shape, or, while a snapshot from before cross
/// margin decodes, in that one (an isolated account then; no levels). Postcard is not
/// self-describing, so a view that grew would otherwise misread everything after it.
pub(crate) fn account_view_compat<'de, D: serde::Deserializer<'de>>(
    d: D,
) -> Result<AccountView, D::Error> {
    use serde::Deserialize;
    if !LEGACY_ACCOUNT_VIEWS.get() {
        return AccountView::deserialize(d);
    }
    let v = AccountView04::deserialize(d)?;
    Ok(AccountView {
        id: v.id,
        available: v.available,
        locked_margin: v.locked_margin,
        order_margin: v.order_margin,
        unrealized_pnl: v.unrealized_pnl,
        equity: v.equity,
        open_positions: v.open_positions,
        margin_mode: crate::command::MarginMode::Isolated,
        margin_level: None,
        margin_call_level: crate::num::Ppm(0),
        stop_out_level: crate::num::Ppm(0),
    })
}
