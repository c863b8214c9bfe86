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

/// 0.1.0's `accounts`: `unlock(name)` named no source and gave no
/// reason. It unlocks the first source's account (as 0.1.0 hosts did),
/// audited with the reason "unlock by a steward:plugin@0.1.0 plugin".
impl old::accounts::Host for HostState {
    async fn locked(
        &mut self,
    ) -> wasmtime::Result<Result<Vec<old::accounts::Account>, old::types::HostError>> {
        let result = <HostState as now::accounts::Host>::locked(self).await?;
        convert("accounts.locked", result)
    }

    async fn lookup(
        &mut self,
        name: String,
    ) -> wasmtime::Result<Result<old::accounts::Account, old::types::HostError>> {
        let result = <HostState as now::accounts::Host>::lookup(self, name).await?;
        convert("accounts.lookup", result)
    }

    async fn unlock(
        &mut self,
        name: String,
    ) -> wasmtime::Result<Result<old::types::Outcome, old::types::HostError>> {
        let source = match <HostState as now::accounts::Host>::lookup(self, name.clone()).await? {
            Ok(account) => account.source,
            Err(e) => return convert("accounts.unlock", Err::<(), _>(e)),
        };
        let result = <HostState as now::accounts::Host>::unlock(
            self,
            name,
            source,
            "unlock by a steward:plugin@0.1.0 plugin".into(),
        )
        .await?;
        convert("accounts.unlock", result)
    }
}

bridge!(tickets {
    fn file(ticket: old::tickets::Ticket) -> Result<old::tickets::Filed, old::types::HostError>;
});

/// A 0.1.0 descriptor as the newest: its parameters have no
/// `required-to-remediate` (false) and no `pattern`.
pub(crate) fn descriptor(
    old: old::types::Descriptor,
) -> wasmtime::Result<crate::bindings::types::Descriptor> {
    let mut value = serde_json::to_value(old)
        .map_err(|e| wasmtime::format_err!("`describe` cannot be converted: {e}"))?;
    if let Some(params) = value.get_mut("params").and_then(|p| p.as_array_mut()) {
        for p in params.iter_mut().filter_map(|p| p.as_object_mut()) {
            p.insert("required_to_remediate".into(), false.into());
        }
    }
    convert("describe", value)
}
