//! A control plane on a test database: runtime, installed test plugins,
//! tenants with simulated devices, an executor to run their jobs.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use steward_control::executor::{Alerts, Executor, ExecutorConfig};
use steward_control::plane::ControlPlane;
use steward_control::plugins::PluginLibrary;
use steward_control::providers::DeviceProviders;
use steward_runtime::device::Device;
use steward_runtime::device::simulated::{Fixture, Simulated};
use steward_runtime::{EngineSettings, Limits, Runtime, RuntimeConfig};
use steward_store::{
    self as store, DeviceId, JobStatus, NewDevice, NewTenant, PluginVersion, Run, RunId, RunStatus,
    Store, TenantId, Tier, Timestamp,
};
use tokio::sync::watch;
use tokio::task::JoinHandle;

/// What the fixer test guest needs granted.
pub const FIXER_GRANTS: &[&str] = &[
    "packages",
    "accounts=jdoe",
    "antivirus=/srv/**",
    "tickets=changes",
];

/// The simulated workstation of the e2e tests (2 updates, a locked
/// account, an infected file), as device `id` of `tenant`.
pub fn fixture(id: &str, tenant: &str) -> Fixture {
    let path = steward_tests::workspace_root().join("tests/e2e/device.toml");
    let text = std::fs::read_to_string(path).expect("read the e2e fixture");
    let mut f: Fixture = toml::from_str(&text).expect("the e2e fixture parses");
    f.facts.id = id.to_owned();
    f.facts.name = id.to_owned();
    f.facts.tenant_id = tenant.to_owned();
    f
}

/// Device facts that make the standard providers serve `fixture`.
pub fn simulated_facts(fixture: &Fixture) -> Value {
    json!({ "provider": "simulated", "fixture": fixture })
}

/// A runtime for tests, compiling into a cache shared by test processes.
pub fn runtime() -> Arc<Runtime> {
    runtime_with(16, false)
}

/// A runtime with `max_instances` at once, on the pooling allocator if
/// `pooling` (as `steward serve` runs), compiling into the shared cache.
pub fn runtime_with(max_instances: u32, pooling: bool) -> Arc<Runtime> {
    let limits = Limits::default();
    Arc::new(
        Runtime::new(RuntimeConfig {
            cache_dir: std::env::temp_dir().join("steward-test-artifacts"),
            engine: EngineSettings {
                max_instances,
                max_memory_bytes: limits.memory_bytes,
                pooling,
            },
            limits,
        })
        .expect("runtime"),
    )
}

/// A control plane over `store` with components kept in `dir`.
pub fn plane(store: &Store, dir: PathBuf) -> ControlPlane {
    plane_with(store, dir, runtime())
}

/// [`plane`] on `runtime`.
pub fn plane_with(store: &Store, dir: PathBuf, runtime: Arc<Runtime>) -> ControlPlane {
    let library = Arc::new(PluginLibrary::open(runtime, dir).expect("plugin library"));
    ControlPlane::new(store.clone(), library)
}

/// Installs a test component (`guest-fixer`, ...) with `grants`, returning
/// what the store recorded.
pub async fn install(plane: &ControlPlane, package: &str, grants: &[&str]) -> PluginVersion {
    let bytes = std::fs::read(steward_tests::component(package)).expect("component bytes");
    let grants: Vec<String> = grants.iter().map(|g| g.to_string()).collect();
    plane
        .library()
        .install(plane.store(), &bytes, &grants)
        .await
        .expect("install")
}

/// A tenant named `name` with one device per id, each with `tags` and
/// facts from `facts(id)`.
pub async fn tenant(
    store: &Store,
    name: &str,
    tier: Tier,
    devices: &[(&str, &[&str])],
    facts: impl Fn(&str, &TenantId) -> Value,
) -> (TenantId, Vec<DeviceId>) {
    let now = Timestamp::now();
    let t = store
        .create_tenant(
            &NewTenant {
                name: name.into(),
                tier,
                max_concurrent_jobs: None,
            },
            now,
        )
        .await
        .expect("tenant");
    let mut ids = Vec::new();
    for (device, tags) in devices {
        let mut new = NewDevice::new(t.id.clone(), *device);
        new.tags = tags.iter().map(|s| s.to_string()).collect();
        new.facts = facts(device, &t.id);
        ids.push(store.create_device(&new, now).await.expect("device").id);
    }
    (t.id, ids)
}

/// Simulated devices the test can swap while jobs run.
#[derive(Default)]
pub struct TestDevices {
    by_name: Mutex<HashMap<String, Arc<Simulated>>>,
}

impl TestDevices {
    /// Puts the device named `name` in `fixture`'s state (creating it).
    pub fn set(&self, name: &str, fixture: Fixture) {
        let mut by_name = self.by_name.lock().unwrap();
        match by_name.get(name) {
            Some(sim) => sim.set_state(fixture),
            None => {
                by_name.insert(name.to_owned(), Simulated::new(fixture));
            }
        }
    }

    /// The current state of the device named `name`.
    pub fn snapshot(&self, name: &str) -> Fixture {
        self.by_name.lock().unwrap()[name].snapshot()
    }
}

impl DeviceProviders for TestDevices {
    fn device(&self, stored: &store::Device) -> anyhow::Result<Device> {
        let sim = self
            .by_name
            .lock()
            .unwrap()
            .get(&stored.name)
            .cloned()
            .ok_or_else(|| anyhow::anyhow!("no test device `{}`", stored.name))?;
        let mut d = sim.device();
        d.id = stored.id.to_string();
        d.tenant_id = stored.tenant_id.to_string();
        Ok(d)
    }
}

/// A running executor; [`stop`](Running::stop) finishes its jobs.
pub struct Running {
    shutdown: watch::Sender<bool>,
    task: JoinHandle<()>,
}

impl Running {
    /// Stops claiming, finishes and records the jobs in flight.
    pub async fn stop(self) {
        let _ = self.shutdown.send(true);
        self.task.await.expect("executor task");
    }
}

/// Starts an executor named `worker`.
pub fn start(
    plane: &ControlPlane,
    worker: &str,
    devices: Arc<dyn DeviceProviders>,
    alerts: Option<Arc<Alerts>>,
) -> Running {
    let mut config = ExecutorConfig::new(worker);
    config.idle_poll = Duration::from_millis(20);
    let executor = Executor::new(
        config,
        plane.store().clone(),
        plane.library().clone(),
        devices,
        alerts,
    );
    let (shutdown, rx) = watch::channel(false);
    let task = tokio::spawn(async move { executor.run(rx).await });
    Running { shutdown, task }
}

/// Waits until `run` has finished.
pub async fn finished(store: &Store, run: &RunId) -> Run {
    wait(store, run, |r, _| r.status != RunStatus::Running).await
}

/// Waits until `cond` holds for the run and its jobs' statuses (30 s at
/// most).
pub async fn wait(store: &Store, run: &RunId, cond: impl Fn(&Run, &[JobStatus]) -> bool) -> Run {
    let start = Instant::now();
    loop {
        let r = store.run(run).await.unwrap().expect("run exists");
        let statuses: Vec<JobStatus> = store
            .jobs_of_run(run)
            .await
            .unwrap()
            .iter()
            .map(|j| j.status)
            .collect();
        if cond(&r, &statuses) {
            return r;
        }
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "run {run} did not get there: {r:?}, jobs {statuses:?}"
        );
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

/// A webhook receiver that checks every signature.
pub async fn receiver(secret: &'static str) -> (String, Arc<Mutex<Vec<Value>>>) {
    let (url, got, _) = switchable_receiver(secret).await;
    (url, got)
}

/// [`receiver`], answering `503` while the switch is on.
pub async fn switchable_receiver(
    secret: &'static str,
) -> (
    String,
    Arc<Mutex<Vec<Value>>>,
    Arc<std::sync::atomic::AtomicBool>,
) {
    use axum::body::Bytes;
    use axum::http::{HeaderMap, StatusCode};
    use std::sync::atomic::{AtomicBool, Ordering};
    use steward_control::alerts::{SIGNATURE_HEADER, verify_signature};
    let got: Arc<Mutex<Vec<Value>>> = Arc::default();
    let down = Arc::new(AtomicBool::new(false));
    let (sink, switch) = (got.clone(), down.clone());
    let app = axum::Router::new().route(
        "/hook",
        axum::routing::post(move |headers: HeaderMap, body: Bytes| {
            let (sink, switch) = (sink.clone(), switch.clone());
            async move {
                if switch.load(Ordering::SeqCst) {
                    return StatusCode::SERVICE_UNAVAILABLE;
                }
                let sig = headers
                    .get(SIGNATURE_HEADER)
                    .and_then(|v| v.to_str().ok())
                    .unwrap_or("");
                if !verify_signature(secret, &body, sig) {
                    return StatusCode::UNAUTHORIZED;
                }
                sink.lock()
                    .unwrap()
                    .push(serde_json::from_slice(&body).unwrap());
                StatusCode::NO_CONTENT
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/hook", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (url, got, down)
}
