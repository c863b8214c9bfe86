//! What the web console needs beside the API's reads: sessions, made by
//! signing in with an API token and acting for its user (the store keeps
//! the sha256 of the session secret, never the secret; a session whose
//! token is revoked, or that was ended, is not found), and a device's
//! recent jobs and changes.

use sqlx::Row;

use super::admin::{User, user_from_row};
use super::error::{Result, StoreError};
use super::ids::{DeviceId, Timestamp};
use super::model::{Change, Job};
use super::queue::{JOB_COLUMNS, job_from_row};
use super::results::{CHANGE_COLUMNS, change_from_row};
use super::sql::time_column;
use super::{Store, ids};

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
}
