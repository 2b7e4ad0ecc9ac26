//! Operator routes, behind the operator role (`role: "admin"` in the token, granted only by the
//! `hundredx admin` command line; the engine checks the role again on every operator command,
//! so a token issued before a revocation cannot act).

use axum::Json;
use axum::extract::State;
use axum::response::{IntoResponse, Response};
use engine_core::command::{CommandKind, GroupEdit, Login, MarketMode};
use engine_core::event::{Item, ReplyData};
use engine_core::num::{Ppm, Price, Usdc, format_fixed};

use std::sync::Arc;

use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::AppState;
use crate::convert::{engine, market_dto, money, px, rate, unexpected};
use crate::dto::{self, AdminMarketBody, RiskQuery};
use crate::error::ApiError;
use crate::extract::St;
use crate::extract::{AdminUser, ApiJson, ApiPath, ApiQuery};

/// This group's routes, with their OpenAPI operations.
pub(super) fn router() -> OpenApiRouter<Arc<AppState>> {
    OpenApiRouter::new()
        .routes(routes!(set_market))
        .routes(routes!(set_group))
        .routes(routes!(set_group_terms))
        .routes(routes!(risk))
        .routes(routes!(sources))
}

#[utoipa::path(put, path = "/api/v1/admin/accounts/{email}/group", tag = "operations",
    summary = "Operator: move an account to another client group (its markup and commission from its next command; journaled with who did it)",
    security(("bearer" = [])), request_body = dto::AdminGroupBody,
    params(("email" = String, Path, description = "The account's email")),
    responses(
        (status = 200, description = "the account's group now", body = dto::AccountGroup),
        (status = 400, description = "not an email, or no such group", body = dto::ErrorBody),
        (status = 403, description = "the caller is not an operator", body = dto::ErrorBody),
        (status = 404, description = "no such account", body = dto::ErrorBody),
        dto::BodyErrors,
        dto::AuthedErrors,
    ))]
pub(crate) async fn set_group(
    State(state): St,
    AdminUser(by): AdminUser,
    ApiPath(email): ApiPath<String>,
    ApiJson(body): ApiJson<dto::AdminGroupBody>,
) -> Result<Response, ApiError> {
    let login = crate::auth::normalize_email(&email)
        .and_then(|e| Login::new(&e))
        .ok_or_else(|| ApiError::bad_request("invalid_login", "not an email address"))?;
    let group = group_index(&state, &body.group)?;
    match engine(&state, CommandKind::AdminSetGroup { by, login, group }).await? {
        (ReplyData::Group { group, .. }, _) => {
            let name = state.cfg.groups.get(usize::from(group)).cloned().unwrap_or_default();
            Ok(Json(dto::AccountGroup { email: login.as_str().to_owned(), group: name })
                .into_response())
        }
        (d, _) => Err(unexpected(&d)),
    }
}

#[utoipa::path(put, path = "/api/v1/admin/markets/{symbol}", tag = "operations",
    summary = "Operator: halt a market, set it reduce-only or open, or change the leverage and maintenance rate of new positions (journaled with who did it)",
    security(("bearer" = [])), request_body = dto::AdminMarketBody,
    params(("symbol" = String, Path, description = "Market symbol")),
    responses(
        (status = 200, description = "the market after the change", body = dto::Market),
        (status = 400, description = "unknown market, mode, or limits out of range", body = dto::ErrorBody),
        (status = 403, description = "the caller is not an operator", body = dto::ErrorBody),
        dto::BodyErrors,
        dto::AuthedErrors,
    ))]
pub(crate) async fn set_market(
    State(state): St,
    AdminUser(by): AdminUser,
    ApiPath(symbol): ApiPath<String>,
    ApiJson(body): ApiJson<AdminMarketBody>,
) -> Result<Response, ApiError> {
    let (market, _) = state.market(&symbol)?;
    let mode = match body.mode.as_deref() {
        None => None,
        Some("open") => Some(MarketMode::Open),
        Some("halted") => Some(MarketMode::Halted),
        Some("reduce_only") => Some(MarketMode::ReduceOnly),
        Some(_) => {
            return Err(ApiError::bad_request(
                "invalid_mode",
                "mode must be open, halted or reduce_only",
            ));
        }
    };
    let max_leverage = body
        .max_leverage
        .map(|l| {
            u32::try_from(l).map_err(|_| ApiError::bad_request("invalid_leverage", "too large"))
        })
        .transpose()?;
    let maintenance_margin_rate = body
        .maintenance_margin_rate
        .as_ref()
        .map(|d| Ppm::parse(&d.0).map_err(|e| ApiError::bad_request("invalid_rate", e.to_string())))
        .transpose()?;
    let kind =
        CommandKind::AdminSetMarket { by, market, mode, max_leverage, maintenance_margin_rate };
    match engine(&state, kind).await? {
        (ReplyData::Market(mv), _) => {
            let m =
                state.market_cfg(mv.market).ok_or_else(|| unexpected(&ReplyData::Market(mv)))?;
            Ok(Json(market_dto(&mv, m)).into_response())
        }
        (d, _) => Err(unexpected(&d)),
    }
}

#[utoipa::path(put, path = "/api/v1/admin/groups/{group}/markets/{symbol}", tag = "operations",
    summary = "Operator: change a client group's markup, commission, leverage cap or financing on a market (from the next command; journaled with who did it)",
    security(("bearer" = [])), request_body = dto::AdminGroupTermsBody,
    params(("group" = String, Path, description = "The group's name"), ("symbol" = String, Path, description = "Market symbol")),
    responses(
        (status = 200, description = "the group's terms on the market now", body = dto::GroupTerms),
        (status = 400, description = "unknown group or market, or a value out of range", body = dto::ErrorBody),
        (status = 403, description = "the caller is not an operator", body = dto::ErrorBody),
        dto::BodyErrors,
        dto::AuthedErrors,
    ))]
pub(crate) async fn set_group_terms(
    State(state): St,
    AdminUser(by): AdminUser,
    ApiPath((name, symbol)): ApiPath<(String, String)>,
    ApiJson(body): ApiJson<dto::AdminGroupTermsBody>,
) -> Result<Response, ApiError> {
    let (market, m) = state.market(&symbol)?;
    let group = group_index(&state, &name)?;
    let parse_rate = |d: &Option<dto::Dec>| {
        d.as_ref()
            .map(|d| {
                Ppm::parse(&d.0).map_err(|e| ApiError::bad_request("invalid_rate", e.to_string()))
            })
            .transpose()
    };
    let edit = GroupEdit {
        markup_ticks: body
            .markup
            .as_ref()
            .map(|d| crate::convert::price("markup", d, m).map(|p| p.0))
            .transpose()?,
        markup_bps: body.markup_bps,
        commission_rate: parse_rate(&body.commission_rate)?,
        commission_per_lot: body
            .commission_per_lot
            .as_ref()
            .map(|d| {
                Usdc::parse(&d.0)
                    .map_err(|e| ApiError::bad_request("invalid_amount", e.to_string()))
            })
            .transpose()?,
        max_leverage: body.max_leverage,
        financing_long_rate: parse_rate(&body.financing_long_rate)?,
        financing_short_rate: parse_rate(&body.financing_short_rate)?,
    };
    let kind = CommandKind::AdminEditGroup { by, group, market, edit };
    match engine(&state, kind).await? {
        (ReplyData::GroupTerms { terms: t, .. }, _) => Ok(Json(dto::GroupTerms {
            group: name,
            market: symbol,
            markup: px(Price(t.markup_ticks), m),
            markup_bps: t.markup_bps,
            commission_rate: rate(t.commission_rate),
            commission_per_lot: money(t.commission_per_lot),
            max_leverage: (t.max_leverage != u32::MAX).then_some(t.max_leverage),
            financing_long_rate: t.financing.map(|f| rate(f.0)),
            financing_short_rate: t.financing.map(|f| rate(f.1)),
        })
        .into_response()),
        (d, _) => Err(unexpected(&d)),
    }
}

/// The index of the configured group called `name`.
pub(super) fn group_index(state: &AppState, name: &str) -> Result<u16, ApiError> {
    let Some(i) = state.cfg.groups.iter().position(|g| g == name) else {
        let names = state.cfg.groups.join(", ");
        return Err(ApiError::bad_request("invalid_group", format!("groups: {names}")));
    };
    u16::try_from(i).map_err(|_| ApiError::bad_request("invalid_group", "too many groups"))
}

#[utoipa::path(get, path = "/api/v1/admin/risk", tag = "operations",
    summary = "Operator: insurance fund, house balance, exposure per market and side, the positions closest to liquidation",
    security(("bearer" = [])), params(dto::RiskQuery),
    responses(
        (status = 200, description = "the risk view", body = dto::Risk),
        (status = 400, description = "invalid query", body = dto::ErrorBody),
        (status = 403, description = "the caller is not an operator", body = dto::ErrorBody),
        dto::AuthedErrors,
    ))]
pub(crate) async fn risk(
    State(state): St,
    AdminUser(by): AdminUser,
    ApiQuery(q): ApiQuery<RiskQuery>,
) -> Result<Response, ApiError> {
    let top = q.top.unwrap_or(20);
    if top > 100 {
        return Err(ApiError::bad_request("invalid_query", "top must be 0..=100"));
    }
    Ok(Json(risk_view(&state, by, top).await?).into_response())
}

/// The risk view for operator `by` (the route's answer, and the `risk` push channel's).
pub(crate) async fn risk_view(
    state: &AppState,
    by: engine_core::command::AccountId,
    top: u32,
) -> Result<dto::Risk, ApiError> {
    let (reply, items) = engine(state, CommandKind::QueryRisk { by, top }).await?;
    let ReplyData::Risk {
        insurance_fund,
        house_balance,
        open_positions,
        spread_revenue,
        commission_revenue,
        ..
    } = reply
    else {
        return Err(unexpected(&reply));
    };
    let (mut exposure, mut at_risk, mut accounts_at_risk) = (Vec::new(), Vec::new(), Vec::new());
    for item in &items {
        match item {
            Item::Exposure(e) => {
                let Some(m) = state.market_cfg(e.market) else { continue };
                let cap = m.open_interest_cap(e.side);
                exposure.push(dto::Exposure {
                    market: m.symbol.clone(),
                    side: e.side.as_str(),
                    positions: e.positions,
                    open_interest: format_fixed(i128::from(e.open_interest.0), m.qty_decimals),
                    notional: money(e.notional),
                    unrealized_pnl: money(e.unrealized_pnl),
                    house_unrealized_pnl: money(Usdc(-e.unrealized_pnl.0)),
                    open_interest_cap: (cap > 0)
                        .then(|| format_fixed(i128::from(cap), m.qty_decimals)),
                });
            }
            Item::AtRisk(r) => {
                let Some(m) = state.market_cfg(r.market) else { continue };
                at_risk.push(dto::AtRisk {
                    position_id: r.position.0.to_string(),
                    user_id: r.account.0.to_string(),
                    market: m.symbol.clone(),
                    side: r.side.as_str(),
                    margin: money(r.margin),
                    mark: px(r.mark, m),
                    liquidation_price: px(r.liquidation_price, m),
                    distance_bps: r.distance_bps,
                });
            }
            Item::AccountAtRisk { account, level } => {
                accounts_at_risk.push(dto::AccountAtRisk {
                    user_id: account.0.to_string(),
                    margin_level: crate::convert::level_dto(*level, None),
                });
            }
            _ => {}
        }
    }
    Ok(dto::Risk {
        insurance_fund: money(insurance_fund),
        house_balance: money(house_balance),
        spread_revenue: money(spread_revenue),
        commission_revenue: money(commission_revenue),
        open_positions,
        exposure,
        at_risk,
        accounts_at_risk,
    })
}

#[utoipa::path(get, path = "/api/v1/admin/markets/{symbol}/sources", tag = "operations",
    summary = "Operator: a market's index against each venue — every source's latest quote, its age, whether it is fresh, and how far its mid is from the index",
    security(("bearer" = [])),
    params(("symbol" = String, Path, description = "Market symbol")),
    responses(
        (status = 200, description = "the sources (none for a market fed by one feed)", body = dto::MarketSourcesView),
        (status = 400, description = "unknown market", body = dto::ErrorBody),
        (status = 403, description = "the caller is not an operator", body = dto::ErrorBody),
        dto::AuthedErrors,
    ))]
pub(crate) async fn sources(
    State(state): St,
    AdminUser(_by): AdminUser,
    ApiPath(symbol): ApiPath<String>,
) -> Result<Response, ApiError> {
    let (market, m) = state.market(&symbol)?;
    let (_, items) = engine(&state, CommandKind::QuerySources { market }).await?;
    let snapshot = state.markets_snapshot().await?;
    let index = snapshot.items.iter().find_map(|i| match i {
        Item::Market(v) if v.market == market && v.updated_at_ns > 0 => Some((v.bid, v.ask)),
        _ => None,
    });
    let names: Vec<&'static str> = state
        .feed
        .as_ref()
        .map(|f| f.source_counters().into_iter().map(|(n, _)| n).collect())
        .unwrap_or_default();
    let now_ns = ground::time::now_ns();
    let mid = |bid: Price, ask: Price| (i128::from(bid.0) + i128::from(ask.0)) / 2;
    let out: Vec<dto::SourceView> = items
        .iter()
        .filter_map(|i| match *i {
            Item::SourceQuote { source, bid, ask, at_ns, .. } => {
                let name = names
                    .get(usize::from(source.0))
                    .map_or_else(|| format!("source {}", source.0), |n| (*n).to_owned());
                let quoted = at_ns > 0;
                let age_ms = quoted.then(|| now_ns.saturating_sub(at_ns) / 1_000_000);
                let deviation_bps = match (quoted, index) {
                    (true, Some((b, a))) if mid(b, a) > 0 => u64::try_from(
                        ((mid(bid, ask) - mid(b, a)) * 10_000 / mid(b, a)).unsigned_abs(),
                    )
                    .ok(),
                    _ => None,
                };
                Some(dto::SourceView {
                    source: name,
                    bid: quoted.then(|| px(bid, m)),
                    ask: quoted.then(|| px(ask, m)),
                    age_ms,
                    fresh: age_ms
                        .is_some_and(|a| a.saturating_mul(1_000_000) <= m.max_source_age_ns),
                    deviation_bps,
                })
            }
            _ => None,
        })
        .collect();
    Ok(Json(dto::MarketSourcesView {
        market: m.symbol.clone(),
        index_bid: index.map(|(b, _)| px(b, m)),
        index_ask: index.map(|(_, a)| px(a, m)),
        max_deviation_bps: m.max_deviation_bps,
        sources: out,
    })
    .into_response())
}
