//! Playbooks, schedules and runs: a run is created with its jobs in one
//! transaction, once per schedule firing, and finished when its last job
//! ends.

use std::collections::{HashMap, HashSet};

use sqlx::Row;
use sqlx::any::AnyRow;

use super::error::{Result, StoreError};
use super::ids::{PlaybookId, RunId, ScheduleId, TenantId, Timestamp};
use super::model::{Firing, NewJob, NewPlaybook, NewSchedule, Pin, Playbook, Run, Schedule};
use super::sql::{
    Sql, enum_column, json_column, opt_time_column, rows_per_statement, time_column, to_json,
};
use super::{Store, WriteTx};

pub(crate) const RUN_COLUMNS: &str =
    "id, tenant_id, playbook_id, schedule_id, fire_at, status, created_at, finished_at, pins";
pub(crate) const SCHEDULE_COLUMNS: &str =
    "id, playbook_id, tenant_id, spec, enabled, last_fired_at, next_fire_at";

/// Runs checked per statement when finishing runs.
const FINISH_CHUNK: usize = 200;

/// Firings per statement when a batch of them is written.
const BATCH_ROWS: usize = 500;

pub(crate) fn run_from_row(row: &AnyRow) -> Result<Run> {
    Ok(Run {
        id: RunId::from(row.try_get::<String, _>("id")?),
        tenant_id: row
            .try_get::<Option<String>, _>("tenant_id")?
            .map(TenantId::from),
        playbook_id: row
            .try_get::<Option<String>, _>("playbook_id")?
            .map(PlaybookId::from),
        schedule_id: row
            .try_get::<Option<String>, _>("schedule_id")?
            .map(ScheduleId::from),
        fire_at: opt_time_column(row, "fire_at")?,
        status: enum_column(row, "status")?,
        created_at: time_column(row, "created_at")?,
        finished_at: opt_time_column(row, "finished_at")?,
        pins: row
            .try_get::<Option<String>, _>("pins")?
            .map(|text| serde_json::from_str(&text))
            .transpose()
            .map_err(|e| StoreError::corrupt("pins", e))?,
    })
}

/// [`run_from_row`] for a row of `RUN_COLUMNS` read on one of SQLite's
/// plain read connections (`read.rs`).
pub(crate) fn run_from_sqlite(row: &rusqlite::Row<'_>) -> rusqlite::Result<Run> {
    fn corrupt(
        column: usize,
        e: impl Into<Box<dyn std::error::Error + Send + Sync>>,
    ) -> rusqlite::Error {
        rusqlite::Error::FromSqlConversionFailure(column, rusqlite::types::Type::Text, e.into())
    }
    let status: String = row.get(5)?;
    Ok(Run {
        id: RunId::from(row.get::<_, String>(0)?),
        tenant_id: row.get::<_, Option<String>>(1)?.map(TenantId::from),
        playbook_id: row.get::<_, Option<String>>(2)?.map(PlaybookId::from),
        schedule_id: row.get::<_, Option<String>>(3)?.map(ScheduleId::from),
        fire_at: row.get::<_, Option<i64>>(4)?.map(Timestamp::from_millis),
        status: status
            .parse()
            .map_err(|_| corrupt(5, format!("unknown run status `{status}`")))?,
        created_at: Timestamp::from_millis(row.get(6)?),
        finished_at: row.get::<_, Option<i64>>(7)?.map(Timestamp::from_millis),
        pins: row
            .get_ref(8)?
            .as_str_or_null()?
            .map(serde_json::from_str)
            .transpose()
            .map_err(|e| corrupt(8, e))?,
    })
}

/// The `pins` column of a run: NULL without pins.
fn pins_column(pins: &[Pin]) -> Option<String> {
    (!pins.is_empty()).then(|| serde_json::to_string(pins).unwrap_or_else(|_| "[]".into()))
}

/// Schedules due by `$1` (`$2` is the same instant, so the due and the
/// ahead bind alike).
const DUE: &str = "enabled = 1 AND next_fire_at <= $1 AND next_fire_at <= $2";
/// Schedules due after `$1`, by `$2`, with no run going: written ahead
/// (the index on runs going answers `NOT EXISTS`).
const AHEAD: &str = "enabled = 1 AND next_fire_at > $1 AND next_fire_at <= $2 \
     AND NOT EXISTS (SELECT 1 FROM runs r WHERE r.schedule_id = schedules.id \
     AND r.status = 'running')";

pub(crate) fn schedule_from_row(row: &AnyRow) -> Result<Schedule> {
    Ok(Schedule {
        id: ScheduleId::from(row.try_get::<String, _>("id")?),
        playbook_id: PlaybookId::from(row.try_get::<String, _>("playbook_id")?),
        tenant_id: row
            .try_get::<Option<String>, _>("tenant_id")?
            .map(TenantId::from),
        spec: json_column(row, "spec")?,
        enabled: row.try_get::<i64, _>("enabled")? != 0,
        last_fired_at: opt_time_column(row, "last_fired_at")?,
        next_fire_at: opt_time_column(row, "next_fire_at")?,
    })
}

/// A run's tenant: the one tenant all its jobs are for, if they agree
/// (else its playbook's, which may be none).
fn run_tenant(jobs: &[NewJob]) -> Option<&str> {
    let first = jobs.first()?.tenant_id.as_str();
    jobs.iter()
        .all(|j| j.tenant_id.as_str() == first)
        .then_some(first)
}

impl Store {
    /// Creates a playbook.
    ///
    /// # Errors
    ///
    /// An empty name, steps that are not a JSON array, a target that is
    /// not a JSON object, or an unknown tenant.
    pub async fn create_playbook(&self, new: &NewPlaybook, now: Timestamp) -> Result<Playbook> {
        if new.name.trim().is_empty() {
            return Err(StoreError::invalid("name", "must not be empty"));
        }
        if !new.steps.is_array() {
            return Err(StoreError::invalid("steps", "must be a JSON array"));
        }
        if !new.target.is_object() {
            return Err(StoreError::invalid("target", "must be a JSON object"));
        }
        let playbook = Playbook {
            id: PlaybookId::generate(),
            tenant_id: new.tenant_id.clone(),
            name: new.name.clone(),
            steps: new.steps.clone(),
            target: new.target.clone(),
            created_at: now,
        };
        let mut tx = self.write().await?;
        if let Some(tenant) = &new.tenant_id {
            self.tenant_exists(&mut tx, tenant).await?;
        }
        sqlx::query(
            "INSERT INTO playbooks (id, tenant_id, name, steps, target, created_at, updated_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $6)",
        )
        .bind(playbook.id.as_str())
        .bind(playbook.tenant_id.as_ref().map(TenantId::as_str))
        .bind(playbook.name.as_str())
        .bind(to_json(&playbook.steps))
        .bind(to_json(&playbook.target))
        .bind(now.as_millis())
        .execute(tx.conn())
        .await?;
        tx.commit().await?;
        Ok(playbook)
    }

    async fn tenant_exists(&self, tx: &mut WriteTx, tenant: &TenantId) -> Result<()> {
        let found = sqlx::query("SELECT id FROM tenants WHERE id = $1")
            .bind(tenant.as_str())
            .fetch_optional(tx.conn())
            .await?;
        found
            .map(|_| ())
            .ok_or_else(|| StoreError::UnknownTenant(tenant.clone()))
    }

    /// Creates an enabled schedule.
    ///
    /// # Errors
    ///
    /// An unknown playbook or tenant, or a spec that is not a JSON object.
    pub async fn create_schedule(&self, new: &NewSchedule, now: Timestamp) -> Result<Schedule> {
        if !new.spec.is_object() {
            return Err(StoreError::invalid("spec", "must be a JSON object"));
        }
        let mut tx = self.write().await?;
        let playbook = sqlx::query("SELECT id FROM playbooks WHERE id = $1")
            .bind(new.playbook_id.as_str())
            .fetch_optional(tx.conn())
            .await?;
        if playbook.is_none() {
            return Err(StoreError::UnknownPlaybook(new.playbook_id.clone()));
        }
        if let Some(tenant) = &new.tenant_id {
            self.tenant_exists(&mut tx, tenant).await?;
        }
        let schedule = Schedule {
            id: ScheduleId::generate(),
            playbook_id: new.playbook_id.clone(),
            tenant_id: new.tenant_id.clone(),
            spec: new.spec.clone(),
            enabled: true,
            last_fired_at: None,
            next_fire_at: new.next_fire_at,
        };
        sqlx::query(
            "INSERT INTO schedules (id, playbook_id, tenant_id, spec, enabled, next_fire_at, \
             created_at) VALUES ($1, $2, $3, $4, 1, $5, $6)",
        )
        .bind(schedule.id.as_str())
        .bind(schedule.playbook_id.as_str())
        .bind(schedule.tenant_id.as_ref().map(TenantId::as_str))
        .bind(to_json(&schedule.spec))
        .bind(schedule.next_fire_at.map(Timestamp::as_millis))
        .bind(now.as_millis())
        .execute(tx.conn())
        .await?;
        tx.commit().await?;
        Ok(schedule)
    }

    /// The schedule with this id, if any.
    ///
    /// # Errors
    ///
    /// A database failure or a corrupt row.
    pub async fn schedule(&self, id: &ScheduleId) -> Result<Option<Schedule>> {
        let row = sqlx::query(&format!(
            "SELECT {SCHEDULE_COLUMNS} FROM schedules WHERE id = $1"
        ))
        .bind(id.as_str())
        .fetch_optional(self.pool())
        .await?;
        row.as_ref().map(schedule_from_row).transpose()
    }

    /// Enabled schedules the scheduler should look at by `now`, soonest
    /// first, at most `limit`.
    ///
    /// # Errors
    ///
    /// A database failure or a corrupt row.
    pub async fn due_schedules(&self, now: Timestamp, limit: u32) -> Result<Vec<Schedule>> {
        self.select_schedules(DUE, now, now, limit).await
    }

    /// The schedules matching `condition` (over `$1` now and `$2` ahead),
    /// soonest first, at most `limit`.
    async fn select_schedules(
        &self,
        condition: &str,
        now: Timestamp,
        ahead: Timestamp,
        limit: u32,
    ) -> Result<Vec<Schedule>> {
        let rows = sqlx::query(&format!(
            "SELECT {SCHEDULE_COLUMNS} FROM schedules WHERE {condition} \
             ORDER BY next_fire_at LIMIT $3"
        ))
        .bind(now.as_millis())
        .bind(ahead.as_millis())
        .bind(i64::from(limit))
        .fetch_all(self.pool())
        .await?;
        rows.iter().map(schedule_from_row).collect()
    }

    /// Schedules for the scheduler to fire, soonest first, at most `limit`:
    /// those due by `now`, and those due by `ahead` (a firing written
    /// ahead of its time, its jobs due at it) whose schedule has no run
    /// going. A schedule with a run going fires at its time, when the
    /// overlap policy can see whether that run has ended; so at most one
    /// firing of a schedule is ever written ahead.
    ///
    /// On PostgreSQL they are claimed until `now + claim`, skipping rows
    /// another replica is claiming and schedules another replica's live
    /// claim holds, so replicas fire different batches at once; firing (or
    /// skipping) a schedule moves its `next_fire_at` on and ends the
    /// claim, and [`release_schedules`] gives back the claims of a batch
    /// that could not be fired. On SQLite (one writer) nothing is claimed.
    ///
    /// [`release_schedules`]: Self::release_schedules
    ///
    /// # Errors
    ///
    /// A database failure or a corrupt row.
    pub async fn claim_due_schedules(
        &self,
        now: Timestamp,
        ahead: Timestamp,
        limit: u32,
        claim: std::time::Duration,
    ) -> Result<Vec<Schedule>> {
        // Two statements, each a plain range on the index over
        // `next_fire_at`: the due first, then, while the batch has room,
        // those ahead.
        let mut out = self.claim_schedules(DUE, now, now, limit, claim).await?;
        let room = limit.saturating_sub(u32::try_from(out.len()).unwrap_or(u32::MAX));
        if room > 0 && ahead > now {
            out.extend(self.claim_schedules(AHEAD, now, ahead, room, claim).await?);
        }
        Ok(out)
    }

    /// [`select_schedules`](Self::select_schedules), claimed on PostgreSQL
    /// (see [`claim_due_schedules`](Self::claim_due_schedules)).
    async fn claim_schedules(
        &self,
        condition: &str,
        now: Timestamp,
        ahead: Timestamp,
        limit: u32,
        claim: std::time::Duration,
    ) -> Result<Vec<Schedule>> {
        if self.backend == super::Backend::Sqlite {
            return self.select_schedules(condition, now, ahead, limit).await;
        }
        let mut tx = self.write().await?;
        let rows = sqlx::query(&format!(
            "UPDATE schedules SET claimed_until = $4 WHERE id IN (\
               SELECT id FROM schedules WHERE {condition} \
               AND (claimed_until IS NULL OR claimed_until < $1) \
               ORDER BY next_fire_at LIMIT $3 FOR UPDATE SKIP LOCKED) \
             RETURNING {SCHEDULE_COLUMNS}"
        ))
        .bind(now.as_millis())
        .bind(ahead.as_millis())
        .bind(i64::from(limit))
        .bind((now + claim).as_millis())
        .fetch_all(tx.conn())
        .await?;
        tx.commit().await?;
        let mut due: Vec<Schedule> = rows.iter().map(schedule_from_row).collect::<Result<_>>()?;
        due.sort_by_key(|s| s.next_fire_at);
        Ok(due)
    }

    /// Gives back the claims [`claim_due_schedules`](Self::claim_due_schedules)
    /// took, so another replica (or this one's next tick) fires them now
    /// rather than when the claims run out.
    ///
    /// # Errors
    ///
    /// A database failure.
    pub async fn release_schedules(&self, ids: &[&ScheduleId]) -> Result<()> {
        if self.backend == super::Backend::Sqlite || ids.is_empty() {
            return Ok(());
        }
        let mut tx = self.write().await?;
        for chunk in ids.chunks(BATCH_ROWS) {
            let mut sql = Sql::new(
                self.backend,
                "UPDATE schedules SET claimed_until = NULL WHERE id IN ",
            );
            sql.in_list(chunk.iter().map(|id| id.as_str()));
            sql.execute(tx.conn()).await?;
        }
        tx.commit().await?;
        Ok(())
    }

    /// Whether the schedule has a run still going (for the overlap policy).
    ///
    /// # Errors
    ///
    /// A database failure.
    pub async fn schedule_has_running_run(&self, id: &ScheduleId) -> Result<bool> {
        let row =
            sqlx::query("SELECT 1 FROM runs WHERE schedule_id = $1 AND status = 'running' LIMIT 1")
                .bind(id.as_str())
                .fetch_optional(self.pool())
                .await?;
        Ok(row.is_some())
    }

    /// Which of `ids` have a run still going (one query per 500).
    ///
    /// # Errors
    ///
    /// A database failure.
    pub async fn schedules_with_running_runs(
        &self,
        ids: &[&ScheduleId],
    ) -> Result<std::collections::HashSet<ScheduleId>> {
        let mut out = std::collections::HashSet::new();
        for chunk in ids.chunks(500) {
            let mut sql = super::sql::Sql::new(
                self.backend,
                "SELECT DISTINCT schedule_id FROM runs WHERE status = 'running' AND schedule_id IN ",
            );
            sql.in_list(chunk.iter().map(|id| id.as_str()));
            let mut conn = self.pool().acquire().await?;
            for r in sql.fetch_all(&mut conn).await? {
                out.insert(ScheduleId::from(r.try_get::<String, _>("schedule_id")?));
            }
        }
        Ok(out)
    }

    /// Deletes the runs of `schedule` written ahead of their time (their
    /// firing after `now`) whose jobs are all still waiting for it, and
    /// makes the schedule due at the earliest of them again, its latest
    /// firing the latest run left. Returns how many were withdrawn.
    pub(crate) async fn withdraw_firings_ahead(
        &self,
        tx: &mut WriteTx,
        schedule: &ScheduleId,
        now: Timestamp,
    ) -> Result<usize> {
        let rows = sqlx::query(
            "SELECT id, fire_at FROM runs WHERE schedule_id = $1 AND status = 'running' \
             AND fire_at > $2 AND NOT EXISTS (SELECT 1 FROM jobs j WHERE j.run_id = runs.id \
             AND (j.status <> 'queued' OR j.due_at <= $2))",
        )
        .bind(schedule.as_str())
        .bind(now.as_millis())
        .fetch_all(tx.conn())
        .await?;
        let ids: Vec<String> = rows
            .iter()
            .map(|r| r.try_get("id"))
            .collect::<std::result::Result<_, _>>()?;
        let fire_ats: Vec<i64> = rows
            .iter()
            .map(|r| r.try_get("fire_at"))
            .collect::<std::result::Result<_, _>>()?;
        let Some(earliest) = fire_ats.into_iter().min() else {
            return Ok(0);
        };
        // Jobs first (their counts follow by trigger), then the counts and
        // the runs.
        for table in [
            "DELETE FROM jobs WHERE run_id IN ",
            "DELETE FROM run_job_counts WHERE run_id IN ",
            "DELETE FROM runs WHERE id IN ",
        ] {
            let mut sql = Sql::new(self.backend, table);
            sql.in_list(ids.iter().map(String::as_str));
            sql.execute(tx.conn()).await?;
        }
        sqlx::query(
            "UPDATE schedules SET next_fire_at = $1, claimed_until = NULL, \
             last_fired_at = (SELECT MAX(fire_at) FROM runs WHERE schedule_id = $2) WHERE id = $2",
        )
        .bind(earliest)
        .bind(schedule.as_str())
        .execute(tx.conn())
        .await?;
        tx.mark_runs_changed();
        tracing::info!(%schedule, runs = ids.len(), "a firing written ahead was withdrawn");
        Ok(ids.len())
    }

    /// Records a firing as handled without starting a run (skipped by the
    /// overlap or misfire policy): moves `last_fired_at` forward (never
    /// back) and sets `next_fire_at`.
    ///
    /// # Errors
    ///
    /// An unknown schedule.
    pub async fn skip_firing(&self, firing: &Firing) -> Result<()> {
        let mut tx = self.write().await?;
        self.advance_schedule(&mut tx, firing).await?;
        tx.commit().await
    }

    async fn advance_schedule(&self, tx: &mut WriteTx, firing: &Firing) -> Result<()> {
        let exists = sqlx::query(
            "UPDATE schedules SET \
             last_fired_at = CASE WHEN last_fired_at IS NULL OR last_fired_at < $1 \
                 THEN $1 ELSE last_fired_at END, \
             next_fire_at = $2, claimed_until = NULL WHERE id = $3",
        )
        .bind(firing.fire_at.as_millis())
        .bind(firing.next_fire_at.map(Timestamp::as_millis))
        .bind(firing.schedule_id.as_str())
        .execute(tx.conn())
        .await?
        .rows_affected();
        if exists == 0 {
            return Err(StoreError::UnknownSchedule(firing.schedule_id.clone()));
        }
        Ok(())
    }

    /// Starts the run for one firing of a schedule, with its jobs, unless
    /// a run for that firing exists already: `None` then, and nothing is
    /// changed. This is how a schedule fires once across processes (see the
    /// module doc). The schedule's `last_fired_at` and `next_fire_at` move
    /// in the same transaction.
    ///
    /// # Errors
    ///
    /// An unknown schedule, or a job that [`enqueue_jobs`](Store::enqueue_jobs)
    /// would refuse; nothing is stored then.
    #[tracing::instrument(skip(self, jobs), fields(schedule = %firing.schedule_id, fire_at = firing.fire_at.as_millis(), jobs = jobs.len()))]
    pub async fn create_run_for_firing(
        &self,
        firing: &Firing,
        pins: &[Pin],
        jobs: &[NewJob],
        now: Timestamp,
    ) -> Result<Option<RunId>> {
        // The batch's statements for a batch of one: one way a firing is
        // written (its schedule locked and checked enabled on the way).
        let batch = [(firing.clone(), pins.to_vec(), jobs.to_vec())];
        let run = self.create_runs_for_firings(&batch, now).await?.remove(0);
        if run.is_none() && self.schedule(&firing.schedule_id).await?.is_none() {
            return Err(StoreError::UnknownSchedule(firing.schedule_id.clone()));
        }
        Ok(run)
    }

    /// [`create_run_for_firing`](Self::create_run_for_firing) for a batch
    /// of firings in one transaction: one result per firing, `None` for a
    /// firing that already has a run or whose schedule was deleted
    /// meanwhile.
    ///
    /// # Errors
    ///
    /// A database failure or a job the queue refuses; nothing is stored
    /// then.
    pub async fn create_runs_for_firings(
        &self,
        firings: &[(Firing, Vec<Pin>, Vec<NewJob>)],
        now: Timestamp,
    ) -> Result<Vec<Option<RunId>>> {
        let mut tx = self.write().await?;
        // The schedules' playbooks (and which schedules still exist and
        // are enabled): one statement per chunk. On PostgreSQL the rows
        // are locked until the commit, so disabling a schedule waits for a
        // firing written meanwhile and then withdraws it.
        let mut playbooks: HashMap<String, Option<String>> = HashMap::new();
        for chunk in firings.chunks(BATCH_ROWS) {
            let mut sql = Sql::new(
                self.backend,
                "SELECT id, playbook_id FROM schedules WHERE enabled = 1 AND id IN ",
            );
            sql.in_list(chunk.iter().map(|(f, _, _)| f.schedule_id.as_str()));
            if self.backend == super::Backend::Postgres {
                // Locked in one order, so two writers of overlapping
                // batches (a claim that ran out) wait, never deadlock.
                sql.push(" ORDER BY id FOR NO KEY UPDATE");
            }
            for row in sql.fetch_all(tx.conn()).await? {
                playbooks.insert(row.try_get("id")?, row.try_get("playbook_id")?);
            }
        }
        // The runs, a multi-row insert per chunk; a firing that already
        // has one (another process fired it) inserts nothing.
        let mut out: Vec<Option<RunId>> = vec![None; firings.len()];
        let live: Vec<usize> = (0..firings.len())
            .filter(|i| playbooks.contains_key(firings[*i].0.schedule_id.as_str()))
            .collect();
        let proposed: Vec<RunId> = firings.iter().map(|_| RunId::generate()).collect();
        for chunk in live.chunks(rows_per_statement(8, BATCH_ROWS)) {
            let mut sql = Sql::new(
                self.backend,
                "INSERT INTO runs (id, playbook_id, schedule_id, fire_at, status, created_at, \
                 tenant_id, pins) VALUES ",
            );
            for (n, i) in chunk.iter().enumerate() {
                let (firing, pins, jobs) = &firings[*i];
                let playbook = playbooks[firing.schedule_id.as_str()].clone();
                if n > 0 {
                    sql.push(", ");
                }
                sql.push("(")
                    .bind(proposed[*i].as_str())
                    .push(", ")
                    .bind(playbook.clone())
                    .push(", ")
                    .bind(firing.schedule_id.as_str())
                    .push(", ")
                    .bind(firing.fire_at)
                    .push(", 'running', ")
                    .bind(now)
                    .push(", COALESCE(")
                    .bind(run_tenant(jobs))
                    .push(", (SELECT tenant_id FROM playbooks WHERE id = ")
                    .bind(playbook)
                    .push(")), ")
                    .bind(pins_column(pins))
                    .push(")");
            }
            sql.push(" ON CONFLICT (schedule_id, fire_at) DO NOTHING RETURNING id");
            let inserted: HashSet<String> = sql
                .fetch_all(tx.conn())
                .await?
                .iter()
                .map(|r| r.try_get::<String, _>("id"))
                .collect::<std::result::Result<_, _>>()?;
            for i in chunk {
                if inserted.contains(proposed[*i].as_str()) {
                    out[*i] = Some(proposed[*i].clone());
                }
            }
        }
        let created: Vec<usize> = (0..firings.len()).filter(|i| out[*i].is_some()).collect();
        if !created.is_empty() {
            tx.mark_runs_changed();
        }
        // Their schedules move on, a multi-row update per chunk.
        for chunk in created.chunks(rows_per_statement(3, BATCH_ROWS)) {
            let mut sql = Sql::new(self.backend, "WITH v (vid, vfire, vnext) AS (VALUES ");
            for (n, i) in chunk.iter().enumerate() {
                let firing = &firings[*i].0;
                if n > 0 {
                    sql.push(", ");
                }
                sql.tuple([
                    super::sql::Arg::from(firing.schedule_id.as_str()),
                    firing.fire_at.into(),
                    firing.next_fire_at.into(),
                ]);
            }
            sql.push(
                ") UPDATE schedules SET \
                 last_fired_at = CASE WHEN last_fired_at IS NULL OR last_fired_at < v.vfire \
                     THEN v.vfire ELSE last_fired_at END, \
                 next_fire_at = v.vnext, claimed_until = NULL FROM v WHERE schedules.id = v.vid",
            );
            sql.execute(tx.conn()).await?;
        }
        // Their jobs, checked and written together.
        let runs: Vec<(&RunId, &[NewJob])> = created
            .iter()
            .map(|i| (out[*i].as_ref().expect("created"), firings[*i].2.as_slice()))
            .collect();
        self.insert_jobs_of(&mut tx, &runs, now).await?;
        tx.commit().await?;
        let created: Vec<RunId> = out.iter().flatten().cloned().collect();
        if !created.is_empty() {
            self.finish_runs(&created, now).await?;
        }
        Ok(out)
    }

    /// Starts a run by hand (not from a schedule), with its jobs.
    ///
    /// # Errors
    ///
    /// An unknown playbook, or a job that [`enqueue_jobs`](Store::enqueue_jobs)
    /// would refuse; nothing is stored then.
    pub async fn create_run(
        &self,
        playbook_id: Option<&PlaybookId>,
        pins: &[Pin],
        jobs: &[NewJob],
        now: Timestamp,
    ) -> Result<RunId> {
        let mut tx = self.write().await?;
        if let Some(playbook) = playbook_id {
            let found = sqlx::query("SELECT id FROM playbooks WHERE id = $1")
                .bind(playbook.as_str())
                .fetch_optional(tx.conn())
                .await?;
            if found.is_none() {
                return Err(StoreError::UnknownPlaybook(playbook.clone()));
            }
        }
        let run_id = RunId::generate();
        sqlx::query(
            "INSERT INTO runs (id, playbook_id, status, created_at, tenant_id, pins) \
             VALUES ($1, $2, 'running', $3, \
             COALESCE($4, (SELECT tenant_id FROM playbooks WHERE id = $2)), $5)",
        )
        .bind(run_id.as_str())
        .bind(playbook_id.map(PlaybookId::as_str))
        .bind(now.as_millis())
        .bind(run_tenant(jobs))
        .bind(pins_column(pins))
        .execute(tx.conn())
        .await?;
        tx.mark_runs_changed();
        self.insert_jobs(&mut tx, &run_id, jobs, now).await?;
        tx.commit().await?;
        self.finish_runs(std::slice::from_ref(&run_id), now).await?;
        Ok(run_id)
    }

    /// The run with this id, if any.
    ///
    /// # Errors
    ///
    /// A database failure or a corrupt row.
    pub async fn run(&self, id: &RunId) -> Result<Option<Run>> {
        if let Some(readers) = self.readers() {
            let mut sql = Sql::new(
                super::Backend::Sqlite,
                &format!("SELECT {RUN_COLUMNS} FROM runs WHERE id = "),
            );
            sql.bind(id.as_str());
            return Ok(readers.fetch_all(&sql, run_from_sqlite)?.pop());
        }
        let row = sqlx::query(&format!("SELECT {RUN_COLUMNS} FROM runs WHERE id = $1"))
            .bind(id.as_str())
            .fetch_optional(self.pool())
            .await?;
        row.as_ref().map(run_from_row).transpose()
    }

    /// Runs of a schedule, oldest firing first.
    ///
    /// # Errors
    ///
    /// A database failure or a corrupt row.
    pub async fn runs_of_schedule(&self, id: &ScheduleId) -> Result<Vec<Run>> {
        let rows = sqlx::query(&format!(
            "SELECT {RUN_COLUMNS} FROM runs WHERE schedule_id = $1 ORDER BY fire_at"
        ))
        .bind(id.as_str())
        .fetch_all(self.pool())
        .await?;
        rows.iter().map(run_from_row).collect()
    }

    /// Cancels every job of a run that has not ended (queued, awaiting
    /// approval, or running: the worker running one stops it at its next
    /// heartbeat, and whatever it would have recorded is refused), so the
    /// run ends `cancelled` at once and no later step ever starts. Returns
    /// how many were cancelled.
    ///
    /// # Errors
    ///
    /// An unknown run.
    pub async fn cancel_run(&self, id: &RunId, now: Timestamp) -> Result<u64> {
        let mut tx = self.write().await?;
        if self.run_in(&mut tx, id).await?.is_none() {
            return Err(StoreError::UnknownRun(id.clone()));
        }
        // Running jobs too: their lease is taken back here, so the worker
        // running one stops it at its next heartbeat (the executor aborts
        // a job whose lease it no longer holds) and its completion, fenced
        // by the lease, is refused with everything it carries (follow-up
        // steps included). On PostgreSQL a row a claimer is taking makes
        // this wait for the claim to commit, then re-checks the status.
        let n = sqlx::query(
            "UPDATE jobs SET status = 'cancelled', finished_at = $1, last_error = 'run cancelled', \
             lease_owner = NULL, lease_until = NULL \
             WHERE run_id = $2 AND status IN ('queued', 'awaiting-approval', 'leased')",
        )
        .bind(now.as_millis())
        .bind(id.as_str())
        .execute(tx.conn())
        .await?
        .rows_affected();
        tx.mark_runs_changed();
        tx.commit().await?;
        self.finish_runs(std::slice::from_ref(id), now).await?;
        Ok(n)
    }

    pub(crate) async fn run_in(&self, tx: &mut WriteTx, id: &RunId) -> Result<Option<Run>> {
        let row = sqlx::query(&format!("SELECT {RUN_COLUMNS} FROM runs WHERE id = $1"))
            .bind(id.as_str())
            .fetch_optional(tx.conn())
            .await?;
        row.as_ref().map(run_from_row).transpose()
    }

    /// Finishes those of `runs` whose jobs have all ended: `failed` if any
    /// job failed, timed out or expired, else `cancelled` if any was
    /// cancelled, else `succeeded`. Runs outside a transaction, after the
    /// jobs' own transaction committed (see the module doc).
    pub(crate) async fn finish_runs(&self, runs: &[RunId], now: Timestamp) -> Result<()> {
        let mut runs: Vec<&str> = runs.iter().map(RunId::as_str).collect();
        runs.sort_unstable();
        runs.dedup();
        for chunk in runs.chunks(FINISH_CHUNK) {
            let mut sql = Sql::new(
                self.backend,
                "UPDATE runs SET status = CASE \
                 WHEN EXISTS (SELECT 1 FROM jobs j WHERE j.run_id = runs.id \
                     AND j.status IN ('failed', 'timed-out', 'expired')) THEN 'failed' \
                 WHEN EXISTS (SELECT 1 FROM jobs j WHERE j.run_id = runs.id \
                     AND j.status = 'cancelled') THEN 'cancelled' \
                 ELSE 'succeeded' END, finished_at = ",
            );
            sql.bind(now)
                .push(" WHERE status = 'running' AND id IN ")
                .in_list(chunk.iter().copied())
                .push(
                    " AND NOT EXISTS (SELECT 1 FROM jobs j WHERE j.run_id = runs.id \
                     AND j.status IN ('queued', 'leased', 'awaiting-approval')) RETURNING id",
                );
            let mut tx = self.write().await?;
            let finished: Vec<String> = sql
                .fetch_all(tx.conn())
                .await?
                .iter()
                .map(|r| r.try_get("id"))
                .collect::<std::result::Result<_, _>>()?;
            if !finished.is_empty() {
                tx.mark_runs_changed();
                compact_job_counts(self.backend, &mut tx, &finished).await?;
            }
            tx.commit().await?;
        }
        Ok(())
    }

    /// Finishes every running run whose jobs have all ended: the repair for
    /// a process that died between ending a run's last job and finishing
    /// the run. Returns how many runs it finished.
    ///
    /// # Errors
    ///
    /// A database failure.
    pub async fn finish_settled_runs(&self, now: Timestamp) -> Result<u64> {
        let ids: Vec<String> = sqlx::query_scalar(
            "SELECT r.id FROM runs r WHERE r.status = 'running' AND NOT EXISTS \
             (SELECT 1 FROM jobs j WHERE j.run_id = r.id \
              AND j.status IN ('queued', 'leased', 'awaiting-approval'))",
        )
        .fetch_all(self.pool())
        .await?;
        let ids: Vec<RunId> = ids.into_iter().map(RunId::from).collect();
        self.finish_runs(&ids, now).await?;
        Ok(ids.len() as u64)
    }
}

/// Leaves one `run_job_counts` row per status with jobs for each of `runs`
/// (just finished): on PostgreSQL the deltas its statements appended are
/// summed into one row per status; on SQLite the statuses its jobs have
/// all left (zero rows) are dropped. A finished run's counts then cost one
/// row per status to keep and to read. A delta a concurrent statement
/// appends meanwhile is not in this statement's snapshot and stays beside
/// the sum, which is still right.
async fn compact_job_counts(
    backend: super::Backend,
    tx: &mut WriteTx,
    runs: &[String],
) -> Result<()> {
    let (head, tail) = match backend {
        super::Backend::Sqlite => ("DELETE FROM run_job_counts WHERE n = 0 AND run_id IN ", ""),
        super::Backend::Postgres => (
            "WITH gone AS (DELETE FROM run_job_counts WHERE run_id IN ",
            " RETURNING run_id, status, n) INSERT INTO run_job_counts (run_id, status, n) \
             SELECT run_id, status, SUM(n) FROM gone GROUP BY run_id, status HAVING SUM(n) <> 0",
        ),
    };
    let mut sql = Sql::new(backend, head);
    sql.in_list(runs.iter().map(String::as_str)).push(tail);
    sql.execute(tx.conn()).await?;
    Ok(())
}
