//! Writing a batch of changes: one transaction that loads what the batch touches, stores the
//! [`rows::project`]ion with multi-row statements, and moves the cursor with the rows.

use std::collections::BTreeMap;

use engine_core::event::ChangeRecord;
use sqlx::any::AnyArguments;
use sqlx::query::Query;
use sqlx::{Any, AssertSqlSafe, Row, Transaction};

use crate::rows::{self, AccountRow, CloseCols, PositionRow, Projection};
use crate::{Cursor, Result, Store, big, big_u};

type Tx<'a> = Transaction<'a, Any>;

/// Rows per multi-row statement: well under SQLite's 32 766 and PostgreSQL's 65 535 bound
/// parameters at the widest table (26 columns), and a handful of distinct statement shapes for
/// the prepared-statement cache.
const ROWS_PER_STATEMENT: usize = 256;

/// A value bound to a statement.
enum V {
    I(i64),
    O(Option<i64>),
    S(String),
    T(Option<String>),
}

fn bind_all<'q>(
    mut q: Query<'q, Any, AnyArguments>,
    values: Vec<V>,
) -> Query<'q, Any, AnyArguments> {
    for v in values {
        q = match v {
            V::I(x) => q.bind(x),
            V::O(x) => q.bind(x),
            V::S(x) => q.bind(x),
            V::T(x) => q.bind(x),
        };
    }
    q
}

/// The `i`-th (from 1) placeholder: `?` for SQLite, `$i` for PostgreSQL. Numbered
/// placeholders cost SQLite (through sqlx) a lookup per parameter that grows with their count:
/// a 256-row statement spent 240 µs a row binding them; `?` binds in order.
fn mark(sql: &mut String, sqlite: bool, i: usize) {
    if sqlite {
        sql.push('?');
    } else {
        sql.push('$');
        sql.push_str(&i.to_string());
    }
}

/// `INSERT INTO table (cols) VALUES ($1, …), (…) suffix` for `rows` rows.
fn insert_sql(sqlite: bool, table: &str, cols: &[&str], rows: usize, suffix: &str) -> String {
    let mut sql = format!("INSERT INTO {table} ({}) VALUES ", cols.join(", "));
    let mut p = 0;
    for r in 0..rows {
        sql.push_str(if r == 0 { "(" } else { ", (" });
        for c in 0..cols.len() {
            p += 1;
            if c > 0 {
                sql.push_str(", ");
            }
            mark(&mut sql, sqlite, p);
        }
        sql.push(')');
    }
    sql.push_str(suffix);
    sql
}

/// Inserts `rows` (each a list of values in `cols` order), a statement per chunk.
async fn insert_rows(
    tx: &mut Tx<'_>,
    sqlite: bool,
    table: &str,
    cols: &[&str],
    suffix: &str,
    rows: Vec<Vec<V>>,
) -> Result<()> {
    let mut rows = rows.into_iter().peekable();
    while rows.peek().is_some() {
        let chunk: Vec<Vec<V>> = rows.by_ref().take(ROWS_PER_STATEMENT).collect();
        let sql = insert_sql(sqlite, table, cols, chunk.len(), suffix);
        let q = sqlx::query(AssertSqlSafe(sql));
        bind_all(q, chunk.into_iter().flatten().collect()).execute(&mut **tx).await?;
    }
    Ok(())
}

/// `col IN ($1, …)` over `ids`, a statement per chunk, rows decoded by `each`.
async fn select_in(
    tx: &mut Tx<'_>,
    sqlite: bool,
    select: &str,
    ids: &[i64],
    mut each: impl FnMut(&sqlx::any::AnyRow) -> Result<()>,
) -> Result<()> {
    for chunk in ids.chunks(ROWS_PER_STATEMENT) {
        let mut sql = format!("{select} IN (");
        for i in 1..=chunk.len() {
            if i > 1 {
                sql.push_str(", ");
            }
            mark(&mut sql, sqlite, i);
        }
        sql.push(')');
        let q = sqlx::query(AssertSqlSafe(sql));
        let rows =
            bind_all(q, chunk.iter().map(|&i| V::I(i)).collect()).fetch_all(&mut **tx).await?;
        for row in &rows {
            each(row)?;
        }
    }
    Ok(())
}

const POSITION_COLS: [&str; 26] = [
    "position_id",
    "of_position",
    "account_id",
    "market",
    "side",
    "status",
    "quantity",
    "entry_price",
    "margin",
    "leverage",
    "open_fee",
    "liquidation_price",
    "take_profit",
    "stop_loss",
    "opened_at_ns",
    "exit_price",
    "realized_pnl",
    "close_fee",
    "payout",
    "close_reason",
    "bad_debt",
    "insurance_paid",
    "house_paid",
    "closed_at_ns",
    "close_seq",
    "close_n",
];

impl Store {
    /// Writes the changes of `batch` that come after the cursor, in one transaction that also
    /// moves the cursor to the last one. Returns the new cursor (`None`: nothing was new).
    /// The batch must be in engine order; anything at or below the cursor is skipped, so a
    /// batch may be written twice (a redelivery) and still counts once.
    pub async fn write(&self, batch: &[ChangeRecord]) -> Result<Option<Cursor>> {
        let mut tx = self.pool.begin().await?;
        let (seq, n, insurance, house): (i64, i64, i64, i64) = sqlx::query_as(
            "SELECT seq, n, insurance_fund, house_balance FROM history_cursor WHERE id = 1",
        )
        .fetch_one(&mut *tx)
        .await?;
        let start = Cursor { seq: u64::try_from(seq).unwrap_or(0), n };
        let (account_ids, position_ids) = rows::touched(batch, start);
        let accounts = load_accounts(&mut tx, self.sqlite, &account_ids).await?;
        let positions = load_positions(&mut tx, self.sqlite, &position_ids).await?;
        let p = rows::project(batch, start, accounts, positions, insurance.into(), house.into())?;
        let Some(cursor) = p.cursor else {
            tx.rollback().await?;
            return Ok(None);
        };
        store(&mut tx, self.sqlite, &p).await?;
        sqlx::query(
            "UPDATE history_cursor SET seq = $1, n = $2, insurance_fund = $3, house_balance = $4 \
             WHERE id = 1",
        )
        .bind(big_u(cursor.seq, "seq")?)
        .bind(cursor.n)
        .bind(big(p.insurance, "insurance fund")?)
        .bind(big(p.house_balance, "house balance")?)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(Some(cursor))
    }
}

async fn load_accounts(
    tx: &mut Tx<'_>,
    sqlite: bool,
    ids: &[i64],
) -> Result<BTreeMap<i64, AccountRow>> {
    let mut out = BTreeMap::new();
    let select = "SELECT account_id, created_at_ns, balance, locked_margin FROM accounts \
                  WHERE account_id";
    select_in(tx, sqlite, select, ids, |r| {
        let row = AccountRow {
            created_at_ns: r.try_get(1)?,
            balance: r.try_get::<i64, _>(2)?.into(),
            locked: r.try_get::<i64, _>(3)?.into(),
        };
        out.insert(r.try_get(0)?, row);
        Ok(())
    })
    .await?;
    Ok(out)
}

async fn load_positions(
    tx: &mut Tx<'_>,
    sqlite: bool,
    ids: &[i64],
) -> Result<BTreeMap<i64, PositionRow>> {
    let mut out = BTreeMap::new();
    let select = format!("SELECT {} FROM positions WHERE position_id", POSITION_COLS.join(", "));
    select_in(tx, sqlite, &select, ids, |r| {
        let money = |i: usize| -> Result<i128> { Ok(r.try_get::<i64, _>(i)?.into()) };
        let opt_money =
            |i: usize| -> Result<i128> { Ok(r.try_get::<Option<i64>, _>(i)?.unwrap_or(0).into()) };
        let close = match r.try_get::<Option<String>, _>(19)? {
            None => None,
            Some(reason) => Some(CloseCols {
                exit_price: r.try_get::<Option<i64>, _>(15)?.unwrap_or(0),
                realized_pnl: opt_money(16)?,
                close_fee: opt_money(17)?,
                payout: opt_money(18)?,
                reason,
                bad_debt: opt_money(20)?,
                insurance_paid: opt_money(21)?,
                house_paid: opt_money(22)?,
                closed_at_ns: r.try_get::<Option<i64>, _>(23)?.unwrap_or(0),
                close_seq: r.try_get::<Option<i64>, _>(24)?.unwrap_or(0),
                close_n: r.try_get::<Option<i64>, _>(25)?.unwrap_or(0),
            }),
        };
        let row = PositionRow {
            of_position: r.try_get(1)?,
            account_id: r.try_get(2)?,
            market: r.try_get(3)?,
            side: r.try_get(4)?,
            quantity: r.try_get(6)?,
            entry_price: r.try_get(7)?,
            margin: money(8)?,
            leverage: r.try_get(9)?,
            open_fee: money(10)?,
            liquidation_price: r.try_get(11)?,
            take_profit: r.try_get(12)?,
            stop_loss: r.try_get(13)?,
            opened_at_ns: r.try_get(14)?,
            close,
        };
        out.insert(r.try_get(0)?, row);
        Ok(())
    })
    .await?;
    Ok(out)
}

/// Stores a projection: appended rows inserted, touched accounts and positions upserted whole.
async fn store(tx: &mut Tx<'_>, sqlite: bool, p: &Projection) -> Result<()> {
    let raw = p.raw.iter().map(|r| {
        vec![
            V::I(r.seq),
            V::I(r.n),
            V::I(r.at_ns),
            V::S(r.kind.into()),
            V::I(r.account_id),
            V::O(r.position_id),
            V::S(r.body.clone()),
        ]
    });
    let cols = ["seq", "n", "at_ns", "kind", "account_id", "position_id", "body"];
    insert_rows(tx, sqlite, "changes", &cols, "", raw.collect()).await?;
    let mut accounts = Vec::with_capacity(p.accounts.len());
    for (id, a) in &p.accounts {
        accounts.push(vec![
            V::I(*id),
            V::I(a.created_at_ns),
            V::I(big(a.balance, "balance")?),
            V::I(big(a.locked, "locked margin")?),
        ]);
    }
    let cols = ["account_id", "created_at_ns", "balance", "locked_margin"];
    let upsert = " ON CONFLICT (account_id) DO UPDATE SET balance = excluded.balance, \
                  locked_margin = excluded.locked_margin";
    insert_rows(tx, sqlite, "accounts", &cols, upsert, accounts).await?;
    let mut positions = Vec::with_capacity(p.positions.len());
    for (id, row) in &p.positions {
        positions.push(position_values(*id, row)?);
    }
    let set: Vec<String> =
        POSITION_COLS[1..].iter().map(|c| format!("{c} = excluded.{c}")).collect();
    let upsert = format!(" ON CONFLICT (position_id) DO UPDATE SET {}", set.join(", "));
    insert_rows(tx, sqlite, "positions", &POSITION_COLS, &upsert, positions).await?;
    let mut ledger = Vec::with_capacity(p.ledger.len());
    for r in &p.ledger {
        ledger.push(vec![
            V::I(r.seq),
            V::I(r.n),
            V::I(r.account_id),
            V::S(r.kind.into()),
            V::I(big(r.amount, "amount")?),
            V::I(big(r.balance, "balance")?),
            V::O(r.position_id),
            V::I(r.at_ns),
        ]);
    }
    let cols = ["seq", "n", "account_id", "kind", "amount", "balance", "position_id", "at_ns"];
    insert_rows(tx, sqlite, "ledger", &cols, "", ledger).await?;
    let mut house = Vec::with_capacity(p.house.len());
    for r in &p.house {
        house.push(vec![
            V::I(r.seq),
            V::I(r.n),
            V::S(r.kind.into()),
            V::I(r.position_id),
            V::I(big(r.insurance_delta, "insurance")?),
            V::I(big(r.house_delta, "house")?),
            V::I(big(r.insurance_fund, "insurance fund")?),
            V::I(big(r.house_balance, "house balance")?),
            V::I(r.at_ns),
        ]);
    }
    let cols = [
        "seq",
        "n",
        "kind",
        "position_id",
        "insurance_delta",
        "house_delta",
        "insurance_fund",
        "house_balance",
        "at_ns",
    ];
    insert_rows(tx, sqlite, "house_ledger", &cols, "", house).await?;
    store_candles(tx, sqlite, p).await
}

/// Merges the batch's candle parts into the stored candles (portable SQL: CASE, not
/// GREATEST/MAX, which the two databases spell differently).
async fn store_candles(tx: &mut Tx<'_>, sqlite: bool, p: &Projection) -> Result<()> {
    let rows = p
        .candles
        .iter()
        .map(|((market, span, start), c)| {
            vec![
                V::I(*market),
                V::S((*span).into()),
                V::I(*start),
                V::I(c.open),
                V::I(c.high),
                V::I(c.low),
                V::I(c.close),
                V::I(c.ticks),
            ]
        })
        .collect();
    let cols = ["market", "span", "start_ns", "open", "high", "low", "close", "ticks"];
    let merge = " ON CONFLICT (market, span, start_ns) DO UPDATE SET \
        high = CASE WHEN excluded.high > candles.high THEN excluded.high ELSE candles.high END, \
        low = CASE WHEN excluded.low < candles.low THEN excluded.low ELSE candles.low END, \
        close = excluded.close, ticks = candles.ticks + excluded.ticks";
    insert_rows(tx, sqlite, "candles", &cols, merge, rows).await
}

fn position_values(id: i64, r: &PositionRow) -> Result<Vec<V>> {
    let c = r.close.as_ref();
    let m = |v: Option<i128>, what| v.map(|v| big(v, what)).transpose();
    Ok(vec![
        V::I(id),
        V::I(r.of_position),
        V::I(r.account_id),
        V::I(r.market),
        V::S(r.side.clone()),
        V::S(if c.is_some() { "closed" } else { "open" }.into()),
        V::I(r.quantity),
        V::I(r.entry_price),
        V::I(big(r.margin, "margin")?),
        V::I(r.leverage),
        V::I(big(r.open_fee, "fee")?),
        V::I(r.liquidation_price),
        V::O(r.take_profit),
        V::O(r.stop_loss),
        V::I(r.opened_at_ns),
        V::O(c.map(|c| c.exit_price)),
        V::O(m(c.map(|c| c.realized_pnl), "pnl")?),
        V::O(m(c.map(|c| c.close_fee), "fee")?),
        V::O(m(c.map(|c| c.payout), "payout")?),
        V::T(c.map(|c| c.reason.clone())),
        V::O(m(c.map(|c| c.bad_debt), "bad debt")?),
        V::O(m(c.map(|c| c.insurance_paid), "insurance paid")?),
        V::O(m(c.map(|c| c.house_paid), "house paid")?),
        V::O(c.map(|c| c.closed_at_ns)),
        V::O(c.map(|c| c.close_seq)),
        V::O(c.map(|c| c.close_n)),
    ])
}
