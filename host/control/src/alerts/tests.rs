//! End-to-end tests: observations through the alerter and the dispatcher
//! to real HTTP receivers on 127.0.0.1 that check the signature.

use std::collections::{BTreeSet, VecDeque};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::routing::post;
use chrono::{DateTime, TimeZone, Utc};
use serde_json::Value;

use super::*;

const SECRET: &str = "s3cr3t-for-tests-0123456789";

/// What a receiver answers to one request.
#[derive(Debug, Clone, Copy)]
struct Answer {
    status: StatusCode,
    delay: Duration,
}

impl Answer {
    fn status(code: u16) -> Self {
        Self {
            status: StatusCode::from_u16(code).unwrap(),
            delay: Duration::ZERO,
        }
    }
}

/// One request a receiver got.
#[derive(Debug, Clone)]
struct Received {
    event: String,
    delivery_id: String,
    content_type: String,
    user_agent: String,
    signature_valid: bool,
    body: Vec<u8>,
    answered: u16,
}

impl Received {
    fn alert(&self) -> Alert {
        serde_json::from_slice(&self.body).expect("the body is an alert")
    }
}

#[derive(Clone)]
struct ReceiverState {
    secret: String,
    script: Arc<Mutex<VecDeque<Answer>>>,
    log: Arc<Mutex<Vec<Received>>>,
}

/// A webhook receiver on a free loopback port, as a customer would write
/// one: it checks the signature with its secret and answers 401 when it
/// does not verify, else what its script says (200 once the script is
/// spent).
struct Receiver {
    addr: SocketAddr,
    state: ReceiverState,
    server: tokio::task::JoinHandle<()>,
}

impl Receiver {
    async fn start(secret: &str) -> Self {
        Self::scripted(secret, []).await
    }

    async fn scripted(secret: &str, script: impl IntoIterator<Item = Answer>) -> Self {
        let state = ReceiverState {
            secret: secret.to_owned(),
            script: Arc::new(Mutex::new(script.into_iter().collect())),
            log: Arc::default(),
        };
        let app = Router::new()
            .route("/hook", post(receive))
            .with_state(state.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let server = tokio::spawn(async move {
            axum::serve(listener, app).await.unwrap();
        });
        Self {
            addr,
            state,
            server,
        }
    }

    fn url(&self) -> String {
        format!("http://{}/hook", self.addr)
    }

    fn webhook(&self, id: &str) -> Webhook {
        Webhook {
            id: id.into(),
            url: self.url(),
            secret: SECRET.into(),
            tenants: None,
            enabled: true,
        }
    }

    fn received(&self) -> Vec<Received> {
        self.state.log.lock().unwrap().clone()
    }
}

impl Drop for Receiver {
    fn drop(&mut self) {
        self.server.abort();
    }
}

async fn receive(
    State(state): State<ReceiverState>,
    headers: HeaderMap,
    body: Bytes,
) -> StatusCode {
    let header = |name: &str| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_owned()
    };
    let signature_valid = verify_signature(&state.secret, &body, &header(SIGNATURE_HEADER));
    let answer = if signature_valid {
        state
            .script
            .lock()
            .unwrap()
            .pop_front()
            .unwrap_or(Answer::status(200))
    } else {
        Answer::status(401)
    };
    state.log.lock().unwrap().push(Received {
        event: header(EVENT_HEADER),
        delivery_id: header(DELIVERY_HEADER),
        content_type: header("content-type"),
        user_agent: header("user-agent"),
        signature_valid,
        body: body.to_vec(),
        answered: answer.status.as_u16(),
    });
    tokio::time::sleep(answer.delay).await;
    answer.status
}

/// Millisecond backoff so retry tests take milliseconds. Real time, not
/// paused: paused time would fire request timeouts while real sockets
/// wait.
fn fast() -> DispatcherConfig {
    DispatcherConfig {
        policy: DeliveryPolicy {
            max_attempts: 5,
            base_backoff: Duration::from_millis(20),
            max_backoff: Duration::from_millis(100),
            request_timeout: Duration::from_secs(5),
            connect_timeout: Duration::from_secs(2),
        },
        ..DispatcherConfig::default()
    }
}

fn at(minute: u32) -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2025, 3, 1, 8, minute, 0).unwrap()
}

fn job(tenant: &str, minute: u32) -> Observation {
    Observation::new(
        tenant,
        "pc-1",
        "patching",
        format!("run-{minute}"),
        format!("job-{minute}"),
        at(minute),
    )
}

fn checked(minute: u32, critical: &[&str]) -> Observation {
    let mut obs = job("acme", minute);
    obs.check = CheckResult::Completed {
        critical_findings: critical
            .iter()
            .map(|id| CriticalFinding {
                id: (*id).into(),
                summary: format!("{id}: security update pending for 9 days"),
            })
            .collect(),
    };
    obs
}

fn alerter() -> Alerter {
    Alerter::new(Arc::new(MemoryAlertState::new()))
}

/// Observes, dispatches every alert and waits for all reports.
async fn observe_and_deliver(
    alerter: &Alerter,
    dispatcher: &Dispatcher,
    obs: &Observation,
) -> (Vec<Alert>, Vec<DeliveryReport>) {
    let alerts = alerter.observe(obs).await;
    let mut reports = Vec::new();
    for alert in &alerts {
        reports.extend(dispatcher.dispatch(alert.clone()).unwrap().reports().await);
    }
    (alerts, reports)
}

#[tokio::test]
async fn critical_check_delivers_one_signed_firing_alert() {
    let receiver = Receiver::start(SECRET).await;
    let dispatcher = Dispatcher::start(vec![receiver.webhook("ops")], fast()).unwrap();
    let alerter = alerter();

    let (alerts, reports) = observe_and_deliver(
        &alerter,
        &dispatcher,
        &checked(0, &["pending-security:openssl"]),
    )
    .await;

    assert_eq!(alerts.len(), 1);
    assert_eq!(reports.len(), 1);
    let report = &reports[0];
    assert_eq!(report.status, DeliveryStatus::Delivered, "{report:?}");
    assert_eq!((report.attempts, report.http_status), (1, Some(200)));
    assert_eq!(report.webhook_id, "ops");

    let received = receiver.received();
    assert_eq!(received.len(), 1);
    let got = &received[0];
    assert!(got.signature_valid);
    assert_eq!(got.event, "alert.firing");
    assert_eq!(got.content_type, "application/json");
    assert!(got.user_agent.starts_with("steward/"), "{}", got.user_agent);
    assert_eq!(got.delivery_id, report.delivery_id);
    assert_eq!(got.alert(), alerts[0]);

    let body: Value = serde_json::from_slice(&got.body).unwrap();
    let keys: BTreeSet<&str> = body
        .as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
        .collect();
    let documented = [
        "id",
        "event",
        "condition",
        "severity",
        "tenant_id",
        "device_id",
        "plugin",
        "run_id",
        "job_id",
        "summary",
        "details",
        "first_seen",
        "occurrences",
        "at",
    ];
    assert_eq!(keys, BTreeSet::from(documented));
    assert_eq!(body["event"], "alert.firing");
    assert_eq!(body["condition"], "critical-findings");
    assert_eq!(body["severity"], "critical");
    assert_eq!(body["tenant_id"], "acme");
    assert_eq!(body["run_id"], "run-0");
    assert_eq!(body["occurrences"], 1);
    assert_eq!(body["first_seen"], "2025-03-01T08:00:00.000Z");
    assert_eq!(body["at"], "2025-03-01T08:00:00.000Z");
    assert_eq!(body["details"]["finding_count"], 1);
    assert_eq!(
        body["details"]["findings"][0]["id"],
        "pending-security:openssl"
    );
    dispatcher.shutdown().await;
}

#[tokio::test]
async fn repeated_failures_of_one_check_alert_once_and_passing_resolves_once() {
    let receiver = Receiver::start(SECRET).await;
    let dispatcher = Dispatcher::start(vec![receiver.webhook("ops")], fast()).unwrap();
    let alerter = alerter();

    let (fired, _) = observe_and_deliver(&alerter, &dispatcher, &checked(0, &["cve-1"])).await;
    for minute in 1..=3 {
        let (alerts, reports) =
            observe_and_deliver(&alerter, &dispatcher, &checked(minute, &["cve-1"])).await;
        assert!(
            alerts.is_empty() && reports.is_empty(),
            "run {minute} alerted again"
        );
    }
    assert_eq!(receiver.received().len(), 1);

    let (resolved, reports) = observe_and_deliver(&alerter, &dispatcher, &checked(4, &[])).await;
    assert_eq!(resolved.len(), 1);
    assert_eq!(reports[0].status, DeliveryStatus::Delivered);
    let (again, _) = observe_and_deliver(&alerter, &dispatcher, &checked(5, &[])).await;
    assert!(again.is_empty(), "a second pass resolves nothing");

    let received = receiver.received();
    assert_eq!(received.len(), 2);
    assert!(received.iter().all(|r| r.signature_valid));
    assert_eq!(received[1].event, "alert.resolved");
    let resolved = received[1].alert();
    assert_eq!(resolved.event, AlertEvent::Resolved);
    assert_eq!(resolved.id, fired[0].id);
    assert_eq!(resolved.occurrences, 4);
    assert_eq!(resolved.first_seen, at(0));
    assert_eq!(resolved.at, at(4));
    assert_eq!(resolved.details["resolution"], "check-passed");
    assert_ne!(received[0].delivery_id, received[1].delivery_id);
    dispatcher.shutdown().await;
}

#[tokio::test]
async fn server_errors_are_retried_with_the_same_delivery_id() {
    let receiver = Receiver::scripted(SECRET, [Answer::status(503), Answer::status(503)]).await;
    let config = fast();
    let dispatcher = Dispatcher::start(vec![receiver.webhook("ops")], config.clone()).unwrap();

    let alerts = alerter().observe(&checked(0, &["cve-1"])).await;
    let started = Instant::now();
    let reports = dispatcher
        .dispatch(alerts[0].clone())
        .unwrap()
        .reports()
        .await;
    let elapsed = started.elapsed();

    assert_eq!(reports[0].status, DeliveryStatus::Delivered);
    assert_eq!(reports[0].attempts, 3);
    assert_eq!(reports[0].last_error, None);
    let received = receiver.received();
    let answered: Vec<u16> = received.iter().map(|r| r.answered).collect();
    assert_eq!(answered, [503, 503, 200]);
    assert!(
        received
            .iter()
            .all(|r| r.delivery_id == reports[0].delivery_id)
    );
    assert!(
        received
            .iter()
            .all(|r| r.body == received[0].body && r.signature_valid)
    );
    let waited = config.policy.backoff(1) + config.policy.backoff(2);
    assert!(
        elapsed >= waited,
        "retried after {elapsed:?}, before the backoff of {waited:?}"
    );
    dispatcher.shutdown().await;
}

#[tokio::test]
async fn too_many_requests_and_timeouts_are_retried() {
    let receiver = Receiver::scripted(
        SECRET,
        [
            Answer::status(429),
            Answer {
                status: StatusCode::OK,
                delay: Duration::from_secs(5),
            },
        ],
    )
    .await;
    let mut config = fast();
    config.policy.request_timeout = Duration::from_secs(1);
    let dispatcher = Dispatcher::start(vec![receiver.webhook("ops")], config).unwrap();

    let alerts = alerter().observe(&checked(0, &["cve-1"])).await;
    let reports = dispatcher
        .dispatch(alerts[0].clone())
        .unwrap()
        .reports()
        .await;

    assert_eq!(reports[0].status, DeliveryStatus::Delivered, "{reports:?}");
    assert_eq!(reports[0].attempts, 3, "429, then a timeout, then 200");
    dispatcher.shutdown().await;
}

#[tokio::test]
async fn client_errors_are_not_retried() {
    let receiver = Receiver::scripted(
        SECRET,
        [
            Answer::status(400),
            Answer::status(400),
            Answer::status(400),
        ],
    )
    .await;
    let dispatcher = Dispatcher::start(vec![receiver.webhook("ops")], fast()).unwrap();

    let alerts = alerter().observe(&checked(0, &["cve-1"])).await;
    let reports = dispatcher
        .dispatch(alerts[0].clone())
        .unwrap()
        .reports()
        .await;

    assert_eq!(reports[0].status, DeliveryStatus::Refused);
    assert_eq!(
        (reports[0].attempts, reports[0].http_status),
        (1, Some(400))
    );
    assert!(reports[0].last_error.as_deref().unwrap().contains("400"));
    assert_eq!(receiver.received().len(), 1);
    dispatcher.shutdown().await;
}

#[tokio::test]
async fn receiver_with_another_secret_rejects_the_signature() {
    let receiver = Receiver::start("a-different-secret-0123456789").await;
    let dispatcher = Dispatcher::start(vec![receiver.webhook("ops")], fast()).unwrap();

    let alerts = alerter().observe(&checked(0, &["cve-1"])).await;
    let reports = dispatcher
        .dispatch(alerts[0].clone())
        .unwrap()
        .reports()
        .await;

    let received = receiver.received();
    assert_eq!(received.len(), 1);
    assert!(!received[0].signature_valid);
    assert_eq!(reports[0].status, DeliveryStatus::Refused);
    assert_eq!(reports[0].http_status, Some(401));
    // The same body under the right secret does verify: the receiver really
    // checks the signature rather than rejecting everything.
    let header = sign(SECRET, &received[0].body);
    assert!(verify_signature(SECRET, &received[0].body, &header));
    assert!(!verify_signature(
        &receiver.state.secret,
        &received[0].body,
        &header
    ));
    dispatcher.shutdown().await;
}

#[tokio::test]
async fn unreachable_webhook_fails_after_every_attempt() {
    // A port nothing listens on: bind, note it, close it.
    let addr = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let mut config = fast();
    config.policy.max_attempts = 3;
    let webhook = Webhook {
        id: "gone".into(),
        url: format!("http://{addr}/hook"),
        secret: SECRET.into(),
        tenants: None,
        enabled: true,
    };
    let dispatcher = Dispatcher::start(vec![webhook], config).unwrap();

    let alerts = alerter().observe(&checked(0, &["cve-1"])).await;
    let reports = dispatcher
        .dispatch(alerts[0].clone())
        .unwrap()
        .reports()
        .await;

    assert_eq!(reports[0].status, DeliveryStatus::Failed);
    assert_eq!((reports[0].attempts, reports[0].http_status), (3, None));
    let error = reports[0].last_error.as_deref().unwrap();
    assert!(error.contains("onnect"), "{error}");
    assert!(
        !error.contains(&addr.to_string()),
        "the URL stays out of errors: {error}"
    );
    dispatcher.shutdown().await;
}

#[tokio::test]
async fn failed_remediation_and_timed_out_job_alert_and_resolve() {
    let receiver = Receiver::start(SECRET).await;
    let dispatcher = Dispatcher::start(vec![receiver.webhook("ops")], fast()).unwrap();
    let alerter = alerter();

    let mut failed = job("acme", 0);
    failed.remediation = RemediationResult::Failed {
        error: "apt-get install failed: E: Could not get lock /var/lib/dpkg/lock".into(),
    };
    let (alerts, _) = observe_and_deliver(&alerter, &dispatcher, &failed).await;
    assert_eq!(alerts.len(), 1);
    let mut failed_again = failed.clone();
    failed_again.at = at(1);
    assert!(alerter.observe(&failed_again).await.is_empty());

    let mut timed_out = job("acme", 2);
    timed_out.job = JobEnd::TimedOut {
        limit: Duration::from_secs(600),
    };
    let (alerts, _) = observe_and_deliver(&alerter, &dispatcher, &timed_out).await;
    assert_eq!(alerts.len(), 1);

    let mut fixed = job("acme", 3);
    fixed.remediation = RemediationResult::Succeeded;
    let (alerts, reports) = observe_and_deliver(&alerter, &dispatcher, &fixed).await;
    assert_eq!(alerts.len(), 2, "both conditions resolve");
    assert!(
        reports
            .iter()
            .all(|r| r.status == DeliveryStatus::Delivered)
    );

    let received: Vec<Alert> = receiver.received().iter().map(Received::alert).collect();
    let seen: Vec<(AlertEvent, Condition, Severity)> = received
        .iter()
        .map(|a| (a.event, a.condition, a.severity))
        .collect();
    assert_eq!(
        seen,
        [
            (
                AlertEvent::Firing,
                Condition::RemediationFailed,
                Severity::Critical
            ),
            (
                AlertEvent::Firing,
                Condition::JobTimedOut,
                Severity::Warning
            ),
            (
                AlertEvent::Resolved,
                Condition::RemediationFailed,
                Severity::Critical
            ),
            (
                AlertEvent::Resolved,
                Condition::JobTimedOut,
                Severity::Warning
            ),
        ]
    );
    assert_eq!(
        received[0].details["error"],
        "apt-get install failed: E: Could not get lock /var/lib/dpkg/lock"
    );
    assert_eq!(received[1].details["limit_ms"], 600_000);
    assert_eq!(received[2].occurrences, 2);
    assert_eq!(received[2].details["resolution"], "remediation-succeeded");
    assert_eq!(received[3].details["resolution"], "completed-in-time");
    dispatcher.shutdown().await;
}

#[tokio::test]
async fn webhooks_receive_only_their_tenants() {
    let all = Receiver::start(SECRET).await;
    let acme = Receiver::start(SECRET).await;
    let globex = Receiver::start(SECRET).await;
    let disabled = Receiver::start(SECRET).await;
    let mut only_acme = acme.webhook("acme-only");
    only_acme.tenants = Some(vec!["acme".into()]);
    let mut only_globex = globex.webhook("globex-only");
    only_globex.tenants = Some(vec!["globex".into()]);
    let mut off = disabled.webhook("off");
    off.enabled = false;
    let dispatcher = Dispatcher::start(
        vec![all.webhook("all"), only_acme, only_globex, off],
        fast(),
    )
    .unwrap();
    let alerter = alerter();

    let mut acme_job = job("acme", 0);
    acme_job.job = JobEnd::TimedOut {
        limit: Duration::from_secs(60),
    };
    let (_, reports) = observe_and_deliver(&alerter, &dispatcher, &acme_job).await;
    let to: Vec<&str> = reports.iter().map(|r| r.webhook_id.as_str()).collect();
    assert_eq!(to, ["all", "acme-only"]);

    let mut initech_job = job("initech", 1);
    initech_job.job = acme_job.job;
    let (_, reports) = observe_and_deliver(&alerter, &dispatcher, &initech_job).await;
    let to: Vec<&str> = reports.iter().map(|r| r.webhook_id.as_str()).collect();
    assert_eq!(to, ["all"]);

    assert_eq!(all.received().len(), 2);
    assert_eq!(acme.received().len(), 1);
    assert_eq!(acme.received()[0].alert().tenant_id, "acme");
    assert!(globex.received().is_empty());
    assert!(disabled.received().is_empty());
    dispatcher.shutdown().await;
}

/// A state that makes concurrent observers of one key collide: the first
/// `observers` `repeat`s of the findings key (the failing round) wait for
/// each other after reading, and so do its first `observers` `get`s (the
/// passing round), so every observer has seen the key closed (or open)
/// before any of them tries to `open` (or `close`) it. Counts the tries
/// and the wins.
struct Colliding {
    inner: MemoryAlertState,
    observers: usize,
    meet: tokio::sync::Barrier,
    repeats: AtomicUsize,
    gets: AtomicUsize,
    opens: [AtomicUsize; 2],
    closes: [AtomicUsize; 2],
}

impl Colliding {
    fn new(observers: usize) -> Self {
        Self {
            inner: MemoryAlertState::new(),
            observers,
            meet: tokio::sync::Barrier::new(observers),
            repeats: AtomicUsize::new(0),
            gets: AtomicUsize::new(0),
            opens: Default::default(),
            closes: Default::default(),
        }
    }

    /// After a read of `key` counted by `reads`: waits for the other
    /// observers if this is one of the first `observers` reads. (The
    /// losers' second `repeat` does not wait.)
    async fn after_read(&self, key: &AlertKey, reads: &AtomicUsize) {
        if key.condition == Condition::CriticalFindings
            && reads.fetch_add(1, Ordering::SeqCst) < self.observers
        {
            self.meet.wait().await;
        }
    }

    fn count(counter: &[AtomicUsize; 2], won: bool) {
        counter[0].fetch_add(1, Ordering::SeqCst);
        if won {
            counter[1].fetch_add(1, Ordering::SeqCst);
        }
    }

    /// (tries, wins) of `open`, then of `close`, on the findings key.
    fn tally(&self) -> [(usize, usize); 2] {
        [&self.opens, &self.closes]
            .map(|c| (c[0].load(Ordering::SeqCst), c[1].load(Ordering::SeqCst)))
    }
}

#[async_trait]
impl AlertState for Colliding {
    async fn get(&self, key: &AlertKey) -> Result<Option<OpenAlert>, AlertStateError> {
        let open = self.inner.get(key).await?;
        self.after_read(key, &self.gets).await;
        Ok(open)
    }
    async fn open(&self, key: &AlertKey, alert: &OpenAlert) -> Result<bool, AlertStateError> {
        let won = self.inner.open(key, alert).await?;
        if key.condition == Condition::CriticalFindings {
            Self::count(&self.opens, won);
        }
        Ok(won)
    }
    async fn repeat(
        &self,
        key: &AlertKey,
        at: DateTime<Utc>,
    ) -> Result<Option<OpenAlert>, AlertStateError> {
        let open = self.inner.repeat(key, at).await?;
        self.after_read(key, &self.repeats).await;
        Ok(open)
    }
    async fn close(&self, key: &AlertKey) -> Result<Option<OpenAlert>, AlertStateError> {
        let closed = self.inner.close(key).await?;
        if key.condition == Condition::CriticalFindings {
            Self::count(&self.closes, closed.is_some());
        }
        Ok(closed)
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_observers_of_one_failure_alert_once() {
    const OBSERVERS: usize = 16;
    let receiver = Receiver::start(SECRET).await;
    let dispatcher = Arc::new(Dispatcher::start(vec![receiver.webhook("ops")], fast()).unwrap());
    let state = Arc::new(Colliding::new(OBSERVERS));
    // Two alerters, as two `steward serve` replicas sharing one state.
    let replicas = [Alerter::new(state.clone()), Alerter::new(state.clone())];

    let run = |make: fn(u32) -> Observation| {
        let mut tasks = tokio::task::JoinSet::new();
        for i in 0..OBSERVERS {
            let (alerter, dispatcher) = (replicas[i % 2].clone(), dispatcher.clone());
            tasks.spawn(async move {
                let mut reports = Vec::new();
                for alert in alerter.observe(&make(i as u32)).await {
                    reports.extend(dispatcher.dispatch(alert).unwrap().reports().await);
                }
                reports
            });
        }
        tasks
    };

    let reports: Vec<DeliveryReport> = run(|i| checked(i, &["cve-1"]))
        .join_all()
        .await
        .into_iter()
        .flatten()
        .collect();
    assert_eq!(reports.len(), 1, "exactly one observer alerts");
    let key = checked(0, &[]).key(Condition::CriticalFindings);
    let open = state.inner.get(&key).await.unwrap().unwrap();
    assert_eq!(
        open.occurrences, OBSERVERS as u64,
        "every observation counted"
    );

    let reports: Vec<DeliveryReport> = run(|i| checked(30 + i, &[]))
        .join_all()
        .await
        .into_iter()
        .flatten()
        .collect();
    assert_eq!(reports.len(), 1, "exactly one observer resolves");
    assert_eq!(
        state.tally(),
        [(OBSERVERS, 1), (OBSERVERS, 1)],
        "every observer tried to open, then to close; compare-and-set let one win each"
    );

    let events: Vec<String> = receiver
        .received()
        .iter()
        .map(|r| r.event.clone())
        .collect();
    assert_eq!(events, ["alert.firing", "alert.resolved"]);
    Arc::try_unwrap(dispatcher).unwrap().shutdown().await;
}

#[tokio::test]
async fn bad_webhook_config_names_the_field() {
    let good = Webhook {
        id: "ops".into(),
        url: "https://alerts.example.com/steward".into(),
        secret: SECRET.into(),
        tenants: None,
        enabled: true,
    };
    good.validate().unwrap();
    // (field at fault, how to break a good webhook, what the message quotes)
    type Case = (&'static str, fn(&mut Webhook), &'static str);
    let cases: [Case; 7] = [
        ("id", |w| w.id = " ".into(), "`id` is empty"),
        (
            "url",
            |w| w.url = "alerts.example.com/x".into(),
            "`alerts.example.com/x`",
        ),
        (
            "url",
            |w| w.url = "ftp://example.com/x".into(),
            "scheme `ftp`",
        ),
        ("url", |w| w.url = "https://".into(), "empty host"),
        ("secret", |w| w.secret = "short".into(), "5 bytes"),
        ("tenants", |w| w.tenants = Some(vec![]), "empty list"),
        (
            "tenants",
            |w| w.tenants = Some(vec!["acme".into(), "".into()]),
            "`tenants[1]`",
        ),
    ];
    for (field, break_it, quoted) in cases {
        let mut webhook = good.clone();
        break_it(&mut webhook);
        let err = webhook.validate().unwrap_err();
        assert_eq!(err.field(), field, "{err}");
        let message = err.to_string();
        assert!(message.contains(&format!("`{field}")), "{message}");
        assert!(message.contains(quoted), "{message}");
        assert!(!message.contains(SECRET), "{message}");

        let started = Dispatcher::start(vec![good.clone(), webhook], fast());
        assert!(
            matches!(&started, Err(DispatchError::Webhook { source, .. }) if source.field() == field),
            "{started:?}"
        );
    }

    let err = Dispatcher::start(vec![good.clone(), good.clone()], fast()).unwrap_err();
    assert!(
        matches!(
            &err,
            DispatchError::Webhook {
                source: WebhookError::DuplicateId { .. },
                ..
            }
        ),
        "{err}"
    );
    assert_eq!(
        err.to_string(),
        "webhook `ops`: `id` `ops` is used by more than one webhook; expected unique ids"
    );
}

#[tokio::test]
async fn set_webhooks_is_all_or_nothing() {
    let first = Receiver::start(SECRET).await;
    let second = Receiver::start(SECRET).await;
    let dispatcher = Dispatcher::start(vec![first.webhook("first")], fast()).unwrap();
    let mut bad = second.webhook("second");
    bad.secret = "short".into();
    assert!(
        dispatcher
            .set_webhooks(vec![second.webhook("ok"), bad])
            .is_err()
    );

    let alerter = alerter();
    let (_, reports) = observe_and_deliver(&alerter, &dispatcher, &checked(0, &["x"])).await;
    assert_eq!(reports[0].webhook_id, "first");

    dispatcher
        .set_webhooks(vec![second.webhook("second")])
        .unwrap();
    let (_, reports) = observe_and_deliver(&alerter, &dispatcher, &checked(1, &[])).await;
    assert_eq!(reports[0].webhook_id, "second");
    assert_eq!((first.received().len(), second.received().len()), (1, 1));
    dispatcher.shutdown().await;
}

#[tokio::test]
async fn dispatch_never_waits_and_drops_when_the_queue_is_full() {
    // A receiver that holds every request for a long time.
    let slow = Receiver::scripted(
        SECRET,
        (0..16).map(|_| Answer {
            status: StatusCode::OK,
            delay: Duration::from_secs(30),
        }),
    )
    .await;
    let config = DispatcherConfig {
        queue_capacity: 2,
        max_in_flight: 1,
        ..fast()
    };
    let dispatcher = Dispatcher::start(vec![slow.webhook("slow")], config).unwrap();
    let alerts = alerter().observe(&checked(0, &["cve-1"])).await;

    // One alert in flight, one taken off the queue waiting for a slot, two
    // queued: the fifth is refused, whatever the task has taken so far.
    let started = Instant::now();
    let mut outcomes = Vec::new();
    for _ in 0..5 {
        outcomes.push(dispatcher.dispatch(alerts[0].clone()));
    }
    assert!(
        started.elapsed() < Duration::from_secs(1),
        "dispatch waited"
    );
    let full = outcomes
        .iter()
        .find_map(|o| o.as_ref().err())
        .expect("the queue filled up");
    assert!(
        matches!(full, DispatchError::QueueFull { capacity: 2, .. }),
        "{full}"
    );
    assert!(full.to_string().contains(&alerts[0].id));
}

#[tokio::test]
async fn shutdown_finishes_deliveries_in_flight() {
    let receiver = Receiver::scripted(SECRET, [Answer::status(503)]).await;
    let dispatcher = Dispatcher::start(vec![receiver.webhook("ops")], fast()).unwrap();
    let alerts = alerter().observe(&checked(0, &["cve-1"])).await;
    let pending = dispatcher.dispatch(alerts[0].clone()).unwrap();
    dispatcher.shutdown().await;
    let reports = pending.reports().await;
    assert_eq!(reports[0].status, DeliveryStatus::Delivered);
    assert_eq!(reports[0].attempts, 2);
}
