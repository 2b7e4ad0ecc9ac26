//! API keys (docs/API.md, "API keys"): a signed-in session creates, lists and revokes them; a
//! key never manages keys (crate::keys::scope_for).

use std::sync::Arc;

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use base64::Engine as _;
use engine_core::command::{
    CommandKind, KEY_NETWORKS_MAX, KeyId, KeyLabel, KeyScopes, Network, NewApiKey,
};
use engine_core::event::{ApiKeyView, Item, ReplyData};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::AppState;
use crate::convert::{engine, unexpected};
use crate::dto::{self, ScopeName};
use crate::error::ApiError;
use crate::extract::{ApiJson, ApiPath, AuthUser, ClientIp, St};

/// This group's routes.
pub(super) fn router() -> OpenApiRouter<Arc<AppState>> {
    OpenApiRouter::new().routes(routes!(create, list)).routes(routes!(revoke))
}

fn bad(code: &'static str, message: &str) -> ApiError {
    ApiError::bad_request(code, message)
}

/// The engine's new key from the body, or why not.
fn new_key(
    account: engine_core::command::AccountId,
    body: &dto::ApiKeyBody,
) -> Result<NewApiKey, ApiError> {
    let label = Some(body.label.as_str())
        .filter(|l| !l.is_empty() && !l.chars().any(char::is_control))
        .and_then(KeyLabel::new)
        .ok_or_else(|| bad("invalid_label", "label must be 1..=32 bytes, no control characters"))?;
    let public_key = base64::engine::general_purpose::STANDARD.decode(&body.public_key).ok();
    let public_key: [u8; 32] = public_key
        .and_then(|k| k.try_into().ok())
        .filter(|k| ed25519_dalek::VerifyingKey::from_bytes(k).is_ok())
        .ok_or_else(|| {
            bad("invalid_public_key", "public_key must be the base64 of an Ed25519 public key")
        })?;
    let mut scopes = 0u8;
    for s in if body.scopes.is_empty() { &[ScopeName::Read][..] } else { &body.scopes[..] } {
        scopes |= match s {
            ScopeName::Read => KeyScopes::READ,
            ScopeName::Trade => KeyScopes::TRADE,
            ScopeName::Withdraw => KeyScopes::WITHDRAW,
        };
    }
    if body.networks.len() > KEY_NETWORKS_MAX {
        return Err(bad("invalid_networks", "at most 4 networks"));
    }
    let mut networks: [Option<Network>; KEY_NETWORKS_MAX] = [None; KEY_NETWORKS_MAX];
    for (slot, text) in networks.iter_mut().zip(&body.networks) {
        let n = crate::keys::parse_network(text)
            .ok_or_else(|| bad("invalid_networks", "networks must be CIDR blocks or addresses"))?;
        *slot = Some(n);
    }
    let expires_at_ns = match body.expires_at {
        None => None,
        Some(ms) => Some(
            ms.checked_mul(1_000_000)
                .ok_or_else(|| bad("invalid_expiry", "expires_at is too far"))?,
        ),
    };
    Ok(NewApiKey { account, public_key, label, scopes: KeyScopes(scopes), networks, expires_at_ns })
}

pub(crate) fn key_dto(k: &ApiKeyView) -> dto::ApiKey {
    let scopes = [
        (KeyScopes::READ, ScopeName::Read),
        (KeyScopes::TRADE, ScopeName::Trade),
        (KeyScopes::WITHDRAW, ScopeName::Withdraw),
    ];
    dto::ApiKey {
        id: k.id.0.to_string(),
        label: k.label.as_str().to_owned(),
        public_key: base64::engine::general_purpose::STANDARD.encode(k.public_key),
        scopes: scopes.iter().filter(|(bit, _)| k.scopes.allows(*bit)).map(|(_, n)| *n).collect(),
        networks: k.networks.iter().flatten().map(crate::keys::network_text).collect(),
        expires_at: k.expires_at_ns.map(|ns| ns / 1_000_000),
        created_at: k.created_at_ns / 1_000_000,
    }
}

#[utoipa::path(post, path = "/api/v1/user/api-keys", tag = "keys",
    summary = "Add an API key: its Ed25519 public key, scopes (withdraw never by default), networks, expiry. A signed-in session only",
    security(("bearer" = [])), request_body = dto::ApiKeyBody,
    responses(
        (status = 201, description = "the key", body = dto::ApiKey),
        (status = 400, description = "invalid label, public key, networks or expiry", body = dto::ErrorBody),
        (status = 409, description = "api_key_exists: another key has this public key", body = dto::ErrorBody),
        (status = 422, description = "too_many_api_keys", body = dto::ErrorBody),
        dto::BodyErrors,
        dto::AuthedErrors,
    ))]
async fn create(
    State(state): St,
    AuthUser(account): AuthUser,
    ClientIp(ip): ClientIp,
    ApiJson(body): ApiJson<dto::ApiKeyBody>,
) -> Result<Response, ApiError> {
    state.limit_trading(account.0, ip)?;
    let new = new_key(account, &body)?;
    // Guessing the second factor here is bounded like a sign-in.
    state.limit_code_guess(account, ip)?;
    let totp = body.totp.as_deref();
    state.second_factor(account, totp, engine_core::command::TotpUse::CreateKey).await?;
    match engine(&state, CommandKind::CreateApiKey(new)).await? {
        (ReplyData::ApiKey(k), _) if k.account == account => {
            Ok((StatusCode::CREATED, Json(key_dto(&k))).into_response())
        }
        (d, _) => Err(unexpected(&d)),
    }
}

#[utoipa::path(get, path = "/api/v1/user/api-keys", tag = "keys",
    summary = "The caller's API keys", security(("bearer" = [])),
    responses((status = 200, description = "its keys", body = dto::ApiKeys), dto::AuthedErrors))]
async fn list(State(state): St, AuthUser(account): AuthUser) -> Result<Response, ApiError> {
    let (_, items) = engine(&state, CommandKind::QueryApiKeys { account }).await?;
    let keys = items
        .iter()
        .filter_map(|i| match i {
            Item::ApiKey(k) if k.account == account => Some(key_dto(k)),
            _ => None,
        })
        .collect();
    Ok(Json(dto::ApiKeys { keys }).into_response())
}

#[utoipa::path(delete, path = "/api/v1/user/api-keys/{id}", tag = "keys",
    summary = "Revoke an API key: refused from the next request on, on every api instance",
    security(("bearer" = [])), params(("id" = String, Path, description = "Key id")),
    responses(
        (status = 200, description = "the revoked key", body = dto::ApiKey),
        (status = 400, description = "invalid id", body = dto::ErrorBody),
        (status = 404, description = "unknown_api_key: no such key of the caller", body = dto::ErrorBody),
        dto::AuthedErrors,
    ))]
async fn revoke(
    State(state): St,
    AuthUser(account): AuthUser,
    ClientIp(ip): ClientIp,
    ApiPath(id): ApiPath<String>,
) -> Result<Response, ApiError> {
    state.limit_trading(account.0, ip)?;
    let key = id
        .parse::<u64>()
        .ok()
        .filter(|n| *n > 0)
        .map(KeyId)
        .ok_or_else(|| bad("invalid_key_id", "key id must be a positive integer"))?;
    match state.call(CommandKind::RevokeApiKey { account, key }).await?.result {
        Ok(ReplyData::ApiKey(k)) if k.account == account => Ok(Json(key_dto(&k)).into_response()),
        Ok(d) => Err(unexpected(&d)),
        // Not 401 (what a signed request with an unknown key gets): the session is fine.
        Err(engine_core::event::Reason::UnknownApiKey) => {
            Err(ApiError::not_found("unknown_api_key", "no such key of yours"))
        }
        Err(reason) => Err(ApiError::from_reason(reason)),
    }
}
