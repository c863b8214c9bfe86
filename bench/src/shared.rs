//! What the benchmarks (`jobs`, `serve`, `schedules`) share: their start on two
//! worker threads, and their baseline, the queue alone: runs of the
//! trivial playbook started while their jobs are claimed and completed
//! with the finding and result the trivial plugin returns, no plugin run.

#![allow(dead_code)] // Each benchmark uses a part of it.

use std::time::{Duration, Instant};

use serde_json::json;
use steward_control::plane::ControlPlane;
use steward_store::{Completion, NewFinding, PlaybookId, RunId, Severity, Store, Timestamp};

/// The jobs benchmarks' target, jobs per second.
pub const TARGET: f64 = 10_000.0;

/// Prints one line: `count` jobs `how` in `elapsed` (the last run started
/// at `enqueued`), against the queue alone's `queue_only`, and the target.
pub fn report(
    name: &str,
    how: &str,
    count: usize,
    elapsed: Duration,
    enqueued: Duration,
    queue_only: Duration,
) {
    let rate = |d: Duration| count as f64 / d.as_secs_f64();
    println!(
        "{name:>10}: {:>7.0} jobs/s {how} ({:.2} s, the last run started at {:.2} s) | queue alone {:>7.0} jobs/s | ratio {:.2}x of the queue | target {TARGET:.0}: {}",
        rate(elapsed),
        elapsed.as_secs_f64(),
        enqueued.as_secs_f64(),
        rate(queue_only),
        rate(elapsed) / rate(queue_only),
        if rate(elapsed) >= TARGET {
            "met"
        } else {
            "NOT met"
        },
    );
}

/// Runs `bench` on a two-worker runtime, with the throwaway PostgreSQL
/// cluster durable as a server's (`.ci/postgres`: fsync, synchronous
/// commit and full-page writes on) unless told otherwise.
pub fn on_two_workers<F>(bench: impl FnOnce() -> F) -> anyhow::Result<()>
where
    F: std::future::Future<Output = anyhow::Result<()>>,
{
    if std::env::var_os("RUST_BACKTRACE").is_some_and(|v| v != "0") {
        eprintln!("warning: RUST_BACKTRACE is set; it slows every plugin invocation");
    }
    if std::env::var_os("STEWARD_PG_DURABLE").is_none() {
        // SAFETY: no other thread exists yet (the runtime starts below).
        unsafe { std::env::set_var("STEWARD_PG_DURABLE", "1") };
    }
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?
        .block_on(bench())
}

/// Starts runs of `playbook` (1,000 devices) until `jobs` jobs are queued,
/// completing them as they come; the time from the first enqueue to the
/// last completion.
pub async fn measure(
    store: &Store,
    plane: &ControlPlane,
    playbook: &PlaybookId,
    jobs: usize,
) -> anyhow::Result<Duration> {
    let total = jobs.div_ceil(1000) * 1000;
    let started = Instant::now();
    let enqueuing = tokio::spawn(enqueue(plane.clone(), playbook.clone(), jobs));
    let mut completed = 0;
    while completed < total {
        let claimed = store
            .claim("baseline", 256, Duration::from_secs(60), Timestamp::now())
            .await?;
        if claimed.is_empty() {
            tokio::time::sleep(Duration::from_millis(1)).await;
            continue;
        }
        let completions: Vec<Completion> = claimed
            .iter()
            .map(|j| {
                let mut c =
                    Completion::succeeded(j, json!({ "findings": 1, "critical": 0, "changes": 0 }));
                c.findings = vec![NewFinding {
                    key: "ok".into(),
                    severity: Severity::Info,
                    summary: "all good".into(),
                    detail: String::new(),
                    resource: String::new(),
                    fields: json!({}),
                }];
                c
            })
            .collect();
        completed += store
            .complete("baseline", &completions, Timestamp::now())
            .await?
            .len();
    }
    let elapsed = started.elapsed();
    enqueuing.await??;
    anyhow::ensure!(completed == total, "the baseline completed every job once");
    Ok(elapsed)
}

/// Runs of the playbook until `jobs` jobs are queued (one per device per
/// run).
pub async fn enqueue(
    plane: ControlPlane,
    playbook: PlaybookId,
    jobs: usize,
) -> anyhow::Result<(Vec<RunId>, usize)> {
    let mut runs = Vec::new();
    for _ in 0..jobs.div_ceil(1000) {
        runs.push(plane.start_run(&playbook, None).await?);
    }
    Ok((runs, jobs.div_ceil(1000) * 1000))
}
