//! Safety controls for programs (docs/DESIGN.md, "Safety controls"): a batch of orders, amending
//! a pending order in place, cancel all, close all, and the dead-man's switch.

use std::sync::Arc;

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use engine_core::command::{AccountId, CommandKind, MarketId, OrderEdit};
use engine_core::event::{Item, ReplyData};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::convert::{engine, order_dto, own, position_dto, price, size, unexpected};
use crate::dto::{self, AmendBody, BatchOrdersBody, CancelAfterBody, MarketFilter};
use crate::error::ApiError;
use crate::extract::{ApiJson, ApiPath, ApiQuery, AuthUser, ClientIp, IdemKey, St};
use crate::routes::orders::{expiry_ns, order_id, order_response, place_order};
use crate::{AppState, weights};

/// This group's routes, with their OpenAPI operations.
pub(super) fn router() -> OpenApiRouter<Arc<AppState>> {
    OpenApiRouter::new()
        .routes(routes!(batch))
        .routes(routes!(amend))
        .routes(routes!(cancel_all))
        .routes(routes!(close_all))
        .routes(routes!(cancel_after))
}

#[utoipa::path(post, path = "/api/v1/orders/batch", tag = "orders",
    summary = "Place several pending orders in one request: each is placed on its own, in order, with its own result (a batch is not all-or-nothing; each is idempotent by its client_order_id)",
    security(("bearer" = [])), request_body = dto::BatchOrdersBody,
    responses(
        (status = 200, description = "one result per order, in the request's order", body = dto::BatchOrders),
        (status = 400, description = "no orders, or more than http.batch_orders_max (10)", body = dto::ErrorBody),
        dto::BodyErrors,
        dto::AuthedErrors,
    ))]
async fn batch(
    State(state): St,
    AuthUser(account): AuthUser,
    ClientIp(ip): ClientIp,
    key: Option<axum::Extension<crate::extract::KeyAuth>>,
    ApiJson(body): ApiJson<BatchOrdersBody>,
) -> Result<Response, ApiError> {
    let max = state.cfg.limits.batch_orders_max;
    if body.orders.is_empty() || body.orders.len() > max {
        return Err(ApiError::bad_request(
            "invalid_batch",
            format!("a batch holds 1 to {max} orders"),
        ));
    }
    // A batch of n weighs n trading requests, and n more in the minute's budget.
    state.limit_trading_n(account.0, ip, u32::try_from(body.orders.len()).unwrap_or(u32::MAX))?;
    let key = key.map(|axum::Extension(k)| k.1.0);
    let usage = state.charge_weight(account.0, key, weights::batch_weight(body.orders.len()))?;
    let mut results = Vec::with_capacity(body.orders.len());
    for b in &body.orders {
        results.push(match place_one(&state, account, b).await {
            Ok(order) => dto::BatchResult { status: 201, order: Some(order), error: None },
            Err(e) => dto::BatchResult {
                status: e.status.as_u16(),
                order: None,
                error: Some(dto::ErrorDetail { code: e.code.to_string(), message: e.message }),
            },
        });
    }
    Ok(weights::with_usage(Json(dto::BatchOrders { results }).into_response(), usage))
}

async fn place_one(
    state: &AppState,
    account: AccountId,
    b: &dto::OrderBody,
) -> Result<dto::Order, ApiError> {
    let o = place_order(state, account, b).await?;
    let m = state.market_cfg(o.market).ok_or_else(|| unexpected(&ReplyData::Order(o)))?;
    Ok(order_dto(&o, m))
}

#[utoipa::path(patch, path = "/api/v1/orders/{id}", tag = "orders",
    summary = "Amend a pending order in place (it keeps its id): price, size, expiry, TP/SL; checked as a new order would be, its hold made again for the new terms",
    security(("bearer" = [])), request_body = dto::AmendBody,
    params(("id" = String, Path, description = "Order id"), ("Idempotency-Key" = Option<String>, Header, description = "a retry with the same key returns the first result")),
    responses(
        (status = 200, description = "the amended order", body = dto::Order),
        (status = 400, description = "invalid input, or nothing to change (invalid_request)", body = dto::ErrorBody),
        (status = 404, description = "no such pending order of the caller", body = dto::ErrorBody),
        (status = 409, description = "idempotency key reused with another body", body = dto::ErrorBody),
        dto::BodyErrors,
        (status = 422, description = "refused by the engine: invalid_order_price (it would fill now), insufficient_balance, ...; the order is unchanged", body = dto::ErrorBody),
        dto::AuthedErrors,
    ))]
async fn amend(
    State(state): St,
    AuthUser(account): AuthUser,
    ClientIp(ip): ClientIp,
    IdemKey(key): IdemKey,
    ApiPath(id): ApiPath<String>,
    ApiJson(body): ApiJson<AmendBody>,
) -> Result<Response, ApiError> {
    state.limit_trading(account.0, ip)?;
    let order = order_id(&id)?;
    // The order's market gives the decimals: find it first (one query, not journaled).
    let (_, items) = engine(&state, CommandKind::QueryOrders { account }).await?;
    let market = items
        .iter()
        .find_map(|i| match i {
            Item::Order(o) if o.id == order && o.account == account => Some(o.market),
            _ => None,
        })
        .ok_or_else(|| ApiError::from_reason(engine_core::event::Reason::UnknownOrder))?;
    let m = state.market_cfg(market).ok_or_else(|| unexpected(&ReplyData::List { count: 0 }))?;
    let opt_price = |f: &str, d: &Option<dto::Dec>| d.as_ref().map(|d| price(f, d, m)).transpose();
    let opt_size = match (&body.margin, &body.quantity) {
        (None, None) => None,
        (margin, quantity) => Some(size(margin.as_ref(), quantity.as_ref(), m)?),
    };
    let edit = OrderEdit {
        price: opt_price("price", &body.price)?,
        size: opt_size,
        expires_at_ns: body.expires_at.map(|at| at.map(expiry_ns).transpose()).transpose()?,
        take_profit: body.take_profit.as_ref().map(|d| opt_price("take_profit", d)).transpose()?,
        stop_loss: body.stop_loss.as_ref().map(|d| opt_price("stop_loss", d)).transpose()?,
    };
    match engine(&state, CommandKind::AmendOrder { account, order, edit, key }).await? {
        (ReplyData::Order(o), _) => {
            own(account, o.account)?;
            order_response(&state, StatusCode::OK, &o)
        }
        (d, _) => Err(unexpected(&d)),
    }
}

#[utoipa::path(delete, path = "/api/v1/orders", tag = "orders",
    summary = "Cancel every pending order of the caller, or of one market (their holds return to available)",
    security(("bearer" = [])), params(dto::MarketFilter, ("Idempotency-Key" = Option<String>, Header, description = "a retry with the same key returns the first result")),
    responses(
        (status = 200, description = "the cancelled orders (none: an empty list)", body = dto::CancelledAll),
        (status = 400, description = "unknown market or invalid key", body = dto::ErrorBody),
        (status = 409, description = "idempotency key reused with another request", body = dto::ErrorBody),
        dto::AuthedErrors,
    ))]
async fn cancel_all(
    State(state): St,
    AuthUser(account): AuthUser,
    ClientIp(ip): ClientIp,
    IdemKey(key): IdemKey,
    ApiQuery(q): ApiQuery<MarketFilter>,
) -> Result<Response, ApiError> {
    state.limit_trading(account.0, ip)?;
    let market = market_of(&state, &q)?;
    match engine(&state, CommandKind::CancelAllOrders { account, market, key }).await? {
        (ReplyData::Bulk { .. }, items) => {
            let cancelled = items
                .iter()
                .filter_map(|i| match i {
                    Item::Order(o) if o.account == account => {
                        state.market_cfg(o.market).map(|m| order_dto(o, m))
                    }
                    _ => None,
                })
                .collect();
            Ok(Json(dto::CancelledAll { cancelled }).into_response())
        }
        (d, _) => Err(unexpected(&d)),
    }
}

#[utoipa::path(post, path = "/api/v1/positions/close-all", tag = "positions",
    summary = "Close every open position of the caller, or of one market, at its mark: each that can close now closes; the others are counted with the first reason",
    security(("bearer" = [])), request_body(content = dto::MarketFilter, description = "{} closes every market's; {\"market\": \"BTC_USDC\"} one market's"),
    params(("Idempotency-Key" = Option<String>, Header, description = "a retry with the same key returns the first result")),
    responses(
        (status = 200, description = "what closed and what could not", body = dto::ClosedAll),
        dto::BodyErrors,
        (status = 400, description = "unknown market or invalid key", body = dto::ErrorBody),
        (status = 409, description = "idempotency key reused with another request", body = dto::ErrorBody),
        dto::AuthedErrors,
    ))]
async fn close_all(
    State(state): St,
    AuthUser(account): AuthUser,
    ClientIp(ip): ClientIp,
    IdemKey(key): IdemKey,
    ApiJson(q): ApiJson<MarketFilter>,
) -> Result<Response, ApiError> {
    state.limit_trading(account.0, ip)?;
    let market = market_of(&state, &q)?;
    match engine(&state, CommandKind::CloseAllPositions { account, market, key }).await? {
        (ReplyData::Bulk { failed, first_failure, .. }, items) => {
            let closed = items
                .iter()
                .filter_map(|i| match i {
                    Item::Position(p) if p.account == account => {
                        state.market_cfg(p.market).map(|m| position_dto(p, m))
                    }
                    _ => None,
                })
                .collect();
            let first_failure = first_failure.map(|r| r.code());
            Ok(Json(dto::ClosedAll { closed, failed, first_failure }).into_response())
        }
        (d, _) => Err(unexpected(&d)),
    }
}

#[utoipa::path(post, path = "/api/v1/orders/cancel-after", tag = "orders",
    summary = "The dead-man's switch: cancel every pending order after_ms from now unless this is sent again before; null disarms",
    security(("bearer" = [])), request_body = dto::CancelAfterBody,
    responses(
        (status = 200, description = "the switch now", body = dto::CancelSchedule),
        (status = 400, description = "after_ms outside 5000..=86400000 (invalid_request)", body = dto::ErrorBody),
        dto::BodyErrors,
        dto::AuthedErrors,
    ))]
async fn cancel_after(
    State(state): St,
    AuthUser(account): AuthUser,
    ClientIp(ip): ClientIp,
    ApiJson(body): ApiJson<CancelAfterBody>,
) -> Result<Response, ApiError> {
    state.limit_trading(account.0, ip)?;
    let kind = CommandKind::ScheduleCancel { account, after_ms: body.after_ms };
    match engine(&state, kind).await? {
        (ReplyData::CancelSchedule { at_ns }, _) => {
            let cancel_at = at_ns.map(crate::convert::ms);
            Ok(Json(dto::CancelSchedule { cancel_at }).into_response())
        }
        (d, _) => Err(unexpected(&d)),
    }
}

fn market_of(state: &AppState, q: &MarketFilter) -> Result<Option<MarketId>, ApiError> {
    q.market.as_deref().map(|s| state.market(s).map(|(id, _)| id)).transpose()
}
