//! The backups provider and the `backup-check` plugin against the real
//! `restic` and `borg`, with repositories the tests make in temporary
//! directories: a fresh backup passes, an old one breaks the recovery point
//! objective, a damaged repository fails its integrity check and its
//! restore test (naming the files), plan mode runs nothing, and a wrong
//! password fails without showing up anywhere.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;

use steward_runtime::audit::{AuditOutcome, MemoryAudit};
use steward_runtime::bindings::types::{Finding, HostError, Outcome, RunMode, Severity};
use steward_runtime::capability::backups::{BackupSets, BackupsProvider, SetConfig, Tool};
use steward_runtime::{RunError, RunSpec};

use crate::support::*;

const PASSWORD: &str = "correct-horse-7f3a";
const WRONG: &str = "wrong-battery-91c2";

struct Lab {
    dir: tempfile::TempDir,
    tool: Tool,
}

impl Lab {
    fn new(tool: Tool) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let src = dir.path().join("src");
        std::fs::create_dir_all(src.join("docs")).unwrap();
        std::fs::write(src.join("a.txt"), "quarterly figures\n").unwrap();
        std::fs::write(src.join("c.txt"), "contacts\n").unwrap();
        // Incompressible, so its data is one large chunk of its own.
        let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
        let noise: Vec<u8> = (0..300_000)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                x as u8
            })
            .collect();
        std::fs::write(src.join("docs/b.bin"), noise).unwrap();
        std::fs::write(dir.path().join("pass"), format!("{PASSWORD}\n")).unwrap();
        let lab = Lab { dir, tool };
        match tool {
            Tool::Restic => lab.tool_ok(&["init"]),
            Tool::Borg => lab.tool_ok(&["init", "--encryption", "repokey"]),
        }
        lab
    }

    fn src(&self) -> PathBuf {
        self.dir.path().join("src")
    }

    fn repo(&self) -> PathBuf {
        self.dir.path().join("repo")
    }

    fn state(&self) -> PathBuf {
        self.dir.path().join("state")
    }

    fn command(&self, args: &[&str]) -> Command {
        let mut cmd = match self.tool {
            Tool::Restic => {
                let mut c = Command::new("restic");
                c.env("RESTIC_REPOSITORY", self.repo())
                    .env("RESTIC_PASSWORD", PASSWORD)
                    .env("RESTIC_CACHE_DIR", self.dir.path().join("cache"));
                c
            }
            Tool::Borg => {
                let mut c = Command::new("borg");
                c.env("BORG_REPO", self.repo())
                    .env("BORG_PASSPHRASE", PASSWORD)
                    .env("BORG_BASE_DIR", self.dir.path().join("borg-home"));
                c
            }
        };
        cmd.args(args);
        cmd
    }

    fn tool_ok(&self, args: &[&str]) {
        let out = self
            .command(args)
            .output()
            .expect("the backup tool runs (.ci/setup installs it)");
        assert!(
            out.status.success(),
            "{args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    /// A backup of `src`, made at `time` when given (`2026-01-01 10:00:00`).
    fn backup(&self, time: Option<&str>) {
        let src = self.src().display().to_string();
        match (self.tool, time) {
            (Tool::Restic, None) => self.tool_ok(&["backup", "-q", &src]),
            (Tool::Restic, Some(t)) => self.tool_ok(&["backup", "-q", "--time", t, &src]),
            (Tool::Borg, None) => self.tool_ok(&["create", "::first", &src]),
            (Tool::Borg, Some(t)) => {
                let iso = t.replace(' ', "T");
                self.tool_ok(&["create", "--timestamp", &iso, "::old", &src])
            }
        }
    }

    fn set(&self, name: &str, password_file: &Path) -> SetConfig {
        SetConfig {
            name: name.into(),
            tool: self.tool,
            repository: self.repo().display().to_string(),
            password_file: password_file.to_path_buf(),
            paths: vec![self.src()],
            exclude: Vec::new(),
        }
    }

    fn provider(&self) -> Arc<dyn BackupsProvider> {
        Arc::new(
            BackupSets::new(
                vec![self.set("nightly-files", &self.dir.path().join("pass"))],
                self.state(),
            )
            .unwrap(),
        )
    }

    /// Damages the data of `docs/b.bin` in the repository: the largest pack
    /// (restic) or the middle of the largest segment (Borg).
    fn corrupt(&self) {
        let mut files = Vec::new();
        walk(&self.repo().join("data"), &mut files);
        let largest = files
            .into_iter()
            .max_by_key(|p| std::fs::metadata(p).unwrap().len())
            .unwrap();
        let mut bytes = std::fs::read(&largest).unwrap();
        let mid = bytes.len() / 2;
        for b in &mut bytes[mid - 20_000..mid + 20_000] {
            *b ^= 0x5a;
        }
        std::fs::write(&largest, bytes).unwrap();
    }

    fn snapshot_count(&self) -> usize {
        let out = match self.tool {
            Tool::Restic => self.command(&["snapshots", "--json"]).output().unwrap(),
            Tool::Borg => self.command(&["list", "--short"]).output().unwrap(),
        };
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        match self.tool {
            Tool::Restic => serde_json::from_str::<Vec<serde_json::Value>>(&text)
                .unwrap()
                .len(),
            Tool::Borg => text.lines().filter(|l| !l.trim().is_empty()).count(),
        }
    }

    /// A check/remediate run of `backup-check` against this lab's sets.
    async fn run(&self, mode: RunMode, backups: Arc<dyn BackupsProvider>) -> RunSpec {
        self.run_audited(mode, backups).await.0
    }

    async fn run_audited(
        &self,
        mode: RunMode,
        backups: Arc<dyn BackupsProvider>,
    ) -> (RunSpec, Arc<MemoryAudit>) {
        let mut fixture = fixture();
        // The device's real clock: snapshot ages are real ages.
        fixture.now = None;
        let run = run_with_limits(
            fixture,
            "steward-plugin-backup-check",
            grants(&["backups=nightly-*", "tickets=backups"]),
            &[("sample", "3"), ("verify-percent", "100")],
            mode,
            roomy_limits(),
        )
        .await
        .with_device(|d| d.backups = backups);
        (run.spec, run.audit)
    }
}

fn walk(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            walk(&path, out);
        } else {
            out.push(path);
        }
    }
}

async fn check(spec: &RunSpec) -> Vec<Finding> {
    let module = module("steward-plugin-backup-check").await;
    runtime()
        .check(&module, spec.clone())
        .await
        .result
        .expect("check runs")
}

async fn remediate(
    spec: &RunSpec,
    findings: Vec<Finding>,
) -> Vec<steward_runtime::bindings::types::Change> {
    let module = module("steward-plugin-backup-check").await;
    runtime()
        .remediate(&module, spec.clone(), findings)
        .await
        .result
        .map(|r| r.changes)
        .expect("remediate runs")
}

fn ids(findings: &[Finding]) -> Vec<(&str, Severity)> {
    let mut ids: Vec<(&str, Severity)> = findings
        .iter()
        .map(|f| (f.id.as_str(), f.severity))
        .collect();
    ids.sort_by_key(|(id, _)| *id);
    ids
}

/// The whole story on one tool: fresh, tested, stale, backed up again.
async fn fresh_backup_passes_and_a_stale_one_is_critical(tool: Tool) {
    let lab = Lab::new(tool);
    lab.backup(None);
    let spec = lab.run(RunMode::Apply, lab.provider()).await;
    let findings = check(&spec).await;
    assert_eq!(
        ids(&findings),
        [
            ("integrity-check-due:nightly-files", Severity::Warning),
            ("restore-test-due:nightly-files", Severity::Critical),
        ],
        "a fresh backup is within the RPO; nothing was checked or tested yet"
    );
    let changes = remediate(&spec, findings).await;
    let check_change = changes
        .iter()
        .find(|c| c.kind == "integrity-check")
        .unwrap();
    assert_eq!(
        check_change.after.as_deref(),
        Some("passed"),
        "{check_change:?}"
    );
    let test = changes.iter().find(|c| c.kind == "restore-test").unwrap();
    assert_eq!(test.after.as_deref(), Some("passed"), "{test:?}");
    assert_eq!(test.outcome, Outcome::Applied);
    // The evidence names each restored file and its hash; every file of
    // this lab is unchanged since, so each also matches the live file.
    assert!(test.description.contains("sha256 "), "{}", test.description);
    assert_eq!(
        test.description.matches("matches the live file").count(),
        3,
        "{}",
        test.description
    );
    // The scratch copy is gone.
    let scratch = lab.state().join("scratch");
    assert_eq!(
        std::fs::read_dir(&scratch).unwrap().count(),
        0,
        "scratch copies left behind"
    );
    assert!(!changes.iter().any(|c| c.kind == "ticket"), "{changes:?}");
    // Checked and tested: nothing left to find.
    assert_eq!(ids(&check(&spec).await), []);

    // A repository whose newest snapshot is three days old.
    let stale = Lab::new(tool);
    stale.backup(Some("2026-01-01 10:00:00"));
    let spec = stale.run(RunMode::Apply, stale.provider()).await;
    let findings = check(&spec).await;
    let rpo = findings
        .iter()
        .find(|f| f.id == "rpo:nightly-files")
        .expect("RPO finding");
    assert_eq!(rpo.severity, Severity::Critical);
    assert!(rpo.detail.contains("hours old"), "{}", rpo.detail);
    let before = stale.snapshot_count();
    let changes = remediate(&spec, findings).await;
    let backup = changes.iter().find(|c| c.kind == "backup").unwrap();
    assert_eq!(backup.outcome, Outcome::Applied);
    assert_eq!(stale.snapshot_count(), before + 1, "the overdue backup ran");
    assert!(!check(&spec).await.iter().any(|f| f.id.starts_with("rpo:")));
    // The run is on record for the set.
    let sets = stale.provider().sets().await.unwrap();
    assert!(sets[0].last_run.as_ref().unwrap().succeeded);
}

#[tokio::test]
async fn restic_fresh_backup_passes_and_a_stale_one_is_critical() {
    fresh_backup_passes_and_a_stale_one_is_critical(Tool::Restic).await;
}

#[tokio::test]
async fn borg_fresh_backup_passes_and_a_stale_one_is_critical() {
    fresh_backup_passes_and_a_stale_one_is_critical(Tool::Borg).await;
}

async fn damaged_repository_fails_check_and_restore_naming_files(tool: Tool) {
    let lab = Lab::new(tool);
    lab.backup(None);
    lab.corrupt();
    let spec = lab.run(RunMode::Apply, lab.provider()).await;
    let findings = check(&spec).await;
    // Sample every file, so the damaged one is among them.
    let mut spec_all = spec.clone();
    let descriptor = runtime()
        .describe(&*module("steward-plugin-backup-check").await)
        .await
        .result
        .unwrap();
    spec_all.params = steward_runtime::resolve_text_params(
        &descriptor,
        &[
            ("sample".into(), "100".into()),
            ("verify-percent".into(), "100".into()),
        ],
    )
    .unwrap();
    let changes = remediate(&spec_all, findings).await;
    let integrity = changes
        .iter()
        .find(|c| c.kind == "integrity-check")
        .unwrap();
    assert_eq!(integrity.after.as_deref(), Some("failed"), "{integrity:?}");
    let test = changes.iter().find(|c| c.kind == "restore-test").unwrap();
    assert_eq!(test.after.as_deref(), Some("failed"), "{test:?}");
    assert!(
        test.description.contains("docs/b.bin"),
        "{}",
        test.description
    );
    let tickets: Vec<_> = changes.iter().filter(|c| c.kind == "ticket").collect();
    assert_eq!(tickets.len(), 2, "one ticket per failure: {changes:?}");
    assert_eq!(
        std::fs::read_dir(lab.state().join("scratch"))
            .unwrap()
            .count(),
        0
    );
    // The next check says so, critically, naming the file.
    let findings = check(&spec).await;
    let failed = findings
        .iter()
        .find(|f| f.id == "restore-test-failed:nightly-files")
        .expect("restore test failure found");
    assert_eq!(failed.severity, Severity::Critical);
    assert!(failed.detail.contains("docs/b.bin"), "{}", failed.detail);
    let integrity = findings
        .iter()
        .find(|f| f.id == "integrity-failed:nightly-files")
        .expect("integrity failure found");
    assert_eq!(integrity.severity, Severity::Critical);
}

#[tokio::test]
async fn restic_damaged_repository_fails_check_and_restore_naming_files() {
    damaged_repository_fails_check_and_restore_naming_files(Tool::Restic).await;
}

#[tokio::test]
async fn borg_damaged_repository_fails_check_and_restore_naming_files() {
    damaged_repository_fails_check_and_restore_naming_files(Tool::Borg).await;
}

async fn plan_mode_runs_nothing(tool: Tool) {
    let lab = Lab::new(tool);
    lab.backup(Some("2026-01-01 10:00:00"));
    let (spec, audit) = lab.run_audited(RunMode::Plan, lab.provider()).await;
    let findings = check(&spec).await;
    assert_eq!(findings.len(), 3, "{findings:?}");
    let before = lab.snapshot_count();
    let changes = remediate(&spec, findings).await;
    let mut kinds: Vec<&str> = changes.iter().map(|c| c.kind.as_str()).collect();
    kinds.sort();
    assert_eq!(kinds, ["backup", "integrity-check", "restore-test"]);
    assert!(
        changes.iter().all(|c| c.outcome == Outcome::Planned),
        "{changes:?}"
    );
    assert_eq!(lab.snapshot_count(), before, "plan mode made a snapshot");
    assert!(
        !lab.state().join("scratch").exists(),
        "plan mode restored files"
    );
    assert!(!lab.state().join("nightly-files.last-run.json").exists());
    // Nothing was recorded as done: the same findings stand.
    assert_eq!(check(&spec).await.len(), 3);
    // Each mutating call is audited as planned.
    let mut planned: Vec<&str> = Vec::new();
    let events = audit.events();
    for e in &events {
        assert_eq!(e.outcome, AuditOutcome::Planned, "{e:?}");
        planned.push(e.function);
    }
    planned.sort();
    assert_eq!(planned, ["restore-test", "run-backup", "verify"]);
}

#[tokio::test]
async fn restic_plan_mode_runs_nothing() {
    plan_mode_runs_nothing(Tool::Restic).await;
}

#[tokio::test]
async fn borg_plan_mode_runs_nothing() {
    plan_mode_runs_nothing(Tool::Borg).await;
}

async fn a_wrong_password_fails_without_showing_it(tool: Tool) {
    let lab = Lab::new(tool);
    lab.backup(None);
    let wrong = lab.dir.path().join("wrong");
    std::fs::write(&wrong, WRONG).unwrap();
    let provider: Arc<dyn BackupsProvider> =
        Arc::new(BackupSets::new(vec![lab.set("nightly-files", &wrong)], lab.state()).unwrap());
    let err = provider.snapshots("nightly-files").await.unwrap_err();
    assert!(matches!(err, HostError::Failed(_)), "{err:?}");
    let text = format!("{err:?}");
    assert!(!text.contains(WRONG) && !text.contains(PASSWORD), "{text}");
    let err = provider
        .verify("nightly-files", 5, RunMode::Apply)
        .await
        .unwrap_err();
    assert!(!format!("{err:?}").contains(WRONG), "{err:?}");
    let err = provider
        .restore_test("nightly-files", 2, RunMode::Apply)
        .await
        .unwrap_err();
    assert!(!format!("{err:?}").contains(WRONG), "{err:?}");

    // Through the plugin: the check fails, and neither its error nor its
    // log holds the password.
    let spec = lab.run(RunMode::Apply, provider).await;
    let module = module("steward-plugin-backup-check").await;
    let report = runtime().check(&module, spec).await;
    let err = report.result.unwrap_err();
    assert!(matches!(err, RunError::Plugin(_)), "{err}");
    let everything = format!("{err} {:?}", report.log);
    assert!(everything.contains("failed"), "{everything}");
    assert!(
        !everything.contains(WRONG) && !everything.contains(PASSWORD),
        "{everything}"
    );
}

#[tokio::test]
async fn restic_wrong_password_fails_without_showing_it() {
    a_wrong_password_fails_without_showing_it(Tool::Restic).await;
}

#[tokio::test]
async fn borg_wrong_password_fails_without_showing_it() {
    a_wrong_password_fails_without_showing_it(Tool::Borg).await;
}

#[tokio::test]
async fn sets_outside_the_grant_are_denied_and_a_check_changes_nothing() {
    let lab = Lab::new(Tool::Restic);
    lab.backup(None);
    let provider: Arc<dyn BackupsProvider> = Arc::new(
        BackupSets::new(
            vec![lab.set("weekly-db", &lab.dir.path().join("pass"))],
            lab.state(),
        )
        .unwrap(),
    );
    // The grant is `backups=nightly-*`: `weekly-db` is out of scope.
    let (spec, audit) = lab.run_audited(RunMode::Apply, provider).await;
    let module = module("steward-plugin-backup-check").await;
    let report = runtime().check(&module, spec.clone()).await;
    let err = report.result.unwrap_err();
    assert!(
        err.to_string().contains("outside the `backups` grant"),
        "{err}"
    );
    assert!(
        audit
            .events()
            .iter()
            .any(|e| e.function == "snapshots" && matches!(e.outcome, AuditOutcome::Denied(_)))
    );

    // A check reads and changes nothing: no snapshot, no scratch copy.
    let before = lab.snapshot_count();
    let spec = lab.run(RunMode::Apply, lab.provider()).await;
    let _ = check(&spec).await;
    assert_eq!(lab.snapshot_count(), before);
    assert!(!lab.state().join("scratch").exists());
}

#[tokio::test]
async fn a_0_1_0_plugin_and_a_0_2_0_plugin_run_side_by_side() {
    let legacy = module("guest-legacy-v0-1").await;
    let current = module("steward-plugin-backup-check").await;
    assert_eq!(legacy.wit_version, "0.1.0");
    assert_eq!(current.wit_version, "0.2.0");
    // The 0.1.0 plugin: its describe, its check (packages, state, config,
    // log through the 0.1.0 names) and its remediation, in plan mode.
    let descriptor = runtime().describe(&legacy).await.result.unwrap();
    assert_eq!(descriptor.name, "legacy-patching");
    let run = run_with(
        fixture(),
        "guest-legacy-v0-1",
        grants(&["packages"]),
        &[("note", "hello from 0.1.0")],
        RunMode::Plan,
    )
    .await;
    let report = runtime().check(&legacy, run.spec.clone()).await;
    assert!(report.log.iter().any(|l| l.message == "hello from 0.1.0"));
    let findings = report.result.unwrap();
    assert!(!findings.is_empty(), "the fixture has a security update");
    let changes = runtime()
        .remediate(&legacy, run.spec.clone(), findings)
        .await
        .result
        .map(|r| r.changes)
        .unwrap();
    assert!(!changes.is_empty());
    assert!(changes.iter().all(|c| c.outcome == Outcome::Planned));
    assert!(
        run.audit
            .events()
            .iter()
            .any(|e| e.function == "install-updates" && e.outcome == AuditOutcome::Planned)
    );
    // A 0.1.0 plugin cannot ask for `backups`: it does not exist there.
    assert!(legacy.requested.iter().all(|c| c.since() == "0.1.0"));
    // And the 0.2.0 plugin runs in the same runtime.
    let lab = Lab::new(Tool::Restic);
    lab.backup(None);
    let spec = lab.run(RunMode::Apply, lab.provider()).await;
    let report = runtime().check(&current, spec).await;
    assert_eq!(report.result.unwrap().len(), 2);
}
