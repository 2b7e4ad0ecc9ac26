//! `/api/v1/user/*`: sign-up, sign-in, balances, deposits, withdrawals, the statement.

use std::sync::Arc;

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use engine_core::command::{CommandKind, Credential, Login, MarginMode, PositionMode, TotpUse};
use engine_core::event::{Item, ReplyData};
use engine_core::num::Price;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::auth::{check_password, hash_password, normalize_email, verify_password};
use crate::convert::{balance_reply, engine, money, ms, px, rate, unexpected, usdc};
use crate::dto::{self, AmountBody, Credentials};
use crate::error::ApiError;
use crate::extract::St;
use crate::extract::{ApiJson, ApiQuery, AuthUser, ClientIp, IdemKey};
use crate::routes::history::{PAGE_DEFAULT, caught_up, history_error, history_of, query_ns};
use crate::{AppState, Remembered};

/// This group's routes, with their OpenAPI operations.
pub(super) fn router() -> OpenApiRouter<Arc<AppState>> {
    OpenApiRouter::new()
        .routes(routes!(signup))
        .routes(routes!(signin))
        .routes(routes!(balance))
        .routes(routes!(terms))
        .routes(routes!(ledger))
        .routes(routes!(deposit))
        .routes(routes!(withdraw))
        .routes(routes!(margin_mode))
        .routes(routes!(position_mode, set_position_mode))
}

#[utoipa::path(post, path = "/api/v1/user/signup", tag = "user",
    summary = "Create an account (the answer is the same whether the email was new or taken)",
    request_body = dto::Credentials,
    responses(
        (status = 202, description = "accepted: sign in next", body = dto::SignupAccepted),
        (status = 400, description = "invalid email, weak password, malformed JSON", body = dto::ErrorBody),
        dto::BodyErrors,
        (status = 429, description = "rate limited (Retry-After)", body = dto::ErrorBody),
        (status = 503, description = "password hashing busy, or engine/Redis unavailable (Retry-After)", body = dto::ErrorBody),
        (status = 504, description = "no reply in time", body = dto::ErrorBody),
    ))]
async fn signup(
    State(state): St,
    ClientIp(ip): ClientIp,
    ApiJson(body): ApiJson<Credentials>,
) -> Result<Response, ApiError> {
    AppState::limited(&state.signup_ip, &ip)?;
    let email = normalize_email(&body.email).ok_or_else(|| {
        ApiError::bad_request("invalid_email", "expected an email address of at most 64 bytes")
    })?;
    check_password(&body.password)?;
    let password = body.password;
    let hash = state.hasher.run(move || hash_password(&password)).await??;
    let login = Login::new(&email)
        .ok_or_else(|| ApiError::bad_request("invalid_email", "email too long"))?;
    let credential = Credential::new(&hash)
        .ok_or_else(|| ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "busy", "retry"))?;
    // The same answer whether the email was new or taken: sign-up must not tell an attacker
    // which emails have accounts (the hash above runs either way, so the timing is the same).
    match engine(&state, CommandKind::CreateAccount { login, credential }).await {
        Ok((ReplyData::AccountCreated { account }, _)) => {
            tracing::info!(account = account.0, "signed up");
        }
        Err(e) if e.code == "duplicate_login" => tracing::info!("sign-up for a taken login"),
        Err(e) => return Err(e),
        Ok((d, _)) => return Err(unexpected(&d)),
    }
    let body = dto::SignupAccepted {
        status: "accepted",
        message: "if this email was new, its account is ready: sign in",
    };
    Ok((StatusCode::ACCEPTED, Json(body)).into_response())
}

/// A real hash, verified when the login is unknown, so an unknown email takes as long as a wrong
/// password (no account enumeration by timing).
fn dummy_hash() -> &'static str {
    static DUMMY: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    DUMMY.get_or_init(|| hash_password("not-a-real-password").unwrap_or_default())
}

#[utoipa::path(post, path = "/api/v1/user/signin", tag = "user",
    summary = "Sign in: a JWT for the Authorization header, and a device token to send next time",
    request_body = dto::SignIn,
    responses(
        (status = 200, description = "signed in", body = dto::Token),
        (status = 400, description = "malformed JSON", body = dto::ErrorBody), (status = 401, description = "invalid email or password", body = dto::ErrorBody),
        dto::BodyErrors,
        (status = 429, description = "rate limited (Retry-After)", body = dto::ErrorBody),
        (status = 503, description = "password hashing busy, or engine/Redis unavailable (Retry-After)", body = dto::ErrorBody),
        (status = 504, description = "no reply in time", body = dto::ErrorBody),
    ))]
async fn signin(
    State(state): St,
    ClientIp(ip): ClientIp,
    headers: axum::http::HeaderMap,
    ApiJson(body): ApiJson<dto::SignIn>,
) -> Result<Response, ApiError> {
    let denied = || ApiError::unauthorized("invalid email or password");
    let email = normalize_email(&body.email).ok_or_else(denied)?;
    let remembered = match body.device.as_deref() {
        Some(d) if state.tokens.is_device_of(d, &email) => Remembered::Device,
        _ => Remembered::No,
    };
    state.limit_signin(&email, ip, remembered)?;
    let login = Login::new(&email).ok_or_else(denied)?;
    let found = match state.call(CommandKind::QueryCredential { login }).await?.result {
        Ok(ReplyData::Credential { account, credential, admin }) => {
            Some(((account, admin), credential.as_str().to_owned()))
        }
        _ => None,
    };
    let (account, hash) = found.unzip();
    let password = body.password;
    let ok = state
        .hasher_for(remembered)
        .run(move || verify_password(&password, hash.as_deref().unwrap_or_else(|| dummy_hash())))
        .await?;
    let (account, admin) = account.filter(|_| ok).ok_or_else(denied)?;
    // The password was right: the second factor, if on (its guesses count in the sign-in
    // limits above, like the password's).
    state.second_factor(account, body.totp.as_deref(), TotpUse::SignIn).await?;
    let agent = headers.get(axum::http::header::USER_AGENT).and_then(|v| v.to_str().ok());
    let expires_at = ground::time::now_secs() + state.tokens.ttl_secs();
    let sid = crate::routes::sessions::open(&state, account, expires_at, (ip, agent)).await?;
    let token = state.tokens.issue(account.0, admin, sid.0, expires_at)?;
    let device = state.tokens.issue_device(&email)?;
    let user_id = account.0.to_string();
    let demo_deposits = state.cfg.demo_deposits;
    let session_id = sid.0.to_string();
    let body = dto::Token { token, expires_at, user_id, admin, demo_deposits, device, session_id };
    Ok(Json(body).into_response())
}

#[utoipa::path(get, path = "/api/v1/user/balance", tag = "user",
    summary = "Balances, exact to the tick", security(("bearer" = [])),
    responses(
        (status = 200, description = "balances", body = dto::Balance),
        dto::AuthedErrors,
    ))]
async fn balance(State(state): St, AuthUser(account): AuthUser) -> Result<Response, ApiError> {
    balance_reply(&state, account, CommandKind::QueryAccount { account }).await
}

#[utoipa::path(get, path = "/api/v1/user/terms", tag = "user",
    summary = "What the caller pays per market by its client group (markup and commission a side), and the prices it effectively trades at now",
    security(("bearer" = [])),
    responses(
        (status = 200, description = "the caller's group and terms", body = dto::Terms),
        dto::AuthedErrors,
    ))]
async fn terms(State(state): St, AuthUser(account): AuthUser) -> Result<Response, ApiError> {
    let (reply, items) = engine(&state, CommandKind::QueryTerms { account }).await?;
    let ReplyData::Group { group, .. } = reply else { return Err(unexpected(&reply)) };
    let markets = terms_dto(&state, group, &items).await?;
    let group =
        state.cfg.groups.get(usize::from(group)).cloned().unwrap_or_else(|| group.to_string());
    Ok(Json(dto::Terms { group, markets }).into_response())
}

#[utoipa::path(post, path = "/api/v1/user/deposit", tag = "user",
    summary = "Demo deposit", security(("bearer" = [])), request_body = dto::AmountBody,
    params(("Idempotency-Key" = Option<String>, Header, description = "1..=36 printable ASCII: a retry with the same key returns the first result")),
    responses(
        (status = 200, description = "the new balances", body = dto::Balance),
        (status = 400, description = "invalid amount or key", body = dto::ErrorBody), (status = 403, description = "demo deposits are off", body = dto::ErrorBody),
        (status = 409, description = "idempotency key reused with another body", body = dto::ErrorBody),
        dto::BodyErrors,
        (status = 422, description = "refused by the engine (e.g. invalid_amount)", body = dto::ErrorBody),
        dto::AuthedErrors,
    ))]
async fn deposit(
    State(state): St,
    AuthUser(account): AuthUser,
    ClientIp(ip): ClientIp,
    IdemKey(key): IdemKey,
    ApiJson(body): ApiJson<AmountBody>,
) -> Result<Response, ApiError> {
    if !state.cfg.demo_deposits {
        return Err(ApiError::new(
            StatusCode::FORBIDDEN,
            "deposits_disabled",
            "demo deposits are off",
        ));
    }
    state.limit_trading(account.0, ip)?;
    let amount = usdc("amount", &body.amount)?;
    balance_reply(&state, account, CommandKind::Deposit { account, amount, key }).await
}

#[utoipa::path(post, path = "/api/v1/user/withdraw", tag = "user",
    summary = "Withdraw from the available balance (never below zero, never from margin)",
    security(("bearer" = [])), request_body = dto::AmountBody,
    params(("Idempotency-Key" = Option<String>, Header, description = "1..=36 printable ASCII: a retry with the same key returns the first result and withdraws once")),
    responses(
        (status = 200, description = "the new balances", body = dto::Balance),
        (status = 400, description = "invalid amount or key", body = dto::ErrorBody),
        (status = 409, description = "idempotency key reused with another body", body = dto::ErrorBody),
        dto::BodyErrors,
        (status = 422, description = "refused by the engine: insufficient_balance (more than available; margin and order margin cannot be withdrawn; a cross account keeps its free margin and stays above its stop-out level)", body = dto::ErrorBody),
        dto::AuthedErrors,
    ))]
async fn withdraw(
    State(state): St,
    AuthUser(account): AuthUser,
    ClientIp(ip): ClientIp,
    IdemKey(key): IdemKey,
    ApiJson(body): ApiJson<AmountBody>,
) -> Result<Response, ApiError> {
    state.limit_trading(account.0, ip)?;
    let amount = usdc("amount", &body.amount)?;
    state.second_factor(account, body.totp.as_deref(), TotpUse::Withdraw).await?;
    balance_reply(&state, account, CommandKind::Withdraw { account, amount, key }).await
}

#[utoipa::path(post, path = "/api/v1/user/margin-mode", tag = "user",
    summary = "Choose isolated or cross margin (docs/DESIGN.md, \"Cross margin\"): only without open positions or pending orders",
    security(("bearer" = [])), request_body = dto::MarginModeBody,
    responses(
        (status = 200, description = "the balances in the new mode", body = dto::Balance),
        dto::BodyErrors,
        (status = 422, description = "refused by the engine: positions_open (open positions or pending orders)", body = dto::ErrorBody),
        dto::AuthedErrors,
    ))]
async fn margin_mode(
    State(state): St,
    AuthUser(account): AuthUser,
    ClientIp(ip): ClientIp,
    ApiJson(body): ApiJson<dto::MarginModeBody>,
) -> Result<Response, ApiError> {
    state.limit_trading(account.0, ip)?;
    let mode = match body.mode {
        dto::MarginModeName::Isolated => MarginMode::Isolated,
        dto::MarginModeName::Cross => MarginMode::Cross,
    };
    balance_reply(&state, account, CommandKind::SetMarginMode { account, mode }).await
}

#[utoipa::path(get, path = "/api/v1/user/position-mode", tag = "user",
    summary = "The caller's position mode: hedging or netting (docs/DESIGN.md, \"Netting\")",
    security(("bearer" = [])),
    responses(
        (status = 200, description = "the mode", body = dto::PositionModeBody),
        dto::AuthedErrors,
    ))]
async fn position_mode(
    State(state): St,
    AuthUser(account): AuthUser,
) -> Result<Response, ApiError> {
    mode_reply(&state, account, CommandKind::QueryPositionMode { account }).await
}

#[utoipa::path(post, path = "/api/v1/user/position-mode", tag = "user",
    summary = "Choose hedging or netting (docs/DESIGN.md, \"Netting\"): only without open positions or pending orders",
    security(("bearer" = [])), request_body = dto::PositionModeBody,
    responses(
        (status = 200, description = "the new mode", body = dto::PositionModeBody),
        dto::BodyErrors,
        (status = 422, description = "refused by the engine: positions_open (open positions or pending orders)", body = dto::ErrorBody),
        dto::AuthedErrors,
    ))]
async fn set_position_mode(
    State(state): St,
    AuthUser(account): AuthUser,
    ClientIp(ip): ClientIp,
    ApiJson(body): ApiJson<dto::PositionModeBody>,
) -> Result<Response, ApiError> {
    state.limit_trading(account.0, ip)?;
    let mode = match body.mode {
        dto::PositionModeName::Hedging => PositionMode::Hedging,
        dto::PositionModeName::Netting => PositionMode::Netting,
    };
    mode_reply(&state, account, CommandKind::SetPositionMode { account, mode }).await
}

async fn mode_reply(
    state: &AppState,
    account: engine_core::command::AccountId,
    kind: CommandKind,
) -> Result<Response, ApiError> {
    match engine(state, kind).await? {
        (ReplyData::PositionMode { account: owner, mode }, _) if owner == account => {
            let mode = match mode {
                PositionMode::Hedging => dto::PositionModeName::Hedging,
                PositionMode::Netting => dto::PositionModeName::Netting,
            };
            Ok(Json(dto::PositionModeBody { mode }).into_response())
        }
        (d, _) => Err(crate::convert::unexpected(&d)),
    }
}

#[utoipa::path(get, path = "/api/v1/user/ledger", tag = "user",
    summary = "The caller's statement: one row per money movement with the running balance",
    security(("bearer" = [])), params(dto::LedgerQuery),
    responses(
        (status = 200, description = "a page of the statement, oldest first", body = dto::Ledger),
        (status = 400, description = "invalid query (cursor, limit, time)", body = dto::ErrorBody),
        (status = 404, description = "this server keeps no history store", body = dto::ErrorBody),
        dto::AuthedErrors,
    ))]
async fn ledger(
    State(state): St,
    AuthUser(account): AuthUser,
    ApiQuery(q): ApiQuery<dto::LedgerQuery>,
) -> Result<Response, ApiError> {
    let h = history_of(&state)?;
    let query = ground::history::LedgerQuery {
        from_ns: query_ns(q.from)?,
        to_ns: query_ns(q.to)?,
        cursor: q.cursor,
        limit: q.limit.unwrap_or(PAGE_DEFAULT),
    };
    caught_up(&state, h, account).await;
    let page = h.store.ledger(account, &query).await.map_err(history_error)?;
    let entries = page
        .items
        .into_iter()
        .map(|e| dto::LedgerEntry {
            seq: e.seq,
            kind: e.kind,
            amount: money(e.amount),
            balance: money(e.balance),
            position_id: e.position.map(|p| p.0.to_string()),
            at: ms(e.at_ns),
        })
        .collect();
    let body = dto::Ledger { entries, next_cursor: page.next, consistent_to: page.consistent_to };
    Ok(Json(body).into_response())
}

/// A group's `Item::Terms` as the API shows them, with the prices a fill is worth to its
/// accounts now (the trader's terms, and an operator's view of every group).
pub(crate) async fn terms_dto(
    state: &AppState,
    group: u16,
    items: &[Item],
) -> Result<Vec<dto::MarketTerms>, ApiError> {
    let prices = state.markets_snapshot().await?;
    Ok(items
        .iter()
        .filter_map(|item| {
            let Item::Terms {
                market,
                markup_ticks,
                commission_rate,
                max_leverage,
                markup_bps,
                commission_per_lot,
                financing_rates: (long, short),
            } = *item
            else {
                return None;
            };
            let m = state.market_cfg(market)?;
            let quote = prices.items.iter().find_map(|i| match i {
                Item::Market(v) if v.market == market && v.updated_at_ns > 0 => {
                    Some((v.bid, v.ask))
                }
                _ => None,
            });
            // The prices a fill is worth to the caller: the market's, the markup (ticks, then
            // bps of the price, rounded away from the market) further out.
            let bps_of = |p: Price| (i128::from(p.0) * i128::from(markup_bps) + 9_999) / 10_000;
            let out = |p: Price, dir: i128| {
                let v = i128::from(p.0) + dir * (i128::from(markup_ticks) + bps_of(p));
                i64::try_from(v).ok().map(|v| px(Price(v), m))
            };
            let quoted = quote.map(|(bid, ask)| (out(bid, -1), out(ask, 1)));
            Some(dto::MarketTerms {
                symbol: m.symbol.clone(),
                markup: px(Price(markup_ticks), m),
                markup_bps,
                commission_rate: rate(commission_rate),
                commission_per_lot: money(commission_per_lot),
                financing_long_rate: rate(long),
                financing_short_rate: rate(short),
                max_leverage,
                quoted_bid: quoted.as_ref().and_then(|q| q.0.clone()),
                quoted_ask: quoted.and_then(|q| q.1),
                brackets: {
                    let own = state.cfg.group_brackets.get(usize::from(group));
                    let own = own.and_then(|g| g.get(usize::from(market.0)));
                    let own = own.filter(|b| !b.is_empty());
                    crate::convert::bracket_list_dto(own.unwrap_or(&m.brackets))
                },
            })
        })
        .collect())
}
