//! Host-side bindings for the `steward:plugin@0.1.0` WIT package.
//!
//! Architecture invariant: this is the only module that calls `bindgen!`.
//! Everything else names the generated types through the re-exports below.

wasmtime::component::bindgen!({
    world: "plugin-component",
    path: "../../wit/plugin@0.1.0",
    // Every import is async so a slow provider never blocks a runtime thread
    // and the run's wall-clock deadline can cut a call that hangs; trappable
    // so a host-side limit can end the run with a readable error.
    imports: { default: async | trappable },
    exports: { default: async },
    additional_derives: [serde::Serialize, serde::Deserialize, PartialEq],
});

pub use exports::steward::plugin::plugin as exports_plugin;
pub use steward::plugin::{
    accounts, antivirus, clock, config, inventory, log, packages, state, tickets, types,
};

/// The WIT package every interface of this module belongs to.
pub const PACKAGE: &str = steward_contract::imports::WIT_PACKAGE;
/// The released version of that package this host implements.
pub const PACKAGE_VERSION: &str = steward_contract::imports::WIT_VERSION;
