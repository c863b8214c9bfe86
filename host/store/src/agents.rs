//! Remote agents: enrollment tokens, the agents they enrolled (a device and
//! a public key each) and their connection state.
//!
//! An enrollment is all or nothing: the token is checked and spent, the
//! device created and the key recorded in one transaction, so a refused
//! enrollment (unknown, expired, used-up or revoked token, a key already
//! enrolled) stores nothing.

use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use sqlx::Row;

use super::error::{Result, StoreError, is_unique_violation};
use super::ids::{DeviceId, SiteId, TenantId, Timestamp};
use super::sql::{json_column, to_json};
use super::{Store, ids};

/// An enrollment token to create. The token itself never reaches the
/// store: only its hash.
#[derive(Debug, Clone)]
pub struct NewEnrollment {
    /// The tenant devices join.
    pub tenant_id: TenantId,
    /// Their site, if any.
    pub site_id: Option<SiteId>,
    /// Tags every enrolled device gets.
    pub tags: Vec<String>,
    /// Hex sha256 of the token.
    pub token_hash: String,
    /// How many devices may enroll with it.
    pub uses: u32,
    /// When it stops working.
    pub expires_at: Timestamp,
    /// Who made it (`user:<name>`).
    pub created_by: String,
    /// Whether devices enrolled with it wait for an admin's approval
    /// before their agents may connect.
    pub needs_approval: bool,
}

/// A stored enrollment token (without the token).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Enrollment {
    /// Its id.
    pub id: String,
    /// The tenant.
    pub tenant_id: TenantId,
    /// The site.
    pub site_id: Option<SiteId>,
    /// Tags given to enrolled devices.
    pub tags: Vec<String>,
    /// Enrollments left.
    pub uses_left: u32,
    /// When it stops working.
    pub expires_at: Timestamp,
    /// Whether enrolled devices wait for an admin's approval.
    pub needs_approval: bool,
    /// When it was made.
    pub created_at: Timestamp,
}

/// An endpoint asking to join.
#[derive(Debug, Clone)]
pub struct NewAgent {
    /// Base64 ed25519 public key made on the endpoint.
    pub public_key: String,
    /// The endpoint's host name (the device's name).
    pub hostname: String,
    /// What the endpoint reports of itself (OS, kernel, …): a JSON object.
    pub facts: Value,
    /// The agent's version.
    pub agent_version: String,
}

/// An enrolled agent, as the connection handshake needs it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AgentRecord {
    /// The device it is.
    pub device_id: DeviceId,
    /// The device's tenant.
    pub tenant_id: TenantId,
    /// Base64 ed25519 public key.
    pub public_key: String,
    /// Whether it was revoked.
    pub revoked: bool,
    /// Whether it may connect: approved by an admin, or enrolled with a
    /// token that needed no approval.
    pub approved: bool,
}

/// The one refusal an enrollment gets for a token that does not work, so
/// a caller learns nothing about which tokens exist.
pub const BAD_ENROLLMENT_TOKEN: &str =
    "the enrollment token is unknown, expired, used up or revoked";

impl Store {
    /// Stores an enrollment token's hash for `new.tenant_id`.
    ///
    /// # Errors
    ///
    /// An unknown tenant or site, a site of another tenant, no uses, or a
    /// database failure.
    pub async fn create_enrollment(
        &self,
        new: &NewEnrollment,
        now: Timestamp,
    ) -> Result<Enrollment> {
        if new.uses == 0 {
            return Err(StoreError::invalid("uses", "must be at least 1"));
        }
        if new.expires_at <= now {
            return Err(StoreError::invalid("expires", "must be in the future"));
        }
        let mut tx = self.write().await?;
        self.require_tenant(&mut tx, &new.tenant_id).await?;
        if let Some(site) = &new.site_id {
            self.require_site(&mut tx, &new.tenant_id, site).await?;
        }
        let id = ids::new_id();
        sqlx::query(
            "INSERT INTO enrollments (id, tenant_id, site_id, tags, token_hash, uses_left, \
             expires_at, created_by, created_at, needs_approval) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)",
        )
        .bind(id.as_str())
        .bind(new.tenant_id.as_str())
        .bind(new.site_id.as_ref().map(SiteId::as_str))
        .bind(to_json(&json!(new.tags)))
        .bind(new.token_hash.as_str())
        .bind(i64::from(new.uses))
        .bind(new.expires_at.as_millis())
        .bind(new.created_by.as_str())
        .bind(now.as_millis())
        .bind(i64::from(new.needs_approval))
        .execute(tx.conn())
        .await?;
        tx.commit().await?;
        Ok(Enrollment {
            id,
            tenant_id: new.tenant_id.clone(),
            site_id: new.site_id.clone(),
            tags: new.tags.clone(),
            uses_left: new.uses,
            expires_at: new.expires_at,
            needs_approval: new.needs_approval,
            created_at: now,
        })
    }

    /// Enrolls an agent with the token whose hash is `token_hash`: spends
    /// one use, creates the device in the token's tenant and site (named
    /// after the host, made unique within the tenant), unreachable until
    /// the agent connects, and records the public key, approved unless the
    /// token needs an admin's approval. Returns the device id, its tenant,
    /// and whether the agent may connect now (approved).
    ///
    /// # Errors
    ///
    /// [`BAD_ENROLLMENT_TOKEN`] (as `invalid` of `token`), a key that is
    /// enrolled already (`already-exists`), bad facts, or a database
    /// failure; nothing is stored then.
    pub async fn enroll(
        &self,
        token_hash: &str,
        agent: &NewAgent,
        now: Timestamp,
    ) -> Result<(DeviceId, TenantId, bool)> {
        if !agent.facts.is_object() {
            return Err(StoreError::invalid("facts", "must be a JSON object"));
        }
        let hostname = agent.hostname.trim();
        if hostname.is_empty() || hostname.len() > 253 || hostname.chars().any(char::is_control) {
            return Err(StoreError::invalid(
                "hostname",
                "must be 1 to 253 printable characters",
            ));
        }
        let mut tx = self.write().await?;
        let row = sqlx::query(
            "SELECT id, tenant_id, site_id, tags, needs_approval FROM enrollments \
             WHERE token_hash = $1 AND revoked_at IS NULL AND expires_at > $2 AND uses_left > 0",
        )
        .bind(token_hash)
        .bind(now.as_millis())
        .fetch_optional(tx.conn())
        .await?;
        let Some(row) = row else {
            return Err(StoreError::invalid("token", BAD_ENROLLMENT_TOKEN));
        };
        let enrollment: String = row.try_get("id")?;
        let tenant = TenantId::from(row.try_get::<String, _>("tenant_id")?);
        let site: Option<String> = row.try_get("site_id")?;
        let tags = json_column(&row, "tags")?;
        let approved = row.try_get::<i64, _>("needs_approval")? == 0;
        // Spend a use; the condition keeps two enrollments racing for the
        // last use from both succeeding.
        let spent = sqlx::query(
            "UPDATE enrollments SET uses_left = uses_left - 1 WHERE id = $1 AND uses_left > 0",
        )
        .bind(enrollment.as_str())
        .execute(tx.conn())
        .await?
        .rows_affected();
        if spent != 1 {
            return Err(StoreError::invalid("token", BAD_ENROLLMENT_TOKEN));
        }
        let device = DeviceId::generate();
        let taken: Option<String> =
            sqlx::query_scalar("SELECT id FROM devices WHERE tenant_id = $1 AND name = $2")
                .bind(tenant.as_str())
                .bind(hostname)
                .fetch_optional(tx.conn())
                .await?;
        let name = match taken {
            None => hostname.to_owned(),
            Some(_) => format!(
                "{hostname}-{}",
                &device.as_str()[..8.min(device.as_str().len())]
            ),
        };
        let mut facts = agent.facts.clone();
        facts["provider"] = json!("agent");
        facts["agent_version"] = json!(agent.agent_version);
        sqlx::query(
            "INSERT INTO devices (id, tenant_id, site_id, name, tags, facts, admin, reachable, \
             created_at) VALUES ($1, $2, $3, $4, $5, $6, '{}', 0, $7)",
        )
        .bind(device.as_str())
        .bind(tenant.as_str())
        .bind(site.as_deref())
        .bind(name.as_str())
        .bind(to_json(&tags))
        .bind(to_json(&facts))
        .bind(now.as_millis())
        .execute(tx.conn())
        .await?;
        let inserted = sqlx::query(
            "INSERT INTO agents (device_id, public_key, enrollment_id, enrolled_at, agent_version, \
             approved_at) VALUES ($1, $2, $3, $4, $5, $6)",
        )
        .bind(device.as_str())
        .bind(agent.public_key.as_str())
        .bind(enrollment.as_str())
        .bind(now.as_millis())
        .bind(agent.agent_version.as_str())
        .bind(approved.then_some(now.as_millis()))
        .execute(tx.conn())
        .await;
        match inserted {
            Err(e) if is_unique_violation(&e) => {
                return Err(StoreError::AlreadyExists {
                    what: "agent key",
                    name: "this public key".into(),
                });
            }
            other => {
                other?;
            }
        }
        tx.commit().await?;
        Ok((device, tenant, approved))
    }

    /// The agent enrolled as `device`, if any.
    ///
    /// # Errors
    ///
    /// A database failure.
    pub async fn agent(&self, device: &DeviceId) -> Result<Option<AgentRecord>> {
        let row = sqlx::query(
            "SELECT a.device_id, d.tenant_id, a.public_key, a.revoked_at, a.approved_at \
             FROM agents a \
             JOIN devices d ON d.id = a.device_id WHERE a.device_id = $1",
        )
        .bind(device.as_str())
        .fetch_optional(self.pool())
        .await?;
        row.map(|r| {
            Ok(AgentRecord {
                device_id: DeviceId::from(r.try_get::<String, _>("device_id")?),
                tenant_id: TenantId::from(r.try_get::<String, _>("tenant_id")?),
                public_key: r.try_get("public_key")?,
                revoked: r.try_get::<Option<i64>, _>("revoked_at")?.is_some(),
                approved: r.try_get::<Option<i64>, _>("approved_at")?.is_some(),
            })
        })
        .transpose()
    }

    /// Revokes `device`'s agent: it can no longer connect, and the device
    /// is unreachable (its queued jobs wait, then expire). Returns whether
    /// the device has an agent.
    ///
    /// # Errors
    ///
    /// A database failure.
    pub async fn revoke_agent(&self, device: &DeviceId, now: Timestamp) -> Result<bool> {
        let mut tx = self.write().await?;
        let n = sqlx::query(
            "UPDATE agents SET revoked_at = COALESCE(revoked_at, $1), connected = 0 \
             WHERE device_id = $2",
        )
        .bind(now.as_millis())
        .bind(device.as_str())
        .execute(tx.conn())
        .await?
        .rows_affected();
        sqlx::query("UPDATE devices SET reachable = 0, held_by = NULL WHERE id = $1")
            .bind(device.as_str())
            .execute(tx.conn())
            .await?;
        tx.commit().await?;
        Ok(n > 0)
    }

    /// Approves `device`'s agent, enrolled with a token that needs
    /// approval: from now on it may connect. Returns whether the device has
    /// an agent that is not revoked (approving one twice is no change).
    ///
    /// # Errors
    ///
    /// A database failure.
    pub async fn approve_agent(&self, device: &DeviceId, now: Timestamp) -> Result<bool> {
        let n = sqlx::query(
            "UPDATE agents SET approved_at = COALESCE(approved_at, $1) \
             WHERE device_id = $2 AND revoked_at IS NULL",
        )
        .bind(now.as_millis())
        .bind(device.as_str())
        .execute(self.pool())
        .await?
        .rows_affected();
        Ok(n > 0)
    }

    /// Records that `device`'s agent connected to the server process
    /// `holder` (its worker id, with its version), or disconnected from it.
    /// The device is reachable exactly while its agent is connected, so its
    /// queued jobs wait while it is away, and only `holder` claims them
    /// meanwhile. A disconnect from a process that no longer holds the
    /// agent (it reconnected elsewhere) changes nothing.
    ///
    /// # Errors
    ///
    /// A database failure.
    pub async fn agent_connected(
        &self,
        device: &DeviceId,
        holder: &str,
        connected: bool,
        agent_version: &str,
        now: Timestamp,
    ) -> Result<()> {
        let mut tx = self.write().await?;
        if connected {
            sqlx::query(
                "UPDATE agents SET connected = 1, last_seen_at = $1, connected_at = $1, \
                 agent_version = CASE WHEN $2 = '' THEN agent_version ELSE $2 END \
                 WHERE device_id = $3 AND revoked_at IS NULL",
            )
            .bind(now.as_millis())
            .bind(agent_version)
            .bind(device.as_str())
            .execute(tx.conn())
            .await?;
            sqlx::query(
                "UPDATE devices SET reachable = 1, held_by = $1, last_seen_at = $2 WHERE id = $3 \
                 AND EXISTS (SELECT 1 FROM agents WHERE device_id = $3 AND revoked_at IS NULL \
                 AND approved_at IS NOT NULL)",
            )
            .bind(holder)
            .bind(now.as_millis())
            .bind(device.as_str())
            .execute(tx.conn())
            .await?;
            // The device's waiting jobs are this process's to run now.
            tx.mark_jobs_ready();
        } else {
            let released = sqlx::query(
                "UPDATE devices SET reachable = 0, held_by = NULL, last_seen_at = $1 \
                 WHERE id = $2 AND held_by = $3",
            )
            .bind(now.as_millis())
            .bind(device.as_str())
            .bind(holder)
            .execute(tx.conn())
            .await?
            .rows_affected();
            if released > 0 {
                sqlx::query(
                    "UPDATE agents SET connected = 0, last_seen_at = $1 WHERE device_id = $2",
                )
                .bind(now.as_millis())
                .bind(device.as_str())
                .execute(tx.conn())
                .await?;
            }
        }
        tx.commit().await
    }

    /// Records the heartbeats of `devices`' agents since the last call, in
    /// one transaction however many there are (a server holding 50,000
    /// agents gets one write every few seconds, not thousands a second).
    /// Returns those whose agent was revoked meanwhile (through any server
    /// process) or is gone: their connections must end.
    ///
    /// # Errors
    ///
    /// A database failure.
    pub async fn agents_seen(&self, devices: &[DeviceId], now: Timestamp) -> Result<Vec<DeviceId>> {
        const CHUNK: usize = 500;
        let mut tx = self.write().await?;
        let mut live = std::collections::HashSet::with_capacity(devices.len());
        for chunk in devices.chunks(CHUNK) {
            let mut sql = super::sql::Sql::new(self.backend, "UPDATE agents SET last_seen_at = ");
            sql.bind(now.as_millis())
                .push(" WHERE revoked_at IS NULL AND device_id IN ")
                .in_list(chunk.iter().map(DeviceId::as_str))
                .push(" RETURNING device_id");
            for row in sql.fetch_all(tx.conn()).await? {
                live.insert(row.try_get::<String, _>("device_id")?);
            }
            let mut sql = super::sql::Sql::new(self.backend, "UPDATE devices SET last_seen_at = ");
            sql.bind(now.as_millis())
                .push(" WHERE id IN ")
                .in_list(chunk.iter().map(DeviceId::as_str));
            sql.execute(tx.conn()).await?;
        }
        tx.commit().await?;
        Ok(devices
            .iter()
            .filter(|d| !live.contains(d.as_str()))
            .cloned()
            .collect())
    }
}
