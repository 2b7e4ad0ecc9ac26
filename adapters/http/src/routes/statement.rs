//! `GET /api/v1/user/statement`: the ledger of a date range in one file, for taxes and
//! accountants — CSV or JSON lines, each line with its journal sequence and the running
//! balance. Read whole from the history store before the first byte is sent, so a statement is
//! never cut short in the middle: a range with more lines than `statement_lines_max` is refused
//! with `statement_too_large` (the client asks for a shorter range), and at most
//! `statements_concurrent` are read at once (503 `busy` beyond).

use std::fmt::Write as _;
use std::sync::Arc;

use axum::extract::State;
use axum::http::{HeaderValue, header};
use axum::response::{IntoResponse, Response};
use ground::history::{LedgerEntry, LedgerQuery, PAGE_LIMIT_MAX};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::AppState;
use crate::convert::money;
use crate::dto;
use crate::error::ApiError;
use crate::extract::{ApiQuery, AuthUser, St};
use crate::routes::history::{caught_up, history_error, history_of, query_ns};

/// This group's routes, with their OpenAPI operations.
pub(super) fn router() -> OpenApiRouter<Arc<AppState>> {
    OpenApiRouter::new().routes(routes!(statement))
}

/// The CSV header: one column per field of a line.
pub const CSV_HEADER: &str = "seq,time,kind,amount,balance,position_id\n";

#[utoipa::path(get, path = "/api/v1/user/statement", tag = "user",
    summary = "The caller's statement of a date range as one CSV or JSON-lines file (every money movement with its journal sequence and the running balance)",
    security(("bearer" = [])), params(dto::StatementQuery),
    responses(
        (status = 200, description = "the statement, oldest line first; `X-Consistent-To` is the journal sequence the store held", content_type = "text/csv"),
        (status = 400, description = "invalid query (time, format)", body = dto::ErrorBody),
        (status = 404, description = "this server keeps no history store", body = dto::ErrorBody),
        (status = 422, description = "statement_too_large: more lines than the server gives at once; ask for a shorter range", body = dto::ErrorBody),
        (status = 503, description = "busy: too many statements being read; retry", body = dto::ErrorBody),
        dto::AuthedErrors,
    ))]
async fn statement(
    State(state): St,
    AuthUser(account): AuthUser,
    ApiQuery(q): ApiQuery<dto::StatementQuery>,
) -> Result<Response, ApiError> {
    statement_file(&state, account, &q).await
}

/// `account`'s statement of `q`'s range as one file (the trader's own, or an operator's read
/// of any account's).
pub(crate) async fn statement_file(
    state: &AppState,
    account: engine_core::command::AccountId,
    q: &dto::StatementQuery,
) -> Result<Response, ApiError> {
    let h = history_of(state)?;
    let csv = match q.format.as_deref().unwrap_or("csv") {
        "csv" => true,
        "jsonl" => false,
        _ => return Err(ApiError::bad_request("invalid_query", "format must be csv or jsonl")),
    };
    let _permit = state
        .statements
        .try_acquire()
        .map_err(|_| ApiError::busy("too many statements are being read; retry in a moment"))?;
    let mut query = LedgerQuery {
        from_ns: query_ns(q.from)?,
        to_ns: query_ns(q.to)?,
        cursor: None,
        limit: PAGE_LIMIT_MAX,
    };
    caught_up(state, h, account).await;
    let max = state.cfg.limits.statement_lines_max;
    let (mut lines, mut consistent_to) = (Vec::new(), u64::MAX);
    loop {
        let page = h.store.ledger(account, &query).await.map_err(history_error)?;
        // Every page was read at or after the first one's point: the file is complete to the
        // lowest of them.
        consistent_to = consistent_to.min(page.consistent_to);
        lines.extend(page.items);
        if lines.len() > max {
            return Err(ApiError::new(
                axum::http::StatusCode::UNPROCESSABLE_ENTITY,
                "statement_too_large",
                format!("more than {max} lines: ask for a shorter range (from, to)"),
            ));
        }
        match page.next {
            Some(next) => query.cursor = Some(next),
            None => break,
        }
    }
    let body = if csv { to_csv(&lines) } else { to_jsonl(&lines) };
    let (kind, ext) =
        if csv { ("text/csv; charset=utf-8", "csv") } else { ("application/jsonl", "jsonl") };
    let disposition = format!("attachment; filename=\"statement-{}.{ext}\"", account.0);
    let mut resp = body.into_response();
    let headers = resp.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(kind));
    if let Ok(v) = HeaderValue::from_str(&disposition) {
        headers.insert(header::CONTENT_DISPOSITION, v);
    }
    headers.insert("x-consistent-to", HeaderValue::from(consistent_to.min(i64::MAX as u64)));
    Ok(resp)
}

/// RFC 3339 in UTC with milliseconds (`2026-12-07T18:42:05.123Z`).
pub fn rfc3339(at_ns: u64) -> String {
    type Format = Vec<time::format_description::BorrowedFormatItem<'static>>;
    static FORMAT: std::sync::OnceLock<Format> = std::sync::OnceLock::new();
    let format = FORMAT.get_or_init(|| {
        time::format_description::parse_borrowed::<2>(
            "[year]-[month]-[day]T[hour]:[minute]:[second].[subsecond digits:3]Z",
        )
        .unwrap_or_default()
    });
    time::OffsetDateTime::from_unix_timestamp_nanos(i128::from(at_ns))
        .ok()
        .and_then(|t| t.format(format).ok())
        .unwrap_or_default()
}

fn to_csv(lines: &[LedgerEntry]) -> String {
    let mut out = String::with_capacity(CSV_HEADER.len() + lines.len() * 80);
    out.push_str(CSV_HEADER);
    for e in lines {
        // Every field is a number, a fixed word or a time: nothing needs quoting.
        let position = e.position.map(|p| p.0.to_string()).unwrap_or_default();
        let _ = writeln!(
            out,
            "{},{},{},{},{},{}",
            e.seq,
            rfc3339(e.at_ns),
            e.kind,
            money(e.amount),
            money(e.balance),
            position
        );
    }
    out
}

fn to_jsonl(lines: &[LedgerEntry]) -> String {
    let mut out = String::with_capacity(lines.len() * 140);
    for e in lines {
        let line = dto::StatementLine {
            seq: e.seq,
            time: rfc3339(e.at_ns),
            at: e.at_ns / 1_000_000,
            kind: e.kind.clone(),
            amount: money(e.amount),
            balance: money(e.balance),
            position_id: e.position.map(|p| p.0.to_string()),
        };
        if let Ok(s) = serde_json::to_string(&line) {
            out.push_str(&s);
            out.push('\n');
        }
    }
    out
}
