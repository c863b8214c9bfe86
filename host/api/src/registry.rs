//! Installing plugins from the module registry, upgrading them, and the
//! keys trusted to sign each namespace's modules.

use axum::extract::State;
use axum::http::StatusCode;
use serde::Deserialize;
use serde_json::json;
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::ApiState;
use super::auth::Caller;
use super::body::{Json, Path, Query};
use super::problem::{ApiError, ApiResult, Problem};
use steward_control::registry::{ModuleRef, Offer, RegistryError, Upgrade};
use steward_registry::client::VerifyError;
use steward_store::{PluginVersion, Role, Timestamp, TrustHow, TrustedKey};

pub(super) fn routes() -> OpenApiRouter<ApiState> {
    OpenApiRouter::new()
        .routes(routes!(offer))
        .routes(routes!(install))
        .routes(routes!(upgrade))
        .routes(routes!(list_trust, add_trust))
        .routes(routes!(remove_trust))
}

impl From<RegistryError> for ApiError {
    /// Policy refusals (untrusted or unsigned, capabilities not granted or
    /// not the component's imports, a component that does not load) are
    /// the caller's to fix: 4xx naming the field. Integrity failures (bytes
    /// or signature that do not check, an answer for another module) and
    /// an unreachable or failing registry are the upstream's: 502. Our own
    /// disk and database failures are 500.
    fn from(e: RegistryError) -> Self {
        use steward_registry::client::ClientError;
        let e = match e {
            RegistryError::Store(store) => return store.into(),
            other => other,
        };
        let code = e.code();
        let status = |status| ApiError::new(status, code, e.to_string());
        let unprocessable = |field: &str| {
            ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, code, e.to_string()).with_field(field)
        };
        match &e {
            RegistryError::Invalid { field, message } => ApiError::invalid(*field, message.clone()),
            RegistryError::GrantsRequired { .. } | RegistryError::ApprovalRequired { .. } => {
                unprocessable("grants")
            }
            RegistryError::NotInstalled(_) => status(StatusCode::NOT_FOUND),
            RegistryError::NotFromRegistry(_) | RegistryError::NotConfigured => {
                status(StatusCode::CONFLICT)
            }
            RegistryError::Registry(ClientError::Api { status: s, .. }) => match *s {
                404 => status(StatusCode::NOT_FOUND).with_field("module"),
                400 | 422 => unprocessable("module"),
                _ => status(StatusCode::BAD_GATEWAY),
            },
            RegistryError::Registry(_)
            | RegistryError::WrongAnswer { .. }
            | RegistryError::Verify(
                VerifyError::DigestMismatch { .. }
                | VerifyError::ManifestMismatch { .. }
                | VerifyError::BadSignature { .. },
            ) => status(StatusCode::BAD_GATEWAY),
            RegistryError::Verify(VerifyError::Unsigned | VerifyError::UntrustedKey { .. })
            | RegistryError::Imports(_) => unprocessable("module"),
            RegistryError::Install(inner) if inner.is_internal() => ApiError::internal(inner),
            RegistryError::Install(_) | RegistryError::Component(_) => unprocessable("module"),
            RegistryError::OfferChanged { .. } => status(StatusCode::CONFLICT).with_field("digest"),
            RegistryError::Store(_) => unreachable!("store errors are mapped above"),
        }
    }
}

fn module_ref(text: &str) -> ApiResult<ModuleRef> {
    text.parse()
        .map_err(|e: String| ApiError::invalid("module", e))
}

/// The module to look at.
#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub(crate) struct OfferQuery {
    /// `namespace/name@requirement`, for example `acme/patching@^1.2`.
    pub(crate) module: String,
}

/// What installing a registry module would do: the version and digest
/// the requirement resolves to, its signer and whether it is trusted, and
/// the capabilities it requests (admin).
#[utoipa::path(get, path = "/api/v1/registry/offer", tag = "registry", params(OfferQuery),
    responses((status = 200, body = Offer), (status = 404, body = Problem), (status = 409, body = Problem), (status = 502, body = Problem)))]
pub(crate) async fn offer(
    State(state): State<ApiState>,
    caller: Caller,
    Query(query): Query<OfferQuery>,
) -> ApiResult<axum::Json<Offer>> {
    caller.require(Role::Admin)?;
    let module = module_ref(&query.module)?;
    Ok(axum::Json(
        state.registry()?.offer(state.store(), &module).await?,
    ))
}

/// A registry module to install.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct InstallFromRegistry {
    /// `namespace/name@requirement`, for example `acme/patching@^1.2`.
    pub module: String,
    /// Capabilities to grant; every capability the module requests must be
    /// granted (see `GET /api/v1/registry/offer`).
    #[serde(default)]
    pub grants: Vec<String>,
    /// The digest of the offer that was approved: refused if the module now
    /// resolves to other bytes.
    #[serde(default)]
    pub digest: Option<String>,
}

/// Installs a module from the registry (admin, every tenant): resolved,
/// downloaded, its digest and signature verified against the keys trusted
/// for its namespace, installed only when every capability it requests is
/// granted. Nothing is stored when a check fails.
#[utoipa::path(post, path = "/api/v1/plugins/from-registry", tag = "registry", request_body = InstallFromRegistry,
    responses((status = 201, body = PluginVersion), (status = 404, body = Problem), (status = 409, body = Problem),
        (status = 422, body = Problem), (status = 502, body = Problem)))]
async fn install(
    State(state): State<ApiState>,
    caller: Caller,
    Json(body): Json<InstallFromRegistry>,
) -> ApiResult<(StatusCode, axum::Json<PluginVersion>)> {
    caller.require(Role::Admin)?;
    caller.require_all_tenants()?;
    let module = module_ref(&body.module)?;
    let registry = state.registry()?;
    let result = registry
        .install(
            state.store(),
            state.plane().library(),
            &module,
            &body.grants,
            body.digest.as_deref(),
        )
        .await;
    let (installed, first_use) = match result {
        Ok(done) => done,
        Err(e) => {
            // Refusals are security events too: who tried to install what,
            // and why it was refused.
            let detail = json!({
                "module": module.to_string(), "grants": body.grants,
                "code": e.code(), "reason": e.to_string(),
            });
            state
                .audit_outcome(
                    &caller,
                    None,
                    "plugin.install-from-registry",
                    detail,
                    "refused",
                )
                .await?;
            return Err(e.into());
        }
    };
    if let Some(key) = &first_use {
        state
            .audit(
                &caller,
                None,
                "registry.trust",
                json!({ "namespace": key.namespace, "key-id": key.key_id, "how": "first-use" }),
            )
            .await?;
    }
    state
        .audit(
            &caller,
            None,
            "plugin.install-from-registry",
            json!({
                "module": module.to_string(), "plugin": installed.plugin,
                "version": installed.version, "digest": installed.digest,
                "grants": installed.grants,
                "signed-by": installed.source.as_ref().and_then(|s| s.signed_by.clone()),
            }),
        )
        .await?;
    Ok((StatusCode::CREATED, axum::Json(installed)))
}

/// How to upgrade.
#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UpgradePlugin {
    /// A new requirement (`^2`); absent: the one it was installed with.
    #[serde(default)]
    pub requirement: Option<String>,
    /// Grants for the new version; absent: keep the current grants, which
    /// is allowed when the new version requests nothing more and the
    /// server's upgrade policy is `automatic`.
    #[serde(default)]
    pub grants: Option<Vec<String>>,
}

/// Upgrades a plugin installed from the registry to the highest version
/// its requirement resolves to (admin, every tenant). A version that
/// requests capabilities not granted needs `grants`; runs already created
/// keep the version they were pinned to.
#[utoipa::path(post, path = "/api/v1/plugins/{name}/upgrade", tag = "registry",
    params(("name" = String, Path, description = "Plugin name")),
    request_body = UpgradePlugin,
    responses((status = 200, body = Upgrade), (status = 409, body = Problem), (status = 422, body = Problem), (status = 502, body = Problem)))]
pub(crate) async fn upgrade(
    State(state): State<ApiState>,
    caller: Caller,
    Path(name): Path<String>,
    Json(body): Json<UpgradePlugin>,
) -> ApiResult<axum::Json<Upgrade>> {
    caller.require(Role::Admin)?;
    caller.require_all_tenants()?;
    let done = state
        .registry()?
        .upgrade(
            state.store(),
            state.plane().library(),
            &name,
            body.requirement.as_deref(),
            body.grants.as_deref(),
        )
        .await?;
    if done.changed {
        state
            .audit(
                &caller,
                None,
                "plugin.upgrade",
                json!({
                    "plugin": name, "from": done.from.version, "to": done.to.version,
                    "digest": done.to.digest, "grants": done.to.grants,
                }),
            )
            .await?;
    }
    Ok(axum::Json(done))
}

/// Keys trusted to sign registry modules, by namespace (admin).
#[utoipa::path(get, path = "/api/v1/registry/trust", tag = "registry",
    responses((status = 200, body = Vec<TrustedKey>)))]
async fn list_trust(
    State(state): State<ApiState>,
    caller: Caller,
) -> ApiResult<axum::Json<Vec<TrustedKey>>> {
    caller.require(Role::Admin)?;
    Ok(axum::Json(state.store().trusted_keys(None).await?))
}

/// A key to trust.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct TrustKey {
    /// The registry namespace (`acme`).
    pub namespace: String,
    /// The ed25519 public key, base64 (as `steward plugin keygen` prints).
    pub public_key: String,
}

/// Trusts a key to sign a namespace's modules (admin, every tenant).
#[utoipa::path(post, path = "/api/v1/registry/trust", tag = "registry", request_body = TrustKey,
    responses((status = 201, body = TrustedKey), (status = 422, body = Problem)))]
async fn add_trust(
    State(state): State<ApiState>,
    caller: Caller,
    Json(body): Json<TrustKey>,
) -> ApiResult<(StatusCode, axum::Json<TrustedKey>)> {
    caller.require(Role::Admin)?;
    caller.require_all_tenants()?;
    steward_contract::manifest::check_name_part("namespace", &body.namespace)
        .map_err(|e| ApiError::invalid("namespace", e))?;
    let key_id = steward_contract::signing::key_id_of(body.public_key.trim())
        .map_err(|e| ApiError::invalid("public_key", e.to_string()))?;
    let key = TrustedKey {
        namespace: body.namespace,
        key_id,
        public_key: body.public_key.trim().to_owned(),
        how: TrustHow::Explicit,
        trusted_at: Timestamp::now(),
    };
    state.store().trust_key(&key).await?;
    state
        .audit(
            &caller,
            None,
            "registry.trust",
            json!({ "namespace": key.namespace, "key-id": key.key_id }),
        )
        .await?;
    Ok((StatusCode::CREATED, axum::Json(key)))
}

/// Stops trusting a key (admin, every tenant). Installed versions it
/// signed stay installed.
#[utoipa::path(delete, path = "/api/v1/registry/trust/{namespace}/{key_id}", tag = "registry",
    params(("namespace" = String, Path, description = "Namespace"), ("key_id" = String, Path, description = "Key id")),
    responses((status = 204), (status = 404, body = Problem)))]
async fn remove_trust(
    State(state): State<ApiState>,
    caller: Caller,
    Path((namespace, key_id)): Path<(String, String)>,
) -> ApiResult<StatusCode> {
    caller.require(Role::Admin)?;
    caller.require_all_tenants()?;
    if !state
        .store()
        .untrust_key(&namespace, &key_id, Timestamp::now())
        .await?
    {
        return Err(ApiError::not_found(
            "trusted key",
            &format!("{namespace} {key_id}"),
        ));
    }
    state
        .audit(
            &caller,
            None,
            "registry.untrust",
            json!({ "namespace": namespace, "key-id": key_id }),
        )
        .await?;
    Ok(StatusCode::NO_CONTENT)
}
