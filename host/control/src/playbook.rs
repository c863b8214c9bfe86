//! Playbooks as admins write them: ordered steps and a target selector,
//! checked before anything is stored.

use std::time::Duration;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use semver::{Version, VersionReq};

use steward_store::{
    DeviceId, DeviceRef, Job, JobMode, NewJob, Pin, PluginVersion, Run, Store, StoreError,
    TenantId, Timestamp,
};

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
    /// An installed plugin's name, optionally with a version requirement
    /// after `@` (`patching@^1.2`), the same as giving `version`.
    pub plugin: String,
    /// A semver requirement with Cargo's rules (`^1.2`, `~1.2.3`, `=1.2.3`,
    /// `>=1, <2`, `*`; a bare `1.2.3` means `^1.2.3`): the highest installed
    /// version that matches runs. Absent: the latest installed one. Either
    /// way the choice is pinned on the run when the run is created.
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
        let step = read_step(i, item)?;
        if !installed.iter().any(|v| v.plugin == step.plugin) {
            return Err(PlaybookError::new(
                format!("steps[{i}].plugin"),
                format!("no plugin `{}` is installed", step.plugin),
            ));
        }
        if let Some(version) = &step.version {
            let requirement = VersionReq::parse(version).map_err(|e| {
                PlaybookError::new(
                    format!("steps[{i}].version"),
                    format!("`{version}` is not a semver requirement: {e}"),
                )
            })?;
            if pick_installed(&step.plugin, Some(&requirement), installed).is_none() {
                let have: Vec<&str> = installed
                    .iter()
                    .filter(|v| v.plugin == step.plugin)
                    .map(|v| v.version.as_str())
                    .collect();
                return Err(PlaybookError::new(
                    format!("steps[{i}].version"),
                    format!(
                        "no installed version of `{}` matches `{version}` (installed: {})",
                        step.plugin,
                        have.join(", ")
                    ),
                ));
            }
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

/// One step from its JSON, with a `plugin@requirement` split into plugin
/// and version.
fn read_step(i: usize, item: &Value) -> Result<Step, PlaybookError> {
    let mut step: Step = serde_json::from_value(item.clone())
        .map_err(|e| PlaybookError::new(format!("steps[{i}]"), e.to_string()))?;
    if let Some((name, requirement)) = step.plugin.split_once('@') {
        if step.version.is_some() {
            return Err(PlaybookError::new(
                format!("steps[{i}].plugin"),
                "give the version either after `@` or as `version`, not both",
            ));
        }
        step.version = Some(requirement.to_owned());
        step.plugin = name.to_owned();
    }
    Ok(step)
}

/// A stored playbook's steps, read without checking them against what is
/// installed (they were checked when stored).
///
/// # Errors
///
/// Steps that no longer decode.
pub fn read_steps(steps: &Value) -> Result<Vec<Step>, PlaybookError> {
    let Value::Array(items) = steps else {
        return Err(PlaybookError::new("steps", "must be a JSON array of steps"));
    };
    items
        .iter()
        .enumerate()
        .map(|(i, item)| read_step(i, item))
        .collect()
}

/// The installed version a step runs: the highest one matching its
/// requirement, else the latest installed. `None` when nothing installed
/// matches (or the requirement does not parse, which [`parse`] refuses).
pub fn pick_version<'a>(step: &Step, installed: &'a [PluginVersion]) -> Option<&'a PluginVersion> {
    let requirement = match &step.version {
        Some(text) => Some(VersionReq::parse(text).ok()?),
        None => None,
    };
    pick_installed(&step.plugin, requirement.as_ref(), installed)
}

fn pick_installed<'a>(
    plugin: &str,
    requirement: Option<&VersionReq>,
    installed: &'a [PluginVersion],
) -> Option<&'a PluginVersion> {
    let candidates = installed.iter().filter(|v| v.plugin == plugin);
    match requirement {
        None => candidates.max_by_key(|v| v.installed_at),
        Some(req) => candidates
            .filter_map(|v| Some((Version::parse(&v.version).ok()?, v)))
            .filter(|(version, _)| req.matches(version))
            .max_by(|(a, _), (b, _)| a.cmp(b))
            .map(|(_, v)| v),
    }
}

/// The version each step runs, chosen now: what a run is pinned to.
///
/// # Errors
///
/// The first step with no installed version, naming it.
pub fn pins(steps: &[Step], installed: &[PluginVersion]) -> Result<Vec<Pin>, PlaybookError> {
    steps
        .iter()
        .enumerate()
        .map(|(i, step)| {
            pick_version(step, installed)
                .map(|v| Pin {
                    plugin: v.plugin.clone(),
                    version: v.version.clone(),
                    digest: v.digest.clone(),
                })
                .ok_or_else(|| {
                    PlaybookError::new(
                        format!("steps[{i}].plugin"),
                        format!("no installed version of `{}` matches", step.plugin),
                    )
                })
        })
        .collect()
}

/// The steps of `run`'s playbook: none for a run started without one or
/// whose playbook is gone; the inner error when the stored steps do not
/// read.
///
/// # Errors
///
/// A store failure.
pub async fn run_steps(
    store: &Store,
    run: &Run,
) -> Result<Result<Vec<Step>, PlaybookError>, StoreError> {
    let Some(id) = &run.playbook_id else {
        return Ok(Ok(Vec::new()));
    };
    Ok(match store.playbook(id).await? {
        Some(p) => read_steps(&p.steps),
        None => Ok(Vec::new()),
    })
}

/// The jobs that follow `job` of a run whose playbook has `steps` (pinned
/// to `pins`) on its device, due at `now`: the approval after a plan with
/// changes (`planned`), else the next step when `job` succeeded, or failed
/// and its step says `continue`. The executor adds them to a completion or
/// a failure; the sweeper to a job whose lease ran out with no attempt
/// left; either way in the transaction that ends `job`.
pub fn follow_ups(
    steps: &[Step],
    pins: &[Pin],
    job: &Job,
    succeeded: bool,
    planned: bool,
    now: Timestamp,
) -> Vec<NewJob> {
    let index = job.step_index as usize;
    let Some(step) = steps.get(index) else {
        return Vec::new();
    };
    if planned && succeeded {
        let mut approval = step.job(
            index,
            &job.tenant_id,
            job.device_id.as_ref(),
            JobMode::Remediate,
            job.plugin_digest.as_deref(),
            now,
            Some(now + Duration::from_secs(step.approval_timeout_seconds)),
        );
        approval.awaiting_approval = true;
        return vec![approval];
    }
    if !succeeded && step.on_failure == OnFailure::Stop {
        return Vec::new();
    }
    let next = index + 1;
    steps
        .get(next)
        .map(|s| {
            vec![s.job(
                next,
                &job.tenant_id,
                job.device_id.as_ref(),
                s.first_mode(),
                pins.get(next).map(|p| p.digest.as_str()),
                now,
                None,
            )]
        })
        .unwrap_or_default()
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
    /// `due_at`, running the component `digest` (the run's pin; `None`
    /// for the latest installed when the job is claimed).
    #[allow(clippy::too_many_arguments)]
    pub fn job(
        &self,
        index: usize,
        tenant: &TenantId,
        device: Option<&DeviceId>,
        mode: JobMode,
        digest: Option<&str>,
        due_at: Timestamp,
        expires_at: Option<Timestamp>,
    ) -> NewJob {
        NewJob {
            tenant_id: tenant.clone(),
            device_id: device.cloned(),
            plugin: self.plugin.clone(),
            plugin_digest: digest.map(str::to_owned),
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
