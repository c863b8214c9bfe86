//! The smallest useful plugin: one finding, no capability calls. Used by the
//! benchmark and as the "good plugin" that must still run after a hostile one.

use steward_sdk::{Descriptor, Finding, Plugin, PluginError, Remediation, Severity, export_plugin};

struct Trivial;

impl Plugin for Trivial {
    fn describe() -> Descriptor {
        Descriptor::new("trivial", "0.1.0", "Always finds one thing")
    }

    fn check() -> Result<Vec<Finding>, PluginError> {
        Ok(vec![Finding::new("ok", Severity::Info, "all good")])
    }

    fn remediate(_findings: Vec<Finding>) -> Result<Remediation, PluginError> {
        Ok(Remediation::new())
    }
}

export_plugin!(Trivial);
