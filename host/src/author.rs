//! `steward plugin new`, `build` and `test`: writing a plugin from nothing
//! to a tested component, in Rust or Python, anywhere on disk.
//!
//! `new` writes the plugin with what it needs beside it in `.steward/`: the
//! WIT package and the SDK of this build (Rust crate or Python package), so
//! a plugin outside this repository builds without the author editing a
//! path. `build` compiles the component for its language. `test` runs the
//! component against the fixture devices of its test cases (`tests/*.toml`)
//! and compares what it found and changed with what each case expects,
//! printing a diff and failing on any difference.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::{Context as _, bail};
use clap::{Args, ValueEnum};
use serde::Deserialize;
use steward_contract::capability::Capability;
use steward_runtime::audit::{AuditOutcome, MemoryAudit};
use steward_runtime::bindings::types::RunMode;
use steward_runtime::capability::{Grant, Grants};
use steward_runtime::device::simulated::{Fixture, Simulated};
use steward_runtime::{RunSpec, Runtime, resolve_json_params};

use crate::text::safe;

/// The WIT package of this build, written into every new plugin.
const WIT: &[(&str, &str)] = &[
    (
        "accounts.wit",
        include_str!("../../wit/plugin@0.2.0/accounts.wit"),
    ),
    (
        "antivirus.wit",
        include_str!("../../wit/plugin@0.2.0/antivirus.wit"),
    ),
    (
        "backups.wit",
        include_str!("../../wit/plugin@0.2.0/backups.wit"),
    ),
    (
        "clock.wit",
        include_str!("../../wit/plugin@0.2.0/clock.wit"),
    ),
    (
        "config.wit",
        include_str!("../../wit/plugin@0.2.0/config.wit"),
    ),
    (
        "inventory.wit",
        include_str!("../../wit/plugin@0.2.0/inventory.wit"),
    ),
    ("log.wit", include_str!("../../wit/plugin@0.2.0/log.wit")),
    (
        "packages.wit",
        include_str!("../../wit/plugin@0.2.0/packages.wit"),
    ),
    (
        "plugin.wit",
        include_str!("../../wit/plugin@0.2.0/plugin.wit"),
    ),
    (
        "state.wit",
        include_str!("../../wit/plugin@0.2.0/state.wit"),
    ),
    (
        "tickets.wit",
        include_str!("../../wit/plugin@0.2.0/tickets.wit"),
    ),
    (
        "types.wit",
        include_str!("../../wit/plugin@0.2.0/types.wit"),
    ),
    (
        "world.wit",
        include_str!("../../wit/plugin@0.2.0/world.wit"),
    ),
];

/// The Rust SDK's sources.
const RUST_SDK: &[(&str, &str)] = &[
    ("src/lib.rs", include_str!("../../sdk/src/lib.rs")),
    ("src/builders.rs", include_str!("../../sdk/src/builders.rs")),
    ("src/log.rs", include_str!("../../sdk/src/log.rs")),
    ("src/params.rs", include_str!("../../sdk/src/params.rs")),
    ("src/state.rs", include_str!("../../sdk/src/state.rs")),
    ("src/date.rs", include_str!("../../sdk/src/date.rs")),
    ("src/testing.rs", include_str!("../../sdk/src/testing.rs")),
];

/// The SDK's manifest beside a plugin (the workspace's, without
/// workspace inheritance): its dependency versions restate the
/// workspace's, so a bump of wit-bindgen or serde changes both.
const SDK_MANIFEST: &str = r#"[package]
name = "steward-sdk"
version = "0.2.0"
edition = "2024"
publish = false

[features]
testing = []

[dependencies]
wit-bindgen = { version = "0.63", default-features = false, features = ["macros", "realloc"] }
serde = { version = "1", features = ["derive"] }
serde_json = "1"
"#;

/// The Python SDK.
const PYTHON_SDK: &str = include_str!("../../sdk/python/steward_sdk/__init__.py");

/// The WIT version new plugins are written for.
const WIT_DIR: &str = "plugin@0.2.0";

/// The componentize-py release `plugin build` expects (what `.ci/setup`
/// installs).
pub const COMPONENTIZE_PY: &str = "componentize-py==0.25.1";

/// A plugin's language.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Lang {
    /// Rust with the steward-sdk crate.
    Rust,
    /// Python with componentize-py and the steward_sdk package.
    Python,
}

/// `steward plugin new`.
#[derive(Debug, Args)]
pub struct NewArgs {
    /// The plugin's name: 1 to 64 lowercase letters, digits and `-`.
    name: String,
    /// Its language.
    #[arg(long, value_enum, default_value = "rust")]
    lang: Lang,
    /// A capability it uses (repeatable): inventory, packages, antivirus,
    /// accounts, tickets, backups.
    #[arg(long = "capability", value_name = "CAPABILITY")]
    capabilities: Vec<String>,
    /// Where to write it (default: ./NAME).
    #[arg(long, value_name = "DIR")]
    dir: Option<PathBuf>,
}

/// `steward plugin build` and `test`: the plugin's directory.
#[derive(Debug, Args)]
pub struct DirArgs {
    /// The plugin's directory (default: the current one).
    #[arg(default_value = ".")]
    dir: PathBuf,
}

/// `steward plugin test`.
#[derive(Debug, Args)]
pub struct TestArgs {
    /// The plugin's directory (default: the current one).
    #[arg(default_value = ".")]
    dir: PathBuf,
    /// Test this component instead of building the directory's.
    #[arg(long, value_name = "FILE")]
    wasm: Option<PathBuf>,
}

fn check_name(name: &str) -> anyhow::Result<()> {
    steward_contract::manifest::check_name_part("plugin name", name)
        .map_err(|_| anyhow::anyhow!("`{}` is not a plugin name: use 1 to 64 lowercase letters, digits and `-`, starting with a letter", safe(name)))?;
    if !name.starts_with(|c: char| c.is_ascii_lowercase()) {
        bail!("`{name}` is not a plugin name: it must start with a lowercase letter");
    }
    Ok(())
}

fn write(path: &Path, text: &str) -> anyhow::Result<()> {
    // Unchanged files keep their times, so cargo rebuilds nothing.
    if std::fs::read_to_string(path).is_ok_and(|old| old == text) {
        return Ok(());
    }
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent)
            .with_context(|| format!("cannot create {}", parent.display()))?;
    }
    std::fs::write(path, text).with_context(|| format!("cannot write {}", path.display()))
}

/// Writes `.steward/`: the WIT, and the SDK of `lang`.
fn write_support(dir: &Path, lang: Lang) -> anyhow::Result<()> {
    let support = dir.join(".steward");
    // Rust: the SDK reads `../wit/plugin@0.2.0`. Python: the package is a
    // dependency of the world `plugin build` writes from the sources.
    let wit = match lang {
        Lang::Rust => support.join("wit").join(WIT_DIR),
        Lang::Python => support.join("wit/deps").join(WIT_DIR),
    };
    for (file, text) in WIT {
        write(&wit.join(file), text)?;
    }
    match lang {
        Lang::Rust => {
            for (file, text) in RUST_SDK {
                // The SDK finds the WIT at `../wit/plugin@0.2.0`, beside it.
                write(&support.join("sdk").join(file), text)?;
            }
            write(&support.join("sdk/Cargo.toml"), SDK_MANIFEST)?;
        }
        Lang::Python => write(&support.join("python/steward_sdk/__init__.py"), PYTHON_SDK)?,
    }
    write(
        &support.join("README"),
        "Written by `steward plugin new`: the steward:plugin WIT package and the SDK this plugin\nbuilds against. `steward plugin new` of a newer steward writes newer ones.\n",
    )
}

/// `steward plugin new`.
pub fn new(args: &NewArgs) -> anyhow::Result<ExitCode> {
    check_name(&args.name)?;
    let mut capabilities = BTreeSet::new();
    for c in &args.capabilities {
        for c in c.split(',').filter(|c| !c.is_empty()) {
            let cap: Capability = c
                .parse()
                .map_err(|_| anyhow::anyhow!("`{}` is not a capability; known: inventory, packages, antivirus, accounts, tickets, backups", safe(c)))?;
            if !cap.always_granted() {
                capabilities.insert(cap);
            }
        }
    }
    let dir = args
        .dir
        .clone()
        .unwrap_or_else(|| PathBuf::from(&args.name));
    if dir.exists() && std::fs::read_dir(&dir)?.next().is_some() {
        bail!("{} exists and is not empty", dir.display());
    }
    let name = &args.name;
    let caps: Vec<Capability> = capabilities.into_iter().collect();
    write_support(&dir, args.lang)?;
    match args.lang {
        Lang::Rust => {
            write(&dir.join("Cargo.toml"), &rust_manifest(name))?;
            write(&dir.join("src/lib.rs"), &rust_source(name, &caps))?;
            // Tidy, when rustfmt is there; the source builds either way.
            let _ = std::process::Command::new("rustfmt")
                .args(["--edition", "2024"])
                .arg(dir.join("src/lib.rs"))
                .stderr(std::process::Stdio::null())
                .status();
            write(&dir.join(".gitignore"), "/target\n/*.wasm\n")?;
        }
        Lang::Python => {
            write(&dir.join("app.py"), &python_source(name, &caps))?;
            write(&dir.join(".gitignore"), "/*.wasm\n__pycache__/\n")?;
        }
    }
    write(&dir.join("device.toml"), &fixture(name, &caps))?;
    write(&dir.join("tests/basic.toml"), &test_case(name, &caps))?;
    let shown = dir.display();
    println!(
        "created {} plugin `{name}` in {shown}",
        lang_word(args.lang)
    );
    println!(
        "  requests: {}",
        if caps.is_empty() {
            "nothing beyond log, config, clock and state".to_string()
        } else {
            caps.iter().map(|c| c.name()).collect::<Vec<_>>().join(", ")
        }
    );
    println!("next:");
    println!("  steward plugin build {shown}");
    println!("  steward plugin test {shown}");
    Ok(ExitCode::SUCCESS)
}

fn lang_word(lang: Lang) -> &'static str {
    match lang {
        Lang::Rust => "Rust",
        Lang::Python => "Python",
    }
}

fn rust_manifest(name: &str) -> String {
    format!(
        r#"[package]
name = "{name}"
version = "0.1.0"
edition = "2024"
publish = false

[lib]
crate-type = ["cdylib"]

[dependencies]
steward-sdk = {{ path = ".steward/sdk" }}
# For typed plugin state (`steward_sdk::state::get/set` of your own types).
serde = {{ version = "1", features = ["derive"] }}

# `cargo test`: the plugin's logic against `steward_sdk::testing::Device`,
# natively, without building a component.
[dev-dependencies]
steward-sdk = {{ path = ".steward/sdk", features = ["testing"] }}

# A workspace of its own, wherever it lives.
[workspace]

# Small, fast components.
[profile.release]
opt-level = "s"
lto = true
codegen-units = 1
strip = true
panic = "abort"
"#
    )
}

/// One sample use of each capability in `check`, so the component imports
/// what was asked for (and the author sees how it is called).
fn rust_source(name: &str, caps: &[Capability]) -> String {
    let mut uses = vec!["log".to_string()];
    let mut body = String::new();
    for cap in caps {
        match cap {
            Capability::Inventory => {
                uses.push("inventory".into());
                body.push_str(
                    r#"        let device = inventory::device()?;
        for disk in device.disks.iter().filter(|d| d.health == inventory::Health::Failing) {
            findings.push(
                Finding::new(format!("failing-disk:{}", disk.name), Severity::Critical, "A disk is failing")
                    .resource(&disk.name),
            );
        }
"#,
                );
            }
            Capability::Packages => {
                uses.push("packages".into());
                body.push_str(
                    r#"        for u in packages::updates()?.into_iter().filter(|u| u.security) {
            findings.push(
                Finding::new(format!("security-update:{}", u.name), Severity::Warning, format!("{} {} is pending", u.name, u.candidate_version))
                    .resource(&u.name),
            );
        }
"#,
                );
            }
            Capability::Antivirus => {
                uses.push("antivirus".into());
                body.push_str(
                    r#"        let status = antivirus::status()?;
        if !status.installed {
            findings.push(Finding::new("engine-missing", Severity::Critical, "No antivirus engine"));
        }
"#,
                );
            }
            Capability::Accounts => {
                uses.push("accounts".into());
                body.push_str(
                    r#"        for account in accounts::locked()? {
            findings.push(
                Finding::new(format!("locked:{}", account.name), Severity::Warning, format!("{} is locked", account.name))
                    .resource(&account.name),
            );
        }
"#,
                );
            }
            Capability::Backups => {
                uses.push("backups".into());
                body.push_str(
                    r#"        for set in backups::sets()? {
            if backups::snapshots(&set.name)?.is_empty() {
                findings.push(
                    Finding::new(format!("no-snapshot:{}", set.name), Severity::Critical, format!("{} has no snapshot", set.name))
                        .resource(&set.name),
                );
            }
        }
"#,
                );
            }
            Capability::Tickets => uses.push("tickets".into()),
            _ => {}
        }
    }
    let tickets = caps.contains(&Capability::Tickets);
    let remediate = if tickets {
        r#"        let mut changes = Vec::new();
        for f in &findings {
            let filed = tickets::file(&tickets::Ticket {
                kind: tickets::TicketKind::Incident,
                queue: params::get("queue")?,
                title: f.summary.clone(),
                body: f.detail.clone(),
                due: None,
                device_id: None,
            })?;
            changes.push(Change::new("ticket", &f.id, filed.outcome).after(filed.id));
        }
        Ok(changes.into())
"#
    } else {
        "        log::info(&format!(\"{} findings to fix\", findings.len()));\n        Ok(Remediation::new())\n"
    };
    let queue_param = if tickets {
        "\n        .param(ParamSpec::text(\"queue\", \"Ticket queue\").default_text(\"helpdesk\"))"
    } else {
        ""
    };
    let host_uses: Vec<&str> = uses.iter().skip(1).map(String::as_str).collect();
    let host_line = if host_uses.is_empty() {
        String::new()
    } else {
        format!("use steward_sdk::host::{{{}}};\n", host_uses.join(", "))
    };
    let findings_mut = if body.is_empty() { "" } else { "mut " };
    // Only what the generated code uses, so it builds without warnings.
    let mut sdk = vec![];
    if tickets {
        sdk.push("Change");
    }
    sdk.extend(["Descriptor", "Finding"]);
    if tickets {
        sdk.push("ParamSpec");
    }
    sdk.extend(["Plugin", "PluginError", "Remediation"]);
    if !body.is_empty() {
        sdk.push("Severity");
    }
    sdk.push("export_plugin");
    sdk.push(if tickets { "params" } else { "log" });
    let sdk_line = sdk.join(", ");
    format!(
        r#"//! `{name}`: a Steward plugin. `check` finds problems and changes nothing;
//! `remediate` fixes the findings it is given (in plan mode every
//! mutating call only records what it would do).

{host_line}use steward_sdk::{{{sdk_line}}};

struct {ty};

impl Plugin for {ty} {{
    fn describe() -> Descriptor {{
        Descriptor::new("{name}", env!("CARGO_PKG_VERSION"), "Describe what {name} checks"){queue_param}
    }}

    fn check() -> Result<Vec<Finding>, PluginError> {{
        let {findings_mut}findings = Vec::new();
{body}        Ok(findings)
    }}

    fn remediate(findings: Vec<Finding>) -> Result<Remediation, PluginError> {{
{remediate}    }}
}}

export_plugin!({ty});
{tests}"#,
        ty = type_name(name),
        tests = rust_unit_test(&type_name(name), caps),
    )
}

fn type_name(name: &str) -> String {
    name.split('-')
        .map(|part| {
            let mut c = part.chars();
            c.next()
                .map(|f| f.to_ascii_uppercase().to_string() + c.as_str())
                .unwrap_or_default()
        })
        .collect()
}

fn python_source(name: &str, caps: &[Capability]) -> String {
    let mut imports = Vec::new();
    let mut body = String::new();
    for cap in caps {
        match cap {
            Capability::Inventory => {
                imports.push("inventory");
                body.push_str("        for disk in inventory.device().disks:\n            if disk.health == inventory.Health.FAILING:\n                out.append(s.finding(f\"failing-disk:{disk.name}\", s.CRITICAL, \"A disk is failing\", resource=disk.name))\n");
            }
            Capability::Packages => {
                imports.push("packages");
                body.push_str("        for u in packages.updates():\n            if u.security:\n                out.append(s.finding(f\"security-update:{u.name}\", s.WARNING, f\"{u.name} {u.candidate_version} is pending\", resource=u.name))\n");
            }
            Capability::Antivirus => {
                imports.push("antivirus");
                body.push_str("        if not antivirus.status().installed:\n            out.append(s.finding(\"engine-missing\", s.CRITICAL, \"No antivirus engine\"))\n");
            }
            Capability::Accounts => {
                imports.push("accounts");
                body.push_str("        for a in accounts.locked():\n            out.append(s.finding(f\"locked:{a.name}\", s.WARNING, f\"{a.name} is locked\", resource=a.name))\n");
            }
            Capability::Backups => {
                imports.push("backups");
                body.push_str("        for b in backups.sets():\n            if not backups.snapshots(b.name):\n                out.append(s.finding(f\"no-snapshot:{b.name}\", s.CRITICAL, f\"{b.name} has no snapshot\", resource=b.name))\n");
            }
            Capability::Tickets => imports.push("tickets"),
            _ => {}
        }
    }
    let tickets = caps.contains(&Capability::Tickets);
    let remediate = if tickets {
        "        changes = []\n        for f in findings:\n            filed = tickets.file(tickets.Ticket(kind=tickets.TicketKind.INCIDENT, queue=s.param(\"queue\"), title=f.summary, body=f.detail, due=None, device_id=None))\n            changes.append(s.change(\"ticket\", f.id, filed.outcome, after=filed.id))\n        return changes\n"
    } else {
        "        s.info(f\"{len(findings)} findings to fix\")\n        return []\n"
    };
    let params = if tickets {
        ",\n            s.text(\"queue\", \"Ticket queue\", default=\"helpdesk\")"
    } else {
        ""
    };
    let import_line = if imports.is_empty() {
        String::new()
    } else {
        format!("from wit_world.imports import {}\n", imports.join(", "))
    };
    format!(
        r#""""`{name}`: a Steward plugin. `check` finds problems and changes nothing;
`remediate` fixes the findings it is given (in plan mode every mutating
call only records what it would do)."""

import steward_sdk as s
{import_line}

class Plugin(s.Plugin):
    def describe(self):
        return s.descriptor(
            "{name}", "0.1.0", "Describe what {name} checks"{params},
        )

    def check(self):
        out = []
{body}        return out

    def remediate(self, findings):
{remediate}"#
    )
}

/// A simulated device with something for each capability to find.
fn fixture(name: &str, caps: &[Capability]) -> String {
    let mut text = format!(
        r#"# A simulated device for `{name}`: every key is documented in Steward's
# docs/FIXTURES.md. `steward plugin test` runs the plugin against it.
now = {{ seconds = 1795392000, nanoseconds = 0 }}   # 2026-11-23T00:00:00Z

[facts]
id = "ws-001"
name = "reception-pc"
tenant-id = "acme"
tags = []
batteries = []
{disks}
[facts.hardware]

[facts.admin]
"#,
        disks = if caps.contains(&Capability::Inventory) {
            ""
        } else {
            "disks = []\n"
        },
    );
    for cap in caps {
        match cap {
            Capability::Inventory => text.push_str(
                "\n[[facts.disks]]\nname = \"sda\"\nsize-bytes = 256060514304\nhealth = \"failing\"\n",
            ),
            Capability::Packages => text.push_str(
                "\n[[updates]]\nname = \"openssl\"\ninstalled-version = \"3.0.11-1\"\ncandidate-version = \"3.0.15-1\"\nsecurity = true\norigin = \"Debian-Security\"\nheld = false\n",
            ),
            Capability::Antivirus => text.push_str(
                "\n[antivirus]\nengine = \"ClamAV\"\ninstalled = false\nservice-running = false\ndatabases = []\n",
            ),
            Capability::Accounts => text.push_str(
                "\n[[accounts]]\nname = \"jdoe\"\nsource = \"local\"\nlocked = true\nfailed-attempts = 5\ngroups = [\"staff\"]\ndisabled = false\n",
            ),
            Capability::Backups => text.push_str(
                "\n[[backups]]\nset = { name = \"nightly-home\", tool = \"simulated\", repository = \"sim://nightly\", paths = [\"/home\"] }\nsnapshots = []\n",
            ),
            _ => {}
        }
    }
    text
}

/// A native unit test (`cargo test`) of the generated `check` against an
/// SDK test device holding what the fixture holds.
fn rust_unit_test(ty: &str, caps: &[Capability]) -> String {
    let mut setup = String::new();
    for cap in caps {
        setup.push_str(match cap {
            Capability::Inventory => "\n            .with(|d| d.facts.disks.push(inventory::Disk { name: \"sda\".into(), model: None, size_bytes: 256_060_514_304, health: inventory::Health::Failing }))",
            Capability::Packages => "\n            .update(testing::update(\"openssl\", \"3.0.11-1\", \"3.0.15-1\", true))",
            Capability::Antivirus => "\n            .with(|d| d.antivirus = Some(antivirus::EngineStatus { installed: false, engine: \"ClamAV\".into(), version: None, service_running: false, databases: vec![] }))",
            Capability::Accounts => "\n            .account(testing::locked_account(\"jdoe\"))",
            Capability::Backups => "\n            .with(|d| d.backups.push(testing::TestBackupSet { set: backups::BackupSet { name: \"nightly-home\".into(), tool: \"simulated\".into(), repository: \"sim://nightly\".into(), paths: vec![\"/home\".into()], last_run: None }, snapshots: vec![], sound: true }))",
            _ => "",
        });
    }
    let ids: Vec<String> = caps
        .iter()
        .filter_map(|c| sample_finding(*c))
        .map(|(id, _)| format!("{id:?}"))
        .collect();
    let expect = if ids.is_empty() {
        "assert!(ids.is_empty());".to_owned()
    } else {
        format!("assert_eq!(ids, [{}]);", ids.join(", "))
    };
    let testing = if setup.contains("testing::") {
        "self, "
    } else {
        ""
    };
    format!(
        r#"
// `cargo test` runs these natively: the `host` capabilities answer from an
// SDK test device (the `testing` feature), no component, no host.
#[cfg(test)]
mod tests {{
    use super::*;
    use steward_sdk::testing::{{{testing}Device}};

    #[test]
    fn check_finds_what_the_device_holds_and_plan_changes_nothing() {{
        let device = Device::new(){setup};
        let findings = device.check::<{ty}>().unwrap();
        let ids: Vec<&str> = findings.iter().map(|f| f.id.as_str()).collect();
        {expect}
        device.plan::<{ty}>(findings).unwrap();
        assert!(device.calls().is_empty(), "plan mode changed the device");
    }}
}}
"#
    )
}

/// The finding (id, severity) the generated code reports for `cap` on the
/// generated fixture; `None` for capabilities it only uses to fix.
fn sample_finding(cap: Capability) -> Option<(&'static str, &'static str)> {
    Some(match cap {
        Capability::Inventory => ("failing-disk:sda", "critical"),
        Capability::Packages => ("security-update:openssl", "warning"),
        Capability::Antivirus => ("engine-missing", "critical"),
        Capability::Accounts => ("locked:jdoe", "warning"),
        Capability::Backups => ("no-snapshot:nightly-home", "critical"),
        _ => return None,
    })
}

fn test_case(name: &str, caps: &[Capability]) -> String {
    let grants: Vec<String> = caps.iter().map(|c| format!("{:?}", c.name())).collect();
    let mut expected = String::new();
    let findings: Vec<(&str, &str)> = caps.iter().filter_map(|c| sample_finding(*c)).collect();
    for (id, severity) in &findings {
        let _ = write!(
            expected,
            "\n[[expect.findings]]\nid = \"{id}\"\nseverity = \"{severity}\"\n"
        );
    }
    if caps.contains(&Capability::Tickets) {
        for (id, _) in &findings {
            let _ = write!(
                expected,
                "\n[[expect.changes]]\nkind = \"ticket\"\ntarget = \"{id}\"\noutcome = \"planned\"\n"
            );
        }
    }
    if expected.is_empty() {
        expected.push_str("\n[expect]\nfindings = []\n");
    }
    format!(
        r#"# A test case for `{name}`: `steward plugin test` runs the plugin against
# `device` in `mode` (check, plan or apply) with these grants and
# parameters, and compares what it found and changed with `expect`.
device = "device.toml"
mode = "plan"
grants = [{}]

[params]
{expected}"#,
        grants.join(", ")
    )
}

/// How a plugin directory is built.
fn language_of(dir: &Path) -> anyhow::Result<Lang> {
    if dir.join("Cargo.toml").is_file() {
        Ok(Lang::Rust)
    } else if dir.join("app.py").is_file() {
        Ok(Lang::Python)
    } else {
        bail!(
            "{} holds neither Cargo.toml (Rust) nor app.py (Python); make one with `steward plugin new`",
            dir.display()
        )
    }
}

/// The plugin's name from its directory: the package name (Rust) or the
/// directory's name (Python).
fn package_name(dir: &Path, lang: Lang) -> anyhow::Result<String> {
    match lang {
        Lang::Rust => {
            #[derive(Deserialize)]
            struct Manifest {
                package: Package,
            }
            #[derive(Deserialize)]
            struct Package {
                name: String,
            }
            let text = std::fs::read_to_string(dir.join("Cargo.toml"))?;
            let m: Manifest = toml::from_str(&text).context("Cargo.toml has no [package] name")?;
            Ok(m.package.name)
        }
        Lang::Python => {
            let abs = std::fs::canonicalize(dir)?;
            Ok(abs
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_else(|| "plugin".into()))
        }
    }
}

/// Where the component of `dir` is written.
fn component_path(dir: &Path, lang: Lang, name: &str) -> PathBuf {
    match lang {
        Lang::Rust => dir
            .join("target/wasm32-wasip2/release")
            .join(format!("{}.wasm", name.replace('-', "_"))),
        Lang::Python => dir.join(format!("{name}.wasm")),
    }
}

fn componentize_py() -> anyhow::Result<PathBuf> {
    if let Some(p) = std::env::var_os("STEWARD_COMPONENTIZE_PY") {
        return Ok(PathBuf::from(p));
    }
    let on_path = std::env::var_os("PATH").map(|paths| {
        std::env::split_paths(&paths)
            .map(|p| p.join("componentize-py"))
            .find(|p| p.is_file())
    });
    if let Some(Some(p)) = on_path {
        return Ok(p);
    }
    // Where `.ci/setup` installs it, beside this build.
    if let Ok(exe) = std::env::current_exe() {
        for dir in exe.ancestors().skip(1) {
            let p = dir.join("componentize-py/bin/componentize-py");
            if p.is_file() {
                return Ok(p);
            }
        }
    }
    bail!(
        "componentize-py is not installed: `python3 -m venv ~/.steward-py && ~/.steward-py/bin/pip install {COMPONENTIZE_PY}`, then put ~/.steward-py/bin on the PATH or set STEWARD_COMPONENTIZE_PY"
    )
}

/// The plugin's own Python files (not `.steward/`, hidden directories or
/// caches).
fn python_sources(dir: &Path) -> anyhow::Result<Vec<PathBuf>> {
    let mut found = Vec::new();
    let mut pending = vec![dir.to_path_buf()];
    while let Some(d) = pending.pop() {
        for entry in
            std::fs::read_dir(&d).with_context(|| format!("cannot read {}", d.display()))?
        {
            let path = entry?.path();
            let name = path
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default();
            if name.starts_with('.') || name == "__pycache__" {
                continue;
            }
            if path.is_dir() {
                pending.push(path);
            } else if name.ends_with(".py") {
                found.push(path);
            }
        }
    }
    Ok(found)
}

/// Builds the component of `dir`; its path.
pub fn build_dir(dir: &Path) -> anyhow::Result<PathBuf> {
    let lang = language_of(dir)?;
    let name = package_name(dir, lang)?;
    let out = component_path(dir, lang, &name);
    // This steward's WIT and SDK, whatever `.steward/` held (a plugin made
    // by an older steward, or not by `plugin new` at all).
    write_support(dir, lang)?;
    let status = match lang {
        Lang::Rust => {
            let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
            std::process::Command::new(cargo)
                .args([
                    "build",
                    "--release",
                    "--target",
                    "wasm32-wasip2",
                    "--manifest-path",
                ])
                .arg(dir.join("Cargo.toml"))
                .arg("--target-dir")
                .arg(dir.join("target"))
                .status()
                .context("cannot run cargo")?
        }
        Lang::Python => {
            let tool = componentize_py()?;

            // The world imports what the sources import (componentize-py
            // imports every interface of the world it is given).
            let mut capabilities = BTreeSet::new();
            for source in python_sources(dir)? {
                let text = std::fs::read_to_string(&source)
                    .with_context(|| format!("cannot read {}", source.display()))?;
                capabilities.extend(steward_contract::authoring::python_imports(&text));
            }
            write(
                &dir.join(".steward/wit/world.wit"),
                &steward_contract::authoring::world(&capabilities),
            )?;
            std::process::Command::new(&tool)
                .arg("-d")
                .arg(dir.join(".steward/wit"))
                .args(["-w", "plugin", "componentize", "-p"])
                .arg(dir)
                .arg("-p")
                .arg(dir.join(".steward/python"))
                .arg("app")
                .arg("-o")
                .arg(&out)
                .status()
                .with_context(|| format!("cannot run {}", tool.display()))?
        }
    };
    if !status.success() {
        match lang {
            Lang::Rust => bail!(
                "cargo build failed ({status}); is the target installed? `rustup target add wasm32-wasip2`"
            ),
            Lang::Python => bail!("componentize-py failed ({status})"),
        }
    }
    Ok(out)
}

/// `steward plugin build`.
pub async fn build(runtime: &Runtime, args: &DirArgs) -> anyhow::Result<ExitCode> {
    let out = build_dir(&args.dir)?;
    let module = crate::cli::load(runtime, &out).await?;
    let descriptor = crate::cli::describe(runtime, &module).await?;
    let requested: Vec<&str> = module
        .requested
        .iter()
        .filter(|c| !c.always_granted())
        .map(|c| c.name())
        .collect();
    let size = std::fs::metadata(&out).map(|m| m.len()).unwrap_or(0);
    println!("built {} ({} KiB)", out.display(), size / 1024);
    println!(
        "  {} {} for steward:plugin@{}",
        safe(&descriptor.name),
        safe(&descriptor.version),
        module.wit_version
    );
    println!(
        "  requests: {}",
        if requested.is_empty() {
            "nothing beyond log, config, clock and state".to_string()
        } else {
            requested.join(", ")
        }
    );
    if !module.denied_imports.is_empty() {
        println!(
            "  imported, denied at run time: {}",
            module.denied_imports.join(", ")
        );
    }
    Ok(ExitCode::SUCCESS)
}

/// One test case (`tests/NAME.toml`).
#[derive(Debug, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
struct Case {
    /// The fixture, relative to the plugin's directory.
    device: PathBuf,
    /// `check`, `plan` (check, then plan the remediation) or `apply`.
    #[serde(default = "plan")]
    mode: String,
    /// Grants, as `--grant` takes them.
    #[serde(default)]
    grants: Vec<String>,
    /// Parameters.
    #[serde(default)]
    params: toml::Table,
    /// What must come out.
    #[serde(default)]
    expect: Expect,
}

fn plan() -> String {
    "plan".into()
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
struct Expect {
    /// The findings, exactly (by id and severity); not compared when absent.
    findings: Option<Vec<ExpectFinding>>,
    /// The changes, exactly (kind, target, outcome); not compared when absent.
    changes: Option<Vec<ExpectChange>>,
    /// Calls (`accounts.unlock`) that must have been denied.
    #[serde(default)]
    denied: Vec<String>,
    /// Ids of the findings the remediation must report it could not fix;
    /// any other failure fails the case.
    #[serde(default)]
    failures: Vec<String>,
    /// The run must fail with an error containing this text.
    error: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ExpectFinding {
    id: String,
    severity: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ExpectChange {
    kind: String,
    target: String,
    #[serde(default = "planned")]
    outcome: String,
}

fn planned() -> String {
    "planned".into()
}

/// An enum value as a test case names it: `Warning` → `warning`.
fn lower<T: serde::Serialize>(v: &T) -> String {
    serde_json::to_value(v)
        .ok()
        .and_then(|v| v.as_str().map(str::to_lowercase))
        .unwrap_or_default()
}

/// `steward plugin test`.
pub async fn test(runtime: &Runtime, args: &TestArgs) -> anyhow::Result<ExitCode> {
    let dir = &args.dir;
    let wasm = match &args.wasm {
        Some(w) => w.clone(),
        None => {
            let lang = language_of(dir)?;
            let name = package_name(dir, lang)?;
            let out = component_path(dir, lang, &name);
            if out.is_file() { out } else { build_dir(dir)? }
        }
    };
    let module = crate::cli::load(runtime, &wasm).await?;
    let descriptor = crate::cli::describe(runtime, &module).await?;
    let mut cases: Vec<PathBuf> = std::fs::read_dir(dir.join("tests"))
        .with_context(|| format!("{} has no tests/ directory of cases", dir.display()))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|e| e == "toml"))
        .collect();
    cases.sort();
    if cases.is_empty() {
        bail!(
            "{} holds no test case (*.toml)",
            dir.join("tests").display()
        );
    }
    let mut failed = 0;
    for path in &cases {
        let label = path
            .file_stem()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_default();
        match run_case(runtime, &module, &descriptor, dir, path).await {
            Ok((diff, summary)) if diff.is_empty() => println!("ok    {label}: {summary}"),
            Ok((diff, summary)) => {
                failed += 1;
                println!("FAIL  {label}: {summary}");
                for line in diff {
                    println!("      {}", safe(&line));
                }
            }
            Err(e) => {
                failed += 1;
                println!("FAIL  {label}: {}", safe(&format!("{e:#}")));
            }
        }
    }
    println!(
        "{} cases, {} passed, {failed} failed",
        cases.len(),
        cases.len() - failed
    );
    Ok(if failed == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

/// Runs one case: the lines of its diff (empty when it passed) and a
/// summary.
async fn run_case(
    runtime: &Runtime,
    module: &steward_runtime::Module,
    descriptor: &steward_runtime::bindings::types::Descriptor,
    dir: &Path,
    path: &Path,
) -> anyhow::Result<(Vec<String>, String)> {
    let text = std::fs::read_to_string(path)?;
    let case: Case =
        toml::from_str(&text).with_context(|| format!("invalid {}", path.display()))?;
    let fixture = Fixture::load(&dir.join(&case.device))?;
    let grants: Grants = case
        .grants
        .iter()
        .map(|g| g.parse::<Grant>().with_context(|| format!("grant `{g}`")))
        .collect::<anyhow::Result<_>>()?;
    module
        .authorize_exactly(&grants)
        .with_context(|| format!("{}: grants", path.display()))?;
    let params = serde_json::to_value(&case.params)?;
    let params = match resolve_json_params(descriptor, &params) {
        Ok(p) => p,
        // Refused before the run, as a server refuses them.
        Err(e) => return Ok(error_outcome(&case.expect, &e.to_string())),
    };
    let mode = match case.mode.as_str() {
        "check" | "plan" => RunMode::Plan,
        "apply" => RunMode::Apply,
        other => bail!("mode `{other}` is not check, plan or apply"),
    };
    let sim = Simulated::new(fixture);
    let audit = Arc::new(MemoryAudit::default());
    let spec = RunSpec {
        run_id: "test".into(),
        plugin: descriptor.name.clone(),
        mode,
        params,
        grants,
        device: Arc::new(sim.device()),
        audit: audit.clone(),
        limits: None,
        journal: None,
    };
    let mut diff = Vec::new();
    let checked = runtime.check(module, spec.clone()).await;
    let findings = match checked.result {
        Ok(f) => f,
        Err(e) => return Ok(error_outcome(&case.expect, &e.to_string())),
    };
    let (changes, failures) = if case.mode == "check" {
        (Vec::new(), Vec::new())
    } else {
        match runtime
            .remediate(module, spec, findings.clone())
            .await
            .result
        {
            Ok(r) => (r.changes, r.failures),
            Err(e) => return Ok(error_outcome(&case.expect, &e.to_string())),
        }
    };
    if let Some(want) = &case.expect.error {
        diff.push(format!("- the run fails with an error containing `{want}`"));
        diff.push("+ the run succeeded".into());
    }
    if let Some(want) = &case.expect.findings {
        let want: BTreeMap<String, String> = want
            .iter()
            .map(|f| (f.id.clone(), f.severity.to_lowercase()))
            .collect();
        let got: BTreeMap<String, String> = findings
            .iter()
            .map(|f| (f.id.clone(), lower(&f.severity)))
            .collect();
        compare("finding", &want, &got, &mut diff);
    }
    if let Some(want) = &case.expect.changes {
        let key = |kind: &str, target: &str| format!("{kind} {target}");
        let want: BTreeMap<String, String> = want
            .iter()
            .map(|c| (key(&c.kind, &c.target), c.outcome.to_lowercase()))
            .collect();
        let got: BTreeMap<String, String> = changes
            .iter()
            .map(|c| (key(&c.kind, &c.target), lower(&c.outcome)))
            .collect();
        compare("change", &want, &got, &mut diff);
    }
    let want: BTreeSet<&str> = case.expect.failures.iter().map(String::as_str).collect();
    let got: BTreeMap<&str, &str> = failures
        .iter()
        .map(|f| (f.finding_id.as_str(), f.error.as_str()))
        .collect();
    for id in &want {
        if !got.contains_key(id) {
            diff.push(format!("- failure {id}"));
        }
    }
    for (id, error) in &got {
        if !want.contains(id) {
            diff.push(format!("+ failure {id}: {error}"));
        }
    }
    let events = audit.events();
    for call in &case.expect.denied {
        let denied = events.iter().any(|e| {
            format!("{}.{}", e.capability, e.function) == *call
                && matches!(e.outcome, AuditOutcome::Denied(_))
        });
        if !denied {
            diff.push(format!("- {call} denied"));
            diff.push(format!("+ {call} not denied (or never called)"));
        }
    }
    let mut summary = format!("{} findings, {} changes", findings.len(), changes.len());
    if !failures.is_empty() {
        summary.push_str(&format!(", {} failures", failures.len()));
    }
    Ok((diff, summary))
}

fn error_outcome(expect: &Expect, error: &str) -> (Vec<String>, String) {
    let summary = format!("failed: {error}");
    match &expect.error {
        Some(want) if error.contains(want.as_str()) => (Vec::new(), summary),
        Some(want) => (
            vec![
                format!("- an error containing `{want}`"),
                format!("+ {error}"),
            ],
            summary,
        ),
        None => (
            vec!["- the run succeeds".into(), format!("+ {error}")],
            summary,
        ),
    }
}

/// The diff of two `id → value` maps, as `-` (expected) and `+` (got)
/// lines.
fn compare(
    what: &str,
    want: &BTreeMap<String, String>,
    got: &BTreeMap<String, String>,
    diff: &mut Vec<String>,
) {
    for (id, value) in want {
        match got.get(id) {
            None => diff.push(format!("- {what} {id} ({value})")),
            Some(v) if v != value => {
                diff.push(format!("- {what} {id} ({value})"));
                diff.push(format!("+ {what} {id} ({v})"));
            }
            Some(_) => {}
        }
    }
    for (id, value) in got {
        if !want.contains_key(id) {
            diff.push(format!("+ {what} {id} ({value})"));
        }
    }
}
