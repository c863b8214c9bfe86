//! Keys trusted to sign registry modules, per namespace.
//!
//! A key is trusted explicitly (an admin added it) or on first use (it
//! signed the first module installed from its namespace, and was recorded
//! in the same transaction as that install). Either way a later module of
//! the namespace must be signed by a key trusted here. Revoking a key keeps
//! its row, so a namespace that ever had a trusted key is never trusted on
//! first use again.

use serde::{Deserialize, Serialize};
use sqlx::Row;

use super::Store;
use super::error::{Result, StoreError};
use super::ids::Timestamp;
use super::sql::{enum_column, time_column};

/// How a key came to be trusted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "kebab-case")]
pub enum TrustHow {
    /// An admin added it.
    Explicit,
    /// Recorded when the first module of its namespace was installed.
    FirstUse,
}

impl TrustHow {
    fn as_str(self) -> &'static str {
        match self {
            TrustHow::Explicit => "explicit",
            TrustHow::FirstUse => "first-use",
        }
    }
}

impl std::str::FromStr for TrustHow {
    type Err = String;

    fn from_str(s: &str) -> std::result::Result<Self, Self::Err> {
        match s {
            "explicit" => Ok(TrustHow::Explicit),
            "first-use" => Ok(TrustHow::FirstUse),
            other => Err(format!("`{other}` is not explicit or first-use")),
        }
    }
}

/// A key trusted to sign a namespace's modules.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct TrustedKey {
    /// The registry namespace (`acme`).
    pub namespace: String,
    /// `ed25519:…`.
    pub key_id: String,
    /// The ed25519 public key, base64.
    pub public_key: String,
    /// How it came to be trusted.
    pub how: TrustHow,
    /// When.
    pub trusted_at: Timestamp,
}

impl Store {
    /// The keys trusted for `namespace`, or for every namespace, oldest
    /// first.
    ///
    /// # Errors
    ///
    /// A database failure or a corrupt row.
    pub async fn trusted_keys(&self, namespace: Option<&str>) -> Result<Vec<TrustedKey>> {
        const SELECT: &str = "SELECT namespace, key_id, public_key, how, trusted_at \
             FROM trusted_keys WHERE revoked_at IS NULL";
        const ORDER: &str = " ORDER BY namespace, trusted_at, key_id";
        let rows = match namespace {
            Some(ns) => {
                sqlx::query(&format!("{SELECT} AND namespace = $1{ORDER}"))
                    .bind(ns)
                    .fetch_all(self.pool())
                    .await?
            }
            None => {
                sqlx::query(&format!("{SELECT}{ORDER}"))
                    .fetch_all(self.pool())
                    .await?
            }
        };
        rows.iter()
            .map(|r| {
                Ok(TrustedKey {
                    namespace: r.try_get("namespace")?,
                    key_id: r.try_get("key_id")?,
                    public_key: r.try_get("public_key")?,
                    how: enum_column(r, "how")?,
                    trusted_at: time_column(r, "trusted_at")?,
                })
            })
            .collect()
    }

    /// Whether `namespace` has ever had a trusted key (revoked ones
    /// count): only a namespace that never had one is trusted on first use.
    ///
    /// # Errors
    ///
    /// A database failure.
    pub async fn namespace_ever_trusted(&self, namespace: &str) -> Result<bool> {
        let found = sqlx::query("SELECT 1 AS one FROM trusted_keys WHERE namespace = $1 LIMIT 1")
            .bind(namespace)
            .fetch_optional(self.pool())
            .await?;
        Ok(found.is_some())
    }

    /// Records a trusted key, or trusts a revoked one again. `false` when
    /// the namespace trusts that key already (nothing changes then).
    ///
    /// # Errors
    ///
    /// An empty namespace, key id or key, or a database failure.
    pub async fn trust_key(&self, key: &TrustedKey) -> Result<bool> {
        for (field, value) in [
            ("namespace", &key.namespace),
            ("key-id", &key.key_id),
            ("public-key", &key.public_key),
        ] {
            if value.trim().is_empty() {
                return Err(StoreError::invalid(field, "must not be empty"));
            }
        }
        let mut tx = self.write().await?;
        let done = sqlx::query(
            "INSERT INTO trusted_keys (namespace, key_id, public_key, how, trusted_at) \
             VALUES ($1, $2, $3, $4, $5) ON CONFLICT (namespace, key_id) DO UPDATE SET \
             public_key = excluded.public_key, how = excluded.how, \
             trusted_at = excluded.trusted_at, revoked_at = NULL \
             WHERE trusted_keys.revoked_at IS NOT NULL",
        )
        .bind(key.namespace.as_str())
        .bind(key.key_id.as_str())
        .bind(key.public_key.as_str())
        .bind(key.how.as_str())
        .bind(key.trusted_at.as_millis())
        .execute(tx.conn())
        .await?;
        tx.commit().await?;
        Ok(done.rows_affected() > 0)
    }

    /// Stops trusting a key (its row stays, revoked). `false` when it was
    /// not trusted.
    ///
    /// # Errors
    ///
    /// A database failure.
    pub async fn untrust_key(&self, namespace: &str, key_id: &str, now: Timestamp) -> Result<bool> {
        let mut tx = self.write().await?;
        let done = sqlx::query(
            "UPDATE trusted_keys SET revoked_at = $3 \
             WHERE namespace = $1 AND key_id = $2 AND revoked_at IS NULL",
        )
        .bind(namespace)
        .bind(key_id)
        .bind(now.as_millis())
        .execute(tx.conn())
        .await?;
        tx.commit().await?;
        Ok(done.rows_affected() > 0)
    }
}

/// Records `key` as trusted on first use inside an install's transaction,
/// unless its namespace has had a trusted key meanwhile (another install
/// won the race): refused then, and the install rolls back.
pub(crate) async fn trust_first_use(tx: &mut super::WriteTx, key: &TrustedKey) -> Result<()> {
    let done = sqlx::query(
        "INSERT INTO trusted_keys (namespace, key_id, public_key, how, trusted_at) \
         SELECT $1, $2, $3, 'first-use', $4 \
         WHERE NOT EXISTS (SELECT 1 FROM trusted_keys WHERE namespace = $1)",
    )
    .bind(key.namespace.as_str())
    .bind(key.key_id.as_str())
    .bind(key.public_key.as_str())
    .bind(key.trusted_at.as_millis())
    .execute(tx.conn())
    .await?;
    if done.rows_affected() == 0 {
        return Err(StoreError::invalid(
            "signed-by",
            format!(
                "namespace `{}` has had a trusted key since this install started; install again to verify against it",
                key.namespace
            ),
        ));
    }
    Ok(())
}
