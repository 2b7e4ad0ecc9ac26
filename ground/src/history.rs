//! The history port: what an API reads from the read model (closed positions, the statement,
//! candles) and sees of its writer, whatever store holds it. The history adapter implements
//! [`HistoryReader`]; the HTTP adapter reads through it; the binary wires one to the other.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64};

use engine_core::command::{AccountId, MarketId, PositionId};
use engine_core::event::PositionView;
use engine_core::num::{Price, Usdc};

use crate::ports::BoxFuture;

/// The candle spans kept, with their length in seconds.
pub const SPANS: [(&str, i64); 6] =
    [("1m", 60), ("5m", 300), ("15m", 900), ("1h", 3_600), ("4h", 14_400), ("1d", 86_400)];

/// Most rows one page (or one read of candles) may ask for.
pub const PAGE_LIMIT_MAX: u32 = 500;

/// One page of a listing.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Page<T> {
    /// The rows.
    pub items: Vec<T>,
    /// Pass as `cursor` for the next page; `None` on the last page.
    pub next: Option<String>,
    /// The store held every change up to this journal sequence when the page was read.
    pub consistent_to: u64,
}

/// One row of an account's statement.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LedgerEntry {
    /// Journal sequence of the command that moved the money.
    pub seq: u64,
    /// deposit, withdrawal, open_fee, financing, realized_pnl, close_fee, liquidation_fee,
    /// loss_forgiven, spread_markup, commission.
    pub kind: String,
    /// Signed amount.
    pub amount: Usdc,
    /// Balance (available + locked margin) after it.
    pub balance: Usdc,
    /// The position it concerns.
    pub position: Option<PositionId>,
    /// Command receive time.
    pub at_ns: u64,
}

/// One candle: OHLC of the applied bid, in price ticks.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Candle {
    /// Bucket start (ns since the epoch, aligned to the span in UTC).
    pub start_ns: u64,
    /// First bid of the bucket.
    pub open: Price,
    /// Highest.
    pub high: Price,
    /// Lowest.
    pub low: Price,
    /// Last.
    pub close: Price,
    /// Ticks applied in the bucket.
    pub ticks: u64,
}

/// What every account's statement rows of one kind add up to on one UTC day (the daily
/// report's input: what the accounts gained by a source, the house lost, and back).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DailyTotal {
    /// Days since the Unix epoch (UTC).
    pub day: u64,
    /// The statement rows' kind (`deposit`, `realized_pnl`, `spread_markup`, …).
    pub kind: String,
    /// Their sum, signed, as the accounts saw it.
    pub amount: Usdc,
}

/// A statement request.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct LedgerQuery {
    /// Only rows at or after this time.
    pub from_ns: Option<u64>,
    /// Only rows before this time.
    pub to_ns: Option<u64>,
    /// The `next` of the previous page.
    pub cursor: Option<String>,
    /// Rows per page, 1..=500.
    pub limit: u32,
}

/// Why a read failed: the caller's query, or the store.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ReadError {
    /// A page cursor that this store did not issue.
    #[error("invalid cursor")]
    InvalidCursor,
    /// A page size outside 1..=500.
    #[error("limit must be 1..=500")]
    InvalidLimit,
    /// A query parameter out of its set.
    #[error("{0}")]
    InvalidQuery(&'static str),
    /// The store did not answer (its own words, for the log; never shown to a client).
    #[error("{0}")]
    Unavailable(String),
}

/// What an API reads from the history store. Every trader's read is scoped to one account; pages are
/// keyed by engine order, so rows that arrive while a client pages never shift its pages.
pub trait HistoryReader: Send + Sync + std::fmt::Debug {
    /// The journal sequence up to which the store holds every change.
    fn consistent_to(&self) -> BoxFuture<'_, Result<u64, ReadError>>;
    /// A page of `account`'s closed positions, newest first.
    fn closed_positions<'a>(
        &'a self,
        account: AccountId,
        cursor: Option<&'a str>,
        limit: u32,
    ) -> BoxFuture<'a, Result<Page<PositionView>, ReadError>>;
    /// One closed position of `account`.
    fn closed_position(
        &self,
        account: AccountId,
        position: PositionId,
    ) -> BoxFuture<'_, Result<Option<PositionView>, ReadError>>;
    /// What explains `account`'s position's triggered closes and margin calls
    /// (docs/DESIGN.md, "Every close explained"): its `explained`, `source_quotes` and `closed`
    /// changes and the account's `stop_out` at the same sequences, oldest first.
    fn explanations(
        &self,
        account: AccountId,
        position: PositionId,
    ) -> BoxFuture<'_, Result<Vec<engine_core::event::ChangeRecord>, ReadError>>;
    /// The latest `limit` candles of `market` for `span` (one of [`SPANS`]), oldest first.
    fn candles<'a>(
        &'a self,
        market: MarketId,
        span: &'a str,
        limit: u32,
    ) -> BoxFuture<'a, Result<Vec<Candle>, ReadError>>;
    /// A page of `account`'s statement, oldest first.
    fn ledger<'a>(
        &'a self,
        account: AccountId,
        q: &'a LedgerQuery,
    ) -> BoxFuture<'a, Result<Page<LedgerEntry>, ReadError>>;
    /// Every account's statement rows summed per UTC day and kind, for days `from_day..to_day`
    /// (days since the epoch), ordered by day then kind.
    fn daily_totals(
        &self,
        from_day: u64,
        to_day: u64,
    ) -> BoxFuture<'_, Result<Vec<DailyTotal>, ReadError>>;
    /// A page of the audit log: every operator's action (`account_controlled`,
    /// `market_changed`, `group_set`, `group_terms_set`, `role_set` changes), newest first.
    /// Not scoped to an account: the operator routes alone read it.
    fn audit<'a>(
        &'a self,
        cursor: Option<&'a str>,
        limit: u32,
    ) -> BoxFuture<'a, Result<Page<engine_core::event::ChangeRecord>, ReadError>>;
}

/// What the history writer has done, for health and metrics (shared by the writer, the API and
/// the snapshot pruner).
#[derive(Debug, Default)]
pub struct WriterStatus {
    /// Journal sequence of the last change committed (shared with the snapshot pruner, which
    /// keeps the journal after it).
    pub written_seq: Arc<AtomicU64>,
    /// Changes committed by this process.
    pub written: AtomicU64,
    /// Batches committed.
    pub batches: AtomicU64,
    /// Failed attempts (each retried).
    pub errors: AtomicU64,
    /// Commit time of the last batch minus the receive time of its last command (ms): how far
    /// behind the engine the store is.
    pub lag_ms: AtomicU64,
    /// True while the database is unreachable.
    pub stalled: AtomicBool,
    /// True while history is degraded: a batch failed in a way that is not the database being
    /// away (e.g. a value the store cannot hold), or the backlog outgrew its bound. The history
    /// routes answer 503; the engine keeps trading.
    pub degraded: AtomicBool,
    /// Changes this process dropped after its backlog overflowed (the store catches up on them
    /// from the kept journal at the next start).
    pub dropped: AtomicU64,
}
