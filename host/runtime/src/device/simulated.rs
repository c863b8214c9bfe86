//! A simulated device: every capability served from memory, loaded from a
//! TOML or JSON fixture. For demos, load tests and the runtime's own tests;
//! never a stand-in for testing a real provider.
//!
//! A fixture may add latency to any call (`[delays] "packages.updates" =
//! 5000`) to rehearse slow providers.
//!
//! A [persistent](Simulated::persistent) device keeps its state in a file,
//! rewritten after every change, so a restart of the process does not reset
//! it, and appends each call it applies to a ledger beside it: the fault
//! tests count there, at the provider, that no call was applied twice.

use std::collections::BTreeMap;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::Context as _;
use async_trait::async_trait;
use serde::{Deserialize, Serialize};

use super::Device;
use crate::bindings::accounts::Account;
use crate::bindings::antivirus::Detection;
use crate::bindings::antivirus::{EngineStatus, QuarantineRecord, ScanReport};
use crate::bindings::backups::{
    BackupResult, BackupSet, FileCheck, IntegrityReport, RestoreReport, RunOutcome, Snapshot,
};
use crate::bindings::inventory::DeviceFacts;
use crate::bindings::packages::{AvailableUpdate, InstalledPackage, PackageChange, RebootStatus};
use crate::bindings::types::{HostError, Instant, Outcome, RunMode};
use crate::capability::accounts::AccountsProvider;
use crate::capability::antivirus::AntivirusProvider;
use crate::capability::backups::BackupsProvider;
use crate::capability::clock::{ClockProvider, SystemClock};
use crate::capability::inventory::InventoryProvider;
use crate::capability::packages::PackagesProvider;
use crate::capability::state::MemoryState;
use crate::capability::tickets::MemoryTickets;
use crate::store::outcome_for;

/// A simulated file on the device, infected when `signature` is set.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SimFile {
    /// Absolute path.
    pub path: String,
    /// Signature name of the malware it carries, if any.
    #[serde(default)]
    pub signature: Option<String>,
}

/// The mutable state of a simulated device; also its fixture format.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Fixture {
    /// Device facts; `id`, `name` and `tenant-id` identify the device.
    pub facts: DeviceFacts,
    /// Other devices of the same tenant, for tenant-scoped plugins.
    #[serde(default)]
    pub fleet: Vec<DeviceFacts>,
    /// A fixed clock, for reproducible runs; the host's clock when absent.
    #[serde(default)]
    pub now: Option<Instant>,
    /// Installed packages.
    #[serde(default)]
    pub installed: Vec<InstalledPackage>,
    /// Pending updates.
    #[serde(default)]
    pub updates: Vec<AvailableUpdate>,
    /// Reboot state.
    #[serde(default = "no_reboot")]
    pub reboot: RebootStatus,
    /// Reboots requested so far (reasons).
    #[serde(default)]
    pub reboots_scheduled: Vec<String>,
    /// Antivirus engine status; no engine when absent.
    #[serde(default)]
    pub antivirus: Option<EngineStatus>,
    /// Files on the device, some infected.
    #[serde(default)]
    pub files: Vec<SimFile>,
    /// Quarantined files.
    #[serde(default)]
    pub quarantine: Vec<QuarantineRecord>,
    /// Accounts.
    #[serde(default)]
    pub accounts: Vec<Account>,
    /// Backup sets, with their snapshots.
    #[serde(default)]
    pub backups: Vec<SimBackupSet>,
    /// Milliseconds to wait inside a call, by `interface.function`.
    #[serde(default)]
    pub delays: BTreeMap<String, u64>,
}

/// A simulated backup set: what `backups.sets` lists, its snapshots, and
/// whether its repository is sound (integrity checks and restore tests
/// pass).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SimBackupSet {
    /// The set as listed.
    pub set: BackupSet,
    /// Its snapshots, oldest first.
    #[serde(default)]
    pub snapshots: Vec<Snapshot>,
    /// Whether checks and restore tests pass (default true).
    #[serde(default = "sound")]
    pub sound: bool,
}

fn sound() -> bool {
    true
}

/// Writes `fixture` to `path` through a temporary file and a rename, so a
/// crash never leaves half a state.
fn save(path: &Path, fixture: &Fixture) -> anyhow::Result<()> {
    let tmp = path.with_extension("tmp");
    let mut file = std::fs::File::create(&tmp)?;
    file.write_all(&serde_json::to_vec(fixture)?)?;
    file.sync_data()?;
    std::fs::rename(&tmp, path)?;
    Ok(())
}

fn no_reboot() -> RebootStatus {
    RebootStatus {
        required: false,
        packages: Vec::new(),
    }
}

impl Fixture {
    /// Reads a fixture from a `.toml` or `.json` file.
    pub fn load(path: &Path) -> anyhow::Result<Self> {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("failed to read device fixture {}", path.display()))?;
        let parsed: serde_json::Value = if path.extension().is_some_and(|e| e == "json") {
            serde_json::from_str(&text)?
        } else {
            toml::from_str(&text)?
        };
        Self::from_value(parsed)
            .with_context(|| format!("invalid device fixture {}", path.display()))
    }

    /// A fixture from JSON, its keys and enum values in kebab-case as the
    /// WIT names them (`tenant-id`, `failing`); the `snake_case` keys and
    /// `PascalCase` values of earlier fixtures are read too.
    pub fn from_value(value: serde_json::Value) -> anyhow::Result<Self> {
        steward_contract::kebab::from_value(value).map_err(anyhow::Error::from)
    }
}

/// The simulated device's providers, sharing one state.
#[derive(Debug)]
pub struct Simulated {
    state: Mutex<Fixture>,
    /// Tickets filed against this device.
    pub tickets: Arc<MemoryTickets>,
    /// The state file of a persistent device.
    persist: Option<PathBuf>,
}

impl Simulated {
    /// A simulated device in the fixture's state.
    pub fn new(fixture: Fixture) -> Arc<Self> {
        Arc::new(Self {
            state: Mutex::new(fixture),
            tickets: Arc::new(MemoryTickets::default()),
            persist: None,
        })
    }

    /// A simulated device whose state lives in `path` (JSON): read from it
    /// when it exists (an earlier process left it), else `fixture`, written
    /// there. Every applied call rewrites it and appends a line to the
    /// ledger, [`ledger_path`](Self::ledger_path).
    ///
    /// # Errors
    ///
    /// The file cannot be read, parsed or written.
    pub fn persistent(fixture: Fixture, path: PathBuf) -> anyhow::Result<Arc<Self>> {
        let fixture = match std::fs::read(&path) {
            Ok(bytes) => serde_json::from_slice(&bytes)
                .with_context(|| format!("invalid simulated device state {}", path.display()))?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                save(&path, &fixture)?;
                fixture
            }
            Err(e) => {
                return Err(e).with_context(|| format!("cannot read {}", path.display()));
            }
        };
        Ok(Arc::new(Self {
            state: Mutex::new(fixture),
            tickets: Arc::new(MemoryTickets::default()),
            persist: Some(path),
        }))
    }

    /// The ledger of a persistent device's state file `path`: one line per
    /// applied call, `interface.function arguments`.
    pub fn ledger_path(path: &Path) -> PathBuf {
        path.with_extension("applied")
    }

    /// A persistent device's bookkeeping after an applied call: the state
    /// (`s`, still locked) saved, the call appended to the ledger.
    fn applied(&self, s: &Fixture, call: &str, arguments: &str) -> Result<(), HostError> {
        let Some(path) = &self.persist else {
            return Ok(());
        };
        let result = save(path, s).and_then(|()| {
            let mut ledger = std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(Self::ledger_path(path))?;
            ledger.write_all(format!("{call} {arguments}\n").as_bytes())?;
            ledger.sync_data()?;
            Ok(())
        });
        result.map_err(|e| {
            HostError::Unavailable(format!("the simulated device cannot keep its state: {e:#}"))
        })
    }

    /// Puts the device in `fixture`'s state, as if it had changed on its
    /// own (an update published, a file cleaned) between runs.
    pub fn set_state(&self, fixture: Fixture) {
        *self.lock() = fixture;
    }

    /// The device's current state, to compare before and after a run.
    pub fn snapshot(&self) -> Fixture {
        self.lock().clone()
    }

    /// A [`Device`] served entirely by this simulation.
    pub fn device(self: &Arc<Self>) -> Device {
        let facts = self.lock().facts.clone();
        Device {
            id: facts.id,
            name: facts.name,
            tenant_id: facts.tenant_id,
            inventory: self.clone(),
            packages: self.clone(),
            antivirus: self.clone(),
            accounts: self.clone(),
            tickets: self.tickets.clone(),
            backups: self.clone(),
            clock: self.clone(),
            state: Arc::new(MemoryState::default()),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Fixture> {
        self.state.lock().expect("simulated device lock poisoned")
    }

    async fn delay(&self, call: &str) {
        let ms = self.lock().delays.get(call).copied();
        if let Some(ms) = ms {
            tokio::time::sleep(Duration::from_millis(ms)).await;
        }
    }

    fn engine(&self) -> Result<EngineStatus, HostError> {
        self.lock()
            .antivirus
            .clone()
            .ok_or_else(|| HostError::Unavailable("no antivirus engine on this device".into()))
    }
}

#[async_trait]
impl InventoryProvider for Simulated {
    async fn device(&self) -> Result<DeviceFacts, HostError> {
        self.delay("inventory.device").await;
        Ok(self.lock().facts.clone())
    }

    async fn tenant_devices(&self) -> Result<Vec<DeviceFacts>, HostError> {
        self.delay("inventory.tenant-devices").await;
        let s = self.lock();
        Ok(std::iter::once(s.facts.clone())
            .chain(s.fleet.iter().cloned())
            .collect())
    }
}

#[async_trait]
impl PackagesProvider for Simulated {
    async fn installed(&self) -> Result<Vec<InstalledPackage>, HostError> {
        self.delay("packages.installed").await;
        Ok(self.lock().installed.clone())
    }

    async fn updates(&self) -> Result<Vec<AvailableUpdate>, HostError> {
        self.delay("packages.updates").await;
        Ok(self.lock().updates.clone())
    }

    async fn reboot_required(&self) -> Result<RebootStatus, HostError> {
        self.delay("packages.reboot-required").await;
        Ok(self.lock().reboot.clone())
    }

    async fn install_updates(
        &self,
        names: &[String],
        mode: RunMode,
    ) -> Result<Vec<PackageChange>, HostError> {
        self.delay("packages.install-updates").await;
        let mut s = self.lock();
        // Resolve everything before changing anything, so a bad name leaves
        // the device as it was.
        let mut picked = Vec::new();
        for name in names {
            let update =
                s.updates.iter().find(|u| &u.name == name).ok_or_else(|| {
                    HostError::NotFound(format!("no pending update for `{name}`"))
                })?;
            if update.held {
                return Err(HostError::InvalidArgument(format!("`{name}` is held back")));
            }
            picked.push(update.clone());
        }
        let changes = picked
            .iter()
            .map(|u| PackageChange {
                name: u.name.clone(),
                from_version: Some(u.installed_version.clone()),
                to_version: u.candidate_version.clone(),
                outcome: outcome_for(mode),
            })
            .collect();
        if mode == RunMode::Apply {
            for u in &picked {
                s.updates.retain(|x| x.name != u.name);
                match s.installed.iter_mut().find(|p| p.name == u.name) {
                    Some(p) => p.version = u.candidate_version.clone(),
                    None => s.installed.push(InstalledPackage {
                        name: u.name.clone(),
                        version: u.candidate_version.clone(),
                        architecture: "all".into(),
                    }),
                }
            }
            self.applied(&s, "packages.install-updates", &names.join(" "))?;
        }
        Ok(changes)
    }

    async fn schedule_reboot(&self, reason: &str, mode: RunMode) -> Result<Outcome, HostError> {
        self.delay("packages.schedule-reboot").await;
        if mode == RunMode::Apply {
            let mut s = self.lock();
            s.reboots_scheduled.push(reason.to_string());
            self.applied(&s, "packages.schedule-reboot", reason)?;
        }
        Ok(outcome_for(mode))
    }
}

#[async_trait]
impl AntivirusProvider for Simulated {
    async fn status(&self) -> Result<EngineStatus, HostError> {
        self.delay("antivirus.status").await;
        self.engine()
    }

    async fn scan(&self, paths: &[String]) -> Result<ScanReport, HostError> {
        self.delay("antivirus.scan").await;
        self.engine()?;
        let started = ClockProvider::now(self);
        let s = self.lock();
        let under = |file: &str| {
            paths
                .iter()
                .any(|p| file == p || file.starts_with(&format!("{}/", p.trim_end_matches('/'))))
        };
        let scanned: Vec<&SimFile> = s.files.iter().filter(|f| under(&f.path)).collect();
        Ok(ScanReport {
            paths: paths.to_vec(),
            scanned_files: scanned.len() as u64,
            detections: scanned
                .iter()
                .filter_map(|f| {
                    f.signature.as_ref().map(|sig| Detection {
                        path: f.path.clone(),
                        signature: sig.clone(),
                    })
                })
                .collect(),
            started,
            finished: started,
        })
    }

    async fn update_signatures(&self, mode: RunMode) -> Result<Outcome, HostError> {
        self.delay("antivirus.update-signatures").await;
        self.engine()?;
        if mode == RunMode::Apply {
            let now = ClockProvider::now(self);
            let mut s = self.lock();
            if let Some(engine) = s.antivirus.as_mut() {
                for db in &mut engine.databases {
                    db.updated = Some(now);
                }
            }
            self.applied(&s, "antivirus.update-signatures", "")?;
        }
        Ok(outcome_for(mode))
    }

    async fn quarantine(
        &self,
        path: &str,
        signature: &str,
        mode: RunMode,
    ) -> Result<QuarantineRecord, HostError> {
        self.delay("antivirus.quarantine").await;
        self.engine()?;
        let mut s = self.lock();
        let index = s
            .files
            .iter()
            .position(|f| f.path == path)
            .ok_or_else(|| HostError::NotFound(format!("no file at `{path}`")))?;
        let record = QuarantineRecord {
            id: format!("q-{}", s.quarantine.len() + 1),
            original_path: path.to_string(),
            signature: signature.to_string(),
            outcome: outcome_for(mode),
        };
        if mode == RunMode::Apply {
            s.files.remove(index);
            s.quarantine.push(record.clone());
            self.applied(&s, "antivirus.quarantine", path)?;
        }
        Ok(record)
    }
}

#[async_trait]
impl AccountsProvider for Simulated {
    async fn locked(&self) -> Result<Vec<Account>, HostError> {
        self.delay("accounts.locked").await;
        Ok(self
            .lock()
            .accounts
            .iter()
            .filter(|a| a.locked)
            .cloned()
            .collect())
    }

    async fn lookup(&self, name: &str) -> Result<Account, HostError> {
        self.delay("accounts.lookup").await;
        self.lock()
            .accounts
            .iter()
            .find(|a| a.name == name)
            .cloned()
            .ok_or_else(|| HostError::NotFound(format!("no account `{name}`")))
    }

    async fn unlock(&self, name: &str, mode: RunMode) -> Result<Outcome, HostError> {
        self.delay("accounts.unlock").await;
        let mut s = self.lock();
        let account = s
            .accounts
            .iter_mut()
            .find(|a| a.name == name)
            .ok_or_else(|| HostError::NotFound(format!("no account `{name}`")))?;
        if mode == RunMode::Apply {
            account.locked = false;
            account.locked_since = None;
            account.failed_attempts = 0;
            self.applied(&s, "accounts.unlock", name)?;
        }
        Ok(outcome_for(mode))
    }
}

impl ClockProvider for Simulated {
    fn now(&self) -> Instant {
        self.lock().now.unwrap_or_else(|| SystemClock.now())
    }
}

impl Simulated {
    fn backup_set(&self, name: &str) -> Result<SimBackupSet, HostError> {
        self.lock()
            .backups
            .iter()
            .find(|b| b.set.name == name)
            .cloned()
            .ok_or_else(|| crate::capability::backups::unknown(name))
    }
}

#[async_trait]
impl BackupsProvider for Simulated {
    async fn sets(&self) -> Result<Vec<BackupSet>, HostError> {
        self.delay("backups.sets").await;
        Ok(self.lock().backups.iter().map(|b| b.set.clone()).collect())
    }

    async fn snapshots(&self, set: &str) -> Result<Vec<Snapshot>, HostError> {
        self.delay("backups.snapshots").await;
        Ok(self.backup_set(set)?.snapshots)
    }

    async fn verify(
        &self,
        set: &str,
        data_percent: u8,
        mode: RunMode,
    ) -> Result<IntegrityReport, HostError> {
        self.delay("backups.verify").await;
        let b = self.backup_set(set)?;
        Ok(match mode {
            RunMode::Plan => IntegrityReport::planned(),
            RunMode::Apply => IntegrityReport {
                ok: b.sound,
                data_read_percent: data_percent,
                errors: if b.sound {
                    Vec::new()
                } else {
                    vec!["pack 5eed does not match its hash".into()]
                },
                outcome: Outcome::Applied,
            },
        })
    }

    async fn run_backup(&self, set: &str, mode: RunMode) -> Result<BackupResult, HostError> {
        self.delay("backups.run-backup").await;
        let b = self.backup_set(set)?;
        if mode == RunMode::Plan {
            return Ok(BackupResult::planned());
        }
        let now = ClockProvider::now(self);
        let mut s = self.lock();
        let previous = b.snapshots.last();
        let id = format!("sim-{}-{}", set, b.snapshots.len() + 1);
        let snapshot = Snapshot {
            id: id.clone(),
            time: now,
            paths: b.set.paths.clone(),
            size_bytes: previous.map_or(1 << 20, |p| p.size_bytes),
            files: previous.map_or(100, |p| p.files),
        };
        let run = RunOutcome {
            started: now,
            finished: now,
            succeeded: true,
            message: format!("snapshot {id} made"),
        };
        if let Some(entry) = s.backups.iter_mut().find(|x| x.set.name == set) {
            entry.snapshots.push(snapshot);
            entry.set.last_run = Some(run.clone());
        }
        self.applied(&s, "backups.run-backup", set)?;
        Ok(BackupResult {
            snapshot_id: Some(id),
            run: Some(run),
            outcome: Outcome::Applied,
        })
    }

    async fn restore_test(
        &self,
        set: &str,
        sample: u32,
        mode: RunMode,
    ) -> Result<RestoreReport, HostError> {
        self.delay("backups.restore-test").await;
        let b = self.backup_set(set)?;
        let newest = b.snapshots.last().cloned().ok_or_else(|| {
            HostError::NotFound(format!(
                "backup set `{set}` has no snapshot to restore from"
            ))
        })?;
        let root = b.set.paths.first().cloned().unwrap_or_else(|| "/".into());
        let files = match mode {
            RunMode::Plan => Vec::new(),
            RunMode::Apply => (1..=sample.min(3))
                .map(|i| FileCheck {
                    path: format!("{}/file-{i}", root.trim_end_matches('/')),
                    size_bytes: 1024,
                    restored_sha256: "5eed".repeat(16),
                    matches_snapshot: b.sound,
                    matches_live: Some(b.sound),
                    problem: if b.sound {
                        String::new()
                    } else {
                        "not restored: ciphertext verification failed".into()
                    },
                })
                .collect(),
        };
        Ok(RestoreReport {
            snapshot_id: newest.id,
            snapshot_time: newest.time,
            passed: mode == RunMode::Apply && b.sound,
            files,
            scratch_removed: true,
            outcome: outcome_for(mode),
        })
    }
}
