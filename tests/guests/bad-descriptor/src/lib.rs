//! A plugin whose `describe` breaks every rule at once, chosen by nothing:
//! the host must refuse it at load (`plugin inspect`, install) before its
//! name or texts reach a store, a log or a terminal.

use steward_sdk::{
    Descriptor, Finding, ParamSpec, ParamType, ParamValue, Plugin, PluginError, PluginScope,
    Remediation, export_plugin,
};

struct BadDescriptor;

impl Plugin for BadDescriptor {
    fn describe() -> Descriptor {
        let param = |name: &str| ParamSpec {
            name: name.into(),
            type_: ParamType::Integer,
            description: "twice".into(),
            default: Some(ParamValue::Text("not a number".into())),
            required: false,
            required_to_remediate: false,
            // A pattern on an integer, and no regular expression at all.
            pattern: Some("([".into()),
        };
        Descriptor {
            name: "../../etc/\u{1b}[31mEVIL".into(),
            version: "not-a-version\n".into(),
            summary: "S".repeat(2 << 20),
            params: (0..5_000).map(|_| param("dup")).collect(),
            scope: PluginScope::Device,
        }
    }

    fn check() -> Result<Vec<Finding>, PluginError> {
        Ok(Vec::new())
    }

    fn remediate(_findings: Vec<Finding>) -> Result<Remediation, PluginError> {
        Ok(Remediation::new())
    }
}

export_plugin!(BadDescriptor);
