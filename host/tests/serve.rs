//! The real `steward serve` binary: killed with SIGKILL mid-way through
//! 600 jobs and started again, and two processes sharing one PostgreSQL
//! database.

mod support;

use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::json;
use steward_store::{JobStatus, RunStatus, Store, Tier};
use support::control::{FIXER_GRANTS, fixture, install, plane, simulated_facts, tenant};

fn config(
    dir: &Path,
    database: &str,
    worker: &str,
    in_flight: usize,
    lease: u64,
) -> std::path::PathBuf {
    let path = dir.join(format!("{worker}.toml"));
    std::fs::write(
        &path,
        format!(
            "data-dir = {:?}\ndatabase = {database:?}\nworker-id = {worker:?}\n\
             max-in-flight = {in_flight}\nclaim-batch = {in_flight}\nlease-seconds = {lease}\n\
             tick-ms = 100\nretry-base-ms = 200\nmax-instances = 16\n",
            dir.join("data").display().to_string(),
        ),
    )
    .unwrap();
    path
}

fn serve(config: &Path) -> Child {
    Command::new(env!("CARGO_BIN_EXE_steward"))
        .args(["serve", "--config"])
        .arg(config)
        .env("STEWARD_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("start steward serve")
}

async fn counts(store: &Store, runs: &[steward_store::RunId]) -> HashMap<JobStatus, usize> {
    let mut out = HashMap::new();
    for run in runs {
        for job in store.jobs_of_run(run).await.unwrap() {
            *out.entry(job.status).or_default() += 1;
        }
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killed_with_sigkill_mid_way_every_job_ends_once_and_nothing_is_applied_twice() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("data/steward.db").display());
    let store = Store::open(&url).await.unwrap();
    let plane = plane(&store, dir.path().join("data/modules"));
    install(&plane, "guest-fixer", FIXER_GRANTS).await;
    // One job per device: a simulated device keeps its state for the life
    // of the process, so each job has the same five things to fix.
    let names: Vec<String> = (0..600).map(|i| format!("ws-{i:03}")).collect();
    let devices: Vec<(&str, &[&str])> = names.iter().map(|n| (n.as_str(), &[][..])).collect();
    let (acme, _) = tenant(&store, "acme", Tier::Managed, &devices, |id, t| {
        let mut f = fixture(id, t.as_str());
        // Time inside the job, between journaled calls, for the kill to land in.
        f.delays.insert("packages.install-updates".into(), 30);
        f.delays.insert("antivirus.quarantine".into(), 30);
        simulated_facts(&f)
    })
    .await;
    let playbook = plane
        .create_playbook(
            Some(acme.clone()),
            "fix",
            json!([{ "plugin": "fixer", "mode": "remediate", "max-attempts": 5 }]),
            json!({}),
        )
        .await
        .unwrap();
    let runs = vec![plane.start_run(&playbook.id, None).await.unwrap()];
    assert_eq!(counts(&store, &runs).await[&JobStatus::Queued], 600);

    let mut first = serve(&config(dir.path(), &url, "first", 16, 2));
    let start = Instant::now();
    loop {
        let c = counts(&store, &runs).await;
        let done = c.get(&JobStatus::Succeeded).copied().unwrap_or(0);
        if done >= 100 {
            assert!(
                done < 500,
                "the kill came too late to interrupt anything: {c:?}"
            );
            break;
        }
        assert!(
            start.elapsed() < Duration::from_secs(120),
            "no progress: {c:?}"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    first.kill().unwrap(); // SIGKILL
    first.wait().unwrap();
    let at_kill = counts(&store, &runs).await;
    assert!(
        at_kill.get(&JobStatus::Leased).copied().unwrap_or(0) > 0,
        "jobs were in flight when it died: {at_kill:?}"
    );

    let mut second = serve(&config(dir.path(), &url, "second", 16, 2));
    let start = Instant::now();
    loop {
        let c = counts(&store, &runs).await;
        if c.keys().all(|s| s.is_terminal()) {
            break;
        }
        assert!(
            start.elapsed() < Duration::from_secs(120),
            "not finished: {c:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let _ = Command::new("kill")
        .arg("-TERM")
        .arg(second.id().to_string())
        .status();
    assert!(second.wait().unwrap().success());

    let mut jobs = Vec::new();
    for run in &runs {
        assert_eq!(
            store.run(run).await.unwrap().unwrap().status,
            RunStatus::Succeeded
        );
        jobs.extend(store.jobs_of_run(run).await.unwrap());
    }
    assert_eq!(jobs.len(), 600);
    assert!(
        jobs.iter().all(|j| j.status == JobStatus::Succeeded),
        "every job succeeded once"
    );
    let retried: Vec<_> = jobs.iter().filter(|j| j.attempt > 1).collect();
    assert!(
        !retried.is_empty(),
        "some attempt was interrupted by the kill"
    );
    let tickets = store.tickets(&acme).await.unwrap();
    let ticket_jobs: HashSet<_> = tickets.iter().filter_map(|t| t.job_id.clone()).collect();
    assert_eq!(tickets.len(), 600, "one ticket per job, none filed twice");
    assert_eq!(ticket_jobs.len(), 600);
    let mut replayed = 0;
    for job in &jobs {
        let changes = store.changes_of_job(&job.id).await.unwrap();
        assert_eq!(changes.len(), 5, "the completion was recorded once");
        assert!(changes.iter().all(|c| c.attempt == job.attempt));
        assert_eq!(store.journal_count(&job.id).await.unwrap(), 4);
        if job.attempt > 1 {
            replayed += store
                .audit_outcomes(&job.id)
                .await
                .unwrap()
                .iter()
                .filter(|(_, _, outcome)| outcome == "replayed")
                .count();
        }
    }
    assert!(
        replayed > 0,
        "re-run attempts replayed calls their killed attempt had applied"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_processes_on_one_postgres_fire_each_schedule_once_and_split_the_jobs() {
    let db = support::postgres().await;
    let dir = tempfile::tempdir().unwrap();
    let plane = plane(&db.store, dir.path().join("data/modules"));
    install(&plane, "guest-fixer", FIXER_GRANTS).await;
    let names: Vec<String> = (0..20).map(|i| format!("ws-{i:02}")).collect();
    let devices: Vec<(&str, &[&str])> = names.iter().map(|n| (n.as_str(), &[][..])).collect();
    let (acme, _) = tenant(&db.store, "acme", Tier::Managed, &devices, |id, t| {
        let mut f = fixture(id, t.as_str());
        f.delays.insert("packages.updates".into(), 20);
        simulated_facts(&f)
    })
    .await;
    let playbook = plane
        .create_playbook(
            Some(acme.clone()),
            "check",
            json!([{ "plugin": "fixer" }]),
            json!({}),
        )
        .await
        .unwrap();
    let schedule = plane
        .create_schedule(
            &playbook.id,
            None,
            json!({ "cron": "* * * * * *", "timezone": "UTC", "overlap": "allow" }),
        )
        .await
        .unwrap();

    let mut a = serve(&config(dir.path(), &db.url, "pg-a", 8, 10));
    let mut b = serve(&config(dir.path(), &db.url, "pg-b", 8, 10));
    let start = Instant::now();
    while db.store.runs_of_schedule(&schedule.id).await.unwrap().len() < 5 {
        assert!(
            start.elapsed() < Duration::from_secs(60),
            "the schedule does not fire"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    for child in [&a, &b] {
        let _ = Command::new("kill")
            .arg("-TERM")
            .arg(child.id().to_string())
            .status();
    }
    assert!(a.wait().unwrap().success());
    assert!(b.wait().unwrap().success());

    let runs = db.store.runs_of_schedule(&schedule.id).await.unwrap();
    let fire_times: HashSet<_> = runs.iter().map(|r| r.fire_at).collect();
    assert_eq!(fire_times.len(), runs.len(), "one run per firing");
    let mut by_worker: BTreeMap<String, usize> = BTreeMap::new();
    for run in &runs {
        let jobs = db.store.jobs_of_run(&run.id).await.unwrap();
        assert_eq!(jobs.len(), 20, "each firing fanned out once");
        for job in jobs.iter().filter(|j| j.status != JobStatus::Queued) {
            assert_eq!(job.status, JobStatus::Succeeded, "{job:?}");
            assert_eq!(job.attempt, 1, "claimed once: {job:?}");
            *by_worker
                .entry(job.claimed_by.clone().unwrap())
                .or_default() += 1;
        }
    }
    assert_eq!(
        by_worker.keys().map(String::as_str).collect::<Vec<_>>(),
        ["pg-a", "pg-b"],
        "both processes ran jobs: {by_worker:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serve_installs_registers_and_schedules_from_its_config_once() {
    let dir = tempfile::tempdir().unwrap();
    let trivial = steward_tests::component("guest-trivial");
    let url = format!("sqlite://{}", dir.path().join("data/steward.db").display());
    let path = dir.path().join("steward.toml");
    std::fs::write(
        &path,
        format!(
            r#"data-dir = {data:?}
tick-ms = 100

[[plugins]]
file = {trivial:?}

[this-machine]
tenant = "default"
tags = ["server"]

[[playbooks]]
name = "every second"
tenant = "default"
steps = [{{ plugin = "trivial" }}]
target = {{ tags = ["server"] }}
schedule = {{ cron = "* * * * * *", timezone = "UTC" }}
"#,
            data = dir.path().join("data").display().to_string(),
            trivial = trivial.display().to_string(),
        ),
    )
    .unwrap();
    for round in 0..2 {
        let mut child = serve(&path);
        // Opened beside the starting server: both may create and migrate
        // the new file at once.
        let store = Store::open(&url).await.unwrap();
        let start = Instant::now();
        // Bootstrapped: the tenant, the device, then the playbook and its
        // schedule, each written on its own.
        let bootstrapped = || async {
            let Some(tenant) = store.tenants().await.unwrap().into_iter().next() else {
                return false;
            };
            store
                .playbook_named(&tenant.id, "every second")
                .await
                .unwrap()
                .is_some()
                && !store
                    .due_schedules(steward_store::Timestamp::from_millis(i64::MAX), 1)
                    .await
                    .unwrap()
                    .is_empty()
        };
        while !bootstrapped().await {
            assert!(
                child.try_wait().unwrap().is_none(),
                "steward serve exited during start"
            );
            assert!(
                start.elapsed() < Duration::from_secs(60),
                "the server did not bootstrap"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let tenants = store.tenants().await.unwrap();
        assert_eq!(tenants.len(), 1, "round {round}: {tenants:?}");
        let devices = store.devices(&tenants[0].id).await.unwrap();
        assert_eq!(devices.len(), 1, "this machine, registered once");
        assert_eq!(devices[0].facts["provider"], "local");
        let playbook = store
            .playbook_named(&tenants[0].id, "every second")
            .await
            .unwrap()
            .expect("configured playbook");
        let start = Instant::now();
        let succeeded = loop {
            let schedule_runs = {
                let mut n = 0;
                for run in store
                    .due_schedules(steward_store::Timestamp::from_millis(i64::MAX), 10)
                    .await
                    .unwrap()
                {
                    assert_eq!(run.playbook_id, playbook.id, "one schedule");
                    for r in store.runs_of_schedule(&run.id).await.unwrap() {
                        if r.status == RunStatus::Succeeded {
                            n += 1;
                        }
                    }
                }
                n
            };
            if schedule_runs >= 2 * (round + 1) {
                break schedule_runs;
            }
            assert!(
                start.elapsed() < Duration::from_secs(60),
                "no scheduled run succeeded"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        };
        assert!(succeeded >= 2);
        let _ = Command::new("kill")
            .arg("-TERM")
            .arg(child.id().to_string())
            .status();
        assert!(child.wait().unwrap().success());
        assert_eq!(store.plugin_versions().await.unwrap().len(), 1);
    }
}
