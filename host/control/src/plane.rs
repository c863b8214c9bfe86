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

/// What one scheduler tick did.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct TickReport {
    /// Runs this process started.
    pub fired: u32,
    /// Firings another process had already started.
    pub already_fired: u32,
    /// Firings skipped (overlap policy).
    pub skipped: u32,
}

/// The control plane: the store plus the installed plugins.
#[derive(Clone)]
pub struct ControlPlane {
    store: Store,
    library: Arc<PluginLibrary>,
}

impl ControlPlane {
    /// The control plane over `store` and `library`.
    pub fn new(store: Store, library: Arc<PluginLibrary>) -> Self {
        Self { store, library }
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
        let (steps, target): (Vec<Step>, Target) =
            playbook::parse(&playbook.steps, &playbook.target, &installed)?;
        let pins = playbook::pins(&steps, &installed)?;
        let step = &steps[0];
        let digest = Some(pins[0].digest.as_str());
        let expire_after = target
            .expire_after_seconds
            .map(std::time::Duration::from_secs);
        let jobs = self
            .store
            .device_refs(tenant)
            .await?
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
                // The window closed: queued already expired, so the
                // sweeper ends it visibly instead of it being dropped.
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
    /// # Errors
    ///
    /// A store failure; schedules handled before it stay handled.
    pub async fn scheduler_tick(&self, now: DateTime<Utc>) -> Result<TickReport, ControlError> {
        let mut report = TickReport::default();
        // Batches of due schedules until none is left (or a second has
        // gone, so the sweep and the executor get their turn): a minute in
        // which thousands fall due is worked through in one tick, not one
        // batch per tick.
        const BATCH: u32 = 100;
        let started = std::time::Instant::now();
        loop {
            let due = self
                .store
                .due_schedules(Timestamp::from(now), BATCH)
                .await?;
            let full = due.len() == BATCH as usize;
            self.fire_batch(due, now, &mut report).await?;
            if !full || started.elapsed() > std::time::Duration::from_secs(1) {
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
        for schedule in due {
            match self.fire(&schedule, now).await {
                Ok(Some(true)) => report.fired += 1,
                Ok(Some(false)) => report.already_fired += 1,
                Ok(None) => report.skipped += 1,
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
        Ok(())
    }

    /// `Some(true)`: fired; `Some(false)`: another process fired it;
    /// `None`: nothing fired (nothing due, or skipped by policy).
    async fn fire(
        &self,
        schedule: &Schedule,
        now: DateTime<Utc>,
    ) -> Result<Option<bool>, ControlError> {
        let (spec, compiled) = compile_spec(&schedule.spec)?;
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
            return Ok(None);
        };
        let handled = Firing {
            schedule_id: schedule.id.clone(),
            fire_at: Timestamp::from(firing.scheduled),
            next_fire_at: next,
        };
        if !compiled.should_fire(self.store.schedule_has_running_run(&schedule.id).await?) {
            tracing::info!(schedule = %schedule.id, "previous run still going; firing skipped");
            self.store.skip_firing(&handled).await?;
            return Ok(None);
        }
        let playbook = self
            .store
            .playbook(&schedule.playbook_id)
            .await?
            .ok_or_else(|| StoreError::UnknownPlaybook(schedule.playbook_id.clone()))?;
        let tenant = schedule
            .tenant_id
            .clone()
            .or_else(|| playbook.tenant_id.clone())
            .ok_or_else(|| ControlError::invalid("tenant-id", "schedule names no tenant"))?;
        let expire = spec.window_miss == WindowMiss::Expire;
        let (pins, jobs) = self
            .first_jobs(&playbook, &tenant, |d| {
                match compiled.start_at(&firing, d.id.as_str()) {
                    StartDecision::Start { at, deadline } => Some((
                        Timestamp::from(at),
                        deadline.filter(|_| expire).map(Timestamp::from),
                    )),
                    StartDecision::Expired => None,
                }
            })
            .await?;
        let fired = self
            .store
            .create_run_for_firing(&handled, &pins, &jobs, Timestamp::from(now))
            .await?;
        if let Some(run) = &fired {
            tracing::info!(schedule = %schedule.id, %run, jobs = jobs.len(), catch_up = firing.catch_up, "schedule fired");
        }
        Ok(Some(fired.is_some()))
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
