//! Tenants, sites, devices and plugins: the minimal CRUD the queue needs,
//! plus the audit log.

use serde_json::Value;
use sqlx::Row;
use sqlx::any::AnyRow;

use super::error::{Result, StoreError, unique_insert};
use super::ids::{DeviceId, SiteId, TenantId, Timestamp};
use super::model::{
    AuditEvent, Device, DeviceRef, NewDevice, NewPluginVersion, NewTenant, Site, Tenant,
};
use super::sql::{Sql, json_column, opt_time_column, rows_per_statement, time_column, to_json};
use super::{Backend, Store, WriteTx, ids};

const TENANT_COLUMNS: &str = "id, name, tier, max_concurrent_jobs, created_at";
/// The `agent_state` column [`device_from_row`] reads, for the device
/// whose id is the column named (a string literal).
macro_rules! agent_state_of {
    ($id:literal) => {
        concat!(
            "(SELECT CASE WHEN a.revoked_at IS NOT NULL THEN 'revoked' \
             WHEN a.approved_at IS NULL THEN 'pending-approval' ELSE 'active' END \
             FROM agents a WHERE a.device_id = ",
            $id,
            ") AS agent_state"
        )
    };
}
pub(crate) use agent_state_of;

pub(crate) const DEVICE_COLUMNS: &str = concat!(
    "id, tenant_id, site_id, name, tags, facts, admin, reachable, last_seen_at, created_at, ",
    agent_state_of!("devices.id")
);

/// [`DEVICE_COLUMNS`] with `facts` and `admin` as empty objects, for
/// listings that show neither.
pub(crate) const BRIEF_DEVICE_COLUMNS: &str = concat!(
    "id, tenant_id, site_id, name, tags, '{}' AS facts, '{}' AS admin, reachable, \
     last_seen_at, created_at, ",
    agent_state_of!("devices.id")
);

/// The longest name (of a tenant, site, device, playbook…) in characters.
pub const MAX_NAME_CHARS: usize = 256;

pub(crate) fn name_field(field: &'static str, name: &str) -> Result<()> {
    if name.trim().is_empty() {
        return Err(StoreError::invalid(field, "must not be empty"));
    }
    if name.chars().count() > MAX_NAME_CHARS {
        return Err(StoreError::invalid(
            field,
            format!("must be at most {MAX_NAME_CHARS} characters"),
        ));
    }
    if name.chars().any(char::is_control) {
        return Err(StoreError::invalid(
            field,
            "must not contain control characters (newlines, tabs, escapes)",
        ));
    }
    Ok(())
}

fn tenant_from_row(row: &AnyRow) -> Result<Tenant> {
    let limit: Option<i64> = row.try_get("max_concurrent_jobs")?;
    Ok(Tenant {
        id: TenantId::from(row.try_get::<String, _>("id")?),
        name: row.try_get("name")?,
        tier: super::sql::enum_column(row, "tier")?,
        max_concurrent_jobs: limit.map(|l| u32::try_from(l).unwrap_or(u32::MAX)),
        created_at: time_column(row, "created_at")?,
    })
}

pub(crate) fn device_from_row(row: &AnyRow) -> Result<Device> {
    let tags = json_column(row, "tags")?;
    let tags = serde_json::from_value(tags).map_err(|e| StoreError::corrupt("devices.tags", e))?;
    Ok(Device {
        id: DeviceId::from(row.try_get::<String, _>("id")?),
        tenant_id: TenantId::from(row.try_get::<String, _>("tenant_id")?),
        site_id: row
            .try_get::<Option<String>, _>("site_id")?
            .map(SiteId::from),
        name: row.try_get("name")?,
        tags,
        facts: json_column(row, "facts")?,
        admin: json_column(row, "admin")?,
        reachable: row.try_get::<i64, _>("reachable")? != 0,
        last_seen_at: opt_time_column(row, "last_seen_at")?,
        created_at: time_column(row, "created_at")?,
        agent: row.try_get("agent_state")?,
    })
}

fn object_field(field: &'static str, value: &Value) -> Result<()> {
    if !value.is_object() {
        return Err(StoreError::invalid(field, "must be a JSON object"));
    }
    Ok(())
}

impl Store {
    /// Creates a tenant.
    ///
    /// # Errors
    ///
    /// An empty name, or a name already taken.
    pub async fn create_tenant(&self, new: &NewTenant, now: Timestamp) -> Result<Tenant> {
        name_field("name", &new.name)?;
        let tenant = Tenant {
            id: TenantId::generate(),
            name: new.name.clone(),
            tier: new.tier,
            max_concurrent_jobs: new.max_concurrent_jobs,
            created_at: now,
        };
        let mut tx = self.write().await?;
        let inserted = sqlx::query(
            "INSERT INTO tenants (id, name, tier, max_concurrent_jobs, created_at) \
             VALUES ($1, $2, $3, $4, $5)",
        )
        .bind(tenant.id.as_str())
        .bind(tenant.name.as_str())
        .bind(tenant.tier.as_str())
        .bind(tenant.max_concurrent_jobs.map(i64::from))
        .bind(now.as_millis())
        .execute(tx.conn())
        .await;
        unique_insert(inserted, "tenant", &new.name)?;
        tx.commit().await?;
        Ok(tenant)
    }

    /// The tenant with this id, if any.
    ///
    /// # Errors
    ///
    /// A database failure.
    pub async fn tenant(&self, id: &TenantId) -> Result<Option<Tenant>> {
        let row = sqlx::query(&format!(
            "SELECT {TENANT_COLUMNS} FROM tenants WHERE id = $1"
        ))
        .bind(id.as_str())
        .fetch_optional(self.pool())
        .await?;
        row.as_ref().map(tenant_from_row).transpose()
    }

    /// Every tenant, by name.
    ///
    /// # Errors
    ///
    /// A database failure.
    pub async fn tenants(&self) -> Result<Vec<Tenant>> {
        let rows = sqlx::query(&format!(
            "SELECT {TENANT_COLUMNS} FROM tenants ORDER BY name"
        ))
        .fetch_all(self.pool())
        .await?;
        rows.iter().map(tenant_from_row).collect()
    }

    /// Sets or clears (`None`) a tenant's concurrency limit.
    ///
    /// # Errors
    ///
    /// An unknown tenant.
    pub async fn set_tenant_limit(&self, id: &TenantId, limit: Option<u32>) -> Result<()> {
        let mut tx = self.write().await?;
        let n = sqlx::query("UPDATE tenants SET max_concurrent_jobs = $1 WHERE id = $2")
            .bind(limit.map(i64::from))
            .bind(id.as_str())
            .execute(tx.conn())
            .await?
            .rows_affected();
        if n == 0 {
            return Err(StoreError::UnknownTenant(id.clone()));
        }
        tx.commit().await
    }

    /// Creates a site of a tenant.
    ///
    /// # Errors
    ///
    /// An unknown tenant, an empty name or a name the tenant already uses.
    pub async fn create_site(
        &self,
        tenant_id: &TenantId,
        name: &str,
        now: Timestamp,
    ) -> Result<Site> {
        name_field("name", name)?;
        let site = Site {
            id: SiteId::generate(),
            tenant_id: tenant_id.clone(),
            name: name.to_owned(),
            created_at: now,
        };
        let mut tx = self.write().await?;
        self.require_tenant(&mut tx, tenant_id).await?;
        let inserted = sqlx::query(
            "INSERT INTO sites (id, tenant_id, name, created_at) VALUES ($1, $2, $3, $4)",
        )
        .bind(site.id.as_str())
        .bind(tenant_id.as_str())
        .bind(name)
        .bind(now.as_millis())
        .execute(tx.conn())
        .await;
        unique_insert(inserted, "site", name)?;
        tx.commit().await?;
        Ok(site)
    }

    /// Refuses a site that does not exist or belongs to another tenant, the
    /// same way: another tenant's site is as unknown as a missing one, so
    /// an answer never tells one tenant about another's objects.
    pub(crate) async fn require_site(
        &self,
        tx: &mut super::WriteTx,
        tenant: &TenantId,
        site: &SiteId,
    ) -> Result<()> {
        let owner: Option<String> = sqlx::query_scalar("SELECT tenant_id FROM sites WHERE id = $1")
            .bind(site.as_str())
            .fetch_optional(tx.conn())
            .await?;
        match owner {
            Some(owner) if owner == tenant.as_str() => Ok(()),
            _ => Err(StoreError::UnknownSite(site.clone())),
        }
    }

    pub(crate) async fn require_tenant(
        &self,
        tx: &mut super::WriteTx,
        id: &TenantId,
    ) -> Result<()> {
        let found = sqlx::query("SELECT id FROM tenants WHERE id = $1")
            .bind(id.as_str())
            .fetch_optional(tx.conn())
            .await?;
        match found {
            Some(_) => Ok(()),
            None => Err(StoreError::UnknownTenant(id.clone())),
        }
    }

    /// Creates a device, reachable.
    ///
    /// # Errors
    ///
    /// An unknown tenant or site, a site of another tenant, facts or admin
    /// fields that are not JSON objects, an empty name or one the tenant
    /// already uses.
    pub async fn create_device(&self, new: &NewDevice, now: Timestamp) -> Result<Device> {
        name_field("name", &new.name)?;
        object_field("facts", &new.facts)?;
        object_field("admin", &new.admin)?;
        let device = Device {
            id: DeviceId::generate(),
            tenant_id: new.tenant_id.clone(),
            site_id: new.site_id.clone(),
            name: new.name.clone(),
            tags: new.tags.clone(),
            facts: new.facts.clone(),
            admin: new.admin.clone(),
            reachable: true,
            last_seen_at: None,
            created_at: now,
            agent: None,
        };
        let mut tx = self.write().await?;
        self.require_tenant(&mut tx, &new.tenant_id).await?;
        if let Some(site) = &new.site_id {
            self.require_site(&mut tx, &new.tenant_id, site).await?;
        }
        let inserted = sqlx::query(
            "INSERT INTO devices (id, tenant_id, site_id, name, tags, facts, admin, reachable, \
             created_at) VALUES ($1, $2, $3, $4, $5, $6, $7, 1, $8)",
        )
        .bind(device.id.as_str())
        .bind(device.tenant_id.as_str())
        .bind(device.site_id.as_ref().map(SiteId::as_str))
        .bind(device.name.as_str())
        .bind(serde_json::to_string(&device.tags).unwrap_or_else(|_| "[]".into()))
        .bind(to_json(&device.facts))
        .bind(to_json(&device.admin))
        .bind(now.as_millis())
        .execute(tx.conn())
        .await;
        unique_insert(inserted, "device", &new.name)?;
        tx.commit().await?;
        Ok(device)
    }

    /// Replaces the admin fields of `tenant`'s devices by name, creating
    /// each device the tenant does not have, all in one transaction: every
    /// row is stored or, on an error, none. A name given twice ends with
    /// the later row's fields. Returns (created, updated).
    ///
    /// # Errors
    ///
    /// An unknown tenant, an empty name or admin fields that are not an
    /// object (naming the field), or a database failure.
    pub async fn import_device_admin(
        &self,
        tenant: &TenantId,
        rows: &[(String, Value)],
        now: Timestamp,
    ) -> Result<(u32, u32)> {
        let mut tx = self.write().await?;
        self.require_tenant(&mut tx, tenant).await?;
        let (mut created, mut updated) = (0, 0);
        for (name, admin) in rows {
            name_field("name", name)?;
            object_field("admin", admin)?;
            let n = sqlx::query("UPDATE devices SET admin = $1 WHERE tenant_id = $2 AND name = $3")
                .bind(to_json(admin))
                .bind(tenant.as_str())
                .bind(name.as_str())
                .execute(tx.conn())
                .await?
                .rows_affected();
            if n > 0 {
                updated += 1;
                continue;
            }
            let inserted = sqlx::query(
                "INSERT INTO devices (id, tenant_id, site_id, name, tags, facts, admin, reachable, \
                 created_at) VALUES ($1, $2, NULL, $3, '[]', '{}', $4, 1, $5)",
            )
            .bind(DeviceId::generate().as_str())
            .bind(tenant.as_str())
            .bind(name.as_str())
            .bind(to_json(admin))
            .bind(now.as_millis())
            .execute(tx.conn())
            .await;
            unique_insert(inserted, "device", name)?;
            created += 1;
        }
        tx.commit().await?;
        Ok((created, updated))
    }

    /// The device with this id, if any.
    ///
    /// # Errors
    ///
    /// A database failure or a corrupt row.
    pub async fn device(&self, id: &DeviceId) -> Result<Option<Device>> {
        let row = sqlx::query(&format!(
            "SELECT {DEVICE_COLUMNS} FROM devices WHERE id = $1"
        ))
        .bind(id.as_str())
        .fetch_optional(self.pool())
        .await?;
        row.as_ref().map(device_from_row).transpose()
    }

    /// The devices with these ids (unknown ids are left out), in one query
    /// per 500 ids.
    ///
    /// # Errors
    ///
    /// A database failure or a corrupt row.
    pub async fn devices_by_id(&self, ids: &[&str]) -> Result<Vec<Device>> {
        let mut out = Vec::with_capacity(ids.len());
        let mut conn = self.pool().acquire().await?;
        for chunk in ids.chunks(500) {
            let mut sql = Sql::new(
                self.backend,
                &format!("SELECT {DEVICE_COLUMNS} FROM devices WHERE id IN "),
            );
            sql.in_list(chunk.iter().copied());
            for row in sql.fetch_all(&mut conn).await? {
                out.push(device_from_row(&row)?);
            }
        }
        Ok(out)
    }

    /// What target selection needs of a tenant's devices (id, site, tags),
    /// without their facts.
    ///
    /// # Errors
    ///
    /// A database failure or a corrupt row.
    pub async fn device_refs(&self, tenant_id: &TenantId) -> Result<Vec<DeviceRef>> {
        sqlx::query("SELECT id, site_id, tags FROM devices WHERE tenant_id = $1 ORDER BY name")
            .bind(tenant_id.as_str())
            .fetch_all(self.pool())
            .await?
            .iter()
            .map(|r| {
                let tags: String = r.try_get("tags")?;
                Ok(DeviceRef {
                    id: DeviceId::from(r.try_get::<String, _>("id")?),
                    site_id: r.try_get::<Option<String>, _>("site_id")?.map(SiteId::from),
                    tags: serde_json::from_str(&tags)
                        .map_err(|e| StoreError::corrupt("tags", e))?,
                })
            })
            .collect()
    }

    /// A tenant's devices, by name.
    ///
    /// # Errors
    ///
    /// A database failure or a corrupt row.
    pub async fn devices(&self, tenant_id: &TenantId) -> Result<Vec<Device>> {
        let rows = sqlx::query(&format!(
            "SELECT {DEVICE_COLUMNS} FROM devices WHERE tenant_id = $1 ORDER BY name"
        ))
        .bind(tenant_id.as_str())
        .fetch_all(self.pool())
        .await?;
        rows.iter().map(device_from_row).collect()
    }

    /// Marks a device reachable or not. Queued jobs for an unreachable
    /// device wait (see the module doc); `last_seen_at` moves to `now` when
    /// it is reachable.
    ///
    /// # Errors
    ///
    /// An unknown device.
    pub async fn set_device_reachable(
        &self,
        id: &DeviceId,
        reachable: bool,
        now: Timestamp,
    ) -> Result<()> {
        let mut tx = self.write().await?;
        let n = sqlx::query(
            "UPDATE devices SET reachable = $1, \
             last_seen_at = CASE WHEN $1 = 1 THEN $2 ELSE last_seen_at END WHERE id = $3",
        )
        .bind(i64::from(reachable))
        .bind(now.as_millis())
        .bind(id.as_str())
        .execute(tx.conn())
        .await?
        .rows_affected();
        if n == 0 {
            return Err(StoreError::UnknownDevice(id.clone()));
        }
        tx.commit().await
    }

    /// Registers a plugin name (if new) and sets or clears its concurrency
    /// limit.
    ///
    /// # Errors
    ///
    /// An empty name.
    pub async fn set_plugin_limit(
        &self,
        plugin: &str,
        limit: Option<u32>,
        now: Timestamp,
    ) -> Result<()> {
        name_field("plugin", plugin)?;
        let mut tx = self.write().await?;
        sqlx::query(
            "INSERT INTO plugins (name, max_concurrent_jobs, created_at) VALUES ($1, $2, $3) \
             ON CONFLICT (name) DO UPDATE SET max_concurrent_jobs = excluded.max_concurrent_jobs",
        )
        .bind(plugin)
        .bind(limit.map(i64::from))
        .bind(now.as_millis())
        .execute(tx.conn())
        .await?;
        tx.commit().await
    }

    /// Records an installed plugin version (registering the plugin if new).
    /// Recording the same version again replaces its digest and grants.
    ///
    /// # Errors
    ///
    /// An empty name or version, or a digest not of the form
    /// `sha256:<64 hex digits>`.
    pub async fn add_plugin_version(&self, new: &NewPluginVersion, now: Timestamp) -> Result<()> {
        name_field("plugin", &new.plugin)?;
        name_field("version", &new.version)?;
        let hex = new.digest.strip_prefix("sha256:").unwrap_or("");
        if hex.len() != 64 || !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(StoreError::invalid(
                "digest",
                format!("`{}` is not `sha256:` and 64 hex digits", new.digest),
            ));
        }
        let mut tx = self.write().await?;
        // One plugin name, one origin: a registry module never replaces
        // another module's or an uploaded file's plugin of the same name
        // (nor the other way round), and a registry version's bytes never
        // change.
        let existing =
            sqlx::query("SELECT version, digest, source FROM plugin_versions WHERE plugin = $1")
                .bind(new.plugin.as_str())
                .fetch_all(tx.conn())
                .await?;
        let wanted = new.source.as_ref().map(|s| s.module.as_str());
        for row in &existing {
            let source: Option<String> = row.try_get("source")?;
            if source.as_deref() != wanted {
                let from = |s: Option<&str>| {
                    s.map_or("an uploaded file".to_owned(), |m| {
                        format!("registry module `{m}`")
                    })
                };
                return Err(StoreError::invalid(
                    "plugin",
                    format!(
                        "plugin `{}` is installed from {}; it cannot also come from {}",
                        new.plugin,
                        from(source.as_deref()),
                        from(wanted)
                    ),
                ));
            }
            let (version, digest): (String, String) =
                (row.try_get("version")?, row.try_get("digest")?);
            if wanted.is_some() && version == new.version && digest != new.digest {
                return Err(StoreError::invalid(
                    "version",
                    format!(
                        "`{}` {version} is installed with digest {digest}; a published version never changes",
                        new.plugin
                    ),
                ));
            }
        }
        sqlx::query(
            "INSERT INTO plugins (name, created_at) VALUES ($1, $2) ON CONFLICT (name) DO NOTHING",
        )
        .bind(new.plugin.as_str())
        .bind(now.as_millis())
        .execute(tx.conn())
        .await?;
        sqlx::query(
            "INSERT INTO plugin_versions (plugin, version, digest, grants, installed_at, \
             source, requirement, signed_by, capabilities) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9) ON CONFLICT (plugin, version) DO UPDATE SET \
             digest = excluded.digest, grants = excluded.grants, installed_at = excluded.installed_at, \
             source = excluded.source, requirement = excluded.requirement, \
             signed_by = excluded.signed_by, capabilities = excluded.capabilities",
        )
        .bind(new.plugin.as_str())
        .bind(new.version.as_str())
        .bind(new.digest.as_str())
        .bind(serde_json::to_string(&new.grants).unwrap_or_else(|_| "[]".into()))
        .bind(now.as_millis())
        .bind(new.source.as_ref().map(|s| s.module.clone()))
        .bind(new.source.as_ref().map(|s| s.requirement.clone()))
        .bind(new.source.as_ref().and_then(|s| s.signed_by.clone()))
        .bind(
            new.source
                .as_ref()
                .map(|s| serde_json::to_string(&s.capabilities).unwrap_or_else(|_| "[]".into())),
        )
        .execute(tx.conn())
        .await?;
        if let Some(key) = &new.first_use_key {
            super::trust::trust_first_use(&mut tx, key).await?;
        }
        tx.commit().await
    }

    /// Appends audit events in one transaction.
    ///
    /// # Errors
    ///
    /// A database failure; nothing is appended then.
    pub async fn append_audit(&self, events: &[AuditEvent]) -> Result<()> {
        if events.is_empty() {
            return Ok(());
        }
        let mut tx = self.write().await?;
        insert_audit(self.backend, &mut tx, events).await?;
        tx.commit().await
    }

    /// How many audit events a job has.
    ///
    /// # Errors
    ///
    /// A database failure.
    pub async fn audit_count(&self, job_id: &super::JobId) -> Result<u64> {
        let n: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM audit_events WHERE job_id = $1")
            .bind(job_id.as_str())
            .fetch_one(self.pool())
            .await?;
        Ok(u64::try_from(n).unwrap_or(0))
    }
}

/// Writes audit events inside `tx`, so they commit (or roll back) with the
/// change they describe.
pub(crate) async fn insert_audit(
    backend: Backend,
    tx: &mut WriteTx,
    events: &[AuditEvent],
) -> Result<()> {
    const COLUMNS: usize = 13;
    for chunk in events.chunks(rows_per_statement(COLUMNS, 500)) {
        let mut sql = Sql::new(
            backend,
            "INSERT INTO audit_events (id, at, actor, tenant_id, run_id, job_id, attempt, \
             device_id, plugin, plugin_digest, action, detail, outcome) VALUES ",
        );
        for (i, e) in chunk.iter().enumerate() {
            if i > 0 {
                sql.push(", ");
            }
            sql.push("(")
                .bind(ids::new_id())
                .push(", ")
                .bind(e.at)
                .push(", ")
                .bind(e.actor.as_str())
                .push(", ")
                .bind(e.tenant_id.as_ref().map(TenantId::as_str))
                .push(", ")
                .bind(e.run_id.as_ref().map(|r| r.as_str()))
                .push(", ")
                .bind(e.job_id.as_ref().map(|j| j.as_str()))
                .push(", ")
                .bind(e.attempt.map(i64::from))
                .push(", ")
                .bind(e.device_id.as_ref().map(DeviceId::as_str))
                .push(", ")
                .bind(e.plugin.as_deref())
                .push(", ")
                .bind(e.plugin_digest.as_deref())
                .push(", ")
                .bind(e.action.as_str())
                .push(", ")
                .bind(to_json(&e.detail))
                .push(", ")
                .bind(e.outcome.as_str())
                .push(")");
        }
        sql.execute(tx.conn()).await?;
    }
    Ok(())
}
