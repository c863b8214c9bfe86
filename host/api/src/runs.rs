//! Runs and what their jobs reported, a live event stream per run,
//! approvals, findings and tickets.

use std::collections::{HashMap, HashSet};
use std::convert::Infallible;
use std::time::Duration;

use axum::extract::State;
use axum::response::IntoResponse as _;
use axum::response::sse::{Event, KeepAlive, Sse};
use futures_util::Stream;
use serde::{Deserialize, Serialize};
use serde_json::json;
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::auth::Caller;
use super::body::{Json, Path, Query};
use super::problem::{ApiError, ApiResult, Problem};
use super::{ApiState, Page};
use steward_store::{
    Change, Finding, Job, JobId, JobStatus, NewChange, Role, Run, RunFilter, RunId, RunLog,
    RunStatus, StoredTicket, TenantId, Timestamp,
};

pub(super) fn routes() -> OpenApiRouter<ApiState> {
    OpenApiRouter::new()
        .routes(routes!(list_runs))
        .routes(routes!(get_run))
        .routes(routes!(run_jobs))
        .routes(routes!(run_findings))
        .routes(routes!(run_changes))
        .routes(routes!(run_logs))
        .routes(routes!(run_events))
        .routes(routes!(cancel_run))
        .routes(routes!(list_findings))
        .routes(routes!(list_approvals))
        .routes(routes!(approve))
        .routes(routes!(reject))
        .routes(routes!(list_tickets))
}

/// The default and largest page of runs.
const DEFAULT_LIMIT: u32 = 50;
const MAX_LIMIT: u32 = 500;

/// Which runs to list.
#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
pub struct RunQuery {
    /// Only this tenant's.
    pub tenant: Option<TenantId>,
    /// Only runs in this state.
    pub status: Option<RunStatus>,
    /// Only runs with a job of this plugin.
    pub plugin: Option<String>,
    /// Only runs created at or after this time (RFC 3339).
    pub since: Option<chrono::DateTime<chrono::Utc>>,
    /// Only runs created before this time (RFC 3339).
    pub until: Option<chrono::DateTime<chrono::Utc>>,
    /// `next_cursor` of the previous page.
    pub cursor: Option<String>,
    /// Page size, 1 to 500 (default 50).
    #[param(minimum = 1, maximum = 500)]
    pub limit: Option<u32>,
}

/// How long a page of runs is served from memory at most. A change made
/// through this process (a run created, finished, cancelled, given more
/// jobs) empties the cache at once; one made by another process sharing the
/// database shows within this time.
pub const PAGE_TTL: Duration = Duration::from_secs(1);

/// Recently served pages of runs, by caller scope and query string, with
/// the store's runs generation they were read at.
#[derive(Debug, Default)]
pub struct PageCache {
    entries: std::sync::Mutex<HashMap<String, (std::time::Instant, u64, axum::body::Bytes)>>,
}

impl PageCache {
    fn get(&self, key: &str, generation: u64) -> Option<axum::body::Bytes> {
        let entries = self.entries.lock().expect("page cache lock");
        let (at, at_generation, body) = entries.get(key)?;
        (*at_generation == generation && at.elapsed() < PAGE_TTL).then(|| body.clone())
    }

    fn put(&self, key: String, generation: u64, body: axum::body::Bytes) {
        let mut entries = self.entries.lock().expect("page cache lock");
        if entries.len() >= 4096 {
            entries.retain(|_, (at, g, _)| *g == generation && at.elapsed() < PAGE_TTL);
            if entries.len() >= 4096 {
                entries.clear();
            }
        }
        entries.insert(key, (std::time::Instant::now(), generation, body));
    }
}

/// Runs the caller sees, newest first, a page at a time. Pages are served
/// from memory for up to a second (see [`PAGE_TTL`]).
#[utoipa::path(get, path = "/api/v1/runs", tag = "runs", params(RunQuery),
    responses((status = 200, body = Page<Run>), (status = 400, body = Problem)))]
async fn list_runs(
    State(state): State<ApiState>,
    caller: Caller,
    uri: axum::http::Uri,
    Query(q): Query<RunQuery>,
) -> ApiResult<axum::response::Response> {
    let json = |body: axum::body::Bytes| {
        (
            [(axum::http::header::CONTENT_TYPE, "application/json")],
            body,
        )
            .into_response()
    };
    // Read the generation first: a change committed while the page is read
    // moves it, so the page is not served again.
    let generation = state.store().runs_generation();
    let key = format!("{:?}?{}", caller.scope, uri.query().unwrap_or(""));
    if let Some(body) = state.inner.run_pages.get(&key, generation) {
        return Ok(json(body));
    }
    let limit = super::page_limit(q.limit, DEFAULT_LIMIT, MAX_LIMIT)?;
    let page = state
        .store()
        .list_runs_json(&RunFilter {
            scope: caller.scope.clone(),
            tenant: q.tenant,
            status: q.status,
            plugin: q.plugin,
            since: q.since.map(Timestamp::from),
            until: q.until.map(Timestamp::from),
            before: q.cursor.map(RunId::from),
            limit,
        })
        .await?;
    // The database wrote the items; the page around them is written here
    // rather than parsed and serialised again.
    let mut body = String::with_capacity(page.items.len() + 64);
    body.push_str("{\"items\":");
    body.push_str(&page.items);
    if let Some(last) = page.last_id.filter(|_| page.count == u64::from(limit)) {
        body.push_str(",\"next_cursor\":");
        body.push_str(&serde_json::to_string(&last).expect("a string serialises"));
    }
    body.push('}');
    let body = axum::body::Bytes::from(body);
    state.inner.run_pages.put(key, generation, body.clone());
    Ok(json(body))
}

/// A run with its jobs' progress.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct RunDetail {
    /// The run.
    #[serde(flatten)]
    pub run: Run,
    /// Its jobs per state.
    pub jobs: HashMap<JobStatus, u64>,
}

/// Recently served runs with their jobs per state, by run id: the body,
/// the run's tenant (checked against each caller), and the store's writes
/// generation it was read at. Any commit of this process empties it in
/// effect (the generation moves), so a job's change shows at once; one
/// made by another process sharing the database shows within
/// [`PAGE_TTL`]. A follower polling a run of 10,000 jobs costs a count of
/// its jobs per commit, not per request.
#[derive(Debug, Default)]
pub struct RunCache {
    entries: std::sync::Mutex<HashMap<RunId, CachedRun>>,
}

#[derive(Debug)]
struct CachedRun {
    at: std::time::Instant,
    generation: u64,
    tenant: Option<TenantId>,
    body: axum::body::Bytes,
}

impl RunCache {
    fn get(&self, id: &RunId, generation: u64, caller: &Caller) -> Option<axum::body::Bytes> {
        let entries = self.entries.lock().expect("run cache lock");
        let entry = entries.get(id)?;
        (entry.generation == generation
            && entry.at.elapsed() < PAGE_TTL
            && caller.sees(entry.tenant.as_ref()))
        .then(|| entry.body.clone())
    }

    fn put(&self, id: RunId, generation: u64, tenant: Option<TenantId>, body: axum::body::Bytes) {
        let mut entries = self.entries.lock().expect("run cache lock");
        if entries.len() >= 4096 {
            entries.retain(|_, e| e.generation == generation && e.at.elapsed() < PAGE_TTL);
            if entries.len() >= 4096 {
                entries.clear();
            }
        }
        let at = std::time::Instant::now();
        entries.insert(
            id,
            CachedRun {
                at,
                generation,
                tenant,
                body,
            },
        );
    }
}

/// One run, with how many of its jobs are in each state (served from
/// memory until the next commit, see [`RunCache`]).
#[utoipa::path(get, path = "/api/v1/runs/{id}", tag = "runs",
    params(("id" = String, Path, description = "Run id")),
    responses((status = 200, body = RunDetail), (status = 404, body = Problem)))]
async fn get_run(
    State(state): State<ApiState>,
    caller: Caller,
    Path(id): Path<String>,
) -> ApiResult<axum::response::Response> {
    let json = |body: axum::body::Bytes| {
        (
            [(axum::http::header::CONTENT_TYPE, "application/json")],
            body,
        )
            .into_response()
    };
    // Read the generation first: a commit while the run is read moves it,
    // so what is read now is not served again.
    let generation = state.store().writes_generation();
    let id = RunId::from(id);
    if let Some(body) = state.inner.run_details.get(&id, generation, &caller) {
        return Ok(json(body));
    }
    let run = state.run(&caller, &id).await?;
    let jobs = state.store().job_counts_of_run(&run.id).await?;
    let tenant = run.tenant_id.clone();
    let body = axum::body::Bytes::from(
        serde_json::to_vec(&RunDetail { jobs, run }).expect("a run serialises"),
    );
    state
        .inner
        .run_details
        .put(id, generation, tenant, body.clone());
    Ok(json(body))
}

/// Which of a run's jobs to list.
#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
pub struct JobQuery {
    /// `next_cursor` of the previous page.
    pub cursor: Option<String>,
    /// Page size, 1 to 1000 (default 500).
    #[param(minimum = 1, maximum = 1000)]
    pub limit: Option<u32>,
}

/// A run's jobs in creation order, a page at a time.
#[utoipa::path(get, path = "/api/v1/runs/{id}/jobs", tag = "runs",
    params(("id" = String, Path, description = "Run id"), JobQuery),
    responses((status = 200, body = Page<Job>), (status = 400, body = Problem), (status = 404, body = Problem)))]
pub(crate) async fn run_jobs(
    State(state): State<ApiState>,
    caller: Caller,
    Path(id): Path<String>,
    Query(q): Query<JobQuery>,
) -> ApiResult<axum::Json<Page<Job>>> {
    let limit = super::page_limit(q.limit, 500, 1000)?;
    let run = state.run(&caller, &RunId::from(id)).await?;
    let items = state
        .store()
        .jobs_of_run_page(&run.id, q.cursor.map(JobId::from).as_ref(), limit)
        .await?;
    let next_cursor = (items.len() == limit as usize)
        .then(|| items.last().map(|j| j.id.to_string()))
        .flatten();
    Ok(axum::Json(Page { items, next_cursor }))
}

/// What a run's jobs last reported, worst first.
#[utoipa::path(get, path = "/api/v1/runs/{id}/findings", tag = "runs",
    params(("id" = String, Path, description = "Run id")),
    responses((status = 200, body = Vec<Finding>), (status = 404, body = Problem)))]
pub(crate) async fn run_findings(
    State(state): State<ApiState>,
    caller: Caller,
    Path(id): Path<String>,
) -> ApiResult<axum::Json<Vec<Finding>>> {
    let run = state.run(&caller, &RunId::from(id)).await?;
    Ok(axum::Json(state.store().findings_of_run(&run.id).await?))
}

/// Changes a run's jobs applied or planned.
#[utoipa::path(get, path = "/api/v1/runs/{id}/changes", tag = "runs",
    params(("id" = String, Path, description = "Run id")),
    responses((status = 200, body = Vec<Change>), (status = 404, body = Problem)))]
pub(crate) async fn run_changes(
    State(state): State<ApiState>,
    caller: Caller,
    Path(id): Path<String>,
) -> ApiResult<axum::Json<Vec<Change>>> {
    let run = state.run(&caller, &RunId::from(id)).await?;
    Ok(axum::Json(state.store().changes_of_run(&run.id).await?))
}

/// Log lines of a run's jobs, oldest first.
#[utoipa::path(get, path = "/api/v1/runs/{id}/logs", tag = "runs",
    params(("id" = String, Path, description = "Run id")),
    responses((status = 200, body = Vec<RunLog>), (status = 404, body = Problem)))]
async fn run_logs(
    State(state): State<ApiState>,
    caller: Caller,
    Path(id): Path<String>,
) -> ApiResult<axum::Json<Vec<RunLog>>> {
    let run = state.run(&caller, &RunId::from(id)).await?;
    Ok(axum::Json(state.store().logs_of_run(&run.id).await?))
}

/// How often the event stream looks at the store without being woken: for
/// changes made by other processes sharing the database, and for jobs
/// starting (which do not wake it).
const POLL: Duration = Duration::from_secs(1);

/// One server-sent event of a run's stream.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct RunEvent {
    /// `progress` (data: `{run, jobs, total}`), `log` (data: a log line),
    /// `end` (data: the run) or `error`.
    #[schema(pattern = "^(progress|log|end|error)$")]
    pub event: String,
    /// The event's JSON (a text for `error`).
    pub data: String,
}

/// Follows a run live as server-sent events: `progress` (the run and its
/// jobs per state) whenever a job changes state, `log` for each new log
/// line, and a last `end` once the run has finished.
#[utoipa::path(get, path = "/api/v1/runs/{id}/events", tag = "runs",
    params(("id" = String, Path, description = "Run id")),
    responses((status = 200, description = "`text/event-stream` of `progress`, `log` and `end` events", content_type = "text/event-stream", body = RunEvent),
        (status = 404, body = Problem)))]
async fn run_events(
    State(state): State<ApiState>,
    caller: Caller,
    Path(id): Path<String>,
) -> ApiResult<Sse<impl Stream<Item = Result<Event, Infallible>>>> {
    let run = state.run(&caller, &RunId::from(id)).await?;
    let stream = async_stream(state, run.id);
    Ok(Sse::new(stream).keep_alive(KeepAlive::default()))
}

/// The event stream: polls the store and sends what changed.
fn async_stream(state: ApiState, run_id: RunId) -> impl Stream<Item = Result<Event, Infallible>> {
    let (tx, rx) = tokio::sync::mpsc::channel::<Event>(64);
    tokio::spawn(async move {
        let _open = super::listen::StreamGuard::enter(state.connections());
        let mut last_counts = None;
        // Lines are read from the newest time already sent on; the lines
        // of that millisecond are read again and dropped here.
        let mut since = Timestamp::from_millis(i64::MIN);
        let mut seen_logs: HashSet<(Timestamp, JobId, u32, u32)> = HashSet::new();
        loop {
            let (run, jobs, logs) = match (
                state.store().run(&run_id).await,
                state.store().job_counts_of_run(&run_id).await,
                state.store().logs_of_run_since(&run_id, since).await,
            ) {
                (Ok(Some(run)), Ok(jobs), Ok(logs)) => (run, jobs, logs),
                (Ok(None), ..) => break,
                (Err(e), ..) | (_, Err(e), _) | (.., Err(e)) => {
                    tracing::warn!(error = %super::chain(&e), "run events: store failed");
                    let _ = tx
                        .send(Event::default().event("error").data("the store failed"))
                        .await;
                    break;
                }
            };
            let newest = logs.iter().map(|l| l.at).max();
            for log in logs {
                if seen_logs.insert((log.at, log.job_id.clone(), log.attempt, log.seq)) {
                    let event = Event::default().event("log").json_data(&log);
                    if tx
                        .send(event.expect("a log line serialises"))
                        .await
                        .is_err()
                    {
                        return;
                    }
                }
            }
            if let Some(newest) = newest.filter(|n| *n > since) {
                since = newest;
                seen_logs.retain(|(at, ..)| *at == newest);
            }
            let total: u64 = jobs.values().sum();
            let counts = jobs;
            let finished = run.status != RunStatus::Running;
            if last_counts.as_ref() != Some(&counts) {
                let event = Event::default()
                    .event("progress")
                    .json_data(json!({ "run": run, "jobs": counts, "total": total }))
                    .expect("progress serialises");
                if tx.send(event).await.is_err() {
                    return;
                }
                last_counts = Some(counts);
            }
            if finished {
                let event = Event::default()
                    .event("end")
                    .json_data(&run)
                    .expect("a run serialises");
                let _ = tx.send(event).await;
                break;
            }
            // Woken by this process's commits that change runs; stopped as
            // soon as the client is gone (its stream dropped), not at the
            // next event.
            tokio::select! {
                () = state.store().runs_changed() => {}
                () = tokio::time::sleep(POLL) => {}
                () = tx.closed() => return,
            }
        }
    });
    futures_util::stream::unfold(
        rx,
        |mut rx| async move { rx.recv().await.map(|e| (Ok(e), rx)) },
    )
}

/// Cancels a run's jobs that have not started (technician).
#[utoipa::path(post, path = "/api/v1/runs/{id}/cancel", tag = "runs",
    params(("id" = String, Path, description = "Run id")),
    responses((status = 200, body = Run), (status = 404, body = Problem)))]
pub(crate) async fn cancel_run(
    State(state): State<ApiState>,
    caller: Caller,
    Path(id): Path<String>,
) -> ApiResult<axum::Json<Run>> {
    caller.require(Role::Technician)?;
    let run = state.run(&caller, &RunId::from(id)).await?;
    let cancelled = state.store().cancel_run(&run.id, Timestamp::now()).await?;
    state
        .audit(
            &caller,
            run.tenant_id.as_ref(),
            "run.cancel",
            json!({ "run": run.id, "cancelled": cancelled }),
        )
        .await?;
    Ok(axum::Json(state.run(&caller, &run.id).await?))
}

/// Which findings to list.
#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
pub struct FindingQuery {
    /// The tenant.
    pub tenant: TenantId,
    /// Only open ones (default true).
    pub open: Option<bool>,
}

/// A tenant's findings, worst first.
#[utoipa::path(get, path = "/api/v1/findings", tag = "findings", params(FindingQuery),
    responses((status = 200, body = Vec<Finding>), (status = 404, body = Problem)))]
async fn list_findings(
    State(state): State<ApiState>,
    caller: Caller,
    Query(q): Query<FindingQuery>,
) -> ApiResult<axum::Json<Vec<Finding>>> {
    let tenant = state.tenant(&caller, &q.tenant).await?;
    Ok(axum::Json(
        state
            .store()
            .findings(&tenant.id, q.open.unwrap_or(true))
            .await?,
    ))
}

/// A job waiting for approval and what it will change.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct Approval {
    /// The job to approve or reject (its id is the approval's).
    pub job: Job,
    /// The changes its plan recorded.
    pub planned: Vec<NewChange>,
}

/// Jobs awaiting approval that the caller sees, oldest first.
#[utoipa::path(get, path = "/api/v1/approvals", tag = "approvals",
    responses((status = 200, body = Vec<Approval>)))]
pub(crate) async fn list_approvals(
    State(state): State<ApiState>,
    caller: Caller,
) -> ApiResult<axum::Json<Vec<Approval>>> {
    let mut out = Vec::new();
    for job in state.store().awaiting_approval(&caller.scope).await? {
        let planned = state
            .store()
            .planned_changes(&job.run_id, job.device_id.as_ref(), job.step_index)
            .await?
            .unwrap_or_default();
        out.push(Approval { job, planned });
    }
    Ok(axum::Json(out))
}

/// A decision's comment.
#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Decision {
    /// Why; recorded with the decision.
    #[serde(default)]
    pub comment: String,
}

/// Approves a job's plan (technician): it is queued and applies the plan,
/// refusing if the device no longer matches it.
#[utoipa::path(post, path = "/api/v1/approvals/{job}/approve", tag = "approvals",
    params(("job" = String, Path, description = "Job id")), request_body = Decision,
    responses((status = 200, body = Job), (status = 404, body = Problem), (status = 409, body = Problem)))]
pub(crate) async fn approve(
    State(state): State<ApiState>,
    caller: Caller,
    Path(job): Path<String>,
    Json(body): Json<Decision>,
) -> ApiResult<axum::Json<Job>> {
    decide(state, caller, JobId::from(job), body, true).await
}

/// Rejects a job's plan (technician): it is cancelled.
#[utoipa::path(post, path = "/api/v1/approvals/{job}/reject", tag = "approvals",
    params(("job" = String, Path, description = "Job id")), request_body = Decision,
    responses((status = 200, body = Job), (status = 404, body = Problem), (status = 409, body = Problem)))]
pub(crate) async fn reject(
    State(state): State<ApiState>,
    caller: Caller,
    Path(job): Path<String>,
    Json(body): Json<Decision>,
) -> ApiResult<axum::Json<Job>> {
    decide(state, caller, JobId::from(job), body, false).await
}

async fn decide(
    state: ApiState,
    caller: Caller,
    job_id: JobId,
    body: Decision,
    approved: bool,
) -> ApiResult<axum::Json<Job>> {
    caller.require(Role::Technician)?;
    let job = state.job(&caller, &job_id).await?;
    let now = Timestamp::now();
    let action = if approved {
        "approval.approve"
    } else {
        "approval.reject"
    };
    // The decision and its audit event commit together.
    let audit = super::audit_event(
        &caller,
        Some(&job.tenant_id),
        action,
        json!({ "job": job.id, "run": job.run_id, "comment": body.comment }),
        "ok",
    );
    let decided = state
        .store()
        .decide_job(
            &job.id,
            &caller.actor(),
            &body.comment,
            approved,
            std::slice::from_ref(&audit),
            now,
        )
        .await?;
    let Some(decided) = decided else {
        return Err(ApiError::new(
            axum::http::StatusCode::CONFLICT,
            "not-awaiting-approval",
            format!("job `{}` is {}, not awaiting approval", job.id, job.status),
        ));
    };
    // As the decision left it: a worker may take an approved job at once.
    Ok(axum::Json(decided))
}

/// Whose tickets.
#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
pub struct TicketQuery {
    /// The tenant.
    pub tenant: TenantId,
}

/// Tickets plugins filed for a tenant.
#[utoipa::path(get, path = "/api/v1/tickets", tag = "tickets", params(TicketQuery),
    responses((status = 200, body = Vec<StoredTicket>), (status = 404, body = Problem)))]
async fn list_tickets(
    State(state): State<ApiState>,
    caller: Caller,
    Query(q): Query<TicketQuery>,
) -> ApiResult<axum::Json<Vec<StoredTicket>>> {
    let tenant = state.tenant(&caller, &q.tenant).await?;
    Ok(axum::Json(state.store().tickets(&tenant.id).await?))
}
