//! Plugins built for `steward:plugin@0.1.0`, run beside those built for the
//! newest version.
//!
//! The host's capabilities are implemented once, against the newest types
//! ([`crate::bindings`]). A 0.1.0 plugin imports the same interfaces under
//! their 0.1.0 names, with types that are a subset of the newest ones (the
//! newer package only added an interface); each 0.1.0 import below calls
//! the newest implementation and converts its arguments and result through
//! their common serde form, so grants, plan mode, the journal and audit are
//! the very same code for both. A value the older types cannot hold is a
//! trap naming the call, not a silent loss.

use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::HostState;
use crate::bindings::current::steward::plugin as now;
use crate::bindings::v0_1::steward::plugin as old;

/// Converts a value of one version's types into the other's.
pub(crate) fn convert<A: Serialize, B: DeserializeOwned>(
    what: &str,
    value: A,
) -> wasmtime::Result<B> {
    serde_json::to_value(value)
        .and_then(serde_json::from_value)
        .map_err(|e| {
            wasmtime::format_err!(
                "`{what}` cannot be converted between versions of `steward:plugin`: {e}"
            )
        })
}

/// `old::<iface>::Host` for [`HostState`]: each function calls the newest
/// interface's function of the same name and converts in and out.
macro_rules! bridge {
    ($iface:ident { $( fn $f:ident ( $( $arg:ident : $ty:ty ),* ) -> $ret:ty; )* }) => {
        impl old::$iface::Host for HostState {
            $(
                async fn $f(&mut self $(, $arg: $ty)*) -> wasmtime::Result<$ret> {
                    let result = <HostState as now::$iface::Host>::$f(
                        self $(, convert(concat!(stringify!($iface), ".", stringify!($f)), $arg)?)*
                    ).await?;
                    convert(concat!(stringify!($iface), ".", stringify!($f)), result)
                }
            )*
        }
    };
}

impl old::types::Host for HostState {}

bridge!(log {
    fn emit(level: old::log::Level, message: String, fields: Vec<old::types::Field>) -> ();
});

bridge!(config {
    fn get(name: String) -> Option<old::types::ParamValue>;
    fn mode() -> old::types::RunMode;
    fn context() -> old::config::RunContext;
});

bridge!(clock {
    fn now() -> old::types::Instant;
});

bridge!(state {
    fn get(key: String) -> Option<String>;
    fn set(key: String, value: String) -> Result<(), old::types::HostError>;
    fn delete(key: String) -> ();
    fn keys(prefix: String) -> Vec<String>;
});

bridge!(inventory {
    fn device() -> Result<old::inventory::DeviceFacts, old::types::HostError>;
    fn tenant_devices() -> Result<Vec<old::inventory::DeviceFacts>, old::types::HostError>;
});

bridge!(packages {
    fn installed() -> Result<Vec<old::packages::InstalledPackage>, old::types::HostError>;
    fn updates() -> Result<Vec<old::packages::AvailableUpdate>, old::types::HostError>;
    fn reboot_required() -> Result<old::packages::RebootStatus, old::types::HostError>;
    fn install_updates(names: Vec<String>) -> Result<Vec<old::packages::PackageChange>, old::types::HostError>;
    fn schedule_reboot(reason: String) -> Result<old::types::Outcome, old::types::HostError>;
});

bridge!(antivirus {
    fn status() -> Result<old::antivirus::EngineStatus, old::types::HostError>;
    fn scan(paths: Vec<String>) -> Result<old::antivirus::ScanReport, old::types::HostError>;
    fn update_signatures() -> Result<old::types::Outcome, old::types::HostError>;
    fn quarantine(path: String, signature: String) -> Result<old::antivirus::QuarantineRecord, old::types::HostError>;
});

bridge!(accounts {
    fn locked() -> Result<Vec<old::accounts::Account>, old::types::HostError>;
    fn lookup(name: String) -> Result<old::accounts::Account, old::types::HostError>;
    fn unlock(name: String) -> Result<old::types::Outcome, old::types::HostError>;
});

bridge!(tickets {
    fn file(ticket: old::tickets::Ticket) -> Result<old::tickets::Filed, old::types::HostError>;
});
