//! Backpack's klines (<https://docs.backpack.exchange/#tag/Markets/operation/get_klines>):
//! `GET /api/v1/klines?symbol=BTC_USDC&interval=1m&startTime=<s>` (the start is required, in
//! seconds) answers the candles since then, oldest first, each `{"start":"2025-07-19 13:09:00",
//! "end":…,"open":"118238","high":…,"low":…,"close":…,"volume":…,"quoteVolume":…,
//! "trades":"12"}`: times in UTC, prices as strings, and an interval without trades has no
//! prices (skipped). Interval names are the engine's spans (`1m` … `1d`).

use serde::Deserialize;
use time::{Date, Month, PrimitiveDateTime, Time};

use crate::frame::{MarketRef, ParseError, from_json};
use crate::klines::{Klines, VenueCandle, candle};

/// Backpack's kline endpoint.
#[derive(Debug, Clone, Copy, Default)]
pub struct BackpackKlines;

#[derive(Deserialize)]
struct Row<'a> {
    #[serde(borrow)]
    start: Option<&'a str>,
    #[serde(borrow)]
    open: Option<&'a str>,
    #[serde(borrow)]
    high: Option<&'a str>,
    #[serde(borrow)]
    low: Option<&'a str>,
    #[serde(borrow)]
    close: Option<&'a str>,
}

impl Klines for BackpackKlines {
    fn rest_url(&self) -> &'static str {
        "https://api.backpack.exchange"
    }

    fn path(&self, symbol: &str, span: &str, secs: u64, limit: u32, now_ms: u64) -> Option<String> {
        let start = (now_ms / 1_000).saturating_sub(secs * u64::from(limit));
        Some(format!("/api/v1/klines?symbol={symbol}&interval={span}&startTime={start}"))
    }

    fn parse(&self, body: &str, market: MarketRef) -> Result<Vec<VenueCandle>, ParseError> {
        let rows: Vec<Row<'_>> = from_json(body)?;
        let mut out = Vec::with_capacity(rows.len());
        for row in &rows {
            let start = start_ms(row.start.ok_or(ParseError::MissingField("start"))?)?;
            let (Some(o), Some(h), Some(l), Some(c)) = (row.open, row.high, row.low, row.close)
            else {
                continue;
            };
            out.push(candle(market, start, [o, h, l, c])?);
        }
        Ok(out)
    }
}

/// `2025-07-19 13:09:00` (UTC) as ms since the epoch.
fn start_ms(text: &str) -> Result<u64, ParseError> {
    let bad = || ParseError::BadInteger("start");
    let (date, time) = text.split_once(' ').ok_or_else(bad)?;
    let num = |s: Option<&str>| s.and_then(|s| s.parse::<u16>().ok()).ok_or_else(bad);
    let mut d = date.split('-');
    let (y, m, day) = (num(d.next())?, num(d.next())?, num(d.next())?);
    let mut t = time.split(':');
    let (hh, mm, ss) = (num(t.next())?, num(t.next())?, num(t.next())?);
    if d.next().is_some() || t.next().is_some() {
        return Err(bad());
    }
    let small = |v: u16| u8::try_from(v).map_err(|_| bad());
    let month = Month::try_from(small(m)?).map_err(|_| bad())?;
    let date = Date::from_calendar_date(i32::from(y), month, small(day)?).map_err(|_| bad())?;
    let time = Time::from_hms(small(hh)?, small(mm)?, small(ss)?).map_err(|_| bad())?;
    let secs = PrimitiveDateTime::new(date, time).assume_utc().unix_timestamp();
    u64::try_from(secs).ok().and_then(|s| s.checked_mul(1_000)).ok_or_else(bad)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn start_times_are_utc_and_exact() {
        assert_eq!(start_ms("2025-07-19 13:09:00").unwrap(), 1_752_930_540_000);
        for bad in ["2025-07-19T13:09:00", "2025-13-19 13:09:00", "2025-07-19 13:09", "x"] {
            assert!(start_ms(bad).is_err(), "{bad}");
        }
    }
}
