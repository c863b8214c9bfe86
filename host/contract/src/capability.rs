//! The one list of host interfaces a plugin may import, and grants: which
//! of them a plugin may use and, within each, which resources.
//!
//! The registry (publish), `steward plugin publish` and the host (load,
//! install) all read capabilities from here, so they cannot disagree.

mod grant;

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

pub use grant::{Grant, GrantError, Grants};

use crate::imports::{WIT_PACKAGE, WIT_VERSION};

/// One host interface of `steward:plugin`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Capability {
    /// Structured run log. Always granted.
    Log,
    /// Parameters and run context. Always granted.
    Config,
    /// Wall clock. Always granted.
    Clock,
    /// Per-plugin, per-device key/value state. Always granted.
    State,
    /// Device facts; scope `device` or `tenant`.
    Inventory,
    /// Package manager; scope: package name patterns that may be installed.
    Packages,
    /// Antivirus engine; scope: path patterns that may be scanned and quarantined.
    Antivirus,
    /// Accounts; scope: account name patterns that may be unlocked.
    Accounts,
    /// Tickets; scope: queue names.
    Tickets,
    /// Backups (since `steward:plugin@0.2.0`); scope: backup set name
    /// patterns that may be touched.
    Backups,
}

impl Capability {
    /// Every capability, in WIT order.
    pub const ALL: [Capability; 10] = [
        Capability::Log,
        Capability::Config,
        Capability::Clock,
        Capability::State,
        Capability::Inventory,
        Capability::Packages,
        Capability::Antivirus,
        Capability::Accounts,
        Capability::Tickets,
        Capability::Backups,
    ];

    /// The interface name inside the package, for example `packages`.
    pub fn name(self) -> &'static str {
        match self {
            Capability::Log => "log",
            Capability::Config => "config",
            Capability::Clock => "clock",
            Capability::State => "state",
            Capability::Inventory => "inventory",
            Capability::Packages => "packages",
            Capability::Antivirus => "antivirus",
            Capability::Accounts => "accounts",
            Capability::Tickets => "tickets",
            Capability::Backups => "backups",
        }
    }

    /// The first version of the WIT package with this interface: every
    /// later supported version has it too.
    pub fn since(self) -> &'static str {
        match self {
            Capability::Backups => "0.2.0",
            _ => "0.1.0",
        }
    }

    /// Whether `steward:plugin@<version>` has this interface.
    pub fn in_version(self, version: &str) -> bool {
        match (
            semver::Version::parse(self.since()),
            semver::Version::parse(version),
        ) {
            (Ok(since), Ok(version)) => version >= since,
            _ => false,
        }
    }

    /// The fully qualified import name in the newest version, for example
    /// `steward:plugin/packages@0.2.0`.
    pub fn import_name(self) -> String {
        format!("{WIT_PACKAGE}/{}@{WIT_VERSION}", self.name())
    }

    /// Capabilities that reach nothing outside the run are granted to every
    /// plugin: the log, its own parameters, the clock and its own state.
    pub fn always_granted(self) -> bool {
        matches!(
            self,
            Capability::Log | Capability::Config | Capability::Clock | Capability::State
        )
    }
}

impl fmt::Display for Capability {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for Capability {
    type Err = GrantError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Capability::ALL
            .into_iter()
            .find(|c| c.name() == s)
            .ok_or_else(|| GrantError::UnknownCapability(s.to_string()))
    }
}
