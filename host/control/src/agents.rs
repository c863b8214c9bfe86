//! The agents connected to this server process, and the provider calls
//! travelling to them.
//!
//! The API's connection handler registers each authenticated agent here
//! ([`AgentHub::connect`]) and feeds it the agent's replies; the executor
//! reaches a device's providers through [`AgentHub::link`], a link that
//! finds the device's connection at each call. A call to a device whose
//! agent is not connected, whose connection drops mid-call, or that does
//! not answer in time is `unavailable`: the job is a transient failure and
//! retries when the agent is back, and the mutation journal keeps a call
//! the endpoint applied from being applied again.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use serde_json::Value;
use steward_runtime::bindings::types::HostError;
use steward_runtime::device::remote::{AgentLink, ProviderCall, ServerMessage};
use steward_store::{DeviceId, Store, Timestamp};
use tokio::sync::{mpsc, oneshot, watch};

/// How long a provider call waits for the agent's answer. The run's own
/// wall-clock limit usually ends it sooner.
pub const CALL_TIMEOUT: Duration = Duration::from_secs(600);

/// One live connection to an agent.
pub struct Connection {
    serial: u64,
    outgoing: mpsc::Sender<ServerMessage>,
    pending: Mutex<HashMap<u64, oneshot::Sender<Result<Value, HostError>>>>,
    next_id: AtomicU64,
    closed: watch::Sender<Option<String>>,
    /// Set when the connection ended: no call waits on it any more.
    ended: std::sync::atomic::AtomicBool,
}

impl Connection {
    /// Hands the agent's answer to call `id` to its caller. An answer to a
    /// call nobody waits for (unknown, or already timed out) is dropped.
    pub fn resolve(&self, id: u64, result: Result<Value, HostError>) -> bool {
        let waiter = self
            .pending
            .lock()
            .expect("pending lock poisoned")
            .remove(&id);
        match waiter {
            Some(tx) => tx.send(result).is_ok(),
            None => false,
        }
    }

    /// Resolves when the server closes this connection (revocation, a
    /// newer connection of the same agent), with the reason.
    pub async fn closed(&self) -> String {
        let mut rx = self.closed.subscribe();
        loop {
            if let Some(reason) = rx.borrow().clone() {
                return reason;
            }
            if rx.changed().await.is_err() {
                return "the server is stopping".into();
            }
        }
    }

    async fn call(&self, call: ProviderCall) -> Result<Value, HostError> {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let (tx, rx) = oneshot::channel();
        self.pending
            .lock()
            .expect("pending lock poisoned")
            .insert(id, tx);
        let gone = || HostError::Unavailable("the device's agent disconnected".into());
        // Checked after registering the call: either the end is seen here,
        // or the end's clearing of `pending` wakes this call.
        if self.ended.load(Ordering::SeqCst) {
            self.pending
                .lock()
                .expect("pending lock poisoned")
                .remove(&id);
            return Err(gone());
        }
        if self
            .outgoing
            .send(ServerMessage::Call { id, call })
            .await
            .is_err()
        {
            self.pending
                .lock()
                .expect("pending lock poisoned")
                .remove(&id);
            return Err(gone());
        }
        match tokio::time::timeout(CALL_TIMEOUT, rx).await {
            Ok(Ok(result)) => result,
            Ok(Err(_)) => Err(gone()),
            Err(_) => {
                self.pending
                    .lock()
                    .expect("pending lock poisoned")
                    .remove(&id);
                Err(HostError::Unavailable(format!(
                    "the device's agent did not answer within {} s",
                    CALL_TIMEOUT.as_secs()
                )))
            }
        }
    }
}

/// How often the heartbeats received are written to the store (one
/// transaction for all of them) and revocations through other processes
/// are looked for.
pub const HEARTBEAT_FLUSH: Duration = Duration::from_secs(5);

/// The agents connected to this process, by device id.
#[derive(Default)]
pub struct AgentHub {
    connections: Mutex<HashMap<String, Arc<Connection>>>,
    serials: AtomicU64,
    /// Devices whose agents sent a heartbeat since the last flush.
    seen: Mutex<HashSet<String>>,
}

impl AgentHub {
    /// An empty hub.
    pub fn new() -> Arc<Self> {
        Arc::new(Self::default())
    }

    /// Registers `device`'s authenticated connection, whose outgoing frames
    /// go to `outgoing`. A previous connection of the same device is closed
    /// (an agent has one connection).
    pub fn connect(&self, device: &str, outgoing: mpsc::Sender<ServerMessage>) -> Arc<Connection> {
        let connection = Arc::new(Connection {
            serial: self.serials.fetch_add(1, Ordering::Relaxed),
            outgoing,
            pending: Mutex::default(),
            next_id: AtomicU64::new(1),
            closed: watch::channel(None).0,
            ended: std::sync::atomic::AtomicBool::new(false),
        });
        let old = self
            .connections
            .lock()
            .expect("hub lock poisoned")
            .insert(device.to_owned(), connection.clone());
        if let Some(old) = old {
            old.closed
                .send_replace(Some("a newer connection of this agent replaced it".into()));
        }
        connection
    }

    /// Forgets `connection` of `device` (it ended): the calls waiting for
    /// its answers fail at once as `unavailable` (the agent is gone; its
    /// jobs retry when it is back), instead of waiting out
    /// [`CALL_TIMEOUT`]. Returns whether it was still the device's current
    /// one.
    pub fn disconnect(&self, device: &str, connection: &Connection) -> bool {
        // Dropping the senders wakes every waiting call with "disconnected".
        connection.ended.store(true, Ordering::SeqCst);
        connection
            .pending
            .lock()
            .expect("pending lock poisoned")
            .clear();
        let mut connections = self.connections.lock().expect("hub lock poisoned");
        match connections.get(device) {
            Some(c) if c.serial == connection.serial => {
                connections.remove(device);
                true
            }
            _ => false,
        }
    }

    /// Closes `device`'s connection, if this process holds one, telling the
    /// agent `reason`.
    pub fn close(&self, device: &str, reason: &str) -> bool {
        let removed = self
            .connections
            .lock()
            .expect("hub lock poisoned")
            .remove(device);
        match removed {
            Some(c) => {
                c.closed.send_replace(Some(reason.to_owned()));
                true
            }
            None => false,
        }
    }

    /// Whether `device`'s agent is connected to this process.
    pub fn is_connected(&self, device: &str) -> bool {
        self.connections
            .lock()
            .expect("hub lock poisoned")
            .contains_key(device)
    }

    /// Notes a heartbeat of `device`'s agent, for the next
    /// [`flush_heartbeats`](Self::flush_heartbeats).
    pub fn heartbeat(&self, device: &str) {
        self.seen
            .lock()
            .expect("seen lock poisoned")
            .insert(device.to_owned());
    }

    /// Writes the heartbeats noted since the last flush in one store
    /// transaction, and closes the connections of agents revoked meanwhile
    /// (through any process). Returns how many were written. On a store
    /// failure they are kept for the next flush.
    pub async fn flush_heartbeats(&self, store: &Store) -> usize {
        let devices: Vec<DeviceId> =
            std::mem::take(&mut *self.seen.lock().expect("seen lock poisoned"))
                .into_iter()
                .map(DeviceId::from)
                .collect();
        if devices.is_empty() {
            return 0;
        }
        match store.agents_seen(&devices, Timestamp::now()).await {
            Ok(gone) => {
                for device in gone {
                    self.close(device.as_str(), "this agent was revoked");
                }
                devices.len()
            }
            Err(e) => {
                tracing::warn!(error = %e, "recording heartbeats failed; retrying at the next flush");
                self.seen
                    .lock()
                    .expect("seen lock poisoned")
                    .extend(devices.into_iter().map(|d| d.as_str().to_owned()));
                0
            }
        }
    }

    /// Flushes heartbeats every [`HEARTBEAT_FLUSH`] until `stop` turns
    /// true.
    pub async fn record_heartbeats(self: Arc<Self>, store: Store, mut stop: watch::Receiver<bool>) {
        loop {
            tokio::select! {
                _ = tokio::time::sleep(HEARTBEAT_FLUSH) => {}
                changed = stop.changed() => if changed.is_err() { return },
            }
            if *stop.borrow() {
                return;
            }
            self.flush_heartbeats(&store).await;
        }
    }

    /// How many agents are connected to this process.
    pub fn len(&self) -> usize {
        self.connections.lock().expect("hub lock poisoned").len()
    }

    /// Whether no agent is connected.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The provider link of `device`: each call finds the device's current
    /// connection.
    pub fn link(self: &Arc<Self>, device: &str) -> Arc<dyn AgentLink> {
        Arc::new(HubLink {
            hub: self.clone(),
            device: device.to_owned(),
        })
    }
}

struct HubLink {
    hub: Arc<AgentHub>,
    device: String,
}

#[async_trait]
impl AgentLink for HubLink {
    async fn call(&self, call: ProviderCall) -> Result<Value, HostError> {
        let connection = self
            .hub
            .connections
            .lock()
            .expect("hub lock poisoned")
            .get(&self.device)
            .cloned();
        match connection {
            Some(c) => c.call(call).await,
            None => Err(HostError::Unavailable(
                "the device's agent is not connected to this server".into(),
            )),
        }
    }
}
