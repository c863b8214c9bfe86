//! Installed plugins and their grants, playbooks, schedules, and starting
//! a run by hand.

use axum::extract::State;
use axum::http::StatusCode;
use base64::Engine as _;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::ApiState;
use super::auth::Caller;
use super::body::{Json, Path, Query, Upload};
use super::problem::{ApiError, ApiResult, Problem};
use steward_store::{
    Playbook, PlaybookId, PluginVersion, Role, Run, Schedule, ScheduleId, TenantId,
};

pub(super) fn routes() -> OpenApiRouter<ApiState> {
    OpenApiRouter::new()
        .routes(routes!(list_plugins, install_plugin))
        .routes(routes!(set_grants))
        .routes(routes!(list_playbooks, create_playbook))
        .routes(routes!(get_playbook))
        .routes(routes!(start_run))
        .routes(routes!(list_schedules, create_schedule))
        .routes(routes!(update_schedule))
}

/// Installed plugin versions.
#[utoipa::path(get, path = "/api/v1/plugins", tag = "plugins",
    responses((status = 200, body = Vec<PluginVersion>)))]
pub(crate) async fn list_plugins(
    State(state): State<ApiState>,
    _caller: Caller,
) -> ApiResult<axum::Json<Vec<PluginVersion>>> {
    Ok(axum::Json(state.store().plugin_versions().await?))
}

/// A component to install.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct InstallPlugin {
    /// The `.wasm` component, base64.
    #[schema(format = Byte)]
    pub wasm: String,
    /// Capabilities to grant (`packages`, `accounts=jdoe,svc-*`, …); every
    /// capability the component imports must be granted.
    #[serde(default)]
    pub grants: Vec<String>,
    /// The installed version this upload replaces, required when the
    /// plugin's name is installed already under other versions.
    #[serde(default)]
    pub replaces: Option<String>,
}

/// Installs a plugin component (admin, every tenant): it must load,
/// describe itself and have every import granted.
#[utoipa::path(post, path = "/api/v1/plugins", tag = "plugins", request_body = InstallPlugin,
    responses((status = 201, body = PluginVersion), (status = 409, body = Problem), (status = 413, body = Problem), (status = 422, body = Problem)))]
async fn install_plugin(
    State(state): State<ApiState>,
    caller: Caller,
    Upload(body): Upload<InstallPlugin>,
) -> ApiResult<(StatusCode, axum::Json<PluginVersion>)> {
    caller.require(Role::Admin)?;
    caller.require_all_tenants()?;
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(body.wasm.trim())
        .map_err(|e| ApiError::invalid("wasm", format!("`wasm` is not base64: {e}")))?;
    let installed = state
        .plane()
        .library()
        .install_upload(
            state.store(),
            &bytes,
            &body.grants,
            body.replaces.as_deref(),
        )
        .await?;
    state
        .audit(
            &caller,
            None,
            "plugin.install",
            json!({
                "plugin": installed.plugin, "version": installed.version,
                "digest": installed.digest, "grants": installed.grants,
            }),
        )
        .await?;
    Ok((StatusCode::CREATED, axum::Json(installed)))
}

/// Installs through the library; what it refuses is the caller's mistake.
async fn install(state: &ApiState, bytes: &[u8], grants: &[String]) -> ApiResult<PluginVersion> {
    state
        .plane()
        .library()
        .install(state.store(), bytes, grants)
        .await
        .map_err(ApiError::from)
}

/// New grants for an installed version.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SetGrants {
    /// The complete list; every capability the component imports must be
    /// granted.
    pub grants: Vec<String>,
}

/// Replaces an installed version's grants (admin, every tenant).
#[utoipa::path(put, path = "/api/v1/plugins/{name}/{version}/grants", tag = "plugins",
    params(("name" = String, Path, description = "Plugin name"), ("version" = String, Path, description = "Installed version")),
    request_body = SetGrants,
    responses((status = 200, body = PluginVersion), (status = 404, body = Problem), (status = 422, body = Problem)))]
async fn set_grants(
    State(state): State<ApiState>,
    caller: Caller,
    Path((name, version)): Path<(String, String)>,
    Json(body): Json<SetGrants>,
) -> ApiResult<axum::Json<PluginVersion>> {
    caller.require(Role::Admin)?;
    caller.require_all_tenants()?;
    let installed = state
        .store()
        .plugin_versions()
        .await?
        .into_iter()
        .find(|v| v.plugin == name && v.version == version)
        .ok_or_else(|| ApiError::not_found("plugin version", &format!("{name} {version}")))?;
    let bytes = state
        .plane()
        .library()
        .bytes(&installed)
        .map_err(|e| ApiError::internal(&*e))?;
    let updated = install(&state, &bytes, &body.grants).await?;
    state
        .audit(&caller, None, "plugin.grants", json!({
            "plugin": name, "version": version, "before": installed.grants, "after": updated.grants,
        }))
        .await?;
    Ok(axum::Json(updated))
}

/// A playbook to create.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreatePlaybook {
    /// The tenant it belongs to; absent: shared by every tenant (admin,
    /// every tenant).
    #[serde(default)]
    pub tenant_id: Option<TenantId>,
    /// Name.
    pub name: String,
    /// Ordered steps: `{"plugin", "version"?, "params"?, "mode"?
    /// ("check" | "remediate"), "on-failure"? ("stop" | "continue"),
    /// "requires-approval"?}`.
    #[schema(value_type = Vec<Object>, min_items = 1)]
    pub steps: Value,
    /// Which devices: `{"sites"?, "tags"?, "devices"?}`; absent: every
    /// device of the tenant.
    #[serde(default)]
    #[schema(value_type = Object)]
    pub target: Option<Value>,
}

/// Filter by tenant.
#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
pub struct PlaybookFilter {
    /// Only this tenant's.
    pub tenant: Option<TenantId>,
}

/// Playbooks the caller sees.
#[utoipa::path(get, path = "/api/v1/playbooks", tag = "playbooks", params(PlaybookFilter),
    responses((status = 200, body = Vec<Playbook>)))]
pub(crate) async fn list_playbooks(
    State(state): State<ApiState>,
    caller: Caller,
    Query(filter): Query<PlaybookFilter>,
) -> ApiResult<axum::Json<Vec<Playbook>>> {
    Ok(axum::Json(
        state
            .store()
            .list_playbooks(&caller.scope, filter.tenant.as_ref())
            .await?,
    ))
}

/// Creates a playbook (technician). Steps must name installed plugins with
/// parameters their descriptions accept; errors name the field
/// (`steps[1].plugin`).
#[utoipa::path(post, path = "/api/v1/playbooks", tag = "playbooks", request_body = CreatePlaybook,
    responses((status = 201, body = Playbook), (status = 404, body = Problem), (status = 422, body = Problem)))]
async fn create_playbook(
    State(state): State<ApiState>,
    caller: Caller,
    Json(body): Json<CreatePlaybook>,
) -> ApiResult<(StatusCode, axum::Json<Playbook>)> {
    caller.require(Role::Technician)?;
    match &body.tenant_id {
        Some(t) => drop(state.tenant(&caller, t).await?),
        None => {
            caller.require(Role::Admin)?;
            caller.require_all_tenants()?;
        }
    }
    let playbook = state
        .plane()
        .create_playbook(
            body.tenant_id.clone(),
            &body.name,
            body.steps,
            body.target.unwrap_or_else(|| json!({})),
        )
        .await?;
    state
        .audit(
            &caller,
            playbook.tenant_id.as_ref(),
            "playbook.create",
            json!({ "playbook": playbook.id, "name": playbook.name }),
        )
        .await?;
    Ok((StatusCode::CREATED, axum::Json(playbook)))
}

/// One playbook.
#[utoipa::path(get, path = "/api/v1/playbooks/{id}", tag = "playbooks",
    params(("id" = String, Path, description = "Playbook id")),
    responses((status = 200, body = Playbook), (status = 404, body = Problem)))]
async fn get_playbook(
    State(state): State<ApiState>,
    caller: Caller,
    Path(id): Path<String>,
) -> ApiResult<axum::Json<Playbook>> {
    Ok(axum::Json(
        state.playbook(&caller, &PlaybookId::from(id)).await?,
    ))
}

/// Which tenant to run a shared playbook for.
#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct StartRun {
    /// Required for a shared playbook; must be the playbook's own tenant
    /// otherwise.
    #[serde(default)]
    pub tenant_id: Option<TenantId>,
}

/// Starts a run of the playbook now (technician).
#[utoipa::path(post, path = "/api/v1/playbooks/{id}/runs", tag = "playbooks",
    params(("id" = String, Path, description = "Playbook id")), request_body = StartRun,
    responses((status = 201, body = Run), (status = 404, body = Problem), (status = 422, body = Problem)))]
pub(crate) async fn start_run(
    State(state): State<ApiState>,
    caller: Caller,
    Path(id): Path<String>,
    Json(body): Json<StartRun>,
) -> ApiResult<(StatusCode, axum::Json<Run>)> {
    caller.require(Role::Technician)?;
    let playbook = state.playbook(&caller, &PlaybookId::from(id)).await?;
    let tenant = match (&playbook.tenant_id, body.tenant_id) {
        (Some(own), Some(asked)) if *own != asked => {
            return Err(ApiError::invalid(
                "tenant_id",
                format!("playbook `{}` belongs to tenant `{own}`", playbook.id),
            ));
        }
        (Some(own), _) => own.clone(),
        (None, Some(asked)) => state.tenant(&caller, &asked).await?.id,
        (None, None) => {
            return Err(ApiError::invalid(
                "tenant_id",
                "a shared playbook runs for the tenant named here",
            ));
        }
    };
    let run_id = state
        .plane()
        .start_run(&playbook.id, Some(tenant.clone()))
        .await?;
    state
        .audit(
            &caller,
            Some(&tenant),
            "run.start",
            json!({ "run": run_id, "playbook": playbook.id }),
        )
        .await?;
    let run = state.run(&caller, &run_id).await?;
    Ok((StatusCode::CREATED, axum::Json(run)))
}

/// A schedule to create.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateSchedule {
    /// The playbook it fires.
    pub playbook_id: PlaybookId,
    /// For a shared playbook: the tenant it fires for.
    #[serde(default)]
    pub tenant_id: Option<TenantId>,
    /// When it fires; errors name the field (`spec.cron`).
    #[schema(value_type = steward_control::schedule::ScheduleSpec)]
    pub spec: Value,
}

/// Filter by playbook.
#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
pub struct ScheduleFilter {
    /// Only this playbook's.
    pub playbook: Option<PlaybookId>,
}

/// Schedules the caller sees.
#[utoipa::path(get, path = "/api/v1/schedules", tag = "schedules", params(ScheduleFilter),
    responses((status = 200, body = Vec<Schedule>)))]
pub(crate) async fn list_schedules(
    State(state): State<ApiState>,
    caller: Caller,
    Query(filter): Query<ScheduleFilter>,
) -> ApiResult<axum::Json<Vec<Schedule>>> {
    Ok(axum::Json(
        state
            .store()
            .list_schedules(&caller.scope, filter.playbook.as_ref())
            .await?,
    ))
}

/// Schedules a playbook (technician).
#[utoipa::path(post, path = "/api/v1/schedules", tag = "schedules", request_body = CreateSchedule,
    responses((status = 201, body = Schedule), (status = 404, body = Problem), (status = 422, body = Problem)))]
async fn create_schedule(
    State(state): State<ApiState>,
    caller: Caller,
    Json(body): Json<CreateSchedule>,
) -> ApiResult<(StatusCode, axum::Json<Schedule>)> {
    caller.require(Role::Technician)?;
    let playbook = state.playbook(&caller, &body.playbook_id).await?;
    if let Some(t) = &body.tenant_id {
        state.tenant(&caller, t).await?;
    }
    let schedule = state
        .plane()
        .create_schedule(&playbook.id, body.tenant_id, body.spec)
        .await?;
    let tenant = schedule.tenant_id.clone().or(playbook.tenant_id);
    state
        .audit(
            &caller,
            tenant.as_ref(),
            "schedule.create",
            json!({ "schedule": schedule.id, "playbook": playbook.id, "spec": schedule.spec }),
        )
        .await?;
    Ok((StatusCode::CREATED, axum::Json(schedule)))
}

/// A change to a schedule.
#[derive(Debug, Deserialize, Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UpdateSchedule {
    /// Whether it fires.
    pub enabled: bool,
}

/// Turns a schedule on or off (technician).
#[utoipa::path(patch, path = "/api/v1/schedules/{id}", tag = "schedules",
    params(("id" = String, Path, description = "Schedule id")), request_body = UpdateSchedule,
    responses((status = 200, body = Schedule), (status = 404, body = Problem)))]
async fn update_schedule(
    State(state): State<ApiState>,
    caller: Caller,
    Path(id): Path<String>,
    Json(body): Json<UpdateSchedule>,
) -> ApiResult<axum::Json<Schedule>> {
    caller.require(Role::Technician)?;
    let id = ScheduleId::from(id);
    let not_found = || ApiError::not_found("schedule", id.as_str());
    let schedule = state.store().schedule(&id).await?.ok_or_else(not_found)?;
    let playbook = state.store().playbook(&schedule.playbook_id).await?;
    let tenant = schedule
        .tenant_id
        .clone()
        .or_else(|| playbook.and_then(|p| p.tenant_id));
    if !caller.sees(tenant.as_ref()) {
        return Err(not_found());
    }
    state
        .store()
        .set_schedule_enabled(&id, body.enabled, steward_store::Timestamp::now())
        .await?;
    state
        .audit(
            &caller,
            tenant.as_ref(),
            "schedule.update",
            json!({ "schedule": id, "enabled": body.enabled }),
        )
        .await?;
    let schedule = state.store().schedule(&id).await?.ok_or_else(not_found)?;
    Ok(axum::Json(schedule))
}
