//! Pending entry orders (place, list, cancel) and editing an open position's TP/SL and
//! trailing stop: the routes, their parsing and their answers.

use std::sync::Arc;

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use engine_core::command::AccountId;
use engine_core::command::{CommandKind, OrderId, OrderKind, OrderRequest, TrailDistance};
use engine_core::config::MarketConfig;
use engine_core::event::{Item, OrderView, ReplyData};

use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::AppState;
use crate::convert::{
    client_order_id, engine, leverage, order_dto, own, position_id, position_reply, price, side,
    size, unexpected,
};
use crate::dto::Dec;
use crate::dto::{self, OrderBody, TrailingBody, TriggersBody};
use crate::error::ApiError;
use crate::extract::St;
use crate::extract::{ApiJson, ApiPath, AuthUser, ClientIp, IdemKey};

/// This group's routes, with their OpenAPI operations.
pub(super) fn router() -> OpenApiRouter<Arc<AppState>> {
    OpenApiRouter::new()
        .routes(routes!(set_triggers))
        .routes(routes!(set_trailing_stop))
        .routes(routes!(place, list))
        .routes(routes!(cancel))
}

/// An order id from a path.
pub(crate) fn order_id(id: &str) -> Result<OrderId, ApiError> {
    id.parse::<u64>().ok().filter(|n| *n > 0).map(OrderId).ok_or_else(|| {
        ApiError::bad_request("invalid_order_id", "order id must be a positive integer")
    })
}

/// Milliseconds to the engine's nanoseconds: a time that does not fit is refused, not clamped.
pub(crate) fn expiry_ns(at_ms: u64) -> Result<u64, ApiError> {
    at_ms.checked_mul(1_000_000).filter(|ns| i64::try_from(*ns).is_ok()).ok_or_else(|| {
        ApiError::bad_request("invalid_expiry", "expires_at is too far in the future")
    })
}

pub(crate) fn order_response(
    state: &AppState,
    status: StatusCode,
    o: &OrderView,
) -> Result<Response, ApiError> {
    let m = state
        .market_cfg(o.market)
        .ok_or_else(|| ApiError::bad_request("unknown_market", "unknown market"))?;
    Ok((status, Json(order_dto(o, m))).into_response())
}

pub(crate) fn order_request(
    state: &AppState,
    account: AccountId,
    b: &OrderBody,
) -> Result<OrderRequest, ApiError> {
    let (market, m) = state.market(&b.market)?;
    let kind = match b.kind.as_str() {
        "limit" => OrderKind::Limit,
        "stop" => OrderKind::Stop,
        _ => {
            return Err(ApiError::bad_request(
                "invalid_order_type",
                "type must be \"limit\" or \"stop\"",
            ));
        }
    };
    let opt_price = |f: &str, d: &Option<Dec>| d.as_ref().map(|d| price(f, d, m)).transpose();
    let expires_at_ns = b.expires_at.map(expiry_ns).transpose()?;
    Ok(OrderRequest {
        account,
        market,
        side: side(&b.side)?,
        kind,
        price: price("price", &b.price, m)?,
        leverage: leverage(b.leverage)?,
        size: size(b.margin.as_ref(), b.quantity.as_ref(), m)?,
        take_profit: opt_price("take_profit", &b.take_profit)?,
        stop_loss: opt_price("stop_loss", &b.stop_loss)?,
        expires_at_ns,
        client_order_id: client_order_id(b.client_order_id.as_deref())?,
    })
}

#[utoipa::path(post, path = "/api/v1/orders", tag = "orders",
    summary = "Place a pending limit or stop order (margin and fee are held until it fills, is cancelled or expires)",
    security(("bearer" = [])), request_body = dto::OrderBody,
    responses(
        (status = 201, description = "placed", body = dto::Order),
        (status = 400, description = "invalid input (market, side, type, price, leverage, size, TP/SL, expires_at, client_order_id)", body = dto::ErrorBody),
        (status = 409, description = "client_order_id reused with another body", body = dto::ErrorBody),
        dto::BodyErrors,
        (status = 422, description = "refused by the engine: invalid_order_price (it would fill now), insufficient_balance, too_many_orders, no_price, stale_price, ...", body = dto::ErrorBody),
        dto::AuthedErrors,
    ))]
pub(crate) async fn place(
    State(state): St,
    AuthUser(account): AuthUser,
    ClientIp(ip): ClientIp,
    ApiJson(body): ApiJson<OrderBody>,
) -> Result<Response, ApiError> {
    state.limit_trading(account.0, ip)?;
    let o = place_order(&state, account, &body).await?;
    order_response(&state, StatusCode::CREATED, &o)
}

/// Places the order `b` describes for `account` (a single order, or one of a batch).
pub(crate) async fn place_order(
    state: &AppState,
    account: AccountId,
    b: &OrderBody,
) -> Result<OrderView, ApiError> {
    let req = order_request(state, account, b)?;
    match engine(state, CommandKind::PlaceOrder(req)).await? {
        (ReplyData::Order(o), _) => {
            own(account, o.account)?;
            Ok(o)
        }
        (d, _) => Err(unexpected(&d)),
    }
}

#[utoipa::path(get, path = "/api/v1/orders", tag = "orders",
    summary = "The caller's pending orders", security(("bearer" = [])),
    responses(
        (status = 200, description = "pending orders, ascending id", body = dto::Orders),
        dto::AuthedErrors,
    ))]
pub(crate) async fn list(
    State(state): St,
    AuthUser(account): AuthUser,
) -> Result<Response, ApiError> {
    let (_, items) = engine(&state, CommandKind::QueryOrders { account }).await?;
    let orders = items
        .iter()
        .filter_map(|i| match i {
            Item::Order(o) if o.account == account => {
                state.market_cfg(o.market).map(|m| order_dto(o, m))
            }
            _ => None,
        })
        .collect();
    Ok(Json(dto::Orders { orders }).into_response())
}

#[utoipa::path(delete, path = "/api/v1/orders/{id}", tag = "orders",
    summary = "Cancel a pending order (its held margin returns to available)", security(("bearer" = [])),
    params(("id" = String, Path, description = "Order id"), ("Idempotency-Key" = Option<String>, Header, description = "a retry with the same key returns the first result")),
    responses(
        (status = 200, description = "the cancelled order", body = dto::Order),
        (status = 400, description = "invalid id or key", body = dto::ErrorBody),
        (status = 404, description = "no such pending order of the caller (filled, cancelled or expired)", body = dto::ErrorBody),
        (status = 409, description = "idempotency key reused with another request", body = dto::ErrorBody),
        dto::AuthedErrors,
    ))]
pub(crate) async fn cancel(
    State(state): St,
    AuthUser(account): AuthUser,
    ClientIp(ip): ClientIp,
    IdemKey(key): IdemKey,
    ApiPath(id): ApiPath<String>,
) -> Result<Response, ApiError> {
    state.limit_trading(account.0, ip)?;
    let order = order_id(&id)?;
    match engine(&state, CommandKind::CancelOrder { account, order, key }).await? {
        (ReplyData::Order(o), _) => {
            own(account, o.account)?;
            order_response(&state, StatusCode::OK, &o)
        }
        (d, _) => Err(unexpected(&d)),
    }
}

#[utoipa::path(put, path = "/api/v1/positions/{id}/triggers", tag = "positions",
    summary = "Set, change or remove an open position's take-profit and stop-loss (both replaced)",
    security(("bearer" = [])), request_body = dto::TriggersBody,
    params(("id" = String, Path, description = "Position id"), ("Idempotency-Key" = Option<String>, Header, description = "a retry with the same key returns the first result")),
    responses(
        (status = 200, description = "the position", body = dto::Position),
        (status = 400, description = "invalid price or key, or a TP/SL on the wrong side of the current mark", body = dto::ErrorBody),
        (status = 404, description = "not one of the caller's positions", body = dto::ErrorBody),
        (status = 409, description = "idempotency key reused with another body", body = dto::ErrorBody),
        dto::BodyErrors,
        (status = 422, description = "refused by the engine: position_closed, no_price, stale_price", body = dto::ErrorBody),
        dto::AuthedErrors,
    ))]
pub(crate) async fn set_triggers(
    State(state): St,
    AuthUser(account): AuthUser,
    ClientIp(ip): ClientIp,
    IdemKey(key): IdemKey,
    ApiPath(id): ApiPath<String>,
    ApiJson(body): ApiJson<TriggersBody>,
) -> Result<Response, ApiError> {
    state.limit_trading(account.0, ip)?;
    let position = position_id(&id)?;
    // The position's market is the engine's to know; the decimals are checked by it against
    // that market only after this lookup, so find it first (one query, not journaled).
    let m = position_market(&state, account, position).await?;
    let opt = |f: &str, d: &Option<Dec>| d.as_ref().map(|d| price(f, d, &m)).transpose();
    let (take_profit, stop_loss) =
        (opt("take_profit", &body.take_profit)?, opt("stop_loss", &body.stop_loss)?);
    let kind = CommandKind::SetTriggers { account, position, take_profit, stop_loss, key };
    position_reply(&state, account, kind).await
}

#[utoipa::path(put, path = "/api/v1/positions/{id}/trailing-stop", tag = "positions",
    summary = "Set, change or remove an open position's trailing stop (it follows the best mark from now on)",
    security(("bearer" = [])), request_body = dto::TrailingBody,
    params(("id" = String, Path, description = "Position id"), ("Idempotency-Key" = Option<String>, Header, description = "a retry with the same key returns the first result")),
    responses(
        (status = 200, description = "the position", body = dto::Position),
        (status = 400, description = "invalid distance or key (zero, both given, 50 % or more, or at least the mark)", body = dto::ErrorBody),
        (status = 404, description = "not one of the caller's positions", body = dto::ErrorBody),
        (status = 409, description = "idempotency key reused with another body", body = dto::ErrorBody),
        dto::BodyErrors,
        (status = 422, description = "refused by the engine: position_closed, no_price, stale_price", body = dto::ErrorBody),
        dto::AuthedErrors,
    ))]
pub(crate) async fn set_trailing_stop(
    State(state): St,
    AuthUser(account): AuthUser,
    ClientIp(ip): ClientIp,
    IdemKey(key): IdemKey,
    ApiPath(id): ApiPath<String>,
    ApiJson(body): ApiJson<TrailingBody>,
) -> Result<Response, ApiError> {
    state.limit_trading(account.0, ip)?;
    let position = position_id(&id)?;
    let distance = match (&body.distance, body.distance_bps) {
        (None, None) => None,
        (None, Some(b)) => Some(TrailDistance::Bps(b)),
        (Some(d), None) => {
            let m = position_market(&state, account, position).await?;
            Some(TrailDistance::Price(price("distance", d, &m)?))
        }
        (Some(_), Some(_)) => {
            return Err(ApiError::bad_request(
                "invalid_request",
                "give distance or distance_bps, not both",
            ));
        }
    };
    let kind = CommandKind::SetTrailingStop { account, position, distance, key };
    position_reply(&state, account, kind).await
}

pub(crate) async fn position_market(
    state: &Arc<AppState>,
    account: AccountId,
    position: engine_core::command::PositionId,
) -> Result<MarketConfig, ApiError> {
    match engine(state, CommandKind::QueryPosition { account, position }).await? {
        (ReplyData::Position(v), _) => {
            own(account, v.account)?;
            state
                .market_cfg(v.market)
                .cloned()
                .ok_or_else(|| ApiError::bad_request("unknown_market", "unknown market"))
        }
        (d, _) => Err(unexpected(&d)),
    }
}
