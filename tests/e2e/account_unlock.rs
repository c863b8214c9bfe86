//! The account-unlock plugin through the runtime against a simulated
//! server whose accounts are locked for different reasons
//! (`account-unlock.toml`).

use steward_runtime::RunError;
use steward_runtime::audit::AuditOutcome;
use steward_runtime::bindings::types::{Change, Finding, Outcome, PluginError, RunMode, Severity};
use steward_runtime::device::simulated::{Fixture, Simulated};

use crate::support::*;

const PLUGIN: &str = "steward-plugin-account-unlock";
const STAFF_OU: &str = "OU=Staff;OU=Corp Users;DC=corp;DC=example";

fn accounts() -> Fixture {
    toml::from_str(include_str!("account-unlock.toml")).expect("accounts fixture parses")
}

async fn run(params: &[(&str, &str)], mode: RunMode) -> Run {
    run_with(accounts(), PLUGIN, grants(&["accounts"]), params, mode).await
}

async fn check(run: &Run) -> Result<Vec<Finding>, RunError> {
    runtime()
        .check(&*module(PLUGIN).await, run.spec.clone())
        .await
        .result
}

async fn remediate(run: &Run) -> Result<Vec<Change>, RunError> {
    runtime()
        .remediate(&*module(PLUGIN).await, run.spec.clone(), Vec::new())
        .await
        .result
        .map(|r| r.changes)
}

fn locked(sim: &Simulated) -> Vec<String> {
    let mut names: Vec<_> = sim
        .snapshot()
        .accounts
        .into_iter()
        .filter(|a| a.locked)
        .map(|a| a.name)
        .collect();
    names.sort();
    names
}

fn decisions(changes: &[Change]) -> Vec<(&str, &str)> {
    changes
        .iter()
        .map(|c| (c.kind.as_str(), c.target.as_str()))
        .collect()
}

fn change<'a>(changes: &'a [Change], target: &str) -> &'a Change {
    changes
        .iter()
        .find(|c| c.target == target)
        .unwrap_or_else(|| panic!("no change for {target}: {changes:?}"))
}

const ALL_LOCKED: [&str; 6] = ["asmith", "backup", "bkim", "da-ops", "deploy", "jdoe"];

#[tokio::test]
async fn finds_every_locked_account_and_marks_privileged_ones_critical() {
    let run = run(&[], RunMode::Plan).await;
    let findings = check(&run).await.expect("check");
    let ids: Vec<_> = findings.iter().map(|f| f.id.as_str()).collect();
    assert_eq!(
        ids,
        ALL_LOCKED.map(|n| format!("locked:{n}")),
        "one finding per locked account, by name"
    );
    let severity = |name: &str| {
        findings
            .iter()
            .find(|f| f.resource == name)
            .map(|f| f.severity)
            .unwrap()
    };
    assert_eq!(severity("da-ops"), Severity::Critical);
    assert_eq!(severity("deploy"), Severity::Critical, "sudo is privileged");
    assert_eq!(severity("jdoe"), Severity::Warning);
    assert_eq!(severity("backup"), Severity::Warning);

    let jdoe = findings.iter().find(|f| f.resource == "jdoe").unwrap();
    let field = |f: &Finding, k: &str| {
        f.fields
            .iter()
            .find(|x| x.key == k)
            .map(|x| x.value.clone())
            .unwrap_or_else(|| panic!("no field {k}"))
    };
    assert_eq!(field(jdoe, "locked-since"), "2026-11-22T21:00:00Z");
    assert_eq!(field(jdoe, "locked-minutes"), "180");
    assert_eq!(field(jdoe, "failed-attempts"), "5");
    assert_eq!(field(jdoe, "source"), "directory");
    assert_eq!(
        field(jdoe, "path"),
        "CN=John Doe,OU=Staff,OU=Corp Users,DC=corp,DC=example"
    );
    assert_eq!(field(jdoe, "groups"), "Staff, VPN Users");
    let backup = findings.iter().find(|f| f.resource == "backup").unwrap();
    assert_eq!(field(backup, "locked-since"), "unknown");
    assert_eq!(field(backup, "source"), "local");
    assert_eq!(field(backup, "path"), "");
    let da = findings.iter().find(|f| f.resource == "da-ops").unwrap();
    assert_eq!(field(da, "privileged"), "Domain Admins");
    assert_eq!(locked(&run.sim), ALL_LOCKED, "a check changes nothing");
}

#[tokio::test]
async fn plan_mode_unlocks_nothing_and_plans_what_apply_does() {
    let plan = run(&[("auto-unlock-after-minutes", "30")], RunMode::Plan).await;
    let before = plan.sim.snapshot();
    let planned = remediate(&plan).await.expect("plan");
    assert_eq!(plan.sim.snapshot(), before, "plan mode changed the device");
    assert!(planned.iter().all(|c| c.outcome == Outcome::Planned));
    assert!(
        plan.audit
            .events()
            .iter()
            .all(|e| e.outcome == AuditOutcome::Planned)
    );
    assert_eq!(
        decisions(&planned),
        [
            ("kept-locked", "asmith"),
            ("kept-locked", "backup"),
            ("unlock", "bkim"),
            ("kept-locked", "da-ops"),
            ("kept-locked", "deploy"),
            ("unlock", "jdoe"),
        ]
    );

    let apply = run(&[("auto-unlock-after-minutes", "30")], RunMode::Apply).await;
    let applied = remediate(&apply).await.expect("apply");
    assert_eq!(decisions(&applied), decisions(&planned));
    assert!(applied.iter().all(|c| c.outcome == Outcome::Applied));
    assert_eq!(locked(&apply.sim), ["asmith", "backup", "da-ops", "deploy"]);
    assert_eq!(apply.audit.events().len(), 2, "one audited unlock each");
}

#[tokio::test]
async fn privileged_accounts_stay_locked_and_the_change_names_the_group() {
    let scheduled = run(&[("auto-unlock-after-minutes", "0")], RunMode::Apply).await;
    let changes = remediate(&scheduled).await.expect("apply");
    let da = change(&changes, "da-ops");
    assert_eq!(da.kind, "kept-locked");
    assert!(da.description.contains("`Domain Admins`"), "{da:?}");
    let deploy = change(&changes, "deploy");
    assert_eq!(deploy.kind, "kept-locked");
    assert!(deploy.description.contains("`sudo`"), "{deploy:?}");
    // `backup` has no lock time, so even a zero-minute policy keeps it.
    assert_eq!(locked(&scheduled.sim), ["backup", "da-ops", "deploy"]);

    // Not even on request, with a ticket.
    let on_demand = run(
        &[("user", "da-ops"), ("ticket", "INC-1001")],
        RunMode::Apply,
    )
    .await;
    let changes = remediate(&on_demand).await.expect("apply");
    assert_eq!(decisions(&changes), [("kept-locked", "da-ops")]);
    assert!(
        changes[0].description.contains("`Domain Admins`")
            && changes[0].description.contains("INC-1001"),
        "{changes:?}"
    );
    assert!(on_demand.audit.events().is_empty(), "unlock never called");
    assert_eq!(locked(&on_demand.sim), ALL_LOCKED);

    // A custom list replaces the default: `Contractors` is privileged now,
    // `sudo` no longer is.
    let custom = run(
        &[
            ("auto-unlock-after-minutes", "0"),
            ("privileged-groups", "contractors, Domain Admins"),
        ],
        RunMode::Apply,
    )
    .await;
    let changes = remediate(&custom).await.expect("apply");
    assert!(
        change(&changes, "bkim")
            .description
            .contains("`Contractors`")
    );
    // The plugin no longer calls `sudo` privileged, but the host does: it
    // refuses the unlock (audited as denied) unless the grant names the
    // account.
    let deploy = change(&changes, "deploy");
    assert_eq!(deploy.kind, "kept-locked");
    assert!(
        deploy.description.contains("privileged group `sudo`"),
        "{deploy:?}"
    );
    assert_eq!(locked(&custom.sim), ["backup", "bkim", "da-ops", "deploy"]);
    let named = run_with(
        accounts(),
        PLUGIN,
        grants(&["accounts=*,privileged:deploy"]),
        &[
            ("auto-unlock-after-minutes", "0"),
            ("privileged-groups", "contractors, Domain Admins"),
        ],
        RunMode::Apply,
    )
    .await;
    let changes = remediate(&named).await.expect("apply");
    assert_eq!(change(&changes, "deploy").kind, "unlock");
    assert_eq!(locked(&named.sim), ["backup", "bkim", "da-ops"]);
}

#[tokio::test]
async fn auto_unlock_waits_for_the_lock_to_age() {
    let run30 = run(&[("auto-unlock-after-minutes", "30")], RunMode::Apply).await;
    let changes = remediate(&run30).await.expect("apply");
    let asmith = change(&changes, "asmith");
    assert_eq!(asmith.kind, "kept-locked");
    assert!(
        asmith
            .description
            .contains("locked 10 min, policy unlocks after 30 min"),
        "{asmith:?}"
    );
    let backup = change(&changes, "backup");
    assert_eq!(backup.kind, "kept-locked");
    assert!(
        backup.description.contains("lock time unknown"),
        "{backup:?}"
    );
    let jdoe = change(&changes, "jdoe");
    assert_eq!(
        (jdoe.kind.as_str(), jdoe.outcome),
        ("unlock", Outcome::Applied)
    );
    assert!(jdoe.description.contains("locked 180 min"), "{jdoe:?}");

    // Past 200 minutes only bkim (300 min) qualifies.
    let run200 = run(&[("auto-unlock-after-minutes", "200")], RunMode::Apply).await;
    let changes = remediate(&run200).await.expect("apply");
    assert_eq!(change(&changes, "jdoe").kind, "kept-locked");
    assert_eq!(change(&changes, "bkim").kind, "unlock");
    assert_eq!(
        locked(&run200.sim),
        ["asmith", "backup", "da-ops", "deploy", "jdoe"]
    );

    // Without the parameter nothing is unlocked automatically, and each
    // account's change says so.
    let off = run(&[], RunMode::Apply).await;
    let changes = remediate(&off).await.expect("apply");
    assert!(
        changes.iter().all(|c| c.kind == "kept-locked"),
        "{changes:?}"
    );
    assert!(
        change(&changes, "jdoe")
            .description
            .contains("automatic unlock is off")
    );
    assert_eq!(locked(&off.sim), ALL_LOCKED);
}

#[tokio::test]
async fn allowed_ous_groups_and_the_grant_bound_automatic_unlocks() {
    let ous = run(
        &[
            ("auto-unlock-after-minutes", "30"),
            ("allowed-ous", STAFF_OU),
        ],
        RunMode::Apply,
    )
    .await;
    let changes = remediate(&ous).await.expect("apply");
    let bkim = change(&changes, "bkim");
    assert_eq!(bkim.kind, "kept-locked");
    assert!(
        bkim.description.contains("outside the allowed OUs"),
        "{bkim:?}"
    );
    assert!(
        change(&changes, "backup")
            .description
            .contains("local account with no DN")
    );
    assert_eq!(change(&changes, "jdoe").kind, "unlock");

    let groups = run(
        &[
            ("auto-unlock-after-minutes", "30"),
            ("allowed-groups", "vpn users"),
        ],
        RunMode::Apply,
    )
    .await;
    let changes = remediate(&groups).await.expect("apply");
    assert!(
        change(&changes, "bkim")
            .description
            .contains("in none of the allowed groups (`vpn users`)")
    );
    assert_eq!(change(&changes, "jdoe").kind, "unlock");

    // An unlock outside the `accounts` grant is denied by the host, audited,
    // and kept locked; the other accounts are still decided.
    let scoped = run_with(
        accounts(),
        PLUGIN,
        grants(&["accounts=jdoe"]),
        &[("auto-unlock-after-minutes", "30")],
        RunMode::Apply,
    )
    .await;
    let changes = remediate(&scoped).await.expect("apply");
    let bkim = change(&changes, "bkim");
    assert_eq!(bkim.kind, "kept-locked");
    assert!(bkim.description.contains("`accounts` grant"), "{bkim:?}");
    assert_eq!(change(&changes, "jdoe").kind, "unlock");
    let outcomes: Vec<_> = scoped
        .audit
        .events()
        .into_iter()
        .map(|e| (e.arguments, matches!(e.outcome, AuditOutcome::Denied(_))))
        .collect();
    // Each unlock is audited with its account's source and the reason the
    // plugin gave (the policy that decided it).
    assert_eq!(
        outcomes,
        [
            (
                "bkim (directory): locked 300 min, policy unlocks after 30 min".to_string(),
                true
            ),
            (
                "jdoe (directory): locked 180 min, policy unlocks after 30 min".to_string(),
                false
            )
        ]
    );
}

#[tokio::test]
async fn on_demand_unlock_records_the_ticket() {
    // asmith has been locked 10 minutes: too young for any schedule, but a
    // person asked, with a ticket.
    let asked = run(
        &[
            ("user", "asmith"),
            ("ticket", "INC-4711"),
            ("auto-unlock-after-minutes", "30"),
        ],
        RunMode::Apply,
    )
    .await;
    let changes = remediate(&asked).await.expect("apply");
    assert_eq!(decisions(&changes), [("unlock", "asmith")]);
    let c = &changes[0];
    assert_eq!(c.outcome, Outcome::Applied);
    assert!(c.description.contains("INC-4711"), "{c:?}");
    assert_eq!(c.after.as_deref(), Some("ticket=INC-4711"));
    let mut still = ALL_LOCKED.to_vec();
    still.retain(|n| *n != "asmith");
    assert_eq!(locked(&asked.sim), still, "only the requested account");

    // An account that is not locked is left alone.
    let unlocked = run(&[("user", "mlee"), ("ticket", "INC-4712")], RunMode::Apply).await;
    assert!(remediate(&unlocked).await.expect("apply").is_empty());
    assert!(unlocked.audit.events().is_empty());
}

#[tokio::test]
async fn on_demand_for_a_missing_account_fails_and_changes_nothing() {
    let run = run(&[("user", "ghost"), ("ticket", "INC-9")], RunMode::Apply).await;
    let before = run.sim.snapshot();
    let err = remediate(&run).await.unwrap_err();
    match &err {
        RunError::Plugin(PluginError::Failed(m)) => {
            assert!(
                m.contains("`ghost`") && m.contains("nothing was changed"),
                "{m}"
            )
        }
        other => panic!("expected a plugin error, got {other}"),
    }
    assert_eq!(run.sim.snapshot(), before);
    assert!(run.audit.events().is_empty());
}

#[tokio::test]
async fn bad_parameters_are_refused_naming_the_parameter() {
    for (params, name, message) in [
        (
            &[("user", "jdoe")][..],
            "ticket",
            "required when `user` is given",
        ),
        (
            &[("user", "jdoe"), ("ticket", "  ")][..],
            "ticket",
            "required when `user` is given",
        ),
        (
            &[("auto-unlock-after-minutes", "-5")][..],
            "auto-unlock-after-minutes",
            "must be at least 0, got -5",
        ),
        // Commas split list items, so a DN written with commas arrives as
        // single RDNs, which must not silently match too much or nothing.
        (
            &[("allowed-ous", "OU=Staff,DC=corp,DC=example")][..],
            "allowed-ous",
            "`OU=Staff` is a single RDN, not a DN suffix",
        ),
        (
            &[("allowed-ous", "DC=corp;DC=example")][..],
            "allowed-ous",
            "names a whole domain, not an OU",
        ),
        (
            &[("allowed-ous", "Staff")][..],
            "allowed-ous",
            "is not a DN suffix",
        ),
        (
            &[("privileged-groups", "")][..],
            "privileged-groups",
            "must name at least one group",
        ),
    ] {
        let run = run(params, RunMode::Apply).await;
        for err in [
            check(&run).await.unwrap_err(),
            remediate(&run).await.unwrap_err(),
        ] {
            match &err {
                RunError::Plugin(PluginError::InvalidParam(p)) => {
                    assert_eq!(p.name, name, "{err}");
                    assert!(p.message.contains(message), "{err}");
                }
                other => panic!("expected invalid-param `{name}`, got {other}"),
            }
        }
        assert_eq!(locked(&run.sim), ALL_LOCKED);
        assert!(run.audit.events().is_empty());
    }
}
