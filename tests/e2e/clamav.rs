//! The ClamAV provider and the antivirus plugin against the real `clamscan`
//! and `freshclam`, with a signature database the test writes: the MD5
//! signature of the standard EICAR test file.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;

use steward_runtime::bindings::types::{HostError, Outcome, RunMode};
use steward_runtime::capability::antivirus::{AntivirusProvider, ClamAv};

use crate::support::*;

const EICAR: &str = r"X5O!P%@AP[4\PZX54(P^)7CC)7}$EICAR-STANDARD-ANTIVIRUS-TEST-FILE!$H+H*";

struct Lab {
    dir: tempfile::TempDir,
    av: ClamAv,
}

impl Lab {
    fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("db");
        let scan = dir.path().join("scan/share");
        std::fs::create_dir_all(&db).unwrap();
        std::fs::create_dir_all(&scan).unwrap();
        let eicar = scan.join("invoice.com");
        std::fs::write(&eicar, EICAR).unwrap();
        std::fs::write(scan.join("notes.txt"), "nothing to see").unwrap();
        let md5 = Command::new("md5sum").arg(&eicar).output().unwrap();
        let md5 = String::from_utf8_lossy(&md5.stdout)
            .split_whitespace()
            .next()
            .unwrap()
            .to_string();
        std::fs::write(
            db.join("steward.hdb"),
            format!("{md5}:{}:Steward.Test.EICAR\n", EICAR.len()),
        )
        .unwrap();
        let av = ClamAv {
            database_dir: db,
            quarantine_dir: dir.path().join("quarantine"),
            // Nothing listens on the discard port: the update must fail clearly.
            mirror: Some("http://127.0.0.1:9".into()),
        };
        Lab { dir, av }
    }

    fn scan_dir(&self) -> PathBuf {
        self.dir.path().join("scan")
    }

    fn eicar(&self) -> PathBuf {
        self.scan_dir().join("share/invoice.com")
    }
}

fn mode_of(p: &Path) -> u32 {
    std::fs::metadata(p).unwrap().permissions().mode() & 0o777
}

#[tokio::test]
async fn clamav_reports_status_scans_and_quarantines_restorably() {
    let lab = Lab::new();
    let status = lab.av.status().await.unwrap();
    assert!(status.installed, "clamscan is installed by .ci/setup");
    assert!(status.version.is_some());
    assert_eq!(
        status
            .databases
            .iter()
            .map(|d| d.name.as_str())
            .collect::<Vec<_>>(),
        ["steward.hdb"]
    );

    let report = lab
        .av
        .scan(&[lab.scan_dir().display().to_string()])
        .await
        .unwrap();
    assert_eq!(report.scanned_files, 2);
    assert_eq!(report.detections.len(), 1);
    assert_eq!(report.detections[0].path, lab.eicar().display().to_string());
    assert!(
        report.detections[0]
            .signature
            .starts_with("Steward.Test.EICAR")
    );

    let path = lab.eicar().display().to_string();
    let planned = lab
        .av
        .quarantine(&path, "Steward.Test.EICAR", RunMode::Plan)
        .await
        .unwrap();
    assert_eq!(planned.outcome, Outcome::Planned);
    assert!(lab.eicar().exists(), "plan mode moved the file");

    let record = lab
        .av
        .quarantine(&path, "Steward.Test.EICAR", RunMode::Apply)
        .await
        .unwrap();
    assert!(!lab.eicar().exists());
    let stored = lab.av.quarantine_dir.join(&record.id);
    assert_eq!(mode_of(&stored), 0o400);
    assert_eq!(mode_of(&lab.av.quarantine_dir), 0o700);
    assert_eq!(lab.av.quarantined()[0].original_path, path);

    let restored = lab.av.restore(&record.id).unwrap();
    assert_eq!(restored.signature, "Steward.Test.EICAR");
    assert_eq!(std::fs::read_to_string(lab.eicar()).unwrap(), EICAR);
    assert!(lab.av.quarantined().is_empty());
    assert!(matches!(
        lab.av.restore(&record.id),
        Err(HostError::NotFound(_))
    ));
    assert!(matches!(
        lab.av.restore("../etc"),
        Err(HostError::InvalidArgument(_))
    ));
}

#[tokio::test]
async fn bad_scan_paths_and_unreachable_mirrors_get_clear_errors() {
    let lab = Lab::new();
    let err = lab
        .av
        .scan(&["/definitely/not/here".into()])
        .await
        .unwrap_err();
    assert!(
        matches!(&err, HostError::NotFound(m) if m.contains("/definitely/not/here")),
        "{err:?}"
    );

    assert_eq!(
        lab.av.update_signatures(RunMode::Plan).await.unwrap(),
        Outcome::Planned
    );
    let err = lab.av.update_signatures(RunMode::Apply).await.unwrap_err();
    match &err {
        HostError::Unavailable(m) => assert!(
            m.starts_with("signature update from `http://127.0.0.1:9` failed"),
            "{m}"
        ),
        other => panic!("expected unavailable, got {other:?}"),
    }
    let unconfigured = ClamAv {
        mirror: None,
        ..lab.av.clone()
    };
    let err = unconfigured
        .update_signatures(RunMode::Apply)
        .await
        .unwrap_err();
    assert!(
        matches!(&err, HostError::Unavailable(m) if m.contains("no signature mirror")),
        "{err:?}"
    );
}

#[tokio::test]
async fn the_antivirus_plugin_plans_then_quarantines_a_real_detection() {
    let lab = Lab::new();
    let module = module("steward-plugin-antivirus").await;
    let mut fixture = fixture();
    fixture.now = None;
    let scan = lab.scan_dir().display().to_string();
    let grant = format!("antivirus={}/**", lab.dir.path().display());
    let mut run = run_with_limits(
        fixture,
        "steward-plugin-antivirus",
        grants(&[&grant]),
        &[("scan-paths", &scan), ("require-service", "false")],
        RunMode::Plan,
        roomy_limits(),
    )
    .await
    .with_device(|d| d.antivirus = Arc::new(lab.av.clone()));
    let ids = |fs: &[steward_runtime::bindings::types::Finding]| {
        fs.iter().map(|f| f.id.clone()).collect::<Vec<_>>()
    };

    let findings = runtime()
        .check(&module, run.spec.clone())
        .await
        .result
        .expect("check");
    assert_eq!(ids(&findings), ["scan-overdue"]);

    let planned = runtime()
        .remediate(&module, run.spec.clone(), findings)
        .await
        .result
        .map(|r| r.changes)
        .expect("plan");
    assert_eq!(planned.len(), 1);
    assert_eq!(
        (planned[0].kind.as_str(), planned[0].outcome),
        ("quarantine", Outcome::Planned)
    );
    assert!(lab.eicar().exists(), "plan mode quarantined the file");

    // The scan is on record now, and so is the detection it left.
    let findings = runtime()
        .check(&module, run.spec.clone())
        .await
        .result
        .expect("check");
    let detection = format!("detection:{}", lab.eicar().display());
    assert_eq!(ids(&findings), [detection]);

    run.spec.mode = RunMode::Apply;
    let applied = runtime()
        .remediate(&module, run.spec.clone(), findings)
        .await
        .result
        .map(|r| r.changes)
        .expect("apply");
    assert_eq!(applied.len(), 1);
    assert_eq!(applied[0].outcome, Outcome::Applied);
    assert_eq!(
        (
            planned[0].kind.clone(),
            planned[0].target.clone(),
            planned[0].description.clone()
        ),
        (
            applied[0].kind.clone(),
            applied[0].target.clone(),
            applied[0].description.clone()
        )
    );
    assert!(
        applied[0].description.contains("Steward.Test.EICAR"),
        "{}",
        applied[0].description
    );
    assert!(!lab.eicar().exists());
    assert_eq!(lab.av.quarantined().len(), 1);
    let audit = run.audit.events();
    assert!(audit.iter().any(|e| e.function == "quarantine"
        && e.outcome == steward_runtime::audit::AuditOutcome::Applied));

    let findings = runtime()
        .check(&module, run.spec.clone())
        .await
        .result
        .expect("check");
    assert!(findings.is_empty(), "{findings:?}");
}

#[tokio::test]
async fn the_host_denies_a_scan_path_outside_the_grant() {
    let lab = Lab::new();
    let module = module("steward-plugin-antivirus").await;
    let mut fixture = fixture();
    fixture.now = None;
    let scan = lab.scan_dir().display().to_string();
    // Granted only a sibling directory: the plugin asks for more.
    let grant = format!("antivirus={}/elsewhere/**", lab.dir.path().display());
    let mut run = run_with_limits(
        fixture,
        "steward-plugin-antivirus",
        grants(&[&grant]),
        &[("scan-paths", &scan), ("scan-max-days", "-2")],
        RunMode::Apply,
        roomy_limits(),
    )
    .await
    .with_device(|d| d.antivirus = Arc::new(lab.av.clone()));

    let err = runtime()
        .check(&module, run.spec.clone())
        .await
        .result
        .unwrap_err();
    assert!(
        err.to_string()
            .contains("invalid parameter `scan-max-days`: must be at least 0, got -2"),
        "{err}"
    );

    let descriptor = runtime().describe(&module).await.result.unwrap();
    run.spec.params =
        steward_runtime::resolve_text_params(&descriptor, &[("scan-paths".into(), scan.clone())])
            .unwrap();
    let findings = vec![steward_runtime::bindings::types::Finding {
        id: "scan-overdue".into(),
        severity: steward_runtime::bindings::types::Severity::Warning,
        summary: String::new(),
        detail: String::new(),
        resource: String::new(),
        fields: Vec::new(),
    }];
    let err = runtime()
        .remediate(&module, run.spec.clone(), findings)
        .await
        .result
        .map(|r| r.changes)
        .unwrap_err();
    assert!(
        err.to_string()
            .contains(&format!("`{scan}` is outside the `antivirus` grant")),
        "{err}"
    );
    let denied = run
        .audit
        .events()
        .into_iter()
        .find(|e| e.function == "scan")
        .unwrap();
    assert!(matches!(
        denied.outcome,
        steward_runtime::audit::AuditOutcome::Denied(_)
    ));
    assert!(lab.eicar().exists());
}

/// A path through a symbolic link to a directory outside the grant is
/// refused (scan and quarantine follow no links), and so is quarantining a
/// file no scan detects; nothing moves.
#[tokio::test]
async fn links_out_of_scope_and_undetected_files_are_never_quarantined() {
    let lab = Lab::new();
    let outside = lab.dir.path().join("outside");
    std::fs::create_dir_all(&outside).unwrap();
    std::fs::write(outside.join("victim.com"), EICAR).unwrap();
    std::os::unix::fs::symlink(&outside, lab.scan_dir().join("share/dirlink")).unwrap();
    let through_link = lab
        .scan_dir()
        .join("share/dirlink/victim.com")
        .display()
        .to_string();
    for mode in [RunMode::Plan, RunMode::Apply] {
        let err = lab
            .av
            .quarantine(&through_link, "Steward.Test.EICAR", mode)
            .await
            .unwrap_err();
        assert!(
            matches!(&err, HostError::Denied(m) if m.contains("symbolic link")),
            "{err:?}"
        );
    }
    assert!(
        outside.join("victim.com").exists(),
        "the outside file stayed"
    );
    let err = lab.av.scan(&[through_link]).await.unwrap_err();
    assert!(matches!(err, HostError::Denied(_)), "{err:?}");

    let clean = lab.scan_dir().join("share/notes.txt").display().to_string();
    let err = lab
        .av
        .quarantine(&clean, "Steward.Test.EICAR", RunMode::Apply)
        .await
        .unwrap_err();
    assert!(
        matches!(&err, HostError::Denied(m) if m.contains("only detected files")),
        "{err:?}"
    );
    assert!(lab.scan_dir().join("share/notes.txt").exists());
    assert!(lab.av.quarantined().is_empty());
}
