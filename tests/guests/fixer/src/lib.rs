//! Exercises every mutating capability: finds pending updates, locked
//! accounts and detections, then fixes them. Used to show that plan mode
//! changes nothing and plans exactly what the applied run then does.

use steward_sdk::host::{accounts, antivirus, packages, state, tickets};
use steward_sdk::{
    Change, Descriptor, Finding, ParamSpec, Plugin, PluginError, Remediation, Severity,
    export_plugin, params,
};

struct Fixer;

impl Plugin for Fixer {
    fn describe() -> Descriptor {
        Descriptor::new("fixer", "0.1.0", "Fixes everything it may")
            .param(ParamSpec::text_list("scan", "Paths to scan").default_text_list(&["/srv"]))
            .param(ParamSpec::integer("max-packages", "Most packages per run").default_integer(10))
    }

    fn check() -> Result<Vec<Finding>, PluginError> {
        let mut findings = Vec::new();
        for u in packages::updates()? {
            findings.push(
                Finding::new(
                    format!("update:{}", u.name),
                    Severity::Warning,
                    "update pending",
                )
                .resource(&u.name)
                .field("from", &u.installed_version)
                .field("to", &u.candidate_version),
            );
        }
        for a in accounts::locked()? {
            findings.push(
                Finding::new(format!("locked:{}", a.name), Severity::Warning, "locked")
                    .resource(&a.name),
            );
        }
        let report = antivirus::scan(&params::text_list("scan")?)?;
        for d in report.detections {
            findings.push(
                Finding::new(
                    format!("detection:{}", d.path),
                    Severity::Critical,
                    "malware",
                )
                .resource(&d.path)
                .field("signature", &d.signature),
            );
        }
        let runs = state::get("checks")
            .and_then(|v| v.parse::<u64>().ok())
            .unwrap_or(0);
        state::set("checks", &(runs + 1).to_string())?;
        Ok(findings)
    }

    fn remediate(findings: Vec<Finding>) -> Result<Remediation, PluginError> {
        let max = params::integer("max-packages")?.unwrap_or(10) as usize;
        let mut changes = Vec::new();
        let names: Vec<String> = findings
            .iter()
            .filter(|f| f.id.starts_with("update:"))
            .take(max)
            .map(|f| f.resource.clone())
            .collect();
        if !names.is_empty() {
            for c in packages::install_updates(&names)? {
                let mut change =
                    Change::new("package-upgrade", &c.name, c.outcome).after(c.to_version);
                if let Some(from) = c.from_version {
                    change = change.before(from);
                }
                changes.push(change);
            }
        }
        for f in &findings {
            if f.id.starts_with("locked:") {
                let outcome =
                    accounts::unlock(&f.resource, accounts::AccountSource::Directory, "fixer")?;
                changes.push(
                    Change::new("unlock", &f.resource, outcome)
                        .before("locked")
                        .after("unlocked"),
                );
            } else if f.id.starts_with("detection:") {
                let signature = f.field_value("signature").unwrap_or_default();
                let q = antivirus::quarantine(&f.resource, signature)?;
                changes.push(
                    Change::new("quarantine", &f.resource, q.outcome)
                        .description(format!("quarantined ({signature})")),
                );
            }
        }
        if !changes.is_empty() {
            let filed = tickets::file(&tickets::Ticket {
                kind: tickets::TicketKind::WorkItem,
                queue: "changes".into(),
                title: format!("{} changes made", changes.len()),
                body: String::new(),
                due: None,
                device_id: None,
            })?;
            changes.push(Change::new("ticket", "changes", filed.outcome));
        }
        Ok(changes.into())
    }
}

export_plugin!(Fixer);
