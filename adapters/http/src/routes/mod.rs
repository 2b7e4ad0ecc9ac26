//! The routes, one module per group, each exposing its `router()` (realworld-axum-sqlx's
//! layout); [`api_router`] merges them in one list. Extractors are in [`crate::extract`],
//! conversions in [`crate::convert`].
//!
//! - [`user`]: sign-up, sign-in, balances, deposits, withdrawals, the statement;
//! - [`sessions`]: the caller's sessions, sign-out, password change;
//! - [`two_factor`]: two-factor sign-in (TOTP);
//! - [`statement`]: the statement of a date range as one CSV or JSON-lines file;
//! - [`markets`]: markets and candles (public);
//! - [`positions`]: open, list, one, close, add margin;
//! - [`explain`]: why a position was closed or called;
//! - [`orders`]: pending orders, TP/SL and trailing-stop edits;
//! - [`controls`]: a batch of orders, amend, cancel all, close all, the dead-man's switch;
//! - [`admin`]: operator routes; [`desk`]: account controls and the audit log;
//!   [`reports`]: the daily house P&L and any account's statement; [`hedge`]: the A-book;
//! - [`ops`]: health, metrics, the OpenAPI document;
//! - [`history`]: what the groups share to read the history store.

pub mod admin;
pub mod controls;
pub mod desk;
pub mod explain;
pub mod hedge;
pub mod history;
pub mod keys;
pub mod markets;
pub mod ops;
pub mod orders;
pub mod positions;
pub mod reports;
pub mod sessions;
pub mod statement;
pub mod two_factor;
pub mod user;

use std::sync::{Arc, OnceLock};

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::{Json, Router};
use serde_json::Value;
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{Modify, OpenApi};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::AppState;
use crate::error::ApiError;

/// Every route with its OpenAPI operation, from one list of groups: what is served and what is
/// documented cannot differ (the handlers' `#[utoipa::path]` attributes carry the methods and
/// paths).
pub fn api_router() -> OpenApiRouter<Arc<AppState>> {
    OpenApiRouter::with_openapi(ApiDoc::openapi())
        .merge(user::router())
        .merge(statement::router())
        .merge(sessions::router())
        .merge(two_factor::router())
        .merge(keys::router())
        .merge(markets::router())
        .merge(positions::router())
        .merge(explain::router())
        .merge(orders::router())
        .merge(controls::router())
        .merge(admin::router())
        .merge(desk::router())
        .merge(hedge::router())
        .merge(reports::router())
        .merge(ops::router())
        .routes(routes!(openapi_json))
}

/// The served router: [`api_router`] plus the push API, the page, and the API's own 404 and
/// 405.
pub fn routes() -> Router<Arc<AppState>> {
    let (router, _) = api_router().split_for_parts();
    // The push API is described by its own protocol document, not OpenAPI.
    router
        .route("/api/v1/ws", axum::routing::get(crate::push::upgrade))
        .route("/api/v1/asyncapi.json", axum::routing::get(crate::push::asyncapi))
        .merge(crate::web::routes())
        .fallback(|| async { ApiError::not_found("not_found", "no such route") })
        .method_not_allowed_fallback(|| async {
            ApiError::new(
                StatusCode::METHOD_NOT_ALLOWED,
                "method_not_allowed",
                "method not allowed",
            )
        })
}

/// The document's fixed parts; the paths come from [`api_router`].
#[derive(OpenApi)]
#[openapi(
    info(
        title = "hundredx",
        description = "Leveraged trading API. Decimals are strings (exact), ids are strings, \
                       times are milliseconds since the Unix epoch. Errors are \
                       {\"error\": {\"code\", \"message\"}} with a stable code."
    ),
    modifiers(&Bearer),
    components(schemas(crate::dto::ErrorBody, crate::dto::ReasonCode)),
    tags(
        (name = "user", description = "Accounts, sessions, balances"),
        (name = "markets", description = "Public market data"),
        (name = "positions", description = "Trading"),
        (name = "orders", description = "Pending limit and stop orders"),
        (name = "operations", description = "Health, metrics, this document"),
    )
)]
#[derive(Debug)]
pub struct ApiDoc;

/// The `bearer` security scheme (JWT in `Authorization: Bearer`).
struct Bearer;

impl Modify for Bearer {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(
                HttpBuilder::new().scheme(HttpAuthScheme::Bearer).bearer_format("JWT").build(),
            ),
        );
    }
}

/// The whole document, built once.
pub fn document() -> &'static Value {
    static DOC: OnceLock<Value> = OnceLock::new();
    DOC.get_or_init(|| {
        let (_, api) = api_router().split_for_parts();
        serde_json::to_value(&api).unwrap_or_default()
    })
}

/// Every documented operation: (method in upper case, path, needs a token).
pub fn operations() -> Vec<(String, String, bool)> {
    let mut ops = Vec::new();
    for (path, item) in document()["paths"].as_object().into_iter().flatten() {
        for (method, op) in item.as_object().into_iter().flatten() {
            let auth =
                op.get("security").is_some_and(|s| s.as_array().is_some_and(|a| !a.is_empty()));
            ops.push((method.to_uppercase(), path.clone(), auth));
        }
    }
    ops.sort();
    ops
}

#[utoipa::path(get, path = "/api/v1/openapi.json", tag = "operations",
    summary = "This document (OpenAPI 3.1)",
    responses((status = 200, description = "the document", content_type = "application/json", body = Object)))]
async fn openapi_json() -> Response {
    Json(document()).into_response()
}
