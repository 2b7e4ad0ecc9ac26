//! A batch of changes projected into the rows it writes, in memory and without I/O: the
//! accounts and positions it touches in their final state, and the rows it appends. The
//! writer loads what the batch touches, calls [`project`], and stores the result with a few
//! multi-row statements (a statement per row was 70 µs a change on SQLite, 100 µs on
//! PostgreSQL: the round trips, not the work).

use std::collections::BTreeMap;

use engine_core::event::{Change, ChangeRecord};

use crate::project::{self, house_movement, movements};
use crate::{Cursor, HistoryError, Result};

/// An account row (`balance` = available + locked margin + margin held for orders; `locked`
/// = locked + held).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AccountRow {
    pub(crate) created_at_ns: i64,
    pub(crate) balance: i128,
    pub(crate) locked: i128,
}

/// A position row; `close` is set once it is closed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PositionRow {
    pub(crate) of_position: i64,
    pub(crate) account_id: i64,
    pub(crate) market: i64,
    pub(crate) side: String,
    pub(crate) quantity: i64,
    pub(crate) entry_price: i64,
    pub(crate) margin: i128,
    pub(crate) leverage: i64,
    pub(crate) open_fee: i128,
    pub(crate) liquidation_price: i64,
    pub(crate) take_profit: Option<i64>,
    pub(crate) stop_loss: Option<i64>,
    pub(crate) opened_at_ns: i64,
    pub(crate) close: Option<CloseCols>,
}

/// The columns a close fills.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CloseCols {
    pub(crate) exit_price: i64,
    pub(crate) realized_pnl: i128,
    pub(crate) close_fee: i128,
    pub(crate) payout: i128,
    pub(crate) reason: String,
    pub(crate) bad_debt: i128,
    pub(crate) insurance_paid: i128,
    pub(crate) house_paid: i128,
    pub(crate) closed_at_ns: i64,
    pub(crate) close_seq: i64,
    pub(crate) close_n: i64,
}

/// A `changes` row.
#[derive(Clone, Debug)]
pub struct RawRow {
    pub(crate) seq: i64,
    pub(crate) n: i64,
    pub(crate) at_ns: i64,
    pub(crate) kind: &'static str,
    pub(crate) account_id: i64,
    pub(crate) position_id: Option<i64>,
    pub(crate) body: String,
}

/// A `ledger` row.
#[derive(Clone, Debug)]
pub struct LedgerRow {
    pub(crate) seq: i64,
    pub(crate) n: i64,
    pub(crate) account_id: i64,
    pub(crate) kind: &'static str,
    pub(crate) amount: i128,
    pub(crate) balance: i128,
    pub(crate) position_id: Option<i64>,
    pub(crate) at_ns: i64,
}

/// A `house_ledger` row.
#[derive(Clone, Debug)]
pub struct HouseRow {
    pub(crate) seq: i64,
    pub(crate) n: i64,
    pub(crate) kind: &'static str,
    pub(crate) position_id: i64,
    pub(crate) insurance_delta: i128,
    pub(crate) house_delta: i128,
    pub(crate) insurance_fund: i128,
    pub(crate) house_balance: i128,
    pub(crate) at_ns: i64,
}

pub use ground::history::SPANS;

/// One candle's part within a batch (merged into the stored one: high/low widened, close
/// replaced, ticks added; open kept from the first).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CandleRow {
    pub(crate) open: i64,
    pub(crate) high: i64,
    pub(crate) low: i64,
    pub(crate) close: i64,
    pub(crate) ticks: i64,
}

/// What a batch writes.
#[derive(Debug, Default)]
pub struct Projection {
    /// Touched accounts in their final state (id → row); `new` says which to insert.
    pub(crate) accounts: BTreeMap<i64, AccountRow>,
    /// Touched positions in their final state.
    pub(crate) positions: BTreeMap<i64, PositionRow>,
    pub(crate) raw: Vec<RawRow>,
    pub(crate) ledger: Vec<LedgerRow>,
    pub(crate) house: Vec<HouseRow>,
    /// (market, span, bucket start ns) → the batch's part of that candle.
    pub(crate) candles: BTreeMap<(i64, &'static str, i64), CandleRow>,
    pub(crate) insurance: i128,
    pub(crate) house_balance: i128,
    /// The last change projected (`None`: nothing after the start cursor).
    pub(crate) cursor: Option<Cursor>,
}

/// The account and position ids the changes of `batch` after `start` touch (to load first).
pub fn touched(batch: &[ChangeRecord], start: Cursor) -> (Vec<i64>, Vec<i64>) {
    let mut accounts = Vec::new();
    let mut positions = Vec::new();
    for rec in batch.iter().filter(|r| start.precedes(r)) {
        if let Some(a) = rec.change.account() {
            accounts.push(i64::from(a.0));
        }
        match rec.change {
            Change::Closed { of_position, .. } => positions.push(of_position.0),
            Change::MarginAdded { position, .. }
            | Change::TriggersSet { position, .. }
            | Change::Increased { position, .. }
            | Change::Financed { position, .. } => positions.push(position.0),
            _ => {}
        }
    }
    accounts.sort_unstable();
    accounts.dedup();
    positions.sort_unstable();
    positions.dedup();
    (accounts, positions.into_iter().filter_map(|p| i64::try_from(p).ok()).collect())
}

fn id(v: u64, what: &'static str) -> Result<i64> {
    i64::try_from(v).map_err(|_| HistoryError::TooLarge(what))
}

fn mismatch(what: &str, rec: &ChangeRecord) -> HistoryError {
    HistoryError::Mismatch(format!("{what} for {rec:?}"))
}

/// Projects the changes of `batch` after `start` onto the loaded rows (`accounts`, `positions`:
/// what [`touched`] named, as stored) and the house's running totals.
pub fn project(
    batch: &[ChangeRecord],
    start: Cursor,
    accounts: BTreeMap<i64, AccountRow>,
    positions: BTreeMap<i64, PositionRow>,
    insurance: i128,
    house: i128,
) -> Result<Projection> {
    let mut p = Projection {
        accounts,
        positions,
        insurance,
        house_balance: house,
        ..Projection::default()
    };
    let mut last = start;
    for rec in batch.iter().filter(|r| start.precedes(r)) {
        if !last.precedes(rec) {
            return Err(mismatch("out of order", rec));
        }
        last = Cursor { seq: rec.seq, n: i64::from(rec.n) };
        p.apply(rec)?;
    }
    p.cursor = (last != start).then_some(last);
    Ok(p)
}

impl Projection {
    fn apply(&mut self, rec: &ChangeRecord) -> Result<()> {
        if let Change::PriceApplied { market, bid, .. } = rec.change {
            return self.candle(i64::from(market.0), bid.0, id(rec.at_ns, "time")?);
        }
        let Some(account) = rec.change.account() else { return Ok(()) }; // a checkpoint
        let account = i64::from(account.0);
        let (seq, at_ns) = (id(rec.seq, "seq")?, id(rec.at_ns, "time")?);
        let position_id = position_of(&rec.change)?;
        let body = serde_json::to_string(&rec.change)
            .map_err(|e| HistoryError::Mismatch(format!("unserializable change: {e}")))?;
        let kind = project::kind(&rec.change);
        self.raw.push(RawRow {
            seq,
            n: i64::from(rec.n),
            at_ns,
            kind,
            account_id: account,
            position_id,
            body,
        });
        if let Change::AccountCreated { .. } = rec.change {
            let row = AccountRow { created_at_ns: at_ns, balance: 0, locked: 0 };
            if self.accounts.insert(account, row).is_some() {
                return Err(mismatch("account created twice", rec));
            }
        }
        self.apply_position(rec, account, at_ns)?;
        let a = self.accounts.get_mut(&account).ok_or_else(|| mismatch("unknown account", rec))?;
        a.locked += match rec.change {
            Change::Opened { margin, .. } => margin.0,
            Change::Increased { added_margin, .. } => added_margin.0,
            Change::Closed { margin_released, .. } => -margin_released.0,
            Change::MarginAdded { amount, .. } => amount.0,
            Change::OrderPlaced { order } => order.reserved.0,
            Change::Financed { amount, .. } => -amount.0,
            Change::OrderEnded { released, .. } => -released.0,
            Change::OrderAmended { order, released } => order.reserved.0 - released.0,
            _ => 0,
        };
        let stride = i64::try_from(project::MOVEMENTS_MAX).unwrap_or(3);
        for (k, m) in movements(&rec.change).iter().enumerate() {
            a.balance += m.amount;
            let n = i64::from(rec.n) * stride + i64::try_from(k).unwrap_or(0);
            self.ledger.push(LedgerRow {
                seq,
                n,
                account_id: account,
                kind: m.kind,
                amount: m.amount,
                balance: a.balance,
                position_id,
                at_ns,
            });
        }
        if a.balance < 0 || a.locked < 0 {
            return Err(mismatch("negative balance", rec));
        }
        if let Some(h) = house_movement(&rec.change) {
            self.insurance += h.insurance_delta;
            self.house_balance += h.house_delta;
            if self.insurance < 0 {
                return Err(mismatch("insurance fund below zero", rec));
            }
            self.house.push(HouseRow {
                seq,
                n: i64::from(rec.n),
                kind: h.kind,
                position_id: position_id.unwrap_or(0),
                insurance_delta: h.insurance_delta,
                house_delta: h.house_delta,
                insurance_fund: self.insurance,
                house_balance: self.house_balance,
                at_ns,
            });
        }
        Ok(())
    }

    /// Folds an applied bid into every span's current bucket.
    fn candle(&mut self, market: i64, bid: i64, at_ns: i64) -> Result<()> {
        for (span, secs) in SPANS {
            let len = secs * 1_000_000_000;
            let start = at_ns - at_ns.rem_euclid(len);
            self.candles
                .entry((market, span, start))
                .and_modify(|c| {
                    c.high = c.high.max(bid);
                    c.low = c.low.min(bid);
                    c.close = bid;
                    c.ticks += 1;
                })
                .or_insert(CandleRow { open: bid, high: bid, low: bid, close: bid, ticks: 1 });
        }
        Ok(())
    }

    fn apply_position(&mut self, rec: &ChangeRecord, account: i64, at_ns: i64) -> Result<()> {
        match rec.change {
            Change::Opened {
                position,
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
                ..
            } => {
                let pid = id(position.0, "position")?;
                let row = PositionRow {
                    of_position: pid,
                    account_id: account,
                    market: i64::from(market.0),
                    side: side.as_str().to_owned(),
                    quantity: quantity.0,
                    entry_price: entry_price.0,
                    margin: margin.0,
                    leverage: i64::from(leverage),
                    open_fee: fee.0,
                    liquidation_price: liquidation_price.0,
                    take_profit: take_profit.map(|p| p.0),
                    stop_loss: stop_loss.map(|p| p.0),
                    opened_at_ns: at_ns,
                    close: None,
                };
                if self.positions.insert(pid, row).is_some() {
                    return Err(mismatch("position opened twice", rec));
                }
            }
            Change::Closed { .. } => self.apply_close(rec, at_ns)?,
            Change::MarginAdded { position, margin, liquidation_price, .. }
            | Change::Financed { position, margin, liquidation_price, .. } => {
                let open = self.open_mut(position.0, rec)?;
                open.margin = margin.0;
                open.liquidation_price = liquidation_price.0;
            }
            Change::TriggersSet { position, take_profit, stop_loss, .. } => {
                let open = self.open_mut(position.0, rec)?;
                open.take_profit = take_profit.map(|p| p.0);
                open.stop_loss = stop_loss.map(|p| p.0);
            }
            Change::Increased {
                position,
                quantity,
                entry_price,
                margin,
                leverage,
                fee,
                liquidation_price,
                take_profit,
                stop_loss,
                ..
            } => {
                // The row holds the whole position: its open fee is every addition's.
                let open = self.open_mut(position.0, rec)?;
                open.quantity = quantity.0;
                open.entry_price = entry_price.0;
                open.margin = margin.0;
                open.leverage = i64::from(leverage);
                open.open_fee += fee.0;
                open.liquidation_price = liquidation_price.0;
                open.take_profit = take_profit.map(|p| p.0);
                open.stop_loss = stop_loss.map(|p| p.0);
            }
            _ => {}
        }
        Ok(())
    }

    /// A close: of the whole position, or of a part, which becomes a row of its own.
    fn apply_close(&mut self, rec: &ChangeRecord, at_ns: i64) -> Result<()> {
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
            return Ok(());
        };
        let (part, parent) = (id(position.0, "position")?, id(of_position.0, "position")?);
        let open = self.positions.get_mut(&parent).filter(|p| p.close.is_none());
        let open = open.ok_or_else(|| mismatch("no open position", rec))?;
        let close = CloseCols {
            exit_price: exit_price.0,
            realized_pnl: realized_pnl.0,
            close_fee: fee.0,
            payout: payout.0,
            reason: reason.as_str().to_owned(),
            bad_debt: bad_debt.0,
            insurance_paid: insurance_paid.0,
            house_paid: house_paid.0,
            closed_at_ns: at_ns,
            close_seq: id(rec.seq, "seq")?,
            close_n: i64::from(rec.n),
        };
        if part == parent {
            open.close = Some(close);
        } else {
            // The closed part: a row of its own, copied from the parent.
            let row = PositionRow {
                of_position: parent,
                quantity: quantity.0,
                margin: margin_released.0,
                open_fee: 0,
                close: Some(close),
                ..open.clone()
            };
            open.quantity -= quantity.0;
            open.margin -= margin_released.0;
            if self.positions.insert(part, row).is_some() {
                return Err(mismatch("closed part id reused", rec));
            }
        }
        Ok(())
    }

    /// The open position `position`, or why the change does not fit what was stored.
    fn open_mut(&mut self, position: u64, rec: &ChangeRecord) -> Result<&mut PositionRow> {
        let pid = id(position, "position")?;
        let open = self.positions.get_mut(&pid).filter(|p| p.close.is_none());
        open.ok_or_else(|| mismatch("no open position", rec))
    }
}

fn position_of(change: &Change) -> Result<Option<i64>> {
    Ok(match *change {
        Change::Opened { position, .. }
        | Change::Closed { position, .. }
        | Change::MarginAdded { position, .. }
        | Change::Increased { position, .. }
        | Change::TriggersSet { position, .. }
        | Change::TrailingStopSet { position, .. }
        | Change::Financed { position, .. }
        | Change::MarginCall { position, .. }
        | Change::Charged { position, .. }
        | Change::Explained { position, .. }
        | Change::SourceQuotes { position, .. }
        | Change::MarginMoved { to: position, .. } => Some(id(position.0, "position")?),
        _ => None,
    })
}
