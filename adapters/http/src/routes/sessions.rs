//! `/api/v1/user/sessions`, sign-out and password change (docs/DESIGN.md, "Sessions"): a
//! sign-in opens a session in the engine whose id its token carries; every request checks it is
//! still live, so signing out — one session, the others, or everywhere — and changing the
//! password (which signs every other session out) hold on every api instance.

use std::net::IpAddr;
use std::sync::Arc;

use axum::Json;
use axum::extract::State;
use axum::response::{IntoResponse, Response};
use engine_core::command::{
    AccountId, CommandKind, Credential, InlineStr, NewSession, SessionClient, SessionId,
    SessionScope,
};
use engine_core::event::{Item, ReplyData, SessionView};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::AppState;
use crate::auth::{check_password, hash_password, verify_password};
use crate::convert::{engine, ms, unexpected};
use crate::dto::{self, PasswordBody, SignOutBody};
use crate::error::ApiError;
use crate::extract::{ApiJson, ApiPath, ClientIp, SessionUser, St};

/// This group's routes, with their OpenAPI operations.
pub(super) fn router() -> OpenApiRouter<Arc<AppState>> {
    OpenApiRouter::new()
        .routes(routes!(list))
        .routes(routes!(revoke))
        .routes(routes!(signout))
        .routes(routes!(password))
}

/// Opens the session of a sign-in whose password was checked; its id for the token.
pub(crate) async fn open(
    state: &AppState,
    account: AccountId,
    expires_at_secs: u64,
    (ip, agent): (IpAddr, Option<&str>),
) -> Result<SessionId, ApiError> {
    let expires_at_ns = expires_at_secs.saturating_mul(1_000_000_000);
    let client = SessionClient { addr: octets(ip), v6: ip.is_ipv6(), agent: agent_of(agent) };
    match engine(state, CommandKind::OpenSession(NewSession { account, expires_at_ns, client }))
        .await?
    {
        (ReplyData::Session(s), _) if s.account == account => Ok(s.id),
        (d, _) => Err(unexpected(&d)),
    }
}

fn octets(ip: IpAddr) -> [u8; 16] {
    let mut addr = [0u8; 16];
    match ip {
        IpAddr::V4(v4) => addr[..4].copy_from_slice(&v4.octets()),
        IpAddr::V6(v6) => addr = v6.octets(),
    }
    addr
}

/// The start of a `User-Agent`, cut at a character boundary, control characters dropped.
fn agent_of(agent: Option<&str>) -> InlineStr<48> {
    let clean: String = agent.unwrap_or("").chars().filter(|c| !c.is_control()).collect();
    let mut end = clean.len().min(InlineStr::<48>::CAPACITY);
    while !clean.is_char_boundary(end) {
        end -= 1;
    }
    InlineStr::new(&clean[..end]).unwrap_or_default()
}

pub(crate) fn session_dto(s: &SessionView, current: SessionId) -> dto::Session {
    let ip = if s.client.v6 {
        IpAddr::from(s.client.addr)
    } else {
        IpAddr::from([s.client.addr[0], s.client.addr[1], s.client.addr[2], s.client.addr[3]])
    };
    dto::Session {
        id: s.id.0.to_string(),
        created_at: ms(s.created_at_ns),
        expires_at: ms(s.expires_at_ns),
        ip: ip.to_string(),
        agent: s.client.agent.as_str().to_owned(),
        current: s.id == current,
    }
}

#[utoipa::path(get, path = "/api/v1/user/sessions", tag = "user",
    summary = "The caller's live sessions (a session only: not with an API key)",
    security(("bearer" = [])),
    responses(
        (status = 200, description = "live sessions, oldest first; `current` is the caller's", body = dto::Sessions),
        dto::AuthedErrors,
    ))]
async fn list(State(state): St, me: SessionUser) -> Result<Response, ApiError> {
    let account = me.account;
    let (_, items) = engine(&state, CommandKind::QuerySessions { account }).await?;
    let sessions = items
        .iter()
        .filter_map(|i| match i {
            Item::Session(s) if s.account == account => Some(session_dto(s, me.sid)),
            _ => None,
        })
        .collect();
    Ok(Json(dto::Sessions { sessions }).into_response())
}

#[utoipa::path(delete, path = "/api/v1/user/sessions/{id}", tag = "user",
    summary = "Sign one of the caller's sessions out (its token is refused from the next request, on every api instance)",
    security(("bearer" = [])),
    params(("id" = String, Path, description = "Session id")),
    responses(
        (status = 200, description = "signed out", body = dto::SignedOut),
        (status = 400, description = "invalid id", body = dto::ErrorBody),
        dto::AuthedErrors,
    ))]
async fn revoke(
    State(state): St,
    me: SessionUser,
    ApiPath(id): ApiPath<String>,
) -> Result<Response, ApiError> {
    let id = id.parse::<u64>().ok().filter(|n| *n > 0).map(SessionId).ok_or_else(|| {
        ApiError::bad_request("invalid_session_id", "session id must be a positive integer")
    })?;
    sign_out(&state, me.account, SessionScope::One(id)).await
}

#[utoipa::path(post, path = "/api/v1/user/signout", tag = "user",
    summary = "Sign out: this session (the default), every other one, or everywhere",
    security(("bearer" = [])), request_body = dto::SignOutBody,
    responses(
        (status = 200, description = "signed out", body = dto::SignedOut),
        (status = 400, description = "scope is not this, others or all", body = dto::ErrorBody),
        dto::BodyErrors,
        dto::AuthedErrors,
    ))]
async fn signout(
    State(state): St,
    me: SessionUser,
    ApiJson(body): ApiJson<SignOutBody>,
) -> Result<Response, ApiError> {
    let scope = match body.scope.as_deref().unwrap_or("this") {
        "this" => SessionScope::One(me.sid),
        "others" => SessionScope::Others(me.sid),
        "all" => SessionScope::All,
        _ => return Err(ApiError::bad_request("invalid_scope", "scope: this, others or all")),
    };
    sign_out(&state, me.account, scope).await
}

async fn sign_out(
    state: &AppState,
    account: AccountId,
    scope: SessionScope,
) -> Result<Response, ApiError> {
    match engine(state, CommandKind::RevokeSessions { account, scope }).await? {
        (ReplyData::SessionsRevoked { count }, _) => {
            // This instance forgets them now; the others when the change reaches them.
            state.hub().sessions.revoke(account, scope);
            Ok(Json(dto::SignedOut { signed_out: count }).into_response())
        }
        (d, _) => Err(unexpected(&d)),
    }
}

#[utoipa::path(post, path = "/api/v1/user/password", tag = "user",
    summary = "Change the password (the current one is checked): every other session is signed out; this one stays",
    security(("bearer" = [])), request_body = dto::PasswordBody,
    responses(
        (status = 200, description = "changed; how many other sessions were signed out", body = dto::SignedOut),
        (status = 400, description = "weak new password", body = dto::ErrorBody),
        (status = 403, description = "wrong current password (wrong_password)", body = dto::ErrorBody),
        dto::BodyErrors,
        dto::AuthedErrors,
    ))]
async fn password(
    State(state): St,
    me: SessionUser,
    ClientIp(ip): ClientIp,
    ApiJson(body): ApiJson<PasswordBody>,
) -> Result<Response, ApiError> {
    check_password(&body.new_password)?;
    // Bounded like a sign-in: the current password is guessed no faster.
    state.limit_code_guess(me.account, ip)?;
    let stored =
        match engine(&state, CommandKind::QueryCredentialOf { account: me.account }).await? {
            (ReplyData::Credential { account, credential, .. }, _) if account == me.account => {
                credential.as_str().to_owned()
            }
            (d, _) => return Err(unexpected(&d)),
        };
    let (current, new) = (body.current_password, body.new_password);
    let hashed = state
        .hasher()
        .run(move || verify_password(&current, &stored).then(|| hash_password(&new)))
        .await?;
    let Some(hashed) = hashed else {
        return Err(ApiError::new(
            axum::http::StatusCode::FORBIDDEN,
            "wrong_password",
            "the current password is not right",
        ));
    };
    let credential = Credential::new(&hashed.map_err(|_| ApiError::busy("hashing failed"))?)
        .ok_or_else(|| ApiError::busy("hashing failed"))?;
    let kind = CommandKind::ChangePassword { account: me.account, credential, keep: me.sid };
    match engine(&state, kind).await? {
        (ReplyData::SessionsRevoked { count }, _) => {
            state.hub().sessions.revoke(me.account, SessionScope::Others(me.sid));
            Ok(Json(dto::SignedOut { signed_out: count }).into_response())
        }
        (d, _) => Err(unexpected(&d)),
    }
}
