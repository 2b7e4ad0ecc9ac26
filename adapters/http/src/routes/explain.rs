//! `GET /api/v1/positions/{id}/explain` (docs/DESIGN.md, "Every close explained"): each of a
//! position's triggered closes and margin calls with the inputs of the rule that fired, from
//! the history store's change log, and the margin level those inputs give.

use std::sync::Arc;

use axum::Json;
use axum::extract::State;
use axum::response::{IntoResponse, Response};
use engine_core::command::{AccountId, CommandKind};
use engine_core::config::MarketConfig;
use engine_core::event::{Change, ChangeRecord, ReplyData};
use engine_core::math::Scale;
use engine_core::num::{Ppm, format_fixed};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::AppState;
use crate::convert::{engine, money, ms, own, position_id, px, rate};
use crate::dto;
use crate::error::ApiError;
use crate::extract::{ApiPath, AuthUser, St};
use crate::routes::history::{caught_up, history_error, history_of};

/// This group's routes, with their OpenAPI operations.
pub(super) fn router() -> OpenApiRouter<Arc<AppState>> {
    OpenApiRouter::new().routes(routes!(explain))
}

#[utoipa::path(get, path = "/api/v1/positions/{id}/explain", tag = "positions",
    summary = "Why a position was closed or called: each triggered close and margin call with the rule's inputs",
    security(("bearer" = [])),
    params(("id" = String, Path, description = "Position id")),
    responses(
        (status = 200, description = "its explanations, oldest first", body = dto::Explanation),
        (status = 404, description = "not one of the caller's positions, or no history store", body = dto::ErrorBody),
        (status = 503, description = "the history store is not answering", body = dto::ErrorBody),
        dto::AuthedErrors,
    ))]
async fn explain(
    State(state): St,
    AuthUser(account): AuthUser,
    ApiPath(id): ApiPath<String>,
) -> Result<Response, ApiError> {
    let position = position_id(&id)?;
    let h = history_of(&state)?;
    caught_up(&state, h, account).await;
    let records = h.store.explanations(account, position).await.map_err(history_error)?;
    if records.is_empty() {
        // Nothing fired: still the caller's position (open, or closed by its owner)?
        let open = engine(&state, CommandKind::QueryPosition { account, position }).await;
        let closed = match open {
            Ok((ReplyData::Position(v), _)) => own(account, v.account).is_ok(),
            _ => h.store.closed_position(account, position).await.ok().flatten().is_some(),
        };
        if !closed {
            return Err(ApiError::not_found("unknown_position", "no such position"));
        }
    }
    let events = events(&state, account, &records);
    let verify = format!("hundredx explain --data-dir <DIR> --position {}", position.0);
    Ok(Json(dto::Explanation { position_id: position.0.to_string(), events, verify })
        .into_response())
}

/// One event per `explained` change, with the `source_quotes`, `stop_out` and `closed`
/// changes of its command.
fn events(
    state: &AppState,
    account: AccountId,
    records: &[ChangeRecord],
) -> Vec<dto::ExplainedEvent> {
    let same_seq = |seq: u64| records.iter().filter(move |r| r.seq == seq).map(|r| r.change);
    records
        .iter()
        .filter_map(|r| {
            let Change::Explained { market, account: owner, .. } = r.change else { return None };
            let m = state.market_cfg(market)?;
            debug_assert_eq!(owner, account, "the store scopes reads to the account");
            let mut e = event(r, m)?;
            for c in same_seq(r.seq) {
                match c {
                    Change::SourceQuotes { quotes, fresh, agreeing, .. } => {
                        let n = usize::from(m.sources);
                        let quotes = quotes[..n]
                            .iter()
                            .map(|&(b, a)| (b.0 > 0).then(|| [px(b, m), px(a, m)]))
                            .collect();
                        e.sources = Some(dto::SourcesThen { quotes, fresh, agreeing });
                    }
                    Change::StopOut { level, .. } => {
                        e.account = Some(crate::convert::level_dto(level, None))
                    }
                    Change::Closed { exit_price, realized_pnl, fee, payout, bad_debt, .. } => {
                        e.close = Some(dto::ExplainedClose {
                            exit_price: px(exit_price, m),
                            realized_pnl: money(realized_pnl),
                            fee: money(fee),
                            payout: money(payout),
                            bad_debt: money(bad_debt),
                        });
                    }
                    _ => {}
                }
            }
            Some(e)
        })
        .collect()
}

/// An `explained` change with the level its inputs give (isolated: the position's own).
fn event(r: &ChangeRecord, m: &MarketConfig) -> Option<dto::ExplainedEvent> {
    let Change::Explained {
        trigger,
        side,
        quantity,
        entry_price,
        trigger_price,
        bid,
        ask,
        margin,
        maintenance_rate,
        maintenance_amount,
        call_level,
        ..
    } = r.change
    else {
        return None;
    };
    let l = r.change.explained_level(Scale::new(m.price_decimals, m.qty_decimals))?;
    let (mark, pnl, mm) = (l.mark, l.pnl, l.maintenance_margin);
    let level = l.level.map(|l| format_fixed(l, 6));
    Some(dto::ExplainedEvent {
        seq: r.seq,
        at: ms(r.at_ns),
        trigger: trigger.as_str(),
        market: m.symbol.clone(),
        side: side.as_str(),
        quantity: format_fixed(i128::from(quantity.0), m.qty_decimals),
        entry_price: px(entry_price, m),
        trigger_price: (trigger_price.0 > 0).then(|| px(trigger_price, m)),
        bid: px(bid, m),
        ask: px(ask, m),
        mark: px(mark, m),
        margin: money(margin),
        maintenance_rate: rate(maintenance_rate),
        maintenance_amount: money(maintenance_amount),
        unrealized_pnl: money(pnl),
        maintenance_margin: format_fixed(mm, 6),
        margin_level: level,
        call_level: (call_level.0 > 0).then(|| rate(Ppm(call_level.0))),
        account: None,
        sources: None,
        close: None,
    })
}
