//! The job queue: enqueue, claim with leases, heartbeats, failures and
//! retries, lease reclaim, expiry and approvals. The module doc of
//! [`store`](super) explains the guarantees.

use std::collections::{BTreeSet, HashMap, HashSet};
use std::time::Duration;

use sqlx::Row;
use sqlx::any::AnyRow;

use super::error::{Result, StoreError};
use super::ids::{DeviceId, JobId, RunId, TenantId, Timestamp, duration_millis};
use super::model::{
    FailOutcome, Failure, FailureKind, Job, JobStatus, NewJob, Reclaimed, Run, Tier,
};
use super::runs::{RUN_COLUMNS, run_from_row};
use super::sql::{
    Sql, enum_column, json_column, opt_json_column, opt_time_column, rows_per_statement,
    time_column, to_json, u32_column,
};
use super::{Backend, Store, WriteTx, ids};

/// Columns of `jobs` read into a [`Job`].
pub(crate) const JOB_COLUMNS: &str = "id, run_id, tenant_id, device_id, tier_rank, plugin, \
    plugin_digest, step_index, mode, params, status, due_at, expires_at, attempts, max_attempts, \
    timeout_ms, lease_owner, lease_until, started_at, applying_attempt, last_error, result, \
    created_at, finished_at, claimed_by";

/// The most jobs one claim takes.
pub const MAX_CLAIM: usize = 1000;

/// Rows one sweep statement (reclaim, expiry) changes; sweeps loop until
/// nothing is left.
const SWEEP_BATCH: usize = 500;

/// Ids per `IN` list.
const IN_CHUNK: usize = 500;

pub(crate) fn job_from_row(row: &AnyRow) -> Result<Job> {
    let attempt = u32_column(row, "attempts")?;
    let applying: Option<i64> = row.try_get("applying_attempt")?;
    let timeout_ms: i64 = row.try_get("timeout_ms")?;
    Ok(Job {
        id: JobId::from(row.try_get::<String, _>("id")?),
        run_id: RunId::from(row.try_get::<String, _>("run_id")?),
        tenant_id: TenantId::from(row.try_get::<String, _>("tenant_id")?),
        device_id: row
            .try_get::<Option<String>, _>("device_id")?
            .map(DeviceId::from),
        tier: Tier::from_rank(row.try_get("tier_rank")?)?,
        plugin: row.try_get("plugin")?,
        plugin_digest: row.try_get("plugin_digest")?,
        step_index: u32_column(row, "step_index")?,
        mode: enum_column(row, "mode")?,
        params: json_column(row, "params")?,
        status: enum_column(row, "status")?,
        due_at: time_column(row, "due_at")?,
        expires_at: opt_time_column(row, "expires_at")?,
        attempt,
        max_attempts: u32_column(row, "max_attempts")?,
        timeout: Duration::from_millis(u64::try_from(timeout_ms).unwrap_or(0)),
        lease_owner: row.try_get("lease_owner")?,
        lease_until: opt_time_column(row, "lease_until")?,
        started_at: opt_time_column(row, "started_at")?,
        interrupted_apply: applying.is_some_and(|a| a < i64::from(attempt)),
        last_error: row.try_get("last_error")?,
        result: opt_json_column(row, "result")?,
        created_at: time_column(row, "created_at")?,
        finished_at: opt_time_column(row, "finished_at")?,
        claimed_by: row.try_get("claimed_by")?,
    })
}

/// A stable 64-bit key for a PostgreSQL advisory lock (FNV-1a). A
/// collision only makes two keys share a lock.
fn advisory_key(kind: &str, name: &str) -> i64 {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for byte in kind.bytes().chain([0]).chain(name.bytes()) {
        hash ^= u64::from(byte);
        hash = hash.wrapping_mul(0x0100_0000_01b3);
    }
    hash as i64
}

fn worker_field(worker: &str) -> Result<()> {
    if worker.trim().is_empty() {
        return Err(StoreError::invalid("worker", "must not be empty"));
    }
    Ok(())
}

fn check_new_job(job: &NewJob) -> Result<()> {
    if job.plugin.trim().is_empty() {
        return Err(StoreError::invalid("plugin", "must not be empty"));
    }
    if !job.params.is_object() {
        return Err(StoreError::invalid("params", "must be a JSON object"));
    }
    if job.max_attempts == 0 {
        return Err(StoreError::invalid("max-attempts", "must be at least 1"));
    }
    if job.timeout.is_zero() || job.timeout.as_millis() >= i64::MAX as u128 {
        return Err(StoreError::invalid(
            "timeout",
            format!("{:?} is not a positive number of milliseconds", job.timeout),
        ));
    }
    if let Some(expires) = job.expires_at
        && expires <= job.due_at
    {
        return Err(StoreError::invalid(
            "expires-at",
            format!("{expires} is not after the job's due time {}", job.due_at),
        ));
    }
    Ok(())
}

/// Claim order: tier, then due time (then id, for a stable order).
fn sort_claimed(jobs: &mut [Job]) {
    jobs.sort_by(|a, b| (a.tier.rank(), a.due_at, &a.id).cmp(&(b.tier.rank(), b.due_at, &b.id)));
}

/// Distinct values of `items`, in first-seen order.
fn distinct<'a>(items: impl Iterator<Item = &'a str>) -> Vec<&'a str> {
    let mut seen = HashSet::new();
    items.filter(|i| seen.insert(*i)).collect()
}

/// Candidate queries one claim makes at most: a round ends early unless a
/// tenant or plugin filled up within it and left the batch short.
const CLAIM_ROUNDS: usize = 4;

/// Room left under the limits of the tenants and plugins a claim has met
/// (unlimited ones are absent).
#[derive(Default)]
struct Room {
    tenants: HashMap<String, i64>,
    plugins: HashMap<String, i64>,
}

/// What a candidate row of a claim says about limits.
struct Candidate {
    id: String,
    tenant: String,
    plugin: String,
    tenant_limit: Option<i64>,
    plugin_limit: Option<i64>,
}

impl Store {
    /// Adds jobs to a running run, in one transaction: all or nothing.
    /// Each job's tier is its tenant's tier now.
    ///
    /// # Errors
    ///
    /// An unknown or finished run, an unknown tenant or device, a device of
    /// another tenant, or a malformed job (field named); nothing is stored.
    #[tracing::instrument(skip(self, jobs), fields(run = %run_id, jobs = jobs.len()))]
    pub async fn enqueue_jobs(
        &self,
        run_id: &RunId,
        jobs: &[NewJob],
        now: Timestamp,
    ) -> Result<Vec<JobId>> {
        let mut tx = self.write().await?;
        let ids = self.insert_jobs(&mut tx, run_id, jobs, now).await?;
        tx.commit().await?;
        Ok(ids)
    }

    /// Checks and inserts jobs inside `tx` (multi-row inserts).
    pub(crate) async fn insert_jobs(
        &self,
        tx: &mut WriteTx,
        run_id: &RunId,
        jobs: &[NewJob],
        now: Timestamp,
    ) -> Result<Vec<JobId>> {
        if jobs.is_empty() {
            return Ok(Vec::new());
        }
        let status: Option<String> = sqlx::query_scalar("SELECT status FROM runs WHERE id = $1")
            .bind(run_id.as_str())
            .fetch_optional(tx.conn())
            .await?;
        match status.as_deref() {
            None => return Err(StoreError::UnknownRun(run_id.clone())),
            Some("running") => {}
            Some(_) => return Err(StoreError::RunFinished(run_id.clone())),
        }
        self.insert_jobs_of(tx, &[(run_id, jobs)], now).await
    }

    /// Inserts the jobs of several runs this transaction has just created
    /// (so running): the tenants' tiers and the devices checked once for
    /// all of them, the rows written as multi-row statements.
    pub(crate) async fn insert_jobs_of(
        &self,
        tx: &mut WriteTx,
        runs: &[(&RunId, &[NewJob])],
        now: Timestamp,
    ) -> Result<Vec<JobId>> {
        let all: Vec<(&RunId, &NewJob)> = runs
            .iter()
            .flat_map(|(run, jobs)| jobs.iter().map(move |j| (*run, j)))
            .collect();
        if all.is_empty() {
            return Ok(Vec::new());
        }
        tx.mark_runs_changed();
        tx.mark_jobs_ready();
        for (_, job) in &all {
            check_new_job(job)?;
        }
        let jobs: Vec<&NewJob> = all.iter().map(|(_, j)| *j).collect();

        // Tiers of the tenants, checking they exist.
        let tenants = distinct(jobs.iter().map(|j| j.tenant_id.as_str()));
        let mut tiers: HashMap<String, Tier> = HashMap::with_capacity(tenants.len());
        for chunk in tenants.chunks(IN_CHUNK) {
            let mut sql = Sql::new(self.backend, "SELECT id, tier FROM tenants WHERE id IN ");
            sql.in_list(chunk.iter().copied());
            for row in sql.fetch_all(tx.conn()).await? {
                tiers.insert(row.try_get("id")?, enum_column(&row, "tier")?);
            }
        }
        if let Some(missing) = tenants.iter().find(|t| !tiers.contains_key(**t)) {
            return Err(StoreError::UnknownTenant(TenantId::from(*missing)));
        }

        self.check_devices(tx, &jobs).await?;

        const COLUMNS: usize = 16;
        let ids: Vec<JobId> = all.iter().map(|_| JobId::generate()).collect();
        let per_statement = rows_per_statement(COLUMNS, 500);
        for (chunk, chunk_ids) in all.chunks(per_statement).zip(ids.chunks(per_statement)) {
            let mut sql = Sql::new(
                self.backend,
                "INSERT INTO jobs (id, run_id, tenant_id, device_id, tier_rank, plugin, \
                 plugin_digest, step_index, mode, params, status, due_at, expires_at, \
                 max_attempts, timeout_ms, created_at) VALUES ",
            );
            for (i, ((run_id, job), id)) in chunk.iter().zip(chunk_ids).enumerate() {
                if i > 0 {
                    sql.push(", ");
                }
                let status = if job.awaiting_approval {
                    JobStatus::AwaitingApproval
                } else {
                    JobStatus::Queued
                };
                sql.push("(")
                    .bind(id.as_str())
                    .push(", ")
                    .bind(run_id.as_str())
                    .push(", ")
                    .bind(job.tenant_id.as_str())
                    .push(", ")
                    .bind(job.device_id.as_ref().map(DeviceId::as_str))
                    .push(", ")
                    .bind(tiers[job.tenant_id.as_str()].rank())
                    .push(", ")
                    .bind(job.plugin.as_str())
                    .push(", ")
                    .bind(job.plugin_digest.as_deref())
                    .push(", ")
                    .bind(i64::from(job.step_index))
                    .push(", ")
                    .bind(job.mode.as_str())
                    .push(", ")
                    .bind(to_json(&job.params))
                    .push(", ")
                    .bind(status.as_str())
                    .push(", ")
                    .bind(job.due_at)
                    .push(", ")
                    .bind(job.expires_at)
                    .push(", ")
                    .bind(i64::from(job.max_attempts))
                    .push(", ")
                    .bind(duration_millis(job.timeout))
                    .push(", ")
                    .bind(now)
                    .push(")");
            }
            sql.execute(tx.conn()).await?;
        }
        Ok(ids)
    }

    /// Checks that every job's device exists and belongs to the job's
    /// tenant. One count per tenant in the batch (usually one) instead of a
    /// row per device; devices are looked at one by one only to name the
    /// culprit.
    async fn check_devices(&self, tx: &mut WriteTx, jobs: &[&NewJob]) -> Result<()> {
        let mut by_tenant: HashMap<&str, BTreeSet<&str>> = HashMap::new();
        for job in jobs {
            if let Some(device) = &job.device_id {
                by_tenant
                    .entry(job.tenant_id.as_str())
                    .or_default()
                    .insert(device.as_str());
            }
        }
        let mut all_found = true;
        'tenants: for (tenant, devices) in &by_tenant {
            let devices: Vec<&str> = devices.iter().copied().collect();
            for chunk in devices.chunks(IN_CHUNK) {
                let mut sql = Sql::new(
                    self.backend,
                    "SELECT COUNT(*) AS n FROM devices WHERE tenant_id = ",
                );
                sql.bind(*tenant)
                    .push(" AND id IN ")
                    .in_list(chunk.iter().copied());
                let found: i64 = sql.query().fetch_one(tx.conn()).await?.try_get("n")?;
                if found != chunk.len() as i64 {
                    all_found = false;
                    break 'tenants;
                }
            }
        }
        if all_found {
            return Ok(());
        }
        for job in jobs {
            let Some(device) = &job.device_id else {
                continue;
            };
            let owner: Option<String> =
                sqlx::query_scalar("SELECT tenant_id FROM devices WHERE id = $1")
                    .bind(device.as_str())
                    .fetch_optional(tx.conn())
                    .await?;
            match owner {
                None => return Err(StoreError::UnknownDevice(device.clone())),
                Some(owner) if owner != job.tenant_id.as_str() => {
                    return Err(StoreError::WrongTenant {
                        what: device.to_string(),
                        expected: job.tenant_id.clone(),
                        actual: TenantId::from(owner),
                    });
                }
                Some(_) => {}
            }
        }
        Ok(())
    }

    /// Leases up to `n` (at most [`MAX_CLAIM`]) due jobs to `worker` for
    /// `lease`, in claim order: tenant tier, then due time. Skips jobs whose
    /// device is unreachable or whose expiry has passed, and honours the
    /// tenants' and plugins' concurrency limits (see the module doc). Each
    /// returned job's [`attempt`](Job::attempt) is the fencing token for
    /// its completion.
    ///
    /// # Errors
    ///
    /// An empty worker id, or a database failure (nothing is claimed).
    #[tracing::instrument(skip(self), fields(backend = self.backend.name()))]
    pub async fn claim(
        &self,
        worker: &str,
        n: usize,
        lease: Duration,
        now: Timestamp,
    ) -> Result<Vec<Job>> {
        worker_field(worker)?;
        let n = n.min(MAX_CLAIM);
        if n == 0 {
            return Ok(Vec::new());
        }
        let mut tx = self.write().await?;

        // Without any limit configured, one statement picks and leases.
        let limits: i64 = sqlx::query_scalar(
            "SELECT (SELECT COUNT(*) FROM tenants WHERE max_concurrent_jobs IS NOT NULL) \
             + (SELECT COUNT(*) FROM plugins WHERE max_concurrent_jobs IS NOT NULL)",
        )
        .fetch_one(tx.conn())
        .await?;
        if limits == 0 {
            let mut sql = self.lease_update(worker, lease, now);
            sql.push("(SELECT j.id FROM jobs j LEFT JOIN devices d ON d.id = j.device_id WHERE ");
            self.claimable(&mut sql, now, worker);
            sql.push(" ORDER BY j.tier_rank, j.due_at, j.id LIMIT ")
                .bind(n as i64);
            if self.backend == Backend::Postgres {
                sql.push(" FOR UPDATE OF j SKIP LOCKED");
            }
            sql.push(") RETURNING ").push(JOB_COLUMNS);
            let mut jobs = sql
                .fetch_all(tx.conn())
                .await?
                .iter()
                .map(job_from_row)
                .collect::<Result<Vec<_>>>()?;
            tx.commit().await?;
            sort_claimed(&mut jobs);
            return Ok(jobs);
        }

        // Tenants and plugins at their limit are left out of the candidates
        // so they cannot hold up the head of the queue.
        let mut excluded_tenants: BTreeSet<String> = sqlx::query_scalar(
            "SELECT t.id FROM tenants t LEFT JOIN jobs j \
             ON j.tenant_id = t.id AND j.status = 'leased' \
             WHERE t.max_concurrent_jobs IS NOT NULL \
             GROUP BY t.id, t.max_concurrent_jobs HAVING COUNT(j.id) >= t.max_concurrent_jobs \
             LIMIT 1000",
        )
        .fetch_all(tx.conn())
        .await?
        .into_iter()
        .collect();
        let mut excluded_plugins: BTreeSet<String> = sqlx::query_scalar(
            "SELECT p.name FROM plugins p LEFT JOIN jobs j \
             ON j.plugin = p.name AND j.status = 'leased' \
             WHERE p.max_concurrent_jobs IS NOT NULL \
             GROUP BY p.name, p.max_concurrent_jobs HAVING COUNT(j.id) >= p.max_concurrent_jobs \
             LIMIT 1000",
        )
        .fetch_all(tx.conn())
        .await?
        .into_iter()
        .collect();

        // Room left under each limit met so far, counted exactly.
        let mut room = Room::default();
        let mut jobs = Vec::with_capacity(n);
        for round in 0..CLAIM_ROUNDS {
            let want = n - jobs.len();
            let candidates = self
                .claim_candidates(
                    &mut tx,
                    want,
                    now,
                    worker,
                    &excluded_tenants,
                    &excluded_plugins,
                )
                .await?;
            if candidates.is_empty() {
                break;
            }
            self.count_room(&mut tx, &mut room, &candidates, round == 0)
                .await?;

            // Take candidates in order while their tenant and plugin have
            // room; a tenant or plugin that fills up is left out of the next
            // round.
            let mut chosen: Vec<&str> = Vec::with_capacity(candidates.len());
            let mut skipped = false;
            for c in &candidates {
                let tenant_room = room.tenants.get(c.tenant.as_str()).copied();
                let plugin_room = room.plugins.get(c.plugin.as_str()).copied();
                if tenant_room.is_some_and(|r| r <= 0) || plugin_room.is_some_and(|r| r <= 0) {
                    skipped = true;
                    if tenant_room.is_some_and(|r| r <= 0) {
                        excluded_tenants.insert(c.tenant.clone());
                    }
                    if plugin_room.is_some_and(|r| r <= 0) {
                        excluded_plugins.insert(c.plugin.clone());
                    }
                    continue;
                }
                if let Some(r) = room.tenants.get_mut(c.tenant.as_str()) {
                    *r -= 1;
                }
                if let Some(r) = room.plugins.get_mut(c.plugin.as_str()) {
                    *r -= 1;
                }
                chosen.push(&c.id);
            }
            if !chosen.is_empty() {
                let mut sql = self.lease_update(worker, lease, now);
                sql.in_list(chosen.iter().copied())
                    .push(" RETURNING ")
                    .push(JOB_COLUMNS);
                for row in sql.fetch_all(tx.conn()).await? {
                    jobs.push(job_from_row(&row)?);
                }
            }
            // Without a limit filling up, the candidates were all there was.
            if !skipped || jobs.len() == n {
                break;
            }
        }
        tx.commit().await?;
        sort_claimed(&mut jobs);
        tracing::debug!(claimed = jobs.len(), "claimed jobs");
        Ok(jobs)
    }

    /// `UPDATE … SET` leasing to `worker`, up to `WHERE id IN `; the
    /// caller appends the ids (a list or a subquery).
    fn lease_update(&self, worker: &str, lease: Duration, now: Timestamp) -> Sql {
        let mut sql = Sql::new(
            self.backend,
            "UPDATE jobs SET status = 'leased', lease_owner = ",
        );
        sql.bind(worker)
            .push(", claimed_by = ")
            .bind(worker)
            .push(", lease_until = ")
            .bind(now + lease)
            .push(", started_at = ")
            .bind(now)
            // No `status = 'queued'` here: the ids are this transaction's
            // (locked on PostgreSQL, one writer on SQLite), and with it
            // PostgreSQL may walk the whole queue index instead of looking
            // the ids up.
            .push(", attempts = attempts + 1 WHERE id IN ");
        sql
    }

    /// The conditions for a claimable job `j` (its device `d` left joined)
    /// at `now`.
    fn claimable(&self, sql: &mut Sql, now: Timestamp, worker: &str) {
        sql.push("j.status = 'queued' AND j.due_at <= ")
            .bind(now)
            .push(" AND (j.expires_at IS NULL OR j.expires_at > ")
            .bind(now)
            // No device, or a device row that is gone (see the schema):
            // claimable.
            .push(") AND COALESCE(d.reachable, 1) = 1")
            // A device whose agent is connected to one server process is
            // that process's to run.
            .push(" AND (d.held_by IS NULL OR d.held_by = ")
            .bind(worker)
            .push(")");
    }

    /// Up to `want` claimable jobs in claim order, leaving out excluded
    /// tenants and plugins; on PostgreSQL locked, skipping rows other
    /// claimers hold.
    async fn claim_candidates(
        &self,
        tx: &mut WriteTx,
        want: usize,
        now: Timestamp,
        worker: &str,
        excluded_tenants: &BTreeSet<String>,
        excluded_plugins: &BTreeSet<String>,
    ) -> Result<Vec<Candidate>> {
        let mut sql = Sql::new(
            self.backend,
            "SELECT j.id, j.tenant_id, j.plugin, t.max_concurrent_jobs AS tenant_limit, \
             p.max_concurrent_jobs AS plugin_limit \
             FROM jobs j JOIN tenants t ON t.id = j.tenant_id \
             LEFT JOIN devices d ON d.id = j.device_id \
             LEFT JOIN plugins p ON p.name = j.plugin WHERE ",
        );
        self.claimable(&mut sql, now, worker);
        if !excluded_tenants.is_empty() {
            sql.push(" AND j.tenant_id NOT IN ")
                .in_list(excluded_tenants.iter().map(String::as_str));
        }
        if !excluded_plugins.is_empty() {
            sql.push(" AND j.plugin NOT IN ")
                .in_list(excluded_plugins.iter().map(String::as_str));
        }
        sql.push(" ORDER BY j.tier_rank, j.due_at, j.id LIMIT ")
            .bind(want as i64);
        if self.backend == Backend::Postgres {
            sql.push(" FOR UPDATE OF j SKIP LOCKED");
        }
        sql.fetch_all(tx.conn())
            .await?
            .iter()
            .map(|row| {
                Ok(Candidate {
                    id: row.try_get("id")?,
                    tenant: row.try_get("tenant_id")?,
                    plugin: row.try_get("plugin")?,
                    tenant_limit: row.try_get("tenant_limit")?,
                    plugin_limit: row.try_get("plugin_limit")?,
                })
            })
            .collect()
    }

    /// Adds to `room` the room left under the limits of the candidates'
    /// tenants and plugins not counted yet. On SQLite the claim's write
    /// lock makes the count exact. On PostgreSQL each new key is locked
    /// first (a transaction-scoped advisory lock, held until commit): in
    /// the first round waiting, in key order so claimers cannot deadlock;
    /// in later rounds only trying, since keys taken earlier break the
    /// order; a key whose lock is busy gets no room in this claim.
    async fn count_room(
        &self,
        tx: &mut WriteTx,
        room: &mut Room,
        candidates: &[Candidate],
        first_round: bool,
    ) -> Result<()> {
        let new_tenants: BTreeSet<&str> = candidates
            .iter()
            .filter(|c| c.tenant_limit.is_some() && !room.tenants.contains_key(&c.tenant))
            .map(|c| c.tenant.as_str())
            .collect();
        let new_plugins: BTreeSet<&str> = candidates
            .iter()
            .filter(|c| c.plugin_limit.is_some() && !room.plugins.contains_key(&c.plugin))
            .map(|c| c.plugin.as_str())
            .collect();
        if new_tenants.is_empty() && new_plugins.is_empty() {
            return Ok(());
        }
        let mut busy: HashSet<(&str, &str)> = HashSet::new();
        if self.backend == Backend::Postgres {
            let mut keys: Vec<(i64, &str, &str)> = new_tenants
                .iter()
                .map(|t| (advisory_key("tenant", t), "tenant", *t))
                .chain(
                    new_plugins
                        .iter()
                        .map(|p| (advisory_key("plugin", p), "plugin", *p)),
                )
                .collect();
            keys.sort_unstable();
            for (key, kind, name) in keys {
                if first_round {
                    // Wrapped so the row has a type the Any driver reads
                    // (the function returns `void`).
                    sqlx::query("SELECT COUNT(*) FROM (SELECT pg_advisory_xact_lock($1)) AS l")
                        .bind(key)
                        .execute(tx.conn())
                        .await?;
                } else {
                    let got: bool = sqlx::query_scalar("SELECT pg_try_advisory_xact_lock($1)")
                        .bind(key)
                        .fetch_one(tx.conn())
                        .await?;
                    if !got {
                        busy.insert((kind, name));
                    }
                }
            }
        }
        let leased_tenants = self.leased_counts(tx, "tenant_id", &new_tenants).await?;
        let leased_plugins = self.leased_counts(tx, "plugin", &new_plugins).await?;
        for c in candidates {
            if let Some(limit) = c.tenant_limit
                && new_tenants.contains(c.tenant.as_str())
            {
                let left = if busy.contains(&("tenant", c.tenant.as_str())) {
                    0
                } else {
                    limit - leased_tenants.get(c.tenant.as_str()).copied().unwrap_or(0)
                };
                room.tenants.entry(c.tenant.clone()).or_insert(left);
            }
            if let Some(limit) = c.plugin_limit
                && new_plugins.contains(c.plugin.as_str())
            {
                let left = if busy.contains(&("plugin", c.plugin.as_str())) {
                    0
                } else {
                    limit - leased_plugins.get(c.plugin.as_str()).copied().unwrap_or(0)
                };
                room.plugins.entry(c.plugin.clone()).or_insert(left);
            }
        }
        Ok(())
    }

    /// Leased jobs per value of `column` (`tenant_id` or `plugin`), for the
    /// given values only.
    async fn leased_counts(
        &self,
        tx: &mut WriteTx,
        column: &'static str,
        keys: &BTreeSet<&str>,
    ) -> Result<HashMap<String, i64>> {
        let mut counts = HashMap::new();
        let keys: Vec<&str> = keys.iter().copied().collect();
        for chunk in keys.chunks(IN_CHUNK) {
            let mut sql = Sql::new(
                self.backend,
                &format!(
                    "SELECT {column} AS k, COUNT(*) AS n FROM jobs \
                 WHERE status = 'leased' AND {column} IN "
                ),
            );
            sql.in_list(chunk.iter().copied())
                .push(&format!(" GROUP BY {column}"));
            for row in sql.fetch_all(tx.conn()).await? {
                counts.insert(row.try_get("k")?, row.try_get("n")?);
            }
        }
        Ok(counts)
    }

    /// When the next queued job falls due after `now`, if any: an idle
    /// executor sleeps until then rather than a whole poll, so a firing
    /// written ahead starts at its time. One index seek per tier.
    ///
    /// # Errors
    ///
    /// A database failure.
    pub async fn next_due_after(&self, now: Timestamp) -> Result<Option<Timestamp>> {
        let per_tier = Tier::ALL
            .iter()
            .map(|t| {
                format!(
                    "SELECT MIN(due_at) AS m FROM jobs WHERE status = 'queued' \
                     AND tier_rank = {} AND due_at > $1",
                    t.rank()
                )
            })
            .collect::<Vec<_>>()
            .join(" UNION ALL ");
        let next: Option<i64> = sqlx::query_scalar(&format!("SELECT MIN(m) FROM ({per_tier}) t"))
            .bind(now.as_millis())
            .fetch_one(self.pool())
            .await?;
        Ok(next.map(Timestamp::from_millis))
    }

    /// Renews `worker`'s leases on `held` (job, attempt, and when the
    /// attempt began running, if it has) to `now + lease`, but never past
    /// that start plus the job's timeout plus one `lease`: a hung attempt
    /// loses its lease, while one still waiting for a plugin instance (no
    /// start yet) keeps it however long it waits, since its timeout has not
    /// begun. Returns the jobs still held; the worker must stop every other
    /// one (its lease was lost or has already run out).
    ///
    /// # Errors
    ///
    /// An empty worker id, or a database failure.
    pub async fn heartbeat(
        &self,
        worker: &str,
        held: &[(JobId, u32, Option<Timestamp>)],
        lease: Duration,
        now: Timestamp,
    ) -> Result<Vec<JobId>> {
        worker_field(worker)?;
        let lease_ms = duration_millis(lease);
        let mut kept = Vec::with_capacity(held.len());
        let mut tx = self.write().await?;
        for chunk in held.chunks(rows_per_statement(3, IN_CHUNK)) {
            let mut sql = Sql::new(self.backend, "WITH v (vid, vattempt, vsince) AS (VALUES ");
            for (i, (id, attempt, since)) in chunk.iter().enumerate() {
                if i > 0 {
                    sql.push(", ");
                }
                // -1: not running yet, no cap.
                sql.tuple([
                    id.as_str().into(),
                    super::sql::Arg::from(i64::from(*attempt)),
                    super::sql::Arg::from(since.map_or(-1, |t| t.as_millis())),
                ]);
            }
            sql.push(
                ") UPDATE jobs SET lease_until = CASE WHEN v.vsince >= 0 \
                   AND v.vsince + timeout_ms + ",
            )
            .bind(lease_ms)
            .push(" < ")
            .bind(now + lease)
            .push(" THEN v.vsince + timeout_ms + ")
            .bind(lease_ms)
            .push(" ELSE ")
            .bind(now + lease)
            .push(
                " END FROM v WHERE jobs.id = v.vid AND jobs.attempts = v.vattempt \
                       AND jobs.lease_owner = ",
            )
            .bind(worker)
            .push(" AND jobs.lease_until >= ")
            .bind(now)
            .push(" RETURNING id");
            for row in sql.fetch_all(tx.conn()).await? {
                kept.push(JobId::from(row.try_get::<String, _>("id")?));
            }
        }
        tx.commit().await?;
        Ok(kept)
    }

    /// Records that `worker`'s attempt of a job is about to make its first
    /// change in apply mode (see the module doc on idempotency). Returns
    /// whether the worker still holds the lease; when it does not, it must
    /// not apply anything.
    ///
    /// # Errors
    ///
    /// An empty worker id, or a database failure.
    pub async fn mark_applying(
        &self,
        worker: &str,
        job_id: &JobId,
        attempt: u32,
        now: Timestamp,
    ) -> Result<bool> {
        worker_field(worker)?;
        let mut tx = self.write().await?;
        let n = sqlx::query(
            "UPDATE jobs SET applying_attempt = attempts WHERE id = $1 AND attempts = $2 \
             AND lease_owner = $3 AND lease_until >= $4",
        )
        .bind(job_id.as_str())
        .bind(i64::from(attempt))
        .bind(worker)
        .bind(now.as_millis())
        .execute(tx.conn())
        .await?
        .rows_affected();
        tx.commit().await?;
        Ok(n == 1)
    }

    /// Records a failed attempt of a job `worker` holds. A transient failure
    /// or a timeout is retried after the backoff while attempts remain; a
    /// permanent one, or one out of attempts, ends the job (`failed`, or
    /// `timed-out` for a timeout). The failure's logs are kept with the
    /// attempt.
    ///
    /// # Errors
    ///
    /// An empty worker id, or a database failure (nothing is changed).
    #[tracing::instrument(skip(self, failure), fields(job = %failure.job_id, attempt = failure.attempt, kind = ?failure.kind))]
    pub async fn fail(
        &self,
        worker: &str,
        failure: &Failure,
        now: Timestamp,
    ) -> Result<FailOutcome> {
        worker_field(worker)?;
        let retryable = failure.kind != FailureKind::Permanent;
        let final_status = match failure.kind {
            FailureKind::TimedOut => JobStatus::TimedOut,
            FailureKind::Transient | FailureKind::Permanent => JobStatus::Failed,
        };
        let retry_at = now + self.backoff.delay(failure.attempt);
        let mut tx = self.write().await?;
        let row = sqlx::query(
            "UPDATE jobs SET \
             status = CASE WHEN $1 = 1 AND attempts < max_attempts THEN 'queued' ELSE $2 END, \
             due_at = CASE WHEN $1 = 1 AND attempts < max_attempts THEN $3 ELSE due_at END, \
             finished_at = CASE WHEN $1 = 1 AND attempts < max_attempts THEN NULL ELSE $4 END, \
             last_error = $5, lease_owner = NULL, lease_until = NULL \
             WHERE id = $6 AND attempts = $7 AND lease_owner = $8 \
             RETURNING run_id, status, due_at",
        )
        .bind(i64::from(retryable))
        .bind(final_status.as_str())
        .bind(retry_at.as_millis())
        .bind(now.as_millis())
        .bind(failure.error.as_str())
        .bind(failure.job_id.as_str())
        .bind(i64::from(failure.attempt))
        .bind(worker)
        .fetch_optional(tx.conn())
        .await?;
        let Some(row) = row else {
            return Ok(FailOutcome::NotLeased);
        };
        let run_id = RunId::from(row.try_get::<String, _>("run_id")?);
        let status: JobStatus = enum_column(&row, "status")?;
        super::results::insert_logs(
            self.backend,
            &mut tx,
            std::iter::once((&failure.job_id, failure.attempt, failure.logs.as_slice())),
        )
        .await?;
        if status != JobStatus::Queued && !failure.then.is_empty() {
            self.insert_jobs(&mut tx, &run_id, &failure.then, now)
                .await?;
        }
        super::inventory::insert_audit(self.backend, &mut tx, &failure.audit).await?;
        if let Some(o) = &failure.observation {
            let entry = super::InboxEntry {
                job_id: failure.job_id.clone(),
                attempt: failure.attempt,
                observation: Some(o.clone()),
            };
            super::durable::inbox_insert(self.backend, &mut tx, &[entry], now).await?;
        }
        tx.commit().await?;
        if status == JobStatus::Queued {
            return Ok(FailOutcome::Retrying {
                due_at: time_column(&row, "due_at")?,
            });
        }
        self.finish_runs(&[run_id], now).await?;
        Ok(FailOutcome::Ended(status))
    }

    /// Takes back leases that ran out before `now`: the job is queued again
    /// after the backoff (the attempt counts) or, out of attempts, ends as
    /// `timed-out`. A job that ends is given to `then`, which returns the
    /// jobs that follow it in its run (inserted in the same transaction),
    /// or `None` when it cannot tell yet: that job is left for a later
    /// sweep. Run it periodically (every process may; on PostgreSQL
    /// concurrent sweeps skip each other's rows).
    ///
    /// # Errors
    ///
    /// A database failure; what was reclaimed before it stays reclaimed.
    #[tracing::instrument(skip(self, then))]
    pub async fn reclaim_expired(
        &self,
        now: Timestamp,
        then: &(dyn Fn(&Job) -> Option<Vec<NewJob>> + Sync),
    ) -> Result<Reclaimed> {
        let mut report = Reclaimed::default();
        loop {
            let mut tx = self.write().await?;
            let mut sql = Sql::new(
                self.backend,
                &format!(
                    "SELECT {JOB_COLUMNS} FROM jobs WHERE status = 'leased' AND lease_until < "
                ),
            );
            sql.bind(now)
                .push(" ORDER BY lease_until LIMIT ")
                .bind(SWEEP_BATCH as i64);
            if self.backend == Backend::Postgres {
                sql.push(" FOR UPDATE SKIP LOCKED");
            }
            let rows = sql.fetch_all(tx.conn()).await?;
            if rows.is_empty() {
                break;
            }
            let selected = rows.len();
            // Out of attempts: the job with what follows it, by id.
            let mut ending: HashMap<String, (Job, Vec<NewJob>)> = HashMap::new();
            let mut expired = Vec::with_capacity(selected);
            for row in &rows {
                let job = job_from_row(row)?;
                let retry = job.attempt < job.max_attempts;
                if !retry {
                    let Some(next) = then(&job) else {
                        continue;
                    };
                    expired.push((job.id.clone(), job.attempt, false));
                    ending.insert(job.id.to_string(), (job, next));
                    continue;
                }
                expired.push((job.id.clone(), job.attempt, true));
            }
            let skipped = selected - expired.len();
            if expired.is_empty() {
                tx.rollback().await?;
                break;
            }
            let mut update = Sql::new(
                self.backend,
                "WITH v (vid, vattempt, vstatus, vdue, vfinished) AS (VALUES ",
            );
            for (i, (id, attempt, retry)) in expired.iter().enumerate() {
                let delay = self.backoff.delay(*attempt);
                if i > 0 {
                    update.push(", ");
                }
                update
                    .push("(")
                    .bind(id.as_str())
                    .push(", ")
                    .bind(i64::from(*attempt))
                    .push(", ")
                    .bind(if *retry { "queued" } else { "timed-out" })
                    .push(", ")
                    .bind(now + if *retry { delay } else { Duration::ZERO })
                    .push(", ")
                    .bind((!retry).then_some(now))
                    .push(")");
            }
            update
                .push(
                    ") UPDATE jobs SET status = v.vstatus, \
                     due_at = CASE WHEN v.vstatus = 'queued' THEN v.vdue ELSE jobs.due_at END, \
                     finished_at = v.vfinished, \
                     last_error = 'the lease of worker `' || jobs.lease_owner || '` ran out', \
                     lease_owner = NULL, lease_until = NULL \
                     FROM v WHERE jobs.id = v.vid AND jobs.attempts = v.vattempt \
                     AND jobs.lease_until < ",
                )
                .bind(now)
                .push(" RETURNING id, run_id, status");
            let changed = update.fetch_all(tx.conn()).await?;
            let ended_before = report.ended.len();
            let mut ended = Vec::new();
            for row in &changed {
                if row.try_get::<String, _>("status")? == "queued" {
                    report.requeued += 1;
                    continue;
                }
                report.timed_out += 1;
                let run = RunId::from(row.try_get::<String, _>("run_id")?);
                let id: String = row.try_get("id")?;
                if let Some((job, next)) = ending.remove(&id) {
                    // A run already ended (cancelled) takes no more jobs.
                    match self.insert_jobs(&mut tx, &run, &next, now).await {
                        Ok(ids) => report.followed += ids.len() as u64,
                        Err(StoreError::RunFinished(_)) => {}
                        Err(e) => return Err(e),
                    }
                    report.ended.push(job);
                }
                ended.push(run);
            }
            // The alerter's share of the jobs that ended, in this
            // transaction: the alerter makes their observations.
            let timed_out: Vec<super::InboxEntry> = report.ended[ended_before..]
                .iter()
                .filter(|job| job.device_id.is_some())
                .map(|job| super::InboxEntry {
                    job_id: job.id.clone(),
                    attempt: job.attempt,
                    observation: None,
                })
                .collect();
            super::durable::inbox_insert(self.backend, &mut tx, &timed_out, now).await?;
            tx.commit().await?;
            self.finish_runs(&ended, now).await?;
            // Jobs left for a later sweep would be selected again.
            if selected < SWEEP_BATCH || skipped > 0 {
                break;
            }
        }
        if report != Reclaimed::default() {
            tracing::info!(
                requeued = report.requeued,
                timed_out = report.timed_out,
                followed = report.followed,
                "reclaimed expired leases"
            );
        }
        Ok(report)
    }

    /// The runs of the jobs [`reclaim_expired`](Self::reclaim_expired)
    /// will end at `now` (leased, lease run out, no attempt left), for the
    /// first batch of them in the order it takes them.
    ///
    /// # Errors
    ///
    /// A database failure.
    pub async fn runs_with_leases_ending(&self, now: Timestamp) -> Result<Vec<Run>> {
        let rows = sqlx::query(&format!(
            "SELECT {RUN_COLUMNS} FROM runs WHERE id IN (SELECT run_id FROM jobs \
             WHERE status = 'leased' AND lease_until < $1 AND attempts >= max_attempts \
             ORDER BY lease_until LIMIT $2)"
        ))
        .bind(now.as_millis())
        .bind(SWEEP_BATCH as i64)
        .fetch_all(self.pool())
        .await?;
        rows.iter().map(run_from_row).collect()
    }

    /// Ends as `expired` every job that has not started by its expiry
    /// (queued, for example because its device stayed unreachable, or
    /// awaiting approval). Returns how many. Run it periodically.
    ///
    /// # Errors
    ///
    /// A database failure; what was expired before it stays expired.
    #[tracing::instrument(skip(self))]
    pub async fn expire_due(&self, now: Timestamp) -> Result<u64> {
        let mut total = 0;
        loop {
            let mut tx = self.write().await?;
            let mut sql = Sql::new(
                self.backend,
                "UPDATE jobs SET status = 'expired', finished_at = ",
            );
            sql.bind(now)
                .push(
                    ", last_error = CASE \
                     WHEN status = 'awaiting-approval' THEN 'not approved before it expired' \
                     WHEN EXISTS (SELECT 1 FROM devices d WHERE d.id = jobs.device_id \
                         AND d.reachable = 0) \
                         THEN 'device `' || jobs.device_id || '` was unreachable until the job expired' \
                     ELSE 'did not start before it expired' END \
                     WHERE status IN ('queued', 'awaiting-approval') AND expires_at <= ",
                )
                .bind(now)
                .push(
                    " AND id IN (SELECT id FROM jobs \
                     WHERE status IN ('queued', 'awaiting-approval') AND expires_at <= ",
                )
                .bind(now)
                .push(" LIMIT ")
                .bind(SWEEP_BATCH as i64);
            if self.backend == Backend::Postgres {
                sql.push(" FOR UPDATE SKIP LOCKED");
            }
            sql.push(") RETURNING run_id");
            let rows = sql.fetch_all(tx.conn()).await?;
            tx.commit().await?;
            let runs = rows
                .iter()
                .map(|r| Ok(RunId::from(r.try_get::<String, _>("run_id")?)))
                .collect::<Result<Vec<_>>>()?;
            self.finish_runs(&runs, now).await?;
            total += rows.len() as u64;
            if rows.len() < SWEEP_BATCH {
                break;
            }
        }
        if total > 0 {
            tracing::info!(expired = total, "expired jobs");
        }
        Ok(total)
    }

    /// Gives back `worker`'s lease on a job that must not start now (its
    /// maintenance window closed): queued again, not before `until`, with
    /// one more attempt allowed so the deferral costs no retry; or, when
    /// `until` is `None`, ended as expired with `reason`. Returns whether
    /// the worker still held the lease (fenced like a completion).
    ///
    /// # Errors
    ///
    /// An empty worker id, or a database failure.
    pub async fn defer(
        &self,
        worker: &str,
        job_id: &JobId,
        attempt: u32,
        until: Option<Timestamp>,
        reason: &str,
        now: Timestamp,
    ) -> Result<bool> {
        worker_field(worker)?;
        let mut tx = self.write().await?;
        let run: Option<String> =
            match until {
                Some(due) => sqlx::query_scalar(
                    "UPDATE jobs SET status = 'queued', lease_owner = NULL, lease_until = NULL, \
                 due_at = $4, max_attempts = max_attempts + 1, last_error = $5 \
                 WHERE id = $1 AND attempts = $2 AND lease_owner = $3 RETURNING run_id",
                )
                .bind(job_id.as_str())
                .bind(i64::from(attempt))
                .bind(worker)
                .bind(due.as_millis())
                .bind(reason)
                .fetch_optional(tx.conn())
                .await?,
                None => sqlx::query_scalar(
                    "UPDATE jobs SET status = 'expired', lease_owner = NULL, lease_until = NULL, \
                 finished_at = $4, last_error = $5 \
                 WHERE id = $1 AND attempts = $2 AND lease_owner = $3 RETURNING run_id",
                )
                .bind(job_id.as_str())
                .bind(i64::from(attempt))
                .bind(worker)
                .bind(now.as_millis())
                .bind(reason)
                .fetch_optional(tx.conn())
                .await?,
            };
        tx.commit().await?;
        if let (Some(run), None) = (&run, until) {
            self.finish_runs(&[RunId::from(run.as_str())], now).await?;
        }
        Ok(run.is_some())
    }

    /// Approves a job awaiting approval: it is queued and the decision is
    /// recorded. Returns the job as the approval left it (a worker may
    /// take it right after), or `None` (and records nothing) if the job
    /// was not awaiting approval.
    ///
    /// # Errors
    ///
    /// An empty approver, or a database failure.
    pub async fn approve_job(
        &self,
        job_id: &JobId,
        by: &str,
        note: &str,
        now: Timestamp,
    ) -> Result<Option<Job>> {
        self.decide(job_id, by, note, true, now).await
    }

    /// Rejects a job awaiting approval: it is cancelled and the decision is
    /// recorded. Returns the job as the rejection left it, or `None` (and
    /// records nothing) if the job was not awaiting approval.
    ///
    /// # Errors
    ///
    /// An empty approver, or a database failure.
    pub async fn reject_job(
        &self,
        job_id: &JobId,
        by: &str,
        note: &str,
        now: Timestamp,
    ) -> Result<Option<Job>> {
        self.decide(job_id, by, note, false, now).await
    }

    async fn decide(
        &self,
        job_id: &JobId,
        by: &str,
        note: &str,
        approved: bool,
        now: Timestamp,
    ) -> Result<Option<Job>> {
        self.decide_job(job_id, by, note, approved, &[], now).await
    }

    /// Approves (`approved`) or rejects a job awaiting approval, as
    /// [`approve_job`](Self::approve_job) and
    /// [`reject_job`](Self::reject_job) do, writing `audit` in the same
    /// transaction: the decision's audit events exist exactly when the
    /// decision committed.
    ///
    /// # Errors
    ///
    /// An empty approver, or a database failure (nothing is changed).
    pub async fn decide_job(
        &self,
        job_id: &JobId,
        by: &str,
        note: &str,
        approved: bool,
        audit: &[super::AuditEvent],
        now: Timestamp,
    ) -> Result<Option<Job>> {
        if by.trim().is_empty() {
            return Err(StoreError::invalid("decided-by", "must not be empty"));
        }
        let mut tx = self.write().await?;
        let row = sqlx::query(&format!(
            "UPDATE jobs SET status = $1, \
             finished_at = CASE WHEN $1 = 'cancelled' THEN $2 ELSE NULL END, \
             last_error = CASE WHEN $1 = 'cancelled' THEN 'plan rejected' ELSE last_error END \
             WHERE id = $3 AND status = 'awaiting-approval' RETURNING {JOB_COLUMNS}"
        ))
        .bind(if approved { "queued" } else { "cancelled" })
        .bind(now.as_millis())
        .bind(job_id.as_str())
        .fetch_optional(tx.conn())
        .await?;
        let Some(row) = row else {
            return Ok(None);
        };
        let job = job_from_row(&row)?;
        if approved {
            tx.mark_jobs_ready();
        }
        sqlx::query(
            "INSERT INTO approvals (id, job_id, decision, decided_by, note, decided_at) \
             VALUES ($1, $2, $3, $4, $5, $6)",
        )
        .bind(ids::new_id())
        .bind(job_id.as_str())
        .bind(if approved { "approved" } else { "rejected" })
        .bind(by)
        .bind(note)
        .bind(now.as_millis())
        .execute(tx.conn())
        .await?;
        super::inventory::insert_audit(self.backend, &mut tx, audit).await?;
        tx.commit().await?;
        crate::failpoint::hit("after-approval-commit");
        if !approved {
            self.finish_runs(std::slice::from_ref(&job.run_id), now)
                .await?;
        }
        Ok(Some(job))
    }

    /// The job with this id, if any.
    ///
    /// # Errors
    ///
    /// A database failure or a corrupt row.
    pub async fn job(&self, id: &JobId) -> Result<Option<Job>> {
        let row = sqlx::query(&format!("SELECT {JOB_COLUMNS} FROM jobs WHERE id = $1"))
            .bind(id.as_str())
            .fetch_optional(self.pool())
            .await?;
        row.as_ref().map(job_from_row).transpose()
    }

    /// A run's jobs, in creation order.
    ///
    /// # Errors
    ///
    /// A database failure or a corrupt row.
    pub async fn jobs_of_run(&self, run_id: &RunId) -> Result<Vec<Job>> {
        let rows = sqlx::query(&format!(
            "SELECT {JOB_COLUMNS} FROM jobs WHERE run_id = $1 ORDER BY id"
        ))
        .bind(run_id.as_str())
        .fetch_all(self.pool())
        .await?;
        rows.iter().map(job_from_row).collect()
    }

    /// A page of a run's jobs in creation order: at most `limit` after the
    /// job `after` (the previous page's last).
    ///
    /// # Errors
    ///
    /// A database failure or a corrupt row.
    pub async fn jobs_of_run_page(
        &self,
        run_id: &RunId,
        after: Option<&JobId>,
        limit: u32,
    ) -> Result<Vec<Job>> {
        let rows = sqlx::query(&format!(
            "SELECT {JOB_COLUMNS} FROM jobs WHERE run_id = $1 AND id > $2 ORDER BY id LIMIT $3"
        ))
        .bind(run_id.as_str())
        .bind(after.map_or("", JobId::as_str))
        .bind(i64::from(limit))
        .fetch_all(self.pool())
        .await?;
        rows.iter().map(job_from_row).collect()
    }

    /// How many jobs have each status (for metrics and tests).
    ///
    /// # Errors
    ///
    /// A database failure or a corrupt row.
    pub async fn job_counts(&self) -> Result<HashMap<JobStatus, u64>> {
        let rows = sqlx::query("SELECT status, COUNT(*) AS n FROM jobs GROUP BY status")
            .fetch_all(self.pool())
            .await?
            .iter()
            .map(|row| Ok((row.try_get("status")?, row.try_get("n")?)))
            .collect::<Result<Vec<_>>>()?;
        status_counts(rows)
    }

    /// How many jobs of `run_id` have each status, from the counts the
    /// database keeps as jobs are inserted and change status
    /// (`run_job_counts`, kept by triggers: migration 0012), so a run of
    /// 10,000 jobs costs as much as a run of one. Statuses with no jobs are
    /// left out.
    ///
    /// # Errors
    ///
    /// A database failure or a corrupt row.
    pub async fn job_counts_of_run(&self, run_id: &RunId) -> Result<HashMap<JobStatus, u64>> {
        let mut sql = Sql::new(
            self.backend,
            "SELECT status, CAST(SUM(n) AS BIGINT) AS n FROM run_job_counts WHERE run_id = ",
        );
        sql.bind(run_id.as_str()).push(" GROUP BY status");
        let rows: Vec<(String, i64)> = match self.readers() {
            Some(readers) => readers.fetch_all(&sql, |row| Ok((row.get(0)?, row.get(1)?)))?,
            None => sql
                .query()
                .fetch_all(self.pool())
                .await?
                .iter()
                .map(|row| Ok((row.try_get("status")?, row.try_get("n")?)))
                .collect::<Result<_>>()?,
        };
        status_counts(rows)
    }
}

/// `(status, n)` pairs as counts per status; a status counted zero (or
/// less) is left out.
fn status_counts(rows: impl IntoIterator<Item = (String, i64)>) -> Result<HashMap<JobStatus, u64>> {
    let mut counts = HashMap::new();
    for (status, n) in rows {
        if n <= 0 {
            continue;
        }
        let status = status
            .parse()
            .map_err(|_| StoreError::corrupt("status", format!("unknown value `{status}`")))?;
        counts.insert(status, n as u64);
    }
    Ok(counts)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn advisory_keys_are_stable_and_distinguish_kinds() {
        assert_eq!(advisory_key("tenant", "a"), advisory_key("tenant", "a"));
        assert_ne!(advisory_key("tenant", "a"), advisory_key("plugin", "a"));
        assert_ne!(advisory_key("tenant", "ab"), advisory_key("tenanta", "b"));
    }
}
