//! Conversions at the edge: decimal inputs parsed exactly with the market's precision (too many
//! decimals is a 400, never a rounding), trading inputs checked (side, leverage, size, ids), and
//! the engine's views turned into the API's shapes (decimals as strings, ids as strings, times
//! in ms), plus the one way a handler asks the engine and reads its answer.

use axum::Json;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use engine_core::command::{
    AccountId, ClientOrderId, CommandKind, MarginMode, MarketId, PositionId, Size, TrailDistance,
};
use engine_core::config::MarketConfig;
use engine_core::event::{
    AccountView, CrossLevel, Item, MarketView, OrderView, PositionView, ReplyData,
};
use engine_core::math::Side;
use engine_core::num::{
    DecimalError, Price, Qty, Usdc, format_fixed, parse_fixed, parse_fixed_i128,
};

use crate::AppState;
use crate::dto::Dec;
use crate::dto::{self};
use crate::error::ApiError;
use crate::extract::printable_id;

pub(crate) fn dec_error(field: &str, e: DecimalError) -> ApiError {
    let code = match e {
        DecimalError::TooManyDecimals { .. } => "too_many_decimals",
        DecimalError::Malformed | DecimalError::OutOfRange => "invalid_number",
    };
    ApiError::bad_request(code, format!("{field}: {e}"))
}

pub(crate) fn positive(field: &str, v: i128) -> Result<i128, ApiError> {
    if v > 0 {
        Ok(v)
    } else {
        Err(ApiError::bad_request("invalid_number", format!("{field}: must be positive")))
    }
}

pub(crate) fn price(field: &str, d: &Dec, m: &MarketConfig) -> Result<Price, ApiError> {
    let v = parse_fixed(&d.0, m.price_decimals).map_err(|e| dec_error(field, e))?;
    positive(field, i128::from(v)).map(|_| Price(v))
}

pub(crate) fn qty(field: &str, d: &Dec, m: &MarketConfig) -> Result<Qty, ApiError> {
    let v = parse_fixed(&d.0, m.qty_decimals).map_err(|e| dec_error(field, e))?;
    positive(field, i128::from(v)).map(|_| Qty(v))
}

pub(crate) fn usdc(field: &str, d: &Dec) -> Result<Usdc, ApiError> {
    let v =
        parse_fixed_i128(&d.0, engine_core::num::USDC_DECIMALS).map_err(|e| dec_error(field, e))?;
    positive(field, v).map(|_| Usdc(v))
}

pub(crate) fn money(v: Usdc) -> String {
    v.to_string()
}

/// A rate in millionths as a decimal (`0.005000`).
pub(crate) fn rate(r: engine_core::num::Ppm) -> String {
    format_fixed(i128::from(r.0), 6)
}

pub(crate) fn px(v: Price, m: &MarketConfig) -> String {
    format_fixed(i128::from(v.0), m.price_decimals)
}

pub(crate) fn ms(ns: u64) -> u64 {
    ns / 1_000_000
}

/// A position as the API shows it.
pub fn position_dto(v: &PositionView, m: &MarketConfig) -> dto::Position {
    let c = v.close;
    dto::Position {
        id: v.id.0.to_string(),
        market: m.symbol.clone(),
        side: v.side.as_str(),
        status: v.status.as_str(),
        quantity: format_fixed(i128::from(v.quantity.0), m.qty_decimals),
        entry_price: px(v.entry_price, m),
        margin: money(v.margin),
        leverage: v.leverage,
        liquidation_price: (v.liquidation_price.0 > 0).then(|| px(v.liquidation_price, m)),
        take_profit: v.take_profit.map(|p| px(p, m)),
        stop_loss: v.stop_loss.map(|p| px(p, m)),
        trailing_stop: v.trailing_stop.map(|t| {
            let (distance, distance_bps) = match t.distance {
                TrailDistance::Price(d) => (Some(px(d, m)), None),
                TrailDistance::Bps(b) => (None, Some(b)),
            };
            dto::TrailingStop { distance, distance_bps, stop_price: px(t.stop_price, m) }
        }),
        unrealized_pnl: money(v.unrealized_pnl),
        opened_at: ms(v.opened_at_ns),
        exit_price: c.map(|c| px(c.exit_price, m)),
        realized_pnl: c.map(|c| money(c.realized_pnl)),
        fee: c.map(|c| money(c.fee)),
        payout: c.map(|c| money(c.payout)),
        close_reason: c.map(|c| c.reason.as_str()),
        closed_at: c.map(|c| ms(c.closed_at_ns)),
        // The position it closed: itself, or for a partial close the one still open.
        position_id: c.map(|c| c.position.0.to_string()),
    }
}

/// A market with its latest price and the engine's current limits and mode.
pub(crate) fn market_dto(mv: &MarketView, m: &MarketConfig) -> dto::Market {
    let has = mv.updated_at_ns > 0;
    dto::Market {
        symbol: m.symbol.clone(),
        bid: has.then(|| px(mv.bid, m)),
        ask: has.then(|| px(mv.ask, m)),
        updated_at: has.then_some(ms(mv.updated_at_ns)),
        price_decimals: m.price_decimals,
        qty_decimals: m.qty_decimals,
        // The engine's: operators may have changed the configuration's.
        max_leverage: mv.max_leverage,
        maintenance_margin_rate: rate(mv.maintenance_margin_rate),
        mode: mv.mode.as_str(),
        price_guard: None,
        sources: None,
        brackets: brackets_dto(m),
        open_interest_cap_long: cap(m.open_interest_cap(Side::Long), m),
        open_interest_cap_short: cap(m.open_interest_cap(Side::Short), m),
        skew_cap: cap(m.skew_cap_steps, m),
    }
}

/// A cap in quantity steps as base units; 0 (none) as absent.
fn cap(steps: i64, m: &MarketConfig) -> Option<String> {
    (steps > 0).then(|| format_fixed(i128::from(steps), m.qty_decimals))
}

/// A market's brackets with their maintenance amounts, as the engine derives them.
fn brackets_dto(m: &MarketConfig) -> Vec<dto::MarketBracket> {
    bracket_list_dto(&m.brackets)
}

/// Brackets with their maintenance amounts, as the engine derives them.
pub(crate) fn bracket_list_dto(
    brackets: &[engine_core::config::Bracket],
) -> Vec<dto::MarketBracket> {
    brackets
        .iter()
        .zip(engine_core::config::maintenance_amounts(brackets))
        .map(|(b, cum)| dto::MarketBracket {
            notional_cap: b.notional_cap.map(money),
            max_leverage: b.max_leverage,
            maintenance_margin_rate: rate(b.maintenance_margin_rate),
            maintenance_amount: money(cum),
        })
        .collect()
}

/// The markets list from the engine's items: each market, with its sources' state where the
/// engine sent one (right after it).
pub(crate) fn markets_dto(
    items: &[Item],
    cfg_of: impl Fn(MarketId) -> Option<MarketConfig>,
) -> Vec<dto::Market> {
    let mut markets: Vec<(MarketId, dto::Market)> = Vec::new();
    for item in items {
        match item {
            Item::Market(mv) => {
                if let Some(m) = cfg_of(mv.market) {
                    markets.push((mv.market, market_dto(mv, &m)));
                }
            }
            Item::MarketSources { market, guard, sources, fresh, agreeing } => {
                if let Some((_, dto)) = markets.iter_mut().rev().find(|(id, _)| id == market) {
                    dto.price_guard = Some(guard.as_str());
                    let state = dto::SourcesState {
                        configured: *sources,
                        fresh: *fresh,
                        agreeing: *agreeing,
                    };
                    dto.sources = Some(state);
                }
            }
            _ => {}
        }
    }
    markets.into_iter().map(|(_, m)| m).collect()
}

pub(crate) fn balance_dto(a: &AccountView) -> dto::Balance {
    dto::Balance {
        available: money(a.available),
        locked_margin: money(a.locked_margin),
        order_margin: money(a.order_margin),
        equity: money(a.equity),
        unrealized_pnl: money(a.unrealized_pnl),
        margin_mode: match a.margin_mode {
            MarginMode::Isolated => dto::MarginModeName::Isolated,
            MarginMode::Cross => dto::MarginModeName::Cross,
        },
        margin_level: a
            .margin_level
            .map(|l| level_dto(l, Some((a.margin_call_level, a.stop_out_level)))),
    }
}

/// A cross account's level, with its margin-call and stop-out levels when known.
pub(crate) fn level_dto(
    l: CrossLevel,
    levels: Option<(engine_core::num::Ppm, engine_core::num::Ppm)>,
) -> dto::MarginLevel {
    dto::MarginLevel {
        equity: money(l.equity),
        maintenance_margin: money(l.maintenance_margin),
        level: (l.level.0 != i64::MAX).then(|| rate(l.level)),
        margin_call_level: levels.and_then(|(call, _)| (call.0 > 0).then(|| rate(call))),
        stop_out_level: levels.map(|(_, stop)| rate(stop)),
    }
}

pub(crate) fn view_response(
    state: &AppState,
    status: StatusCode,
    v: &PositionView,
) -> Result<Response, ApiError> {
    let m = state
        .market_cfg(v.market)
        .ok_or_else(|| ApiError::bad_request("unknown_market", "unknown market"))?;
    Ok((status, Json(position_dto(v, m))).into_response())
}

/// Runs a command that answers with the caller's balances: 200 with them.
pub(crate) async fn balance_reply(
    state: &AppState,
    account: AccountId,
    kind: CommandKind,
) -> Result<Response, ApiError> {
    match engine(state, kind).await? {
        (ReplyData::Account(a), _) => {
            own(account, a.id)?;
            Ok(Json(balance_dto(&a)).into_response())
        }
        (d, _) => Err(unexpected(&d)),
    }
}

/// Runs a command that answers with one of the caller's positions: 200 with it.
pub(crate) async fn position_reply(
    state: &AppState,
    account: AccountId,
    kind: CommandKind,
) -> Result<Response, ApiError> {
    match engine(state, kind).await? {
        (ReplyData::Position(v), _) => {
            own(account, v.account)?;
            view_response(state, StatusCode::OK, &v)
        }
        (d, _) => Err(unexpected(&d)),
    }
}

pub(crate) async fn engine(
    state: &AppState,
    kind: CommandKind,
) -> Result<(ReplyData, Vec<Item>), ApiError> {
    let r = state.call(kind).await?;
    r.result.map(|d| (d, r.items)).map_err(ApiError::from_reason)
}

pub(crate) fn unexpected(d: &ReplyData) -> ApiError {
    tracing::error!(reply = ?d, "unexpected engine reply");
    ApiError::new(StatusCode::BAD_GATEWAY, "unexpected_reply", "the engine answered unexpectedly")
}

/// A reply about another account than the caller's is never shown (a confused or forged reply
/// must not leak one account's data to another).
pub(crate) fn own(caller: AccountId, owner: AccountId) -> Result<(), ApiError> {
    if caller == owner {
        Ok(())
    } else {
        tracing::error!(caller = caller.0, owner = owner.0, "reply for another account dropped");
        Err(ApiError::new(
            StatusCode::BAD_GATEWAY,
            "unexpected_reply",
            "the engine answered unexpectedly",
        ))
    }
}

/// `"long"` or `"short"`.
pub(crate) fn side(raw: &str) -> Result<Side, ApiError> {
    match raw {
        "long" => Ok(Side::Long),
        "short" => Ok(Side::Short),
        _ => Err(ApiError::bad_request("invalid_side", "side must be \"long\" or \"short\"")),
    }
}

/// 1..=the market's maximum.
/// 1..=1000 here; the market's current maximum is the engine's to check (operators change it).
pub(crate) fn leverage(raw: u64) -> Result<u32, ApiError> {
    u32::try_from(raw).ok().filter(|l| (1..=1_000).contains(l)).ok_or_else(|| {
        ApiError::bad_request(
            "invalid_leverage",
            "leverage must be 1 to the market's maximum (GET /api/v1/markets)",
        )
    })
}

/// Exactly one of margin or quantity.
pub(crate) fn size(
    margin: Option<&Dec>,
    quantity: Option<&Dec>,
    m: &MarketConfig,
) -> Result<Size, ApiError> {
    match (margin, quantity) {
        (Some(d), None) => Ok(Size::Margin(usdc("margin", d)?)),
        (None, Some(d)) => Ok(Size::Quantity(qty("quantity", d, m)?)),
        _ => {
            Err(ApiError::bad_request("invalid_request", "give exactly one of margin or quantity"))
        }
    }
}

/// An optional `client_order_id`: 1..=36 printable ASCII.
pub(crate) fn client_order_id(raw: Option<&str>) -> Result<Option<ClientOrderId>, ApiError> {
    raw.map(|c| {
        Some(c).filter(|c| printable_id(c)).and_then(ClientOrderId::new).ok_or_else(|| {
            ApiError::bad_request(
                "invalid_client_order_id",
                "client_order_id must be 1..=36 printable ASCII characters",
            )
        })
    })
    .transpose()
}

pub(crate) fn position_id(raw: &str) -> Result<PositionId, ApiError> {
    // Anything that is not one of the caller's positions is 404, junk ids included.
    raw.parse::<u64>()
        .map(PositionId)
        .map_err(|_| ApiError::not_found("unknown_position", "no such position"))
}

/// An order as the API shows it.
pub(crate) fn order_dto(o: &OrderView, m: &MarketConfig) -> dto::Order {
    let (margin, quantity) = match o.size {
        Size::Margin(v) => (Some(money(v)), None),
        Size::Quantity(q) => (None, Some(format_fixed(i128::from(q.0), m.qty_decimals))),
    };
    dto::Order {
        id: o.id.0.to_string(),
        market: m.symbol.clone(),
        side: o.side.as_str(),
        kind: o.kind.as_str(),
        price: px(o.price, m),
        leverage: o.leverage,
        margin,
        quantity,
        take_profit: o.take_profit.map(|p| px(p, m)),
        stop_loss: o.stop_loss.map(|p| px(p, m)),
        expires_at: o.expires_at_ns.map(ms),
        reserved: money(o.reserved),
        placed_at: ms(o.placed_at_ns),
    }
}
