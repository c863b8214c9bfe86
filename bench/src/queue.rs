//! Queue throughput on each backend: enqueue, claim and complete 20,000
//! no-op jobs in batches of 256, and print jobs per second.
//!
//! `cargo run --release --example throughput [JOBS] [BATCH] [WORKERS]`.
//! PostgreSQL comes from `STEWARD_TEST_POSTGRES_URL` or a throwaway cluster
//! started for the run (see `tests/support`).

#[path = "../../host/tests/support/mod.rs"]
mod support;

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use serde_json::json;
use steward_store::{
    Completion, DeviceId, JobMode, NewDevice, NewJob, NewTenant, Store, TenantId, Tier, Timestamp,
};

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> anyhow::Result<()> {
    if std::env::var_os("RUST_LOG").is_some() {
        tracing_subscriber::fmt()
            .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
            .with_writer(std::io::stderr)
            .init();
    }
    let args: Vec<String> = std::env::args().skip(1).collect();
    let number = |i: usize, default: usize| -> anyhow::Result<usize> {
        Ok(args
            .get(i)
            .map(|a| a.parse())
            .transpose()?
            .unwrap_or(default))
    };
    let jobs = number(0, 20_000)?;
    let batch = number(1, 256)?;
    let workers = number(2, 2)?;
    let only = args.get(3).map(String::as_str).unwrap_or("both");
    println!("{jobs} no-op jobs, batches of {batch}, {workers} workers, 2 cores");
    if only != "postgres" {
        let db = support::sqlite().await;
        measure("SQLite", &db.store, jobs, batch, workers).await?;
    }
    if only != "sqlite" {
        let db = support::postgres().await;
        measure("PostgreSQL", &db.store, jobs, batch, workers).await?;
    }
    Ok(())
}

async fn measure(
    name: &str,
    store: &Store,
    jobs: usize,
    batch: usize,
    workers: usize,
) -> anyhow::Result<()> {
    let now = Timestamp::now();
    let mut devices = Vec::new();
    for (i, tier) in [Tier::Vip, Tier::Managed, Tier::OnDemand]
        .into_iter()
        .enumerate()
    {
        let tenant = store
            .create_tenant(
                &NewTenant {
                    name: format!("tenant-{i}"),
                    tier,
                    max_concurrent_jobs: None,
                },
                now,
            )
            .await?;
        for d in 0..100 {
            let device = store
                .create_device(&NewDevice::new(tenant.id.clone(), format!("pc-{d}")), now)
                .await?;
            devices.push((tenant.id.clone(), device.id));
        }
    }
    // The run starts with one job (an empty run would finish at once); the
    // rest are enqueued below.
    let (tenant, device) = &devices[0];
    let first = NewJob::new(
        tenant.clone(),
        Some(device.clone()),
        "noop",
        JobMode::Check,
        now,
    );
    let run = store.create_run(None, &[], &[first], now).await?;
    let new_jobs: Vec<NewJob> = (0..jobs - 1)
        .map(|i| {
            let (tenant, device) = &devices[i % devices.len()];
            NewJob::new(
                tenant.clone(),
                Some(device.clone()),
                "noop",
                JobMode::Check,
                now,
            )
        })
        .collect();

    // Phase 1: enqueue.
    let cpu_before = cpu_seconds();
    let started = Instant::now();
    for chunk in new_jobs.chunks(batch) {
        store.enqueue_jobs(&run, chunk, now).await?;
    }
    let enqueue = started.elapsed();

    // Phase 2: workers claim, "run" and complete until the queue is empty.
    let started = Instant::now();
    let claim_nanos = Arc::new(AtomicU64::new(0));
    let complete_nanos = Arc::new(AtomicU64::new(0));
    let mut tasks = Vec::new();
    for w in 0..workers {
        let store = store.clone();
        let (claim_nanos, complete_nanos) = (claim_nanos.clone(), complete_nanos.clone());
        tasks.push(tokio::spawn(async move {
            let worker = format!("worker-{w}");
            let mut done = 0usize;
            loop {
                let t = Instant::now();
                let claimed = store
                    .claim(&worker, batch, Duration::from_secs(60), Timestamp::now())
                    .await?;
                claim_nanos.fetch_add(t.elapsed().as_nanos() as u64, Ordering::Relaxed);
                if claimed.is_empty() {
                    return anyhow::Ok(done);
                }
                let completions: Vec<Completion> = claimed
                    .iter()
                    .map(|j| Completion::succeeded(j, json!({"ok": true})))
                    .collect();
                let t = Instant::now();
                done += store
                    .complete(&worker, &completions, Timestamp::now())
                    .await?
                    .len();
                complete_nanos.fetch_add(t.elapsed().as_nanos() as u64, Ordering::Relaxed);
            }
        }));
    }
    let mut done = 0;
    for t in tasks {
        done += t.await??;
    }
    let process = started.elapsed();
    let cpu = cpu_seconds() - cpu_before;
    assert_eq!(done, jobs, "every job completed once");
    let run_status = store.run(&run).await?.map(|r| r.status);

    let rate = |n: usize, d: Duration| n as f64 / d.as_secs_f64();
    println!(
        "{name:>10}: enqueue {:>8.0} jobs/s | claim+complete {:>8.0} jobs/s | end to end {:>8.0} jobs/s ({:.2} s) | run {:?}",
        rate(jobs, enqueue),
        rate(jobs, process),
        rate(jobs, enqueue + process),
        (enqueue + process).as_secs_f64(),
        run_status,
    );
    println!(
        "{:>10}  CPU (this process + PostgreSQL servers): {:.1} µs per job = {:.0} jobs per CPU-second; load average {}",
        "",
        cpu * 1e6 / jobs as f64,
        jobs as f64 / cpu,
        std::fs::read_to_string("/proc/loadavg")
            .unwrap_or_default()
            .split(' ')
            .next()
            .unwrap_or("?"),
    );
    let (elapsed, cpu) = pipelined(store, &devices, jobs, batch, workers).await?;
    println!(
        "{:>10}  pipelined (enqueuer and workers at once): {:>8.0} jobs/s end to end ({:.2} s), {:.1} CPU-µs per job",
        "",
        rate(jobs, elapsed),
        elapsed.as_secs_f64(),
        cpu * 1e6 / jobs as f64,
    );
    let per_job = |nanos: &AtomicU64| nanos.load(Ordering::Relaxed) as f64 / 1_000.0 / jobs as f64;
    println!(
        "{:>10}  per job: enqueue {:.1} µs, claim {:.1} µs, complete {:.1} µs (busy time summed over workers)",
        "",
        enqueue.as_secs_f64() * 1e6 / jobs as f64,
        per_job(&claim_nanos),
        per_job(&complete_nanos),
    );
    Ok(())
}

/// CPU seconds (user + system) used so far by this process and by every
/// `postgres` process on the machine, from `/proc` (Linux only; 0 elsewhere).
/// The machine is shared, so wall-clock rates depend on what else runs;
/// CPU per job does not.
fn cpu_seconds() -> f64 {
    let ticks_of = |stat: &str| -> u64 {
        // Fields after the command (which is in parentheses): state is
        // field 3, utime 14, stime 15.
        let after = stat.rsplit_once(')').map_or("", |(_, rest)| rest);
        let fields: Vec<&str> = after.split_whitespace().collect();
        let get = |i: usize| {
            fields
                .get(i)
                .and_then(|f| f.parse::<u64>().ok())
                .unwrap_or(0)
        };
        get(11) + get(12)
    };
    let mut ticks = std::fs::read_to_string("/proc/self/stat")
        .map(|s| ticks_of(&s))
        .unwrap_or(0);
    if let Ok(dir) = std::fs::read_dir("/proc") {
        for entry in dir.flatten() {
            let path = entry.path();
            if std::fs::read_to_string(path.join("comm")).is_ok_and(|c| c.trim() == "postgres") {
                ticks += std::fs::read_to_string(path.join("stat"))
                    .map(|s| ticks_of(&s))
                    .unwrap_or(0);
            }
        }
    }
    // USER_HZ is 100 on Linux.
    ticks as f64 / 100.0
}

/// One enqueuer and `workers` workers at once, on `jobs` new jobs:
/// the time from the first enqueue to the last completion, and the CPU
/// seconds it took.
async fn pipelined(
    store: &Store,
    devices: &[(TenantId, DeviceId)],
    jobs: usize,
    batch: usize,
    workers: usize,
) -> anyhow::Result<(Duration, f64)> {
    let now = Timestamp::now();
    let new_job = |i: usize| {
        let (tenant, device) = &devices[i % devices.len()];
        NewJob::new(
            tenant.clone(),
            Some(device.clone()),
            "noop",
            JobMode::Check,
            now,
        )
    };
    let new_jobs: Vec<NewJob> = (0..jobs).map(new_job).collect();
    let done = Arc::new(AtomicU64::new(0));
    let cpu_before = cpu_seconds();
    let started = Instant::now();
    let enqueuer = {
        let store = store.clone();
        tokio::spawn(async move {
            // A run per batch, created with its jobs, as a schedule's firing
            // is (a run ends when its last job does, so jobs cannot trickle
            // into one).
            for chunk in new_jobs.chunks(batch) {
                store.create_run(None, &[], chunk, now).await?;
            }
            anyhow::Ok(())
        })
    };
    let mut tasks = Vec::new();
    for w in 0..workers {
        let store = store.clone();
        let done = done.clone();
        tasks.push(tokio::spawn(async move {
            let worker = format!("pipelined-{w}");
            while done.load(Ordering::Relaxed) < jobs as u64 {
                let claimed = store
                    .claim(&worker, batch, Duration::from_secs(60), Timestamp::now())
                    .await?;
                if claimed.is_empty() {
                    tokio::time::sleep(Duration::from_millis(1)).await;
                    continue;
                }
                let completions: Vec<Completion> = claimed
                    .iter()
                    .map(|j| Completion::succeeded(j, json!({"ok": true})))
                    .collect();
                let n = store
                    .complete(&worker, &completions, Timestamp::now())
                    .await?
                    .len();
                done.fetch_add(n as u64, Ordering::Relaxed);
            }
            anyhow::Ok(())
        }));
    }
    enqueuer.await??;
    for t in tasks {
        t.await??;
    }
    let elapsed = started.elapsed();
    anyhow::ensure!(
        done.load(Ordering::Relaxed) == jobs as u64,
        "every job completed once"
    );
    Ok((elapsed, cpu_seconds() - cpu_before))
}
