//! Template plugin: the starting point of the README tutorial.
//!
//! `check` reports failing disks and an operating system at or near its end
//! of life; `remediate` files one hardware ticket per failing disk. Copy this
//! crate, rename it, and change the three functions.

use steward_sdk::host::{clock, inventory, tickets};
use steward_sdk::{
    Change, Descriptor, Finding, ParamSpec, Plugin, PluginError, Remediation, Severity,
    export_plugin, log, params,
};

struct Template;

const SECONDS_PER_DAY: i64 = 86_400;

impl Plugin for Template {
    fn describe() -> Descriptor {
        Descriptor::new(
            "template",
            env!("CARGO_PKG_VERSION"),
            "Reports failing disks and end-of-life operating systems",
        )
        .param(
            ParamSpec::integer(
                "eol-warning-days",
                "Warn this many days before OS end of life",
            )
            .default_integer(90),
        )
        .param(
            ParamSpec::text("queue", "Ticket queue for disk replacements").default_text("hardware"),
        )
    }

    fn check() -> Result<Vec<Finding>, PluginError> {
        let device = inventory::device()?;
        let mut findings = Vec::new();

        for disk in &device.disks {
            if disk.health == inventory::Health::Failing {
                findings.push(
                    Finding::new(
                        format!("failing-disk:{}", disk.name),
                        Severity::Critical,
                        "Disk is failing",
                    )
                    .detail(format!(
                        "{} ({} GB) reports failing health",
                        disk.name,
                        disk.size_bytes / 1_000_000_000
                    ))
                    .resource(&disk.name),
                );
            }
        }

        if let Some(os) = &device.os
            && let Some(eol) = os.end_of_life
        {
            let warn_days = params::integer("eol-warning-days")?.unwrap_or(90);
            let today = clock::now().seconds / SECONDS_PER_DAY;
            let days_left =
                days_from_civil(eol.year.into(), eol.month.into(), eol.day.into()) - today;
            if days_left <= warn_days {
                let severity = if days_left <= 0 {
                    Severity::Critical
                } else {
                    Severity::Warning
                };
                findings.push(
                    Finding::new(
                        "os-end-of-life",
                        severity,
                        format!("{} {} reaches end of life", os.name, os.version),
                    )
                    .detail(format!("{days_left} days of vendor support left"))
                    .resource(format!("{} {}", os.name, os.version))
                    .field("days-left", days_left.to_string()),
                );
            }
        }

        log::info(&format!("checked {} disks", device.disks.len()));
        Ok(findings)
    }

    fn remediate(findings: Vec<Finding>) -> Result<Remediation, PluginError> {
        let queue = params::text("queue")?.unwrap_or_else(|| "hardware".into());
        let mut changes = Vec::new();
        for finding in findings
            .iter()
            .filter(|f| f.id.starts_with("failing-disk:"))
        {
            let filed = tickets::file(&tickets::Ticket {
                kind: tickets::TicketKind::Incident,
                queue: queue.clone(),
                title: format!("Replace failing disk {}", finding.resource),
                body: finding.detail.clone(),
                due: None,
                device_id: None,
            })?;
            changes.push(
                Change::new("ticket", &finding.resource, filed.outcome)
                    .description(format!(
                        "Filed ticket in `{queue}` to replace {}",
                        finding.resource
                    ))
                    .after(filed.id),
            );
        }
        Ok(changes.into())
    }
}

/// Days since 1970-01-01 for a civil date (Howard Hinnant's algorithm).
fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = if y >= 0 { y } else { y - 399 } / 400;
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

export_plugin!(Template);
