//! `GET /api/v1/admin/hedge`: the A-book as the console shows it beside the B-book — the
//! hedger's position per market valued at the engine's mark (a long hedge at the bid it would
//! sell at, a short at the ask), the cash its fills cost, and their sum, its P&L.

use std::sync::Arc;

use axum::Json;
use axum::extract::State;
use engine_core::event::Item;
use engine_core::math::{Scale, Side};
use engine_core::num::{Qty, Usdc, format_fixed};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::AppState;
use crate::convert::{money, px};
use crate::dto;
use crate::error::ApiError;
use crate::extract::{AdminUser, St};

/// This group's routes, with their OpenAPI operations.
pub(super) fn router() -> OpenApiRouter<Arc<AppState>> {
    OpenApiRouter::new().routes(routes!(hedge))
}

#[utoipa::path(get, path = "/api/v1/admin/hedge", tag = "operations",
    summary = "Operator: the A-book — the hedger's position per market at the engine's mark, the cash its fills cost, its P&L, and whether it stopped",
    security(("bearer" = [])),
    responses(
        (status = 200, description = "the hedge", body = dto::Hedge),
        (status = 403, description = "the caller is not an operator", body = dto::ErrorBody),
        (status = 404, description = "hedger_unlinked: this server was started without --hedger-url", body = dto::ErrorBody),
        (status = 503, description = "hedger_unavailable: the hedger does not answer", body = dto::ErrorBody),
        dto::AuthedErrors,
    ))]
async fn hedge(State(state): St, AdminUser(_by): AdminUser) -> Result<Json<dto::Hedge>, ApiError> {
    let link = state.hedger.get().ok_or_else(|| {
        ApiError::not_found("hedger_unlinked", "this server shows no hedger (serve --hedger-url)")
    })?;
    let raw = link.status().await.map_err(|e| {
        tracing::warn!(error = %e, "hedger status");
        ApiError::unavailable("hedger_unavailable", "the hedger does not answer")
    })?;
    let status: serde_json::Value = serde_json::from_str(&raw).map_err(|_| {
        ApiError::unavailable("hedger_unavailable", "the hedger's status is unreadable")
    })?;
    let markets = state.markets_snapshot().await?;
    let cash = Usdc(status["cash_micros"].as_i64().map_or(0, i128::from));
    let mut value = Usdc::ZERO;
    let mut positions = Vec::new();
    for (symbol, steps) in status["positions"].as_object().into_iter().flatten() {
        let steps = steps.as_i64().unwrap_or(0);
        let Ok((id, m)) = state.market(symbol) else { continue };
        let Some(view) = markets.items.iter().find_map(|i| match i {
            Item::Market(v) if v.market == id => Some(*v),
            _ => None,
        }) else {
            continue;
        };
        let scale = Scale::new(m.price_decimals, m.qty_decimals);
        let side = if steps >= 0 { Side::Long } else { Side::Short };
        let mark = if side == Side::Long { view.bid } else { view.ask };
        // A long is worth what selling it brings (rounded down), a short costs what buying it
        // back costs (rounded up): the house's side of every rounding.
        let worth = if side == Side::Long {
            Usdc((i128::from(mark.0) * i128::from(steps) * scale.num()).div_euclid(scale.den()))
        } else {
            Usdc(-scale.notional_ceil(mark, Qty(steps.abs())).0)
        };
        value = Usdc(value.0 + worth.0);
        positions.push(dto::HedgePosition {
            market: symbol.clone(),
            quantity: format_fixed(i128::from(steps), m.qty_decimals),
            mark: px(mark, m),
            value: money(worth),
        });
    }
    Ok(Json(dto::Hedge {
        halted: status["halted"].as_str().map(str::to_owned),
        orders: status["orders"].as_u64().unwrap_or(0),
        pending: status["pending"].as_u64().unwrap_or(0),
        positions,
        cash: money(cash),
        value: money(value),
        pnl: money(Usdc(cash.0 + value.0)),
    }))
}
