//! Builds the plugin components once per test or benchmark process.
//!
//! Guests are built for `wasm32-wasip2` with the `plugin` profile into
//! `target/guests`, a target directory of their own: wasm dependencies share
//! nothing with the host build, and a separate directory keeps the nested
//! cargo from waiting on the lock the outer `cargo test` holds.

pub mod apt;
pub mod postgres;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

/// Every component the tests and benchmarks use, by package name.
pub const GUESTS: &[&str] = &[
    "guest-trivial",
    "guest-hostile",
    "guest-bad-descriptor",
    "guest-fixer",
    "steward-plugin-template",
    "steward-plugin-patching",
    "steward-plugin-antivirus",
    "steward-plugin-account-unlock",
    "steward-plugin-refresh-planner",
    "steward-plugin-backup-check",
    "guest-legacy-v0-1",
    "guest-vendor-demo-1-0-0",
    "guest-vendor-demo-1-1-0",
    "guest-vendor-demo-2-0-0",
];

/// The workspace root.
pub fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("tests crate lives one level below the workspace root")
        .to_path_buf()
}

/// The built component of `package` (for example `guest-trivial`), building
/// all guests on first use.
pub fn component(package: &str) -> PathBuf {
    static BUILT: OnceLock<Result<PathBuf, String>> = OnceLock::new();
    let dir = BUILT
        .get_or_init(|| build_all().map_err(|e| format!("{e:#}")))
        .as_ref()
        .unwrap_or_else(|e| panic!("building guest components failed: {e}"));
    dir.join(format!("{}.wasm", package.replace('-', "_")))
}

fn build_all() -> anyhow::Result<PathBuf> {
    let root = workspace_root();
    let target_dir = root.join("target").join("guests");
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let mut cmd = Command::new(cargo);
    cmd.current_dir(&root)
        .args([
            "build",
            "--quiet",
            "--profile",
            "plugin",
            "--target",
            "wasm32-wasip2",
        ])
        .arg("--target-dir")
        .arg(&target_dir);
    for g in GUESTS {
        cmd.args(["-p", g]);
    }
    let status = cmd.status()?;
    anyhow::ensure!(
        status.success(),
        "cargo build of the guest components failed ({status}); is the wasm32-wasip2 target installed? run `rustup target add wasm32-wasip2`"
    );
    Ok(target_dir.join("wasm32-wasip2").join("plugin"))
}
