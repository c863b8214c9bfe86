//! The web API against a real server on port 0 (the same `Server` that
//! `steward serve` runs, with the real store, runtime and plugins),
//! through an HTTP client.

#[path = "api/console.rs"]
mod console;
#[path = "api/schemathesis.rs"]
mod schemathesis;
mod support;

use std::time::{Duration, Instant};

use base64::Engine as _;
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use steward_host::serve::{ServeConfig, Server};
use support::control::{fixture, simulated_facts};
use tokio::sync::watch;

const OWNER: &str = "stw_owner_token_for_tests_0123456789abcdef";

/// A running server and a client.
struct Running {
    base: String,
    http: reqwest::Client,
    stop: watch::Sender<bool>,
    task: tokio::task::JoinHandle<anyhow::Result<()>>,
    _dir: tempfile::TempDir,
}

async fn start() -> Running {
    start_in(tempfile::tempdir().unwrap()).await
}

/// [`start`] with its data in `dir`.
async fn start_in(dir: tempfile::TempDir) -> Running {
    start_on(dir, None).await
}

/// [`start`] with its data in `dir` and its store at `database` (else
/// SQLite in `dir`).
async fn start_on(dir: tempfile::TempDir, database: Option<&str>) -> Running {
    let mut text = format!(
        "data-dir = {:?}\nlisten = \"127.0.0.1:0\"\ntick-ms = 100\nowner-token = {OWNER:?}\n",
        dir.path().display().to_string()
    );
    if let Some(url) = database {
        text.push_str(&format!("database = {url:?}\n"));
    }
    let config: ServeConfig = toml::from_str(&text).unwrap();
    let server = Server::open(&config).await.expect("server opens");
    assert!(
        server.new_owner_token.is_none(),
        "the given owner token is used"
    );
    let addr = server.api_addr().expect("the API listens");
    let (stop, rx) = watch::channel(false);
    let task = tokio::spawn(server.run(rx));
    Running {
        base: format!("http://{addr}"),
        http: reqwest::Client::new(),
        stop,
        task,
        _dir: dir,
    }
}

impl Running {
    async fn call(
        &self,
        token: &str,
        method: Method,
        path: &str,
        body: Option<Value>,
    ) -> (StatusCode, Value) {
        let mut req = self
            .http
            .request(method, format!("{}{path}", self.base))
            .bearer_auth(token);
        if let Some(b) = body {
            req = req
                .header("content-type", "application/json")
                .body(b.to_string());
        }
        let resp = req.send().await.expect("request");
        let status = resp.status();
        let text = resp.text().await.unwrap();
        (
            status,
            serde_json::from_str(&text).unwrap_or(Value::String(text)),
        )
    }

    async fn get(&self, token: &str, path: &str) -> (StatusCode, Value) {
        self.call(token, Method::GET, path, None).await
    }

    async fn post(&self, token: &str, path: &str, body: Value) -> (StatusCode, Value) {
        self.call(token, Method::POST, path, Some(body)).await
    }

    /// The `/metrics` text.
    async fn metrics(&self) -> String {
        self.http
            .get(format!("{}/metrics", self.base))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap()
    }

    /// Installs the patching plugin from its bytes, granted `packages`.
    async fn install_patching(&self) -> Value {
        self.create(
            "/api/v1/plugins",
            json!({ "wasm": patching_wasm(), "grants": ["packages"] }),
        )
        .await
    }

    /// A new `vip` tenant's id.
    async fn tenant(&self, name: &str) -> String {
        self.create("/api/v1/tenants", json!({ "name": name, "tier": "vip" }))
            .await["id"]
            .as_str()
            .unwrap()
            .to_owned()
    }

    /// POSTs as the owner and expects `201 Created`.
    async fn create(&self, path: &str, body: Value) -> Value {
        let (status, v) = self.post(OWNER, path, body).await;
        assert_eq!(status, StatusCode::CREATED, "POST {path}: {v}");
        v
    }

    /// Polls `path` until `done` holds (at most 60 s).
    async fn wait_for(&self, path: &str, done: impl Fn(&Value) -> bool) -> Value {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let (status, v) = self.get(OWNER, path).await;
            assert_eq!(status, StatusCode::OK, "GET {path}: {v}");
            if done(&v) {
                return v;
            }
            assert!(
                Instant::now() < deadline,
                "timed out waiting on {path}: {v}"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    async fn stop(self) {
        self.stop.send(true).unwrap();
        self.task.await.unwrap().unwrap();
    }
}

/// `steward_api_event_streams` from `/metrics`.
async fn event_streams(api: &Running) -> u64 {
    let text = api.metrics().await;
    text.lines()
        .find_map(|l| l.strip_prefix("steward_api_event_streams "))
        .expect("the gauge is exported")
        .parse()
        .unwrap()
}

fn patching_wasm() -> String {
    let bytes = std::fs::read(steward_tests::component("steward-plugin-patching")).unwrap();
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

/// A tenant with one simulated workstation (two pending updates, one a
/// security update).
async fn tenant_with_device(api: &Running, name: &str) -> (String, String) {
    let tenant = api
        .create(
            "/api/v1/tenants",
            json!({ "name": name, "tier": "managed" }),
        )
        .await;
    let t = tenant["id"].as_str().unwrap().to_owned();
    let device = api
        .create(
            "/api/v1/devices",
            json!({ "tenant_id": t, "name": format!("{name}-ws-01"), "tags": ["office"],
                    "facts": simulated_facts(&fixture(&format!("{name}-ws-01"), &t)) }),
        )
        .await;
    (t, device["id"].as_str().unwrap().to_owned())
}

fn ended(run: &Value) -> bool {
    run["status"] != "running"
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_admin_flow_from_tenant_to_findings_and_an_approved_fix() {
    let api = start().await;

    // Install the patching plugin from uploaded bytes.
    let installed = api
        .create(
            "/api/v1/plugins",
            json!({ "wasm": patching_wasm(), "grants": ["packages"] }),
        )
        .await;
    assert_eq!(installed["plugin"], "patching");
    assert!(installed["digest"].as_str().unwrap().starts_with("sha256:"));

    let (tenant, device) = tenant_with_device(&api, "acme").await;
    let (_, listed) = api
        .get(OWNER, &format!("/api/v1/devices?tenant={tenant}"))
        .await;
    assert_eq!(listed.as_array().unwrap().len(), 1);

    // A scheduled check: every second.
    let check = api
        .create(
            "/api/v1/playbooks",
            json!({ "tenant_id": tenant, "name": "patch status",
                    "steps": [{ "plugin": "patching" }], "target": { "tags": ["office"] } }),
        )
        .await;
    let schedule = api
        .create(
            "/api/v1/schedules",
            json!({ "playbook_id": check["id"], "spec": { "cron": "* * * * * *", "timezone": "Europe/Berlin" } }),
        )
        .await;
    assert_eq!(schedule["tenant_id"], tenant.as_str());

    // The schedule fires; its run is listed for the tenant and ends.
    let runs = api
        .wait_for(
            &format!("/api/v1/runs?tenant={tenant}&status=succeeded"),
            |v| !v["items"].as_array().unwrap().is_empty(),
        )
        .await;
    // The oldest: later firings may still be running or just ended.
    let run = runs["items"].as_array().unwrap().last().unwrap();
    assert_eq!(run["schedule_id"], schedule["id"]);
    let run_id = run["id"].as_str().unwrap().to_owned();
    // Stop the schedule so that the approval run below is alone.
    let (status, off) = api
        .call(
            OWNER,
            Method::PATCH,
            &format!("/api/v1/schedules/{}", schedule["id"].as_str().unwrap()),
            Some(json!({ "enabled": false })),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{off}");
    assert_eq!(off["enabled"], false);

    let (_, detail) = api.get(OWNER, &format!("/api/v1/runs/{run_id}")).await;
    assert_eq!(detail["jobs"]["succeeded"], 1, "{detail}");
    let (_, jobs) = api.get(OWNER, &format!("/api/v1/runs/{run_id}/jobs")).await;
    let jobs = &jobs["items"];
    assert_eq!(jobs[0]["device_id"], device.as_str());
    assert_eq!(jobs[0]["mode"], "check");
    let (_, findings) = api
        .get(OWNER, &format!("/api/v1/runs/{run_id}/findings"))
        .await;
    let keys: Vec<&str> = findings
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["key"].as_str().unwrap())
        .collect();
    assert_eq!(findings.as_array().unwrap().len(), 2, "{findings}");
    assert!(keys.iter().any(|k| k.contains("openssl")), "{keys:?}");
    assert!(
        keys.contains(&"security-update:openssl") && keys.contains(&"update:curl"),
        "{keys:?}"
    );
    let (_, logs) = api.get(OWNER, &format!("/api/v1/runs/{run_id}/logs")).await;
    assert!(
        !logs.as_array().unwrap().is_empty(),
        "the plugin logs what it found"
    );
    let (_, open) = api
        .get(OWNER, &format!("/api/v1/findings?tenant={tenant}"))
        .await;
    assert_eq!(open.as_array().unwrap().len(), 2);

    // The live stream of a finished run: progress, then end.
    let events = api
        .http
        .get(format!("{}/api/v1/runs/{run_id}/events", api.base))
        .bearer_auth(OWNER)
        .send()
        .await
        .unwrap();
    assert_eq!(events.headers()["content-type"], "text/event-stream");
    let text = tokio::time::timeout(Duration::from_secs(10), events.text())
        .await
        .expect("the stream ends with the run")
        .unwrap();
    assert!(text.contains("event: log"), "{text}");
    assert!(text.contains("event: progress"), "{text}");
    assert!(text.contains("event: end"), "{text}");

    // A fix that needs approval: planned first, applied once approved.
    let fix = api
        .create(
            "/api/v1/playbooks",
            json!({ "tenant_id": tenant, "name": "patch now",
                    "steps": [{ "plugin": "patching", "mode": "remediate", "requires-approval": true,
                                "params": { "security-only": false } }] }),
        )
        .await;
    let listing = format!("/api/v1/runs?tenant={tenant}");
    let (_, before_fix) = api.get(OWNER, &listing).await;
    let fix_run = api
        .create(
            &format!("/api/v1/playbooks/{}/runs", fix["id"].as_str().unwrap()),
            json!({}),
        )
        .await;
    let fix_run_id = fix_run["id"].as_str().unwrap();
    // The page just served is not served again from memory: the new run
    // is listed at once.
    let (_, after_fix) = api.get(OWNER, &listing).await;
    assert_ne!(before_fix["items"][0]["id"], fix_run_id);
    assert_eq!(after_fix["items"][0]["id"], fix_run_id, "{after_fix}");
    let approvals = api
        .wait_for("/api/v1/approvals", |v| !v.as_array().unwrap().is_empty())
        .await;
    let approval = &approvals[0];
    assert_eq!(approval["job"]["run_id"], fix_run_id);
    assert_eq!(
        approval["planned"].as_array().unwrap().len(),
        2,
        "{approval}"
    );
    assert!(
        approval["planned"]
            .as_array()
            .unwrap()
            .iter()
            .all(|c| c["outcome"] == "planned")
    );
    let (_, before) = api
        .get(OWNER, &format!("/api/v1/runs/{fix_run_id}/changes"))
        .await;
    assert!(
        before
            .as_array()
            .unwrap()
            .iter()
            .all(|c| c["change"]["outcome"] == "planned")
    );

    // Streams opened and closed on a run waiting for approval end with
    // their clients, not when the run next changes (it may wait for days).
    let mut streams = Vec::new();
    for _ in 0..50 {
        let mut resp = api
            .http
            .get(format!("{}/api/v1/runs/{fix_run_id}/events", api.base))
            .bearer_auth(OWNER)
            .send()
            .await
            .unwrap();
        let first = resp.chunk().await.unwrap().unwrap_or_default();
        assert!(
            String::from_utf8_lossy(&first).contains("event: "),
            "{first:?}"
        );
        streams.push(resp);
    }
    assert_eq!(event_streams(&api).await, 50);
    drop(streams);
    let deadline = Instant::now() + Duration::from_secs(10);
    while event_streams(&api).await > 0 {
        assert!(
            Instant::now() < deadline,
            "closed event streams still followed"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    let job = approval["job"]["id"].as_str().unwrap();
    let detail = format!("/api/v1/runs/{fix_run_id}");
    let (_, waiting) = api.get(OWNER, &detail).await;
    assert_eq!(waiting["jobs"]["awaiting-approval"], 1, "{waiting}");
    let (status, approved) = api
        .post(
            OWNER,
            &format!("/api/v1/approvals/{job}/approve"),
            json!({ "comment": "go ahead" }),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{approved}");
    assert_eq!(approved["status"], "queued");
    // The run as served just before is not served again: the approval's
    // commit shows at once.
    let (_, after) = api.get(OWNER, &detail).await;
    assert!(after["jobs"].get("awaiting-approval").is_none(), "{after}");
    let (status, again) = api
        .post(
            OWNER,
            &format!("/api/v1/approvals/{job}/approve"),
            json!({}),
        )
        .await;
    assert_eq!(status, StatusCode::CONFLICT, "{again}");
    assert_eq!(again["code"], "not-awaiting-approval");

    let done = api
        .wait_for(&format!("/api/v1/runs/{fix_run_id}"), ended)
        .await;
    assert_eq!(done["status"], "succeeded", "{done}");
    let (_, changes) = api
        .get(OWNER, &format!("/api/v1/runs/{fix_run_id}/changes"))
        .await;
    let applied: Vec<&Value> = changes
        .as_array()
        .unwrap()
        .iter()
        .filter(|c| c["change"]["outcome"] == "applied")
        .collect();
    assert_eq!(applied.len(), 2, "{changes}");

    // Every mutating call above was audited with its actor.
    let (_, audit) = api.get(OWNER, "/api/v1/audit?limit=500").await;
    let actions: Vec<&str> = audit["items"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["actor"] == "user:owner")
        .map(|e| e["action"].as_str().unwrap())
        .collect();
    for action in [
        "plugin.install",
        "tenant.create",
        "device.create",
        "playbook.create",
        "schedule.create",
        "schedule.update",
        "run.start",
        "approval.approve",
    ] {
        assert!(
            actions.contains(&action),
            "{action} missing from {actions:?}"
        );
    }

    // Metrics count the jobs.
    let metrics = api.metrics().await;
    let succeeded: u64 = metrics
        .lines()
        .find_map(|l| l.strip_prefix("steward_jobs{state=\"succeeded\"} "))
        .unwrap()
        .parse()
        .unwrap();
    assert!(succeeded >= 3, "{metrics}");
    assert!(metrics.contains("steward_run_duration_seconds_count"));
    api.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_technician_sees_only_its_tenant_and_a_viewer_changes_nothing() {
    let api = start().await;
    api.install_patching().await;
    let (a, _) = tenant_with_device(&api, "alpha").await;
    let (b, b_device) = tenant_with_device(&api, "bravo").await;
    let b_site = api
        .create("/api/v1/sites", json!({ "tenant_id": b, "name": "hq" }))
        .await;
    let b_playbook = api
        .create(
            "/api/v1/playbooks",
            json!({ "tenant_id": b, "name": "check", "steps": [{ "plugin": "patching" }] }),
        )
        .await;
    let b_pid = b_playbook["id"].as_str().unwrap();
    let b_schedule = api
        .create(
            "/api/v1/schedules",
            json!({ "playbook_id": b_pid, "spec": { "cron": "@daily", "timezone": "UTC" } }),
        )
        .await;
    let b_run = api
        .create(&format!("/api/v1/playbooks/{b_pid}/runs"), json!({}))
        .await;
    let b_run_id = b_run["id"].as_str().unwrap();
    api.wait_for(&format!("/api/v1/runs/{b_run_id}"), ended)
        .await;
    let (_, b_jobs) = api
        .get(OWNER, &format!("/api/v1/runs/{b_run_id}/jobs"))
        .await;
    let b_job = b_jobs["items"][0]["id"].as_str().unwrap();
    let b_hook = api
        .create("/api/v1/webhooks", json!({ "url": "http://192.0.2.1:9/hook", "secret": "0123456789abcdef0123", "tenant_id": b }))
        .await;

    // A technician and a viewer of tenant A, each with a token.
    let mut tokens = Vec::new();
    for (name, role) in [("tech-a", "technician"), ("viewer-a", "viewer")] {
        api.create(
            "/api/v1/users",
            json!({ "name": name, "role": role, "tenants": [a] }),
        )
        .await;
        let t = api
            .create("/api/v1/tokens", json!({ "user": name, "label": "test" }))
            .await;
        tokens.push((
            t["token"].as_str().unwrap().to_owned(),
            t["id"].as_str().unwrap().to_owned(),
        ));
    }
    let (tech, tech_token_id) = tokens[0].clone();
    let (viewer, _) = tokens[1].clone();

    // Every kind of tenant-B object is a 404 to the technician.
    for path in [
        format!("/api/v1/tenants/{b}"),
        format!("/api/v1/devices/{b_device}"),
        format!("/api/v1/playbooks/{b_pid}"),
        format!("/api/v1/runs/{b_run_id}"),
        format!("/api/v1/runs/{b_run_id}/jobs"),
        format!("/api/v1/runs/{b_run_id}/findings"),
        format!("/api/v1/runs/{b_run_id}/changes"),
        format!("/api/v1/runs/{b_run_id}/logs"),
        format!("/api/v1/runs/{b_run_id}/events"),
        format!("/api/v1/findings?tenant={b}"),
        format!("/api/v1/tickets?tenant={b}"),
    ] {
        let (status, body) = api.get(&tech, &path).await;
        assert_eq!(status, StatusCode::NOT_FOUND, "GET {path}: {body}");
        assert_eq!(body["code"], "not-found", "{path}");
    }
    for (method, path, body) in [
        (
            Method::POST,
            format!("/api/v1/playbooks/{b_pid}/runs"),
            json!({}),
        ),
        (
            Method::POST,
            format!("/api/v1/runs/{b_run_id}/cancel"),
            json!({}),
        ),
        (
            Method::POST,
            format!("/api/v1/approvals/{b_job}/approve"),
            json!({}),
        ),
        (
            Method::PATCH,
            format!("/api/v1/schedules/{}", b_schedule["id"].as_str().unwrap()),
            json!({ "enabled": false }),
        ),
        (
            Method::POST,
            "/api/v1/devices".to_owned(),
            json!({ "tenant_id": b, "name": "sneaky" }),
        ),
        (
            Method::POST,
            "/api/v1/sites".to_owned(),
            json!({ "tenant_id": b, "name": "sneaky" }),
        ),
        (
            Method::POST,
            "/api/v1/schedules".to_owned(),
            json!({ "playbook_id": b_pid, "spec": { "cron": "@hourly", "timezone": "UTC" } }),
        ),
        (
            Method::POST,
            "/api/v1/playbooks".to_owned(),
            json!({ "tenant_id": b, "name": "x", "steps": [{ "plugin": "patching" }] }),
        ),
    ] {
        let (status, body) = api.call(&tech, method.clone(), &path, Some(body)).await;
        assert_eq!(status, StatusCode::NOT_FOUND, "{method} {path}: {body}");
    }

    // Lists hold tenant A's objects only.
    for (path, key) in [
        ("/api/v1/tenants", "id"),
        ("/api/v1/devices", "tenant_id"),
        ("/api/v1/sites", "tenant_id"),
        ("/api/v1/playbooks", "tenant_id"),
        ("/api/v1/schedules", "tenant_id"),
        ("/api/v1/approvals", "tenant_id"),
    ] {
        let (status, list) = api.get(&tech, path).await;
        assert_eq!(status, StatusCode::OK, "{path}");
        assert!(
            list.as_array()
                .unwrap()
                .iter()
                .all(|o| o[key] == a.as_str()),
            "{path}: {list}"
        );
    }
    let (_, devices) = api.get(&tech, "/api/v1/devices").await;
    assert_eq!(devices.as_array().unwrap().len(), 1);
    let (_, sites) = api.get(&tech, &format!("/api/v1/sites?tenant={b}")).await;
    assert_eq!(sites, json!([]));
    let (_, sites) = api.get(OWNER, &format!("/api/v1/sites?tenant={b}")).await;
    assert_eq!(sites[0]["id"], b_site["id"]);
    for path in [
        format!("/api/v1/runs?tenant={b}"),
        "/api/v1/runs".to_owned(),
        "/api/v1/audit".to_owned(),
    ] {
        let (status, page) = api.get(&tech, &path).await;
        assert_eq!(status, StatusCode::OK, "{path}");
        assert!(
            page["items"]
                .as_array()
                .unwrap()
                .iter()
                .all(|o| o["tenant_id"] == a.as_str()),
            "{path}: {page}"
        );
    }
    let (_, all_runs) = api.get(OWNER, "/api/v1/runs").await;
    assert!(
        !all_runs["items"].as_array().unwrap().is_empty(),
        "the owner sees B's run"
    );
    let (status, hooks) = api.get(&tech, "/api/v1/webhooks").await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{hooks}");
    let (status, _) = api
        .call(
            &tech,
            Method::DELETE,
            &format!("/api/v1/webhooks/{}", b_hook["id"].as_str().unwrap()),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN);

    // The technician works in its own tenant.
    let (status, d) = api
        .post(
            &tech,
            "/api/v1/devices",
            json!({ "tenant_id": a, "name": "a-ws-02" }),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{d}");
    // But cannot create tenants, install plugins or make an admin.
    for (path, body) in [
        (
            "/api/v1/tenants",
            json!({ "name": "charlie", "tier": "vip" }),
        ),
        ("/api/v1/plugins", json!({ "wasm": "AA==", "grants": [] })),
        ("/api/v1/users", json!({ "name": "boss", "role": "admin" })),
    ] {
        let (status, body) = api.post(&tech, path, body).await;
        assert_eq!(status, StatusCode::FORBIDDEN, "{path}: {body}");
        assert_eq!(body["code"], "forbidden");
    }

    // A viewer reads but cannot change anything.
    let (status, _) = api.get(&viewer, &format!("/api/v1/tenants/{a}")).await;
    assert_eq!(status, StatusCode::OK);
    let counts_before = api.get(OWNER, "/api/v1/devices").await.1;
    for (path, body) in [
        (
            "/api/v1/devices",
            json!({ "tenant_id": a, "name": "viewer-made" }),
        ),
        (
            "/api/v1/sites",
            json!({ "tenant_id": a, "name": "viewer-site" }),
        ),
    ] {
        let (status, body) = api.post(&viewer, path, body).await;
        assert_eq!(status, StatusCode::FORBIDDEN, "{path}: {body}");
    }
    assert_eq!(api.get(OWNER, "/api/v1/devices").await.1, counts_before);

    // A revoked token is refused; no token at all is refused.
    let (status, _) = api
        .call(
            OWNER,
            Method::DELETE,
            &format!("/api/v1/tokens/{tech_token_id}"),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    let (status, body) = api.get(&tech, "/api/v1/tenants").await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "{body}");
    assert_eq!(body["code"], "unauthenticated");
    let resp = api
        .http
        .get(format!("{}/api/v1/tenants", api.base))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(resp.headers()["content-type"], "application/problem+json");
    api.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_bodies_get_problems_naming_the_field_and_store_nothing() {
    let api = start().await;
    let (tenant, _) = tenant_with_device(&api, "acme").await;
    let snapshot = |api: &Running| {
        let api = api.clone_view();
        async move {
            let mut out = Vec::new();
            for p in [
                "/api/v1/tenants",
                "/api/v1/devices",
                "/api/v1/sites",
                "/api/v1/playbooks",
                "/api/v1/schedules",
            ] {
                out.push(api.get(OWNER, p).await.1);
            }
            out
        }
    };
    let before = snapshot(&api).await;
    let send = |body: &'static [u8], content_type: &'static str, path: &'static str| {
        let req = api
            .http
            .post(format!("{}{path}", api.base))
            .bearer_auth(OWNER)
            .header("content-type", content_type)
            .body(body);
        async move {
            let resp = req.send().await.unwrap();
            let status = resp.status();
            assert_eq!(resp.headers()["content-type"], "application/problem+json");
            (status, resp.json::<Value>().await.unwrap())
        }
    };
    // Body, content type, path, status, code, field.
    type Case = (
        &'static [u8],
        &'static str,
        &'static str,
        StatusCode,
        &'static str,
        Option<&'static str>,
    );
    let cases: Vec<Case> = vec![
        (
            b"{\"name\": \"x\",",
            "application/json",
            "/api/v1/tenants",
            StatusCode::BAD_REQUEST,
            "malformed-json",
            None,
        ),
        (
            b"{\"name\": \"x\", \"tier\": \"vip\", \"colour\": 1}",
            "application/json",
            "/api/v1/tenants",
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid",
            Some("colour"),
        ),
        (
            b"{\"name\": 7, \"tier\": \"vip\"}",
            "application/json",
            "/api/v1/tenants",
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid",
            Some("name"),
        ),
        (
            b"{\"name\": \"x\", \"tier\": \"gold\"}",
            "application/json",
            "/api/v1/tenants",
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid",
            Some("tier"),
        ),
        (
            b"{\"name\": \"x\", \"tier\": \"vip\", \"max_concurrent_jobs\": -1}",
            "application/json",
            "/api/v1/tenants",
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid",
            Some("max_concurrent_jobs"),
        ),
        (
            b"{\"name\": \"x\"}",
            "application/json",
            "/api/v1/tenants",
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid",
            Some("tier"),
        ),
        // Exactly one JSON object per body: nothing after it, and no
        // array standing in for a struct's fields.
        (
            b"{\"name\": \"x\", \"tier\": \"vip\"} xyz",
            "application/json",
            "/api/v1/tenants",
            StatusCode::BAD_REQUEST,
            "malformed-json",
            None,
        ),
        (
            b"{\"name\": \"x\", \"tier\": \"vip\"}{\"name\": \"y\", \"tier\": \"vip\"}",
            "application/json",
            "/api/v1/tenants",
            StatusCode::BAD_REQUEST,
            "malformed-json",
            None,
        ),
        (
            b"[\"x\", \"vip\"]",
            "application/json",
            "/api/v1/tenants",
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid",
            Some("body"),
        ),
        (
            b"name=x",
            "application/x-www-form-urlencoded",
            "/api/v1/tenants",
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported-media-type",
            None,
        ),
        (
            b"{\"tenant_id\": \"nope\", \"name\": \"x\"}",
            "application/json",
            "/api/v1/devices",
            StatusCode::NOT_FOUND,
            "not-found",
            None,
        ),
        (
            b"{\"name\": \"p\", \"steps\": [{\"plugin\": \"patching\", \"mode\": \"sometimes\"}]}",
            "application/json",
            "/api/v1/playbooks",
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid",
            None,
        ),
    ];
    for (body, ct, path, status, code, field) in cases {
        let (got, problem) = send(body, ct, path).await;
        assert_eq!(got, status, "{}: {problem}", String::from_utf8_lossy(body));
        assert_eq!(problem["code"], code, "{problem}");
        assert_eq!(problem["status"], status.as_u16());
        if let Some(f) = field {
            assert_eq!(problem["field"], f, "{problem}");
        }
        let detail = problem["detail"].as_str().unwrap();
        assert!(
            !detail.contains("SELECT") && !detail.contains("/tmp"),
            "{detail}"
        );
    }
    // Domain errors name the field too.
    let (status, p) = api
        .post(
            OWNER,
            "/api/v1/playbooks",
            json!({ "tenant_id": tenant, "name": "p", "steps": [{ "plugin": "not-installed" }] }),
        )
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{p}");
    assert_eq!(p["field"], "steps[0].plugin");
    let (status, p) = api
        .post(
            OWNER,
            "/api/v1/devices",
            json!({ "tenant_id": tenant, "name": "pc", "admin": { "purchase-date": "yesterday" } }),
        )
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{p}");
    assert_eq!(p["field"], "admin");
    let (status, p) = api.get(OWNER, "/api/v1/runs?limit=0").await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{p}");
    assert_eq!(p["field"], "limit");
    let (status, p) = api.get(OWNER, "/api/v1/runs?status=sideways").await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{p}");
    assert_eq!(p["field"], "status");
    let (status, p) = api.get(OWNER, "/api/v1/runs?colour=red").await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{p}");
    assert_eq!(p["field"], "colour");
    let (status, p) = api
        .post(
            OWNER,
            "/api/v1/tenants",
            json!({ "name": "acme", "tier": "vip" }),
        )
        .await;
    assert_eq!(status, StatusCode::CONFLICT, "{p}");
    // Not base64, and base64 that is not a component.
    let (status, p) = api
        .post(
            OWNER,
            "/api/v1/plugins",
            json!({ "wasm": "%%%", "grants": [] }),
        )
        .await;
    assert_eq!(
        (status, p["field"].as_str()),
        (StatusCode::UNPROCESSABLE_ENTITY, Some("wasm")),
        "{p}"
    );
    let (status, p) = api
        .post(
            OWNER,
            "/api/v1/plugins",
            json!({ "wasm": "AGFzbQ==", "grants": [] }),
        )
        .await;
    assert_eq!(
        (status, p["field"].as_str()),
        (StatusCode::UNPROCESSABLE_ENTITY, Some("wasm")),
        "{p}"
    );
    // A body over the limit.
    let huge = format!(
        "{{\"name\": \"{}\", \"tier\": \"vip\"}}",
        "x".repeat(2 * 1024 * 1024)
    );
    // Its own client: the server answers before reading the whole body and
    // closes that connection, which a pooled client might reuse.
    let resp = reqwest::Client::new()
        .post(format!("{}/api/v1/tenants", api.base))
        .bearer_auth(OWNER)
        .header("content-type", "application/json")
        .body(huge)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::PAYLOAD_TOO_LARGE);
    assert_eq!(
        resp.json::<Value>().await.unwrap()["code"],
        "body-too-large"
    );
    // A CSV import with one bad row stores none of them.
    let import = |csv: &'static str| {
        api.http
            .post(format!(
                "{}/api/v1/devices/import?tenant={tenant}",
                api.base
            ))
            .bearer_auth(OWNER)
            .header("content-type", "text/csv")
            .body(csv)
            .send()
    };
    let resp = import("name,purchase-date,cost,class\nnew-1,2022-01-10,999.00,laptop\nnew-2,2022-02-30,10,desktop\n")
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::UNPROCESSABLE_ENTITY);
    let p: Value = resp.json().await.unwrap();
    assert_eq!(p["field"], "row 3", "{p}");
    assert_eq!(snapshot(&api).await, before, "nothing changed");
    // A device named twice, likewise.
    let resp = import("name,class\nnew-1,laptop\nnew-1,desktop\n")
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::UNPROCESSABLE_ENTITY);
    let p: Value = resp.json().await.unwrap();
    assert_eq!(p["field"], "row 3.name", "{p}");
    assert!(
        p["detail"].as_str().unwrap().contains("on row 2 already"),
        "{p}"
    );
    assert_eq!(snapshot(&api).await, before, "nothing changed");

    // The same import, fixed, creates and updates.
    let resp = import("name,purchase-date,warranty-end,cost,class,assigned-user\nnew-1,2022-01-10,2025-01-10,999.00,laptop,jdoe\nacme-ws-01,2021-06-01,,1200,desktop,\n")
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    assert_eq!(
        resp.json::<Value>().await.unwrap(),
        json!({ "created": 1, "updated": 1 })
    );
    let (_, devices) = api
        .get(OWNER, &format!("/api/v1/devices?tenant={tenant}"))
        .await;
    let ws = devices
        .as_array()
        .unwrap()
        .iter()
        .find(|d| d["name"] == "acme-ws-01")
        .unwrap();
    assert_eq!(
        ws["admin"],
        json!({ "purchase-date": "2021-06-01", "cost-cents": 120000, "class": "desktop" })
    );
    api.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_route_is_in_the_openapi_document_and_every_documented_operation_is_routed() {
    let api = start().await;
    let resp = api
        .http
        .get(format!("{}/api/v1/openapi.json", api.base))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    let doc: Value = resp.json().await.unwrap();
    assert!(doc["openapi"].as_str().unwrap().starts_with("3."));
    let paths = doc["paths"].as_object().unwrap();
    let mut operations = 0;
    for (path, item) in paths {
        for method in ["get", "post", "put", "patch", "delete"] {
            if item.get(method).is_none() {
                continue;
            }
            operations += 1;
            // Fill path parameters with an id nothing has.
            let concrete: String = path
                .split('/')
                .map(|seg| {
                    if seg.starts_with('{') {
                        "00000000000000000000000000000000"
                    } else {
                        seg
                    }
                })
                .collect::<Vec<_>>()
                .join("/");
            let (status, body) = api
                .call(
                    OWNER,
                    method.to_uppercase().parse().unwrap(),
                    &concrete,
                    None,
                )
                .await;
            assert_ne!(
                body["code"], "no-route",
                "{method} {path} is documented but not routed"
            );
            assert_ne!(status, StatusCode::METHOD_NOT_ALLOWED, "{method} {path}");
        }
    }
    assert!(operations >= 40, "{operations} operations");

    // The other direction: every route is declared with `#[utoipa::path]`
    // and registered through `routes!`, which puts it in the document; a
    // route added any other way would be missing from it.
    let api_dir = steward_tests::workspace_root().join("host/api/src");
    let mut declared = 0;
    for entry in std::fs::read_dir(&api_dir).unwrap() {
        let path = entry.unwrap().path();
        // The web console (src/console/) serves HTML pages beside the API,
        // not operations of its document.
        if path.is_dir() {
            assert_eq!(path.file_name().unwrap(), "console", "{}", path.display());
            continue;
        }
        let text = std::fs::read_to_string(&path).unwrap();
        for bypass in [
            ".route(",
            ".route_service(",
            ".nest_service(",
            "routing::get",
            "routing::post",
        ] {
            assert!(
                !text.contains(bypass),
                "{} registers a route without documenting it ({bypass})",
                path.display()
            );
        }
        for line in text
            .lines()
            .filter(|l| l.trim_start().starts_with("#[utoipa::path("))
        {
            declared += 1;
            let rest = line
                .split("path = \"")
                .nth(1)
                .expect("path on the attribute line");
            let documented_path = rest.split('"').next().unwrap();
            let method = line
                .trim_start()
                .trim_start_matches("#[utoipa::path(")
                .split(',')
                .next()
                .unwrap();
            assert!(
                paths
                    .get(documented_path)
                    .and_then(|p| p.get(method))
                    .is_some(),
                "{method} {documented_path} is routed but not in the document"
            );
        }
    }
    assert_eq!(
        declared, operations,
        "every declared handler is one documented operation"
    );
    let docs = api
        .http
        .get(format!("{}/api/v1/docs", api.base))
        .send()
        .await
        .unwrap();
    assert!(docs.text().await.unwrap().contains("/api/v1/openapi.json"));
    api.stop().await;
}

impl Running {
    /// A second handle on the same server for helper closures.
    fn clone_view(&self) -> View {
        View {
            base: self.base.clone(),
            http: self.http.clone(),
        }
    }
}

struct View {
    base: String,
    http: reqwest::Client,
}

impl View {
    async fn get(&self, token: &str, path: &str) -> (StatusCode, Value) {
        let resp = self
            .http
            .get(format!("{}{path}", self.base))
            .bearer_auth(token)
            .send()
            .await
            .unwrap();
        (resp.status(), resp.json().await.unwrap())
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_an_owner_may_point_a_device_at_the_server_itself() {
    let api = start().await;
    let (a, _) = tenant_with_device(&api, "alpha").await;
    api.create(
        "/api/v1/users",
        json!({ "name": "tech-a", "role": "technician", "tenants": [a] }),
    )
    .await;
    let t = api
        .create(
            "/api/v1/tokens",
            json!({ "user": "tech-a", "label": "test" }),
        )
        .await;
    let tech = t["token"].as_str().unwrap().to_owned();
    let (_, before) = api.get(OWNER, "/api/v1/devices").await;

    for provider in ["local", "Local", " local "] {
        let (status, body) = api
            .post(
                &tech,
                "/api/v1/devices",
                json!({ "tenant_id": a, "name": "the-server", "facts": { "provider": provider } }),
            )
            .await;
        assert_eq!(status, StatusCode::FORBIDDEN, "{provider:?}: {body}");
        assert_eq!(body["code"], "forbidden");
        assert_eq!(body["field"], "facts.provider");
    }
    let (_, after) = api.get(OWNER, "/api/v1/devices").await;
    assert_eq!(before, after, "nothing was stored");

    // A simulated device is the technician's to add; the local one is no
    // API caller's, not even the owner's: only the server's configuration
    // registers it.
    let (status, body) = api
        .post(
            &tech,
            "/api/v1/devices",
            json!({ "tenant_id": a, "name": "sim", "facts": simulated_facts(&fixture("sim", a.as_str())) }),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let (status, body) = api
        .post(
            OWNER,
            "/api/v1/devices",
            json!({ "tenant_id": a, "name": "the-server", "facts": { "provider": "local" } }),
        )
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{body}");
    assert_eq!(body["field"], "facts.provider");
    api.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_install_the_database_fails_is_a_500_naming_only_an_error_id() {
    let api = start().await;
    // The database refuses every new plugin version, as a failing disk
    // would: a trigger, added behind the server's back.
    let url = format!("sqlite://{}", api._dir.path().join("steward.db").display());
    sqlx::any::install_default_drivers();
    let mut db = <sqlx::AnyConnection as sqlx::Connection>::connect(&url)
        .await
        .unwrap();
    sqlx::Executor::execute(
        &mut db,
        "CREATE TRIGGER broken_disk BEFORE INSERT ON plugin_versions \
         BEGIN SELECT RAISE(ABORT, 'simulated I/O failure in plugin_versions'); END",
    )
    .await
    .unwrap();

    let (status, body) = api
        .post(
            OWNER,
            "/api/v1/plugins",
            json!({ "wasm": patching_wasm(), "grants": ["packages"] }),
        )
        .await;
    assert_eq!(status, StatusCode::INTERNAL_SERVER_ERROR, "{body}");
    assert_eq!(body["code"], "internal");
    let detail = body["detail"].as_str().unwrap();
    assert!(detail.contains("error id "), "{detail}");
    for internal in ["plugin_versions", "simulated I/O", "INSERT", "sqlite"] {
        assert!(!detail.contains(internal), "{detail}");
    }
    let (_, plugins) = api.get(OWNER, "/api/v1/plugins").await;
    assert_eq!(plugins, json!([]), "nothing was installed");

    // Bad input is still the caller's: 422 naming the field.
    let (status, body) = api
        .post(
            OWNER,
            "/api/v1/plugins",
            json!({ "wasm": patching_wasm(), "grants": ["nope"] }),
        )
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
    assert_eq!(body["field"], "grants");
    api.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_upload_of_another_version_must_name_the_version_it_replaces() {
    let api = start().await;
    let wasm = |package: &str| {
        base64::engine::general_purpose::STANDARD
            .encode(std::fs::read(steward_tests::component(package)).unwrap())
    };
    api.create(
        "/api/v1/plugins",
        json!({ "wasm": wasm("guest-vendor-demo-1-0-0"), "grants": [] }),
    )
    .await;
    // The same name at another version, without saying what it replaces:
    // refused, nothing installed.
    let newer = json!({ "wasm": wasm("guest-vendor-demo-1-1-0"), "grants": [] });
    let (status, body) = api.post(OWNER, "/api/v1/plugins", newer.clone()).await;
    assert_eq!(status, StatusCode::CONFLICT, "{body}");
    assert_eq!(body["code"], "replaces-required");
    assert_eq!(body["field"], "replaces");
    let (_, plugins) = api.get(OWNER, "/api/v1/plugins").await;
    assert_eq!(plugins.as_array().unwrap().len(), 1, "{plugins}");
    // Naming a version that is not installed is refused too.
    let mut wrong = newer.clone();
    wrong["replaces"] = json!("9.9.9");
    let (status, _) = api.post(OWNER, "/api/v1/plugins", wrong).await;
    assert_eq!(status, StatusCode::CONFLICT);
    // Named, it is installed; the same version again needs nothing.
    let mut named = newer;
    named["replaces"] = json!("1.0.0");
    let v = api.create("/api/v1/plugins", named).await;
    assert_eq!(v["version"], "1.1.0");
    api.create(
        "/api/v1/plugins",
        json!({ "wasm": wasm("guest-vendor-demo-1-0-0"), "grants": [] }),
    )
    .await;
    api.stop().await;
}

impl Running {
    /// `method path` (with `body`) as the owner, expecting 503
    /// `unavailable` with `Retry-After`.
    async fn assert_unavailable(&self, method: Method, path: &str, body: Option<Value>) {
        let mut request = self
            .http
            .request(method.clone(), format!("{}{path}", self.base))
            .bearer_auth(OWNER);
        if let Some(body) = body {
            request = request
                .header("content-type", "application/json")
                .body(body.to_string());
        }
        let response = request.send().await.unwrap();
        assert_eq!(
            response.status(),
            StatusCode::SERVICE_UNAVAILABLE,
            "{method} {path}"
        );
        assert_eq!(response.headers()["retry-after"], "5");
        let body: Value = response.json().await.unwrap();
        assert_eq!(body["code"], "unavailable", "{body}");
    }

    /// The status and text of an unauthenticated `GET path`.
    async fn plain(&self, path: &str) -> (StatusCode, String) {
        let response = self
            .http
            .get(format!("{}{path}", self.base))
            .send()
            .await
            .unwrap();
        (response.status(), response.text().await.unwrap())
    }

    /// While the store cannot write: liveness and metrics answer,
    /// readiness (after its one-second probe cache) does not.
    async fn assert_live_but_not_ready(&self) {
        assert_eq!(self.plain("/healthz").await.0, StatusCode::OK);
        let (status, metrics) = self.plain("/metrics").await;
        assert_eq!(status, StatusCode::OK);
        assert!(metrics.contains("steward_api_connections "), "{metrics}");
        tokio::time::sleep(Duration::from_millis(1100)).await;
        assert_eq!(
            self.plain("/readyz").await.0,
            StatusCode::SERVICE_UNAVAILABLE
        );
    }

    /// Creates tenant `name` as soon as the store takes writes again
    /// (within a minute), then expects readiness back.
    async fn create_once_writable(&self, name: &str) {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let (status, _) = self
                .post(
                    OWNER,
                    "/api/v1/tenants",
                    json!({ "name": name, "tier": "managed" }),
                )
                .await;
            if status == StatusCode::CREATED {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "no write succeeded after the store came back: {status}"
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        tokio::time::sleep(Duration::from_millis(1100)).await;
        assert_eq!(self.plain("/readyz").await.0, StatusCode::OK);
    }

    /// The names of the tenants the owner sees.
    async fn tenant_names(&self) -> Vec<String> {
        let (status, tenants) = self.get(OWNER, "/api/v1/tenants").await;
        assert_eq!(status, StatusCode::OK, "{tenants}");
        tenants
            .as_array()
            .unwrap()
            .iter()
            .map(|t| t["name"].as_str().unwrap().to_owned())
            .collect()
    }
}

/// The server's disk fills: writes answer 503 `unavailable` with
/// `Retry-After` (not 500, and nothing is stored), readiness answers 503,
/// liveness, reads and metrics go on; once space returns the same server
/// takes writes and is ready again, without a restart.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_disk_is_a_503_and_the_server_recovers_when_space_returns() {
    let disk = support::SmallDisk::mount(64);
    let api = start_in(tempfile::tempdir_in(disk.path()).unwrap()).await;
    api.create(
        "/api/v1/tenants",
        json!({ "name": "before", "tier": "managed" }),
    )
    .await;
    let fill = disk.fill();
    for i in 0..10 {
        let name = format!("during-{i}-{}", "x".repeat(200));
        api.assert_unavailable(
            Method::POST,
            "/api/v1/tenants",
            Some(json!({ "name": name, "tier": "managed" })),
        )
        .await;
    }
    api.assert_live_but_not_ready().await;
    assert_eq!(
        api.tenant_names().await,
        ["before"],
        "reads go on, nothing was stored"
    );

    std::fs::remove_file(fill).unwrap();
    api.create_once_writable("after").await;
    assert_eq!(api.tenant_names().await.len(), 2);
    api.stop().await;
}

/// PostgreSQL stops under a running server: calls answer 503
/// `unavailable` (within the pool's few-second wait, not half a minute),
/// liveness and metrics answer without the store, readiness does not; once
/// PostgreSQL is back the same server takes writes again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_postgres_down_calls_answer_503_and_the_server_recovers() {
    let pg = steward_tests::postgres::Dedicated::start();
    let api = start_on(tempfile::tempdir().unwrap(), Some(pg.url())).await;
    api.create(
        "/api/v1/tenants",
        json!({ "name": "before", "tier": "managed" }),
    )
    .await;
    pg.halt();
    for path in ["/api/v1/tenants", "/api/v1/runs"] {
        api.assert_unavailable(Method::GET, path, None).await;
    }
    api.assert_unavailable(
        Method::POST,
        "/api/v1/tenants",
        Some(json!({ "name": "during", "tier": "managed" })),
    )
    .await;
    api.assert_live_but_not_ready().await;
    assert!(api.plain("/metrics").await.1.contains("steward_store_up 0"));

    pg.resume();
    api.create_once_writable("after").await;
    let mut names = api.tenant_names().await;
    names.sort();
    assert_eq!(
        names,
        ["after", "before"],
        "nothing of the outage was stored"
    );
    assert!(api.plain("/metrics").await.1.contains("steward_store_up 1"));
    api.stop().await;
}

/// `Authorization: bearer …` is the same as `Bearer …` (the scheme is
/// case-insensitive); another scheme is 401.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_auth_scheme_is_case_insensitive() {
    let api = start().await;
    for scheme in ["Bearer", "bearer", "BEARER"] {
        let resp = api
            .http
            .get(format!("{}/api/v1/tenants", api.base))
            .header("authorization", format!("{scheme} {OWNER}"))
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), StatusCode::OK, "{scheme}");
    }
    let resp = api
        .http
        .get(format!("{}/api/v1/tenants", api.base))
        .header("authorization", format!("Basic {OWNER}"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::UNAUTHORIZED);
    api.stop().await;
}

/// Another tenant's site is as unknown as a missing one: the same status,
/// code and field, and nothing in the answer names the other tenant.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn another_tenants_site_is_as_unknown_as_a_missing_one() {
    let api = start().await;
    let a = api.tenant("a").await;
    let b = api.tenant("b").await;
    let site = api
        .create("/api/v1/sites", json!({ "tenant_id": b, "name": "hq" }))
        .await["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let (theirs, body) = api
        .post(
            OWNER,
            "/api/v1/devices",
            json!({ "tenant_id": a, "name": "ws", "site_id": site }),
        )
        .await;
    let (missing, missing_body) = api
        .post(
            OWNER,
            "/api/v1/devices",
            json!({ "tenant_id": a, "name": "ws", "site_id": "no-such-site" }),
        )
        .await;
    assert_eq!(theirs, StatusCode::NOT_FOUND, "{body}");
    assert_eq!(theirs, missing);
    assert_eq!(body["code"], missing_body["code"]);
    assert!(!body.to_string().contains(&b), "names tenant b: {body}");
    api.stop().await;
}

/// A raw request: the status, the content type and the body as JSON
/// (`Null` when it is not JSON).
async fn raw(
    api: &Running,
    method: Method,
    path: &str,
    body: Option<&str>,
) -> (StatusCode, String, Value) {
    let mut req = api
        .http
        .request(method, format!("{}{path}", api.base))
        .bearer_auth(OWNER);
    if let Some(b) = body {
        req = req
            .header("content-type", "application/json")
            .body(b.to_owned());
    }
    let resp = req.send().await.unwrap();
    let status = resp.status();
    let kind = resp
        .headers()
        .get("content-type")
        .map(|v| v.to_str().unwrap().to_owned())
        .unwrap_or_default();
    let text = resp.text().await.unwrap();
    (
        status,
        kind,
        serde_json::from_str(&text).unwrap_or(Value::Null),
    )
}

/// Strings with control characters, path parameters that are not UTF-8
/// and missing query parameters are refused as problems naming the field,
/// on both stores (PostgreSQL answered a NUL with a 500); nothing is
/// stored.
async fn control_characters_and_bad_parameters_are_problems_naming_the_field(
    database: Option<&str>,
) {
    let api = start_on(tempfile::tempdir().unwrap(), database).await;
    let problem =
        |(status, kind, body): (StatusCode, String, Value), want: StatusCode, field: &str| {
            assert_eq!(status, want, "{body}");
            assert_eq!(kind, "application/problem+json", "{body}");
            assert_eq!(body["field"], field, "{body}");
            assert!(body["code"].is_string(), "{body}");
        };
    // In a body: a name, a nested string, a key.
    problem(
        raw(
            &api,
            Method::POST,
            "/api/v1/tenants",
            Some(r#"{"name":"ac\u0000me","tier":"vip"}"#),
        )
        .await,
        StatusCode::UNPROCESSABLE_ENTITY,
        "name",
    );
    problem(
        raw(
            &api,
            Method::POST,
            "/api/v1/tenants",
            Some("{\"name\":\"acme\u{85}\",\"tier\":\"vip\"}"),
        )
        .await,
        StatusCode::UNPROCESSABLE_ENTITY,
        "name",
    );
    let tenant = api.tenant("acme").await;
    problem(
        raw(
            &api,
            Method::POST,
            "/api/v1/playbooks",
            Some(&format!(
                r#"{{"tenant_id":"{tenant}","name":"p","steps":[{{"plugin":"x\u001b[31m"}}]}}"#
            )),
        )
        .await,
        StatusCode::UNPROCESSABLE_ENTITY,
        "steps[0].plugin",
    );
    // A comment may have lines and tabs.
    let (status, _, body) = raw(
        &api,
        Method::POST,
        "/api/v1/sites",
        Some(&format!(r#"{{"tenant_id":"{tenant}","name":"hq\tnorth"}}"#)),
    )
    .await;
    assert_eq!(
        status,
        StatusCode::UNPROCESSABLE_ENTITY,
        "a tab in a name is still a control character: {body}"
    );
    // In a path parameter and a query parameter.
    problem(
        raw(&api, Method::GET, "/api/v1/tenants/a%00b", None).await,
        StatusCode::BAD_REQUEST,
        "id",
    );
    problem(
        raw(&api, Method::GET, "/api/v1/tenants/%FF%FE", None).await,
        StatusCode::BAD_REQUEST,
        "id",
    );
    problem(
        raw(&api, Method::GET, "/api/v1/devices?tenant=a%00b", None).await,
        StatusCode::BAD_REQUEST,
        "tenant",
    );
    // A missing required query parameter is named.
    problem(
        raw(&api, Method::GET, "/api/v1/findings", None).await,
        StatusCode::BAD_REQUEST,
        "tenant",
    );
    // Nothing was stored but the one good tenant.
    let (_, tenants) = api.get(OWNER, "/api/v1/tenants").await;
    let names: Vec<&str> = tenants
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["acme"], "{tenants}");
    api.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn control_characters_and_bad_parameters_are_problems_on_sqlite() {
    control_characters_and_bad_parameters_are_problems_naming_the_field(None).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn control_characters_and_bad_parameters_are_problems_on_postgres() {
    let db = support::postgres().await;
    control_characters_and_bad_parameters_are_problems_naming_the_field(Some(&db.url)).await;
}

/// Viewers only read, tokens included; no user is limited to an empty
/// tenant list (which any tenant-limited admin would manage); a webhook
/// added through the API reaches no loopback, link-local or metadata
/// address and embeds no credentials.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn viewers_mint_no_tokens_users_have_tenants_and_webhooks_stay_off_the_host() {
    let api = start().await;
    let tenant = api.tenant("acme").await;
    api.create(
        "/api/v1/users",
        json!({ "name": "v", "role": "viewer", "tenants": [tenant] }),
    )
    .await;
    let viewer = api.create("/api/v1/tokens", json!({ "user": "v" })).await["token"]
        .as_str()
        .unwrap()
        .to_owned();
    let (status, body) = api.post(&viewer, "/api/v1/tokens", json!({})).await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{body}");
    let (status, body) = api
        .post(
            OWNER,
            "/api/v1/users",
            json!({ "name": "nobody", "role": "technician", "tenants": [] }),
        )
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
    assert_eq!(body["field"], "tenants");
    for url in [
        "http://127.0.0.1:9/hook",
        "http://localhost/hook",
        "http://[::1]/hook",
        "http://169.254.169.254/latest/meta-data/",
        "http://[::ffff:127.0.0.1]/hook",
        "http://0.0.0.0/hook",
        "https://user:pass@alerts.example.com/hook",
    ] {
        let (status, body) = api
            .post(
                OWNER,
                "/api/v1/webhooks",
                json!({ "url": url, "secret": "0123456789abcdef0123" }),
            )
            .await;
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{url}: {body}");
        assert_eq!(body["field"], "url", "{url}: {body}");
        assert!(!body.to_string().contains("pass@"), "{body}");
    }
    let (_, hooks) = api.get(OWNER, "/api/v1/webhooks").await;
    assert_eq!(hooks, json!([]));
    api.create(
        "/api/v1/webhooks",
        json!({ "url": "http://192.0.2.7/hook", "secret": "0123456789abcdef0123" }),
    )
    .await;
    api.stop().await;
}

/// A run's jobs come a page at a time, in creation order, each once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_runs_jobs_are_paged() {
    let api = start().await;
    api.install_patching().await;
    let tenant = api.tenant("acme").await;
    for i in 0..7 {
        api.create(
            "/api/v1/devices",
            json!({ "tenant_id": tenant, "name": format!("ws{i}"), "tags": ["x"] }),
        )
        .await;
    }
    let playbook = api
        .create(
            "/api/v1/playbooks",
            json!({ "tenant_id": tenant, "name": "p", "steps": [{ "plugin": "patching" }],
                    "target": { "tags": ["x"] } }),
        )
        .await;
    let (status, run) = api
        .post(
            OWNER,
            &format!(
                "/api/v1/playbooks/{}/runs",
                playbook["id"].as_str().unwrap()
            ),
            json!({}),
        )
        .await;
    assert!(status.is_success(), "{run}");
    let run_id = run["id"].as_str().unwrap();
    let mut seen = Vec::new();
    let mut path = format!("/api/v1/runs/{run_id}/jobs?limit=3");
    loop {
        let (status, page) = api.get(OWNER, &path).await;
        assert_eq!(status, StatusCode::OK, "{page}");
        let items = page["items"].as_array().unwrap();
        assert!(items.len() <= 3);
        seen.extend(items.iter().map(|j| j["id"].as_str().unwrap().to_owned()));
        match page["next_cursor"].as_str() {
            Some(c) => path = format!("/api/v1/runs/{run_id}/jobs?limit=3&cursor={c}"),
            None => break,
        }
    }
    assert_eq!(seen.len(), 7, "{seen:?}");
    let mut sorted = seen.clone();
    sorted.sort();
    sorted.dedup();
    assert_eq!(sorted, seen, "in creation order, each once");
    let (status, body) = api
        .get(OWNER, &format!("/api/v1/runs/{run_id}/jobs?limit=0"))
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert_eq!(body["field"], "limit");
    api.stop().await;
}

/// Backups in a client's monthly report, end to end through the API: the
/// backup check on a simulated device whose backup set is three days old
/// (beyond the 26-hour RPO); the report's figures (JSON) and document
/// (HTML, the one the console shows and prints) name the set outside its
/// RPO.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_monthly_report_shows_backup_rpo_compliance() {
    use steward_runtime::bindings::backups::{BackupSet, Snapshot};
    use steward_runtime::bindings::types::Instant as WitInstant;
    use steward_runtime::device::simulated::SimBackupSet;
    let api = start().await;
    let wasm = base64::engine::general_purpose::STANDARD
        .encode(std::fs::read(steward_tests::component("steward-plugin-backup-check")).unwrap());
    api.create(
        "/api/v1/plugins",
        json!({ "wasm": wasm, "grants": ["backups", "tickets=backups"] }),
    )
    .await;
    let tenant = api
        .create(
            "/api/v1/tenants",
            json!({ "name": "acme", "tier": "managed" }),
        )
        .await["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let mut f = fixture("acme-nas", &tenant);
    let old = WitInstant {
        seconds: f.now.unwrap().seconds - 3 * 86_400,
        nanoseconds: 0,
    };
    f.backups = vec![SimBackupSet {
        set: BackupSet {
            name: "nightly".into(),
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
    api.create(
        "/api/v1/devices",
        json!({ "tenant_id": tenant, "name": "acme-nas", "facts": simulated_facts(&f) }),
    )
    .await;
    let playbook = api
        .create(
            "/api/v1/playbooks",
            json!({ "tenant_id": tenant, "name": "backups", "steps": [{ "plugin": "backup-check" }] }),
        )
        .await;
    let run = api
        .create(
            &format!(
                "/api/v1/playbooks/{}/runs",
                playbook["id"].as_str().unwrap()
            ),
            json!({}),
        )
        .await;
    let run = run["id"].as_str().unwrap().to_owned();
    let done = api.wait_for(&format!("/api/v1/runs/{run}"), ended).await;
    assert_eq!(done["status"], "succeeded", "{done}");
    let month = chrono::Utc::now().format("%Y-%m").to_string();
    let (status, report) = api
        .get(
            OWNER,
            &format!("/api/v1/reports/{tenant}?month={month}&format=json"),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{report}");
    let backups = &report["backups"];
    assert_eq!(backups["sets"], 1, "{backups}");
    assert_eq!(
        backups["outside_rpo_at_end"][0]["set"], "nightly",
        "{backups}"
    );
    assert_eq!(
        backups["outside_rpo_at_end"][0]["device"], "acme-nas",
        "{backups}"
    );
    assert!(
        backups["rpo_compliance_percent"].as_f64().unwrap() < 100.0,
        "{backups}"
    );
    let html = api
        .http
        .get(format!(
            "{}/api/v1/reports/{tenant}?month={month}&format=html",
            api.base
        ))
        .bearer_auth(OWNER)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(html.contains("<h2>Backups</h2>"), "{html}");
    assert!(html.contains("Outside the RPO at month end"), "{html}");
    assert!(html.contains("nightly"), "{html}");
    api.stop().await;
}
