//! What the alerter observes and what it sends: conditions, keys,
//! observations and the alert body.

use std::fmt;
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value, json};

use super::state::OpenAlert;

/// The most findings a `critical-findings` alert lists in its details; the
/// count is always complete.
pub const MAX_FINDINGS_IN_ALERT: usize = 25;

/// The most characters of a remediation's error an alert carries.
pub const MAX_ERROR_CHARS: usize = 2000;

/// How many finding ids a summary names before saying "and N more".
const FINDINGS_IN_SUMMARY: usize = 3;

/// What an alert is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Condition {
    /// A check returned at least one finding of severity `critical`.
    CriticalFindings,
    /// A remediation returned an error.
    RemediationFailed,
    /// A job ran past its wall-clock deadline.
    JobTimedOut,
}

impl Condition {
    /// Every condition, in the order [`Alerter::observe`](super::Alerter::observe)
    /// evaluates them (and returns their alerts).
    pub const ALL: [Condition; 3] = [
        Condition::CriticalFindings,
        Condition::RemediationFailed,
        Condition::JobTimedOut,
    ];

    /// The condition as spelled in alert bodies, `critical-findings` and so on.
    pub fn as_str(self) -> &'static str {
        match self {
            Condition::CriticalFindings => "critical-findings",
            Condition::RemediationFailed => "remediation-failed",
            Condition::JobTimedOut => "job-timed-out",
        }
    }

    /// How bad the condition is: a device with critical findings or a failed
    /// fix needs someone; a timeout may be a slow device and is a warning.
    pub fn severity(self) -> Severity {
        match self {
            Condition::CriticalFindings | Condition::RemediationFailed => Severity::Critical,
            Condition::JobTimedOut => Severity::Warning,
        }
    }
}

impl fmt::Display for Condition {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// How urgent an alert is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    /// Worth a look.
    Warning,
    /// Needs someone.
    Critical,
}

/// One alert's identity: a condition of one plugin on one device. While a
/// key is open, the same condition observed again does not alert again.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct AlertKey {
    /// The tenant the device belongs to.
    pub tenant_id: String,
    /// The device the job ran against (for tenant-scoped plugins, whatever
    /// target id the executor uses for the tenant-wide job).
    pub device_id: String,
    /// The plugin's name, so two plugins failing on one device are two alerts.
    pub plugin: String,
    /// What went wrong.
    pub condition: Condition,
}

impl fmt::Display for AlertKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}/{}/{}/{}",
            self.tenant_id, self.device_id, self.plugin, self.condition
        )
    }
}

/// A critical finding, as much of it as an alert carries.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CriticalFinding {
    /// The finding's stable id, such as `pending-security:openssl`.
    pub id: String,
    /// One line for humans.
    pub summary: String,
}

/// What a job's check showed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum CheckResult {
    /// The job ran no check, or the check did not finish (trap, timeout):
    /// nothing is known about findings, so a `critical-findings` alert stays
    /// as it is.
    NotRun,
    /// The check finished. An empty list means it passed (findings of lower
    /// severity do not count) and resolves an open `critical-findings` alert.
    Completed {
        /// The findings of severity `critical`, in the order the check
        /// returned them.
        critical_findings: Vec<CriticalFinding>,
    },
}

/// What a job's remediation did.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum RemediationResult {
    /// The job ran no remediation (a check-only run, or the check did not
    /// finish): a `remediation-failed` alert stays as it is.
    NotRun,
    /// The remediation returned its changes; resolves `remediation-failed`.
    Succeeded,
    /// The remediation returned an error or trapped.
    Failed {
        /// The error, as the run reports it.
        error: String,
    },
}

/// How a job ended with respect to its deadline.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum JobEnd {
    /// It ended (succeeded or failed) before its deadline; resolves
    /// `job-timed-out`.
    InTime,
    /// It was stopped at its wall-clock deadline.
    TimedOut {
        /// The deadline it ran into.
        limit: Duration,
    },
}

/// What the executor reports after each job.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Observation {
    /// The tenant the device belongs to.
    pub tenant_id: String,
    /// The device the job ran against.
    pub device_id: String,
    /// The plugin's name.
    pub plugin: String,
    /// The run the job belongs to.
    pub run_id: String,
    /// The job.
    pub job_id: String,
    /// What the check showed.
    pub check: CheckResult,
    /// What the remediation did.
    pub remediation: RemediationResult,
    /// Whether the job met its deadline.
    pub job: JobEnd,
    /// When the job ended.
    pub at: DateTime<Utc>,
}

impl Observation {
    /// An observation of a job that ran nothing and ended in time; set
    /// [`check`](Self::check), [`remediation`](Self::remediation) and
    /// [`job`](Self::job) to what happened.
    pub fn new(
        tenant_id: impl Into<String>,
        device_id: impl Into<String>,
        plugin: impl Into<String>,
        run_id: impl Into<String>,
        job_id: impl Into<String>,
        at: DateTime<Utc>,
    ) -> Self {
        Self {
            tenant_id: tenant_id.into(),
            device_id: device_id.into(),
            plugin: plugin.into(),
            run_id: run_id.into(),
            job_id: job_id.into(),
            check: CheckResult::NotRun,
            remediation: RemediationResult::NotRun,
            job: JobEnd::InTime,
            at,
        }
    }

    /// The key this observation's `condition` belongs to.
    pub fn key(&self, condition: Condition) -> AlertKey {
        AlertKey {
            tenant_id: self.tenant_id.clone(),
            device_id: self.device_id.clone(),
            plugin: self.plugin.clone(),
            condition,
        }
    }

    /// Whether `condition` held in this job, or `None` when the job did not
    /// show either way.
    pub fn holds(&self, condition: Condition) -> Option<bool> {
        match condition {
            Condition::CriticalFindings => match &self.check {
                CheckResult::NotRun => None,
                CheckResult::Completed { critical_findings } => Some(!critical_findings.is_empty()),
            },
            Condition::RemediationFailed => match &self.remediation {
                RemediationResult::NotRun => None,
                RemediationResult::Succeeded => Some(false),
                RemediationResult::Failed { .. } => Some(true),
            },
            Condition::JobTimedOut => Some(matches!(self.job, JobEnd::TimedOut { .. })),
        }
    }

    /// The summary and details of a firing alert for `condition`, which
    /// holds in this observation.
    pub(super) fn describe_firing(&self, condition: Condition) -> (String, Map<String, Value>) {
        let Self {
            plugin, device_id, ..
        } = self;
        let (summary, details) = match condition {
            Condition::CriticalFindings => {
                let findings = match &self.check {
                    CheckResult::Completed { critical_findings } => critical_findings.as_slice(),
                    CheckResult::NotRun => &[],
                };
                let ids: Vec<&str> = findings
                    .iter()
                    .take(FINDINGS_IN_SUMMARY)
                    .map(|f| f.id.as_str())
                    .collect();
                let more = findings.len().saturating_sub(FINDINGS_IN_SUMMARY);
                let more = if more > 0 {
                    format!(" and {more} more")
                } else {
                    String::new()
                };
                let noun = if findings.len() == 1 {
                    "finding"
                } else {
                    "findings"
                };
                (
                    format!(
                        "{plugin} found {} critical {noun} on device {device_id}: {}{more}",
                        findings.len(),
                        ids.join(", "),
                    ),
                    json!({
                        "finding_count": findings.len(),
                        "findings": &findings[..findings.len().min(MAX_FINDINGS_IN_ALERT)],
                    }),
                )
            }
            Condition::RemediationFailed => {
                let error = match &self.remediation {
                    RemediationResult::Failed { error } => truncate(error, MAX_ERROR_CHARS),
                    _ => String::new(),
                };
                let first_line = truncate(error.lines().next().unwrap_or(""), 200);
                (
                    format!("{plugin} remediation failed on device {device_id}: {first_line}"),
                    json!({ "error": error }),
                )
            }
            Condition::JobTimedOut => {
                let limit = match self.job {
                    JobEnd::TimedOut { limit } => limit,
                    JobEnd::InTime => Duration::ZERO,
                };
                (
                    format!(
                        "{plugin} job on device {device_id} timed out after {}",
                        human_duration(limit)
                    ),
                    json!({ "limit_ms": u64::try_from(limit.as_millis()).unwrap_or(u64::MAX) }),
                )
            }
        };
        (summary, into_object(details))
    }

    /// The summary and details of the resolved alert closing `open`, for
    /// `condition`, which no longer holds in this observation.
    pub(super) fn describe_resolved(
        &self,
        condition: Condition,
        open: &OpenAlert,
    ) -> (String, Map<String, Value>) {
        let Self {
            plugin, device_id, ..
        } = self;
        let (summary, resolution) = match condition {
            Condition::CriticalFindings => (
                format!("{plugin} finds no critical findings on device {device_id} any more"),
                "check-passed",
            ),
            Condition::RemediationFailed => (
                format!("{plugin} remediation succeeds again on device {device_id}"),
                "remediation-succeeded",
            ),
            Condition::JobTimedOut => (
                format!("{plugin} job on device {device_id} completes in time again"),
                "completed-in-time",
            ),
        };
        let details = json!({
            "resolution": resolution,
            "firing_run_id": open.run_id,
            "firing_job_id": open.job_id,
            "last_seen": rfc3339::format(&open.last_seen),
        });
        (summary, into_object(details))
    }
}

/// Whether an alert starts or ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum AlertEvent {
    /// The condition started holding.
    #[serde(rename = "alert.firing")]
    Firing,
    /// The condition was observed not holding any more.
    #[serde(rename = "alert.resolved")]
    Resolved,
}

impl AlertEvent {
    /// The event as spelled in the body and the `X-Steward-Event` header.
    pub fn as_str(self) -> &'static str {
        match self {
            AlertEvent::Firing => "alert.firing",
            AlertEvent::Resolved => "alert.resolved",
        }
    }
}

impl fmt::Display for AlertEvent {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// An alert event, serialised as the webhook body. The schema is in the
/// [module documentation](super#body).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Alert {
    /// The alert's id, shared by its firing and resolved events.
    pub id: String,
    /// Whether the alert starts or ends.
    pub event: AlertEvent,
    /// What went wrong.
    pub condition: Condition,
    /// How urgent it is.
    pub severity: Severity,
    /// The tenant the device belongs to.
    pub tenant_id: String,
    /// The device.
    pub device_id: String,
    /// The plugin.
    pub plugin: String,
    /// The run whose job produced this event.
    pub run_id: String,
    /// The job that produced this event.
    pub job_id: String,
    /// One line for humans.
    pub summary: String,
    /// Per-condition facts (see the module documentation).
    pub details: Map<String, Value>,
    /// When the condition was first observed in this alert.
    #[serde(with = "rfc3339")]
    pub first_seen: DateTime<Utc>,
    /// How many observations the condition held in.
    pub occurrences: u64,
    /// When this event was observed.
    #[serde(with = "rfc3339")]
    pub at: DateTime<Utc>,
}

impl Alert {
    /// The key this alert belongs to.
    pub fn key(&self) -> AlertKey {
        AlertKey {
            tenant_id: self.tenant_id.clone(),
            device_id: self.device_id.clone(),
            plugin: self.plugin.clone(),
            condition: self.condition,
        }
    }

    /// The webhook body: the alert as compact JSON.
    pub fn to_body(&self) -> Vec<u8> {
        // Only strings, integers and JSON values with string keys: this
        // cannot fail.
        serde_json::to_vec(self).expect("an alert always serialises to JSON")
    }
}

/// `value`, which is built by `json!({...})`, as a JSON object.
fn into_object(value: Value) -> Map<String, Value> {
    match value {
        Value::Object(map) => map,
        _ => Map::new(),
    }
}

/// The first `max` characters of `text`, with `…` when cut.
fn truncate(text: &str, max: usize) -> String {
    match text.char_indices().nth(max) {
        Some((end, _)) => format!("{}…", &text[..end]),
        None => text.to_owned(),
    }
}

/// `300s`, `1.5s`, `250ms`.
fn human_duration(d: Duration) -> String {
    if d.subsec_millis() == 0 && d.as_secs() > 0 {
        format!("{}s", d.as_secs())
    } else if d.as_secs() == 0 {
        format!("{}ms", d.as_millis())
    } else {
        format!("{:.1}s", d.as_secs_f64())
    }
}

/// RFC 3339 in UTC with milliseconds, the one time format of alert bodies.
pub(super) mod rfc3339 {
    use chrono::{DateTime, SecondsFormat, Utc};
    use serde::{Deserialize, Deserializer, Serializer};

    /// `t` as `2025-03-01T08:00:00.000Z`.
    pub fn format(t: &DateTime<Utc>) -> String {
        t.to_rfc3339_opts(SecondsFormat::Millis, true)
    }

    pub fn serialize<S: Serializer>(t: &DateTime<Utc>, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&format(t))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<DateTime<Utc>, D::Error> {
        DateTime::<Utc>::deserialize(d)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn at() -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2025, 3, 1, 8, 0, 0).unwrap()
    }

    #[test]
    fn body_has_the_documented_schema() {
        let alert = Alert {
            id: "a1".into(),
            event: AlertEvent::Firing,
            condition: Condition::CriticalFindings,
            severity: Severity::Critical,
            tenant_id: "acme".into(),
            device_id: "pc-7".into(),
            plugin: "patching".into(),
            run_id: "r1".into(),
            job_id: "j1".into(),
            summary: "patching found 1 critical finding on device pc-7: pending-security:openssl"
                .into(),
            details: into_object(json!({
                "finding_count": 1,
                "findings": [{"id": "pending-security:openssl", "summary": "OpenSSL update pending"}],
            })),
            first_seen: at(),
            occurrences: 1,
            at: at() + chrono::Duration::milliseconds(1500),
        };
        let body = String::from_utf8(alert.to_body()).unwrap();
        assert_eq!(
            body,
            concat!(
                r#"{"id":"a1","event":"alert.firing","condition":"critical-findings","#,
                r#""severity":"critical","tenant_id":"acme","device_id":"pc-7","plugin":"patching","#,
                r#""run_id":"r1","job_id":"j1","#,
                r#""summary":"patching found 1 critical finding on device pc-7: pending-security:openssl","#,
                r#""details":{"finding_count":1,"findings":[{"id":"pending-security:openssl","summary":"OpenSSL update pending"}]},"#,
                r#""first_seen":"2025-03-01T08:00:00.000Z","occurrences":1,"at":"2025-03-01T08:00:01.500Z"}"#,
            )
        );
        let back: Alert = serde_json::from_str(&body).unwrap();
        assert_eq!(back, alert);
    }

    #[test]
    fn holds_is_unknown_for_what_the_job_did_not_run() {
        let mut obs = Observation::new("t", "d", "p", "r", "j", at());
        assert_eq!(obs.holds(Condition::CriticalFindings), None);
        assert_eq!(obs.holds(Condition::RemediationFailed), None);
        assert_eq!(obs.holds(Condition::JobTimedOut), Some(false));

        obs.check = CheckResult::Completed {
            critical_findings: vec![],
        };
        obs.remediation = RemediationResult::Succeeded;
        assert_eq!(obs.holds(Condition::CriticalFindings), Some(false));
        assert_eq!(obs.holds(Condition::RemediationFailed), Some(false));
    }

    #[test]
    fn firing_details_list_a_bounded_number_of_findings() {
        let mut obs = Observation::new("t", "d", "patching", "r", "j", at());
        obs.check = CheckResult::Completed {
            critical_findings: (0..40)
                .map(|i| CriticalFinding {
                    id: format!("f{i}"),
                    summary: format!("finding {i}"),
                })
                .collect(),
        };
        let (summary, details) = obs.describe_firing(Condition::CriticalFindings);
        assert_eq!(
            summary,
            "patching found 40 critical findings on device d: f0, f1, f2 and 37 more"
        );
        assert_eq!(details["finding_count"], 40);
        assert_eq!(
            details["findings"].as_array().unwrap().len(),
            MAX_FINDINGS_IN_ALERT
        );
    }

    #[test]
    fn long_remediation_errors_are_cut_on_a_character_boundary() {
        let mut obs = Observation::new("t", "d", "p", "r", "j", at());
        obs.remediation = RemediationResult::Failed {
            error: "é".repeat(MAX_ERROR_CHARS + 10),
        };
        let (_, details) = obs.describe_firing(Condition::RemediationFailed);
        let error = details["error"].as_str().unwrap();
        assert_eq!(error.chars().count(), MAX_ERROR_CHARS + 1);
        assert!(error.ends_with('…'));
    }

    #[test]
    fn durations_read_naturally() {
        assert_eq!(human_duration(Duration::from_secs(300)), "300s");
        assert_eq!(human_duration(Duration::from_millis(1500)), "1.5s");
        assert_eq!(human_duration(Duration::from_millis(250)), "250ms");
    }
}
