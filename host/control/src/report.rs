//! A tenant's monthly service report: what the MSP did for the flat fee,
//! computed from the store (findings, changes, tickets, devices), never
//! typed in.
//!
//! The month is a calendar month in UTC, `[first day 00:00, next month)`.
//! Each figure names its rule:
//! - **Time to remediate**, per severity (warning and critical; info is not
//!   held to a target): findings resolved in the month, each met when it
//!   was resolved within the tier's target after it was first seen; a
//!   finding still open at the month's end and already past its target is
//!   a miss too. Every miss is listed.
//! - **Patch compliance**: a device is fully patched when no `patching`
//!   finding was open on it at the month's end; security updates applied
//!   are the month's applied `package-upgrade` changes whose package had a
//!   `security-update:` finding on that device, and their age is the time
//!   from that finding's first sighting to the upgrade.
//! - **Antivirus**: devices with outdated or missing signatures, or no
//!   engine, at the month's end, and the oldest signatures' age then (the
//!   age the check reported plus the time since); detections first seen
//!   in the month; quarantines applied in the month.
//! - **Accounts unlocked**: the month's applied `unlock` changes, each with
//!   the tickets its job filed.
//! - **Incidents**: critical findings opened, resolved, and open at the
//!   month's end.
//! - **Hardware refresh**: the quarters of the newest `forecast` the
//!   `refresh-planner` plugin made before the month's end.

use std::collections::{HashMap, HashSet};

use chrono::{Datelike as _, NaiveDate, TimeZone as _, Utc};
use serde::{Deserialize, Serialize};

use steward_store::{
    ChangeOutcome, Finding, Severity, Store, StoreError, Tenant, TenantId, Tier, Timestamp,
};

/// The remediation target of a tier, in hours (the agreement's defaults,
/// as `steward sla` uses them).
pub const fn target_hours(tier: Tier) -> u32 {
    match tier {
        Tier::Vip => 4,
        Tier::Managed => 24,
        Tier::OnDemand => 72,
    }
}

/// A calendar month, `YYYY-MM`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Month {
    first: NaiveDate,
}

impl Month {
    /// Parses `YYYY-MM` (months 01 to 12, years 2000 to 2999).
    ///
    /// # Errors
    ///
    /// A message naming the expected form.
    pub fn parse(text: &str) -> Result<Self, String> {
        let bad = || format!("`{text}` is not a month; write YYYY-MM, like 2026-11");
        let (y, m) = text.split_once('-').ok_or_else(bad)?;
        if y.len() != 4 || m.len() != 2 {
            return Err(bad());
        }
        let (y, m): (i32, u32) = (y.parse().map_err(|_| bad())?, m.parse().map_err(|_| bad())?);
        if !(2000..=2999).contains(&y) {
            return Err(bad());
        }
        let first = NaiveDate::from_ymd_opt(y, m, 1).ok_or_else(bad)?;
        Ok(Self { first })
    }

    /// Its first instant.
    pub fn start(self) -> Timestamp {
        Timestamp::from(Utc.from_utc_datetime(&self.first.and_hms_opt(0, 0, 0).expect("midnight")))
    }

    /// The first instant of the next month.
    pub fn end(self) -> Timestamp {
        let next = self
            .first
            .checked_add_months(chrono::Months::new(1))
            .expect("a month within range");
        Timestamp::from(Utc.from_utc_datetime(&next.and_hms_opt(0, 0, 0).expect("midnight")))
    }

    /// How many days it has.
    pub fn days(self) -> u32 {
        ((self.end().as_millis() - self.start().as_millis()) / 86_400_000) as u32
    }
}

impl std::fmt::Display for Month {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{:04}-{:02}", self.first.year(), self.first.month())
    }
}

/// The report.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, utoipa::ToSchema)]
pub struct MonthReport {
    /// The tenant.
    pub tenant: Tenant,
    /// `YYYY-MM`.
    pub month: String,
    /// The month's first instant.
    pub from: Timestamp,
    /// The next month's first instant.
    pub to: Timestamp,
    /// What "at the month's end" means: the month's end, or the time the
    /// report was made for a month not over yet.
    pub as_of: Timestamp,
    /// The tier's remediation target, hours.
    pub target_hours: u32,
    /// Devices the tenant has.
    pub devices: u32,
    /// Time to remediate, critical then warning.
    pub remediation: Vec<SeverityRemediation>,
    /// Patch compliance.
    pub patching: PatchCompliance,
    /// Backups: recovery point objective and restore tests.
    pub backups: BackupCompliance,
    /// Antivirus health.
    pub antivirus: AntivirusHealth,
    /// Accounts unlocked.
    pub unlocks: Vec<Unlock>,
    /// Incidents (critical findings).
    pub incidents: Incidents,
    /// The newest refresh forecast, quarter by quarter.
    pub refresh: Vec<ForecastQuarter>,
    /// Findings first seen per day of the month: `[critical, warning, info]`.
    pub opened_per_day: Vec<[u32; 3]>,
}

/// Time to remediate findings of one severity.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, utoipa::ToSchema)]
pub struct SeverityRemediation {
    /// The severity.
    pub severity: Severity,
    /// Findings resolved in the month.
    pub resolved: u32,
    /// Of those, resolved within the target.
    pub met: u32,
    /// Resolved late, plus open at the month's end past the target.
    pub missed: u32,
    /// Median hours to resolve, of those resolved.
    pub median_hours: Option<f64>,
    /// Every miss.
    pub misses: Vec<Miss>,
}

/// A finding not remediated within the target.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, utoipa::ToSchema)]
pub struct Miss {
    /// The device's name (or the tenant's, for a tenant-wide finding).
    pub device: String,
    /// The plugin.
    pub plugin: String,
    /// The finding's key.
    pub key: String,
    /// Its summary.
    pub summary: String,
    /// When it was first seen.
    pub first_seen_at: Timestamp,
    /// When it was resolved; none if still open at the month's end.
    pub resolved_at: Option<Timestamp>,
    /// Hours it took, or had been open at the month's end.
    pub hours: f64,
}

/// Patch compliance.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, utoipa::ToSchema)]
pub struct PatchCompliance {
    /// Devices with no `patching` finding open at the month's end.
    pub fully_patched: u32,
    /// Security updates applied in the month.
    pub security_updates_applied: u32,
    /// Median hours from a security update's first sighting to its upgrade.
    pub median_security_age_hours: Option<f64>,
    /// The longest, hours.
    pub max_security_age_hours: Option<f64>,
    /// Security updates still pending at the month's end.
    pub security_updates_pending: u32,
}

/// Antivirus health.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, utoipa::ToSchema)]
pub struct AntivirusHealth {
    /// Devices whose signatures were outdated or missing at the month's end.
    pub signatures_outdated: u32,
    /// Devices with no engine at the month's end.
    pub engine_missing: u32,
    /// The oldest signatures at the month's end, hours (of the devices
    /// whose check found them outdated).
    pub oldest_signatures_hours: Option<f64>,
    /// Detections first seen in the month.
    pub detections: u32,
    /// Files quarantined in the month.
    pub quarantines: u32,
}

/// An account unlocked.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, utoipa::ToSchema)]
pub struct Unlock {
    /// When.
    pub at: Timestamp,
    /// The account.
    pub account: String,
    /// The device (or directory) it was unlocked on.
    pub device: String,
    /// What was recorded (the reason and the ticket it names).
    pub description: String,
    /// Tickets the job filed (ids).
    pub tickets: Vec<String>,
}

/// Incidents: critical findings.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, utoipa::ToSchema)]
pub struct Incidents {
    /// First seen in the month.
    pub opened: u32,
    /// Resolved in the month.
    pub resolved: u32,
    /// Open at the month's end.
    pub open_at_end: u32,
}

/// One quarter of the refresh forecast.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, utoipa::ToSchema)]
pub struct ForecastQuarter {
    /// `2027-Q1`.
    pub quarter: String,
    /// Devices to replace.
    pub devices: u32,
    /// Their cost, cents.
    pub cost_cents: i64,
    /// The quarter's budget, cents.
    pub budget_cents: i64,
    /// What goes over budget, if anything.
    pub overrun: Option<String>,
}

/// Backups, as the `backup-check` plugin found and tested them.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, utoipa::ToSchema)]
pub struct BackupCompliance {
    /// Backup sets watched in the month (device and set), from the
    /// plugin's findings and changes.
    pub sets: u32,
    /// Of those, the sets with no snapshot within their recovery point
    /// objective at month end.
    pub outside_rpo_at_end: Vec<SetOutsideRpo>,
    /// Hours any set spent outside its RPO in the month, summed.
    pub hours_outside_rpo: f64,
    /// The share of set-hours of the month within the RPO, in percent;
    /// none when no set was watched.
    pub rpo_compliance_percent: Option<f64>,
    /// Restore tests that passed in the month.
    pub restore_tests_passed: u32,
    /// Restore tests that failed in the month.
    pub restore_tests_failed: u32,
    /// Integrity checks that failed in the month.
    pub integrity_checks_failed: u32,
}

/// A backup set outside its RPO at month end.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, utoipa::ToSchema)]
pub struct SetOutsideRpo {
    /// Device name.
    pub device: String,
    /// The backup set.
    pub set: String,
    /// Since when, hours.
    pub hours: f64,
}

/// The plugin whose findings and changes the backups section reads.
pub const BACKUP_PLUGIN: &str = "backup-check";

/// Hours between two times.
fn hours(from: Timestamp, to: Timestamp) -> f64 {
    (to.as_millis() - from.as_millis()) as f64 / 3_600_000.0
}

fn median(mut v: Vec<f64>) -> Option<f64> {
    if v.is_empty() {
        return None;
    }
    v.sort_by(f64::total_cmp);
    Some(v[(v.len() - 1) / 2])
}

/// Whether `f` was open at instant `t`.
fn open_at(f: &Finding, t: Timestamp) -> bool {
    f.first_seen_at < t && f.resolved_at.is_none_or(|r| r >= t)
}

/// Computes the report of `tenant` for `month`; `None` for an unknown
/// tenant.
///
/// # Errors
///
/// A store failure.
pub async fn month_report(
    store: &Store,
    tenant: &TenantId,
    month: Month,
) -> Result<Option<MonthReport>, StoreError> {
    let Some(tenant) = store.tenant(tenant).await? else {
        return Ok(None);
    };
    let (from, to) = (month.start(), month.end());
    // A month not over yet is reported as of now: what is open is open
    // now, and has been for as long as until now.
    let as_of = to.min(Timestamp::now());
    let devices = store
        .list_devices_brief(&steward_store::Scope::All, Some(&tenant.id))
        .await?;
    let names: HashMap<&str, &str> = devices
        .iter()
        .map(|d| (d.id.as_str(), d.name.as_str()))
        .collect();
    let device_name = |d: Option<&steward_store::DeviceId>| {
        d.and_then(|d| names.get(d.as_str()).copied())
            .unwrap_or(tenant.name.as_str())
            .to_owned()
    };
    let findings = store.findings_open_between(&tenant.id, from, to).await?;
    let changes = store.changes_between(&tenant.id, from, to).await?;
    let target = f64::from(target_hours(tenant.tier));

    let mut remediation = Vec::new();
    for severity in [Severity::Critical, Severity::Warning] {
        let mut took = Vec::new();
        let mut misses = Vec::new();
        let mut met = 0;
        for f in findings.iter().filter(|f| f.severity == severity) {
            let miss = |hours: f64, resolved_at| Miss {
                device: device_name(f.device_id.as_ref()),
                plugin: f.plugin.clone(),
                key: f.key.clone(),
                summary: f.summary.clone(),
                first_seen_at: f.first_seen_at,
                resolved_at,
                hours,
            };
            match f.resolved_at {
                Some(r) if r >= from && r < to => {
                    let h = hours(f.first_seen_at, r);
                    took.push(h);
                    if h <= target {
                        met += 1;
                    } else {
                        misses.push(miss(h, Some(r)));
                    }
                }
                _ if open_at(f, as_of) && hours(f.first_seen_at, as_of) > target => {
                    misses.push(miss(hours(f.first_seen_at, as_of), None));
                }
                _ => {}
            }
        }
        remediation.push(SeverityRemediation {
            severity,
            resolved: took.len() as u32,
            met,
            missed: misses.len() as u32,
            median_hours: median(took),
            misses,
        });
    }

    // Patching.
    let unpatched: HashSet<&str> = findings
        .iter()
        .filter(|f| f.plugin == "patching" && open_at(f, as_of))
        .filter_map(|f| f.device_id.as_ref().map(|d| d.as_str()))
        .collect();
    let security_seen: HashMap<(&str, &str), Timestamp> = findings
        .iter()
        .filter(|f| f.plugin == "patching")
        .filter_map(|f| {
            let pkg = f.key.strip_prefix("security-update:")?;
            Some(((f.device_id.as_ref()?.as_str(), pkg), f.first_seen_at))
        })
        .collect();
    let applied =
        |c: &&steward_store::TenantChange| c.change.change.outcome == ChangeOutcome::Applied;
    let security_ages: Vec<f64> = changes
        .iter()
        .filter(applied)
        .filter(|c| c.plugin == "patching" && c.change.change.kind == "package-upgrade")
        .filter_map(|c| {
            let seen = security_seen.get(&(
                c.device_id.as_ref()?.as_str(),
                c.change.change.target.as_str(),
            ))?;
            Some(hours(*seen, c.change.at))
        })
        .collect();
    let patching = PatchCompliance {
        fully_patched: devices
            .iter()
            .filter(|d| !unpatched.contains(d.id.as_str()))
            .count() as u32,
        security_updates_applied: security_ages.len() as u32,
        max_security_age_hours: security_ages.iter().copied().reduce(f64::max),
        median_security_age_hours: median(security_ages),
        security_updates_pending: findings
            .iter()
            .filter(|f| {
                f.plugin == "patching" && f.key.starts_with("security-update:") && open_at(f, as_of)
            })
            .count() as u32,
    };

    let backups = backup_compliance(&findings, &changes, from, as_of, &device_name);

    // Antivirus.
    let av_devices_with = |keys: &[&str]| {
        findings
            .iter()
            .filter(|f| {
                f.plugin == "antivirus" && keys.contains(&f.key.as_str()) && open_at(f, as_of)
            })
            .filter_map(|f| f.device_id.as_ref())
            .collect::<HashSet<_>>()
            .len() as u32
    };
    let antivirus = AntivirusHealth {
        signatures_outdated: av_devices_with(&["signatures-outdated", "signatures-missing"]),
        engine_missing: av_devices_with(&["engine-missing"]),
        oldest_signatures_hours: store
            .signature_ages(Some(&tenant.id), &[], as_of)
            .await?
            .into_iter()
            .map(|(_, h)| h)
            .reduce(f64::max),
        detections: findings
            .iter()
            .filter(|f| f.plugin == "antivirus" && f.key.starts_with("detection:"))
            .filter(|f| f.first_seen_at >= from)
            .count() as u32,
        quarantines: changes
            .iter()
            .filter(applied)
            .filter(|c| c.plugin == "antivirus" && c.change.change.kind == "quarantine")
            .count() as u32,
    };

    // Accounts.
    let tickets = store.tickets(&tenant.id).await?;
    let mut tickets_of: HashMap<&str, Vec<String>> = HashMap::new();
    for t in &tickets {
        if let Some(j) = &t.job_id {
            tickets_of.entry(j.as_str()).or_default().push(t.id.clone());
        }
    }
    let unlocks = changes
        .iter()
        .filter(applied)
        .filter(|c| c.change.change.kind == "unlock")
        .map(|c| Unlock {
            at: c.change.at,
            account: c.change.change.target.clone(),
            device: device_name(c.device_id.as_ref()),
            description: c.change.change.description.clone(),
            tickets: tickets_of
                .get(c.change.job_id.as_str())
                .cloned()
                .unwrap_or_default(),
        })
        .collect();

    let critical = || findings.iter().filter(|f| f.severity == Severity::Critical);
    let incidents = Incidents {
        opened: critical().filter(|f| f.first_seen_at >= from).count() as u32,
        resolved: critical()
            .filter(|f| f.resolved_at.is_some_and(|r| r >= from && r < to))
            .count() as u32,
        open_at_end: critical().filter(|f| open_at(f, as_of)).count() as u32,
    };

    let refresh = store
        .newest_changes_of_kind(&tenant.id, "refresh-planner", "forecast", to)
        .await?
        .into_iter()
        .filter_map(|c| forecast_quarter(c.change.change.after.as_deref()?))
        .collect();

    let mut opened_per_day = vec![[0u32; 3]; month.days() as usize];
    for f in findings.iter().filter(|f| f.first_seen_at >= from) {
        let day = ((f.first_seen_at.as_millis() - from.as_millis()) / 86_400_000) as usize;
        let i = match f.severity {
            Severity::Critical => 0,
            Severity::Warning => 1,
            Severity::Info => 2,
        };
        if let Some(d) = opened_per_day.get_mut(day) {
            d[i] += 1;
        }
    }

    Ok(Some(MonthReport {
        month: month.to_string(),
        from,
        to,
        as_of,
        target_hours: target_hours(tenant.tier),
        devices: devices.len() as u32,
        remediation,
        patching,
        backups,
        antivirus,
        unlocks,
        incidents,
        refresh,
        opened_per_day,
        tenant,
    }))
}

fn backup_compliance(
    findings: &[Finding],
    changes: &[steward_store::TenantChange],
    from: Timestamp,
    as_of: Timestamp,
    device_name: &dyn Fn(Option<&steward_store::DeviceId>) -> String,
) -> BackupCompliance {
    let device = |d: Option<&steward_store::DeviceId>| d.map(|d| d.as_str().to_owned());
    let mut sets: HashSet<(Option<String>, String)> = HashSet::new();
    let mine = findings.iter().filter(|f| f.plugin == BACKUP_PLUGIN);
    for f in mine.clone() {
        if let Some((_, set)) = f.key.split_once(':') {
            sets.insert((device(f.device_id.as_ref()), set.to_owned()));
        }
    }
    let applied: Vec<&steward_store::TenantChange> = changes
        .iter()
        .filter(|c| c.plugin == BACKUP_PLUGIN && c.change.change.outcome == ChangeOutcome::Applied)
        .collect();
    for c in &applied {
        sets.insert((device(c.device_id.as_ref()), c.change.change.target.clone()));
    }
    let mut hours_outside = 0.0;
    let mut outside_rpo_at_end = Vec::new();
    for f in mine.filter(|f| f.key.starts_with("rpo:")) {
        let start = f.first_seen_at.max(from);
        let end = f.resolved_at.unwrap_or(as_of).min(as_of);
        if end > start {
            hours_outside += hours(start, end);
        }
        if open_at(f, as_of) {
            outside_rpo_at_end.push(SetOutsideRpo {
                device: device_name(f.device_id.as_ref()),
                set: f.key["rpo:".len()..].to_owned(),
                hours: hours(f.first_seen_at, as_of),
            });
        }
    }
    let month_hours = hours(from, as_of).max(0.0);
    let of_kind = |kind: &str, after: &str| {
        applied
            .iter()
            .filter(|c| {
                c.change.change.kind == kind && c.change.change.after.as_deref() == Some(after)
            })
            .count() as u32
    };
    BackupCompliance {
        sets: sets.len() as u32,
        rpo_compliance_percent: (!sets.is_empty() && month_hours > 0.0).then(|| {
            let total = sets.len() as f64 * month_hours;
            (100.0 * (1.0 - hours_outside / total)).clamp(0.0, 100.0)
        }),
        outside_rpo_at_end,
        hours_outside_rpo: hours_outside,
        restore_tests_passed: of_kind("restore-test", "passed"),
        restore_tests_failed: of_kind("restore-test", "failed"),
        integrity_checks_failed: of_kind("integrity-check", "failed"),
    }
}

/// A quarter of a `forecast` change's JSON (`after`).
fn forecast_quarter(json: &str) -> Option<ForecastQuarter> {
    #[derive(Deserialize)]
    struct Raw {
        quarter: String,
        devices: u32,
        cost_cents: i64,
        budget_cents: i64,
        overrun: Option<String>,
    }
    let raw: Raw = serde_json::from_str(json).ok()?;
    Some(ForecastQuarter {
        quarter: raw.quarter,
        devices: raw.devices,
        cost_cents: raw.cost_cents,
        budget_cents: raw.budget_cents,
        overrun: raw.overrun,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn months_parse_strictly_and_span_their_days() {
        let nov = Month::parse("2026-11").unwrap();
        assert_eq!(nov.to_string(), "2026-11");
        assert_eq!(nov.days(), 30);
        assert_eq!(Month::parse("2024-02").unwrap().days(), 29);
        assert_eq!(nov.end(), Month::parse("2026-12").unwrap().start());
        for bad in [
            "2026-13", "2026-1", "26-11", "2026/11", "", "2026-00", "1999-01",
        ] {
            assert!(Month::parse(bad).is_err(), "{bad}");
        }
    }
}
