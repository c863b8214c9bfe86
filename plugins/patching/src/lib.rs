//! `patching`: finds pending updates and installs them by policy.
//!
//! Check: security updates pending longer than `security-days` are critical,
//! younger ones and other updates are warnings, a required reboot is a
//! warning naming the packages that asked for it. How long an update has
//! been pending is tracked in plugin state (`first-seen:<name>:<version>`).
//!
//! Remediate: installs the pending updates the policy allows (security-only
//! or all, minus `exclude` patterns and held packages, at most
//! `max-packages`), then requests a reboot when `reboot` is `if-required`.

use steward_sdk::host::{clock, packages, state};
use steward_sdk::{
    Change, Descriptor, Finding, ParamProblem, ParamSpec, Plugin, PluginError, Remediation,
    Severity, export_plugin, log, params,
};

struct Patching;

const DAY: i64 = 86_400;

fn first_seen_key(name: &str, version: &str) -> String {
    format!("first-seen:{name}:{version}")
}

/// `*` matches any run of characters; everything else is literal.
fn matches(pattern: &str, name: &str) -> bool {
    match pattern.split_once('*') {
        None => pattern == name,
        Some((head, tail)) => {
            name.starts_with(head)
                && name.len() >= head.len()
                && (0..=name.len() - head.len()).any(|i| matches(tail, &name[head.len() + i..]))
        }
    }
}

/// The `reboot` parameter, checked in both phases so a bad value is caught
/// before anything changes.
fn reboot_policy() -> Result<String, PluginError> {
    let reboot = params::text("reboot")?.unwrap_or_else(|| "if-required".into());
    if reboot != "never" && reboot != "if-required" {
        return Err(PluginError::InvalidParam(ParamProblem {
            name: "reboot".into(),
            message: format!("`{reboot}` is not `never` or `if-required`"),
        }));
    }
    Ok(reboot)
}

impl Plugin for Patching {
    fn describe() -> Descriptor {
        Descriptor::new(
            "patching",
            env!("CARGO_PKG_VERSION"),
            "Finds pending updates and installs them by policy",
        )
        .param(
            ParamSpec::integer(
                "security-days",
                "Days a security update may be pending before it is critical",
            )
            .default_integer(3),
        )
        .param(
            ParamSpec::boolean("security-only", "Install security updates only")
                .default_boolean(true),
        )
        .param(ParamSpec::text_list(
            "exclude",
            "Package name patterns never installed (`linux-image-*`)",
        ))
        .param(
            ParamSpec::integer("max-packages", "Most packages installed per run")
                .default_integer(50),
        )
        .param(
            ParamSpec::text(
                "reboot",
                "`never` or `if-required` (inside the maintenance window)",
            )
            .default_text("if-required"),
        )
    }

    fn check() -> Result<Vec<Finding>, PluginError> {
        let security_days = params::integer_at_least("security-days", 0)?.unwrap_or(3);
        reboot_policy()?;
        params::integer_at_least("max-packages", 0)?;
        let now = clock::now().seconds;
        let mut findings = Vec::new();
        let updates = packages::updates()?;
        let mut live_keys = Vec::new();
        for u in &updates {
            let key = first_seen_key(&u.name, &u.candidate_version);
            let first_seen = match state::get(&key).and_then(|v| v.parse::<i64>().ok()) {
                Some(t) => t,
                None => {
                    state::set(&key, &now.to_string())?;
                    now
                }
            };
            live_keys.push(key);
            let days = (now - first_seen) / DAY;
            let (id, severity, summary) = if u.security {
                let severity = if days >= security_days {
                    Severity::Critical
                } else {
                    Severity::Warning
                };
                (
                    format!("security-update:{}", u.name),
                    severity,
                    "Security update pending",
                )
            } else {
                (
                    format!("update:{}", u.name),
                    Severity::Warning,
                    "Update pending",
                )
            };
            findings.push(
                Finding::new(id, severity, summary)
                    .detail(format!(
                        "{} {} -> {} from {}, pending {days} days{}",
                        u.name,
                        u.installed_version,
                        u.candidate_version,
                        u.origin,
                        if u.held { " (held)" } else { "" }
                    ))
                    .resource(&u.name)
                    .field("from", &u.installed_version)
                    .field("to", &u.candidate_version)
                    .field("security", u.security.to_string())
                    .field("held", u.held.to_string())
                    .field("days-pending", days.to_string()),
            );
        }
        // Forget first-seen times of updates that are no longer pending.
        for key in state::keys("first-seen:") {
            if !live_keys.contains(&key) {
                state::delete(&key);
            }
        }
        let reboot = packages::reboot_required()?;
        if reboot.required {
            findings.push(
                Finding::new("reboot-required", Severity::Warning, "Reboot required")
                    .detail(if reboot.packages.is_empty() {
                        "the OS asks for a reboot".to_string()
                    } else {
                        format!("requested by {}", reboot.packages.join(", "))
                    })
                    .field("packages", reboot.packages.join(",")),
            );
        }
        log::info(&format!("{} updates pending", updates.len()));
        Ok(findings)
    }

    fn remediate(findings: Vec<Finding>) -> Result<Remediation, PluginError> {
        let security_only = params::boolean("security-only")?.unwrap_or(true);
        let exclude = params::text_list("exclude")?;
        let max = params::integer_at_least("max-packages", 0)?.unwrap_or(50) as usize;
        let reboot = reboot_policy()?;
        let mut chosen: Vec<&Finding> = findings
            .iter()
            .filter(|f| {
                f.id.starts_with("security-update:")
                    || (!security_only && f.id.starts_with("update:"))
            })
            .filter(|f| f.field_value("held") != Some("true"))
            .filter(|f| !exclude.iter().any(|p| matches(p, &f.resource)))
            .collect();
        // Security first, then the longest pending.
        chosen.sort_by_key(|f| {
            let days: i64 = f
                .field_value("days-pending")
                .and_then(|d| d.parse().ok())
                .unwrap_or(0);
            (
                !f.id.starts_with("security-update:"),
                -days,
                f.resource.clone(),
            )
        });
        chosen.truncate(max);
        let names: Vec<String> = chosen.iter().map(|f| f.resource.clone()).collect();
        let mut changes = Vec::new();
        if !names.is_empty() {
            for c in packages::install_updates(&names)? {
                let mut change = Change::new("package-upgrade", &c.name, c.outcome)
                    .description(format!(
                        "{} -> {}",
                        c.from_version.as_deref().unwrap_or("(new)"),
                        c.to_version
                    ))
                    .after(c.to_version);
                if let Some(from) = c.from_version {
                    change = change.before(from);
                }
                changes.push(change);
            }
        }
        let reboot_finding = findings.iter().any(|f| f.id == "reboot-required");
        let now_required =
            reboot == "if-required" && (reboot_finding || packages::reboot_required()?.required);
        if now_required {
            let outcome = packages::schedule_reboot("updates require a reboot")?;
            changes.push(
                Change::new("reboot", "device", outcome)
                    .description("Reboot requested inside the next maintenance window"),
            );
        }
        Ok(changes.into())
    }
}

export_plugin!(Patching);

#[cfg(test)]
mod tests {
    use super::matches;

    #[test]
    fn exclude_patterns_match_like_shell_globs() {
        assert!(matches("linux-image-*", "linux-image-6.1.0-13-amd64"));
        assert!(matches("*ssl*", "libssl3"));
        assert!(!matches("linux-image-*", "linux-headers-6.1"));
        assert!(matches("curl", "curl"));
        assert!(!matches("curl", "libcurl4"));
    }
}
