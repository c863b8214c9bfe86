//! Shared helpers: one runtime for the whole test process (so every hostile
//! plugin is followed by good runs in the same host), fixtures and specs.

use std::sync::{Arc, OnceLock};
use std::time::Duration;

use steward_runtime::audit::MemoryAudit;
use steward_runtime::bindings::types::RunMode;
use steward_runtime::capability::{Grant, Grants};
use steward_runtime::device::simulated::{Fixture, Simulated};
use steward_runtime::{
    EngineSettings, Limits, Module, RunSpec, Runtime, RuntimeConfig, resolve_text_params,
};

pub struct Shared {
    pub runtime: Runtime,
    _cache: tempfile::TempDir,
}

/// The process-wide runtime every test shares.
pub fn runtime() -> &'static Runtime {
    static SHARED: OnceLock<Shared> = OnceLock::new();
    &SHARED
        .get_or_init(|| {
            let cache = tempfile::tempdir().expect("temp dir");
            let runtime = Runtime::new(RuntimeConfig {
                cache_dir: cache.path().to_path_buf(),
                engine: EngineSettings::default(),
                limits: Limits::default(),
            })
            .expect("runtime starts");
            Shared {
                runtime,
                _cache: cache,
            }
        })
        .runtime
}

pub fn bytes(package: &str) -> Vec<u8> {
    std::fs::read(steward_tests::component(package)).expect("guest component readable")
}

pub async fn module(package: &str) -> Arc<Module> {
    runtime().load(&bytes(package)).await.expect("guest loads")
}

pub fn fixture() -> Fixture {
    toml::from_str(include_str!("device.toml")).expect("test fixture parses")
}

pub fn grants(specs: &[&str]) -> Grants {
    specs
        .iter()
        .map(|s| s.parse::<Grant>().expect("grant parses"))
        .collect()
}

pub struct Run {
    pub sim: Arc<Simulated>,
    pub audit: Arc<MemoryAudit>,
    pub spec: RunSpec,
}

/// A run against a fresh simulated device built from `fixture`.
impl Run {
    /// Replaces some of the simulated device's providers with real ones.
    pub fn with_device(
        mut self,
        change: impl FnOnce(&mut steward_runtime::device::Device),
    ) -> Self {
        let mut device = self.sim.device();
        change(&mut device);
        self.spec.device = Arc::new(device);
        self
    }
}

/// The limits most tests run under: tight, so a runaway guest fails fast.
pub fn test_limits() -> Limits {
    Limits {
        cpu_time: Duration::from_millis(300),
        wall_time: Duration::from_millis(2_000),
        memory_bytes: 32 << 20,
        ..Limits::default()
    }
}

/// Limits for runs whose time is not what the test is about: host calls
/// that drive real tools (`apt-get`, `dpkg`, `clamscan`), log floods, huge
/// outputs. A loaded machine stretches those, so only a hang should hit
/// these.
pub fn roomy_limits() -> Limits {
    Limits {
        cpu_time: Duration::from_secs(10),
        wall_time: Duration::from_secs(120),
        ..test_limits()
    }
}

/// Parameters go through the plugin's own description, as in production.
pub async fn run_with(
    fixture: Fixture,
    package: &str,
    grants: Grants,
    params: &[(&str, &str)],
    mode: RunMode,
) -> Run {
    run_with_limits(fixture, package, grants, params, mode, test_limits()).await
}

/// [`run_with`] under other limits, for runs over large fixtures.
pub async fn run_with_limits(
    fixture: Fixture,
    package: &str,
    grants: Grants,
    params: &[(&str, &str)],
    mode: RunMode,
    limits: Limits,
) -> Run {
    let sim = Simulated::new(fixture);
    let audit = Arc::new(MemoryAudit::default());
    let descriptor = runtime()
        .describe(&*module(package).await)
        .await
        .result
        .expect("describe");
    let given: Vec<(String, String)> = params
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    let params = resolve_text_params(&descriptor, &given).expect("valid test parameters");
    let plugin = descriptor.name;
    let spec = RunSpec {
        run_id: format!("test-{plugin}"),
        plugin,
        mode,
        params,
        grants,
        device: Arc::new(sim.device()),
        audit: audit.clone(),
        limits: Some(limits),
        journal: None,
    };
    Run { sim, audit, spec }
}

/// The good plugin still runs in the same host.
pub async fn assert_host_still_healthy() {
    let module = module("guest-trivial").await;
    let run = run_with(
        fixture(),
        "guest-trivial",
        Grants::none(),
        &[],
        RunMode::Apply,
    )
    .await;
    let report = runtime().check(&module, run.spec).await;
    let findings = report
        .result
        .expect("trivial plugin runs after a hostile one");
    assert_eq!(findings.len(), 1);
    assert_eq!(findings[0].id, "ok");
}

/// Seconds since the Unix epoch, now.
pub fn unix_now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock after 1970")
        .as_secs() as i64
}
