//! Errors of loading and running plugins, each naming its cause for a human.

use std::time::Duration;

use crate::bindings::types::{HostError, PluginError};
use crate::capability::Capability;

use super::params::ParamError;

/// Why module bytes could not become a runnable plugin.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    /// The bytes are not WebAssembly at all.
    #[error("not a WebAssembly file (it does not start with the `\\0asm` magic bytes)")]
    NotWasm,
    /// A core module, not a component.
    #[error(
        "this is a core WebAssembly module, not a component; build the plugin for the `wasm32-wasip2` target (`cargo build --target wasm32-wasip2`)"
    )]
    CoreModule,
    /// Wasmtime rejected the component.
    #[error("invalid component: {0}")]
    Invalid(String),
    /// The component imports something this host does not provide.
    #[error("the component imports `{import}`, {reason}")]
    UnknownImport {
        /// The import name.
        import: String,
        /// Why it is refused and what is supported.
        reason: String,
    },
    /// The component does not export the plugin interface.
    #[error(
        "the component does not export `steward:plugin/plugin` of a version this host runs (0.1.0 or 0.2.0; it exports: {exports}); build it with the steward-sdk `export_plugin!` macro"
    )]
    NotAPlugin {
        /// What it exports instead.
        exports: String,
    },
    /// The import names match but the types do not.
    #[error("the component does not match `steward:plugin@{version}`: {reason}")]
    Mismatch {
        /// The version it exports its plugin interface from.
        version: &'static str,
        /// What does not match.
        reason: String,
    },
    /// The component imports capabilities that were not granted.
    #[error("the plugin imports the `{}` capability, which was not granted (grant it with `--grant {}`)", .0[0], .0[0])]
    NotGranted(Vec<Capability>),
    /// Capabilities were granted that the component does not import.
    #[error("`{}` is granted but the plugin does not import it; remove the grant (it imports: {})", .0[0], .1)]
    UnusedGrant(Vec<Capability>, String),
    /// Compiling or caching failed on the host side.
    #[error("failed to prepare the component: {0}")]
    Host(String),
}

/// Why a run ended without a result.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    /// A parameter was refused before the run started.
    #[error(transparent)]
    Param(#[from] ParamError),
    /// The guest ran longer than its CPU budget.
    #[error("the plugin used more than its CPU time limit of {} ms and was stopped", .0.as_millis())]
    CpuDeadline(Duration),
    /// The run as a whole, host calls included, took too long.
    #[error("the plugin did not finish within its wall-clock limit of {} ms (host calls included) and was stopped", .0.as_millis())]
    WallDeadline(Duration),
    /// Linear memory growth hit the cap.
    #[error("the plugin tried to use more than its memory limit of {} MiB and was stopped", .0 >> 20)]
    MemoryLimit(usize),
    /// The guest's stack overflowed (usually runaway recursion).
    #[error("the plugin overflowed its stack (runaway recursion?)")]
    StackOverflow,
    /// The guest panicked; the message is from its stderr.
    #[error("the plugin panicked: {0}")]
    Panicked(String),
    /// Any other trap.
    #[error("the plugin trapped: {0}")]
    Trap(String),
    /// The plugin returned more than the limits allow.
    #[error("the plugin returned {actual} {what}, more than the limit of {limit}")]
    OutputLimit {
        /// `findings`, `changes` or `bytes of text`.
        what: &'static str,
        /// What it returned.
        actual: usize,
        /// The limit.
        limit: usize,
    },
    /// The plugin returned findings or changes that break the output rules
    /// (an empty, oversized or repeated finding id, an empty change kind).
    #[error("the plugin returned invalid output: {0}")]
    InvalidOutput(String),
    /// The plugin ran and reported an error.
    #[error("the plugin reported an error: {}", describe_plugin_error(.0))]
    Plugin(PluginError),
    /// The module may not run with these grants.
    #[error(transparent)]
    Load(#[from] LoadError),
    /// The host failed (instantiation, internal error).
    #[error("host error: {0}")]
    Host(String),
}

impl RunError {
    /// A stable short code for the error kind, for machines.
    pub fn code(&self) -> &'static str {
        match self {
            RunError::Param(_) => "invalid-param",
            RunError::CpuDeadline(_) => "cpu-deadline",
            RunError::WallDeadline(_) => "wall-deadline",
            RunError::MemoryLimit(_) => "memory-limit",
            RunError::StackOverflow => "stack-overflow",
            RunError::Panicked(_) => "panic",
            RunError::Trap(_) => "trap",
            RunError::OutputLimit { .. } => "output-limit",
            RunError::InvalidOutput(_) => "invalid-output",
            RunError::Plugin(_) => "plugin-error",
            RunError::Load(_) => "load",
            RunError::Host(_) => "host",
        }
    }
}

/// Renders a plugin's error for humans.
pub fn describe_plugin_error(e: &PluginError) -> String {
    match e {
        PluginError::InvalidParam(p) => format!("invalid parameter `{}`: {}", p.name, p.message),
        PluginError::Host(h) => format!("a capability call failed: {}", describe_host_error(h)),
        PluginError::Unsupported(m) => format!("unsupported device: {m}"),
        PluginError::Failed(m) => m.clone(),
    }
}

/// Renders a capability error for humans.
pub fn describe_host_error(e: &HostError) -> String {
    match e {
        HostError::Denied(m) => format!("denied: {m}"),
        HostError::NotFound(m) => format!("not found: {m}"),
        HostError::Unavailable(m) => format!("unavailable: {m}"),
        HostError::InvalidArgument(m) => format!("invalid argument: {m}"),
        HostError::Failed(m) => format!("failed: {m}"),
        HostError::LimitExceeded(m) => format!("limit exceeded: {m}"),
    }
}
