//! `steward serve`: one process running the scheduler, the sweeper and an
//! executor over one store. Several processes may share a PostgreSQL
//! database (or an SQLite file on one machine): schedules fire once and
//! jobs are claimed once between them.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use serde::Deserialize;
use tokio::sync::watch;

use steward_control::agents::AgentHub;
use steward_control::alerts::{Alerter, Dispatcher, DispatcherConfig, Webhook};
use steward_control::executor::{Alerts, Executor, ExecutorConfig};
use steward_control::plane::ControlPlane;
use steward_control::plugins::PluginLibrary;
use steward_control::providers::{DeviceProviders, StandardProviders, StoreAlertState};
use steward_control::registry::{Registry, RegistrySettings};
use steward_runtime::device::local::LocalConfig;
use steward_runtime::{EngineSettings, Limits, Runtime, RuntimeConfig};
use tokio::net::TcpListener;

use steward_api::ApiState;
use steward_store::{
    Backoff, NewDevice, NewTenant, Scope, Store, StoreOptions, TenantId, Tier, Timestamp,
};

/// The server's configuration file (TOML, kebab-case keys). Every key has
/// a default, so an empty file is a working embedded setup.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub struct ServeConfig {
    /// Where the server keeps its files: the SQLite database (unless
    /// `database` says otherwise), installed plugin components, the
    /// compile cache.
    #[serde(default = "default_data_dir")]
    pub data_dir: PathBuf,
    /// `sqlite://PATH` (created if absent) or `postgres://…`; default
    /// `sqlite://<data-dir>/steward.db`.
    #[serde(default)]
    pub database: Option<String>,
    /// This process's worker id; default `<host name>-<pid>`.
    #[serde(default)]
    pub worker_id: Option<String>,
    /// Jobs claimed and not yet recorded at once (each runs when a plugin
    /// instance is free; its timeout counts from then).
    #[serde(default = "default_in_flight")]
    pub max_in_flight: usize,
    /// Jobs taken per claim.
    #[serde(default = "default_claim_batch")]
    pub claim_batch: usize,
    /// Lease length in seconds (renewed every third).
    #[serde(default = "default_lease")]
    pub lease_seconds: u64,
    /// How often the scheduler and the sweeper look, in milliseconds.
    #[serde(default = "default_tick")]
    pub tick_ms: u64,
    /// How long before its time a schedule's firing is written (its run
    /// and jobs, the jobs due at the firing), in milliseconds; 0 writes
    /// each at its time. Only a schedule with no run going fires ahead.
    #[serde(default = "default_fire_ahead")]
    pub fire_ahead_ms: u64,
    /// At most how long an idle executor waits before looking for jobs
    /// that became due with time (retry backoff, windows, firings written
    /// ahead), in milliseconds; it wakes when the next queued job falls
    /// due. New work does not wait for it: a commit that adds or approves
    /// jobs, or an agent connecting, wakes the executor at once (on
    /// PostgreSQL, every replica's, through `LISTEN`/`NOTIFY`).
    #[serde(default = "default_poll")]
    pub poll_ms: u64,
    /// Plugin instances running at once (the pooling allocator's size).
    #[serde(default = "default_instances")]
    pub max_instances: u32,
    /// The wait before retrying a job after a transient failure or a
    /// reclaimed lease, in milliseconds; it doubles per attempt (at most
    /// an hour).
    #[serde(default = "default_retry")]
    pub retry_base_ms: u64,
    /// Where the web API listens (`host:port`; port 0 picks a free one).
    /// Absent: no API.
    #[serde(default)]
    pub listen: Option<String>,
    /// A PEM certificate chain: with `tls-key`, the API (and the agents'
    /// connections) are served over TLS.
    #[serde(default)]
    pub tls_cert: Option<PathBuf>,
    /// The certificate's PEM private key.
    #[serde(default)]
    pub tls_key: Option<PathBuf>,
    /// The API listener's limits (`header-timeout-seconds`,
    /// `body-timeout-seconds`, `max-connections`,
    /// `max-connections-per-source`).
    #[serde(default)]
    pub api_limits: ApiLimits,
    /// The first owner's API token, used when the store has no users yet
    /// (else one is made and printed once). Best given through the
    /// environment (`STEWARD_OWNER_TOKEN`) rather than written in the file.
    #[serde(default)]
    pub owner_token: Option<String>,
    /// Webhooks alerts go to (beside those added through the API).
    #[serde(default)]
    pub webhooks: Vec<Webhook>,
    /// Whether webhooks added through the API may point at loopback,
    /// link-local (cloud metadata) and similar addresses (default false;
    /// webhooks in this file may always).
    #[serde(default)]
    pub allow_local_webhooks: bool,
    /// Plugin components installed (or kept) at start, with their grants.
    #[serde(default)]
    pub plugins: Vec<PluginFile>,
    /// Registers this machine, with its real providers, as a device of a
    /// tenant (both created if absent).
    #[serde(default)]
    pub this_machine: Option<ThisMachine>,
    /// Playbooks created at start if their tenant has none of that name,
    /// each with an optional schedule.
    #[serde(default)]
    pub playbooks: Vec<ConfiguredPlaybook>,
    /// The module registry plugins are installed from (`url`,
    /// `trust-on-first-use`, `unsigned-namespaces`, `upgrades`).
    #[serde(default)]
    pub registry: Option<RegistrySettings>,
    /// For demos and fault tests: simulated devices keep their state in
    /// this directory (`<device id>.json`, and a ledger of the calls they
    /// applied, `<device id>.applied`), so it outlives the process. Absent:
    /// in memory, for the life of the process.
    #[serde(default)]
    pub simulated_state_dir: Option<PathBuf>,
}

/// A plugin component to install at start.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub struct PluginFile {
    /// The `.wasm` component.
    pub file: PathBuf,
    /// Grants, as for `steward plugin run --grant`.
    #[serde(default)]
    pub grants: Vec<String>,
}

/// This machine as a managed device.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub struct ThisMachine {
    /// The tenant's name (created as `managed` if absent).
    pub tenant: String,
    /// Tags for playbook targets.
    #[serde(default)]
    pub tags: Vec<String>,
    /// This machine's backup sets (`[[this-machine.backup-sets]]`: `name`,
    /// `tool` = `restic` or `borg`, `repository`, `password-file`, `paths`,
    /// `exclude`), served by the `backups` capability.
    #[serde(default)]
    pub backup_sets: Vec<steward_runtime::capability::backups::SetConfig>,
    /// Where the backups provider keeps its records and scratch copies
    /// (default `<data-dir>/backups`).
    #[serde(default)]
    pub backup_state_dir: Option<PathBuf>,
}

/// A playbook to create at start.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub struct ConfiguredPlaybook {
    /// Its name, unique per tenant here.
    pub name: String,
    /// The tenant's name.
    pub tenant: String,
    /// Steps, as the playbook JSON has them.
    pub steps: serde_json::Value,
    /// Target selector; every device of the tenant when absent.
    #[serde(default)]
    pub target: Option<serde_json::Value>,
    /// A schedule spec (`cron`, `timezone`, `window`, …), if it runs on one.
    #[serde(default)]
    pub schedule: Option<serde_json::Value>,
}

fn default_data_dir() -> PathBuf {
    "steward-data".into()
}
fn default_in_flight() -> usize {
    1024
}
fn default_claim_batch() -> usize {
    512
}
fn default_lease() -> u64 {
    30
}
fn default_tick() -> u64 {
    1000
}
fn default_fire_ahead() -> u64 {
    30_000
}
fn default_poll() -> u64 {
    1000
}
fn default_retry() -> u64 {
    10_000
}
fn default_instances() -> u32 {
    64
}

/// `[api-limits]`: what one client may hold of the API listener.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub struct ApiLimits {
    /// Seconds a client has to send a request's headers (default 10).
    #[serde(default = "ten")]
    pub header_timeout_seconds: u64,
    /// Seconds a request body may pause between two frames (default 30).
    #[serde(default = "thirty")]
    pub body_timeout_seconds: u64,
    /// Open connections at once (default 60,000; always below the
    /// process's file limit).
    #[serde(default = "sixty_thousand")]
    pub max_connections: usize,
    /// Open connections at once from one address (default 2,000).
    #[serde(default = "two_thousand")]
    pub max_connections_per_source: usize,
}

impl Default for ApiLimits {
    fn default() -> Self {
        toml::from_str("").expect("every key has a default")
    }
}

impl ApiLimits {
    fn limits(&self) -> steward_api::listen::Limits {
        steward_api::listen::Limits {
            header_timeout: Duration::from_secs(self.header_timeout_seconds.max(1)),
            body_timeout: Duration::from_secs(self.body_timeout_seconds.max(1)),
            max_connections: self.max_connections.max(1),
            max_per_source: self.max_connections_per_source.max(1),
            ..steward_api::listen::Limits::default()
        }
    }
}

fn ten() -> u64 {
    10
}
fn thirty() -> u64 {
    30
}
fn sixty_thousand() -> usize {
    60_000
}
fn two_thousand() -> usize {
    2_000
}

impl Default for ServeConfig {
    fn default() -> Self {
        toml::from_str("").expect("every key has a default")
    }
}

impl ServeConfig {
    /// Reads a configuration file.
    pub fn load(path: &std::path::Path) -> anyhow::Result<Self> {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("cannot read {}", path.display()))?;
        toml::from_str(&text).with_context(|| format!("invalid configuration {}", path.display()))
    }

    /// The database URL in effect.
    pub fn database_url(&self) -> String {
        self.database
            .clone()
            .unwrap_or_else(|| format!("sqlite://{}", self.data_dir.join("steward.db").display()))
    }

    /// The worker id in effect.
    pub fn worker(&self) -> String {
        self.worker_id.clone().unwrap_or_else(|| {
            let host = std::fs::read_to_string("/etc/hostname")
                .map(|h| h.trim().to_owned())
                .unwrap_or_else(|_| "steward".into());
            format!("{host}-{}", std::process::id())
        })
    }
}

/// Everything a server runs with, built from a [`ServeConfig`].
pub struct Server {
    /// The control plane (store and plugins).
    pub plane: ControlPlane,
    executor: Executor,
    tick: Duration,
    api: Option<(TcpListener, ApiState)>,
    tls: Option<Arc<steward_api::listen::TlsConfig>>,
    api_limits: steward_api::listen::Limits,
    /// The first owner token, when this start created the first owner
    /// with a token it made (to be shown once).
    pub new_owner_token: Option<String>,
    registry: Option<Arc<Registry>>,
    /// The agents connected to this process.
    agents: Arc<AgentHub>,
}

impl Server {
    /// Opens the store (creating and migrating it), the runtime and the
    /// plugin library, and sets up alerting.
    pub async fn open(config: &ServeConfig) -> anyhow::Result<Self> {
        let agents = AgentHub::new();
        let mut local = LocalConfig::default();
        if let Some(machine) = &config.this_machine {
            local.backup_sets = machine.backup_sets.clone();
            local.backup_state_dir = machine
                .backup_state_dir
                .clone()
                .unwrap_or_else(|| config.data_dir.join("backups"));
            steward_runtime::device::local::backups(&local)
                .context("`this-machine.backup-sets` is invalid")?;
        }
        let mut providers = StandardProviders::new(local).with_agents(agents.clone());
        if let Some(dir) = &config.simulated_state_dir {
            std::fs::create_dir_all(dir).with_context(|| {
                format!(
                    "cannot create the simulated state directory {}",
                    dir.display()
                )
            })?;
            providers = providers.with_simulated_state(dir.clone());
        }
        Self::open_with_agents(config, Arc::new(providers), agents).await
    }

    /// [`open`](Self::open) with devices' providers from `devices`.
    pub async fn open_with(
        config: &ServeConfig,
        devices: Arc<dyn DeviceProviders>,
    ) -> anyhow::Result<Self> {
        Self::open_with_agents(config, devices, AgentHub::new()).await
    }

    /// [`open_with`](Self::open_with), the API registering connected agents
    /// in `agents` (the hub `devices` reaches agent devices through).
    pub async fn open_with_agents(
        config: &ServeConfig,
        devices: Arc<dyn DeviceProviders>,
        agents: Arc<AgentHub>,
    ) -> anyhow::Result<Self> {
        std::fs::create_dir_all(&config.data_dir).with_context(|| {
            format!(
                "cannot create the data directory {}",
                config.data_dir.display()
            )
        })?;
        let store = Store::open_with(
            &config.database_url(),
            StoreOptions {
                backoff: Backoff {
                    base: Duration::from_millis(config.retry_base_ms.max(1)),
                    cap: Duration::from_secs(3600),
                },
                ..StoreOptions::default()
            },
        )
        .await
        .context("cannot open the store")?;
        let limits = Limits::default();
        let runtime = Arc::new(Runtime::new(RuntimeConfig {
            cache_dir: config.data_dir.join("cache"),
            engine: EngineSettings {
                max_instances: config.max_instances,
                max_memory_bytes: limits.memory_bytes,
                pooling: true,
            },
            limits,
        })?);
        let library = Arc::new(PluginLibrary::open(
            runtime,
            config.data_dir.join("modules"),
        )?);
        let plane = ControlPlane::new(store.clone(), library.clone())
            .with_fire_ahead(Duration::from_millis(config.fire_ahead_ms));
        bootstrap(&plane, config).await?;
        let new_owner_token = first_owner(&store, config.owner_token.as_deref()).await?;
        // Alerts go to configured webhooks and to those added through the
        // API; without any, nothing is observed.
        let stored = store.webhooks(&Scope::All).await?;
        let alerts = if config.webhooks.is_empty() && stored.is_empty() && config.listen.is_none() {
            None
        } else {
            Some(Arc::new(Alerts {
                alerter: Alerter::new(Arc::new(StoreAlertState::new(store.clone()))),
                dispatcher: Dispatcher::start(
                    config.webhooks.clone(),
                    DispatcherConfig::default(),
                )?,
            }))
        };
        let registry = config
            .registry
            .as_ref()
            .map(|settings| Registry::new(settings.clone()).map(Arc::new))
            .transpose()?;
        let tls = match (&config.tls_cert, &config.tls_key) {
            (Some(cert), Some(key)) => Some(steward_api::listen::tls_config(cert, key)?),
            (None, None) => None,
            _ => anyhow::bail!("`tls-cert` and `tls-key` go together: give both, or neither"),
        };
        let api = match &config.listen {
            Some(addr) => {
                let listener = TcpListener::bind(addr)
                    .await
                    .with_context(|| format!("cannot listen on {addr}"))?;
                let mut state =
                    ApiState::new(plane.clone(), alerts.clone(), config.webhooks.clone())
                        .with_agents(agents.clone(), config.worker())
                        .with_local_webhooks(config.allow_local_webhooks)
                        .with_secure_cookies(tls.is_some());
                if let Some(registry) = &registry {
                    state = state.with_registry(registry.clone());
                }
                state.reload_webhooks_now().await?;
                Some((listener, state))
            }
            None => None,
        };
        let mut exec = ExecutorConfig::new(config.worker());
        exec.max_in_flight = config.max_in_flight.max(1);
        exec.claim_batch = config.claim_batch.max(1);
        exec.lease = Duration::from_secs(config.lease_seconds.max(1));
        exec.idle_poll = Duration::from_millis(config.poll_ms.max(10));
        let executor = Executor::new(exec, store.clone(), library.clone(), devices, alerts);
        Ok(Self {
            plane,
            executor,
            tick: Duration::from_millis(config.tick_ms.max(10)),
            api,
            tls,
            api_limits: config.api_limits.limits(),
            new_owner_token,
            registry,
            agents,
        })
    }

    /// Whether the API is served over TLS.
    pub fn tls(&self) -> bool {
        self.tls.is_some()
    }

    /// Where the API listens, if it does.
    pub fn api_addr(&self) -> Option<std::net::SocketAddr> {
        self.api.as_ref().and_then(|(l, _)| l.local_addr().ok())
    }

    /// Runs the scheduler, the sweeper and the executor until `shutdown`
    /// turns true; the jobs running are finished and recorded first (claimed ones not
    /// started yet go back to the queue).
    pub async fn run(self, shutdown: watch::Receiver<bool>) -> anyhow::Result<()> {
        let executor = self.executor.clone();
        let exec_shutdown = shutdown.clone();
        let worker = tokio::spawn(async move { executor.run(exec_shutdown).await });
        let heartbeats = tokio::spawn(
            self.agents
                .clone()
                .record_heartbeats(self.plane.store().clone(), shutdown.clone()),
        );
        let tls = self.tls.clone();
        let limits = self.api_limits.clone();
        let api = self.api.map(|(listener, state)| {
            let mut stop = shutdown.clone();
            tokio::spawn(async move {
                let stopped = async move {
                    let _ = stop.wait_for(|s| *s).await;
                };
                steward_api::listen::serve_with(listener, state, tls, limits, stopped).await
            })
        });
        let upgrades = self.registry.and_then(|registry| {
            let every = registry.settings().check_every_seconds?;
            let plane = self.plane.clone();
            let mut stop = shutdown.clone();
            Some(tokio::spawn(async move {
                let every = Duration::from_secs(every.max(1));
                loop {
                    tokio::select! {
                        _ = tokio::time::sleep(every) => {}
                        changed = stop.changed() => if changed.is_err() { return },
                    }
                    if *stop.borrow() {
                        return;
                    }
                    // A slow registry must not hold up shutdown.
                    tokio::select! {
                        _ = registry.auto_upgrade(plane.store(), plane.library()) => {}
                        _ = stop.wait_for(|s| *s) => return,
                    }
                }
            }))
        });
        let mut shutdown = shutdown;
        let plane = self.plane;
        // Repair what a crash left before taking new work.
        match plane.sweep().await {
            Ok(r) => self.executor.alert_timed_out(&r.ended).await,
            Err(e) => tracing::warn!(error = %e, "startup sweep failed"),
        }
        // The wait before the next tick: `tick-ms`, or none when the last
        // tick ran out of its time budget with schedules still due (a
        // minute in which tens of thousands fall due is fired back to
        // back, not one second in two).
        let mut pause = self.tick;
        loop {
            tokio::select! {
                _ = tokio::time::sleep(pause) => {}
                _ = shutdown.changed() => {}
            }
            if *shutdown.borrow() {
                break;
            }
            pause = self.tick;
            match plane.scheduler_tick(chrono::Utc::now()).await {
                Ok(r) => {
                    if r.fired + r.skipped > 0 {
                        tracing::debug!(
                            fired = r.fired,
                            skipped = r.skipped,
                            more = r.more,
                            "scheduler tick"
                        );
                    }
                    if r.more {
                        pause = std::time::Duration::ZERO;
                    }
                }
                Err(e) => tracing::warn!(error = %e, "scheduler tick failed"),
            }
            match plane.sweep().await {
                Ok(r) => self.executor.alert_timed_out(&r.ended).await,
                Err(e) => tracing::warn!(error = %e, "sweep failed"),
            }
        }
        worker.await.context("the executor panicked")?;
        heartbeats
            .await
            .context("the heartbeat recorder panicked")?;
        if let Some(upgrades) = upgrades {
            upgrades.await.context("the upgrade checker panicked")?;
        }
        if let Some(api) = api {
            api.await
                .context("the API panicked")?
                .context("the API failed")?;
        }
        plane.store().close().await;
        Ok(())
    }
}

/// Installs the configured plugins, registers this machine and creates the
/// configured playbooks; every step is skipped when already done, so a
/// restart changes nothing.
async fn bootstrap(plane: &ControlPlane, config: &ServeConfig) -> anyhow::Result<()> {
    use futures_util::StreamExt as _;
    let store = plane.store();
    let files = config
        .plugins
        .iter()
        .map(|p| {
            std::fs::read(&p.file)
                .with_context(|| format!("cannot read plugin {}", p.file.display()))
        })
        .collect::<anyhow::Result<Vec<_>>>()?;
    // Compiled in parallel, up to the cores (each compile runs on a
    // blocking thread); the installs below then find them loaded. A
    // component that does not load is reported by its install.
    let cores = std::thread::available_parallelism().map_or(2, std::num::NonZero::get);
    futures_util::stream::iter(&files)
        .map(|bytes| plane.library().runtime().load(bytes))
        .buffer_unordered(cores)
        .for_each(|_| async {})
        .await;
    for (p, bytes) in config.plugins.iter().zip(&files) {
        let v = plane
            .library()
            .install(store, bytes, &p.grants)
            .await
            .with_context(|| format!("cannot install plugin {}", p.file.display()))?;
        tracing::info!(plugin = %v.plugin, version = %v.version, "plugin ready");
    }
    let now = Timestamp::now();
    if let Some(machine) = &config.this_machine {
        let tenant = ensure_tenant(store, &machine.tenant, now).await?;
        let host = std::fs::read_to_string("/etc/hostname")
            .map(|h| h.trim().to_owned())
            .unwrap_or_else(|_| "localhost".into());
        if !store.devices(&tenant).await?.iter().any(|d| d.name == host) {
            let mut new = NewDevice::new(tenant.clone(), host.clone());
            new.tags = machine.tags.clone();
            new.facts = serde_json::json!({ "provider": "local" });
            store.create_device(&new, now).await?;
            tracing::info!(device = %host, tenant = %machine.tenant, "this machine registered");
        }
    }
    for p in &config.playbooks {
        let tenant = ensure_tenant(store, &p.tenant, now).await?;
        if store.playbook_named(&tenant, &p.name).await?.is_some() {
            continue;
        }
        let playbook = plane
            .create_playbook(
                Some(tenant),
                &p.name,
                p.steps.clone(),
                p.target.clone().unwrap_or_else(|| serde_json::json!({})),
            )
            .await
            .with_context(|| format!("playbook `{}` in the configuration", p.name))?;
        if let Some(spec) = &p.schedule {
            plane
                .create_schedule(&playbook.id, None, spec.clone())
                .await
                .with_context(|| format!("the schedule of playbook `{}`", p.name))?;
        }
        tracing::info!(playbook = %p.name, "playbook created");
    }
    Ok(())
}

/// Creates the first owner when the store has no users: with `token` if
/// given, else with a new token, which is returned to be shown once.
async fn first_owner(store: &Store, token: Option<&str>) -> anyhow::Result<Option<String>> {
    let (token, made) = match token {
        Some(t) if t.len() >= 32 => (t.to_owned(), false),
        Some(_) => anyhow::bail!("the owner token must be at least 32 characters"),
        None => (steward_api::auth::new_token(), true),
    };
    let created = store
        .create_first_owner(&steward_api::auth::hash_token(&token), Timestamp::now())
        .await?;
    if created.is_none() {
        return Ok(None);
    }
    tracing::info!("first owner created");
    Ok(made.then_some(token))
}

/// The tenant named `name`, created as `managed` if absent.
async fn ensure_tenant(store: &Store, name: &str, now: Timestamp) -> anyhow::Result<TenantId> {
    if let Some(t) = store.tenants().await?.into_iter().find(|t| t.name == name) {
        return Ok(t.id);
    }
    let t = store
        .create_tenant(
            &NewTenant {
                name: name.to_owned(),
                tier: Tier::Managed,
                max_concurrent_jobs: None,
            },
            now,
        )
        .await?;
    Ok(t.id)
}
