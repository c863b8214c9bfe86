//! A plugin that misbehaves on purpose, chosen by the `behaviour` parameter.
//! The host must survive every one of them.

use std::hint::black_box;

use steward_sdk::host::{accounts, packages, state};
use steward_sdk::{
    Change, Descriptor, Finding, Outcome, ParamSpec, Plugin, PluginError, Remediation, Severity,
    export_plugin, log, params,
};

struct Hostile;

fn recurse(depth: u64) -> u64 {
    if black_box(depth) == u64::MAX {
        return 0;
    }
    // Small frames, so the wasm stack (not Rust's shadow stack in linear
    // memory) is what overflows.
    black_box(recurse(black_box(depth + 1))).wrapping_add(1)
}

impl Plugin for Hostile {
    fn describe() -> Descriptor {
        Descriptor::new("hostile", "0.1.0", "Misbehaves on purpose").param(
            ParamSpec::text(
                "behaviour",
                "spin, grow, recurse, slow-host, panic, out-of-scope, log-flood, huge-output, mutate-in-check, empty-finding-id, duplicate-finding-ids, oversized-finding-id, lie-in-plan, terminal-tricks, huge-error, unlock-admin",
            )
            .required(),
        )
    }

    fn check() -> Result<Vec<Finding>, PluginError> {
        let behaviour = params::text("behaviour")?.unwrap_or_default();
        match behaviour.as_str() {
            "spin" => {
                let mut x: u64 = 0;
                loop {
                    x = black_box(x.wrapping_add(1));
                }
            }
            "grow" => {
                let mut hoard: Vec<Vec<u8>> = Vec::new();
                loop {
                    hoard.push(black_box(vec![7u8; 1 << 20]));
                }
            }
            "recurse" => {
                black_box(recurse(0));
                Ok(Vec::new())
            }
            "slow-host" => {
                let updates = packages::updates()?;
                Ok(vec![Finding::new(
                    "slow",
                    Severity::Info,
                    format!("{}", updates.len()),
                )])
            }
            "panic" => panic!("hostile plugin gave up on purpose"),
            "out-of-scope" => {
                accounts::unlock(
                    "administrator",
                    accounts::AccountSource::Directory,
                    "hostile",
                )?;
                Ok(Vec::new())
            }
            "mutate-in-check" => {
                accounts::unlock("jdoe", accounts::AccountSource::Directory, "hostile")?;
                Ok(Vec::new())
            }
            "log-flood" => {
                for i in 0..100_000 {
                    log::info(&format!("flood line {i}"));
                }
                Ok(Vec::new())
            }
            "state-hoard" => {
                let value = "S".repeat(60 << 10);
                let mut kept = 0;
                for i in 0..10_000 {
                    if state::set(&format!("k{i}"), &value).is_err() {
                        break;
                    }
                    kept += 1;
                }
                Ok(vec![Finding::new(
                    format!("kept-{kept}"),
                    Severity::Info,
                    "state keys kept",
                )])
            }
            "log-giant" => {
                let giant = "G".repeat(9 << 20);
                let fields: Vec<(String, String)> = (0..100)
                    .map(|i| (format!("k{i}-{}", "K".repeat(4096)), "V".repeat(4096)))
                    .collect();
                let fields: Vec<(&str, &str)> = fields
                    .iter()
                    .map(|(k, v)| (k.as_str(), v.as_str()))
                    .collect();
                for _ in 0..64 {
                    log::warn_with(&giant, &fields);
                }
                Ok(Vec::new())
            }
            "huge-output" => Ok((0..100_000)
                .map(|i| Finding::new(format!("f{i}"), Severity::Info, "x"))
                .collect()),
            "terminal-tricks" => {
                log::info("fine\nINFO steward: forged host line \u{1b}]0;pwned\u{7}");
                Ok(vec![Finding::new(
                    "tricks",
                    Severity::Info,
                    "\u{1b}[2J\u{1b}]8;;http://evil.example\u{7}click\u{1b}]8;;\u{7}\r\0",
                )])
            }
            "huge-error" => Err(PluginError::Failed("E".repeat(2 << 20))),
            // Each text far past its own cap, the whole within the 4 MiB total.
            "giant-texts" => {
                let mut f = Finding::new("giant", Severity::Info, "S".repeat(512 << 10))
                    .resource("R".repeat(512 << 10))
                    .detail("D".repeat(1 << 20));
                for i in 0..200 {
                    f = f.field(format!("k{i}"), "V".repeat(4 << 10));
                }
                Ok(vec![f])
            }
            "empty-finding-id" => Ok(vec![
                Finding::new("fine", Severity::Info, "a good finding"),
                Finding::new("", Severity::Critical, "a finding with no id"),
            ]),
            "duplicate-finding-ids" => Ok(vec![
                Finding::new("twice", Severity::Info, "first"),
                Finding::new("twice", Severity::Warning, "second"),
            ]),
            "oversized-finding-id" => Ok(vec![Finding::new(
                "x".repeat(100_000),
                Severity::Info,
                "an id far past the limit",
            )]),
            other => Err(PluginError::Failed(format!("unknown behaviour `{other}`"))),
        }
    }

    fn remediate(_findings: Vec<Finding>) -> Result<Remediation, PluginError> {
        match params::text("behaviour")?.unwrap_or_default().as_str() {
            // Claims a change it never made through the host.
            "lie-in-plan" => {
                Ok(vec![Change::new("disk-wipe", "/dev/sda", Outcome::Applied)].into())
            }
            "giant-texts" => Ok(vec![
                Change::new("note", "T".repeat(512 << 10), Outcome::Planned)
                    .description("D".repeat(1 << 20))
                    .before("B".repeat(1 << 20))
                    .after("A".repeat(1 << 20)),
            ]
            .into()),
            // The account is in `Domain Admins`: only an explicit grant
            // lets the host unlock it, whatever this plugin decides.
            "unlock-admin" => {
                accounts::unlock(
                    "administrator",
                    accounts::AccountSource::Directory,
                    "hostile",
                )?;
                Ok(Remediation::new())
            }
            _ => Ok(Remediation::new()),
        }
    }
}

export_plugin!(Hostile);
