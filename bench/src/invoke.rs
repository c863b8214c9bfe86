//! Per-invocation cost: instantiate + `check` of a trivial plugin, through
//! the Steward runtime and through bare wasmtime (same component, same
//! engine settings, `InstancePre` + pooling), measured in one run; then the
//! same plugin written in Python (componentize-py) against the Rust one,
//! per invocation and in linear memory.
//!
//! Run with `cargo run --release -p steward-bench --bin invoke`.

use std::sync::Arc;
use std::time::{Duration, Instant};

use steward_runtime::audit::MemoryAudit;
use steward_runtime::bindings::current::PluginComponentPre;
use steward_runtime::bindings::types::RunMode;
use steward_runtime::capability::Grants;
use steward_runtime::device::simulated::{Fixture, Simulated};
use steward_runtime::{EngineSettings, Limits, Params, RunSpec, Runtime, RuntimeConfig};
use wasmtime::component::{Component, Linker, ResourceTable};
use wasmtime::{
    Config, Enabled, Engine, InstanceAllocationStrategy, PoolingAllocationConfig, Store,
};
use wasmtime_wasi::{WasiCtx, WasiCtxView, WasiView};

const WARMUP: usize = 2_000;
const ITERATIONS: usize = 20_000;

struct Bare {
    wasi: WasiCtx,
    table: ResourceTable,
}

impl WasiView for Bare {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView {
            ctx: &mut self.wasi,
            table: &mut self.table,
        }
    }
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    sorted[((sorted.len() as f64 - 1.0) * p).round() as usize]
}

fn summarise(name: &str, mut samples: Vec<Duration>) -> (Duration, Duration) {
    samples.sort();
    let (p50, p99) = (percentile(&samples, 0.50), percentile(&samples, 0.99));
    println!(
        "{name:<10} p50 {:>7.1} µs   p99 {:>7.1} µs   ({} invocations)",
        p50.as_secs_f64() * 1e6,
        p99.as_secs_f64() * 1e6,
        samples.len()
    );
    (p50, p99)
}

fn fixture() -> Fixture {
    toml::from_str(
        r#"
        [facts]
        id = "bench-1"
        name = "bench"
        tenant_id = "bench"
        tags = []
        disks = []
        batteries = []
        [facts.hardware]
        [facts.admin]
        "#,
    )
    .expect("bench fixture parses")
}

async fn steward(bytes: &[u8]) -> anyhow::Result<Vec<Duration>> {
    steward_n(bytes, WARMUP, ITERATIONS).await
}

async fn steward_n(
    bytes: &[u8],
    warmup: usize,
    iterations: usize,
) -> anyhow::Result<Vec<Duration>> {
    Ok(steward_run(bytes, warmup, iterations).await?.0)
}

/// Samples of `iterations` invocations after `warmup`, and the linear
/// memory one instance held (`RunReport::memory_bytes`).
async fn steward_run(
    bytes: &[u8],
    warmup: usize,
    iterations: usize,
) -> anyhow::Result<(Vec<Duration>, usize)> {
    let cache = tempfile::tempdir()?;
    let runtime = Runtime::new(RuntimeConfig {
        cache_dir: cache.path().to_path_buf(),
        engine: EngineSettings::default(),
        limits: Limits::default(),
    })?;
    let module = runtime.load(bytes).await?;
    let device = Arc::new(Simulated::new(fixture()).device());
    let spec = RunSpec {
        run_id: "bench".into(),
        plugin: "trivial".into(),
        mode: RunMode::Apply,
        params: Params::default(),
        grants: Grants::none(),
        device,
        audit: Arc::new(MemoryAudit::default()),
        limits: None,
        journal: None,
    };
    let mut samples = Vec::with_capacity(iterations);
    let mut memory = 0;
    for i in 0..warmup + iterations {
        let start = Instant::now();
        let report = runtime.check(&module, spec.clone()).await;
        let elapsed = start.elapsed();
        memory = report.memory_bytes;
        anyhow::ensure!(
            report.result?.len() == 1,
            "trivial plugin returns one finding"
        );
        if i >= warmup {
            samples.push(elapsed);
        }
    }
    Ok((samples, memory))
}

async fn bare(bytes: &[u8]) -> anyhow::Result<Vec<Duration>> {
    let mut config = Config::new();
    config.wasm_component_model(true);
    config.concurrency_support(false);
    let mut pool = PoolingAllocationConfig::new();
    pool.total_component_instances(64)
        .total_core_instances(512)
        .total_memories(256)
        .total_tables(256)
        .total_stacks(64)
        .linear_memory_keep_resident(2 << 20)
        .table_keep_resident(64 << 10)
        .pagemap_scan(Enabled::Auto);
    config.allocation_strategy(InstanceAllocationStrategy::Pooling(pool));
    let engine = Engine::new(&config).map_err(|e| anyhow::anyhow!("{e}"))?;
    let component = Component::new(&engine, bytes).map_err(|e| anyhow::anyhow!("{e}"))?;
    let mut linker: Linker<Bare> = Linker::new(&engine);
    wasmtime_wasi::p2::add_to_linker_async(&mut linker).map_err(|e| anyhow::anyhow!("{e}"))?;
    linker
        .define_unknown_imports_as_traps(&component)
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    let pre = PluginComponentPre::new(
        linker
            .instantiate_pre(&component)
            .map_err(|e| anyhow::anyhow!("{e}"))?,
    )
    .map_err(|e| anyhow::anyhow!("{e}"))?;
    let mut samples = Vec::with_capacity(ITERATIONS);
    for i in 0..WARMUP + ITERATIONS {
        let start = Instant::now();
        let mut store = Store::new(
            &engine,
            Bare {
                wasi: WasiCtx::builder().build(),
                table: ResourceTable::new(),
            },
        );
        let plugin = pre
            .instantiate_async(&mut store)
            .await
            .map_err(|e| anyhow::anyhow!("{e}"))?;
        let findings = plugin
            .steward_plugin_plugin()
            .call_check(&mut store)
            .await
            .map_err(|e| anyhow::anyhow!("{e}"))?;
        drop(store);
        let elapsed = start.elapsed();
        anyhow::ensure!(findings.map(|f| f.len()).ok() == Some(1), "one finding");
        if i >= WARMUP {
            samples.push(elapsed);
        }
    }
    Ok(samples)
}

fn main() -> anyhow::Result<()> {
    if std::env::var_os("RUST_BACKTRACE").is_some() {
        eprintln!(
            "warning: RUST_BACKTRACE is set; wasmtime then captures a backtrace on every store drop (~12 µs). Run with `env -u RUST_BACKTRACE`."
        );
    }
    let path = steward_tests::component("guest-trivial");
    let bytes = std::fs::read(&path)?;
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    println!(
        "instantiate + check of {} ({} KiB)",
        path.display(),
        bytes.len() / 1024
    );
    // Interleave the two so machine noise hits both alike.
    let mut bare_all = Vec::new();
    let mut steward_all = Vec::new();
    for _ in 0..2 {
        bare_all.extend(rt.block_on(bare(&bytes))?);
        steward_all.extend(rt.block_on(steward(&bytes))?);
    }
    let (b50, b99) = summarise("bare", bare_all);
    let (s50, s99) = summarise("steward", steward_all);
    println!(
        "ratio      p50 {:.2}x   p99 {:.2}x   (steward / bare; target p50 ≤ 1.5x and steward p50 ≤ 25 µs)",
        s50.as_secs_f64() / b50.as_secs_f64(),
        s99.as_secs_f64() / b99.as_secs_f64()
    );

    // The same plugin in Python, through the Steward runtime, against the
    // Rust one measured just above (fewer invocations: each costs more).
    if std::env::args().any(|a| a == "--no-python") {
        return Ok(());
    }
    let py_path = steward_tests::python_component("tests/guests-py/trivial");
    let py = std::fs::read(&py_path)?;
    println!(
        "python: instantiate + check of {} ({} KiB)",
        py_path.display(),
        py.len() / 1024
    );
    let mut py_all = Vec::new();
    let mut rust_all = Vec::new();
    let (mut rust_mem, mut py_mem) = (0, 0);
    for _ in 0..2 {
        let (samples, memory) = rt.block_on(steward_run(&bytes, 200, 1_000))?;
        rust_all.extend(samples);
        rust_mem = memory;
        let (samples, memory) = rt.block_on(steward_run(&py, 50, 1_000))?;
        py_all.extend(samples);
        py_mem = memory;
    }
    let (r50, r99) = summarise("rust", rust_all);
    let (p50, p99) = summarise("python", py_all);
    println!(
        "ratio      p50 {:.1}x   p99 {:.1}x   (python / rust)",
        p50.as_secs_f64() / r50.as_secs_f64(),
        p99.as_secs_f64() / r99.as_secs_f64()
    );
    println!(
        "memory     rust {:.1} MiB   python {:.1} MiB   ({:.1}x; linear memory after instantiate + check)",
        rust_mem as f64 / (1 << 20) as f64,
        py_mem as f64 / (1 << 20) as f64,
        py_mem as f64 / rust_mem.max(1) as f64
    );
    Ok(())
}
