//! Steward's host runtime: runs sandboxed WebAssembly plugins that check and
//! remediate managed devices, with every privileged call granted, scoped,
//! planned or applied, and audited.
//!
//! - [`runtime`]: engine, compile cache, limits, invocation.
//! - [`capability`]: one module per host interface, with its provider trait.
//! - [`device`]: a device and the providers behind its capabilities.
//! - [`audit`]: the trail of mutating and scoped calls.

pub mod api;
pub mod audit;
pub mod bindings;
pub mod capability;
pub mod control;
pub mod device;
pub mod runtime;
pub mod store;
