//! The engine's history in SQL: an event-sourced read model beside the engine, never in it.
//!
//! The engine keeps only hot, bounded state. Every state change it makes comes out numbered as a
//! [`ChangeRecord`] (`seq` = the journal sequence of the command, `n` its index within it). This
//! crate projects them into tables — the raw changes, accounts, every position and closed part,
//! a statement per account with the running balance, and the house's ledger (insurance fund and
//! house balance) — in SQLite (embedded, `serve`) or PostgreSQL (service mode), with one schema
//! and one set of queries for both (sqlx's `Any` driver; migrations run at open).
//!
//! **Exactly once.** [`Store::write`] writes a batch in one transaction that also moves the
//! cursor (the last `(seq, n)` written) and skips what is at or below it. A crash anywhere —
//! writer, engine, database — leaves the cursor and the rows agreeing; the next start resumes
//! after the cursor (the engine replays its journal from a snapshot at or before it, see the
//! binary's `DurableEngine`).
//!
//! ```no_run
//! # async fn demo() -> Result<(), history::HistoryError> {
//! use engine_core::prelude::*;
//! let store = history::Store::open("sqlite:///tmp/h.sqlite?mode=rwc", &MarketConfig::defaults(), 2).await?;
//! let changes = Engine::new(EngineConfig::default()).unwrap().apply_collect(&Command::new(
//!     RequestId(1), 1, CommandKind::CreateAccount { login: Login::new("a@x").unwrap(),
//!     credential: Credential::empty() }));
//! let records: Vec<ChangeRecord> = changes.iter().filter_map(|o| match o {
//!     Output::Change(c) => Some(*c), _ => None }).collect();
//! store.write(&records).await?;
//! assert_eq!(store.cursor().await?.seq, 1);
//! # Ok(()) }
//! ```

mod project;
mod read;
mod rows;
#[cfg(feature = "test-support")]
pub mod test_support;
mod write;
mod writer;

use std::time::Duration;

use engine_core::config::MarketConfig;
pub use engine_core::event::ChangeRecord;
use sqlx::any::{AnyConnectOptions, AnyPoolOptions};
use sqlx::{AnyPool, ConnectOptions, Executor};

pub use ground::history::{Candle, LedgerEntry, LedgerQuery, Page};
pub use project::{HouseMovement, Movement, house_movement, movements};
pub use rows::SPANS;
pub use writer::{RunningWriter, Writer, WriterStatus, spawn_writer};

/// Why the store failed.
#[derive(Debug, thiserror::Error)]
pub enum HistoryError {
    /// The database refused or could not be reached.
    #[error("database: {0}")]
    Db(#[from] sqlx::Error),
    /// A migration failed.
    #[error("migrations: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    /// A value does not fit the store's 64-bit columns (a bug or a corrupt feed: loud).
    #[error("{0} does not fit a 64-bit column")]
    TooLarge(&'static str),
    /// The store's data contradicts the changes it is given (e.g. a close of a position it never
    /// saw opened): the store is not this engine's, or was written by someone else.
    #[error("the store does not match the engine's changes: {0}")]
    Mismatch(String),
    /// A page cursor that this store did not issue.
    #[error("invalid cursor")]
    InvalidCursor,
    /// A page size outside 1..=500.
    #[error("limit must be 1..=500")]
    InvalidLimit,
    /// A query parameter out of its set.
    #[error("{0}")]
    InvalidQuery(&'static str),
}

impl HistoryError {
    /// Whether retrying may succeed (the database is unreachable or busy) rather than the
    /// data being wrong.
    pub fn is_transient(&self) -> bool {
        matches!(
            self,
            HistoryError::Db(
                sqlx::Error::Io(_)
                    | sqlx::Error::PoolTimedOut
                    | sqlx::Error::PoolClosed
                    | sqlx::Error::Tls(_)
                    | sqlx::Error::Protocol(_)
                    | sqlx::Error::WorkerCrashed
            )
        ) || matches!(self, HistoryError::Db(sqlx::Error::Database(e)) if is_transient_code(e.code().as_deref()))
    }
}

/// SQLite busy/locked, PostgreSQL connection and shutdown classes.
fn is_transient_code(code: Option<&str>) -> bool {
    match code {
        Some(c) => {
            c == "5" || c == "6" || c.starts_with("08") || c.starts_with("57") || c == "40001"
        }
        None => false,
    }
}

/// Result of this crate.
pub type Result<T, E = HistoryError> = std::result::Result<T, E>;

/// Everything up to and including this change is in the store.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Default)]
pub struct Cursor {
    /// Journal sequence.
    pub seq: u64,
    /// Index within the command; `-1` (before its first change) when only whole commands are in.
    pub n: i64,
}

impl Cursor {
    /// A new store's cursor: before every change.
    pub const START: Cursor = Cursor { seq: 0, n: -1 };

    /// Whether `rec` comes after this cursor (and so is still to be written).
    pub fn precedes(&self, rec: &ChangeRecord) -> bool {
        (rec.seq, i64::from(rec.n)) > (self.seq, self.n)
    }
}

/// A connection pool to the store, with the schema migrated.
#[derive(Clone, Debug)]
pub struct Store {
    pool: AnyPool,
    sqlite: bool,
}

static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations");

impl Store {
    /// The URL of a SQLite store at `path` (created if missing).
    pub fn sqlite_url(path: &std::path::Path) -> String {
        format!("sqlite://{}?mode=rwc", path.display())
    }

    /// Connects to `url` (`sqlite://…` or `postgres://…`) with at most `connections`
    /// connections, runs the migrations and records the markets (symbol and decimals, so SQL
    /// users can read prices and quantities).
    pub async fn open(url: &str, markets: &[MarketConfig], connections: u32) -> Result<Store> {
        sqlx::any::install_default_drivers();
        let sqlite = url.starts_with("sqlite:");
        let options: AnyConnectOptions = url.parse()?;
        let options = options.disable_statement_logging();
        let pool = AnyPoolOptions::new()
            .max_connections(connections.max(1))
            .acquire_timeout(Duration::from_secs(10))
            .after_connect(move |conn, _| {
                Box::pin(async move {
                    if sqlite {
                        // WAL: readers never block the writer; FULL: a committed batch survives
                        // a power loss, not only a crash; busy_timeout: readers wait for a
                        // checkpoint instead of failing.
                        conn.execute("PRAGMA journal_mode = WAL").await?;
                        conn.execute("PRAGMA synchronous = FULL").await?;
                        conn.execute("PRAGMA busy_timeout = 5000").await?;
                    }
                    Ok(())
                })
            })
            .connect_with(options)
            .await?;
        MIGRATOR.run(&pool).await?;
        let store = Store { pool, sqlite };
        store.record_markets(markets).await?;
        Ok(store)
    }

    /// The connection pool, for an operator's own queries (and tests).
    pub fn pool(&self) -> &AnyPool {
        &self.pool
    }

    /// Whether this is the embedded SQLite store.
    pub fn is_sqlite(&self) -> bool {
        self.sqlite
    }

    async fn record_markets(&self, markets: &[MarketConfig]) -> Result<()> {
        for (i, m) in markets.iter().enumerate() {
            sqlx::query(
                "INSERT INTO markets (market, symbol, price_decimals, qty_decimals) \
                 VALUES ($1, $2, $3, $4) ON CONFLICT (market) DO UPDATE SET \
                 symbol = excluded.symbol, price_decimals = excluded.price_decimals, \
                 qty_decimals = excluded.qty_decimals",
            )
            .bind(i64::try_from(i).map_err(|_| HistoryError::TooLarge("market"))?)
            .bind(m.symbol.clone())
            .bind(i64::from(m.price_decimals))
            .bind(i64::from(m.qty_decimals))
            .execute(&self.pool)
            .await?;
        }
        Ok(())
    }

    /// The last change written.
    pub async fn cursor(&self) -> Result<Cursor> {
        let (seq, n): (i64, i64) = sqlx::query_as("SELECT seq, n FROM history_cursor WHERE id = 1")
            .fetch_one(&self.pool)
            .await?;
        Ok(Cursor { seq: u64::try_from(seq).map_err(|_| HistoryError::TooLarge("seq"))?, n })
    }

    /// Closes the pool (waits for connections in use).
    pub async fn close(&self) {
        self.pool.close().await;
    }
}

pub(crate) fn big(v: i128, what: &'static str) -> Result<i64> {
    i64::try_from(v).map_err(|_| HistoryError::TooLarge(what))
}

pub(crate) fn big_u(v: u64, what: &'static str) -> Result<i64> {
    i64::try_from(v).map_err(|_| HistoryError::TooLarge(what))
}
