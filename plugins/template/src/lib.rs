//! Template plugin: the starting point of the README tutorial.
//!
//! `check` reports failing disks and an operating system at or near its end
//! of life; `remediate` files one hardware ticket per failing disk. Copy this
//! crate, rename it, and change the three functions.

use steward_sdk::host::{inventory, tickets};
use steward_sdk::{
    Change, Date, Descriptor, Finding, ParamSpec, Plugin, PluginError, Remediation, Severity,
    export_plugin, log, params,
};

struct Template;

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
            let warn_days: i64 = params::get("eol-warning-days")?;
            let days_left = Date::today().days_until(&eol);
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
        let queue: String = params::get("queue")?;
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

export_plugin!(Template);

// `cargo test -p steward-plugin-template`: the logic against SDK test
// devices, natively (the SDK's `testing` feature).
#[cfg(test)]
mod tests {
    use super::*;
    use steward_sdk::testing::Device;

    fn failing_disk(d: &mut steward_sdk::testing::Fixture) {
        d.facts.disks.push(inventory::Disk {
            name: "sda".into(),
            model: None,
            size_bytes: 256_060_514_304,
            health: inventory::Health::Failing,
        });
    }

    fn os_ending(d: &mut steward_sdk::testing::Fixture, end: Date) {
        d.facts.os = Some(inventory::OsInfo {
            name: "Debian".into(),
            version: "11".into(),
            end_of_life: Some(end),
        });
    }

    #[test]
    fn a_failing_disk_is_critical_and_gets_a_ticket_in_the_default_queue() {
        let device = Device::new().with(failing_disk);
        let findings = device.check::<Template>().unwrap();
        assert_eq!(findings.len(), 1);
        assert_eq!(
            (findings[0].id.as_str(), findings[0].severity),
            ("failing-disk:sda", Severity::Critical)
        );

        let planned = device.plan::<Template>(findings.clone()).unwrap();
        assert!(device.tickets().is_empty(), "plan mode files nothing");
        assert_eq!(planned.changes[0].outcome, steward_sdk::Outcome::Planned);

        device.apply::<Template>(findings).unwrap();
        let filed = device.tickets();
        assert_eq!(filed.len(), 1);
        assert_eq!(filed[0].queue, "hardware", "the default from describe");
        assert_eq!(filed[0].title, "Replace failing disk sda");
    }

    #[test]
    fn end_of_life_warns_inside_the_window_and_is_critical_after_it() {
        // The test device's clock reads 2026-11-23.
        let today = Date::new(2026, 11, 23);
        let soon = Device::new().with(|d| os_ending(d, today.add_days(30)));
        let findings = soon.check::<Template>().unwrap();
        assert_eq!(findings[0].severity, Severity::Warning);
        assert_eq!(findings[0].field_value("days-left"), Some("30"));

        let narrow = Device::new()
            .param("eol-warning-days", 10)
            .with(|d| os_ending(d, today.add_days(30)));
        assert!(narrow.check::<Template>().unwrap().is_empty());

        let past = Device::new().with(|d| os_ending(d, today.add_months(-3)));
        assert_eq!(
            past.check::<Template>().unwrap()[0].severity,
            Severity::Critical
        );
    }
}
