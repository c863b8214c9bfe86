//! The control plane: schedules (when playbooks fire and when each device's
//! job may start), playbooks, the executor that runs jobs from the store's
//! queue through the plugin runtime, alerts (webhooks told when checks
//! fail, remediations fail or jobs time out, and when they recover), the
//! plugin library and installs from a registry. `steward serve`, which
//! runs them all in one process beside the API, is the binary's
//! (`steward_host::serve`).

pub mod agents;
pub mod alerts;
pub mod executor;
pub mod plane;
pub mod playbook;
pub mod plugins;
pub mod providers;
pub mod registry;
pub mod report;
pub mod schedule;
