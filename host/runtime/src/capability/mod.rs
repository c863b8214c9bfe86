//! Capabilities: the host interfaces a plugin may import, the grants that
//! allow them, and one module per capability with its provider trait and
//! host implementation.
//!
//! Adding a capability touches this module only: a WIT interface, a variant
//! of [`Capability`], a provider trait and host impl in its own file, and a
//! line in [`Device`](crate::device::Device).

pub mod accounts;
pub mod antivirus;
pub mod backups;
pub mod clock;
pub mod config;
pub mod inventory;
pub mod log;
pub mod packages;
pub mod state;
pub mod tickets;

use std::fmt;

pub use steward_contract::capability::{Capability, Grant, GrantError, Grants};

use crate::bindings::types::HostError;

/// What a mutating or scoped call asks for, checked against the grant and
/// written to the audit log.
#[derive(Debug, Clone)]
pub struct CallSummary {
    /// The interface called.
    pub capability: Capability,
    /// The function called, as named in WIT.
    pub function: &'static str,
    /// A short human summary of the arguments.
    pub arguments: String,
}

impl HostError {
    /// A provider error for a failure the plugin cannot fix by retrying.
    pub fn failed(message: impl fmt::Display) -> Self {
        HostError::Failed(message.to_string())
    }
}
