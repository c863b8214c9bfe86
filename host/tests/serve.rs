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
use support::control::{
    FIXER_GRANTS, fixture, install, plane, simulated_facts, switchable_receiver, tenant,
};

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
    serve_env(config, &[])
}

/// [`serve`] with more environment variables (failpoints).
fn serve_env(config: &Path, env: &[(&str, &str)]) -> Child {
    Command::new(env!("CARGO_BIN_EXE_steward"))
        .args(["serve", "--config"])
        .arg(config)
        .envs(env.iter().copied())
        .env("STEWARD_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("start steward serve")
}

/// A `steward serve` child, killed when dropped: a failing test leaves no
/// process behind.
struct Serving(Child);

impl Drop for Serving {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
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
    // One job per device: a simulated device keeps its state for the life
    // of the process, so each job has the same five things to fix.
    let (acme, run) = fault_run(&store, dir.path().join("data/modules"), 600, 5).await;
    let runs = vec![run];
    assert_eq!(counts(&store, &runs).await[&JobStatus::Queued], 600);

    let mut first = Serving(serve(&config(dir.path(), &url, "first", 16, 2)));
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
    first.0.kill().unwrap(); // SIGKILL
    first.0.wait().unwrap();
    let at_kill = counts(&store, &runs).await;
    assert!(
        at_kill.get(&JobStatus::Leased).copied().unwrap_or(0) > 0,
        "jobs were in flight when it died: {at_kill:?}"
    );

    let mut second = Serving(serve(&config(dir.path(), &url, "second", 16, 2)));
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
        .arg(second.0.id().to_string())
        .status();
    assert!(second.0.wait().unwrap().success());

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

/// What the fault runs check once every job has ended: no job lost or
/// ended twice (all `DEVICES` succeeded, the run too), no ticket filed
/// twice, and at the provider (the persistent simulated devices' ledgers
/// under `state`) no call applied twice, every device fixed, every applied
/// call with an audit event in its job's committed trail (`in-doubt` for a
/// call whose attempt ended between the provider's return and the
/// journal's record of it). Returns the retried jobs, the calls applied at
/// the provider and the audit outcomes counted.
async fn assert_each_call_once(
    store: &Store,
    run: &steward_store::RunId,
    acme: &steward_store::TenantId,
    state: &Path,
    devices: usize,
) -> (usize, usize, BTreeMap<String, usize>) {
    // No job lost, none ended twice.
    assert_eq!(
        store.run(run).await.unwrap().unwrap().status,
        RunStatus::Succeeded
    );
    let jobs = store.jobs_of_run(run).await.unwrap();
    assert_eq!(jobs.len(), devices);
    assert!(
        jobs.iter().all(|j| j.status == JobStatus::Succeeded),
        "every job succeeded"
    );
    // A retry that finds its device already fixed (an interrupted attempt
    // fixed it) has nothing to file: at most one ticket per job.
    let tickets = store.tickets(acme).await.unwrap();
    let ticket_jobs: HashSet<_> = tickets.iter().filter_map(|t| t.job_id.clone()).collect();
    assert_eq!(ticket_jobs.len(), tickets.len(), "no ticket filed twice");

    // At the provider: no call applied twice, every device fixed, and every
    // applied call has its audit event in the job's committed trail.
    let mut outcomes: BTreeMap<String, usize> = BTreeMap::new();
    let mut ledger_lines = 0;
    for job in &jobs {
        let device = job.device_id.as_ref().unwrap();
        let file = steward_control::providers::StandardProviders::simulated_state_file(
            state,
            device.as_str(),
        );
        let ledger = std::fs::read_to_string(
            steward_runtime::device::simulated::Simulated::ledger_path(&file),
        )
        .unwrap();
        let lines: Vec<&str> = ledger.lines().collect();
        let unique: HashSet<&str> = lines.iter().copied().collect();
        assert_eq!(
            unique.len(),
            lines.len(),
            "a call applied twice on {device}: {lines:?}"
        );
        ledger_lines += lines.len();
        let audit = store.audit_outcomes(&job.id).await.unwrap();
        for (_, _, outcome) in &audit {
            *outcomes.entry(outcome.clone()).or_default() += 1;
        }
        for line in &lines {
            let action = line.split(' ').next().unwrap();
            assert!(
                audit.iter().any(|(_, a, o)| a == action
                    && ["applied", "replayed", "reconciled", "in-doubt"].contains(&o.as_str())),
                "{device}: `{line}` applied at the provider has no audit event: {audit:?}"
            );
        }
        let fixed: steward_runtime::device::simulated::Fixture =
            serde_json::from_slice(&std::fs::read(&file).unwrap()).unwrap();
        assert!(
            fixed.updates.is_empty(),
            "{device} still has updates pending"
        );
        assert!(
            fixed.accounts.iter().all(|a| !a.locked),
            "{device} still has a locked account"
        );
        assert!(
            fixed.files.iter().all(|f| f.signature.is_none()),
            "{device} still has an infected file"
        );
    }
    let retried = jobs.iter().filter(|j| j.attempt > 1).count();
    (retried, ledger_lines, outcomes)
}

/// Devices in each fault run.
const FAULT_DEVICES: usize = 240;

/// A fault run's fixture: the fixer installed in `modules`, one tenant of
/// `count` simulated devices with slow installs and quarantines (time
/// inside jobs, between journaled calls, for faults to land in), and a
/// remediation run over them of `attempts` attempts per job. Returns the
/// tenant and the run.
async fn fault_run(
    store: &Store,
    modules: std::path::PathBuf,
    count: usize,
    attempts: u32,
) -> (steward_store::TenantId, steward_store::RunId) {
    fault_run_of(store, modules, count, attempts, "remediate").await
}

/// The fixer installed in `modules` and tenant `acme` of `count` simulated
/// devices (`ws-000`, …); with `slow`, their installs and quarantines take
/// 30 ms (time inside jobs, between journaled calls, for faults to land
/// in).
async fn fixer_fleet(
    store: &Store,
    modules: std::path::PathBuf,
    count: usize,
    slow: bool,
) -> (
    steward_control::plane::ControlPlane,
    steward_store::TenantId,
) {
    let plane = plane(store, modules);
    install(&plane, "guest-fixer", FIXER_GRANTS).await;
    let names: Vec<String> = (0..count).map(|i| format!("ws-{i:03}")).collect();
    let devices: Vec<(&str, &[&str])> = names.iter().map(|n| (n.as_str(), &[][..])).collect();
    let (acme, _) = tenant(store, "acme", Tier::Managed, &devices, |id, t| {
        let mut f = fixture(id, t.as_str());
        if slow {
            f.delays.insert("packages.install-updates".into(), 30);
            f.delays.insert("antivirus.quarantine".into(), 30);
        }
        simulated_facts(&f)
    })
    .await;
    (plane, acme)
}

/// [`fault_run`] of the fixer in `mode` (`check` or `remediate`).
async fn fault_run_of(
    store: &Store,
    modules: std::path::PathBuf,
    count: usize,
    attempts: u32,
    mode: &str,
) -> (steward_store::TenantId, steward_store::RunId) {
    let (plane, acme) = fixer_fleet(store, modules, count, true).await;
    let playbook = plane
        .create_playbook(
            Some(acme.clone()),
            "fix",
            json!([{ "plugin": "fixer", "mode": mode, "max-attempts": attempts }]),
            json!({}),
        )
        .await
        .unwrap();
    let run = plane.start_run(&playbook.id, None).await.unwrap();
    (acme, run)
}

/// [`config`] for `worker` with its data in `data_parent/data`, written to
/// `dir`, keeping simulated devices' state in `state`.
fn fault_config(
    dir: &Path,
    data_parent: &Path,
    url: &str,
    worker: &str,
    state: &Path,
) -> std::path::PathBuf {
    let path = config(data_parent, url, worker, 16, 2);
    let mut text = std::fs::read_to_string(&path).unwrap();
    text.push_str(&format!(
        "simulated-state-dir = {:?}\n",
        state.display().to_string()
    ));
    let moved = dir.join(format!("{worker}.toml"));
    if moved != path {
        std::fs::remove_file(&path).unwrap();
    }
    std::fs::write(&moved, text).unwrap();
    moved
}

fn succeeded(c: &HashMap<JobStatus, usize>) -> usize {
    c.get(&JobStatus::Succeeded).copied().unwrap_or(0)
}

/// Waits until at least `at_least` jobs of `run` succeeded; panics with
/// the jobs' errors if one fails for good or nothing moves for minutes.
async fn wait_succeeded(
    store: &Store,
    run: &steward_store::RunId,
    at_least: usize,
) -> HashMap<JobStatus, usize> {
    let runs = std::slice::from_ref(run);
    let start = Instant::now();
    loop {
        let c = counts(store, runs).await;
        if succeeded(&c) >= at_least {
            return c;
        }
        if c.contains_key(&JobStatus::Failed) || start.elapsed() > Duration::from_secs(180) {
            let errors: Vec<_> = store
                .jobs_of_run(run)
                .await
                .unwrap()
                .into_iter()
                .filter_map(|j| j.last_error)
                .take(3)
                .collect();
            panic!("no progress: {c:?} {errors:?}");
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Waits until every job of `run` has ended.
async fn wait_ended(store: &Store, run: &steward_store::RunId) {
    wait_succeeded(store, run, FAULT_DEVICES).await;
}

/// Stops a `steward serve` with SIGTERM; it must exit cleanly.
fn terminate(mut serving: Serving) {
    let _ = Command::new("kill")
        .arg("-TERM")
        .arg(serving.0.id().to_string())
        .status();
    assert!(serving.0.wait().unwrap().success());
}

/// The fault suite's SQLite run, against real `steward serve` processes
/// and simulated devices whose state is kept outside them (a state file
/// and a ledger of applied calls per device, counted at the provider): the
/// data disk (a small tmpfs) fills mid-run and is freed, then the process
/// is killed with SIGKILL and another started. No job is lost or ends
/// twice, no call is applied twice at the provider, every applied call has
/// an audit event, and every device ends fixed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_disk_then_a_kill_lose_no_job_and_apply_no_call_twice() {
    let disk = support::SmallDisk::mount(96);
    let dir = tempfile::tempdir().unwrap();
    let data = disk.path().join("data");
    let url = format!("sqlite://{}", data.join("steward.db").display());
    let store = Store::open(&url).await.unwrap();
    let (acme, run) = fault_run(&store, data.join("modules"), FAULT_DEVICES, 8).await;
    let state = dir.path().join("state");
    // The configuration lives off the small disk.
    let config = |worker: &str| fault_config(dir.path(), disk.path(), &url, worker, &state);

    let mut first = Serving(serve(&config("first")));
    wait_succeeded(&store, &run, 40).await;
    let fill = disk.fill();
    // Writes fail for a while: jobs in flight cannot record their calls
    // or their ends.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let during = counts(&store, std::slice::from_ref(&run)).await;
    std::fs::remove_file(fill).unwrap();
    let after_disk = wait_succeeded(&store, &run, succeeded(&during) + 40).await;
    assert!(
        succeeded(&after_disk) < FAULT_DEVICES,
        "the run ended before the kill: {after_disk:?}"
    );
    first.0.kill().unwrap(); // SIGKILL
    first.0.wait().unwrap();

    let second = Serving(serve(&config("second")));
    wait_ended(&store, &run).await;
    terminate(second);

    let (retried, ledger_lines, outcomes) =
        assert_each_call_once(&store, &run, &acme, &state, FAULT_DEVICES).await;
    eprintln!(
        "full disk then SIGKILL: {FAULT_DEVICES} jobs, {retried} retried, {ledger_lines} calls \
         applied at the provider (none twice), audit outcomes {outcomes:?}; at the fill {during:?}"
    );
    assert!(retried > 0, "some attempt was interrupted");
}

/// How long the fault suite stops PostgreSQL mid-run.
const PG_OUTAGE_SECONDS: u64 = 20;

/// The fault suite's PostgreSQL run: two `steward serve` processes share
/// a database that stops for [`PG_OUTAGE_SECONDS`] mid-run and starts
/// again; then one of them is killed (SIGKILL) mid-run. Both
/// processes carry on by themselves; no job is lost or ends twice and no
/// call is applied twice at the provider.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_stopped_mid_run_under_two_processes_loses_no_job_and_applies_no_call_twice() {
    let pg = steward_tests::postgres::Dedicated::start();
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(pg.url()).await.unwrap();
    let (acme, run) = fault_run(&store, dir.path().join("data/modules"), FAULT_DEVICES, 8).await;
    let state = dir.path().join("state");
    let config = |worker: &str| fault_config(dir.path(), dir.path(), pg.url(), worker, &state);

    let mut first = Serving(serve(&config("first")));
    let second = Serving(serve(&config("second")));
    wait_succeeded(&store, &run, 40).await;
    pg.halt();
    tokio::time::sleep(Duration::from_secs(PG_OUTAGE_SECONDS)).await;
    pg.resume();
    // Then one of the two dies mid-run (SIGKILL); the other finishes.
    let before_kill = succeeded(&counts(&store, std::slice::from_ref(&run)).await);
    wait_succeeded(&store, &run, (before_kill + 20).min(FAULT_DEVICES)).await;
    first.0.kill().unwrap();
    first.0.wait().unwrap();
    wait_ended(&store, &run).await;
    terminate(second);

    let (retried, ledger_lines, outcomes) =
        assert_each_call_once(&store, &run, &acme, &state, FAULT_DEVICES).await;
    eprintln!(
        "PostgreSQL stopped {PG_OUTAGE_SECONDS} s under two processes, then one killed: {FAULT_DEVICES} jobs, \
         {retried} retried, \
         {ledger_lines} calls applied at the provider (none twice), audit outcomes {outcomes:?}"
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

    // Killed on drop, so a failing assertion leaves neither behind.
    let mut a = Serving(serve(&config(dir.path(), &db.url, "pg-a", 8, 10)));
    let mut b = Serving(serve(&config(dir.path(), &db.url, "pg-b", 8, 10)));
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
            .arg(child.0.id().to_string())
            .status();
    }
    assert!(a.0.wait().unwrap().success());
    assert!(b.0.wait().unwrap().success());

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
        let mut child = Serving(serve(&path));
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
                child.0.try_wait().unwrap().is_none(),
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
            .arg(child.0.id().to_string())
            .status();
        assert!(child.0.wait().unwrap().success());
        assert_eq!(store.plugin_versions().await.unwrap().len(), 1);
    }
}

/// The fault suite's alert run: a check over [`FAULT_DEVICES`] devices,
/// each with a critical finding (an infected file), so each raises a
/// firing alert to a webhook. The receiver is down while the first
/// process runs, and that process aborts right after its third completion
/// commit (failpoint `after-completion-commit`: no destructor, no flush,
/// as a SIGKILL 1 ms after the commit). The receiver comes back and a
/// second process finishes the run: every device's alert reaches the
/// receiver (at least once), every job ended once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_crash_right_after_a_completion_commit_and_a_webhook_outage_lose_no_alert_on_sqlite() {
    crash_after_completion_commit(None).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_crash_right_after_a_completion_commit_and_a_webhook_outage_lose_no_alert_on_postgres() {
    let db = support::postgres().await;
    crash_after_completion_commit(Some(db.url.clone())).await;
}

async fn crash_after_completion_commit(url: Option<String>) {
    use std::os::unix::process::ExitStatusExt as _;
    const SECRET: &str = "a-test-secret-of-enough-bytes";
    let dir = tempfile::tempdir().unwrap();
    let url =
        url.unwrap_or_else(|| format!("sqlite://{}", dir.path().join("data/steward.db").display()));
    let store = Store::open(&url).await.unwrap();
    let (hook, got, down) = switchable_receiver(SECRET).await;
    down.store(true, std::sync::atomic::Ordering::SeqCst);
    let (_, run) = fault_run_of(
        &store,
        dir.path().join("data/modules"),
        FAULT_DEVICES,
        3,
        "check",
    )
    .await;
    let state = dir.path().join("state");
    let config = |worker: &str| {
        let path = fault_config(dir.path(), dir.path(), &url, worker, &state);
        let mut text = std::fs::read_to_string(&path).unwrap();
        text.push_str(&format!(
            "\n[[webhooks]]\nid = \"ops\"\nurl = {hook:?}\nsecret = {SECRET:?}\n"
        ));
        std::fs::write(&path, text).unwrap();
        path
    };

    let mut first = serve_env(
        &config("first"),
        &[("STEWARD_FAILPOINTS", "after-completion-commit=3")],
    );
    let start = Instant::now();
    let status = loop {
        if let Some(status) = first.try_wait().unwrap() {
            break status;
        }
        assert!(
            start.elapsed() < Duration::from_secs(120),
            "the failpoint was never reached"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert_eq!(status.signal(), Some(6), "aborted (SIGABRT): {status:?}");
    let at_crash = counts(&store, std::slice::from_ref(&run)).await;
    assert!(
        succeeded(&at_crash) > 0 && succeeded(&at_crash) < FAULT_DEVICES,
        "the crash came mid-run: {at_crash:?}"
    );
    assert!(
        got.lock().unwrap().is_empty(),
        "nothing reached the receiver while it was down"
    );

    down.store(false, std::sync::atomic::Ordering::SeqCst);
    let second = Serving(serve(&config("second")));
    wait_ended(&store, &run).await;
    // At least once: the alerts observed but undelivered when the first
    // process died, and those of the jobs it committed but never observed.
    let jobs = store.jobs_of_run(&run).await.unwrap();
    let devices: HashSet<String> = jobs
        .iter()
        .map(|j| j.device_id.as_ref().unwrap().as_str().to_owned())
        .collect();
    let start = Instant::now();
    let delivered = loop {
        let events = got.lock().unwrap().clone();
        let firing: HashSet<String> = events
            .iter()
            .filter(|e| e["event"] == "alert.firing")
            .filter_map(|e| e["device_id"].as_str().map(str::to_owned))
            .collect();
        if firing == devices {
            break events;
        }
        assert!(
            start.elapsed() < Duration::from_secs(300),
            "{} of {} devices' alerts delivered",
            firing.len(),
            devices.len()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    terminate(second);
    assert!(jobs.iter().all(|j| j.status == JobStatus::Succeeded));
    let retried = jobs.iter().filter(|j| j.attempt > 1).count();
    eprintln!(
        "crash 1 ms after a completion commit, webhook down then up: {} jobs ({retried} retried, \
         {} done at the crash), {} alert deliveries for {} devices (at least once; {} repeated)",
        jobs.len(),
        succeeded(&at_crash),
        delivered.len(),
        devices.len(),
        delivered.len() - devices.len()
    );
}

const OWNER: &str = "stw_fault_owner_token_0123456789abcdef";

/// [`serve_env`] with the API on a free loopback port: the server and its
/// address.
fn serve_api(config: &Path, env: &[(&str, &str)]) -> (Serving, String) {
    use std::io::BufRead as _;
    let mut child = Command::new(env!("CARGO_BIN_EXE_steward"))
        .args([
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--owner-token",
            OWNER,
            "--config",
        ])
        .arg(config)
        .envs(env.iter().copied())
        .env("STEWARD_LOG", "warn")
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("start steward serve");
    let mut lines = std::io::BufReader::new(child.stdout.take().unwrap()).lines();
    let url = loop {
        let line = lines.next().expect("serve prints its address").unwrap();
        if let Some(u) = line.strip_prefix("steward: API listening on ") {
            break u.to_owned();
        }
    };
    std::thread::spawn(move || for _ in lines {});
    (Serving(child), url)
}

/// Waits for a `steward serve` to end on its own (a failpoint's abort).
async fn aborted(serving: &mut Serving) {
    use std::os::unix::process::ExitStatusExt as _;
    let start = Instant::now();
    loop {
        if let Some(status) = serving.0.try_wait().unwrap() {
            assert_eq!(status.signal(), Some(6), "aborted (SIGABRT): {status:?}");
            return;
        }
        assert!(
            start.elapsed() < Duration::from_secs(120),
            "the failpoint was never reached"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Approvals under a crash: plans of [`APPROVAL_DEVICES`] devices wait for
/// approval; they are approved one by one through the API, and the server
/// aborts right after committing the tenth approval, before answering it
/// (failpoint `after-approval-commit`). After a restart the approvals go
/// on. The approval whose answer was lost was kept (approving it again is
/// refused as decided), every approval has exactly one `approval.approve`
/// audit event, and every approved job ran once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_crash_right_after_an_approval_commit_keeps_the_approval_and_its_audit_event_on_sqlite() {
    crash_after_approval_commit(None).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_crash_right_after_an_approval_commit_keeps_the_approval_and_its_audit_event_on_postgres()
{
    let db = support::postgres().await;
    crash_after_approval_commit(Some(db.url.clone())).await;
}

async fn crash_after_approval_commit(url: Option<String>) {
    const APPROVAL_DEVICES: usize = 40;
    let dir = tempfile::tempdir().unwrap();
    let url =
        url.unwrap_or_else(|| format!("sqlite://{}", dir.path().join("data/steward.db").display()));
    let store = Store::open(&url).await.unwrap();
    let (plane, acme) = fixer_fleet(
        &store,
        dir.path().join("data/modules"),
        APPROVAL_DEVICES,
        false,
    )
    .await;
    let playbook = plane
        .create_playbook(
            Some(acme.clone()),
            "fix",
            json!([{ "plugin": "fixer", "mode": "remediate", "requires-approval": true }]),
            json!({}),
        )
        .await
        .unwrap();
    let run = plane.start_run(&playbook.id, None).await.unwrap();
    let state = dir.path().join("state");
    let config = |worker: &str| fault_config(dir.path(), dir.path(), &url, worker, &state);
    let http = reqwest::Client::new();
    let approve = |base: String, job: String| {
        let http = http.clone();
        async move {
            http.post(format!("{base}/api/v1/approvals/{job}/approve"))
                .bearer_auth(OWNER)
                .json(&json!({ "comment": "ok" }))
                .send()
                .await
                .map(|r| r.status())
        }
    };
    let awaiting = || async {
        store
            .jobs_of_run(&run)
            .await
            .unwrap()
            .into_iter()
            .filter(|j| j.status == JobStatus::AwaitingApproval)
            .map(|j| j.id.as_str().to_owned())
            .collect::<Vec<_>>()
    };

    let (mut first, base) = serve_api(
        &config("first"),
        &[("STEWARD_FAILPOINTS", "after-approval-commit=10")],
    );
    let start = Instant::now();
    let mut waiting = awaiting().await;
    while waiting.len() < APPROVAL_DEVICES {
        assert!(
            start.elapsed() < Duration::from_secs(120),
            "plans: {waiting:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
        waiting = awaiting().await;
    }
    let mut answered = Vec::new();
    let mut lost = None;
    for job in &waiting {
        match approve(base.clone(), job.clone()).await {
            Ok(status) => {
                assert!(status.is_success(), "{status}");
                answered.push(job.clone());
            }
            Err(_) => {
                lost = Some(job.clone());
                break;
            }
        }
    }
    let lost = lost.expect("the server died mid-approval");
    assert_eq!(answered.len(), 9);
    aborted(&mut first).await;

    let (second, base) = serve_api(&config("second"), &[]);
    // The lost answer's approval was committed: deciding again is refused.
    let again = approve(base.clone(), lost.clone()).await.unwrap();
    assert_eq!(again, reqwest::StatusCode::CONFLICT, "approved already");
    for job in waiting.iter().skip(answered.len() + 1) {
        assert!(
            approve(base.clone(), job.clone())
                .await
                .unwrap()
                .is_success()
        );
    }
    let start = Instant::now();
    while store.run(&run).await.unwrap().unwrap().status == RunStatus::Running {
        assert!(start.elapsed() < Duration::from_secs(180), "the run ends");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    terminate(second);
    let failed: Vec<_> = store
        .jobs_of_run(&run)
        .await
        .unwrap()
        .into_iter()
        .filter(|j| j.status != JobStatus::Succeeded)
        .map(|j| (j.status, j.last_error))
        .collect();
    assert_eq!(
        store.run(&run).await.unwrap().unwrap().status,
        RunStatus::Succeeded,
        "{failed:?}"
    );
    let audit = store
        .audit_events(&steward_store::Scope::All, Some(&acme), None, 10_000)
        .await
        .unwrap();
    for job in &waiting {
        let events = audit
            .iter()
            .filter(|e| e.action == "approval.approve" && e.detail["job"] == job.as_str())
            .count();
        assert_eq!(events, 1, "job {job}: one approval event");
    }
    // Every approved job ran once: one attempt's ledger at the provider.
    for job in store.jobs_of_run(&run).await.unwrap() {
        assert_eq!(job.status, JobStatus::Succeeded, "{job:?}");
    }
    for device in store.devices(&acme).await.unwrap() {
        let file = steward_control::providers::StandardProviders::simulated_state_file(
            &state,
            device.id.as_str(),
        );
        let ledger = std::fs::read_to_string(
            steward_runtime::device::simulated::Simulated::ledger_path(&file),
        )
        .unwrap();
        let lines: Vec<&str> = ledger.lines().collect();
        let unique: HashSet<&str> = lines.iter().copied().collect();
        assert_eq!(unique.len(), lines.len(), "applied twice: {lines:?}");
    }
    eprintln!(
        "crash after an approval commit: {APPROVAL_DEVICES} approvals, 9 answered before the crash, \
         1 committed without an answer (kept, audited once), the rest after the restart"
    );
}

/// Runs started through the API while the server is killed (SIGKILL):
/// every run that exists has all its jobs (a run and its jobs are one
/// transaction), every run the API acknowledged exists, and every job
/// ends once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_kill_during_run_starts_leaves_no_partial_run_on_sqlite() {
    kill_during_run_starts(None).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_kill_during_run_starts_leaves_no_partial_run_on_postgres() {
    let db = support::postgres().await;
    kill_during_run_starts(Some(db.url.clone())).await;
}

async fn kill_during_run_starts(url: Option<String>) {
    const DEVICES: usize = 50;
    let dir = tempfile::tempdir().unwrap();
    let url =
        url.unwrap_or_else(|| format!("sqlite://{}", dir.path().join("data/steward.db").display()));
    let store = Store::open(&url).await.unwrap();
    let (plane, acme) = fixer_fleet(&store, dir.path().join("data/modules"), DEVICES, false).await;
    let playbook = plane
        .create_playbook(
            Some(acme.clone()),
            "look",
            json!([{ "plugin": "fixer", "mode": "check" }]),
            json!({}),
        )
        .await
        .unwrap();
    let state = dir.path().join("state");
    let config = |worker: &str| fault_config(dir.path(), dir.path(), &url, worker, &state);
    let (mut first, base) = serve_api(&config("first"), &[]);
    let http = reqwest::Client::new();
    let acked = std::sync::Arc::new(std::sync::Mutex::new(Vec::<String>::new()));
    let mut starters = Vec::new();
    for _ in 0..4 {
        let (http, base, acked, pid) = (
            http.clone(),
            base.clone(),
            acked.clone(),
            playbook.id.as_str().to_owned(),
        );
        starters.push(tokio::spawn(async move {
            loop {
                let resp = http
                    .post(format!("{base}/api/v1/playbooks/{pid}/runs"))
                    .bearer_auth(OWNER)
                    .json(&json!({}))
                    .send()
                    .await;
                let Ok(resp) = resp else { return };
                let Ok(body) = resp.json::<serde_json::Value>().await else {
                    return;
                };
                if let Some(id) = body["id"].as_str() {
                    acked.lock().unwrap().push(id.to_owned());
                }
            }
        }));
    }
    let start = Instant::now();
    while acked.lock().unwrap().len() < 30 {
        assert!(start.elapsed() < Duration::from_secs(120), "runs start");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    first.0.kill().unwrap(); // SIGKILL, with run starts in flight
    first.0.wait().unwrap();
    for s in starters {
        s.await.unwrap();
    }
    let acked = acked.lock().unwrap().clone();

    let second = Serving(serve(&config("second")));
    let runs = store
        .list_runs(&steward_store::RunFilter {
            scope: steward_store::Scope::All,
            tenant: None,
            status: None,
            plugin: None,
            since: None,
            until: None,
            before: None,
            limit: 10_000,
        })
        .await
        .unwrap();
    let ids: HashSet<String> = runs.iter().map(|r| r.id.as_str().to_owned()).collect();
    for id in &acked {
        assert!(ids.contains(id), "acknowledged run {id} was lost");
    }
    let run_ids: Vec<_> = runs.iter().map(|r| r.id.clone()).collect();
    let start = Instant::now();
    loop {
        let c = counts(&store, &run_ids).await;
        if c.keys().all(|s| s.is_terminal()) {
            break;
        }
        assert!(start.elapsed() < Duration::from_secs(180), "{c:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    terminate(second);
    for run in &run_ids {
        let jobs = store.jobs_of_run(run).await.unwrap();
        assert_eq!(jobs.len(), DEVICES, "run {run} has all its jobs or none");
        assert!(jobs.iter().all(|j| j.status == JobStatus::Succeeded));
    }
    eprintln!(
        "SIGKILL during run starts: {} runs acknowledged, {} stored, each with its {DEVICES} jobs, \
         all succeeded",
        acked.len(),
        runs.len()
    );
}

/// A SQLite file whose header is not SQLite's: `steward serve` stops at
/// once (not after a pool timeout), naming the file and the cause, and
/// leaves the file as it was.
#[test]
fn a_corrupt_database_header_stops_serve_at_once_naming_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("data/steward.db");
    std::fs::create_dir_all(db.parent().unwrap()).unwrap();
    let mut garbage = b"SQLite format 2\0".to_vec();
    garbage.resize(8192, 0xA5);
    std::fs::write(&db, &garbage).unwrap();
    let url = format!("sqlite://{}", db.display());
    let config = config(dir.path(), &url, "corrupt", 4, 30);
    let start = Instant::now();
    let out = Command::new(env!("CARGO_BIN_EXE_steward"))
        .args(["serve", "--config"])
        .arg(&config)
        .env("STEWARD_LOG", "warn")
        .output()
        .unwrap();
    let took = start.elapsed();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{err}");
    assert!(
        err.contains(&db.display().to_string()),
        "names the file: {err}"
    );
    assert!(err.contains("not a database"), "names the cause: {err}");
    assert!(
        took < Duration::from_secs(20),
        "stopped at once, not after a 30 s pool timeout: {took:?}"
    );
    assert_eq!(
        std::fs::read(&db).unwrap(),
        garbage,
        "the file is untouched"
    );
}
