//! Routes, request and response shapes, handlers.
//!
//! Decimals travel as strings (`"62000.5"`); inputs accept strings or JSON numbers, parsed exactly
//! (serde_json keeps a number's text) with the market's precision: too many decimals is a 400,
//! never a rounding. Unknown fields are rejected. Ids are strings.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::rejection::JsonRejection;
use std::net::IpAddr;

use axum::extract::{ConnectInfo, FromRequest, FromRequestParts, Path, Query, Request, State};
use axum::http::request::Parts;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::{Json, Router};
use engine_core::command::{
    AccountId, ClientOrderId, CloseSize, CommandKind, Credential, IdempotencyKey, Login,
    OpenRequest, PositionId, PositionStatus, Size, TrailDistance,
};
use engine_core::config::MarketConfig;
use engine_core::event::{AccountView, Item, MarketView, PositionView, ReplyData};
use engine_core::math::Side;
use engine_core::num::{
    DecimalError, ExactDecimal, Price, Qty, Usdc, format_fixed, parse_fixed, parse_fixed_i128,
};
use serde::Deserialize;
use serde::de::DeserializeOwned;
use serde_json::Value;

use crate::auth::{hash_password, normalize_email, verify_password};
use crate::dto::{self, AmountBody, CloseBody, Credentials, ListQuery, OpenBody};
use crate::error::ApiError;
use crate::{AppState, Remembered, now_ns};
use utoipa::OpenApi;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

pub(crate) type St = State<Arc<AppState>>;

/// Every route with its OpenAPI operation, from one list: what is served and what is documented
/// cannot differ (the handlers' `#[utoipa::path]` attributes carry the methods and paths).
pub fn api_router() -> OpenApiRouter<Arc<AppState>> {
    OpenApiRouter::with_openapi(crate::openapi::ApiDoc::openapi())
        .routes(routes!(signup))
        .routes(routes!(signin))
        .routes(routes!(balance))
        .routes(routes!(ledger))
        .routes(routes!(deposit))
        .routes(routes!(withdraw))
        .routes(routes!(markets))
        .routes(routes!(candles))
        .routes(routes!(open, list_positions))
        .routes(routes!(get_position))
        .routes(routes!(close))
        .routes(routes!(add_margin))
        .routes(routes!(crate::orders::set_triggers))
        .routes(routes!(crate::orders::set_trailing_stop))
        .routes(routes!(crate::orders::place, crate::orders::list))
        .routes(routes!(crate::orders::cancel))
        .routes(routes!(crate::admin::set_market))
        .routes(routes!(crate::admin::risk))
        .routes(routes!(healthz))
        .routes(routes!(metrics))
        .routes(routes!(openapi))
}

/// The served router: [`api_router`] plus the API's own 404 and 405.
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

// ----- extractors -----

/// JSON body with the API's error shape on rejection (400, or 413 / 415).
#[derive(Debug)]
pub struct ApiJson<T>(pub T);

impl<T: DeserializeOwned, S: Send + Sync> FromRequest<S> for ApiJson<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, ApiError> {
        match Json::<T>::from_request(req, state).await {
            Ok(Json(v)) => Ok(ApiJson(v)),
            Err(rejection) => Err(json_rejection(&rejection)),
        }
    }
}

/// 413 `payload_too_large`, for JSON and raw bodies alike.
fn payload_too_large() -> ApiError {
    ApiError::new(StatusCode::PAYLOAD_TOO_LARGE, "payload_too_large", "request body too large")
}

fn json_rejection(r: &JsonRejection) -> ApiError {
    match r.status() {
        StatusCode::PAYLOAD_TOO_LARGE => payload_too_large(),
        StatusCode::UNSUPPORTED_MEDIA_TYPE => ApiError::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported_media_type",
            "expected Content-Type: application/json",
        ),
        // No library text in the answer: it names Rust types and internals. The shape is in
        // the OpenAPI document.
        StatusCode::BAD_REQUEST => {
            ApiError::bad_request("invalid_json", "the body is not valid JSON")
        }
        _ => ApiError::bad_request(
            "invalid_json",
            "the JSON body does not have the expected fields and types",
        ),
    }
}

/// A query string with the API's error shape on rejection (400 `invalid_query`).
#[derive(Debug)]
pub struct ApiQuery<T>(pub T);

impl<T: DeserializeOwned, S: Send + Sync> FromRequestParts<S> for ApiQuery<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        Query::<T>::from_request_parts(parts, state).await.map(|Query(v)| ApiQuery(v)).map_err(
            |_| {
                ApiError::bad_request(
                    "invalid_query",
                    "the query string has unknown or bad parameters",
                )
            },
        )
    }
}

/// A path parameter with the API's error shape on rejection (400 `invalid_id`): axum's own
/// rejection is plain text naming the library's reason ("Invalid URL: Invalid UTF-8 in `id`").
#[derive(Debug)]
pub struct ApiPath<T>(pub T);

impl<T: DeserializeOwned + Send, S: Send + Sync> FromRequestParts<S> for ApiPath<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        Path::<T>::from_request_parts(parts, state)
            .await
            .map(|Path(v)| ApiPath(v))
            .map_err(|_| ApiError::bad_request("invalid_id", "the id in the path is not valid"))
    }
}

/// The client's address: the peer's, or — when the peer is a trusted proxy — the nearest
/// address in `X-Forwarded-For` that is not a trusted proxy. Untrusted peers' headers are ignored
/// (anyone can write them). An IPv6 address is given as its /64 ([`crate::server::address_key`]):
/// every per-address limit is per subscriber, not per one of its 2^64 addresses.
#[derive(Debug, Clone, Copy)]
pub struct ClientIp(pub IpAddr);

impl FromRequestParts<Arc<AppState>> for ClientIp {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &Arc<AppState>,
    ) -> Result<Self, ApiError> {
        let peer = parts.extensions.get::<ConnectInfo<SocketAddr>>().map(|c| c.0.ip()).ok_or_else(
            || ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "unavailable", "no peer address"),
        )?;
        let ip = client_ip(peer, &parts.headers, &state.cfg.limits.trusted_proxies);
        Ok(ClientIp(crate::server::address_key(ip)))
    }
}

/// See [`ClientIp`].
pub fn client_ip(
    peer: IpAddr,
    headers: &axum::http::HeaderMap,
    trusted: &[ipnet::IpNet],
) -> IpAddr {
    let is_trusted = |ip: &IpAddr| trusted.iter().any(|n| n.contains(ip));
    if !is_trusted(&peer) {
        return peer;
    }
    let hops: Vec<IpAddr> = headers
        .get_all("x-forwarded-for")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .take(64)
        .map_while(|h| h.trim().parse::<IpAddr>().ok())
        .collect();
    // Walk from the nearest hop outwards: the first one that is not our proxy is the client.
    hops.iter().rev().find(|ip| !is_trusted(ip)).copied().or(hops.first().copied()).unwrap_or(peer)
}

/// The optional `Idempotency-Key` header: 1..=36 printable ASCII characters.
#[derive(Debug, Clone, Copy)]
pub struct IdemKey(pub Option<IdempotencyKey>);

impl<S: Send + Sync> FromRequestParts<S> for IdemKey {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, ApiError> {
        let Some(v) = parts.headers.get("idempotency-key") else { return Ok(IdemKey(None)) };
        let key =
            v.to_str().ok().filter(|k| printable_id(k)).and_then(IdempotencyKey::new).ok_or_else(
                || {
                    ApiError::bad_request(
                        "invalid_idempotency_key",
                        "Idempotency-Key must be 1..=36 printable ASCII characters",
                    )
                },
            )?;
        Ok(IdemKey(Some(key)))
    }
}

/// 1..=36 bytes of printable ASCII (no spaces or control characters).
fn printable_id(s: &str) -> bool {
    (1..=36).contains(&s.len()) && s.bytes().all(|b| b.is_ascii_graphic())
}

/// Every request, whatever its route, within `any_per_ip_per_second` for its client address;
/// a 429 (this one or any route's) closes the connection: a flooder reconnects to try again,
/// and its slot is free meanwhile.
pub(crate) async fn limit_every_request(
    State(state): St,
    ClientIp(ip): ClientIp,
    req: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    let mut resp = match AppState::limited(&state.any_ip, &ip) {
        Ok(()) => next.run(req).await,
        Err(e) => e.into_response(),
    };
    if resp.status() == StatusCode::TOO_MANY_REQUESTS {
        resp.headers_mut()
            .insert(axum::http::header::CONNECTION, axum::http::HeaderValue::from_static("close"));
    }
    resp
}

/// The authenticated caller, from `Authorization: Bearer <JWT>`.
#[derive(Debug, Clone, Copy)]
pub struct AuthUser(pub AccountId);

impl FromRequestParts<Arc<AppState>> for AuthUser {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &Arc<AppState>,
    ) -> Result<Self, ApiError> {
        let account = state.tokens.verify(bearer(parts)?)?;
        AppState::limited(&state.authed, &account)?;
        Ok(AuthUser(AccountId(account)))
    }
}

/// The authenticated caller holding the operator role (`role: "admin"` in its token; the
/// engine checks the role again on every operator command).
#[derive(Debug, Clone, Copy)]
pub struct AdminUser(pub AccountId);

impl FromRequestParts<Arc<AppState>> for AdminUser {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &Arc<AppState>,
    ) -> Result<Self, ApiError> {
        match state.tokens.verify_claims(bearer(parts)?)? {
            (account, true) => {
                AppState::limited(&state.authed, &account)?;
                Ok(AdminUser(AccountId(account)))
            }
            (_, false) => Err(ApiError::new(
                StatusCode::FORBIDDEN,
                "forbidden",
                "this needs the operator role",
            )),
        }
    }
}

/// The token of `Authorization: Bearer <JWT>` (the scheme is case-insensitive, RFC 9110).
fn bearer(parts: &Parts) -> Result<&str, ApiError> {
    let header = parts
        .headers
        .get(header::AUTHORIZATION)
        .and_then(|h| h.to_str().ok())
        .ok_or_else(|| ApiError::unauthorized("missing Authorization header"))?;
    header
        .split_once(' ')
        .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
        .map(|(_, token)| token.trim())
        .ok_or_else(|| ApiError::unauthorized("expected a Bearer token"))
}

/// A decimal input: a JSON string or number, kept as text for exact parsing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Dec(pub String);

impl<'de> Deserialize<'de> for Dec {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        match Value::deserialize(d)? {
            Value::String(s) => Ok(Dec(s)),
            Value::Number(n) => Ok(Dec(n.to_string())),
            _ => Err(serde::de::Error::custom("expected a decimal as a string or number")),
        }
    }
}

fn dec_error(field: &str, e: DecimalError) -> ApiError {
    let code = match e {
        DecimalError::TooManyDecimals { .. } => "too_many_decimals",
        DecimalError::Malformed | DecimalError::OutOfRange => "invalid_number",
    };
    ApiError::bad_request(code, format!("{field}: {e}"))
}

fn positive(field: &str, v: i128) -> Result<i128, ApiError> {
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

// ----- response shapes -----

pub(crate) fn money(v: Usdc) -> String {
    v.to_string()
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
        maintenance_margin_rate: format_fixed(i128::from(mv.maintenance_margin_rate.0), 6),
        mode: mv.mode.as_str(),
    }
}

pub(crate) fn balance_dto(a: &AccountView) -> dto::Balance {
    dto::Balance {
        available: money(a.available),
        locked_margin: money(a.locked_margin),
        order_margin: money(a.order_margin),
        equity: money(a.equity),
        unrealized_pnl: money(a.unrealized_pnl),
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
async fn balance_reply(
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

// ----- user -----

/// A minimum strength: 10 to 128 characters, at least 5 different ones, no control characters.
fn check_password(p: &str) -> Result<(), ApiError> {
    let n = p.chars().count();
    let mut distinct: Vec<char> = p.chars().collect();
    distinct.sort_unstable();
    distinct.dedup();
    if (10..=128).contains(&n) && distinct.len() >= 5 && !p.chars().any(char::is_control) {
        Ok(())
    } else {
        Err(ApiError::bad_request(
            "weak_password",
            "password must be 10 to 128 characters with at least 5 different ones",
        ))
    }
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
    let (token, expires_at) = state.tokens.issue(account.0, admin)?;
    let device = state.tokens.issue_device(&email)?;
    let user_id = account.0.to_string();
    let demo_deposits = state.cfg.demo_deposits;
    Ok(Json(dto::Token { token, expires_at, user_id, admin, demo_deposits, device })
        .into_response())
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
        (status = 422, description = "refused by the engine: insufficient_balance (more than available; margin and order margin cannot be withdrawn)", body = dto::ErrorBody),
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
    balance_reply(&state, account, CommandKind::Withdraw { account, amount, key }).await
}

// ----- markets -----

#[utoipa::path(get, path = "/api/v1/candles", tag = "markets",
    summary = "Candles of the engine's applied bid, from the history store (public)",
    params(dto::CandlesQuery),
    responses(
        (status = 200, description = "the latest candles, oldest first", body = dto::Candles),
        (status = 400, description = "invalid market, interval or limit", body = dto::ErrorBody),
        (status = 404, description = "this server keeps no history store", body = dto::ErrorBody),
        (status = 429, description = "rate limited (Retry-After)", body = dto::ErrorBody),
        (status = 503, description = "history store unavailable", body = dto::ErrorBody),
    ))]
async fn candles(
    State(state): St,
    ClientIp(ip): ClientIp,
    ApiQuery(q): ApiQuery<dto::CandlesQuery>,
) -> Result<Response, ApiError> {
    AppState::limited(&state.public_ip, &ip)?;
    let h = history_of(&state)?;
    let (market, cfg) = state
        .market(&q.market)
        .map_err(|_| ApiError::bad_request("unknown_market", "no such market"))?;
    let got = h
        .store
        .candles(market, &q.interval, q.limit.unwrap_or(200))
        .await
        .map_err(history_error)?;
    let candles = got
        .iter()
        .map(|c| dto::Candle {
            time: ms(c.start_ns),
            open: px(c.open, cfg),
            high: px(c.high, cfg),
            low: px(c.low, cfg),
            close: px(c.close, cfg),
            ticks: c.ticks,
        })
        .collect();
    let body = dto::Candles { market: cfg.symbol.clone(), interval: q.interval, candles };
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
    let items = reply.items.as_slice();
    let markets = items
        .iter()
        .filter_map(|i| match i {
            Item::Market(mv) => state.market_cfg(mv.market).map(|m| market_dto(mv, m)),
            _ => None,
        })
        .collect();
    Ok(Json(dto::Markets { markets }).into_response())
}

// ----- positions -----

fn open_request(
    state: &AppState,
    account: AccountId,
    b: &OpenBody,
) -> Result<OpenRequest, ApiError> {
    let (market, m) = state.market(&b.market)?;
    let opt_price = |f: &str, d: &Option<Dec>| d.as_ref().map(|d| price(f, d, m)).transpose();
    let client_order_id = client_order_id(b.client_order_id.as_deref())?;
    check_slippage_fields(b)?;
    Ok(OpenRequest {
        account,
        market,
        side: side(&b.side)?,
        leverage: leverage(b.leverage)?,
        size: size(b.margin.as_ref(), b.quantity.as_ref(), m)?,
        expected_price: opt_price("expected_price", &b.expected_price)?,
        max_slippage_bps: b.max_slippage_bps.unwrap_or(0),
        take_profit: opt_price("take_profit", &b.take_profit)?,
        stop_loss: opt_price("stop_loss", &b.stop_loss)?,
        client_order_id,
    })
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

/// `expected_price` and `max_slippage_bps` come together, and the bound is 0..=10000 (a larger
/// one is refused, never clamped).
fn check_slippage_fields(b: &OpenBody) -> Result<(), ApiError> {
    if b.max_slippage_bps.is_some() != b.expected_price.is_some() {
        return Err(ApiError::bad_request(
            "invalid_request",
            "expected_price and max_slippage_bps go together",
        ));
    }
    if b.max_slippage_bps.is_some_and(|bps| bps > 10_000) {
        return Err(ApiError::bad_request(
            "invalid_slippage",
            "max_slippage_bps must be 0..=10000",
        ));
    }
    Ok(())
}

#[utoipa::path(post, path = "/api/v1/positions", tag = "positions",
    summary = "Open a position", security(("bearer" = [])), request_body = dto::OpenBody,
    responses(
        (status = 201, description = "opened", body = dto::Position),
        (status = 400, description = "invalid input (market, side, leverage, size, prices, client_order_id)", body = dto::ErrorBody),
        (status = 409, description = "client_order_id reused with another body", body = dto::ErrorBody),
        dto::BodyErrors,
        (status = 422, description = "refused by the engine: insufficient_balance, would_liquidate, no_price, stale_price, slippage_exceeded, ...", body = dto::ErrorBody),
        dto::AuthedErrors,
    ))]
async fn open(
    State(state): St,
    AuthUser(account): AuthUser,
    ClientIp(ip): ClientIp,
    ApiJson(body): ApiJson<OpenBody>,
) -> Result<Response, ApiError> {
    state.limit_trading(account.0, ip)?;
    let req = open_request(&state, account, &body)?;
    match engine(&state, CommandKind::OpenPosition(req)).await? {
        (ReplyData::Opened(v), _) => {
            own(account, v.account)?;
            view_response(&state, StatusCode::CREATED, &v)
        }
        (d, _) => Err(unexpected(&d)),
    }
}

#[utoipa::path(get, path = "/api/v1/positions", tag = "positions",
    summary = "The caller's positions", security(("bearer" = [])), params(dto::ListQuery),
    responses(
        (status = 200, description = "open (default) or closed positions", body = dto::Positions),
        (status = 400, description = "invalid status or query", body = dto::ErrorBody),
        dto::AuthedErrors,
    ))]
async fn list_positions(
    State(state): St,
    AuthUser(account): AuthUser,
    ApiQuery(q): ApiQuery<ListQuery>,
) -> Result<Response, ApiError> {
    let status = match q.status.as_deref() {
        None | Some("open") => PositionStatus::Open,
        Some("closed") => PositionStatus::Closed,
        Some(_) => {
            return Err(ApiError::bad_request("invalid_status", "status must be open or closed"));
        }
    };
    if status == PositionStatus::Closed
        && let Some(h) = state.history.get()
    {
        caught_up(&state, h, account).await;
        return closed_from_store(&state, h.store.as_ref(), account, &q).await;
    }
    if q.cursor.is_some() || q.limit.is_some() {
        return Err(ApiError::bad_request(
            "invalid_query",
            "cursor and limit page closed positions from the history store",
        ));
    }
    let (_, items) = engine(&state, CommandKind::QueryPositions { account, status }).await?;
    let positions = items
        .iter()
        .filter_map(|i| match i {
            Item::Position(v) if v.account == account => {
                state.market_cfg(v.market).map(|m| position_dto(v, m))
            }
            _ => None,
        })
        .collect();
    Ok(Json(dto::Positions { positions, next_cursor: None, consistent_to: None }).into_response())
}

/// Closed positions over the whole history, newest first, a page at a time.
async fn closed_from_store(
    state: &AppState,
    store: &dyn ground::history::HistoryReader,
    account: AccountId,
    q: &ListQuery,
) -> Result<Response, ApiError> {
    let limit = q.limit.unwrap_or(PAGE_DEFAULT);
    let page =
        store.closed_positions(account, q.cursor.as_deref(), limit).await.map_err(history_error)?;
    let positions = page
        .items
        .iter()
        .filter(|v| v.account == account)
        .filter_map(|v| state.market_cfg(v.market).map(|m| position_dto(v, m)))
        .collect();
    let body = dto::Positions {
        positions,
        next_cursor: page.next,
        consistent_to: Some(page.consistent_to),
    };
    Ok(Json(body).into_response())
}

/// The history store, or 404 `history_disabled` when this server keeps none, or 503
/// `history_unavailable` while its writer is degraded (the store would answer, but with a past
/// that stops short: trading goes on meanwhile).
fn history_of(state: &AppState) -> Result<&crate::History, ApiError> {
    let h = state.history.get().ok_or_else(|| {
        ApiError::not_found("history_disabled", "this server keeps no history store")
    })?;
    if h.writer.as_ref().is_some_and(|w| w.degraded.load(std::sync::atomic::Ordering::Acquire)) {
        return Err(ApiError::unavailable(
            "history_unavailable",
            "history is degraded: the store cannot be written right now; trading is unaffected",
        ));
    }
    Ok(h)
}

/// Read-your-writes: waits, at most `history_read_wait_ms`, until the store holds the caller's
/// own last change (a trader who just closed a position finds it in the list; the store is
/// written a moment behind the engine). Polls the in-process writer's progress when there is
/// one, else the store's cursor, 5 ms doubling to 100 ms apart. Gives up silently: the answer's
/// `consistent_to` still says how far the store is.
async fn caught_up(state: &AppState, h: &crate::History, account: AccountId) {
    let Some(want) = state.hub().own_writes.last(account) else { return };
    let deadline = tokio::time::Instant::now() + state.cfg.limits.history_read_wait;
    let mut pause = Duration::from_millis(5);
    loop {
        let at = match &h.writer {
            Some(w) => w.written_seq.load(std::sync::atomic::Ordering::Acquire),
            None => match h.store.consistent_to().await {
                Ok(at) => at,
                Err(_) => return,
            },
        };
        if at >= want || tokio::time::Instant::now() + pause > deadline {
            return;
        }
        tokio::time::sleep(pause).await;
        pause = (pause * 2).min(Duration::from_millis(100));
    }
}

/// Rows per page when the client does not say.
const PAGE_DEFAULT: u32 = 100;

/// A history store failure in our words: a bad cursor or limit is the client's; anything else
/// is logged and reported as unavailable (never the database's own text).
fn history_error(e: ground::history::ReadError) -> ApiError {
    use ground::history::ReadError;
    match e {
        ReadError::InvalidCursor => {
            ApiError::bad_request("invalid_query", "cursor is not one this server issued")
        }
        ReadError::InvalidLimit => ApiError::bad_request("invalid_query", "limit must be 1..=500"),
        ReadError::InvalidQuery(why) => ApiError::bad_request("invalid_query", why),
        other => {
            tracing::warn!(error = %other, "history store read failed");
            ApiError::unavailable("history_unavailable", "the history store is not answering")
        }
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
    let ns = |ms: Option<u64>| -> Result<Option<u64>, ApiError> {
        ms.map(|ms| {
            ms.checked_mul(1_000_000)
                .filter(|ns| i64::try_from(*ns).is_ok())
                .ok_or_else(|| ApiError::bad_request("invalid_query", "time out of range"))
        })
        .transpose()
    };
    let query = ground::history::LedgerQuery {
        from_ns: ns(q.from)?,
        to_ns: ns(q.to)?,
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

pub(crate) fn position_id(raw: &str) -> Result<PositionId, ApiError> {
    // Anything that is not one of the caller's positions is 404, junk ids included.
    raw.parse::<u64>()
        .map(PositionId)
        .map_err(|_| ApiError::not_found("unknown_position", "no such position"))
}

#[utoipa::path(get, path = "/api/v1/positions/{id}", tag = "positions",
    summary = "One position, with uPnL and liquidation price", security(("bearer" = [])),
    params(("id" = String, Path, description = "Position id")),
    responses(
        (status = 200, description = "the position", body = dto::Position),
        (status = 400, description = "invalid id", body = dto::ErrorBody), (status = 404, description = "not one of the caller's positions", body = dto::ErrorBody),
        dto::AuthedErrors,
    ))]
async fn get_position(
    State(state): St,
    AuthUser(account): AuthUser,
    ApiPath(id): ApiPath<String>,
) -> Result<Response, ApiError> {
    let position = position_id(&id)?;
    match engine(&state, CommandKind::QueryPosition { account, position }).await {
        Ok((ReplyData::Position(v), _)) => {
            own(account, v.account)?;
            view_response(&state, StatusCode::OK, &v)
        }
        Ok((d, _)) => Err(unexpected(&d)),
        // Older than the engine's bounded closed history: the store has every closed one.
        Err(e) if e.code == "unknown_position" => match state.history.get() {
            Some(h) => match h.store.closed_position(account, position).await {
                Ok(Some(v)) => view_response(&state, StatusCode::OK, &v),
                Ok(None) => Err(e),
                Err(h) => Err(history_error(h)),
            },
            None => Err(e),
        },
        Err(e) => Err(e),
    }
}

#[utoipa::path(post, path = "/api/v1/positions/{id}/close", tag = "positions",
    summary = "Close all (empty body) or part of a position", security(("bearer" = [])),
    request_body(content = Option<dto::CloseBody>, description = "optional: the quantity to close"),
    params(("id" = String, Path, description = "Position id"), ("Idempotency-Key" = Option<String>, Header, description = "a retry with the same key returns the first result")),
    responses(
        (status = 200, description = "the closed part", body = dto::Position),
        (status = 400, description = "invalid quantity or key", body = dto::ErrorBody), (status = 404, description = "not one of the caller's positions", body = dto::ErrorBody),
        (status = 409, description = "idempotency key reused, or position already closed", body = dto::ErrorBody),
        (status = 413, description = "body too large", body = dto::ErrorBody),
        (status = 422, description = "refused by the engine: stale_price, quantity_too_small, ...", body = dto::ErrorBody),
        dto::AuthedErrors,
    ))]
async fn close(
    State(state): St,
    AuthUser(account): AuthUser,
    ClientIp(ip): ClientIp,
    IdemKey(key): IdemKey,
    ApiPath(id): ApiPath<String>,
    body: Result<axum::body::Bytes, axum::extract::rejection::BytesRejection>,
) -> Result<Response, ApiError> {
    state.limit_trading(account.0, ip)?;
    let position = position_id(&id)?;
    // The body is optional here: empty closes everything.
    let body = body.map_err(|r| match r.status() {
        StatusCode::PAYLOAD_TOO_LARGE => payload_too_large(),
        _ => ApiError::bad_request("invalid_body", "the request body could not be read"),
    })?;
    let body: CloseBody = if body.iter().all(u8::is_ascii_whitespace) {
        CloseBody::default()
    } else {
        serde_json::from_slice(&body).map_err(|_| {
            ApiError::bad_request(
                "invalid_json",
                "the JSON body does not have the expected fields and types",
            )
        })?
    };
    // The quantity's unit is its market's, which only the engine knows for this position: it
    // goes as an exact decimal and the engine converts it (one round trip, not two).
    let quantity = match &body.quantity {
        None => None,
        Some(d) => {
            let exact = ExactDecimal::parse(&d.0).map_err(|e| dec_error("quantity", e))?;
            if exact.units <= 0 {
                return Err(ApiError::bad_request("invalid_quantity", "quantity must be positive"));
            }
            Some(CloseSize::Decimal(exact))
        }
    };
    match engine(&state, CommandKind::ClosePosition { account, position, quantity, key }).await? {
        (ReplyData::Closed(v), _) => {
            own(account, v.account)?;
            view_response(&state, StatusCode::OK, &v)
        }
        (d, _) => Err(unexpected(&d)),
    }
}

#[utoipa::path(post, path = "/api/v1/positions/{id}/margin", tag = "positions",
    summary = "Add margin (moves the liquidation price away)", security(("bearer" = [])),
    request_body = dto::AmountBody,
    params(("id" = String, Path, description = "Position id"), ("Idempotency-Key" = Option<String>, Header, description = "a retry with the same key returns the first result")),
    responses(
        (status = 200, description = "the position", body = dto::Position),
        (status = 400, description = "invalid amount or key", body = dto::ErrorBody), (status = 404, description = "not one of the caller's positions", body = dto::ErrorBody),
        (status = 409, description = "idempotency key reused with another body", body = dto::ErrorBody),
        dto::BodyErrors,
        (status = 422, description = "refused by the engine: insufficient_balance, ...", body = dto::ErrorBody),
        dto::AuthedErrors,
    ))]
async fn add_margin(
    State(state): St,
    AuthUser(account): AuthUser,
    ClientIp(ip): ClientIp,
    IdemKey(key): IdemKey,
    ApiPath(id): ApiPath<String>,
    ApiJson(body): ApiJson<AmountBody>,
) -> Result<Response, ApiError> {
    state.limit_trading(account.0, ip)?;
    let position = position_id(&id)?;
    let amount = usdc("amount", &body.amount)?;
    position_reply(&state, account, CommandKind::AddMargin { account, position, amount, key }).await
}

// ----- operations -----

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

#[utoipa::path(get, path = "/api/v1/openapi.json", tag = "operations",
    summary = "This document (OpenAPI 3.1)",
    responses((status = 200, description = "the document", content_type = "application/json", body = Object)))]
async fn openapi() -> Response {
    Json(crate::openapi::document()).into_response()
}

#[utoipa::path(get, path = "/metrics", tag = "operations",
    summary = "Metrics (OpenMetrics text); every label value from a closed set",
    responses((status = 200, description = "metrics", content_type = "application/openmetrics-text", body = String)))]
async fn metrics(state: St) -> Response {
    crate::metrics::render(state).await
}
