//! The process's one wasmtime `Engine`: component model, epoch interruption,
//! and a pooling allocator sized for the expected concurrency, falling back
//! to on-demand allocation where the address space cannot hold the pool.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;

use serde::Serialize;
use wasmtime::{Config, Enabled, Engine, InstanceAllocationStrategy, PoolingAllocationConfig};

use super::limits::EPOCH_TICK;

/// How instances get their memory.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Allocator {
    /// Slots reserved up front and reused, kept resident between uses.
    Pooling,
    /// mmap per instance; slower, but needs no reservation.
    OnDemand,
}

/// Engine settings fixed for the life of the process.
#[derive(Debug, Clone, Copy)]
pub struct EngineSettings {
    /// Plugin instances that may be live at once; sizes the pool and the
    /// instantiation semaphore.
    pub max_instances: u32,
    /// The largest memory any plugin may have (each run's cap is at most this).
    pub max_memory_bytes: usize,
    /// Try the pooling allocator first.
    pub pooling: bool,
}

impl Default for EngineSettings {
    fn default() -> Self {
        Self {
            max_instances: 64,
            max_memory_bytes: 256 << 20,
            pooling: true,
        }
    }
}

fn base_config() -> Config {
    let mut config = Config::new();
    config.wasm_component_model(true);
    config.epoch_interruption(true);
    // Component-model async is not used by plugins, and it costs ~4 µs per
    // invocation when on (shared/WASMTIME-NOTES.md).
    config.concurrency_support(false);
    config.max_wasm_stack(512 << 10);
    config
}

/// The most core instances one plugin component may hold; wasmtime's
/// default (20) is below what componentize-py's components hold.
pub const MAX_CORE_INSTANCES_PER_COMPONENT: u32 = 64;

/// Builds the engine, pooling if asked and possible.
pub fn build(settings: &EngineSettings) -> wasmtime::Result<(Engine, Allocator)> {
    if settings.pooling {
        let mut config = base_config();
        let n = settings.max_instances;
        let mut pool = PoolingAllocationConfig::new();
        // A Rust guest uses about three core instances, one or two memories
        // and a table or two; a Python guest (componentize-py: CPython,
        // wasi-libc, adapters) about a dozen core instances. Per component
        // the pool allows what such toolchains make by default, in total
        // headroom for a mix.
        pool.total_component_instances(n)
            .total_core_instances(n * 16)
            .total_memories(n * 4)
            .total_tables(n * 8)
            .max_core_instances_per_component(MAX_CORE_INSTANCES_PER_COMPONENT)
            .max_memories_per_component(8)
            .max_tables_per_component(64)
            .total_stacks(n)
            .max_memory_size(settings.max_memory_bytes)
            // Keeping pages resident avoids most page faults and madvise
            // calls, the bulk of an invocation's cost on this kind of VM.
            .linear_memory_keep_resident(2 << 20)
            .table_keep_resident(64 << 10)
            .pagemap_scan(Enabled::Auto);
        config.allocation_strategy(InstanceAllocationStrategy::Pooling(pool));
        match Engine::new(&config) {
            Ok(engine) => return Ok((engine, Allocator::Pooling)),
            Err(err) => tracing::warn!(
                %err,
                max_instances = n,
                "the pooling allocator could not reserve its address space; falling back to on-demand allocation"
            ),
        }
    }
    Ok((Engine::new(&base_config())?, Allocator::OnDemand))
}

/// Advances the engine's epoch every [`EPOCH_TICK`] until dropped.
pub(crate) struct EpochTicker {
    stop: Arc<AtomicBool>,
    handle: Option<JoinHandle<()>>,
}

impl EpochTicker {
    pub(crate) fn start(engine: Engine) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        let handle = std::thread::Builder::new()
            .name("steward-epoch".into())
            .spawn(move || {
                while !flag.load(Ordering::Relaxed) {
                    std::thread::sleep(EPOCH_TICK);
                    engine.increment_epoch();
                }
            })
            .expect("failed to spawn the epoch thread");
        Self {
            stop,
            handle: Some(handle),
        }
    }
}

impl Drop for EpochTicker {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(h) = self.handle.take() {
            let _ = h.join();
        }
    }
}
