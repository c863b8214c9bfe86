//! The executor: claims jobs from the store, runs each through the plugin
//! runtime against its device, and records what happened.
//!
//! Three loops share one worker id:
//!
//! - **claim** takes up to `claim_batch` jobs at a time while fewer than
//!   `max_in_flight` are running, and starts a task per job;
//! - **complete** collects finished jobs and records them in batches (one
//!   fenced [`Store::complete`] per batch), then their audit events and
//!   alerts;
//! - **heartbeat** renews the leases of every job not yet recorded, and
//!   stops any job whose lease was lost (or that could not be renewed
//!   before it ran out), so a reclaimed job never has two live attempts.
//!
//! A job runs as: load the pinned plugin version, check its parameters,
//! build the device with store-backed tickets and a snapshot of its plugin
//! state, then by mode: `check`; `plan` (check, then remediate in plan
//! mode); `remediate` (check, mark the attempt as applying, remediate with
//! the store-backed mutation journal, so calls an earlier attempt applied
//! are replayed, not repeated). A remediation that an admin approved first
//! re-plans and refuses to apply when the device no longer matches the
//! approved plan. The playbook's next step, or the approval, is enqueued
//! with the completion, in its transaction.
//!
//! Failures are classified for the queue: a plugin that reports an error
//! ends the job as failed (never retried blindly), except a provider that
//! is unavailable, which is transient; a run past its deadline is a
//! timeout; traps, limits and bad parameters are permanent.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use chrono::Utc;
use serde_json::{Map, Value, json};
use tokio::sync::{OwnedSemaphorePermit, Semaphore, mpsc, watch};
use tokio::task::AbortHandle;

use super::alerts::{
    Alert, Alerter, CheckResult, CriticalFinding, DeliveryStatus, Dispatcher, JobEnd, Observation,
    RemediationResult, Undelivered,
};
use super::plane::compile_spec;
use super::playbook::{self, Step};
use super::plugins::PluginLibrary;
use super::providers::{CollectAudit, DeviceProviders, SnapshotState, StoreJournal, StoreTickets};
use super::schedule::{Firing as ScheduleFiring, Schedule, StartDecision};
use steward_runtime::audit::{AuditEvent as RunAuditEvent, AuditOutcome};
use steward_runtime::bindings::types::Severity as WitSeverity;
use steward_runtime::bindings::types::{
    Change, Finding, HostError, Outcome as ChangeOutcomeWit, PluginError, RunMode,
};
use steward_runtime::{Journal, LogLine, RunError, RunSpec, resolve_json_params};
use steward_store::{
    self as store, AuditEvent, ChangeOutcome, Completion, DeviceId, Failure, FailureKind, Job,
    JobId, JobMode, NewChange, NewFinding, NewJob, NewLog, Outcome, Pin, PluginVersion, RunId,
    Severity, Store, Timestamp,
};

/// How an executor runs.
#[derive(Debug, Clone)]
pub struct ExecutorConfig {
    /// This worker's id in leases; unique per process.
    pub worker_id: String,
    /// Jobs running at once.
    pub max_in_flight: usize,
    /// Jobs taken per claim.
    pub claim_batch: usize,
    /// Jobs recorded per completion batch.
    pub complete_batch: usize,
    /// Lease length; renewed every third of it.
    pub lease: Duration,
    /// At most how long to wait before claiming again when nothing was
    /// claimable (the executor wakes sooner when the next queued job falls
    /// due, or new work is committed).
    pub idle_poll: Duration,
    /// How often undelivered alerts are looked for (and at start).
    pub redeliver_every: Duration,
}

impl ExecutorConfig {
    /// Defaults for worker `worker_id`: 1,024 in flight, claims of 512
    /// (more than the plugin instances: a claimed job waits for one
    /// without its timeout running, and the next batch is ready when an
    /// instance frees),
    /// completions of 512, 30-second leases, 1 s idle polls (new jobs wake
    /// the executor at once: [`Store::jobs_ready`]; the poll finds jobs
    /// that become due with time), undelivered alerts looked for every
    /// 30 s.
    pub fn new(worker_id: impl Into<String>) -> Self {
        Self {
            worker_id: worker_id.into(),
            max_in_flight: 1024,
            claim_batch: 512,
            complete_batch: 512,
            lease: Duration::from_secs(30),
            idle_poll: Duration::from_secs(1),
            redeliver_every: Duration::from_secs(30),
        }
    }
}

/// Alerting: the state machine and the webhook dispatcher.
pub struct Alerts {
    /// Decides what fires and resolves.
    pub alerter: Alerter,
    /// Delivers to webhooks.
    pub dispatcher: Dispatcher,
}

impl Alerts {
    /// Queues `alert` for delivery; once every matching webhook took it or
    /// refused it for good, marks it delivered. Otherwise (a full queue, a
    /// webhook down through every retry, a stop first) it stays
    /// undelivered for [`redeliver`](Self::redeliver), which leaves out
    /// the webhooks it reached.
    pub fn send(self: &Arc<Self>, alert: Alert) {
        self.send_skipping(alert, Vec::new());
    }

    /// [`send`](Self::send) to the matching webhooks not in `reached`.
    fn send_skipping(self: &Arc<Self>, alert: Alert, reached: Vec<String>) {
        let pending = match self.dispatcher.dispatch_skipping(alert.clone(), reached) {
            Ok(pending) => pending,
            Err(e) => {
                tracing::warn!(error = %e, "an alert could not be queued; it stays undelivered");
                return;
            }
        };
        let alerts = self.clone();
        tokio::spawn(async move {
            let Some(reports) = pending.outcome().await else {
                return;
            };
            let (failed, ended): (Vec<_>, Vec<_>) = reports
                .into_iter()
                .partition(|r| r.status == DeliveryStatus::Failed);
            let marked = if failed.is_empty() {
                alerts.alerter.delivered(&alert).await
            } else {
                tracing::warn!(alert = %alert.id, event = %alert.event,
                    webhooks = ?failed.iter().map(|r| &r.webhook_id).collect::<Vec<_>>(),
                    "an alert was not delivered to every webhook; it will be sent to those again");
                let ended: Vec<String> = ended.into_iter().map(|r| r.webhook_id).collect();
                if ended.is_empty() {
                    return;
                }
                alerts.alerter.reached(&alert, &ended).await
            };
            if let Err(e) = marked {
                tracing::warn!(error = %e, alert = %alert.id,
                    "recording an alert's delivery failed; it may be sent again");
            }
        });
    }

    /// Sends again up to `limit` alert events left undelivered (by a crash
    /// of this or another process, a full queue or a webhook that stayed
    /// down) whose hold has passed, to the webhooks they have not reached;
    /// returns how many.
    pub async fn redeliver(self: &Arc<Self>, limit: usize) -> usize {
        match self.alerter.undelivered(limit).await {
            Ok(events) => {
                let n = events.len();
                for Undelivered { alert, reached } in events {
                    tracing::info!(alert = %alert.id, event = %alert.event,
                        reached = reached.len(), "redelivering an alert");
                    self.send_skipping(alert, reached);
                }
                n
            }
            Err(e) => {
                tracing::warn!(error = %e, "reading undelivered alerts failed");
                0
            }
        }
    }
}

/// Undelivered alerts taken per pass of the redelivery loop.
const REDELIVER_BATCH: usize = 100;

/// Gives the alerter the observations left in the alert inbox (by a crash
/// after a job's commit, or a step that failed), then sends undelivered
/// alerts again: at start and every `every`, until `stop`.
async fn redeliver_loop(
    inner: Arc<Inner>,
    alerts: Arc<Alerts>,
    every: Duration,
    mut stop: watch::Receiver<bool>,
) {
    loop {
        while inner.reobserve(&alerts, REDELIVER_BATCH).await == REDELIVER_BATCH {}
        while alerts.redeliver(REDELIVER_BATCH).await == REDELIVER_BATCH {}
        tokio::select! {
            _ = tokio::time::sleep(every) => {}
            _ = stop.changed() => return,
        }
    }
}

/// Runs jobs from the store. Cheap to clone.
#[derive(Clone)]
pub struct Executor {
    inner: Arc<Inner>,
}

struct Inner {
    config: ExecutorConfig,
    store: Store,
    library: Arc<PluginLibrary>,
    devices: Arc<dyn DeviceProviders>,
    alerts: Option<Arc<Alerts>>,
    journal: Arc<dyn Journal>,
    caches: Mutex<Caches>,
    in_flight: Mutex<HashMap<JobId, InFlight>>,
    /// One permit per plugin instance: a job runs (and its timeout counts)
    /// once it holds one; before that it only waits.
    running: Semaphore,
    /// Turns true when the executor stops claiming: a claimed job still
    /// waiting for an instance is given back instead of run, so stopping
    /// waits for the jobs running, not for every job claimed.
    stopping: watch::Sender<bool>,
}

/// A claimed job this worker holds.
struct InFlight {
    attempt: u32,
    /// Its task, to stop it when the lease is lost.
    task: Option<AbortHandle>,
    /// When it got an instance and began running: its timeout (and the
    /// cap on its lease) counts from here, not from the claim.
    running_since: Option<Timestamp>,
}

#[derive(Default)]
struct Caches {
    versions: Option<(Instant, Arc<Vec<PluginVersion>>)>,
    runs: HashMap<RunId, Arc<RunPlan>>,
    /// Each device's providers (or why it has none), refreshed from the
    /// store every [`CACHE_TTL`].
    devices: HashMap<DeviceId, (Instant, Result<steward_runtime::device::Device, String>)>,
}

/// What a run's jobs need to know about its playbook and schedule.
struct RunPlan {
    /// The playbook's steps; empty for a run started without a playbook.
    steps: Vec<Step>,
    /// The component each step runs, pinned when the run was created;
    /// empty for runs from before pinning (their later steps run the latest
    /// installed version).
    pins: Vec<Pin>,
    /// For a run a schedule with a maintenance window fired: the schedule
    /// and the firing, to keep jobs inside the window.
    window: Option<(Schedule, ScheduleFiring)>,
}

/// A finished job, on its way to the store.
struct Done {
    job: Job,
    record: Record,
    observation: Option<Observation>,
    audit: Vec<RunAuditEvent>,
    digest: Option<String>,
    _permit: OwnedSemaphorePermit,
}

enum Record {
    Complete(Completion),
    Fail(Failure),
    /// The lease was lost before applying: nothing to record.
    Lost,
    /// The job's window has closed, or the server is stopping before it
    /// started: back to the queue until `Some` time, or expired.
    Defer(Option<Timestamp>, String),
}

const CACHE_TTL: Duration = Duration::from_secs(10);

impl Executor {
    /// An executor over `store`, running plugins from `library` against
    /// devices from `devices`, alerting through `alerts` if given.
    pub fn new(
        config: ExecutorConfig,
        store: Store,
        library: Arc<PluginLibrary>,
        devices: Arc<dyn DeviceProviders>,
        alerts: Option<Arc<Alerts>>,
    ) -> Self {
        Self {
            inner: Arc::new(Inner {
                journal: Arc::new(StoreJournal(store.clone())),
                config,
                store,
                devices,
                alerts,
                caches: Mutex::default(),
                in_flight: Mutex::default(),
                running: Semaphore::new(library.runtime().max_instances().max(1)),
                stopping: watch::Sender::new(false),
                library,
            }),
        }
    }

    /// Claims and runs jobs until `shutdown` turns true, then finishes the
    /// jobs in flight and records them.
    pub async fn run(&self, mut shutdown: watch::Receiver<bool>) {
        let inner = self.inner.clone();
        let (tx, rx) = mpsc::channel::<Done>(inner.config.max_in_flight.max(1) * 2);
        let completer = tokio::spawn(complete_loop(inner.clone(), rx));
        let (hb_stop_tx, hb_stop) = watch::channel(false);
        let heartbeat = tokio::spawn(heartbeat_loop(inner.clone(), hb_stop.clone()));
        let redeliver = inner.alerts.clone().map(|alerts| {
            tokio::spawn(redeliver_loop(
                inner.clone(),
                alerts,
                inner.config.redeliver_every,
                hb_stop.clone(),
            ))
        });
        let permits = Arc::new(Semaphore::new(inner.config.max_in_flight.max(1)));
        loop {
            if *shutdown.borrow() {
                break;
            }
            let first = tokio::select! {
                p = permits.clone().acquire_owned() => p.expect("semaphore never closes"),
                _ = shutdown.changed() => continue,
            };
            let mut held = vec![first];
            while held.len() < inner.config.claim_batch.max(1) {
                match permits.clone().try_acquire_owned() {
                    Ok(p) => held.push(p),
                    Err(_) => break,
                }
            }
            let claimed = inner
                .store
                .claim(
                    &inner.config.worker_id,
                    held.len(),
                    inner.config.lease,
                    Timestamp::now(),
                )
                .await;
            let jobs = match claimed {
                Ok(jobs) => jobs,
                Err(e) => {
                    tracing::warn!(error = %e, "claiming jobs failed; retrying");
                    drop(held);
                    tokio::time::sleep(inner.config.idle_poll).await;
                    continue;
                }
            };
            if jobs.is_empty() {
                drop(held);
                // Until the next queued job falls due (a firing written
                // ahead, a retry), at most a poll.
                let now = Timestamp::now();
                let wait = match inner.store.next_due_after(now).await {
                    Ok(Some(due)) => Duration::from_millis(
                        u64::try_from(due.as_millis() - now.as_millis()).unwrap_or(0),
                    )
                    .clamp(Duration::from_millis(1), inner.config.idle_poll),
                    Ok(None) => inner.config.idle_poll,
                    Err(e) => {
                        tracing::warn!(error = %e, "looking for the next due job failed");
                        inner.config.idle_poll
                    }
                };
                tokio::select! {
                    _ = tokio::time::sleep(wait) => {}
                    // New work (of any replica, on PostgreSQL) starts now,
                    // not at the next poll.
                    _ = inner.store.jobs_ready() => {}
                    _ = shutdown.changed() => {}
                }
                continue;
            }
            inner.prepare(&jobs).await;
            let states = inner.load_states(&jobs).await;
            let mut states = states.unwrap_or_else(|e| {
                tracing::warn!(error = %e, "loading plugin state failed");
                HashMap::new()
            });
            for (job, permit) in jobs.into_iter().zip(held.drain(..)) {
                let state = states
                    .remove(&(job.plugin.clone(), subject(&job).to_owned()))
                    .unwrap_or_default();
                inner
                    .in_flight
                    .lock()
                    .expect("in-flight lock poisoned")
                    .insert(
                        job.id.clone(),
                        InFlight {
                            attempt: job.attempt,
                            task: None,
                            running_since: None,
                        },
                    );
                let id = job.id.clone();
                let task_inner = inner.clone();
                let tx = tx.clone();
                let handle = tokio::spawn(async move {
                    let done = execute(&task_inner, job, state, permit).await;
                    let _ = tx.send(done).await;
                });
                if let Some(entry) = inner
                    .in_flight
                    .lock()
                    .expect("in-flight lock poisoned")
                    .get_mut(&id)
                {
                    entry.task = Some(handle.abort_handle());
                }
            }
        }
        // Jobs claimed but not started go back to the queue (due now, the
        // attempt not counted); the running ones finish.
        inner.stopping.send_replace(true);
        drop(tx);
        let _ = completer.await;
        let _ = hb_stop_tx.send(true);
        let _ = heartbeat.await;
        if let Some(redeliver) = redeliver {
            let _ = redeliver.await;
        }
    }
}

impl Executor {
    /// Alerts on jobs the sweeper ended because their lease ran out with
    /// no attempt left (their worker died or hung): each is a
    /// `job-timed-out` observation of its device and plugin, at its
    /// timeout. Without alerting configured, nothing happens.
    pub async fn alert_timed_out(&self, jobs: &[Job]) {
        let Some(alerts) = &self.inner.alerts else {
            return;
        };
        let mut done = Vec::new();
        for job in jobs {
            let Some(o) = timed_out_observation(job) else {
                continue;
            };
            self.inner
                .observe_recorded(alerts, &job.id, job.attempt, &o, &mut done)
                .await;
        }
        self.inner.inbox_done(&done).await;
    }
}

/// The observation of a job the sweeper timed out; `None` for a job
/// without a device.
fn timed_out_observation(job: &Job) -> Option<Observation> {
    let mut o = observation(job)?;
    o.job = JobEnd::TimedOut { limit: job.timeout };
    Some(o)
}

impl Inner {
    /// Gives `o`, the observation of `job`'s `attempt` written to the
    /// alert inbox with the job's end, to the alerter, and adds the entry
    /// to `done` once every step of it was recorded. A step that failed
    /// leaves it in the inbox for [`reobserve`](Self::reobserve).
    async fn observe_recorded(
        &self,
        alerts: &Arc<Alerts>,
        job: &JobId,
        attempt: u32,
        o: &Observation,
        done: &mut Vec<(JobId, u32)>,
    ) {
        let (fired, complete) = alerts.alerter.observe_all(o).await;
        for alert in fired {
            alerts.send(alert);
        }
        if complete {
            done.push((job.clone(), attempt));
        }
    }

    /// Removes the alert-inbox entries the alerter took, in one
    /// transaction.
    async fn inbox_done(&self, done: &[(JobId, u32)]) {
        if let Err(e) = self.store.alert_inbox_done_all(done).await {
            tracing::warn!(error = %e, entries = done.len(),
                "removing observations from the alert inbox failed; they will be observed again");
        }
    }

    /// Observes up to `limit` entries of the alert inbox whose hold has
    /// passed: left by a process that crashed after a job's commit, or by
    /// an alert step that failed. Returns how many were taken.
    async fn reobserve(&self, alerts: &Arc<Alerts>, limit: usize) -> usize {
        let due = match self
            .store
            .alert_inbox_due(Timestamp::now(), store::INBOX_HOLD, limit)
            .await
        {
            Ok(due) => due,
            Err(e) => {
                tracing::warn!(error = %e, "reading the alert inbox failed");
                return 0;
            }
        };
        let mut done = Vec::new();
        for entry in &due {
            let o = match &entry.observation {
                Some(json) => serde_json::from_str::<Observation>(json)
                    .map_err(|e| {
                        tracing::error!(job = %entry.job_id, error = %e,
                        "an observation in the alert inbox does not parse; it is dropped")
                    })
                    .ok(),
                None => match self.store.job(&entry.job_id).await {
                    Ok(job) => job.as_ref().and_then(timed_out_observation),
                    Err(e) => {
                        tracing::warn!(job = %entry.job_id, error = %e,
                            "reading a timed-out job for its alert failed");
                        continue;
                    }
                },
            };
            match o {
                Some(o) => {
                    tracing::info!(job = %entry.job_id, attempt = entry.attempt,
                        "observing a job whose alerts were left undone");
                    self.observe_recorded(alerts, &entry.job_id, entry.attempt, &o, &mut done)
                        .await;
                }
                None => {
                    if let Err(e) = self
                        .store
                        .alert_inbox_done(&entry.job_id, entry.attempt)
                        .await
                    {
                        tracing::warn!(error = %e, "removing an alert-inbox entry failed");
                    }
                }
            }
        }
        self.inbox_done(&done).await;
        due.len()
    }
}

/// A fresh observation of `job` ending now, for alerting; `None` for a job
/// without a device.
fn observation(job: &Job) -> Option<Observation> {
    job.device_id.as_ref().map(|d| {
        Observation::new(
            job.tenant_id.as_str(),
            d.as_str(),
            job.plugin.as_str(),
            job.run_id.as_str(),
            job.id.as_str(),
            Utc::now(),
        )
    })
}

fn subject(job: &Job) -> &str {
    job.device_id
        .as_ref()
        .map_or(job.tenant_id.as_str(), DeviceId::as_str)
}

impl Inner {
    async fn load_states(
        &self,
        jobs: &[Job],
    ) -> store::Result<HashMap<(String, String), BTreeMap<String, String>>> {
        let mut by_plugin: HashMap<&str, HashSet<&str>> = HashMap::new();
        for job in jobs {
            by_plugin
                .entry(&job.plugin)
                .or_default()
                .insert(subject(job));
        }
        let mut out = HashMap::new();
        for (plugin, subjects) in by_plugin {
            let subjects: Vec<&str> = subjects.into_iter().collect();
            for (subject, values) in self.store.plugin_state(plugin, &subjects).await? {
                out.insert((plugin.to_owned(), subject), values);
            }
        }
        Ok(out)
    }

    async fn versions(&self, refresh: bool) -> anyhow::Result<Arc<Vec<PluginVersion>>> {
        if !refresh
            && let Some((at, v)) = &self.caches.lock().expect("cache lock poisoned").versions
            && at.elapsed() < CACHE_TTL
        {
            return Ok(v.clone());
        }
        let versions = Arc::new(self.store.plugin_versions().await?);
        self.caches.lock().expect("cache lock poisoned").versions =
            Some((Instant::now(), versions.clone()));
        Ok(versions)
    }

    async fn version_for(&self, job: &Job) -> anyhow::Result<PluginVersion> {
        for refresh in [false, true] {
            let versions = self.versions(refresh).await?;
            let found = match &job.plugin_digest {
                Some(d) => versions
                    .iter()
                    .find(|v| v.plugin == job.plugin && &v.digest == d),
                None => versions
                    .iter()
                    .filter(|v| v.plugin == job.plugin)
                    .max_by_key(|v| v.installed_at),
            };
            if let Some(v) = found {
                return Ok(v.clone());
            }
        }
        anyhow::bail!(
            "plugin `{}`{} is not installed",
            job.plugin,
            job.plugin_digest
                .as_ref()
                .map(|d| format!(" ({d})"))
                .unwrap_or_default()
        )
    }

    async fn run_plan(&self, run_id: &RunId) -> anyhow::Result<Arc<RunPlan>> {
        if let Some(p) = self
            .caches
            .lock()
            .expect("cache lock poisoned")
            .runs
            .get(run_id)
        {
            return Ok(p.clone());
        }
        let run = self
            .store
            .run(run_id)
            .await?
            .ok_or_else(|| anyhow::anyhow!("run `{run_id}` does not exist"))?;
        let steps = playbook::run_steps(&self.store, &run).await?.map_err(|e| {
            anyhow::anyhow!(
                "playbook `{}` has unreadable steps: {e}",
                run.playbook_id.as_ref().map_or("", |id| id.as_str())
            )
        })?;
        let mut window = None;
        if let (Some(schedule_id), Some(fire_at)) = (&run.schedule_id, run.fire_at)
            && let Some(schedule) = self.store.schedule(schedule_id).await?
            && let Ok((spec, compiled)) = compile_spec(&schedule.spec)
            && spec.window.is_some()
        {
            window = Some((
                compiled,
                ScheduleFiring {
                    scheduled: fire_at.to_utc(),
                    released: run.created_at.to_utc(),
                    catch_up: false,
                },
            ));
        }
        let plan = Arc::new(RunPlan {
            steps,
            pins: run.pins.unwrap_or_default(),
            window,
        });
        let mut caches = self.caches.lock().expect("cache lock poisoned");
        if caches.runs.len() > 10_000 {
            caches.runs.clear();
        }
        caches.runs.insert(run_id.clone(), plan.clone());
        Ok(plan)
    }

    /// Loads, once per claimed batch, what its jobs look up: plugin
    /// versions, their runs' playbooks, their devices' providers (so
    /// jobs started together do not each query the store for them).
    async fn prepare(&self, jobs: &[Job]) {
        if let Err(e) = self.versions(false).await {
            tracing::warn!(error = %e, "loading plugin versions failed");
        }
        let runs: HashSet<&RunId> = jobs.iter().map(|j| &j.run_id).collect();
        for run in runs {
            if let Err(e) = self.run_plan(run).await {
                tracing::warn!(%run, error = %e, "loading a run's playbook failed");
            }
        }
        let stale: Vec<&str> = {
            let caches = self.caches.lock().expect("cache lock poisoned");
            let mut seen = HashSet::new();
            jobs.iter()
                .filter_map(|j| j.device_id.as_ref())
                .filter(|d| seen.insert(*d))
                .filter(|d| {
                    caches
                        .devices
                        .get(*d)
                        .is_none_or(|(at, _)| at.elapsed() >= CACHE_TTL)
                })
                .map(DeviceId::as_str)
                .collect()
        };
        if stale.is_empty() {
            return;
        }
        match self.store.devices_by_id(&stale).await {
            Ok(found) => {
                let now = Instant::now();
                let mut resolved: HashMap<
                    DeviceId,
                    Result<steward_runtime::device::Device, String>,
                > = stale
                    .iter()
                    .map(|id| {
                        (
                            DeviceId::from(*id),
                            Err(format!("device `{id}` does not exist")),
                        )
                    })
                    .collect();
                for d in &found {
                    resolved.insert(
                        d.id.clone(),
                        self.devices.device(d).map_err(|e| format!("{e:#}")),
                    );
                }
                let mut caches = self.caches.lock().expect("cache lock poisoned");
                if caches.devices.len() > 100_000 {
                    caches.devices.clear();
                }
                for (id, r) in resolved {
                    caches.devices.insert(id, (now, r));
                }
            }
            Err(e) => tracing::warn!(error = %e, "loading devices failed"),
        }
    }

    /// The providers of device `id`, as [`prepare`](Self::prepare) left them.
    async fn device(&self, id: &DeviceId) -> anyhow::Result<steward_runtime::device::Device> {
        let cached = self
            .caches
            .lock()
            .expect("cache lock poisoned")
            .devices
            .get(id)
            .map(|(_, r)| r.clone());
        match cached {
            Some(r) => r.map_err(|e| anyhow::anyhow!(e)),
            None => {
                let stored = self
                    .store
                    .device(id)
                    .await?
                    .ok_or_else(|| anyhow::anyhow!("device `{id}` does not exist"))?;
                self.devices.device(&stored)
            }
        }
    }
}

/// How a failed run phase ends the job.
enum Ended {
    /// The job must not start now (its window closed, or the server is
    /// stopping): see [`Record::Defer`].
    Defer(Option<Timestamp>, String),
    /// The plugin reported a failure: the job ends failed, not retried.
    Reported(String),
    /// The queue decides (retry or end).
    Failed(FailureKind, String),
}

/// How a job's setup failure ends it: a step that could not reach the
/// store (an outage) is retried; any other failure of setup is the job's
/// own and is not.
fn setup_failure(e: anyhow::Error) -> Ended {
    let outage = e.chain().any(|c| {
        c.downcast_ref::<steward_store::StoreError>()
            .is_some_and(steward_store::StoreError::is_unavailable)
    });
    let kind = if outage {
        FailureKind::Transient
    } else {
        FailureKind::Permanent
    };
    Ended::Failed(kind, format!("{e:#}"))
}

fn classify(e: &RunError) -> Ended {
    match e {
        RunError::WallDeadline(_) => Ended::Failed(FailureKind::TimedOut, e.to_string()),
        RunError::Plugin(PluginError::Host(HostError::Unavailable(_))) | RunError::Host(_) => {
            Ended::Failed(FailureKind::Transient, e.to_string())
        }
        RunError::Plugin(_) => Ended::Reported(e.to_string()),
        _ => Ended::Failed(FailureKind::Permanent, e.to_string()),
    }
}

fn log_lines(lines: &[LogLine], out: &mut Vec<NewLog>) {
    let at = Timestamp::now();
    for l in lines {
        out.push(NewLog {
            at,
            level: l.level.to_owned(),
            message: l.message.clone(),
            fields: Value::Object(
                l.fields
                    .iter()
                    .map(|(k, v)| (k.clone(), Value::String(v.clone())))
                    .chain([(
                        "source".to_owned(),
                        serde_json::to_value(l.source).unwrap_or_default(),
                    )])
                    .collect(),
            ),
        });
    }
}

fn host_log(out: &mut Vec<NewLog>, level: &str, message: String) {
    out.push(NewLog {
        at: Timestamp::now(),
        level: level.to_owned(),
        message,
        fields: json!({ "source": "host" }),
    });
}

fn new_finding(f: &Finding) -> NewFinding {
    NewFinding {
        key: f.id.clone(),
        severity: match f.severity {
            WitSeverity::Info => Severity::Info,
            WitSeverity::Warning => Severity::Warning,
            WitSeverity::Critical => Severity::Critical,
        },
        summary: f.summary.clone(),
        detail: f.detail.clone(),
        resource: f.resource.clone(),
        fields: Value::Object(
            f.fields
                .iter()
                .map(|x| (x.key.clone(), Value::String(x.value.clone())))
                .collect::<Map<_, _>>(),
        ),
    }
}

fn new_change(c: &Change) -> NewChange {
    NewChange {
        kind: c.kind.clone(),
        target: c.target.clone(),
        description: c.description.clone(),
        before: c.before.clone(),
        after: c.after.clone(),
        outcome: match c.outcome {
            ChangeOutcomeWit::Applied => ChangeOutcome::Applied,
            ChangeOutcomeWit::Planned => ChangeOutcome::Planned,
        },
    }
}

/// Whether every element of sorted `part` is in sorted `whole`, as many
/// times at least.
fn is_sub_multiset<T: Ord>(part: &[T], whole: &[T]) -> bool {
    let mut rest = whole.iter();
    part.iter().all(|p| rest.by_ref().any(|w| w == p))
}

/// What a plan says will change: kind, target and the value after.
fn plan_key(c: &NewChange) -> (String, String, Option<String>) {
    (c.kind.clone(), c.target.clone(), c.after.clone())
}

fn describe_plan(keys: &[(String, String, Option<String>)]) -> String {
    if keys.is_empty() {
        return "nothing".into();
    }
    keys.iter()
        .map(|(k, t, a)| match a {
            Some(a) => format!("{k} {t} → {a}"),
            None => format!("{k} {t}"),
        })
        .collect::<Vec<_>>()
        .join(", ")
}

async fn execute(
    inner: &Arc<Inner>,
    job: Job,
    state: BTreeMap<String, String>,
    permit: OwnedSemaphorePermit,
) -> Done {
    let mut done = Done {
        observation: observation(&job),
        record: Record::Lost,
        audit: Vec::new(),
        digest: None,
        _permit: permit,
        job,
    };
    let mut logs = Vec::new();
    let outcome = run(inner, &mut done, state, &mut logs).await;
    let job = &done.job;
    done.record = match outcome {
        Ok(None) => Record::Lost,
        Ok(Some(mut completion)) => {
            completion.logs = logs;
            Record::Complete(completion)
        }
        Err(Ended::Reported(reason)) => {
            host_log(&mut logs, "error", reason.clone());
            let mut c = Completion::succeeded(job, json!({ "error": reason }));
            c.outcome = Outcome::Failed { reason };
            c.logs = logs;
            c.then = follow_ups(inner, job, false, false).await;
            Record::Complete(c)
        }
        Err(Ended::Defer(until, reason)) => Record::Defer(until, reason),
        Err(Ended::Failed(kind, error)) => {
            host_log(&mut logs, "error", error.clone());
            Record::Fail(Failure {
                job_id: job.id.clone(),
                attempt: job.attempt,
                error,
                kind,
                logs,
                // Only enqueued if the failure ends the job.
                then: follow_ups(inner, job, false, false).await,
                audit: Vec::new(),
                observation: None,
            })
        }
    };
    if let Some(o) = done.observation.as_mut() {
        o.at = Utc::now();
    }
    done
}

/// Runs the job's phases. `Ok(None)`: the lease was lost before applying.
async fn run(
    inner: &Arc<Inner>,
    done: &mut Done,
    state: BTreeMap<String, String>,
    logs: &mut Vec<NewLog>,
) -> Result<Option<Completion>, Ended> {
    let job = done.job.clone();
    let permanent = setup_failure;
    let version = inner.version_for(&job).await.map_err(permanent)?;
    done.digest = Some(version.digest.clone());
    let loaded = inner.library.load(&version).await.map_err(permanent)?;
    let params = resolve_json_params(&loaded.descriptor, &job.params)
        .map_err(|e| Ended::Failed(FailureKind::Permanent, e.to_string()))?;
    let Some(device_id) = &job.device_id else {
        return Err(Ended::Failed(
            FailureKind::Permanent,
            "tenant-scope jobs (no device) are not run by the executor yet".into(),
        ));
    };
    // A job the executor reaches after its maintenance window closed
    // waits for the next window or expires, by the schedule's policy.
    let plan = inner.run_plan(&job.run_id).await.map_err(permanent)?;
    if let Some((schedule, firing)) = &plan.window {
        let now = Utc::now();
        if let StartDecision::Start {
            deadline: Some(close),
            ..
        } = schedule.start_at(firing, device_id.as_str())
            && now >= close
        {
            return Err(match schedule.replan(firing, device_id.as_str(), now) {
                StartDecision::Start { at, .. } => Ended::Defer(
                    Some(at.into()),
                    format!("its maintenance window closed at {close}; waits for the next one"),
                ),
                StartDecision::Expired => Ended::Defer(
                    None,
                    format!("its maintenance window closed at {close} before it could start"),
                ),
            });
        }
    }
    let mut device = inner.device(device_id).await.map_err(permanent)?;
    let snapshot = Arc::new(SnapshotState::new(state));
    device.tickets = Arc::new(StoreTickets {
        store: inner.store.clone(),
        job_id: job.id.clone(),
        tenant_id: job.tenant_id.clone(),
    });
    device.state = snapshot.clone();
    let device = Arc::new(device);
    let audit = Arc::new(CollectAudit::default());
    let runtime = inner.library.runtime();
    let mut limits = runtime.limits();
    limits.wall_time = job.timeout;
    let spec = |mode: RunMode| RunSpec {
        run_id: job.id.to_string(),
        plugin: job.plugin.clone(),
        mode,
        params: params.clone(),
        grants: loaded.grants.clone(),
        device: device.clone(),
        audit: audit.clone() as Arc<dyn steward_runtime::audit::AuditSink>,
        limits: Some(limits),
        journal: (mode == RunMode::Apply).then(|| inner.journal.clone()),
    };
    let deadline_of = |e: &RunError| match e {
        RunError::WallDeadline(limit) => Some(*limit),
        _ => None,
    };

    // The job runs from here: with an instance free, so its timeout (and
    // the cap on its lease) counts from now, not from its claim; claiming
    // far more jobs than instances only makes them wait, never time out.
    let mut stopping = inner.stopping.subscribe();
    let _instance = tokio::select! {
        permit = inner.running.acquire() => permit.expect("the running semaphore is never closed"),
        _ = stopping.wait_for(|stop| *stop) => {
            return Err(Ended::Defer(
                Some(Timestamp::now()),
                "given back unstarted: the server is stopping".into(),
            ));
        }
    };
    if let Some(f) = inner
        .in_flight
        .lock()
        .expect("in-flight lock poisoned")
        .get_mut(&job.id)
    {
        f.running_since = Some(Timestamp::now());
    }

    // Every mode starts with a check.
    let report = runtime.check(&loaded.module, spec(RunMode::Plan)).await;
    log_lines(&report.log, logs);
    let findings = match report.result {
        Ok(f) => f,
        Err(e) => {
            if let (Some(o), Some(limit)) = (done.observation.as_mut(), deadline_of(&e)) {
                o.job = JobEnd::TimedOut { limit };
            }
            done.audit = audit.take();
            return Err(classify(&e));
        }
    };
    if let Some(o) = done.observation.as_mut() {
        o.check = CheckResult::Completed {
            critical_findings: findings
                .iter()
                .filter(|f| f.severity == WitSeverity::Critical)
                .map(|f| CriticalFinding {
                    id: f.id.clone(),
                    summary: f.summary.clone(),
                })
                .collect(),
        };
    }
    let mut changes: Vec<NewChange> = Vec::new();
    let mut refused: Option<String> = None;
    // Findings the remediation reported it could not fix: the job ends
    // failed, with the changes it did make recorded.
    let mut unfixed: Option<String> = None;
    match job.mode {
        JobMode::Check => {}
        JobMode::Plan | JobMode::Remediate => {
            let approved = job.mode == JobMode::Remediate
                && plan
                    .steps
                    .get(job.step_index as usize)
                    .is_some_and(|s| s.requires_approval);
            if approved {
                // Re-plan and compare with what the admin approved.
                let wanted = inner
                    .store
                    .planned_changes(&job.run_id, job.device_id.as_ref(), job.step_index)
                    .await
                    .map_err(|e| permanent(e.into()))?
                    .unwrap_or_default();
                let report = runtime
                    .remediate(&loaded.module, spec(RunMode::Plan), findings.clone())
                    .await;
                log_lines(&report.log, logs);
                let fresh: Vec<NewChange> = match report.result {
                    Ok(r) => r.changes.iter().map(new_change).collect(),
                    Err(e) => {
                        done.audit = audit.take();
                        return Err(classify(&e));
                    }
                };
                let mut want: Vec<_> = wanted.iter().map(plan_key).collect();
                let mut now: Vec<_> = fresh.iter().map(plan_key).collect();
                want.sort();
                now.sort();
                // An earlier attempt interrupted while applying made part
                // of the approved plan already (the journal replays it):
                // what is left must be part of what was approved, nothing
                // else. Otherwise the plan must be the one approved.
                let matches = if job.interrupted_apply {
                    is_sub_multiset(&now, &want)
                } else {
                    want == now
                };
                if !matches {
                    refused = Some(format!(
                        "the device no longer matches the approved plan: approved {}; it would now change {}",
                        describe_plan(&want),
                        describe_plan(&now)
                    ));
                }
            }
            if refused.is_none() {
                let mode = if job.mode == JobMode::Plan {
                    RunMode::Plan
                } else {
                    let still_held = inner
                        .store
                        .mark_applying(
                            &inner.config.worker_id,
                            &job.id,
                            job.attempt,
                            Timestamp::now(),
                        )
                        .await
                        .map_err(|e| Ended::Failed(FailureKind::Transient, e.to_string()))?;
                    if !still_held {
                        return Ok(None);
                    }
                    if job.interrupted_apply {
                        host_log(
                            logs,
                            "warn",
                            "an earlier attempt was interrupted while applying; \
                             journaled changes are replayed, not repeated"
                                .into(),
                        );
                    }
                    RunMode::Apply
                };
                let report = runtime
                    .remediate(&loaded.module, spec(mode), findings.clone())
                    .await;
                log_lines(&report.log, logs);
                match report.result {
                    Ok(r) => {
                        changes = r.changes.iter().map(new_change).collect();
                        if !r.failures.is_empty() {
                            let list: Vec<String> = r
                                .failures
                                .iter()
                                .map(|f| format!("{}: {}", f.finding_id, f.error))
                                .collect();
                            unfixed = Some(format!(
                                "{} of the findings could not be fixed ({} changes made): {}",
                                r.failures.len(),
                                r.changes.len(),
                                list.join("; ")
                            ));
                        }
                        if let Some(o) = done.observation.as_mut()
                            && mode == RunMode::Apply
                        {
                            o.remediation = match &unfixed {
                                None => RemediationResult::Succeeded,
                                Some(error) => RemediationResult::Failed {
                                    error: error.clone(),
                                },
                            };
                        }
                    }
                    Err(e) => {
                        if let Some(o) = done.observation.as_mut() {
                            if let Some(limit) = deadline_of(&e) {
                                o.job = JobEnd::TimedOut { limit };
                            } else if mode == RunMode::Apply {
                                o.remediation = RemediationResult::Failed {
                                    error: e.to_string(),
                                };
                            }
                        }
                        done.audit = audit.take();
                        return Err(classify(&e));
                    }
                }
            }
        }
    }
    done.audit = audit.take();
    if let Some(reason) = refused {
        host_log(logs, "error", reason.clone());
        if let Some(o) = done.observation.as_mut() {
            o.remediation = RemediationResult::Failed {
                error: reason.clone(),
            };
        }
        let mut c = Completion::succeeded(&job, json!({ "error": reason }));
        c.outcome = Outcome::Failed { reason };
        c.findings = findings.iter().map(new_finding).collect();
        c.then = follow_ups(inner, &job, false, false).await;
        return Ok(Some(c));
    }
    if let Some(reason) = unfixed {
        host_log(logs, "error", reason.clone());
        let mut c =
            Completion::succeeded(&job, json!({ "error": reason, "changes": changes.len() }));
        c.outcome = Outcome::Failed { reason };
        c.findings = findings.iter().map(new_finding).collect();
        c.changes = changes;
        c.state = snapshot.writes();
        c.then = follow_ups(inner, &job, false, false).await;
        return Ok(Some(c));
    }
    let critical = findings
        .iter()
        .filter(|f| f.severity == WitSeverity::Critical)
        .count();
    let mut c = Completion::succeeded(
        &job,
        json!({
            "findings": findings.len(),
            "critical": critical,
            "changes": changes.len(),
        }),
    );
    c.findings = findings.iter().map(new_finding).collect();
    let planned_something = job.mode == JobMode::Plan && !changes.is_empty();
    c.changes = changes;
    c.state = snapshot.writes();
    c.then = follow_ups(inner, &job, true, planned_something).await;
    Ok(Some(c))
}

/// The jobs that follow `job` (see [`playbook::follow_ups`]).
async fn follow_ups(inner: &Inner, job: &Job, succeeded: bool, planned: bool) -> Vec<NewJob> {
    let Ok(plan) = inner.run_plan(&job.run_id).await else {
        return Vec::new();
    };
    playbook::follow_ups(
        &plan.steps,
        &plan.pins,
        job,
        succeeded,
        planned,
        Timestamp::now(),
    )
}

async fn complete_loop(inner: Arc<Inner>, mut rx: mpsc::Receiver<Done>) {
    let mut buf = Vec::with_capacity(inner.config.complete_batch);
    loop {
        buf.clear();
        if rx
            .recv_many(&mut buf, inner.config.complete_batch.max(1))
            .await
            == 0
        {
            return;
        }
        record(&inner, &mut buf).await;
    }
}

async fn record(inner: &Inner, batch: &mut [Done]) {
    let worker = inner.config.worker_id.as_str();
    // Each attempt's audit events travel with its record and are written
    // in its transaction: present exactly when the record committed.
    for d in batch.iter_mut() {
        let mut events: Vec<AuditEvent> = d.audit.iter().map(|e| audit_event(d, e)).collect();
        if d.job.attempt > 1 && matches!(d.record, Record::Complete(_) | Record::Fail(_)) {
            events.extend(unaudited_journal_calls(inner, d, &events).await);
        }
        // With alerting on, the observation goes into the alert inbox in
        // the same transaction, so a crash after the commit cannot lose
        // the job's alerts.
        let observation = inner
            .alerts
            .as_ref()
            .and(d.observation.as_ref())
            .and_then(|o| serde_json::to_string(o).ok());
        match &mut d.record {
            Record::Complete(c) => {
                c.audit = events;
                c.observation = observation;
            }
            Record::Fail(f) => {
                f.audit = events;
                f.observation = observation;
            }
            Record::Defer(..) | Record::Lost => {}
        }
    }
    let labels: Vec<Option<&'static str>> = batch
        .iter()
        .map(|d| match &d.record {
            Record::Complete(c) if c.outcome == Outcome::Succeeded => Some("succeeded"),
            Record::Complete(_) => Some("failed"),
            Record::Fail(_) => Some("failed or retrying"),
            Record::Defer(..) | Record::Lost => None,
        })
        .collect();
    let completions: Vec<Completion> = batch
        .iter_mut()
        .filter_map(|d| match &mut d.record {
            Record::Complete(c) => Some(std::mem::replace(
                c,
                Completion::succeeded(&d.job, Value::Null),
            )),
            _ => None,
        })
        .collect();
    let mut accepted: HashSet<JobId> = HashSet::new();
    if !completions.is_empty() {
        accepted.extend(complete_batch(inner, worker, &completions).await);
    }
    for d in batch.iter() {
        if let Record::Defer(until, reason) = &d.record {
            match inner
                .store
                .defer(
                    worker,
                    &d.job.id,
                    d.job.attempt,
                    *until,
                    reason,
                    Timestamp::now(),
                )
                .await
            {
                Ok(_) => {}
                Err(e) => tracing::warn!(error = %e, job = %d.job.id, "deferring a job failed"),
            }
        }
        if let Record::Fail(f) = &d.record {
            match inner.store.fail(worker, f, Timestamp::now()).await {
                Ok(store::FailOutcome::NotLeased) => {}
                Ok(_) => {
                    accepted.insert(d.job.id.clone());
                }
                Err(e) => tracing::warn!(error = %e, job = %d.job.id, "recording a failure failed"),
            }
        }
    }
    let mut ended: BTreeMap<&'static str, usize> = BTreeMap::new();
    for (d, label) in batch.iter().zip(&labels) {
        if let Some(label) = label
            && accepted.contains(&d.job.id)
        {
            *ended.entry(label).or_default() += 1;
        }
    }
    tracing::info!(worker, ?ended, "recorded jobs");
    if let Some(alerts) = &inner.alerts {
        // One alert-state read for the batch, not one per job.
        let observed: Vec<(&Done, &Observation)> = batch
            .iter()
            .filter(|d| accepted.contains(&d.job.id))
            .filter_map(|d| d.observation.as_ref().map(|o| (d, o)))
            .collect();
        let observations: Vec<&Observation> = observed.iter().map(|(_, o)| *o).collect();
        let results = alerts.alerter.observe_batch(&observations).await;
        let mut done = Vec::new();
        for ((d, _), (fired, complete)) in observed.iter().zip(results) {
            for alert in fired {
                alerts.send(alert);
            }
            if complete {
                done.push((d.job.id.clone(), d.job.attempt));
            }
        }
        inner.inbox_done(&done).await;
    }
    let mut in_flight = inner.in_flight.lock().expect("in-flight lock poisoned");
    for d in batch.iter() {
        in_flight.remove(&d.job.id);
    }
}

/// Records a batch of completions: in one transaction while the store
/// takes it; when it keeps refusing the batch, job by job, so one job
/// whose record cannot be stored never takes the others down with it. A
/// job that cannot be stored even alone ends failed, naming why; one that
/// cannot be ended at all (the database is down) keeps its lease until it
/// runs out and is reclaimed, never silently dropped. Returns the jobs the
/// store accepted.
async fn complete_batch(inner: &Inner, worker: &str, completions: &[Completion]) -> Vec<JobId> {
    const BATCH_TRIES: u32 = 3;
    for attempt in 0..BATCH_TRIES {
        match inner
            .store
            .complete(worker, completions, Timestamp::now())
            .await
        {
            Ok(ids) => return ids,
            Err(e) => {
                tracing::warn!(error = %e, attempt, batch = completions.len(), "recording completions failed");
                tokio::time::sleep(Duration::from_millis(100 << attempt)).await;
            }
        }
    }
    if completions.len() > 1 {
        tracing::warn!(
            batch = completions.len(),
            "recording the batch keeps failing; recording its jobs one by one"
        );
    }
    let mut accepted = Vec::new();
    for c in completions {
        let error = match inner
            .store
            .complete(worker, std::slice::from_ref(c), Timestamp::now())
            .await
        {
            Ok(ids) => {
                accepted.extend(ids);
                continue;
            }
            Err(e) => e,
        };
        tracing::error!(job = %c.job_id, error = %error, "recording a job's completion failed; ending it failed");
        let failure = Failure {
            job_id: c.job_id.clone(),
            attempt: c.attempt,
            error: format!("the job's result could not be stored: {error}"),
            kind: FailureKind::Permanent,
            logs: Vec::new(),
            then: Vec::new(),
            audit: c.audit.clone(),
            observation: c.observation.clone(),
        };
        match inner.store.fail(worker, &failure, Timestamp::now()).await {
            Ok(store::FailOutcome::NotLeased) => {}
            Ok(_) => accepted.push(c.job_id.clone()),
            Err(e) => {
                tracing::error!(job = %c.job_id, error = %e, "ending the job failed; its lease will run out and it will be reclaimed");
            }
        }
    }
    accepted
}

fn audit_event(d: &Done, e: &RunAuditEvent) -> AuditEvent {
    let (outcome, reason) = match &e.outcome {
        AuditOutcome::Applied => ("applied", None),
        AuditOutcome::Planned => ("planned", None),
        AuditOutcome::Denied(r) => ("denied", Some(r.clone())),
        AuditOutcome::Failed(r) => ("failed", Some(r.clone())),
        AuditOutcome::Replayed => ("replayed", None),
        AuditOutcome::Reconciled => ("reconciled", None),
    };
    job_audit_event(
        d,
        format!("{}.{}", e.capability, e.function),
        json!({ "arguments": e.arguments, "reason": reason }),
        outcome,
    )
}

/// An audit event of `d`'s job: its `action` with `detail` and `outcome`.
fn job_audit_event(d: &Done, action: String, detail: Value, outcome: &str) -> AuditEvent {
    AuditEvent {
        at: Timestamp::now(),
        actor: format!("job:{}", d.job.id),
        tenant_id: Some(d.job.tenant_id.clone()),
        run_id: Some(d.job.run_id.clone()),
        job_id: Some(d.job.id.clone()),
        attempt: Some(d.job.attempt),
        device_id: d.job.device_id.clone(),
        plugin: Some(d.job.plugin.clone()),
        plugin_digest: d.digest.clone(),
        action,
        detail,
        outcome: outcome.into(),
    }
}

/// Audit events for mutating calls an earlier attempt of `d`'s job made
/// and journaled but whose audit events were never committed (it was
/// killed, or lost its store, before its end was recorded) and that this
/// attempt did not make or replay (it found the device already changed):
/// without them, a change really made would be in no audit trail. Each
/// is `applied` (the journal has its result) or `in-doubt` (only its
/// intent). Only a retry can have such calls; a store that cannot be read
/// adds none (logged).
async fn unaudited_journal_calls(
    inner: &Inner,
    d: &Done,
    events: &[AuditEvent],
) -> Vec<AuditEvent> {
    let (journal, committed) = match tokio::try_join!(
        inner.store.journal_calls(&d.job.id),
        inner.store.audited_calls(&d.job.id)
    ) {
        Ok(both) => both,
        Err(e) => {
            tracing::warn!(job = %d.job.id, error = %e,
                "reading the journal for unaudited calls failed; an earlier attempt's calls may lack audit events");
            return Vec::new();
        }
    };
    let recorded = |outcome: &str| matches!(outcome, "applied" | "replayed" | "reconciled");
    let mut seen: HashMap<String, u32> = HashMap::new();
    for (action, arguments, outcome) in &committed {
        if recorded(outcome) {
            *seen.entry(format!("{action} {arguments}")).or_default() += 1;
        }
    }
    for e in events {
        if recorded(&e.outcome) {
            let arguments = e.detail["arguments"].as_str().unwrap_or_default();
            *seen.entry(format!("{} {arguments}", e.action)).or_default() += 1;
        }
    }
    let mut out = Vec::new();
    for (call, occurrence, applied) in journal {
        if seen.get(&call).copied().unwrap_or(0) > occurrence {
            continue;
        }
        let (action, arguments) = call.split_once(' ').unwrap_or((call.as_str(), ""));
        out.push(job_audit_event(
            d,
            action.to_owned(),
            json!({
                "arguments": arguments,
                "reason": if applied {
                    "made by an earlier attempt that ended without recording it; from the journal"
                } else {
                    "an earlier attempt was about to make it and ended without recording whether it did; from the journal"
                },
            }),
            if applied { "applied" } else { "in-doubt" },
        ));
    }
    out
}

async fn heartbeat_loop(inner: Arc<Inner>, mut stop: watch::Receiver<bool>) {
    let every = inner.config.lease / 3;
    let mut last_ok = Instant::now();
    loop {
        tokio::select! {
            _ = tokio::time::sleep(every) => {}
            _ = stop.changed() => return,
        }
        let held: Vec<(JobId, u32, Option<Timestamp>)> = inner
            .in_flight
            .lock()
            .expect("in-flight lock poisoned")
            .iter()
            .map(|(id, f)| (id.clone(), f.attempt, f.running_since))
            .collect();
        if held.is_empty() {
            last_ok = Instant::now();
            continue;
        }
        let lost: Vec<JobId> = match inner
            .store
            .heartbeat(
                &inner.config.worker_id,
                &held,
                inner.config.lease,
                Timestamp::now(),
            )
            .await
        {
            Ok(kept) => {
                last_ok = Instant::now();
                let kept: HashSet<JobId> = kept.into_iter().collect();
                held.into_iter()
                    .map(|(id, _, _)| id)
                    .filter(|id| !kept.contains(id))
                    .collect()
            }
            Err(e) => {
                tracing::warn!(error = %e, "renewing leases failed");
                if last_ok.elapsed() + every < inner.config.lease {
                    continue;
                }
                // The leases may run out before the next try: stop.
                held.into_iter().map(|(id, _, _)| id).collect()
            }
        };
        let mut in_flight = inner.in_flight.lock().expect("in-flight lock poisoned");
        for id in lost {
            // A job that has finished is being recorded (the store fences
            // its completion); only a running one must be stopped.
            if let Some(InFlight {
                task: Some(handle), ..
            }) = in_flight.get(&id)
                && !handle.is_finished()
            {
                tracing::warn!(job = %id, "lease lost; stopping the job");
                handle.abort();
                in_flight.remove(&id);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::is_sub_multiset;

    #[test]
    fn what_is_left_of_a_plan_is_a_sub_multiset_of_it() {
        assert!(is_sub_multiset::<u8>(&[], &[1, 2]));
        assert!(is_sub_multiset(&[1, 2], &[1, 2]));
        assert!(is_sub_multiset(&[2], &[1, 2, 3]));
        assert!(is_sub_multiset(&[1, 1], &[1, 1, 2]));
        assert!(!is_sub_multiset(&[1, 1], &[1, 2]));
        assert!(!is_sub_multiset(&[4], &[1, 2, 3]));
        assert!(!is_sub_multiset(&[1, 2, 3], &[1, 2]));
    }
}
