//! Store-backed pieces a job runs with: the mutation journal, tickets,
//! a snapshot of plugin state, audit collection, alert state, and how a
//! stored device becomes a device with providers.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use sha2::{Digest as _, Sha256};

use crate::alerts::{Alert, AlertKey, AlertState, AlertStateError, OpenAlert, Undelivered};
use steward_runtime::audit::{AuditEvent, AuditSink};
use steward_runtime::bindings::tickets::{Filed, Ticket};
use steward_runtime::bindings::types::{HostError, Outcome, RunMode};
use steward_runtime::capability::state::{StateStore, check_quota};
use steward_runtime::capability::tickets::{TicketOrigin, TicketsProvider};
use steward_runtime::device::Device;
use steward_runtime::device::local::{self, LocalConfig};
use steward_runtime::device::remote::remote_device;

use crate::agents::AgentHub;
use steward_runtime::device::simulated::{Fixture, Simulated};
use steward_runtime::{Journal, JournalKey, Prior};
use steward_store::{self as store, JobId, NewTicket, OutboxEvent, Store, TenantId, Timestamp};

/// The mutation journal in the store, keyed by job id (the run id the
/// executor gives the runtime), so it survives the worker.
pub struct StoreJournal(pub Store);

#[async_trait]
impl Journal for StoreJournal {
    async fn replay(&self, key: &JournalKey) -> anyhow::Result<Prior> {
        Ok(
            match self
                .0
                .journal_prior(&key.run_id, &key.call, key.occurrence)
                .await?
            {
                None => Prior::None,
                Some(None) => Prior::InDoubt,
                Some(Some(result)) => Prior::Done(result),
            },
        )
    }

    async fn intend(&self, key: &JournalKey) -> anyhow::Result<()> {
        self.0
            .journal_intend(&key.run_id, &key.call, key.occurrence, Timestamp::now())
            .await?;
        Ok(())
    }

    async fn record(&self, key: &JournalKey, result: String) -> anyhow::Result<()> {
        self.0
            .journal_put(
                &key.run_id,
                &key.call,
                key.occurrence,
                &result,
                Timestamp::now(),
            )
            .await?;
        Ok(())
    }
}

/// Tickets filed into the store for one job. A ticket's dedupe key is the
/// job plus a hash of what is filed, so a later attempt of the job that
/// files the same ticket finds the first one instead of filing another.
pub struct StoreTickets {
    /// The store.
    pub store: Store,
    /// The job filing.
    pub job_id: JobId,
    /// Its tenant.
    pub tenant_id: TenantId,
}

#[async_trait]
impl TicketsProvider for StoreTickets {
    async fn file(
        &self,
        ticket: Ticket,
        origin: TicketOrigin,
        mode: RunMode,
    ) -> Result<Filed, HostError> {
        if mode == RunMode::Plan {
            return Ok(Filed {
                id: "planned".into(),
                outcome: Outcome::Planned,
            });
        }
        let kind = format!("{:?}", ticket.kind).to_lowercase();
        let mut hash = Sha256::new();
        for part in [
            kind.as_str(),
            &ticket.queue,
            &ticket.title,
            &ticket.body,
            &origin.device_id,
        ] {
            hash.update(part.as_bytes());
            hash.update([0]);
        }
        let dedupe_key = format!(
            "job:{}:{}",
            self.job_id,
            &hex::encode(hash.finalize())[..16]
        );
        let new = NewTicket {
            tenant_id: self.tenant_id.clone(),
            device_id: Some(origin.device_id),
            job_id: self.job_id.clone(),
            queue: format!("{kind}:{}", ticket.queue),
            title: ticket.title,
            body: ticket.body,
            dedupe_key,
        };
        let (id, _) = self
            .store
            .file_ticket(&new, Timestamp::now())
            .await
            .map_err(|e| match e {
                store::StoreError::Invalid {
                    field: "device-id",
                    message,
                } => HostError::Denied(message),
                store::StoreError::Invalid {
                    field: "tickets",
                    message,
                } => HostError::LimitExceeded(message),
                e => HostError::Unavailable(format!("the ticket store failed: {e}")),
            })?;
        Ok(Filed {
            id,
            outcome: Outcome::Applied,
        })
    }
}

/// One job's view of its plugin state: read from the store before the run,
/// written back with the job's completion (so a lost attempt's writes are
/// lost with it).
#[derive(Debug, Default)]
pub struct SnapshotState {
    values: Mutex<BTreeMap<String, String>>,
    /// The last write per key (`None`: deleted).
    writes: Mutex<BTreeMap<String, Option<String>>>,
}

impl SnapshotState {
    /// State starting from `values`.
    pub fn new(values: BTreeMap<String, String>) -> Self {
        Self {
            values: Mutex::new(values),
            writes: Mutex::default(),
        }
    }

    /// The writes made, the last one per key, in key order.
    pub fn writes(&self) -> Vec<(String, Option<String>)> {
        let writes = self.writes.lock().expect("state lock poisoned");
        writes.iter().map(|(k, v)| (k.clone(), v.clone())).collect()
    }
}

impl StateStore for SnapshotState {
    fn get(&self, _plugin: &str, _device: &str, key: &str) -> Option<String> {
        self.values
            .lock()
            .expect("state lock poisoned")
            .get(key)
            .cloned()
    }

    fn set(&self, _plugin: &str, _device: &str, key: &str, value: &str) -> Result<(), HostError> {
        let mut values = self.values.lock().expect("state lock poisoned");
        check_quota(&values, key, value)?;
        values.insert(key.into(), value.into());
        self.writes
            .lock()
            .expect("state lock poisoned")
            .insert(key.into(), Some(value.into()));
        Ok(())
    }

    fn delete(&self, _plugin: &str, _device: &str, key: &str) {
        self.values.lock().expect("state lock poisoned").remove(key);
        self.writes
            .lock()
            .expect("state lock poisoned")
            .insert(key.into(), None);
    }

    fn keys(&self, _plugin: &str, _device: &str, prefix: &str) -> Vec<String> {
        self.values
            .lock()
            .expect("state lock poisoned")
            .keys()
            .filter(|k| k.starts_with(prefix))
            .cloned()
            .collect()
    }
}

/// Collects one job's audit events, stored after the job.
#[derive(Debug, Default)]
pub struct CollectAudit(Mutex<Vec<AuditEvent>>);

impl CollectAudit {
    /// The events recorded, oldest first.
    pub fn take(&self) -> Vec<AuditEvent> {
        std::mem::take(&mut *self.0.lock().expect("audit lock poisoned"))
    }
}

impl AuditSink for CollectAudit {
    fn record(&self, event: AuditEvent) {
        self.0.lock().expect("audit lock poisoned").push(event);
    }
}

/// Open alerts in the store, shared by every `steward` process on it, and
/// the outbox of their events: a firing or resolved event is written in
/// the transaction that opens or closes its alert and deleted once
/// delivered, so a crash between the two does not lose it.
pub struct StoreAlertState {
    store: Store,
    hold: Duration,
    redeliveries: u32,
}

/// How long the process that records an alert event has to deliver it
/// before another delivery may start: every attempt and wait of
/// [`DeliveryPolicy::default`](super::alerts::DeliveryPolicy) (65 s at
/// worst), and a margin. An event whose process crashed goes out again
/// after this; each further redelivery holds it twice as long, at most
/// [`store::MAX_OUTBOX_HOLD`] (an hour).
pub const REDELIVER_AFTER: Duration = Duration::from_secs(75);

/// Redeliveries of an event before it is dropped (and logged at `error`):
/// about a day of them, holding 75 s, 150 s, … up to an hour between.
pub const MAX_REDELIVERIES: u32 = 30;

impl StoreAlertState {
    /// Alert state and outbox in `store`, held [`REDELIVER_AFTER`].
    pub fn new(store: Store) -> Self {
        Self::holding(store, REDELIVER_AFTER)
    }

    /// Alert state and outbox in `store`; a delivery holds an event for
    /// `hold` before another may start.
    pub fn holding(store: Store, hold: Duration) -> Self {
        Self {
            store,
            hold,
            redeliveries: MAX_REDELIVERIES,
        }
    }

    /// Drops an event once it has been redelivered `n` times
    /// ([`MAX_REDELIVERIES`] by default).
    pub fn redelivering(mut self, n: u32) -> Self {
        self.redeliveries = n;
        self
    }

    fn outbox(&self, alert: &Alert) -> Result<OutboxEvent, AlertStateError> {
        Ok(OutboxEvent {
            alert_id: alert.id.clone(),
            event: alert.event.as_str().to_owned(),
            body: serde_json::to_string(alert).map_err(backend)?,
            retry_at: Timestamp::now() + self.hold,
            attempts: 0,
            reached: Vec::new(),
        })
    }
}

fn backend(e: impl std::error::Error + Send + Sync + 'static) -> AlertStateError {
    AlertStateError::Backend(Box::new(e))
}

fn decode(text: &str) -> Result<OpenAlert, AlertStateError> {
    serde_json::from_str(text).map_err(backend)
}

fn encode(alert: &OpenAlert) -> Result<String, AlertStateError> {
    serde_json::to_string(alert).map_err(backend)
}

#[async_trait]
impl AlertState for StoreAlertState {
    async fn get(&self, key: &AlertKey) -> Result<Option<OpenAlert>, AlertStateError> {
        let text = self
            .store
            .alert_get(&key.to_string())
            .await
            .map_err(backend)?;
        text.as_deref().map(decode).transpose()
    }

    async fn open_among(
        &self,
        keys: &[AlertKey],
    ) -> Result<std::collections::HashSet<AlertKey>, AlertStateError> {
        let names: Vec<String> = keys.iter().map(AlertKey::to_string).collect();
        let present = self
            .store
            .alert_keys_present(&names)
            .await
            .map_err(backend)?;
        Ok(keys
            .iter()
            .zip(&names)
            .filter(|(_, name)| present.contains(*name))
            .map(|(key, _)| key.clone())
            .collect())
    }

    async fn open(&self, key: &AlertKey, alert: &OpenAlert) -> Result<bool, AlertStateError> {
        self.store
            .alert_open(&key.to_string(), &encode(alert)?, None, Timestamp::now())
            .await
            .map_err(backend)
    }

    async fn repeat(
        &self,
        key: &AlertKey,
        at: DateTime<Utc>,
    ) -> Result<Option<OpenAlert>, AlertStateError> {
        let key = key.to_string();
        loop {
            let Some(old) = self.store.alert_get(&key).await.map_err(backend)? else {
                return Ok(None);
            };
            let mut alert = decode(&old)?;
            alert.occurrences += 1;
            alert.last_seen = alert.last_seen.max(at);
            if self
                .store
                .alert_replace(&key, &old, &encode(&alert)?, Timestamp::now())
                .await
                .map_err(backend)?
            {
                return Ok(Some(alert));
            }
        }
    }

    async fn close(&self, key: &AlertKey) -> Result<Option<OpenAlert>, AlertStateError> {
        let text = self
            .store
            .alert_close(&key.to_string(), |_| Ok(None), Timestamp::now())
            .await
            .map_err(backend)?;
        text.as_deref().map(decode).transpose()
    }

    async fn open_firing(
        &self,
        key: &AlertKey,
        alert: &OpenAlert,
        firing: &Alert,
    ) -> Result<bool, AlertStateError> {
        let event = self.outbox(firing)?;
        self.store
            .alert_open(
                &key.to_string(),
                &encode(alert)?,
                Some(&event),
                Timestamp::now(),
            )
            .await
            .map_err(backend)
    }

    async fn close_resolved(
        &self,
        key: &AlertKey,
        resolved: &(dyn Fn(OpenAlert) -> Alert + Send + Sync),
    ) -> Result<Option<Alert>, AlertStateError> {
        let mut made = None;
        self.store
            .alert_close(
                &key.to_string(),
                |text| {
                    let open =
                        serde_json::from_str(text).map_err(|e| store::StoreError::Corrupt {
                            column: "alert_state.alert",
                            message: format!("the open alert of `{key}`: {e}"),
                        })?;
                    let alert = resolved(open);
                    let event = self
                        .outbox(&alert)
                        .map_err(|e| store::StoreError::Corrupt {
                            column: "alert_outbox.body",
                            message: format!("the resolved alert of `{key}`: {e}"),
                        })?;
                    made = Some(alert);
                    Ok(Some(event))
                },
                Timestamp::now(),
            )
            .await
            .map_err(backend)?;
        Ok(made)
    }

    async fn undelivered(&self, limit: usize) -> Result<Vec<Undelivered>, AlertStateError> {
        let due = self
            .store
            .alert_outbox_due(Timestamp::now(), self.hold, limit)
            .await
            .map_err(backend)?;
        let mut alerts = Vec::with_capacity(due.len());
        for event in due {
            if event.attempts >= self.redeliveries {
                tracing::error!(alert = %event.alert_id, event = %event.event,
                    attempts = event.attempts,
                    "an alert event was redelivered too often without reaching every webhook; \
                     it is dropped");
                self.store
                    .alert_outbox_done(&event.alert_id, &event.event)
                    .await
                    .map_err(backend)?;
                continue;
            }
            match serde_json::from_str::<Alert>(&event.body) {
                Ok(alert) => alerts.push(Undelivered {
                    alert,
                    reached: event.reached,
                }),
                Err(e) => {
                    // Not deliverable as it is; dropping it beats resending
                    // a broken body forever.
                    tracing::error!(alert = %event.alert_id, event = %event.event, error = %e,
                        "an undeliverable alert event was dropped from the outbox");
                    self.store
                        .alert_outbox_done(&event.alert_id, &event.event)
                        .await
                        .map_err(backend)?;
                }
            }
        }
        Ok(alerts)
    }

    async fn reached(&self, alert: &Alert, webhooks: &[String]) -> Result<(), AlertStateError> {
        self.store
            .alert_outbox_reached(&alert.id, alert.event.as_str(), webhooks)
            .await
            .map_err(backend)
    }

    async fn delivered(&self, alert: &Alert) -> Result<(), AlertStateError> {
        self.store
            .alert_outbox_done(&alert.id, alert.event.as_str())
            .await
            .map_err(backend)
    }
}

/// Turns a stored device into a device with providers.
pub trait DeviceProviders: Send + Sync {
    /// The providers for `device`. The executor replaces tickets and state
    /// with store-backed ones.
    fn device(&self, device: &store::Device) -> anyhow::Result<Device>;
}

/// The standard choice, by the device's `facts.provider`: `local` is this
/// machine with its real providers; `agent` is an enrolled endpoint whose
/// providers its agent serves over its connection; `simulated` serves
/// `facts.fixture` from memory (kept for the life of the process, for
/// demos and load tests).
pub struct StandardProviders {
    local: LocalConfig,
    agents: Option<Arc<AgentHub>>,
    simulated: Mutex<HashMap<String, Arc<Simulated>>>,
    simulated_state: Option<std::path::PathBuf>,
}

impl StandardProviders {
    /// Providers with this machine set up by `local`.
    pub fn new(local: LocalConfig) -> Self {
        Self {
            local,
            agents: None,
            simulated: Mutex::default(),
            simulated_state: None,
        }
    }

    /// Keeps simulated devices' state in `dir`, one file per device (see
    /// [`Simulated::persistent`]), so it outlives the process.
    pub fn with_simulated_state(mut self, dir: std::path::PathBuf) -> Self {
        self.simulated_state = Some(dir);
        self
    }

    /// The state file of simulated device `id` under `dir`.
    pub fn simulated_state_file(dir: &std::path::Path, id: &str) -> std::path::PathBuf {
        let safe: String = id
            .chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                    c
                } else {
                    '_'
                }
            })
            .collect();
        dir.join(format!("{safe}.json"))
    }

    /// Serves `agent` devices through the agents connected to `hub`.
    pub fn with_agents(mut self, hub: Arc<AgentHub>) -> Self {
        self.agents = Some(hub);
        self
    }
}

impl DeviceProviders for StandardProviders {
    fn device(&self, stored: &store::Device) -> anyhow::Result<Device> {
        let provider = stored
            .facts
            .get("provider")
            .and_then(|p| p.as_str())
            .unwrap_or("");
        let mut device = match provider {
            "local" => local::device(&self.local),
            "agent" => {
                let hub = self.agents.as_ref().ok_or_else(|| {
                    anyhow::anyhow!(
                        "device `{}` is an agent's, and this server serves no agents",
                        stored.id
                    )
                })?;
                remote_device(
                    stored.id.as_str(),
                    &stored.name,
                    stored.tenant_id.as_str(),
                    hub.link(stored.id.as_str()),
                )
            }
            "simulated" => {
                let mut simulated = self.simulated.lock().expect("device map poisoned");
                let sim = match simulated.get(stored.id.as_str()) {
                    Some(sim) => sim.clone(),
                    None => {
                        let fixture = stored.facts.get("fixture").ok_or_else(|| {
                            anyhow::anyhow!(
                                "simulated device `{}` has no `facts.fixture`",
                                stored.id
                            )
                        })?;
                        let fixture = Fixture::from_value(fixture.clone()).map_err(|e| {
                            anyhow::anyhow!(
                                "device `{}`: `facts.fixture` is not a device fixture: {e}",
                                stored.id
                            )
                        })?;
                        let sim = match &self.simulated_state {
                            Some(dir) => Simulated::persistent(
                                fixture,
                                Self::simulated_state_file(dir, stored.id.as_str()),
                            )?,
                            None => Simulated::new(fixture),
                        };
                        simulated.insert(stored.id.as_str().to_owned(), sim.clone());
                        sim
                    }
                };
                sim.device()
            }
            other => anyhow::bail!(
                "device `{}` has no provider (`facts.provider` is `{other}`; expected `local`, `agent` or `simulated`)",
                stored.id
            ),
        };
        device.id = stored.id.as_str().to_owned();
        device.name = stored.name.clone();
        device.tenant_id = stored.tenant_id.as_str().to_owned();
        Ok(device)
    }
}
