//! The store's behaviour, each test run against SQLite and PostgreSQL.

#[macro_use]
mod support;

use std::collections::{BTreeMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use serde_json::json;
use steward_store::{
    ChangeOutcome, Completion, DeviceId, FailOutcome, Failure, FailureKind, Firing, INBOX_HOLD,
    Job, JobId, JobMode, JobStatus, NewChange, NewDevice, NewFinding, NewJob, NewLog, NewPlaybook,
    NewSchedule, NewTenant, OutboxEvent, Outcome, Reclaimed, Run, RunId, RunStatus, Severity,
    Store, StoreError, TenantId, Tier, Timestamp,
};
use support::TestDb;

on_both_backends!(
    migrations_are_idempotent,
    claims_by_tier_then_due_time,
    concurrent_claimers_never_share_a_job,
    expired_leases_are_reclaimed_and_stale_completions_refused,
    leases_out_of_attempts_end_timed_out,
    transient_failures_retry_with_backoff_permanent_ones_do_not,
    reported_remediation_failure_is_not_retried,
    unreachable_device_jobs_wait_then_expire,
    tenant_and_plugin_limits_hold,
    limits_hold_under_concurrent_claimers,
    schedule_fires_once_under_concurrent_attempts,
    replicas_claim_different_due_schedules,
    a_firing_written_ahead_waits_for_its_time_and_is_withdrawn_when_disabled,
    bad_input_is_refused_and_nothing_is_stored,
    completion_records_findings_changes_logs_and_follow_ups,
    heartbeats_renew_only_held_leases_up_to_the_timeout,
    a_job_waiting_for_an_instance_keeps_its_lease_past_its_timeout,
    interrupted_apply_is_reported_to_the_next_attempt,
    approvals_gate_jobs,
    cancelling_a_run_ends_its_running_jobs,
    a_finished_runs_counts_are_one_row_per_status,
    sla_report_times_remediation_per_tier,
    run_listings_page_by_scope_and_filter,
    registry_provenance_trust_and_pins_round_trip,
    alert_outbox_keeps_events_until_delivered,
    the_first_owner_is_created_once_across_processes,
    an_admin_import_stores_every_row_or_none,
    a_bad_completion_fails_its_own_job_and_the_batch_is_stored,
    audit_rows_commit_exactly_with_their_record,
    metrics_count_jobs_and_finished_runs,
    tickets_name_only_their_tenants_devices_and_are_capped_per_job,
    the_monthly_report_counts_what_the_store_holds,
    the_monthly_report_shows_backup_rpo_compliance,
    the_fleet_page_filters_sorts_and_pages_in_the_database,
);

const T0: Timestamp = Timestamp::from_millis(1_700_000_000_000);
const LEASE: Duration = Duration::from_secs(30);

fn at(secs: u64) -> Timestamp {
    T0 + Duration::from_secs(secs)
}

struct Fleet {
    vip: TenantId,
    managed: TenantId,
    on_demand: TenantId,
    /// One device per tenant, in the order above.
    devices: Vec<DeviceId>,
}

async fn fleet(store: &Store) -> Fleet {
    let mut ids = Vec::new();
    let mut devices = Vec::new();
    for (name, tier) in [
        ("vip", Tier::Vip),
        ("managed", Tier::Managed),
        ("on-demand", Tier::OnDemand),
    ] {
        let tenant = store
            .create_tenant(
                &NewTenant {
                    name: name.into(),
                    tier,
                    max_concurrent_jobs: None,
                },
                T0,
            )
            .await
            .unwrap();
        let device = store
            .create_device(&NewDevice::new(tenant.id.clone(), format!("{name}-pc")), T0)
            .await
            .unwrap();
        ids.push(tenant.id);
        devices.push(device.id);
    }
    let mut ids = ids.into_iter();
    Fleet {
        vip: ids.next().unwrap(),
        managed: ids.next().unwrap(),
        on_demand: ids.next().unwrap(),
        devices,
    }
}

fn job(tenant: &TenantId, device: &DeviceId, due: Timestamp) -> NewJob {
    NewJob::new(
        tenant.clone(),
        Some(device.clone()),
        "antivirus",
        JobMode::Check,
        due,
    )
}

async fn run_with(store: &Store, jobs: &[NewJob]) -> RunId {
    store.create_run(None, &[], jobs, T0).await.unwrap()
}

async fn complete_ok(store: &Store, worker: &str, jobs: &[Job], now: Timestamp) -> Vec<JobId> {
    let batch: Vec<Completion> = jobs
        .iter()
        .map(|j| Completion::succeeded(j, json!({"ok": true})))
        .collect();
    store.complete(worker, &batch, now).await.unwrap()
}

async fn status(store: &Store, id: &JobId) -> JobStatus {
    store.job(id).await.unwrap().unwrap().status
}

/// Every run's jobs per status as the database keeps them (the triggers
/// of migration 0012) equal its jobs counted one by one.
async fn run_counts_agree(store: &Store) {
    let runs = store
        .list_runs(&steward_store::RunFilter {
            scope: steward_store::Scope::All,
            tenant: None,
            status: None,
            plugin: None,
            since: None,
            until: None,
            before: None,
            limit: 500,
        })
        .await
        .unwrap();
    assert!(!runs.is_empty());
    for run in runs {
        let mut counted = std::collections::HashMap::new();
        for job in store.jobs_of_run(&run.id).await.unwrap() {
            *counted.entry(job.status).or_insert(0u64) += 1;
        }
        assert_eq!(
            store.job_counts_of_run(&run.id).await.unwrap(),
            counted,
            "run {}",
            run.id
        );
    }
}

async fn migrations_are_idempotent(db: TestDb) {
    let again = db.reopen().await;
    let third = db.reopen().await;
    let f = fleet(&third).await;
    assert_eq!(again.tenants().await.unwrap().len(), 3);
    assert!(again.tenant(&f.vip).await.unwrap().is_some());
    let applied: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM _sqlx_migrations")
        .fetch_one(&sqlx::AnyPool::connect(&db.url).await.unwrap())
        .await
        .unwrap();
    let files = std::fs::read_dir(concat!(env!("CARGO_MANIFEST_DIR"), "/store/migrations"))
        .unwrap()
        .filter(|e| {
            let name = e.as_ref().unwrap().file_name();
            let name = name.to_string_lossy();
            // A `.postgres.sql` twin replaces its SQLite file on PostgreSQL.
            name.ends_with(".sql") && !name.ends_with(".postgres.sql")
        })
        .count();
    assert_eq!(applied, files as i64, "every migration file, once");
}

async fn claims_by_tier_then_due_time(db: TestDb) {
    let s = &db.store;
    let f = fleet(s).await;
    let jobs = [
        job(&f.on_demand, &f.devices[2], at(0)),
        job(&f.managed, &f.devices[1], at(2)),
        job(&f.vip, &f.devices[0], at(3)),
        job(&f.managed, &f.devices[1], at(1)),
        job(&f.vip, &f.devices[0], at(1)),
        // Not due yet at the claim below.
        job(&f.vip, &f.devices[0], at(100)),
    ];
    run_with(s, &jobs).await;
    let claimed = s.claim("w1", 10, LEASE, at(10)).await.unwrap();
    let order: Vec<(Tier, Timestamp)> = claimed.iter().map(|j| (j.tier, j.due_at)).collect();
    assert_eq!(
        order,
        vec![
            (Tier::Vip, at(1)),
            (Tier::Vip, at(3)),
            (Tier::Managed, at(1)),
            (Tier::Managed, at(2)),
            (Tier::OnDemand, at(0)),
        ]
    );
    assert!(claimed.iter().all(|j| j.status == JobStatus::Leased
        && j.attempt == 1
        && j.lease_owner.as_deref() == Some("w1")
        && j.lease_until == Some(at(10) + LEASE)));

    // One at a time, the order is the same: the head of the queue first.
    let db2 = s.claim("w1", 1, LEASE, at(200)).await.unwrap();
    assert_eq!(db2.len(), 1);
    assert_eq!(db2[0].due_at, at(100));
    assert!(s.claim("w1", 1, LEASE, at(200)).await.unwrap().is_empty());
}

async fn concurrent_claimers_never_share_a_job(db: TestDb) {
    let f = fleet(&db.store).await;
    let tenants = [&f.vip, &f.managed, &f.on_demand];
    let jobs: Vec<NewJob> = (0..1000)
        .map(|i| job(tenants[i % 3], &f.devices[i % 3], at((i % 17) as u64)))
        .collect();
    run_with(&db.store, &jobs).await;

    // Two pools (two "processes"), four claimers each.
    let stores = [db.store.clone(), db.reopen().await];
    let mut tasks = Vec::new();
    for (p, store) in stores.iter().enumerate() {
        for w in 0..4 {
            let store = store.clone();
            let worker = format!("p{p}-w{w}");
            tasks.push(tokio::spawn(async move {
                let mut mine = Vec::new();
                loop {
                    let batch = store.claim(&worker, 7, LEASE, at(60)).await.unwrap();
                    if batch.is_empty() {
                        return mine;
                    }
                    assert!(batch.iter().all(|j| j.attempt == 1));
                    mine.extend(batch.into_iter().map(|j| j.id));
                }
            }));
        }
    }
    let mut all = Vec::new();
    for task in tasks {
        all.extend(task.await.unwrap());
    }
    let distinct: HashSet<_> = all.iter().collect();
    assert_eq!(all.len(), 1000, "every job claimed exactly once");
    assert_eq!(distinct.len(), 1000, "no job claimed twice");
    let counts = db.store.job_counts().await.unwrap();
    assert_eq!(counts.get(&JobStatus::Leased), Some(&1000));
}

async fn expired_leases_are_reclaimed_and_stale_completions_refused(db: TestDb) {
    let s = &db.store;
    let f = fleet(s).await;
    run_with(s, &[job(&f.vip, &f.devices[0], at(0))]).await;
    let first = s.claim("w1", 1, LEASE, at(0)).await.unwrap();
    assert_eq!(first.len(), 1);

    // Not yet expired: nothing happens.
    assert_eq!(
        s.reclaim_expired(at(29), &nothing_follows)
            .await
            .unwrap()
            .requeued,
        0
    );
    let report = s.reclaim_expired(at(31), &nothing_follows).await.unwrap();
    assert_eq!((report.requeued, report.timed_out), (1, 0));
    let job = s.job(&first[0].id).await.unwrap().unwrap();
    assert_eq!(job.status, JobStatus::Queued);
    assert!(job.lease_owner.is_none());
    // The backoff applies after a lost lease too (10 s after attempt 1).
    assert_eq!(job.due_at, at(41));
    assert!(job.last_error.unwrap().contains("w1"));

    // The old worker's completion is refused.
    assert!(complete_ok(s, "w1", &first, at(32)).await.is_empty());
    assert!(s.claim("w2", 1, LEASE, at(40)).await.unwrap().is_empty());

    // The same worker id claims it again: its stale attempt is still
    // refused, the new one is accepted once.
    let second = s.claim("w1", 1, LEASE, at(41)).await.unwrap();
    assert_eq!(second[0].attempt, 2);
    assert!(complete_ok(s, "w1", &first, at(42)).await.is_empty());
    assert_eq!(status(s, &first[0].id).await, JobStatus::Leased);
    assert_eq!(
        complete_ok(s, "w1", &second, at(42)).await,
        vec![second[0].id.clone()]
    );
    assert!(complete_ok(s, "w1", &second, at(43)).await.is_empty());
    assert_eq!(status(s, &first[0].id).await, JobStatus::Succeeded);
    let run = s.run(&second[0].run_id).await.unwrap().unwrap();
    assert_eq!(run.status, RunStatus::Succeeded);
    assert_eq!(run.finished_at, Some(at(42)));
    run_counts_agree(&db.store).await;
}

async fn leases_out_of_attempts_end_timed_out(db: TestDb) {
    let s = &db.store;
    let f = fleet(s).await;
    let mut j = job(&f.vip, &f.devices[0], at(0));
    j.max_attempts = 2;
    let run = run_with(s, &[j]).await;
    let a = s.claim("w1", 1, LEASE, at(0)).await.unwrap();
    assert_eq!(
        s.reclaim_expired(at(31), &nothing_follows)
            .await
            .unwrap()
            .requeued,
        1
    );
    let b = s.claim("w2", 1, LEASE, at(100)).await.unwrap();
    assert_eq!(b[0].attempt, 2);
    // A sweep that cannot tell yet what follows the job leaves it leased.
    let undecided = s.reclaim_expired(at(200), &|_| None).await.unwrap();
    assert_eq!(undecided, Reclaimed::default());
    assert_eq!(status(s, &a[0].id).await, JobStatus::Leased);

    // Ending it enqueues what follows it (a step that says `continue`)
    // in the same transaction, so the run goes on.
    let mut next = job(&f.vip, &f.devices[0], at(200));
    next.step_index = 1;
    next.plugin = "patching".into();
    let follows = |ended: &Job| {
        assert_eq!(ended.id, a[0].id);
        Some(vec![next.clone()])
    };
    let report = s.reclaim_expired(at(200), &follows).await.unwrap();
    assert_eq!(
        (report.requeued, report.timed_out, report.followed),
        (0, 1, 1)
    );
    assert_eq!(status(s, &a[0].id).await, JobStatus::TimedOut);
    let jobs = s.jobs_of_run(&run).await.unwrap();
    let followed: Vec<_> = jobs
        .iter()
        .filter(|j| j.id != a[0].id)
        .map(|j| (j.step_index, j.plugin.as_str(), j.status))
        .collect();
    assert_eq!(followed, [(1, "patching", JobStatus::Queued)]);
    assert_eq!(
        s.run(&run).await.unwrap().unwrap().status,
        RunStatus::Running
    );

    // The follow-up succeeds; the run still failed, for its timed-out job.
    let c = s.claim("w3", 1, LEASE, at(201)).await.unwrap();
    assert_eq!(c[0].step_index, 1);
    assert_eq!(complete_ok(s, "w3", &c, at(202)).await.len(), 1);
    assert_eq!(
        s.run(&run).await.unwrap().unwrap().status,
        RunStatus::Failed
    );
    run_counts_agree(&db.store).await;
}

/// For sweeps where no job has a successor.
fn nothing_follows(_: &Job) -> Option<Vec<NewJob>> {
    Some(Vec::new())
}

async fn transient_failures_retry_with_backoff_permanent_ones_do_not(db: TestDb) {
    let s = &db.store;
    let f = fleet(s).await;
    let run = run_with(
        s,
        &[
            job(&f.vip, &f.devices[0], at(0)),
            job(&f.managed, &f.devices[1], at(0)),
        ],
    )
    .await;
    let claimed = s.claim("w", 2, LEASE, at(0)).await.unwrap();
    let (transient, permanent) = (&claimed[0], &claimed[1]);
    let fail = |job: &Job, kind| Failure {
        job_id: job.id.clone(),
        attempt: job.attempt,
        error: "directory unavailable".into(),
        kind,
        logs: vec![NewLog {
            at: at(1),
            level: "warn".into(),
            message: "ldap down".into(),
            fields: json!({}),
        }],
        then: Vec::new(),
        audit: Vec::new(),
        observation: None,
    };

    assert_eq!(
        s.fail("w", &fail(permanent, FailureKind::Permanent), at(1))
            .await
            .unwrap(),
        FailOutcome::Ended(JobStatus::Failed)
    );
    assert_eq!(status(s, &permanent.id).await, JobStatus::Failed);

    // Attempt 1 fails: retry after 10 s; attempt 2: after 20 s; attempt 3
    // (the last): failed.
    let mut job = transient.clone();
    let mut now = at(1);
    for (attempt, wait) in [(1, 10), (2, 20)] {
        assert_eq!(job.attempt, attempt);
        let outcome = s
            .fail("w", &fail(&job, FailureKind::Transient), now)
            .await
            .unwrap();
        let due = now + Duration::from_secs(wait);
        assert_eq!(outcome, FailOutcome::Retrying { due_at: due });
        // Reporting the same attempt again changes nothing.
        assert_eq!(
            s.fail("w", &fail(&job, FailureKind::Transient), now)
                .await
                .unwrap(),
            FailOutcome::NotLeased
        );
        // Not claimable before it is due.
        let just_before = Timestamp::from_millis(due.as_millis() - 1);
        assert!(
            s.claim("w", 1, LEASE, just_before)
                .await
                .unwrap()
                .is_empty()
        );
        let claimed = s.claim("w", 1, LEASE, due).await.unwrap();
        assert_eq!(claimed.len(), 1);
        job = claimed.into_iter().next().unwrap();
        now = due + Duration::from_secs(1);
    }
    assert_eq!(job.attempt, 3);
    assert_eq!(
        s.fail("w", &fail(&job, FailureKind::Transient), now)
            .await
            .unwrap(),
        FailOutcome::Ended(JobStatus::Failed)
    );
    assert_eq!(
        s.run(&run).await.unwrap().unwrap().status,
        RunStatus::Failed
    );
    // Each failed attempt kept its log.
    let logs = s.logs_of_job(&job.id).await.unwrap();
    let attempts: Vec<u32> = logs.iter().map(|(a, _)| *a).collect();
    assert_eq!(attempts, vec![1, 2, 3]);
    run_counts_agree(&db.store).await;
}

async fn reported_remediation_failure_is_not_retried(db: TestDb) {
    let s = &db.store;
    let f = fleet(s).await;
    let mut j = job(&f.vip, &f.devices[0], at(0));
    j.mode = JobMode::Remediate;
    j.max_attempts = 5;
    run_with(s, &[j]).await;
    let claimed = s.claim("w", 1, LEASE, at(0)).await.unwrap();
    let mut c = Completion::succeeded(&claimed[0], json!({}));
    c.outcome = Outcome::Failed {
        reason: "quarantine refused: file in use".into(),
    };
    assert_eq!(s.complete("w", &[c], at(1)).await.unwrap().len(), 1);
    let job = s.job(&claimed[0].id).await.unwrap().unwrap();
    assert_eq!(job.status, JobStatus::Failed);
    assert_eq!(
        job.last_error.as_deref(),
        Some("quarantine refused: file in use")
    );
    assert!(s.claim("w", 1, LEASE, at(10_000)).await.unwrap().is_empty());
    assert!(
        s.reclaim_expired(at(10_000), &nothing_follows)
            .await
            .unwrap()
            == Default::default()
    );
}

async fn unreachable_device_jobs_wait_then_expire(db: TestDb) {
    let s = &db.store;
    let f = fleet(s).await;
    let laptop = s
        .create_device(&NewDevice::new(f.vip.clone(), "laptop"), T0)
        .await
        .unwrap()
        .id;
    s.set_device_reachable(&laptop, false, at(0)).await.unwrap();
    let mut waits = job(&f.vip, &laptop, at(0));
    waits.expires_at = Some(at(3600));
    let mut expires = job(&f.vip, &laptop, at(0));
    expires.expires_at = Some(at(60));
    let other = job(&f.on_demand, &f.devices[2], at(0));
    let run = run_with(s, &[waits, expires, other]).await;

    // The offline device's jobs are skipped, even though VIP; others run.
    let claimed = s.claim("w", 10, LEASE, at(1)).await.unwrap();
    assert_eq!(claimed.len(), 1);
    assert_eq!(claimed[0].tenant_id, f.on_demand);
    complete_ok(s, "w", &claimed, at(2)).await;

    // Past one expiry, still unreachable: that job ends as expired, with
    // the reason; the other keeps waiting.
    assert!(s.claim("w", 10, LEASE, at(61)).await.unwrap().is_empty());
    assert_eq!(s.expire_due(at(61)).await.unwrap(), 1);
    let jobs = s.jobs_of_run(&run).await.unwrap();
    let expired: Vec<&Job> = jobs
        .iter()
        .filter(|j| j.status == JobStatus::Expired)
        .collect();
    assert_eq!(expired.len(), 1);
    assert_eq!(expired[0].expires_at, Some(at(60)));
    assert!(
        expired[0]
            .last_error
            .as_deref()
            .unwrap()
            .contains(&format!("device `{laptop}` was unreachable"))
    );
    assert_eq!(
        s.run(&run).await.unwrap().unwrap().status,
        RunStatus::Running
    );

    // Back online: the waiting job runs.
    s.set_device_reachable(&laptop, true, at(100))
        .await
        .unwrap();
    let claimed = s.claim("w", 10, LEASE, at(100)).await.unwrap();
    assert_eq!(claimed.len(), 1);
    assert_eq!(claimed[0].device_id.as_ref(), Some(&laptop));
    complete_ok(s, "w", &claimed, at(101)).await;
    let run = s.run(&run).await.unwrap().unwrap();
    assert_eq!(run.status, RunStatus::Failed, "one job expired");
    assert!(s.device(&laptop).await.unwrap().unwrap().reachable);
    run_counts_agree(&db.store).await;
}

async fn tenant_and_plugin_limits_hold(db: TestDb) {
    let s = &db.store;
    let f = fleet(s).await;
    s.set_tenant_limit(&f.vip, Some(2)).await.unwrap();
    let mut jobs: Vec<NewJob> = (0..5).map(|i| job(&f.vip, &f.devices[0], at(i))).collect();
    jobs.extend((0..3).map(|i| job(&f.managed, &f.devices[1], at(i))));
    run_with(s, &jobs).await;

    // VIP is served first but only up to its limit; the managed tenant's
    // jobs fill the rest of the batch.
    let first = s.claim("w", 4, LEASE, at(10)).await.unwrap();
    let tiers: Vec<Tier> = first.iter().map(|j| j.tier).collect();
    assert_eq!(
        tiers,
        vec![Tier::Vip, Tier::Vip, Tier::Managed, Tier::Managed]
    );
    // At its limit, VIP does not hold up the queue.
    let next = s.claim("w", 4, LEASE, at(10)).await.unwrap();
    assert_eq!(
        next.iter().map(|j| j.tier).collect::<Vec<_>>(),
        vec![Tier::Managed]
    );
    // One VIP job ends: one more VIP job may start.
    complete_ok(s, "w", &first[..1], at(11)).await;
    let more = s.claim("w", 4, LEASE, at(12)).await.unwrap();
    assert_eq!(
        more.iter().map(|j| j.tier).collect::<Vec<_>>(),
        vec![Tier::Vip]
    );

    // A plugin limit applies across tenants; a limit of 0 pauses it.
    let on_demand_jobs: Vec<NewJob> = (0..3)
        .map(|i| {
            let mut j = job(&f.on_demand, &f.devices[2], at(i));
            j.plugin = "patching".into();
            j
        })
        .collect();
    run_with(s, &on_demand_jobs).await;
    s.set_plugin_limit("patching", Some(0), at(13))
        .await
        .unwrap();
    assert!(s.claim("w", 10, LEASE, at(13)).await.unwrap().is_empty());
    s.set_plugin_limit("patching", Some(1), at(14))
        .await
        .unwrap();
    let patching = s.claim("w", 10, LEASE, at(14)).await.unwrap();
    assert_eq!(patching.len(), 1);
    assert_eq!(patching[0].plugin, "patching");
    assert!(s.claim("w", 10, LEASE, at(14)).await.unwrap().is_empty());
    // Lifting the limits frees the rest.
    s.set_plugin_limit("patching", None, at(15)).await.unwrap();
    s.set_tenant_limit(&f.vip, None).await.unwrap();
    assert_eq!(s.claim("w", 10, LEASE, at(15)).await.unwrap().len(), 4);
}

async fn limits_hold_under_concurrent_claimers(db: TestDb) {
    let f = fleet(&db.store).await;
    db.store.set_tenant_limit(&f.vip, Some(3)).await.unwrap();
    db.store
        .set_plugin_limit("patching", Some(5), T0)
        .await
        .unwrap();
    let mut jobs: Vec<NewJob> = (0..100)
        .map(|i| job(&f.vip, &f.devices[0], at(i % 7)))
        .collect();
    jobs.extend((0..100).map(|i| {
        let mut j = job(&f.managed, &f.devices[1], at(i % 5));
        j.plugin = "patching".into();
        j
    }));
    run_with(&db.store, &jobs).await;
    let stores = [db.store.clone(), db.reopen().await];
    let mut tasks = Vec::new();
    for (p, store) in stores.iter().enumerate() {
        for w in 0..4 {
            let store = store.clone();
            tasks.push(tokio::spawn(async move {
                let mut n = 0;
                for _ in 0..10 {
                    n += store
                        .claim(&format!("p{p}w{w}"), 2, LEASE, at(60))
                        .await
                        .unwrap()
                        .len();
                }
                n
            }));
        }
    }
    let mut total = 0;
    for t in tasks {
        total += t.await.unwrap();
    }
    assert_eq!(total, 8, "3 VIP jobs and 5 patching jobs, no more");
    let counts = db.store.job_counts().await.unwrap();
    assert_eq!(counts.get(&JobStatus::Leased), Some(&8));
}

/// A playbook of tenant `tenant` checking antivirus on all its devices.
async fn nightly_av(store: &Store, tenant: &TenantId) -> steward_store::Playbook {
    store
        .create_playbook(
            &NewPlaybook {
                tenant_id: Some(tenant.clone()),
                name: "nightly av".into(),
                steps: json!([{"plugin": "antivirus", "mode": "check"}]),
                target: json!({"tenant": tenant.as_str()}),
            },
            T0,
        )
        .await
        .unwrap()
}

/// A daily schedule of `playbook` for `tenant`, next due at `at(3600)`.
async fn daily_at_3600(
    store: &Store,
    playbook: &steward_store::Playbook,
    tenant: &TenantId,
) -> steward_store::Schedule {
    store
        .create_schedule(
            &NewSchedule {
                playbook_id: playbook.id.clone(),
                tenant_id: Some(tenant.clone()),
                spec: json!({"cron": "0 2 * * *", "timezone": "UTC"}),
                next_fire_at: Some(at(3600)),
            },
            T0,
        )
        .await
        .unwrap()
}

async fn replicas_claim_different_due_schedules(db: TestDb) {
    let f = fleet(&db.store).await;
    let playbook = nightly_av(&db.store, &f.vip).await;
    for _ in 0..3 {
        daily_at_3600(&db.store, &playbook, &f.vip).await;
    }
    let claim = Duration::from_secs(15);
    let other = db.reopen().await;
    let a = db
        .store
        .claim_due_schedules(at(3600), at(3600), 2, claim)
        .await
        .unwrap();
    let b = other
        .claim_due_schedules(at(3600), at(3600), 2, claim)
        .await
        .unwrap();
    let ids = |v: &[steward_store::Schedule]| -> HashSet<String> {
        v.iter().map(|s| s.id.as_str().to_owned()).collect()
    };
    assert_eq!(a.len(), 2);
    if db.store.backend() == steward_store::Backend::Sqlite {
        // One writer, one scheduler: nothing to split.
        assert_eq!(ids(&b), ids(&a));
        return;
    }
    assert_eq!(b.len(), 1, "the other replica takes what is left");
    assert!(ids(&a).is_disjoint(&ids(&b)));
    // Claims run out: a replica that stopped mid-batch leaves its
    // schedules to the others.
    assert!(
        other
            .claim_due_schedules(at(3610), at(3610), 2, claim)
            .await
            .unwrap()
            .is_empty()
    );
    let again = other
        .claim_due_schedules(at(3616), at(3616), 5, claim)
        .await
        .unwrap();
    assert_eq!(ids(&again), ids(&a).union(&ids(&b)).cloned().collect());
    // A batch that could not be fired is given back at once.
    let taken: Vec<&steward_store::ScheduleId> = again.iter().map(|s| &s.id).collect();
    db.store.release_schedules(&taken).await.unwrap();
    let mine = db
        .store
        .claim_due_schedules(at(3617), at(3617), 5, claim)
        .await
        .unwrap();
    assert_eq!(mine.len(), 3);
    // Firing one ends its claim: due again a minute later, it is claimed
    // at once (a schedule that fires every second is not held for the
    // claim's 15 s), while the others' claims still hold.
    let firing = Firing {
        schedule_id: mine[0].id.clone(),
        fire_at: at(3600),
        next_fire_at: Some(at(3620)),
    };
    let jobs = vec![job(&f.vip, &f.devices[0], at(3617))];
    let created = db
        .store
        .create_runs_for_firings(&[(firing, vec![], jobs)], at(3617))
        .await
        .unwrap();
    assert!(created[0].is_some());
    let next = other
        .claim_due_schedules(at(3620), at(3620), 5, claim)
        .await
        .unwrap();
    assert_eq!(ids(&next), ids(&mine[..1]));
}

async fn a_firing_written_ahead_waits_for_its_time_and_is_withdrawn_when_disabled(db: TestDb) {
    let f = fleet(&db.store).await;
    let playbook = nightly_av(&db.store, &f.vip).await;
    let mut ids = Vec::new();
    for _ in 0..2 {
        ids.push(daily_at_3600(&db.store, &playbook, &f.vip).await.id);
    }
    let (a, b) = (&ids[0], &ids[1]);
    // B has a run going (an earlier firing).
    let earlier = Firing {
        schedule_id: b.clone(),
        fire_at: at(0),
        next_fire_at: Some(at(3600)),
    };
    let b_jobs = vec![job(&f.vip, &f.devices[0], at(0))];
    assert!(
        db.store
            .create_run_for_firing(&earlier, &[], &b_jobs, at(0))
            .await
            .unwrap()
            .is_some()
    );
    let claim = Duration::from_secs(15);
    let names = |v: Vec<steward_store::Schedule>| -> Vec<steward_store::ScheduleId> {
        v.into_iter().map(|s| s.id).collect()
    };
    // Twenty seconds before the firing: nothing is due; looking 30 s ahead
    // finds A only, as B's run is still going (its overlap policy decides
    // at the firing).
    let early = db
        .store
        .claim_due_schedules(at(3580), at(3580), 10, claim)
        .await
        .unwrap();
    assert!(early.is_empty());
    let ahead = db
        .store
        .claim_due_schedules(at(3580), at(3610), 10, claim)
        .await
        .unwrap();
    assert_eq!(names(ahead), vec![a.clone()]);
    db.store.release_schedules(&[a]).await.unwrap();
    // Written now, its job due at the firing.
    let firing = Firing {
        schedule_id: a.clone(),
        fire_at: at(3600),
        next_fire_at: Some(at(3600 + 86_400)),
    };
    let a_jobs = vec![job(&f.vip, &f.devices[0], at(3600))];
    let written = db
        .store
        .create_runs_for_firings(&[(firing.clone(), vec![], a_jobs.clone())], at(3580))
        .await
        .unwrap();
    let run = written[0].clone().expect("written ahead");
    assert_eq!(
        db.store.next_due_after(at(3580)).await.unwrap(),
        Some(at(3600))
    );
    // Nothing of it can start before its time.
    assert!(
        db.store
            .claim("w", 10, LEASE, at(3599))
            .await
            .unwrap()
            .iter()
            .all(|j| j.run_id != run)
    );
    // A has a run going now, so it is not looked at again until due; B is
    // due at the firing, run going or not.
    assert!(
        db.store
            .claim_due_schedules(at(3581), at(3611), 10, claim)
            .await
            .unwrap()
            .is_empty()
    );
    db.store.release_schedules(&[b]).await.unwrap();
    let due = db
        .store
        .claim_due_schedules(at(3600), at(3630), 10, claim)
        .await
        .unwrap();
    assert_eq!(names(due), vec![b.clone()]);
    db.store.release_schedules(&[b]).await.unwrap();

    // Disabling A before its firing withdraws the run: A is due at the
    // firing again, as if never written.
    assert!(
        db.store
            .set_schedule_enabled(a, false, at(3590))
            .await
            .unwrap()
    );
    assert!(db.store.runs_of_schedule(a).await.unwrap().is_empty());
    assert!(db.store.jobs_of_run(&run).await.unwrap().is_empty());
    assert_eq!(db.store.next_due_after(at(3580)).await.unwrap(), None);
    let s = db.store.schedule(a).await.unwrap().unwrap();
    assert_eq!((s.next_fire_at, s.last_fired_at), (Some(at(3600)), None));
    run_counts_agree(&db.store).await;
    // A firing found while enabled and written after disabling is not
    // written, and its schedule does not move on.
    assert_eq!(
        db.store
            .create_runs_for_firings(&[(firing.clone(), vec![], a_jobs.clone())], at(3591))
            .await
            .unwrap(),
        vec![None]
    );
    assert_eq!(
        db.store
            .create_run_for_firing(&firing, &[], &a_jobs, at(3591))
            .await
            .unwrap(),
        None
    );
    let s = db.store.schedule(a).await.unwrap().unwrap();
    assert_eq!(s.next_fire_at, Some(at(3600)));
    // Enabled again, it is written ahead again; once its job has started,
    // disabling leaves the run alone.
    assert!(
        db.store
            .set_schedule_enabled(a, true, at(3592))
            .await
            .unwrap()
    );
    let ahead = db
        .store
        .claim_due_schedules(at(3592), at(3622), 10, claim)
        .await
        .unwrap();
    assert_eq!(names(ahead), vec![a.clone()]);
    let written = db
        .store
        .create_runs_for_firings(&[(firing, vec![], a_jobs)], at(3592))
        .await
        .unwrap();
    let run = written[0].clone().expect("written ahead again");
    let claimed = db.store.claim("w", 10, LEASE, at(3600)).await.unwrap();
    assert!(claimed.iter().any(|j| j.run_id == run));
    assert!(
        db.store
            .set_schedule_enabled(a, false, at(3599))
            .await
            .unwrap()
    );
    assert_eq!(db.store.runs_of_schedule(a).await.unwrap().len(), 1);
    run_counts_agree(&db.store).await;
}

async fn schedule_fires_once_under_concurrent_attempts(db: TestDb) {
    let f = fleet(&db.store).await;
    let playbook = nightly_av(&db.store, &f.vip).await;
    let schedule = db
        .store
        .create_schedule(
            &NewSchedule {
                playbook_id: playbook.id.clone(),
                tenant_id: Some(f.vip.clone()),
                spec: json!({"cron": "0 2 * * *", "timezone": "Europe/Berlin"}),
                next_fire_at: Some(at(3600)),
            },
            T0,
        )
        .await
        .unwrap();
    assert_eq!(db.store.due_schedules(at(3600), 10).await.unwrap().len(), 1);

    let firing = Firing {
        schedule_id: schedule.id.clone(),
        fire_at: at(3600),
        next_fire_at: Some(at(3600 + 86_400)),
    };
    let jobs = Arc::new(vec![job(&f.vip, &f.devices[0], at(3600))]);
    let stores = [db.store.clone(), db.reopen().await];
    let mut tasks = Vec::new();
    for i in 0..10 {
        let store = stores[i % 2].clone();
        let firing = firing.clone();
        let jobs = jobs.clone();
        tasks.push(tokio::spawn(async move {
            store
                .create_run_for_firing(&firing, &[], &jobs, at(3600))
                .await
                .unwrap()
        }));
    }
    let mut created = Vec::new();
    for t in tasks {
        created.extend(t.await.unwrap());
    }
    assert_eq!(created.len(), 1, "exactly one process started the run");
    let runs = db.store.runs_of_schedule(&schedule.id).await.unwrap();
    assert_eq!(runs.len(), 1);
    assert_eq!(runs[0].fire_at, Some(at(3600)));
    assert_eq!(runs[0].playbook_id.as_ref(), Some(&playbook.id));
    assert_eq!(db.store.jobs_of_run(&created[0]).await.unwrap().len(), 1);
    let schedule = db.store.schedule(&schedule.id).await.unwrap().unwrap();
    assert_eq!(schedule.last_fired_at, Some(at(3600)));
    assert_eq!(schedule.next_fire_at, Some(at(3600 + 86_400)));
    assert!(
        db.store
            .due_schedules(at(3601), 10)
            .await
            .unwrap()
            .is_empty()
    );
    assert!(
        db.store
            .schedule_has_running_run(&schedule.id)
            .await
            .unwrap()
    );

    // The next firing is a new run.
    let next = Firing {
        fire_at: at(3600 + 86_400),
        next_fire_at: None,
        ..firing
    };
    assert!(
        db.store
            .create_run_for_firing(&next, &[], &[], at(90_000))
            .await
            .unwrap()
            .is_some()
    );
    run_counts_agree(&db.store).await;
}

async fn bad_input_is_refused_and_nothing_is_stored(db: TestDb) {
    let s = &db.store;
    let f = fleet(s).await;
    let run = run_with(s, &[]).await;
    // A run without jobs has nothing to wait for.
    assert_eq!(
        s.run(&run).await.unwrap().unwrap().status,
        RunStatus::Succeeded
    );
    let run = s
        .create_run(None, &[], &[job(&f.vip, &f.devices[0], at(0))], T0)
        .await
        .unwrap();
    let good = job(&f.vip, &f.devices[0], at(0));
    let before = s.job_counts().await.unwrap();

    let ghost = TenantId::from("no-such-tenant");
    let err = s
        .enqueue_jobs(&run, &[good.clone(), job(&ghost, &f.devices[0], at(0))], T0)
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::UnknownTenant(ref t) if *t == ghost));
    assert_eq!(err.to_string(), "unknown tenant `no-such-tenant`");

    let err = s
        .enqueue_jobs(&run, &[good.clone(), job(&f.vip, &f.devices[1], at(0))], T0)
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::WrongTenant { .. }), "{err}");

    let err = s
        .enqueue_jobs(&run, &[job(&f.vip, &DeviceId::from("nope"), at(0))], T0)
        .await
        .unwrap_err();
    assert_eq!(err.to_string(), "unknown device `nope`");

    let mut bad = good.clone();
    bad.params = json!(["not", "an", "object"]);
    let err = s.enqueue_jobs(&run, &[bad], T0).await.unwrap_err();
    assert_eq!(err.to_string(), "invalid `params`: must be a JSON object");

    let mut bad = good.clone();
    bad.expires_at = Some(at(0));
    let err = s.enqueue_jobs(&run, &[bad], T0).await.unwrap_err();
    assert!(err.to_string().starts_with("invalid `expires-at`"), "{err}");

    let err = s
        .enqueue_jobs(&RunId::from("nope"), std::slice::from_ref(&good), T0)
        .await
        .unwrap_err();
    assert_eq!(err.to_string(), "unknown run `nope`");

    let err = s
        .create_run(
            None,
            &[],
            &[good.clone(), job(&ghost, &f.devices[0], at(0))],
            T0,
        )
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::UnknownTenant(_)));

    let err = s
        .create_tenant(
            &NewTenant {
                name: "vip".into(),
                tier: Tier::Vip,
                max_concurrent_jobs: None,
            },
            T0,
        )
        .await
        .unwrap_err();
    assert_eq!(err.to_string(), "tenant `vip` already exists");
    assert_eq!(
        "gold".parse::<Tier>().unwrap_err().to_string(),
        "invalid `tier`: `gold` is not one of `vip`, `managed`, `on-demand`"
    );

    assert_eq!(s.job_counts().await.unwrap(), before, "nothing was stored");
    assert_eq!(s.tenants().await.unwrap().len(), 3);

    // A finished run takes no more jobs.
    let claimed = s.claim("w", 10, LEASE, at(0)).await.unwrap();
    complete_ok(s, "w", &claimed, at(1)).await;
    let err = s.enqueue_jobs(&run, &[good], T0).await.unwrap_err();
    assert!(matches!(err, StoreError::RunFinished(_)));
}

async fn completion_records_findings_changes_logs_and_follow_ups(db: TestDb) {
    let s = &db.store;
    let f = fleet(s).await;
    let device = &f.devices[0];
    let run = run_with(s, &[job(&f.vip, device, at(0))]).await;
    let finding = |key: &str, severity| NewFinding {
        key: key.into(),
        severity,
        summary: format!("{key} found"),
        detail: String::new(),
        resource: key.into(),
        fields: json!({"k": "v"}),
    };

    // Check 1 finds a and b, and asks for a remediation step.
    let check = s.claim("w", 1, LEASE, at(1)).await.unwrap();
    let mut c = Completion::succeeded(&check[0], json!({"findings": 2}));
    c.findings = vec![
        finding("a", Severity::Critical),
        finding("b", Severity::Warning),
    ];
    c.logs = vec![NewLog {
        at: at(1),
        level: "info".into(),
        message: "scanned".into(),
        fields: json!({"files": 10}),
    }];
    let mut next = job(&f.vip, device, at(2));
    next.mode = JobMode::Remediate;
    next.step_index = 1;
    c.then = vec![next];
    assert_eq!(s.complete("w", &[c.clone()], at(2)).await.unwrap().len(), 1);
    // Sent again (a retry after a lost reply): refused, nothing doubled.
    assert!(s.complete("w", &[c], at(2)).await.unwrap().is_empty());
    assert_eq!(s.jobs_of_run(&run).await.unwrap().len(), 2);
    assert_eq!(s.logs_of_job(&check[0].id).await.unwrap().len(), 1);
    assert_eq!(
        s.run(&run).await.unwrap().unwrap().status,
        RunStatus::Running
    );

    // The remediation step records its changes.
    let fix = s.claim("w", 1, LEASE, at(3)).await.unwrap();
    assert_eq!((fix[0].step_index, fix[0].mode), (1, JobMode::Remediate));
    let mut c = Completion::succeeded(&fix[0], json!({}));
    c.changes = vec![NewChange {
        kind: "quarantine".into(),
        target: "/srv/eicar.com".into(),
        description: "quarantined EICAR".into(),
        before: None,
        after: Some("q-1".into()),
        outcome: ChangeOutcome::Applied,
    }];
    s.complete("w", &[c], at(4)).await.unwrap();
    let changes = s.changes_of_job(&fix[0].id).await.unwrap();
    assert_eq!(changes.len(), 1);
    assert_eq!(changes[0].change.target, "/srv/eicar.com");
    let run_row = s.run(&run).await.unwrap().unwrap();
    assert_eq!(run_row.status, RunStatus::Succeeded);

    // Check 2 (a new run) finds only a: b is resolved, a keeps its first
    // sighting. Two checks of the same device in one batch: the later
    // decides.
    run_with(
        s,
        &[job(&f.vip, device, at(10)), job(&f.vip, device, at(11))],
    )
    .await;
    let checks = s.claim("w", 2, LEASE, at(20)).await.unwrap();
    let mut c1 = Completion::succeeded(&checks[0], json!({}));
    c1.findings = vec![finding("b", Severity::Warning)];
    let mut c2 = Completion::succeeded(&checks[1], json!({}));
    c2.findings = vec![finding("a", Severity::Critical)];
    assert_eq!(s.complete("w", &[c1, c2], at(21)).await.unwrap().len(), 2);
    let all = s.findings(&f.vip, false).await.unwrap();
    assert_eq!(all.len(), 2);
    let a = all.iter().find(|x| x.key == "a").unwrap();
    // Reported again unchanged within ten minutes: not rewritten.
    assert_eq!(
        (a.first_seen_at, a.last_seen_at, a.resolved_at),
        (at(2), at(2), None)
    );
    let b = all.iter().find(|x| x.key == "b").unwrap();
    assert_eq!(b.resolved_at, Some(at(21)));
    let open = s.findings(&f.vip, true).await.unwrap();
    assert_eq!(
        open.iter().map(|x| x.key.as_str()).collect::<Vec<_>>(),
        ["a"]
    );

    // b comes back: a new occurrence, seen from now on.
    run_with(s, &[job(&f.vip, device, at(30))]).await;
    let again = s.claim("w", 1, LEASE, at(30)).await.unwrap();
    let mut c = Completion::succeeded(&again[0], json!({}));
    c.findings = vec![
        finding("a", Severity::Critical),
        finding("b", Severity::Critical),
    ];
    s.complete("w", &[c], at(31)).await.unwrap();
    let b = s
        .findings(&f.vip, true)
        .await
        .unwrap()
        .into_iter()
        .find(|x| x.key == "b")
        .unwrap();
    assert_eq!(
        (b.first_seen_at, b.severity, b.resolved_at),
        (at(31), Severity::Critical, None)
    );

    // Seen again more than ten minutes later: `last_seen_at` moves on.
    run_with(s, &[job(&f.vip, device, at(700))]).await;
    let later = s.claim("w", 1, LEASE, at(700)).await.unwrap();
    let mut c = Completion::succeeded(&later[0], json!({}));
    c.findings = vec![
        finding("a", Severity::Critical),
        finding("b", Severity::Critical),
    ];
    s.complete("w", &[c], at(701)).await.unwrap();
    let a = s
        .findings(&f.vip, true)
        .await
        .unwrap()
        .into_iter()
        .find(|x| x.key == "a")
        .unwrap();
    assert_eq!((a.first_seen_at, a.last_seen_at), (at(2), at(701)));
    run_counts_agree(&db.store).await;
}

async fn heartbeats_renew_only_held_leases_up_to_the_timeout(db: TestDb) {
    let s = &db.store;
    let f = fleet(s).await;
    let mut j = job(&f.vip, &f.devices[0], at(0));
    j.timeout = Duration::from_secs(60);
    run_with(s, &[j.clone(), j]).await;
    let held = s.claim("w1", 2, LEASE, at(0)).await.unwrap();
    // Both began running at their claim.
    let pairs: Vec<(JobId, u32, Option<Timestamp>)> = held
        .iter()
        .map(|j| (j.id.clone(), j.attempt, Some(at(0))))
        .collect();

    // Another worker cannot renew them.
    assert!(
        s.heartbeat("w2", &pairs, LEASE, at(10))
            .await
            .unwrap()
            .is_empty()
    );
    // The holder can, but not past start + timeout + lease.
    assert_eq!(
        s.heartbeat("w1", &pairs, LEASE, at(20))
            .await
            .unwrap()
            .len(),
        2
    );
    assert_eq!(
        s.job(&held[0].id).await.unwrap().unwrap().lease_until,
        Some(at(50))
    );
    s.heartbeat("w1", &pairs, LEASE, at(49)).await.unwrap();
    s.heartbeat("w1", &pairs, LEASE, at(75)).await.unwrap();
    assert_eq!(
        s.job(&held[0].id).await.unwrap().unwrap().lease_until,
        Some(at(90))
    );
    // A lease that has run out is not renewed, even before it is reclaimed.
    assert!(
        s.heartbeat("w1", &pairs, LEASE, at(91))
            .await
            .unwrap()
            .is_empty()
    );
    assert_eq!(
        s.reclaim_expired(at(91), &nothing_follows)
            .await
            .unwrap()
            .requeued,
        2
    );
}

async fn a_job_waiting_for_an_instance_keeps_its_lease_past_its_timeout(db: TestDb) {
    let s = &db.store;
    let f = fleet(s).await;
    let mut j = job(&f.vip, &f.devices[0], at(0));
    j.timeout = Duration::from_secs(60);
    run_with(s, &[j]).await;
    let held = s.claim("w1", 1, LEASE, at(0)).await.unwrap();
    let (id, attempt) = (held[0].id.clone(), held[0].attempt);
    // Claimed at 0, still waiting for an instance at 80 (past 0 + 60 + 30):
    // its timeout has not begun, so the lease is renewed in full.
    let waiting = [(id.clone(), attempt, None)];
    for t in [20, 45, 70, 79] {
        let kept = s.heartbeat("w1", &waiting, LEASE, at(t)).await.unwrap();
        assert_eq!(kept.len(), 1, "renewed at {t}");
    }
    assert_eq!(
        s.job(&id).await.unwrap().unwrap().lease_until,
        Some(at(109))
    );
    // It starts running at 100: from then on the cap is 100 + 60 + 30.
    let running = [(id.clone(), attempt, Some(at(100)))];
    for t in [100, 125, 150, 175] {
        let kept = s.heartbeat("w1", &running, LEASE, at(t)).await.unwrap();
        assert_eq!(kept.len(), 1, "renewed at {t}");
    }
    assert_eq!(
        s.job(&id).await.unwrap().unwrap().lease_until,
        Some(at(190))
    );
    assert!(
        s.heartbeat("w1", &running, LEASE, at(191))
            .await
            .unwrap()
            .is_empty(),
        "past its start plus timeout plus lease"
    );
}

async fn interrupted_apply_is_reported_to_the_next_attempt(db: TestDb) {
    let s = &db.store;
    let f = fleet(s).await;
    let mut j = job(&f.vip, &f.devices[0], at(0));
    j.mode = JobMode::Remediate;
    run_with(s, &[j]).await;
    let first = s.claim("w1", 1, LEASE, at(0)).await.unwrap();
    assert!(!first[0].interrupted_apply);
    assert!(!s.mark_applying("w2", &first[0].id, 1, at(1)).await.unwrap());
    assert!(s.mark_applying("w1", &first[0].id, 1, at(1)).await.unwrap());
    // The worker is killed mid-apply; its lease runs out.
    s.reclaim_expired(at(100), &nothing_follows).await.unwrap();
    let second = s.claim("w2", 1, LEASE, at(200)).await.unwrap();
    assert_eq!(second[0].attempt, 2);
    assert!(second[0].interrupted_apply);
    // The dead worker's attempt cannot mark or complete anything now.
    assert!(
        !s.mark_applying("w1", &first[0].id, 1, at(201))
            .await
            .unwrap()
    );
    assert!(complete_ok(s, "w1", &first, at(201)).await.is_empty());
    assert_eq!(complete_ok(s, "w2", &second, at(202)).await.len(), 1);
}

async fn approvals_gate_jobs(db: TestDb) {
    let s = &db.store;
    let f = fleet(s).await;
    let gated = |due| {
        let mut j = job(&f.managed, &f.devices[1], due);
        j.mode = JobMode::Remediate;
        j.awaiting_approval = true;
        j.expires_at = Some(at(1000));
        j
    };
    let run = run_with(s, &[gated(at(0)), gated(at(1)), gated(at(2))]).await;
    let ids: Vec<JobId> = s
        .jobs_of_run(&run)
        .await
        .unwrap()
        .into_iter()
        .map(|j| j.id)
        .collect();
    assert!(ids.len() == 3);
    assert!(s.claim("w", 10, LEASE, at(5)).await.unwrap().is_empty());

    // A decision and its audit event commit together: a second decision
    // of the same job changes nothing and audits nothing.
    let decision = |action: &str| steward_store::AuditEvent {
        at: at(6),
        actor: "user:alice".into(),
        tenant_id: None,
        run_id: None,
        job_id: Some(ids[0].clone()),
        attempt: None,
        device_id: None,
        plugin: None,
        plugin_digest: None,
        action: action.into(),
        detail: json!({}),
        outcome: "ok".into(),
    };
    let approved = s
        .decide_job(
            &ids[0],
            "alice",
            "ok",
            true,
            &[decision("approval.approve")],
            at(6),
        )
        .await
        .unwrap();
    assert_eq!(approved.map(|j| j.status), Some(JobStatus::Queued));
    assert_eq!(s.audit_count(&ids[0]).await.unwrap(), 1);
    assert!(
        s.decide_job(
            &ids[0],
            "alice",
            "twice",
            true,
            &[decision("approval.approve")],
            at(6)
        )
        .await
        .unwrap()
        .is_none()
    );
    assert_eq!(s.audit_count(&ids[0]).await.unwrap(), 1);
    assert!(
        s.approve_job(&ids[0], "alice", "twice", at(6))
            .await
            .unwrap()
            .is_none()
    );
    let rejected = s
        .reject_job(&ids[1], "bob", "not now", at(6))
        .await
        .unwrap();
    assert_eq!(
        rejected.map(|j| (j.status, j.last_error)),
        Some((JobStatus::Cancelled, Some("plan rejected".to_string())))
    );
    assert!(matches!(
        s.approve_job(&ids[2], " ", "", at(6)).await,
        Err(StoreError::Invalid {
            field: "decided-by",
            ..
        })
    ));
    let claimed = s.claim("w", 10, LEASE, at(7)).await.unwrap();
    assert_eq!(
        claimed.iter().map(|j| &j.id).collect::<Vec<_>>(),
        vec![&ids[0]]
    );
    assert_eq!(status(s, &ids[1]).await, JobStatus::Cancelled);
    complete_ok(s, "w", &claimed, at(8)).await;

    // Never decided: expires.
    assert_eq!(s.expire_due(at(1000)).await.unwrap(), 1);
    let last = s.job(&ids[2]).await.unwrap().unwrap();
    assert_eq!(last.status, JobStatus::Expired);
    assert_eq!(
        last.last_error.as_deref(),
        Some("not approved before it expired")
    );
    assert_eq!(
        s.run(&run).await.unwrap().unwrap().status,
        RunStatus::Failed
    );
    run_counts_agree(&db.store).await;
}

async fn cancelling_a_run_ends_its_running_jobs(db: TestDb) {
    let s = &db.store;
    let f = fleet(s).await;
    let run = run_with(
        s,
        &[
            job(&f.vip, &f.devices[0], at(0)),
            job(&f.vip, &f.devices[0], at(1)),
            job(&f.vip, &f.devices[0], at(2)),
        ],
    )
    .await;
    let running = s.claim("w", 1, LEASE, at(0)).await.unwrap();
    assert_eq!(s.cancel_run(&run, at(5)).await.unwrap(), 3);
    let ended = s.run(&run).await.unwrap().unwrap();
    assert_eq!(
        (ended.status, ended.finished_at),
        (RunStatus::Cancelled, Some(at(5))),
        "the run ends at once"
    );
    assert_eq!(status(s, &running[0].id).await, JobStatus::Cancelled);
    // Its worker no longer holds the lease (so it stops the job), and what
    // the attempt would record is refused, follow-up steps included.
    let held = [(running[0].id.clone(), running[0].attempt, Some(at(0)))];
    assert!(
        s.heartbeat("w", &held, LEASE, at(6))
            .await
            .unwrap()
            .is_empty()
    );
    assert!(s.claim("w", 10, LEASE, at(6)).await.unwrap().is_empty());
    let mut done = Completion::succeeded(&running[0], json!({}));
    done.then = vec![job(&f.vip, &f.devices[0], at(7))];
    assert!(s.complete("w", &[done], at(7)).await.unwrap().is_empty());
    assert_eq!(s.jobs_of_run(&run).await.unwrap().len(), 3, "no later step");
    assert_eq!(status(s, &running[0].id).await, JobStatus::Cancelled);
    assert_eq!(s.finish_settled_runs(at(8)).await.unwrap(), 0);
    run_counts_agree(&db.store).await;
}

async fn a_finished_runs_counts_are_one_row_per_status(db: TestDb) {
    let s = &db.store;
    let f = fleet(s).await;
    let jobs: Vec<NewJob> = (0..4).map(|i| job(&f.vip, &f.devices[0], at(i))).collect();
    let run = run_with(s, &jobs).await;
    // Each job changes state in its own statements: on PostgreSQL every
    // one appends deltas to the run's counts.
    for n in 0..4u64 {
        let claimed = s.claim("w", 1, LEASE, at(10 + n)).await.unwrap();
        if n == 3 {
            let failure = Failure {
                job_id: claimed[0].id.clone(),
                attempt: claimed[0].attempt,
                error: "disk full".into(),
                kind: FailureKind::Permanent,
                logs: Vec::new(),
                then: Vec::new(),
                audit: Vec::new(),
                observation: None,
            };
            s.fail("w", &failure, at(20)).await.unwrap();
        } else {
            complete_ok(s, "w", &claimed, at(20)).await;
        }
    }
    let ended = s.run(&run).await.unwrap().unwrap();
    assert_eq!(ended.status, RunStatus::Failed);
    let counts = s.job_counts_of_run(&run).await.unwrap();
    assert_eq!(
        counts,
        [(JobStatus::Succeeded, 3), (JobStatus::Failed, 1)].into()
    );
    let rows: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM run_job_counts WHERE run_id = $1")
        .bind(run.as_str())
        .fetch_one(&sqlx::AnyPool::connect(&db.url).await.unwrap())
        .await
        .unwrap();
    assert_eq!(rows, 2, "finishing the run compacts its counts");
    run_counts_agree(s).await;
}

#[tokio::test]
async fn sqlite_file_is_created_on_first_start_in_wal_mode() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("state/steward.db");
    let url = format!("sqlite://{}", path.display());
    let store = Store::open(&url).await.unwrap();
    assert!(path.is_file());
    store.close().await;
    let pool = sqlx::AnyPool::connect(&url).await.unwrap();
    let mode: String = sqlx::query_scalar("PRAGMA journal_mode")
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(mode, "wal");
    // Opening again keeps what was stored.
    let store = Store::open(&url).await.unwrap();
    assert!(store.tenants().await.unwrap().is_empty());
}

#[tokio::test]
async fn unsupported_urls_are_refused_without_echoing_secrets() {
    let err = Store::open("mysql://root:hunter2@db/steward")
        .await
        .unwrap_err();
    assert!(!err.to_string().contains("hunter2"), "{err}");
    assert!(matches!(err, StoreError::UnsupportedUrl(_)));
}

/// Checks `device` of `tenant` at `at(secs)`, reporting `keys` (warnings).
async fn check_reports(s: &Store, tenant: &TenantId, device: &DeviceId, secs: u64, keys: &[&str]) {
    run_with(s, &[job(tenant, device, at(secs))]).await;
    let claimed = s.claim("w", 1, LEASE, at(secs)).await.unwrap();
    let mut c = Completion::succeeded(&claimed[0], json!({}));
    c.findings = keys
        .iter()
        .map(|k| NewFinding {
            key: (*k).into(),
            severity: Severity::Warning,
            summary: format!("{k} found"),
            detail: String::new(),
            resource: String::new(),
            fields: json!({}),
        })
        .collect();
    assert_eq!(s.complete("w", &[c], at(secs)).await.unwrap().len(), 1);
}

async fn sla_report_times_remediation_per_tier(db: TestDb) {
    let s = &db.store;
    let f = fleet(s).await;
    let hour = 3600;
    // VIP: `a` fixed after 1 h, `b` after 6 h (late against 4 h), `c` open.
    check_reports(s, &f.vip, &f.devices[0], 100, &["a", "b", "c"]).await;
    check_reports(s, &f.vip, &f.devices[0], 100 + hour, &["b", "c"]).await;
    check_reports(s, &f.vip, &f.devices[0], 100 + 6 * hour, &["c"]).await;
    // Managed: `x` fixed after 2 h.
    check_reports(s, &f.managed, &f.devices[1], 100, &["x"]).await;
    check_reports(s, &f.managed, &f.devices[1], 100 + 2 * hour, &[]).await;

    let targets = [
        (Tier::Vip, 4 * 3600),
        (Tier::Managed, 24 * 3600),
        (Tier::OnDemand, 72 * 3600),
    ]
    .into_iter()
    .collect();
    let report = s
        .sla_report(T0, at(100 + 10 * hour), &targets)
        .await
        .unwrap();
    assert_eq!(report.len(), 3);
    let vip = &report[0];
    assert_eq!(vip.tier, Tier::Vip);
    assert_eq!((vip.resolved, vip.resolved_late), (2, 1));
    assert_eq!(
        vip.median_seconds,
        Some(6 * 3600),
        "median of 1 h and 6 h (upper)"
    );
    assert_eq!(vip.p90_seconds, Some(6 * 3600));
    assert_eq!((vip.open, vip.open_overdue), (1, 1), "`c` open for 10 h");
    let managed = &report[1];
    assert_eq!((managed.resolved, managed.resolved_late), (1, 0));
    assert_eq!(managed.median_seconds, Some(2 * 3600));
    assert_eq!((managed.open, managed.open_overdue), (0, 0));
    let on_demand = &report[2];
    assert_eq!(
        (on_demand.resolved, on_demand.open, on_demand.median_seconds),
        (0, 0, None)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn processes_opening_a_new_sqlite_file_at_once_migrate_it_once() {
    for _ in 0..5 {
        let dir = tempfile::tempdir().unwrap();
        let url = format!("sqlite://{}", dir.path().join("new/steward.db").display());
        let opens: Vec<_> = (0..4)
            .map(|_| {
                let url = url.clone();
                tokio::spawn(async move { Store::open(&url).await.map(|_| ()) })
            })
            .collect();
        for open in opens {
            open.await.unwrap().expect("every concurrent open succeeds");
        }
    }
}

async fn run_listings_page_by_scope_and_filter(db: TestDb) {
    use steward_store::{RunFilter, Scope};
    let s = &db.store;
    let f = fleet(s).await;
    // Five runs: vip, managed, vip (a patching job), managed, vip.
    let mut runs = Vec::new();
    for (i, (tenant, device)) in [
        (&f.vip, &f.devices[0]),
        (&f.managed, &f.devices[1]),
        (&f.vip, &f.devices[0]),
        (&f.managed, &f.devices[1]),
        (&f.vip, &f.devices[0]),
    ]
    .into_iter()
    .enumerate()
    {
        let mut j = job(tenant, device, at(0));
        if i == 2 {
            j.plugin = "patching".into();
        }
        runs.push(s.create_run(None, &[], &[j], at(i as u64)).await.unwrap());
    }
    s.cancel_run(&runs[3], at(10)).await.unwrap();
    let filter = |scope: Scope| RunFilter {
        scope,
        tenant: None,
        status: None,
        plugin: None,
        since: None,
        until: None,
        before: None,
        limit: 2,
    };
    // Newest first, two per page, every run once across the pages; the
    // JSON form is the serde form of the same runs.
    let mut seen = Vec::new();
    let mut page = filter(Scope::All);
    loop {
        let got = s.list_runs(&page).await.unwrap();
        let json = s.list_runs_json(&page).await.unwrap();
        let parsed: Vec<Run> = serde_json::from_str(&json.items).unwrap();
        assert_eq!(parsed, got);
        assert_eq!(json.count, got.len() as u64);
        assert_eq!(json.last_id.as_deref(), got.last().map(|r| r.id.as_str()));
        seen.extend(got.iter().map(|r| r.id.clone()));
        if got.len() < 2 {
            break;
        }
        page.before = got.last().map(|r| r.id.clone());
    }
    let newest_first: Vec<RunId> = runs.iter().rev().cloned().collect();
    assert_eq!(seen, newest_first);
    let ids = |runs: Vec<Run>| runs.into_iter().map(|r| r.id).collect::<Vec<_>>();
    // A scoped caller sees its tenant's runs only, whatever it asks for.
    let mut vip = filter(Scope::Tenants(vec![f.vip.clone()]));
    vip.limit = 10;
    assert_eq!(
        ids(s.list_runs(&vip).await.unwrap()),
        [runs[4].clone(), runs[2].clone(), runs[0].clone()]
    );
    vip.tenant = Some(f.managed.clone());
    assert!(s.list_runs(&vip).await.unwrap().is_empty());
    assert_eq!(s.list_runs_json(&vip).await.unwrap().items, "[]");
    let mut none = filter(Scope::Tenants(vec![]));
    none.limit = 10;
    assert!(s.list_runs(&none).await.unwrap().is_empty());
    // Filters: status, plugin, time.
    let mut all = filter(Scope::All);
    all.limit = 10;
    all.status = Some(RunStatus::Cancelled);
    assert_eq!(ids(s.list_runs(&all).await.unwrap()), [runs[3].clone()]);
    all.status = None;
    all.plugin = Some("patching".into());
    assert_eq!(ids(s.list_runs(&all).await.unwrap()), [runs[2].clone()]);
    all.plugin = None;
    all.since = Some(at(1));
    all.until = Some(at(3));
    assert_eq!(
        ids(s.list_runs(&all).await.unwrap()),
        [runs[2].clone(), runs[1].clone()]
    );
    for r in s.list_runs(&filter(Scope::All)).await.unwrap() {
        assert!(
            r.tenant_id.is_some(),
            "a run of one tenant's jobs is that tenant's"
        );
    }
}

async fn registry_provenance_trust_and_pins_round_trip(db: TestDb) {
    use steward_store::{
        NewPluginVersion, Pin, PluginSource, RunFilter, Scope, TrustHow, TrustedKey,
    };
    let s = &db.store;
    let digest = |c: char| format!("sha256:{}", c.to_string().repeat(64));

    // (a) Where a version came from: kept with a registry install, absent
    // for a component installed from a file, replaced by a reinstall.
    let signed = PluginSource {
        module: "acme/patching".into(),
        requirement: "^1.2".into(),
        signed_by: Some("ed25519:abc".into()),
        capabilities: vec!["packages".into(), "tickets=changes".into()],
    };
    let version =
        |plugin: &str, version: &str, d: char, source: Option<PluginSource>| NewPluginVersion {
            plugin: plugin.into(),
            version: version.into(),
            digest: digest(d),
            grants: vec!["packages".into()],
            source,
            first_use_key: None,
        };
    s.add_plugin_version(
        &version("patching", "1.2.0", 'a', Some(signed.clone())),
        at(1),
    )
    .await
    .unwrap();
    s.add_plugin_version(&version("local", "0.1.0", 'b', None), at(2))
        .await
        .unwrap();
    let got = s.plugin_versions().await.unwrap();
    let summary = |v: &[steward_store::PluginVersion]| {
        v.iter()
            .map(|v| {
                (
                    v.plugin.clone(),
                    v.version.clone(),
                    v.digest.clone(),
                    v.source.clone(),
                )
            })
            .collect::<Vec<_>>()
    };
    assert_eq!(
        summary(&got),
        [
            ("local".into(), "0.1.0".into(), digest('b'), None),
            (
                "patching".into(),
                "1.2.0".into(),
                digest('a'),
                Some(signed.clone())
            ),
        ]
    );
    assert_eq!(got[1].grants, ["packages"]);
    assert_eq!(got[1].installed_at, at(1));
    // The same version from the same module again replaces its record
    // (another requirement, unsigned, no capabilities) ...
    let unsigned = PluginSource {
        module: "acme/patching".into(),
        requirement: "=1.2.0".into(),
        signed_by: None,
        capabilities: Vec::new(),
    };
    s.add_plugin_version(
        &version("patching", "1.2.0", 'a', Some(unsigned.clone())),
        at(3),
    )
    .await
    .unwrap();
    assert_eq!(
        summary(&s.plugin_versions().await.unwrap())[1],
        (
            "patching".into(),
            "1.2.0".into(),
            digest('a'),
            Some(unsigned.clone())
        )
    );
    // ... but one name has one origin and a published version never
    // changes: each refusal names the field and stores nothing.
    let before = s.plugin_versions().await.unwrap();
    let refusals = [
        (
            version(
                "patching",
                "1.3.0",
                'd',
                Some(PluginSource {
                    module: "other/patching".into(),
                    ..unsigned.clone()
                }),
            ),
            "plugin",
        ),
        (version("patching", "1.3.0", 'd', None), "plugin"),
        (
            version("local", "0.2.0", 'd', Some(signed.clone())),
            "plugin",
        ),
        (
            version("patching", "1.2.0", 'c', Some(unsigned.clone())),
            "version",
        ),
    ];
    for (new, field) in refusals {
        match s.add_plugin_version(&new, at(5)).await {
            Err(StoreError::Invalid { field: f, .. }) => assert_eq!(f, field, "{new:?}"),
            other => panic!("{new:?} must be refused, got {other:?}"),
        }
    }
    assert_eq!(s.plugin_versions().await.unwrap(), before);

    // A first-use key is recorded with the install, once per namespace.
    let first = TrustedKey {
        namespace: "acme".into(),
        key_id: "ed25519:first".into(),
        public_key: "pk-first".into(),
        how: TrustHow::FirstUse,
        trusted_at: at(6),
    };
    let mut with_key = version("patching", "1.4.0", 'e', Some(signed.clone()));
    with_key.first_use_key = Some(first.clone());
    s.add_plugin_version(&with_key, at(6)).await.unwrap();
    assert_eq!(
        s.trusted_keys(Some("acme")).await.unwrap(),
        std::slice::from_ref(&first)
    );
    let mut late = version("patching", "1.5.0", 'f', Some(signed.clone()));
    late.first_use_key = Some(TrustedKey {
        key_id: "ed25519:second".into(),
        ..first.clone()
    });
    match s.add_plugin_version(&late, at(7)).await {
        Err(StoreError::Invalid { field, .. }) => assert_eq!(field, "signed-by"),
        other => panic!("a second first-use key must be refused, got {other:?}"),
    }
    assert!(
        !s.plugin_versions()
            .await
            .unwrap()
            .iter()
            .any(|v| v.version == "1.5.0"),
        "the install rolled back with the key"
    );
    assert!(s.untrust_key("acme", "ed25519:first", T0).await.unwrap());

    // (b) Trusted keys: once per namespace and key, listed by namespace,
    // then oldest first.
    let key = |ns: &str, id: &str, how: TrustHow, secs: u64| TrustedKey {
        namespace: ns.into(),
        key_id: format!("ed25519:{id}"),
        public_key: format!("pk-{ns}-{id}"),
        how,
        trusted_at: at(secs),
    };
    let keys = [
        key("beta", "k1", TrustHow::FirstUse, 5),
        key("acme", "k2", TrustHow::Explicit, 10),
        key("acme", "k3", TrustHow::FirstUse, 3),
        key("acme", "k1", TrustHow::Explicit, 3),
    ];
    for k in &keys {
        assert!(s.trust_key(k).await.unwrap(), "new: {k:?}");
    }
    // Trusting a key again changes nothing, even with another key text
    // or how.
    let mut again = keys[1].clone();
    again.public_key = "replaced".into();
    again.how = TrustHow::FirstUse;
    again.trusted_at = at(99);
    assert!(!s.trust_key(&again).await.unwrap());
    assert!(!s.trust_key(&keys[0]).await.unwrap());
    let acme = [keys[3].clone(), keys[2].clone(), keys[1].clone()];
    assert_eq!(s.trusted_keys(Some("acme")).await.unwrap(), acme);
    let mut all = acme.to_vec();
    all.push(keys[0].clone());
    assert_eq!(s.trusted_keys(None).await.unwrap(), all);
    assert_eq!(
        s.trusted_keys(Some("beta")).await.unwrap(),
        [keys[0].clone()]
    );
    assert!(s.trusted_keys(Some("nobody")).await.unwrap().is_empty());
    // The same key id in another namespace is another key.
    assert!(s.untrust_key("acme", "ed25519:k1", T0).await.unwrap());
    assert!(!s.untrust_key("acme", "ed25519:k1", T0).await.unwrap());
    assert!(!s.untrust_key("nobody", "ed25519:k1", T0).await.unwrap());
    // A revoked key's namespace stays known (never trusted on first use
    // again), and trusting the key again revives it.
    assert!(s.namespace_ever_trusted("acme").await.unwrap());
    assert!(!s.namespace_ever_trusted("nobody").await.unwrap());
    let revoked = keys
        .iter()
        .find(|k| k.namespace == "acme" && k.key_id == "ed25519:k1")
        .unwrap()
        .clone();
    assert!(s.trust_key(&revoked).await.unwrap());
    assert!(s.untrust_key("acme", "ed25519:k1", T0).await.unwrap());
    assert_eq!(
        s.trusted_keys(Some("acme")).await.unwrap(),
        [keys[2].clone(), keys[1].clone()]
    );
    assert_eq!(
        s.trusted_keys(Some("beta")).await.unwrap(),
        [keys[0].clone()]
    );
    // Empty fields are refused, naming the field, and nothing is stored.
    for (field, bad) in [
        ("namespace", key(" ", "k9", TrustHow::Explicit, 1)),
        ("key-id", {
            let mut k = key("acme", "k9", TrustHow::Explicit, 1);
            k.key_id = String::new();
            k
        }),
        ("public-key", {
            let mut k = key("acme", "k9", TrustHow::Explicit, 1);
            k.public_key = "".into();
            k
        }),
    ] {
        match s.trust_key(&bad).await {
            Err(StoreError::Invalid { field: f, .. }) => assert_eq!(f, field),
            other => panic!("expected `{field}` refused, got {other:?}"),
        }
    }
    assert_eq!(s.trusted_keys(None).await.unwrap().len(), 3);

    // (c) Pins: stored with the run, absent for a run without them, and
    // in the JSON listing as JSON (not as a string).
    let f = fleet(s).await;
    let pins = vec![
        Pin {
            plugin: "patching".into(),
            version: "1.2.0".into(),
            digest: digest('c'),
        },
        Pin {
            plugin: "local".into(),
            version: "0.1.0".into(),
            digest: digest('b'),
        },
    ];
    let pinned = s
        .create_run(None, &pins, &[job(&f.vip, &f.devices[0], at(0))], at(20))
        .await
        .unwrap();
    let unpinned = s
        .create_run(None, &[], &[job(&f.vip, &f.devices[0], at(0))], at(21))
        .await
        .unwrap();
    assert_eq!(
        s.run(&pinned).await.unwrap().unwrap().pins,
        Some(pins.clone())
    );
    assert_eq!(s.run(&unpinned).await.unwrap().unwrap().pins, None);
    let filter = RunFilter {
        scope: Scope::All,
        tenant: None,
        status: None,
        plugin: None,
        since: None,
        until: None,
        before: None,
        limit: 10,
    };
    let listed = s.list_runs_json(&filter).await.unwrap();
    let items: Vec<serde_json::Value> = serde_json::from_str(&listed.items).unwrap();
    assert_eq!(items.len(), 2, "{}", listed.items);
    assert_eq!(items[0]["id"], unpinned.as_str());
    assert_eq!(items[0]["pins"], serde_json::Value::Null);
    assert_eq!(items[1]["id"], pinned.as_str());
    assert_eq!(items[1]["pins"], serde_json::to_value(&pins).unwrap());
    let runs: Vec<Run> = serde_json::from_str(&listed.items).unwrap();
    assert_eq!(runs, s.list_runs(&filter).await.unwrap());
    assert_eq!(runs[1].pins.as_deref(), Some(&pins[..]));
}

/// Two processes starting on one new database both try to create the
/// first owner: exactly one does, with its token; the other gets `None`.
async fn the_first_owner_is_created_once_across_processes(db: TestDb) {
    let other = db.reopen().await;
    let (a, b) = tokio::join!(
        db.store.create_first_owner("hash-a", T0),
        other.create_first_owner("hash-b", T0)
    );
    let created: Vec<_> = [a.unwrap(), b.unwrap()].into_iter().flatten().collect();
    assert_eq!(created.len(), 1, "{created:?}");
    assert_eq!(created[0].name, "owner");
    let users = db.store.users().await.unwrap();
    assert_eq!(users.len(), 1);
    assert!(
        db.store
            .create_first_owner("hash-c", T0)
            .await
            .unwrap()
            .is_none(),
        "not again once there are users"
    );
}

async fn alert_outbox_keeps_events_until_delivered(db: TestDb) {
    let s = &db.store;
    let event = |id: &str, event: &str, retry: u64| OutboxEvent {
        alert_id: id.into(),
        event: event.into(),
        body: format!("{{\"id\":\"{id}\"}}"),
        retry_at: at(retry),
        attempts: 0,
        reached: Vec::new(),
    };
    let kept = || async {
        s.alert_outbox()
            .await
            .unwrap()
            .into_iter()
            .map(|e| (e.alert_id, e.event))
            .collect::<Vec<_>>()
    };
    let pair = |id: &str, event: &str| (id.to_string(), event.to_string());
    let hold = Duration::from_secs(60);

    // Opening keeps the firing event; an alert already open keeps nothing.
    let firing = event("a1", "alert.firing", 10);
    assert!(
        s.alert_open("k1", "{}", Some(&firing), at(0))
            .await
            .unwrap()
    );
    let again = event("a2", "alert.firing", 10);
    assert!(!s.alert_open("k1", "{}", Some(&again), at(1)).await.unwrap());
    assert_eq!(kept().await, [pair("a1", "alert.firing")]);

    // Held until its retry time, then taken and held for the taker.
    assert!(
        s.alert_outbox_due(at(9), hold, 10)
            .await
            .unwrap()
            .is_empty()
    );
    let due = s.alert_outbox_due(at(10), hold, 10).await.unwrap();
    assert_eq!(due.len(), 1);
    assert_eq!(
        (due[0].body.as_str(), due[0].retry_at, due[0].attempts),
        ("{\"id\":\"a1\"}", at(70), 0)
    );
    assert!(
        s.alert_outbox_due(at(69), hold, 10)
            .await
            .unwrap()
            .is_empty()
    );
    let again = s.alert_outbox_due(at(70), hold, 10).await.unwrap();
    assert_eq!(
        (again.len(), again[0].attempts),
        (1, 1),
        "the attempts count"
    );
    // Each redelivery holds it twice as long as the one before.
    assert_eq!(again[0].retry_at, at(70 + 120));

    // The webhooks an event reached come with it, each once, sorted.
    let webhooks = |names: &[&str]| names.iter().map(|n| n.to_string()).collect::<Vec<_>>();
    s.alert_outbox_reached("a1", "alert.firing", &webhooks(&["ops", "billing"]))
        .await
        .unwrap();
    s.alert_outbox_reached("a1", "alert.firing", &webhooks(&["ops"]))
        .await
        .unwrap();
    // Not for an event that is not kept.
    s.alert_outbox_reached("a9", "alert.firing", &webhooks(&["ops"]))
        .await
        .unwrap();
    assert!(
        s.alert_outbox_due(at(189), hold, 10)
            .await
            .unwrap()
            .is_empty()
    );
    let again = s.alert_outbox_due(at(190), hold, 10).await.unwrap();
    assert_eq!(again[0].retry_at, at(190 + 240));
    assert_eq!(again[0].reached, webhooks(&["billing", "ops"]));
    assert_eq!(
        s.alert_outbox().await.unwrap()[0].reached,
        webhooks(&["billing", "ops"])
    );

    // Closing keeps the resolved event in the same transaction.
    let closed = s
        .alert_close(
            "k1",
            |open| {
                assert_eq!(open, "{}");
                Ok(Some(event("a1", "alert.resolved", 80)))
            },
            at(135),
        )
        .await
        .unwrap();
    assert_eq!(closed.as_deref(), Some("{}"));
    assert_eq!(
        kept().await,
        [pair("a1", "alert.firing"), pair("a1", "alert.resolved")]
    );

    // An event that cannot be made leaves the alert open, nothing kept.
    assert!(s.alert_open("k2", "{}", None, at(136)).await.unwrap());
    let failed = s
        .alert_close(
            "k2",
            |_| {
                Err(StoreError::Corrupt {
                    column: "alert_state.alert",
                    message: "unreadable".into(),
                })
            },
            at(137),
        )
        .await;
    assert!(
        matches!(failed, Err(StoreError::Corrupt { .. })),
        "{failed:?}"
    );
    assert!(s.alert_get("k2").await.unwrap().is_some());
    assert_eq!(kept().await.len(), 2);

    // Delivered events leave, and what they reached with them.
    s.alert_outbox_done("a1", "alert.firing").await.unwrap();
    assert_eq!(kept().await, [pair("a1", "alert.resolved")]);
    s.alert_outbox_done("a1", "alert.resolved").await.unwrap();
    assert!(kept().await.is_empty());
    assert!(
        s.alert_open("k3", "{}", Some(&firing), at(140))
            .await
            .unwrap()
    );
    let reopened = s.alert_outbox().await.unwrap();
    assert_eq!(
        (reopened.len(), reopened[0].reached.len()),
        (1, 0),
        "{reopened:?}"
    );
}

async fn an_admin_import_stores_every_row_or_none(db: TestDb) {
    let s = &db.store;
    let f = fleet(s).await;
    let admin = |class: &str| json!({ "class": class });
    let devices = || async {
        s.devices(&f.vip)
            .await
            .unwrap()
            .into_iter()
            .map(|d| (d.name, d.admin))
            .collect::<BTreeMap<_, _>>()
    };
    let before = devices().await;

    // The second row is refused: the first, a new device, is not stored.
    let refused = s
        .import_device_admin(
            &f.vip,
            &[
                ("vip-new".into(), admin("laptop")),
                ("vip-pc".into(), json!("desktop")),
            ],
            at(1),
        )
        .await;
    assert!(
        matches!(&refused, Err(StoreError::Invalid { field, .. }) if *field == "admin"),
        "{refused:?}"
    );
    assert_eq!(devices().await, before);
    let unknown = s
        .import_device_admin(&TenantId::from("nobody"), &[], at(1))
        .await;
    assert!(unknown.is_err(), "{unknown:?}");

    // Fixed: one update, one device created, the other tenants untouched.
    let (created, updated) = s
        .import_device_admin(
            &f.vip,
            &[
                ("vip-new".into(), admin("laptop")),
                ("vip-pc".into(), admin("desktop")),
            ],
            at(2),
        )
        .await
        .unwrap();
    assert_eq!((created, updated), (1, 1));
    assert_eq!(
        devices().await,
        BTreeMap::from([
            ("vip-new".to_string(), admin("laptop")),
            ("vip-pc".to_string(), admin("desktop")),
        ])
    );
    let managed = s.devices(&f.managed).await.unwrap();
    assert_eq!(managed.len(), 1);
    assert_eq!(managed[0].admin, json!({}));
}

fn finding(key: &str) -> NewFinding {
    NewFinding {
        key: key.into(),
        severity: Severity::Warning,
        summary: format!("finding {key}"),
        detail: String::new(),
        resource: String::new(),
        fields: json!({}),
    }
}

async fn a_bad_completion_fails_its_own_job_and_the_batch_is_stored(db: TestDb) {
    let s = &db.store;
    let f = fleet(s).await;
    // Jobs of three tenants, completed in one batch: the middle ones
    // return findings that break the rules.
    run_with(
        s,
        &[
            job(&f.vip, &f.devices[0], at(0)),
            job(&f.managed, &f.devices[1], at(0)),
            job(&f.on_demand, &f.devices[2], at(0)),
        ],
    )
    .await;
    let claimed = s.claim("w", 3, LEASE, at(0)).await.unwrap();
    assert_eq!(claimed.len(), 3);
    let by_device = |d: &DeviceId| {
        claimed
            .iter()
            .find(|j| j.device_id.as_ref() == Some(d))
            .unwrap()
    };
    let (good, empty, repeated) = (
        by_device(&f.devices[0]),
        by_device(&f.devices[1]),
        by_device(&f.devices[2]),
    );
    let mut ok = Completion::succeeded(good, json!({}));
    ok.findings = vec![finding("pending:openssl")];
    let mut bad_empty = Completion::succeeded(empty, json!({}));
    bad_empty.findings = vec![finding("fine"), finding("")];
    let mut bad_repeated = Completion::succeeded(repeated, json!({}));
    bad_repeated.findings = vec![finding("twice"), finding("twice")];
    let accepted = s
        .complete("w", &[ok, bad_empty, bad_repeated], at(1))
        .await
        .unwrap();
    assert_eq!(accepted.len(), 3, "every job of the batch is recorded");

    assert_eq!(status(s, &good.id).await, JobStatus::Succeeded);
    let open = s.findings(&f.vip, true).await.unwrap();
    assert_eq!(open.len(), 1, "{open:?}");
    assert_eq!(open[0].key, "pending:openssl");
    for (job, says) in [(empty, "its id is empty"), (repeated, "is repeated")] {
        let stored = s.job(&job.id).await.unwrap().unwrap();
        assert_eq!(stored.status, JobStatus::Failed, "{stored:?}");
        let error = stored.last_error.unwrap();
        assert!(
            error.contains("invalid output") && error.contains(says),
            "{error}"
        );
    }
    assert!(s.findings(&f.managed, false).await.unwrap().is_empty());
    assert!(s.findings(&f.on_demand, false).await.unwrap().is_empty());
    run_counts_agree(&db.store).await;
}

fn audit_of(job: &Job, action: &str) -> steward_store::AuditEvent {
    steward_store::AuditEvent {
        at: at(1),
        actor: format!("job:{}", job.id),
        tenant_id: Some(job.tenant_id.clone()),
        run_id: Some(job.run_id.clone()),
        job_id: Some(job.id.clone()),
        attempt: Some(job.attempt),
        device_id: job.device_id.clone(),
        plugin: Some(job.plugin.clone()),
        plugin_digest: None,
        action: action.into(),
        detail: json!({ "arguments": "jdoe" }),
        outcome: "applied".into(),
    }
}

async fn audit_rows_commit_exactly_with_their_record(db: TestDb) {
    let s = &db.store;
    let f = fleet(s).await;
    run_with(
        s,
        &[
            job(&f.vip, &f.devices[0], at(0)),
            job(&f.managed, &f.devices[1], at(0)),
        ],
    )
    .await;
    let claimed = s.claim("w", 2, LEASE, at(0)).await.unwrap();
    let (first, second) = (&claimed[0], &claimed[1]);

    // A completion the store refuses (another worker's lease) writes no
    // audit row and no alert-inbox entry; the one it accepts writes both
    // with it.
    let mut stale = Completion::succeeded(first, json!({}));
    stale.audit = vec![audit_of(first, "accounts.unlock")];
    stale.observation = Some(r#"{"stale":true}"#.into());
    assert!(
        s.complete("intruder", &[stale], at(1))
            .await
            .unwrap()
            .is_empty()
    );
    assert_eq!(s.audit_count(&first.id).await.unwrap(), 0);
    assert!(s.alert_inbox().await.unwrap().is_empty());
    assert_eq!(status(s, &first.id).await, JobStatus::Leased);

    let mut done = Completion::succeeded(first, json!({}));
    done.audit = vec![
        audit_of(first, "accounts.unlock"),
        audit_of(first, "packages.install-updates"),
    ];
    done.observation = Some(r#"{"first":true}"#.into());
    assert_eq!(
        s.complete("w", &[done.clone()], at(1)).await.unwrap().len(),
        1
    );
    assert_eq!(s.audit_count(&first.id).await.unwrap(), 2);
    let inbox = s.alert_inbox().await.unwrap();
    assert_eq!(inbox.len(), 1);
    assert_eq!(inbox[0].job_id, first.id);
    assert_eq!(inbox[0].attempt, first.attempt);
    assert_eq!(inbox[0].observation.as_deref(), Some(r#"{"first":true}"#));
    // Sent again (a retried batch), it is not accepted and adds nothing.
    assert!(s.complete("w", &[done], at(2)).await.unwrap().is_empty());
    assert_eq!(s.audit_count(&first.id).await.unwrap(), 2);
    assert_eq!(s.alert_inbox().await.unwrap().len(), 1);

    // The entry is held from others while its writer observes it (which
    // it does at once), then due to any process; taken, it is held again,
    // and once done it is gone.
    assert!(
        s.alert_inbox_due(at(2), LEASE, 10)
            .await
            .unwrap()
            .is_empty()
    );
    let later = Timestamp::from_millis(at(1).as_millis() + INBOX_HOLD.as_millis() as i64 + 1);
    let due = s.alert_inbox_due(later, LEASE, 10).await.unwrap();
    assert_eq!(due, inbox);
    assert!(
        s.alert_inbox_due(later, LEASE, 10)
            .await
            .unwrap()
            .is_empty()
    );
    s.alert_inbox_done(&first.id, first.attempt).await.unwrap();
    assert!(s.alert_inbox().await.unwrap().is_empty());

    // The same holds for a failure.
    let failure = |worker_attempt: u32| Failure {
        job_id: second.id.clone(),
        attempt: worker_attempt,
        error: "directory unavailable".into(),
        kind: FailureKind::Permanent,
        logs: Vec::new(),
        then: Vec::new(),
        audit: vec![audit_of(second, "accounts.unlock")],
        observation: Some(r#"{"second":true}"#.into()),
    };
    assert_eq!(
        s.fail("w", &failure(second.attempt + 1), at(1))
            .await
            .unwrap(),
        FailOutcome::NotLeased
    );
    assert_eq!(s.audit_count(&second.id).await.unwrap(), 0);
    assert!(s.alert_inbox().await.unwrap().is_empty());
    assert_eq!(
        s.fail("w", &failure(second.attempt), at(1)).await.unwrap(),
        FailOutcome::Ended(JobStatus::Failed)
    );
    assert_eq!(s.audit_count(&second.id).await.unwrap(), 1);
    let inbox = s.alert_inbox().await.unwrap();
    assert_eq!(inbox.len(), 1);
    assert_eq!(inbox[0].job_id, second.id);
}

/// The disk under a SQLite store fills: writes fail quickly with an error
/// that says the store is unavailable (none hangs, none is half-applied),
/// readiness says it cannot write, reads go on; when space returns the
/// same store, never reopened, writes again: no connection stayed wedged
/// inside a failed transaction.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_disk_fails_writes_without_wedging_the_sqlite_store() {
    let disk = support::SmallDisk::mount(24);
    let url = format!("sqlite://{}", disk.path().join("steward.db").display());
    let store = Store::open(&url).await.unwrap();
    let f = fleet(&store).await;
    assert!(store.writable().await.is_ok());
    let fill = disk.fill();

    // Every kind of write fails, many times over (each failed commit
    // returned its connection to the pool).
    let mut failures = 0;
    for i in 0..40 {
        let tenant = store
            .create_tenant(
                &NewTenant {
                    name: format!("full-{i}-{}", "x".repeat(200)),
                    tier: Tier::Managed,
                    max_concurrent_jobs: None,
                },
                T0,
            )
            .await;
        if let Err(e) = tenant {
            assert!(e.is_unavailable(), "a full disk is unavailability: {e:?}");
            failures += 1;
        }
        let run = store
            .create_run(None, &[], &[job(&f.vip, &f.devices[0], T0)], T0)
            .await;
        if let Err(e) = run {
            assert!(e.is_unavailable(), "{e:?}");
            failures += 1;
        }
    }
    assert!(
        failures >= 40,
        "writes failed while the disk was full ({failures})"
    );
    tokio::time::sleep(Duration::from_millis(1100)).await;
    assert!(
        store.writable().await.is_err(),
        "readiness sees that the store cannot write"
    );
    assert_eq!(store.tenants().await.unwrap().len(), 3, "reads go on");

    // Space returns: the same store writes again, by itself.
    std::fs::remove_file(fill).unwrap();
    let mut recovered = false;
    for _ in 0..50 {
        if store
            .create_tenant(
                &NewTenant {
                    name: "after".into(),
                    tier: Tier::Managed,
                    max_concurrent_jobs: None,
                },
                T0,
            )
            .await
            .is_ok()
        {
            recovered = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(recovered, "the store writes again once space returns");
    // Every pooled connection works: more writes than connections.
    for i in 0..12 {
        run_with(&store, &[job(&f.managed, &f.devices[1], at(i))]).await;
    }
    tokio::time::sleep(Duration::from_millis(1100)).await;
    assert!(store.writable().await.is_ok());
    let names: Vec<String> = store
        .tenants()
        .await
        .unwrap()
        .into_iter()
        .map(|t| t.name)
        .collect();
    assert_eq!(
        names.len(),
        4,
        "no write from the full disk was half-kept: {names:?}"
    );
    store.close().await;
}

/// A file that is not a database fails the open at once, naming the file
/// and the cause.
#[tokio::test]
async fn a_corrupt_sqlite_file_fails_at_once_naming_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("steward.db");
    std::fs::write(&path, vec![0x5a; 64 * 1024]).unwrap();
    let err = Store::open(&format!("sqlite://{}", path.display()))
        .await
        .unwrap_err()
        .to_string();
    // The first connection's own error, not the pool's timeout after it
    // retried the file for seconds.
    assert!(!err.contains("timed out"), "{err}");
    assert!(err.contains(&path.display().to_string()), "{err}");
    assert!(err.contains("not a database"), "{err}");
}

/// The counts behind `/metrics`, on both databases (PostgreSQL sums
/// BIGINTs as NUMERIC, which the Any driver cannot read unless cast).
async fn metrics_count_jobs_and_finished_runs(db: TestDb) {
    let s = &db.store;
    let f = fleet(s).await;
    let run = run_with(
        s,
        &[
            job(&f.vip, &f.devices[0], at(0)),
            job(&f.managed, &f.devices[1], at(0)),
        ],
    )
    .await;
    let m = s.metrics(at(1)).await.unwrap();
    assert_eq!(m.due, 2);
    assert_eq!((m.runs_finished, m.run_millis), (0, 0));
    let claimed = s.claim("w", 2, LEASE, at(1)).await.unwrap();
    assert_eq!(complete_ok(s, "w", &claimed, at(5)).await.len(), 2);
    let m = s.metrics(at(6)).await.unwrap();
    assert_eq!(m.due, 0);
    assert_eq!(
        m.jobs
            .iter()
            .find(|(state, _)| state == "succeeded")
            .map(|(_, n)| *n),
        Some(2)
    );
    assert_eq!(
        s.run(&run).await.unwrap().unwrap().status,
        RunStatus::Succeeded
    );
    assert_eq!(m.runs_finished, 1);
    assert_eq!(m.run_millis, 5_000);
}

/// A ticket may name only a device of its own tenant, and one job files at
/// most `MAX_TICKETS_PER_JOB`; the same ticket again (a retried attempt)
/// is found, not refused. A refusal stores nothing.
async fn tickets_name_only_their_tenants_devices_and_are_capped_per_job(db: TestDb) {
    let s = &db.store;
    let f = fleet(s).await;
    run_with(s, &[job(&f.vip, &f.devices[0], at(0))]).await;
    let claimed = s.claim("w", 1, LEASE, at(0)).await.unwrap();
    let ticket = |n: i64, device: &DeviceId| steward_store::NewTicket {
        tenant_id: f.vip.clone(),
        device_id: Some(device.to_string()),
        job_id: claimed[0].id.clone(),
        queue: "changes".into(),
        title: format!("ticket {n}"),
        body: String::new(),
        dedupe_key: format!("key-{n}"),
    };
    // Another tenant's device.
    let err = s
        .file_ticket(&ticket(0, &f.devices[1]), at(1))
        .await
        .unwrap_err();
    assert!(
        matches!(
            err,
            StoreError::Invalid {
                field: "device-id",
                ..
            }
        ),
        "{err:?}"
    );
    assert!(s.tickets(&f.vip).await.unwrap().is_empty());

    for n in 0..steward_store::MAX_TICKETS_PER_JOB {
        assert!(
            s.file_ticket(&ticket(n, &f.devices[0]), at(1))
                .await
                .unwrap()
                .1
        );
    }
    let err = s
        .file_ticket(&ticket(1000, &f.devices[0]), at(1))
        .await
        .unwrap_err();
    assert!(
        matches!(
            err,
            StoreError::Invalid {
                field: "tickets",
                ..
            }
        ),
        "{err:?}"
    );
    // Filed again by a retry: found, not refused.
    assert!(
        !s.file_ticket(&ticket(3, &f.devices[0]), at(2))
            .await
            .unwrap()
            .1
    );
    assert_eq!(
        s.tickets(&f.vip).await.unwrap().len() as i64,
        steward_store::MAX_TICKETS_PER_JOB
    );
}

/// Runs one `plugin` job on `device` at `secs` that reports `findings`
/// and `changes` (applied); returns its id.
async fn history(
    s: &Store,
    tenant: &TenantId,
    device: &DeviceId,
    plugin: &str,
    secs: u64,
    findings: &[(&str, Severity)],
    changes: &[(&str, &str)],
) -> JobId {
    let job = NewJob::new(
        tenant.clone(),
        Some(device.clone()),
        plugin,
        JobMode::Check,
        at(secs),
    );
    s.create_run(None, &[], &[job], at(secs)).await.unwrap();
    let claimed = s.claim("w", 1, LEASE, at(secs)).await.unwrap();
    assert_eq!(claimed.len(), 1);
    let mut c = Completion::succeeded(&claimed[0], json!({}));
    c.findings = findings
        .iter()
        .map(|(k, sev)| NewFinding {
            key: (*k).into(),
            severity: *sev,
            summary: format!("{k} found"),
            detail: String::new(),
            resource: String::new(),
            fields: json!({}),
        })
        .collect();
    // A kind may carry the change's `after`: `restore-test=passed`.
    c.changes = changes
        .iter()
        .map(|(kind, target)| {
            let (kind, after) = match kind.split_once('=') {
                Some((k, a)) => (k, Some(a.to_owned())),
                None => (*kind, None),
            };
            (kind, target, after)
        })
        .map(|(kind, target, after)| NewChange {
            kind: kind.into(),
            target: (*target).into(),
            description: format!("{kind} {target}"),
            before: None,
            after,
            outcome: ChangeOutcome::Applied,
        })
        .collect();
    s.complete("w", &[c], at(secs)).await.unwrap();
    claimed[0].id.clone()
}

/// A month of history on a VIP tenant's two devices, then the report for
/// that month, each figure checked against the history written and
/// against SQL of the test's own over the same tables.
async fn the_monthly_report_counts_what_the_store_holds(db: TestDb) {
    use steward_control::report::{Month, month_report};
    let s = &db.store;
    let f = fleet(s).await;
    let (vip, pc) = (&f.vip, &f.devices[0]);
    let laptop = s
        .create_device(&NewDevice::new(vip.clone(), "vip-laptop"), T0)
        .await
        .unwrap()
        .id;
    let hour = 3600;
    // T0 is 2023-11-14 22:13:20 UTC. Patching on the pc: a security update
    // and an update, the security update applied 2 h later (met: VIP's
    // target is 4 h); the plain update stays pending.
    history(
        s,
        vip,
        pc,
        "patching",
        0,
        &[
            ("security-update:openssl", Severity::Warning),
            ("update:curl", Severity::Info),
        ],
        &[],
    )
    .await;
    history(
        s,
        vip,
        pc,
        "patching",
        2 * hour,
        &[("update:curl", Severity::Info)],
        &[("package-upgrade", "openssl")],
    )
    .await;
    // Antivirus on the laptop: outdated signatures (warning) and a
    // detection (critical), both fixed 10 h later (two misses).
    history(
        s,
        vip,
        &laptop,
        "antivirus",
        0,
        &[
            ("signatures-outdated", Severity::Warning),
            ("detection:/tmp/x", Severity::Critical),
        ],
        &[],
    )
    .await;
    history(
        s,
        vip,
        &laptop,
        "antivirus",
        10 * hour,
        &[],
        &[("quarantine", "/tmp/x"), ("signature-update", "signatures")],
    )
    .await;
    // A locked account unlocked on the pc, with the ticket its job filed.
    let unlock = history(
        s,
        vip,
        pc,
        "account-unlock",
        3 * hour,
        &[],
        &[("unlock", "jdoe")],
    )
    .await;
    let (ticket, _) = s
        .file_ticket(
            &steward_store::NewTicket {
                tenant_id: vip.clone(),
                device_id: Some(pc.to_string()),
                job_id: unlock.clone(),
                queue: "helpdesk".into(),
                title: "jdoe unlocked".into(),
                body: String::new(),
                dedupe_key: "unlock:jdoe".into(),
            },
            at(3 * hour),
        )
        .await
        .unwrap();
    // A critical incident on the pc still open at the month's end.
    history(
        s,
        vip,
        pc,
        "refresh-planner",
        4 * hour,
        &[("failing-disk:pc", Severity::Critical)],
        &[],
    )
    .await;
    // Next month's history does not count.
    history(
        s,
        vip,
        pc,
        "account-unlock",
        20 * 24 * hour,
        &[],
        &[("unlock", "later")],
    )
    .await;

    let month = Month::parse("2023-11").unwrap();
    let r = month_report(s, vip, month)
        .await
        .unwrap()
        .expect("the tenant exists");
    assert_eq!(
        (r.month.as_str(), r.target_hours, r.devices),
        ("2023-11", 4, 2)
    );
    let by = |sev| r.remediation.iter().find(|x| x.severity == sev).unwrap();
    let warning = by(Severity::Warning);
    // openssl in 2 h (met), signatures in 10 h (missed).
    assert_eq!(
        (warning.resolved, warning.met, warning.missed),
        (2, 1, 1),
        "{warning:?}"
    );
    assert_eq!(warning.misses[0].key, "signatures-outdated");
    assert!((warning.misses[0].hours - 10.0).abs() < 1e-9);
    assert_eq!(warning.misses[0].device, "vip-laptop");
    let critical = by(Severity::Critical);
    // The detection resolved in 10 h and the failing disk open at the
    // month's end (past the target) are the misses.
    assert_eq!(
        (critical.resolved, critical.met, critical.missed),
        (1, 0, 2),
        "{critical:?}"
    );
    let open_miss = critical
        .misses
        .iter()
        .find(|m| m.resolved_at.is_none())
        .unwrap();
    assert_eq!(open_miss.key, "failing-disk:pc");
    assert!((open_miss.hours - hours_between(at(4 * hour), month.end())).abs() < 1e-9);
    // The pc has `update:curl` open: one of two devices fully patched.
    assert_eq!(r.patching.fully_patched, 1);
    assert_eq!(r.patching.security_updates_applied, 1);
    assert_eq!(r.patching.median_security_age_hours, Some(2.0));
    assert_eq!(r.patching.security_updates_pending, 0);
    assert_eq!(
        r.antivirus.signatures_outdated, 0,
        "fixed before the month's end"
    );
    assert_eq!((r.antivirus.detections, r.antivirus.quarantines), (1, 1));
    assert_eq!(r.unlocks.len(), 1, "next month's unlock is not counted");
    assert_eq!(r.unlocks[0].account, "jdoe");
    assert_eq!(r.unlocks[0].device, "vip-pc");
    assert_eq!(r.unlocks[0].tickets, vec![ticket]);
    assert_eq!(
        (
            r.incidents.opened,
            r.incidents.resolved,
            r.incidents.open_at_end
        ),
        (2, 1, 1)
    );
    assert_eq!(r.opened_per_day.len(), 30);
    // Five findings first seen on day 14 (the 14th, index 13), one more at
    // 02:13 on the 15th.
    let day14 = r.opened_per_day[13];
    let day15 = r.opened_per_day[14];
    assert_eq!(day14.iter().sum::<u32>() + day15.iter().sum::<u32>(), 5);

    // The same figures by the test's own SQL over the same tables.
    let pool = sqlx::AnyPool::connect(&db.url).await.unwrap();
    let (from, to) = (month.start().as_millis(), month.end().as_millis());
    let count = |sql: &'static str| {
        let pool = pool.clone();
        let vip = vip.to_string();
        async move {
            sqlx::query_scalar::<_, i64>(sql)
                .bind(vip)
                .bind(from)
                .bind(to)
                .fetch_one(&pool)
                .await
                .unwrap()
        }
    };
    let opened = count(
        "SELECT COUNT(*) FROM findings WHERE tenant_id = $1 AND first_seen_at >= $2 AND first_seen_at < $3",
    )
    .await;
    assert_eq!(
        opened as u32,
        r.opened_per_day.iter().flatten().sum::<u32>()
    );
    let applied_unlocks = count(
        "SELECT COUNT(*) FROM changes WHERE tenant_id = $1 AND kind = 'unlock' AND outcome = 'applied' AND at >= $2 AND at < $3",
    )
    .await;
    assert_eq!(applied_unlocks as usize, r.unlocks.len());
    let critical_opened = count(
        "SELECT COUNT(*) FROM findings WHERE tenant_id = $1 AND severity = 'critical' AND first_seen_at >= $2 AND first_seen_at < $3",
    )
    .await;
    assert_eq!(critical_opened as u32, r.incidents.opened);
    let resolved_in_month = count(
        "SELECT COUNT(*) FROM findings WHERE tenant_id = $1 AND severity IN ('warning', 'critical') AND resolved_at >= $2 AND resolved_at < $3",
    )
    .await;
    assert_eq!(
        resolved_in_month as u32,
        warning.resolved + critical.resolved
    );
    // Another tenant's report is its own (nothing of the VIP's).
    let other = month_report(s, &f.managed, month).await.unwrap().unwrap();
    assert!(other.unlocks.is_empty() && other.incidents.opened == 0);
}

/// Backups in the monthly report: two sets watched by `backup-check`, one
/// out of its RPO for 6 hours then backed up, one out of it at the month's
/// end; restore tests passed and failed, an integrity check failed.
async fn the_monthly_report_shows_backup_rpo_compliance(db: TestDb) {
    use steward_control::report::{Month, month_report};
    let s = &db.store;
    let f = fleet(s).await;
    let (managed, pc) = (&f.managed, &f.devices[1]);
    let hour = 3600;
    // T0 is 2023-11-14 22:13:20 UTC.
    history(
        s,
        managed,
        pc,
        "backup-check",
        0,
        &[
            ("rpo:nightly", Severity::Critical),
            ("restore-test-due:weekly", Severity::Critical),
        ],
        &[],
    )
    .await;
    history(
        s,
        managed,
        pc,
        "backup-check",
        6 * hour,
        &[("rpo:weekly", Severity::Critical)],
        &[
            ("backup", "nightly"),
            ("restore-test=passed", "nightly"),
            ("restore-test=failed", "weekly"),
            ("integrity-check=failed", "weekly"),
        ],
    )
    .await;
    let month = Month::parse("2023-11").unwrap();
    let r = month_report(s, managed, month).await.unwrap().unwrap();
    let b = &r.backups;
    assert_eq!(b.sets, 2, "{b:?}");
    assert_eq!(
        (
            b.restore_tests_passed,
            b.restore_tests_failed,
            b.integrity_checks_failed
        ),
        (1, 1, 1)
    );
    // nightly: 6 h outside; weekly: from +6 h to the month's end.
    let weekly_hours = hours_between(at(6 * hour), month.end());
    assert!(
        (b.hours_outside_rpo - (6.0 + weekly_hours)).abs() < 1e-6,
        "{b:?}"
    );
    assert_eq!(b.outside_rpo_at_end.len(), 1);
    assert_eq!(b.outside_rpo_at_end[0].set, "weekly");
    assert_eq!(b.outside_rpo_at_end[0].device, "managed-pc");
    let month_hours = hours_between(month.start(), month.end());
    let want = 100.0 * (1.0 - (6.0 + weekly_hours) / (2.0 * month_hours));
    assert!(
        (b.rpo_compliance_percent.unwrap() - want).abs() < 1e-6,
        "{b:?}"
    );
    // Another tenant watched no set.
    let other = month_report(s, &f.vip, month).await.unwrap().unwrap();
    assert_eq!(
        (other.backups.sets, other.backups.rpo_compliance_percent),
        (0, None)
    );
}

fn hours_between(a: Timestamp, b: Timestamp) -> f64 {
    (b.as_millis() - a.as_millis()) as f64 / 3_600_000.0
}

/// The console's fleet page: devices with their open findings, filtered by
/// tenant, tag and severity under a scope, sorted and paged by the
/// database.
async fn the_fleet_page_filters_sorts_and_pages_in_the_database(db: TestDb) {
    use steward_store::{FleetFilter, FleetSort, Scope};
    let s = &db.store;
    let f = fleet(s).await;
    let (vip, managed) = (&f.vip, &f.managed);
    let mut d = NewDevice::new(vip.clone(), "a-laptop");
    d.tags = vec!["50%_off".into(), "office".into()];
    let laptop = s.create_device(&d, T0).await.unwrap().id;
    // vip-pc: a critical and a warning; a-laptop: an info; the managed
    // tenant's pc: two warnings.
    history(
        s,
        vip,
        &f.devices[0],
        "antivirus",
        0,
        &[
            ("detection:/x", Severity::Critical),
            ("signatures-outdated", Severity::Warning),
        ],
        &[],
    )
    .await;
    history(
        s,
        vip,
        &laptop,
        "patching",
        10,
        &[("update:curl", Severity::Info)],
        &[],
    )
    .await;
    history(
        s,
        managed,
        &f.devices[1],
        "patching",
        20,
        &[
            ("security-update:a", Severity::Warning),
            ("security-update:b", Severity::Warning),
        ],
        &[],
    )
    .await;
    let names = |rows: &[steward_store::FleetRow]| {
        rows.iter()
            .map(|r| r.device.name.clone())
            .collect::<Vec<_>>()
    };

    let (total, rows) = s
        .fleet_page(&Scope::All, &FleetFilter::default(), 0, 10)
        .await
        .unwrap();
    assert_eq!(total, 4);
    assert_eq!(
        names(&rows),
        ["vip-pc", "managed-pc", "a-laptop", "on-demand-pc"],
        "worst first"
    );
    assert_eq!((rows[0].critical, rows[0].warning, rows[0].info), (1, 1, 0));
    assert_eq!((rows[1].critical, rows[1].warning), (0, 2));
    let by_name = FleetFilter {
        sort: FleetSort::Name,
        ..FleetFilter::default()
    };
    let (_, rows) = s.fleet_page(&Scope::All, &by_name, 1, 2).await.unwrap();
    assert_eq!(
        names(&rows),
        ["managed-pc", "on-demand-pc"],
        "the second page of two"
    );
    let warning_up = FleetFilter {
        min_severity: Some(Severity::Warning),
        ..FleetFilter::default()
    };
    let (total, rows) = s.fleet_page(&Scope::All, &warning_up, 0, 10).await.unwrap();
    assert_eq!(
        (total, names(&rows)),
        (2, vec!["vip-pc".to_owned(), "managed-pc".to_owned()])
    );
    let critical = FleetFilter {
        min_severity: Some(Severity::Critical),
        ..FleetFilter::default()
    };
    assert_eq!(
        s.fleet_page(&Scope::All, &critical, 0, 10).await.unwrap().0,
        1
    );
    // A tag is matched as a whole element, LIKE's wildcards taken literally.
    for (tag, expect) in [
        ("50%_off", 1),
        ("50", 0),
        ("%", 0),
        ("office", 1),
        ("offic", 0),
    ] {
        let filter = FleetFilter {
            tag: Some(tag.into()),
            ..FleetFilter::default()
        };
        let (total, _) = s.fleet_page(&Scope::All, &filter, 0, 10).await.unwrap();
        assert_eq!(total, expect, "tag {tag}");
    }
    // A scope sees its tenants' devices only, whatever the filter asks.
    let scoped = Scope::Tenants(vec![managed.clone()]);
    let (total, rows) = s
        .fleet_page(&scoped, &FleetFilter::default(), 0, 10)
        .await
        .unwrap();
    assert_eq!((total, names(&rows)), (1, vec!["managed-pc".to_owned()]));
    let other = FleetFilter {
        tenant: Some(vip.clone()),
        ..FleetFilter::default()
    };
    assert_eq!(s.fleet_page(&scoped, &other, 0, 10).await.unwrap().0, 0);
    assert_eq!(
        s.device_tags(&Scope::All, Some(vip)).await.unwrap(),
        ["50%_off", "office"]
    );
    assert!(s.device_tags(&scoped, None).await.unwrap().is_empty());
    // The page's devices' findings, counted per class.
    let ids = [f.devices[0].as_str(), laptop.as_str()];
    let open = s.open_findings_per_device(&Scope::All, &ids).await.unwrap();
    let detection = open.iter().find(|o| o.class == "detection").unwrap();
    assert_eq!(
        (detection.plugin.as_str(), detection.count),
        ("antivirus", 1)
    );
    assert!(open.iter().any(|o| o.class == "signatures-outdated"));
    assert!(
        open.iter()
            .any(|o| o.class == "update" && o.device_id == laptop)
    );
    assert!(
        s.open_findings_per_device(&scoped, &ids)
            .await
            .unwrap()
            .is_empty()
    );
    // Outdated signatures, 30 h old when the check saw them: an hour later
    // they are 31 h old.
    let job = NewJob::new(
        vip.clone(),
        Some(laptop.clone()),
        "antivirus",
        JobMode::Check,
        at(30),
    );
    s.create_run(None, &[], &[job], at(30)).await.unwrap();
    let claimed = s.claim("w", 1, LEASE, at(30)).await.unwrap();
    let mut c = Completion::succeeded(&claimed[0], json!({}));
    c.findings = vec![NewFinding {
        key: "signatures-outdated".into(),
        severity: Severity::Warning,
        summary: "Signatures are outdated".into(),
        detail: String::new(),
        resource: String::new(),
        fields: json!({ "age-hours": "30" }),
    }];
    s.complete("w", &[c], at(30)).await.unwrap();
    let ages = s
        .signature_ages(None, &[laptop.as_str()], at(30 + 3600))
        .await
        .unwrap();
    assert_eq!(ages.len(), 1);
    assert_eq!(ages[0].0, laptop);
    assert!((ages[0].1 - 31.0).abs() < 1e-9, "{ages:?}");
    assert!(
        s.signature_ages(Some(managed), &[], at(30 + 3600))
            .await
            .unwrap()
            .is_empty()
    );
    assert!(
        s.signature_ages(None, &[laptop.as_str()], at(10))
            .await
            .unwrap()
            .is_empty(),
        "not yet seen"
    );
}
