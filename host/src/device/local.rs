//! This machine as a device: real providers where Steward has them (dpkg/apt,
//! ClamAV), and a clear `unavailable` error for the capabilities whose local
//! providers are not built yet (inventory, accounts).

use std::path::PathBuf;
use std::sync::Arc;

use async_trait::async_trait;

use super::Device;
use crate::bindings::accounts::Account;
use crate::bindings::inventory::DeviceFacts;
use crate::bindings::types::{HostError, Outcome, RunMode};
use crate::capability::accounts::AccountsProvider;
use crate::capability::antivirus::ClamAv;
use crate::capability::clock::SystemClock;
use crate::capability::inventory::InventoryProvider;
use crate::capability::packages::Apt;
use crate::capability::state::MemoryState;
use crate::capability::tickets::MemoryTickets;

/// How the local device's providers are set up.
#[derive(Debug, Clone)]
pub struct LocalConfig {
    /// Root the package manager works on (`/`).
    pub apt_root: PathBuf,
    /// Run `apt-get update` before listing updates.
    pub apt_refresh: bool,
    /// ClamAV's database directory.
    pub clamav_database_dir: PathBuf,
    /// Where quarantined files go.
    pub quarantine_dir: PathBuf,
    /// Private mirror for signature updates.
    pub clamav_mirror: Option<String>,
}

impl Default for LocalConfig {
    fn default() -> Self {
        Self {
            apt_root: "/".into(),
            apt_refresh: false,
            clamav_database_dir: "/var/lib/clamav".into(),
            quarantine_dir: "/var/lib/steward/quarantine".into(),
            clamav_mirror: None,
        }
    }
}

struct NotYet(&'static str);

impl NotYet {
    fn error(&self) -> HostError {
        HostError::Unavailable(format!(
            "the local {} provider is not available yet",
            self.0
        ))
    }
}

#[async_trait]
impl InventoryProvider for NotYet {
    async fn device(&self) -> Result<DeviceFacts, HostError> {
        Err(self.error())
    }
    async fn tenant_devices(&self) -> Result<Vec<DeviceFacts>, HostError> {
        Err(self.error())
    }
}

#[async_trait]
impl AccountsProvider for NotYet {
    async fn locked(&self) -> Result<Vec<Account>, HostError> {
        Err(self.error())
    }
    async fn lookup(&self, _name: &str) -> Result<Account, HostError> {
        Err(self.error())
    }
    async fn unlock(&self, _name: &str, _mode: RunMode) -> Result<Outcome, HostError> {
        Err(self.error())
    }
}

/// This machine, named by its host name, in tenant `local`.
pub fn device(config: &LocalConfig) -> Device {
    let name = std::fs::read_to_string("/etc/hostname")
        .map(|s| s.trim().to_string())
        .unwrap_or_else(|_| "localhost".into());
    Device {
        id: format!("local:{name}"),
        name,
        tenant_id: "local".into(),
        inventory: Arc::new(NotYet("inventory")),
        packages: Arc::new(Apt::new(&config.apt_root, config.apt_refresh)),
        antivirus: Arc::new(ClamAv {
            database_dir: config.clamav_database_dir.clone(),
            quarantine_dir: config.quarantine_dir.clone(),
            mirror: config.clamav_mirror.clone(),
        }),
        accounts: Arc::new(NotYet("accounts")),
        tickets: Arc::new(MemoryTickets::default()),
        clock: Arc::new(SystemClock),
        state: Arc::new(MemoryState::default()),
    }
}
