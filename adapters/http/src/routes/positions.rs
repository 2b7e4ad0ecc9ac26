//! `/api/v1/positions*`: open, list (open from the engine, closed from the history store), one
//! position, close, add margin.

use std::sync::Arc;

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use engine_core::command::{AccountId, CloseSize, CommandKind, OpenRequest, PositionStatus};
use engine_core::event::{Item, ReplyData};
use engine_core::num::ExactDecimal;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::AppState;
use crate::convert::{
    client_order_id, dec_error, engine, leverage, own, position_dto, position_id, position_reply,
    price, side, size, unexpected, usdc, view_response,
};
use crate::dto::Dec;
use crate::dto::{self, AmountBody, CloseBody, ListQuery, OpenBody};
use crate::error::ApiError;
use crate::extract::St;
use crate::extract::{ApiJson, ApiPath, ApiQuery, AuthUser, ClientIp, IdemKey, payload_too_large};
use crate::routes::history::{PAGE_DEFAULT, caught_up, history_error};

/// This group's routes, with their OpenAPI operations.
pub(super) fn router() -> OpenApiRouter<Arc<AppState>> {
    OpenApiRouter::new()
        .routes(routes!(open, list_positions))
        .routes(routes!(get_position))
        .routes(routes!(close))
        .routes(routes!(add_margin))
}

fn open_request(
    state: &AppState,
    account: AccountId,
    b: &OpenBody,
) -> Result<OpenRequest, ApiError> {
    let (market, m) = state.market(&b.market)?;
    let opt_price = |f: &str, d: &Option<Dec>| d.as_ref().map(|d| price(f, d, m)).transpose();
    let client_order_id = client_order_id(b.client_order_id.as_deref())?;
    check_slippage_fields(b)?;
    Ok(OpenRequest {
        account,
        market,
        side: side(&b.side)?,
        leverage: leverage(b.leverage)?,
        size: size(b.margin.as_ref(), b.quantity.as_ref(), m)?,
        expected_price: opt_price("expected_price", &b.expected_price)?,
        max_slippage_bps: b.max_slippage_bps.unwrap_or(0),
        take_profit: opt_price("take_profit", &b.take_profit)?,
        stop_loss: opt_price("stop_loss", &b.stop_loss)?,
        client_order_id,
    })
}

/// `expected_price` and `max_slippage_bps` come together, and the bound is 0..=10000 (a larger
/// one is refused, never clamped).
fn check_slippage_fields(b: &OpenBody) -> Result<(), ApiError> {
    if b.max_slippage_bps.is_some() != b.expected_price.is_some() {
        return Err(ApiError::bad_request(
            "invalid_request",
            "expected_price and max_slippage_bps go together",
        ));
    }
    if b.max_slippage_bps.is_some_and(|bps| bps > 10_000) {
        return Err(ApiError::bad_request(
            "invalid_slippage",
            "max_slippage_bps must be 0..=10000",
        ));
    }
    Ok(())
}

#[utoipa::path(post, path = "/api/v1/positions", tag = "positions",
    summary = "Open a position", security(("bearer" = [])), request_body = dto::OpenBody,
    responses(
        (status = 201, description = "opened", body = dto::Position),
        (status = 400, description = "invalid input (market, side, leverage, size, prices, client_order_id)", body = dto::ErrorBody),
        (status = 409, description = "client_order_id reused with another body", body = dto::ErrorBody),
        dto::BodyErrors,
        (status = 422, description = "refused by the engine: insufficient_balance, would_liquidate, no_price, stale_price, slippage_exceeded, ...", body = dto::ErrorBody),
        dto::AuthedErrors,
    ))]
async fn open(
    State(state): St,
    AuthUser(account): AuthUser,
    ClientIp(ip): ClientIp,
    ApiJson(body): ApiJson<OpenBody>,
) -> Result<Response, ApiError> {
    state.limit_trading(account.0, ip)?;
    let req = open_request(&state, account, &body)?;
    match engine(&state, CommandKind::OpenPosition(req)).await? {
        (ReplyData::Opened(v), _) => {
            own(account, v.account)?;
            view_response(&state, StatusCode::CREATED, &v)
        }
        (d, _) => Err(unexpected(&d)),
    }
}

#[utoipa::path(get, path = "/api/v1/positions", tag = "positions",
    summary = "The caller's positions", security(("bearer" = [])), params(dto::ListQuery),
    responses(
        (status = 200, description = "open (default) or closed positions", body = dto::Positions),
        (status = 400, description = "invalid status or query", body = dto::ErrorBody),
        dto::AuthedErrors,
    ))]
async fn list_positions(
    State(state): St,
    AuthUser(account): AuthUser,
    ApiQuery(q): ApiQuery<ListQuery>,
) -> Result<Response, ApiError> {
    let status = match q.status.as_deref() {
        None | Some("open") => PositionStatus::Open,
        Some("closed") => PositionStatus::Closed,
        Some(_) => {
            return Err(ApiError::bad_request("invalid_status", "status must be open or closed"));
        }
    };
    if status == PositionStatus::Closed
        && let Some(h) = state.history.get()
    {
        caught_up(&state, h, account).await;
        return closed_from_store(&state, h.store.as_ref(), account, &q).await;
    }
    if q.cursor.is_some() || q.limit.is_some() {
        return Err(ApiError::bad_request(
            "invalid_query",
            "cursor and limit page closed positions from the history store",
        ));
    }
    let (_, items) = engine(&state, CommandKind::QueryPositions { account, status }).await?;
    let positions = items
        .iter()
        .filter_map(|i| match i {
            Item::Position(v) if v.account == account => {
                state.market_cfg(v.market).map(|m| position_dto(v, m))
            }
            _ => None,
        })
        .collect();
    Ok(Json(dto::Positions { positions, next_cursor: None, consistent_to: None }).into_response())
}

/// Closed positions over the whole history, newest first, a page at a time.
async fn closed_from_store(
    state: &AppState,
    store: &dyn ground::history::HistoryReader,
    account: AccountId,
    q: &ListQuery,
) -> Result<Response, ApiError> {
    let limit = q.limit.unwrap_or(PAGE_DEFAULT);
    let page =
        store.closed_positions(account, q.cursor.as_deref(), limit).await.map_err(history_error)?;
    let positions = page
        .items
        .iter()
        .filter(|v| v.account == account)
        .filter_map(|v| state.market_cfg(v.market).map(|m| position_dto(v, m)))
        .collect();
    let body = dto::Positions {
        positions,
        next_cursor: page.next,
        consistent_to: Some(page.consistent_to),
    };
    Ok(Json(body).into_response())
}

#[utoipa::path(get, path = "/api/v1/positions/{id}", tag = "positions",
    summary = "One position, with uPnL and liquidation price", security(("bearer" = [])),
    params(("id" = String, Path, description = "Position id")),
    responses(
        (status = 200, description = "the position", body = dto::Position),
        (status = 400, description = "invalid id", body = dto::ErrorBody), (status = 404, description = "not one of the caller's positions", body = dto::ErrorBody),
        dto::AuthedErrors,
    ))]
async fn get_position(
    State(state): St,
    AuthUser(account): AuthUser,
    ApiPath(id): ApiPath<String>,
) -> Result<Response, ApiError> {
    let position = position_id(&id)?;
    match engine(&state, CommandKind::QueryPosition { account, position }).await {
        Ok((ReplyData::Position(v), _)) => {
            own(account, v.account)?;
            view_response(&state, StatusCode::OK, &v)
        }
        Ok((d, _)) => Err(unexpected(&d)),
        // Older than the engine's bounded closed history: the store has every closed one.
        Err(e) if e.code == "unknown_position" => match state.history.get() {
            Some(h) => match h.store.closed_position(account, position).await {
                Ok(Some(v)) => view_response(&state, StatusCode::OK, &v),
                Ok(None) => Err(e),
                Err(h) => Err(history_error(h)),
            },
            None => Err(e),
        },
        Err(e) => Err(e),
    }
}

#[utoipa::path(post, path = "/api/v1/positions/{id}/close", tag = "positions",
    summary = "Close all (empty body) or part of a position", security(("bearer" = [])),
    request_body(content = Option<dto::CloseBody>, description = "optional: the quantity to close"),
    params(("id" = String, Path, description = "Position id"), ("Idempotency-Key" = Option<String>, Header, description = "a retry with the same key returns the first result")),
    responses(
        (status = 200, description = "the closed part", body = dto::Position),
        (status = 400, description = "invalid quantity or key", body = dto::ErrorBody), (status = 404, description = "not one of the caller's positions", body = dto::ErrorBody),
        (status = 409, description = "idempotency key reused, or position already closed", body = dto::ErrorBody),
        (status = 413, description = "body too large", body = dto::ErrorBody),
        (status = 422, description = "refused by the engine: stale_price, quantity_too_small, ...", body = dto::ErrorBody),
        dto::AuthedErrors,
    ))]
async fn close(
    State(state): St,
    AuthUser(account): AuthUser,
    ClientIp(ip): ClientIp,
    IdemKey(key): IdemKey,
    ApiPath(id): ApiPath<String>,
    body: Result<axum::body::Bytes, axum::extract::rejection::BytesRejection>,
) -> Result<Response, ApiError> {
    state.limit_trading(account.0, ip)?;
    let position = position_id(&id)?;
    // The body is optional here: empty closes everything.
    let body = body.map_err(|r| match r.status() {
        StatusCode::PAYLOAD_TOO_LARGE => payload_too_large(),
        _ => ApiError::bad_request("invalid_body", "the request body could not be read"),
    })?;
    let body: CloseBody = if body.iter().all(u8::is_ascii_whitespace) {
        CloseBody::default()
    } else {
        serde_json::from_slice(&body).map_err(|_| {
            ApiError::bad_request(
                "invalid_json",
                "the JSON body does not have the expected fields and types",
            )
        })?
    };
    // The quantity's unit is its market's, which only the engine knows for this position: it
    // goes as an exact decimal and the engine converts it (one round trip, not two).
    let quantity = match &body.quantity {
        None => None,
        Some(d) => {
            let exact = ExactDecimal::parse(&d.0).map_err(|e| dec_error("quantity", e))?;
            if exact.units <= 0 {
                return Err(ApiError::bad_request("invalid_quantity", "quantity must be positive"));
            }
            Some(CloseSize::Decimal(exact))
        }
    };
    match engine(&state, CommandKind::ClosePosition { account, position, quantity, key }).await? {
        (ReplyData::Closed(v), _) => {
            own(account, v.account)?;
            view_response(&state, StatusCode::OK, &v)
        }
        (d, _) => Err(unexpected(&d)),
    }
}

#[utoipa::path(post, path = "/api/v1/positions/{id}/margin", tag = "positions",
    summary = "Add margin (moves the liquidation price away)", security(("bearer" = [])),
    request_body = dto::AmountBody,
    params(("id" = String, Path, description = "Position id"), ("Idempotency-Key" = Option<String>, Header, description = "a retry with the same key returns the first result")),
    responses(
        (status = 200, description = "the position", body = dto::Position),
        (status = 400, description = "invalid amount or key", body = dto::ErrorBody), (status = 404, description = "not one of the caller's positions", body = dto::ErrorBody),
        (status = 409, description = "idempotency key reused with another body", body = dto::ErrorBody),
        dto::BodyErrors,
        (status = 422, description = "refused by the engine: insufficient_balance, ...", body = dto::ErrorBody),
        dto::AuthedErrors,
    ))]
async fn add_margin(
    State(state): St,
    AuthUser(account): AuthUser,
    ClientIp(ip): ClientIp,
    IdemKey(key): IdemKey,
    ApiPath(id): ApiPath<String>,
    ApiJson(body): ApiJson<AmountBody>,
) -> Result<Response, ApiError> {
    state.limit_trading(account.0, ip)?;
    let position = position_id(&id)?;
    let amount = usdc("amount", &body.amount)?;
    position_reply(&state, account, CommandKind::AddMargin { account, position, amount, key }).await
}
