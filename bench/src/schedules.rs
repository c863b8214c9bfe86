//! Schedules at MSP scale: N schedules (default 10,000; the 100,000 of the
//! target with an argument) all due at the same minute, fired by the
//! scheduler as `steward serve` runs it (`ControlPlane::scheduler_tick`
//! every second, `tick-ms`'s default, and again at once while a tick ends
//! with schedules still due; firings written `fire-ahead-ms` ahead, 30 s
//! by default as in `steward serve`): on SQLite by one server, on
//! PostgreSQL by two replicas (two control planes, each with its own pool,
//! ticking on the same database). The scheduler runs from the moment the
//! schedules exist, as a server does.
//!
//! Prints the firings expected, the runs they made (one per schedule and
//! firing: more would be a double firing, fewer a lost one), how many were
//! written ahead and how long before their time (the margin left), and
//! the fire lateness p50/p99/max: when a run and its jobs were ready,
//! after its cron time (a run written ahead is ready at its time, its
//! jobs due then: lateness 0). With `fire-ahead-ms` 0 every firing is
//! written when due, which is what a firing reached late (a restart, a
//! schedule created less than `fire-ahead-ms` before its time) costs. The
//! baseline, measured in the same run on the same store, is starting the
//! same playbook by hand (`start_run`), so the ratio is the scheduler's
//! firing rate against it.
//!
//! `cargo run --release -p steward-bench --bin schedules [SCHEDULES] [sqlite|postgres|both] [fire-ahead-ms]`.

#[path = "../../host/tests/support/mod.rs"]
mod support;

mod shared;

use std::time::{Duration, Instant};

use serde_json::json;
use sqlx::Connection as _;
use steward_control::plane::ControlPlane;
use steward_store::{Store, Tier, Timestamp};
use support::control::{fixture, install, plane_with, runtime_with, simulated_facts, tenant};

/// The target: every schedule fires once, with a p99 lateness under this
/// (and then under [`THEN_P99_MS`]).
const TARGET_P99_MS: i64 = 1_000;
const THEN_P99_MS: i64 = 100;

fn main() -> anyhow::Result<()> {
    shared::on_two_workers(run)
}

async fn run() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let count: usize = args
        .first()
        .map(|a| a.parse())
        .transpose()?
        .unwrap_or(10_000);
    let only = args.get(1).map(String::as_str).unwrap_or("both");
    let ahead = Duration::from_millis(
        args.get(2)
            .map(|a| a.parse())
            .transpose()?
            .unwrap_or(30_000),
    );
    println!(
        "{count} schedules due at the same minute, firings written {} ms ahead, 2 cores",
        ahead.as_millis()
    );
    if only != "postgres" {
        let db = support::sqlite().await;
        let replicas = std::slice::from_ref(&db.store);
        measure("SQLite", &db.url, replicas, count, ahead).await?;
    }
    if only != "sqlite" {
        let db = support::postgres().await;
        let second = Store::open(&db.url).await?;
        let replicas = [db.store.clone(), second];
        measure("PostgreSQL", &db.url, &replicas, count, ahead).await?;
    }
    Ok(())
}

/// Fires `count` schedules through one control plane per store in
/// `replicas` (all on the database at `url`).
async fn measure(
    name: &str,
    url: &str,
    replicas: &[Store],
    count: usize,
    ahead: Duration,
) -> anyhow::Result<()> {
    let store = &replicas[0];
    let dir = tempfile::tempdir()?;
    let plane = plane_with(store, dir.path().into(), runtime_with(4, false));
    install(&plane, "guest-trivial", &[]).await;
    // A hundred devices; the playbook targets one, so each firing is one
    // run of one job.
    let names: Vec<String> = (0..100).map(|i| format!("pc-{i:03}")).collect();
    let devices: Vec<(&str, &[&str])> = names
        .iter()
        .enumerate()
        .map(|(i, n)| (n.as_str(), if i == 0 { &["one"][..] } else { &[][..] }))
        .collect();
    let (acme, _) = tenant(store, "acme", Tier::Managed, &devices, |id, t| {
        simulated_facts(&fixture(id, t.as_str()))
    })
    .await;
    let playbook = plane
        .create_playbook(
            Some(acme),
            "trivial",
            json!([{ "plugin": "trivial" }]),
            json!({ "tags": ["one"] }),
        )
        .await?;

    // Baseline: the same playbook started by hand, a tenth as many times.
    let by_hand = (count / 10).max(100);
    let started = Instant::now();
    for _ in 0..by_hand {
        plane.start_run(&playbook.id, None).await?;
    }
    let start_rate = by_hand as f64 / started.elapsed().as_secs_f64();

    // The firing minute: far enough ahead for the inserts and the
    // fire-ahead.
    let now = Timestamp::now().as_millis();
    let lead = 5_000 + count as i64 / 5 + i64::try_from(ahead.as_millis())?;
    let fire_at = (now + lead) / 60_000 * 60_000 + 60_000;
    let at = Timestamp::from_millis(fire_at).to_utc();
    let cron = format!(
        "{} {} * * *",
        chrono::Timelike::minute(&at),
        chrono::Timelike::hour(&at)
    );
    insert_schedules(url, &playbook.id, count, &cron, fire_at).await?;
    println!(
        "{name}: {count} schedules `{cron}` (UTC) inserted; firing in {:.0} s",
        (fire_at - Timestamp::now().as_millis()) as f64 / 1e3
    );

    // The scheduler as `steward serve` runs it, once per replica, from now.
    let (stop, stopped) = tokio::sync::watch::channel(false);
    let mut tickers = Vec::new();
    for (i, replica) in replicas.iter().enumerate() {
        let plane =
            ControlPlane::new(replica.clone(), plane.library().clone()).with_fire_ahead(ahead);
        let mut stopped = stopped.clone();
        tickers.push(tokio::spawn(async move {
            let mut fired = 0u64;
            while !*stopped.borrow() {
                // As `steward serve`: the next tick at once when this one
                // ran out of time with schedules still due, else a second on.
                let mut pause = Duration::from_secs(1);
                match plane.scheduler_tick(chrono::Utc::now()).await {
                    Ok(report) => {
                        fired += u64::from(report.fired);
                        if report.more {
                            pause = Duration::ZERO;
                        }
                    }
                    Err(e) => eprintln!("replica {i}: tick failed: {e}"),
                }
                tokio::select! {
                    _ = stopped.changed() => {}
                    () = tokio::time::sleep(pause) => {}
                }
            }
            fired
        }));
    }
    let mut conn = sqlx::AnyConnection::connect(url).await?;
    let deadline = Instant::now() + Duration::from_secs(1800);
    loop {
        let handled: i64 = sqlx::query_scalar(
            "SELECT COUNT(*) FROM schedules WHERE last_fired_at IS NOT NULL AND last_fired_at >= $1",
        )
        .bind(fire_at)
        .fetch_one(&mut conn)
        .await?;
        if handled as usize >= count || Instant::now() > deadline {
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    // The firing's first jobs, taken as an idle executor takes them: it
    // sleeps until the next queued job falls due, then claims (the
    // baseline's jobs, due already, are taken first and set aside).
    let first_claim = if Timestamp::now().as_millis() < fire_at {
        loop {
            let now = Timestamp::now();
            let jobs = store
                .claim("bench", 512, Duration::from_secs(300), now)
                .await?;
            if jobs.iter().any(|j| j.due_at.as_millis() >= fire_at) {
                break Some(Timestamp::now().as_millis() - fire_at);
            }
            if !jobs.is_empty() {
                continue;
            }
            let next = store
                .next_due_after(now)
                .await?
                .map_or(fire_at, |t| t.as_millis());
            let wait = u64::try_from(next - now.as_millis())
                .unwrap_or(0)
                .clamp(1, 1_000);
            tokio::time::sleep(Duration::from_millis(wait)).await;
        }
    } else {
        None
    };
    stop.send(true)?;
    let mut per_replica = Vec::new();
    for t in tickers {
        per_replica.push(t.await?);
    }
    let runs: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM runs WHERE fire_at = $1")
        .bind(fire_at)
        .fetch_one(&mut conn)
        .await?;
    let distinct: i64 =
        sqlx::query_scalar("SELECT COUNT(DISTINCT schedule_id) FROM runs WHERE fire_at = $1")
            .bind(fire_at)
            .fetch_one(&mut conn)
            .await?;
    // When each run was written, against its cron time (negative: ahead).
    let mut written: Vec<i64> =
        sqlx::query_scalar("SELECT created_at - fire_at FROM runs WHERE fire_at = $1")
            .bind(fire_at)
            .fetch_all(&mut conn)
            .await?;
    written.sort_unstable();
    // Jobs due before their firing would start early.
    let early: i64 = sqlx::query_scalar(
        "SELECT COUNT(*) FROM jobs j JOIN runs r ON r.id = j.run_id \
         WHERE r.fire_at = $1 AND j.due_at < r.fire_at",
    )
    .bind(fire_at)
    .fetch_one(&mut conn)
    .await?;
    let late: Vec<i64> = written.iter().map(|w| (*w).max(0)).collect();
    let pct = |v: &[i64], p: f64| {
        v.get(((v.len() as f64 * p) as usize).min(v.len().saturating_sub(1)))
            .copied()
            .unwrap_or(0)
    };
    let span = written
        .last()
        .zip(written.first())
        .map_or(1, |(l, f)| (l - f).max(1));
    let fire_rate = written.len() as f64 / (span as f64 / 1e3);
    let in_ahead = written.iter().filter(|w| **w < 0).count();
    let (p99, max) = (pct(&late, 0.99), pct(&late, 1.0));
    println!(
        "{name:>10}: expected {count}, fired {runs} ({distinct} schedules; per replica {per_replica:?}; jobs due early {early}) \
         | written ahead {in_ahead}{} \
         | lateness p50 {} ms, p99 {p99} ms, max {max} ms, first jobs claimed {} \
         | written at {fire_rate:.0} firings/s, by hand {start_rate:.0} runs/s, ratio {:.2}x \
         | every one once: {} | p99 < {TARGET_P99_MS} ms: {} | p99 < {THEN_P99_MS} ms: {}",
        written
            .last()
            .filter(|w| **w < 0)
            .map_or(String::new(), |w| format!(
                ", the last {:.1} s before its time",
                -w as f64 / 1e3
            )),
        pct(&late, 0.5),
        first_claim.map_or("when written".to_owned(), |ms| format!(
            "{ms} ms after the firing"
        )),
        fire_rate / start_rate,
        if runs as usize == count && distinct as usize == count && early == 0 {
            "yes"
        } else {
            "NO"
        },
        if p99 < TARGET_P99_MS {
            "met"
        } else {
            "NOT met"
        },
        if p99 < THEN_P99_MS { "met" } else { "NOT met" },
    );
    Ok(())
}

/// `count` schedules of `playbook` with `cron`, due at `fire_at`, inserted
/// directly (the store creates schedules one at a time).
async fn insert_schedules(
    url: &str,
    playbook: &steward_store::PlaybookId,
    count: usize,
    cron: &str,
    fire_at: i64,
) -> anyhow::Result<()> {
    let spec = json!({ "cron": cron, "timezone": "UTC" }).to_string();
    let mut conn = sqlx::AnyConnection::connect(url).await?;
    let now = Timestamp::now().as_millis();
    let mut i = 0;
    while i < count {
        let end = (i + 5_000).min(count);
        let mut tx = conn.begin().await?;
        for n in i..end {
            sqlx::query(
                "INSERT INTO schedules (id, playbook_id, spec, enabled, next_fire_at, created_at) \
                 VALUES ($1, $2, $3, 1, $4, $5)",
            )
            .bind(format!("{now:012x}{n:08x}00000000000a"))
            .bind(playbook.as_str())
            .bind(&spec)
            .bind(fire_at)
            .bind(now)
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await?;
        i = end;
    }
    Ok(())
}
