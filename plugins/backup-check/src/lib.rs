//! `backup-check`: backups watched, restores proven.
//!
//! The check reads each backup set's snapshots and what earlier
//! remediations recorded in plugin state (the last integrity check and the
//! last restore test of each set), so it stays cheap and changes nothing:
//!
//! - no snapshot within the recovery point objective (`max-age-hours`):
//!   critical `rpo:<set>`;
//! - the newest snapshot much smaller than the ones before (files
//!   vanished): warning `shrunk:<set>`;
//! - no integrity check within `verify-days`: warning
//!   `integrity-check-due:<set>`; the last one failed: critical
//!   `integrity-failed:<set>`;
//! - no restore test within `restore-test-days`: critical
//!   `restore-test-due:<set>`; the last one failed: critical
//!   `restore-test-failed:<set>`, naming the files that did not match.
//!
//! Remediation runs the overdue backup, the integrity check and the
//! restore test, records each result (the restore test's evidence: the
//! snapshot, each file, its hash and whether it matched) as a change, and
//! files a ticket when something failed or looks wrong.

use steward_sdk::host::{backups, clock, state, tickets};
use steward_sdk::{
    Change, Descriptor, Finding, Outcome, ParamSpec, Plugin, PluginError, Remediation, Severity,
    export_plugin, log, params,
};

struct BackupCheck;

const HOUR: i64 = 3_600;
const DAY: i64 = 86_400;

/// What the last integrity check or restore test of a set recorded:
/// `<unix seconds>\t<passed|failed>\t<detail>`.
struct Record {
    at: i64,
    passed: bool,
    detail: String,
}

fn record(key: &str) -> Option<Record> {
    let text = state::get(key)?;
    let mut parts = text.splitn(3, '\t');
    let at = parts.next()?.parse().ok()?;
    let passed = parts.next()? == "passed";
    let detail = parts.next().unwrap_or_default().to_string();
    Some(Record { at, passed, detail })
}

fn keep(key: &str, passed: bool, detail: &str) -> Result<(), PluginError> {
    let verdict = if passed { "passed" } else { "failed" };
    state::set(
        key,
        &format!("{}\t{verdict}\t{detail}", clock::now().seconds),
    )?;
    Ok(())
}

/// The sets this run looks at: those named by `sets`, or all.
fn watched() -> Result<Vec<backups::BackupSet>, PluginError> {
    let wanted = params::text_list("sets")?;
    Ok(backups::sets()?
        .into_iter()
        .filter(|s| wanted.is_empty() || wanted.iter().any(|w| w == &s.name))
        .collect())
}

fn check_set(set: &backups::BackupSet, now: i64) -> Result<Vec<Finding>, PluginError> {
    let name = &set.name;
    let mut findings = Vec::new();
    let rpo = params::integer_at_least("max-age-hours", 1)?.unwrap_or(26);
    let snapshots = backups::snapshots(name)?;
    let failed_run = set
        .last_run
        .as_ref()
        .filter(|r| !r.succeeded)
        .map(|r| format!("; the last backup run failed: {}", r.message))
        .unwrap_or_default();
    match snapshots.last() {
        None => findings.push(
            Finding::new(
                format!("rpo:{name}"),
                Severity::Critical,
                format!("Backup set {name} has no snapshot"),
            )
            .detail(format!("no snapshot in {}{failed_run}", set.repository))
            .resource(name)
            .field("set", name),
        ),
        Some(newest) if (now - newest.time.seconds) / HOUR >= rpo => {
            let age = (now - newest.time.seconds) / HOUR;
            findings.push(
                Finding::new(
                    format!("rpo:{name}"),
                    Severity::Critical,
                    format!("No backup of {name} within {rpo} hours"),
                )
                .detail(format!(
                    "the newest snapshot, {}, is {age} hours old (recovery point objective {rpo} hours){failed_run}",
                    newest.id
                ))
                .resource(name)
                .field("set", name)
                .field("age-hours", age.to_string())
                .field("newest-snapshot", &newest.id),
            );
        }
        Some(_) => {}
    }
    // Files vanished: the newest is much smaller than the usual size.
    if snapshots.len() >= 2 {
        let newest = &snapshots[snapshots.len() - 1];
        let mut before: Vec<u64> = snapshots[..snapshots.len() - 1]
            .iter()
            .rev()
            .take(5)
            .map(|s| s.size_bytes)
            .filter(|b| *b > 0)
            .collect();
        before.sort_unstable();
        let shrink = params::integer_at_least("shrink-percent", 1)?.unwrap_or(50) as u64;
        if let Some(usual) = before.get(before.len() / 2)
            && newest.size_bytes > 0
            && newest.size_bytes * 100 < usual * shrink
        {
            findings.push(
                    Finding::new(
                        format!("shrunk:{name}"),
                        Severity::Warning,
                        format!("The newest backup of {name} is much smaller than usual"),
                    )
                    .detail(format!(
                        "snapshot {} holds {} bytes in {} files; the ones before held about {usual} bytes: files may have vanished",
                        newest.id, newest.size_bytes, newest.files
                    ))
                    .resource(name)
                    .field("set", name)
                    .field("size-bytes", newest.size_bytes.to_string())
                    .field("usual-bytes", usual.to_string()),
                );
        }
    }
    let verify_days = params::integer_at_least("verify-days", 1)?.unwrap_or(7);
    match record(&format!("verify:{name}")) {
        Some(r) if !r.passed => findings.push(
            Finding::new(
                format!("integrity-failed:{name}"),
                Severity::Critical,
                format!("The integrity check of {name} failed"),
            )
            .detail(r.detail)
            .resource(name)
            .field("set", name),
        ),
        Some(r) if (now - r.at) / DAY < verify_days => {}
        last => findings.push(
            Finding::new(
                format!("integrity-check-due:{name}"),
                Severity::Warning,
                format!("The integrity check of {name} is due"),
            )
            .detail(match last {
                Some(r) => format!(
                    "the last one passed {} days ago (every {verify_days} days)",
                    (now - r.at) / DAY
                ),
                None => "no integrity check on record".into(),
            })
            .resource(name)
            .field("set", name),
        ),
    }
    let restore_days = params::integer_at_least("restore-test-days", 1)?.unwrap_or(30);
    match record(&format!("restore:{name}")) {
        Some(r) if !r.passed => findings.push(
            Finding::new(
                format!("restore-test-failed:{name}"),
                Severity::Critical,
                format!("The restore test of {name} failed"),
            )
            .detail(r.detail)
            .resource(name)
            .field("set", name),
        ),
        Some(r) if (now - r.at) / DAY < restore_days => {}
        last => findings.push(
            Finding::new(
                format!("restore-test-due:{name}"),
                Severity::Critical,
                format!("A restore test of {name} is overdue"),
            )
            .detail(match last {
                Some(r) => format!(
                    "the last one passed {} days ago (every {restore_days} days)",
                    (now - r.at) / DAY
                ),
                None => "no restore test on record: nobody knows whether it restores".into(),
            })
            .resource(name)
            .field("set", name),
        ),
    }
    Ok(findings)
}

/// Files a ticket about `set`, if a queue is configured; the change it made.
fn ticket(set: &str, title: String, body: String) -> Result<Option<Change>, PluginError> {
    let queue = params::text("ticket-queue")?.unwrap_or_default();
    if queue.is_empty() {
        return Ok(None);
    }
    let filed = tickets::file(&tickets::Ticket {
        kind: tickets::TicketKind::Incident,
        queue,
        title: title.clone(),
        body,
        due: None,
        device_id: None,
    })?;
    Ok(Some(
        Change::new("ticket", set, filed.outcome)
            .description(title)
            .after(filed.id),
    ))
}

fn verify(set: &str, changes: &mut Vec<Change>) -> Result<(), PluginError> {
    let percent = params::integer_at_least("verify-percent", 1)?
        .unwrap_or(5)
        .min(100) as u8;
    let report = backups::verify(set, percent)?;
    if report.outcome == Outcome::Planned {
        changes.push(
            Change::new("integrity-check", set, Outcome::Planned)
                .description(format!("Check {set} and read back {percent}% of its data")),
        );
        return Ok(());
    }
    let detail = if report.ok {
        format!(
            "{}% of the data read back, no error",
            report.data_read_percent
        )
    } else {
        report.errors.join("; ")
    };
    keep(&format!("verify:{set}"), report.ok, &detail)?;
    changes.push(
        Change::new("integrity-check", set, Outcome::Applied)
            .description(format!("Checked {set}: {detail}"))
            .after(if report.ok { "passed" } else { "failed" }),
    );
    if !report.ok {
        changes.extend(ticket(
            set,
            format!("Backup repository of {set} is damaged"),
            format!("The integrity check of backup set {set} failed:\n{detail}"),
        )?);
    }
    Ok(())
}

fn restore_test(set: &str, changes: &mut Vec<Change>) -> Result<(), PluginError> {
    let sample = params::integer_at_least("sample", 1)?.unwrap_or(5).min(100) as u32;
    let report = backups::restore_test(set, sample)?;
    if report.outcome == Outcome::Planned {
        changes.push(
            Change::new("restore-test", set, Outcome::Planned).description(format!(
                "Restore {sample} files of snapshot {} into a scratch directory and compare them",
                report.snapshot_id
            )),
        );
        return Ok(());
    }
    // The evidence: every file, its hash and how it compared.
    let evidence: Vec<String> = report
        .files
        .iter()
        .map(|f| {
            let live = match f.matches_live {
                Some(true) => ", matches the live file",
                Some(false) => ", differs from the live file",
                None => "",
            };
            if f.problem.is_empty() {
                format!(
                    "{} ({} bytes) sha256 {}: matches the snapshot{live}",
                    f.path, f.size_bytes, f.restored_sha256
                )
            } else {
                format!("{} ({} bytes): {}", f.path, f.size_bytes, f.problem)
            }
        })
        .collect();
    let bad: Vec<&str> = report
        .files
        .iter()
        .filter(|f| !f.matches_snapshot || f.matches_live == Some(false))
        .map(|f| f.path.as_str())
        .collect();
    let passed = report.passed && report.scratch_removed;
    let summary = if passed {
        format!(
            "snapshot {}: {} files restored and matched",
            report.snapshot_id,
            report.files.len()
        )
    } else if bad.is_empty() {
        format!(
            "snapshot {}: the scratch copy could not be removed",
            report.snapshot_id
        )
    } else {
        format!(
            "snapshot {}: {} of {} files did not restore or match: {}",
            report.snapshot_id,
            bad.len(),
            report.files.len(),
            bad.join(", ")
        )
    };
    keep(&format!("restore:{set}"), passed, &summary)?;
    changes.push(
        Change::new("restore-test", set, Outcome::Applied)
            .description(format!(
                "Restore test of {set}, {summary}\n{}",
                evidence.join("\n")
            ))
            .before(&report.snapshot_id)
            .after(if passed { "passed" } else { "failed" }),
    );
    if !passed {
        changes.extend(ticket(
            set,
            format!("Restore test of {set} failed"),
            format!("{summary}\n\n{}", evidence.join("\n")),
        )?);
    }
    Ok(())
}

impl Plugin for BackupCheck {
    fn describe() -> Descriptor {
        Descriptor::new(
            "backup-check",
            env!("CARGO_PKG_VERSION"),
            "Backups within the recovery point objective, integrity checked, restores tested",
        )
        .param(
            ParamSpec::integer(
                "max-age-hours",
                "Recovery point objective: the newest snapshot must be younger than this",
            )
            .default_integer(26),
        )
        .param(
            ParamSpec::integer(
                "restore-test-days",
                "A restore test is due after this many days",
            )
            .default_integer(30),
        )
        .param(
            ParamSpec::integer(
                "verify-days",
                "An integrity check is due after this many days",
            )
            .default_integer(7),
        )
        .param(
            ParamSpec::integer("sample", "Files restored by a restore test (1 to 100)")
                .default_integer(5),
        )
        .param(
            ParamSpec::integer(
                "verify-percent",
                "Share of the data an integrity check reads back (1 to 100)",
            )
            .default_integer(5),
        )
        .param(
            ParamSpec::integer(
                "shrink-percent",
                "Warn when the newest snapshot is below this share of the usual size",
            )
            .default_integer(50),
        )
        .param(
            ParamSpec::text_list("sets", "Backup sets to watch; empty watches all")
                .default_text_list(&[]),
        )
        .param(
            ParamSpec::text("ticket-queue", "Queue for failures; empty files no ticket")
                .default_text("backups"),
        )
    }

    fn check() -> Result<Vec<Finding>, PluginError> {
        let now = clock::now().seconds;
        let mut findings = Vec::new();
        for set in watched()? {
            findings.extend(check_set(&set, now)?);
        }
        Ok(findings)
    }

    fn remediate(findings: Vec<Finding>) -> Result<Remediation, PluginError> {
        let mut changes = Vec::new();
        let mut sets: Vec<String> = findings
            .iter()
            .filter_map(|f| f.field_value("set").map(str::to_string))
            .collect();
        sets.sort();
        sets.dedup();
        for set in sets {
            let about = |prefix: &str| findings.iter().any(|f| f.id == format!("{prefix}:{set}"));
            if about("rpo") {
                let result = backups::run_backup(&set)?;
                let after = result.snapshot_id.clone().unwrap_or_default();
                changes.push(
                    Change::new("backup", &set, result.outcome)
                        .description(format!("Ran the backup of {set}"))
                        .after(after),
                );
            }
            if about("integrity-check-due") || about("integrity-failed") {
                verify(&set, &mut changes)?;
            }
            if about("restore-test-due") || about("restore-test-failed") {
                restore_test(&set, &mut changes)?;
            }
            if about("shrunk")
                && let Some(f) = findings.iter().find(|f| f.id == format!("shrunk:{set}"))
            {
                changes.extend(ticket(&set, f.summary.clone(), f.detail.clone())?);
            }
            log::info(&format!("backup set {set} remediated"));
        }
        Ok(changes.into())
    }
}

export_plugin!(BackupCheck);
