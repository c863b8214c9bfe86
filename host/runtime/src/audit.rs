//! The audit log: one event per mutating or scoped capability call, whether
//! it was applied, planned, denied or failed.

use std::sync::Mutex;
use std::time::SystemTime;

use serde::Serialize;
use steward_contract::Digest;

use crate::capability::Capability;

/// What became of an audited call.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case", tag = "status", content = "reason")]
pub enum AuditOutcome {
    /// The change was made.
    Applied,
    /// Plan mode: the change was recorded, not made.
    Planned,
    /// Outside the grant's scope; the provider was never called.
    Denied(String),
    /// The provider tried and failed.
    Failed(String),
    /// An earlier attempt of the run applied this call; its journaled result
    /// was returned and nothing was applied again.
    Replayed,
    /// An earlier attempt recorded that it was about to make this call but
    /// not what came of it, and the call's effect was found in place on
    /// the device: it was not made again.
    Reconciled,
}

/// One audited capability call.
#[derive(Debug, Clone, Serialize)]
pub struct AuditEvent {
    /// The run the call belongs to.
    pub run_id: String,
    /// The plugin's name, from `describe` or the file name.
    pub plugin: String,
    /// The exact module bytes that made the call.
    pub digest: Digest,
    /// The device the call was made against.
    pub device_id: String,
    /// The capability interface, for example `packages`.
    pub capability: Capability,
    /// The function, as named in WIT, for example `install-updates`.
    pub function: &'static str,
    /// A short summary of the arguments.
    pub arguments: String,
    /// Applied, planned, denied or failed.
    pub outcome: AuditOutcome,
    /// When the call ended.
    #[serde(with = "unix_millis")]
    pub at: SystemTime,
}

/// Where audit events go. The control plane stores them; the local runner
/// prints them.
pub trait AuditSink: Send + Sync {
    /// Records one event. Must not block for long: it runs inside a plugin call.
    fn record(&self, event: AuditEvent);
}

/// Keeps events in memory, for the local runner and tests.
#[derive(Debug, Default)]
pub struct MemoryAudit {
    events: Mutex<Vec<AuditEvent>>,
}

impl MemoryAudit {
    /// A copy of every event recorded so far, oldest first.
    pub fn events(&self) -> Vec<AuditEvent> {
        self.events.lock().expect("audit lock poisoned").clone()
    }
}

impl AuditSink for MemoryAudit {
    fn record(&self, event: AuditEvent) {
        tracing::info!(
            target: "steward::audit",
            run_id = %event.run_id,
            plugin = %event.plugin,
            capability = %event.capability,
            function = event.function,
            arguments = %event.arguments,
            outcome = ?event.outcome,
            "capability call"
        );
        self.events.lock().expect("audit lock poisoned").push(event);
    }
}

mod unix_millis {
    use std::time::{SystemTime, UNIX_EPOCH};

    pub fn serialize<S: serde::Serializer>(t: &SystemTime, s: S) -> Result<S::Ok, S::Error> {
        let ms = t
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_millis())
            .unwrap_or(0);
        s.serialize_u128(ms)
    }
}
