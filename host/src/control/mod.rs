//! The control plane: schedules (when playbooks fire and when each device's
//! job may start) and alerts (webhooks told when checks fail, remediations
//! fail or jobs time out, and when they recover). The store, job queue and
//! executor join them as they are built.

pub mod alerts;
pub mod schedule;
