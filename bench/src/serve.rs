//! Jobs per second through the real server process: `steward serve`
//! (the release binary) with the server's own configuration (its default
//! jobs in flight, claim batch and idle poll; alerting on, with a webhook
//! receiving every alert), driven through its API as an admin would: 1,000
//! simulated devices, a playbook of the trivial plugin's check, runs
//! started back to back with `POST /playbooks/{id}/runs`, each followed
//! to its end with `GET /runs/{id}`. The clock runs from the first start
//! to the last run's end. The baseline, measured in the same run on the
//! same kind of store, is the queue alone (`shared::measure`: the same jobs
//! claimed and completed in-process with no plugin run), so the ratio is
//! what the whole server costs on top of its queue.
//!
//! `cargo build --release -p steward-host -p steward-bench && target/release/serve [RUNS] [sqlite|postgres|both]`
//! (`STEWARD_BENCH_SERVE_CONFIG='max-in-flight = 1024'` adds top-level
//! configuration keys, to compare with the defaults).

#[path = "../../host/tests/support/mod.rs"]
mod support;

mod shared;

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use steward_store::{Store, Tier};
use support::control::{fixture, install, plane_with, runtime_with, simulated_facts, tenant};

const OWNER: &str = "stw_owner_token_for_bench_0123456789abcdef";
const DEVICES: usize = 1000;

fn main() -> anyhow::Result<()> {
    shared::on_two_workers(run)
}

async fn run() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let runs: usize = args.first().map(|a| a.parse()).transpose()?.unwrap_or(20);
    let only = args.get(1).map(String::as_str).unwrap_or("both");
    let steward = steward_tests::workspace_root().join("target/release/steward");
    anyhow::ensure!(
        steward.exists(),
        "{} is missing: cargo build --release -p steward-host",
        steward.display()
    );
    let trivial = steward_tests::component("guest-trivial");
    println!(
        "{runs} runs of the trivial plugin's check over {DEVICES} simulated devices through `steward serve` (alerting and a webhook on), 2 cores shared with this driver"
    );
    if only != "postgres" {
        let baseline = support::sqlite().await;
        let server = tempfile::tempdir()?;
        measure(
            "SQLite",
            None,
            &baseline.store,
            runs,
            &steward,
            &trivial,
            server.path(),
        )
        .await?;
    }
    if only != "sqlite" {
        let baseline = support::postgres().await;
        let served = support::postgres().await;
        let server = tempfile::tempdir()?;
        measure(
            "PostgreSQL",
            Some(&served.url),
            &baseline.store,
            runs,
            &steward,
            &trivial,
            server.path(),
        )
        .await?;
    }
    Ok(())
}

async fn measure(
    name: &str,
    database: Option<&str>,
    baseline_store: &Store,
    runs: usize,
    steward: &Path,
    trivial: &Path,
    dir: &Path,
) -> anyhow::Result<()> {
    // The baseline first, so the server is not running beside it.
    let queue_only = {
        let plugins = tempfile::tempdir()?;
        let plane = plane_with(
            baseline_store,
            plugins.path().into(),
            runtime_with(64, true),
        );
        install(&plane, "guest-trivial", &[]).await;
        let names: Vec<String> = (0..DEVICES).map(|i| format!("pc-{i:04}")).collect();
        let devices: Vec<(&str, &[&str])> = names.iter().map(|n| (n.as_str(), &[][..])).collect();
        let (acme, _) = tenant(baseline_store, "acme", Tier::Managed, &devices, |id, t| {
            simulated_facts(&fixture(id, t.as_str()))
        })
        .await;
        let playbook = plane
            .create_playbook(
                Some(acme),
                "trivial",
                json!([{ "plugin": "trivial" }]),
                json!({}),
            )
            .await?;
        shared::measure(baseline_store, &plane, &playbook.id, runs * DEVICES).await?
    };

    let hooks = Arc::new(AtomicU64::new(0));
    let hook_port = webhook_receiver(hooks.clone()).await?;
    let port = free_port()?;
    let mut config = format!(
        "data-dir = {:?}\nlisten = \"127.0.0.1:{port}\"\nowner-token = {OWNER:?}\n",
        dir.join("data").display().to_string()
    );
    if let Some(url) = database {
        config.push_str(&format!("database = {url:?}\n"));
    }
    // Top-level keys to try another configuration than the defaults
    // (`max-in-flight = 1024`), printed with the figure.
    if let Ok(extra) = std::env::var("STEWARD_BENCH_SERVE_CONFIG") {
        println!("{name}: with {extra:?}");
        config.push_str(&extra);
        config.push('\n');
    }
    config.push_str(&format!(
        "[[plugins]]\nfile = {:?}\n\n[[webhooks]]\nid = \"bench\"\nurl = \"http://127.0.0.1:{hook_port}/hook\"\nsecret = \"0123456789abcdef0123456789abcdef\"\n",
        trivial.display().to_string()
    ));
    let config_path = dir.join("steward.toml");
    std::fs::write(&config_path, config)?;
    let log = std::fs::File::create(dir.join("serve.log"))?;
    let mut server = tokio::process::Command::new(steward)
        .arg("serve")
        .arg("--config")
        .arg(&config_path)
        .env("RUST_LOG", "warn")
        .stdout(log.try_clone()?)
        .stderr(log)
        .kill_on_drop(true)
        .spawn()?;
    let api = Api {
        base: format!("http://127.0.0.1:{port}"),
        http: reqwest::Client::new(),
    };
    api.ready().await?;

    let tenant = api
        .post(
            "/api/v1/tenants",
            json!({ "name": "acme", "tier": "managed" }),
        )
        .await?["id"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    for i in 0..DEVICES {
        let id = format!("pc-{i:04}");
        api.post(
            "/api/v1/devices",
            json!({ "tenant_id": tenant, "name": id, "tags": ["bench"],
                    "facts": simulated_facts(&fixture(&id, &tenant)) }),
        )
        .await?;
    }
    let playbook = api
        .post(
            "/api/v1/playbooks",
            json!({ "tenant_id": tenant, "name": "trivial", "steps": [{ "plugin": "trivial" }],
                    "target": { "tags": ["bench"] } }),
        )
        .await?["id"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    let start_run = format!("/api/v1/playbooks/{playbook}/runs");

    // Warm up: compile, load, resolve every device once.
    let warm = api.post(&start_run, json!({})).await?;
    api.wait_run(warm["id"].as_str().unwrap_or_default())
        .await?;

    let started = Instant::now();
    let mut ids = Vec::new();
    for _ in 0..runs {
        ids.push(
            api.post(&start_run, json!({})).await?["id"]
                .as_str()
                .unwrap_or_default()
                .to_owned(),
        );
    }
    let enqueued = started.elapsed();
    let mut succeeded = 0;
    for id in &ids {
        let run = api.wait_run(id).await?;
        succeeded += run["jobs"]["succeeded"].as_u64().unwrap_or(0);
    }
    let elapsed = started.elapsed();
    server.start_kill()?;
    let _ = server.wait().await;
    let count = runs * DEVICES;
    anyhow::ensure!(
        succeeded == count as u64,
        "{succeeded} of {count} jobs succeeded (see {})",
        dir.join("serve.log").display()
    );
    let how = format!(
        "through steward serve ({} webhook deliveries)",
        hooks.load(Ordering::Relaxed)
    );
    shared::report(name, &how, count, elapsed, enqueued, queue_only);
    Ok(())
}

/// A free loopback port (free when this returns).
fn free_port() -> anyhow::Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}

/// A webhook receiver answering 200 to every POST, counting them; its
/// port.
async fn webhook_receiver(count: Arc<AtomicU64>) -> anyhow::Result<u16> {
    use tokio::io::{AsyncBufReadExt as _, AsyncReadExt as _, AsyncWriteExt as _};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let port = listener.local_addr()?.port();
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let count = count.clone();
            tokio::spawn(async move {
                let mut conn = tokio::io::BufReader::new(stream);
                loop {
                    let mut length = 0usize;
                    let mut line = String::new();
                    loop {
                        line.clear();
                        if conn.read_line(&mut line).await.unwrap_or(0) == 0 {
                            return;
                        }
                        if line == "\r\n" {
                            break;
                        }
                        if let Some((k, v)) = line.split_once(':')
                            && k.eq_ignore_ascii_case("content-length")
                        {
                            length = v.trim().parse().unwrap_or(0);
                        }
                    }
                    let mut body = vec![0; length];
                    if conn.read_exact(&mut body).await.is_err() {
                        return;
                    }
                    count.fetch_add(1, Ordering::Relaxed);
                    if conn
                        .get_mut()
                        .write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n")
                        .await
                        .is_err()
                    {
                        return;
                    }
                }
            });
        }
    });
    Ok(port)
}

struct Api {
    base: String,
    http: reqwest::Client,
}

impl Api {
    async fn ready(&self) -> anyhow::Result<()> {
        let deadline = Instant::now() + Duration::from_secs(120);
        while Instant::now() < deadline {
            if let Ok(r) = self.http.get(format!("{}/readyz", self.base)).send().await
                && r.status().is_success()
            {
                return Ok(());
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        anyhow::bail!("steward serve did not become ready in 120 s")
    }

    async fn post(&self, path: &str, body: Value) -> anyhow::Result<Value> {
        let resp = self
            .http
            .post(format!("{}{path}", self.base))
            .bearer_auth(OWNER)
            .json(&body)
            .send()
            .await?;
        let status = resp.status();
        let value: Value = resp.json().await?;
        anyhow::ensure!(status.is_success(), "POST {path}: {status} {value}");
        Ok(value)
    }

    /// Follows a run until it ends (every 100 ms); the run with its jobs
    /// per state.
    async fn wait_run(&self, id: &str) -> anyhow::Result<Value> {
        loop {
            let run: Value = self
                .http
                .get(format!("{}/api/v1/runs/{id}", self.base))
                .bearer_auth(OWNER)
                .send()
                .await?
                .json()
                .await?;
            if run["status"] != "running" {
                return Ok(run);
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}
