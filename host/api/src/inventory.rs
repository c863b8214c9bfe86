//! Tenants, sites and devices (with the CSV import of admin fields).

use std::collections::HashMap;

use axum::extract::State;
use axum::http::StatusCode;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::ApiState;
use super::auth::Caller;
use super::body::{Csv, Json, Path, Query};
use super::problem::{ApiError, ApiResult, Problem};
use steward_store::{
    Device, DeviceId, NewDevice, NewTenant, Role, Site, SiteId, Tenant, TenantId, Tier, Timestamp,
};

pub(super) fn routes() -> OpenApiRouter<ApiState> {
    OpenApiRouter::new()
        .routes(routes!(list_tenants, create_tenant))
        .routes(routes!(get_tenant))
        .routes(routes!(list_sites, create_site))
        .routes(routes!(list_devices, create_device))
        .routes(routes!(get_device))
        .routes(routes!(import_devices))
}

/// A tenant to create.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateTenant {
    /// Unique name.
    pub name: String,
    /// Priority tier.
    pub tier: Tier,
    /// At most this many of its jobs at once.
    #[serde(default)]
    pub max_concurrent_jobs: Option<u32>,
}

/// Filter by tenant.
#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
pub struct TenantFilter {
    /// Only this tenant's.
    pub tenant: Option<TenantId>,
}

/// Tenants the caller sees.
#[utoipa::path(get, path = "/api/v1/tenants", tag = "tenants",
    responses((status = 200, body = Vec<Tenant>), (status = 401, body = Problem)))]
pub(crate) async fn list_tenants(
    State(state): State<ApiState>,
    caller: Caller,
) -> ApiResult<axum::Json<Vec<Tenant>>> {
    let tenants = state.store().tenants().await?;
    Ok(axum::Json(
        tenants
            .into_iter()
            .filter(|t| caller.sees(Some(&t.id)))
            .collect(),
    ))
}

/// Creates a tenant (admin, every tenant).
#[utoipa::path(post, path = "/api/v1/tenants", tag = "tenants", request_body = CreateTenant,
    responses((status = 201, body = Tenant), (status = 409, body = Problem), (status = 422, body = Problem)))]
async fn create_tenant(
    State(state): State<ApiState>,
    caller: Caller,
    Json(body): Json<CreateTenant>,
) -> ApiResult<(StatusCode, axum::Json<Tenant>)> {
    caller.require(Role::Admin)?;
    caller.require_all_tenants()?;
    let tenant = state
        .store()
        .create_tenant(
            &NewTenant {
                name: body.name,
                tier: body.tier,
                max_concurrent_jobs: body.max_concurrent_jobs,
            },
            Timestamp::now(),
        )
        .await?;
    state
        .audit(
            &caller,
            Some(&tenant.id),
            "tenant.create",
            json!({ "name": tenant.name }),
        )
        .await?;
    Ok((StatusCode::CREATED, axum::Json(tenant)))
}

/// One tenant.
#[utoipa::path(get, path = "/api/v1/tenants/{id}", tag = "tenants",
    params(("id" = String, Path, description = "Tenant id")),
    responses((status = 200, body = Tenant), (status = 404, body = Problem)))]
async fn get_tenant(
    State(state): State<ApiState>,
    caller: Caller,
    Path(id): Path<String>,
) -> ApiResult<axum::Json<Tenant>> {
    Ok(axum::Json(
        state.tenant(&caller, &TenantId::from(id)).await?,
    ))
}

/// A site to create.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateSite {
    /// The tenant.
    pub tenant_id: TenantId,
    /// Unique within the tenant.
    pub name: String,
}

/// Sites the caller sees.
#[utoipa::path(get, path = "/api/v1/sites", tag = "sites", params(TenantFilter),
    responses((status = 200, body = Vec<Site>)))]
pub(crate) async fn list_sites(
    State(state): State<ApiState>,
    caller: Caller,
    Query(filter): Query<TenantFilter>,
) -> ApiResult<axum::Json<Vec<Site>>> {
    Ok(axum::Json(
        state
            .store()
            .sites(&caller.scope, filter.tenant.as_ref())
            .await?,
    ))
}

/// Creates a site (technician).
#[utoipa::path(post, path = "/api/v1/sites", tag = "sites", request_body = CreateSite,
    responses((status = 201, body = Site), (status = 404, body = Problem), (status = 409, body = Problem)))]
async fn create_site(
    State(state): State<ApiState>,
    caller: Caller,
    Json(body): Json<CreateSite>,
) -> ApiResult<(StatusCode, axum::Json<Site>)> {
    caller.require(Role::Technician)?;
    state.tenant(&caller, &body.tenant_id).await?;
    let site = state
        .store()
        .create_site(&body.tenant_id, &body.name, Timestamp::now())
        .await?;
    state
        .audit(
            &caller,
            Some(&site.tenant_id),
            "site.create",
            json!({ "site": site.id, "name": site.name }),
        )
        .await?;
    Ok((StatusCode::CREATED, axum::Json(site)))
}

/// A device to create.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateDevice {
    /// The tenant.
    pub tenant_id: TenantId,
    /// Its site.
    #[serde(default)]
    pub site_id: Option<SiteId>,
    /// Unique within the tenant.
    pub name: String,
    /// Tags for playbook targets.
    #[serde(default)]
    pub tags: Vec<String>,
    /// How the server reaches it: `{"provider": "local"}` for the machine
    /// the server runs on, `{"provider": "simulated", "fixture": {…}}` for
    /// a simulated device.
    #[serde(default = "empty_object")]
    #[schema(value_type = Object)]
    pub facts: Value,
    /// Admin fields: `purchase-date`, `warranty-end`, `cost-cents`,
    /// `class`, `assigned-user`.
    #[serde(default = "empty_object")]
    #[schema(value_type = DeviceAdmin)]
    pub admin: Value,
}

/// The admin fields of a device as the API documents them; the runtime's
/// `AdminRecord` reads and checks them (`check_admin_fields`).
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
#[allow(dead_code)] // Only its schema is used.
pub struct DeviceAdmin {
    /// When it was bought.
    #[schema(value_type = Option<String>, format = Date)]
    purchase_date: Option<String>,
    /// When its warranty ends.
    #[schema(value_type = Option<String>, format = Date)]
    warranty_end: Option<String>,
    /// Replacement cost in cents.
    cost_cents: Option<u64>,
    /// `laptop`, `desktop`, `server` or `other`.
    #[schema(pattern = "^(laptop|desktop|server|other)$")]
    class: Option<String>,
    /// Who uses it.
    assigned_user: Option<String>,
}

fn empty_object() -> Value {
    json!({})
}

/// Devices the caller sees.
#[utoipa::path(get, path = "/api/v1/devices", tag = "devices", params(TenantFilter),
    responses((status = 200, body = Vec<Device>)))]
async fn list_devices(
    State(state): State<ApiState>,
    caller: Caller,
    Query(filter): Query<TenantFilter>,
) -> ApiResult<axum::Json<Vec<Device>>> {
    Ok(axum::Json(
        state
            .store()
            .list_devices(&caller.scope, filter.tenant.as_ref())
            .await?,
    ))
}

/// Adds a device (technician).
#[utoipa::path(post, path = "/api/v1/devices", tag = "devices", request_body = CreateDevice,
    responses((status = 201, body = Device), (status = 404, body = Problem), (status = 409, body = Problem), (status = 422, body = Problem)))]
async fn create_device(
    State(state): State<ApiState>,
    caller: Caller,
    Json(body): Json<CreateDevice>,
) -> ApiResult<(StatusCode, axum::Json<Device>)> {
    caller.require(Role::Technician)?;
    state.tenant(&caller, &body.tenant_id).await?;
    crate::check_tags(&body.tags)?;
    check_local_provider(&body.facts)?;
    check_admin_fields(&body.admin)?;
    let device = state
        .store()
        .create_device(
            &NewDevice {
                tenant_id: body.tenant_id,
                site_id: body.site_id,
                name: body.name,
                tags: body.tags,
                facts: body.facts,
                admin: body.admin,
            },
            Timestamp::now(),
        )
        .await?;
    state
        .audit(
            &caller,
            Some(&device.tenant_id),
            "device.create",
            json!({ "device": device.id, "name": device.name }),
        )
        .await?;
    Ok((StatusCode::CREATED, axum::Json(device)))
}

/// A device with `facts.provider = "local"` is the Steward server's own
/// machine: running remediation on it changes the server. Only the
/// server's configuration (`[this-machine]`) registers it; no API caller,
/// an owner included, may create one.
fn check_local_provider(facts: &Value) -> ApiResult<()> {
    let provider = facts.get("provider").and_then(Value::as_str).unwrap_or("");
    if provider.trim().eq_ignore_ascii_case("local") {
        return Err(ApiError::forbidden(
            "`facts.provider = \"local\"` makes the device the Steward server's own machine; \
             only the server's configuration (`[this-machine]`) registers it",
        )
        .with_field("facts.provider"));
    }
    Ok(())
}

/// Admin fields must read as a device record's (dates, a class, …).
fn check_admin_fields(admin: &Value) -> ApiResult<()> {
    let mut admin = admin.clone();
    super::body::whole_floats_as_integers(&mut admin);
    serde_json::from_value::<steward_runtime::capability::inventory::AdminRecord>(admin)
        .map(drop)
        .map_err(|e| ApiError::invalid("admin", format!("invalid `admin`: {e}")))
}

/// One device.
#[utoipa::path(get, path = "/api/v1/devices/{id}", tag = "devices",
    params(("id" = String, Path, description = "Device id")),
    responses((status = 200, body = Device), (status = 404, body = Problem)))]
pub(crate) async fn get_device(
    State(state): State<ApiState>,
    caller: Caller,
    Path(id): Path<String>,
) -> ApiResult<axum::Json<Device>> {
    Ok(axum::Json(
        state.device(&caller, &DeviceId::from(id)).await?,
    ))
}

/// Which tenant an import is for.
#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
pub struct ImportTarget {
    /// The tenant whose devices the rows name.
    pub tenant: TenantId,
}

/// What an import did.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct ImportReport {
    /// Devices created.
    pub created: u32,
    /// Devices whose admin fields were replaced.
    pub updated: u32,
}

/// Imports admin fields from CSV (technician). The header names the
/// columns: `name` (required), `purchase-date`, `warranty-end` (YYYY-MM-DD),
/// `cost` (a decimal amount), `class` (`laptop`, `desktop`, `server`,
/// `other`), `assigned-user`. A row naming a device the tenant does not
/// have creates it; a device may be named once. Every row is checked
/// before anything is stored, and the rows are stored in one transaction;
/// an error names the row and column and stores nothing.
#[utoipa::path(post, path = "/api/v1/devices/import", tag = "devices", params(ImportTarget),
    request_body(content = String, content_type = "text/csv"),
    responses((status = 200, body = ImportReport), (status = 422, body = Problem)))]
async fn import_devices(
    State(state): State<ApiState>,
    caller: Caller,
    Query(target): Query<ImportTarget>,
    Csv(text): Csv,
) -> ApiResult<axum::Json<ImportReport>> {
    caller.require(Role::Technician)?;
    state.tenant(&caller, &target.tenant).await?;
    let rows = parse_csv(&text)?;
    let (created, updated) = state
        .store()
        .import_device_admin(&target.tenant, &rows, Timestamp::now())
        .await?;
    let report = ImportReport { created, updated };
    state
        .audit(
            &caller,
            Some(&target.tenant),
            "device.import",
            json!({ "created": report.created, "updated": report.updated }),
        )
        .await?;
    Ok(axum::Json(report))
}

/// The CSV's rows as (device name, admin fields), all checked.
fn parse_csv(text: &str) -> ApiResult<Vec<(String, Value)>> {
    let mut reader = csv::ReaderBuilder::new()
        .trim(csv::Trim::All)
        .from_reader(text.as_bytes());
    let headers = reader
        .headers()
        .map_err(|e| ApiError::invalid("body", format!("unreadable CSV header: {e}")))?
        .clone();
    const KNOWN: [&str; 6] = [
        "name",
        "purchase-date",
        "warranty-end",
        "cost",
        "class",
        "assigned-user",
    ];
    for h in &headers {
        if !KNOWN.contains(&h) {
            return Err(ApiError::invalid(
                h.to_owned(),
                format!("unknown column `{h}`; the columns are {}", KNOWN.join(", ")),
            ));
        }
    }
    if !headers.iter().any(|h| h == "name") {
        return Err(ApiError::invalid("name", "the CSV needs a `name` column"));
    }
    let mut rows = Vec::new();
    let mut lines: HashMap<String, usize> = HashMap::new();
    for (i, record) in reader.records().enumerate() {
        let line = i + 2;
        let record = record
            .map_err(|e| ApiError::invalid(format!("row {line}"), format!("row {line}: {e}")))?;
        let mut name = String::new();
        let mut admin = serde_json::Map::new();
        for (column, value) in headers.iter().zip(record.iter()) {
            if value.is_empty() {
                continue;
            }
            let field = || format!("row {line}.{column}");
            match column {
                "name" => name = value.to_owned(),
                "cost" => {
                    let cents = parse_cost(value).ok_or_else(|| {
                        ApiError::invalid(
                            field(),
                            format!("row {line}: `{value}` is not an amount like 1299.00"),
                        )
                    })?;
                    admin.insert("cost-cents".into(), json!(cents));
                }
                other => {
                    admin.insert(other.into(), json!(value));
                }
            }
        }
        if name.is_empty() {
            return Err(ApiError::invalid(
                format!("row {line}.name"),
                format!("row {line}: `name` is empty"),
            ));
        }
        if let Some(first) = lines.insert(name.clone(), line) {
            return Err(ApiError::invalid(
                format!("row {line}.name"),
                format!("row {line}: device `{name}` is on row {first} already"),
            ));
        }
        let admin = Value::Object(admin);
        check_admin_fields(&admin).map_err(|_| {
            let detail = serde_json::from_value::<
                steward_runtime::capability::inventory::AdminRecord,
            >(admin.clone())
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
            ApiError::invalid(format!("row {line}"), format!("row {line}: {detail}"))
        })?;
        rows.push((name, admin));
    }
    Ok(rows)
}

/// `1299`, `1299.5` or `1299.50` as cents.
fn parse_cost(text: &str) -> Option<u64> {
    let (whole, frac) = text.split_once('.').unwrap_or((text, ""));
    if whole.is_empty()
        || frac.len() > 2
        || !whole.bytes().all(|b| b.is_ascii_digit())
        || !frac.bytes().all(|b| b.is_ascii_digit())
    {
        return None;
    }
    let whole: u64 = whole.parse().ok()?;
    let frac: u64 = if frac.is_empty() {
        0
    } else {
        format!("{frac:0<2}").parse().ok()?
    };
    whole.checked_mul(100)?.checked_add(frac)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn costs_parse_to_cents() {
        assert_eq!(parse_cost("1299"), Some(129_900));
        assert_eq!(parse_cost("1299.5"), Some(129_950));
        assert_eq!(parse_cost("0.07"), Some(7));
        assert_eq!(parse_cost("12.345"), None);
        assert_eq!(parse_cost("-1"), None);
        assert_eq!(parse_cost("abc"), None);
    }

    #[test]
    fn csv_rows_are_checked_before_use() {
        let rows = parse_csv(
            "name,purchase-date,warranty-end,cost,class,assigned-user\n\
             pc-1,2021-03-01,2024-03-01,1299.00,laptop,jdoe\npc-2,,,,,\n",
        )
        .unwrap();
        assert_eq!(rows.len(), 2);
        assert_eq!(
            rows[0].1,
            json!({"purchase-date": "2021-03-01", "warranty-end": "2024-03-01",
                   "cost-cents": 129_900, "class": "laptop", "assigned-user": "jdoe"})
        );
        assert_eq!(rows[1].1, json!({}));
        let bad_date = parse_csv("name,purchase-date\npc-1,2021-13-01\n").unwrap_err();
        assert_eq!(bad_date.status(), StatusCode::UNPROCESSABLE_ENTITY);
        let bad_column = parse_csv("name,colour\npc-1,red\n").unwrap_err();
        assert_eq!(bad_column.status(), StatusCode::UNPROCESSABLE_ENTITY);
        let bad_class = parse_csv("name,class\npc-1,tablet\n").unwrap_err();
        assert_eq!(bad_class.status(), StatusCode::UNPROCESSABLE_ENTITY);
    }
}
