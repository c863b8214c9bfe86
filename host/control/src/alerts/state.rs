//! Where open alerts live: the [`AlertState`] trait and its in-memory
//! implementation.
//!
//! Every method is one atomic step so that a SQL implementation is one
//! statement each, and two processes observing the same failure open the
//! key once:
//!
//! | method | SQL |
//! |---|---|
//! | `get` | `SELECT … WHERE key = ?` |
//! | `open_among` | `SELECT key … WHERE key IN (…)` |
//! | `open` | `INSERT … ON CONFLICT (key) DO NOTHING`, true when a row was inserted |
//! | `repeat` | `UPDATE … SET occurrences = occurrences + 1, last_seen = … WHERE key = ? RETURNING …` |
//! | `close` | `DELETE … WHERE key = ? RETURNING …` |

use std::collections::HashMap;
use std::sync::Mutex;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::model::{Alert, AlertKey, Severity};

/// What is kept about an open alert, from its firing to its resolution.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OpenAlert {
    /// The alert's id, sent again with its resolved event.
    pub id: String,
    /// The severity it fired with.
    pub severity: Severity,
    /// The summary it fired with.
    pub summary: String,
    /// The run whose job fired it.
    pub run_id: String,
    /// The job that fired it.
    pub job_id: String,
    /// When it fired.
    pub first_seen: DateTime<Utc>,
    /// The latest observation the condition held in.
    pub last_seen: DateTime<Utc>,
    /// How many observations the condition held in, the firing one included.
    pub occurrences: u64,
}

/// Why the alert state could not be read or changed.
#[derive(Debug, thiserror::Error)]
pub enum AlertStateError {
    /// The backend (a database) failed; the source says why.
    #[error("alert state backend failed")]
    Backend(#[source] Box<dyn std::error::Error + Send + Sync>),
}

/// Where open alerts live, keyed by [`AlertKey`]. Each method must be
/// atomic with respect to concurrent callers, in this process and others
/// sharing the backend.
#[async_trait]
pub trait AlertState: Send + Sync {
    /// The open alert for `key`, if any.
    async fn get(&self, key: &AlertKey) -> Result<Option<OpenAlert>, AlertStateError>;

    /// Which of `keys` are open now: one read for a batch of observations
    /// (a passing job usually finds its keys closed and writes nothing).
    /// The default reads them one by one.
    async fn open_among(
        &self,
        keys: &[AlertKey],
    ) -> Result<std::collections::HashSet<AlertKey>, AlertStateError> {
        let mut open = std::collections::HashSet::new();
        for key in keys {
            if self.get(key).await?.is_some() {
                open.insert(key.clone());
            }
        }
        Ok(open)
    }

    /// Opens `key` with `alert` unless it is already open. True when this
    /// call opened it, false when it was open already (whoever opened it
    /// sends the firing alert).
    async fn open(&self, key: &AlertKey, alert: &OpenAlert) -> Result<bool, AlertStateError>;

    /// Counts one more occurrence of the open alert for `key`, seen at `at`,
    /// and returns it updated; `None` when `key` is not open.
    async fn repeat(
        &self,
        key: &AlertKey,
        at: DateTime<Utc>,
    ) -> Result<Option<OpenAlert>, AlertStateError>;

    /// Closes `key` and returns what was open. Of concurrent callers, one
    /// gets the alert and the others `None`.
    async fn close(&self, key: &AlertKey) -> Result<Option<OpenAlert>, AlertStateError>;

    /// [`open`](Self::open), and when this call opens the key, `firing` is
    /// kept as undelivered in the same step, so a crash before its
    /// delivery does not lose it (see [`undelivered`](Self::undelivered)).
    /// The default keeps nothing: for a state that a restart loses anyway.
    async fn open_firing(
        &self,
        key: &AlertKey,
        alert: &OpenAlert,
        firing: &Alert,
    ) -> Result<bool, AlertStateError> {
        let _ = firing;
        self.open(key, alert).await
    }

    /// [`close`](Self::close), returning the event `resolved` makes of what
    /// was open, kept as undelivered in the same step.
    async fn close_resolved(
        &self,
        key: &AlertKey,
        resolved: &(dyn Fn(OpenAlert) -> Alert + Send + Sync),
    ) -> Result<Option<Alert>, AlertStateError> {
        Ok(self.close(key).await?.map(resolved))
    }

    /// Events kept by `open_firing` and `close_resolved` that are not
    /// marked [`delivered`](Self::delivered) and whose delivery is no
    /// longer held by whoever started it, oldest first, at most `limit`:
    /// each is held for this caller before it is returned.
    async fn undelivered(&self, limit: usize) -> Result<Vec<Undelivered>, AlertStateError> {
        let _ = limit;
        Ok(Vec::new())
    }

    /// Records that `webhooks` took `alert`'s event or refused it for
    /// good while another did not: they are listed in its
    /// [`Undelivered::reached`], so a redelivery leaves them out.
    async fn reached(&self, alert: &Alert, webhooks: &[String]) -> Result<(), AlertStateError> {
        let _ = (alert, webhooks);
        Ok(())
    }

    /// Marks `alert`'s event delivered: it is not returned by
    /// `undelivered` again.
    async fn delivered(&self, alert: &Alert) -> Result<(), AlertStateError> {
        let _ = alert;
        Ok(())
    }
}

/// An event to deliver again, from [`AlertState::undelivered`].
#[derive(Debug, Clone, PartialEq)]
pub struct Undelivered {
    /// The event.
    pub alert: Alert,
    /// The webhooks that took it or refused it for good already; a
    /// redelivery sends it to the other matching ones.
    pub reached: Vec<String>,
}

/// Open alerts in this process's memory: for the local runner, a single
/// `steward serve`, and tests. Lost on restart, so an alert open at a
/// restart fires again when its condition is next observed.
#[derive(Debug, Default)]
pub struct MemoryAlertState {
    /// One lock for the map; each method holds it for its whole step.
    open: Mutex<HashMap<AlertKey, OpenAlert>>,
}

impl MemoryAlertState {
    /// An empty state.
    pub fn new() -> Self {
        Self::default()
    }

    fn map(&self) -> std::sync::MutexGuard<'_, HashMap<AlertKey, OpenAlert>> {
        // A panic while holding the lock cannot leave the map half-updated
        // (every step is one map operation), so a poisoned lock is usable.
        self.open
            .lock()
            .unwrap_or_else(|poison| poison.into_inner())
    }
}

#[async_trait]
impl AlertState for MemoryAlertState {
    async fn get(&self, key: &AlertKey) -> Result<Option<OpenAlert>, AlertStateError> {
        Ok(self.map().get(key).cloned())
    }

    async fn open(&self, key: &AlertKey, alert: &OpenAlert) -> Result<bool, AlertStateError> {
        let mut map = self.map();
        if map.contains_key(key) {
            return Ok(false);
        }
        map.insert(key.clone(), alert.clone());
        Ok(true)
    }

    async fn repeat(
        &self,
        key: &AlertKey,
        at: DateTime<Utc>,
    ) -> Result<Option<OpenAlert>, AlertStateError> {
        Ok(self.map().get_mut(key).map(|open| {
            open.occurrences = open.occurrences.saturating_add(1);
            open.last_seen = open.last_seen.max(at);
            open.clone()
        }))
    }

    async fn close(&self, key: &AlertKey) -> Result<Option<OpenAlert>, AlertStateError> {
        Ok(self.map().remove(key))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::alerts::model::Condition;
    use chrono::TimeZone;

    fn key() -> AlertKey {
        AlertKey {
            tenant_id: "acme".into(),
            device_id: "pc-1".into(),
            plugin: "patching".into(),
            condition: Condition::CriticalFindings,
        }
    }

    fn open_alert(id: &str) -> OpenAlert {
        let at = Utc.with_ymd_and_hms(2025, 3, 1, 8, 0, 0).unwrap();
        OpenAlert {
            id: id.into(),
            severity: Severity::Critical,
            summary: "s".into(),
            run_id: "r".into(),
            job_id: "j".into(),
            first_seen: at,
            last_seen: at,
            occurrences: 1,
        }
    }

    #[tokio::test]
    async fn open_is_compare_and_set() {
        let state = MemoryAlertState::new();
        assert!(state.open(&key(), &open_alert("first")).await.unwrap());
        assert!(!state.open(&key(), &open_alert("second")).await.unwrap());
        assert_eq!(state.get(&key()).await.unwrap().unwrap().id, "first");
    }

    #[tokio::test]
    async fn repeat_counts_only_open_keys() {
        let state = MemoryAlertState::new();
        let later = Utc.with_ymd_and_hms(2025, 3, 2, 8, 0, 0).unwrap();
        assert_eq!(state.repeat(&key(), later).await.unwrap(), None);
        state.open(&key(), &open_alert("a")).await.unwrap();
        let open = state.repeat(&key(), later).await.unwrap().unwrap();
        assert_eq!(open.occurrences, 2);
        assert_eq!(open.last_seen, later);
    }

    #[tokio::test]
    async fn close_returns_the_open_alert_once() {
        let state = MemoryAlertState::new();
        state.open(&key(), &open_alert("a")).await.unwrap();
        assert_eq!(state.close(&key()).await.unwrap().unwrap().id, "a");
        assert_eq!(state.close(&key()).await.unwrap(), None);
        assert_eq!(state.get(&key()).await.unwrap(), None);
    }
}
