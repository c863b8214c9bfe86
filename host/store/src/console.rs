//! What the web console needs beside the API's reads: sessions, made by
//! signing in with an API token and acting for its user (the store keeps
//! the sha256 of the session secret, never the secret; a session whose
//! token is revoked, or that was ended, is not found), and a device's
//! recent jobs and changes.

use sqlx::Row;

use super::admin::{Scope, User, user_from_row};
use super::error::{Result, StoreError};
use super::ids::{DeviceId, TenantId, Timestamp};
use super::inventory::{BRIEF_DEVICE_COLUMNS, agent_state_of, device_from_row};
use super::model::{Change, Device, Job, Severity};
use super::queue::{JOB_COLUMNS, job_from_row};
use super::results::{CHANGE_COLUMNS, change_from_row};
use super::sql::{Sql, time_column};
use super::{Store, ids};

/// Open findings of one device of one plugin and class, counted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OpenFindings {
    /// The device.
    pub device_id: DeviceId,
    /// The plugin that reported them.
    pub plugin: String,
    /// `security-update`, `update`, `locked`, `detection`, an antivirus
    /// finding's key, or empty.
    pub class: String,
    /// How many.
    pub count: u64,
}

/// How the fleet is sorted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum FleetSort {
    /// Most critical, then warning, then info findings first; then name.
    #[default]
    Worst,
    /// By name.
    Name,
    /// Heard from most recently first.
    LastSeen,
}

/// Which devices a fleet page shows.
#[derive(Debug, Clone, Default)]
pub struct FleetFilter {
    /// Only this tenant's.
    pub tenant: Option<TenantId>,
    /// Only this site's.
    pub site: Option<String>,
    /// Only devices with this tag.
    pub tag: Option<String>,
    /// Only devices with an open finding this bad or worse.
    pub min_severity: Option<Severity>,
    /// The order.
    pub sort: FleetSort,
}

/// A device on a fleet page with its open findings per severity.
#[derive(Debug, Clone)]
pub struct FleetRow {
    /// The device (`facts` and `admin` left as empty objects).
    pub device: Device,
    /// Open critical findings.
    pub critical: u64,
    /// Open warnings.
    pub warning: u64,
    /// Open info findings.
    pub info: u64,
}

/// A live console session.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConsoleSession {
    /// Its id (safe to show; not the secret).
    pub id: String,
    /// The user it acts for.
    pub user_id: String,
    /// The API token it was signed in with.
    pub token_id: String,
    /// The token every form of this session posts back.
    pub csrf: String,
    /// When it was made.
    pub created_at: Timestamp,
    /// When it was last used (written at most once a minute).
    pub last_seen_at: Timestamp,
}

impl Store {
    /// Makes a session for the user of token `token_id`.
    ///
    /// # Errors
    ///
    /// A database failure, or a token that is unknown or revoked.
    pub async fn create_console_session(
        &self,
        token_id: &str,
        session_hash: &str,
        csrf: &str,
        now: Timestamp,
    ) -> Result<ConsoleSession> {
        let mut tx = self.write().await?;
        let row =
            sqlx::query("SELECT user_id FROM api_tokens WHERE id = $1 AND revoked_at IS NULL")
                .bind(token_id)
                .fetch_optional(tx.conn())
                .await?;
        let Some(row) = row else {
            return Err(StoreError::invalid(
                "token",
                "the token is unknown or revoked",
            ));
        };
        let session = ConsoleSession {
            id: ids::new_id(),
            user_id: row.try_get("user_id")?,
            token_id: token_id.to_owned(),
            csrf: csrf.to_owned(),
            created_at: now,
            last_seen_at: now,
        };
        sqlx::query(
            "INSERT INTO console_sessions \
             (id, user_id, token_id, session_hash, csrf, created_at, last_seen_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $6)",
        )
        .bind(&session.id)
        .bind(&session.user_id)
        .bind(token_id)
        .bind(session_hash)
        .bind(csrf)
        .bind(now.as_millis())
        .execute(tx.conn())
        .await?;
        tx.commit().await?;
        Ok(session)
    }

    /// The live session with this hash and its user: not ended, its token
    /// not revoked.
    ///
    /// # Errors
    ///
    /// A database failure or a corrupt row.
    pub async fn console_session(
        &self,
        session_hash: &str,
    ) -> Result<Option<(ConsoleSession, User)>> {
        let row = sqlx::query(
            "SELECT s.id AS session_id, s.user_id, s.token_id, s.csrf, \
             s.created_at AS session_created_at, s.last_seen_at, \
             u.id, u.name, u.role, u.tenants, u.created_at \
             FROM console_sessions s \
             JOIN api_tokens t ON t.id = s.token_id \
             JOIN users u ON u.id = s.user_id \
             WHERE s.session_hash = $1 AND s.ended_at IS NULL AND t.revoked_at IS NULL",
        )
        .bind(session_hash)
        .fetch_optional(self.pool())
        .await?;
        row.map(|r| {
            Ok((
                ConsoleSession {
                    id: r.try_get("session_id")?,
                    user_id: r.try_get("user_id")?,
                    token_id: r.try_get("token_id")?,
                    csrf: r.try_get("csrf")?,
                    created_at: time_column(&r, "session_created_at")?,
                    last_seen_at: time_column(&r, "last_seen_at")?,
                },
                user_from_row(&r)?,
            ))
        })
        .transpose()
    }

    /// Records that session `id` was used at `now`.
    ///
    /// # Errors
    ///
    /// A database failure.
    pub async fn touch_console_session(&self, id: &str, now: Timestamp) -> Result<()> {
        let mut tx = self.write().await?;
        sqlx::query("UPDATE console_sessions SET last_seen_at = $1 WHERE id = $2")
            .bind(now.as_millis())
            .bind(id)
            .execute(tx.conn())
            .await?;
        tx.commit().await?;
        Ok(())
    }

    /// Ends session `id` (signed out or expired); `false` if it had ended.
    ///
    /// # Errors
    ///
    /// A database failure.
    pub async fn end_console_session(&self, id: &str, now: Timestamp) -> Result<bool> {
        let mut tx = self.write().await?;
        let n = sqlx::query(
            "UPDATE console_sessions SET ended_at = $1 WHERE id = $2 AND ended_at IS NULL",
        )
        .bind(now.as_millis())
        .bind(id)
        .execute(tx.conn())
        .await?
        .rows_affected();
        tx.commit().await?;
        Ok(n == 1)
    }

    /// A device's newest jobs (at most `limit`), newest first.
    ///
    /// # Errors
    ///
    /// A database failure or a corrupt row.
    pub async fn jobs_of_device(&self, device: &DeviceId, limit: u32) -> Result<Vec<Job>> {
        sqlx::query(&format!(
            "SELECT {JOB_COLUMNS} FROM jobs WHERE device_id = $1 ORDER BY id DESC LIMIT $2"
        ))
        .bind(device.as_str())
        .bind(i64::from(limit))
        .fetch_all(self.pool())
        .await?
        .iter()
        .map(job_from_row)
        .collect()
    }

    /// A device's newest changes, applied or planned (at most `limit`),
    /// newest first.
    ///
    /// # Errors
    ///
    /// A database failure or a corrupt row.
    pub async fn changes_of_device(&self, device: &DeviceId, limit: u32) -> Result<Vec<Change>> {
        let rows = sqlx::query(&format!(
            "SELECT {CHANGE_COLUMNS} FROM changes WHERE device_id = $1 \
                 ORDER BY at DESC, seq DESC LIMIT $2"
        ))
        .bind(device.as_str())
        .bind(i64::from(limit))
        .fetch_all(self.pool())
        .await?;
        rows.iter().map(change_from_row).collect()
    }

    /// Devices the scope sees, by name, only `tenant`'s when given, as
    /// [`Store::list_devices`] but with `facts` and `admin` left as empty
    /// objects: for readers that use neither (the monthly report).
    ///
    /// # Errors
    ///
    /// A database failure or a corrupt row.
    pub async fn list_devices_brief(
        &self,
        scope: &Scope,
        tenant: Option<&TenantId>,
    ) -> Result<Vec<Device>> {
        self.list_devices_of(BRIEF_DEVICE_COLUMNS, scope, tenant)
            .await
    }

    /// Open findings of `devices` (those the scope sees), counted per
    /// device, plugin and class in the database.
    ///
    /// # Errors
    ///
    /// A database failure or a corrupt row.
    pub async fn open_findings_per_device(
        &self,
        scope: &Scope,
        devices: &[&str],
    ) -> Result<Vec<OpenFindings>> {
        if devices.is_empty() {
            return Ok(Vec::new());
        }
        let mut sql = Sql::new(
            self.backend,
            "SELECT device_id, plugin, \
             CASE WHEN finding_key LIKE 'security-update:%' THEN 'security-update' \
             WHEN finding_key LIKE 'update:%' THEN 'update' \
             WHEN finding_key LIKE 'locked:%' THEN 'locked' \
             WHEN finding_key LIKE 'detection:%' THEN 'detection' \
             WHEN plugin = 'antivirus' THEN finding_key ELSE '' END AS class, \
             COUNT(*) AS n FROM findings WHERE resolved_at IS NULL AND device_id IN ",
        );
        sql.in_list(devices.iter().copied());
        scope.restrict(&mut sql, "tenant_id");
        sql.push(" GROUP BY device_id, plugin, class");
        sql.query()
            .fetch_all(self.pool())
            .await?
            .iter()
            .map(|r| {
                Ok(OpenFindings {
                    device_id: DeviceId::from(r.try_get::<String, _>("device_id")?),
                    plugin: r.try_get("plugin")?,
                    class: r.try_get("class")?,
                    count: r.try_get::<i64, _>("n")?.max(0) as u64,
                })
            })
            .collect()
    }

    /// One page of the devices the scope sees that match `filter`, with
    /// their open findings per severity, sorted and paged in the database;
    /// and how many match in all.
    ///
    /// # Errors
    ///
    /// A database failure or a corrupt row.
    pub async fn fleet_page(
        &self,
        scope: &Scope,
        filter: &FleetFilter,
        offset: u32,
        limit: u32,
    ) -> Result<(u64, Vec<FleetRow>)> {
        // Devices and their open findings in one grouping: `subject` is
        // the device's id for a device's finding, and leads the findings'
        // unique index.
        let build = |select: &str| {
            let mut sql = Sql::new(self.backend, select);
            sql.push(
                " FROM devices d LEFT JOIN findings f \
                 ON f.subject = d.id AND f.resolved_at IS NULL WHERE 1 = 1",
            );
            scope.restrict(&mut sql, "d.tenant_id");
            if let Some(t) = &filter.tenant {
                sql.push(" AND d.tenant_id = ").bind(t.as_str());
            }
            device_filters(&mut sql, filter);
            sql.push(" GROUP BY d.id");
            match filter.min_severity {
                Some(Severity::Critical) => {
                    sql.push(
                        " HAVING SUM(CASE WHEN f.severity = 'critical' THEN 1 ELSE 0 END) > 0",
                    );
                }
                Some(Severity::Warning) => {
                    sql.push(
                        " HAVING SUM(CASE WHEN f.severity IN ('critical', 'warning') \
                         THEN 1 ELSE 0 END) > 0",
                    );
                }
                Some(Severity::Info) => {
                    sql.push(" HAVING COUNT(f.id) > 0");
                }
                None => {}
            }
            sql
        };
        let total: i64 = if filter.min_severity.is_none() {
            // Without a severity filter the findings do not matter.
            let mut sql = Sql::new(
                self.backend,
                "SELECT COUNT(*) AS n FROM devices d WHERE 1 = 1",
            );
            scope.restrict(&mut sql, "d.tenant_id");
            if let Some(t) = &filter.tenant {
                sql.push(" AND d.tenant_id = ").bind(t.as_str());
            }
            device_filters(&mut sql, filter);
            sql.query().fetch_one(self.pool()).await?.try_get("n")?
        } else {
            let mut sql = build("SELECT COUNT(*) AS n FROM (SELECT d.id");
            sql.push(") matching");
            sql.query().fetch_one(self.pool()).await?.try_get("n")?
        };
        // `t` names the table the columns are read from (`d.` inside,
        // `p.` outside); the counts are the inner query's own names.
        let order = |t: &str, counts: &str| match filter.sort {
            FleetSort::Worst => format!(
                "{counts}critical DESC, {counts}warning DESC, {counts}info DESC, {t}name, {t}id"
            ),
            FleetSort::Name => format!("{t}name, {t}id"),
            FleetSort::LastSeen => format!(
                "CASE WHEN {t}last_seen_at IS NULL THEN 1 ELSE 0 END, {t}last_seen_at DESC, \
                 {t}name, {t}id"
            ),
        };
        // The page is chosen on narrow rows first; the devices and their
        // agents' states are read for it alone.
        let mut page = build(concat!(
            "SELECT dd.id, dd.tenant_id, dd.site_id, dd.name, dd.tags, '{}' AS facts, \
             '{}' AS admin, dd.reachable, dd.last_seen_at, dd.created_at, \
             p.critical, p.warning, p.info, ",
            agent_state_of!("p.id"),
            " FROM (\
             SELECT d.id, d.name, d.last_seen_at, \
             SUM(CASE WHEN f.severity = 'critical' THEN 1 ELSE 0 END) AS critical, \
             SUM(CASE WHEN f.severity = 'warning' THEN 1 ELSE 0 END) AS warning, \
             SUM(CASE WHEN f.severity = 'info' THEN 1 ELSE 0 END) AS info"
        ));
        page.push(" ORDER BY ")
            .push(&order("d.", ""))
            .push(" LIMIT ")
            .bind(i64::from(limit))
            .push(" OFFSET ")
            .bind(i64::from(offset))
            .push(") p JOIN devices dd ON dd.id = p.id ORDER BY ")
            .push(&order("p.", "p."));
        let rows = page
            .query()
            .fetch_all(self.pool())
            .await?
            .iter()
            .map(|r| {
                let n = |c: &str| r.try_get::<i64, _>(c).map(|v| v.max(0) as u64);
                Ok(FleetRow {
                    device: device_from_row(r)?,
                    critical: n("critical")?,
                    warning: n("warning")?,
                    info: n("info")?,
                })
            })
            .collect::<Result<Vec<_>>>()?;
        Ok((total.max(0) as u64, rows))
    }

    /// Every tag of the devices the scope sees (only `tenant`'s when
    /// given), sorted.
    ///
    /// # Errors
    ///
    /// A database failure or a corrupt row.
    pub async fn device_tags(
        &self,
        scope: &Scope,
        tenant: Option<&TenantId>,
    ) -> Result<Vec<String>> {
        let mut sql = Sql::new(
            self.backend,
            "SELECT DISTINCT tags FROM devices WHERE 1 = 1",
        );
        scope.restrict(&mut sql, "tenant_id");
        if let Some(t) = tenant {
            sql.push(" AND tenant_id = ").bind(t.as_str());
        }
        let mut tags = std::collections::BTreeSet::new();
        for r in sql.query().fetch_all(self.pool()).await? {
            let text: String = r.try_get("tags")?;
            let list: Vec<String> =
                serde_json::from_str(&text).map_err(|e| StoreError::corrupt("devices.tags", e))?;
            tags.extend(list);
        }
        Ok(tags.into_iter().collect())
    }
}

/// The site and tag conditions of a fleet query, on `devices d`.
fn device_filters(sql: &mut Sql, filter: &FleetFilter) {
    if let Some(site) = &filter.site {
        sql.push(" AND d.site_id = ").bind(site.as_str());
    }
    if let Some(tag) = &filter.tag {
        // Tags are stored as a JSON array of strings: the tag's own
        // JSON string, quotes included, is one whole element.
        let quoted = serde_json::to_string(tag).expect("a string serialises");
        let pattern = format!(
            "%{}%",
            quoted
                .replace('\\', "\\\\")
                .replace('%', "\\%")
                .replace('_', "\\_")
        );
        sql.push(" AND d.tags LIKE ")
            .bind(pattern)
            .push(" ESCAPE '\\'");
    }
}
