//! The back office's account routes (docs/DESIGN.md, "Account controls"): an operator's action
//! on one account, journaled with who and why; the account as the desk sees it; the audit log
//! of every operator's action, read from the history store (which only the engine's journal
//! writes). The trader's own controls (`GET /user/controls`) live here too.

use std::sync::Arc;

use axum::Json;
use axum::extract::State;
use engine_core::command::{AccountId, CommandKind, Login, Note, PositionStatus, SessionId};
use engine_core::desk::{AccountAction, AccountStatus};
use engine_core::event::{Change, Item, ReplyData};
use engine_core::num::{USDC_DECIMALS, Usdc, parse_fixed_i128};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::AppState;
use crate::convert::{balance_dto, dec_error, engine, money, order_dto, position_dto, unexpected};
use crate::dto;
use crate::error::ApiError;
use crate::extract::{AdminUser, ApiJson, ApiPath, ApiQuery, AuthUser, St};
use crate::routes::history::{PAGE_DEFAULT, history_error, history_of};

/// This group's routes, with their OpenAPI operations.
pub(super) fn router() -> OpenApiRouter<Arc<AppState>> {
    OpenApiRouter::new()
        .routes(routes!(act))
        .routes(routes!(account))
        .routes(routes!(audit))
        .routes(routes!(own_controls))
        .routes(routes!(groups))
}

#[utoipa::path(post, path = "/api/v1/admin/accounts/{account}/actions", tag = "operations",
    summary = "Operator: suspend, set close-only, reinstate, adjust the balance or credit, move to a group, or revoke every session and key of an account, with a reason (journaled, in the audit log)",
    security(("bearer" = [])), request_body = dto::AccountActionBody,
    params(("account" = String, Path, description = "The account's id or email")),
    responses(
        (status = 200, description = "the account's controls after the action", body = dto::AccountControls),
        (status = 400, description = "unknown action, a missing reason or amount, a bad amount or group", body = dto::ErrorBody),
        (status = 403, description = "the caller is not an operator", body = dto::ErrorBody),
        (status = 404, description = "no such account", body = dto::ErrorBody),
        (status = 422, description = "refused (`own_account`, `insufficient_balance`, `balance_limit`)", body = dto::ErrorBody),
        dto::BodyErrors,
        dto::AuthedErrors,
    ))]
async fn act(
    State(state): St,
    AdminUser(by): AdminUser,
    ApiPath(account): ApiPath<String>,
    ApiJson(body): ApiJson<dto::AccountActionBody>,
) -> Result<Json<dto::AccountControls>, ApiError> {
    let note = note(&body.reason)?;
    let action = action(&state, &body)?;
    let account = resolve(&state, &account).await?;
    let kind = CommandKind::AdminAccount { by, account, action, note };
    match engine(&state, kind).await? {
        (ReplyData::Controls(c), _) => {
            tracing::info!(
                by = by.0,
                account = account.0,
                action = action.code(),
                "operator action"
            );
            Ok(Json(controls_dto(&state, &c)))
        }
        (d, _) => Err(unexpected(&d)),
    }
}

#[utoipa::path(get, path = "/api/v1/admin/accounts/{account}", tag = "operations",
    summary = "Operator: an account's status, credit, group, balances, open positions, pending orders, API keys and sessions",
    security(("bearer" = [])),
    params(("account" = String, Path, description = "The account's id or email")),
    responses(
        (status = 200, description = "the account", body = dto::AdminAccount),
        (status = 403, description = "the caller is not an operator", body = dto::ErrorBody),
        (status = 404, description = "no such account", body = dto::ErrorBody),
        dto::AuthedErrors,
    ))]
async fn account(
    State(state): St,
    AdminUser(_by): AdminUser,
    ApiPath(account): ApiPath<String>,
) -> Result<Json<dto::AdminAccount>, ApiError> {
    let account = resolve(&state, &account).await?;
    let controls = match engine(&state, CommandKind::QueryControls { account }).await? {
        (ReplyData::Controls(c), _) => controls_dto(&state, &c),
        (d, _) => return Err(unexpected(&d)),
    };
    let balance = match engine(&state, CommandKind::QueryAccount { account }).await? {
        (ReplyData::Account(a), _) => balance_dto(&a),
        (d, _) => return Err(unexpected(&d)),
    };
    let open = CommandKind::QueryPositions { account, status: PositionStatus::Open };
    let (mut positions, mut orders) = (Vec::new(), Vec::new());
    for item in engine(&state, open)
        .await?
        .1
        .iter()
        .chain(engine(&state, CommandKind::QueryOrders { account }).await?.1.iter())
    {
        match item {
            Item::Position(v) if v.account == account => {
                positions.extend(state.market_cfg(v.market).map(|m| position_dto(v, m)));
            }
            Item::Order(o) if o.account == account => {
                orders.extend(state.market_cfg(o.market).map(|m| order_dto(o, m)));
            }
            _ => {}
        }
    }
    let (_, keys) = engine(&state, CommandKind::QueryApiKeys { account }).await?;
    let api_keys = keys
        .iter()
        .filter_map(|i| match i {
            Item::ApiKey(k) if k.account == account => Some(super::keys::key_dto(k)),
            _ => None,
        })
        .collect();
    let (_, live) = engine(&state, CommandKind::QuerySessions { account }).await?;
    let sessions = live
        .iter()
        .filter_map(|i| match i {
            Item::Session(v) if v.account == account => {
                Some(super::sessions::session_dto(v, SessionId(0)))
            }
            _ => None,
        })
        .collect();
    Ok(Json(dto::AdminAccount { controls, balance, positions, orders, api_keys, sessions }))
}

#[utoipa::path(get, path = "/api/v1/admin/groups", tag = "operations",
    summary = "Operator: every client group's terms on every market (markup, commission, leverage cap, financing) as its accounts see them now",
    security(("bearer" = [])),
    responses(
        (status = 200, description = "the groups, in configuration order", body = Vec<dto::Terms>),
        (status = 403, description = "the caller is not an operator", body = dto::ErrorBody),
        dto::AuthedErrors,
    ))]
async fn groups(
    State(state): St,
    AdminUser(by): AdminUser,
) -> Result<Json<Vec<dto::Terms>>, ApiError> {
    // At least the default group, which every engine has.
    let count = state.cfg.groups.len().max(1);
    let mut out = Vec::with_capacity(count);
    for g in 0..count {
        let group = u16::try_from(g)
            .map_err(|_| ApiError::bad_request("invalid_group", "too many groups"))?;
        let (reply, items) = engine(&state, CommandKind::QueryGroupTerms { by, group }).await?;
        let ReplyData::Group { .. } = reply else { return Err(unexpected(&reply)) };
        let markets = super::user::terms_dto(&state, group, &items).await?;
        let name = state.cfg.groups.get(g).cloned().unwrap_or_else(|| "default".to_owned());
        out.push(dto::Terms { group: name, markets });
    }
    Ok(Json(out))
}

#[utoipa::path(get, path = "/api/v1/user/controls", tag = "user",
    summary = "The caller's account status (active, close_only, suspended), credit and what it may withdraw",
    security(("bearer" = [])),
    responses(
        (status = 200, description = "the caller's controls", body = dto::AccountControls),
        dto::AuthedErrors,
    ))]
async fn own_controls(
    State(state): St,
    AuthUser(account): AuthUser,
) -> Result<Json<dto::AccountControls>, ApiError> {
    match engine(&state, CommandKind::QueryControls { account }).await? {
        (ReplyData::Controls(c), _) => Ok(Json(controls_dto(&state, &c))),
        (d, _) => Err(unexpected(&d)),
    }
}

#[utoipa::path(get, path = "/api/v1/admin/audit", tag = "operations",
    summary = "Operator: the audit log, every operator's action with who, when and why, newest first (read from the history store; nothing can edit it)",
    security(("bearer" = [])), params(dto::AuditQuery),
    responses(
        (status = 200, description = "a page of the audit log", body = dto::Audit),
        (status = 400, description = "invalid cursor or limit", body = dto::ErrorBody),
        (status = 403, description = "the caller is not an operator", body = dto::ErrorBody),
        (status = 404, description = "this server keeps no history store", body = dto::ErrorBody),
        dto::AuthedErrors,
    ))]
async fn audit(
    State(state): St,
    AdminUser(_by): AdminUser,
    ApiQuery(q): ApiQuery<dto::AuditQuery>,
) -> Result<Json<dto::Audit>, ApiError> {
    let h = history_of(&state)?;
    let limit = q.limit.unwrap_or(PAGE_DEFAULT);
    let page = h.store.audit(q.cursor.as_deref(), limit).await.map_err(history_error)?;
    let entries = page
        .items
        .iter()
        .map(|r| {
            let (by, account, action, reason) = match r.change {
                Change::AccountControlled { account, by, action, note, .. } => {
                    (Some(by), Some(account), Some(action.code()), Some(note.as_str().to_owned()))
                }
                Change::MarketChanged { by, .. } | Change::GroupTermsSet { by, .. } => {
                    (Some(by), None, None, None)
                }
                Change::GroupSet { account, by, .. } => (Some(by), Some(account), None, None),
                Change::RoleSet { account, .. } => (None, Some(account), None, None),
                _ => (None, None, None, None),
            };
            let change = serde_json::to_value(r.change).unwrap_or_default();
            // A change serializes as `{"<kind>": {...}}`.
            let kind = change.as_object().and_then(|o| o.keys().next()).cloned();
            dto::AuditEntry {
                seq: r.seq,
                at: r.at_ns / 1_000_000,
                kind: kind.unwrap_or_default(),
                by: by.map(|a| a.0.to_string()),
                account_id: account.map(|a| a.0.to_string()),
                action: action.map(str::to_owned),
                reason,
                change,
            }
        })
        .collect();
    Ok(Json(dto::Audit { entries, next_cursor: page.next, consistent_to: page.consistent_to }))
}

/// The operator's reason: 1..=120 bytes, printable, trimmed.
fn note(raw: &str) -> Result<Note, ApiError> {
    let text = raw.trim();
    if text.is_empty() {
        return Err(ApiError::bad_request("reason_required", "say why: reason is required"));
    }
    if text.chars().any(char::is_control) {
        return Err(ApiError::bad_request("invalid_reason", "reason must be printable text"));
    }
    Note::new(text)
        .ok_or_else(|| ApiError::bad_request("invalid_reason", "reason is at most 120 bytes"))
}

/// The body's action, with what it needs.
fn action(state: &AppState, body: &dto::AccountActionBody) -> Result<AccountAction, ApiError> {
    let amount = || -> Result<Usdc, ApiError> {
        let raw = body.amount.as_ref().ok_or_else(|| {
            ApiError::bad_request("invalid_amount", "amount is required for this action")
        })?;
        let v = parse_fixed_i128(&raw.0, USDC_DECIMALS).map_err(|e| dec_error("amount", e))?;
        if v == 0 {
            return Err(ApiError::bad_request("invalid_amount", "amount must not be zero"));
        }
        Ok(Usdc(v))
    };
    Ok(match body.action.as_str() {
        "suspend" => AccountAction::SetStatus(AccountStatus::Suspended),
        "close_only" => AccountAction::SetStatus(AccountStatus::CloseOnly),
        "reinstate" => AccountAction::SetStatus(AccountStatus::Active),
        "adjust_balance" => AccountAction::AdjustBalance(amount()?),
        "adjust_credit" => AccountAction::AdjustCredit(amount()?),
        "revoke_access" => AccountAction::RevokeAccess,
        "move_group" => {
            let name = body.group.as_deref().ok_or_else(|| {
                ApiError::bad_request("invalid_group", "group is required for move_group")
            })?;
            AccountAction::MoveGroup(super::admin::group_index(state, name)?)
        }
        _ => {
            return Err(ApiError::bad_request(
                "invalid_action",
                "action must be suspend, close_only, reinstate, adjust_balance, adjust_credit, move_group or revoke_access",
            ));
        }
    })
}

/// An account named by its id or its email.
pub(super) async fn resolve(state: &AppState, raw: &str) -> Result<AccountId, ApiError> {
    if let Ok(id) = raw.parse::<u32>() {
        return Ok(AccountId(id));
    }
    let login = crate::auth::normalize_email(raw)
        .and_then(|e| Login::new(&e))
        .ok_or_else(|| ApiError::bad_request("invalid_login", "not an account id or email"))?;
    match engine(state, CommandKind::QueryCredential { login }).await? {
        (ReplyData::Credential { account, .. }, _) => Ok(account),
        (d, _) => Err(unexpected(&d)),
    }
}

fn controls_dto(
    state: &AppState,
    c: &engine_core::access::AccountControls,
) -> dto::AccountControls {
    dto::AccountControls {
        account_id: c.account.0.to_string(),
        status: c.status.as_str().to_owned(),
        credit: money(c.credit),
        withdrawable: money(c.withdrawable),
        group: state.cfg.groups.get(usize::from(c.group)).cloned().unwrap_or_default(),
        admin: c.admin,
    }
}
