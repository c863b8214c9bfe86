//! The dpkg/apt provider against a real sandbox root: packages installed with
//! `dpkg --root`, a local repository built with `dpkg-deb` and
//! `dpkg-scanpackages` (one archive labelled as a security origin), and apt
//! pointed at it all. Nothing touches this machine's own packages.

use std::path::Path;
use std::process::Command;
use std::sync::Arc;

use steward_runtime::bindings::types::{Outcome, RunMode};
use steward_runtime::capability::packages::{Apt, PackagesProvider};

use steward_tests::apt::{sandbox, sh, version_on_disk};

use crate::support::*;

#[tokio::test]
async fn lists_installed_packages_and_classifies_updates_and_holds() {
    let (_work, root) = sandbox();
    let apt = Apt::new(&root, true);
    let installed = apt.installed().await.unwrap();
    let names: Vec<_> = installed
        .iter()
        .map(|p| (p.name.as_str(), p.version.as_str()))
        .collect();
    assert_eq!(names, [("libfoo", "1.0"), ("tool", "1.0")]);

    sh(Command::new("sh").arg("-c").arg(format!(
        "echo 'tool hold' | dpkg --root={} --set-selections",
        root.display()
    )));
    let updates = apt.updates().await.unwrap();
    let libfoo = updates.iter().find(|u| u.name == "libfoo").unwrap();
    assert!(libfoo.security && !libfoo.held, "{libfoo:?}");
    assert_eq!(
        (
            libfoo.installed_version.as_str(),
            libfoo.candidate_version.as_str()
        ),
        ("1.0", "1.1")
    );
    let tool = updates.iter().find(|u| u.name == "tool").unwrap();
    assert!(!tool.security && tool.held, "{tool:?}");

    let err = apt
        .install_updates(&["tool".into()], RunMode::Apply)
        .await
        .unwrap_err();
    assert!(format!("{err:?}").contains("held back"), "{err:?}");
    assert_eq!(version_on_disk(&root, "tool"), "1.0");

    assert!(!apt.reboot_required().await.unwrap().required);
    std::fs::create_dir_all(root.join("var/run")).unwrap();
    std::fs::write(root.join("var/run/reboot-required"), "").unwrap();
    std::fs::write(root.join("var/run/reboot-required.pkgs"), "libfoo\n").unwrap();
    let reboot = apt.reboot_required().await.unwrap();
    assert!(reboot.required);
    assert_eq!(reboot.packages, ["libfoo"]);
}

#[tokio::test]
async fn a_plugin_plans_then_applies_real_upgrades_through_apt() {
    let (_work, root) = sandbox();
    let mut run = run_with_limits(
        fixture_without_findings(),
        "guest-fixer",
        grants(&[
            "packages=libfoo,tool",
            "accounts",
            "antivirus=/srv/**",
            "tickets",
        ]),
        &[],
        RunMode::Plan,
        roomy_limits(),
    )
    .await
    .with_device(|d| d.packages = Arc::new(Apt::new(&root, true)));
    let module = module("guest-fixer").await;

    let findings = runtime()
        .check(&module, run.spec.clone())
        .await
        .result
        .expect("check");
    let ids: Vec<_> = findings.iter().map(|f| f.id.as_str()).collect();
    assert_eq!(ids, ["update:libfoo", "update:tool"]);

    let planned = runtime()
        .remediate(&module, run.spec.clone(), findings.clone())
        .await
        .result
        .map(|r| r.changes)
        .expect("plan");
    assert_eq!(
        version_on_disk(&root, "libfoo"),
        "1.0",
        "plan mode installed something"
    );
    assert_eq!(version_on_disk(&root, "tool"), "1.0");

    run.spec.mode = RunMode::Apply;
    let applied = runtime()
        .remediate(&module, run.spec.clone(), findings)
        .await
        .result
        .map(|r| r.changes)
        .expect("apply");
    assert_eq!(version_on_disk(&root, "libfoo"), "1.1");
    assert_eq!(version_on_disk(&root, "tool"), "1.1");

    let upgrades = |cs: &[steward_runtime::bindings::types::Change], outcome| {
        cs.iter()
            .filter(|c| c.kind == "package-upgrade")
            .map(|c| {
                assert_eq!(c.outcome, outcome);
                (c.target.clone(), c.before.clone(), c.after.clone())
            })
            .collect::<Vec<_>>()
    };
    let plan = upgrades(&planned, Outcome::Planned);
    assert_eq!(plan, upgrades(&applied, Outcome::Applied));
    assert_eq!(
        plan,
        [
            ("libfoo".into(), Some("1.0".into()), Some("1.1".into())),
            ("tool".into(), Some("1.0".into()), Some("1.1".into()))
        ]
    );
    assert!(apt_updates_empty(&root).await);
}

async fn apt_updates_empty(root: &Path) -> bool {
    Apt::new(root, false).updates().await.unwrap().is_empty()
}

/// The shared fixture minus its simulated updates, locks and detections,
/// so the only findings are the real ones from apt.
fn fixture_without_findings() -> steward_runtime::device::simulated::Fixture {
    let mut f = fixture();
    f.updates.clear();
    f.accounts.iter_mut().for_each(|a| a.locked = false);
    f.files.clear();
    f
}

#[tokio::test]
async fn patching_ages_security_updates_and_installs_by_policy() {
    let (_work, root) = sandbox();
    let module = module("steward-plugin-patching").await;
    let grants = grants(&["packages"]);
    let day0 = fixture_without_findings();
    let mut day4 = day0.clone();
    day4.now.as_mut().unwrap().seconds += 4 * 86_400;

    let mut state = None;
    let first = run_with_limits(
        day0,
        "steward-plugin-patching",
        grants.clone(),
        &[],
        RunMode::Apply,
        roomy_limits(),
    )
    .await
    .with_device(|d| {
        d.packages = Arc::new(Apt::new(&root, true));
        state = Some(d.state.clone());
    });
    let findings = runtime()
        .check(&module, first.spec.clone())
        .await
        .result
        .expect("check");
    let severity = |fs: &[steward_runtime::bindings::types::Finding], id: &str| {
        fs.iter().find(|f| f.id == id).map(|f| f.severity)
    };
    use steward_runtime::bindings::types::Severity;
    assert_eq!(
        severity(&findings, "security-update:libfoo"),
        Some(Severity::Warning)
    );
    assert_eq!(severity(&findings, "update:tool"), Some(Severity::Warning));

    // Four days later the same security update is overdue.
    let mut later = run_with_limits(
        day4,
        "steward-plugin-patching",
        grants.clone(),
        &[],
        RunMode::Plan,
        roomy_limits(),
    )
    .await
    .with_device(|d| {
        d.packages = Arc::new(Apt::new(&root, true));
        d.state = state.expect("first run kept its state store");
    });
    let findings = runtime()
        .check(&module, later.spec.clone())
        .await
        .result
        .expect("check");
    assert_eq!(
        severity(&findings, "security-update:libfoo"),
        Some(Severity::Critical)
    );
    let libfoo = findings
        .iter()
        .find(|f| f.id == "security-update:libfoo")
        .unwrap();
    assert!(
        libfoo.detail.contains("pending 4 days"),
        "{}",
        libfoo.detail
    );

    // The OS now wants a reboot too.
    std::fs::create_dir_all(root.join("var/run")).unwrap();
    std::fs::write(root.join("var/run/reboot-required"), "").unwrap();

    // Security-only by default: the plan names libfoo alone and installs nothing.
    let plan = runtime()
        .remediate(&module, later.spec.clone(), findings.clone())
        .await
        .result
        .map(|r| r.changes)
        .expect("plan");
    let targets: Vec<_> = plan
        .iter()
        .map(|c| (c.kind.as_str(), c.target.as_str(), c.outcome))
        .collect();
    assert_eq!(
        targets,
        [
            ("package-upgrade", "libfoo", Outcome::Planned),
            ("reboot", "device", Outcome::Planned)
        ]
    );
    assert!(!root.join("var/lib/steward/reboot-requested").exists());
    assert_eq!(version_on_disk(&root, "libfoo"), "1.0");

    // Excluded packages are never touched.
    let descriptor = runtime().describe(&module).await.result.unwrap();
    let mut excluded = later.spec.clone();
    excluded.params =
        steward_runtime::resolve_text_params(&descriptor, &[("exclude".into(), "lib*".into())])
            .unwrap();
    let none = runtime()
        .remediate(&module, excluded, findings.clone())
        .await
        .result
        .map(|r| r.changes)
        .expect("plan");
    assert!(none.iter().all(|c| c.kind != "package-upgrade"), "{none:?}");

    // Applied: exactly the plan. libfoo is upgraded, tool is not, and the
    // reboot request is recorded.
    later.spec.mode = RunMode::Apply;
    let applied = runtime()
        .remediate(&module, later.spec.clone(), findings)
        .await
        .result
        .map(|r| r.changes)
        .expect("apply");
    let kinds: Vec<_> = applied
        .iter()
        .map(|c| (c.kind.as_str(), c.outcome))
        .collect();
    assert_eq!(
        kinds,
        [
            ("package-upgrade", Outcome::Applied),
            ("reboot", Outcome::Applied)
        ]
    );
    assert_eq!(version_on_disk(&root, "libfoo"), "1.1");
    assert_eq!(version_on_disk(&root, "tool"), "1.0");
    assert!(root.join("var/lib/steward/reboot-requested").exists());
}

#[tokio::test]
async fn patching_refuses_bad_parameters_before_changing_anything() {
    let (_work, root) = sandbox();
    let module = module("steward-plugin-patching").await;
    for (param, value, message) in [
        (
            "security-days",
            "-1",
            "invalid parameter `security-days`: must be at least 0, got -1",
        ),
        (
            "max-packages",
            "-5",
            "invalid parameter `max-packages`: must be at least 0, got -5",
        ),
        (
            "reboot",
            "sometimes",
            "invalid parameter `reboot`: `sometimes` is not `never` or `if-required`",
        ),
    ] {
        let run = run_with_limits(
            fixture_without_findings(),
            "steward-plugin-patching",
            grants(&["packages"]),
            &[(param, value)],
            RunMode::Apply,
            roomy_limits(),
        )
        .await
        .with_device(|d| d.packages = Arc::new(Apt::new(&root, true)));
        let err = runtime().check(&module, run.spec).await.result.unwrap_err();
        assert!(err.to_string().contains(message), "{err}");
    }
    assert_eq!(version_on_disk(&root, "libfoo"), "1.0");
}
