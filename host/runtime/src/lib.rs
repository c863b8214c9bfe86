//! The plugin runtime: loads components (compile once, cache on disk, keep
//! an `InstancePre` per digest), checks their imports against grants, and
//! runs `describe`, `check` and `remediate` under per-run limits.
//!
//! The layer above the contract and below the store: it knows wasmtime,
//! the capabilities and their providers, and nothing of SQL or HTTP (its
//! `Cargo.toml` has neither).
//!
//! - the crate root: [`Runtime`], [`Module`], invocation;
//! - [`capability`]: one module per host interface, with its provider trait;
//! - [`device`]: a device and the providers behind its capabilities;
//! - [`audit`]: the trail of mutating and scoped calls;
//! - [`bindings`]: the only `bindgen!`, one per supported WIT version;
//! - `compat`: older versions' imports, served by the newest code.

pub mod audit;
pub mod bindings;
pub mod capability;
pub mod device;

mod cache;
mod compat;
mod engine;
mod error;
mod journal;
mod limits;
mod params;
pub(crate) mod store;

use std::collections::{BTreeSet, HashMap};
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use steward_contract::Digest;
use tokio::sync::Semaphore;
use tracing::Instrument;
use wasmtime::component::{HasSelf, Linker};
use wasmtime::{Engine, Store, Trap, UpdateDeadline};

pub use cache::{ArtifactCache, ArtifactSource};
pub use engine::{Allocator, EngineSettings};
pub use error::{LoadError, RunError, describe_host_error, describe_plugin_error};
pub use journal::{Journal, JournalKey, MemoryJournal, Prior};
pub use limits::{EPOCH_TICK, Limits};
pub use params::{ParamError, Params, check_remediation, resolve_json_params, resolve_text_params};
pub use store::{HostState, LogLine, LogSource};

use crate::audit::AuditSink;
use crate::bindings::types::{
    Change, Descriptor, Failure, Finding, HostError, PluginError, Remediation, RunMode,
};
use crate::bindings::{PACKAGE, PACKAGE_VERSION, current, v0_1};
use crate::capability::{Capability, Grants};
use crate::device::Device;
use store::RunScope;

/// How the runtime is set up.
#[derive(Debug, Clone)]
pub struct RuntimeConfig {
    /// Where precompiled artifacts live.
    pub cache_dir: PathBuf,
    /// Engine-wide settings.
    pub engine: EngineSettings,
    /// Default per-run limits.
    pub limits: Limits,
}

/// A loaded, compiled plugin, ready to instantiate.
pub struct Module {
    /// sha256 of the component bytes.
    pub digest: Digest,
    /// Whether the first load compiled it or read the cache.
    pub source: ArtifactSource,
    /// The capabilities the component imports (its request), sorted.
    pub requested: Vec<Capability>,
    /// The version of `steward:plugin` it was built for (`0.1.0`, `0.2.0`).
    pub wit_version: &'static str,
    /// WASI imports it has that are linked with every operation denied
    /// (`wasi:sockets`, which some toolchains import by default).
    pub denied_imports: Vec<String>,
    /// What its `describe` returned, once it was called.
    descriptor: std::sync::OnceLock<Descriptor>,
    pre: PluginPre,
}

/// A linked component of one of the supported WIT versions.
enum PluginPre {
    Current(current::PluginComponentPre<HostState>),
    V0_1(v0_1::PluginComponentPre<HostState>),
}

impl std::fmt::Debug for Module {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Module")
            .field("digest", &self.digest)
            .field("source", &self.source)
            .field("requested", &self.requested)
            .field("wit_version", &self.wit_version)
            .finish_non_exhaustive()
    }
}

impl Module {
    /// Refuses the module unless every capability it imports is granted.
    pub fn authorize(&self, grants: &Grants) -> Result<(), LoadError> {
        let missing: Vec<Capability> = self
            .requested
            .iter()
            .copied()
            .filter(|c| !grants.allows_capability(*c))
            .collect();
        if missing.is_empty() {
            Ok(())
        } else {
            Err(LoadError::NotGranted(missing))
        }
    }

    /// [`Module::authorize`], and refuses a grant of a capability the
    /// module does not import: where grants are given (an install, `plugin
    /// run`, a `plugin test` case), one the plugin cannot use is a mistake
    /// (a typo, a plugin that changed), not a harmless extra. Runs of an
    /// installed plugin check only [`Module::authorize`].
    pub fn authorize_exactly(&self, grants: &Grants) -> Result<(), LoadError> {
        self.authorize(grants)?;
        let unused: Vec<Capability> = grants
            .capabilities()
            .filter(|c| !self.requested.contains(c))
            .collect();
        if unused.is_empty() {
            return Ok(());
        }
        let imports: Vec<&str> = self
            .requested
            .iter()
            .filter(|c| !c.always_granted())
            .map(|c| c.name())
            .collect();
        let imports = if imports.is_empty() {
            "no capability that needs a grant".to_owned()
        } else {
            imports.join(", ")
        };
        Err(LoadError::UnusedGrant(unused, imports))
    }
}

/// Everything a `check` or `remediate` run needs besides the module.
#[derive(Clone)]
pub struct RunSpec {
    /// Run id, carried into logs, spans and audit events.
    pub run_id: String,
    /// Plugin name, for logs and audit.
    pub plugin: String,
    /// Apply or plan.
    pub mode: RunMode,
    /// Parameters, checked against the descriptor.
    pub params: Params,
    /// What the plugin was granted.
    pub grants: Grants,
    /// The target device and its providers.
    pub device: Arc<Device>,
    /// Where capability calls are audited.
    pub audit: Arc<dyn AuditSink>,
    /// Limits for this run; the runtime's defaults when `None`.
    pub limits: Option<Limits>,
    /// Applied mutating calls of earlier attempts of this run, replayed
    /// instead of applied again; nothing is journaled when `None`.
    pub journal: Option<Arc<dyn Journal>>,
}

/// What a run produced: its result, and its log either way.
#[derive(Debug)]
pub struct RunReport<T> {
    /// The plugin's output, or why there is none.
    pub result: Result<T, RunError>,
    /// Log lines from the `log` capability, stdout and stderr.
    pub log: Vec<LogLine>,
    /// Lines dropped past the log limits.
    pub log_dropped: usize,
    /// From instantiation to the end of the call.
    pub elapsed: Duration,
    /// The linear memory the instance held at the end, in bytes (0 when
    /// nothing ran).
    pub memory_bytes: usize,
}

enum Call {
    Describe,
    Check,
    Remediate(Vec<Finding>),
}

enum Output {
    Descriptor(Descriptor),
    Findings(Vec<Finding>),
    Remediation(Remediation),
}

/// The plugin runtime. One per process; cheap to share behind an `Arc`.
pub struct Runtime {
    engine: Engine,
    allocator: Allocator,
    linker: Linker<HostState>,
    cache: ArtifactCache,
    modules: Mutex<HashMap<Digest, Arc<Module>>>,
    /// One lock per digest being loaded, so concurrent loads of one module
    /// compile it once: the first compiles, the others wait and take its
    /// result from `modules`.
    loading: Mutex<HashMap<Digest, Arc<tokio::sync::Mutex<()>>>>,
    /// How many times a component was compiled (not read from the cache).
    compilations: AtomicU64,
    permits: Semaphore,
    max_instances: usize,
    limits: Limits,
    /// The engine-wide memory cap; no run's limit may exceed it.
    max_memory_bytes: usize,
    /// How long a compile may take ([`MAX_COMPILE_TIME`] unless set).
    compile_timeout: std::time::Duration,
    _ticker: engine::EpochTicker,
}

impl Runtime {
    /// Builds the engine, the linker with every capability, and opens the
    /// artifact cache.
    pub fn new(config: RuntimeConfig) -> anyhow::Result<Self> {
        let (engine, allocator) = engine::build(&config.engine)
            .map_err(|e| anyhow::anyhow!("failed to create the wasmtime engine: {e}"))?;
        let mut linker = Linker::new(&engine);
        wasmtime_wasi::p2::add_to_linker_async(&mut linker)
            .map_err(|e| anyhow::anyhow!("failed to link WASI: {e}"))?;
        // Every supported version's interfaces, side by side (their names
        // carry the version); a component links against its own.
        current::PluginComponent::add_to_linker::<_, HasSelf<HostState>>(&mut linker, |s| s)
            .map_err(|e| anyhow::anyhow!("failed to link the capabilities: {e}"))?;
        v0_1::PluginComponent::add_to_linker::<_, HasSelf<HostState>>(&mut linker, |s| s)
            .map_err(|e| anyhow::anyhow!("failed to link the 0.1.0 capabilities: {e}"))?;
        let cache = ArtifactCache::open(&config.cache_dir, &engine).map_err(|e| {
            anyhow::anyhow!(
                "failed to open the artifact cache at {}: {e}",
                config.cache_dir.display()
            )
        })?;
        let mut limits = config.limits;
        limits.memory_bytes = limits.memory_bytes.min(config.engine.max_memory_bytes);
        tracing::info!(
            ?allocator,
            max_instances = config.engine.max_instances,
            "plugin runtime ready"
        );
        Ok(Self {
            _ticker: engine::EpochTicker::start(engine.clone()),
            engine,
            allocator,
            linker,
            cache,
            modules: Mutex::new(HashMap::new()),
            loading: Mutex::new(HashMap::new()),
            compilations: AtomicU64::new(0),
            permits: Semaphore::new(config.engine.max_instances as usize),
            max_instances: config.engine.max_instances as usize,
            limits,
            max_memory_bytes: config.engine.max_memory_bytes,
            compile_timeout: MAX_COMPILE_TIME,
        })
    }

    /// The same runtime, refusing components whose compilation takes
    /// longer than `limit` (default [`MAX_COMPILE_TIME`]).
    #[must_use]
    pub fn with_compile_timeout(mut self, limit: std::time::Duration) -> Self {
        self.compile_timeout = limit;
        self
    }

    /// Which allocator the engine ended up with.
    pub fn allocator(&self) -> Allocator {
        self.allocator
    }

    /// The default per-run limits.
    pub fn limits(&self) -> Limits {
        self.limits
    }

    /// How many plugin instances run at once; a run beyond them waits for
    /// one.
    pub fn max_instances(&self) -> usize {
        self.max_instances
    }

    /// How many components this runtime has compiled (rather than read
    /// from the artifact cache or its loaded modules).
    pub fn compilations(&self) -> u64 {
        self.compilations.load(Ordering::Relaxed)
    }

    fn loaded(&self, digest: &Digest) -> Option<Arc<Module>> {
        self.modules
            .lock()
            .expect("module map poisoned")
            .get(digest)
            .cloned()
    }

    /// Validates, compiles (or loads from the cache) and links a component.
    /// Nothing is instantiated.
    ///
    /// Compiling takes tens of milliseconds of CPU (far more unoptimised),
    /// so it runs on the blocking pool, never on an async worker; and
    /// concurrent loads of one digest compile it once.
    pub async fn load(&self, bytes: &[u8]) -> Result<Arc<Module>, LoadError> {
        if !bytes.starts_with(b"\0asm") {
            return Err(LoadError::NotWasm);
        }
        if bytes.get(4..8) == Some(&[1, 0, 0, 0]) {
            return Err(LoadError::CoreModule);
        }
        let digest = Digest::of(bytes);
        if let Some(m) = self.loaded(&digest) {
            return Ok(m);
        }
        let gate = self
            .loading
            .lock()
            .expect("loading map poisoned")
            .entry(digest)
            .or_default()
            .clone();
        let result = {
            let _turn = gate.lock().await;
            match self.loaded(&digest) {
                Some(m) => Ok(m),
                None => self.load_new(digest, bytes).await,
            }
        };
        let mut loading = self.loading.lock().expect("loading map poisoned");
        // The last waiter out removes the gate (the map holds one count).
        if Arc::strong_count(&gate) <= 2 {
            loading.remove(&digest);
        }
        result
    }

    async fn load_new(&self, digest: Digest, bytes: &[u8]) -> Result<Arc<Module>, LoadError> {
        // Imports and exports are judged from the component's sections
        // (wasmparser, nested module bodies skipped) before anything is
        // compiled, with the same rules and in the same order as after:
        // compiling a large component only to refuse it took minutes of
        // CPU. Bytes that do not parse are left to the compiler's message.
        if let Ok((imports, exports)) = steward_contract::imports::names(bytes) {
            for name in &imports {
                classify_import(name, None)?;
            }
            let version = check_plugin_export(&exports)?;
            for name in &imports {
                classify_import(name, Some(version))?;
            }
        }
        let engine = self.engine.clone();
        let cache = self.cache.clone();
        let owned = bytes.to_vec();
        let compile =
            tokio::task::spawn_blocking(move || cache.load_or_compile(&engine, &digest, &owned));
        // The caller gets an answer in bounded time; a compile that takes
        // longer is refused (its thread finishes on its own: Cranelift
        // cannot be interrupted).
        let (component, source) = tokio::time::timeout(self.compile_timeout, compile)
            .await
            .map_err(|_| {
                LoadError::Invalid(format!(
                    "compiling the component took longer than {:?}; it is refused",
                    self.compile_timeout
                ))
            })?
            .map_err(|e| LoadError::Host(format!("the compile task failed: {e}")))?
            .map_err(|e| LoadError::Invalid(format!("{e:#}")))?;
        if source == ArtifactSource::Compiled {
            self.compilations.fetch_add(1, Ordering::Relaxed);
        }
        let ty = component.component_type();
        let exports: Vec<String> = ty
            .exports(&self.engine)
            .map(|(n, _)| n.to_string())
            .collect();
        for (name, _) in ty.imports(&self.engine) {
            classify_import(name, None)?;
        }
        let wit_version = check_plugin_export(&exports)?;
        let mut requested = BTreeSet::new();
        let mut denied_imports = Vec::new();
        for (name, _) in ty.imports(&self.engine) {
            if steward_contract::imports::classify(name)
                == Ok(steward_contract::imports::ImportClass::WasiDenied)
            {
                denied_imports.push(name.to_string());
            }
            if let Some(cap) = classify_import(name, Some(wit_version))? {
                requested.insert(cap);
            }
        }
        let mismatch = |e: wasmtime::Error| LoadError::Mismatch {
            version: wit_version,
            reason: format!("{e:#}"),
        };
        let linked = self.linker.instantiate_pre(&component).map_err(mismatch)?;
        let pre = if wit_version == PACKAGE_VERSION {
            PluginPre::Current(current::PluginComponentPre::new(linked).map_err(mismatch)?)
        } else {
            PluginPre::V0_1(v0_1::PluginComponentPre::new(linked).map_err(mismatch)?)
        };
        let module = Arc::new(Module {
            digest,
            source,
            requested: requested.into_iter().collect(),
            wit_version,
            denied_imports,
            descriptor: std::sync::OnceLock::new(),
            pre,
        });
        tracing::info!(%digest, ?source, requested = ?module.requested, "module loaded");
        self.modules
            .lock()
            .expect("module map poisoned")
            .insert(digest, module.clone());
        Ok(module)
    }

    /// Calls `describe`. No capability is reachable: a call traps.
    pub async fn describe(&self, module: &Module) -> RunReport<Descriptor> {
        let report = self
            .invoke(module, "describe".into(), self.limits, None, Call::Describe)
            .await;
        let report = map_report(report, |o| match o {
            Output::Descriptor(d) => Some(d),
            _ => None,
        });
        if let Ok(d) = &report.result {
            let _ = module.descriptor.set(d.clone());
        }
        report
    }

    /// Runs `check`.
    pub async fn check(&self, module: &Module, spec: RunSpec) -> RunReport<Vec<Finding>> {
        let report = self.run(module, spec, Call::Check).await;
        map_report(report, |o| match o {
            Output::Findings(f) => Some(f),
            _ => None,
        })
    }

    /// Runs `remediate` on `findings`: the changes it made and the
    /// findings it could not fix. Refused before anything runs when a
    /// parameter the plugin requires to remediate is missing.
    pub async fn remediate(
        &self,
        module: &Module,
        spec: RunSpec,
        findings: Vec<Finding>,
    ) -> RunReport<Remediation> {
        let descriptor = match module.descriptor.get() {
            Some(d) => Ok(d.clone()),
            None => self.describe(module).await.result,
        };
        if let Err(e) = descriptor.and_then(|d| Ok(check_remediation(&d, &spec.params)?)) {
            return RunReport {
                result: Err(e),
                log: Vec::new(),
                log_dropped: 0,
                elapsed: Duration::ZERO,
                memory_bytes: 0,
            };
        }
        // In plan mode nothing was changed, whatever the plugin says: every
        // change it returns is reported as planned.
        let plan = spec.mode == RunMode::Plan;
        let report = self.run(module, spec, Call::Remediate(findings)).await;
        map_report(report, |o| match o {
            Output::Remediation(mut r) => {
                if plan {
                    for change in &mut r.changes {
                        change.outcome = crate::bindings::types::Outcome::Planned;
                    }
                }
                Some(r)
            }
            _ => None,
        })
    }

    async fn run(&self, module: &Module, spec: RunSpec, call: Call) -> RunReport<Output> {
        if let Err(e) = module.authorize(&spec.grants) {
            return RunReport {
                result: Err(e.into()),
                log: Vec::new(),
                log_dropped: 0,
                elapsed: Duration::ZERO,
                memory_bytes: 0,
            };
        }
        let mut limits = spec.limits.unwrap_or(self.limits);
        limits.memory_bytes = limits.memory_bytes.min(self.max_memory_bytes);
        let scope = RunScope {
            run_id: spec.run_id,
            // Only `remediate` may change the device; `check` never does, in
            // any mode (`HostState::mutate` refuses its mutating calls).
            may_mutate: matches!(call, Call::Remediate(_)),
            mode: spec.mode,
            params: spec.params,
            grants: spec.grants,
            device: spec.device,
            audit: spec.audit,
            journal: spec.journal,
        };
        self.invoke(module, spec.plugin, limits, Some(scope), call)
            .await
    }

    async fn invoke(
        &self,
        module: &Module,
        plugin: String,
        limits: Limits,
        scope: Option<RunScope>,
        call: Call,
    ) -> RunReport<Output> {
        let run_id = scope.as_ref().map(|s| s.run_id.clone()).unwrap_or_default();
        let span = tracing::info_span!("run", %run_id, %plugin, digest = %module.digest);
        let _permit = match self.permits.acquire().await {
            Ok(p) => p,
            Err(_) => {
                return RunReport {
                    result: Err(RunError::Host("the runtime is shutting down".into())),
                    log: Vec::new(),
                    log_dropped: 0,
                    elapsed: Duration::ZERO,
                    memory_bytes: 0,
                };
            }
        };
        async move {
            let started = Instant::now();
            let mut store = Store::new(
                &self.engine,
                HostState::new(limits, plugin, module.digest, scope),
            );
            store.limiter(|s| &mut s.store_limits);
            let budget = limits.cpu_ticks();
            store.set_epoch_deadline(1);
            // Each epoch tick spent in guest code counts against the CPU
            // budget; under budget the guest yields so other runs (and the
            // wall-clock timeout) get the thread.
            store.epoch_deadline_callback(move |mut ctx| {
                let state = ctx.data_mut();
                state.cpu_ticks += 1;
                if state.cpu_ticks >= budget {
                    state.cpu_exhausted = true;
                    Ok(UpdateDeadline::Interrupt)
                } else {
                    Ok(UpdateDeadline::Yield(1))
                }
            });

            let outcome =
                tokio::time::timeout(limits.wall_time, call_plugin(&module.pre, &mut store, call))
                    .await;
            let elapsed = started.elapsed();
            let state = store.data_mut();
            let stderr = state.stderr.contents();
            let result = match outcome {
                Err(_) => Err(RunError::WallDeadline(limits.wall_time)),
                Ok(Err(trap)) => Err(classify_trap(trap, state, &stderr)),
                Ok(Ok(Err(plugin_error))) => Err(RunError::Plugin(cap_plugin_error(plugin_error))),
                Ok(Ok(Ok(output))) => check_output(&limits, output),
            };
            drain_pipe(state, &state.stdout.contents(), LogSource::Stdout);
            drain_pipe(state, &stderr, LogSource::Stderr);
            if let Err(err) = &result {
                tracing::info!(%err, code = err.code(), "plugin run failed");
            }
            let log = std::mem::take(&mut state.log);
            RunReport {
                result,
                log: log.lines,
                log_dropped: log.dropped,
                elapsed,
                memory_bytes: state.store_limits.memory_bytes(),
            }
        }
        .instrument(span)
        .await
    }
}

async fn call_plugin(
    pre: &PluginPre,
    store: &mut Store<HostState>,
    call: Call,
) -> wasmtime::Result<Result<Output, crate::bindings::types::PluginError>> {
    match pre {
        PluginPre::Current(pre) => {
            let plugin = pre.instantiate_async(&mut *store).await?;
            let api = plugin.steward_plugin_plugin();
            Ok(match call {
                Call::Describe => Ok(Output::Descriptor(api.call_describe(&mut *store).await?)),
                Call::Check => api.call_check(&mut *store).await?.map(Output::Findings),
                Call::Remediate(findings) => api
                    .call_remediate(&mut *store, &findings)
                    .await?
                    .map(Output::Remediation),
            })
        }
        // The same calls in 0.1.0's types, converted in and out.
        PluginPre::V0_1(pre) => {
            use compat::convert;
            let plugin = pre.instantiate_async(&mut *store).await?;
            let api = plugin.steward_plugin_plugin();
            Ok(match call {
                Call::Describe => Ok(Output::Descriptor(compat::descriptor(
                    api.call_describe(&mut *store).await?,
                )?)),
                Call::Check => match api.call_check(&mut *store).await? {
                    Ok(findings) => Ok(Output::Findings(convert("check", findings)?)),
                    Err(e) => Err(convert("check", e)?),
                },
                Call::Remediate(findings) => {
                    let findings: Vec<v0_1::steward::plugin::types::Finding> =
                        convert("remediate", findings)?;
                    // 0.1.0 returned changes only: no failures.
                    match api.call_remediate(&mut *store, &findings).await? {
                        Ok(changes) => Ok(Output::Remediation(Remediation {
                            changes: convert("remediate", changes)?,
                            failures: Vec::new(),
                        })),
                        Err(e) => Err(convert("remediate", e)?),
                    }
                }
            })
        }
    }
}

fn map_report<T>(
    report: RunReport<Output>,
    pick: impl FnOnce(Output) -> Option<T>,
) -> RunReport<T> {
    RunReport {
        result: report.result.and_then(|o| {
            pick(o).ok_or_else(|| {
                RunError::Host("the plugin call returned the wrong kind of output".into())
            })
        }),
        log: report.log,
        log_dropped: report.log_dropped,
        elapsed: report.elapsed,
        memory_bytes: report.memory_bytes,
    }
}

/// The WIT version of the plugin export in `exports`: `NotAPlugin` unless
/// it holds the plugin export of a version this host runs.
fn check_plugin_export(exports: &[String]) -> Result<&'static str, LoadError> {
    for version in steward_contract::imports::WIT_VERSIONS {
        if exports.contains(&format!("{PACKAGE}/plugin@{version}")) {
            return Ok(version);
        }
    }
    Err(LoadError::NotAPlugin {
        exports: if exports.is_empty() {
            "nothing".into()
        } else {
            exports.join(", ")
        },
    })
}

/// Decides whether an import is allowed and which capability it requests;
/// with `plugin`, also that it names the version the plugin exports
/// (`steward:plugin/plugin@<plugin>`).
fn classify_import(name: &str, plugin: Option<&str>) -> Result<Option<Capability>, LoadError> {
    use steward_contract::imports::{ImportClass, classify};
    let (capability, version) = match classify(name) {
        Ok(ImportClass::Wasi | ImportClass::WasiDenied) => return Ok(None),
        Ok(ImportClass::Types(version)) => (None, version),
        Ok(ImportClass::Capability(capability, version)) => (Some(capability), version),
        Err(refused) => {
            return Err(LoadError::UnknownImport {
                import: refused.import,
                reason: refused.reason,
            });
        }
    };
    if !steward_contract::imports::supported_version(version) {
        return Err(LoadError::UnknownImport {
            import: name.to_string(),
            reason: format!(
                "but this host runs `{PACKAGE}` {}; rebuild the plugin against a steward-sdk for one of them",
                steward_contract::imports::WIT_VERSIONS.join(" and ")
            ),
        });
    }
    if let Some(plugin) = plugin.filter(|p| *p != version) {
        return Err(LoadError::UnknownImport {
            import: name.to_string(),
            reason: format!(
                "but the plugin exports `{PACKAGE}/plugin@{plugin}`; every Steward import and the export must name one version"
            ),
        });
    }
    Ok(capability)
}

/// Turns a trap into the error a human reads.
fn classify_trap(err: wasmtime::Error, state: &HostState, stderr: &[u8]) -> RunError {
    if state.cpu_exhausted {
        return RunError::CpuDeadline(state.limits.cpu_time);
    }
    let message = format!("{err:#}");
    if message.contains("forcing trap when growing memory") {
        return RunError::MemoryLimit(state.limits.memory_bytes);
    }
    match err.downcast_ref::<Trap>() {
        Some(Trap::StackOverflow) => RunError::StackOverflow,
        Some(Trap::Interrupt) => RunError::CpuDeadline(state.limits.cpu_time),
        Some(Trap::UnreachableCodeReached) => match panic_message(stderr) {
            Some(m) => RunError::Panicked(m),
            None => RunError::Trap("unreachable code reached".into()),
        },
        Some(Trap::MemoryOutOfBounds) => RunError::Trap(
            "out of bounds memory access (a bug in the plugin, or its shadow stack in linear memory overflowed)".into(),
        ),
        Some(trap) => RunError::Trap(trap.to_string()),
        // The cause first: wasmtime puts the wasm backtrace outermost,
        // which is noise to the reader of a job's error.
        None => RunError::Trap(err.root_cause().to_string()),
    }
}

/// Extracts the message of a Rust panic from the guest's stderr.
fn panic_message(stderr: &[u8]) -> Option<String> {
    let text = String::from_utf8_lossy(stderr);
    let at = text.find("panicked at ")?;
    let after = &text[at..];
    // Since Rust 1.73: "panicked at src/lib.rs:1:2:\n<message>\nnote: ...".
    let (location, rest) = after.split_once('\n')?;
    let message = rest.split("\nnote:").next().unwrap_or(rest).trim();
    let location = location
        .trim_start_matches("panicked at ")
        .trim_end_matches(':');
    Some(format!("{message} (at {location})"))
}

fn drain_pipe(state: &mut HostState, bytes: &[u8], source: LogSource) {
    let text = String::from_utf8_lossy(bytes);
    let level = if source == LogSource::Stderr {
        "warn"
    } else {
        "info"
    };
    for line in text.lines().filter(|l| !l.trim().is_empty()) {
        let limits = state.limits;
        state.log.push(
            &limits,
            LogLine {
                level,
                message: line.to_string(),
                fields: Vec::new(),
                source,
            },
        );
    }
}

fn text_size_of_findings(findings: &[Finding]) -> usize {
    findings
        .iter()
        .map(|f| {
            f.id.len()
                + f.summary.len()
                + f.detail.len()
                + f.resource.len()
                + f.fields
                    .iter()
                    .map(|x| x.key.len() + x.value.len())
                    .sum::<usize>()
        })
        .sum()
}

fn text_size_of_remediation(r: &Remediation) -> usize {
    r.changes
        .iter()
        .map(|c| {
            c.kind.len()
                + c.target.len()
                + c.description.len()
                + c.before.as_ref().map_or(0, String::len)
                + c.after.as_ref().map_or(0, String::len)
        })
        .sum::<usize>()
        + r.failures
            .iter()
            .map(|f| f.finding_id.len() + f.error.len())
            .sum::<usize>()
}

fn check_output(limits: &Limits, output: Output) -> Result<Output, RunError> {
    let (what, count, limit, bytes) = match &output {
        Output::Descriptor(d) => {
            check_descriptor(d)?;
            return Ok(output);
        }
        Output::Findings(f) => (
            "findings",
            f.len(),
            limits.max_findings,
            text_size_of_findings(f),
        ),
        Output::Remediation(r) => (
            "changes and failures",
            r.changes.len() + r.failures.len(),
            limits.max_changes,
            text_size_of_remediation(r),
        ),
    };
    if count > limit {
        return Err(RunError::OutputLimit {
            what,
            actual: count,
            limit,
        });
    }
    if bytes > limits.max_output_bytes {
        return Err(RunError::OutputLimit {
            what: "bytes of text",
            actual: bytes,
            limit: limits.max_output_bytes,
        });
    }
    let mut output = output;
    match &mut output {
        Output::Descriptor(_) => {}
        Output::Findings(findings) => {
            check_findings(findings)?;
            findings.iter_mut().for_each(cap_finding);
        }
        Output::Remediation(r) => {
            check_changes(&r.changes)?;
            r.changes.iter_mut().for_each(cap_change);
            r.failures.iter_mut().for_each(cap_failure);
        }
    }
    Ok(output)
}

/// The longest one-line text of a finding or a change (summary, resource,
/// target), in bytes; longer is cut and marked.
pub const MAX_LINE_TEXT_BYTES: usize = 1024;

/// The longest free text of a finding or a change (detail, description,
/// before, after, a field's value), in bytes; longer is cut and marked.
pub const MAX_LONG_TEXT_BYTES: usize = 16 * 1024;

/// The most structured fields of one finding; later ones are dropped.
pub const MAX_FINDING_FIELDS: usize = 64;

/// Each text of a finding cut to its cap at the runtime boundary, so no
/// store row, API answer, log or terminal holds more of it (the totals
/// above bound a whole output; these bound each field).
fn cap_finding(f: &mut Finding) {
    cap_text(&mut f.summary, MAX_LINE_TEXT_BYTES);
    cap_text(&mut f.resource, MAX_LINE_TEXT_BYTES);
    cap_text(&mut f.detail, MAX_LONG_TEXT_BYTES);
    f.fields.truncate(MAX_FINDING_FIELDS);
    for field in &mut f.fields {
        cap_text(&mut field.key, 256);
        cap_text(&mut field.value, MAX_LONG_TEXT_BYTES);
    }
}

/// A failure's texts cut to their caps, as [`cap_finding`].
fn cap_failure(f: &mut Failure) {
    cap_text(
        &mut f.finding_id,
        steward_contract::output::MAX_FINDING_ID_BYTES,
    );
    cap_text(&mut f.error, MAX_PLUGIN_ERROR_BYTES);
}

/// Each text of a change cut to its cap, as [`cap_finding`].
fn cap_change(c: &mut Change) {
    cap_text(&mut c.target, MAX_LINE_TEXT_BYTES);
    cap_text(&mut c.description, MAX_LONG_TEXT_BYTES);
    for text in [&mut c.before, &mut c.after].into_iter().flatten() {
        cap_text(text, MAX_LONG_TEXT_BYTES);
    }
}

/// The longest a component's compilation may take before loading it is
/// refused (the first-party plugins compile in about a second here).
pub const MAX_COMPILE_TIME: std::time::Duration = std::time::Duration::from_secs(120);

/// The longest error text a plugin may report, in bytes; longer is cut
/// (on a character boundary) and marked, before any log, store or
/// terminal sees it.
pub const MAX_PLUGIN_ERROR_BYTES: usize = 4096;

/// Cuts `text` to at most `max` bytes (on a character boundary) and
/// marks how much was cut.
pub(crate) fn cap_text(text: &mut String, max: usize) {
    if text.len() > max {
        let mut end = max;
        while !text.is_char_boundary(end) {
            end -= 1;
        }
        let dropped = text.len() - end;
        text.truncate(end);
        text.push_str(&format!("… ({dropped} more bytes cut)"));
    }
}

fn cap_plugin_error(mut e: PluginError) -> PluginError {
    match &mut e {
        PluginError::InvalidParam(p) => {
            cap_text(&mut p.name, 256);
            cap_text(&mut p.message, MAX_PLUGIN_ERROR_BYTES);
        }
        PluginError::Host(
            HostError::Denied(m)
            | HostError::NotFound(m)
            | HostError::Unavailable(m)
            | HostError::InvalidArgument(m)
            | HostError::Failed(m)
            | HostError::LimitExceeded(m),
        )
        | PluginError::Unsupported(m)
        | PluginError::Failed(m) => {
            cap_text(m, MAX_PLUGIN_ERROR_BYTES);
        }
    }
    e
}

/// The most parameters a plugin may describe.
pub const MAX_PARAMS: usize = 64;

/// The longest summary or parameter description, in bytes.
pub const MAX_DESCRIPTION_BYTES: usize = 1024;

/// The rules for what `describe` returns: a kebab-case name (as a registry
/// module name), a semver version, bounded printable texts, at most
/// [`MAX_PARAMS`] parameters with unique kebab-case names and defaults of
/// their declared type. A descriptor that breaks them is refused at load
/// (`plugin inspect`, install), so no name like `../../etc/x` or a 2 MiB
/// summary reaches a store, a log or a terminal.
fn check_descriptor(d: &Descriptor) -> Result<(), RunError> {
    use crate::bindings::types::{ParamType, ParamValue};
    let bad = |why: String| Err(RunError::InvalidOutput(format!("describe: {why}")));
    // What the plugin wrote, cut and escaped, for the refusal.
    let shown = |text: &str| -> String {
        text.chars()
            .take(64)
            .collect::<String>()
            .escape_debug()
            .to_string()
    };
    if steward_contract::manifest::check_name_part("name", &d.name).is_err() {
        return bad(format!(
            "the name `{}` must be 1 to 64 lowercase letters, digits and `-`",
            shown(&d.name)
        ));
    }
    if d.version.len() > 64 || semver::Version::parse(&d.version).is_err() {
        return bad(format!(
            "the version `{}` is not a semver version",
            shown(&d.version)
        ));
    }
    let text_ok = |t: &str| t.len() <= MAX_DESCRIPTION_BYTES && !t.chars().any(char::is_control);
    if !text_ok(&d.summary) {
        return bad(format!(
            "the summary must be at most {MAX_DESCRIPTION_BYTES} bytes with no control characters"
        ));
    }
    if d.params.len() > MAX_PARAMS {
        return bad(format!(
            "{} parameters, more than {MAX_PARAMS}",
            d.params.len()
        ));
    }
    let mut names = std::collections::HashSet::new();
    for (i, p) in d.params.iter().enumerate() {
        if steward_contract::manifest::check_name_part("parameter name", &p.name).is_err() {
            return bad(format!(
                "params[{i}]: the name `{}` must be 1 to 64 lowercase letters, digits and `-`",
                shown(&p.name)
            ));
        }
        if !names.insert(p.name.as_str()) {
            return bad(format!(
                "params[{i}]: `{}` is described twice",
                shown(&p.name)
            ));
        }
        if !text_ok(&p.description) {
            return bad(format!(
                "params[{i}]: the description must be at most {MAX_DESCRIPTION_BYTES} bytes with no control characters"
            ));
        }
        let fits = matches!(
            (&p.default, p.type_),
            (None, _)
                | (Some(ParamValue::Boolean(_)), ParamType::Boolean)
                | (Some(ParamValue::Integer(_)), ParamType::Integer)
                | (Some(ParamValue::Float(_)), ParamType::Float)
                | (Some(ParamValue::Text(_)), ParamType::Text)
                | (Some(ParamValue::TextList(_)), ParamType::TextList)
        );
        if !fits {
            return bad(format!(
                "params[{i}]: the default of `{}` is not of its declared type",
                shown(&p.name)
            ));
        }
        if let Some(pattern) = &p.pattern {
            if !matches!(p.type_, ParamType::Text | ParamType::TextList) {
                return bad(format!(
                    "params[{i}]: `{}` has a pattern but is not text",
                    shown(&p.name)
                ));
            }
            if let Err(e) = params::compile_pattern(pattern) {
                return bad(format!(
                    "params[{i}]: the pattern of `{}` is not a usable regular expression: {}",
                    shown(&p.name),
                    shown(&e)
                ));
            }
        }
    }
    Ok(())
}

pub use steward_contract::output::{MAX_CHANGE_KIND_BYTES, MAX_FINDING_ID_BYTES};

/// The output rules (`steward_contract::output`): one plugin's bad output
/// fails its own job, before anything is stored beside other jobs.
fn check_findings(findings: &[Finding]) -> Result<(), RunError> {
    steward_contract::output::check_finding_ids(findings.iter().map(|f| f.id.as_str()))
        .map_err(RunError::InvalidOutput)
}

/// The output rules for `change.kind` (`steward_contract::output`).
fn check_changes(changes: &[Change]) -> Result<(), RunError> {
    steward_contract::output::check_change_kinds(changes.iter().map(|c| c.kind.as_str()))
        .map_err(RunError::InvalidOutput)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn panic_message_is_extracted_from_stderr() {
        let stderr = b"\nthread '<unnamed>' panicked at src/lib.rs:52:24:\nhostile plugin gave up\nnote: run with `RUST_BACKTRACE=1`\n";
        assert_eq!(
            panic_message(stderr).unwrap(),
            "hostile plugin gave up (at src/lib.rs:52:24)"
        );
        assert_eq!(panic_message(b"nothing here"), None);
    }

    #[test]
    fn imports_are_classified_and_refused_with_reasons() {
        assert_eq!(
            classify_import("steward:plugin/packages@0.1.0", Some("0.1.0")).unwrap(),
            Some(Capability::Packages)
        );
        assert_eq!(
            classify_import("steward:plugin/backups@0.2.0", Some("0.2.0")).unwrap(),
            Some(Capability::Backups)
        );
        assert_eq!(
            classify_import("steward:plugin/types@0.1.0", Some("0.1.0")).unwrap(),
            None
        );
        assert_eq!(
            classify_import("wasi:io/streams@0.2.6", Some("0.2.0")).unwrap(),
            None
        );
        let e = classify_import("steward:plugin/packages@0.9.0", Some("0.9.0")).unwrap_err();
        assert!(
            e.to_string()
                .contains("runs `steward:plugin` 0.1.0 and 0.2.0"),
            "{e}"
        );
        let e = classify_import("steward:plugin/packages@0.2.0", Some("0.1.0")).unwrap_err();
        assert!(e.to_string().contains("must name one version"), "{e}");
        let e = classify_import("steward:plugin/backups@0.1.0", Some("0.1.0")).unwrap_err();
        assert!(
            e.to_string().contains("`steward:plugin@0.2.0` and later"),
            "{e}"
        );
        // Linked, every operation denied at run time (`HostState::new`).
        assert_eq!(
            classify_import("wasi:sockets/tcp@0.2.0", Some("0.2.0")).unwrap(),
            None
        );
        let e = classify_import("wasi:http/outgoing-handler@0.2.0", Some("0.2.0")).unwrap_err();
        assert!(e.to_string().contains("no network access"), "{e}");
        let e = classify_import("acme:evil/exfiltrate@1.0.0", Some("0.2.0")).unwrap_err();
        assert!(
            e.to_string().contains("`acme:evil/exfiltrate@1.0.0`"),
            "{e}"
        );
    }
}
