//! The web API against its own OpenAPI document, by Schemathesis: a real
//! server on port 0 (the same `Server` that `steward serve` runs, on
//! SQLite and on PostgreSQL, with the patching plugin installed and a
//! tenant, site, device, playbook and run seeded), and `st run` over
//! `/api/v1/openapi.json` with every check on (configuration in
//! `host/tests/schemathesis.toml`): the examples, coverage and fuzzing
//! phases send the documented requests, schema-valid and schema-invalid,
//! and check that no request makes a server error, that every status,
//! content type, header and body is the one documented, that valid data
//! is accepted and invalid data refused, that undeclared methods get 405,
//! that authentication is enforced, and so on.
//!
//! This proves the document tells clients the truth about the API. The
//! bar is zero failures with every check on: an operation whose rules a
//! JSON schema cannot state gets `positive_data_acceptance` turned off in
//! the configuration file, named there with the reason, and nothing else.
//!
//! Schemathesis comes from `.ci/setup` (a pinned venv under
//! `target/schemathesis`).

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use serde_json::json;

use super::support::control::{fixture, simulated_facts};
use super::{OWNER, Running, start_on};

/// The longest a Schemathesis run may take before it is killed.
const DEADLINE: Duration = Duration::from_secs(8 * 60);

/// How much of Schemathesis' output a failure shows.
const TAIL_LINES: usize = 200;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_api_keeps_to_its_openapi_document_on_sqlite() {
    keeps_to_its_document(None).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_api_keeps_to_its_openapi_document_on_postgres() {
    let db = super::support::postgres().await;
    keeps_to_its_document(Some(&db.url)).await;
}

/// Starts a server on `database` (else SQLite in its data dir), seeds it,
/// runs Schemathesis against it and stops it.
async fn keeps_to_its_document(database: Option<&str>) {
    let st = schemathesis();
    let api = start_on(tempfile::tempdir().unwrap(), database).await;
    seed(&api).await;
    run_schemathesis(&st, &api.base).await;
    api.stop().await;
}

/// The `st` of the venv `.ci/setup` makes.
fn schemathesis() -> PathBuf {
    let st = Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/schemathesis/bin/st");
    assert!(
        st.is_file(),
        "Schemathesis is not installed at {}: run .ci/setup",
        st.display()
    );
    st
}

/// One of each object the id-taking operations look up: a tenant, a site,
/// a simulated server there, a playbook targeting it and a run of it.
async fn seed(api: &Running) {
    api.install_patching().await;
    let tenant = api
        .create(
            "/api/v1/tenants",
            json!({ "name": "acme", "tier": "managed" }),
        )
        .await;
    let t = tenant["id"].as_str().unwrap();
    let site = api
        .create("/api/v1/sites", json!({ "tenant_id": t, "name": "hq" }))
        .await;
    api.create(
        "/api/v1/devices",
        json!({ "tenant_id": t, "site_id": site["id"], "name": "acme-srv-01", "tags": ["server"],
                "facts": simulated_facts(&fixture("acme-srv-01", t)) }),
    )
    .await;
    let playbook = api
        .create(
            "/api/v1/playbooks",
            json!({ "tenant_id": t, "name": "patch status",
                    "steps": [{ "plugin": "patching" }], "target": { "tags": ["server"] } }),
        )
        .await;
    api.create(
        &format!(
            "/api/v1/playbooks/{}/runs",
            playbook["id"].as_str().unwrap()
        ),
        json!({}),
    )
    .await;
}

/// Runs `st` against the server at `base` (killed after [`DEADLINE`]);
/// panics with the tail of its output unless it passes.
async fn run_schemathesis(st: &Path, base: &str) {
    let config = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/schemathesis.toml");
    // Its working directory takes its caches (`.hypothesis`,
    // `.schemathesis`) and the output, stdout and stderr interleaved.
    let work = tempfile::tempdir().unwrap();
    let log_path = work.path().join("schemathesis.log");
    let log = std::fs::File::create(&log_path).unwrap();
    let started = Instant::now();
    // No `--checks`: one on the command line would override the
    // per-operation settings of the configuration file, which turns every
    // check on itself. `--config-file` belongs to `st`, before `run`.
    let mut child = tokio::process::Command::new(st)
        .arg("--config-file")
        .arg(&config)
        .arg("run")
        .arg(format!("{base}/api/v1/openapi.json"))
        .arg("-H")
        .arg(format!("Authorization: Bearer {OWNER}"))
        .args(["--phases", "examples,coverage,fuzzing"])
        .arg("--generation-deterministic")
        .args(["--max-examples", "25"])
        .args(["--workers", "1"])
        .arg("--continue-on-failure")
        .args(["--request-timeout", "10"])
        .arg("--no-color")
        .current_dir(work.path())
        .stdin(Stdio::null())
        .stdout(log.try_clone().unwrap())
        .stderr(log)
        .kill_on_drop(true)
        .spawn()
        .unwrap_or_else(|e| panic!("run {}: {e} (run .ci/setup)", st.display()));
    let waited = tokio::time::timeout(DEADLINE, child.wait()).await;
    let status = match waited {
        Ok(status) => Some(status.expect("wait for Schemathesis")),
        Err(_) => {
            let _ = child.kill().await;
            None
        }
    };
    let took = started.elapsed();
    eprintln!("Schemathesis took {:.1} s", took.as_secs_f64());
    let output = String::from_utf8_lossy(&std::fs::read(&log_path).unwrap()).into_owned();
    let lines: Vec<&str> = output.lines().collect();
    let tail = lines[lines.len().saturating_sub(TAIL_LINES)..].join("\n");
    match status {
        None => panic!(
            "Schemathesis did not finish in {} s and was killed; the last {TAIL_LINES} lines of its output:\n{tail}",
            DEADLINE.as_secs()
        ),
        Some(status) if !status.success() => panic!(
            "Schemathesis failed ({status}) after {:.1} s; the last {TAIL_LINES} lines of its output:\n{tail}",
            took.as_secs_f64()
        ),
        Some(_) => {}
    }
    // It really tested: its summary counts the cases it generated.
    let generated: u64 = lines
        .iter()
        .find_map(|l| l.trim().split_once(" generated, ")?.0.parse().ok())
        .unwrap_or_else(|| panic!("no summary in Schemathesis' output:\n{tail}"));
    eprintln!("Schemathesis generated {generated} cases, no failure");
    assert!(generated >= 1_000, "only {generated} cases:\n{tail}");
}
