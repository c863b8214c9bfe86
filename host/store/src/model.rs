//! What the store keeps and returns: tenants, devices, playbooks, runs,
//! jobs and what jobs report.

use std::fmt;
use std::str::FromStr;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::error::StoreError;
use super::ids::{DeviceId, JobId, PlaybookId, RunId, ScheduleId, SiteId, TenantId, Timestamp};

/// Defines a string enum stored as TEXT: `as_str`, `FromStr` (with the list
/// of valid values in the error), `Display` and serde in kebab-case.
macro_rules! text_enum {
    ($(#[$meta:meta])* $name:ident, $field:literal { $($(#[$vmeta:meta])* $variant:ident = $text:literal),+ $(,)? }) => {
        $(#[$meta])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, utoipa::ToSchema)]
        #[serde(rename_all = "kebab-case")]
        pub enum $name {
            $($(#[$vmeta])* $variant),+
        }

        impl $name {
            /// Every value, in declaration order.
            pub const ALL: &'static [$name] = &[$($name::$variant),+];

            /// The value as stored and as the API spells it.
            pub const fn as_str(self) -> &'static str {
                match self {
                    $($name::$variant => $text),+
                }
            }
        }

        impl FromStr for $name {
            type Err = StoreError;

            fn from_str(s: &str) -> Result<Self, StoreError> {
                match s {
                    $($text => Ok($name::$variant),)+
                    other => Err(StoreError::invalid(
                        $field,
                        format!(
                            "`{other}` is not one of {}",
                            [$(concat!("`", $text, "`")),+].join(", ")
                        ),
                    )),
                }
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.as_str())
            }
        }
    };
}

text_enum!(
    /// A tenant's priority tier: when the queue is busy, VIP tenants' jobs
    /// are claimed first, then managed, then on-demand.
    Tier, "tier" {
        /// Served first.
        Vip = "vip",
        /// Served after VIP.
        Managed = "managed",
        /// Served last.
        OnDemand = "on-demand",
    }
);

impl Tier {
    /// Claim order: lower ranks are claimed first.
    pub const fn rank(self) -> i64 {
        match self {
            Tier::Vip => 0,
            Tier::Managed => 1,
            Tier::OnDemand => 2,
        }
    }

    pub(crate) fn from_rank(rank: i64) -> Result<Self, StoreError> {
        Tier::ALL
            .iter()
            .copied()
            .find(|t| t.rank() == rank)
            .ok_or_else(|| StoreError::corrupt("jobs.tier_rank", format!("unknown rank {rank}")))
    }
}

text_enum!(
    /// Where a job is in its life.
    JobStatus, "status" {
        /// Waiting to be claimed (maybe not due yet, maybe its device is
        /// unreachable).
        Queued = "queued",
        /// Claimed by a worker whose lease has not been given up.
        Leased = "leased",
        /// The plugin ran and reported success.
        Succeeded = "succeeded",
        /// The plugin reported a failure, or failed in a way retrying cannot
        /// fix, or ran out of attempts.
        Failed = "failed",
        /// The last attempt ran past its timeout or its worker vanished.
        TimedOut = "timed-out",
        /// It could not start before its expiry (device unreachable, not
        /// approved in time).
        Expired = "expired",
        /// Cancelled by an admin, or its plan was rejected.
        Cancelled = "cancelled",
        /// Waits for an admin to approve it.
        AwaitingApproval = "awaiting-approval",
    }
);

impl JobStatus {
    /// Whether the job has ended for good.
    pub const fn is_terminal(self) -> bool {
        !matches!(
            self,
            JobStatus::Queued | JobStatus::Leased | JobStatus::AwaitingApproval
        )
    }
}

text_enum!(
    /// What a job asks the plugin to do.
    JobMode, "mode" {
        /// Run `check`: report findings, change nothing.
        Check = "check",
        /// Run `remediate` in plan mode: record intended changes only.
        Plan = "plan",
        /// Run `remediate` and apply changes.
        Remediate = "remediate",
    }
);

text_enum!(
    /// Where a run is in its life.
    RunStatus, "status" {
        /// Some job has not ended.
        Running = "running",
        /// Every job succeeded.
        Succeeded = "succeeded",
        /// Some job failed, timed out or expired.
        Failed = "failed",
        /// Jobs were cancelled, none failed.
        Cancelled = "cancelled",
    }
);

text_enum!(
    /// How bad a finding is.
    Severity, "severity" {
        /// For information.
        Info = "info",
        /// Should be looked at.
        Warning = "warning",
        /// Needs action.
        Critical = "critical",
    }
);

text_enum!(
    /// Whether a change was made or only planned.
    ChangeOutcome, "outcome" {
        /// The device was changed.
        Applied = "applied",
        /// Plan mode: recorded, nothing changed.
        Planned = "planned",
    }
);

text_enum!(
    /// What a user may do. Each role may do everything the roles below it
    /// may.
    Role, "role" {
        /// The whole MSP: every tenant, users and tokens of any role.
        Owner = "owner",
        /// Manages tenants, plugins, webhooks and users up to admin.
        Admin = "admin",
        /// Runs the work: devices, playbooks, schedules, runs, approvals.
        Technician = "technician",
        /// Reads only.
        Viewer = "viewer",
    }
);

impl Role {
    /// Higher is more powerful.
    pub const fn rank(self) -> u8 {
        match self {
            Role::Owner => 3,
            Role::Admin => 2,
            Role::Technician => 1,
            Role::Viewer => 0,
        }
    }

    /// Whether this role may do what `needed` may.
    pub const fn at_least(self, needed: Role) -> bool {
        self.rank() >= needed.rank()
    }
}

/// A tenant to create.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct NewTenant {
    /// Unique display name.
    pub name: String,
    /// Priority tier.
    pub tier: Tier,
    /// At most this many of the tenant's jobs run at once; `None`: no limit.
    pub max_concurrent_jobs: Option<u32>,
}

/// A stored tenant.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Tenant {
    /// Its id.
    pub id: TenantId,
    /// Unique display name.
    pub name: String,
    /// Priority tier.
    pub tier: Tier,
    /// Concurrency limit; `None`: no limit.
    pub max_concurrent_jobs: Option<u32>,
    /// When it was created.
    pub created_at: Timestamp,
}

/// A stored site.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Site {
    /// Its id.
    pub id: SiteId,
    /// The tenant it belongs to.
    pub tenant_id: TenantId,
    /// Name, unique within the tenant.
    pub name: String,
    /// When it was created.
    pub created_at: Timestamp,
}

/// A device to create.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct NewDevice {
    /// The tenant it belongs to.
    pub tenant_id: TenantId,
    /// Its site, if any (must belong to the same tenant).
    pub site_id: Option<SiteId>,
    /// Name, unique within the tenant.
    pub name: String,
    /// Tags for target selectors.
    pub tags: Vec<String>,
    /// Inventory facts (a JSON object).
    pub facts: Value,
    /// Admin fields: purchase date, warranty end, cost, class, assigned
    /// user (a JSON object).
    pub admin: Value,
}

impl NewDevice {
    /// A device named `name` of `tenant_id`, with no site, tags, facts or
    /// admin fields.
    pub fn new(tenant_id: TenantId, name: impl Into<String>) -> Self {
        Self {
            tenant_id,
            site_id: None,
            name: name.into(),
            tags: Vec::new(),
            facts: Value::Object(Default::default()),
            admin: Value::Object(Default::default()),
        }
    }
}

/// A stored device.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Device {
    /// Its id.
    pub id: DeviceId,
    /// The tenant it belongs to.
    pub tenant_id: TenantId,
    /// Its site, if any.
    pub site_id: Option<SiteId>,
    /// Name, unique within the tenant.
    pub name: String,
    /// Tags.
    pub tags: Vec<String>,
    /// Inventory facts.
    pub facts: Value,
    /// Admin fields.
    pub admin: Value,
    /// Whether it can be reached now; jobs for an unreachable device wait.
    pub reachable: bool,
    /// When it was last heard from.
    pub last_seen_at: Option<Timestamp>,
    /// When it was created.
    pub created_at: Timestamp,
    /// Its agent's state, for a device enrolled by an agent: `active`,
    /// `pending-approval` (enrolled with a token that needs approval; it
    /// may not connect until an admin approves it) or `revoked`.
    #[serde(default)]
    pub agent: Option<String>,
}

/// A device as target selection sees it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct DeviceRef {
    /// Its id.
    pub id: DeviceId,
    /// Its site, if any.
    pub site_id: Option<SiteId>,
    /// Its tags.
    pub tags: Vec<String>,
}

/// A version of a plugin to record as installed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct NewPluginVersion {
    /// Plugin name, for example `patching`.
    pub plugin: String,
    /// Semantic version.
    pub version: String,
    /// `sha256:<hex>` of the component bytes.
    pub digest: String,
    /// Granted capabilities, as grant strings.
    pub grants: Vec<String>,
    /// Where it came from, when installed from a registry.
    #[serde(default)]
    pub source: Option<super::PluginSource>,
    /// The key that verified it, to trust on first use in the same
    /// transaction (refused if its namespace has had a trusted key since).
    #[serde(skip)]
    pub first_use_key: Option<super::TrustedKey>,
}

/// A playbook to create.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct NewPlaybook {
    /// Owning tenant; `None`: shared by every tenant.
    pub tenant_id: Option<TenantId>,
    /// Name.
    pub name: String,
    /// Steps (plugin, version, params, mode, on-failure, requires-approval),
    /// as the control plane defines them: a JSON array.
    pub steps: Value,
    /// Target selector (a JSON object).
    pub target: Value,
}

/// A stored playbook.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Playbook {
    /// Its id.
    pub id: PlaybookId,
    /// Owning tenant, if any.
    pub tenant_id: Option<TenantId>,
    /// Name.
    pub name: String,
    /// Steps.
    pub steps: Value,
    /// Target selector.
    pub target: Value,
    /// When it was created.
    pub created_at: Timestamp,
}

/// A schedule to create.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct NewSchedule {
    /// The playbook it fires.
    pub playbook_id: PlaybookId,
    /// Owning tenant, if any.
    pub tenant_id: Option<TenantId>,
    /// The scheduler's spec (cron, time zone, window, jitter, ...); the
    /// store keeps it as given.
    pub spec: Value,
    /// When the scheduler should first look at it.
    pub next_fire_at: Option<Timestamp>,
}

/// A stored schedule.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Schedule {
    /// Its id.
    pub id: ScheduleId,
    /// The playbook it fires.
    pub playbook_id: PlaybookId,
    /// Owning tenant, if any.
    pub tenant_id: Option<TenantId>,
    /// The scheduler's spec.
    pub spec: Value,
    /// Whether it fires.
    pub enabled: bool,
    /// The latest firing handled (fired or skipped). A firing written
    /// ahead of its time (up to the server's `fire-ahead-ms`, its run
    /// waiting with its jobs due at it) is handled, so this may be in the
    /// near future.
    pub last_fired_at: Option<Timestamp>,
    /// When the scheduler should look at it again: its next firing not yet
    /// handled (after one written ahead, the one following it).
    pub next_fire_at: Option<Timestamp>,
}

/// One firing of a schedule, to turn into a run exactly once.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Firing {
    /// The schedule.
    pub schedule_id: ScheduleId,
    /// The cron time this firing stands for; with the schedule, the key
    /// that makes the run unique.
    pub fire_at: Timestamp,
    /// When the scheduler should look at the schedule next.
    pub next_fire_at: Option<Timestamp>,
}

/// A stored run.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Run {
    /// Its id.
    pub id: RunId,
    /// The tenant of its playbook; `None` for a playbook shared by every
    /// tenant.
    pub tenant_id: Option<TenantId>,
    /// The playbook, if the run came from one.
    pub playbook_id: Option<PlaybookId>,
    /// The schedule, if a schedule fired it.
    pub schedule_id: Option<ScheduleId>,
    /// The firing's cron time, if a schedule fired it.
    pub fire_at: Option<Timestamp>,
    /// Where it is.
    pub status: RunStatus,
    /// When it was created.
    pub created_at: Timestamp,
    /// When its last job ended.
    pub finished_at: Option<Timestamp>,
    /// The exact plugin version of each playbook step, chosen when the run
    /// was created; every job of the run runs these bytes. Absent for a
    /// run without a playbook (`null`, as in listings).
    #[serde(default)]
    pub pins: Option<Vec<Pin>>,
}

/// The plugin version a run's step is pinned to.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Pin {
    /// Plugin name.
    pub plugin: String,
    /// The version chosen.
    pub version: String,
    /// `sha256:<hex>` of its component: what every job of the step runs.
    pub digest: String,
}

/// A job to enqueue.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct NewJob {
    /// The tenant it runs for.
    pub tenant_id: TenantId,
    /// The device it runs against; `None` for a tenant-scope plugin.
    pub device_id: Option<DeviceId>,
    /// Plugin name.
    pub plugin: String,
    /// The exact component to run, if pinned.
    pub plugin_digest: Option<String>,
    /// Index of the playbook step.
    pub step_index: u32,
    /// What to ask the plugin.
    pub mode: JobMode,
    /// Plugin parameters (a JSON object).
    pub params: Value,
    /// Not claimed before this time.
    pub due_at: Timestamp,
    /// If it has not started by then, it ends as expired; `None`: never.
    pub expires_at: Option<Timestamp>,
    /// Attempts before it ends as failed or timed out (at least 1).
    pub max_attempts: u32,
    /// How long one attempt may run.
    #[schema(value_type = Object)]
    pub timeout: Duration,
    /// Whether it waits for an admin's approval before it can be claimed.
    pub awaiting_approval: bool,
}

impl NewJob {
    /// A job with the usual defaults: step 0, no parameters, no digest, no
    /// expiry, 3 attempts, a 5-minute timeout, no approval needed.
    pub fn new(
        tenant_id: TenantId,
        device_id: Option<DeviceId>,
        plugin: impl Into<String>,
        mode: JobMode,
        due_at: Timestamp,
    ) -> Self {
        Self {
            tenant_id,
            device_id,
            plugin: plugin.into(),
            plugin_digest: None,
            step_index: 0,
            mode,
            params: Value::Object(Default::default()),
            due_at,
            expires_at: None,
            max_attempts: 3,
            timeout: Duration::from_secs(300),
            awaiting_approval: false,
        }
    }
}

/// A stored job.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Job {
    /// Its id.
    pub id: JobId,
    /// Its run.
    pub run_id: RunId,
    /// The tenant it runs for.
    pub tenant_id: TenantId,
    /// The device, if any.
    pub device_id: Option<DeviceId>,
    /// The tenant's tier when it was enqueued.
    pub tier: Tier,
    /// Plugin name.
    pub plugin: String,
    /// Pinned component digest, if any.
    pub plugin_digest: Option<String>,
    /// Playbook step index.
    pub step_index: u32,
    /// What to ask the plugin.
    pub mode: JobMode,
    /// Plugin parameters.
    pub params: Value,
    /// Where it is.
    pub status: JobStatus,
    /// Not claimed before this time.
    pub due_at: Timestamp,
    /// Expiry, if any.
    pub expires_at: Option<Timestamp>,
    /// Leases taken so far. While leased, the current attempt: pass it back
    /// with [`Completion`] and [`Failure`] so a stale worker is refused.
    pub attempt: u32,
    /// Attempts allowed.
    pub max_attempts: u32,
    /// How long one attempt may run.
    #[schema(value_type = Object)]
    pub timeout: Duration,
    /// The worker holding the lease.
    pub lease_owner: Option<String>,
    /// When the lease runs out unless renewed.
    pub lease_until: Option<Timestamp>,
    /// When the current or last attempt started.
    pub started_at: Option<Timestamp>,
    /// An earlier attempt started applying changes and never reported back
    /// (worker killed, lease lost, transient failure mid-apply): the
    /// device may be half-changed. See the module doc on idempotency.
    pub interrupted_apply: bool,
    /// Why the last attempt did not succeed.
    pub last_error: Option<String>,
    /// What the plugin returned.
    pub result: Option<Value>,
    /// When it was enqueued.
    pub created_at: Timestamp,
    /// When it ended.
    pub finished_at: Option<Timestamp>,
    /// The worker that took the latest lease (kept after the job ends).
    pub claimed_by: Option<String>,
}

/// How a plugin run ended, as reported by the worker.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "kebab-case")]
pub enum Outcome {
    /// The plugin succeeded.
    Succeeded,
    /// The plugin ran and reported a failure (for example a remediation
    /// that could not fix the problem). Final: retrying blindly could make
    /// things worse, so the job is not retried.
    Failed {
        /// The plugin's reason.
        reason: String,
    },
}

/// A finding a check reported.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct NewFinding {
    /// The plugin's stable id for the problem.
    pub key: String,
    /// How bad it is.
    pub severity: Severity,
    /// One line.
    pub summary: String,
    /// More.
    pub detail: String,
    /// The resource concerned.
    pub resource: String,
    /// Structured facts (a JSON object).
    pub fields: Value,
}

/// A change a remediation made or planned.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct NewChange {
    /// Kind, for example `package-upgrade`.
    pub kind: String,
    /// What it changed.
    pub target: String,
    /// For humans.
    pub description: String,
    /// The value before, if known.
    pub before: Option<String>,
    /// The value after, if known.
    pub after: Option<String>,
    /// Applied or planned.
    pub outcome: ChangeOutcome,
}

/// A log line of a job attempt.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct NewLog {
    /// When it was written.
    pub at: Timestamp,
    /// `trace`, `debug`, `info`, `warn` or `error`.
    pub level: String,
    /// The message.
    pub message: String,
    /// Structured fields (a JSON object).
    pub fields: Value,
}

/// A finished job attempt, reported by the worker holding its lease.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Completion {
    /// The job.
    pub job_id: JobId,
    /// The attempt the worker ran ([`Job::attempt`] from the claim).
    pub attempt: u32,
    /// How it ended.
    pub outcome: Outcome,
    /// What the plugin returned.
    pub result: Value,
    /// What a check found.
    pub findings: Vec<NewFinding>,
    /// What a remediation changed or planned.
    pub changes: Vec<NewChange>,
    /// The attempt's log.
    pub logs: Vec<NewLog>,
    /// Jobs to enqueue in the same run if, and only if, this completion is
    /// accepted (the playbook's next step), in the same transaction.
    pub then: Vec<NewJob>,
    /// Plugin state the attempt wrote (`None`: deleted), stored for the
    /// job's device (or tenant) if, and only if, the completion is
    /// accepted.
    #[serde(default)]
    pub state: Vec<(String, Option<String>)>,
    /// The attempt's audit events (its mutating and scoped capability
    /// calls), written in the completion's transaction: present exactly
    /// when the completion is accepted.
    #[serde(default)]
    pub audit: Vec<AuditEvent>,
    /// The alerter's observation of the job (JSON), written to the alert
    /// inbox in the completion's transaction: present exactly when the
    /// completion is accepted, so no crash loses the job's alerts.
    #[serde(default)]
    pub observation: Option<String>,
}

impl Completion {
    /// A successful completion with `result` and nothing else.
    pub fn succeeded(job: &Job, result: Value) -> Self {
        Self {
            job_id: job.id.clone(),
            attempt: job.attempt,
            outcome: Outcome::Succeeded,
            result,
            findings: Vec::new(),
            changes: Vec::new(),
            logs: Vec::new(),
            then: Vec::new(),
            state: Vec::new(),
            audit: Vec::new(),
            observation: None,
        }
    }

    /// Why this completion breaks the output rules
    /// (`steward_contract::output`), if it does. The runtime refuses such
    /// output already; the store checks again so one bad completion can
    /// never fail a batch of others.
    pub fn invalid_output(&self) -> Option<String> {
        use steward_contract::output::{check_change_kinds, check_finding_ids};
        check_finding_ids(self.findings.iter().map(|f| f.key.as_str()))
            .and_then(|()| check_change_kinds(self.changes.iter().map(|c| c.kind.as_str())))
            .err()
    }
}

/// Why an attempt failed without the plugin reporting an outcome.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "kebab-case")]
pub enum FailureKind {
    /// Retrying later may help (provider unavailable, device dropped off).
    Transient,
    /// Retrying cannot help (trap, bad parameters, denied capability).
    Permanent,
    /// The attempt ran past its timeout; retried like a transient failure,
    /// ends as timed out.
    TimedOut,
}

/// A failed attempt, reported by the worker holding its lease.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Failure {
    /// The job.
    pub job_id: JobId,
    /// The attempt ([`Job::attempt`] from the claim).
    pub attempt: u32,
    /// What went wrong, for humans.
    pub error: String,
    /// Whether it is worth retrying.
    pub kind: FailureKind,
    /// The attempt's log.
    pub logs: Vec<NewLog>,
    /// Jobs to enqueue in the same run if, and only if, this failure ends
    /// the job (no retry left), in the same transaction: the next step of
    /// a playbook step that continues on failure.
    #[serde(default)]
    pub then: Vec<NewJob>,
    /// The attempt's audit events, written in the failure's transaction
    /// (present exactly when the failure is recorded).
    #[serde(default)]
    pub audit: Vec<AuditEvent>,
    /// The alerter's observation of the attempt (JSON), written to the
    /// alert inbox in the failure's transaction.
    #[serde(default)]
    pub observation: Option<String>,
}

/// What became of a reported failure.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FailOutcome {
    /// Queued again, not before `due_at`.
    Retrying {
        /// When it may be claimed again.
        due_at: Timestamp,
    },
    /// Ended with this status (failed or timed out).
    Ended(JobStatus),
    /// The worker does not hold this attempt's lease (it was reclaimed, or
    /// the job already ended): nothing was changed.
    NotLeased,
}

/// What [`Store::reclaim_expired`](super::Store::reclaim_expired) did.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Reclaimed {
    /// Jobs queued again.
    pub requeued: u64,
    /// Jobs out of attempts, ended as timed out.
    pub timed_out: u64,
    /// Those jobs, as they were leased when their lease ran out.
    pub ended: Vec<Job>,
    /// Jobs enqueued to follow the ones that ended (a step that says
    /// `continue`).
    pub followed: u64,
}

/// A stored finding.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Finding {
    /// The tenant.
    pub tenant_id: TenantId,
    /// The device, if any.
    pub device_id: Option<DeviceId>,
    /// The plugin that reported it.
    pub plugin: String,
    /// The plugin's stable id for the problem.
    pub key: String,
    /// How bad it is.
    pub severity: Severity,
    /// One line.
    pub summary: String,
    /// When it was first found (since it was last resolved).
    pub first_seen_at: Timestamp,
    /// When a check last found it, to within ten minutes: a finding
    /// reported again unchanged is only rewritten once it is older.
    pub last_seen_at: Timestamp,
    /// When a later check stopped finding it.
    pub resolved_at: Option<Timestamp>,
}

/// A stored change.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Change {
    /// The job that made it.
    pub job_id: JobId,
    /// The attempt that made it.
    pub attempt: u32,
    /// What changed.
    pub change: NewChange,
    /// When the completion was recorded.
    pub at: Timestamp,
}

/// An audit event to append.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct AuditEvent {
    /// When it happened.
    pub at: Timestamp,
    /// Who: a user, a token, or `job:<id>` for a plugin's host call.
    pub actor: String,
    /// The tenant concerned.
    pub tenant_id: Option<TenantId>,
    /// The run.
    pub run_id: Option<RunId>,
    /// The job.
    pub job_id: Option<JobId>,
    /// The job's attempt.
    pub attempt: Option<u32>,
    /// The device.
    pub device_id: Option<DeviceId>,
    /// The plugin.
    pub plugin: Option<String>,
    /// The plugin's digest.
    pub plugin_digest: Option<String>,
    /// What was done, for example `packages.install`.
    pub action: String,
    /// Arguments summary (JSON).
    pub detail: Value,
    /// `applied`, `planned`, `denied`, `failed`, ...
    pub outcome: String,
}
