//! Completing jobs: the fenced status update and everything a completion
//! carries (findings, changes, logs, follow-up jobs), written in one
//! transaction per batch; and reading them back.

use std::borrow::Cow;
use std::collections::{HashMap, HashSet};

use serde_json::Value;
use sqlx::Row;

use super::error::{Result, StoreError};
use super::ids::{DeviceId, JobId, RunId, TenantId, Timestamp};
use super::model::{
    AuditEvent, Change, Completion, Finding, JobMode, JobStatus, NewChange, NewFinding, NewJob,
    NewLog, Outcome,
};
use super::sql::{
    Arg, Sql, enum_column, json_column, opt_time_column, rows_per_statement, time_column, to_json,
    u32_column,
};
use super::{Backend, Store, WriteTx, ids};

/// A finding reported again unchanged is not rewritten (so steady-state
/// checks write nothing to `findings`); its `last_seen_at` is refreshed
/// when it is older than this.
const LAST_SEEN_REFRESH_MS: i64 = 10 * 60 * 1000;

/// What the fenced update says about an accepted completion's job.
struct Accepted {
    run_id: String,
    tenant_id: String,
    device_id: Option<String>,
    plugin: String,
    mode: JobMode,
}

impl Accepted {
    /// The device, or the tenant for a tenant-scope job.
    fn subject(&self) -> &str {
        self.device_id.as_deref().unwrap_or(&self.tenant_id)
    }
}

/// Appends `values` as one `(…)` row of a multi-row statement.
fn row(sql: &mut Sql, first: bool, values: Vec<Arg>) {
    if !first {
        sql.push(", ");
    }
    sql.tuple(values);
}

/// Inserts log lines of job attempts.
pub(crate) async fn insert_logs<'a>(
    backend: Backend,
    tx: &mut WriteTx,
    logs: impl Iterator<Item = (&'a JobId, u32, &'a [NewLog])>,
) -> Result<()> {
    const COLUMNS: usize = 7;
    let rows: Vec<Vec<Arg>> = logs
        .flat_map(|(job, attempt, lines)| {
            lines.iter().enumerate().map(move |(seq, line)| {
                vec![
                    job.as_str().into(),
                    i64::from(attempt).into(),
                    (seq as i64).into(),
                    line.at.into(),
                    line.level.as_str().into(),
                    line.message.as_str().into(),
                    to_json(&line.fields).into(),
                ]
            })
        })
        .collect();
    for chunk in rows.chunks(rows_per_statement(COLUMNS, 1000)) {
        let mut sql = Sql::new(
            backend,
            "INSERT INTO job_logs (job_id, attempt, seq, at, level, message, fields) VALUES ",
        );
        for (i, values) in chunk.iter().enumerate() {
            row(&mut sql, i == 0, values.clone());
        }
        sql.execute(tx.conn()).await?;
    }
    Ok(())
}

/// A finding's columns, as [`finding_from_row`] reads them.
pub(crate) const FINDING_COLUMNS: &str = "tenant_id, device_id, plugin, finding_key, severity, \
    summary, first_seen_at, last_seen_at, resolved_at";

/// Worst first, then oldest.
pub(crate) const FINDING_ORDER: &str = " ORDER BY CASE severity WHEN 'critical' THEN 0 \
    WHEN 'warning' THEN 1 ELSE 2 END, first_seen_at, finding_key";

pub(crate) fn finding_from_row(r: &sqlx::any::AnyRow) -> Result<Finding> {
    Ok(Finding {
        tenant_id: TenantId::from(r.try_get::<String, _>("tenant_id")?),
        device_id: r
            .try_get::<Option<String>, _>("device_id")?
            .map(DeviceId::from),
        plugin: r.try_get("plugin")?,
        key: r.try_get("finding_key")?,
        severity: enum_column(r, "severity")?,
        summary: r.try_get("summary")?,
        first_seen_at: time_column(r, "first_seen_at")?,
        last_seen_at: time_column(r, "last_seen_at")?,
        resolved_at: opt_time_column(r, "resolved_at")?,
    })
}

impl Store {
    /// Records finished attempts, in one transaction for the whole batch.
    ///
    /// A completion is accepted only if `worker` still holds that attempt's
    /// lease (same owner, same attempt; a lease whose
    /// time ran out still counts until it is reclaimed, since nobody else
    /// can have run the job meanwhile); the others
    /// (reclaimed, re-claimed, already completed) are ignored, with
    /// nothing of theirs written. For accepted ones the job ends
    /// (`succeeded`, or `failed` for [`Outcome::Failed`], which is never
    /// retried), and its findings are upserted (a finding seen again keeps
    /// its `first_seen_at`; one no longer reported by a successful check of
    /// the same device and plugin is resolved), its changes and logs
    /// stored, and its follow-up jobs enqueued in its run. Returns the
    /// accepted jobs.
    ///
    /// # Errors
    ///
    /// An empty worker id, a malformed follow-up job or a database failure:
    /// the whole batch is rolled back and may be sent again.
    #[tracing::instrument(skip(self, completions), fields(batch = completions.len()))]
    pub async fn complete(
        &self,
        worker: &str,
        completions: &[Completion],
        now: Timestamp,
    ) -> Result<Vec<JobId>> {
        if worker.trim().is_empty() {
            return Err(StoreError::invalid("worker", "must not be empty"));
        }
        let mut seen = HashSet::new();
        // A completion whose output breaks the rules ends its own job as
        // failed, storing none of its findings or changes; the others in
        // the batch are stored as usual.
        let checked: Vec<Cow<'_, Completion>> = completions
            .iter()
            .map(|c| match c.invalid_output() {
                None => Cow::Borrowed(c),
                Some(reason) => {
                    tracing::warn!(job = %c.job_id, %reason, "refusing a completion's output");
                    Cow::Owned(Completion {
                        outcome: Outcome::Failed {
                            reason: format!("the plugin returned invalid output: {reason}"),
                        },
                        result: Value::Null,
                        findings: Vec::new(),
                        changes: Vec::new(),
                        ..c.clone()
                    })
                }
            })
            .collect();
        let completions: Vec<&Completion> = checked
            .iter()
            .map(|c| c.as_ref())
            .filter(|c| seen.insert(c.job_id.as_str()))
            .collect();
        if completions.is_empty() {
            return Ok(Vec::new());
        }

        let mut tx = self.write().await?;

        // The fenced status update.
        const COLUMNS: usize = 5;
        let mut accepted: HashMap<String, Accepted> = HashMap::with_capacity(completions.len());
        for chunk in completions.chunks(rows_per_statement(COLUMNS, 500)) {
            let mut sql = Sql::new(
                self.backend,
                "WITH v (vid, vattempt, vstatus, vresult, verror) AS (VALUES ",
            );
            for (i, c) in chunk.iter().enumerate() {
                let (status, error) = match &c.outcome {
                    Outcome::Succeeded => (JobStatus::Succeeded, None),
                    Outcome::Failed { reason } => (JobStatus::Failed, Some(reason.as_str())),
                };
                row(
                    &mut sql,
                    i == 0,
                    vec![
                        c.job_id.as_str().into(),
                        i64::from(c.attempt).into(),
                        status.as_str().into(),
                        to_json(&c.result).into(),
                        error.into(),
                    ],
                );
            }
            sql.push(
                ") UPDATE jobs SET status = v.vstatus, result = v.vresult, last_error = v.verror, \
                 lease_owner = NULL, lease_until = NULL, finished_at = ",
            )
            .bind(now)
            .push(
                " FROM v WHERE jobs.id = v.vid AND jobs.attempts = v.vattempt \
                 AND jobs.lease_owner = ",
            )
            .bind(worker)
            .push(" RETURNING id, run_id, tenant_id, device_id, plugin, mode");
            for r in sql.fetch_all(tx.conn()).await? {
                accepted.insert(
                    r.try_get("id")?,
                    Accepted {
                        run_id: r.try_get("run_id")?,
                        tenant_id: r.try_get("tenant_id")?,
                        device_id: r.try_get("device_id")?,
                        plugin: r.try_get("plugin")?,
                        mode: enum_column(&r, "mode")?,
                    },
                );
            }
        }
        let accepted_in_order: Vec<(&Completion, &Accepted)> = completions
            .iter()
            .filter_map(|c| accepted.get(c.job_id.as_str()).map(|a| (*c, a)))
            .collect();

        self.upsert_findings(&mut tx, &accepted_in_order, now)
            .await?;
        self.insert_changes(&mut tx, &accepted_in_order, now)
            .await?;
        insert_logs(
            self.backend,
            &mut tx,
            accepted_in_order
                .iter()
                .map(|(c, _)| (&c.job_id, c.attempt, c.logs.as_slice())),
        )
        .await?;

        self.write_plugin_state(&mut tx, &accepted_in_order, now)
            .await?;

        // The audit trail of what the accepted attempts did, in the same
        // transaction: present exactly when the completion committed.
        let audit: Vec<AuditEvent> = accepted_in_order
            .iter()
            .flat_map(|(c, _)| c.audit.iter().cloned())
            .collect();
        super::inventory::insert_audit(self.backend, &mut tx, &audit).await?;
        let inbox: Vec<super::InboxEntry> = accepted_in_order
            .iter()
            .filter_map(|(c, _)| {
                c.observation.as_ref().map(|o| super::InboxEntry {
                    job_id: c.job_id.clone(),
                    attempt: c.attempt,
                    observation: Some(o.clone()),
                })
            })
            .collect();
        super::durable::inbox_insert(self.backend, &mut tx, &inbox, now).await?;

        // Follow-up jobs, per run.
        let mut follow_ups: HashMap<&str, Vec<NewJob>> = HashMap::new();
        for (c, a) in &accepted_in_order {
            if !c.then.is_empty() {
                follow_ups
                    .entry(a.run_id.as_str())
                    .or_default()
                    .extend(c.then.iter().cloned());
            }
        }
        for (run, jobs) in &follow_ups {
            self.insert_jobs(&mut tx, &RunId::from(*run), jobs, now)
                .await?;
        }
        tx.commit().await?;
        crate::failpoint::hit("after-completion-commit");

        let runs: Vec<RunId> = accepted_in_order
            .iter()
            .map(|(_, a)| RunId::from(a.run_id.as_str()))
            .collect();
        self.finish_runs(&runs, now).await?;
        Ok(accepted_in_order
            .iter()
            .map(|(c, _)| c.job_id.clone())
            .collect())
    }

    async fn upsert_findings(
        &self,
        tx: &mut WriteTx,
        accepted: &[(&Completion, &Accepted)],
        now: Timestamp,
    ) -> Result<()> {
        // One row per (subject, plugin, key): PostgreSQL refuses to update
        // a row twice in one statement. The latest completion wins.
        let mut latest_findings: Vec<(&Completion, &Accepted, &NewFinding)> = Vec::new();
        let mut index: HashMap<(&str, &str, &str), usize> = HashMap::new();
        for (c, a) in accepted {
            for f in &c.findings {
                match index.get(&(a.subject(), a.plugin.as_str(), f.key.as_str())) {
                    Some(&i) => latest_findings[i] = (c, a, f),
                    None => {
                        index.insert(
                            (a.subject(), a.plugin.as_str(), f.key.as_str()),
                            latest_findings.len(),
                        );
                        latest_findings.push((c, a, f));
                    }
                }
            }
        }
        // A finding reported again unchanged, and seen within the refresh
        // interval, is not written at all: an upsert whose update does not
        // apply still locks the row on PostgreSQL (a WAL record per
        // finding per check).
        // The latest successful check of a (subject, plugin) in the batch
        // decides which of its open findings are resolved (below).
        let mut latest: HashMap<(&str, &str), &Completion> = HashMap::new();
        for (c, a) in accepted {
            if a.mode == JobMode::Check && c.outcome == Outcome::Succeeded {
                latest.insert((a.subject(), a.plugin.as_str()), c);
            }
        }
        // One read of the open findings of every pair reported or checked.
        let pairs: Vec<(&str, &str)> = {
            let mut seen = HashSet::new();
            latest_findings
                .iter()
                .map(|(_, a, _)| (a.subject(), a.plugin.as_str()))
                .chain(latest.keys().copied())
                .filter(|p| seen.insert(*p))
                .collect()
        };
        let open_before = self.open_findings(tx, &pairs).await?;
        let mut unchanged = vec![false; latest_findings.len()];
        for open in &open_before {
            let Some(&i) = index.get(&(
                open.subject.as_str(),
                open.plugin.as_str(),
                open.key.as_str(),
            )) else {
                continue;
            };
            let f = latest_findings[i].2;
            unchanged[i] = open.severity == f.severity.as_str()
                && open.summary == f.summary
                && open.detail == f.detail
                && open.resource == f.resource
                && open.last_seen_at >= now.as_millis() - LAST_SEEN_REFRESH_MS
                && open.fields == to_json(&f.fields);
        }
        let rows: Vec<Vec<Arg>> = latest_findings
            .iter()
            .zip(&unchanged)
            .filter(|(_, unchanged)| !**unchanged)
            .map(|((c, a, f), _)| {
                vec![
                    ids::new_id().into(),
                    a.tenant_id.as_str().into(),
                    a.device_id.as_deref().into(),
                    a.subject().into(),
                    a.plugin.as_str().into(),
                    f.key.as_str().into(),
                    f.severity.as_str().into(),
                    f.summary.as_str().into(),
                    f.detail.as_str().into(),
                    f.resource.as_str().into(),
                    to_json(&f.fields).into(),
                    now.into(),
                    now.into(),
                    c.job_id.as_str().into(),
                ]
            })
            .collect();
        const COLUMNS: usize = 14;
        // (id, subject, plugin, key) of the rows the upsert wrote.
        let mut written: Vec<(String, String, String, String)> = Vec::new();
        for chunk in rows.chunks(rows_per_statement(COLUMNS, 500)) {
            let mut sql = Sql::new(
                self.backend,
                "INSERT INTO findings (id, tenant_id, device_id, subject, plugin, finding_key, \
                 severity, summary, detail, resource, fields, first_seen_at, last_seen_at, \
                 last_job_id) VALUES ",
            );
            for (i, values) in chunk.iter().enumerate() {
                row(&mut sql, i == 0, values.clone());
            }
            sql.push(
                " ON CONFLICT (subject, plugin, finding_key) DO UPDATE SET \
                 severity = excluded.severity, summary = excluded.summary, \
                 detail = excluded.detail, resource = excluded.resource, \
                 fields = excluded.fields, last_seen_at = excluded.last_seen_at, \
                 first_seen_at = CASE WHEN findings.resolved_at IS NULL \
                     THEN findings.first_seen_at ELSE excluded.first_seen_at END, \
                 resolved_at = NULL, last_job_id = excluded.last_job_id \
                 WHERE findings.resolved_at IS NOT NULL \
                 OR findings.severity <> excluded.severity \
                 OR findings.summary <> excluded.summary \
                 OR findings.detail <> excluded.detail \
                 OR findings.resource <> excluded.resource \
                 OR findings.fields <> excluded.fields \
                 OR findings.last_seen_at < excluded.last_seen_at - ",
            )
            .bind(LAST_SEEN_REFRESH_MS)
            .push(" RETURNING id, subject, plugin, finding_key");
            for r in sql.fetch_all(tx.conn()).await? {
                written.push((
                    r.try_get("id")?,
                    r.try_get("subject")?,
                    r.try_get("plugin")?,
                    r.try_get("finding_key")?,
                ));
            }
        }

        // Resolve what the latest check of a pair no longer reports. Its
        // open findings now are those open before plus those the upsert
        // inserted or reopened (it returns those it wrote).
        let still_reported: HashSet<(&str, &str, &str)> = latest
            .iter()
            .flat_map(|((subject, plugin), c)| {
                c.findings
                    .iter()
                    .map(move |f| (*subject, *plugin, f.key.as_str()))
            })
            .collect();
        let mut resolve: Vec<&str> = Vec::new();
        let mut seen = HashSet::new();
        let open_now = open_before
            .iter()
            .map(|o| (&o.id, &o.subject, &o.plugin, &o.key))
            .chain(written.iter().map(|(id, s, p, k)| (id, s, p, k)));
        for (id, subject, plugin, key) in open_now {
            if latest.contains_key(&(subject.as_str(), plugin.as_str()))
                && !still_reported.contains(&(subject.as_str(), plugin.as_str(), key.as_str()))
                && seen.insert(id.as_str())
            {
                resolve.push(id);
            }
        }
        for chunk in resolve.chunks(500) {
            let mut sql = Sql::new(self.backend, "UPDATE findings SET resolved_at = ");
            sql.bind(now)
                .push(" WHERE id IN ")
                .in_list(chunk.iter().copied());
            sql.execute(tx.conn()).await?;
        }
        Ok(())
    }

    /// The open findings of the (subject, plugin) `pairs`: a lookup per
    /// pair on the unique index's prefix.
    async fn open_findings(
        &self,
        tx: &mut WriteTx,
        pairs: &[(&str, &str)],
    ) -> Result<Vec<OpenFinding>> {
        const COLUMNS: &str = "id, subject, plugin, finding_key, severity, summary, detail, \
                               resource, fields, last_seen_at";
        let mut out = Vec::new();
        for chunk in pairs.chunks(rows_per_statement(2, 500)) {
            let mut sql = Sql::new(self.backend, "WITH c (csubject, cplugin) AS (VALUES ");
            for (i, (subject, plugin)) in chunk.iter().enumerate() {
                row(&mut sql, i == 0, vec![(*subject).into(), (*plugin).into()]);
            }
            sql.push(") SELECT ").push(COLUMNS).push(" FROM c ");
            match self.backend {
                Backend::Sqlite => sql.push(
                    "JOIN findings f ON f.subject = c.csubject AND f.plugin = c.cplugin \
                     WHERE f.resolved_at IS NULL",
                ),
                // A lateral lookup per pair, kept from being flattened into a
                // join (`OFFSET 0`): with the statistics of a table that grew
                // since autovacuum last looked, PostgreSQL joins the pairs
                // against every open finding instead (pairs × findings
                // comparisons, 24 ms for 256 pairs over 1,000 findings, as
                // measured; 0.5 ms this way).
                Backend::Postgres => sql.push("CROSS JOIN LATERAL (SELECT ").push(COLUMNS).push(
                    " FROM findings WHERE subject = c.csubject AND plugin = c.cplugin \
                     AND resolved_at IS NULL OFFSET 0) f",
                ),
            };
            for r in sql.fetch_all(tx.conn()).await? {
                out.push(OpenFinding {
                    id: r.try_get("id")?,
                    subject: r.try_get("subject")?,
                    plugin: r.try_get("plugin")?,
                    key: r.try_get("finding_key")?,
                    severity: r.try_get("severity")?,
                    summary: r.try_get("summary")?,
                    detail: r.try_get("detail")?,
                    resource: r.try_get("resource")?,
                    fields: r.try_get("fields")?,
                    last_seen_at: r.try_get("last_seen_at")?,
                });
            }
        }
        Ok(out)
    }

    async fn write_plugin_state(
        &self,
        tx: &mut WriteTx,
        accepted: &[(&Completion, &Accepted)],
        now: Timestamp,
    ) -> Result<()> {
        for (c, a) in accepted {
            for (key, value) in &c.state {
                match value {
                    Some(value) => {
                        sqlx::query(
                            "INSERT INTO plugin_state (plugin, subject, key, value, updated_at) \
                             VALUES ($1, $2, $3, $4, $5) ON CONFLICT (plugin, subject, key) \
                             DO UPDATE SET value = excluded.value, updated_at = excluded.updated_at",
                        )
                        .bind(a.plugin.as_str())
                        .bind(a.subject())
                        .bind(key.as_str())
                        .bind(value.as_str())
                        .bind(now.as_millis())
                        .execute(tx.conn())
                        .await?;
                    }
                    None => {
                        sqlx::query(
                            "DELETE FROM plugin_state WHERE plugin = $1 AND subject = $2 AND key = $3",
                        )
                        .bind(a.plugin.as_str())
                        .bind(a.subject())
                        .bind(key.as_str())
                        .execute(tx.conn())
                        .await?;
                    }
                }
            }
        }
        Ok(())
    }

    async fn insert_changes(
        &self,
        tx: &mut WriteTx,
        accepted: &[(&Completion, &Accepted)],
        now: Timestamp,
    ) -> Result<()> {
        const COLUMNS: usize = 13;
        let rows: Vec<Vec<Arg>> = accepted
            .iter()
            .flat_map(|(c, a)| {
                c.changes.iter().enumerate().map(move |(seq, ch)| {
                    vec![
                        c.job_id.as_str().into(),
                        (seq as i64).into(),
                        i64::from(c.attempt).into(),
                        a.tenant_id.as_str().into(),
                        a.device_id.as_deref().into(),
                        a.plugin.as_str().into(),
                        ch.kind.as_str().into(),
                        ch.target.as_str().into(),
                        ch.description.as_str().into(),
                        ch.before.as_deref().into(),
                        ch.after.as_deref().into(),
                        ch.outcome.as_str().into(),
                        now.into(),
                    ]
                })
            })
            .collect();
        for chunk in rows.chunks(rows_per_statement(COLUMNS, 500)) {
            let mut sql = Sql::new(
                self.backend,
                "INSERT INTO changes (job_id, seq, attempt, tenant_id, device_id, plugin, kind, \
                 target, description, before_value, after_value, outcome, at) VALUES ",
            );
            for (i, values) in chunk.iter().enumerate() {
                row(&mut sql, i == 0, values.clone());
            }
            sql.execute(tx.conn()).await?;
        }
        Ok(())
    }

    /// A tenant's findings, most severe and oldest first; only unresolved
    /// ones if `open_only`.
    ///
    /// # Errors
    ///
    /// A database failure or a corrupt row.
    pub async fn findings(&self, tenant_id: &TenantId, open_only: bool) -> Result<Vec<Finding>> {
        let mut sql = Sql::new(
            self.backend,
            &format!("SELECT {FINDING_COLUMNS} FROM findings WHERE tenant_id = "),
        );
        sql.bind(tenant_id.as_str());
        if open_only {
            sql.push(" AND resolved_at IS NULL");
        }
        sql.push(FINDING_ORDER);
        let rows = sql.query().fetch_all(self.pool()).await?;
        rows.iter().map(finding_from_row).collect()
    }

    /// Every change of a run's jobs, job by job in creation order, each
    /// job's in its order: one query, however many jobs.
    ///
    /// # Errors
    ///
    /// A database failure or a corrupt row.
    pub async fn changes_of_run(&self, run_id: &RunId) -> Result<Vec<Change>> {
        let rows = sqlx::query(&format!(
            "SELECT {CHANGE_COLUMNS} FROM changes \
             WHERE job_id IN (SELECT id FROM jobs WHERE run_id = $1) ORDER BY job_id, seq"
        ))
        .bind(run_id.as_str())
        .fetch_all(self.pool())
        .await?;
        rows.iter().map(change_from_row).collect()
    }

    /// The changes recorded for a job, in the order the plugin made them.
    ///
    /// # Errors
    ///
    /// A database failure or a corrupt row.
    pub async fn changes_of_job(&self, job_id: &JobId) -> Result<Vec<Change>> {
        let rows = sqlx::query(&format!(
            "SELECT {CHANGE_COLUMNS} FROM changes WHERE job_id = $1 ORDER BY seq"
        ))
        .bind(job_id.as_str())
        .fetch_all(self.pool())
        .await?;
        rows.iter().map(change_from_row).collect()
    }

    /// A job's log lines with their attempt, oldest attempt first.
    ///
    /// # Errors
    ///
    /// A database failure or a corrupt row.
    pub async fn logs_of_job(&self, job_id: &JobId) -> Result<Vec<(u32, NewLog)>> {
        let rows = sqlx::query(
            "SELECT attempt, at, level, message, fields FROM job_logs WHERE job_id = $1 \
             ORDER BY attempt, seq",
        )
        .bind(job_id.as_str())
        .fetch_all(self.pool())
        .await?;
        rows.iter()
            .map(|r| {
                Ok((
                    u32_column(r, "attempt")?,
                    NewLog {
                        at: time_column(r, "at")?,
                        level: r.try_get("level")?,
                        message: r.try_get("message")?,
                        fields: json_column(r, "fields")?,
                    },
                ))
            })
            .collect()
    }
}

/// An open finding as [`Store::open_findings`] reads it.
struct OpenFinding {
    id: String,
    subject: String,
    plugin: String,
    key: String,
    severity: String,
    summary: String,
    detail: String,
    resource: String,
    fields: String,
    last_seen_at: i64,
}

/// The columns [`change_from_row`] reads.
pub(crate) const CHANGE_COLUMNS: &str =
    "job_id, attempt, kind, target, description, before_value, after_value, outcome, at";

/// A change read with [`CHANGE_COLUMNS`].
pub(crate) fn change_from_row(r: &sqlx::any::AnyRow) -> Result<Change> {
    Ok(Change {
        job_id: JobId::from(r.try_get::<String, _>("job_id")?),
        attempt: u32_column(r, "attempt")?,
        change: NewChange {
            kind: r.try_get("kind")?,
            target: r.try_get("target")?,
            description: r.try_get("description")?,
            before: r.try_get("before_value")?,
            after: r.try_get("after_value")?,
            outcome: enum_column(r, "outcome")?,
        },
        at: time_column(r, "at")?,
    })
}
