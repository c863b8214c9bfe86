//! What a tenant's monthly report reads: the findings open at some time in
//! a period, the changes made in it, and the newest changes of a kind.

use sqlx::Row;

use super::Store;
use super::error::Result;
use super::ids::{DeviceId, JobId, TenantId, Timestamp};
use super::model::{Change, Finding};
use super::results::{CHANGE_COLUMNS, FINDING_COLUMNS, change_from_row, finding_from_row};

/// A change with the device and plugin that made it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TenantChange {
    /// The device it was made on (none for a tenant-scope plugin).
    pub device_id: Option<DeviceId>,
    /// The plugin that made it.
    pub plugin: String,
    /// The change.
    pub change: Change,
}

impl Store {
    /// A tenant's findings open at some time in `[from, to)`: first seen
    /// before `to` and not resolved before `from`, oldest first.
    ///
    /// # Errors
    ///
    /// A database failure or a corrupt row.
    pub async fn findings_open_between(
        &self,
        tenant: &TenantId,
        from: Timestamp,
        to: Timestamp,
    ) -> Result<Vec<Finding>> {
        sqlx::query(&format!(
            "SELECT {FINDING_COLUMNS} FROM findings WHERE tenant_id = $1 AND first_seen_at < $2 \
             AND (resolved_at IS NULL OR resolved_at >= $3) ORDER BY first_seen_at, id"
        ))
        .bind(tenant.as_str())
        .bind(to.as_millis())
        .bind(from.as_millis())
        .fetch_all(self.pool())
        .await?
        .iter()
        .map(finding_from_row)
        .collect()
    }

    /// A tenant's changes made (or planned) in `[from, to)`, oldest first.
    ///
    /// # Errors
    ///
    /// A database failure or a corrupt row.
    pub async fn changes_between(
        &self,
        tenant: &TenantId,
        from: Timestamp,
        to: Timestamp,
    ) -> Result<Vec<TenantChange>> {
        sqlx::query(&format!(
            "SELECT {CHANGE_COLUMNS}, device_id, plugin FROM changes \
             WHERE tenant_id = $1 AND at >= $2 AND at < $3 ORDER BY at, job_id, seq"
        ))
        .bind(tenant.as_str())
        .bind(from.as_millis())
        .bind(to.as_millis())
        .fetch_all(self.pool())
        .await?
        .iter()
        .map(tenant_change)
        .collect()
    }

    /// The changes of `kind` by `plugin` that the newest job making any
    /// before `before` made, in order.
    ///
    /// # Errors
    ///
    /// A database failure or a corrupt row.
    pub async fn newest_changes_of_kind(
        &self,
        tenant: &TenantId,
        plugin: &str,
        kind: &str,
        before: Timestamp,
    ) -> Result<Vec<TenantChange>> {
        let newest = sqlx::query(
            "SELECT job_id FROM changes WHERE tenant_id = $1 AND plugin = $2 AND kind = $3 \
             AND at < $4 ORDER BY at DESC, job_id DESC LIMIT 1",
        )
        .bind(tenant.as_str())
        .bind(plugin)
        .bind(kind)
        .bind(before.as_millis())
        .fetch_optional(self.pool())
        .await?;
        let Some(row) = newest else {
            return Ok(Vec::new());
        };
        let job = JobId::from(row.try_get::<String, _>("job_id")?);
        sqlx::query(&format!(
            "SELECT {CHANGE_COLUMNS}, device_id, plugin FROM changes \
             WHERE job_id = $1 AND kind = $2 ORDER BY seq"
        ))
        .bind(job.as_str())
        .bind(kind)
        .fetch_all(self.pool())
        .await?
        .iter()
        .map(tenant_change)
        .collect()
    }

    /// The age of the signatures of each device (of `tenant`, or among
    /// `devices`) whose antivirus check found them outdated and was open at
    /// `at`: the `age-hours` the check reported plus the time since it last
    /// saw them, in hours, by device.
    ///
    /// # Errors
    ///
    /// A database failure.
    pub async fn signature_ages(
        &self,
        tenant: Option<&TenantId>,
        devices: &[&str],
        at: Timestamp,
    ) -> Result<Vec<(DeviceId, f64)>> {
        let mut sql = super::sql::Sql::new(
            self.backend,
            "SELECT device_id, fields, last_seen_at FROM findings \
             WHERE plugin = 'antivirus' AND finding_key = 'signatures-outdated' \
             AND device_id IS NOT NULL AND first_seen_at < ",
        );
        sql.bind(at.as_millis())
            .push(" AND (resolved_at IS NULL OR resolved_at >= ")
            .bind(at.as_millis())
            .push(")");
        if let Some(t) = tenant {
            sql.push(" AND tenant_id = ").bind(t.as_str());
        }
        if !devices.is_empty() {
            sql.push(" AND device_id IN ")
                .in_list(devices.iter().copied());
        }
        let mut out = Vec::new();
        for r in sql.query().fetch_all(self.pool()).await? {
            let fields: String = r.try_get("fields")?;
            let reported = serde_json::from_str::<serde_json::Value>(&fields)
                .ok()
                .and_then(|f| {
                    let v = f.get("age-hours")?;
                    v.as_f64().or_else(|| v.as_str()?.trim().parse().ok())
                });
            let Some(reported) = reported else { continue };
            let seen: i64 = r.try_get("last_seen_at")?;
            let since = (at.as_millis() - seen).max(0) as f64 / 3_600_000.0;
            out.push((
                DeviceId::from(r.try_get::<String, _>("device_id")?),
                reported + since,
            ));
        }
        Ok(out)
    }
}

fn tenant_change(r: &sqlx::any::AnyRow) -> Result<TenantChange> {
    Ok(TenantChange {
        device_id: r
            .try_get::<Option<String>, _>("device_id")?
            .map(DeviceId::from),
        plugin: r.try_get("plugin")?,
        change: change_from_row(r)?,
    })
}
