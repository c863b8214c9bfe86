//! `backups`: backup sets on the device, their snapshots, integrity checks,
//! backups on demand and restore tests, against the real tools (restic,
//! BorgBackup).
//!
//! A set is configured on the host or agent side ([`SetConfig`]): its
//! repository, the file holding the repository's password, the paths it
//! backs up. The password goes to the tool through its environment and
//! never into an argument, a result, an error or a log; every message a
//! tool prints is cut and scrubbed of it before the plugin sees it.

mod borg;
mod restic;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Stdio;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};
use sha2::{Digest as _, Sha256};
use tokio::process::Command;

use crate::HostState;
use crate::bindings::backups::{
    BackupResult, BackupSet, FileCheck, Host, IntegrityReport, RestoreReport, RunOutcome, Snapshot,
};
use crate::bindings::types::{HostError, Instant, Outcome, RunMode};
use crate::capability::clock::{ClockProvider, SystemClock, instant_of};
use crate::capability::{CallSummary, Capability};
use crate::store::outcome_for;

/// The backup sets of a device.
#[async_trait]
pub trait BackupsProvider: Send + Sync {
    /// Every configured set.
    async fn sets(&self) -> Result<Vec<BackupSet>, HostError>;
    /// A set's snapshots, oldest first.
    async fn snapshots(&self, set: &str) -> Result<Vec<Snapshot>, HostError>;
    /// Checks the set's repository, reading back `data_percent` of its data.
    async fn verify(
        &self,
        set: &str,
        data_percent: u8,
        mode: RunMode,
    ) -> Result<IntegrityReport, HostError>;
    /// Runs the set's backup now.
    async fn run_backup(&self, set: &str, mode: RunMode) -> Result<BackupResult, HostError>;
    /// Restores `sample` files of the newest snapshot into a scratch
    /// directory, compares them and removes the copy.
    async fn restore_test(
        &self,
        set: &str,
        sample: u32,
        mode: RunMode,
    ) -> Result<RestoreReport, HostError>;
}

/// The most files one restore test may sample.
pub const MAX_SAMPLE: u32 = 100;

impl Host for HostState {
    async fn sets(&mut self) -> wasmtime::Result<Result<Vec<BackupSet>, HostError>> {
        Ok(self.run_device(Capability::Backups)?.backups.sets().await)
    }

    async fn snapshots(
        &mut self,
        set: String,
    ) -> wasmtime::Result<Result<Vec<Snapshot>, HostError>> {
        let call = CallSummary {
            capability: Capability::Backups,
            function: "snapshots",
            arguments: set.clone(),
        };
        if let Err(e) = self.authorize(&call, [set.as_str()])? {
            return Ok(Err(e));
        }
        Ok(self
            .run_device(Capability::Backups)?
            .backups
            .snapshots(&set)
            .await)
    }

    async fn verify(
        &mut self,
        set: String,
        data_percent: u8,
    ) -> wasmtime::Result<Result<IntegrityReport, HostError>> {
        let call = CallSummary {
            capability: Capability::Backups,
            function: "verify",
            arguments: format!("{set} ({data_percent}% of the data)"),
        };
        if let Err(e) = self.authorize(&call, [set.as_str()])? {
            return Ok(Err(e));
        }
        if !(1..=100).contains(&data_percent) {
            return Ok(Err(HostError::InvalidArgument(format!(
                "data-percent must be 1 to 100, not {data_percent}"
            ))));
        }
        let mode = self.run_mode(Capability::Backups)?;
        let device = self.run_device(Capability::Backups)?;
        self.mutate(
            &call,
            device.backups.verify(&set, data_percent, mode),
            crate::store::make_again(),
        )
        .await
    }

    async fn run_backup(
        &mut self,
        set: String,
    ) -> wasmtime::Result<Result<BackupResult, HostError>> {
        let call = CallSummary {
            capability: Capability::Backups,
            function: "run-backup",
            arguments: set.clone(),
        };
        if let Err(e) = self.authorize(&call, [set.as_str()])? {
            return Ok(Err(e));
        }
        let mode = self.run_mode(Capability::Backups)?;
        let device = self.run_device(Capability::Backups)?;
        self.mutate(
            &call,
            device.backups.run_backup(&set, mode),
            crate::store::make_again(),
        )
        .await
    }

    async fn restore_test(
        &mut self,
        set: String,
        sample: u32,
    ) -> wasmtime::Result<Result<RestoreReport, HostError>> {
        let call = CallSummary {
            capability: Capability::Backups,
            function: "restore-test",
            arguments: format!("{set} ({sample} files)"),
        };
        if let Err(e) = self.authorize(&call, [set.as_str()])? {
            return Ok(Err(e));
        }
        if !(1..=MAX_SAMPLE).contains(&sample) {
            return Ok(Err(HostError::InvalidArgument(format!(
                "sample must be 1 to {MAX_SAMPLE} files, not {sample}"
            ))));
        }
        let mode = self.run_mode(Capability::Backups)?;
        let device = self.run_device(Capability::Backups)?;
        self.mutate(
            &call,
            device.backups.restore_test(&set, sample, mode),
            crate::store::make_again(),
        )
        .await
    }
}

/// A device with no backup sets configured.
#[derive(Debug, Default)]
pub struct NoBackups;

#[async_trait]
impl BackupsProvider for NoBackups {
    async fn sets(&self) -> Result<Vec<BackupSet>, HostError> {
        Ok(Vec::new())
    }
    async fn snapshots(&self, set: &str) -> Result<Vec<Snapshot>, HostError> {
        Err(unknown(set))
    }
    async fn verify(&self, set: &str, _: u8, _: RunMode) -> Result<IntegrityReport, HostError> {
        Err(unknown(set))
    }
    async fn run_backup(&self, set: &str, _: RunMode) -> Result<BackupResult, HostError> {
        Err(unknown(set))
    }
    async fn restore_test(
        &self,
        set: &str,
        _: u32,
        _: RunMode,
    ) -> Result<RestoreReport, HostError> {
        Err(unknown(set))
    }
}

/// `not-found`: no set of that name on this device.
pub(crate) fn unknown(set: &str) -> HostError {
    HostError::NotFound(format!(
        "no backup set `{set}` is configured on this device"
    ))
}

impl IntegrityReport {
    /// What `verify` answers in plan mode: nothing ran.
    pub fn planned() -> Self {
        IntegrityReport {
            ok: false,
            data_read_percent: 0,
            errors: Vec::new(),
            outcome: Outcome::Planned,
        }
    }
}

impl BackupResult {
    /// What `run-backup` answers in plan mode: nothing ran.
    pub fn planned() -> Self {
        BackupResult {
            snapshot_id: None,
            run: None,
            outcome: Outcome::Planned,
        }
    }
}

/// The backup tool of a set.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Tool {
    /// restic (`restic` on the PATH).
    Restic,
    /// BorgBackup 1.x (`borg` on the PATH).
    Borg,
}

impl Tool {
    fn name(self) -> &'static str {
        match self {
            Tool::Restic => "restic",
            Tool::Borg => "borg",
        }
    }
}

/// One backup set, as the host's or the agent's configuration names it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub struct SetConfig {
    /// The set's name (`nightly-home`): what plugins and grants name.
    pub name: String,
    /// restic or borg.
    pub tool: Tool,
    /// The repository (a path, or a URL the tool understands, without
    /// credentials).
    pub repository: String,
    /// A file holding the repository's password (read by the host, given
    /// to the tool in its environment).
    pub password_file: PathBuf,
    /// Absolute paths the set backs up.
    pub paths: Vec<PathBuf>,
    /// Exclude patterns, in the tool's syntax.
    #[serde(default)]
    pub exclude: Vec<String>,
}

/// A file of backup sets (`steward run --backups FILE`):
///
/// ```toml
/// state-dir = "/var/lib/steward/backups"
///
/// [[set]]
/// name = "nightly-home"
/// tool = "restic"
/// repository = "/srv/backup/restic"
/// password-file = "/etc/steward/restic.pass"
/// paths = ["/home"]
/// ```
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub struct BackupsFile {
    /// Where records and scratch copies go (default
    /// `/var/lib/steward/backups`).
    #[serde(default)]
    pub state_dir: Option<PathBuf>,
    /// The sets.
    #[serde(default)]
    pub set: Vec<SetConfig>,
}

/// Backup sets run by their real tools.
#[derive(Debug, Clone)]
pub struct BackupSets {
    sets: Vec<SetConfig>,
    /// Where the last runs and the snapshot size cache are kept, and
    /// restore tests make their scratch directories.
    state_dir: PathBuf,
}

impl BackupSets {
    /// The sets in `sets`, keeping their records under `state_dir`.
    ///
    /// # Errors
    ///
    /// Two sets of one name, a name that is not 1 to 64 letters, digits,
    /// `-`, `_` or `.`, or a path that is not absolute.
    pub fn new(sets: Vec<SetConfig>, state_dir: PathBuf) -> anyhow::Result<Self> {
        let mut names = std::collections::HashSet::new();
        for set in &sets {
            let ok = !set.name.is_empty()
                && set.name.len() <= 64
                && set
                    .name
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c));
            anyhow::ensure!(
                ok,
                "backup set name `{}` must be 1 to 64 letters, digits, `-`, `_` or `.`",
                set.name.escape_debug()
            );
            anyhow::ensure!(
                names.insert(set.name.as_str()),
                "backup set `{}` is configured twice",
                set.name
            );
            anyhow::ensure!(
                !set.paths.is_empty() && set.paths.iter().all(|p| p.is_absolute()),
                "backup set `{}`: `paths` must be absolute paths, at least one",
                set.name
            );
        }
        Ok(Self { sets, state_dir })
    }

    fn set(&self, name: &str) -> Result<&SetConfig, HostError> {
        self.sets
            .iter()
            .find(|s| s.name == name)
            .ok_or_else(|| unknown(name))
    }

    fn last_run_file(&self, set: &str) -> PathBuf {
        self.state_dir.join(format!("{set}.last-run.json"))
    }

    fn last_run(&self, set: &str) -> Option<RunOutcome> {
        let text = std::fs::read_to_string(self.last_run_file(set)).ok()?;
        serde_json::from_str(&text).ok()
    }

    fn record_run(&self, set: &str, run: &RunOutcome) {
        let write = || -> std::io::Result<()> {
            std::fs::create_dir_all(&self.state_dir)?;
            let path = self.last_run_file(set);
            let tmp = path.with_extension("tmp");
            std::fs::write(&tmp, serde_json::to_vec(run)?)?;
            std::fs::rename(tmp, path)
        };
        if let Err(e) = write() {
            tracing::warn!(set, error = %e, "cannot record the backup run");
        }
    }

    /// Sizes of snapshots already measured (snapshots never change).
    fn sizes(&self, set: &str) -> BTreeMap<String, (u64, u64)> {
        std::fs::read_to_string(self.state_dir.join(format!("{set}.sizes.json")))
            .ok()
            .and_then(|t| serde_json::from_str(&t).ok())
            .unwrap_or_default()
    }

    fn keep_sizes(&self, set: &str, sizes: &BTreeMap<String, (u64, u64)>) {
        let _ = std::fs::create_dir_all(&self.state_dir);
        let _ = std::fs::write(
            self.state_dir.join(format!("{set}.sizes.json")),
            serde_json::to_vec(sizes).unwrap_or_default(),
        );
    }
}

/// What a tool lists of a snapshot's files.
#[derive(Debug, Clone)]
pub(crate) struct Entry {
    /// The path as the tool names it inside the snapshot.
    pub stored: String,
    /// The live path it was backed up from.
    pub live: PathBuf,
    pub size: u64,
    /// Modification time, whole seconds since the epoch.
    pub mtime: Option<i64>,
}

/// How one sampled file fared in the tool's restore.
#[derive(Debug, Default)]
pub(crate) struct Restored {
    /// `stored` path → the tool's error for it.
    pub errors: BTreeMap<String, String>,
    /// The tool failed as a whole (every file not restored is failed).
    pub failure: Option<String>,
}

#[async_trait]
impl BackupsProvider for BackupSets {
    async fn sets(&self) -> Result<Vec<BackupSet>, HostError> {
        Ok(self
            .sets
            .iter()
            .map(|s| BackupSet {
                name: s.name.clone(),
                tool: s.tool.name().into(),
                repository: s.repository.clone(),
                paths: s.paths.iter().map(|p| p.display().to_string()).collect(),
                last_run: self.last_run(&s.name),
            })
            .collect())
    }

    async fn snapshots(&self, set: &str) -> Result<Vec<Snapshot>, HostError> {
        let config = self.set(set)?;
        let runner = Runner::new(config, &self.state_dir)?;
        let mut snapshots = match config.tool {
            Tool::Restic => restic::snapshots(&runner).await?,
            Tool::Borg => borg::snapshots(&runner).await?,
        };
        snapshots.sort_by_key(|s| (s.time.seconds, s.time.nanoseconds));
        // Sizes: measured once per snapshot, for the newest ones (the
        // plugin compares the newest with those before it).
        let mut sizes = self.sizes(set);
        let before = sizes.len();
        let n = snapshots.len();
        for snapshot in snapshots.iter_mut().skip(n.saturating_sub(MEASURED)) {
            let (bytes, files) = match sizes.get(&snapshot.id) {
                Some(known) => *known,
                None => {
                    let measured = match config.tool {
                        Tool::Restic => restic::size(&runner, &snapshot.id).await?,
                        Tool::Borg => borg::size(&runner, &snapshot.id).await?,
                    };
                    sizes.insert(snapshot.id.clone(), measured);
                    measured
                }
            };
            snapshot.size_bytes = bytes;
            snapshot.files = files;
        }
        if sizes.len() != before {
            sizes.retain(|id, _| snapshots.iter().any(|s| &s.id == id));
            self.keep_sizes(set, &sizes);
        }
        Ok(snapshots)
    }

    async fn verify(
        &self,
        set: &str,
        data_percent: u8,
        mode: RunMode,
    ) -> Result<IntegrityReport, HostError> {
        let config = self.set(set)?;
        if mode == RunMode::Plan {
            return Ok(IntegrityReport::planned());
        }
        let runner = Runner::new(config, &self.state_dir)?;
        let (ok, read, errors) = match config.tool {
            Tool::Restic => restic::verify(&runner, data_percent).await?,
            Tool::Borg => borg::verify(&runner).await?,
        };
        Ok(IntegrityReport {
            ok,
            data_read_percent: read,
            errors,
            outcome: Outcome::Applied,
        })
    }

    async fn run_backup(&self, set: &str, mode: RunMode) -> Result<BackupResult, HostError> {
        let config = self.set(set)?;
        if mode == RunMode::Plan {
            return Ok(BackupResult::planned());
        }
        let runner = Runner::new(config, &self.state_dir)?;
        let started = now();
        let result = match config.tool {
            Tool::Restic => restic::backup(&runner).await,
            Tool::Borg => borg::backup(&runner).await,
        };
        let run = RunOutcome {
            started,
            finished: now(),
            succeeded: result.is_ok(),
            message: match &result {
                Ok(id) => format!("snapshot {id} made"),
                Err(e) => crate::describe_host_error(e),
            },
        };
        self.record_run(set, &run);
        let id = result?;
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
        let config = self.set(set)?;
        let runner = Runner::new(config, &self.state_dir)?;
        let snapshots = match config.tool {
            Tool::Restic => restic::snapshots(&runner).await?,
            Tool::Borg => borg::snapshots(&runner).await?,
        };
        let Some(newest) = snapshots
            .into_iter()
            .max_by_key(|s| (s.time.seconds, s.time.nanoseconds))
        else {
            return Err(HostError::NotFound(format!(
                "backup set `{set}` has no snapshot to restore from"
            )));
        };
        if mode == RunMode::Plan {
            return Ok(RestoreReport {
                snapshot_id: newest.id,
                snapshot_time: newest.time,
                files: Vec::new(),
                passed: false,
                scratch_removed: true,
                outcome: Outcome::Planned,
            });
        }
        let entries = match config.tool {
            Tool::Restic => restic::files(&runner, &newest.id).await?,
            Tool::Borg => borg::files(&runner, &newest.id).await?,
        };
        let picked = pick_sample(entries, sample as usize);
        if picked.is_empty() {
            return Err(HostError::NotFound(format!(
                "snapshot {} of `{set}` holds no regular file to restore",
                newest.id
            )));
        }
        std::fs::create_dir_all(self.state_dir.join("scratch"))
            .map_err(|e| HostError::failed(format!("cannot make the scratch directory: {e}")))?;
        let scratch = tempfile::Builder::new()
            .prefix("restore-test-")
            .tempdir_in(self.state_dir.join("scratch"))
            .map_err(|e| HostError::failed(format!("cannot make the scratch directory: {e}")))?;
        let scratch_path = scratch.path().to_path_buf();
        // Borg records each file's sha256 (from its chunks); restic checks
        // each restored blob against its hash itself (`--verify`).
        let (expected, restored) = match config.tool {
            Tool::Restic => (
                None,
                restic::restore(&runner, &newest.id, &picked, &scratch_path).await?,
            ),
            Tool::Borg => {
                let expected = borg::hashes(&runner, &newest.id, &picked).await;
                let restored = borg::restore(&runner, &newest.id, &picked, &scratch_path).await?;
                (Some(expected), restored)
            }
        };
        let mut files = Vec::with_capacity(picked.len());
        for entry in &picked {
            files.push(compare(entry, &scratch_path, expected.as_ref(), &restored));
        }
        let removed = scratch.close().is_ok() && !scratch_path.exists();
        let passed = files
            .iter()
            .all(|f| f.matches_snapshot && f.matches_live != Some(false));
        Ok(RestoreReport {
            snapshot_id: newest.id,
            snapshot_time: newest.time,
            files,
            passed,
            scratch_removed: removed,
            outcome: outcome_for(mode),
        })
    }
}

/// How many of the newest snapshots have their size measured.
const MEASURED: usize = 10;

/// The largest file a restore test restores, so a sample stays cheap.
const MAX_SAMPLED_FILE: u64 = 256 << 20;

fn pick_sample(entries: Vec<Entry>, sample: usize) -> Vec<Entry> {
    use rand::seq::SliceRandom;
    let mut files: Vec<Entry> = entries
        .into_iter()
        .filter(|e| e.size <= MAX_SAMPLED_FILE)
        .collect();
    files.shuffle(&mut rand::thread_rng());
    files.truncate(sample);
    files.sort_by(|a, b| a.stored.cmp(&b.stored));
    files
}

/// Compares one sampled file's restored copy with the snapshot's record and,
/// when it is unchanged since, the live file.
fn compare(
    entry: &Entry,
    scratch: &Path,
    expected: Option<&Result<BTreeMap<String, String>, String>>,
    restored: &Restored,
) -> FileCheck {
    let copy = scratch.join(entry.stored.trim_start_matches('/'));
    let mut check = FileCheck {
        path: entry.live.display().to_string(),
        size_bytes: entry.size,
        restored_sha256: String::new(),
        matches_snapshot: false,
        matches_live: None,
        problem: String::new(),
    };
    if let Some(error) = restored.errors.get(&entry.stored) {
        check.problem = format!("not restored: {error}");
        return check;
    }
    let Ok(hash) = sha256_file(&copy) else {
        check.problem = match &restored.failure {
            Some(e) => format!("not restored: {e}"),
            None => "not restored: the tool wrote no copy".into(),
        };
        return check;
    };
    check.restored_sha256 = hash.clone();
    let size = std::fs::metadata(&copy).map(|m| m.len()).unwrap_or(0);
    check.matches_snapshot = match expected {
        None => {
            if size == entry.size {
                true
            } else {
                check.problem = format!(
                    "the restored copy has {size} bytes, the snapshot records {}",
                    entry.size
                );
                false
            }
        }
        Some(Ok(hashes)) => match hashes.get(&entry.stored) {
            Some(want) if *want == hash => true,
            Some(want) => {
                check.problem =
                    format!("the restored copy's sha256 {hash} differs from the snapshot's {want}");
                false
            }
            None => {
                check.problem = "the snapshot records no hash for it".into();
                false
            }
        },
        Some(Err(e)) => {
            check.problem = format!("the snapshot's hashes cannot be read: {e}");
            false
        }
    };
    // The live file, when it still is what was backed up.
    if let Ok(meta) = std::fs::symlink_metadata(&entry.live) {
        let mtime = meta.modified().ok().map(|t| instant_of(t).seconds);
        if meta.is_file()
            && meta.len() == entry.size
            && mtime.is_some()
            && mtime == entry.mtime
            && let Ok(live) = sha256_file(&entry.live)
        {
            let same = live == hash;
            if !same && check.problem.is_empty() {
                check.problem = format!(
                    "the restored copy differs from the live file, which is unchanged since the snapshot (sha256 {live})"
                );
            }
            check.matches_live = Some(same);
        }
    }
    check
}

fn sha256_file(path: &Path) -> std::io::Result<String> {
    use std::io::Read;
    let meta = std::fs::symlink_metadata(path)?;
    if !meta.is_file() {
        return Err(std::io::Error::other("not a regular file"));
    }
    let mut file = std::fs::File::open(path)?;
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let n = file.read(&mut buf)?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
    }
    Ok(hex::encode(hasher.finalize()))
}

fn now() -> Instant {
    SystemClock.now()
}

/// Runs one set's tool with the repository and password in its
/// environment, and scrubs the password from whatever it prints.
pub(crate) struct Runner {
    pub(crate) config: SetConfig,
    password: String,
    /// The tools' own caches and Borg's security records.
    home: PathBuf,
}

/// The most bytes of a tool's message kept for an error.
const MAX_TOOL_MESSAGE: usize = 2048;

impl Runner {
    fn new(config: &SetConfig, state_dir: &Path) -> Result<Self, HostError> {
        let password = std::fs::read_to_string(&config.password_file).map_err(|e| {
            HostError::Unavailable(format!(
                "backup set `{}`: cannot read its password file {}: {}",
                config.name,
                config.password_file.display(),
                e.kind()
            ))
        })?;
        let password = password.trim_end_matches(['\n', '\r']).to_string();
        Ok(Self {
            config: config.clone(),
            password,
            home: state_dir.join("tools"),
        })
    }

    /// The tool with `args`, run in `dir`.
    pub(crate) fn command_in(&self, args: &[&str], dir: &Path) -> Command {
        let mut cmd = self.command(args);
        cmd.current_dir(dir);
        cmd
    }

    fn command(&self, args: &[&str]) -> Command {
        let mut cmd = Command::new(self.config.tool.name());
        cmd.args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .env("LC_ALL", "C");
        match self.config.tool {
            Tool::Restic => {
                cmd.env("RESTIC_REPOSITORY", &self.config.repository)
                    .env("RESTIC_CACHE_DIR", self.home.join("restic-cache"))
                    .env("RESTIC_PASSWORD", &self.password)
                    .env_remove("RESTIC_PASSWORD_FILE")
                    .env_remove("RESTIC_PASSWORD_COMMAND");
            }
            Tool::Borg => {
                cmd.env("BORG_REPO", &self.config.repository)
                    .env("BORG_BASE_DIR", &self.home)
                    .env("BORG_PASSPHRASE", &self.password)
                    .env("BORG_DISPLAY_PASSPHRASE", "no")
                    .env("BORG_RELOCATED_REPO_ACCESS_IS_OK", "no")
                    .env("BORG_UNKNOWN_UNENCRYPTED_REPO_ACCESS_IS_OK", "no")
                    .env_remove("BORG_PASSCOMMAND")
                    .env_remove("BORG_PASSPHRASE_FD");
            }
        }
        cmd
    }

    /// Runs the tool; its stdout when it succeeds (exit 0), its cleaned
    /// error otherwise.
    pub(crate) async fn run(&self, args: &[&str]) -> Result<Output, HostError> {
        let output = self.command(args).output().await.map_err(|e| {
            HostError::Unavailable(format!(
                "cannot run `{}` (is it installed?): {e}",
                self.config.tool.name()
            ))
        })?;
        Ok(Output {
            success: output.status.success(),
            code: output.status.code(),
            stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
            stderr: self.clean(&String::from_utf8_lossy(&output.stderr)),
        })
    }

    /// Like [`Runner::run`], failing unless the tool exits 0.
    pub(crate) async fn ok(&self, args: &[&str]) -> Result<String, HostError> {
        let out = self.run(args).await?;
        if out.success {
            Ok(out.stdout)
        } else {
            Err(self.failure(args.first().copied().unwrap_or_default(), &out))
        }
    }

    pub(crate) fn failure(&self, what: &str, out: &Output) -> HostError {
        let text = out.last_lines(3);
        let message = format!(
            "`{} {what}` failed for backup set `{}` (exit {}): {text}",
            self.config.tool.name(),
            self.config.name,
            out.code
                .map_or_else(|| "by a signal".to_string(), |c| c.to_string())
        );
        HostError::Failed(self.clean(&message))
    }

    /// The text without the password, cut to size, control characters
    /// escaped.
    pub(crate) fn clean(&self, text: &str) -> String {
        let mut text = if self.password.len() >= 3 {
            text.replace(&self.password, "***")
        } else {
            text.to_string()
        };
        crate::cap_text(&mut text, MAX_TOOL_MESSAGE);
        text.chars()
            .map(|c| if c.is_control() && c != '\n' { ' ' } else { c })
            .collect()
    }
}

/// What a tool run printed.
pub(crate) struct Output {
    pub success: bool,
    pub code: Option<i32>,
    pub stdout: String,
    /// Already cleaned.
    pub stderr: String,
}

impl Output {
    /// The last meaningful lines of stderr, joined.
    pub(crate) fn last_lines(&self, n: usize) -> String {
        let lines: Vec<&str> = self
            .stderr
            .lines()
            .map(str::trim)
            .filter(|l| !l.is_empty() && !l.starts_with('['))
            .collect();
        let start = lines.len().saturating_sub(n);
        let text = lines[start..].join("; ");
        if text.is_empty() {
            "no message".into()
        } else {
            text
        }
    }
}

/// Seconds since the epoch of an RFC 3339 time (restic).
pub(crate) fn parse_rfc3339(text: &str) -> Option<Instant> {
    let t = chrono::DateTime::parse_from_rfc3339(text).ok()?;
    Some(Instant {
        seconds: t.timestamp(),
        nanoseconds: t.timestamp_subsec_nanos(),
    })
}

/// A Borg time: ISO 8601 without a zone, in the device's local time.
pub(crate) fn parse_local(text: &str) -> Option<Instant> {
    use chrono::TimeZone;
    let naive = chrono::NaiveDateTime::parse_from_str(text, "%Y-%m-%dT%H:%M:%S%.f").ok()?;
    let t = chrono::Local.from_local_datetime(&naive).earliest()?;
    Some(Instant {
        seconds: t.timestamp(),
        nanoseconds: t.timestamp_subsec_nanos(),
    })
}
