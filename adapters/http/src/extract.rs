//! The request extractors: bodies, queries and paths whose rejections are ours
//! (`{"error": {code, message}}`, never axum's text), the client's address key, the idempotency
//! key, the signed-in caller (and operator), and the rate limit every request passes.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use axum::Json;
use axum::extract::rejection::JsonRejection;
use axum::extract::{ConnectInfo, FromRequest, FromRequestParts, Path, Query, Request, State};
use axum::http::request::Parts;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use engine_core::command::{AccountId, IdempotencyKey};
use serde::de::DeserializeOwned;

use crate::AppState;
use crate::error::ApiError;

/// The application state, as handlers take it.
pub type St = State<Arc<AppState>>;

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
pub(crate) fn payload_too_large() -> ApiError {
    ApiError::new(StatusCode::PAYLOAD_TOO_LARGE, "payload_too_large", "request body too large")
}

pub(crate) fn json_rejection(r: &JsonRejection) -> ApiError {
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
pub(crate) fn printable_id(s: &str) -> bool {
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

/// The account a request's API key belongs to, and the key (set by
/// [`crate::keys::verify_signed`] once the request's signature, window, key, scope and address
/// are checked).
#[derive(Clone, Copy, Debug)]
pub struct KeyAuth(pub AccountId, pub engine_core::command::KeyId);

/// The authenticated caller, from `Authorization: Bearer <JWT>` or a signed request.
#[derive(Debug, Clone, Copy)]
pub struct AuthUser(pub AccountId);

impl FromRequestParts<Arc<AppState>> for AuthUser {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &Arc<AppState>,
    ) -> Result<Self, ApiError> {
        // A request signed with an API key, already verified (crate::keys::verify_signed).
        let account = match parts.extensions.get::<KeyAuth>() {
            Some(k) => k.0.0,
            None => signed_in(parts, state).await?.0.account,
        };
        AppState::limited(&state.authed, &account)?;
        Ok(AuthUser(AccountId(account)))
    }
}

/// The caller signed in with a password (a token of a live session, never an API key): the
/// routes that manage sessions, keys and the password.
#[derive(Debug, Clone, Copy)]
pub struct SessionUser {
    /// The account.
    pub account: AccountId,
    /// The session its token belongs to.
    pub sid: engine_core::command::SessionId,
}

impl FromRequestParts<Arc<AppState>> for SessionUser {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &Arc<AppState>,
    ) -> Result<Self, ApiError> {
        if parts.extensions.get::<KeyAuth>().is_some() {
            return Err(ApiError::new(
                StatusCode::FORBIDDEN,
                "session_required",
                "this needs a signed-in session, not an API key",
            ));
        }
        let (v, _) = signed_in(parts, state).await?;
        AppState::limited(&state.authed, &v.account)?;
        Ok(SessionUser {
            account: AccountId(v.account),
            sid: engine_core::command::SessionId(v.sid),
        })
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
        let (v, _) = signed_in(parts, state).await?;
        if !v.admin {
            return Err(ApiError::new(
                StatusCode::FORBIDDEN,
                "forbidden",
                "this needs the operator role",
            ));
        }
        AppState::limited(&state.authed, &v.account)?;
        Ok(AdminUser(AccountId(v.account)))
    }
}

/// The caller of a request with a token, once its session is confirmed: the token as
/// [`crate::weights::charge`] verified it, or verified here.
async fn signed_in(
    parts: &Parts,
    state: &AppState,
) -> Result<(crate::auth::Verified, std::time::Duration), ApiError> {
    match parts.extensions.get::<crate::auth::Verified>() {
        Some(v) => state.confirm_token(*v).await,
        None => state.verify_token(bearer(parts)?).await,
    }
}

/// The token of an `Authorization: Bearer <JWT>` header, if there is one.
pub(crate) fn bearer_of(headers: &axum::http::HeaderMap) -> Option<&str> {
    let h = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    h.split_once(' ')
        .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
        .map(|(_, t)| t.trim())
}

/// The token of `Authorization: Bearer <JWT>` (the scheme is case-insensitive, RFC 9110).
pub(crate) fn bearer(parts: &Parts) -> Result<&str, ApiError> {
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
