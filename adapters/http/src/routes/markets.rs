//! `/api/v1/markets` and `/api/v1/candles`: public market data (cached, rate limited).

use std::sync::Arc;

use axum::Json;
use axum::extract::State;
use axum::response::{IntoResponse, Response};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use ground::history::Candle;

use crate::AppState;
use crate::convert::{markets_dto, ms, px};
use crate::dto::{self};
use crate::error::ApiError;
use crate::extract::St;
use crate::extract::{ApiQuery, ClientIp};
use crate::routes::history::{history_error, history_of};

/// This group's routes, with their OpenAPI operations.
pub(super) fn router() -> OpenApiRouter<Arc<AppState>> {
    OpenApiRouter::new().routes(routes!(markets)).routes(routes!(candles))
}

#[utoipa::path(get, path = "/api/v1/candles", tag = "markets",
    summary = "Candles of the engine's applied bid from the history store, after a venue's recent candles where the engine has none yet (public)",
    params(dto::CandlesQuery),
    responses(
        (status = 200, description = "the latest candles, oldest first", body = dto::Candles),
        (status = 400, description = "invalid market, interval or limit", body = dto::ErrorBody),
        (status = 404, description = "this server keeps no history store and read no venue's candles", body = dto::ErrorBody),
        (status = 429, description = "rate limited (Retry-After)", body = dto::ErrorBody),
        (status = 503, description = "history store unavailable", body = dto::ErrorBody),
    ))]
async fn candles(
    State(state): St,
    ClientIp(ip): ClientIp,
    ApiQuery(q): ApiQuery<dto::CandlesQuery>,
) -> Result<Response, ApiError> {
    AppState::limited(&state.public_ip, &ip)?;
    let (market, cfg) = state
        .market(&q.market)
        .map_err(|_| ApiError::bad_request("unknown_market", "no such market"))?;
    let limit = q.limit.unwrap_or(200);
    let venue = state.venue_candles(market, &q.interval);
    let own = match (state.history.get(), &venue) {
        // No store, but a venue's candles: those alone, after the limit a store checks.
        (None, Some(_)) => {
            if !(1..=ground::history::PAGE_LIMIT_MAX).contains(&limit) {
                return Err(history_error(ground::history::ReadError::InvalidLimit));
            }
            Vec::new()
        }
        _ => history_of(&state)?
            .store
            .candles(market, &q.interval, limit)
            .await
            .map_err(history_error)?,
    };
    let dto = |c: &Candle, source| dto::Candle {
        time: ms(c.start_ns),
        open: px(c.open, cfg),
        high: px(c.high, cfg),
        low: px(c.low, cfg),
        close: px(c.close, cfg),
        ticks: c.ticks,
        source,
    };
    // The venue's candles before the engine's first, as many as the engine's leave room for.
    let first_own = own.first().map_or(u64::MAX, |c| c.start_ns);
    let room = usize::try_from(limit).unwrap_or(usize::MAX).saturating_sub(own.len());
    let before: Vec<&Candle> = venue.as_ref().map_or(Vec::new(), |(_, v)| {
        let older: Vec<&Candle> = v.iter().filter(|c| c.start_ns < first_own).collect();
        older[older.len().saturating_sub(room)..].to_vec()
    });
    let candles = before
        .into_iter()
        .map(|c| dto(c, dto::CandleSource::Venue))
        .chain(own.iter().map(|c| dto(c, dto::CandleSource::Engine)))
        .collect();
    let body = dto::Candles {
        market: cfg.symbol.clone(),
        interval: q.interval,
        candles,
        venue: venue.map(|(name, _)| name.to_owned()),
    };
    Ok(Json(body).into_response())
}

#[utoipa::path(get, path = "/api/v1/markets", tag = "markets",
    summary = "Markets with bid, ask, price time and limits (public)",
    responses(
        (status = 200, description = "every market", body = dto::Markets),
        (status = 429, description = "rate limited (Retry-After)", body = dto::ErrorBody), (status = 503, description = "engine unavailable", body = dto::ErrorBody), (status = 504, description = "no reply in time", body = dto::ErrorBody),
    ))]
async fn markets(State(state): St, ClientIp(ip): ClientIp) -> Result<Response, ApiError> {
    AppState::limited(&state.public_ip, &ip)?;
    let reply = state.markets_snapshot().await?;
    let markets = markets_dto(&reply.items, |id| state.market_cfg(id).cloned());
    Ok(Json(dto::Markets { markets }).into_response())
}
