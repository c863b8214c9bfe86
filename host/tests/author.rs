//! Writing plugins, as an author outside this repository would:
//! `steward plugin new` for Rust and Python, then `build`, `inspect`,
//! `test` and `run --plan` against the fixture it wrote, `run --json` in
//! kebab-case, an unused grant refused, the Rust plugin's own `cargo test`
//! against the SDK's test device; a changed expectation fails with a
//! readable diff; the first-party Python plugin passes its own cases.

use std::path::Path;
use std::process::{Command, Output};

fn steward(cache: &Path, cwd: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_steward"))
        .current_dir(cwd)
        .env("STEWARD_CACHE_DIR", cache)
        .env("STEWARD_COMPONENTIZE_PY", steward_tests::componentize_py())
        .env_remove("STEWARD_LOG")
        .args(args)
        .output()
        .expect("steward runs")
}

fn text(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

fn ok(o: Output) -> String {
    assert!(o.status.success(), "{}", text(&o));
    String::from_utf8_lossy(&o.stdout).into_owned()
}

/// new → build → inspect → test → run --plan, in a directory that is not
/// under the repository, then a wrong expectation's diff.
fn author_cycle(lang: &str, name: &str) {
    let cache = tempfile::tempdir().unwrap();
    let home = tempfile::tempdir().unwrap();
    let cwd = home.path();
    let out = ok(steward(
        cache.path(),
        cwd,
        &[
            "plugin",
            "new",
            name,
            "--lang",
            lang,
            "--capability",
            "accounts",
            "--capability",
            "tickets",
        ],
    ));
    assert!(out.contains(&format!("plugin `{name}`")), "{out}");
    let dir = cwd.join(name);
    let wit = if lang == "rust" {
        ".steward/wit/plugin@0.2.0/world.wit"
    } else {
        ".steward/wit/deps/plugin@0.2.0/world.wit"
    };
    assert!(dir.join(wit).is_file(), "the WIT comes with the plugin");
    assert!(dir.join("tests/basic.toml").is_file());

    let built = ok(steward(cache.path(), cwd, &["plugin", "build", name]));
    assert!(built.contains("requests: accounts, tickets"), "{built}");
    assert!(built.contains("for steward:plugin@0.2.0"), "{built}");
    let wasm = built
        .lines()
        .find_map(|l| l.strip_prefix("built "))
        .and_then(|l| l.split(" (").next())
        .unwrap()
        .to_owned();
    let inspected = ok(steward(cache.path(), cwd, &["plugin", "inspect", &wasm]));
    assert!(
        inspected.starts_with(&format!("{name} 0.1.0\n")),
        "{inspected}"
    );

    let tested = ok(steward(cache.path(), cwd, &["plugin", "test", name]));
    assert!(
        tested.contains("ok    basic: 1 findings, 1 changes"),
        "{tested}"
    );
    assert!(tested.contains("1 cases, 1 passed, 0 failed"), "{tested}");

    let device = dir.join("device.toml");
    // `plugin run --plan` of the built component on the fixture, granted
    // what it imports, with `extra` arguments.
    let run = |extra: &[&str]| {
        let mut args = vec![
            "plugin",
            "run",
            wasm.as_str(),
            "--device",
            device.to_str().unwrap(),
            "--grant",
            "accounts",
            "--grant",
            "tickets",
            "--plan",
        ];
        args.extend_from_slice(extra);
        steward(cache.path(), cwd, &args)
    };
    let planned = ok(run(&[]));
    assert!(planned.contains("locked:jdoe"), "{planned}");
    assert!(planned.contains("planned"), "{planned}");

    // JSON speaks the WIT's names in kebab-case, like the API and audit.
    let json: serde_json::Value = serde_json::from_str(&ok(run(&["--json"]))).unwrap();
    assert_eq!(json["findings"][0]["severity"], "warning", "{json}");
    assert_eq!(json["changes"][0]["outcome"], "planned", "{json}");

    // A grant the plugin cannot use is refused, naming it.
    let extra = run(&["--grant", "packages"]);
    assert_eq!(extra.status.code(), Some(2), "{}", text(&extra));
    assert!(
        text(&extra).contains("`packages` is granted but the plugin does not import it"),
        "{}",
        text(&extra)
    );

    if lang == "rust" {
        // The generated unit test runs natively against the SDK's test
        // device: no component, no host.
        let unit = Command::new("cargo")
            .args(["test", "--quiet"])
            .current_dir(&dir)
            .env_remove("CARGO_TARGET_DIR")
            .output()
            .unwrap();
        let shown = text(&unit);
        assert!(unit.status.success(), "{shown}");
        assert!(shown.contains("1 passed"), "{shown}");
    }

    // The expectation changed: the test fails and shows what differs.
    let case = dir.join("tests/basic.toml");
    let edited = std::fs::read_to_string(&case)
        .unwrap()
        .replace("severity = \"warning\"", "severity = \"critical\"");
    std::fs::write(&case, edited).unwrap();
    let failed = steward(cache.path(), cwd, &["plugin", "test", name]);
    assert_eq!(failed.status.code(), Some(1), "{}", text(&failed));
    let shown = text(&failed);
    assert!(shown.contains("FAIL  basic"), "{shown}");
    assert!(
        shown.contains("- finding locked:jdoe (critical)"),
        "{shown}"
    );
    assert!(shown.contains("+ finding locked:jdoe (warning)"), "{shown}");
}

#[test]
fn a_rust_plugin_is_made_built_and_tested_outside_the_repository() {
    author_cycle("rust", "locked-watch");
}

#[test]
fn a_python_plugin_is_made_built_and_tested_outside_the_repository() {
    author_cycle("python", "locked-watch-py");
}

#[test]
fn the_first_party_python_plugin_passes_its_cases() {
    let cache = tempfile::tempdir().unwrap();
    let root = steward_tests::workspace_root();
    let wasm = steward_tests::python_component("plugins/python/locked-vip");
    let out = ok(steward(
        cache.path(),
        &root,
        &[
            "plugin",
            "test",
            "plugins/python/locked-vip",
            "--wasm",
            wasm.to_str().unwrap(),
        ],
    ));
    assert!(out.contains("4 cases, 4 passed, 0 failed"), "{out}");
    // componentize-py imports `wasi:sockets`: linked, denied at run time.
    let inspected = ok(steward(
        cache.path(),
        &root,
        &["plugin", "inspect", wasm.to_str().unwrap()],
    ));
    assert!(
        inspected.contains("(imported, denied at run time)"),
        "{inspected}"
    );
}

#[test]
fn bad_names_and_capabilities_are_refused_before_anything_is_written() {
    let cache = tempfile::tempdir().unwrap();
    let home = tempfile::tempdir().unwrap();
    for (args, says) in [
        (vec!["plugin", "new", "Bad_Name"], "not a plugin name"),
        (
            vec!["plugin", "new", "fine", "--capability", "network"],
            "not a capability",
        ),
    ] {
        let out = steward(cache.path(), home.path(), &args);
        assert!(!out.status.success());
        assert!(text(&out).contains(says), "{}", text(&out));
    }
    assert_eq!(std::fs::read_dir(home.path()).unwrap().count(), 0);
}
