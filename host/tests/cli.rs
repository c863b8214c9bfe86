//! The `steward` binary's local runner, driven as a user would.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use serde_json::Value;

fn template() -> PathBuf {
    steward_tests::component("steward-plugin-template")
}

fn fixture() -> PathBuf {
    steward_tests::workspace_root().join("plugins/template/device.toml")
}

fn steward(cache: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_steward"))
        .env("STEWARD_CACHE_DIR", cache)
        .env_remove("STEWARD_LOG")
        .args(args)
        .output()
        .expect("steward runs")
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

#[test]
fn inspect_prints_the_description_and_requested_capabilities() {
    let cache = tempfile::tempdir().unwrap();
    let out = steward(
        cache.path(),
        &["plugin", "inspect", template().to_str().unwrap()],
    );
    assert!(out.status.success(), "{}", stderr(&out));
    let text = stdout(&out);
    assert!(text.starts_with("template 0.1.0\n"), "{text}");
    assert!(
        text.contains("requests:  log, config, clock, inventory, tickets"),
        "{text}"
    );
    assert!(text.contains("eol-warning-days"), "{text}");
    assert!(text.contains("(default 90)"), "{text}");
    assert!(text.contains("wit:       steward:plugin@0.2.0\n"), "{text}");
}

#[test]
fn a_second_inspect_loads_the_precompiled_artifact() {
    let cache = tempfile::tempdir().unwrap();
    let file = template();
    let args = ["plugin", "inspect", file.to_str().unwrap(), "--json"];
    let first: Value = serde_json::from_slice(&steward(cache.path(), &args).stdout).unwrap();
    let second: Value = serde_json::from_slice(&steward(cache.path(), &args).stdout).unwrap();
    assert_eq!(first["artifact"], "compiled");
    assert_eq!(second["artifact"], "cached");
    assert_eq!(first["digest"], second["digest"]);
}

fn run_json(cache: &Path, extra: &[&str]) -> (Output, Value) {
    let file = template();
    let device = fixture();
    let mut args = vec![
        "plugin",
        "run",
        file.to_str().unwrap(),
        "--device",
        device.to_str().unwrap(),
        "--grant",
        "inventory",
        "--grant",
        "tickets=hardware",
        "--json",
    ];
    args.extend_from_slice(extra);
    let out = steward(cache, &args);
    let json = serde_json::from_slice(&out.stdout).unwrap_or(Value::Null);
    (out, json)
}

#[test]
fn run_plans_then_applies_the_same_changes() {
    let cache = tempfile::tempdir().unwrap();
    let (out, plan) = run_json(cache.path(), &["--plan"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let (out, apply) = run_json(cache.path(), &[]);
    assert!(out.status.success(), "{}", stderr(&out));

    assert_eq!(plan["findings"], apply["findings"]);
    let ids: Vec<&str> = plan["findings"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, ["failing-disk:sdb", "os-end-of-life"]);
    assert_eq!(plan["changes"][0]["outcome"], "planned");
    assert_eq!(apply["changes"][0]["outcome"], "applied");
    assert_eq!(plan["changes"][0]["target"], apply["changes"][0]["target"]);
    assert_eq!(plan["audit"][0]["outcome"]["status"], "planned");
    assert_eq!(apply["audit"][0]["outcome"]["status"], "applied");
    assert_eq!(apply["audit"][0]["function"], "file");
}

#[test]
fn run_refuses_bad_input_with_clear_errors() {
    let cache = tempfile::tempdir().unwrap();

    let (out, _) = run_json(cache.path(), &["--param", "eol-warning-days=soon"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        stderr(&out).contains("parameter `eol-warning-days` expects an integer, got `soon`"),
        "{}",
        stderr(&out)
    );

    let (out, _) = run_json(cache.path(), &["--param", "colour=red"]);
    assert!(
        stderr(&out).contains("unknown parameter `colour`"),
        "{}",
        stderr(&out)
    );

    let (out, _) = run_json(cache.path(), &["--grant", "network"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        stderr(&out).contains("unknown capability `network`"),
        "{}",
        stderr(&out)
    );

    let not_wasm = cache.path().join("plugin.wasm");
    std::fs::write(&not_wasm, "#!/bin/sh\necho hi\n").unwrap();
    let out = steward(
        cache.path(),
        &["plugin", "inspect", not_wasm.to_str().unwrap()],
    );
    assert_eq!(out.status.code(), Some(2));
    assert!(
        stderr(&out).contains("not a WebAssembly file"),
        "{}",
        stderr(&out)
    );

    let device = fixture();
    let file = template();
    let out = steward(
        cache.path(),
        &[
            "plugin",
            "run",
            file.to_str().unwrap(),
            "--device",
            device.to_str().unwrap(),
            "--grant",
            "inventory",
        ],
    );
    assert_eq!(out.status.code(), Some(2));
    assert!(
        stderr(&out).contains("the `tickets` capability, which was not granted"),
        "{}",
        stderr(&out)
    );

    let bad_fixture = cache.path().join("device.toml");
    std::fs::write(&bad_fixture, "[facts]\nid = 3\n").unwrap();
    let out = steward(
        cache.path(),
        &[
            "plugin",
            "run",
            file.to_str().unwrap(),
            "--device",
            bad_fixture.to_str().unwrap(),
            "--grant",
            "inventory",
            "--grant",
            "tickets",
        ],
    );
    assert_eq!(out.status.code(), Some(2));
    assert!(
        stderr(&out).contains("invalid device fixture"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn a_local_run_only_checks_unless_told_to_remediate() {
    let cache = tempfile::tempdir().unwrap();
    let patching = steward_tests::component("steward-plugin-patching");
    let out = steward(
        cache.path(),
        &[
            "plugin",
            "run",
            patching.to_str().unwrap(),
            "--device",
            "local",
            "--grant",
            "packages",
            "--json",
        ],
    );
    assert!(out.status.success(), "{}", stderr(&out));
    let report: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(report["mode"], "check");
    assert!(report["findings"].is_array());
    assert_eq!(report["changes"], serde_json::json!([]));
    assert_eq!(report["audit"], serde_json::json!([]));
}

#[test]
fn sla_reports_every_tier_from_the_configured_store() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("steward.toml");
    std::fs::write(
        &config,
        format!(
            "data-dir = {:?}\n",
            dir.path().join("data").display().to_string()
        ),
    )
    .unwrap();
    let out = steward(
        dir.path(),
        &[
            "sla",
            "--config",
            config.to_str().unwrap(),
            "--json",
            "--vip-hours",
            "2",
        ],
    );
    assert!(out.status.success(), "{}", stderr(&out));
    let report: Value = serde_json::from_str(&stdout(&out)).unwrap();
    let tiers: Vec<(&str, i64)> = report
        .as_array()
        .unwrap()
        .iter()
        .map(|t| {
            (
                t["tier"].as_str().unwrap(),
                t["target_seconds"].as_i64().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        tiers,
        [("vip", 7200), ("managed", 86400), ("on-demand", 259200)]
    );
    assert!(
        dir.path().join("data/steward.db").exists(),
        "the store was created"
    );

    let bad = dir.path().join("bad.toml");
    std::fs::write(&bad, "colour = \"red\"\n").unwrap();
    let out = steward(dir.path(), &["sla", "--config", bad.to_str().unwrap()]);
    assert!(!out.status.success());
    assert!(stderr(&out).contains("colour"), "{}", stderr(&out));
}

/// The README's API walkthrough, run as written: `steward serve` with
/// docs/steward.toml (the configuration `.ci/serve` uses), then the block
/// marked `<!-- walkthrough -->` through bash, with the token the server
/// printed and this build's `steward` first on the PATH (the block's own
/// `export` lines say the same for a reader).
#[test]
fn the_readme_walkthrough_works_as_written() {
    use std::io::BufRead as _;

    let root = steward_tests::workspace_root();
    // The plugins docs/steward.toml installs, built where it expects them.
    steward_tests::component("steward-plugin-patching");
    let readme = std::fs::read_to_string(root.join("README.md")).unwrap();
    let block = readme
        .split("<!-- walkthrough -->")
        .nth(1)
        .expect("the README marks its walkthrough")
        .split("```sh\n")
        .nth(1)
        .unwrap()
        .split("\n```")
        .next()
        .unwrap();
    let script: String = block
        .lines()
        .filter(|l| !l.starts_with("export "))
        .map(|l| format!("{l}\n"))
        .collect();
    assert!(script.contains("steward runs watch"), "{script}");

    let data = tempfile::tempdir().unwrap();
    let mut server = Command::new(env!("CARGO_BIN_EXE_steward"))
        .current_dir(&root)
        .args([
            "serve",
            "--config",
            "docs/steward.toml",
            "--listen",
            "127.0.0.1:0",
        ])
        .arg("--data-dir")
        .arg(data.path())
        .env("STEWARD_CACHE_DIR", data.path().join("cache"))
        .env_remove("STEWARD_OWNER_TOKEN")
        .env_remove("STEWARD_LOG")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("steward serve starts");
    let mut lines = std::io::BufReader::new(server.stdout.take().unwrap()).lines();
    let mut token = None;
    let mut url = None;
    while token.is_none() || url.is_none() {
        let line = lines
            .next()
            .expect("serve prints its token and address")
            .unwrap();
        if let Some(t) = line.strip_prefix("steward: first owner token (shown once, keep it): ") {
            token = Some(t.to_owned());
        }
        if let Some(u) = line.strip_prefix("steward: API listening on ") {
            url = Some(u.to_owned());
        }
    }
    let bin_dir = Path::new(env!("CARGO_BIN_EXE_steward"))
        .parent()
        .unwrap()
        .to_owned();
    let path = format!(
        "{}:{}",
        bin_dir.display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let out = Command::new("bash")
        .current_dir(&root)
        .args(["-euo", "pipefail", "-c", &script])
        .env("STEWARD_TOKEN", token.unwrap())
        .env("STEWARD_URL", url.unwrap())
        .env("PATH", path)
        .output()
        .expect("bash runs");
    let _ = Command::new("kill").arg(server.id().to_string()).status();
    let stopped = server.wait().unwrap();
    assert!(
        out.status.success(),
        "the walkthrough failed\nstdout:\n{}\nstderr:\n{}",
        stdout(&out),
        stderr(&out)
    );
    let printed = stdout(&out);
    assert!(
        printed.contains("run ") && printed.contains(" succeeded"),
        "{printed}"
    );
    assert!(
        printed.contains("patching"),
        "the plugin and its findings are listed: {printed}"
    );
    assert!(stopped.success(), "serve stops cleanly on SIGTERM");
}

/// A plugin's text never reaches the terminal raw: escape sequences,
/// bells, carriage returns, NULs and newlines in its findings and log
/// lines are printed escaped, so it can neither drive the terminal nor
/// forge a host log line.
#[test]
fn plugin_text_is_escaped_before_it_reaches_a_terminal() {
    let cache = tempfile::tempdir().unwrap();
    let hostile = steward_tests::component("guest-hostile");
    let out = steward(
        cache.path(),
        &[
            "plugin",
            "run",
            hostile.to_str().unwrap(),
            "--device",
            "local",
            "--grant",
            "packages",
            "--grant",
            "accounts=jdoe",
            "--param",
            "behaviour=terminal-tricks",
        ],
    );
    assert!(out.status.success(), "{}", stderr(&out));
    let printed = out.stdout.clone();
    for raw in [0x1b_u8, 0x07, 0x00, b'\r'] {
        assert!(
            !printed.contains(&raw),
            "byte {raw:#x} reached the terminal: {}",
            stdout(&out)
        );
    }
    let text = stdout(&out);
    assert!(text.contains("\\u{1b}[2J"), "{text}");
    assert!(
        !text.lines().any(|l| l.starts_with("INFO steward: forged")),
        "a forged line: {text}"
    );
    assert!(
        text.contains("fine\\nINFO steward: forged host line"),
        "{text}"
    );
}

#[test]
fn inspect_refuses_a_descriptor_that_breaks_the_rules() {
    let cache = tempfile::tempdir().unwrap();
    let bad = steward_tests::component("guest-bad-descriptor");
    let out = steward(cache.path(), &["plugin", "inspect", bad.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(2), "{}", stdout(&out));
    assert!(
        stderr(&out).contains("invalid output: describe"),
        "{}",
        stderr(&out)
    );
    assert!(!out.stderr.contains(&0x1b) && !out.stdout.contains(&0x1b));
}

/// A component larger than the server takes is refused before a byte is
/// sent, with the limit named; not as "cannot reach the server … broken
/// pipe", which is all a client sees when the server stops reading.
#[test]
fn an_oversized_upload_is_refused_with_the_limit_not_a_broken_pipe() {
    let dir = tempfile::tempdir().unwrap();
    let big = dir.path().join("big.wasm");
    std::fs::File::create(&big)
        .unwrap()
        .set_len(200 << 20)
        .unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_steward"))
        .env("STEWARD_URL", "http://127.0.0.1:9")
        .env("STEWARD_TOKEN", "unused")
        .args(["plugins", "install", big.to_str().unwrap()])
        .output()
        .expect("steward runs");
    assert!(!out.status.success());
    let err = stderr(&out);
    assert!(
        err.contains("200.0 MiB") && err.contains("at most 48.0 MiB"),
        "{err}"
    );
    assert!(!err.contains("cannot reach"), "{err}");
}

/// `steward tenants list | head -1`: when the reader closes the pipe early
/// the CLI ends quietly (killed by SIGPIPE, as other CLIs are), not with a
/// panic from `println!`.
#[test]
fn a_closed_output_pipe_ends_the_cli_quietly() {
    use std::io::{BufRead as _, Read as _, Write as _};
    use std::os::unix::process::ExitStatusExt as _;
    let body = serde_json::to_vec(
        &(0..20_000)
            .map(|i| serde_json::json!({ "id": format!("t-{i}"), "name": format!("tenant {i}"), "tier": "vip" }))
            .collect::<Vec<_>>(),
    )
    .unwrap();
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    std::thread::spawn(move || {
        if let Ok((mut conn, _)) = listener.accept() {
            let mut request = [0u8; 4096];
            let _ = conn.read(&mut request);
            let _ = write!(
                conn,
                "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n",
                body.len()
            );
            let _ = conn.write_all(&body);
        }
    });
    let mut child = Command::new(env!("CARGO_BIN_EXE_steward"))
        .args(["tenants", "list", "--url", &url, "--token", "stw_unused"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut first = String::new();
    std::io::BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut first)
        .unwrap();
    // The reader is gone (its end of the pipe dropped with it).
    let status = child.wait().unwrap();
    let mut err = String::new();
    child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut err)
        .unwrap();
    assert!(first.contains("ID"), "{first}");
    assert!(!err.contains("panicked"), "{err}");
    assert!(
        status.success() || status.signal() == Some(13),
        "{status:?}: {err}"
    );
}
