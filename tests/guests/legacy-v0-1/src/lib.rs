//! A plugin of `steward:plugin@0.1.0`, generated straight from the released
//! WIT folder (no SDK): it must keep running unchanged on hosts that also
//! run 0.2.0 plugins. It reports pending security updates, remembers when
//! it first saw each, and installs them.

wit_bindgen::generate!({
    path: "../../../wit/plugin@0.1.0",
    world: "plugin-component",
});

use exports::steward::plugin::plugin::Guest;
use steward::plugin::types::{
    Change, Descriptor, Finding, ParamSpec, ParamType, ParamValue, PluginError, PluginScope,
    Severity,
};
use steward::plugin::{config, log, packages, state};

struct Legacy;

impl Guest for Legacy {
    fn describe() -> Descriptor {
        Descriptor {
            name: "legacy-patching".into(),
            version: "0.1.0".into(),
            summary: "Security updates, as a 0.1.0 plugin sees them".into(),
            params: vec![ParamSpec {
                name: "note".into(),
                type_: ParamType::Text,
                description: "Logged at the start of each run".into(),
                default: Some(ParamValue::Text("legacy".into())),
                required: false,
            }],
            scope: PluginScope::Device,
        }
    }

    fn check() -> Result<Vec<Finding>, PluginError> {
        if let Some(ParamValue::Text(note)) = config::get("note") {
            log::emit(log::Level::Info, &note, &[]);
        }
        let updates = packages::updates().map_err(PluginError::Host)?;
        let mut findings = Vec::new();
        for u in updates.into_iter().filter(|u| u.security) {
            let key = format!("first-seen:{}", u.name);
            if state::get(&key).is_none() {
                state::set(&key, &u.candidate_version).map_err(PluginError::Host)?;
            }
            findings.push(Finding {
                id: format!("security-update:{}", u.name),
                severity: Severity::Warning,
                summary: format!("{} {} is pending", u.name, u.candidate_version),
                detail: String::new(),
                resource: u.name,
                fields: Vec::new(),
            });
        }
        Ok(findings)
    }

    fn remediate(findings: Vec<Finding>) -> Result<Vec<Change>, PluginError> {
        let names: Vec<String> = findings.into_iter().map(|f| f.resource).collect();
        if names.is_empty() {
            return Ok(Vec::new());
        }
        let changed = packages::install_updates(&names).map_err(PluginError::Host)?;
        Ok(changed
            .into_iter()
            .map(|c| Change {
                kind: "package-update".into(),
                target: c.name,
                description: "installed by the 0.1.0 plugin".into(),
                before: c.from_version,
                after: Some(c.to_version),
                outcome: c.outcome,
            })
            .collect())
    }
}

export!(Legacy);
