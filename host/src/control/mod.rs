//! The control plane: schedules (when playbooks fire and when each device's
//! job may start). The store, job queue, executor, approvals and alerts join
//! it as they are built.

pub mod schedule;
