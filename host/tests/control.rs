//! The control plane end to end in one process: playbooks run through the
//! executor on the real runtime and a real store, approvals, webhook
//! alerts against a real receiver, and refused input.

#[macro_use]
mod support;

use std::collections::BTreeMap;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::Utc;
use serde_json::{Value, json};
use steward_control::alerts::{
    Alerter, CheckResult, CriticalFinding, DeliveryPolicy, Dispatcher, DispatcherConfig, JobEnd,
    Observation, Webhook,
};
use steward_control::executor::{Alerts, Executor, ExecutorConfig};
use steward_control::plane::ControlError;
use steward_control::providers::{StandardProviders, StoreAlertState};
use steward_runtime::device::local::LocalConfig;
use steward_store::{
    ChangeOutcome, Completion, JobMode, JobStatus, NewJob, Reclaimed, RunStatus, Tier, Timestamp,
};
use support::control::{
    FIXER_GRANTS, TestDevices, finished, fixture, install, plane, receiver, simulated_facts, start,
    switchable_receiver, tenant, wait,
};
use support::{TestDb, sqlite};

async fn playbook_runs_check_then_remediation(db: TestDb) {
    let dir = tempfile::tempdir().unwrap();
    let plane = plane(&db.store, dir.path().into());
    install(&plane, "guest-fixer", FIXER_GRANTS).await;
    let (acme, devices) = tenant(
        &db.store,
        "acme",
        Tier::Managed,
        &[
            ("ws-1", &["servers"]),
            ("ws-2", &["servers"]),
            ("ws-3", &["servers", "dc"]),
            ("laptop", &[]),
        ],
        |id, t| simulated_facts(&fixture(id, t.as_str())),
    )
    .await;
    let playbook = plane
        .create_playbook(
            Some(acme.clone()),
            "patch servers",
            json!([
                { "plugin": "fixer", "mode": "check" },
                { "plugin": "fixer", "mode": "remediate", "params": { "max-packages": 5 } },
            ]),
            json!({ "tags": ["servers"] }),
        )
        .await
        .expect("valid playbook");
    let run = plane.start_run(&playbook.id, None).await.unwrap();
    let running = start(
        &plane,
        "w1",
        Arc::new(StandardProviders::new(LocalConfig::default())),
        None,
    );
    let done = finished(&db.store, &run).await;
    running.stop().await;

    assert_eq!(done.status, RunStatus::Succeeded);
    let jobs = db.store.jobs_of_run(&run).await.unwrap();
    assert_eq!(jobs.len(), 6, "two steps on each of the three servers");
    assert!(
        jobs.iter().all(|j| j.status == JobStatus::Succeeded),
        "{jobs:?}"
    );
    assert!(
        jobs.iter()
            .all(|j| j.device_id.as_ref() != Some(&devices[3]))
    );
    assert!(jobs.iter().all(|j| j.claimed_by.as_deref() == Some("w1")));
    for job in jobs.iter().filter(|j| j.mode == JobMode::Remediate) {
        let changes = db.store.changes_of_job(&job.id).await.unwrap();
        let kinds: Vec<&str> = changes.iter().map(|c| c.change.kind.as_str()).collect();
        assert_eq!(
            kinds,
            [
                "package-upgrade",
                "package-upgrade",
                "unlock",
                "quarantine",
                "ticket"
            ]
        );
        assert!(
            changes
                .iter()
                .all(|c| c.change.outcome == ChangeOutcome::Applied)
        );
        assert!(db.store.audit_count(&job.id).await.unwrap() >= 4);
        assert_eq!(db.store.journal_count(&job.id).await.unwrap(), 4);
        let logs = db.store.logs_of_job(&job.id).await.unwrap();
        assert!(logs.is_empty() || logs.iter().all(|(attempt, _)| *attempt == 1));
    }
    // One ticket per remediated device, filed into the store.
    let tickets = db.store.tickets(&acme).await.unwrap();
    assert_eq!(tickets.len(), 3, "{tickets:?}");
    // Findings per device: two updates, a locked account, a detection.
    let findings = db.store.findings(&acme, true).await.unwrap();
    assert_eq!(findings.len(), 12, "{findings:?}");
    // Plugin state written with each completion: both jobs' checks counted.
    let state = db
        .store
        .plugin_state("fixer", &[devices[0].as_str()])
        .await
        .unwrap();
    assert_eq!(state[devices[0].as_str()]["checks"], "2");
}

#[tokio::test]
async fn approval_holds_the_plan_and_apply_refuses_a_device_that_changed() {
    let db = sqlite().await;
    let dir = tempfile::tempdir().unwrap();
    let plane = plane(&db.store, dir.path().into());
    install(&plane, "guest-fixer", FIXER_GRANTS).await;
    let devices = Arc::new(TestDevices::default());
    let names = ["same", "drifted", "rejected"];
    let (acme, _) = tenant(
        &db.store,
        "acme",
        Tier::Vip,
        &[("same", &[]), ("drifted", &[]), ("rejected", &[])],
        |_, _| json!({}),
    )
    .await;
    for n in names {
        devices.set(n, fixture(n, acme.as_str()));
    }
    let playbook = plane
        .create_playbook(
            Some(acme.clone()),
            "fix with approval",
            json!([{ "plugin": "fixer", "mode": "remediate", "requires-approval": true }]),
            json!({}),
        )
        .await
        .unwrap();
    let run = plane.start_run(&playbook.id, None).await.unwrap();
    let running = start(&plane, "w1", devices.clone(), None);

    // The plan runs, then each device waits for approval.
    wait(&db.store, &run, |_, s| {
        s.iter()
            .filter(|s| **s == JobStatus::AwaitingApproval)
            .count()
            == 3
    })
    .await;
    let jobs = db.store.jobs_of_run(&run).await.unwrap();
    for plan_job in jobs.iter().filter(|j| j.mode == JobMode::Plan) {
        let planned = db.store.changes_of_job(&plan_job.id).await.unwrap();
        assert_eq!(planned.len(), 5);
        assert!(
            planned
                .iter()
                .all(|c| c.change.outcome == ChangeOutcome::Planned)
        );
    }
    for n in names {
        assert_eq!(
            devices.snapshot(n).updates.len(),
            2,
            "plan mode changed {n}"
        );
    }
    let waiting: BTreeMap<String, _> = {
        let mut m = BTreeMap::new();
        for j in jobs
            .iter()
            .filter(|j| j.status == JobStatus::AwaitingApproval)
        {
            let d = db
                .store
                .device(j.device_id.as_ref().unwrap())
                .await
                .unwrap()
                .unwrap();
            m.insert(d.name, j.id.clone());
        }
        m
    };

    // A third update appears on `drifted` after the plan was made.
    let mut drifted = fixture("drifted", acme.as_str());
    let mut extra = drifted.updates[1].clone();
    extra.name = "bash".into();
    drifted.updates.push(extra);
    devices.set("drifted", drifted);

    let now = Timestamp::now();
    assert!(
        db.store
            .approve_job(&waiting["same"], "admin", "ok", now)
            .await
            .unwrap()
            .is_some()
    );
    assert!(
        db.store
            .approve_job(&waiting["drifted"], "admin", "ok", now)
            .await
            .unwrap()
            .is_some()
    );
    assert!(
        db.store
            .reject_job(&waiting["rejected"], "admin", "not now", now)
            .await
            .unwrap()
            .is_some()
    );
    let done = finished(&db.store, &run).await;
    running.stop().await;

    let job = |id| db.store.job(id);
    let same = job(&waiting["same"]).await.unwrap().unwrap();
    assert_eq!(same.status, JobStatus::Succeeded, "{same:?}");
    let applied = db.store.changes_of_job(&same.id).await.unwrap();
    assert_eq!(applied.len(), 5);
    assert!(
        applied
            .iter()
            .all(|c| c.change.outcome == ChangeOutcome::Applied)
    );
    assert!(devices.snapshot("same").updates.is_empty());

    let drifted = job(&waiting["drifted"]).await.unwrap().unwrap();
    assert_eq!(drifted.status, JobStatus::Failed);
    let reason = drifted.last_error.unwrap();
    assert!(
        reason.contains("no longer matches the approved plan"),
        "{reason}"
    );
    assert!(reason.contains("bash"), "{reason}");
    assert_eq!(
        devices.snapshot("drifted").updates.len(),
        3,
        "nothing applied"
    );

    let rejected = job(&waiting["rejected"]).await.unwrap().unwrap();
    assert_eq!(rejected.status, JobStatus::Cancelled);
    assert_eq!(devices.snapshot("rejected").updates.len(), 2);
    assert_eq!(done.status, RunStatus::Failed);
}

/// Alerts kept in `store`, delivered to one webhook at `url`.
fn alerts_to(
    store: &steward_store::Store,
    url: String,
    secret: &str,
    tenants: Option<Vec<String>>,
) -> Arc<Alerts> {
    Arc::new(Alerts {
        alerter: Alerter::new(Arc::new(StoreAlertState::new(store.clone()))),
        dispatcher: Dispatcher::start(
            vec![Webhook {
                id: "ops".into(),
                url,
                secret: secret.into(),
                tenants,
                enabled: true,
            }],
            DispatcherConfig::default(),
        )
        .unwrap(),
    })
}

#[tokio::test]
async fn a_failing_check_alerts_once_and_resolves_once_through_a_signed_webhook() {
    const SECRET: &str = "a-test-secret-of-enough-bytes";
    let db = sqlite().await;
    let dir = tempfile::tempdir().unwrap();
    let plane = plane(&db.store, dir.path().into());
    install(&plane, "guest-fixer", FIXER_GRANTS).await;
    let devices = Arc::new(TestDevices::default());
    let (acme, _) = tenant(&db.store, "acme", Tier::Vip, &[("ws-1", &[])], |_, _| {
        json!({})
    })
    .await;
    devices.set("ws-1", fixture("ws-1", acme.as_str()));
    let (url, got) = receiver(SECRET).await;
    let alerts = alerts_to(&db.store, url, SECRET, None);
    let playbook = plane
        .create_playbook(
            Some(acme.clone()),
            "check",
            json!([{ "plugin": "fixer" }]),
            json!({}),
        )
        .await
        .unwrap();
    let running = start(&plane, "w1", devices.clone(), Some(alerts));
    let events = || {
        got.lock()
            .unwrap()
            .iter()
            .map(|v| {
                (
                    v["event"].as_str().unwrap().to_owned(),
                    v["condition"].as_str().unwrap().to_owned(),
                )
            })
            .collect::<Vec<_>>()
    };
    let got_len = || got.lock().unwrap().len();

    // The infected file is a critical finding: one alert, on two runs.
    for _ in 0..2 {
        let run = plane.start_run(&playbook.id, None).await.unwrap();
        finished(&db.store, &run).await;
    }
    for _ in 0..1200 {
        if got_len() >= 1 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(
        events(),
        [("alert.firing".to_string(), "critical-findings".to_string())]
    );
    let first = got.lock().unwrap()[0].clone();
    assert_eq!(first["tenant_id"], acme.as_str());
    assert_eq!(first["plugin"], "fixer");

    // The file is cleaned: the next check resolves the alert, once.
    let mut clean = fixture("ws-1", acme.as_str());
    clean.files.retain(|f| f.signature.is_none());
    devices.set("ws-1", clean);
    for _ in 0..2 {
        let run = plane.start_run(&playbook.id, None).await.unwrap();
        finished(&db.store, &run).await;
    }
    for _ in 0..1200 {
        if got_len() >= 2 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    running.stop().await;
    assert_eq!(
        events(),
        [
            ("alert.firing".to_string(), "critical-findings".to_string()),
            (
                "alert.resolved".to_string(),
                "critical-findings".to_string()
            )
        ]
    );
    let resolved = got.lock().unwrap()[1].clone();
    assert_eq!(resolved["id"], first["id"]);
    // Both events were delivered, so neither is kept for redelivery.
    outbox_drains(&db.store).await;
}

/// Waits until the alert outbox is empty (an event leaves it once its
/// delivery's report is in).
async fn outbox_drains(store: &steward_store::Store) {
    for _ in 0..1200 {
        if store.alert_outbox().await.unwrap().is_empty() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    panic!("the outbox kept {:?}", store.alert_outbox().await.unwrap());
}

/// One webhook takes an event and another is down through every retry:
/// the event stays in the outbox with the first recorded as reached, and
/// its redelivery goes to the second only.
async fn a_redelivery_leaves_out_the_webhooks_that_took_the_event(db: TestDb) {
    const SECRET: &str = "a-fourth-test-secret-of-enough-bytes";
    let (ops_url, ops, _) = switchable_receiver(SECRET).await;
    let (pager_url, pager, pager_down) = switchable_receiver(SECRET).await;
    pager_down.store(true, Ordering::SeqCst);
    let webhook = |id: &str, url: String| Webhook {
        id: id.into(),
        url,
        secret: SECRET.into(),
        tenants: None,
        enabled: true,
    };
    let alerts = Arc::new(Alerts {
        alerter: Alerter::new(Arc::new(StoreAlertState::holding(
            db.store.clone(),
            Duration::ZERO,
        ))),
        dispatcher: Dispatcher::start(
            vec![webhook("ops", ops_url), webhook("pager", pager_url)],
            DispatcherConfig {
                policy: DeliveryPolicy {
                    max_attempts: 2,
                    base_backoff: Duration::from_millis(10),
                    max_backoff: Duration::from_millis(10),
                    ..DeliveryPolicy::default()
                },
                ..DispatcherConfig::default()
            },
        )
        .unwrap(),
    });
    let mut failing = Observation::new("acme", "ws-1", "fixer", "run-1", "job-1", Utc::now());
    failing.job = JobEnd::TimedOut {
        limit: Duration::from_secs(60),
    };
    let fired = alerts.alerter.observe(&failing).await;
    assert_eq!(fired.len(), 1);
    alerts.send(fired[0].clone());

    let reached = || async {
        db.store
            .alert_outbox()
            .await
            .unwrap()
            .into_iter()
            .map(|e| (e.alert_id, e.reached))
            .collect::<Vec<_>>()
    };
    for _ in 0..1200 {
        if reached().await.first().is_some_and(|(_, r)| !r.is_empty()) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    assert_eq!(
        reached().await,
        [(fired[0].id.clone(), vec!["ops".to_string()])]
    );
    assert_eq!(ops.lock().unwrap().len(), 1);
    assert!(pager.lock().unwrap().is_empty());

    pager_down.store(false, Ordering::SeqCst);
    assert_eq!(alerts.redeliver(10).await, 1);
    outbox_drains(&db.store).await;
    let ids = |got: &Mutex<Vec<Value>>| {
        got.lock()
            .unwrap()
            .iter()
            .map(|v| (v["id"].to_string(), v["event"].to_string()))
            .collect::<Vec<_>>()
    };
    assert_eq!(ids(&pager), ids(&ops), "the pager got the same event");
    assert_eq!(ops.lock().unwrap().len(), 1, "the ops webhook got it once");
}

/// An event that keeps failing to reach every webhook is sent again up to
/// the state's limit, then dropped.
#[tokio::test]
async fn an_alert_redelivered_too_often_is_dropped() {
    let db = sqlite().await;
    let state = StoreAlertState::holding(db.store.clone(), Duration::ZERO).redelivering(2);
    let alerter = Alerter::new(Arc::new(state));
    let mut failing = Observation::new("acme", "ws-1", "fixer", "run-1", "job-1", Utc::now());
    failing.job = JobEnd::TimedOut {
        limit: Duration::from_secs(60),
    };
    let fired = alerter.observe(&failing).await;
    assert_eq!(fired.len(), 1);
    let ids = |alerts: &[steward_control::alerts::Alert]| {
        alerts
            .iter()
            .map(|a| (a.id.clone(), a.event))
            .collect::<Vec<_>>()
    };
    for attempt in 0..2 {
        let again: Vec<_> = alerter
            .undelivered(10)
            .await
            .unwrap()
            .into_iter()
            .map(|u| u.alert)
            .collect();
        assert_eq!(ids(&again), ids(&fired), "redelivery {attempt}");
    }
    assert!(alerter.undelivered(10).await.unwrap().is_empty());
    assert!(db.store.alert_outbox().await.unwrap().is_empty());
}

/// The process that opened an alert died before delivering it: the alert
/// event was written with the state change, so the next process's
/// redelivery loop sends it, signed, and then drops it from the outbox.
async fn an_alert_recorded_before_a_crash_is_delivered_by_the_next_process(db: TestDb) {
    const SECRET: &str = "a-third-test-secret-of-enough-bytes";
    let crashed = Alerter::new(Arc::new(StoreAlertState::holding(
        db.store.clone(),
        Duration::ZERO,
    )));
    let mut failing = Observation::new("acme", "ws-1", "fixer", "run-1", "job-1", Utc::now());
    failing.check = CheckResult::Completed {
        critical_findings: vec![CriticalFinding {
            id: "f-1".into(),
            summary: "an infected file".into(),
        }],
    };
    let fired = crashed.observe(&failing).await;
    assert_eq!(fired.len(), 1);
    let kept = db.store.alert_outbox().await.unwrap();
    assert_eq!(
        kept.iter()
            .map(|e| (e.alert_id.as_str(), e.event.as_str()))
            .collect::<Vec<_>>(),
        [(fired[0].id.as_str(), "alert.firing")]
    );
    // Still failing: the alert stays open and nothing more is kept.
    assert!(crashed.observe(&failing).await.is_empty());
    assert_eq!(db.store.alert_outbox().await.unwrap().len(), 1);

    // The next process starts with nothing in memory.
    let dir = tempfile::tempdir().unwrap();
    let plane = plane(&db.store, dir.path().into());
    let (url, got) = receiver(SECRET).await;
    let running = start(
        &plane,
        "w2",
        Arc::new(TestDevices::default()),
        Some(alerts_to(&db.store, url, SECRET, None)),
    );
    outbox_drains(&db.store).await;
    running.stop().await;
    let received = got.lock().unwrap().clone();
    assert_eq!(received.len(), 1, "{received:?}");
    assert_eq!(received[0]["id"], fired[0].id.as_str());
    assert_eq!(received[0]["event"], "alert.firing");
    assert_eq!(received[0]["condition"], "critical-findings");
    assert_eq!(received[0]["details"]["findings"][0]["id"], "f-1");
}

/// The process that ended a job died right after the job's commit, before
/// it gave the job's observation to the alerter: the observation was
/// committed with the job (the alert inbox), so the next process's alert
/// loop observes it, fires and delivers the alert, and empties the inbox.
async fn a_job_recorded_just_before_a_crash_still_alerts(db: TestDb) {
    const SECRET: &str = "a-fifth-test-secret-of-enough-bytes!";
    let (acme, devices) = tenant(
        &db.store,
        "acme",
        Tier::Managed,
        &[("ws-1", &[])],
        |_, _| json!({}),
    )
    .await;
    let now = Timestamp::now();
    db.store
        .create_run(
            None,
            &[],
            &[NewJob::new(
                acme.clone(),
                Some(devices[0].clone()),
                "fixer",
                JobMode::Check,
                now,
            )],
            now,
        )
        .await
        .unwrap();
    let job = db
        .store
        .claim("crashed", 1, Duration::from_secs(30), now)
        .await
        .unwrap()
        .remove(0);
    let mut seen = Observation::new(
        acme.as_str(),
        devices[0].as_str(),
        "fixer",
        job.run_id.as_str(),
        job.id.as_str(),
        Utc::now(),
    );
    seen.check = CheckResult::Completed {
        critical_findings: vec![CriticalFinding {
            id: "f-1".into(),
            summary: "an infected file".into(),
        }],
    };
    let mut done = Completion::succeeded(&job, json!({}));
    done.observation = Some(serde_json::to_string(&seen).unwrap());
    assert_eq!(
        db.store.complete("crashed", &[done], now).await.unwrap(),
        std::slice::from_ref(&job.id)
    );
    // …and the process died here: no alert state, no outbox row.
    assert!(db.store.alert_outbox().await.unwrap().is_empty());
    assert_eq!(db.store.alert_inbox().await.unwrap().len(), 1);

    // Its hold has passed (as after INBOX_HOLD), and the next process
    // starts with nothing in memory.
    let pool = sqlx::AnyPool::connect(&db.url).await.unwrap();
    sqlx::query("UPDATE alert_inbox SET retry_at = 0")
        .execute(&pool)
        .await
        .unwrap();
    pool.close().await;
    let dir = tempfile::tempdir().unwrap();
    let plane = plane(&db.store, dir.path().into());
    let (url, got) = receiver(SECRET).await;
    let running = start(
        &plane,
        "w2",
        Arc::new(TestDevices::default()),
        Some(alerts_to(&db.store, url, SECRET, None)),
    );
    for _ in 0..1200 {
        if !got.lock().unwrap().is_empty() && db.store.alert_inbox().await.unwrap().is_empty() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    outbox_drains(&db.store).await;
    running.stop().await;
    let received = got.lock().unwrap().clone();
    assert_eq!(received.len(), 1, "{received:?}");
    assert_eq!(received[0]["event"], "alert.firing");
    assert_eq!(received[0]["condition"], "critical-findings");
    assert_eq!(received[0]["job_id"], job.id.as_str());
    assert!(db.store.alert_inbox().await.unwrap().is_empty());
}

/// A job hung in a host call (a device that takes ten minutes to answer)
/// is stopped when its run is cancelled: the run ends `cancelled` at once,
/// the worker drops the job's instance at its next lease renewal (so the
/// executor can stop without waiting ten minutes), and the playbook's
/// next step never starts.
async fn cancelling_a_run_stops_its_hung_job_and_starts_no_later_step(db: TestDb) {
    let dir = tempfile::tempdir().unwrap();
    let plane = plane(&db.store, dir.path().into());
    install(&plane, "guest-fixer", FIXER_GRANTS).await;
    let (acme, _) = tenant(
        &db.store,
        "acme",
        Tier::Managed,
        &[("ws-1", &[])],
        |id, t| {
            let mut f = fixture(id, t.as_str());
            f.delays.insert("packages.updates".into(), 600_000);
            simulated_facts(&f)
        },
    )
    .await;
    let playbook = plane
        .create_playbook(
            Some(acme.clone()),
            "check then fix",
            json!([
                { "plugin": "fixer", "mode": "check" },
                { "plugin": "fixer", "mode": "remediate" },
            ]),
            json!({}),
        )
        .await
        .unwrap();
    let run = plane.start_run(&playbook.id, None).await.unwrap();
    let running = start(
        &plane,
        "w1",
        Arc::new(StandardProviders::new(LocalConfig::default())),
        None,
    );
    wait(&db.store, &run, |_, jobs| jobs == [JobStatus::Leased]).await;
    assert_eq!(
        db.store.cancel_run(&run, Timestamp::now()).await.unwrap(),
        1
    );
    assert_eq!(
        db.store.run(&run).await.unwrap().unwrap().status,
        RunStatus::Cancelled
    );
    // Stopping the executor waits for its jobs in flight: it returns only
    // because the hung one was dropped at a lease renewal (every 10 s),
    // not after the device's ten minutes.
    tokio::time::timeout(Duration::from_secs(120), running.stop())
        .await
        .expect("the cancelled job was stopped, not waited for");
    let jobs = db.store.jobs_of_run(&run).await.unwrap();
    assert_eq!(jobs.len(), 1, "the next step never started");
    assert_eq!(jobs[0].status, JobStatus::Cancelled);
    assert_eq!(
        db.store.run(&run).await.unwrap().unwrap().status,
        RunStatus::Cancelled
    );
}

fn field<T>(r: Result<T, ControlError>) -> (String, String) {
    match r {
        Err(ControlError::Invalid { field, message }) => (field, message),
        Err(other) => panic!("expected a field error, got {other}"),
        Ok(_) => panic!("bad input was accepted"),
    }
}

async fn bad_input_names_the_field_and_stores_nothing(db: TestDb) {
    let dir = tempfile::tempdir().unwrap();
    let plane = plane(&db.store, dir.path().into());
    install(&plane, "guest-fixer", FIXER_GRANTS).await;
    let (acme, _) = tenant(
        &db.store,
        "acme",
        Tier::Managed,
        &[("ws-1", &[])],
        |_, _| json!({}),
    )
    .await;
    let playbook = plane
        .create_playbook(
            Some(acme.clone()),
            "ok",
            json!([{ "plugin": "fixer" }]),
            json!({}),
        )
        .await
        .unwrap();
    plane
        .create_schedule(
            &playbook.id,
            None,
            json!({ "cron": "@daily", "timezone": "UTC" }),
        )
        .await
        .unwrap();
    let before = db.store.row_counts().await.unwrap();

    let schedule = |spec: Value| plane.create_schedule(&playbook.id, None, spec);
    let (f, m) = field(schedule(json!({ "cron": "61 * * * *", "timezone": "UTC" })).await);
    assert_eq!(f, "spec.cron");
    assert!(m.contains("61"), "{m}");
    let (f, m) =
        field(schedule(json!({ "cron": "@daily", "timezone": "Mars/Olympus_Mons" })).await);
    assert_eq!(f, "spec.timezone");
    assert!(m.contains("Mars/Olympus_Mons"), "{m}");
    let (f, _) = field(
        schedule(json!({
            "cron": "@daily", "timezone": "Europe/Berlin",
            "window": { "start": "22:00", "end": "06:00" }
        }))
        .await,
    );
    assert_eq!(f, "spec.window.end");
    let (f, m) =
        field(schedule(json!({ "cron": "@daily", "timezone": "UTC", "colour": "red" })).await);
    assert_eq!(f, "spec");
    assert!(m.contains("colour"), "{m}");

    let create = |steps: Value| plane.create_playbook(Some(acme.clone()), "bad", steps, json!({}));
    let (f, m) = field(create(json!([{ "plugin": "fixer" }, { "plugin": "defrag" }])).await);
    assert_eq!(f, "steps[1].plugin");
    assert!(m.contains("defrag"), "{m}");
    let (f, m) =
        field(create(json!([{ "plugin": "fixer", "params": { "max-packages": "ten" } }])).await);
    assert_eq!(f, "steps[0].params");
    assert!(m.contains("max-packages"), "{m}");
    let (f, _) = field(create(json!([{ "plugin": "fixer", "mode": "fix-everything" }])).await);
    assert_eq!(f, "steps[0]");
    let (f, _) = field(create(json!([])).await);
    assert_eq!(f, "steps");
    let (f, _) = field(
        plane
            .create_playbook(
                Some(acme.clone()),
                "bad",
                json!([{ "plugin": "fixer" }]),
                json!({ "tag": "x" }),
            )
            .await,
    );
    assert_eq!(f, "target");

    assert_eq!(db.store.row_counts().await.unwrap(), before);
}

/// A scheduling fixture: tenant `acme` (managed) with device `ws-1`
/// (simulated), the fixer installed and a playbook `check` running it.
struct FixerFleet {
    db: TestDb,
    _dir: tempfile::TempDir,
    plane: steward_control::plane::ControlPlane,
    devices: Arc<TestDevices>,
    acme: steward_store::TenantId,
    device: steward_store::DeviceId,
    playbook: steward_store::Playbook,
}

async fn fixer_fleet() -> FixerFleet {
    let db = sqlite().await;
    let dir = tempfile::tempdir().unwrap();
    let plane = plane(&db.store, dir.path().into());
    install(&plane, "guest-fixer", FIXER_GRANTS).await;
    let devices = Arc::new(TestDevices::default());
    let (acme, ids) = tenant(
        &db.store,
        "acme",
        Tier::Managed,
        &[("ws-1", &[])],
        |_, _| json!({}),
    )
    .await;
    devices.set("ws-1", fixture("ws-1", acme.as_str()));
    let playbook = plane
        .create_playbook(
            Some(acme.clone()),
            "check",
            json!([{ "plugin": "fixer" }]),
            json!({}),
        )
        .await
        .unwrap();
    FixerFleet {
        db,
        _dir: dir,
        plane,
        devices,
        acme,
        device: ids[0].clone(),
        playbook,
    }
}

#[tokio::test]
async fn a_job_reached_after_its_window_closed_waits_for_the_next_one_or_expires() {
    use chrono::{Duration as Days, TimeZone, Timelike, Utc};
    use steward_store::{Firing, Timestamp};
    let FixerFleet {
        db,
        _dir,
        plane,
        devices,
        playbook,
        ..
    } = fixer_fleet().await;
    // The window opens at `hour`, half a day from now, so whenever the
    // test runs the window is closed.
    let hour = (Utc::now().hour() + 12) % 24;
    let yesterday = (Utc::now() - Days::days(1)).date_naive();
    let fired = Utc.from_utc_datetime(&yesterday.and_hms_opt(hour, 0, 0).unwrap());
    let ms = |t: chrono::DateTime<Utc>| Timestamp::from_millis(t.timestamp_millis());
    let mut runs = Vec::new();
    for miss in ["wait-next", "expire"] {
        let schedule = plane
            .create_schedule(
                &playbook.id,
                None,
                json!({
                    "cron": format!("0 {hour} * * *"), "timezone": "UTC", "window-miss": miss,
                    "window": { "start": format!("{hour:02}:00"), "end": format!("{hour:02}:30") }
                }),
            )
            .await
            .unwrap();
        // Rewind the schedule to yesterday's firing, as if the workers had
        // been down since shortly after it fired.
        db.store
            .skip_firing(&Firing {
                schedule_id: schedule.id.clone(),
                fire_at: ms(fired - Days::days(1)),
                next_fire_at: Some(ms(fired)),
            })
            .await
            .unwrap();
        let report = plane
            .scheduler_tick(fired + Days::seconds(30))
            .await
            .unwrap();
        assert_eq!(report.fired, 1);
        runs.push(
            db.store.runs_of_schedule(&schedule.id).await.unwrap()[0]
                .id
                .clone(),
        );
    }
    let running = start(&plane, "w1", devices.clone(), None);
    // The wait-next job is taken, found outside its window and queued for
    // the next one; the expire job is never taken and the sweep ends it.
    let start_wait = std::time::Instant::now();
    let job = loop {
        let job = db.store.jobs_of_run(&runs[0]).await.unwrap().remove(0);
        if job.last_error.is_some() || start_wait.elapsed() > Duration::from_secs(20) {
            break job;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    };
    running.stop().await;
    plane.sweep().await.unwrap();
    let now = Utc::now();
    let today = Utc.from_utc_datetime(&now.date_naive().and_hms_opt(hour, 0, 0).unwrap());
    let next_open = if now < today {
        today
    } else {
        today + Days::days(1)
    };
    assert_eq!(job.status, JobStatus::Queued, "{job:?}");
    assert_eq!(job.due_at, ms(next_open), "{job:?}");
    assert!(job.last_error.unwrap().contains("waits for the next one"));
    let expired = db.store.jobs_of_run(&runs[1]).await.unwrap().remove(0);
    assert_eq!(expired.status, JobStatus::Expired, "{expired:?}");
    assert_eq!(expired.attempt, 0, "never started: {expired:?}");
}

#[tokio::test]
async fn hostile_jobs_end_as_timed_out_or_failed_and_the_timeout_alerts() {
    const SECRET: &str = "another-test-secret-of-enough-bytes";
    let db = sqlite().await;
    let dir = tempfile::tempdir().unwrap();
    let plane = plane(&db.store, dir.path().into());
    install(&plane, "guest-hostile", &["packages", "accounts=jdoe"]).await;
    install(&plane, "guest-trivial", &[]).await;
    let devices = Arc::new(TestDevices::default());
    let (acme, _) = tenant(&db.store, "acme", Tier::Vip, &[("ws-1", &[])], |_, _| {
        json!({})
    })
    .await;
    let mut slow = fixture("ws-1", acme.as_str());
    slow.delays.insert("packages.updates".into(), 5_000);
    devices.set("ws-1", slow);
    let (url, got) = receiver(SECRET).await;
    let alerts = alerts_to(&db.store, url, SECRET, Some(vec![acme.to_string()]));
    let running = start(&plane, "w1", devices.clone(), Some(alerts));
    let playbook = |behaviour: &'static str| {
        plane.create_playbook(
            Some(acme.clone()),
            behaviour,
            json!([
                {
                    "plugin": "hostile", "params": { "behaviour": behaviour },
                    "timeout-seconds": 1, "max-attempts": 1, "on-failure": "continue"
                },
                { "plugin": "trivial" }
            ]),
            json!({}),
        )
    };
    let slow = playbook("slow-host").await.unwrap();
    let panic = playbook("panic").await.unwrap();
    let slow_run = plane.start_run(&slow.id, None).await.unwrap();
    let panic_run = plane.start_run(&panic.id, None).await.unwrap();
    finished(&db.store, &slow_run).await;
    finished(&db.store, &panic_run).await;
    for _ in 0..1200 {
        if !got.lock().unwrap().is_empty() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    running.stop().await;

    let slow_jobs = db.store.jobs_of_run(&slow_run).await.unwrap();
    assert_eq!(slow_jobs[0].status, JobStatus::TimedOut, "{slow_jobs:?}");
    assert!(
        slow_jobs[0]
            .last_error
            .as_ref()
            .unwrap()
            .contains("1000 ms")
    );
    let panic_jobs = db.store.jobs_of_run(&panic_run).await.unwrap();
    assert_eq!(panic_jobs[0].status, JobStatus::Failed);
    assert!(
        panic_jobs[0]
            .last_error
            .as_ref()
            .unwrap()
            .contains("panicked")
    );
    // Both steps say `continue`: the next step ran after each, and the
    // host carried on after a guest that hung and one that panicked.
    for jobs in [&slow_jobs, &panic_jobs] {
        assert_eq!(jobs.len(), 2, "{jobs:?}");
        assert_eq!(
            (jobs[1].plugin.as_str(), jobs[1].status),
            ("trivial", JobStatus::Succeeded)
        );
    }
    let alerts: Vec<(String, String)> = got
        .lock()
        .unwrap()
        .iter()
        .map(|v| {
            (
                v["event"].as_str().unwrap().into(),
                v["condition"].as_str().unwrap().into(),
            )
        })
        .collect();
    assert_eq!(
        alerts,
        [("alert.firing".to_string(), "job-timed-out".to_string())]
    );
    // `/metrics` counts the panic as a trap of its plugin; the hang was
    // stopped by the host, not trapped.
    let metrics = db.store.metrics(Timestamp::now()).await.unwrap();
    assert_eq!(
        metrics.traps,
        [(panic_jobs[0].plugin.clone(), 1)],
        "{metrics:?}"
    );
}

#[tokio::test]
async fn later_steps_run_the_version_pinned_when_the_run_was_created() {
    use steward_store::{Pin, PluginVersion, Scope};
    let db = sqlite().await;
    let dir = tempfile::tempdir().unwrap();
    let plane = plane(&db.store, dir.path().into());
    let v1 = install(&plane, "guest-vendor-demo-1-0-0", &[]).await;
    assert_eq!(
        (v1.plugin.as_str(), v1.version.as_str()),
        ("vendor-demo", "1.0.0")
    );
    let devices = Arc::new(TestDevices::default());
    let (acme, _) = tenant(&db.store, "acme", Tier::Vip, &[("ws-1", &[])], |_, _| {
        json!({})
    })
    .await;
    devices.set("ws-1", fixture("ws-1", acme.as_str()));
    let pin = |v: &PluginVersion| Pin {
        plugin: v.plugin.clone(),
        version: v.version.clone(),
        digest: v.digest.clone(),
    };
    let playbook = |name: &'static str, steps: Value| {
        plane.create_playbook(Some(acme.clone()), name, steps, json!({}))
    };
    let latest = playbook(
        "latest",
        json!([{ "plugin": "vendor-demo" }, { "plugin": "vendor-demo" }]),
    )
    .await
    .unwrap();

    // The run is created (and pinned) with 1.0.0 the only version; 1.1.0
    // is installed before any of its jobs runs, so its second step's job is
    // made after the upgrade.
    let run = plane.start_run(&latest.id, None).await.unwrap();
    let v11 = install(&plane, "guest-vendor-demo-1-1-0", &[]).await;
    assert_eq!(
        (v11.plugin.as_str(), v11.version.as_str()),
        ("vendor-demo", "1.1.0")
    );
    assert_ne!(v1.digest, v11.digest);
    let running = start(&plane, "w1", devices.clone(), None);
    let done = finished(&db.store, &run).await;
    assert_eq!(done.status, RunStatus::Succeeded, "{done:?}");
    assert_eq!(done.pins, Some(vec![pin(&v1), pin(&v1)]));
    let jobs = db.store.jobs_of_run(&run).await.unwrap();
    assert_eq!(
        jobs.iter()
            .map(|j| (j.step_index, j.status, j.plugin_digest.as_deref()))
            .collect::<Vec<_>>(),
        [
            (0, JobStatus::Succeeded, Some(v1.digest.as_str())),
            (1, JobStatus::Succeeded, Some(v1.digest.as_str())),
        ]
    );

    // A run started now pins the latest installed version, 1.1.0.
    let run = plane.start_run(&latest.id, None).await.unwrap();
    let done = finished(&db.store, &run).await;
    assert_eq!(done.status, RunStatus::Succeeded, "{done:?}");
    assert_eq!(done.pins, Some(vec![pin(&v11), pin(&v11)]));
    let jobs = db.store.jobs_of_run(&run).await.unwrap();
    assert_eq!(jobs.len(), 2, "{jobs:?}");
    assert!(
        jobs.iter()
            .all(|j| j.plugin_digest.as_deref() == Some(v11.digest.as_str())),
        "{jobs:?}"
    );

    // With 2.0.0 installed last, a requirement picks the highest version
    // that matches it, not the latest installed.
    let v2 = install(&plane, "guest-vendor-demo-2-0-0", &["tickets=vendor"]).await;
    assert_eq!(v2.version, "2.0.0");
    let required = playbook(
        "required",
        json!([
            { "plugin": "vendor-demo@=1.0.0" },
            { "plugin": "vendor-demo@^1" },
            { "plugin": "vendor-demo", "version": "1.0" },
            { "plugin": "vendor-demo" },
        ]),
    )
    .await
    .unwrap();
    let run = plane.start_run(&required.id, None).await.unwrap();
    let done = finished(&db.store, &run).await;
    running.stop().await;
    assert_eq!(done.status, RunStatus::Succeeded, "{done:?}");
    assert_eq!(
        done.pins,
        Some(vec![pin(&v1), pin(&v11), pin(&v11), pin(&v2)])
    );
    let jobs = db.store.jobs_of_run(&run).await.unwrap();
    assert_eq!(
        jobs.iter()
            .map(|j| (j.step_index, j.plugin_digest.clone().unwrap()))
            .collect::<Vec<_>>(),
        [
            (0, v1.digest.clone()),
            (1, v11.digest.clone()),
            (2, v11.digest.clone()),
            (3, v2.digest.clone()),
        ]
    );

    // A requirement nothing installed matches, or a version given twice,
    // is refused naming the field, and no playbook is stored.
    let count = || async {
        db.store
            .list_playbooks(&Scope::All, None)
            .await
            .unwrap()
            .len()
    };
    let before = count().await;
    assert_eq!(before, 2);
    let (f, m) = field(playbook("none", json!([{ "plugin": "vendor-demo@^3" }])).await);
    assert_eq!(f, "steps[0].version");
    assert!(m.contains("^3") && m.contains("1.1.0"), "{m}");
    let (f, m) = field(
        playbook(
            "twice",
            json!([{ "plugin": "vendor-demo@^1", "version": "^1" }]),
        )
        .await,
    );
    assert_eq!(f, "steps[0].plugin");
    assert!(m.contains("not both"), "{m}");
    let (f, _) = field(playbook("junk", json!([{ "plugin": "vendor-demo@one" }])).await);
    assert_eq!(f, "steps[0].version");
    assert_eq!(count().await, before);
}

/// A worker that took jobs and died: the sweeper ends each job whose lease
/// ran out with no attempt left as timed out and, where its step says
/// `continue`, enqueues the next step (pinned like the rest of the run) in
/// the same transaction; where it says `stop`, the run ends failed.
async fn a_lease_that_runs_out_is_followed_by_the_next_step_when_the_step_continues(db: TestDb) {
    let dir = tempfile::tempdir().unwrap();
    let plane = plane(&db.store, dir.path().into());
    install(&plane, "guest-trivial", &[]).await;
    let (acme, devices) = tenant(
        &db.store,
        "acme",
        Tier::Managed,
        &[("ws-1", &[])],
        |_, _| json!({}),
    )
    .await;
    let playbook = |name: &'static str, on_failure: &'static str| {
        plane.create_playbook(
            Some(acme.clone()),
            name,
            json!([
                { "plugin": "trivial", "max-attempts": 1, "on-failure": on_failure },
                { "plugin": "trivial", "mode": "check" }
            ]),
            json!({}),
        )
    };
    let goes_on = playbook("goes on", "continue").await.unwrap();
    let stops = playbook("stops", "stop").await.unwrap();
    let goes_on_run = plane.start_run(&goes_on.id, None).await.unwrap();
    let stops_run = plane.start_run(&stops.id, None).await.unwrap();

    // The dead worker's leases run out a millisecond after it took them.
    let claimed = db
        .store
        .claim("crashed", 10, Duration::from_millis(1), Timestamp::now())
        .await
        .unwrap();
    assert_eq!(claimed.len(), 2);
    tokio::time::sleep(Duration::from_millis(20)).await;
    let reclaimed = plane.sweep().await.unwrap();
    let mut ended: Vec<_> = reclaimed.ended.iter().map(|j| j.id.clone()).collect();
    ended.sort();
    let mut expected: Vec<_> = claimed.iter().map(|j| j.id.clone()).collect();
    expected.sort();
    assert_eq!(ended, expected);

    let jobs = db.store.jobs_of_run(&goes_on_run).await.unwrap();
    let steps: Vec<_> = jobs.iter().map(|j| (j.step_index, j.status)).collect();
    assert_eq!(
        steps,
        [(0, JobStatus::TimedOut), (1, JobStatus::Queued)],
        "{jobs:?}"
    );
    let pins = db
        .store
        .run(&goes_on_run)
        .await
        .unwrap()
        .unwrap()
        .pins
        .unwrap();
    assert_eq!(
        jobs[1].plugin_digest.as_deref(),
        Some(pins[1].digest.as_str())
    );
    assert_eq!(jobs[1].device_id.as_ref(), Some(&devices[0]));
    assert_eq!(
        db.store.run(&goes_on_run).await.unwrap().unwrap().status,
        RunStatus::Running
    );

    let jobs = db.store.jobs_of_run(&stops_run).await.unwrap();
    let steps: Vec<_> = jobs.iter().map(|j| (j.step_index, j.status)).collect();
    assert_eq!(steps, [(0, JobStatus::TimedOut)], "{jobs:?}");
    assert_eq!(
        db.store.run(&stops_run).await.unwrap().unwrap().status,
        RunStatus::Failed
    );

    // A second sweep finds nothing more to do.
    assert_eq!(plane.sweep().await.unwrap(), Reclaimed::default());
    assert_eq!(db.store.jobs_of_run(&goes_on_run).await.unwrap().len(), 2);

    // The ended jobs alert as timed out: once for the device and plugin.
    const SECRET: &str = "a-fourth-test-secret-of-enough-bytes";
    let (url, got) = receiver(SECRET).await;
    let executor = Executor::new(
        ExecutorConfig::new("sweeper"),
        db.store.clone(),
        plane.library().clone(),
        Arc::new(TestDevices::default()),
        Some(alerts_to(&db.store, url, SECRET, None)),
    );
    executor.alert_timed_out(&reclaimed.ended).await;
    outbox_drains(&db.store).await;
    let received = got.lock().unwrap().clone();
    assert_eq!(received.len(), 1, "{received:?}");
    assert_eq!(
        (&received[0]["event"], &received[0]["condition"]),
        (&json!("alert.firing"), &json!("job-timed-out"))
    );
    assert_eq!(received[0]["device_id"], devices[0].as_str());
    assert_eq!(received[0]["details"]["limit_ms"], 300_000);
}

on_both_backends!(
    playbook_runs_check_then_remediation,
    an_alert_recorded_before_a_crash_is_delivered_by_the_next_process,
    bad_input_names_the_field_and_stores_nothing,
    a_lease_that_runs_out_is_followed_by_the_next_step_when_the_step_continues,
    a_redelivery_leaves_out_the_webhooks_that_took_the_event,
    a_job_recorded_just_before_a_crash_still_alerts,
    cancelling_a_run_stops_its_hung_job_and_starts_no_later_step,
);

/// A tick reached after a schedule's first firing time (a busy scheduler, a
/// restart) fires it by its misfire policy instead of moving it silently to
/// the next day, and one tick works through more due schedules than fit in
/// one batch.
#[tokio::test]
async fn a_first_firing_reached_late_follows_the_misfire_policy_and_no_firing_is_lost() {
    use chrono::{Duration as Days, Timelike, Utc};
    let FixerFleet {
        db,
        _dir,
        plane,
        playbook,
        ..
    } = fixer_fleet().await;
    // Daily, at an hour half a day away: never fired when created.
    let hour = (Utc::now().hour() + 12) % 24;
    let mut schedules = Vec::new();
    for i in 0..150 {
        let misfire = if i == 0 { "skip" } else { "run-once" };
        schedules.push(
            plane
                .create_schedule(
                    &playbook.id,
                    None,
                    json!({ "cron": format!("0 {hour} * * *"), "timezone": "UTC", "misfire": misfire }),
                )
                .await
                .unwrap(),
        );
    }
    let due = schedules[0].next_fire_at.unwrap().to_utc();
    // Reached ten minutes late, long past the on-time grace.
    let report = plane.scheduler_tick(due + Days::minutes(10)).await.unwrap();
    assert_eq!(report.fired, 149, "{report:?}");
    for s in &schedules[1..] {
        assert_eq!(db.store.runs_of_schedule(&s.id).await.unwrap().len(), 1);
    }
    // `skip` drops the late firing, by its policy, and moves on.
    assert!(
        db.store
            .runs_of_schedule(&schedules[0].id)
            .await
            .unwrap()
            .is_empty()
    );
    let again = plane.scheduler_tick(due + Days::minutes(11)).await.unwrap();
    assert_eq!(again.fired, 0, "{again:?}");
}

/// A firing within the fire-ahead (30 s) is written ahead, once, its jobs
/// due at its time and started no earlier; a schedule with a run going is
/// left for its time, when its overlap policy decides.
#[tokio::test]
async fn a_firing_is_written_ahead_once_and_its_jobs_start_at_its_time() {
    use chrono::{Duration as Days, Timelike};
    use steward_control::plane::TickReport;
    use steward_store::Firing;
    let FixerFleet {
        db,
        _dir,
        plane,
        devices,
        acme,
        device,
        playbook,
    } = fixer_fleet().await;
    // Daily, half a day away, driven by the ticks' own clock.
    let hour = (Utc::now().hour() + 12) % 24;
    let daily = json!({ "cron": format!("0 {hour} * * *"), "timezone": "UTC" });
    let a = plane
        .create_schedule(&playbook.id, None, daily.clone())
        .await
        .unwrap();
    let b = plane
        .create_schedule(&playbook.id, None, daily)
        .await
        .unwrap();
    let due = a.next_fire_at.unwrap();
    // B has a run going: an earlier firing whose job waits.
    let waiting = NewJob::new(
        acme.clone(),
        Some(device),
        "fixer",
        JobMode::Check,
        due + Duration::from_secs(86_400),
    );
    db.store
        .create_run_for_firing(
            &Firing {
                schedule_id: b.id.clone(),
                fire_at: Timestamp::from_millis(due.as_millis() - 86_400_000),
                next_fire_at: Some(due),
            },
            &[],
            &[waiting],
            Timestamp::now(),
        )
        .await
        .unwrap()
        .expect("B's earlier run");

    let report = plane
        .scheduler_tick(due.to_utc() - Days::seconds(20))
        .await
        .unwrap();
    assert_eq!((report.fired, report.ahead), (1, 1), "{report:?}");
    let runs = db.store.runs_of_schedule(&a.id).await.unwrap();
    assert_eq!(runs.len(), 1);
    assert_eq!(runs[0].fire_at, Some(due));
    let jobs = db.store.jobs_of_run(&runs[0].id).await.unwrap();
    assert_eq!(jobs.len(), 1);
    assert!(
        jobs.iter()
            .all(|j| j.due_at >= due && j.status == JobStatus::Queued),
        "{jobs:?}"
    );
    // Not written twice, and B not ahead of its time.
    let again = plane
        .scheduler_tick(due.to_utc() - Days::seconds(10))
        .await
        .unwrap();
    assert_eq!(again, TickReport::default(), "{again:?}");
    // At the firing B is due and its run is still going: skipped.
    let at = plane.scheduler_tick(due.to_utc()).await.unwrap();
    assert_eq!((at.fired, at.skipped), (0, 1), "{at:?}");
    assert_eq!(db.store.runs_of_schedule(&a.id).await.unwrap().len(), 1);
    assert_eq!(db.store.runs_of_schedule(&b.id).await.unwrap().len(), 1);

    // On the real clock: a schedule every five seconds is written ahead
    // and its job runs at its firing, not before.
    let every = plane
        .create_schedule(
            &playbook.id,
            None,
            json!({ "cron": "*/5 * * * * *", "timezone": "UTC" }),
        )
        .await
        .unwrap();
    // Ticked two seconds before its first firing (however near that is).
    let first = every.next_fire_at.unwrap().to_utc();
    let report = plane
        .scheduler_tick(first - Days::seconds(2))
        .await
        .unwrap();
    assert_eq!((report.fired, report.ahead), (1, 1), "{report:?}");
    let run = db.store.runs_of_schedule(&every.id).await.unwrap()[0].clone();
    let running = start(&plane, "w1", devices.clone(), None);
    let done = finished(&db.store, &run.id).await;
    running.stop().await;
    assert_eq!(done.status, RunStatus::Succeeded);
    let job = db.store.jobs_of_run(&run.id).await.unwrap().remove(0);
    let fire_at = run.fire_at.unwrap();
    assert!(run.created_at < fire_at, "{run:?}");
    assert!(job.started_at.is_some_and(|s| s >= fire_at), "{job:?}");
}

/// A plugin built for `steward:plugin@0.1.0` and one built for 0.2.0 (the
/// backup check, on simulated backup sets) in one playbook of one server:
/// both check and remediate under the same executor, limits and grants.
#[tokio::test]
async fn a_0_1_0_plugin_and_a_0_2_0_plugin_run_in_one_playbook() {
    use steward_runtime::bindings::backups::{BackupSet, Snapshot};
    use steward_runtime::bindings::types::Instant;
    use steward_runtime::device::simulated::SimBackupSet;
    let db = sqlite().await;
    let dir = tempfile::tempdir().unwrap();
    let plane = plane(&db.store, dir.path().into());
    let legacy = install(&plane, "guest-legacy-v0-1", &["packages"]).await;
    let backup = install(
        &plane,
        "steward-plugin-backup-check",
        &["backups=nightly-*", "tickets=backups"],
    )
    .await;
    assert_eq!(
        (legacy.plugin.as_str(), backup.plugin.as_str()),
        ("legacy-patching", "backup-check")
    );
    let (acme, _) = tenant(
        &db.store,
        "acme",
        Tier::Managed,
        &[("ws-1", &[])],
        |id, t| {
            let mut f = fixture(id, t.as_str());
            // The fixture's clock: 2026-11-23T00:00Z; a snapshot 3 days old.
            let old = Instant {
                seconds: f.now.unwrap().seconds - 3 * 86_400,
                nanoseconds: 0,
            };
            f.backups = vec![SimBackupSet {
                set: BackupSet {
                    name: "nightly-files".into(),
                    tool: "simulated".into(),
                    repository: "sim://nightly".into(),
                    paths: vec!["/srv".into()],
                    last_run: None,
                },
                snapshots: vec![Snapshot {
                    id: "s1".into(),
                    time: old,
                    paths: vec!["/srv".into()],
                    size_bytes: 1 << 30,
                    files: 1_000,
                }],
                sound: true,
            }];
            simulated_facts(&f)
        },
    )
    .await;
    let playbook = plane
        .create_playbook(
            Some(acme.clone()),
            "patches and backups",
            json!([
                { "plugin": "legacy-patching", "mode": "remediate" },
                { "plugin": "backup-check", "mode": "remediate" },
            ]),
            json!({}),
        )
        .await
        .expect("valid playbook");
    let run = plane.start_run(&playbook.id, None).await.unwrap();
    let running = start(
        &plane,
        "w1",
        Arc::new(StandardProviders::new(LocalConfig::default())),
        None,
    );
    let done = finished(&db.store, &run).await;
    running.stop().await;
    assert_eq!(done.status, RunStatus::Succeeded);
    let jobs = db.store.jobs_of_run(&run).await.unwrap();
    assert_eq!(jobs.len(), 2);
    assert!(
        jobs.iter().all(|j| j.status == JobStatus::Succeeded),
        "{jobs:?}"
    );
    let mut kinds = Vec::new();
    for job in &jobs {
        for c in db.store.changes_of_job(&job.id).await.unwrap() {
            assert_eq!(c.change.outcome, ChangeOutcome::Applied, "{c:?}");
            kinds.push(c.change.kind.clone());
        }
    }
    kinds.sort();
    assert_eq!(
        kinds,
        // The fixture's one security update, and the backup set's overdue
        // backup, integrity check and restore test.
        [
            "backup",
            "integrity-check",
            "package-update",
            "restore-test"
        ]
    );
    // Both plugins' findings are stored for the device.
    let findings = db.store.findings(&acme, false).await.unwrap();
    let ids: Vec<&str> = findings.iter().map(|f| f.key.as_str()).collect();
    assert!(
        ids.iter().any(|i| i.starts_with("security-update:")),
        "{ids:?}"
    );
    assert!(ids.contains(&"rpo:nightly-files"), "{ids:?}");
}

/// The first-party Python plugin (componentize-py) in one playbook with a
/// Rust plugin, under the executor's same limits and grants: the VIP's
/// account the grant covers is unlocked under the ticket, the one it does
/// not is reported as a failure beside it (the job ends failed, the unlock
/// recorded), and the Rust step runs after it (`on-failure: continue`).
#[tokio::test]
async fn a_python_plugin_runs_in_a_playbook_beside_a_rust_one() {
    use steward_runtime::bindings::accounts::{Account, AccountSource};
    let db = sqlite().await;
    let dir = tempfile::tempdir().unwrap();
    let plane = plane(&db.store, dir.path().into());
    let bytes =
        std::fs::read(steward_tests::python_component("plugins/python/locked-vip")).unwrap();
    let python = plane
        .library()
        .install(plane.store(), &bytes, &["accounts=ceo".to_string()])
        .await
        .expect("the Python plugin installs");
    assert_eq!(python.plugin, "locked-vip");
    install(&plane, "steward-plugin-patching", &["packages"]).await;
    let (acme, devices) = tenant(&db.store, "acme", Tier::Vip, &[("ws-1", &[])], |id, t| {
        let mut f = fixture(id, t.as_str());
        f.accounts.push(Account {
            name: "ceo".into(),
            path: None,
            source: AccountSource::Directory,
            locked: true,
            locked_since: None,
            failed_attempts: 7,
            groups: vec!["vip".into()],
            disabled: false,
        });
        f.accounts.push(Account {
            name: "cfo".into(),
            path: None,
            source: AccountSource::Local,
            locked: true,
            locked_since: None,
            failed_attempts: 4,
            groups: vec!["vip".into()],
            disabled: false,
        });
        simulated_facts(&f)
    })
    .await;
    let playbook = plane
        .create_playbook(
            Some(acme.clone()),
            "vip accounts, then patches",
            json!([
                { "plugin": "locked-vip", "mode": "remediate", "params": { "ticket": "HD-77" },
                  "on-failure": "continue" },
                { "plugin": "patching", "mode": "check" },
            ]),
            json!({}),
        )
        .await
        .expect("valid playbook");
    let run = plane.start_run(&playbook.id, None).await.unwrap();
    let running = start(
        &plane,
        "w1",
        Arc::new(StandardProviders::new(LocalConfig::default())),
        None,
    );
    let done = finished(&db.store, &run).await;
    running.stop().await;
    let jobs = db.store.jobs_of_run(&run).await.unwrap();
    assert_eq!(jobs.len(), 2, "{done:?}");
    let python_job = jobs.iter().find(|j| j.plugin == "locked-vip").unwrap();
    assert_eq!(python_job.status, JobStatus::Failed, "{python_job:?}");
    let error = python_job.last_error.as_deref().unwrap_or_default();
    assert!(error.contains("locked-vip:cfo"), "{error}");
    assert!(error.contains("outside the `accounts` grant"), "{error}");
    let rust_job = jobs.iter().find(|j| j.plugin == "patching").unwrap();
    assert_eq!(rust_job.status, JobStatus::Succeeded, "{rust_job:?}");
    let changes = db.store.changes_of_job(&python_job.id).await.unwrap();
    assert_eq!(changes.len(), 1, "{changes:?}");
    assert_eq!(changes[0].change.kind, "unlock");
    assert_eq!(changes[0].change.target, "ceo");
    assert_eq!(changes[0].change.outcome, ChangeOutcome::Applied);
    assert!(changes[0].change.description.contains("HD-77"));
    // jdoe is locked too, but not a VIP: not this plugin's business.
    let findings = db.store.findings(&acme, false).await.unwrap();
    let keys: Vec<&str> = findings.iter().map(|f| f.key.as_str()).collect();
    assert!(keys.contains(&"locked-vip:ceo"), "{keys:?}");
    assert!(!keys.contains(&"locked-vip:jdoe"), "{keys:?}");
    assert!(
        keys.iter().any(|k| k.starts_with("security-update:")),
        "{keys:?}"
    );
    // The Python SDK's typed state and dates: the day each VIP was first
    // seen locked (`s.today()` on the device's clock), stored as ISO text.
    let state = db
        .store
        .plugin_state("locked-vip", &[devices[0].as_str()])
        .await
        .unwrap();
    let first = &state[devices[0].as_str()]["first-locked:ceo"];
    // The simulated device's clock reads 2026-11-23.
    assert_eq!(first, "\"2026-11-23\"", "{state:?}");
}

/// Stopping the executor waits for the jobs running, not for every job it
/// claimed: with one plugin instance and four slow jobs claimed, the one
/// running finishes and the three waiting for an instance go back to the
/// queue, due at once and with their attempt given back.
#[tokio::test]
async fn stopping_gives_back_claimed_jobs_that_have_not_started() {
    let db = sqlite().await;
    let dir = tempfile::tempdir().unwrap();
    let plane = support::control::plane_with(
        &db.store,
        dir.path().into(),
        support::control::runtime_with(1, false),
    );
    install(&plane, "steward-plugin-patching", &["packages"]).await;
    let names = ["ws-1", "ws-2", "ws-3", "ws-4"];
    let devices: Vec<(&str, &[&str])> = names.iter().map(|n| (*n, &[][..])).collect();
    let (acme, _) = tenant(&db.store, "acme", Tier::Vip, &devices, |id, t| {
        let mut f = fixture(id, t.as_str());
        f.delays.insert("packages.updates".into(), 1_500);
        simulated_facts(&f)
    })
    .await;
    let playbook = plane
        .create_playbook(
            Some(acme.clone()),
            "slow patch check",
            json!([{ "plugin": "patching", "mode": "check" }]),
            json!({}),
        )
        .await
        .expect("valid playbook");
    let run = plane.start_run(&playbook.id, None).await.unwrap();
    let running = start(
        &plane,
        "w1",
        Arc::new(StandardProviders::new(LocalConfig::default())),
        None,
    );
    // All four claimed (one claim takes up to 512), one running.
    wait(&db.store, &run, |_, jobs| {
        jobs.iter().all(|s| *s == JobStatus::Leased)
    })
    .await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    running.stop().await;

    let jobs = db.store.jobs_of_run(&run).await.unwrap();
    let done: Vec<_> = jobs
        .iter()
        .filter(|j| j.status == JobStatus::Succeeded)
        .collect();
    let back: Vec<_> = jobs
        .iter()
        .filter(|j| j.status == JobStatus::Queued)
        .collect();
    assert_eq!((done.len(), back.len()), (1, 3), "{jobs:?}");
    for j in back {
        assert_eq!(j.attempt, 1, "{j:?}");
        assert_eq!(
            j.max_attempts,
            done[0].max_attempts + 1,
            "the attempt is given back: {j:?}"
        );
        assert!(
            j.last_error
                .as_deref()
                .unwrap_or_default()
                .contains("the server is stopping"),
            "{j:?}"
        );
    }
}
