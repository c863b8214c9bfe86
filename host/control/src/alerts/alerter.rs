//! The alerter: turns each job's [`Observation`] into the alerts it starts
//! or ends, one state machine per [`AlertKey`].
//!
//! ```text
//!             holds: open ──► firing          holds: repeat (count), no alert
//!   closed ─────────────────────────► open ──────────────┐
//!     ▲                                 │ ◄──────────────┘
//!     └──────── does not hold: close ───┘ ──► resolved
//! ```
//!
//! A condition the job did not show (no check, no remediation) does not
//! move its key. A condition that does not hold while its key is closed
//! does nothing.

use std::sync::Arc;

use tracing::{error, instrument};

use super::id::new_id;
use super::model::{Alert, AlertEvent, AlertKey, Condition, Observation};
use super::state::{AlertState, AlertStateError, OpenAlert, Undelivered};

/// Decides which observations alert. Cheap to clone; clones share the state.
#[derive(Clone)]
pub struct Alerter {
    state: Arc<dyn AlertState>,
}

impl std::fmt::Debug for Alerter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Alerter").finish_non_exhaustive()
    }
}

impl Alerter {
    /// An alerter keeping open alerts in `state`. Alerters in several
    /// processes sharing one state alert once between them.
    pub fn new(state: Arc<dyn AlertState>) -> Self {
        Self { state }
    }

    /// The alerts one job's observation starts or ends, at most one per
    /// [`Condition`], in the order of [`Condition::ALL`].
    ///
    /// A state error is logged and skips that condition for this
    /// observation; the next observation of the key drives it again (a
    /// failure not recorded now fires next time, a pass not recorded now
    /// resolves next time), so errors delay alerts but never wedge a key.
    pub async fn observe(&self, observation: &Observation) -> Vec<Alert> {
        self.observe_all(observation).await.0
    }

    /// [`observe`](Self::observe), also saying whether every condition's
    /// step was recorded (`false`: a state error skipped one, and the
    /// observation is worth giving again).
    #[instrument(skip_all, fields(
        tenant = %observation.tenant_id,
        device = %observation.device_id,
        plugin = %observation.plugin,
        job = %observation.job_id,
    ))]
    pub async fn observe_all(&self, observation: &Observation) -> (Vec<Alert>, bool) {
        self.observe_one(observation, None).await
    }

    /// [`observe_all`](Self::observe_all) for a batch of observations, in
    /// order, with one read of the alert state for the keys they clear
    /// (most jobs pass, and a passing job whose keys are closed writes
    /// nothing), instead of one read per key. A key that an earlier
    /// observation of the batch holds is read again when a later one
    /// clears it.
    pub async fn observe_batch(&self, observations: &[&Observation]) -> Vec<(Vec<Alert>, bool)> {
        let cleared: Vec<AlertKey> = observations
            .iter()
            .flat_map(|o| {
                Condition::ALL
                    .into_iter()
                    .filter(|c| o.holds(*c) == Some(false))
                    .map(|c| o.key(c))
            })
            .collect::<std::collections::BTreeSet<_>>()
            .into_iter()
            .collect();
        // A failed read: every key is read again on its own.
        let mut open = match self.state.open_among(&cleared).await {
            Ok(open) => Some(open),
            Err(err) => {
                error!(
                    err = &err as &dyn std::error::Error,
                    "alert state failed; reading keys one by one"
                );
                None
            }
        };
        let mut out = Vec::with_capacity(observations.len());
        for o in observations {
            out.push(self.observe_one(o, open.as_ref()).await);
            if let Some(open) = &mut open {
                // A key this observation holds may be open now.
                for c in Condition::ALL {
                    if o.holds(c) == Some(true) {
                        open.insert(o.key(c));
                    }
                }
            }
        }
        out
    }

    /// One observation; `open`, when given, holds every key of the batch
    /// that may be open, so a cleared key outside it needs no read.
    async fn observe_one(
        &self,
        observation: &Observation,
        open: Option<&std::collections::HashSet<AlertKey>>,
    ) -> (Vec<Alert>, bool) {
        let mut complete = true;
        let mut alerts = Vec::new();
        for condition in Condition::ALL {
            let Some(holds) = observation.holds(condition) else {
                continue;
            };
            let key = observation.key(condition);
            let step = if holds {
                self.held(&key, observation).await
            } else if open.is_some_and(|open| !open.contains(&key)) {
                Ok(None)
            } else {
                self.cleared(&key, observation).await
            };
            match step {
                Ok(alert) => alerts.extend(alert),
                Err(err) => {
                    complete = false;
                    error!(
                        err = &err as &dyn std::error::Error,
                        key = %key,
                        "alert state failed; this observation is skipped for the key"
                    );
                }
            }
        }
        (alerts, complete)
    }

    /// `key`'s condition holds: fire if this call opens the key, else count.
    async fn held(
        &self,
        key: &AlertKey,
        observation: &Observation,
    ) -> Result<Option<Alert>, AlertStateError> {
        if self.state.repeat(key, observation.at).await?.is_some() {
            return Ok(None);
        }
        let (summary, details) = observation.describe_firing(key.condition);
        let open = OpenAlert {
            id: new_id(),
            severity: key.condition.severity(),
            summary: summary.clone(),
            run_id: observation.run_id.clone(),
            job_id: observation.job_id.clone(),
            first_seen: observation.at,
            last_seen: observation.at,
            occurrences: 1,
        };
        let firing = Alert {
            id: open.id.clone(),
            event: AlertEvent::Firing,
            condition: key.condition,
            severity: open.severity,
            tenant_id: key.tenant_id.clone(),
            device_id: key.device_id.clone(),
            plugin: key.plugin.clone(),
            run_id: open.run_id.clone(),
            job_id: open.job_id.clone(),
            summary,
            details,
            first_seen: open.first_seen,
            occurrences: 1,
            at: observation.at,
        };
        if !self.state.open_firing(key, &open, &firing).await? {
            // Another observer opened it between our `repeat` and `open`; it
            // sends the firing alert, we count the occurrence.
            self.state.repeat(key, observation.at).await?;
            return Ok(None);
        }
        Ok(Some(firing))
    }

    /// Events kept undelivered (a crash or a webhook down through every
    /// retry) whose hold has passed, at most `limit`: deliver them again
    /// to the webhooks they have not [`reached`](Self::reached), and mark
    /// each [`delivered`](Self::delivered).
    pub async fn undelivered(&self, limit: usize) -> Result<Vec<Undelivered>, AlertStateError> {
        self.state.undelivered(limit).await
    }

    /// Records that `webhooks` took `alert`'s event or refused it for good
    /// while another did not.
    pub async fn reached(&self, alert: &Alert, webhooks: &[String]) -> Result<(), AlertStateError> {
        self.state.reached(alert, webhooks).await
    }

    /// Marks `alert`'s event delivered to every webhook it was for.
    pub async fn delivered(&self, alert: &Alert) -> Result<(), AlertStateError> {
        self.state.delivered(alert).await
    }

    /// `key`'s condition does not hold: resolve if this call closes the key.
    async fn cleared(
        &self,
        key: &AlertKey,
        observation: &Observation,
    ) -> Result<Option<Alert>, AlertStateError> {
        // Nearly every passing job finds its key closed; reading first keeps
        // those jobs from writing. `close` is still the one that decides.
        if self.state.get(key).await?.is_none() {
            return Ok(None);
        }
        let resolved = |open: OpenAlert| {
            let (summary, details) = observation.describe_resolved(key.condition, &open);
            Alert {
                id: open.id,
                event: AlertEvent::Resolved,
                condition: key.condition,
                severity: open.severity,
                tenant_id: key.tenant_id.clone(),
                device_id: key.device_id.clone(),
                plugin: key.plugin.clone(),
                run_id: observation.run_id.clone(),
                job_id: observation.job_id.clone(),
                summary,
                details,
                first_seen: open.first_seen,
                occurrences: open.occurrences,
                at: observation.at,
            }
        };
        self.state.close_resolved(key, &resolved).await
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use async_trait::async_trait;
    use chrono::{DateTime, TimeZone, Utc};

    use super::*;
    use crate::alerts::model::{CheckResult, CriticalFinding, JobEnd, RemediationResult, Severity};
    use crate::alerts::state::MemoryAlertState;

    fn at(minute: u32) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2025, 3, 1, 8, minute, 0).unwrap()
    }

    fn checked(minute: u32, critical: &[&str]) -> Observation {
        let mut obs = Observation::new(
            "acme",
            "pc-1",
            "patching",
            format!("run-{minute}"),
            format!("job-{minute}"),
            at(minute),
        );
        obs.check = CheckResult::Completed {
            critical_findings: critical
                .iter()
                .map(|id| CriticalFinding {
                    id: (*id).into(),
                    summary: format!("{id} is bad"),
                })
                .collect(),
        };
        obs
    }

    fn alerter() -> Alerter {
        Alerter::new(Arc::new(MemoryAlertState::new()))
    }

    #[tokio::test]
    async fn fires_once_counts_repeats_and_resolves_once() {
        let alerter = alerter();
        let fired = alerter.observe(&checked(0, &["cve-1"])).await;
        assert_eq!(fired.len(), 1);
        assert_eq!(fired[0].event, AlertEvent::Firing);
        assert_eq!(fired[0].occurrences, 1);
        assert_eq!(fired[0].first_seen, at(0));

        for minute in 1..=3 {
            assert!(
                alerter
                    .observe(&checked(minute, &["cve-1", "cve-2"]))
                    .await
                    .is_empty()
            );
        }

        let resolved = alerter.observe(&checked(4, &[])).await;
        assert_eq!(resolved.len(), 1);
        let resolved = &resolved[0];
        assert_eq!(resolved.event, AlertEvent::Resolved);
        assert_eq!(resolved.id, fired[0].id);
        assert_eq!(resolved.occurrences, 4);
        assert_eq!(resolved.first_seen, at(0));
        assert_eq!(resolved.at, at(4));
        assert_eq!(resolved.run_id, "run-4");
        assert_eq!(resolved.severity, Severity::Critical);
        assert_eq!(resolved.details["resolution"], "check-passed");
        assert_eq!(resolved.details["firing_run_id"], "run-0");
        assert_eq!(resolved.details["last_seen"], "2025-03-01T08:03:00.000Z");

        assert!(alerter.observe(&checked(5, &[])).await.is_empty());
        let again = alerter.observe(&checked(6, &["cve-1"])).await;
        assert_eq!(again.len(), 1);
        assert_ne!(again[0].id, fired[0].id, "a new incident gets a new id");
    }

    /// A memory state that counts its reads.
    #[derive(Default)]
    struct CountingState {
        inner: MemoryAlertState,
        gets: std::sync::atomic::AtomicUsize,
        batch_reads: std::sync::atomic::AtomicUsize,
    }

    #[async_trait]
    impl AlertState for CountingState {
        async fn get(&self, key: &AlertKey) -> Result<Option<OpenAlert>, AlertStateError> {
            self.gets.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            self.inner.get(key).await
        }
        async fn open_among(
            &self,
            keys: &[AlertKey],
        ) -> Result<std::collections::HashSet<AlertKey>, AlertStateError> {
            self.batch_reads
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            let mut open = std::collections::HashSet::new();
            for k in keys {
                if self.inner.get(k).await?.is_some() {
                    open.insert(k.clone());
                }
            }
            Ok(open)
        }
        async fn open(&self, key: &AlertKey, alert: &OpenAlert) -> Result<bool, AlertStateError> {
            self.inner.open(key, alert).await
        }
        async fn repeat(
            &self,
            key: &AlertKey,
            at: DateTime<Utc>,
        ) -> Result<Option<OpenAlert>, AlertStateError> {
            self.inner.repeat(key, at).await
        }
        async fn close(&self, key: &AlertKey) -> Result<Option<OpenAlert>, AlertStateError> {
            self.inner.close(key).await
        }
    }

    #[tokio::test]
    async fn a_batch_reads_the_state_once_for_passing_jobs_and_keeps_order() {
        let state = Arc::new(CountingState::default());
        let alerter = Alerter::new(state.clone());
        // 50 passing jobs on 50 devices: one read, no per-key reads.
        let passing: Vec<Observation> = (0..50)
            .map(|i| {
                let mut o = checked(0, &[]);
                o.device_id = format!("pc-{i}");
                o
            })
            .collect();
        let refs: Vec<&Observation> = passing.iter().collect();
        let out = alerter.observe_batch(&refs).await;
        assert!(
            out.iter()
                .all(|(alerts, complete)| alerts.is_empty() && *complete)
        );
        assert_eq!(
            state.batch_reads.load(std::sync::atomic::Ordering::Relaxed),
            1
        );
        assert_eq!(state.gets.load(std::sync::atomic::Ordering::Relaxed), 0);
        // In one batch, a failure then a pass of the same key fires and
        // then resolves, as one by one would.
        let (fail, pass) = (checked(1, &["cve-1"]), checked(2, &[]));
        let out = alerter.observe_batch(&[&fail, &pass]).await;
        assert_eq!(out[0].0.len(), 1, "{out:?}");
        assert_eq!(out[0].0[0].event, AlertEvent::Firing);
        assert_eq!(out[1].0.len(), 1, "{out:?}");
        assert_eq!(out[1].0[0].event, AlertEvent::Resolved);
        // An alert opened before the batch is resolved by a pass in it.
        alerter.observe(&checked(3, &["cve-9"])).await;
        let out = alerter.observe_batch(&[&checked(4, &[])]).await;
        assert_eq!(out[0].0.len(), 1, "{out:?}");
        assert_eq!(out[0].0[0].event, AlertEvent::Resolved);
    }

    #[tokio::test]
    async fn a_job_that_did_not_check_leaves_findings_alerts_open() {
        let alerter = alerter();
        assert_eq!(alerter.observe(&checked(0, &["cve-1"])).await.len(), 1);
        let mut timed_out = Observation::new("acme", "pc-1", "patching", "r", "j", at(1));
        timed_out.job = JobEnd::TimedOut {
            limit: Duration::from_secs(300),
        };
        let alerts = alerter.observe(&timed_out).await;
        assert_eq!(alerts.len(), 1);
        assert_eq!(alerts[0].condition, Condition::JobTimedOut);
        assert_eq!(alerts[0].severity, Severity::Warning);
        assert_eq!(alerts[0].details["limit_ms"], 300_000);
        assert_eq!(
            alerts[0].summary,
            "patching job on device pc-1 timed out after 300s"
        );

        // Ended in time but ran no check: the timeout resolves, the
        // findings alert stays open.
        let quiet = Observation::new("acme", "pc-1", "patching", "r", "j", at(2));
        let alerts = alerter.observe(&quiet).await;
        assert_eq!(alerts.len(), 1);
        assert_eq!(alerts[0].condition, Condition::JobTimedOut);
        assert_eq!(alerts[0].event, AlertEvent::Resolved);
        assert_eq!(alerts[0].details["resolution"], "completed-in-time");
        assert!(alerter.observe(&checked(3, &["cve-1"])).await.is_empty());
    }

    #[tokio::test]
    async fn conditions_of_one_job_alert_independently() {
        let alerter = alerter();
        let mut obs = checked(0, &["cve-1"]);
        obs.remediation = RemediationResult::Failed {
            error: "apt-get failed: dpkg lock held\nsecond line".into(),
        };
        let alerts = alerter.observe(&obs).await;
        let conditions: Vec<_> = alerts.iter().map(|a| a.condition).collect();
        assert_eq!(
            conditions,
            [Condition::CriticalFindings, Condition::RemediationFailed]
        );
        assert_eq!(
            alerts[1].summary,
            "patching remediation failed on device pc-1: apt-get failed: dpkg lock held"
        );

        let mut fixed = checked(1, &[]);
        fixed.remediation = RemediationResult::Succeeded;
        let alerts = alerter.observe(&fixed).await;
        assert_eq!(alerts.len(), 2);
        assert!(alerts.iter().all(|a| a.event == AlertEvent::Resolved));
        assert_eq!(alerts[1].details["resolution"], "remediation-succeeded");
    }

    #[tokio::test]
    async fn keys_are_per_device_and_plugin() {
        let alerter = alerter();
        assert_eq!(alerter.observe(&checked(0, &["x"])).await.len(), 1);
        let mut other_device = checked(1, &["x"]);
        other_device.device_id = "pc-2".into();
        assert_eq!(alerter.observe(&other_device).await.len(), 1);
        let mut other_plugin = checked(2, &["x"]);
        other_plugin.plugin = "antivirus".into();
        assert_eq!(alerter.observe(&other_plugin).await.len(), 1);
    }

    /// A state whose writes for one condition always fail.
    struct Broken {
        inner: MemoryAlertState,
        condition: Condition,
    }

    impl Broken {
        fn check(&self, key: &AlertKey) -> Result<(), AlertStateError> {
            if key.condition == self.condition {
                Err(AlertStateError::Backend("database is locked".into()))
            } else {
                Ok(())
            }
        }
    }

    #[async_trait]
    impl AlertState for Broken {
        async fn get(&self, key: &AlertKey) -> Result<Option<OpenAlert>, AlertStateError> {
            self.check(key)?;
            self.inner.get(key).await
        }
        async fn open(&self, key: &AlertKey, alert: &OpenAlert) -> Result<bool, AlertStateError> {
            self.check(key)?;
            self.inner.open(key, alert).await
        }
        async fn repeat(
            &self,
            key: &AlertKey,
            at: DateTime<Utc>,
        ) -> Result<Option<OpenAlert>, AlertStateError> {
            self.check(key)?;
            self.inner.repeat(key, at).await
        }
        async fn close(&self, key: &AlertKey) -> Result<Option<OpenAlert>, AlertStateError> {
            self.check(key)?;
            self.inner.close(key).await
        }
    }

    #[tokio::test]
    async fn a_state_error_skips_only_its_condition() {
        let alerter = Alerter::new(Arc::new(Broken {
            inner: MemoryAlertState::new(),
            condition: Condition::CriticalFindings,
        }));
        let mut obs = checked(0, &["cve-1"]);
        obs.job = JobEnd::TimedOut {
            limit: Duration::from_millis(1500),
        };
        let alerts = alerter.observe(&obs).await;
        assert_eq!(alerts.len(), 1);
        assert_eq!(alerts[0].condition, Condition::JobTimedOut);
    }
}
