//! The routes, one module per group, each exposing its `router()` (realworld-axum-sqlx's
//! layout); [`api_router`] merges them in one list. Extractors are in [`crate::extract`],
//! conversions in [`crate::convert`].
//!
//! - [`user`]: sign-up, sign-in, balances, deposits, withdrawals, the statement;
//! - [`markets`]: markets and candles (public);
//! - [`positions`]: open, list, one, close, add margin;
//! - [`orders`]: pending orders, TP/SL and trailing-stop edits;
//! - [`admin`]: operator routes;
//! - [`ops`]: health, metrics, the OpenAPI document;
//! - [`history`]: what the groups share to read the history store.

pub mod admin;
pub mod history;
pub mod markets;
pub mod ops;
pub mod orders;
pub mod positions;
pub mod user;

use std::sync::Arc;

use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use utoipa::OpenApi;
use utoipa_axum::router::OpenApiRouter;

use crate::AppState;
use crate::error::ApiError;

pub(crate) type St = State<Arc<AppState>>;

/// Every route with its OpenAPI operation, from one list of groups: what is served and what is
/// documented cannot differ (the handlers' `#[utoipa::path]` attributes carry the methods and
/// paths).
pub fn api_router() -> OpenApiRouter<Arc<AppState>> {
    OpenApiRouter::with_openapi(crate::openapi::ApiDoc::openapi())
        .merge(user::router())
        .merge(markets::router())
        .merge(positions::router())
        .merge(orders::router())
        .merge(admin::router())
        .merge(ops::router())
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
