//! `antivirus`: engine health, signature age, scan age and detections;
//! remediation updates signatures, scans and quarantines.
//!
//! The check reads the engine's status and what the last remediation's scan
//! left in plugin state (`last-full-scan`, `detections`), so a check stays
//! cheap; remediation does the scanning.

use steward_sdk::host::{antivirus, clock, state};
use steward_sdk::{
    Change, Descriptor, Finding, ParamSpec, Plugin, PluginError, Remediation, Severity,
    export_plugin, log, params,
};

struct Antivirus;

const HOUR: i64 = 3_600;
const DAY: i64 = 86_400;

fn stored_detections() -> Vec<(String, String)> {
    state::get("detections")
        .unwrap_or_default()
        .lines()
        .filter_map(|l| l.split_once('\t'))
        .map(|(p, s)| (p.to_string(), s.to_string()))
        .collect()
}

fn store_detections(detections: &[(String, String)]) -> Result<(), PluginError> {
    let text: Vec<String> = detections
        .iter()
        .map(|(p, s)| format!("{p}\t{s}"))
        .collect();
    state::set("detections", &text.join("\n"))?;
    Ok(())
}

impl Plugin for Antivirus {
    fn describe() -> Descriptor {
        Descriptor::new(
            "antivirus",
            env!("CARGO_PKG_VERSION"),
            "Keeps the antivirus engine current, scans and quarantines",
        )
        .param(
            ParamSpec::integer(
                "signature-max-hours",
                "Signatures older than this are outdated",
            )
            .default_integer(24),
        )
        .param(
            ParamSpec::integer("scan-max-days", "A full scan older than this is overdue")
                .default_integer(7),
        )
        .param(
            ParamSpec::text_list("scan-paths", "Paths a full scan covers")
                .default_text_list(&["/home"]),
        )
        .param(
            ParamSpec::boolean("require-service", "Report a stopped scanning service")
                .default_boolean(true),
        )
        .param(ParamSpec::boolean("quarantine", "Quarantine detections").default_boolean(true))
    }

    fn check() -> Result<Vec<Finding>, PluginError> {
        let now = clock::now().seconds;
        let status = antivirus::status()?;
        if !status.installed {
            return Ok(vec![
                Finding::new(
                    "engine-missing",
                    Severity::Critical,
                    "No antivirus engine installed",
                )
                .detail(format!("{} is not installed on this device", status.engine)),
            ]);
        }
        let mut findings = Vec::new();
        if !status.service_running && params::boolean("require-service")?.unwrap_or(true) {
            findings.push(
                Finding::new(
                    "service-stopped",
                    Severity::Warning,
                    "Antivirus service is not running",
                )
                .detail(format!(
                    "the {} daemon is stopped; only on-demand scans run",
                    status.engine
                )),
            );
        }
        let max_hours = params::integer_at_least("signature-max-hours", 0)?.unwrap_or(24);
        let newest = status
            .databases
            .iter()
            .filter_map(|d| d.updated)
            .map(|t| t.seconds)
            .max();
        match newest {
            None => findings.push(Finding::new(
                "signatures-missing",
                Severity::Critical,
                "No signature databases",
            )),
            Some(t) if (now - t) / HOUR > max_hours => findings.push(
                Finding::new(
                    "signatures-outdated",
                    Severity::Warning,
                    "Signatures are outdated",
                )
                .detail(format!(
                    "newest database is {} hours old (policy {max_hours})",
                    (now - t) / HOUR
                ))
                .field("age-hours", ((now - t) / HOUR).to_string()),
            ),
            Some(_) => {}
        }
        let max_days = params::integer_at_least("scan-max-days", 0)?.unwrap_or(7);
        match state::get("last-full-scan").and_then(|v| v.parse::<i64>().ok()) {
            None => findings.push(Finding::new(
                "scan-overdue",
                Severity::Warning,
                "No full scan on record",
            )),
            Some(t) if (now - t) / DAY > max_days => findings.push(
                Finding::new("scan-overdue", Severity::Warning, "Full scan is overdue").detail(
                    format!(
                        "last full scan {} days ago (policy {max_days})",
                        (now - t) / DAY
                    ),
                ),
            ),
            Some(_) => {}
        }
        for (path, signature) in stored_detections() {
            findings.push(
                Finding::new(
                    format!("detection:{path}"),
                    Severity::Critical,
                    "Malware detected",
                )
                .detail(format!("{path} matches {signature}"))
                .resource(&path)
                .field("signature", &signature),
            );
        }
        Ok(findings)
    }

    fn remediate(findings: Vec<Finding>) -> Result<Remediation, PluginError> {
        let mut changes = Vec::new();
        if findings.iter().any(|f| f.id.starts_with("signatures-")) {
            match antivirus::update_signatures() {
                Ok(outcome) => changes.push(
                    Change::new("signature-update", "signatures", outcome)
                        .description("Updated signature databases"),
                ),
                // An unreachable mirror must not stop the scan and quarantine.
                Err(e) => log::warn(&format!("signature update failed: {e:?}")),
            }
        }
        let paths = params::text_list("scan-paths")?;
        let report = antivirus::scan(&paths)?;
        state::set("last-full-scan", &clock::now().seconds.to_string())?;
        log::info(&format!(
            "scanned {} files, {} detections",
            report.scanned_files,
            report.detections.len()
        ));
        let mut remaining = Vec::new();
        let quarantine = params::boolean("quarantine")?.unwrap_or(true);
        for d in &report.detections {
            if !quarantine {
                remaining.push((d.path.clone(), d.signature.clone()));
                continue;
            }
            let record = antivirus::quarantine(&d.path, &d.signature)?;
            if record.outcome == steward_sdk::Outcome::Planned {
                remaining.push((d.path.clone(), d.signature.clone()));
            }
            changes.push(
                Change::new("quarantine", &d.path, record.outcome)
                    .description(format!("Quarantined {} ({})", d.path, d.signature))
                    .before(&d.path),
            );
        }
        store_detections(&remaining)?;
        Ok(changes.into())
    }
}

export_plugin!(Antivirus);
