//! Unit-test a plugin's logic natively, with `cargo test`, without
//! building a component or running a host.
//!
//! With the `testing` feature (turn it on in `[dev-dependencies]`), every
//! [`host`](crate::host) capability answers from an in-memory [`Device`]
//! instead of calling the host, the way `steward plugin run --device
//! fixture.toml` answers from a simulated device: plan mode records intent
//! and changes nothing, apply mode changes the device, and a test looks at
//! the device afterwards. Parameters get the defaults the plugin's own
//! `describe` writes, as the host fills them in.
//!
//! ```toml
//! [dev-dependencies]
//! steward-sdk = { path = "...", features = ["testing"] }
//! ```
//!
//! What this does not check is the host's side: grants and their scopes,
//! parameter patterns, limits and output caps. Use `steward plugin test`
//! (the component against a fixture, through the real host) for those; a
//! call can still be made to fail with [`Device::deny`].
//!
//! # Example
//!
//! ```
//! use steward_sdk::host::accounts::{self, AccountSource};
//! use steward_sdk::testing::{self, Device};
//! use steward_sdk::{Change, Descriptor, Finding, Plugin, PluginError, Remediation, Severity};
//!
//! struct Unlocker;
//! impl Plugin for Unlocker {
//!     fn describe() -> Descriptor { Descriptor::new("unlocker", "0.1.0", "Unlocks accounts") }
//!     fn check() -> Result<Vec<Finding>, PluginError> {
//!         Ok(accounts::locked()?.iter()
//!             .map(|a| Finding::new(format!("locked:{}", a.name), Severity::Warning, "locked").resource(&a.name))
//!             .collect())
//!     }
//!     fn remediate(findings: Vec<Finding>) -> Result<Remediation, PluginError> {
//!         let mut done = Remediation::new();
//!         for f in &findings {
//!             let name = f.resource.clone();
//!             let outcome = accounts::unlock(&name, AccountSource::Local, "test")?;
//!             done.changes.push(Change::new("unlock", name, outcome));
//!         }
//!         Ok(done)
//!     }
//! }
//!
//! let device = Device::new().account(testing::locked_account("jdoe"));
//! let findings = device.check::<Unlocker>().unwrap();
//! assert_eq!(findings[0].id, "locked:jdoe");
//! let planned = device.plan::<Unlocker>(findings.clone()).unwrap();
//! assert!(device.accounts()[0].locked, "plan mode changes nothing");
//! device.apply::<Unlocker>(findings).unwrap();
//! assert!(!device.accounts()[0].locked);
//! assert_eq!(device.calls(), ["accounts.unlock jdoe (local): test"]);
//! # let _ = planned;
//! ```

use std::cell::RefCell;
use std::collections::{BTreeMap, BTreeSet};
use std::rc::Rc;

use crate::bindings::steward::plugin::{
    accounts::{Account, AccountSource},
    antivirus::{EngineStatus, QuarantineRecord},
    backups::{BackupSet, Snapshot},
    inventory::{AdminFields, DeviceFacts, Hardware},
    log::Level,
    packages::{AvailableUpdate, InstalledPackage, RebootStatus},
    tickets::Ticket,
};
use crate::{
    Descriptor, Finding, HostError, Instant, Outcome, ParamValue, Plugin, PluginError, Remediation,
    RunMode,
};

/// A backup set on a test device, with its snapshots and whether its
/// repository is sound (integrity checks and restore tests pass).
#[derive(Debug, Clone, PartialEq)]
pub struct TestBackupSet {
    /// The set as `backups::sets` lists it.
    pub set: BackupSet,
    /// Its snapshots, oldest first.
    pub snapshots: Vec<Snapshot>,
    /// Whether checks and restore tests pass.
    pub sound: bool,
}

/// Everything a test device holds; [`Device::with`] changes it directly.
#[derive(Debug, Clone)]
pub struct Fixture {
    /// `inventory::device`.
    pub facts: DeviceFacts,
    /// The tenant's other devices (`inventory::tenant_devices`).
    pub fleet: Vec<DeviceFacts>,
    /// `clock::now`: 2026-11-23T00:00:00Z unless set.
    pub now: Instant,
    /// Installed packages.
    pub installed: Vec<InstalledPackage>,
    /// Pending updates.
    pub updates: Vec<AvailableUpdate>,
    /// Reboot state.
    pub reboot: RebootStatus,
    /// Reboots requested (reasons).
    pub reboots_scheduled: Vec<String>,
    /// The antivirus engine; none when absent.
    pub antivirus: Option<EngineStatus>,
    /// Files: path and, when infected, the signature.
    pub files: Vec<(String, Option<String>)>,
    /// Quarantined files.
    pub quarantine: Vec<QuarantineRecord>,
    /// Accounts, local and directory.
    pub accounts: Vec<Account>,
    /// Backup sets.
    pub backups: Vec<TestBackupSet>,
    /// Tickets filed (in apply mode).
    pub tickets: Vec<Ticket>,
    /// The plugin's state.
    pub state: BTreeMap<String, String>,
    /// Parameters the test sets; the rest take `describe`'s defaults.
    pub params: BTreeMap<String, ParamValue>,
    /// `interface.function` calls answered `denied`.
    pub denied: BTreeSet<String>,
    /// Log lines, with their level.
    pub log: Vec<(Level, String)>,
    /// Mutating calls made, in order (`accounts.unlock jdoe (local): reason`).
    pub calls: Vec<String>,
    mode: RunMode,
}

impl Default for Fixture {
    fn default() -> Self {
        Fixture {
            facts: facts("ws-001"),
            fleet: Vec::new(),
            now: Instant {
                seconds: 1_795_392_000,
                nanoseconds: 0,
            },
            installed: Vec::new(),
            updates: Vec::new(),
            reboot: RebootStatus {
                required: false,
                packages: Vec::new(),
            },
            reboots_scheduled: Vec::new(),
            antivirus: None,
            files: Vec::new(),
            quarantine: Vec::new(),
            accounts: Vec::new(),
            backups: Vec::new(),
            tickets: Vec::new(),
            state: BTreeMap::new(),
            params: BTreeMap::new(),
            denied: BTreeSet::new(),
            log: Vec::new(),
            calls: Vec::new(),
            mode: RunMode::Plan,
        }
    }
}

/// Device facts with an id and nothing else: no disks, no OS, tenant
/// `acme`.
pub fn facts(id: &str) -> DeviceFacts {
    DeviceFacts {
        id: id.to_owned(),
        name: id.to_owned(),
        tenant_id: "acme".to_owned(),
        site_id: None,
        tags: Vec::new(),
        hardware: Hardware {
            vendor: None,
            model: None,
            serial: None,
            bios_date: None,
            cpu_model: None,
            cpu_cores: None,
            memory_bytes: None,
        },
        disks: Vec::new(),
        os: None,
        batteries: Vec::new(),
        admin: AdminFields {
            purchase_date: None,
            warranty_end: None,
            cost_cents: None,
            class: None,
            assigned_user: None,
        },
    }
}

/// A local account, locked after 5 failed attempts, in no group.
pub fn locked_account(name: &str) -> Account {
    Account {
        name: name.to_owned(),
        path: None,
        source: AccountSource::Local,
        locked: true,
        locked_since: None,
        failed_attempts: 5,
        groups: Vec::new(),
        disabled: false,
    }
}

/// A pending update from `from` to `to`, from `Debian-Security` when
/// `security`.
pub fn update(name: &str, from: &str, to: &str, security: bool) -> AvailableUpdate {
    AvailableUpdate {
        name: name.to_owned(),
        installed_version: from.to_owned(),
        candidate_version: to.to_owned(),
        security,
        origin: if security {
            "Debian-Security"
        } else {
            "Debian"
        }
        .to_owned(),
        held: false,
    }
}

thread_local! {
    static CURRENT: RefCell<Option<Rc<RefCell<Fixture>>>> = const { RefCell::new(None) };
}

/// The device the capabilities answer from in this thread.
fn with<R>(f: impl FnOnce(&mut Fixture) -> R) -> R {
    let device = CURRENT.with(|c| c.borrow().clone()).expect(
        "a host capability was called outside `testing::Device::check/plan/apply/run`; \
         call the plugin through a Device",
    );
    let mut fixture = device.borrow_mut();
    f(&mut fixture)
}

/// A test device: build it, run the plugin against it, look at it.
#[derive(Debug, Clone, Default)]
pub struct Device {
    inner: Rc<RefCell<Fixture>>,
}

impl Device {
    /// A device with nothing on it ([`Fixture::default`]).
    pub fn new() -> Self {
        Self::default()
    }

    /// Changes the fixture directly: any field, any capability.
    ///
    /// # Example
    ///
    /// ```
    /// use steward_sdk::testing::Device;
    /// let device = Device::new().with(|d| d.facts.tags.push("vip".into()));
    /// ```
    pub fn with(self, change: impl FnOnce(&mut Fixture)) -> Self {
        change(&mut self.inner.borrow_mut());
        self
    }

    /// Adds an account.
    pub fn account(self, account: Account) -> Self {
        self.with(|d| d.accounts.push(account))
    }

    /// Adds a pending update (see [`update`]).
    pub fn update(self, update: AvailableUpdate) -> Self {
        self.with(|d| d.updates.push(update))
    }

    /// Sets a parameter, as the caller of a run would.
    pub fn param(self, name: &str, value: impl Into<ParamValue>) -> Self {
        let value = value.into();
        self.with(|d| {
            d.params.insert(name.to_owned(), value);
        })
    }

    /// Answers `interface.function` (`accounts.unlock`) with `denied`, as
    /// a grant that does not cover the call would.
    pub fn deny(self, call: &str) -> Self {
        self.with(|d| {
            d.denied.insert(call.to_owned());
        })
    }

    /// Runs `f` with the capabilities answering from this device, in
    /// `mode`, with `P`'s parameter defaults.
    pub fn run<P: Plugin, R>(&self, mode: RunMode, f: impl FnOnce() -> R) -> R {
        let defaults = P::describe();
        {
            let mut d = self.inner.borrow_mut();
            d.mode = mode;
            apply_defaults(&mut d.params, &defaults);
        }
        let previous = CURRENT.with(|c| c.replace(Some(self.inner.clone())));
        struct Restore(Option<Rc<RefCell<Fixture>>>);
        impl Drop for Restore {
            fn drop(&mut self) {
                CURRENT.with(|c| *c.borrow_mut() = self.0.take());
            }
        }
        let _restore = Restore(previous);
        f()
    }

    /// `P::check()` against this device.
    pub fn check<P: Plugin>(&self) -> Result<Vec<Finding>, PluginError> {
        self.run::<P, _>(RunMode::Plan, P::check)
    }

    /// `P::remediate(findings)` in plan mode: nothing on the device
    /// changes; the changes come back `planned`.
    pub fn plan<P: Plugin>(&self, findings: Vec<Finding>) -> Result<Remediation, PluginError> {
        self.run::<P, _>(RunMode::Plan, || P::remediate(findings))
    }

    /// `P::remediate(findings)` in apply mode: the device changes.
    pub fn apply<P: Plugin>(&self, findings: Vec<Finding>) -> Result<Remediation, PluginError> {
        self.run::<P, _>(RunMode::Apply, || P::remediate(findings))
    }

    /// The fixture as it is now.
    pub fn fixture(&self) -> Fixture {
        self.inner.borrow().clone()
    }

    /// The accounts as they are now.
    pub fn accounts(&self) -> Vec<Account> {
        self.inner.borrow().accounts.clone()
    }

    /// Mutating calls made so far, in order.
    pub fn calls(&self) -> Vec<String> {
        self.inner.borrow().calls.clone()
    }

    /// Tickets filed so far (apply mode).
    pub fn tickets(&self) -> Vec<Ticket> {
        self.inner.borrow().tickets.clone()
    }

    /// Log lines so far.
    pub fn log(&self) -> Vec<String> {
        self.inner
            .borrow()
            .log
            .iter()
            .map(|(_, l)| l.clone())
            .collect()
    }
}

fn apply_defaults(params: &mut BTreeMap<String, ParamValue>, descriptor: &Descriptor) {
    for spec in &descriptor.params {
        if let Some(default) = &spec.default
            && !params.contains_key(&spec.name)
        {
            params.insert(spec.name.clone(), default.clone());
        }
    }
}

impl From<bool> for ParamValue {
    fn from(v: bool) -> Self {
        ParamValue::Boolean(v)
    }
}
impl From<i64> for ParamValue {
    fn from(v: i64) -> Self {
        ParamValue::Integer(v)
    }
}
impl From<f64> for ParamValue {
    fn from(v: f64) -> Self {
        ParamValue::Float(v)
    }
}
impl From<&str> for ParamValue {
    fn from(v: &str) -> Self {
        ParamValue::Text(v.to_owned())
    }
}
impl From<Vec<&str>> for ParamValue {
    fn from(v: Vec<&str>) -> Self {
        ParamValue::TextList(v.into_iter().map(str::to_owned).collect())
    }
}

/// `denied` when the test said so.
fn gate(d: &Fixture, call: &str) -> Result<(), HostError> {
    if d.denied.contains(call) {
        Err(HostError::Denied(format!(
            "`{call}` is denied on this test device"
        )))
    } else {
        Ok(())
    }
}

fn outcome(d: &Fixture) -> Outcome {
    match d.mode {
        RunMode::Apply => Outcome::Applied,
        RunMode::Plan => Outcome::Planned,
    }
}

fn applying(d: &Fixture) -> bool {
    d.mode == RunMode::Apply
}

/// The capabilities as the test device answers them; `crate::host`
/// re-exports these under the `testing` feature.
pub mod host {
    /// `steward:plugin/accounts`.
    pub mod accounts {
        pub use crate::bindings::steward::plugin::accounts::{Account, AccountSource};
        use crate::testing::{applying, gate, outcome, with};
        use crate::{HostError, Outcome};

        fn source_word(s: AccountSource) -> &'static str {
            match s {
                AccountSource::Local => "local",
                AccountSource::Directory => "directory",
            }
        }

        /// Locked accounts.
        pub fn locked() -> Result<Vec<Account>, HostError> {
            with(|d| {
                gate(d, "accounts.locked")?;
                Ok(d.accounts.iter().filter(|a| a.locked).cloned().collect())
            })
        }

        /// One account by name (case-insensitive).
        pub fn lookup(name: &str) -> Result<Account, HostError> {
            with(|d| {
                gate(d, "accounts.lookup")?;
                d.accounts
                    .iter()
                    .find(|a| a.name.eq_ignore_ascii_case(name))
                    .cloned()
                    .ok_or_else(|| HostError::NotFound(format!("no account `{name}`")))
            })
        }

        /// Unlocks `name` in `source`, recording `reason`.
        pub fn unlock(
            name: &str,
            source: AccountSource,
            reason: &str,
        ) -> Result<Outcome, HostError> {
            with(|d| {
                gate(d, "accounts.unlock")?;
                let out = outcome(d);
                let apply = applying(d);
                let account = d
                    .accounts
                    .iter_mut()
                    .find(|a| a.name.eq_ignore_ascii_case(name) && a.source == source)
                    .ok_or_else(|| {
                        HostError::NotFound(format!("no {} account `{name}`", source_word(source)))
                    })?;
                if apply {
                    account.locked = false;
                    account.locked_since = None;
                    account.failed_attempts = 0;
                    d.calls.push(format!(
                        "accounts.unlock {name} ({}): {reason}",
                        source_word(source)
                    ));
                }
                Ok(out)
            })
        }
    }

    /// `steward:plugin/antivirus`.
    pub mod antivirus {
        pub use crate::bindings::steward::plugin::antivirus::{
            Detection, EngineStatus, QuarantineRecord, ScanReport, SignatureDatabase,
        };
        use crate::testing::{applying, gate, outcome, with};
        use crate::{HostError, Outcome};

        fn engine(d: &crate::testing::Fixture) -> Result<EngineStatus, HostError> {
            d.antivirus
                .clone()
                .ok_or_else(|| HostError::Unavailable("no antivirus engine on this device".into()))
        }

        /// The engine's status.
        pub fn status() -> Result<EngineStatus, HostError> {
            with(|d| {
                gate(d, "antivirus.status")?;
                engine(d)
            })
        }

        /// Scans the files under `paths`.
        pub fn scan(paths: &[String]) -> Result<ScanReport, HostError> {
            with(|d| {
                gate(d, "antivirus.scan")?;
                engine(d)?;
                let under = |p: &str| {
                    paths.iter().any(|root| {
                        p == root
                            || p.strip_prefix(root.trim_end_matches('/'))
                                .is_some_and(|rest| rest.starts_with('/'))
                    })
                };
                let scanned: Vec<&(String, Option<String>)> =
                    d.files.iter().filter(|(p, _)| under(p)).collect();
                Ok(ScanReport {
                    paths: paths.to_vec(),
                    scanned_files: scanned.len() as u64,
                    detections: scanned
                        .iter()
                        .filter_map(|(p, s)| {
                            s.as_ref().map(|s| Detection {
                                path: p.clone(),
                                signature: s.clone(),
                            })
                        })
                        .collect(),
                    started: d.now,
                    finished: d.now,
                })
            })
        }

        /// Updates the signature databases.
        pub fn update_signatures() -> Result<Outcome, HostError> {
            with(|d| {
                gate(d, "antivirus.update-signatures")?;
                engine(d)?;
                if applying(d) {
                    d.calls.push("antivirus.update-signatures".into());
                }
                Ok(outcome(d))
            })
        }

        /// Moves `path` into quarantine.
        pub fn quarantine(path: &str, signature: &str) -> Result<QuarantineRecord, HostError> {
            with(|d| {
                gate(d, "antivirus.quarantine")?;
                engine(d)?;
                let index = d
                    .files
                    .iter()
                    .position(|(p, _)| p == path)
                    .ok_or_else(|| HostError::NotFound(format!("no file at `{path}`")))?;
                let record = QuarantineRecord {
                    id: format!("q-{}", d.quarantine.len() + 1),
                    original_path: path.to_owned(),
                    signature: signature.to_owned(),
                    outcome: outcome(d),
                };
                if applying(d) {
                    d.files.remove(index);
                    d.quarantine.push(record.clone());
                    d.calls.push(format!("antivirus.quarantine {path}"));
                }
                Ok(record)
            })
        }
    }

    /// `steward:plugin/backups`.
    pub mod backups {
        pub use crate::bindings::steward::plugin::backups::{
            BackupResult, BackupSet, FileCheck, IntegrityReport, RestoreReport, RunOutcome,
            Snapshot,
        };
        use crate::testing::{TestBackupSet, applying, gate, outcome, with};
        use crate::{HostError, Outcome};

        fn find<'a>(
            d: &'a mut crate::testing::Fixture,
            set: &str,
        ) -> Result<&'a mut TestBackupSet, HostError> {
            d.backups
                .iter_mut()
                .find(|b| b.set.name == set)
                .ok_or_else(|| HostError::NotFound(format!("no backup set `{set}`")))
        }

        /// The device's backup sets.
        pub fn sets() -> Result<Vec<BackupSet>, HostError> {
            with(|d| {
                gate(d, "backups.sets")?;
                Ok(d.backups.iter().map(|b| b.set.clone()).collect())
            })
        }

        /// A set's snapshots, oldest first.
        pub fn snapshots(set: &str) -> Result<Vec<Snapshot>, HostError> {
            with(|d| {
                gate(d, "backups.snapshots")?;
                Ok(find(d, set)?.snapshots.clone())
            })
        }

        /// Checks a set's repository.
        pub fn verify(set: &str, data_percent: u8) -> Result<IntegrityReport, HostError> {
            with(|d| {
                gate(d, "backups.verify")?;
                let apply = applying(d);
                let sound = find(d, set)?.sound;
                if !apply {
                    return Ok(IntegrityReport {
                        ok: true,
                        data_read_percent: 0,
                        errors: Vec::new(),
                        outcome: Outcome::Planned,
                    });
                }
                d.calls.push(format!("backups.verify {set}"));
                Ok(IntegrityReport {
                    ok: sound,
                    data_read_percent: data_percent,
                    errors: if sound {
                        Vec::new()
                    } else {
                        vec!["the repository is damaged".into()]
                    },
                    outcome: Outcome::Applied,
                })
            })
        }

        /// Runs a backup of the set now.
        pub fn run_backup(set: &str) -> Result<BackupResult, HostError> {
            with(|d| {
                gate(d, "backups.run-backup")?;
                let now = d.now;
                let apply = applying(d);
                let b = find(d, set)?;
                if !apply {
                    return Ok(BackupResult {
                        snapshot_id: None,
                        run: None,
                        outcome: Outcome::Planned,
                    });
                }
                let id = format!("test-{set}-{}", b.snapshots.len() + 1);
                let run = RunOutcome {
                    started: now,
                    finished: now,
                    succeeded: true,
                    message: format!("snapshot {id} made"),
                };
                b.snapshots.push(Snapshot {
                    id: id.clone(),
                    time: now,
                    paths: b.set.paths.clone(),
                    size_bytes: 1 << 20,
                    files: 100,
                });
                b.set.last_run = Some(run.clone());
                d.calls.push(format!("backups.run-backup {set}"));
                Ok(BackupResult {
                    snapshot_id: Some(id),
                    run: Some(run),
                    outcome: Outcome::Applied,
                })
            })
        }

        /// Restores `sample` files of the newest snapshot to scratch space
        /// and compares them.
        pub fn restore_test(set: &str, sample: u32) -> Result<RestoreReport, HostError> {
            with(|d| {
                gate(d, "backups.restore-test")?;
                let out = outcome(d);
                let apply = applying(d);
                let b = find(d, set)?;
                let sound = b.sound;
                let newest = b.snapshots.last().cloned().ok_or_else(|| {
                    HostError::NotFound(format!(
                        "backup set `{set}` has no snapshot to restore from"
                    ))
                })?;
                let files = if apply {
                    (0..sample.min(3))
                        .map(|i| FileCheck {
                            path: format!("{}/file-{i}", newest.paths.first().map_or("", |p| p)),
                            size_bytes: 1024,
                            restored_sha256: "0".repeat(64),
                            matches_snapshot: sound,
                            matches_live: None,
                            problem: if sound {
                                String::new()
                            } else {
                                "differs".into()
                            },
                        })
                        .collect()
                } else {
                    Vec::new()
                };
                if apply {
                    d.calls.push(format!("backups.restore-test {set}"));
                }
                Ok(RestoreReport {
                    snapshot_id: newest.id,
                    snapshot_time: newest.time,
                    files,
                    passed: !apply || sound,
                    scratch_removed: true,
                    outcome: out,
                })
            })
        }
    }

    /// `steward:plugin/clock`.
    pub mod clock {
        use crate::Instant;

        /// The test device's clock ([`Fixture::now`](crate::testing::Fixture::now)).
        pub fn now() -> Instant {
            crate::testing::with(|d| d.now)
        }
    }

    /// `steward:plugin/config`.
    pub mod config {
        pub use crate::bindings::steward::plugin::config::RunContext;
        use crate::{ParamValue, RunMode};

        /// A parameter: the test's value or `describe`'s default.
        pub fn get(name: &str) -> Option<ParamValue> {
            crate::testing::with(|d| d.params.get(name).cloned())
        }

        /// Plan for `check` and `plan`, apply for `apply`.
        pub fn mode() -> RunMode {
            crate::testing::with(|d| d.mode)
        }

        /// The run: id `test`, the device's id, name and tenant.
        pub fn context() -> RunContext {
            crate::testing::with(|d| RunContext {
                run_id: "test".into(),
                device_id: d.facts.id.clone(),
                device_name: d.facts.name.clone(),
                tenant_id: d.facts.tenant_id.clone(),
            })
        }
    }

    /// `steward:plugin/inventory`.
    pub mod inventory {
        use crate::HostError;
        pub use crate::bindings::steward::plugin::inventory::{
            AdminFields, Battery, DeviceClass, DeviceFacts, Disk, Hardware, Health, OsInfo,
        };
        use crate::testing::{gate, with};

        /// The device's facts.
        pub fn device() -> Result<DeviceFacts, HostError> {
            with(|d| {
                gate(d, "inventory.device")?;
                Ok(d.facts.clone())
            })
        }

        /// The tenant's devices: this one, then the fleet.
        pub fn tenant_devices() -> Result<Vec<DeviceFacts>, HostError> {
            with(|d| {
                gate(d, "inventory.tenant-devices")?;
                Ok(std::iter::once(d.facts.clone())
                    .chain(d.fleet.iter().cloned())
                    .collect())
            })
        }
    }

    /// `steward:plugin/log`.
    pub mod log {
        use crate::Field;
        pub use crate::bindings::steward::plugin::log::Level;

        /// Records the line on the test device (fields as `key=value`).
        pub fn emit(level: Level, message: &str, fields: &[Field]) {
            let mut line = message.to_owned();
            for f in fields {
                line.push_str(&format!(" {}={}", f.key, f.value));
            }
            crate::testing::with(|d| d.log.push((level, line)));
        }
    }

    /// `steward:plugin/packages`.
    pub mod packages {
        pub use crate::bindings::steward::plugin::packages::{
            AvailableUpdate, InstalledPackage, PackageChange, RebootStatus,
        };
        use crate::testing::{applying, gate, outcome, with};
        use crate::{HostError, Outcome};

        /// Installed packages.
        pub fn installed() -> Result<Vec<InstalledPackage>, HostError> {
            with(|d| {
                gate(d, "packages.installed")?;
                Ok(d.installed.clone())
            })
        }

        /// Pending updates.
        pub fn updates() -> Result<Vec<AvailableUpdate>, HostError> {
            with(|d| {
                gate(d, "packages.updates")?;
                Ok(d.updates.clone())
            })
        }

        /// Whether a reboot is pending.
        pub fn reboot_required() -> Result<RebootStatus, HostError> {
            with(|d| {
                gate(d, "packages.reboot-required")?;
                Ok(d.reboot.clone())
            })
        }

        /// Installs the named updates, all or none.
        pub fn install_updates(names: &[String]) -> Result<Vec<PackageChange>, HostError> {
            with(|d| {
                gate(d, "packages.install-updates")?;
                let mut picked = Vec::new();
                for name in names {
                    let u = d.updates.iter().find(|u| &u.name == name).ok_or_else(|| {
                        HostError::NotFound(format!("no pending update for `{name}`"))
                    })?;
                    if u.held {
                        return Err(HostError::InvalidArgument(format!("`{name}` is held back")));
                    }
                    picked.push(u.clone());
                }
                let out = outcome(d);
                if applying(d) {
                    d.updates.retain(|u| !names.contains(&u.name));
                    for u in &picked {
                        d.installed.retain(|i| i.name != u.name);
                        d.installed.push(InstalledPackage {
                            name: u.name.clone(),
                            version: u.candidate_version.clone(),
                            architecture: "amd64".into(),
                        });
                        d.calls.push(format!(
                            "packages.install-updates {} {} -> {}",
                            u.name, u.installed_version, u.candidate_version
                        ));
                    }
                }
                Ok(picked
                    .into_iter()
                    .map(|u| PackageChange {
                        name: u.name,
                        from_version: Some(u.installed_version),
                        to_version: u.candidate_version,
                        outcome: out,
                    })
                    .collect())
            })
        }

        /// Schedules a reboot.
        pub fn schedule_reboot(reason: &str) -> Result<Outcome, HostError> {
            with(|d| {
                gate(d, "packages.schedule-reboot")?;
                if applying(d) {
                    d.reboots_scheduled.push(reason.to_owned());
                    d.calls.push(format!("packages.schedule-reboot: {reason}"));
                }
                Ok(outcome(d))
            })
        }
    }

    /// `steward:plugin/state`.
    pub mod state {
        use crate::HostError;
        use crate::testing::with;

        /// The value under `key`.
        pub fn get(key: &str) -> Option<String> {
            with(|d| d.state.get(key).cloned())
        }

        /// Stores `value` under `key`.
        pub fn set(key: &str, value: &str) -> Result<(), HostError> {
            with(|d| {
                d.state.insert(key.to_owned(), value.to_owned());
                Ok(())
            })
        }

        /// Forgets `key`.
        pub fn delete(key: &str) {
            with(|d| {
                d.state.remove(key);
            })
        }

        /// Keys starting with `prefix`.
        pub fn keys(prefix: &str) -> Vec<String> {
            with(|d| {
                d.state
                    .keys()
                    .filter(|k| k.starts_with(prefix))
                    .cloned()
                    .collect()
            })
        }
    }

    /// `steward:plugin/tickets`.
    pub mod tickets {
        use crate::HostError;
        pub use crate::bindings::steward::plugin::tickets::{Filed, Ticket, TicketKind};
        use crate::testing::{applying, gate, outcome, with};

        /// Files `ticket` (apply mode) or records the intent (plan mode).
        pub fn file(ticket: &Ticket) -> Result<Filed, HostError> {
            with(|d| {
                gate(d, "tickets.file")?;
                let out = outcome(d);
                if !applying(d) {
                    return Ok(Filed {
                        id: "planned".into(),
                        outcome: out,
                    });
                }
                d.tickets.push(ticket.clone());
                d.calls
                    .push(format!("tickets.file {}: {}", ticket.queue, ticket.title));
                Ok(Filed {
                    id: format!("T-{}", d.tickets.len()),
                    outcome: out,
                })
            })
        }
    }
}
