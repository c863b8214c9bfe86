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

/// The componentize-py `.ci/setup` installs (in a venv under `target/`).
pub fn componentize_py() -> PathBuf {
    std::env::var_os("STEWARD_COMPONENTIZE_PY")
        .map(PathBuf::from)
        .unwrap_or_else(|| workspace_root().join("target/componentize-py/bin/componentize-py"))
}

/// The Python plugin in `dir` (relative to the workspace root, for example
/// `plugins/python/locked-vip`) built into a component with componentize-py
/// and the SDK of `sdk/python`, once per process per directory.
pub fn python_component(dir: &str) -> PathBuf {
    static BUILT: std::sync::Mutex<Vec<(String, PathBuf)>> = std::sync::Mutex::new(Vec::new());
    let mut built = BUILT.lock().unwrap_or_else(|e| e.into_inner());
    if let Some((_, p)) = built.iter().find(|(d, _)| d == dir) {
        return p.clone();
    }
    let root = workspace_root();
    let out_dir = root.join("target/guests/python");
    std::fs::create_dir_all(&out_dir).expect("create target/guests/python");
    let stem = dir.replace('/', "_");
    let out = out_dir.join(format!("{stem}.wasm"));
    // As `steward plugin build` does: a world importing what `app.py`
    // imports, with the WIT package beside it in `deps/`.
    let wit = out_dir.join(format!("{stem}-wit"));
    let deps = wit.join("deps/plugin@0.2.0");
    std::fs::create_dir_all(&deps).expect("create the WIT directory");
    for entry in std::fs::read_dir(root.join("wit/plugin@0.2.0")).expect("read wit/") {
        let path = entry.expect("wit entry").path();
        std::fs::copy(&path, deps.join(path.file_name().expect("file name"))).expect("copy WIT");
    }
    let source = std::fs::read_to_string(root.join(dir).join("app.py")).expect("read app.py");
    let capabilities = steward_contract::authoring::python_imports(&source);
    std::fs::write(
        wit.join("world.wit"),
        steward_contract::authoring::world(&capabilities),
    )
    .expect("write world.wit");
    let status = Command::new(componentize_py())
        .current_dir(&root)
        .arg("-d")
        .arg(&wit)
        .args(["-w", "plugin", "componentize", "-p"])
        .arg(root.join(dir))
        .arg("-p")
        .arg(root.join("sdk/python"))
        .arg("app")
        .arg("-o")
        .arg(&out)
        .stdout(std::process::Stdio::null())
        .status()
        .expect("componentize-py runs (.ci/setup installs it under target/componentize-py)");
    assert!(
        status.success(),
        "componentize-py failed for {dir}: {status}"
    );
    built.push((dir.to_owned(), out.clone()));
    out
}
