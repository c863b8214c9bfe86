//! The control plane's operations over the store: checked creation of
//! playbooks and schedules, starting runs, the scheduler's tick (firing
//! due schedules once across processes) and the sweeper's tick.

use std::collections::HashMap;
use std::sync::Arc;

use chrono::{DateTime, Utc};
use serde_json::Value;

use super::playbook::{self, PlaybookError, Step, Target};
use super::plugins::PluginLibrary;
use super::schedule::{Schedule as CompiledSchedule, ScheduleSpec, StartDecision, WindowMiss};
use steward_runtime::resolve_json_params;
use steward_store::{
    DeviceRef, Firing, Job, NewJob, NewPlaybook, NewSchedule, Pin, Playbook, PlaybookId, Reclaimed,
    RunId, Schedule, Store, StoreError, TenantId, Timestamp,
};

/// Why a control-plane operation was refused.
#[derive(Debug, thiserror::Error)]
pub enum ControlError {
    /// A field of the request is wrong; `field` names it.
    #[error("invalid `{field}`: {message}")]
    Invalid {
        /// For example `spec.cron` or `steps[0].plugin`.
        field: String,
        /// What is wrong.
        message: String,
    },
    /// The store refused or failed.
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl From<PlaybookError> for ControlError {
    fn from(e: PlaybookError) -> Self {
        ControlError::Invalid {
            field: e.field,
            message: e.message,
        }
    }
}

impl ControlError {
    fn invalid(field: impl Into<String>, message: impl Into<String>) -> Self {
        ControlError::Invalid {
            field: field.into(),
            message: message.into(),
        }
    }
}

/// Parses and compiles a schedule spec given as JSON; errors name the
/// field (`spec` for unknown or mistyped fields, `spec.<field>` else).
pub(crate) fn compile_spec(spec: &Value) -> Result<(ScheduleSpec, CompiledSchedule), ControlError> {
    let parsed: ScheduleSpec = serde_json::from_value(spec.clone())
        .map_err(|e| ControlError::invalid("spec", e.to_string()))?;
    let compiled = parsed
        .compile()
        .map_err(|e| ControlError::invalid(format!("spec.{}", e.field()), e.to_string()))?;
    Ok((parsed, compiled))
}

/// A run's pins and first jobs: the playbook's first step for each of
/// `devices` its target selects, starting when `plan_start` says.
fn jobs_for(
    playbook: &Playbook,
    tenant: &TenantId,
    installed: &[steward_store::PluginVersion],
    devices: &[DeviceRef],
    plan_start: impl Fn(&DeviceRef) -> Option<(Timestamp, Option<Timestamp>)>,
) -> Result<(Vec<Pin>, Vec<NewJob>), ControlError> {
    let (steps, target): (Vec<Step>, Target) =
        playbook::parse(&playbook.steps, &playbook.target, installed)?;
    let pins = playbook::pins(&steps, installed)?;
    let step = &steps[0];
    let digest = Some(pins[0].digest.as_str());
    let expire_after = target
        .expire_after_seconds
        .map(std::time::Duration::from_secs);
    let jobs = devices
        .iter()
        .filter(|d| target.selects(d))
        .map(|d| match plan_start(d) {
            Some((at, deadline)) => step.job(
                0,
                tenant,
                Some(&d.id),
                step.first_mode(),
                digest,
                at,
                deadline.or(expire_after.map(|e| at + e)),
            ),
            // The window closed: queued already expired, so the sweeper
            // ends it visibly instead of it being dropped.
            None => step.job(
                0,
                tenant,
                Some(&d.id),
                step.first_mode(),
                digest,
                Timestamp::now(),
                Some(Timestamp::now()),
            ),
        })
        .collect();
    Ok((pins, jobs))
}

/// What one batch of firings reads once: the installed plugins, and each
/// playbook and tenant's devices the first time a schedule names it.
#[derive(Default)]
struct BatchCache {
    /// The schedules of the batch with a run still going.
    running: std::collections::HashSet<steward_store::ScheduleId>,
    /// Compiled specs by their JSON (schedules made from one template
    /// share theirs).
    specs: HashMap<String, Arc<(ScheduleSpec, CompiledSchedule)>>,
    installed: Option<Vec<steward_store::PluginVersion>>,
    playbooks: HashMap<PlaybookId, Playbook>,
    devices: HashMap<TenantId, Vec<DeviceRef>>,
}

/// What one due schedule comes to before anything is written.
enum Prepared {
    /// A run to create.
    Fire(Firing, Vec<Pin>, Vec<NewJob>),
    /// Handled without a run (skipped by policy, or parked).
    Done,
}

/// What one scheduler tick did.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct TickReport {
    /// Runs this process started.
    pub fired: u32,
    /// Of those, runs written ahead of their firing (their jobs due at it).
    pub ahead: u32,
    /// Firings another process had already started.
    pub already_fired: u32,
    /// Firings skipped (overlap policy).
    pub skipped: u32,
    /// The tick stopped at its time budget with a full batch just fired:
    /// more schedules may be due, so the caller should tick again at once
    /// rather than after its interval.
    pub more: bool,
}

/// The control plane: the store plus the installed plugins.
#[derive(Clone)]
pub struct ControlPlane {
    store: Store,
    library: Arc<PluginLibrary>,
    fire_ahead: std::time::Duration,
}

/// How long before its time a firing is written, by default: its run and
/// jobs exist then, the jobs due at the firing, so a minute in which
/// 100,000 schedules fall due has them all written before it starts.
pub const FIRE_AHEAD: std::time::Duration = std::time::Duration::from_secs(30);

impl ControlPlane {
    /// The control plane over `store` and `library`, writing firings
    /// [`FIRE_AHEAD`] before their time.
    pub fn new(store: Store, library: Arc<PluginLibrary>) -> Self {
        Self {
            store,
            library,
            fire_ahead: FIRE_AHEAD,
        }
    }

    /// How long before its time the scheduler writes a firing (zero: at
    /// its time). See [`scheduler_tick`](Self::scheduler_tick).
    #[must_use]
    pub fn with_fire_ahead(mut self, ahead: std::time::Duration) -> Self {
        self.fire_ahead = ahead;
        self
    }

    /// The store.
    pub fn store(&self) -> &Store {
        &self.store
    }

    /// The installed plugins.
    pub fn library(&self) -> &Arc<PluginLibrary> {
        &self.library
    }

    /// Checks and stores a playbook: steps name installed plugins, their
    /// parameters match the plugins' descriptions, the target parses.
    /// Nothing is stored when anything is wrong.
    ///
    /// # Errors
    ///
    /// [`ControlError::Invalid`] naming the field, or a store error (an
    /// unknown tenant).
    pub async fn create_playbook(
        &self,
        tenant_id: Option<TenantId>,
        name: &str,
        steps: Value,
        target: Value,
    ) -> Result<Playbook, ControlError> {
        let installed = self.store.plugin_versions().await?;
        let (parsed, _) = playbook::parse(&steps, &target, &installed)?;
        for (i, step) in parsed.iter().enumerate() {
            let version = playbook::pick_version(step, &installed).ok_or_else(|| {
                ControlError::invalid(format!("steps[{i}].plugin"), "not installed")
            })?;
            let loaded = self.library.load(version).await.map_err(|e| {
                ControlError::invalid(format!("steps[{i}].plugin"), format!("{e:#}"))
            })?;
            resolve_json_params(&loaded.descriptor, &Value::Object(step.params.clone()))
                .map_err(|e| ControlError::invalid(format!("steps[{i}].params"), e.to_string()))?;
        }
        Ok(self
            .store
            .create_playbook(
                &NewPlaybook {
                    tenant_id,
                    name: name.to_owned(),
                    steps,
                    target,
                },
                Timestamp::now(),
            )
            .await?)
    }

    /// Checks and stores a schedule for a playbook. `spec` is a
    /// [`ScheduleSpec`] as JSON. Nothing is stored when anything is wrong.
    ///
    /// # Errors
    ///
    /// [`ControlError::Invalid`] naming the field (`spec.cron`,
    /// `spec.timezone`, `spec.window.end`, …, or `spec` for unknown or
    /// mistyped fields), or a store error (unknown playbook or tenant).
    pub async fn create_schedule(
        &self,
        playbook_id: &PlaybookId,
        tenant_id: Option<TenantId>,
        spec: Value,
    ) -> Result<Schedule, ControlError> {
        let (_, compiled) = compile_spec(&spec)?;
        let playbook = self
            .store
            .playbook(playbook_id)
            .await?
            .ok_or_else(|| StoreError::UnknownPlaybook(playbook_id.clone()))?;
        if tenant_id.is_none() && playbook.tenant_id.is_none() {
            return Err(ControlError::invalid(
                "tenant-id",
                "the playbook is shared by every tenant, so the schedule must name one",
            ));
        }
        if let (Some(own), Some(asked)) = (&playbook.tenant_id, &tenant_id)
            && own != asked
        {
            return Err(ControlError::invalid(
                "tenant-id",
                format!("the playbook belongs to tenant `{own}`"),
            ));
        }
        // A schedule always records its tenant, so that it can be listed
        // and guarded by tenant.
        let tenant_id = tenant_id.or_else(|| playbook.tenant_id.clone());
        let now = Utc::now();
        Ok(self
            .store
            .create_schedule(
                &NewSchedule {
                    playbook_id: playbook_id.clone(),
                    tenant_id,
                    spec,
                    next_fire_at: compiled.next_after(now).map(Timestamp::from),
                },
                Timestamp::from(now),
            )
            .await?)
    }

    /// The version every step of `playbook` runs (the run's pins) and the
    /// first step's jobs for `tenant`'s targeted devices, started when
    /// `plan_start` says.
    async fn first_jobs(
        &self,
        playbook: &Playbook,
        tenant: &TenantId,
        plan_start: impl Fn(&DeviceRef) -> Option<(Timestamp, Option<Timestamp>)>,
    ) -> Result<(Vec<Pin>, Vec<NewJob>), ControlError> {
        let installed = self.store.plugin_versions().await?;
        let devices = self.store.device_refs(tenant).await?;
        jobs_for(playbook, tenant, &installed, &devices, plan_start)
    }

    /// Starts a run of `playbook` for `tenant` now (by hand, not from a
    /// schedule).
    ///
    /// # Errors
    ///
    /// An unknown playbook or tenant, a playbook whose steps no longer
    /// check (an uninstalled plugin), or a store failure.
    pub async fn start_run(
        &self,
        playbook_id: &PlaybookId,
        tenant: Option<TenantId>,
    ) -> Result<RunId, ControlError> {
        let playbook = self
            .store
            .playbook(playbook_id)
            .await?
            .ok_or_else(|| StoreError::UnknownPlaybook(playbook_id.clone()))?;
        let tenant = tenant
            .or_else(|| playbook.tenant_id.clone())
            .ok_or_else(|| ControlError::invalid("tenant-id", "name the tenant to run for"))?;
        let now = Timestamp::now();
        let (pins, jobs) = self
            .first_jobs(&playbook, &tenant, |_| Some((now, None)))
            .await?;
        Ok(self
            .store
            .create_run(Some(playbook_id), &pins, &jobs, now)
            .await?)
    }

    /// Fires every due schedule once: a firing becomes a run with one job
    /// per targeted device, started within the schedule's window and
    /// jittered, unless another process fired it first or the overlap
    /// policy skips it.
    ///
    /// A firing up to the plane's fire-ahead (30 s by default) away is
    /// written now, its jobs due at its time, if its schedule has no run
    /// going (so the overlap policy has nothing to decide): the run and
    /// its jobs exist when the firing comes, however many schedules share
    /// it. The devices it targets and the plugins it pins are those of
    /// when it was written; disabling the schedule withdraws it.
    ///
    /// # Errors
    ///
    /// A store failure; schedules handled before it stay handled.
    pub async fn scheduler_tick(&self, now: DateTime<Utc>) -> Result<TickReport, ControlError> {
        /// How long a replica's claim on a due batch lasts: a batch fires
        /// well within it; a process that stops mid-batch delays those
        /// schedules by at most this.
        const SCHEDULE_CLAIM: std::time::Duration = std::time::Duration::from_secs(15);
        let mut report = TickReport::default();
        // Batches of due schedules until none is left (or a second has
        // gone, so the sweep and the executor get their turn): a minute in
        // which thousands fall due is worked through in one tick, not one
        // batch per tick.
        const BATCH: u32 = 500;
        let started = std::time::Instant::now();
        loop {
            // Each batch at the time it starts (the tick's time moved on by
            // the wall time since), so the runs it makes say when they were
            // made, not when the tick began.
            let now = now
                + chrono::Duration::from_std(started.elapsed()).unwrap_or(chrono::Duration::zero());
            // Claimed (on PostgreSQL) so replicas fire different batches.
            let ahead = now
                + chrono::Duration::from_std(self.fire_ahead).unwrap_or(chrono::Duration::zero());
            let due = self
                .store
                .claim_due_schedules(
                    Timestamp::from(now),
                    Timestamp::from(ahead),
                    BATCH,
                    SCHEDULE_CLAIM,
                )
                .await?;
            let full = due.len() == BATCH as usize;
            let ids: Vec<steward_store::ScheduleId> = due.iter().map(|s| s.id.clone()).collect();
            if let Err(e) = self.fire_batch(due, now, &mut report).await {
                // What was not fired is due again at once, not when the
                // claims run out (if the store can be told).
                let ids: Vec<&steward_store::ScheduleId> = ids.iter().collect();
                if let Err(release) = self.store.release_schedules(&ids).await {
                    tracing::warn!(error = %release, "giving back schedule claims failed; they run out in {SCHEDULE_CLAIM:?}");
                }
                return Err(e);
            }
            if !full {
                break;
            }
            if started.elapsed() > std::time::Duration::from_secs(1) {
                report.more = true;
                break;
            }
        }
        Ok(report)
    }

    async fn fire_batch(
        &self,
        due: Vec<Schedule>,
        now: DateTime<Utc>,
        report: &mut TickReport,
    ) -> Result<(), ControlError> {
        let ids: Vec<&steward_store::ScheduleId> = due.iter().map(|s| &s.id).collect();
        let mut cache = BatchCache {
            running: self.store.schedules_with_running_runs(&ids).await?,
            ..BatchCache::default()
        };
        let mut firings = Vec::new();
        for schedule in due {
            match self.prepare(&schedule, now, &mut cache, report).await {
                Ok(Prepared::Fire(firing, pins, jobs)) => firings.push((firing, pins, jobs)),
                Ok(Prepared::Done) => {}
                Err(ControlError::Store(e)) => return Err(e.into()),
                Err(e) => {
                    // A schedule that no longer checks (its playbook's plugin
                    // was removed): park it until someone fixes it.
                    tracing::error!(schedule = %schedule.id, error = %e, "schedule cannot fire; disabled until fixed");
                    self.store
                        .skip_firing(&Firing {
                            schedule_id: schedule.id.clone(),
                            fire_at: Timestamp::from(now),
                            next_fire_at: None,
                        })
                        .await?;
                }
            }
        }
        // The runs, their jobs and their schedules' next firings in a
        // transaction per group of about 5,000 jobs, so one write never
        // holds the store for long.
        let mut group = Vec::new();
        let mut jobs_in_group = 0;
        for firing in firings {
            jobs_in_group += firing.2.len();
            group.push(firing);
            if jobs_in_group >= 5_000 {
                self.create_firings(std::mem::take(&mut group), now, report)
                    .await?;
                jobs_in_group = 0;
            }
        }
        if !group.is_empty() {
            self.create_firings(group, now, report).await?;
        }
        Ok(())
    }

    /// Creates the runs of `firings` in one transaction (one by one when
    /// the store refuses the whole).
    async fn create_firings(
        &self,
        firings: Vec<(Firing, Vec<Pin>, Vec<NewJob>)>,
        now: DateTime<Utc>,
        report: &mut TickReport,
    ) -> Result<(), ControlError> {
        let created = match self
            .store
            .create_runs_for_firings(&firings, Timestamp::from(now))
            .await
        {
            Ok(created) => created,
            Err(e) if e.is_unavailable() => return Err(e.into()),
            // One firing the store refuses does not hold the batch back:
            // each on its own, and one refused alone is parked.
            Err(e) => {
                tracing::warn!(error = %e, batch = firings.len(), "a batch of firings was refused; creating them one by one");
                let mut created = Vec::with_capacity(firings.len());
                for (firing, pins, jobs) in &firings {
                    match self
                        .store
                        .create_run_for_firing(firing, pins, jobs, Timestamp::from(now))
                        .await
                    {
                        Ok(run) => created.push(run),
                        Err(e) if e.is_unavailable() => return Err(e.into()),
                        Err(e) => {
                            tracing::error!(schedule = %firing.schedule_id, error = %e, "schedule cannot fire; disabled until fixed");
                            self.store
                                .skip_firing(&Firing {
                                    next_fire_at: None,
                                    ..firing.clone()
                                })
                                .await?;
                            created.push(None);
                        }
                    }
                }
                created
            }
        };
        for ((firing, _, jobs), run) in firings.iter().zip(created) {
            match run {
                Some(run) if firing.fire_at > Timestamp::from(now) => {
                    report.fired += 1;
                    report.ahead += 1;
                    tracing::info!(schedule = %firing.schedule_id, %run, jobs = jobs.len(), fire_at = %firing.fire_at, "schedule fired ahead of its time");
                }
                Some(run) => {
                    report.fired += 1;
                    tracing::info!(schedule = %firing.schedule_id, %run, jobs = jobs.len(), "schedule fired");
                }
                None => report.already_fired += 1,
            }
        }
        Ok(())
    }

    /// What `schedule` comes to now: a firing to create, or handled
    /// (skipped by policy, recorded here). A schedule whose next firing
    /// is still ahead (claimed to be written ahead) is decided as at that
    /// firing.
    async fn prepare(
        &self,
        schedule: &Schedule,
        now: DateTime<Utc>,
        cache: &mut BatchCache,
        report: &mut TickReport,
    ) -> Result<Prepared, ControlError> {
        let now = schedule
            .next_fire_at
            .map(Timestamp::to_utc)
            .filter(|at| *at > now)
            .unwrap_or(now);
        let key = schedule.spec.to_string();
        let compiled_spec = match cache.specs.get(&key) {
            Some(c) => c.clone(),
            None => {
                let c = Arc::new(compile_spec(&schedule.spec)?);
                cache.specs.insert(key, c.clone());
                c
            }
        };
        let (spec, compiled) = &*compiled_spec;
        let next = compiled.next_after(now).map(Timestamp::from);
        // What is due counts from the last firing or, for a schedule that
        // never fired, from just before the firing the store holds for it:
        // one reached late (a busy scheduler, a restart) is a misfire the
        // policy decides, never silently a skip to the next day.
        let since = schedule.last_fired_at.or_else(|| {
            schedule
                .next_fire_at
                .filter(|t| t.to_utc() <= now)
                .map(|t| Timestamp::from_millis(t.as_millis() - 1))
        });
        let Some(firing) = compiled.due(since.map(Timestamp::to_utc), now) else {
            if schedule.next_fire_at.is_some_and(|t| t.to_utc() <= now) {
                tracing::warn!(
                    schedule = %schedule.id,
                    due_at = ?schedule.next_fire_at,
                    "a missed firing is dropped: the schedule's misfire policy is `skip`"
                );
            }
            self.store
                .skip_firing(&Firing {
                    schedule_id: schedule.id.clone(),
                    fire_at: Timestamp::from(now),
                    next_fire_at: next,
                })
                .await?;
            report.skipped += 1;
            return Ok(Prepared::Done);
        };
        let handled = Firing {
            schedule_id: schedule.id.clone(),
            fire_at: Timestamp::from(firing.scheduled),
            next_fire_at: next,
        };
        if !compiled.should_fire(cache.running.contains(&schedule.id)) {
            tracing::info!(schedule = %schedule.id, "previous run still going; firing skipped");
            self.store.skip_firing(&handled).await?;
            report.skipped += 1;
            return Ok(Prepared::Done);
        }
        if !cache.playbooks.contains_key(&schedule.playbook_id) {
            let playbook = self
                .store
                .playbook(&schedule.playbook_id)
                .await?
                .ok_or_else(|| StoreError::UnknownPlaybook(schedule.playbook_id.clone()))?;
            cache
                .playbooks
                .insert(schedule.playbook_id.clone(), playbook);
        }
        let playbook = &cache.playbooks[&schedule.playbook_id];
        let tenant = schedule
            .tenant_id
            .clone()
            .or_else(|| playbook.tenant_id.clone())
            .ok_or_else(|| ControlError::invalid("tenant-id", "schedule names no tenant"))?;
        if cache.installed.is_none() {
            cache.installed = Some(self.store.plugin_versions().await?);
        }
        if !cache.devices.contains_key(&tenant) {
            let devices = self.store.device_refs(&tenant).await?;
            cache.devices.insert(tenant.clone(), devices);
        }
        let expire = spec.window_miss == WindowMiss::Expire;
        let (pins, jobs) = jobs_for(
            playbook,
            &tenant,
            cache.installed.as_deref().unwrap_or_default(),
            &cache.devices[&tenant],
            |d| match compiled.start_at(&firing, d.id.as_str()) {
                StartDecision::Start { at, deadline } => Some((
                    Timestamp::from(at),
                    deadline.filter(|_| expire).map(Timestamp::from),
                )),
                StartDecision::Expired => None,
            },
        )?;
        if firing.catch_up {
            tracing::info!(schedule = %schedule.id, "a missed firing fires once now (misfire `run-once`)");
        }
        Ok(Prepared::Fire(handled, pins, jobs))
    }

    /// Puts expired leases back in the queue (a job out of attempts ends
    /// as timed out, and the next step follows it when its step says
    /// `continue`), expires jobs past their expiry, and finishes runs whose
    /// jobs have all ended. Returns what reclaiming leases did (the jobs
    /// it ended, to alert on).
    ///
    /// # Errors
    ///
    /// A store failure.
    pub async fn sweep(&self) -> Result<Reclaimed, ControlError> {
        let now = Timestamp::now();
        // The steps of the runs whose jobs end now, to enqueue what follows
        // them in the transaction that ends them. A run not loaded here
        // (its lease ran out in between) is left for the next sweep.
        let mut plans: HashMap<RunId, (Vec<Step>, Vec<Pin>)> = HashMap::new();
        for run in self.store.runs_with_leases_ending(now).await? {
            // Unreadable steps: nothing can follow.
            let steps = playbook::run_steps(&self.store, &run)
                .await?
                .unwrap_or_default();
            plans.insert(run.id, (steps, run.pins.unwrap_or_default()));
        }
        let then = |job: &Job| {
            plans
                .get(&job.run_id)
                .map(|(steps, pins)| playbook::follow_ups(steps, pins, job, false, false, now))
        };
        let reclaimed = self.store.reclaim_expired(now, &then).await?;
        if reclaimed != Reclaimed::default() {
            tracing::warn!(
                requeued = reclaimed.requeued,
                timed_out = reclaimed.timed_out,
                followed = reclaimed.followed,
                "reclaimed expired leases"
            );
        }
        self.store.expire_due(now).await?;
        self.store.finish_settled_runs(now).await?;
        Ok(reclaimed)
    }
}
