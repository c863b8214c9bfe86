// The body of the `vendor-demo` test plugins: one module published by a
// "vendor" in three versions. Each crate sets `VERSION` and `FILES_TICKETS`
// and includes this file. With `FILES_TICKETS` the component imports the
// `tickets` capability (a new capability to approve on upgrade); without
// it the call is compiled out and the component imports none.

use steward_sdk::host::tickets;
use steward_sdk::{
    Change, Descriptor, Finding, Plugin, PluginError, Remediation, Severity, export_plugin,
};

struct Demo;

impl Plugin for Demo {
    fn describe() -> Descriptor {
        Descriptor::new("vendor-demo", VERSION, "A third-party plugin from a registry")
    }

    fn check() -> Result<Vec<Finding>, PluginError> {
        Ok(vec![Finding::new(
            "version",
            Severity::Info,
            format!("vendor-demo {VERSION} ran"),
        )])
    }

    fn remediate(_findings: Vec<Finding>) -> Result<Remediation, PluginError> {
        if !FILES_TICKETS {
            return Ok(Remediation::new());
        }
        let filed = tickets::file(&tickets::Ticket {
            kind: tickets::TicketKind::Incident,
            queue: "vendor".into(),
            title: "vendor-demo".into(),
            body: String::new(),
            due: None,
            device_id: None,
        })?;
        Ok(vec![Change::new("ticket", "vendor-demo", filed.outcome)].into())
    }
}

export_plugin!(Demo);
