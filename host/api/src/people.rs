//! Users and their API tokens, webhooks and the audit trail.

use axum::extract::State;
use axum::http::StatusCode;
use serde::{Deserialize, Serialize};
use serde_json::json;
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::auth::{Caller, hash_token, new_token};
use super::body::{Json, Path, Query};
use super::problem::{ApiError, ApiResult, Problem};
use super::{ApiState, Page};
use steward_control::alerts::{MIN_SECRET_BYTES, Webhook, check_api_target};
use steward_store::{
    ApiToken, NewUser, Role, Scope, StoredAudit, StoredWebhook, TenantId, Timestamp, User,
};

pub(super) fn routes() -> OpenApiRouter<ApiState> {
    OpenApiRouter::new()
        .routes(routes!(list_users, create_user))
        .routes(routes!(list_tokens, create_token))
        .routes(routes!(revoke_token))
        .routes(routes!(list_webhooks, create_webhook))
        .routes(routes!(delete_webhook))
        .routes(routes!(list_audit))
}

/// Whether `caller` may manage `user`: owners manage everyone; admins
/// manage users of lower roles whose tenants they all see.
fn may_manage(caller: &Caller, role: Role, tenants: Option<&[TenantId]>) -> bool {
    if caller.user.role == Role::Owner {
        return true;
    }
    if !caller.user.role.at_least(Role::Admin) || role.rank() >= caller.user.role.rank() {
        return false;
    }
    match (tenants, &caller.scope) {
        (_, Scope::All) => true,
        // A user limited to no tenant (made before such users were
        // refused) is managed by those who see every tenant only.
        (Some(ts), Scope::Tenants(mine)) => !ts.is_empty() && ts.iter().all(|t| mine.contains(t)),
        (None, Scope::Tenants(_)) => false,
    }
}

/// Users the caller may manage (everyone for an owner).
#[utoipa::path(get, path = "/api/v1/users", tag = "users",
    responses((status = 200, body = Vec<User>), (status = 403, body = Problem)))]
async fn list_users(
    State(state): State<ApiState>,
    caller: Caller,
) -> ApiResult<axum::Json<Vec<User>>> {
    caller.require(Role::Admin)?;
    let users = state.store().users().await?;
    Ok(axum::Json(
        users
            .into_iter()
            .filter(|u| u.id == caller.user.id || may_manage(&caller, u.role, u.tenants.as_deref()))
            .collect(),
    ))
}

/// A user to create.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateUser {
    /// Unique name.
    pub name: String,
    /// Role: `owner`, `admin`, `technician` or `viewer`.
    pub role: Role,
    /// Tenant ids the user may see (at least one); absent: every tenant.
    #[serde(default)]
    #[schema(min_items = 1)]
    pub tenants: Option<Vec<TenantId>>,
}

/// Creates a user (admin; only roles below the caller's, within its
/// tenants; owners create anyone).
#[utoipa::path(post, path = "/api/v1/users", tag = "users", request_body = CreateUser,
    responses((status = 201, body = User), (status = 403, body = Problem), (status = 409, body = Problem), (status = 422, body = Problem)))]
async fn create_user(
    State(state): State<ApiState>,
    caller: Caller,
    Json(body): Json<CreateUser>,
) -> ApiResult<(StatusCode, axum::Json<User>)> {
    caller.require(Role::Admin)?;
    if body.tenants.as_ref().is_some_and(Vec::is_empty) {
        return Err(ApiError::invalid(
            "tenants",
            "`tenants` is empty, which would let the user see nothing; list tenant ids, \
             or leave `tenants` out for every tenant",
        ));
    }
    if !may_manage(&caller, body.role, body.tenants.as_deref()) {
        return Err(ApiError::forbidden(
            "a user may only create users of a lower role, within its own tenants",
        ));
    }
    if let Some(ts) = &body.tenants {
        for t in ts {
            state
                .tenant(&caller, t)
                .await
                .map_err(|e| e.with_field("tenants"))?;
        }
    }
    let user = state
        .store()
        .create_user(
            &NewUser {
                name: body.name,
                role: body.role,
                tenants: body.tenants,
            },
            Timestamp::now(),
        )
        .await?;
    state
        .audit(
            &caller,
            None,
            "user.create",
            json!({ "user": user.name, "role": user.role, "tenants": user.tenants }),
        )
        .await?;
    Ok((StatusCode::CREATED, axum::Json(user)))
}

/// A token to create.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateToken {
    /// The user's id or name; absent: the caller.
    #[serde(default)]
    pub user: Option<String>,
    /// What it is for.
    #[serde(default)]
    pub label: String,
}

/// A new token: the only time it is shown.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct NewToken {
    /// Send as `Authorization: Bearer <token>`. Not stored; not shown again.
    pub token: String,
    /// The stored record.
    #[serde(flatten)]
    pub record: ApiToken,
}

/// Tokens the caller may see: its own, or, for an admin, those of users
/// it manages.
#[utoipa::path(get, path = "/api/v1/tokens", tag = "tokens",
    responses((status = 200, body = Vec<ApiToken>)))]
async fn list_tokens(
    State(state): State<ApiState>,
    caller: Caller,
) -> ApiResult<axum::Json<Vec<ApiToken>>> {
    let users = state.store().users().await?;
    let tokens = state.store().tokens(None).await?;
    Ok(axum::Json(
        tokens
            .into_iter()
            .filter(|t| {
                t.user_id == caller.user.id
                    || users.iter().any(|u| {
                        u.id == t.user_id && may_manage(&caller, u.role, u.tenants.as_deref())
                    })
            })
            .collect(),
    ))
}

/// Creates a token for the caller or a user it manages (technicians and
/// up: a viewer only reads, so its tokens are made by an admin); the
/// response is the only time the token is shown.
#[utoipa::path(post, path = "/api/v1/tokens", tag = "tokens", request_body = CreateToken,
    responses((status = 201, body = NewToken), (status = 403, body = Problem), (status = 404, body = Problem), (status = 422, body = Problem)))]
async fn create_token(
    State(state): State<ApiState>,
    caller: Caller,
    Json(body): Json<CreateToken>,
) -> ApiResult<(StatusCode, axum::Json<NewToken>)> {
    caller.require(Role::Technician)?;
    let user = match &body.user {
        None => caller.user.clone(),
        Some(name) => state
            .store()
            .user(name)
            .await?
            .filter(|u| u.id == caller.user.id || may_manage(&caller, u.role, u.tenants.as_deref()))
            .ok_or_else(|| ApiError::not_found("user", name))?,
    };
    let token = new_token();
    let record = state
        .store()
        .create_token(&user.id, &body.label, &hash_token(&token), Timestamp::now())
        .await?;
    state
        .audit(
            &caller,
            None,
            "token.create",
            json!({ "token": record.id, "user": user.name, "label": record.label }),
        )
        .await?;
    Ok((StatusCode::CREATED, axum::Json(NewToken { token, record })))
}

/// Revokes a token (the caller's own, or one of a user it manages).
#[utoipa::path(delete, path = "/api/v1/tokens/{id}", tag = "tokens",
    params(("id" = String, Path, description = "Token id")),
    responses((status = 204), (status = 404, body = Problem)))]
async fn revoke_token(
    State(state): State<ApiState>,
    caller: Caller,
    Path(id): Path<String>,
) -> ApiResult<StatusCode> {
    let not_found = || ApiError::not_found("token", &id);
    let token = state.store().token(&id).await?.ok_or_else(not_found)?;
    if token.user_id != caller.user.id {
        let user = state
            .store()
            .user(&token.user_id)
            .await?
            .ok_or_else(not_found)?;
        if !may_manage(&caller, user.role, user.tenants.as_deref()) {
            return Err(not_found());
        }
    }
    state.store().revoke_token(&id, Timestamp::now()).await?;
    state.inner.tokens.forget_token_id(&id);
    state.inner.sessions.forget_token_id(&id);
    state
        .audit(&caller, None, "token.revoke", json!({ "token": id }))
        .await?;
    Ok(StatusCode::NO_CONTENT)
}

/// A webhook to create.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateWebhook {
    /// `http://` or `https://` endpoint alerts are posted to.
    pub url: String,
    /// The HMAC-SHA256 key for `X-Steward-Signature`, at least 16 bytes.
    pub secret: String,
    /// Only this tenant's alerts; absent: every tenant's (admin, every
    /// tenant).
    #[serde(default)]
    pub tenant_id: Option<TenantId>,
}

/// Webhooks the caller sees (never their secrets).
#[utoipa::path(get, path = "/api/v1/webhooks", tag = "webhooks",
    responses((status = 200, body = Vec<StoredWebhook>)))]
async fn list_webhooks(
    State(state): State<ApiState>,
    caller: Caller,
) -> ApiResult<axum::Json<Vec<StoredWebhook>>> {
    caller.require(Role::Admin)?;
    Ok(axum::Json(
        state
            .store()
            .webhooks(&caller.scope)
            .await?
            .into_iter()
            .map(|(h, _)| h)
            .collect(),
    ))
}

/// Adds a webhook (admin); alerts go to it from now on.
#[utoipa::path(post, path = "/api/v1/webhooks", tag = "webhooks", request_body = CreateWebhook,
    responses((status = 201, body = StoredWebhook), (status = 422, body = Problem)))]
async fn create_webhook(
    State(state): State<ApiState>,
    caller: Caller,
    Json(body): Json<CreateWebhook>,
) -> ApiResult<(StatusCode, axum::Json<StoredWebhook>)> {
    caller.require(Role::Admin)?;
    match &body.tenant_id {
        Some(t) => drop(state.tenant(&caller, t).await?),
        None => caller.require_all_tenants()?,
    }
    if body.secret.len() < MIN_SECRET_BYTES {
        return Err(ApiError::invalid(
            "secret",
            format!("the secret must be at least {MIN_SECRET_BYTES} bytes"),
        ));
    }
    Webhook {
        id: "new".into(),
        url: body.url.clone(),
        secret: body.secret.clone(),
        tenants: None,
        enabled: true,
    }
    .validate()
    .map_err(|e| ApiError::invalid("url", e.to_string()))?;
    check_api_target(&body.url, state.inner.local_webhooks)
        .await
        .map_err(|e| ApiError::invalid("url", e.to_string()))?;
    let hook = state
        .store()
        .create_webhook(
            body.tenant_id.as_ref(),
            &body.url,
            &body.secret,
            Timestamp::now(),
        )
        .await?;
    state.reload_webhooks().await?;
    state
        .audit(
            &caller,
            hook.tenant_id.as_ref(),
            "webhook.create",
            json!({ "webhook": hook.id, "url": hook.url }),
        )
        .await?;
    Ok((StatusCode::CREATED, axum::Json(hook)))
}

/// Deletes a webhook (admin).
#[utoipa::path(delete, path = "/api/v1/webhooks/{id}", tag = "webhooks",
    params(("id" = String, Path, description = "Webhook id")),
    responses((status = 204), (status = 404, body = Problem)))]
async fn delete_webhook(
    State(state): State<ApiState>,
    caller: Caller,
    Path(id): Path<String>,
) -> ApiResult<StatusCode> {
    caller.require(Role::Admin)?;
    let hook = state
        .store()
        .webhooks(&caller.scope)
        .await?
        .into_iter()
        .find(|(h, _)| h.id == id)
        .ok_or_else(|| ApiError::not_found("webhook", &id))?
        .0;
    state.store().delete_webhook(&id).await?;
    state.reload_webhooks().await?;
    state
        .audit(
            &caller,
            hook.tenant_id.as_ref(),
            "webhook.delete",
            json!({ "webhook": id }),
        )
        .await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Which audit events.
#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
pub struct AuditQuery {
    /// Only this tenant's.
    pub tenant: Option<TenantId>,
    /// Only this actor's (`user:alice`, `plugin:patching`, …).
    pub actor: Option<String>,
    /// Only events at or after this time (RFC 3339).
    pub since: Option<chrono::DateTime<chrono::Utc>>,
    /// Only events before this time (RFC 3339).
    pub until: Option<chrono::DateTime<chrono::Utc>>,
    /// `next_cursor` of the previous page.
    pub cursor: Option<String>,
    /// Page size, 1 to 500 (default 100).
    #[param(minimum = 1, maximum = 500)]
    pub limit: Option<u32>,
}

/// Audit events the caller sees, newest first (viewers and up; MSP-wide
/// events only for callers who see every tenant).
#[utoipa::path(get, path = "/api/v1/audit", tag = "audit", params(AuditQuery),
    responses((status = 200, body = Page<StoredAudit>)))]
pub(crate) async fn list_audit(
    State(state): State<ApiState>,
    caller: Caller,
    Query(q): Query<AuditQuery>,
) -> ApiResult<axum::Json<Page<StoredAudit>>> {
    let limit = super::page_limit(q.limit, 100, 500)?;
    let items = state
        .store()
        .audit_events_where(
            &caller.scope,
            &steward_store::AuditFilter {
                tenant: q.tenant,
                actor: q.actor,
                since: q.since.map(Timestamp::from),
                until: q.until.map(Timestamp::from),
                before: q.cursor,
            },
            limit,
        )
        .await?;
    let next_cursor = (items.len() == limit as usize)
        .then(|| items.last().map(|e| e.id.clone()))
        .flatten();
    Ok(axum::Json(Page { items, next_cursor }))
}
