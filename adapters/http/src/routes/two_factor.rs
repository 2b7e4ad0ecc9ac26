//! `/api/v1/user/2fa`: two-factor sign-in (TOTP, RFC 6238) — enrol, confirm with a first code,
//! see its state, turn it off with a code (docs/DESIGN.md, "Two-factor sign-in"). A session
//! only: keys cannot manage it.

use std::sync::Arc;

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use engine_core::command::{CommandKind, TotpUse};
use engine_core::event::ReplyData;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::AppState;
use crate::convert::{engine, unexpected};
use crate::dto::{self, CodeBody};
use crate::error::ApiError;
use crate::extract::{ApiJson, ClientIp, SessionUser, St};

/// This group's routes, with their OpenAPI operations.
pub(super) fn router() -> OpenApiRouter<Arc<AppState>> {
    OpenApiRouter::new()
        .routes(routes!(status))
        .routes(routes!(enrol))
        .routes(routes!(confirm))
        .routes(routes!(disable))
}

async fn state_of(state: &AppState, me: SessionUser) -> Result<dto::TotpStatus, ApiError> {
    match engine(state, CommandKind::QueryTotp { account: me.account }).await? {
        (ReplyData::Totp { account, enabled, pending, recovery_left, .. }, _)
            if account == me.account =>
        {
            Ok(dto::TotpStatus { enabled, pending, recovery_codes_left: recovery_left })
        }
        (d, _) => Err(unexpected(&d)),
    }
}

#[utoipa::path(get, path = "/api/v1/user/2fa", tag = "user",
    summary = "The caller's two-factor state", security(("bearer" = [])),
    responses((status = 200, description = "its state", body = dto::TotpStatus), dto::AuthedErrors))]
async fn status(State(state): St, me: SessionUser) -> Result<Response, ApiError> {
    Ok(Json(state_of(&state, me).await?).into_response())
}

#[utoipa::path(post, path = "/api/v1/user/2fa/enrol", tag = "user",
    summary = "Start two-factor sign-in: a new secret (otpauth URI and QR code) and ten recovery codes, shown once; on only after a first code confirms it",
    security(("bearer" = [])), request_body(content = Option<Object>, description = "empty or {}"),
    responses(
        (status = 201, description = "put the secret in an authenticator, then confirm with its code", body = dto::TotpEnrolled),
        (status = 422, description = "totp_state: it is already on (turn it off first)", body = dto::ErrorBody),
        dto::AuthedErrors,
    ))]
async fn enrol(State(state): St, me: SessionUser) -> Result<Response, ApiError> {
    let login = match engine(&state, CommandKind::QueryCredentialOf { account: me.account }).await?
    {
        (ReplyData::Credential { account, .. }, _) if account == me.account => {
            format!("account {}", account.0)
        }
        (d, _) => return Err(unexpected(&d)),
    };
    let fresh = crate::totp::enrol(&login)?;
    let kind = CommandKind::EnrolTotp { account: me.account, enrolment: fresh.enrolment };
    match engine(&state, kind).await? {
        (ReplyData::Totp { .. }, _) => Ok((StatusCode::CREATED, Json(fresh.shown)).into_response()),
        (d, _) => Err(unexpected(&d)),
    }
}

#[utoipa::path(post, path = "/api/v1/user/2fa/confirm", tag = "user",
    summary = "Turn two-factor sign-in on with the authenticator's first code",
    security(("bearer" = [])), request_body = dto::CodeBody,
    responses(
        (status = 200, description = "on", body = dto::TotpStatus),
        (status = 401, description = "invalid_totp: not the code of now (or used)", body = dto::ErrorBody),
        (status = 422, description = "totp_state: nothing pending", body = dto::ErrorBody),
        dto::BodyErrors,
        dto::AuthedErrors,
    ))]
async fn confirm(
    State(state): St,
    me: SessionUser,
    ClientIp(ip): ClientIp,
    ApiJson(body): ApiJson<CodeBody>,
) -> Result<Response, ApiError> {
    spend(&state, me, ip, &body.code, TotpUse::Confirm).await
}

#[utoipa::path(post, path = "/api/v1/user/2fa/disable", tag = "user",
    summary = "Turn two-factor sign-in off (a code, or a recovery code, is needed)",
    security(("bearer" = [])), request_body = dto::CodeBody,
    responses(
        (status = 200, description = "off", body = dto::TotpStatus),
        (status = 401, description = "invalid_totp", body = dto::ErrorBody),
        (status = 422, description = "totp_state: it is not on", body = dto::ErrorBody),
        dto::BodyErrors,
        dto::AuthedErrors,
    ))]
async fn disable(
    State(state): St,
    me: SessionUser,
    ClientIp(ip): ClientIp,
    ApiJson(body): ApiJson<CodeBody>,
) -> Result<Response, ApiError> {
    spend(&state, me, ip, &body.code, TotpUse::Disable).await
}

async fn spend(
    state: &AppState,
    me: SessionUser,
    ip: std::net::IpAddr,
    code: &str,
    purpose: TotpUse,
) -> Result<Response, ApiError> {
    // Guessing codes is bounded like guessing passwords.
    state.limit_code_guess(me.account, ip)?;
    let secret = match engine(state, CommandKind::QueryTotp { account: me.account }).await? {
        (ReplyData::Totp { account, secret, .. }, _) if account == me.account => secret,
        (d, _) => return Err(unexpected(&d)),
    };
    state.spend_code(me.account, &secret, code.trim(), purpose).await?;
    Ok(Json(state_of(state, me).await?).into_response())
}
