//! Host-side bindings for every supported version of the `steward:plugin`
//! WIT package.
//!
//! Architecture invariant: this is the only module that calls `bindgen!`.
//! Everything else names the generated types through the re-exports below,
//! which are the newest version's ([`current`]). The host's capability
//! implementations are written once, against those types; a plugin built
//! for an older version reaches them through [`crate::compat`], which
//! converts its values (the older types are a subset of the newer ones).

/// `steward:plugin@0.2.0`, the newest version: what the host's own code
/// speaks.
pub mod current {
    wasmtime::component::bindgen!({
        world: "plugin-component",
        path: "../../wit/plugin@0.2.0",
        // Every import is async so a slow provider never blocks a runtime
        // thread and the run's wall-clock deadline can cut a call that
        // hangs; trappable so a host-side limit can end the run with a
        // readable error.
        imports: { default: async | trappable },
        exports: { default: async },
        additional_derives: [serde::Serialize, serde::Deserialize, PartialEq],
    });
}

/// `steward:plugin@0.1.0`, the first released version, linked beside the
/// newest so its plugins run unchanged.
pub mod v0_1 {
    wasmtime::component::bindgen!({
        world: "plugin-component",
        path: "../../wit/plugin@0.1.0",
        imports: { default: async | trappable },
        exports: { default: async },
        additional_derives: [serde::Serialize, serde::Deserialize, PartialEq],
    });
}

pub use current::exports::steward::plugin::plugin as exports_plugin;
pub use current::steward::plugin::{
    accounts, antivirus, backups, clock, config, inventory, log, packages, state, tickets, types,
};

/// The WIT package every interface of this module belongs to.
pub const PACKAGE: &str = steward_contract::imports::WIT_PACKAGE;
/// The newest version of that package, which [`current`] binds.
pub const PACKAGE_VERSION: &str = steward_contract::imports::WIT_VERSION;
