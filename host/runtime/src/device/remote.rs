//! A device reached through its agent: the plugin runs in the server's
//! runtime, and each provider call travels over the agent's connection to
//! the endpoint, where the agent answers it with its own real providers.
//!
//! Grants, scopes, plan mode, the mutation journal and audit stay in the
//! server's runtime (the capability host impls call the providers of a
//! [`Device`] like any other); the agent adds one more check of its own,
//! the endpoint's **ceiling** ([`answer`]): a call outside it is refused on
//! the endpoint as `denied`, whatever the server granted.
//!
//! The wire types ([`ServerMessage`], [`AgentMessage`]) are JSON text
//! frames. Every call names its provider function and arguments
//! ([`ProviderCall`]); answers are the provider's result as JSON, checked
//! against the expected type on the server.

use std::sync::Arc;

use async_trait::async_trait;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::Device;
use crate::bindings::accounts::{Account, AccountSource};
use crate::bindings::antivirus::{EngineStatus, QuarantineRecord, ScanReport};
use crate::bindings::backups::{BackupResult, BackupSet, IntegrityReport, RestoreReport, Snapshot};
use crate::bindings::inventory::DeviceFacts;
use crate::bindings::packages::{AvailableUpdate, InstalledPackage, PackageChange, RebootStatus};
use crate::bindings::types::{HostError, Outcome, RunMode};
use crate::capability::accounts::AccountsProvider;
use crate::capability::antivirus::AntivirusProvider;
use crate::capability::backups::BackupsProvider;
use crate::capability::inventory::InventoryProvider;
use crate::capability::packages::PackagesProvider;
use crate::capability::{Capability, Grants};

/// The largest frame either side accepts, in bytes.
pub const MAX_FRAME_BYTES: usize = 4 << 20;

/// What the signature of a connection's challenge covers: a fixed
/// context, the server's nonce and the device id, so a signature is good
/// for one connection to one device and nothing else.
pub fn challenge_payload(nonce: &str, device_id: &str) -> Vec<u8> {
    format!("steward-agent-hello\0{nonce}\0{device_id}").into_bytes()
}

/// One provider call, as the server sends it to an agent.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "function", rename_all = "kebab-case", deny_unknown_fields)]
pub enum ProviderCall {
    /// `inventory.device`.
    InventoryDevice,
    /// `packages.installed`.
    PackagesInstalled,
    /// `packages.updates`.
    PackagesUpdates,
    /// `packages.reboot-required`.
    PackagesRebootRequired,
    /// `packages.install-updates`.
    PackagesInstallUpdates {
        /// Package names.
        names: Vec<String>,
        /// Apply or plan.
        mode: RunMode,
    },
    /// `packages.schedule-reboot`.
    PackagesScheduleReboot {
        /// Why.
        reason: String,
        /// Apply or plan.
        mode: RunMode,
    },
    /// `antivirus.status`.
    AntivirusStatus,
    /// `antivirus.scan`.
    AntivirusScan {
        /// Paths to scan.
        paths: Vec<String>,
    },
    /// `antivirus.update-signatures`.
    AntivirusUpdateSignatures {
        /// Apply or plan.
        mode: RunMode,
    },
    /// `antivirus.quarantine`.
    AntivirusQuarantine {
        /// The file.
        path: String,
        /// The detection's signature.
        signature: String,
        /// Apply or plan.
        mode: RunMode,
    },
    /// `accounts.locked`.
    AccountsLocked,
    /// `accounts.lookup`.
    AccountsLookup {
        /// The account.
        name: String,
    },
    /// `accounts.lookup` in one source (the host's checks before an
    /// unlock of that source's account).
    AccountsLookupIn {
        /// The account.
        name: String,
        /// Its source.
        source: AccountSource,
    },
    /// `accounts.unlock`.
    AccountsUnlock {
        /// The account.
        name: String,
        /// Its source, when the plugin named one (0.2.0 plugins do).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        source: Option<AccountSource>,
        /// Apply or plan.
        mode: RunMode,
    },
    /// `backups.sets`.
    BackupsSets,
    /// `backups.snapshots`.
    BackupsSnapshots {
        /// The backup set.
        set: String,
    },
    /// `backups.verify`.
    BackupsVerify {
        /// The backup set.
        set: String,
        /// How much of the data to read back, in percent.
        data_percent: u8,
        /// Apply or plan.
        mode: RunMode,
    },
    /// `backups.run-backup`.
    BackupsRunBackup {
        /// The backup set.
        set: String,
        /// Apply or plan.
        mode: RunMode,
    },
    /// `backups.restore-test`.
    BackupsRestoreTest {
        /// The backup set.
        set: String,
        /// How many files.
        sample: u32,
        /// Apply or plan.
        mode: RunMode,
    },
}

impl ProviderCall {
    /// The capability the call belongs to.
    pub fn capability(&self) -> Capability {
        use ProviderCall::*;
        match self {
            InventoryDevice => Capability::Inventory,
            PackagesInstalled
            | PackagesUpdates
            | PackagesRebootRequired
            | PackagesInstallUpdates { .. }
            | PackagesScheduleReboot { .. } => Capability::Packages,
            AntivirusStatus
            | AntivirusScan { .. }
            | AntivirusUpdateSignatures { .. }
            | AntivirusQuarantine { .. } => Capability::Antivirus,
            BackupsSets
            | BackupsSnapshots { .. }
            | BackupsVerify { .. }
            | BackupsRunBackup { .. }
            | BackupsRestoreTest { .. } => Capability::Backups,
            AccountsLocked
            | AccountsLookup { .. }
            | AccountsLookupIn { .. }
            | AccountsUnlock { .. } => Capability::Accounts,
        }
    }

    /// The resources the call touches, checked against the ceiling's
    /// scope: exactly the calls whose resources a server grant scopes
    /// (packages installed, paths scanned or quarantined, accounts
    /// unlocked), so a ceiling reads like a grant.
    fn resources(&self) -> Vec<&str> {
        use ProviderCall::*;
        match self {
            PackagesInstallUpdates { names, .. } => names.iter().map(String::as_str).collect(),
            AntivirusScan { paths } => paths.iter().map(String::as_str).collect(),
            AntivirusQuarantine { path, .. } => vec![path.as_str()],
            AccountsUnlock { name, .. } => vec![name.as_str()],
            BackupsSnapshots { set }
            | BackupsVerify { set, .. }
            | BackupsRunBackup { set, .. }
            | BackupsRestoreTest { set, .. } => vec![set.as_str()],
            _ => Vec::new(),
        }
    }

    /// The function called, as the wire names it, for logs and refusals.
    pub fn name(&self) -> &'static str {
        use ProviderCall::*;
        match self {
            InventoryDevice => "inventory-device",
            PackagesInstalled => "packages-installed",
            PackagesUpdates => "packages-updates",
            PackagesRebootRequired => "packages-reboot-required",
            PackagesInstallUpdates { .. } => "packages-install-updates",
            PackagesScheduleReboot { .. } => "packages-schedule-reboot",
            AntivirusStatus => "antivirus-status",
            AntivirusScan { .. } => "antivirus-scan",
            AntivirusUpdateSignatures { .. } => "antivirus-update-signatures",
            AntivirusQuarantine { .. } => "antivirus-quarantine",
            AccountsLocked => "accounts-locked",
            AccountsLookup { .. } => "accounts-lookup",
            AccountsLookupIn { .. } => "accounts-lookup-in",
            AccountsUnlock { .. } => "accounts-unlock",
            BackupsSets => "backups-sets",
            BackupsSnapshots { .. } => "backups-snapshots",
            BackupsVerify { .. } => "backups-verify",
            BackupsRunBackup { .. } => "backups-run-backup",
            BackupsRestoreTest { .. } => "backups-restore-test",
        }
    }
}

/// What the server sends an agent.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "kebab-case", deny_unknown_fields)]
pub enum ServerMessage {
    /// The first frame of a connection: sign it to prove who you are.
    Challenge {
        /// Fresh random text, never reused.
        nonce: String,
    },
    /// The agent proved its identity; calls may follow.
    Welcome {
        /// The device the agent is.
        device_id: String,
        /// Seconds between the agent's heartbeats.
        heartbeat_seconds: u64,
    },
    /// A provider call to answer.
    Call {
        /// Echoed in the reply.
        id: u64,
        /// What to call.
        call: ProviderCall,
    },
    /// The connection is refused or closed, and why.
    Goodbye {
        /// Why.
        reason: String,
    },
}

/// What an agent sends the server.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "kebab-case", deny_unknown_fields)]
pub enum AgentMessage {
    /// The answer to the challenge.
    Hello {
        /// The device the agent was enrolled as.
        device_id: String,
        /// Base64 ed25519 signature of [`challenge_payload`].
        signature: String,
        /// The agent's version.
        agent_version: String,
    },
    /// The answer to a call.
    Reply {
        /// The call's id.
        id: u64,
        /// The provider's result, or its error.
        result: Result<Value, HostError>,
    },
    /// The agent is alive.
    Heartbeat {},
}

/// A connection to an agent that carries provider calls.
#[async_trait]
pub trait AgentLink: Send + Sync {
    /// Sends `call` to the agent and waits for its answer. A lost
    /// connection or an agent that does not answer is `unavailable`, so
    /// the job is retried when the agent is back.
    async fn call(&self, call: ProviderCall) -> Result<Value, HostError>;
}

/// The device `id` of `tenant_id`, its inventory, packages, antivirus,
/// accounts and backups served by the agent behind `link`; tickets, state and the
/// clock stay on the server (the executor replaces tickets and state with
/// store-backed ones).
pub fn remote_device(id: &str, name: &str, tenant_id: &str, link: Arc<dyn AgentLink>) -> Device {
    let remote = Arc::new(Remote(link));
    Device {
        id: id.to_owned(),
        name: name.to_owned(),
        tenant_id: tenant_id.to_owned(),
        inventory: remote.clone(),
        packages: remote.clone(),
        antivirus: remote.clone(),
        accounts: remote.clone(),
        backups: remote,
        tickets: Arc::new(crate::capability::tickets::MemoryTickets::default()),
        clock: Arc::new(crate::capability::clock::SystemClock),
        state: Arc::new(crate::capability::state::MemoryState::default()),
    }
}

struct Remote(Arc<dyn AgentLink>);

impl Remote {
    async fn call<T: DeserializeOwned>(&self, call: ProviderCall) -> Result<T, HostError> {
        let name = call.name();
        let value = self.0.call(call).await?;
        serde_json::from_value(value).map_err(|e| {
            HostError::Failed(format!(
                "the agent's answer to `{name}` is not what the server expects: {e}"
            ))
        })
    }
}

#[async_trait]
impl InventoryProvider for Remote {
    async fn device(&self) -> Result<DeviceFacts, HostError> {
        self.call(ProviderCall::InventoryDevice).await
    }

    async fn tenant_devices(&self) -> Result<Vec<DeviceFacts>, HostError> {
        // A tenant's inventory is the server's, not one endpoint's.
        Err(HostError::Failed(
            "a tenant's inventory is the server's, not served by an endpoint's agent".into(),
        ))
    }
}

#[async_trait]
impl PackagesProvider for Remote {
    async fn installed(&self) -> Result<Vec<InstalledPackage>, HostError> {
        self.call(ProviderCall::PackagesInstalled).await
    }

    async fn updates(&self) -> Result<Vec<AvailableUpdate>, HostError> {
        self.call(ProviderCall::PackagesUpdates).await
    }

    async fn reboot_required(&self) -> Result<RebootStatus, HostError> {
        self.call(ProviderCall::PackagesRebootRequired).await
    }

    async fn install_updates(
        &self,
        names: &[String],
        mode: RunMode,
    ) -> Result<Vec<PackageChange>, HostError> {
        self.call(ProviderCall::PackagesInstallUpdates {
            names: names.to_vec(),
            mode,
        })
        .await
    }

    async fn schedule_reboot(&self, reason: &str, mode: RunMode) -> Result<Outcome, HostError> {
        self.call(ProviderCall::PackagesScheduleReboot {
            reason: reason.to_owned(),
            mode,
        })
        .await
    }
}

#[async_trait]
impl AntivirusProvider for Remote {
    async fn status(&self) -> Result<EngineStatus, HostError> {
        self.call(ProviderCall::AntivirusStatus).await
    }

    async fn scan(&self, paths: &[String]) -> Result<ScanReport, HostError> {
        self.call(ProviderCall::AntivirusScan {
            paths: paths.to_vec(),
        })
        .await
    }

    async fn update_signatures(&self, mode: RunMode) -> Result<Outcome, HostError> {
        self.call(ProviderCall::AntivirusUpdateSignatures { mode })
            .await
    }

    async fn quarantine(
        &self,
        path: &str,
        signature: &str,
        mode: RunMode,
    ) -> Result<QuarantineRecord, HostError> {
        self.call(ProviderCall::AntivirusQuarantine {
            path: path.to_owned(),
            signature: signature.to_owned(),
            mode,
        })
        .await
    }
}

#[async_trait]
impl AccountsProvider for Remote {
    async fn locked(&self) -> Result<Vec<Account>, HostError> {
        self.call(ProviderCall::AccountsLocked).await
    }

    async fn lookup(&self, name: &str) -> Result<Account, HostError> {
        self.call(ProviderCall::AccountsLookup {
            name: name.to_owned(),
        })
        .await
    }

    async fn unlock(&self, name: &str, mode: RunMode) -> Result<Outcome, HostError> {
        self.call(ProviderCall::AccountsUnlock {
            name: name.to_owned(),
            source: None,
            mode,
        })
        .await
    }

    async fn lookup_in(&self, name: &str, source: AccountSource) -> Result<Account, HostError> {
        self.call(ProviderCall::AccountsLookupIn {
            name: name.to_owned(),
            source,
        })
        .await
    }

    async fn unlock_in(
        &self,
        name: &str,
        source: AccountSource,
        mode: RunMode,
    ) -> Result<Outcome, HostError> {
        self.call(ProviderCall::AccountsUnlock {
            name: name.to_owned(),
            source: Some(source),
            mode,
        })
        .await
    }
}

#[async_trait]
impl BackupsProvider for Remote {
    async fn sets(&self) -> Result<Vec<BackupSet>, HostError> {
        self.call(ProviderCall::BackupsSets).await
    }

    async fn snapshots(&self, set: &str) -> Result<Vec<Snapshot>, HostError> {
        self.call(ProviderCall::BackupsSnapshots {
            set: set.to_owned(),
        })
        .await
    }

    async fn verify(
        &self,
        set: &str,
        data_percent: u8,
        mode: RunMode,
    ) -> Result<IntegrityReport, HostError> {
        self.call(ProviderCall::BackupsVerify {
            set: set.to_owned(),
            data_percent,
            mode,
        })
        .await
    }

    async fn run_backup(&self, set: &str, mode: RunMode) -> Result<BackupResult, HostError> {
        self.call(ProviderCall::BackupsRunBackup {
            set: set.to_owned(),
            mode,
        })
        .await
    }

    async fn restore_test(
        &self,
        set: &str,
        sample: u32,
        mode: RunMode,
    ) -> Result<RestoreReport, HostError> {
        self.call(ProviderCall::BackupsRestoreTest {
            set: set.to_owned(),
            sample,
            mode,
        })
        .await
    }
}

/// The agent's side: answers `call` with `device`'s own providers, if the
/// endpoint's `ceiling` allows it. A call outside the ceiling never
/// reaches a provider and is `denied`, naming the ceiling.
pub async fn answer(
    device: &Device,
    ceiling: &Grants,
    call: ProviderCall,
) -> Result<Value, HostError> {
    let capability = call.capability();
    if !ceiling.allows_capability(capability) {
        return Err(HostError::Denied(format!(
            "this endpoint's policy does not allow `{capability}` (its ceiling), whatever the server grants"
        )));
    }
    for resource in call.resources() {
        if !ceiling.allows(capability, resource) {
            return Err(HostError::Denied(format!(
                "`{resource}` is outside this endpoint's `{capability}` ceiling, whatever the server grants"
            )));
        }
    }
    use ProviderCall::*;
    fn json<T: Serialize>(r: Result<T, HostError>) -> Result<Value, HostError> {
        r.and_then(|v| {
            serde_json::to_value(v)
                .map_err(|e| HostError::Failed(format!("unserialisable answer: {e}")))
        })
    }
    match call {
        InventoryDevice => json(device.inventory.device().await),
        PackagesInstalled => json(device.packages.installed().await),
        PackagesUpdates => json(device.packages.updates().await),
        PackagesRebootRequired => json(device.packages.reboot_required().await),
        PackagesInstallUpdates { names, mode } => {
            json(device.packages.install_updates(&names, mode).await)
        }
        PackagesScheduleReboot { reason, mode } => {
            json(device.packages.schedule_reboot(&reason, mode).await)
        }
        AntivirusStatus => json(device.antivirus.status().await),
        AntivirusScan { paths } => json(device.antivirus.scan(&paths).await),
        AntivirusUpdateSignatures { mode } => json(device.antivirus.update_signatures(mode).await),
        AntivirusQuarantine {
            path,
            signature,
            mode,
        } => json(device.antivirus.quarantine(&path, &signature, mode).await),
        AccountsLocked => json(device.accounts.locked().await),
        AccountsLookup { name } => json(device.accounts.lookup(&name).await),
        AccountsLookupIn { name, source } => json(device.accounts.lookup_in(&name, source).await),
        AccountsUnlock {
            name,
            source: None,
            mode,
        } => json(device.accounts.unlock(&name, mode).await),
        AccountsUnlock {
            name,
            source: Some(source),
            mode,
        } => json(device.accounts.unlock_in(&name, source, mode).await),
        BackupsSets => json(device.backups.sets().await),
        BackupsSnapshots { set } => json(device.backups.snapshots(&set).await),
        BackupsVerify {
            set,
            data_percent,
            mode,
        } => json(device.backups.verify(&set, data_percent, mode).await),
        BackupsRunBackup { set, mode } => json(device.backups.run_backup(&set, mode).await),
        BackupsRestoreTest { set, sample, mode } => {
            json(device.backups.restore_test(&set, sample, mode).await)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_round_trip_and_unknown_fields_are_refused() {
        let call = ServerMessage::Call {
            id: 7,
            call: ProviderCall::AccountsUnlock {
                name: "jdoe".into(),
                source: None,
                mode: RunMode::Plan,
            },
        };
        let text = serde_json::to_string(&call).unwrap();
        assert_eq!(serde_json::from_str::<ServerMessage>(&text).unwrap(), call);
        assert!(serde_json::from_str::<AgentMessage>(r#"{"type":"heartbeat","extra":1}"#).is_err());
        assert!(serde_json::from_str::<AgentMessage>(r#"{"type":"nonsense"}"#).is_err());
    }

    #[test]
    fn a_call_is_named_as_the_wire_tags_it() {
        let call = ProviderCall::AccountsUnlock {
            name: "jdoe".into(),
            source: Some(AccountSource::Local),
            mode: RunMode::Plan,
        };
        assert_eq!(
            serde_json::to_value(&call).unwrap()["function"],
            call.name()
        );
        assert_eq!(
            serde_json::to_value(ProviderCall::InventoryDevice).unwrap()["function"],
            ProviderCall::InventoryDevice.name()
        );
    }

    #[test]
    fn the_challenge_binds_nonce_and_device() {
        assert_ne!(challenge_payload("n1", "d1"), challenge_payload("n2", "d1"));
        assert_ne!(challenge_payload("n1", "d1"), challenge_payload("n1", "d2"));
    }
}
