//! The Steward plugin SDK.
//!
//! A plugin is a plain Rust type implementing [`Plugin`], turned into a
//! WebAssembly component by [`export_plugin!`] and built for the
//! `wasm32-wasip2` target. The host calls [`Plugin::describe`] at install,
//! then [`Plugin::check`] on a schedule and [`Plugin::remediate`] with the
//! findings to fix.
//!
//! Capabilities are the modules under [`host`]. Calling one makes the
//! component import it, and the host refuses to run a component whose
//! imports were not granted, so a plugin asks for exactly what it uses.
//!
//! # Example
//!
//! ```
//! use steward_sdk::{export_plugin, host, Descriptor, Finding, Plugin, PluginError, Remediation, Severity};
//!
//! struct DiskHealth;
//!
//! impl Plugin for DiskHealth {
//!     fn describe() -> Descriptor {
//!         Descriptor::new("disk-health", "0.1.0", "Reports failing disks")
//!     }
//!
//!     fn check() -> Result<Vec<Finding>, PluginError> {
//!         let device = host::inventory::device()?;
//!         Ok(device
//!             .disks
//!             .iter()
//!             .filter(|d| d.health == host::inventory::Health::Failing)
//!             .map(|d| {
//!                 Finding::new(format!("failing-disk:{}", d.name), Severity::Critical, "Disk is failing")
//!                     .resource(&d.name)
//!             })
//!             .collect())
//!     }
//!
//!     fn remediate(_findings: Vec<Finding>) -> Result<Remediation, PluginError> {
//!         Ok(Remediation::new())
//!     }
//! }
//!
//! export_plugin!(DiskHealth);
//! # fn main() {}
//! ```

#![deny(missing_docs)]

extern crate self as steward_sdk;

mod builders;
mod date;
pub mod log;
pub mod params;
pub mod state;
#[cfg(all(feature = "testing", not(target_arch = "wasm32")))]
pub mod testing;

/// Re-exported so plugins never depend on `wit-bindgen` directly.
pub use wit_bindgen;

#[doc(hidden)]
#[allow(missing_docs)]
pub mod bindings {
    wit_bindgen::generate!({
        path: "../wit/plugin@0.2.0",
        world: "plugin-component",
        pub_export_macro: true,
        export_macro_name: "__export_plugin_world",
        default_bindings_module: "steward_sdk::bindings",
        runtime_path: "steward_sdk::wit_bindgen::rt",
        additional_derives: [PartialEq],
    });
}

/// The host's capabilities, one module per WIT interface.
///
/// Calls return `Result<_, HostError>`; `?` turns a [`HostError`] into a
/// [`PluginError`].
///
/// # Example
///
/// ```no_run
/// use steward_sdk::host;
///
/// let updates = host::packages::updates().expect("package database readable");
/// for u in updates.iter().filter(|u| u.security) {
///     steward_sdk::log::info(&format!("{} -> {}", u.name, u.candidate_version));
/// }
/// ```
#[cfg(not(all(feature = "testing", not(target_arch = "wasm32"))))]
pub mod host {
    #[doc(inline)]
    pub use crate::bindings::steward::plugin::{
        accounts, antivirus, backups, clock, config, inventory, log, packages, state, tickets,
    };
}

/// The host's capabilities, answered by the [`testing::Device`] the test
/// runs the plugin against (the `testing` feature, native builds only).
#[cfg(all(feature = "testing", not(target_arch = "wasm32")))]
pub mod host {
    pub use crate::testing::host::{
        accounts, antivirus, backups, clock, config, inventory, log, packages, state, tickets,
    };
}

/// What a plugin implements: `describe`, `check` and `remediate`.
///
/// A method with the wrong signature fails to compile with an error that
/// points at it and names the expected type.
///
/// # Example
///
/// ```
/// use steward_sdk::{Descriptor, Finding, Plugin, PluginError, Remediation};
///
/// struct Noop;
///
/// impl Plugin for Noop {
///     fn describe() -> Descriptor {
///         Descriptor::new("noop", "0.1.0", "Finds nothing")
///     }
///     fn check() -> Result<Vec<Finding>, PluginError> {
///         Ok(vec![])
///     }
///     fn remediate(_: Vec<Finding>) -> Result<Remediation, PluginError> {
///         Ok(Remediation::new())
///     }
/// }
/// ```
pub use bindings::exports::steward::plugin::plugin::Guest as Plugin;

#[doc(inline)]
pub use bindings::steward::plugin::types::{
    Change, Date, Descriptor, Failure, Field, Finding, HostError, Instant, Outcome, ParamProblem,
    ParamSpec, ParamType, ParamValue, PluginError, PluginScope, Remediation, RunMode, Severity,
};

/// Turns a type implementing [`Plugin`] into the component's exports.
/// Invoke it once per plugin crate.
///
/// # Example
///
/// ```
/// use steward_sdk::{export_plugin, Descriptor, Finding, Plugin, PluginError, Remediation};
///
/// struct Noop;
/// impl Plugin for Noop {
///     fn describe() -> Descriptor { Descriptor::new("noop", "0.1.0", "Finds nothing") }
///     fn check() -> Result<Vec<Finding>, PluginError> { Ok(vec![]) }
///     fn remediate(_: Vec<Finding>) -> Result<Remediation, PluginError> { Ok(Remediation::new()) }
/// }
///
/// export_plugin!(Noop);
/// # fn main() {}
/// ```
#[macro_export]
macro_rules! export_plugin {
    ($plugin:ident) => {
        $crate::bindings::__export_plugin_world!($plugin with_types_in $crate::bindings);
    };
}

/// A remediation that made `changes` and failed nothing.
impl From<Vec<Change>> for Remediation {
    fn from(changes: Vec<Change>) -> Self {
        Remediation {
            changes,
            failures: Vec::new(),
        }
    }
}

impl Remediation {
    /// An empty remediation: no change, no failure.
    ///
    /// # Example
    ///
    /// ```
    /// use steward_sdk::{Change, Outcome, Remediation};
    ///
    /// let mut done = Remediation::new();
    /// done.changes.push(Change::new("unlock", "jdoe", Outcome::Applied));
    /// done.fail("locked:svc-db", "the directory refused: insufficient rights");
    /// assert_eq!((done.changes.len(), done.failures.len()), (1, 1));
    /// ```
    pub fn new() -> Self {
        Remediation {
            changes: Vec::new(),
            failures: Vec::new(),
        }
    }

    /// Records that the finding `finding_id` could not be fixed, and why;
    /// the changes made so far are kept, and the job ends failed.
    pub fn fail(&mut self, finding_id: impl Into<String>, error: impl std::fmt::Display) {
        self.failures.push(Failure {
            finding_id: finding_id.into(),
            error: error.to_string(),
        });
    }
}

impl Default for Remediation {
    fn default() -> Self {
        Self::new()
    }
}

impl HostError {
    /// The error for a human: `denied: jdoe is outside the grant`
    /// (wit-bindgen's `Display` prints the Rust variant).
    ///
    /// # Example
    ///
    /// ```
    /// let e = steward_sdk::HostError::Denied("outside the grant".into());
    /// assert_eq!(e.describe(), "denied: outside the grant");
    /// ```
    pub fn describe(&self) -> String {
        let (kind, text) = match self {
            HostError::Denied(t) => ("denied", t),
            HostError::NotFound(t) => ("not found", t),
            HostError::Unavailable(t) => ("unavailable", t),
            HostError::InvalidArgument(t) => ("invalid argument", t),
            HostError::Failed(t) => ("failed", t),
            HostError::LimitExceeded(t) => ("limit exceeded", t),
        };
        format!("{kind}: {text}")
    }
}

impl PluginError {
    /// The error for a human, as [`HostError::describe`].
    pub fn describe(&self) -> String {
        match self {
            PluginError::InvalidParam(p) => format!("parameter `{}`: {}", p.name, p.message),
            PluginError::Host(e) => e.describe(),
            PluginError::Unsupported(t) => format!("unsupported: {t}"),
            PluginError::Failed(t) => t.clone(),
        }
    }
}

impl From<HostError> for PluginError {
    fn from(e: HostError) -> Self {
        PluginError::Host(e)
    }
}

/// Whether this run is in plan mode (mutating calls only record intent).
///
/// # Example
///
/// ```no_run
/// if steward_sdk::is_plan() {
///     steward_sdk::log::info("planning only");
/// }
/// ```
pub fn is_plan() -> bool {
    host::config::mode() == RunMode::Plan
}
