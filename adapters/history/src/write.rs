//! Writing a batch of changes: one transaction, the cursor moved with the rows.

use std::collections::HashMap;

use engine_core::event::{Change, ChangeRecord};
use sqlx::{Any, Transaction};

use crate::project::{self, house_movement, movements};
use crate::{Cursor, HistoryError, Result, Store, big, big_u};

/// Running balances touched by the batch, loaded on first use and written back at its end.
struct Books {
    /// account → (balance, locked margin).
    accounts: HashMap<i64, (i128, i128)>,
    insurance: i128,
    house: i128,
}

type Tx<'a> = Transaction<'a, Any>;

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
        let mut books =
            Books { accounts: HashMap::new(), insurance: insurance.into(), house: house.into() };
        let mut last = start;
        for rec in batch.iter().filter(|r| start.precedes(r)) {
            if !last.precedes(rec) {
                return Err(HistoryError::Mismatch(format!("change {rec:?} out of order")));
            }
            apply(&mut tx, rec, &mut books).await?;
            last = Cursor { seq: rec.seq, n: i64::from(rec.n) };
        }
        if last == start {
            tx.rollback().await?;
            return Ok(None);
        }
        for (account, (balance, locked)) in &books.accounts {
            sqlx::query(
                "UPDATE accounts SET balance = $1, locked_margin = $2 WHERE account_id = $3",
            )
            .bind(big(*balance, "balance")?)
            .bind(big(*locked, "locked margin")?)
            .bind(*account)
            .execute(&mut *tx)
            .await?;
        }
        sqlx::query(
            "UPDATE history_cursor SET seq = $1, n = $2, insurance_fund = $3, house_balance = $4 \
             WHERE id = 1",
        )
        .bind(big_u(last.seq, "seq")?)
        .bind(last.n)
        .bind(big(books.insurance, "insurance fund")?)
        .bind(big(books.house, "house balance")?)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(Some(last))
    }
}

/// One change: its raw row, its projection, its statement and house rows.
async fn apply(tx: &mut Tx<'_>, rec: &ChangeRecord, books: &mut Books) -> Result<()> {
    let Some(account) = rec.change.account() else { return Ok(()) }; // a checkpoint
    let account = i64::from(account.0);
    insert_raw(tx, rec, account).await?;
    if let Change::AccountCreated { .. } = rec.change {
        sqlx::query(
            "INSERT INTO accounts (account_id, created_at_ns, balance, locked_margin) \
             VALUES ($1, $2, 0, 0)",
        )
        .bind(account)
        .bind(big_u(rec.at_ns, "time")?)
        .execute(&mut **tx)
        .await?;
        books.accounts.insert(account, (0, 0));
    }
    let (balance, locked) = load(tx, books, account).await?;
    let mut balance = balance;
    let mut locked = locked;
    match rec.change {
        Change::Opened { margin, .. } => {
            insert_opened(tx, rec).await?;
            locked += margin.0;
        }
        Change::Closed { margin_released, .. } => {
            close_position(tx, rec).await?;
            locked -= margin_released.0;
        }
        Change::MarginAdded { position, amount, margin, liquidation_price, .. } => {
            let done = sqlx::query(
                "UPDATE positions SET margin = $1, liquidation_price = $2 \
                 WHERE position_id = $3 AND status = 'open'",
            )
            .bind(big(margin.0, "margin")?)
            .bind(liquidation_price.0)
            .bind(big_u(position.0, "position")?)
            .execute(&mut **tx)
            .await?;
            expect_one(done.rows_affected(), rec)?;
            locked += amount.0;
        }
        _ => {}
    }
    for (k, m) in movements(&rec.change).iter().enumerate() {
        balance += m.amount;
        sqlx::query(
            "INSERT INTO ledger (seq, n, account_id, kind, amount, balance, position_id, at_ns) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
        )
        .bind(big_u(rec.seq, "seq")?)
        .bind(row_n(rec, k))
        .bind(account)
        .bind(m.kind)
        .bind(big(m.amount, "amount")?)
        .bind(big(balance, "balance")?)
        .bind(position_of(&rec.change)?)
        .bind(big_u(rec.at_ns, "time")?)
        .execute(&mut **tx)
        .await?;
    }
    if balance < 0 || locked < 0 {
        return Err(HistoryError::Mismatch(format!("negative balance after {rec:?}")));
    }
    books.accounts.insert(account, (balance, locked));
    insert_house(tx, rec, books).await
}

/// Statement rows of change `n` are numbered `n * MOVEMENTS_MAX + k`: unique, in order.
fn row_n(rec: &ChangeRecord, k: usize) -> i64 {
    let k = i64::try_from(k).unwrap_or(0);
    i64::from(rec.n) * i64::try_from(project::MOVEMENTS_MAX).unwrap_or(3) + k
}

fn position_of(change: &Change) -> Result<Option<i64>> {
    Ok(match *change {
        Change::Opened { position, .. }
        | Change::Closed { position, .. }
        | Change::MarginAdded { position, .. } => Some(big_u(position.0, "position")?),
        _ => None,
    })
}

fn expect_one(rows: u64, rec: &ChangeRecord) -> Result<()> {
    if rows == 1 {
        Ok(())
    } else {
        Err(HistoryError::Mismatch(format!("no open position for {rec:?}")))
    }
}

async fn load(tx: &mut Tx<'_>, books: &mut Books, account: i64) -> Result<(i128, i128)> {
    if let Some(b) = books.accounts.get(&account) {
        return Ok(*b);
    }
    let row: Option<(i64, i64)> =
        sqlx::query_as("SELECT balance, locked_margin FROM accounts WHERE account_id = $1")
            .bind(account)
            .fetch_optional(&mut **tx)
            .await?;
    let (balance, locked) =
        row.ok_or_else(|| HistoryError::Mismatch(format!("unknown account {account}")))?;
    let b = (i128::from(balance), i128::from(locked));
    books.accounts.insert(account, b);
    Ok(b)
}

async fn insert_raw(tx: &mut Tx<'_>, rec: &ChangeRecord, account: i64) -> Result<()> {
    let body = serde_json::to_string(&rec.change)
        .map_err(|e| HistoryError::Mismatch(format!("unserializable change: {e}")))?;
    sqlx::query(
        "INSERT INTO changes (seq, n, at_ns, kind, account_id, position_id, body) \
         VALUES ($1, $2, $3, $4, $5, $6, $7)",
    )
    .bind(big_u(rec.seq, "seq")?)
    .bind(i64::from(rec.n))
    .bind(big_u(rec.at_ns, "time")?)
    .bind(project::kind(&rec.change))
    .bind(account)
    .bind(position_of(&rec.change)?)
    .bind(body)
    .execute(&mut **tx)
    .await?;
    Ok(())
}

async fn insert_opened(tx: &mut Tx<'_>, rec: &ChangeRecord) -> Result<()> {
    let Change::Opened {
        position,
        account,
        market,
        side,
        quantity,
        entry_price,
        margin,
        leverage,
        fee,
        liquidation_price,
        take_profit,
        stop_loss,
    } = rec.change
    else {
        unreachable!("called for an open");
    };
    let id = big_u(position.0, "position")?;
    sqlx::query(
        "INSERT INTO positions (position_id, of_position, account_id, market, side, status, \
         quantity, entry_price, margin, leverage, open_fee, liquidation_price, take_profit, \
         stop_loss, opened_at_ns) \
         VALUES ($1, $2, $3, $4, $5, 'open', $6, $7, $8, $9, $10, $11, $12, $13, $14)",
    )
    .bind(id)
    .bind(id)
    .bind(i64::from(account.0))
    .bind(i64::from(market.0))
    .bind(side.as_str())
    .bind(quantity.0)
    .bind(entry_price.0)
    .bind(big(margin.0, "margin")?)
    .bind(i64::from(leverage))
    .bind(big(fee.0, "fee")?)
    .bind(liquidation_price.0)
    .bind(take_profit.map(|p| p.0))
    .bind(stop_loss.map(|p| p.0))
    .bind(big_u(rec.at_ns, "time")?)
    .execute(&mut **tx)
    .await?;
    Ok(())
}

/// A full close marks the row closed; a partial close adds the closed part as a row of its own
/// (copied from the parent) and shrinks the parent.
async fn close_position(tx: &mut Tx<'_>, rec: &ChangeRecord) -> Result<()> {
    let Change::Closed {
        position,
        of_position,
        quantity,
        exit_price,
        margin_released,
        realized_pnl,
        fee,
        payout,
        reason,
        bad_debt,
        insurance_paid,
        house_paid,
        ..
    } = rec.change
    else {
        unreachable!("called for a close");
    };
    let (part, parent) = (big_u(position.0, "position")?, big_u(of_position.0, "position")?);
    if part != parent {
        let copied = sqlx::query(
            "INSERT INTO positions (position_id, of_position, account_id, market, side, status, \
             quantity, entry_price, margin, leverage, open_fee, liquidation_price, take_profit, \
             stop_loss, opened_at_ns) \
             SELECT $1, position_id, account_id, market, side, 'open', $2, entry_price, $3, \
             leverage, 0, liquidation_price, take_profit, stop_loss, opened_at_ns \
             FROM positions WHERE position_id = $4 AND status = 'open'",
        )
        .bind(part)
        .bind(quantity.0)
        .bind(big(margin_released.0, "margin")?)
        .bind(parent)
        .execute(&mut **tx)
        .await?;
        expect_one(copied.rows_affected(), rec)?;
        let shrunk = sqlx::query(
            "UPDATE positions SET quantity = quantity - $1, margin = margin - $2 \
             WHERE position_id = $3",
        )
        .bind(quantity.0)
        .bind(big(margin_released.0, "margin")?)
        .bind(parent)
        .execute(&mut **tx)
        .await?;
        expect_one(shrunk.rows_affected(), rec)?;
    }
    let closed = sqlx::query(
        "UPDATE positions SET exit_price = $1, realized_pnl = $2, close_fee = $3, payout = $4, \
         close_reason = $5, bad_debt = $6, insurance_paid = $7, house_paid = $8, \
         closed_at_ns = $9, close_seq = $10, close_n = $11, status = 'closed' \
         WHERE position_id = $12 AND status = 'open'",
    )
    .bind(exit_price.0)
    .bind(big(realized_pnl.0, "pnl")?)
    .bind(big(fee.0, "fee")?)
    .bind(big(payout.0, "payout")?)
    .bind(reason.as_str())
    .bind(big(bad_debt.0, "bad debt")?)
    .bind(big(insurance_paid.0, "insurance paid")?)
    .bind(big(house_paid.0, "house paid")?)
    .bind(big_u(rec.at_ns, "time")?)
    .bind(big_u(rec.seq, "seq")?)
    .bind(i64::from(rec.n))
    .bind(part)
    .execute(&mut **tx)
    .await?;
    expect_one(closed.rows_affected(), rec)
}

async fn insert_house(tx: &mut Tx<'_>, rec: &ChangeRecord, books: &mut Books) -> Result<()> {
    let Some(h) = house_movement(&rec.change) else { return Ok(()) };
    books.insurance += h.insurance_delta;
    books.house += h.house_delta;
    if books.insurance < 0 {
        return Err(HistoryError::Mismatch(format!("insurance fund below zero after {rec:?}")));
    }
    sqlx::query(
        "INSERT INTO house_ledger (seq, n, kind, position_id, insurance_delta, house_delta, \
         insurance_fund, house_balance, at_ns) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
    )
    .bind(big_u(rec.seq, "seq")?)
    .bind(i64::from(rec.n))
    .bind(h.kind)
    .bind(position_of(&rec.change)?.unwrap_or(0))
    .bind(big(h.insurance_delta, "insurance")?)
    .bind(big(h.house_delta, "house")?)
    .bind(big(books.insurance, "insurance fund")?)
    .bind(big(books.house, "house balance")?)
    .bind(big_u(rec.at_ns, "time")?)
    .execute(&mut **tx)
    .await?;
    Ok(())
}
