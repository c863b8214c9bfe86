//! End-to-end jobs per second through the executor, on SQLite and on
//! PostgreSQL: enqueue → claim → run the trivial plugin's check through
//! the runtime (grants, limits, WASI sandbox, device providers) → persist
//! its finding and result. The baseline, measured in the same run on the
//! same store, is the queue alone (the same jobs claimed and completed
//! with no plugin run), so the ratio is what running the plugin costs.
//! Both take jobs while the runs are being started, as a running server
//! does; the clock runs from the first enqueue to the last result.
//!
//! `cargo run --release -p steward-bench --bin jobs [JOBS] [sqlite|postgres|both]`.
//! PostgreSQL comes from `STEWARD_TEST_POSTGRES_URL` or a throwaway cluster
//! started for the run (see `host/tests/support`).

#[path = "../../host/tests/support/mod.rs"]
mod support;

mod shared;

use shared::enqueue;

use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::json;
use steward_control::executor::{Executor, ExecutorConfig};
use steward_control::plane::ControlPlane;
use steward_control::providers::StandardProviders;
use steward_runtime::device::local::LocalConfig;
use steward_store::{JobStatus, RunId, Store, Tier};
use support::control::{fixture, install, plane_with, runtime_with, simulated_facts, tenant};
use tokio::sync::watch;

fn main() -> anyhow::Result<()> {
    shared::on_two_workers(run)
}

async fn run() -> anyhow::Result<()> {
    if std::env::var_os("RUST_LOG").is_some() {
        tracing_subscriber::fmt()
            .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
            .with_writer(std::io::stderr)
            .init();
    }
    let args: Vec<String> = std::env::args().skip(1).collect();
    let jobs: usize = args
        .first()
        .map(|a| a.parse())
        .transpose()?
        .unwrap_or(20_000);
    let only = args.get(1).map(String::as_str).unwrap_or("both");
    println!("{jobs} jobs of the trivial plugin's check over 1,000 simulated devices, 2 cores");
    if only != "postgres" {
        let db = support::sqlite().await;
        println!("SQLite: the store's settings, WAL with synchronous = NORMAL");
        measure("SQLite", &db.store, jobs).await?;
    }
    if only != "sqlite" {
        let db = support::postgres().await;
        let mut conn = <sqlx::AnyConnection as sqlx::Connection>::connect(&db.url).await?;
        let mut settings = Vec::new();
        for name in ["fsync", "synchronous_commit"] {
            let value: String = sqlx::query_scalar(&format!("SHOW {name}"))
                .fetch_one(&mut conn)
                .await?;
            settings.push(format!("{name} = {value}"));
        }
        println!("PostgreSQL server: {}", settings.join(", "));
        measure("PostgreSQL", &db.store, jobs).await?;
    }
    Ok(())
}

async fn measure(name: &str, store: &Store, jobs: usize) -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    // As `steward serve` runs: the pooling allocator, 64 instances.
    let plane = plane_with(store, dir.path().into(), runtime_with(64, true));
    install(&plane, "guest-trivial", &[]).await;
    let names: Vec<String> = (0..1000).map(|i| format!("pc-{i:04}")).collect();
    let devices: Vec<(&str, &[&str])> = names.iter().map(|n| (n.as_str(), &[][..])).collect();
    let (acme, _) = tenant(store, "acme", Tier::Managed, &devices, |id, t| {
        simulated_facts(&fixture(id, t.as_str()))
    })
    .await;
    let playbook = plane
        .create_playbook(
            Some(acme.clone()),
            "trivial",
            json!([{ "plugin": "trivial" }]),
            json!({}),
        )
        .await?;
    let providers = Arc::new(StandardProviders::new(LocalConfig::default()));

    // Warm up: compile, load, resolve every device once.
    let warm = plane.start_run(&playbook.id, None).await?;
    let (stop, done) = executor(&plane, providers.clone());
    wait(store, &[warm]).await?;
    stop.send(true)?;
    done.await?;

    // Both measurements run as a server does: runs are started while the
    // jobs of earlier ones are already being taken, and the clock runs
    // from the first enqueue to the last result persisted.
    //
    // Baseline: the same runs through the queue alone, recording the same
    // finding and result the plugin returns, with no plugin run.
    let queue_only = shared::measure(store, &plane, &playbook.id, jobs).await?;

    // End to end: the executor is running when the runs are started.
    let started = Instant::now();
    let (stop, done) = executor(&plane, providers.clone());
    let (runs, count) = enqueue(plane.clone(), playbook.id.clone(), jobs).await?;
    let enqueued = started.elapsed();
    wait(store, &runs).await?;
    let elapsed = started.elapsed();
    stop.send(true)?;
    done.await?;
    let mut succeeded = 0;
    for run in &runs {
        succeeded += store
            .jobs_of_run(run)
            .await?
            .iter()
            .filter(|j| j.status == JobStatus::Succeeded)
            .count();
    }
    assert_eq!(succeeded, count, "every job succeeded");

    shared::report(name, "end to end", count, elapsed, enqueued, queue_only);
    Ok(())
}

fn executor(
    plane: &ControlPlane,
    providers: Arc<StandardProviders>,
) -> (watch::Sender<bool>, tokio::task::JoinHandle<()>) {
    let mut config = ExecutorConfig::new("bench");
    config.max_in_flight = 1024;
    config.claim_batch = 512;
    config.complete_batch = 1024;
    config.idle_poll = Duration::from_millis(5);
    let executor = Executor::new(
        config,
        plane.store().clone(),
        plane.library().clone(),
        providers,
        None,
    );
    let (tx, rx) = watch::channel(false);
    (tx, tokio::spawn(async move { executor.run(rx).await }))
}

async fn wait(store: &Store, runs: &[RunId]) -> anyhow::Result<()> {
    for run in runs {
        loop {
            let r = store.run(run).await?.expect("run exists");
            if r.status != steward_store::RunStatus::Running {
                break;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }
    Ok(())
}
