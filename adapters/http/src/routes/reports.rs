//! The back office's reports (docs/DESIGN.md, "Daily report"): the house's P&L of each UTC day
//! by source, and any account's statement for an operator. The report is every account's
//! statement rows summed per day and kind, with the sign turned: every movement of a client's
//! money that is not a deposit or a withdrawal went to or came from the house's lines (house
//! balance, insurance fund, spread and commission revenue), so a day's total is exactly what
//! those lines moved — the conservation identity, to the micro-USDC.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::Arc;

use axum::extract::State;
use axum::http::{HeaderValue, header};
use axum::response::{IntoResponse, Response};
use ground::history::DailyTotal;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::AppState;
use crate::convert::money;
use crate::dto;
use crate::error::ApiError;
use crate::extract::{AdminUser, ApiPath, ApiQuery, St};
use crate::routes::history::{history_error, history_of};
use engine_core::num::Usdc;

/// This group's routes, with their OpenAPI operations.
pub(super) fn router() -> OpenApiRouter<Arc<AppState>> {
    OpenApiRouter::new()
        .routes(routes!(daily))
        .routes(routes!(account_statement))
        .routes(routes!(scenarios, stress))
}

/// Most days one report covers: a year and a day (a leap year's).
const REPORT_DAYS_MAX: u64 = 366;

/// The report's sources, in column order: (column, the statement kinds it sums). The house's
/// amount is minus what the accounts saw.
const SOURCES: [(&str, &[&str]); 9] = [
    ("spread_markup", &["spread_markup"]),
    ("commission", &["commission"]),
    ("market_fees", &["open_fee", "close_fee"]),
    ("liquidation_fees", &["liquidation_fee"]),
    ("financing", &["financing"]),
    ("trading_pnl", &["realized_pnl"]),
    ("bad_debt", &["loss_forgiven"]),
    ("adjustments", &["adjustment"]),
    ("credit", &["credit"]),
];

/// The CSV header.
pub const CSV_HEADER: &str = "day,spread_markup,commission,market_fees,liquidation_fees,financing,trading_pnl,bad_debt,adjustments,credit,total,deposits,withdrawals,hedge_pnl\n";

#[utoipa::path(get, path = "/api/v1/admin/reports/daily", tag = "operations",
    summary = "Operator: the house's P&L of each UTC day by source (spread markup, commission, market fees, liquidation fees, financing, the traders' realized P&L, bad debt, adjustments, credit), reconciling with the conservation identity to the micro-USDC",
    security(("bearer" = [])), params(dto::ReportQuery),
    responses(
        (status = 200, description = "one row per day with any movement, oldest first", body = dto::DailyReport),
        (status = 400, description = "invalid dates or format, or more than 366 days", body = dto::ErrorBody),
        (status = 403, description = "the caller is not an operator", body = dto::ErrorBody),
        (status = 404, description = "this server keeps no history store", body = dto::ErrorBody),
        dto::AuthedErrors,
    ))]
async fn daily(
    State(state): St,
    AdminUser(_by): AdminUser,
    ApiQuery(q): ApiQuery<dto::ReportQuery>,
) -> Result<Response, ApiError> {
    let h = history_of(&state)?;
    let csv = match q.format.as_deref().unwrap_or("json") {
        "csv" => true,
        "json" => false,
        _ => return Err(ApiError::bad_request("invalid_query", "format must be json or csv")),
    };
    let (from, to) = (day_of(&q.from)?, day_of(&q.to)? + 1);
    if to <= from || to - from > REPORT_DAYS_MAX {
        return Err(ApiError::bad_request(
            "invalid_query",
            "to must be on or after from, at most 366 days later",
        ));
    }
    let consistent_to = h.store.consistent_to().await.map_err(history_error)?;
    let totals = h.store.daily_totals(from, to).await.map_err(history_error)?;
    let mut days = report(&totals);
    if let Some(hedge) = hedge_by_day(&state, h, (from, to)).await? {
        add_hedge(&mut days, &hedge);
    }
    if csv {
        let mut resp = to_csv(&days).into_response();
        let headers = resp.headers_mut();
        headers.insert(header::CONTENT_TYPE, HeaderValue::from_static("text/csv; charset=utf-8"));
        headers.insert("x-consistent-to", HeaderValue::from(consistent_to.min(i64::MAX as u64)));
        return Ok(resp);
    }
    Ok(axum::Json(dto::DailyReport { days, consistent_to }).into_response())
}

#[utoipa::path(get, path = "/api/v1/admin/accounts/{account}/statement", tag = "operations",
    summary = "Operator: an account's statement of a date range as one CSV or JSON-lines file (a day's: from and to one day apart)",
    security(("bearer" = [])), params(
        ("account" = String, Path, description = "The account's id or email"),
        dto::StatementQuery,
    ),
    responses(
        (status = 200, description = "the statement, oldest line first", content_type = "text/csv"),
        (status = 400, description = "invalid query (time, format)", body = dto::ErrorBody),
        (status = 403, description = "the caller is not an operator", body = dto::ErrorBody),
        (status = 404, description = "no such account, or no history store", body = dto::ErrorBody),
        (status = 422, description = "statement_too_large", body = dto::ErrorBody),
        (status = 503, description = "busy: too many statements being read; retry", body = dto::ErrorBody),
        dto::AuthedErrors,
    ))]
async fn account_statement(
    State(state): St,
    AdminUser(_by): AdminUser,
    ApiPath(account): ApiPath<String>,
    ApiQuery(q): ApiQuery<dto::StatementQuery>,
) -> Result<Response, ApiError> {
    let account = super::desk::resolve(&state, &account).await?;
    super::statement::statement_file(&state, account, &q).await
}

#[utoipa::path(get, path = "/api/v1/admin/stress", tag = "operations",
    summary = "Operator: the bundled stress scenarios this server can run",
    security(("bearer" = [])),
    responses(
        (status = 200, description = "their names", body = dto::StressScenarios),
        (status = 403, description = "the caller is not an operator", body = dto::ErrorBody),
        (status = 404, description = "stress_unavailable: this server has no data directory (service mode's api)", body = dto::ErrorBody),
        dto::AuthedErrors,
    ))]
async fn scenarios(
    State(state): St,
    AdminUser(_by): AdminUser,
) -> Result<axum::Json<dto::StressScenarios>, ApiError> {
    let runner = stress_runner(&state)?;
    let names = runner.scenarios().into_iter().map(str::to_owned).collect();
    Ok(axum::Json(dto::StressScenarios { scenarios: names }))
}

#[utoipa::path(post, path = "/api/v1/admin/stress", tag = "operations",
    summary = "Operator: run a bundled crash scenario on a copy of the current state (nothing touched) and report who would be liquidated or stopped out, the bad debt and who pays it (docs/DESIGN.md, \"Stress replay\")",
    security(("bearer" = [])), request_body = dto::StressBody,
    responses(
        (status = 200, description = "the report, as `hundredx stress --json` prints it", body = Object),
        (status = 400, description = "invalid_scenario", body = dto::ErrorBody),
        (status = 403, description = "the caller is not an operator", body = dto::ErrorBody),
        (status = 404, description = "stress_unavailable", body = dto::ErrorBody),
        (status = 503, description = "busy: a run is under way", body = dto::ErrorBody),
        dto::BodyErrors,
        dto::AuthedErrors,
    ))]
async fn stress(
    State(state): St,
    AdminUser(by): AdminUser,
    crate::extract::ApiJson(body): crate::extract::ApiJson<dto::StressBody>,
) -> Result<Response, ApiError> {
    use ground::ports::StressError;
    let runner = stress_runner(&state)?;
    tracing::info!(by = by.0, scenario = %body.scenario, "stress run");
    match runner.run(&body.scenario).await {
        Ok(json) => Ok(([(header::CONTENT_TYPE, "application/json")], json).into_response()),
        Err(StressError::Unknown(_)) => Err(ApiError::bad_request(
            "invalid_scenario",
            format!("scenarios: {}", runner.scenarios().join(", ")),
        )),
        Err(StressError::Busy) => {
            Err(ApiError::busy("a stress run is under way; retry when it ends"))
        }
        Err(StressError::Failed(why)) => {
            tracing::warn!(error = %why, "stress run failed");
            Err(ApiError::unavailable(
                "stress_failed",
                "the stress run failed (see the server's log)",
            ))
        }
    }
}

fn stress_runner(state: &AppState) -> Result<&Arc<dyn ground::ports::StressRunner>, ApiError> {
    state.stress.get().ok_or_else(|| {
        ApiError::not_found("stress_unavailable", "this server has no data directory to stress")
    })
}

/// A market's price and quantity decimals and its daily closes `(day, close ticks)`, oldest first.
type Closes = (u32, u32, Vec<(u64, i64)>);

/// The A-book's P&L of each day `from..to` from the linked hedger (none without one): the
/// cash its fills cost or brought that day, plus the change of its positions' value between the
/// previous day's close and this day's (the engine's 1d candle closes, the last one carried
/// over a day without one). Outside the conservation identity: the hedge's money is at the venue.
async fn hedge_by_day(
    state: &AppState,
    h: &crate::History,
    (from, to): (u64, u64),
) -> Result<Option<BTreeMap<u64, i128>>, ApiError> {
    let Some(link) = state.hedger.get() else { return Ok(None) };
    let unavailable = |why: String| {
        tracing::warn!(error = %why, "hedger days");
        ApiError::unavailable("hedger_unavailable", "the hedger does not answer")
    };
    let raw = link.days(from, to - 1).await.map_err(unavailable)?;
    let rows: Vec<serde_json::Value> =
        serde_json::from_str(&raw).map_err(|e| unavailable(e.to_string()))?;
    let today = ground::time::now_ns() / 86_400_000_000_000;
    let limit = u32::try_from(today.saturating_sub(from) + 3).unwrap_or(u32::MAX).min(1_000);
    let mut closes: BTreeMap<String, Closes> = BTreeMap::new();
    let mut value_of = BTreeMap::new();
    for row in &rows {
        let day = row["day"].as_u64().unwrap_or(0);
        let mut value = 0i128;
        for (symbol, steps) in row["positions"].as_object().into_iter().flatten() {
            let steps = i128::from(steps.as_i64().unwrap_or(0));
            if !closes.contains_key(symbol) {
                let Ok((id, m)) = state.market(symbol) else { continue };
                let candles = h.store.candles(id, "1d", limit).await.map_err(history_error)?;
                let by_day =
                    candles.iter().map(|c| (c.start_ns / 86_400_000_000_000, c.close.0)).collect();
                closes.insert(symbol.clone(), (m.price_decimals, m.qty_decimals, by_day));
            }
            let Some((pd, qd, by_day)) = closes.get(symbol) else { continue };
            let close = by_day.iter().rev().find(|(d, _)| *d <= day).map_or(0, |(_, c)| *c);
            let scale = engine_core::math::Scale::new(*pd, *qd);
            value += (steps * i128::from(close) * scale.num()).div_euclid(scale.den());
        }
        value_of.insert(day, (value, i128::from(row["cash_micros"].as_i64().unwrap_or(0))));
    }
    Ok(Some(
        (from..to)
            .filter_map(|d| {
                let (value, cash) = *value_of.get(&d)?;
                let before = value_of.get(&(d.wrapping_sub(1))).map_or(0, |v| v.0);
                Some((d, cash + value - before))
            })
            .collect(),
    ))
}

/// Puts each day's hedge P&L on its row (a day with hedge P&L but no client movement gets a
/// row of its own).
fn add_hedge(days: &mut Vec<dto::ReportDay>, hedge: &BTreeMap<u64, i128>) {
    for (&day, &pnl) in hedge {
        let date = date_of(day);
        match days.iter_mut().find(|d| d.day == date) {
            Some(d) => d.hedge_pnl = Some(money(Usdc(pnl))),
            None if pnl != 0 => {
                let zero = money(Usdc::ZERO);
                days.push(dto::ReportDay {
                    day: date,
                    spread_markup: zero.clone(),
                    commission: zero.clone(),
                    market_fees: zero.clone(),
                    liquidation_fees: zero.clone(),
                    financing: zero.clone(),
                    trading_pnl: zero.clone(),
                    bad_debt: zero.clone(),
                    adjustments: zero.clone(),
                    credit: zero.clone(),
                    total: zero.clone(),
                    deposits: zero.clone(),
                    withdrawals: zero,
                    hedge_pnl: Some(money(Usdc(pnl))),
                });
            }
            None => {}
        }
    }
    days.sort_by(|a, b| a.day.cmp(&b.day));
}

/// `YYYY-MM-DD` as days since the epoch.
fn day_of(raw: &str) -> Result<u64, ApiError> {
    let format = time::format_description::parse_borrowed::<2>("[year]-[month]-[day]")
        .map_err(|_| ApiError::bad_request("invalid_query", "dates are YYYY-MM-DD (UTC)"))?;
    let date = time::Date::parse(raw, &format)
        .map_err(|_| ApiError::bad_request("invalid_query", "dates are YYYY-MM-DD (UTC)"))?;
    let days = date.to_julian_day()
        - time::Date::from_calendar_date(1970, time::Month::January, 1)
            .map_err(|_| ApiError::bad_request("invalid_query", "date out of range"))?
            .to_julian_day();
    u64::try_from(days).map_err(|_| ApiError::bad_request("invalid_query", "dates start in 1970"))
}

/// One row per day, the house's amount per source (minus the accounts'), their total, and the
/// accounts' deposits and withdrawals beside them.
fn report(totals: &[DailyTotal]) -> Vec<dto::ReportDay> {
    let mut days: BTreeMap<u64, BTreeMap<&str, i128>> = BTreeMap::new();
    for t in totals {
        *days.entry(t.day).or_default().entry(t.kind.as_str()).or_default() += t.amount.0;
    }
    days.into_iter()
        .map(|(day, kinds)| {
            let of = |names: &[&str]| -> i128 { names.iter().filter_map(|k| kinds.get(k)).sum() };
            let house: Vec<i128> = SOURCES.iter().map(|(_, kinds)| -of(kinds)).collect();
            let total = house.iter().sum::<i128>();
            let amount = |i: usize| money(Usdc(house[i]));
            dto::ReportDay {
                day: date_of(day),
                spread_markup: amount(0),
                commission: amount(1),
                market_fees: amount(2),
                liquidation_fees: amount(3),
                financing: amount(4),
                trading_pnl: amount(5),
                bad_debt: amount(6),
                adjustments: amount(7),
                credit: amount(8),
                total: money(Usdc(total)),
                deposits: money(Usdc(of(&["deposit"]))),
                withdrawals: money(Usdc(-of(&["withdrawal"]))),
                hedge_pnl: None,
            }
        })
        .collect()
}

fn date_of(day: u64) -> String {
    let secs = i64::try_from(day.saturating_mul(86_400)).unwrap_or(i64::MAX);
    time::OffsetDateTime::from_unix_timestamp(secs)
        .map(|t| t.date().to_string())
        .unwrap_or_default()
}

fn to_csv(days: &[dto::ReportDay]) -> String {
    let mut out = String::from(CSV_HEADER);
    for d in days {
        let _ = writeln!(
            out,
            "{},{},{},{},{},{},{},{},{},{},{},{},{},{}",
            d.day,
            d.spread_markup,
            d.commission,
            d.market_fees,
            d.liquidation_fees,
            d.financing,
            d.trading_pnl,
            d.bad_debt,
            d.adjustments,
            d.credit,
            d.total,
            d.deposits,
            d.withdrawals,
            d.hedge_pnl.as_deref().unwrap_or("")
        );
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_day_is_minus_what_the_accounts_saw_and_its_total_their_sum() {
        let t =
            |day, kind: &str, amount| DailyTotal { day, kind: kind.into(), amount: Usdc(amount) };
        let totals = [
            t(20_429, "deposit", 5_000_000_000),
            t(20_429, "open_fee", -3_000_000),
            t(20_429, "close_fee", -2_000_000),
            t(20_429, "realized_pnl", 40_000_000),
            t(20_429, "spread_markup", -500_000),
            t(20_429, "adjustment", 250_500_000),
            t(20_430, "loss_forgiven", 7_000_000),
            t(20_430, "withdrawal", -1_000_000),
        ];
        let days = report(&totals);
        assert_eq!(days.len(), 2);
        let d = &days[0];
        assert_eq!(d.day, "2025-12-07");
        assert_eq!(
            (d.market_fees.as_str(), d.trading_pnl.as_str(), d.adjustments.as_str()),
            ("5.000000", "-40.000000", "-250.500000")
        );
        // 0.5 + 5 − 40 − 250.5
        assert_eq!((d.total.as_str(), d.deposits.as_str()), ("-285.000000", "5000.000000"));
        assert_eq!(
            (days[1].bad_debt.as_str(), days[1].withdrawals.as_str()),
            ("-7.000000", "1.000000")
        );
        assert_eq!(day_of("2025-12-07").unwrap(), 20_429);
        assert!(day_of("2025-13-01").is_err() && day_of("1969-12-31").is_err());
    }
}
