//! This machine as a device, with its real providers: dpkg/apt, ClamAV,
//! inventory from `/sys` and `/proc`, local Linux accounts (and a directory
//! when one is configured).

use std::path::PathBuf;
use std::sync::Arc;

use super::Device;
use crate::capability::accounts::{
    AccountsProvider, Directory, DirectoryConfig, LocalAccounts, Sources,
};
use crate::capability::antivirus::ClamAv;
use crate::capability::backups::{BackupSets, BackupsProvider, NoBackups, SetConfig};
use crate::capability::clock::SystemClock;
use crate::capability::inventory::{DeviceRecord, LocalInventory};
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
    /// Root holding `etc/passwd`, `etc/shadow` and the faillock tallies.
    pub accounts_root: PathBuf,
    /// A directory whose accounts are served before the local ones.
    pub directory: Option<DirectoryConfig>,
    /// The admin's record of this machine (id, tenant, purchase date, ...).
    pub record: DeviceRecord,
    /// The backup sets configured here.
    pub backup_sets: Vec<SetConfig>,
    /// Where the backups provider keeps its records and scratch copies.
    pub backup_state_dir: PathBuf,
}

impl Default for LocalConfig {
    fn default() -> Self {
        Self {
            apt_root: "/".into(),
            apt_refresh: false,
            clamav_database_dir: "/var/lib/clamav".into(),
            quarantine_dir: "/var/lib/steward/quarantine".into(),
            clamav_mirror: None,
            accounts_root: "/".into(),
            directory: None,
            record: DeviceRecord::default(),
            backup_sets: Vec::new(),
            backup_state_dir: "/var/lib/steward/backups".into(),
        }
    }
}

/// The backups provider of `config`, checked: no set configured is no
/// backups at all.
///
/// # Errors
///
/// A set that is named twice, badly named or has relative paths.
pub fn backups(config: &LocalConfig) -> anyhow::Result<Arc<dyn BackupsProvider>> {
    if config.backup_sets.is_empty() {
        return Ok(Arc::new(NoBackups));
    }
    Ok(Arc::new(BackupSets::new(
        config.backup_sets.clone(),
        config.backup_state_dir.clone(),
    )?))
}

/// This machine, named by its host name, in tenant `local` unless the
/// device record says otherwise.
pub fn device(config: &LocalConfig) -> Device {
    let name = std::fs::read_to_string("/etc/hostname")
        .map(|s| s.trim().to_string())
        .unwrap_or_else(|_| "localhost".into());
    let id = config
        .record
        .id
        .clone()
        .unwrap_or_else(|| format!("local:{name}"));
    let tenant_id = config
        .record
        .tenant_id
        .clone()
        .unwrap_or_else(|| "local".into());
    let mut accounts: Vec<Arc<dyn AccountsProvider>> = Vec::new();
    if let Some(directory) = &config.directory {
        accounts.push(Arc::new(Directory::new(directory.clone())));
    }
    accounts.push(Arc::new(LocalAccounts::new(&config.accounts_root)));
    Device {
        inventory: Arc::new(LocalInventory::new(
            id.clone(),
            name.clone(),
            config.record.clone(),
        )),
        id,
        name,
        tenant_id,
        packages: Arc::new(Apt::new(&config.apt_root, config.apt_refresh)),
        antivirus: Arc::new(ClamAv {
            database_dir: config.clamav_database_dir.clone(),
            quarantine_dir: config.quarantine_dir.clone(),
            mirror: config.clamav_mirror.clone(),
        }),
        accounts: Arc::new(Sources(accounts)),
        tickets: Arc::new(MemoryTickets::default()),
        // Configurations are checked where they are read (`backups` above);
        // one that still fails here serves no set rather than a wrong one.
        backups: backups(config).unwrap_or_else(|e| {
            tracing::error!(error = %e, "backup sets not configured");
            Arc::new(NoBackups)
        }),
        clock: Arc::new(SystemClock),
        state: Arc::new(MemoryState::default()),
    }
}
