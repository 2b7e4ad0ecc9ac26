//! `/healthz`, `/metrics`, `/api/v1/openapi.json`: operations.

use std::sync::Arc;
use std::time::Duration;

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use engine_core::event::Item;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::convert::ms;
use crate::dto::{self};
use crate::extract::ClientIp;
use crate::extract::St;
use crate::{AppState, now_ns};

/// This group's routes, with their OpenAPI operations.
pub(super) fn router() -> OpenApiRouter<Arc<AppState>> {
    OpenApiRouter::new().routes(routes!(healthz)).routes(routes!(metrics))
}

#[utoipa::path(get, path = "/healthz", tag = "operations",
    summary = "Engine liveness and each market's price age (503 until a market has a fresh price)",
    responses(
        (status = 200, description = "ok", body = dto::Health),
        (status = 503, description = "no fresh price, or the engine is not answering", body = dto::Health),
        (status = 429, description = "rate limited (Retry-After)", body = dto::ErrorBody),
    ))]
async fn healthz(State(state): St, ClientIp(ip): ClientIp) -> Response {
    if let Err(e) = AppState::limited(&state.public_ip, &ip) {
        return e.into_response();
    }
    let probe = tokio::time::timeout(Duration::from_secs(1), state.markets_snapshot()).await;
    let uptime_s = state.started.elapsed().as_secs();
    let Ok(Ok(reply)) = probe else {
        let body = dto::Health {
            status: "unavailable",
            engine: "not answering",
            uptime_s,
            markets: Vec::new(),
            feed: state.feed.as_ref().map(|f| f.health()),
            history: history_health(&state),
            error: Some(dto::ErrorDetail {
                code: "engine_unavailable".into(),
                message: "the engine is not answering".into(),
            }),
        };
        return (StatusCode::SERVICE_UNAVAILABLE, Json(body)).into_response();
    };
    let now = now_ns();
    let markets: Vec<dto::MarketHealth> = reply
        .items
        .iter()
        .filter_map(|i| match i {
            Item::Market(mv) => state.market_cfg(mv.market).map(|m| {
                let age = (mv.updated_at_ns > 0).then(|| ms(now.saturating_sub(mv.updated_at_ns)));
                let fresh = mv.updated_at_ns > 0
                    && now.saturating_sub(mv.updated_at_ns) <= m.max_price_age_ns;
                dto::MarketHealth { symbol: m.symbol.clone(), price_age_ms: age, fresh }
            }),
            _ => None,
        })
        .collect();
    // Without any fresh price nothing can be traded: not "ok" for a load balancer.
    let priced = markets.iter().any(|m| m.fresh);
    let body = dto::Health {
        status: if priced { "ok" } else { "no_prices" },
        engine: "alive",
        uptime_s,
        markets,
        feed: state.feed.as_ref().map(|f| f.health()),
        history: history_health(&state),
        error: (!priced).then(|| dto::ErrorDetail {
            code: "no_prices".into(),
            message: "no market has a fresh price".into(),
        }),
    };
    let status = if priced { StatusCode::OK } else { StatusCode::SERVICE_UNAVAILABLE };
    (status, Json(body)).into_response()
}

fn history_health(state: &AppState) -> Option<dto::HistoryHealth> {
    use std::sync::atomic::Ordering::Relaxed;
    let w = state.history.get()?.writer.as_ref()?;
    Some(dto::HistoryHealth {
        written_seq: w.written_seq.load(Relaxed),
        lag_ms: w.lag_ms.load(Relaxed),
        stalled: w.stalled.load(Relaxed),
        degraded: w.degraded.load(Relaxed),
    })
}

#[utoipa::path(get, path = "/metrics", tag = "operations",
    summary = "Metrics (OpenMetrics text); every label value from a closed set",
    responses((status = 200, description = "metrics", content_type = "application/openmetrics-text", body = String)))]
async fn metrics(state: St) -> Response {
    crate::metrics::render(state).await
}
