//! The web console in a real headless browser: Debian's `chromium` and
//! `chromium-driver`, driven by Selenium (`host/tests/console/flows.py`,
//! from the pinned venv `.ci/setup` makes under `target/selenium`), against
//! the same server the API tests start. This file seeds two tenants, a
//! technician and a viewer of the first; the script signs in, goes fleet →
//! device → run, starts a run and watches it finish live, approves a
//! remediation and sees its run complete, opens another tenant's URLs (404
//! pages), posts a form without its CSRF token, signs out, and as the
//! viewer finds no change buttons and has a forged post refused. The
//! checks after it read the store through the API: what the browser did
//! is audited, and what was refused changed nothing.
//!
//! Screenshots of every page are kept in `target/console-screenshots/`.

use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

use reqwest::StatusCode;
use serde_json::{Value, json};

use super::{OWNER, Running, ended, start, tenant_with_device};

/// The longest the browser flows may take before they are killed.
const DEADLINE: Duration = Duration::from_secs(5 * 60);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_console_flows_in_a_real_browser() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let python = root.join("target/selenium/bin/python");
    assert!(
        python.is_file(),
        "Selenium is not installed at {}: run .ci/setup",
        python.display()
    );
    let api = start().await;
    api.install_patching().await;
    let (acme, device) = tenant_with_device(&api, "acme").await;
    let (bravo, bravo_device) = tenant_with_device(&api, "bravo").await;
    let check = api
        .create(
            "/api/v1/playbooks",
            json!({ "tenant_id": acme, "name": "patch status", "steps": [{ "plugin": "patching" }] }),
        )
        .await;
    api.create(
        "/api/v1/playbooks",
        json!({ "tenant_id": acme, "name": "patch now",
                "steps": [{ "plugin": "patching", "mode": "remediate", "requires-approval": true,
                            "params": { "security-only": false } }] }),
    )
    .await;
    api.create(
        "/api/v1/schedules",
        json!({ "playbook_id": check["id"], "spec": { "cron": "0 7 * * 1-5", "timezone": "Europe/Berlin",
                "window": { "days": ["mon", "tue"], "start": "06:00", "end": "08:00" } } }),
    )
    .await;
    let bravo_playbook = api
        .create(
            "/api/v1/playbooks",
            json!({ "tenant_id": bravo, "name": "bravo check", "steps": [{ "plugin": "patching" }] }),
        )
        .await;
    let bravo_run = api
        .create(
            &format!(
                "/api/v1/playbooks/{}/runs",
                bravo_playbook["id"].as_str().unwrap()
            ),
            json!({}),
        )
        .await;
    let bravo_run = bravo_run["id"].as_str().unwrap().to_owned();
    api.wait_for(&format!("/api/v1/runs/{bravo_run}"), ended)
        .await;
    let tech = user_token(&api, "tech-acme", "technician", &acme).await;
    let viewer = user_token(&api, "viewer-acme", "viewer", &acme).await;

    let work = tempfile::tempdir().unwrap();
    let screenshots = root.join("target/console-screenshots");
    let config = work.path().join("flows.json");
    std::fs::write(
        &config,
        json!({
            "base": api.base,
            "screenshots": screenshots,
            "tech_token": tech,
            "viewer_token": viewer,
            "device_name": "acme-ws-01",
            "other_device_name": "bravo-ws-01",
            "other_device": bravo_device,
            "other_run": bravo_run,
            "check_playbook": check["id"],
            "tenant": acme,
            "month": chrono::Utc::now().format("%Y-%m").to_string(),
        })
        .to_string(),
    )
    .unwrap();
    let script = root.join("host/tests/console/flows.py");
    let mut child = tokio::process::Command::new(&python)
        .arg(&script)
        .arg(&config)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap_or_else(|e| panic!("run {}: {e}", python.display()));
    let stdout = child.stdout.take().unwrap();
    let stderr = child.stderr.take().unwrap();
    let read = |mut r: Box<dyn tokio::io::AsyncRead + Unpin + Send>| {
        tokio::spawn(async move {
            let mut text = String::new();
            tokio::io::AsyncReadExt::read_to_string(&mut r, &mut text)
                .await
                .ok();
            text
        })
    };
    let (out, err) = (read(Box::new(stdout)), read(Box::new(stderr)));
    let status = match tokio::time::timeout(DEADLINE, child.wait()).await {
        Ok(s) => Some(s.unwrap()),
        Err(_) => {
            let _ = child.kill().await;
            None
        }
    };
    let (out, err) = (out.await.unwrap(), err.await.unwrap());
    eprintln!("{out}");
    match status {
        Some(s) if s.success() => {}
        Some(s) => panic!("the browser flows failed ({s}):\n{out}\n{err}"),
        None => panic!(
            "the browser flows did not finish in {} s:\n{out}\n{err}",
            DEADLINE.as_secs()
        ),
    }
    assert!(out.contains("console flows passed"), "{out}");

    // What the browser did, as the API sees it.
    let (_, audit) = api.get(OWNER, "/api/v1/audit?limit=500").await;
    let events = audit["items"].as_array().unwrap();
    let count = |action: &str, actor: &str| {
        events
            .iter()
            .filter(|e| e["action"] == action && e["actor"] == actor)
            .count()
    };
    assert_eq!(count("console.sign-in", "user:tech-acme"), 1, "{audit}");
    assert_eq!(count("console.sign-out", "user:tech-acme"), 1, "{audit}");
    assert_eq!(count("console.sign-in", "user:viewer-acme"), 1, "{audit}");
    let approved: Vec<&Value> = events
        .iter()
        .filter(|e| e["action"] == "approval.approve")
        .collect();
    assert_eq!(approved.len(), 1, "{audit}");
    assert_eq!(approved[0]["actor"], "user:tech-acme");
    assert_eq!(
        approved[0]["detail"]["comment"],
        "approved in the browser test"
    );
    // Three runs were started in the browser (a check, a fix approved, a
    // fix left waiting); the posts without a valid CSRF token and the
    // viewer's forged post started none.
    let (_, runs) = api.get(OWNER, &format!("/api/v1/runs?tenant={acme}")).await;
    assert_eq!(runs["items"].as_array().unwrap().len(), 3, "{runs}");
    assert_eq!(count("run.start", "user:tech-acme"), 3, "{audit}");
    assert_eq!(count("run.start", "user:viewer-acme"), 0, "{audit}");
    let (status, devices) = api.get(OWNER, &format!("/api/v1/devices/{device}")).await;
    assert_eq!(status, StatusCode::OK, "{devices}");
    // The same report through the CLI: the figures as JSON, and a PDF
    // printed by the machine's Chromium.
    let month = chrono::Utc::now().format("%Y-%m").to_string();
    let report_json = work.path().join("report.json");
    cli_report(&api.base, &tech, &month, "json", &report_json).await;
    let figures: Value = serde_json::from_slice(&std::fs::read(&report_json).unwrap()).unwrap();
    assert_eq!(figures["tenant"]["name"], "acme");
    assert_eq!(figures["devices"], 1);
    let pdf = work.path().join("report.pdf");
    cli_report(&api.base, &tech, &month, "pdf", &pdf).await;
    assert!(std::fs::read(&pdf).unwrap().starts_with(b"%PDF"));
    // Another tenant's report is not the technician's to read.
    let (status, _) = api
        .get(&tech, &format!("/api/v1/reports/{bravo}?month={month}"))
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    for page in [
        "login",
        "fleet",
        "device",
        "run",
        "runs",
        "approvals",
        "schedules",
        "plugins",
        "audit",
        "not-found",
        "reports",
        "report",
    ] {
        assert!(
            screenshots.join(format!("{page}.png")).is_file(),
            "no screenshot of {page}"
        );
    }
    api.stop().await;
}

/// `steward report` for tenant `acme` into `output`.
async fn cli_report(base: &str, token: &str, month: &str, format: &str, output: &Path) {
    let out = tokio::process::Command::new(env!("CARGO_BIN_EXE_steward"))
        .args([
            "report", "--url", base, "--token", token, "--tenant", "acme",
        ])
        .args(["--month", month, "--format", format, "-o"])
        .arg(output)
        .output()
        .await
        .unwrap();
    assert!(
        out.status.success(),
        "steward report --format {format}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A user of `tenant` with `role`, and a token for it.
async fn user_token(api: &Running, name: &str, role: &str, tenant: &str) -> String {
    api.create(
        "/api/v1/users",
        json!({ "name": name, "role": role, "tenants": [tenant] }),
    )
    .await;
    let t = api
        .create(
            "/api/v1/tokens",
            json!({ "user": name, "label": "console" }),
        )
        .await;
    t["token"].as_str().unwrap().to_owned()
}
