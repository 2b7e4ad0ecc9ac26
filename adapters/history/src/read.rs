//! Reading the store for the API: closed positions, one closed position, the statement. Every
//! query is scoped to one account; pages are keyed by `(seq, n)`, so rows that arrive while a
//! client pages never shift the pages it has not read yet.

use engine_core::command::{AccountId, MarketId, PositionId, PositionStatus};
use engine_core::event::{ChangeRecord, CloseInfo, CloseReason, PositionView};
use engine_core::math::Side;
use engine_core::num::{Price, Qty, Usdc};
use sqlx::Row;
use sqlx::any::AnyRow;

use ground::history::ReadError;
use ground::ports::BoxFuture;

use crate::{Candle, HistoryError, LedgerEntry, LedgerQuery, Page, Result, Store, big_u};
use ground::history::DailyTotal;

pub use ground::history::PAGE_LIMIT_MAX;

/// Most rows [`Store::explanations`] returns: a position's closes and margin calls with their
/// quotes (a margin call per crossing: a long-lived position may have many).
pub const EXPLANATION_ROWS_MAX: i64 = 300;

/// Nanoseconds in a UTC day (the store's times are ns since the epoch; UTC has no DST).
const NS_PER_DAY: u64 = 86_400_000_000_000;

/// seq, n, kind, amount, balance, position, at_ns.
type LedgerRow = (i64, i64, String, i64, i64, Option<i64>, i64);

/// `"<seq>_<n>"`, the position of a row in engine order.
fn encode_cursor(seq: i64, n: i64) -> String {
    format!("{seq}_{n}")
}

/// Parses a cursor we issued; anything else is [`HistoryError::InvalidCursor`].
fn decode_cursor(s: &str) -> Result<(i64, i64)> {
    let bad = || HistoryError::InvalidCursor;
    let (seq, n) = s.split_once('_').ok_or_else(bad)?;
    let digits = |p: &str| !p.is_empty() && p.len() <= 19 && p.bytes().all(|b| b.is_ascii_digit());
    if !digits(seq) || !digits(n) {
        return Err(bad());
    }
    Ok((seq.parse().map_err(|_| bad())?, n.parse().map_err(|_| bad())?))
}

fn check_limit(limit: u32) -> Result<i64> {
    if (1..=PAGE_LIMIT_MAX).contains(&limit) {
        Ok(i64::from(limit))
    } else {
        Err(HistoryError::InvalidLimit)
    }
}

/// The columns [`closed_view`] reads, in its order (a macro: sqlx takes only static SQL).
macro_rules! position_cols {
    () => {
        "position_id, of_position, account_id, market, side, quantity, entry_price, margin, \
         leverage, liquidation_price, take_profit, stop_loss, opened_at_ns, exit_price, \
         realized_pnl, close_fee, payout, close_reason, closed_at_ns, close_seq, close_n"
    };
}

impl Store {
    /// The journal sequence up to which the store holds every change.
    pub async fn consistent_to(&self) -> Result<u64> {
        Ok(self.cursor().await?.seq)
    }

    /// `account`'s closed positions (and closed parts), newest first, `limit` per page.
    pub async fn closed_positions(
        &self,
        account: AccountId,
        cursor: Option<&str>,
        limit: u32,
    ) -> Result<Page<PositionView>> {
        let limit = check_limit(limit)?;
        let (seq, n) = match cursor {
            Some(c) => decode_cursor(c)?,
            None => (i64::MAX, i64::MAX),
        };
        let consistent_to = self.consistent_to().await?;
        let rows = sqlx::query(concat!(
            "SELECT ",
            position_cols!(),
            " FROM positions WHERE account_id = $1 AND status = 'closed' \
             AND (close_seq < $2 OR (close_seq = $2 AND close_n < $3)) \
             ORDER BY close_seq DESC, close_n DESC LIMIT $4"
        ))
        .bind(i64::from(account.0))
        .bind(seq)
        .bind(n)
        .bind(limit + 1)
        .fetch_all(&self.pool)
        .await?;
        let mut items = Vec::with_capacity(rows.len());
        let mut keys = Vec::with_capacity(rows.len());
        for row in &rows {
            items.push(closed_view(row)?);
            keys.push((row.try_get::<i64, _>(19)?, row.try_get::<i64, _>(20)?));
        }
        let next = page_end(&mut items, &keys, limit);
        Ok(Page { items, next, consistent_to })
    }

    /// One of `account`'s closed positions (or closed parts); `None` if it is not closed in
    /// the store or not the account's.
    pub async fn closed_position(
        &self,
        account: AccountId,
        id: PositionId,
    ) -> Result<Option<PositionView>> {
        // An id no stored position can have (past the BIGINT column) is simply not there.
        let Ok(id) = i64::try_from(id.0) else { return Ok(None) };
        let row = sqlx::query(concat!(
            "SELECT ",
            position_cols!(),
            " FROM positions WHERE position_id = $1 AND account_id = $2 AND status = 'closed'"
        ))
        .bind(id)
        .bind(i64::from(account.0))
        .fetch_optional(&self.pool)
        .await?;
        row.as_ref().map(closed_view).transpose()
    }

    /// What explains `account`'s position `id`'s triggered closes and margin calls
    /// (docs/DESIGN.md, "Every close explained"): its `explained`, `source_quotes` and `closed`
    /// changes and the account's `stop_out` at the same sequences, oldest first; the newest
    /// 300 of them (`EXPLANATION_ROWS_MAX`).
    pub async fn explanations(
        &self,
        account: AccountId,
        id: PositionId,
    ) -> Result<Vec<ChangeRecord>> {
        let Ok(id) = i64::try_from(id.0) else { return Ok(Vec::new()) };
        let account = i64::from(account.0);
        let mut rows: Vec<(i64, i64, i64, String)> = sqlx::query_as(
            "SELECT seq, n, at_ns, body FROM changes WHERE position_id = $1 AND account_id = $2 \
             AND kind IN ('explained', 'source_quotes', 'closed') ORDER BY seq DESC, n DESC LIMIT $3",
        )
        .bind(id)
        .bind(account)
        .bind(EXPLANATION_ROWS_MAX)
        .fetch_all(&self.pool)
        .await?;
        let stop_outs: Vec<(i64, i64, i64, String)> = sqlx::query_as(
            "SELECT seq, n, at_ns, body FROM changes WHERE account_id = $1 AND kind = 'stop_out' \
             AND seq IN (SELECT seq FROM changes WHERE position_id = $2 AND account_id = $1 \
             AND kind = 'explained')",
        )
        .bind(account)
        .bind(id)
        .fetch_all(&self.pool)
        .await?;
        rows.extend(stop_outs);
        rows.sort_unstable_by_key(|r| (r.0, r.1));
        rows.into_iter().map(change_record).collect()
    }

    /// The clients' open exposure per market, in steps (long positive), split by whether the
    /// account's group is in `a_book_groups`: `(market, a_book, b_book)`. An account's group is
    /// its last `group_set` change (0, the default, before any). O(open positions + group
    /// moves): for the hedger's rounds, not a trader's request.
    pub async fn open_exposure(&self, a_book_groups: &[u16]) -> Result<Vec<(MarketId, i64, i64)>> {
        let moves: Vec<(i64, String)> = sqlx::query_as(
            "SELECT account_id, body FROM changes WHERE kind = 'group_set' ORDER BY seq, n",
        )
        .fetch_all(&self.pool)
        .await?;
        let mut group_of = std::collections::HashMap::new();
        for (account, body) in moves {
            let v: serde_json::Value = serde_json::from_str(&body)
                .map_err(|e| HistoryError::Mismatch(format!("stored group_set: {e}")))?;
            let group = v["group_set"]["group"].as_u64().and_then(|g| u16::try_from(g).ok());
            group_of.insert(account, group.unwrap_or(0));
        }
        let open: Vec<(i64, i64, String, i64)> = sqlx::query_as(
            "SELECT account_id, market, side, quantity FROM positions WHERE status = 'open'",
        )
        .fetch_all(&self.pool)
        .await?;
        let mut by_market: std::collections::BTreeMap<u16, (i64, i64)> = Default::default();
        for (account, market, side, qty) in open {
            let market =
                u16::try_from(market).map_err(|_| HistoryError::Mismatch("market".into()))?;
            let signed = if side == "short" { -qty } else { qty };
            let e = by_market.entry(market).or_default();
            if a_book_groups.contains(group_of.get(&account).unwrap_or(&0)) {
                e.0 += signed;
            } else {
                e.1 += signed;
            }
        }
        Ok(by_market.into_iter().map(|(m, (a, b))| (MarketId(m), a, b)).collect())
    }

    /// Every account's statement rows summed per UTC day and kind, for days
    /// `from_day..to_day` (days since the epoch).
    pub async fn daily_totals(&self, from_day: u64, to_day: u64) -> Result<Vec<DailyTotal>> {
        let ns = |day: u64| big_u(day.saturating_mul(NS_PER_DAY), "day");
        let rows: Vec<(i64, String, i64)> = sqlx::query_as(
            "SELECT CAST(at_ns / 86400000000000 AS BIGINT) AS day, kind, \
             CAST(SUM(amount) AS BIGINT) FROM ledger WHERE at_ns >= $1 AND at_ns < $2 \
             GROUP BY day, kind ORDER BY day, kind",
        )
        .bind(ns(from_day)?)
        .bind(ns(to_day)?)
        .fetch_all(&self.pool)
        .await?;
        rows.into_iter()
            .map(|(day, kind, amount)| {
                Ok(DailyTotal { day: unsigned(day)?, kind, amount: Usdc(amount.into()) })
            })
            .collect()
    }

    /// The audit log: every operator's action (`account_controlled`, `market_changed`,
    /// `group_set`, `group_terms_set` and `role_set` changes), newest first, `limit` per
    /// page.
    pub async fn audit(&self, cursor: Option<&str>, limit: u32) -> Result<Page<ChangeRecord>> {
        let limit = check_limit(limit)?;
        let (seq, n) = match cursor {
            Some(c) => decode_cursor(c)?,
            None => (i64::MAX, i64::MAX),
        };
        let consistent_to = self.consistent_to().await?;
        let rows: Vec<(i64, i64, i64, String)> = sqlx::query_as(
            "SELECT seq, n, at_ns, body FROM changes WHERE kind IN ('account_controlled', \
             'market_changed', 'group_set', 'group_terms_set', 'role_set') \
             AND (seq < $1 OR (seq = $1 AND n < $2)) ORDER BY seq DESC, n DESC LIMIT $3",
        )
        .bind(seq)
        .bind(n)
        .bind(limit + 1)
        .fetch_all(&self.pool)
        .await?;
        let keys: Vec<(i64, i64)> = rows.iter().map(|r| (r.0, r.1)).collect();
        let mut items = rows.into_iter().map(change_record).collect::<Result<Vec<_>>>()?;
        let next = page_end(&mut items, &keys, limit);
        Ok(Page { items, next, consistent_to })
    }

    /// The latest `limit` candles of `market` for `span` (one of [`crate::SPANS`]), oldest
    /// first. An unknown span is [`HistoryError::InvalidQuery`].
    pub async fn candles(&self, market: MarketId, span: &str, limit: u32) -> Result<Vec<Candle>> {
        let limit = check_limit(limit)?;
        let span = crate::SPANS
            .iter()
            .map(|(s, _)| *s)
            .find(|s| *s == span)
            .ok_or(HistoryError::InvalidQuery("interval must be 1m, 5m, 15m, 1h, 4h or 1d"))?;
        let rows: Vec<(i64, i64, i64, i64, i64, i64)> = sqlx::query_as(
            "SELECT start_ns, open, high, low, close, ticks FROM candles \
             WHERE market = $1 AND span = $2 ORDER BY start_ns DESC LIMIT $3",
        )
        .bind(i64::from(market.0))
        .bind(span)
        .bind(limit)
        .fetch_all(&self.pool)
        .await?;
        let mut out = Vec::with_capacity(rows.len());
        for (start, open, high, low, close, ticks) in rows.into_iter().rev() {
            out.push(Candle {
                start_ns: unsigned(start)?,
                open: Price(open),
                high: Price(high),
                low: Price(low),
                close: Price(close),
                ticks: unsigned(ticks)?,
            });
        }
        Ok(out)
    }

    /// `account`'s statement in engine order, filtered by time, `q.limit` per page.
    pub async fn ledger(&self, account: AccountId, q: &LedgerQuery) -> Result<Page<LedgerEntry>> {
        let limit = check_limit(q.limit)?;
        let (seq, n) = match &q.cursor {
            Some(c) => decode_cursor(c)?,
            None => (-1, -1),
        };
        let from = big_u(q.from_ns.unwrap_or(0), "time")?;
        let to = big_u(q.to_ns.unwrap_or(i64::MAX as u64), "time")?;
        let consistent_to = self.consistent_to().await?;
        let rows: Vec<LedgerRow> = sqlx::query_as(
            "SELECT seq, n, kind, amount, balance, position_id, at_ns FROM ledger \
             WHERE account_id = $1 AND at_ns >= $2 AND at_ns < $3 \
             AND (seq > $4 OR (seq = $4 AND n > $5)) ORDER BY seq, n LIMIT $6",
        )
        .bind(i64::from(account.0))
        .bind(from)
        .bind(to)
        .bind(seq)
        .bind(n)
        .bind(limit + 1)
        .fetch_all(&self.pool)
        .await?;
        let keys: Vec<(i64, i64)> = rows.iter().map(|r| (r.0, r.1)).collect();
        let mut items = Vec::with_capacity(rows.len());
        for (seq, _, kind, amount, balance, position, at_ns) in rows {
            items.push(LedgerEntry {
                seq: unsigned(seq)?,
                kind,
                amount: Usdc(amount.into()),
                balance: Usdc(balance.into()),
                position: position.map(unsigned).transpose()?.map(PositionId),
                at_ns: unsigned(at_ns)?,
            });
        }
        let next = page_end(&mut items, &keys, limit);
        Ok(Page { items, next, consistent_to })
    }
}

/// A stored change as the engine recorded it.
fn change_record((seq, n, at_ns, body): (i64, i64, i64, String)) -> Result<ChangeRecord> {
    let change = serde_json::from_str(&body)
        .map_err(|e| HistoryError::Mismatch(format!("stored change {seq}/{n}: {e}")))?;
    let bad = |what| HistoryError::Mismatch(format!("stored change {seq}/{n}: {what}"));
    Ok(ChangeRecord {
        seq: u64::try_from(seq).map_err(|_| bad("seq"))?,
        n: u32::try_from(n).map_err(|_| bad("n"))?,
        at_ns: u64::try_from(at_ns).map_err(|_| bad("time"))?,
        change,
    })
}

/// Cuts the extra row fetched to learn whether another page exists; the cursor is the key of
/// the last row kept.
fn page_end<T>(items: &mut Vec<T>, keys: &[(i64, i64)], limit: i64) -> Option<String> {
    let limit = usize::try_from(limit).unwrap_or(usize::MAX);
    if items.len() <= limit {
        return None;
    }
    items.truncate(limit);
    let (seq, n) = keys[limit - 1];
    Some(encode_cursor(seq, n))
}

fn unsigned(v: i64) -> Result<u64> {
    u64::try_from(v).map_err(|_| HistoryError::Mismatch(format!("negative id or time {v}")))
}

fn closed_view(row: &AnyRow) -> Result<PositionView> {
    let bad = |what: &str| HistoryError::Mismatch(format!("stored {what} is not valid"));
    let get = |i: usize| row.try_get::<i64, _>(i);
    let opt = |i: usize| row.try_get::<Option<i64>, _>(i);
    let side = match row.try_get::<String, _>(4)?.as_str() {
        "long" => Side::Long,
        "short" => Side::Short,
        _ => return Err(bad("side")),
    };
    let reason = match row.try_get::<Option<String>, _>(17)?.as_deref() {
        Some("manual") => CloseReason::Manual,
        Some("take_profit") => CloseReason::TakeProfit,
        Some("stop_loss") => CloseReason::StopLoss,
        Some("trailing_stop") => CloseReason::TrailingStop,
        Some("liquidation") => CloseReason::Liquidation,
        Some("stop_out") => CloseReason::StopOut,
        Some("netted") => CloseReason::Netted,
        _ => return Err(bad("close reason")),
    };
    let money =
        |i: usize| -> Result<Usdc> { Ok(Usdc(opt(i)?.ok_or_else(|| bad("amount"))?.into())) };
    let close = CloseInfo {
        exit_price: Price(opt(13)?.ok_or_else(|| bad("exit price"))?),
        realized_pnl: money(14)?,
        fee: money(15)?,
        payout: money(16)?,
        reason,
        closed_at_ns: unsigned(opt(18)?.ok_or_else(|| bad("close time"))?)?,
        position: PositionId(unsigned(get(1)?)?),
    };
    Ok(PositionView {
        id: PositionId(unsigned(get(0)?)?),
        account: AccountId(u32::try_from(get(2)?).map_err(|_| bad("account"))?),
        market: MarketId(u16::try_from(get(3)?).map_err(|_| bad("market"))?),
        side,
        status: PositionStatus::Closed,
        quantity: Qty(get(5)?),
        entry_price: Price(get(6)?),
        margin: Usdc(get(7)?.into()),
        leverage: u32::try_from(get(8)?).map_err(|_| bad("leverage"))?,
        liquidation_price: Price(get(9)?),
        take_profit: opt(10)?.map(Price),
        stop_loss: opt(11)?.map(Price),
        trailing_stop: None, // a closed position has none
        unrealized_pnl: Usdc::ZERO,
        opened_at_ns: unsigned(get(12)?)?,
        close: Some(close),
    })
}

/// The store as the API reads it (the port the binary hands to the HTTP adapter).
impl ground::history::HistoryReader for Store {
    fn consistent_to(&self) -> BoxFuture<'_, std::result::Result<u64, ReadError>> {
        Box::pin(async move { Store::consistent_to(self).await.map_err(read_error) })
    }

    fn closed_positions<'a>(
        &'a self,
        account: AccountId,
        cursor: Option<&'a str>,
        limit: u32,
    ) -> BoxFuture<'a, std::result::Result<Page<PositionView>, ReadError>> {
        Box::pin(async move {
            Store::closed_positions(self, account, cursor, limit).await.map_err(read_error)
        })
    }

    fn closed_position(
        &self,
        account: AccountId,
        position: PositionId,
    ) -> BoxFuture<'_, std::result::Result<Option<PositionView>, ReadError>> {
        Box::pin(async move {
            Store::closed_position(self, account, position).await.map_err(read_error)
        })
    }

    fn explanations(
        &self,
        account: AccountId,
        position: PositionId,
    ) -> BoxFuture<'_, std::result::Result<Vec<ChangeRecord>, ReadError>> {
        Box::pin(
            async move { Store::explanations(self, account, position).await.map_err(read_error) },
        )
    }

    fn candles<'a>(
        &'a self,
        market: MarketId,
        span: &'a str,
        limit: u32,
    ) -> BoxFuture<'a, std::result::Result<Vec<Candle>, ReadError>> {
        Box::pin(async move { Store::candles(self, market, span, limit).await.map_err(read_error) })
    }

    fn ledger<'a>(
        &'a self,
        account: AccountId,
        q: &'a LedgerQuery,
    ) -> BoxFuture<'a, std::result::Result<Page<LedgerEntry>, ReadError>> {
        Box::pin(async move { Store::ledger(self, account, q).await.map_err(read_error) })
    }

    fn daily_totals(
        &self,
        from_day: u64,
        to_day: u64,
    ) -> BoxFuture<'_, std::result::Result<Vec<DailyTotal>, ReadError>> {
        Box::pin(
            async move { Store::daily_totals(self, from_day, to_day).await.map_err(read_error) },
        )
    }

    fn audit<'a>(
        &'a self,
        cursor: Option<&'a str>,
        limit: u32,
    ) -> BoxFuture<'a, std::result::Result<Page<ChangeRecord>, ReadError>> {
        Box::pin(async move { Store::audit(self, cursor, limit).await.map_err(read_error) })
    }
}

/// The caller's mistakes as themselves; the store's own failures as unavailable.
fn read_error(e: HistoryError) -> ReadError {
    match e {
        HistoryError::InvalidCursor => ReadError::InvalidCursor,
        HistoryError::InvalidLimit => ReadError::InvalidLimit,
        HistoryError::InvalidQuery(why) => ReadError::InvalidQuery(why),
        other => ReadError::Unavailable(other.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cursors_round_trip_and_junk_is_refused() {
        assert_eq!(decode_cursor(&encode_cursor(42, 7)).unwrap(), (42, 7));
        for junk in ["", "_", "1_", "_1", "1-2", "-1_2", "1_2_3", "a_b", "99999999999999999999_1"] {
            assert!(matches!(decode_cursor(junk), Err(HistoryError::InvalidCursor)), "{junk}");
        }
    }

    #[test]
    fn limits_are_bounded() {
        assert!(check_limit(0).is_err());
        assert!(check_limit(PAGE_LIMIT_MAX + 1).is_err());
        assert_eq!(check_limit(PAGE_LIMIT_MAX).unwrap(), i64::from(PAGE_LIMIT_MAX));
    }
}
