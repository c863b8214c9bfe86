//! Playbooks as admins write them: ordered steps and a target selector,
//! checked before anything is stored.

use std::time::Duration;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::store::{DeviceId, DeviceRef, JobMode, NewJob, PluginVersion, TenantId, Timestamp};

/// What a step asks of its plugin.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum StepMode {
    /// Look, change nothing.
    #[default]
    Check,
    /// Check, then fix what the check found.
    Remediate,
}

/// What happens to a device's later steps when a step fails.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum OnFailure {
    /// The device's later steps do not run.
    #[default]
    Stop,
    /// The next step runs anyway.
    Continue,
}

/// One step of a playbook.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub struct Step {
    /// An installed plugin's name.
    pub plugin: String,
    /// An installed version; the latest installed one when absent (pinned
    /// when the run is created).
    #[serde(default)]
    pub version: Option<String>,
    /// Plugin parameters, checked against the plugin's description.
    #[serde(default)]
    pub params: Map<String, Value>,
    /// Check or remediate.
    #[serde(default)]
    pub mode: StepMode,
    /// Stop or continue the device's later steps when this one fails.
    #[serde(default)]
    pub on_failure: OnFailure,
    /// A remediation first runs in plan mode and waits for an admin to
    /// approve the planned changes.
    #[serde(default)]
    pub requires_approval: bool,
    /// How long an approval may wait before it expires, in seconds.
    #[serde(default = "default_approval_timeout")]
    pub approval_timeout_seconds: u64,
    /// How long one attempt may run, in seconds.
    #[serde(default = "default_timeout")]
    pub timeout_seconds: u64,
    /// Attempts before the job ends failed (transient failures only).
    #[serde(default = "default_attempts")]
    pub max_attempts: u32,
}

fn default_approval_timeout() -> u64 {
    72 * 3600
}

fn default_timeout() -> u64 {
    300
}

fn default_attempts() -> u32 {
    3
}

/// Which devices a playbook runs on: the tenant's devices, narrowed by
/// sites, tags (a device needs every tag) and ids. Empty: every device of
/// the tenant.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub struct Target {
    /// Site ids.
    #[serde(default)]
    pub sites: Vec<String>,
    /// Tags, all required.
    #[serde(default)]
    pub tags: Vec<String>,
    /// Device ids.
    #[serde(default)]
    pub devices: Vec<String>,
    /// Devices whose jobs have not started this many seconds after their
    /// planned start end as expired (for example while unreachable).
    #[serde(default)]
    pub expire_after_seconds: Option<u64>,
}

impl Target {
    /// Whether `device` is selected.
    pub fn selects(&self, device: &DeviceRef) -> bool {
        (self.devices.is_empty() || self.devices.iter().any(|d| d == device.id.as_str()))
            && (self.sites.is_empty()
                || device
                    .site_id
                    .as_ref()
                    .is_some_and(|s| self.sites.iter().any(|x| x == s.as_str())))
            && self.tags.iter().all(|t| device.tags.contains(t))
    }
}

/// A playbook's content is wrong; `field` names where, as a JSON path.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid `{field}`: {message}")]
pub struct PlaybookError {
    /// For example `steps[1].plugin`.
    pub field: String,
    /// What is wrong.
    pub message: String,
}

impl PlaybookError {
    pub(crate) fn new(field: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            field: field.into(),
            message: message.into(),
        }
    }
}

/// Parses and checks a playbook's steps and target: at least one step,
/// every step names an installed plugin (and version, if given), and the
/// JSON has no unknown or mistyped fields.
pub fn parse(
    steps: &Value,
    target: &Value,
    installed: &[PluginVersion],
) -> Result<(Vec<Step>, Target), PlaybookError> {
    let Value::Array(items) = steps else {
        return Err(PlaybookError::new("steps", "must be a JSON array of steps"));
    };
    if items.is_empty() {
        return Err(PlaybookError::new(
            "steps",
            "a playbook needs at least one step",
        ));
    }
    let mut parsed = Vec::with_capacity(items.len());
    for (i, item) in items.iter().enumerate() {
        let step: Step = serde_json::from_value(item.clone())
            .map_err(|e| PlaybookError::new(format!("steps[{i}]"), e.to_string()))?;
        if !installed.iter().any(|v| v.plugin == step.plugin) {
            return Err(PlaybookError::new(
                format!("steps[{i}].plugin"),
                format!("no plugin `{}` is installed", step.plugin),
            ));
        }
        if let Some(version) = &step.version
            && !installed
                .iter()
                .any(|v| v.plugin == step.plugin && &v.version == version)
        {
            return Err(PlaybookError::new(
                format!("steps[{i}].version"),
                format!("`{}` {version} is not installed", step.plugin),
            ));
        }
        if step.timeout_seconds == 0 {
            return Err(PlaybookError::new(
                format!("steps[{i}].timeout-seconds"),
                "must be at least 1",
            ));
        }
        if step.max_attempts == 0 {
            return Err(PlaybookError::new(
                format!("steps[{i}].max-attempts"),
                "must be at least 1",
            ));
        }
        if step.requires_approval && step.mode != StepMode::Remediate {
            return Err(PlaybookError::new(
                format!("steps[{i}].requires-approval"),
                "only a remediate step can require approval",
            ));
        }
        parsed.push(step);
    }
    let target: Target = serde_json::from_value(target.clone())
        .map_err(|e| PlaybookError::new("target", e.to_string()))?;
    Ok((parsed, target))
}

/// The installed version a step runs: the one it names, else the latest
/// installed.
pub fn pick_version<'a>(step: &Step, installed: &'a [PluginVersion]) -> Option<&'a PluginVersion> {
    installed
        .iter()
        .filter(|v| v.plugin == step.plugin)
        .filter(|v| step.version.as_ref().is_none_or(|want| &v.version == want))
        .max_by_key(|v| v.installed_at)
}

impl Step {
    /// The job mode the step starts with: a check, a remediation, or, when
    /// it needs approval, the plan to approve.
    pub fn first_mode(&self) -> JobMode {
        match (self.mode, self.requires_approval) {
            (StepMode::Check, _) => JobMode::Check,
            (StepMode::Remediate, true) => JobMode::Plan,
            (StepMode::Remediate, false) => JobMode::Remediate,
        }
    }

    /// The job for step `index` on `device` of `tenant`, in `mode`, due at
    /// `due_at`, pinned to the version [`pick_version`] chooses.
    #[allow(clippy::too_many_arguments)]
    pub fn job(
        &self,
        index: usize,
        tenant: &TenantId,
        device: Option<&DeviceId>,
        mode: JobMode,
        installed: &[PluginVersion],
        due_at: Timestamp,
        expires_at: Option<Timestamp>,
    ) -> NewJob {
        NewJob {
            tenant_id: tenant.clone(),
            device_id: device.cloned(),
            plugin: self.plugin.clone(),
            plugin_digest: pick_version(self, installed).map(|v| v.digest.clone()),
            step_index: index as u32,
            mode,
            params: Value::Object(self.params.clone()),
            due_at,
            expires_at,
            max_attempts: self.max_attempts,
            timeout: Duration::from_secs(self.timeout_seconds),
            awaiting_approval: false,
        }
    }
}
