//! The web API: REST under `/api/v1`, authenticated by API tokens, with an
//! OpenAPI 3 document generated from the handlers.
//!
//! Every route is declared with `#[utoipa::path]` and registered through
//! `utoipa_axum::routes!`, so the router and the document are built from
//! the same list and cannot drift apart (a test checks both ways).
//!
//! Each handler takes a [`Caller`](auth::Caller) and checks its role and
//! tenants before touching the store; an object of a tenant the caller does
//! not see is a 404, exactly like an object that does not exist.

mod agents;
pub mod auth;
pub mod body;
mod console;
mod document;
pub(crate) mod inventory;
pub mod listen;
mod ops;
pub(crate) mod people;
pub(crate) mod playbooks;
pub mod problem;
pub(crate) mod registry;
pub(crate) mod report;
pub(crate) mod runs;

use std::sync::Arc;

use axum::Router;
use axum::http::StatusCode;
use serde::{Deserialize, Serialize};
use utoipa::openapi::OpenApi;
use utoipa::openapi::security::{Http, HttpAuthScheme, SecurityScheme};
use utoipa_axum::router::OpenApiRouter;

use steward_control::agents::AgentHub;
use steward_control::alerts::Webhook;
use steward_control::executor::Alerts;
use steward_control::plane::ControlPlane;
use steward_control::registry::Registry;
use steward_store::{
    AuditEvent, DeviceId, JobId, Playbook, PlaybookId, Run, RunId, Store, TenantId, Timestamp,
};

use auth::{Caller, TokenCache};
use problem::{ApiError, ApiResult};

/// What every handler shares. Cheap to clone.
#[derive(Clone)]
pub struct ApiState {
    inner: Arc<Inner>,
}

struct Inner {
    plane: ControlPlane,
    tokens: TokenCache,
    /// Console sessions recently looked up.
    sessions: console::SessionCache,
    /// Whether console cookies are marked Secure (the server speaks TLS).
    secure_cookies: bool,
    run_pages: runs::PageCache,
    run_details: runs::RunCache,
    /// Tenants' months so far, for the console's charts.
    trends: report::TrendCache,
    /// Alert delivery, told when webhooks change; `None` when the server
    /// does not alert.
    alerts: Option<Arc<Alerts>>,
    /// Webhooks from the configuration file (kept beside stored ones).
    configured_webhooks: Vec<Webhook>,
    /// The module registry plugins are installed from, if configured.
    registry: Option<Arc<Registry>>,
    /// The agents connected to this process.
    agents: Arc<AgentHub>,
    /// This process's worker id: the devices whose agents connect here are
    /// its executor's to run.
    holder: String,
    /// The listener's connection counts, for `/metrics`.
    connections: Arc<listen::ConnectionStats>,
    /// Whether webhooks added through the API may reach loopback,
    /// link-local and metadata addresses.
    local_webhooks: bool,
}

impl ApiState {
    /// State over a control plane; `alerts`' dispatcher learns of webhooks added
    /// through the API.
    pub fn new(
        plane: ControlPlane,
        alerts: Option<Arc<Alerts>>,
        configured_webhooks: Vec<Webhook>,
    ) -> Self {
        Self {
            inner: Arc::new(Inner {
                plane,
                tokens: TokenCache::default(),
                sessions: console::SessionCache::default(),
                secure_cookies: false,
                run_pages: runs::PageCache::default(),
                run_details: runs::RunCache::default(),
                trends: report::TrendCache::default(),
                alerts,
                configured_webhooks,
                registry: None,
                agents: AgentHub::new(),
                holder: "api".into(),
                connections: Arc::default(),
                local_webhooks: false,
            }),
        }
    }

    /// The same state, installing plugins from `registry`. Call before the
    /// state is shared.
    ///
    /// # Panics
    ///
    /// When the state was cloned already.
    pub fn with_registry(mut self, registry: Arc<Registry>) -> Self {
        Arc::get_mut(&mut self.inner)
            .expect("with_registry before the state is shared")
            .registry = Some(registry);
        self
    }

    /// The same state, serving agents through `hub` (the hub the
    /// executor's providers call through) on behalf of the executor whose
    /// worker id is `worker_id`. Call before the state is shared.
    ///
    /// # Panics
    ///
    /// When the state was cloned already.
    pub fn with_agents(mut self, hub: Arc<AgentHub>, worker_id: String) -> Self {
        let inner = Arc::get_mut(&mut self.inner).expect("with_agents before the state is shared");
        inner.agents = hub;
        inner.holder = worker_id;
        self
    }

    /// The same state, letting webhooks added through the API reach
    /// loopback, link-local and metadata addresses (the configuration's
    /// `allow-local-webhooks`). Call before the state is shared.
    ///
    /// # Panics
    ///
    /// When the state was cloned already.
    pub fn with_local_webhooks(mut self, allow: bool) -> Self {
        Arc::get_mut(&mut self.inner)
            .expect("with_local_webhooks before the state is shared")
            .local_webhooks = allow;
        self
    }

    /// The same state, marking the console's cookies Secure (for a server
    /// that speaks TLS). Call before the state is shared.
    ///
    /// # Panics
    ///
    /// When the state was cloned already.
    pub fn with_secure_cookies(mut self, secure: bool) -> Self {
        Arc::get_mut(&mut self.inner)
            .expect("with_secure_cookies before the state is shared")
            .secure_cookies = secure;
        self
    }

    /// The listener's connection counts.
    pub fn connections(&self) -> &Arc<listen::ConnectionStats> {
        &self.inner.connections
    }

    /// This process's worker id, recorded as the holder of the agents
    /// connected here.
    pub(crate) fn holder(&self) -> &str {
        &self.inner.holder
    }

    /// The agents connected to this process.
    pub fn agents(&self) -> &Arc<AgentHub> {
        &self.inner.agents
    }

    /// The module registry, or the error saying none is configured.
    pub(crate) fn registry(&self) -> ApiResult<&Registry> {
        self.inner
            .registry
            .as_deref()
            .ok_or_else(|| steward_control::registry::RegistryError::NotConfigured.into())
    }

    fn store(&self) -> &Store {
        self.inner.plane.store()
    }

    fn plane(&self) -> &ControlPlane {
        &self.inner.plane
    }

    /// Records a mutating call.
    async fn audit(
        &self,
        caller: &Caller,
        tenant: Option<&TenantId>,
        action: &str,
        detail: serde_json::Value,
    ) -> ApiResult<()> {
        self.audit_outcome(caller, tenant, action, detail, "ok")
            .await
    }

    /// Records a call with its outcome (`ok`, `refused`).
    async fn audit_outcome(
        &self,
        caller: &Caller,
        tenant: Option<&TenantId>,
        action: &str,
        detail: serde_json::Value,
        outcome: &str,
    ) -> ApiResult<()> {
        self.store()
            .append_audit(&[audit_event(caller, tenant, action, detail, outcome)])
            .await?;
        Ok(())
    }

    /// The tenant, if the caller sees it; else 404.
    async fn tenant(&self, caller: &Caller, id: &TenantId) -> ApiResult<steward_store::Tenant> {
        self.store()
            .tenant(id)
            .await?
            .filter(|t| caller.sees(Some(&t.id)))
            .ok_or_else(|| ApiError::not_found("tenant", id.as_str()))
    }

    /// The run, if the caller sees it; else 404.
    async fn run(&self, caller: &Caller, id: &RunId) -> ApiResult<Run> {
        self.store()
            .run(id)
            .await?
            .filter(|r| caller.sees(r.tenant_id.as_ref()))
            .ok_or_else(|| ApiError::not_found("run", id.as_str()))
    }

    /// The playbook, if the caller sees it; else 404.
    async fn playbook(&self, caller: &Caller, id: &PlaybookId) -> ApiResult<Playbook> {
        self.store()
            .playbook(id)
            .await?
            .filter(|p| caller.sees(p.tenant_id.as_ref()))
            .ok_or_else(|| ApiError::not_found("playbook", id.as_str()))
    }

    /// The device, if the caller sees it; else 404.
    async fn device(&self, caller: &Caller, id: &DeviceId) -> ApiResult<steward_store::Device> {
        self.store()
            .device_in(&caller.scope, id)
            .await?
            .ok_or_else(|| ApiError::not_found("device", id.as_str()))
    }

    /// The job, if the caller sees it; else 404.
    async fn job(&self, caller: &Caller, id: &JobId) -> ApiResult<steward_store::Job> {
        self.store()
            .job(id)
            .await?
            .filter(|j| caller.sees(Some(&j.tenant_id)))
            .ok_or_else(|| ApiError::not_found("job", id.as_str()))
    }

    /// Tells the alert dispatcher about the stored webhooks (at start).
    ///
    /// # Errors
    ///
    /// A store failure or a stored webhook the dispatcher refuses.
    pub async fn reload_webhooks_now(&self) -> anyhow::Result<()> {
        self.reload_webhooks()
            .await
            .map_err(|e| anyhow::anyhow!("cannot load the stored webhooks: {e:?}"))
    }

    /// Tells the alert dispatcher about the webhooks now stored.
    async fn reload_webhooks(&self) -> ApiResult<()> {
        let Some(alerts) = &self.inner.alerts else {
            return Ok(());
        };
        let mut hooks = self.inner.configured_webhooks.clone();
        for (hook, secret) in self.store().webhooks(&steward_store::Scope::All).await? {
            hooks.push(Webhook {
                id: hook.id,
                url: hook.url,
                secret,
                tenants: hook.tenant_id.map(|t| vec![t.to_string()]),
                enabled: hook.enabled,
            });
        }
        alerts
            .dispatcher
            .set_webhooks(hooks)
            .map_err(|e| ApiError::invalid("url", e.to_string()))
    }
}

/// A list response with a cursor for the next page.
#[derive(Debug, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Page<T> {
    /// This page.
    pub items: Vec<T>,
    /// Pass as `cursor` for the next page; absent on the last.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next_cursor: Option<String>,
}

/// The longest tag in characters.
pub(crate) const MAX_TAG_CHARS: usize = 64;

/// Refuses a tag that is blank, longer than [`MAX_TAG_CHARS`] or holds a
/// control character, naming it (`tags[2]`).
pub(crate) fn check_tags(tags: &[String]) -> ApiResult<()> {
    for (i, tag) in tags.iter().enumerate() {
        if tag.trim().is_empty()
            || tag.chars().count() > MAX_TAG_CHARS
            || tag.chars().any(char::is_control)
        {
            return Err(ApiError::invalid(
                format!("tags[{i}]"),
                format!(
                    "a tag is 1 to {MAX_TAG_CHARS} characters, not blank, without control characters"
                ),
            ));
        }
    }
    Ok(())
}

/// A page size from a query: `default` when absent, refused (400 naming
/// `limit`) outside 1 to `max`.
pub(crate) fn page_limit(limit: Option<u32>, default: u32, max: u32) -> ApiResult<u32> {
    let limit = limit.unwrap_or(default);
    if (1..=max).contains(&limit) {
        Ok(limit)
    } else {
        Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            "invalid-query",
            format!("`limit` must be 1 to {max}"),
        )
        .with_field("limit"))
    }
}

/// The router (with its state) and the OpenAPI document of every route
/// (as generated; the one served is completed by [`document::complete`]).
pub fn router(state: ApiState) -> (Router, OpenApi) {
    let (router, mut doc) = OpenApiRouter::new()
        .merge(ops::routes())
        .merge(agents::routes())
        .merge(inventory::routes())
        .merge(playbooks::routes())
        .merge(runs::routes())
        .merge(people::routes())
        .merge(registry::routes())
        .merge(report::routes())
        .split_for_parts();
    doc.info.title = "Steward API".to_owned();
    doc.info.description = Some(
        "Manage clients, devices, playbooks, schedules, approvals and runs. \
         Authenticate with `Authorization: Bearer <token>`."
            .to_owned(),
    );
    let components = doc.components.get_or_insert_with(Default::default);
    components.add_security_scheme(
        "token",
        SecurityScheme::Http(Http::new(HttpAuthScheme::Bearer)),
    );
    doc.security = Some(vec![utoipa::openapi::security::SecurityRequirement::new(
        "token",
        Vec::<String>::new(),
    )]);
    let doc_json = Arc::new(document::complete(&doc));
    let router = router
        .merge(console::routes())
        .fallback(|| async { ApiError::new(StatusCode::NOT_FOUND, "no-route", "no such route") })
        .method_not_allowed_fallback(|| async {
            ApiError::new(
                StatusCode::METHOD_NOT_ALLOWED,
                "method-not-allowed",
                "this route does not take that method",
            )
        })
        .layer(axum::Extension(ops::Document(doc_json)))
        .with_state(state);
    (router, doc)
}

/// Serves the API (and the web console) on `listener` until `shutdown` resolves, in plain HTTP
/// with the default [`listen::Limits`]; see [`listen::serve_with`].
pub async fn serve(
    listener: tokio::net::TcpListener,
    state: ApiState,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    listen::serve_with(listener, state, None, listen::Limits::default(), shutdown).await
}

/// An error and its causes on one line.
pub(crate) fn chain(err: &dyn std::error::Error) -> String {
    let mut out = err.to_string();
    let mut source = err.source();
    while let Some(s) = source {
        out.push_str(": ");
        out.push_str(&s.to_string());
        source = s.source();
    }
    out
}

/// The audit event of `caller`'s `action` on `tenant`, for a store method
/// that writes it in the change's own transaction.
fn audit_event(
    caller: &Caller,
    tenant: Option<&TenantId>,
    action: &str,
    detail: serde_json::Value,
    outcome: &str,
) -> AuditEvent {
    AuditEvent {
        at: Timestamp::now(),
        actor: caller.actor(),
        tenant_id: tenant.cloned(),
        run_id: None,
        job_id: None,
        attempt: None,
        device_id: None,
        plugin: None,
        plugin_digest: None,
        action: action.to_owned(),
        detail,
        outcome: outcome.to_owned(),
    }
}

/// At most `max` printable characters of caller- or agent-supplied text
/// (control characters dropped), for logs and error details.
pub(crate) fn printable(text: &str, max: usize) -> String {
    text.chars().filter(|c| !c.is_control()).take(max).collect()
}
