//! What the web API reads and writes beside the control plane: users and
//! their hashed API tokens, listings with tenant scopes and cursors, device
//! admin fields, webhooks and the audit trail.
//!
//! Every listing takes a [`Scope`]: the tenants the caller may see. A
//! scoped caller never gets another tenant's rows, whatever filter it
//! passes, so the API layer cannot forget the check in a query.

use serde::{Deserialize, Serialize};
use serde_json::Value;
use sqlx::Row;
use sqlx::any::AnyRow;

use super::error::{Result, StoreError, unique_insert};
use super::ids::{DeviceId, JobId, PlaybookId, RunId, ScheduleId, SiteId, TenantId, Timestamp};
use super::inventory::{DEVICE_COLUMNS, device_from_row, name_field};
use super::model::{Device, Finding, Job, Playbook, Role, Run, RunStatus, Schedule, Site};
use super::queue::JOB_COLUMNS;
use super::results::{FINDING_COLUMNS, FINDING_ORDER, finding_from_row};
use super::runs::{RUN_COLUMNS, SCHEDULE_COLUMNS, run_from_row, schedule_from_row};
use super::sql::{Sql, enum_column, json_column, opt_time_column, time_column};
use super::{Store, ids};

/// The tenants a caller may see.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(untagged)]
pub enum Scope {
    /// Every tenant, and MSP-wide objects (shared playbooks, their runs).
    All,
    /// Only these.
    Tenants(Vec<TenantId>),
}

impl Scope {
    /// Whether `tenant` (`None`: an MSP-wide object) is visible.
    pub fn sees(&self, tenant: Option<&TenantId>) -> bool {
        match (self, tenant) {
            (Scope::All, _) => true,
            (Scope::Tenants(ids), Some(t)) => ids.contains(t),
            (Scope::Tenants(_), None) => false,
        }
    }

    /// Appends ` AND <column> IN (...)` (or nothing for every tenant).
    pub(crate) fn restrict(&self, sql: &mut Sql, column: &str) {
        if let Scope::Tenants(ids) = self {
            if ids.is_empty() {
                sql.push(" AND 1 = 0");
            } else {
                sql.push(" AND ")
                    .push(column)
                    .push(" IN ")
                    .in_list(ids.iter().map(TenantId::as_str));
            }
        }
    }
}

/// A user to create.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct NewUser {
    /// Unique name.
    pub name: String,
    /// Role.
    pub role: Role,
    /// Tenants the user may see; `None`: every tenant (owners always).
    pub tenants: Option<Vec<TenantId>>,
}

/// A stored user.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct User {
    /// Its id.
    pub id: String,
    /// Unique name.
    pub name: String,
    /// Role.
    pub role: Role,
    /// Tenants the user may see; `None`: every tenant.
    pub tenants: Option<Vec<TenantId>>,
    /// When it was created.
    pub created_at: Timestamp,
}

impl User {
    /// What the user may see.
    pub fn scope(&self) -> Scope {
        match &self.tenants {
            Some(ids) if self.role != Role::Owner => Scope::Tenants(ids.clone()),
            _ => Scope::All,
        }
    }
}

/// A stored API token (never the token itself).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct ApiToken {
    /// Its id.
    pub id: String,
    /// The user it acts for.
    pub user_id: String,
    /// A note saying what it is for.
    pub label: String,
    /// When it was created.
    pub created_at: Timestamp,
    /// When it was revoked; a revoked token is refused.
    pub revoked_at: Option<Timestamp>,
}

/// Which audit events to list.
#[derive(Debug, Clone, Default)]
pub struct AuditFilter {
    /// Only this tenant's.
    pub tenant: Option<TenantId>,
    /// Only this actor's (`user:alice`, `plugin:patching`, …).
    pub actor: Option<String>,
    /// Only events at or after this time.
    pub since: Option<Timestamp>,
    /// Only events before this time.
    pub until: Option<Timestamp>,
    /// Only events older than this id (a page's cursor).
    pub before: Option<String>,
}

/// Which runs to list, newest first.
#[derive(Debug, Clone)]
pub struct RunFilter {
    /// What the caller may see.
    pub scope: Scope,
    /// Only this tenant's runs.
    pub tenant: Option<TenantId>,
    /// Only runs with this status.
    pub status: Option<RunStatus>,
    /// Only runs with a job of this plugin.
    pub plugin: Option<String>,
    /// Only runs created at or after this time.
    pub since: Option<Timestamp>,
    /// Only runs created before this time.
    pub until: Option<Timestamp>,
    /// The cursor: only runs older than this one.
    pub before: Option<RunId>,
    /// At most this many.
    pub limit: u32,
}

/// A page of runs as JSON (see [`Store::list_runs_json`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunPageJson {
    /// A JSON array of runs, newest first.
    pub items: String,
    /// How many runs it holds.
    pub count: u64,
    /// The id of its last (oldest) run.
    pub last_id: Option<String>,
}

/// Appends `filter`'s conditions, order and limit to a runs query.
fn run_filter(sql: &mut Sql, filter: &RunFilter) {
    filter.scope.restrict(sql, "tenant_id");
    if let Some(t) = &filter.tenant {
        sql.push(" AND tenant_id = ").bind(t.as_str());
    }
    if let Some(s) = filter.status {
        sql.push(" AND status = ").bind(s.as_str());
    }
    if let Some(since) = filter.since {
        sql.push(" AND created_at >= ").bind(since);
    }
    if let Some(until) = filter.until {
        sql.push(" AND created_at < ").bind(until);
    }
    if let Some(before) = &filter.before {
        sql.push(" AND id < ").bind(before.as_str());
    }
    if let Some(plugin) = &filter.plugin {
        sql.push(" AND EXISTS (SELECT 1 FROM jobs j WHERE j.run_id = runs.id AND j.plugin = ")
            .bind(plugin.as_str())
            .push(")");
    }
    sql.push(" ORDER BY id DESC LIMIT ")
        .bind(i64::from(filter.limit));
}

/// [`Store::list_runs_json`] on SQLite's read connections: the page's rows
/// serialised straight into the array as they are stepped, borrowed from
/// SQLite's buffers (no row is copied into a [`Run`] first). The fields and
/// their forms are [`Run`]'s serde form, as PostgreSQL's `json_agg` writes
/// them; `pins` is stored JSON and is checked to be JSON, not re-encoded.
fn list_runs_json_sqlite(
    readers: &super::read::Readers,
    filter: &RunFilter,
) -> Result<RunPageJson> {
    /// One row of `RUN_COLUMNS`, borrowed.
    #[derive(Serialize)]
    struct RunRow<'a> {
        id: &'a str,
        tenant_id: Option<&'a str>,
        playbook_id: Option<&'a str>,
        schedule_id: Option<&'a str>,
        fire_at: Option<i64>,
        status: &'a str,
        created_at: i64,
        finished_at: Option<i64>,
        pins: Option<&'a serde_json::value::RawValue>,
    }
    fn text<'r>(row: &'r rusqlite::Row<'_>, i: usize) -> rusqlite::Result<Option<&'r str>> {
        row.get_ref(i)?.as_str_or_null().map_err(Into::into)
    }
    let mut sql = Sql::new(
        super::Backend::Sqlite,
        &format!("SELECT {RUN_COLUMNS} FROM runs WHERE 1 = 1"),
    );
    run_filter(&mut sql, filter);
    let mut items = Vec::with_capacity(320 * filter.limit.min(64) as usize);
    items.push(b'[');
    let mut count = 0u64;
    let mut last_id = None;
    readers.for_each(&sql, |row| {
        let id = text(row, 0)?.unwrap_or_default();
        let pins = text(row, 8)?
            .map(serde_json::from_str::<&serde_json::value::RawValue>)
            .transpose()
            .map_err(|e| {
                rusqlite::Error::FromSqlConversionFailure(8, rusqlite::types::Type::Text, e.into())
            })?;
        let run = RunRow {
            id,
            tenant_id: text(row, 1)?,
            playbook_id: text(row, 2)?,
            schedule_id: text(row, 3)?,
            fire_at: row.get(4)?,
            status: text(row, 5)?.unwrap_or_default(),
            created_at: row.get(6)?,
            finished_at: row.get(7)?,
            pins,
        };
        if count > 0 {
            items.push(b',');
        }
        serde_json::to_writer(&mut items, &run).expect("a run serialises");
        count += 1;
        last_id = Some(id.to_owned());
        Ok(())
    })?;
    items.push(b']');
    Ok(RunPageJson {
        items: String::from_utf8(items).expect("serde_json writes UTF-8"),
        count,
        last_id,
    })
}

/// A log line of one of a run's jobs.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct RunLog {
    /// The job.
    pub job_id: JobId,
    /// Its attempt.
    pub attempt: u32,
    /// Position within the attempt.
    pub seq: u32,
    /// When it was written.
    pub at: Timestamp,
    /// Level.
    pub level: String,
    /// Message.
    pub message: String,
}

/// A stored webhook (never its secret).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct StoredWebhook {
    /// Its id.
    pub id: String,
    /// Only this tenant's alerts; `None`: every tenant's.
    pub tenant_id: Option<TenantId>,
    /// Where alerts are posted.
    pub url: String,
    /// Whether it receives alerts.
    pub enabled: bool,
    /// When it was created.
    pub created_at: Timestamp,
}

/// A stored audit event.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct StoredAudit {
    /// Its id (time-ordered; the cursor).
    pub id: String,
    /// When.
    pub at: Timestamp,
    /// Who.
    pub actor: String,
    /// The tenant concerned.
    pub tenant_id: Option<TenantId>,
    /// The job, for a plugin's host call.
    pub job_id: Option<JobId>,
    /// What was done.
    pub action: String,
    /// Details.
    pub detail: Value,
    /// How it ended.
    pub outcome: String,
}

/// The columns [`run_log_from_row`] reads, of `job_logs l`.
const RUN_LOG_COLUMNS: &str = "l.job_id, l.attempt, l.seq, l.at, l.level, l.message";

fn run_log_from_row(r: &AnyRow) -> Result<RunLog> {
    Ok(RunLog {
        job_id: JobId::from(r.try_get::<String, _>("job_id")?),
        attempt: super::sql::u32_column(r, "attempt")?,
        seq: super::sql::u32_column(r, "seq")?,
        at: time_column(r, "at")?,
        level: r.try_get("level")?,
        message: r.try_get("message")?,
    })
}

pub(crate) fn user_from_row(r: &AnyRow) -> Result<User> {
    let tenants: Option<String> = r.try_get("tenants")?;
    let tenants = tenants
        .map(|t| serde_json::from_str(&t).map_err(|e| StoreError::corrupt("users.tenants", e)))
        .transpose()?;
    Ok(User {
        id: r.try_get("id")?,
        name: r.try_get("name")?,
        role: enum_column(r, "role")?,
        tenants,
        created_at: time_column(r, "created_at")?,
    })
}

fn token_from_row(r: &AnyRow) -> Result<ApiToken> {
    Ok(ApiToken {
        id: r.try_get("id")?,
        user_id: r.try_get("user_id")?,
        label: r.try_get("label")?,
        created_at: time_column(r, "created_at")?,
        revoked_at: opt_time_column(r, "revoked_at")?,
    })
}

fn playbook_from_row(r: &AnyRow) -> Result<Playbook> {
    Ok(Playbook {
        id: PlaybookId::from(r.try_get::<String, _>("id")?),
        tenant_id: r
            .try_get::<Option<String>, _>("tenant_id")?
            .map(TenantId::from),
        name: r.try_get("name")?,
        steps: json_column(r, "steps")?,
        target: json_column(r, "target")?,
        created_at: time_column(r, "created_at")?,
    })
}

const USER_COLUMNS: &str = "id, name, role, tenants, created_at";
const TOKEN_COLUMNS: &str = "id, user_id, label, created_at, revoked_at";

impl Store {
    /// Creates a user.
    ///
    /// # Errors
    ///
    /// An empty name, a name taken, or an unknown tenant in `tenants`.
    pub async fn create_user(&self, new: &NewUser, now: Timestamp) -> Result<User> {
        name_field("name", &new.name)?;
        let tenants = if new.role == Role::Owner {
            None
        } else {
            new.tenants.clone()
        };
        let mut tx = self.write().await?;
        for t in tenants.iter().flatten() {
            let found = sqlx::query("SELECT id FROM tenants WHERE id = $1")
                .bind(t.as_str())
                .fetch_optional(tx.conn())
                .await?;
            if found.is_none() {
                return Err(StoreError::invalid(
                    "tenants",
                    format!("unknown tenant `{t}`"),
                ));
            }
        }
        let user = User {
            id: ids::new_id(),
            name: new.name.clone(),
            role: new.role,
            tenants,
            created_at: now,
        };
        let encoded = user
            .tenants
            .as_ref()
            .map(|t| serde_json::to_string(t).expect("ids serialise"));
        let inserted = sqlx::query(
            "INSERT INTO users (id, name, role, tenants, created_at) VALUES ($1, $2, $3, $4, $5)",
        )
        .bind(&user.id)
        .bind(&user.name)
        .bind(user.role.as_str())
        .bind(encoded)
        .bind(now.as_millis())
        .execute(tx.conn())
        .await;
        unique_insert(inserted, "user", &new.name)?;
        tx.commit().await?;
        Ok(user)
    }

    /// Every user, by name.
    ///
    /// # Errors
    ///
    /// A database failure or a corrupt row.
    pub async fn users(&self) -> Result<Vec<User>> {
        sqlx::query(&format!("SELECT {USER_COLUMNS} FROM users ORDER BY name"))
            .fetch_all(self.pool())
            .await?
            .iter()
            .map(user_from_row)
            .collect()
    }

    /// The user with this id or name, if any.
    ///
    /// # Errors
    ///
    /// A database failure or a corrupt row.
    pub async fn user(&self, id_or_name: &str) -> Result<Option<User>> {
        sqlx::query(&format!(
            "SELECT {USER_COLUMNS} FROM users WHERE id = $1 OR name = $1"
        ))
        .bind(id_or_name)
        .fetch_optional(self.pool())
        .await?
        .as_ref()
        .map(user_from_row)
        .transpose()
    }

    /// Creates the first owner, named `owner`, with one API token (stored
    /// as `token_hash`), in one transaction, when the store has no users.
    /// `None` when it has some, including when another process sharing
    /// the database created the first owner at the same moment.
    ///
    /// # Errors
    ///
    /// A database failure; nothing is stored then.
    pub async fn create_first_owner(
        &self,
        token_hash: &str,
        now: Timestamp,
    ) -> Result<Option<User>> {
        let mut tx = self.write().await?;
        let any = sqlx::query("SELECT id FROM users LIMIT 1")
            .fetch_optional(tx.conn())
            .await?;
        if any.is_some() {
            return Ok(None);
        }
        let user = User {
            id: ids::new_id(),
            name: "owner".into(),
            role: Role::Owner,
            tenants: None,
            created_at: now,
        };
        let inserted = sqlx::query(
            "INSERT INTO users (id, name, role, tenants, created_at) VALUES ($1, $2, $3, NULL, $4)",
        )
        .bind(&user.id)
        .bind(&user.name)
        .bind(user.role.as_str())
        .bind(now.as_millis())
        .execute(tx.conn())
        .await;
        match unique_insert(inserted, "user", "owner") {
            Ok(_) => {}
            // Another process's first owner won the race.
            Err(StoreError::AlreadyExists { .. }) => return Ok(None),
            Err(e) => return Err(e),
        }
        sqlx::query(
            "INSERT INTO api_tokens (id, user_id, label, token_hash, created_at) \
             VALUES ($1, $2, 'first owner token', $3, $4)",
        )
        .bind(ids::new_id())
        .bind(&user.id)
        .bind(token_hash)
        .bind(now.as_millis())
        .execute(tx.conn())
        .await?;
        tx.commit().await?;
        Ok(Some(user))
    }

    /// Stores a token's hash for a user.
    ///
    /// # Errors
    ///
    /// An unknown user, or a hash already stored.
    pub async fn create_token(
        &self,
        user_id: &str,
        label: &str,
        token_hash: &str,
        now: Timestamp,
    ) -> Result<ApiToken> {
        let token = ApiToken {
            id: ids::new_id(),
            user_id: user_id.to_owned(),
            label: label.to_owned(),
            created_at: now,
            revoked_at: None,
        };
        let mut tx = self.write().await?;
        let found = sqlx::query("SELECT id FROM users WHERE id = $1")
            .bind(user_id)
            .fetch_optional(tx.conn())
            .await?;
        if found.is_none() {
            return Err(StoreError::invalid(
                "user",
                format!("unknown user `{user_id}`"),
            ));
        }
        let inserted = sqlx::query(
            "INSERT INTO api_tokens (id, user_id, label, token_hash, created_at) \
             VALUES ($1, $2, $3, $4, $5)",
        )
        .bind(&token.id)
        .bind(user_id)
        .bind(label)
        .bind(token_hash)
        .bind(now.as_millis())
        .execute(tx.conn())
        .await;
        unique_insert(inserted, "token", label)?;
        tx.commit().await?;
        Ok(token)
    }

    /// Tokens, newest first; only `user_id`'s when given.
    ///
    /// # Errors
    ///
    /// A database failure or a corrupt row.
    pub async fn tokens(&self, user_id: Option<&str>) -> Result<Vec<ApiToken>> {
        let mut sql = Sql::new(
            self.backend,
            &format!("SELECT {TOKEN_COLUMNS} FROM api_tokens WHERE 1 = 1"),
        );
        if let Some(user) = user_id {
            sql.push(" AND user_id = ").bind(user);
        }
        sql.push(" ORDER BY id DESC");
        sql.query()
            .fetch_all(self.pool())
            .await?
            .iter()
            .map(token_from_row)
            .collect()
    }

    /// The token with this id, if any.
    ///
    /// # Errors
    ///
    /// A database failure or a corrupt row.
    pub async fn token(&self, id: &str) -> Result<Option<ApiToken>> {
        sqlx::query(&format!(
            "SELECT {TOKEN_COLUMNS} FROM api_tokens WHERE id = $1"
        ))
        .bind(id)
        .fetch_optional(self.pool())
        .await?
        .as_ref()
        .map(token_from_row)
        .transpose()
    }

    /// Revokes a token; `false` if it was unknown or revoked already.
    ///
    /// # Errors
    ///
    /// A database failure.
    pub async fn revoke_token(&self, id: &str, now: Timestamp) -> Result<bool> {
        let mut tx = self.write().await?;
        let n = sqlx::query(
            "UPDATE api_tokens SET revoked_at = $1 WHERE id = $2 AND revoked_at IS NULL",
        )
        .bind(now.as_millis())
        .bind(id)
        .execute(tx.conn())
        .await?
        .rows_affected();
        tx.commit().await?;
        Ok(n == 1)
    }

    /// The live (unrevoked) token with this hash and its user.
    ///
    /// # Errors
    ///
    /// A database failure or a corrupt row.
    pub async fn token_user(&self, token_hash: &str) -> Result<Option<(ApiToken, User)>> {
        let row = sqlx::query(
            "SELECT t.id AS token_id, t.user_id, t.label, t.created_at AS token_created_at, \
             u.id, u.name, u.role, u.tenants, u.created_at \
             FROM api_tokens t JOIN users u ON u.id = t.user_id \
             WHERE t.token_hash = $1 AND t.revoked_at IS NULL",
        )
        .bind(token_hash)
        .fetch_optional(self.pool())
        .await?;
        row.map(|r| {
            Ok((
                ApiToken {
                    id: r.try_get("token_id")?,
                    user_id: r.try_get("user_id")?,
                    label: r.try_get("label")?,
                    created_at: time_column(&r, "token_created_at")?,
                    revoked_at: None,
                },
                user_from_row(&r)?,
            ))
        })
        .transpose()
    }

    /// Runs matching `filter`, newest first.
    ///
    /// # Errors
    ///
    /// A database failure or a corrupt row.
    pub async fn list_runs(&self, filter: &RunFilter) -> Result<Vec<Run>> {
        let mut sql = Sql::new(
            self.backend,
            &format!("SELECT {RUN_COLUMNS} FROM runs WHERE 1 = 1"),
        );
        run_filter(&mut sql, filter);
        sql.query()
            .fetch_all(self.pool())
            .await?
            .iter()
            .map(run_from_row)
            .collect()
    }

    /// [`list_runs`](Store::list_runs) as the JSON array the API returns
    /// (the same fields as [`Run`]'s serde form), built by the database in
    /// one row, with the id of the last run on the page (the next page's
    /// cursor) and how many runs the page holds.
    ///
    /// A listing is the API's hottest read; one row instead of one per run
    /// matters on SQLite, where sqlx hands each row from the connection's
    /// thread to the caller's separately.
    ///
    /// # Errors
    ///
    /// A database failure.
    pub async fn list_runs_json(&self, filter: &RunFilter) -> Result<RunPageJson> {
        if let Some(readers) = self.readers() {
            return list_runs_json_sqlite(readers, filter);
        }
        let object = |f: &str, pins: &str| {
            format!(
                "{f}('id', id, 'tenant_id', tenant_id, 'playbook_id', playbook_id, \
                 'schedule_id', schedule_id, 'fire_at', fire_at, 'status', status, \
                 'created_at', created_at, 'finished_at', finished_at, 'pins', {pins})"
            )
        };
        let items = match self.backend {
            super::Backend::Sqlite => format!(
                "COALESCE(json_group_array({} ORDER BY id DESC), '[]')",
                object("json_object", "json(pins)")
            ),
            super::Backend::Postgres => format!(
                "COALESCE(json_agg({} ORDER BY id DESC)::text, '[]')",
                object("json_build_object", "pins::json")
            ),
        };
        let mut sql = Sql::new(
            self.backend,
            &format!(
                "SELECT {items} AS items, COUNT(*) AS n, MIN(id) AS last_id FROM \
                 (SELECT {RUN_COLUMNS} FROM runs WHERE 1 = 1"
            ),
        );
        run_filter(&mut sql, filter);
        sql.push(") page");
        let row = sql.query().fetch_one(self.pool()).await?;
        Ok(RunPageJson {
            items: row.try_get("items")?,
            count: row.try_get::<i64, _>("n")?.max(0) as u64,
            last_id: row.try_get("last_id")?,
        })
    }

    /// The rows of `select` (ending in a `WHERE` clause) that `scope`
    /// sees, only those whose `column` is `value` when a filter is given,
    /// ordered by `order`, each read by `read`.
    async fn scoped_list<T>(
        &self,
        scope: &Scope,
        select: &str,
        filter: Option<(&str, &str)>,
        order: &str,
        read: impl Fn(&AnyRow) -> Result<T>,
    ) -> Result<Vec<T>> {
        let mut sql = Sql::new(self.backend, select);
        scope.restrict(&mut sql, "tenant_id");
        if let Some((column, value)) = filter {
            sql.push(" AND ").push(column).push(" = ").bind(value);
        }
        sql.push(" ORDER BY ").push(order);
        sql.query()
            .fetch_all(self.pool())
            .await?
            .iter()
            .map(read)
            .collect()
    }

    /// A tenant's sites, by name.
    ///
    /// # Errors
    ///
    /// A database failure or a corrupt row.
    pub async fn sites(&self, scope: &Scope, tenant: Option<&TenantId>) -> Result<Vec<Site>> {
        self.scoped_list(
            scope,
            "SELECT id, tenant_id, name, created_at FROM sites WHERE 1 = 1",
            tenant.map(|t| ("tenant_id", t.as_str())),
            "name, id",
            |r| {
                Ok(Site {
                    id: SiteId::from(r.try_get::<String, _>("id")?),
                    tenant_id: TenantId::from(r.try_get::<String, _>("tenant_id")?),
                    name: r.try_get("name")?,
                    created_at: time_column(r, "created_at")?,
                })
            },
        )
        .await
    }

    /// Devices the scope sees, by name; only `tenant`'s when given.
    ///
    /// # Errors
    ///
    /// A database failure or a corrupt row.
    pub async fn list_devices(
        &self,
        scope: &Scope,
        tenant: Option<&TenantId>,
    ) -> Result<Vec<Device>> {
        self.list_devices_of(DEVICE_COLUMNS, scope, tenant).await
    }

    /// [`Store::list_devices`] reading `columns` (which
    /// [`device_from_row`] reads).
    pub(crate) async fn list_devices_of(
        &self,
        columns: &str,
        scope: &Scope,
        tenant: Option<&TenantId>,
    ) -> Result<Vec<Device>> {
        self.scoped_list(
            scope,
            &format!("SELECT {columns} FROM devices WHERE 1 = 1"),
            tenant.map(|t| ("tenant_id", t.as_str())),
            "name, id",
            device_from_row,
        )
        .await
    }

    /// Playbooks the scope sees, by name; only `tenant`'s when given.
    ///
    /// # Errors
    ///
    /// A database failure or a corrupt row.
    pub async fn list_playbooks(
        &self,
        scope: &Scope,
        tenant: Option<&TenantId>,
    ) -> Result<Vec<Playbook>> {
        self.scoped_list(
            scope,
            "SELECT id, tenant_id, name, steps, target, created_at FROM playbooks WHERE 1 = 1",
            tenant.map(|t| ("tenant_id", t.as_str())),
            "name, id",
            playbook_from_row,
        )
        .await
    }

    /// Schedules the scope sees, oldest first; only `playbook`'s when given.
    ///
    /// # Errors
    ///
    /// A database failure or a corrupt row.
    pub async fn list_schedules(
        &self,
        scope: &Scope,
        playbook: Option<&PlaybookId>,
    ) -> Result<Vec<Schedule>> {
        self.scoped_list(
            scope,
            &format!("SELECT {SCHEDULE_COLUMNS} FROM schedules WHERE 1 = 1"),
            playbook.map(|p| ("playbook_id", p.as_str())),
            "id",
            schedule_from_row,
        )
        .await
    }

    /// Turns a schedule on or off; `false` if there is no such schedule.
    /// Turning it off at `now` withdraws the firing written ahead of its
    /// time, if its jobs have not started (see
    /// [`claim_due_schedules`](Self::claim_due_schedules)): it never
    /// happened, and the schedule is due at it again.
    ///
    /// # Errors
    ///
    /// A database failure.
    pub async fn set_schedule_enabled(
        &self,
        id: &ScheduleId,
        enabled: bool,
        now: Timestamp,
    ) -> Result<bool> {
        let mut tx = self.write().await?;
        let n = sqlx::query("UPDATE schedules SET enabled = $1 WHERE id = $2")
            .bind(i64::from(enabled))
            .bind(id.as_str())
            .execute(tx.conn())
            .await?
            .rows_affected();
        if n == 1 && !enabled {
            self.withdraw_firings_ahead(&mut tx, id, now).await?;
        }
        tx.commit().await?;
        Ok(n == 1)
    }

    /// Jobs awaiting approval that the scope sees, oldest first.
    ///
    /// # Errors
    ///
    /// A database failure or a corrupt row.
    pub async fn awaiting_approval(&self, scope: &Scope) -> Result<Vec<Job>> {
        self.scoped_list(
            scope,
            &format!("SELECT {JOB_COLUMNS} FROM jobs WHERE status = 'awaiting-approval'"),
            None,
            "id",
            super::queue::job_from_row,
        )
        .await
    }

    /// The findings a run's jobs saw: those open on a job's subject, from
    /// its plugin, when the job ended. Worst first.
    ///
    /// # Errors
    ///
    /// A database failure or a corrupt row.
    pub async fn findings_of_run(&self, run_id: &RunId) -> Result<Vec<Finding>> {
        sqlx::query(&format!(
            "SELECT {FINDING_COLUMNS} FROM findings f WHERE EXISTS (SELECT 1 FROM jobs j \
             WHERE j.run_id = $1 AND j.finished_at IS NOT NULL \
             AND f.subject = COALESCE(j.device_id, j.tenant_id) AND f.plugin = j.plugin \
             AND f.first_seen_at <= j.finished_at \
             AND (f.resolved_at IS NULL OR f.resolved_at > j.finished_at)){FINDING_ORDER}"
        ))
        .bind(run_id.as_str())
        .fetch_all(self.pool())
        .await?
        .iter()
        .map(finding_from_row)
        .collect()
    }

    /// The log lines of a run's jobs, in the order they were written.
    ///
    /// # Errors
    ///
    /// A database failure or a corrupt row.
    pub async fn logs_of_run(&self, run_id: &RunId) -> Result<Vec<RunLog>> {
        self.logs_of_run_since(run_id, Timestamp::from_millis(i64::MIN))
            .await
    }

    /// A run's log lines written at or after `since`, oldest first (what
    /// a follower of the run has not seen yet, and the lines of the
    /// millisecond it saw last, which it drops).
    ///
    /// # Errors
    ///
    /// A database failure.
    pub async fn logs_of_run_since(&self, run_id: &RunId, since: Timestamp) -> Result<Vec<RunLog>> {
        sqlx::query(&format!(
            "SELECT {RUN_LOG_COLUMNS} FROM job_logs l \
             JOIN jobs j ON j.id = l.job_id WHERE j.run_id = $1 AND l.at >= $2 \
             ORDER BY l.at, l.job_id, l.attempt, l.seq"
        ))
        .bind(run_id.as_str())
        .bind(since.as_millis())
        .fetch_all(self.pool())
        .await?
        .iter()
        .map(run_log_from_row)
        .collect()
    }

    /// A run's newest `count` log lines, oldest first (what a page showing
    /// the end of a run's log reads, however long the log).
    ///
    /// # Errors
    ///
    /// A database failure.
    pub async fn log_tail_of_run(&self, run_id: &RunId, count: u32) -> Result<Vec<RunLog>> {
        let mut lines = sqlx::query(&format!(
            "SELECT {RUN_LOG_COLUMNS} FROM job_logs l \
             JOIN jobs j ON j.id = l.job_id WHERE j.run_id = $1 \
             ORDER BY l.at DESC, l.job_id DESC, l.attempt DESC, l.seq DESC LIMIT $2"
        ))
        .bind(run_id.as_str())
        .bind(i64::from(count))
        .fetch_all(self.pool())
        .await?
        .iter()
        .map(run_log_from_row)
        .collect::<Result<Vec<_>>>()?;
        lines.reverse();
        Ok(lines)
    }

    /// Stores a webhook.
    ///
    /// # Errors
    ///
    /// An unknown tenant or a database failure.
    pub async fn create_webhook(
        &self,
        tenant_id: Option<&TenantId>,
        url: &str,
        secret: &str,
        now: Timestamp,
    ) -> Result<StoredWebhook> {
        let hook = StoredWebhook {
            id: ids::new_id(),
            tenant_id: tenant_id.cloned(),
            url: url.to_owned(),
            enabled: true,
            created_at: now,
        };
        let mut tx = self.write().await?;
        if let Some(t) = tenant_id {
            self.require_tenant(&mut tx, t).await?;
        }
        sqlx::query(
            "INSERT INTO webhooks (id, tenant_id, url, secret, created_at) \
             VALUES ($1, $2, $3, $4, $5)",
        )
        .bind(&hook.id)
        .bind(tenant_id.map(TenantId::as_str))
        .bind(url)
        .bind(secret)
        .bind(now.as_millis())
        .execute(tx.conn())
        .await?;
        tx.commit().await?;
        Ok(hook)
    }

    /// Stored webhooks the scope sees, with their secrets, oldest first.
    ///
    /// # Errors
    ///
    /// A database failure or a corrupt row.
    pub async fn webhooks(&self, scope: &Scope) -> Result<Vec<(StoredWebhook, String)>> {
        self.scoped_list(
            scope,
            "SELECT id, tenant_id, url, secret, enabled, created_at FROM webhooks WHERE 1 = 1",
            None,
            "id",
            |r| {
                Ok((
                    StoredWebhook {
                        id: r.try_get("id")?,
                        tenant_id: r
                            .try_get::<Option<String>, _>("tenant_id")?
                            .map(TenantId::from),
                        url: r.try_get("url")?,
                        enabled: r.try_get::<i64, _>("enabled")? != 0,
                        created_at: time_column(r, "created_at")?,
                    },
                    r.try_get("secret")?,
                ))
            },
        )
        .await
    }

    /// Deletes a webhook; `false` if there was none.
    ///
    /// # Errors
    ///
    /// A database failure.
    pub async fn delete_webhook(&self, id: &str) -> Result<bool> {
        let mut tx = self.write().await?;
        let n = sqlx::query("DELETE FROM webhooks WHERE id = $1")
            .bind(id)
            .execute(tx.conn())
            .await?
            .rows_affected();
        tx.commit().await?;
        Ok(n == 1)
    }

    /// Audit events the scope sees, newest first, older than `before`.
    /// MSP-wide events (no tenant) are only seen by an unscoped caller.
    ///
    /// # Errors
    ///
    /// A database failure or a corrupt row.
    pub async fn audit_events(
        &self,
        scope: &Scope,
        tenant: Option<&TenantId>,
        before: Option<&str>,
        limit: u32,
    ) -> Result<Vec<StoredAudit>> {
        self.audit_events_where(
            scope,
            &AuditFilter {
                tenant: tenant.cloned(),
                before: before.map(str::to_owned),
                ..AuditFilter::default()
            },
            limit,
        )
        .await
    }

    /// Audit events the scope sees that match `filter`, newest first.
    /// MSP-wide events (no tenant) are only seen by an unscoped caller.
    ///
    /// # Errors
    ///
    /// A database failure or a corrupt row.
    pub async fn audit_events_where(
        &self,
        scope: &Scope,
        filter: &AuditFilter,
        limit: u32,
    ) -> Result<Vec<StoredAudit>> {
        let mut sql = Sql::new(
            self.backend,
            "SELECT id, at, actor, tenant_id, job_id, action, detail, outcome \
             FROM audit_events WHERE 1 = 1",
        );
        scope.restrict(&mut sql, "tenant_id");
        if let Some(t) = &filter.tenant {
            sql.push(" AND tenant_id = ").bind(t.as_str());
        }
        if let Some(a) = &filter.actor {
            sql.push(" AND actor = ").bind(a.as_str());
        }
        if let Some(t) = filter.since {
            sql.push(" AND at >= ").bind(t.as_millis());
        }
        if let Some(t) = filter.until {
            sql.push(" AND at < ").bind(t.as_millis());
        }
        if let Some(b) = &filter.before {
            sql.push(" AND id < ").bind(b.as_str());
        }
        sql.push(" ORDER BY id DESC LIMIT ").bind(i64::from(limit));
        sql.query()
            .fetch_all(self.pool())
            .await?
            .iter()
            .map(|r| {
                Ok(StoredAudit {
                    id: r.try_get("id")?,
                    at: time_column(r, "at")?,
                    actor: r.try_get("actor")?,
                    tenant_id: r
                        .try_get::<Option<String>, _>("tenant_id")?
                        .map(TenantId::from),
                    job_id: r.try_get::<Option<String>, _>("job_id")?.map(JobId::from),
                    action: r.try_get("action")?,
                    detail: json_column(r, "detail")?,
                    outcome: r.try_get("outcome")?,
                })
            })
            .collect()
    }

    /// The device with this id, if the scope sees it.
    ///
    /// # Errors
    ///
    /// A database failure or a corrupt row.
    pub async fn device_in(&self, scope: &Scope, id: &DeviceId) -> Result<Option<Device>> {
        Ok(self
            .device(id)
            .await?
            .filter(|d| scope.sees(Some(&d.tenant_id))))
    }
}

/// What `/metrics` reports from the store.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct StoreMetrics {
    /// Jobs per status.
    pub jobs: Vec<(String, u64)>,
    /// Queued jobs already due.
    pub due: u64,
    /// Finished runs and the sum of their durations in milliseconds.
    pub runs_finished: u64,
    /// Sum of finished runs' durations, in milliseconds.
    pub run_millis: i64,
    /// Jobs whose last attempt trapped, per plugin.
    pub traps: Vec<(String, u64)>,
}

impl Store {
    /// Counts for `/metrics`.
    ///
    /// # Errors
    ///
    /// A database failure.
    pub async fn metrics(&self, now: Timestamp) -> Result<StoreMetrics> {
        let pairs = |rows: Vec<AnyRow>| -> Result<Vec<(String, u64)>> {
            rows.iter()
                .map(|r| Ok((r.try_get(0)?, r.try_get::<i64, _>(1)?.max(0) as u64)))
                .collect()
        };
        let jobs = pairs(
            sqlx::query("SELECT status, COUNT(*) FROM jobs GROUP BY status ORDER BY status")
                .fetch_all(self.pool())
                .await?,
        )?;
        let due: i64 = sqlx::query_scalar(
            "SELECT COUNT(*) FROM jobs WHERE status = 'queued' AND due_at <= $1",
        )
        .bind(now.as_millis())
        .fetch_one(self.pool())
        .await?;
        let runs = sqlx::query(
            "SELECT COUNT(*), CAST(COALESCE(SUM(finished_at - created_at), 0) AS BIGINT) FROM runs \
             WHERE finished_at IS NOT NULL",
        )
        .fetch_one(self.pool())
        .await?;
        // The messages of `RunError`'s traps (panic, stack overflow, CPU
        // and memory limits, any other trap), as the executor stores them.
        let traps = pairs(
            sqlx::query(
                "SELECT plugin, COUNT(*) FROM jobs WHERE last_error LIKE 'the plugin trapped%' \
                 OR last_error LIKE 'the plugin panicked%' \
                 OR last_error LIKE 'the plugin overflowed its stack%' \
                 OR last_error LIKE 'the plugin used more than its CPU time limit%' \
                 OR last_error LIKE 'the plugin tried to use more than its memory limit%' \
                 GROUP BY plugin ORDER BY plugin",
            )
            .fetch_all(self.pool())
            .await?,
        )?;
        Ok(StoreMetrics {
            jobs,
            due: due.max(0) as u64,
            runs_finished: runs.try_get::<i64, _>(0)?.max(0) as u64,
            run_millis: runs.try_get(1)?,
            traps,
        })
    }
}
