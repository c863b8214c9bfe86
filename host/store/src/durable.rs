//! What the executor keeps beside the queue: installed plugin versions,
//! the mutation journal, tickets, plugin state, shared alert state and the
//! SLA report over findings.

use std::collections::{BTreeMap, HashMap};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use sqlx::Row;

use super::error::{Result, StoreError};
use super::ids::{DeviceId, JobId, PlaybookId, RunId, TenantId, Timestamp};
use super::model::{NewChange, Playbook, Tier};
use super::sql::{Arg, Sql, enum_column, json_column, rows_per_statement, time_column};
use super::{Backend, Store, WriteTx, ids};

/// An installed plugin version.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct PluginVersion {
    /// Plugin name.
    pub plugin: String,
    /// Semantic version.
    pub version: String,
    /// `sha256:<hex>` of the component bytes.
    pub digest: String,
    /// Granted capabilities, as grant strings.
    pub grants: Vec<String>,
    /// When it was installed.
    pub installed_at: Timestamp,
    /// Where it came from, when it was installed from a registry.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source: Option<PluginSource>,
}

/// Where a plugin version installed from a registry came from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct PluginSource {
    /// `namespace/module` in the registry.
    pub module: String,
    /// The semver requirement it was installed with (`^1.2`); an upgrade
    /// resolves it again.
    pub requirement: String,
    /// The id of the trusted key whose signature verified; `None` for an
    /// unsigned module of a namespace allowed to be unsigned.
    pub signed_by: Option<String>,
    /// The capabilities its manifest requested.
    pub capabilities: Vec<String>,
}

/// A ticket to file, from a job.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewTicket {
    /// The tenant.
    pub tenant_id: TenantId,
    /// The device it is about (dropped if no such device is stored).
    pub device_id: Option<String>,
    /// The job filing it.
    pub job_id: JobId,
    /// `incident` or `work-item`, followed by the queue, as `kind:queue`.
    pub queue: String,
    /// Title.
    pub title: String,
    /// Body.
    pub body: String,
    /// Unique per tenant: filing the same key again returns the ticket
    /// already filed instead of filing a second one.
    pub dedupe_key: String,
}

/// A stored ticket.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct StoredTicket {
    /// Its id.
    pub id: String,
    /// The tenant.
    pub tenant_id: TenantId,
    /// The device it is about, if stored.
    pub device_id: Option<DeviceId>,
    /// The job that filed it.
    pub job_id: Option<JobId>,
    /// Queue.
    pub queue: String,
    /// Title.
    pub title: String,
    /// Dedupe key.
    pub dedupe_key: Option<String>,
    /// When it was filed.
    pub created_at: Timestamp,
}

/// Time to remediate findings of one tenant tier.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct TierSla {
    /// The tier.
    pub tier: Tier,
    /// The target time to remediate, in seconds.
    pub target_seconds: i64,
    /// Findings resolved (first seen → resolved) in the period.
    pub resolved: u64,
    /// Median time to remediate of those, in seconds.
    pub median_seconds: Option<i64>,
    /// 90th percentile, in seconds.
    pub p90_seconds: Option<i64>,
    /// Resolved ones that took longer than the target.
    pub resolved_late: u64,
    /// Findings still open.
    pub open: u64,
    /// Open ones already older than the target.
    pub open_overdue: u64,
}

impl Store {
    /// Every installed plugin version, by name then install time.
    ///
    /// # Errors
    ///
    /// A database failure or a corrupt row.
    pub async fn plugin_versions(&self) -> Result<Vec<PluginVersion>> {
        sqlx::query(
            "SELECT plugin, version, digest, grants, installed_at, source, requirement, \
             signed_by, capabilities FROM plugin_versions ORDER BY plugin, installed_at",
        )
        .fetch_all(self.pool())
        .await?
        .iter()
        .map(|r| {
            let grants = json_column(r, "grants")?;
            Ok(PluginVersion {
                plugin: r.try_get("plugin")?,
                version: r.try_get("version")?,
                digest: r.try_get("digest")?,
                grants: serde_json::from_value(grants)
                    .map_err(|e| super::StoreError::corrupt("grants", e))?,
                installed_at: time_column(r, "installed_at")?,
                source: plugin_source(r)?,
            })
        })
        .collect()
    }

    /// The playbook with this id, if any.
    ///
    /// # Errors
    ///
    /// A database failure or a corrupt row.
    pub async fn playbook(&self, id: &PlaybookId) -> Result<Option<Playbook>> {
        let row = sqlx::query(
            "SELECT id, tenant_id, name, steps, target, created_at FROM playbooks WHERE id = $1",
        )
        .bind(id.as_str())
        .fetch_optional(self.pool())
        .await?;
        row.map(|r| {
            Ok(Playbook {
                id: PlaybookId::from(r.try_get::<String, _>("id")?),
                tenant_id: r
                    .try_get::<Option<String>, _>("tenant_id")?
                    .map(TenantId::from),
                name: r.try_get("name")?,
                steps: json_column(&r, "steps")?,
                target: json_column(&r, "target")?,
                created_at: time_column(&r, "created_at")?,
            })
        })
        .transpose()
    }

    /// The tenant's playbook named `name`, if any.
    ///
    /// # Errors
    ///
    /// A database failure or a corrupt row.
    pub async fn playbook_named(&self, tenant: &TenantId, name: &str) -> Result<Option<Playbook>> {
        let id: Option<String> = sqlx::query_scalar(
            "SELECT id FROM playbooks WHERE tenant_id = $1 AND name = $2 LIMIT 1",
        )
        .bind(tenant.as_str())
        .bind(name)
        .fetch_optional(self.pool())
        .await?;
        match id {
            Some(id) => self.playbook(&PlaybookId::from(id)).await,
            None => Ok(None),
        }
    }

    /// The changes planned by the latest successful plan job of `run`'s
    /// step `step_index` on `device`; `None` if there is none.
    ///
    /// # Errors
    ///
    /// A database failure or a corrupt row.
    pub async fn planned_changes(
        &self,
        run_id: &RunId,
        device_id: Option<&DeviceId>,
        step_index: u32,
    ) -> Result<Option<Vec<NewChange>>> {
        let job: Option<String> = sqlx::query_scalar(
            "SELECT id FROM jobs WHERE run_id = $1 AND step_index = $2 AND mode = 'plan' \
             AND status = 'succeeded' AND COALESCE(device_id, '') = $3 \
             ORDER BY finished_at DESC LIMIT 1",
        )
        .bind(run_id.as_str())
        .bind(i64::from(step_index))
        .bind(device_id.map_or("", DeviceId::as_str))
        .fetch_optional(self.pool())
        .await?;
        let Some(job) = job else {
            return Ok(None);
        };
        Ok(Some(
            self.changes_of_job(&JobId::from(job))
                .await?
                .into_iter()
                .map(|c| c.change)
                .collect(),
        ))
    }

    /// Rows per table of what admins and jobs create (tenants, sites,
    /// devices, plugin versions, playbooks, schedules, runs, jobs,
    /// findings, changes, tickets): to show a refused request changed
    /// nothing.
    ///
    /// # Errors
    ///
    /// A database failure.
    pub async fn row_counts(&self) -> Result<BTreeMap<&'static str, u64>> {
        let mut out = BTreeMap::new();
        for table in [
            "tenants",
            "sites",
            "devices",
            "plugin_versions",
            "playbooks",
            "schedules",
            "runs",
            "jobs",
            "findings",
            "changes",
            "tickets",
        ] {
            let n: i64 = sqlx::query_scalar(&format!("SELECT COUNT(*) FROM {table}"))
                .fetch_one(self.pool())
                .await?;
            out.insert(table, u64::try_from(n).unwrap_or(0));
        }
        Ok(out)
    }

    /// What the journal knows of a job's mutating call, in one query:
    /// `None` if no attempt intended it, `Some(None)` if one intended it and
    /// recorded no result (in doubt), `Some(Some(result))` if one applied
    /// it.
    ///
    /// # Errors
    ///
    /// A database failure.
    pub async fn journal_prior(
        &self,
        job_id: &str,
        call: &str,
        occurrence: u32,
    ) -> Result<Option<Option<String>>> {
        let row = sqlx::query(
            "SELECT 1 AS applied, result FROM journal \
             WHERE job_id = $1 AND call = $2 AND occurrence = $3 \
             UNION ALL SELECT 0 AS applied, NULL AS result FROM journal_intents \
             WHERE job_id = $1 AND call = $2 AND occurrence = $3 \
             ORDER BY applied DESC LIMIT 1",
        )
        .bind(job_id)
        .bind(call)
        .bind(i64::from(occurrence))
        .fetch_optional(self.pool())
        .await?;
        row.map(|r| r.try_get::<Option<String>, _>("result"))
            .transpose()
            .map_err(Into::into)
    }

    /// Records, before the call is made, that a job's attempt is about to
    /// make a mutating call; committed when this returns.
    ///
    /// # Errors
    ///
    /// A database failure: the call must not be made.
    pub async fn journal_intend(
        &self,
        job_id: &str,
        call: &str,
        occurrence: u32,
        now: Timestamp,
    ) -> Result<()> {
        let mut tx = self.write().await?;
        sqlx::query(
            "INSERT INTO journal_intents (job_id, call, occurrence, at) VALUES ($1, $2, $3, $4) \
             ON CONFLICT (job_id, call, occurrence) DO NOTHING",
        )
        .bind(job_id)
        .bind(call)
        .bind(i64::from(occurrence))
        .bind(now.as_millis())
        .execute(tx.conn())
        .await?;
        tx.commit().await
    }

    /// Journals a job's applied mutating call (the first record wins).
    ///
    /// # Errors
    ///
    /// A database failure.
    pub async fn journal_put(
        &self,
        job_id: &str,
        call: &str,
        occurrence: u32,
        result: &str,
        now: Timestamp,
    ) -> Result<()> {
        let mut tx = self.write().await?;
        sqlx::query(
            "INSERT INTO journal (job_id, call, occurrence, result, at) VALUES ($1, $2, $3, $4, $5) \
             ON CONFLICT (job_id, call, occurrence) DO NOTHING",
        )
        .bind(job_id)
        .bind(call)
        .bind(i64::from(occurrence))
        .bind(result)
        .bind(now.as_millis())
        .execute(tx.conn())
        .await?;
        tx.commit().await
    }

    /// A job's audit events as `(attempt, action, outcome)`, oldest first.
    ///
    /// # Errors
    ///
    /// A database failure.
    pub async fn audit_outcomes(&self, job_id: &JobId) -> Result<Vec<(u32, String, String)>> {
        sqlx::query(
            "SELECT attempt, action, outcome FROM audit_events WHERE job_id = $1 ORDER BY at, id",
        )
        .bind(job_id.as_str())
        .fetch_all(self.pool())
        .await?
        .iter()
        .map(|r| {
            let attempt: Option<i64> = r.try_get("attempt")?;
            Ok((
                u32::try_from(attempt.unwrap_or(0)).unwrap_or(0),
                r.try_get("action")?,
                r.try_get("outcome")?,
            ))
        })
        .collect()
    }

    /// A job's journaled mutating calls, by any attempt: `(fingerprint,
    /// occurrence, applied)`, `applied` false for an intent without a
    /// result (a call in doubt).
    ///
    /// # Errors
    ///
    /// A database failure.
    pub async fn journal_calls(&self, job_id: &JobId) -> Result<Vec<(String, u32, bool)>> {
        let rows = sqlx::query(
            "SELECT call, occurrence, 1 AS applied FROM journal WHERE job_id = $1 \
             UNION ALL SELECT i.call, i.occurrence, 0 AS applied FROM journal_intents i \
             WHERE i.job_id = $1 AND NOT EXISTS (SELECT 1 FROM journal j WHERE j.job_id = i.job_id \
             AND j.call = i.call AND j.occurrence = i.occurrence) ORDER BY call, occurrence",
        )
        .bind(job_id.as_str())
        .fetch_all(self.pool())
        .await?;
        rows.iter()
            .map(|r| {
                Ok((
                    r.try_get("call")?,
                    u32::try_from(r.try_get::<i64, _>("occurrence")?).unwrap_or(u32::MAX),
                    r.try_get::<i64, _>("applied")? == 1,
                ))
            })
            .collect()
    }

    /// A job's committed audit events of host calls, by any attempt:
    /// `(action, arguments, outcome)`.
    ///
    /// # Errors
    ///
    /// A database failure.
    pub async fn audited_calls(&self, job_id: &JobId) -> Result<Vec<(String, String, String)>> {
        let rows =
            sqlx::query("SELECT action, detail, outcome FROM audit_events WHERE job_id = $1")
                .bind(job_id.as_str())
                .fetch_all(self.pool())
                .await?;
        rows.iter()
            .map(|r| {
                let detail: String = r.try_get("detail")?;
                let arguments = serde_json::from_str::<serde_json::Value>(&detail)
                    .ok()
                    .and_then(|d| {
                        d.get("arguments")
                            .and_then(|a| a.as_str())
                            .map(str::to_owned)
                    })
                    .unwrap_or_default();
                Ok((r.try_get("action")?, arguments, r.try_get("outcome")?))
            })
            .collect()
    }

    /// How many calls a job has journaled.
    ///
    /// # Errors
    ///
    /// A database failure.
    pub async fn journal_count(&self, job_id: &JobId) -> Result<u64> {
        let n: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM journal WHERE job_id = $1")
            .bind(job_id.as_str())
            .fetch_one(self.pool())
            .await?;
        Ok(u64::try_from(n).unwrap_or(0))
    }

    /// Files a ticket once per `dedupe_key`: returns its id and whether
    /// this call filed it (false: it was filed before, by an earlier
    /// attempt of the same job). Refused (`Invalid`, nothing stored): a
    /// device that is not the tenant's (`device-id`), or a new ticket of a
    /// job that has filed [`MAX_TICKETS_PER_JOB`] already (`tickets`).
    ///
    /// # Errors
    ///
    /// A refusal as above, an unknown tenant or a database failure.
    pub async fn file_ticket(&self, new: &NewTicket, now: Timestamp) -> Result<(String, bool)> {
        let mut tx = self.write().await?;
        if let Some(device) = new.device_id.as_deref() {
            let owner: Option<String> =
                sqlx::query_scalar("SELECT tenant_id FROM devices WHERE id = $1")
                    .bind(device)
                    .fetch_optional(tx.conn())
                    .await?;
            if owner.as_deref() != Some(new.tenant_id.as_str()) {
                return Err(StoreError::invalid(
                    "device-id",
                    format!("a ticket may name only a device of its own tenant, not `{device}`"),
                ));
            }
        }
        let (filed, already): (i64, i64) = {
            let row = sqlx::query(
                "SELECT (SELECT COUNT(*) FROM tickets WHERE job_id = $1), \
                 (SELECT COUNT(*) FROM tickets WHERE tenant_id = $2 AND dedupe_key = $3)",
            )
            .bind(new.job_id.as_str())
            .bind(new.tenant_id.as_str())
            .bind(new.dedupe_key.as_str())
            .fetch_one(tx.conn())
            .await?;
            (row.try_get(0)?, row.try_get(1)?)
        };
        if already == 0 && filed >= MAX_TICKETS_PER_JOB {
            return Err(StoreError::invalid(
                "tickets",
                format!("a job may file at most {MAX_TICKETS_PER_JOB} tickets"),
            ));
        }
        let inserted = sqlx::query(
            "INSERT INTO tickets (id, tenant_id, device_id, job_id, queue, title, body, \
             dedupe_key, created_at, updated_at) VALUES ($1, $2, \
             (SELECT id FROM devices WHERE id = $3), $4, $5, $6, $7, $8, $9, $9) \
             ON CONFLICT (tenant_id, dedupe_key) DO NOTHING",
        )
        .bind(ids::new_id())
        .bind(new.tenant_id.as_str())
        .bind(new.device_id.as_deref())
        .bind(new.job_id.as_str())
        .bind(new.queue.as_str())
        .bind(new.title.as_str())
        .bind(new.body.as_str())
        .bind(new.dedupe_key.as_str())
        .bind(now.as_millis())
        .execute(tx.conn())
        .await?
        .rows_affected()
            == 1;
        let id: String =
            sqlx::query_scalar("SELECT id FROM tickets WHERE tenant_id = $1 AND dedupe_key = $2")
                .bind(new.tenant_id.as_str())
                .bind(new.dedupe_key.as_str())
                .fetch_one(tx.conn())
                .await?;
        tx.commit().await?;
        Ok((id, inserted))
    }

    /// A tenant's tickets, oldest first.
    ///
    /// # Errors
    ///
    /// A database failure.
    pub async fn tickets(&self, tenant_id: &TenantId) -> Result<Vec<StoredTicket>> {
        sqlx::query(
            "SELECT id, tenant_id, device_id, job_id, queue, title, dedupe_key, created_at \
             FROM tickets WHERE tenant_id = $1 ORDER BY created_at, id",
        )
        .bind(tenant_id.as_str())
        .fetch_all(self.pool())
        .await?
        .iter()
        .map(|r| {
            Ok(StoredTicket {
                id: r.try_get("id")?,
                tenant_id: TenantId::from(r.try_get::<String, _>("tenant_id")?),
                device_id: r
                    .try_get::<Option<String>, _>("device_id")?
                    .map(DeviceId::from),
                job_id: r.try_get::<Option<String>, _>("job_id")?.map(JobId::from),
                queue: r.try_get("queue")?,
                title: r.try_get("title")?,
                dedupe_key: r.try_get("dedupe_key")?,
                created_at: time_column(r, "created_at")?,
            })
        })
        .collect()
    }

    /// The plugin state of `plugin` for each of `subjects` (device or
    /// tenant ids), in one query.
    ///
    /// # Errors
    ///
    /// A database failure.
    pub async fn plugin_state(
        &self,
        plugin: &str,
        subjects: &[&str],
    ) -> Result<HashMap<String, BTreeMap<String, String>>> {
        let mut out: HashMap<String, BTreeMap<String, String>> = HashMap::new();
        for chunk in subjects.chunks(500) {
            let mut sql = Sql::new(
                self.backend,
                "SELECT subject, key, value FROM plugin_state WHERE plugin = ",
            );
            sql.bind(plugin)
                .push(" AND subject IN ")
                .in_list(chunk.iter().copied());
            let mut conn = self.pool().acquire().await?;
            for r in sql.fetch_all(&mut conn).await? {
                out.entry(r.try_get("subject")?)
                    .or_default()
                    .insert(r.try_get("key")?, r.try_get("value")?);
            }
        }
        Ok(out)
    }

    /// The stored alert under `key`, as JSON.
    ///
    /// # Errors
    ///
    /// A database failure.
    pub async fn alert_get(&self, key: &str) -> Result<Option<String>> {
        Ok(
            sqlx::query_scalar("SELECT alert FROM alert_state WHERE alert_key = $1")
                .bind(key)
                .fetch_optional(self.pool())
                .await?,
        )
    }

    /// Which of `keys` have a stored alert: one query per 500 keys.
    ///
    /// # Errors
    ///
    /// A database failure.
    pub async fn alert_keys_present(
        &self,
        keys: &[String],
    ) -> Result<std::collections::HashSet<String>> {
        let mut present = std::collections::HashSet::new();
        for chunk in keys.chunks(500) {
            let mut sql = Sql::new(
                self.backend,
                "SELECT alert_key FROM alert_state WHERE alert_key IN ",
            );
            sql.in_list(chunk.iter().map(String::as_str));
            let mut conn = self.pool().acquire().await?;
            for r in sql.fetch_all(&mut conn).await? {
                present.insert(r.try_get::<String, _>("alert_key")?);
            }
        }
        Ok(present)
    }

    /// Stores `alert` under `key` unless one is there; true if this call
    /// stored it. When it did, `event` (if any) is written to the alert
    /// outbox in the same transaction, held until its `retry_at`.
    ///
    /// # Errors
    ///
    /// A database failure.
    pub async fn alert_open(
        &self,
        key: &str,
        alert: &str,
        event: Option<&OutboxEvent>,
        now: Timestamp,
    ) -> Result<bool> {
        let mut tx = self.write().await?;
        let n = sqlx::query(
            "INSERT INTO alert_state (alert_key, alert, updated_at) VALUES ($1, $2, $3) \
             ON CONFLICT (alert_key) DO NOTHING",
        )
        .bind(key)
        .bind(alert)
        .bind(now.as_millis())
        .execute(tx.conn())
        .await?
        .rows_affected();
        if n == 1
            && let Some(event) = event
        {
            outbox_insert(&mut tx, event, now).await?;
        }
        tx.commit().await?;
        Ok(n == 1)
    }

    /// Replaces the alert under `key` with `new` if it is still `old`.
    ///
    /// # Errors
    ///
    /// A database failure.
    pub async fn alert_replace(
        &self,
        key: &str,
        old: &str,
        new: &str,
        now: Timestamp,
    ) -> Result<bool> {
        let mut tx = self.write().await?;
        let n = sqlx::query(
            "UPDATE alert_state SET alert = $3, updated_at = $4 WHERE alert_key = $1 AND alert = $2",
        )
        .bind(key)
        .bind(old)
        .bind(new)
        .bind(now.as_millis())
        .execute(tx.conn())
        .await?
        .rows_affected();
        tx.commit().await?;
        Ok(n == 1)
    }

    /// Removes the alert under `key` and returns it; of concurrent callers
    /// one gets it. What `event` makes of it (the resolved event), if
    /// anything, is written to the alert outbox in the same transaction; an
    /// error from `event` leaves the alert open.
    ///
    /// # Errors
    ///
    /// A database failure, or `event`'s.
    pub async fn alert_close(
        &self,
        key: &str,
        event: impl FnOnce(&str) -> Result<Option<OutboxEvent>>,
        now: Timestamp,
    ) -> Result<Option<String>> {
        let mut tx = self.write().await?;
        let alert: Option<String> =
            sqlx::query_scalar("DELETE FROM alert_state WHERE alert_key = $1 RETURNING alert")
                .bind(key)
                .fetch_optional(tx.conn())
                .await?;
        if let Some(alert) = &alert
            && let Some(event) = event(alert)?
        {
            outbox_insert(&mut tx, &event, now).await?;
        }
        tx.commit().await?;
        Ok(alert)
    }

    /// Takes up to `limit` outbox events whose `retry_at` has passed, oldest
    /// first, holding each (so no other process takes it meanwhile) and
    /// counting the attempt; each comes with the attempts taken before this
    /// one. The hold grows with the event's failures: `hold` the first
    /// time, doubling with each redelivery taken before, at most
    /// [`MAX_OUTBOX_HOLD`]: an event whose process crashed goes out again
    /// soon, one whose webhook stays down is tried ever more rarely.
    ///
    /// # Errors
    ///
    /// A database failure.
    pub async fn alert_outbox_due(
        &self,
        now: Timestamp,
        hold: Duration,
        limit: usize,
    ) -> Result<Vec<OutboxEvent>> {
        let mut tx = self.write().await?;
        let mut sql = Sql::new(
            self.backend,
            "UPDATE alert_outbox SET retry_at = CASE attempts",
        );
        let mut doubled = hold;
        for attempts in 0..16_i64 {
            let this = doubled.min(MAX_OUTBOX_HOLD);
            sql.push(" WHEN ")
                .bind(attempts)
                .push(" THEN ")
                .bind(now + this);
            doubled = doubled.saturating_mul(2);
        }
        sql.push(" ELSE ")
            .bind(now + hold.saturating_mul(1 << 16).min(MAX_OUTBOX_HOLD))
            .push(" END");
        sql.push(
            ", attempts = attempts + 1 WHERE (alert_id, event) IN \
                 (SELECT alert_id, event FROM alert_outbox WHERE retry_at <= ",
        )
        .bind(now)
        .push(" ORDER BY retry_at, created_at LIMIT ")
        .bind(limit as i64);
        if self.backend == Backend::Postgres {
            sql.push(" FOR UPDATE SKIP LOCKED");
        }
        sql.push(") RETURNING alert_id, event, body, attempts, created_at, retry_at");
        let mut due = Vec::new();
        for row in sql.fetch_all(tx.conn()).await? {
            let created_at: i64 = row.try_get("created_at")?;
            due.push((
                created_at,
                OutboxEvent {
                    alert_id: row.try_get("alert_id")?,
                    event: row.try_get("event")?,
                    body: row.try_get("body")?,
                    retry_at: Timestamp::from_millis(row.try_get("retry_at")?),
                    attempts: u32::try_from(row.try_get::<i64, _>("attempts")? - 1)
                        .unwrap_or(u32::MAX),
                    reached: Vec::new(),
                },
            ));
        }
        due.sort_by_key(|(created_at, _)| *created_at);
        let mut due: Vec<OutboxEvent> = due.into_iter().map(|(_, e)| e).collect();
        fill_reached(self.backend, tx.conn(), &mut due).await?;
        tx.commit().await?;
        Ok(due)
    }

    /// Records that `webhooks` have taken the outbox event (or refused it
    /// for good): a redelivery leaves them out. Nothing when the event has
    /// left the outbox.
    ///
    /// # Errors
    ///
    /// A database failure.
    pub async fn alert_outbox_reached(
        &self,
        alert_id: &str,
        event: &str,
        webhooks: &[String],
    ) -> Result<()> {
        // On PostgreSQL the outbox row is key-share locked, so a concurrent
        // `alert_outbox_done` either deletes it first (nothing is inserted)
        // or waits for this insert and deletes it too. Sorted, so two
        // overlapping calls lock in the same order.
        let lock = match self.backend {
            Backend::Postgres => " FOR KEY SHARE",
            Backend::Sqlite => "",
        };
        let statement = format!(
            "INSERT INTO alert_outbox_reached (alert_id, event, webhook_id) \
             SELECT alert_id, event, $3 FROM alert_outbox WHERE alert_id = $1 AND event = $2{lock} \
             ON CONFLICT (alert_id, event, webhook_id) DO NOTHING"
        );
        let mut webhooks: Vec<&String> = webhooks.iter().collect();
        webhooks.sort();
        let mut tx = self.write().await?;
        for webhook in webhooks {
            sqlx::query(&statement)
                .bind(alert_id)
                .bind(event)
                .bind(webhook.as_str())
                .execute(tx.conn())
                .await?;
        }
        tx.commit().await
    }

    /// Removes a delivered event from the outbox.
    ///
    /// # Errors
    ///
    /// A database failure.
    pub async fn alert_outbox_done(&self, alert_id: &str, event: &str) -> Result<()> {
        let mut tx = self.write().await?;
        for table in ["alert_outbox", "alert_outbox_reached"] {
            sqlx::query(&format!(
                "DELETE FROM {table} WHERE alert_id = $1 AND event = $2"
            ))
            .bind(alert_id)
            .bind(event)
            .execute(tx.conn())
            .await?;
        }
        tx.commit().await
    }

    /// Takes up to `limit` alert-inbox entries whose `retry_at` has passed,
    /// oldest first, holding each until `now + hold` so no other process
    /// takes it meanwhile. An entry stays until
    /// [`alert_inbox_done`](Self::alert_inbox_done): the alerter may see an
    /// observation twice across a crash, never not at all.
    ///
    /// # Errors
    ///
    /// A database failure.
    pub async fn alert_inbox_due(
        &self,
        now: Timestamp,
        hold: Duration,
        limit: usize,
    ) -> Result<Vec<InboxEntry>> {
        let mut tx = self.write().await?;
        let mut sql = Sql::new(self.backend, "UPDATE alert_inbox SET retry_at = ");
        sql.bind(now + hold)
            .push(
                " WHERE (job_id, attempt) IN \
                 (SELECT job_id, attempt FROM alert_inbox WHERE retry_at <= ",
            )
            .bind(now)
            .push(" ORDER BY retry_at, created_at LIMIT ")
            .bind(limit as i64);
        if self.backend == Backend::Postgres {
            sql.push(" FOR UPDATE SKIP LOCKED");
        }
        sql.push(") RETURNING job_id, attempt, observation, created_at");
        let mut due = Vec::new();
        for row in sql.fetch_all(tx.conn()).await? {
            let created_at: i64 = row.try_get("created_at")?;
            due.push((created_at, inbox_from_row(&row)?));
        }
        tx.commit().await?;
        due.sort_by_key(|(created_at, _)| *created_at);
        Ok(due.into_iter().map(|(_, e)| e).collect())
    }

    /// Removes an alert-inbox entry the alerter has taken.
    ///
    /// # Errors
    ///
    /// A database failure.
    pub async fn alert_inbox_done(&self, job_id: &JobId, attempt: u32) -> Result<()> {
        self.alert_inbox_done_all(&[(job_id.clone(), attempt)])
            .await
    }

    /// Removes alert-inbox entries the alerter has taken, in one
    /// transaction (a recorded batch's).
    ///
    /// # Errors
    ///
    /// A database failure.
    pub async fn alert_inbox_done_all(&self, entries: &[(JobId, u32)]) -> Result<()> {
        if entries.is_empty() {
            return Ok(());
        }
        let mut tx = self.write().await?;
        for chunk in entries.chunks(rows_per_statement(2, 500)) {
            let mut sql = Sql::new(
                self.backend,
                "DELETE FROM alert_inbox WHERE (job_id, attempt) IN (VALUES ",
            );
            for (i, (job, attempt)) in chunk.iter().enumerate() {
                if i > 0 {
                    sql.push(", ");
                }
                sql.tuple([Arg::from(job.as_str()), Arg::from(i64::from(*attempt))]);
            }
            sql.push(")");
            sql.execute(tx.conn()).await?;
        }
        tx.commit().await
    }

    /// The alert-inbox entries not yet taken, oldest first.
    ///
    /// # Errors
    ///
    /// A database failure.
    pub async fn alert_inbox(&self) -> Result<Vec<InboxEntry>> {
        let rows = sqlx::query(
            "SELECT job_id, attempt, observation FROM alert_inbox ORDER BY created_at, job_id",
        )
        .fetch_all(self.pool())
        .await?;
        rows.iter().map(inbox_from_row).collect()
    }

    /// Writes to the store and commits, for readiness: `Ok` when the
    /// database takes a write now. A full disk, a read-only file or a
    /// PostgreSQL that refuses writes fail it, which reading would not
    /// notice.
    ///
    /// # Errors
    ///
    /// The write's failure.
    pub async fn probe_write(&self, now: Timestamp) -> Result<()> {
        let mut tx = self.write().await?;
        sqlx::query(
            "INSERT INTO store_probe (id, at) VALUES (1, $1) \
             ON CONFLICT (id) DO UPDATE SET at = excluded.at",
        )
        .bind(now.as_millis())
        .execute(tx.conn())
        .await?;
        tx.commit().await
    }

    /// The events in the alert outbox, oldest first.
    ///
    /// # Errors
    ///
    /// A database failure.
    pub async fn alert_outbox(&self) -> Result<Vec<OutboxEvent>> {
        let mut conn = self.pool().acquire().await?;
        let rows = sqlx::query(
            "SELECT alert_id, event, body, retry_at, attempts FROM alert_outbox \
             ORDER BY created_at, event",
        )
        .fetch_all(&mut *conn)
        .await?;
        let mut events = rows
            .iter()
            .map(|row| {
                Ok(OutboxEvent {
                    alert_id: row.try_get("alert_id")?,
                    event: row.try_get("event")?,
                    body: row.try_get("body")?,
                    retry_at: Timestamp::from_millis(row.try_get("retry_at")?),
                    attempts: u32::try_from(row.try_get::<i64, _>("attempts")?).unwrap_or(u32::MAX),
                    reached: Vec::new(),
                })
            })
            .collect::<Result<Vec<_>>>()?;
        fill_reached(self.backend, &mut conn, &mut events).await?;
        Ok(events)
    }

    /// Time to remediate per tenant tier: findings of severity warning or
    /// critical first seen since `since`, against `targets` (seconds per
    /// tier; a tier without a target is reported with target 0).
    ///
    /// # Errors
    ///
    /// A database failure or a corrupt row.
    pub async fn sla_report(
        &self,
        since: Timestamp,
        now: Timestamp,
        targets: &HashMap<Tier, i64>,
    ) -> Result<Vec<TierSla>> {
        let rows = sqlx::query(
            "SELECT t.tier, f.first_seen_at, f.resolved_at FROM findings f \
             JOIN tenants t ON t.id = f.tenant_id \
             WHERE f.severity IN ('warning', 'critical') AND f.first_seen_at >= $1",
        )
        .bind(since.as_millis())
        .fetch_all(self.pool())
        .await?;
        let mut by_tier: BTreeMap<i64, (Tier, Vec<i64>, Vec<i64>)> = Tier::ALL
            .iter()
            .map(|&tier| (tier.rank(), (tier, Vec::new(), Vec::new())))
            .collect();
        for r in &rows {
            let tier: Tier = enum_column(r, "tier")?;
            let first = r.try_get::<i64, _>("first_seen_at")?;
            let resolved: Option<i64> = r.try_get("resolved_at")?;
            let entry = by_tier.get_mut(&tier.rank()).expect("every tier is listed");
            match resolved {
                Some(at) => entry.1.push((at - first) / 1000),
                None => entry.2.push((now.as_millis() - first) / 1000),
            }
        }
        Ok(by_tier
            .into_values()
            .map(|(tier, mut resolved, open)| {
                resolved.sort_unstable();
                let target = targets.get(&tier).copied().unwrap_or(0);
                let pick = |q: f64| {
                    (!resolved.is_empty()).then(|| {
                        let i = ((resolved.len() - 1) as f64 * q).round() as usize;
                        resolved[i]
                    })
                };
                TierSla {
                    tier,
                    target_seconds: target,
                    resolved: resolved.len() as u64,
                    median_seconds: pick(0.5),
                    p90_seconds: pick(0.9),
                    resolved_late: resolved.iter().filter(|&&s| s > target).count() as u64,
                    open: open.len() as u64,
                    open_overdue: open.iter().filter(|&&s| s > target).count() as u64,
                }
            })
            .collect())
    }
}

fn plugin_source(r: &sqlx::any::AnyRow) -> Result<Option<PluginSource>> {
    let Some(module) = r.try_get::<Option<String>, _>("source")? else {
        return Ok(None);
    };
    let capabilities = match r.try_get::<Option<String>, _>("capabilities")? {
        Some(text) => serde_json::from_str(&text)
            .map_err(|e| super::StoreError::corrupt("capabilities", e))?,
        None => Vec::new(),
    };
    Ok(Some(PluginSource {
        module,
        requirement: r
            .try_get::<Option<String>, _>("requirement")?
            .unwrap_or_default(),
        signed_by: r.try_get("signed_by")?,
        capabilities,
    }))
}

/// An alert event in the outbox: written with the state change that makes
/// it, deleted once delivered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutboxEvent {
    /// The alert's id.
    pub alert_id: String,
    /// `alert.firing` or `alert.resolved`.
    pub event: String,
    /// The webhook body (the alert's JSON).
    pub body: String,
    /// When another delivery may start.
    pub retry_at: Timestamp,
    /// Redeliveries taken so far (ignored when the event is written).
    pub attempts: u32,
    /// The webhooks that took it or refused it for good, sorted (ignored
    /// when the event is written).
    pub reached: Vec<String>,
}

/// The most tickets one job files (all its attempts together).
pub const MAX_TICKETS_PER_JOB: i64 = 100;

/// The longest an outbox event is held between redeliveries.
pub const MAX_OUTBOX_HOLD: Duration = Duration::from_secs(3600);

/// A job's observation waiting in the alert inbox.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InboxEntry {
    /// The job.
    pub job_id: JobId,
    /// Its attempt that ended.
    pub attempt: u32,
    /// The alerter's observation (its JSON), or `None` for a job the sweep
    /// timed out.
    pub observation: Option<String>,
}

/// How long the process that ends a job has to give its observation to
/// the alerter before another process may: it does so at once, so this
/// only delays an observation whose process crashed.
pub const INBOX_HOLD: Duration = Duration::from_secs(30);

fn inbox_from_row(row: &sqlx::any::AnyRow) -> Result<InboxEntry> {
    Ok(InboxEntry {
        job_id: JobId::from(row.try_get::<String, _>("job_id")?),
        attempt: u32::try_from(row.try_get::<i64, _>("attempt")?).unwrap_or(u32::MAX),
        observation: row.try_get("observation")?,
    })
}

/// Writes alert-inbox entries in the transaction that ends their jobs.
pub(crate) async fn inbox_insert(
    backend: Backend,
    tx: &mut WriteTx,
    entries: &[InboxEntry],
    now: Timestamp,
) -> Result<()> {
    for chunk in entries.chunks(rows_per_statement(5, 500)) {
        let mut sql = Sql::new(
            backend,
            "INSERT INTO alert_inbox (job_id, attempt, observation, created_at, retry_at) VALUES ",
        );
        for (i, e) in chunk.iter().enumerate() {
            if i > 0 {
                sql.push(", ");
            }
            sql.tuple([
                Arg::from(e.job_id.as_str()),
                Arg::from(i64::from(e.attempt)),
                Arg::from(e.observation.as_deref()),
                Arg::from(now.as_millis()),
                Arg::from((now + INBOX_HOLD).as_millis()),
            ]);
        }
        sql.push(" ON CONFLICT (job_id, attempt) DO NOTHING");
        sql.execute(tx.conn()).await?;
    }
    Ok(())
}

/// Fills in the [`reached`](OutboxEvent::reached) webhooks of `events`.
async fn fill_reached(
    backend: Backend,
    conn: &mut sqlx::AnyConnection,
    events: &mut [OutboxEvent],
) -> Result<()> {
    if events.is_empty() {
        return Ok(());
    }
    let mut sql = Sql::new(
        backend,
        "SELECT alert_id, event, webhook_id FROM alert_outbox_reached WHERE alert_id IN ",
    );
    sql.in_list(events.iter().map(|e| e.alert_id.as_str()))
        .push(" ORDER BY webhook_id");
    let mut index: HashMap<(&str, &str), usize> = HashMap::with_capacity(events.len());
    for (i, e) in events.iter().enumerate() {
        index.insert((e.alert_id.as_str(), e.event.as_str()), i);
    }
    let mut reached = Vec::new();
    for row in sql.fetch_all(conn).await? {
        let (alert_id, event): (String, String) = (row.try_get("alert_id")?, row.try_get("event")?);
        if let Some(&i) = index.get(&(alert_id.as_str(), event.as_str())) {
            reached.push((i, row.try_get::<String, _>("webhook_id")?));
        }
    }
    for (i, webhook) in reached {
        events[i].reached.push(webhook);
    }
    Ok(())
}

async fn outbox_insert(tx: &mut WriteTx, event: &OutboxEvent, now: Timestamp) -> Result<()> {
    // A redelivered resolution of the same alert replaces nothing.
    sqlx::query(
        "INSERT INTO alert_outbox (alert_id, event, body, created_at, retry_at) \
         VALUES ($1, $2, $3, $4, $5) ON CONFLICT (alert_id, event) DO NOTHING",
    )
    .bind(event.alert_id.as_str())
    .bind(event.event.as_str())
    .bind(event.body.as_str())
    .bind(now.as_millis())
    .bind(event.retry_at.as_millis())
    .execute(tx.conn())
    .await?;
    Ok(())
}
