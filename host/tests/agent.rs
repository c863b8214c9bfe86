//! Remote agents with real processes on loopback: a real `steward serve`,
//! real `steward agent` processes, each with its own sandbox root for the
//! real local-accounts provider, and the real `account-unlock` plugin.

use std::io::BufRead as _;
use std::os::unix::fs::PermissionsExt as _;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use base64::Engine as _;
use reqwest::StatusCode;
use serde_json::{Value, json};

mod support;

const OWNER: &str = "stw_owner_token_for_agent_tests_0123456789";

fn steward() -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_steward"));
    cmd.env_remove("STEWARD_LOG")
        .env_remove("STEWARD_TOKEN")
        .env_remove("STEWARD_URL");
    cmd
}

/// A running `steward serve`; killed when dropped.
struct Server {
    child: Child,
    url: String,
    http: reqwest::Client,
    _data: Option<tempfile::TempDir>,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Server {
    fn start() -> Self {
        let data = tempfile::tempdir().unwrap();
        let mut server = Self::spawn(data.path(), &[]);
        server._data = Some(data);
        server
    }

    /// A server over `data` (shared by replicas: the plugin files) with
    /// `extra` arguments.
    fn spawn(data: &std::path::Path, extra: &[&str]) -> Self {
        let mut child = steward()
            .args(["serve", "--listen", "127.0.0.1:0", "--owner-token", OWNER])
            .args(extra)
            .arg("--data-dir")
            .arg(data)
            .env("STEWARD_CACHE_DIR", data.join("cache"))
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("steward serve starts");
        let mut lines = std::io::BufReader::new(child.stdout.take().unwrap()).lines();
        let url = loop {
            let line = lines.next().expect("serve prints its address").unwrap();
            if let Some(u) = line.strip_prefix("steward: API listening on ") {
                break u.to_owned();
            }
        };
        // Keep reading, so the server never blocks on a full pipe.
        std::thread::spawn(move || for _ in lines {});
        Self {
            child,
            url,
            http: reqwest::Client::new(),
            _data: None,
        }
    }

    async fn call(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<Value>,
    ) -> (StatusCode, Value) {
        let mut req = self
            .http
            .request(method, format!("{}{path}", self.url))
            .bearer_auth(OWNER);
        if let Some(b) = body {
            req = req.json(&b);
        }
        let resp = req.send().await.unwrap();
        let status = resp.status();
        let text = resp.text().await.unwrap();
        (
            status,
            serde_json::from_str(&text).unwrap_or(Value::String(text)),
        )
    }

    async fn get(&self, path: &str) -> Value {
        let (status, v) = self.call(reqwest::Method::GET, path, None).await;
        assert_eq!(status, StatusCode::OK, "GET {path}: {v}");
        v
    }

    async fn post(&self, path: &str, body: Value) -> Value {
        let (status, v) = self.call(reqwest::Method::POST, path, Some(body)).await;
        assert!(status.is_success(), "POST {path}: {status} {v}");
        v
    }

    /// Polls `path` until `done` holds (at most 60 s).
    async fn wait_for(&self, path: &str, what: &str, done: impl Fn(&Value) -> bool) -> Value {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let v = self.get(path).await;
            if done(&v) {
                return v;
            }
            assert!(
                Instant::now() < deadline,
                "timed out waiting for {what}: {v}"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// A server with tenant `acme` and the component `wasm` installed with
    /// `grant`: the server and the tenant's id.
    async fn with_plugin(wasm: String, grant: &str) -> (Self, String) {
        let server = Self::start();
        let tenant = server
            .post(
                "/api/v1/tenants",
                json!({ "name": "acme", "tier": "managed" }),
            )
            .await;
        server
            .post(
                "/api/v1/plugins",
                json!({ "wasm": wasm, "grants": [grant] }),
            )
            .await;
        let tenant = tenant["id"].as_str().unwrap().to_owned();
        (server, tenant)
    }

    /// Runs `steward ARGS` against this server as its owner; its stdout
    /// (the command must succeed).
    fn cli(&self, args: &[&str]) -> String {
        let out = steward()
            .args(args)
            .env("STEWARD_URL", &self.url)
            .env("STEWARD_TOKEN", OWNER)
            .output()
            .unwrap();
        assert!(out.status.success(), "steward {args:?}: {}", text(&out));
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// Waits until `device`'s agent is connected.
    async fn reachable(&self, device: &str) {
        self.wait_for(
            &format!("/api/v1/devices/{device}"),
            "the agent to connect",
            |d| d["reachable"] == true,
        )
        .await;
    }

    /// Waits until `device`'s agent is gone (the device is unreachable).
    async fn unreachable(&self, device: &str) {
        self.wait_for(
            &format!("/api/v1/devices/{device}"),
            "the agent to be gone",
            |d| d["reachable"] == false,
        )
        .await;
    }

    /// A remediation playbook of `tenant` unlocking `jdoe` on `device`
    /// (ticket `ticket`, `attempts` attempts): its id.
    async fn unlock_playbook(
        &self,
        tenant: &str,
        device: &str,
        attempts: u32,
        ticket: &str,
    ) -> String {
        let playbook = self
            .post(
                "/api/v1/playbooks",
                json!({
                    "tenant_id": tenant, "name": format!("unlock {ticket}"),
                    "steps": [{ "plugin": "account-unlock", "mode": "remediate",
                                "max-attempts": attempts,
                                "params": { "user": "jdoe", "ticket": ticket } }],
                    "target": { "devices": [device] }
                }),
            )
            .await;
        playbook["id"].as_str().unwrap().to_owned()
    }

    async fn device(&self, id: &str) -> Value {
        self.get(&format!("/api/v1/devices/{id}")).await
    }
}

/// An endpoint: a sandbox root with local accounts (`jdoe` and `svc-backup`
/// locked by `!` in `etc/shadow`), a state directory and a policy file.
struct Endpoint {
    dir: tempfile::TempDir,
    agent: Option<Child>,
}

impl Drop for Endpoint {
    fn drop(&mut self) {
        if let Some(mut a) = self.agent.take() {
            let _ = a.kill();
            let _ = a.wait();
        }
    }
}

impl Endpoint {
    fn new(allow: &[&str]) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("root");
        std::fs::create_dir_all(root.join("etc")).unwrap();
        std::fs::create_dir_all(root.join("var/run/faillock")).unwrap();
        std::fs::write(
            root.join("etc/passwd"),
            "root:x:0:0:root:/root:/bin/bash\n\
             jdoe:x:1001:1001::/home/jdoe:/bin/bash\n\
             svc-backup:x:1002:1002::/home/svc:/bin/sh\n",
        )
        .unwrap();
        std::fs::write(
            root.join("etc/shadow"),
            "root:*:19000:0:99999:7:::\n\
             jdoe:!$6$salt$hashhashhash:19000:0:99999:7:::\n\
             svc-backup:!$6$salt$otherhash:19000:0:99999:7:::\n",
        )
        .unwrap();
        std::fs::set_permissions(
            root.join("etc/shadow"),
            std::fs::Permissions::from_mode(0o640),
        )
        .unwrap();
        std::fs::write(
            root.join("etc/group"),
            "root:x:0:\njdoe:x:1001:\nsvc-backup:x:1002:\n",
        )
        .unwrap();
        let allow: Vec<String> = allow.iter().map(|a| format!("{a:?}")).collect();
        std::fs::write(
            dir.path().join("agent.toml"),
            format!(
                "allow = [{}]\n\n[providers]\naccounts-root = {:?}\napt-root = {:?}\n",
                allow.join(", "),
                root.display().to_string(),
                root.display().to_string(),
            ),
        )
        .unwrap();
        Self { dir, agent: None }
    }

    /// [`new`](Self::new) whose root is also a dpkg/apt sandbox
    /// (`steward_tests::apt`: `libfoo` and `tool` 1.0 installed, 1.1 of
    /// each in a local repository, `libfoo` as a security update), which
    /// the agent refreshes (`apt-get update`) before reading updates.
    fn with_apt(allow: &[&str]) -> Self {
        let endpoint = Self::new(allow);
        let root = endpoint.root();
        steward_tests::apt::sandbox_at(endpoint.dir.path(), &root);
        let policy = endpoint.dir.path().join("agent.toml");
        let text = std::fs::read_to_string(&policy).unwrap();
        std::fs::write(&policy, format!("{text}apt-refresh = true\n")).unwrap();
        endpoint
    }

    fn root(&self) -> PathBuf {
        self.dir.path().join("root")
    }

    fn state(&self) -> PathBuf {
        self.dir.path().join("state")
    }

    fn shadow(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("root/etc/shadow")).unwrap()
    }

    fn enroll(&self, server: &str, token: &str, hostname: &str) -> std::process::Output {
        self.enroll_with(server, token, hostname, &[])
    }

    fn enroll_with(
        &self,
        server: &str,
        token: &str,
        hostname: &str,
        extra: &[&str],
    ) -> std::process::Output {
        steward()
            .args([
                "agent",
                "enroll",
                "--server",
                server,
                "--token",
                token,
                "--hostname",
                hostname,
            ])
            .args(extra)
            .arg("--state-dir")
            .arg(self.state())
            .output()
            .unwrap()
    }

    fn device_id(&self) -> String {
        let identity: Value =
            serde_json::from_slice(&std::fs::read(self.state().join("agent.json")).unwrap())
                .unwrap();
        identity["device-id"].as_str().unwrap().to_owned()
    }

    fn start(&mut self) {
        self.start_env(&[]);
    }

    /// [`start`](Self::start) with more environment (failpoints).
    fn start_env(&mut self, env: &[(&str, &str)]) {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.path().join("agent.log"))
            .unwrap();
        self.agent = Some(
            steward()
                .envs(env.iter().copied())
                .args(["agent", "run"])
                .arg("--state-dir")
                .arg(self.state())
                .arg("--config")
                .arg(self.dir.path().join("agent.toml"))
                .stdout(Stdio::null())
                .stderr(log)
                .spawn()
                .unwrap(),
        );
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("agent.log")).unwrap_or_default()
    }

    /// Kills the agent as a crash would.
    fn kill(&mut self) {
        if let Some(mut a) = self.agent.take() {
            a.kill().unwrap();
            a.wait().unwrap();
        }
    }

    /// Waits for the agent to exit on its own; its exit code.
    fn exit_code(&mut self, within: Duration) -> Option<i32> {
        self.exited(within).and_then(|s| s.code())
    }

    /// Waits for the agent to end on its own (an exit or a signal).
    fn exited(&mut self, within: Duration) -> Option<std::process::ExitStatus> {
        let deadline = Instant::now() + within;
        let agent = self.agent.as_mut()?;
        loop {
            if let Some(status) = agent.try_wait().unwrap() {
                self.agent = None;
                return Some(status);
            }
            if Instant::now() > deadline {
                return None;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

fn text(out: &std::process::Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

fn account_unlock_wasm() -> String {
    let bytes = std::fs::read(steward_tests::component("steward-plugin-account-unlock")).unwrap();
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

fn ended(run: &Value) -> bool {
    matches!(
        run["status"].as_str(),
        Some("succeeded" | "failed" | "cancelled")
    )
}

fn locked(shadow: &str, user: &str) -> bool {
    shadow
        .lines()
        .find_map(|l| l.strip_prefix(&format!("{user}:")))
        .is_some_and(|rest| rest.starts_with('!'))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn agents_enroll_connect_and_remediate_their_own_machines_within_their_ceiling() {
    let (server, tenant) = Server::with_plugin(account_unlock_wasm(), "accounts").await;

    // Refused enrollments store nothing.
    let mut a = Endpoint::new(&["inventory", "accounts"]);
    let mut b = Endpoint::new(&["inventory", "accounts=svc-*"]);
    let out = a.enroll(&server.url, "ste_not_a_real_token", "ws-a");
    assert!(!out.status.success());
    assert!(
        text(&out).contains("unknown, expired, used up or revoked"),
        "{}",
        text(&out)
    );
    assert!(!a.state().join("agent.json").exists());
    let out = a.enroll("http://203.0.113.9:8080", "whatever", "ws-a");
    assert!(!out.status.success());
    assert!(text(&out).contains("--insecure"), "{}", text(&out));
    assert_eq!(server.get("/api/v1/devices").await, json!([]));

    // One token, two uses.
    let enrollment = server
        .post(
            "/api/v1/enrollments",
            json!({ "tenant_id": tenant, "tags": ["office"], "uses": 2, "expires_in_seconds": 600 }),
        )
        .await;
    let token = enrollment["token"].as_str().unwrap().to_owned();
    assert!(token.starts_with("ste_"));
    for (endpoint, name) in [(&a, "ws-a"), (&b, "ws-b")] {
        let out = endpoint.enroll(&server.url, &token, name);
        assert!(out.status.success(), "{}", text(&out));
    }
    let third = Endpoint::new(&["inventory"]);
    let out = third.enroll(&server.url, &token, "ws-c");
    assert!(!out.status.success(), "the token is used up");
    let (a_id, b_id) = (a.device_id(), b.device_id());
    let device = server.device(&a_id).await;
    assert_eq!(device["name"], "ws-a");
    assert_eq!(device["tags"], json!(["office"]));
    assert_eq!(device["facts"]["provider"], "agent");
    assert_eq!(device["reachable"], false, "not connected yet");

    // Connected, both are reachable.
    a.start();
    b.start();
    for id in [&a_id, &b_id] {
        server.reachable(id).await;
    }

    // On-demand unlock of jdoe on both: A's ceiling allows it, B's caps
    // accounts to `svc-*`, whatever the server grants.
    let playbook = server
        .post(
            "/api/v1/playbooks",
            json!({
                "tenant_id": tenant, "name": "unlock jdoe",
                "steps": [{ "plugin": "account-unlock", "mode": "remediate",
                            "params": { "user": "jdoe", "ticket": "T-1001" } }],
                "target": { "devices": [a_id, b_id] }
            }),
        )
        .await;
    let pid = playbook["id"].as_str().unwrap();
    let run = server
        .post(&format!("/api/v1/playbooks/{pid}/runs"), json!({}))
        .await;
    let run_id = run["id"].as_str().unwrap().to_owned();
    server
        .wait_for(&format!("/api/v1/runs/{run_id}"), "the run to end", ended)
        .await;
    let jobs = server.get(&format!("/api/v1/runs/{run_id}/jobs")).await["items"].clone();
    let job_of = |device: &str| {
        jobs.as_array()
            .unwrap()
            .iter()
            .find(|j| j["device_id"] == device)
            .cloned()
            .unwrap()
    };
    let (job_a, job_b) = (job_of(&a_id), job_of(&b_id));
    assert_eq!(job_a["status"], "succeeded", "{job_a}\n{}", a.log());
    assert!(
        !locked(&a.shadow(), "jdoe"),
        "unlocked on A:\n{}",
        a.shadow()
    );
    assert!(locked(&a.shadow(), "svc-backup"), "nothing else changed");
    assert_eq!(job_b["status"], "failed", "{job_b}");
    assert!(
        job_b["last_error"].as_str().unwrap().contains("ceiling"),
        "{job_b}"
    );
    assert!(
        locked(&b.shadow(), "jdoe"),
        "B is untouched:\n{}",
        b.shadow()
    );
    let audit = server.get("/api/v1/audit?limit=200").await;
    let unlocks: Vec<(String, String)> = audit
        .as_array()
        .or_else(|| audit["items"].as_array())
        .unwrap()
        .iter()
        .filter(|e| e["action"] == "accounts.unlock")
        .map(|e| {
            (
                e["job_id"].as_str().unwrap_or_default().to_owned(),
                e["outcome"].as_str().unwrap_or_default().to_owned(),
            )
        })
        .collect();
    let (job_a_id, job_b_id) = (
        job_a["id"].as_str().unwrap().to_owned(),
        job_b["id"].as_str().unwrap().to_owned(),
    );
    assert!(
        unlocks.contains(&(job_a_id, "applied".into())),
        "{unlocks:?}"
    );
    assert!(
        unlocks.contains(&(job_b_id, "denied".into())),
        "{unlocks:?}"
    );

    // Offline: a run for a stopped agent waits, and runs when it is back.
    b.kill();
    server.unreachable(&b_id).await;
    let check = server
        .post(
            "/api/v1/playbooks",
            json!({
                "tenant_id": tenant, "name": "check b",
                "steps": [{ "plugin": "account-unlock" }],
                "target": { "devices": [b_id] }
            }),
        )
        .await;
    let cid = check["id"].as_str().unwrap();
    let run = server
        .post(&format!("/api/v1/playbooks/{cid}/runs"), json!({}))
        .await;
    let offline_run = run["id"].as_str().unwrap().to_owned();
    tokio::time::sleep(Duration::from_secs(2)).await;
    let jobs = server
        .get(&format!("/api/v1/runs/{offline_run}/jobs"))
        .await["items"]
        .clone();
    assert_eq!(jobs[0]["status"], "queued", "waits for the agent: {jobs}");
    b.start();
    let run = server
        .wait_for(
            &format!("/api/v1/runs/{offline_run}"),
            "the offline run",
            ended,
        )
        .await;
    assert_eq!(run["status"], "succeeded", "{run}\n{}", b.log());
    let findings = server
        .get(&format!("/api/v1/runs/{offline_run}/findings"))
        .await;
    let keys: Vec<&str> = findings
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|f| f["key"].as_str())
        .collect();
    assert!(keys.contains(&"locked:jdoe"), "{findings}");

    // Offline past the target's expiry: the job ends `expired`, with the
    // reason, and does not run when the agent comes back.
    b.kill();
    server.unreachable(&b_id).await;
    let soon = server
        .post(
            "/api/v1/playbooks",
            json!({
                "tenant_id": tenant, "name": "check b soon",
                "steps": [{ "plugin": "account-unlock" }],
                "target": { "devices": [b_id], "expire-after-seconds": 1 }
            }),
        )
        .await;
    let sid = soon["id"].as_str().unwrap();
    let run = server
        .post(&format!("/api/v1/playbooks/{sid}/runs"), json!({}))
        .await;
    let late_run = run["id"].as_str().unwrap().to_owned();
    let jobs = server
        .wait_for(
            &format!("/api/v1/runs/{late_run}/jobs"),
            "the job to expire",
            |j| j["items"][0]["status"] == "expired",
        )
        .await["items"]
        .clone();
    assert!(
        jobs[0]["last_error"]
            .as_str()
            .is_some_and(|e| !e.is_empty()),
        "expired with a reason: {jobs}"
    );
    b.start();
    server.reachable(&b_id).await;
    let jobs = server.get(&format!("/api/v1/runs/{late_run}/jobs")).await["items"].clone();
    assert_eq!(jobs[0]["status"], "expired", "never run late: {jobs}");
    assert_eq!(jobs[0]["attempt"], 0, "{jobs}");

    // Revoked: disconnected at once, refused from then on.
    let revoked = server
        .post(&format!("/api/v1/devices/{a_id}/revoke"), json!({}))
        .await;
    assert_eq!(revoked["disconnected"], true);
    assert_eq!(
        a.exit_code(Duration::from_secs(30)),
        Some(3),
        "the agent stops when revoked:\n{}",
        a.log()
    );
    assert_eq!(server.device(&a_id).await["reachable"], false);
    a.start();
    assert_eq!(a.exit_code(Duration::from_secs(30)), Some(3), "{}", a.log());
    assert!(a.log().contains("revoked"), "{}", a.log());
}

/// A raw client speaking the protocol: an unknown device, a signature of
/// another nonce (a replayed handshake) and a malformed first frame are
/// each refused with a goodbye, and nothing connects.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_handshakes_are_refused() {
    use futures_util::{SinkExt as _, StreamExt as _};
    use tokio_tungstenite::tungstenite::Message;

    let server = Server::start();
    let tenant = server
        .post(
            "/api/v1/tenants",
            json!({ "name": "acme", "tier": "managed" }),
        )
        .await;
    let enrollment = server
        .post(
            "/api/v1/enrollments",
            json!({ "tenant_id": tenant["id"], "uses": 1 }),
        )
        .await;
    let endpoint = Endpoint::new(&["inventory"]);
    let out = endpoint.enroll(&server.url, enrollment["token"].as_str().unwrap(), "ws-a");
    assert!(out.status.success(), "{}", text(&out));
    let device = endpoint.device_id();
    let key =
        steward_contract::signing::SecretKey::load(&endpoint.state().join("agent.key")).unwrap();
    let ws = format!(
        "{}/api/v1/agent/connect",
        server.url.replacen("http", "ws", 1)
    );

    let mut old_nonce = String::new();
    for (case, hello) in [
        (
            "unknown device",
            json!({ "type": "hello", "device_id": "no-such-device", "signature": "AAAA", "agent_version": "x" }),
        ),
        ("malformed", json!({ "type": "hello" })),
        ("not a hello", json!({ "type": "heartbeat" })),
    ] {
        let (mut socket, _) = tokio_tungstenite::connect_async(&ws).await.unwrap();
        let Some(Ok(Message::Text(challenge))) = socket.next().await else {
            panic!("{case}: no challenge")
        };
        let challenge: Value = serde_json::from_str(challenge.as_str()).unwrap();
        old_nonce = challenge["nonce"].as_str().unwrap().to_owned();
        socket
            .send(Message::Text(hello.to_string().into()))
            .await
            .unwrap();
        // A goodbye, or the connection just closes: never a welcome.
        if let Some(Ok(Message::Text(t))) = socket.next().await {
            let v: Value = serde_json::from_str(t.as_str()).unwrap_or_default();
            assert_ne!(v["type"], "welcome", "{case}: {v}");
        }
    }

    // A signature of an earlier connection's nonce does not open another.
    let replayed = key.sign(&steward_runtime::device::remote::challenge_payload(
        &old_nonce, &device,
    ));
    let (mut socket, _) = tokio_tungstenite::connect_async(&ws).await.unwrap();
    let _challenge = socket.next().await;
    socket
        .send(Message::Text(
            json!({ "type": "hello", "device_id": device, "signature": replayed, "agent_version": "x" })
                .to_string()
                .into(),
        ))
        .await
        .unwrap();
    let Some(Ok(Message::Text(t))) = socket.next().await else {
        panic!("no answer to a replayed handshake")
    };
    let v: Value = serde_json::from_str(t.as_str()).unwrap();
    assert_eq!(v["type"], "goodbye", "{v}");
    assert!(
        v["reason"].as_str().unwrap().contains("bad signature"),
        "{v}"
    );
    assert_eq!(server.device(&device).await["reachable"], false);

    // The same key enrolls once, even with a good token, which a refused
    // enrollment does not spend.
    let second = server
        .post(
            "/api/v1/enrollments",
            json!({ "tenant_id": tenant["id"], "uses": 1 }),
        )
        .await;
    let again =
        json!({ "token": second["token"], "public_key": key.public_key(), "hostname": "again" });
    let (status, body) = server
        .call(
            reqwest::Method::POST,
            "/api/v1/agent/enroll",
            Some(again.clone()),
        )
        .await;
    assert_eq!(status, StatusCode::CONFLICT, "{body}");
    assert_eq!(body["field"], "public_key");
    let (status, body) = server
        .call(
            reqwest::Method::POST,
            "/api/v1/agent/enroll",
            Some(json!({ "token": "ste_x", "public_key": "not a key", "hostname": "x" })),
        )
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
    assert_eq!(body["field"], "public_key");
    let devices = server.get("/api/v1/devices").await;
    assert_eq!(devices.as_array().unwrap().len(), 1, "{devices}");
    // The token the refused enrollment tried is still good for a new key.
    let fresh = steward_contract::signing::SecretKey::generate();
    let (status, body) = server
        .call(
            reqwest::Method::POST,
            "/api/v1/agent/enroll",
            Some(json!({ "token": second["token"], "public_key": fresh.public_key(), "hostname": "again" })),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
}

/// Two `steward serve` replicas on one PostgreSQL database: the agent is
/// connected to A, the run is started through B's API, and the job runs on
/// A (with one attempt allowed, a job B claimed would fail: B has no
/// connection to the agent). Both poll the queue only once a minute, so a
/// job that starts sooner was woken through PostgreSQL (`NOTIFY`), not
/// found by a poll.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_job_runs_on_the_replica_holding_the_agents_connection() {
    let db = support::postgres().await;
    let data = tempfile::tempdir().unwrap();
    let config = data.path().join("slow-poll.toml");
    std::fs::write(&config, "poll-ms = 60000\n").unwrap();
    let config = config.to_str().unwrap();
    let a = Server::spawn(data.path(), &["--database", &db.url, "--config", config]);
    let b = Server::spawn(data.path(), &["--database", &db.url, "--config", config]);
    let tenant = b
        .post(
            "/api/v1/tenants",
            json!({ "name": "acme", "tier": "managed" }),
        )
        .await;
    let tenant = tenant["id"].as_str().unwrap().to_owned();
    b.post(
        "/api/v1/plugins",
        json!({ "wasm": account_unlock_wasm(), "grants": ["accounts"] }),
    )
    .await;
    let enrollment = b
        .post(
            "/api/v1/enrollments",
            json!({ "tenant_id": tenant, "uses": 1 }),
        )
        .await;
    let mut endpoint = Endpoint::new(&["inventory", "accounts"]);
    let out = endpoint.enroll(&a.url, enrollment["token"].as_str().unwrap(), "ws-a");
    assert!(out.status.success(), "{}", text(&out));
    let device = endpoint.device_id();
    endpoint.start();
    b.reachable(&device).await;
    let pid = &b.unlock_playbook(&tenant, &device, 1, "T-7").await;
    let mut waits = Vec::new();
    for _ in 0..5 {
        let started = std::time::Instant::now();
        let run = b
            .post(&format!("/api/v1/playbooks/{pid}/runs"), json!({}))
            .await;
        let run_id = run["id"].as_str().unwrap().to_owned();
        let run = b
            .wait_for(&format!("/api/v1/runs/{run_id}"), "the run", ended)
            .await;
        waits.push(started.elapsed());
        let jobs = b.get(&format!("/api/v1/runs/{run_id}/jobs")).await["items"].clone();
        assert_eq!(run["status"], "succeeded", "{jobs}\n{}", endpoint.log());
    }
    println!("run started on B to run ended on A: {waits:?}");
    assert!(
        waits.iter().all(|w| *w < Duration::from_secs(45)),
        "a job waited for A's one-minute poll instead of being woken: {waits:?}"
    );
    assert!(!locked(&endpoint.shadow(), "jdoe"));

    // Revoked through B, which does not hold the connection: A ends it at
    // the agent's next heartbeat.
    let revoked = b
        .post(&format!("/api/v1/devices/{device}/revoke"), json!({}))
        .await;
    assert_eq!(revoked["disconnected"], false, "B holds no connection");
    assert_eq!(
        endpoint.exit_code(Duration::from_secs(60)),
        Some(3),
        "{}",
        endpoint.log()
    );
}

/// `steward serve --tls-cert --tls-key` with a private CA: an agent that
/// enrolled trusting the CA (`--ca-cert`) connects over `wss://`; one that
/// does not trust it cannot enroll.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn agents_connect_over_tls_trusting_the_ca_they_enrolled_with() {
    let certs = tempfile::tempdir().unwrap();
    let (cert, key) = (certs.path().join("cert.pem"), certs.path().join("key.pem"));
    let made = Command::new("openssl")
        .args([
            "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
        ])
        .args([
            "-subj",
            "/CN=localhost",
            "-addext",
            "subjectAltName=IP:127.0.0.1,DNS:localhost",
        ])
        .arg("-keyout")
        .arg(&key)
        .arg("-out")
        .arg(&cert)
        .output()
        .unwrap();
    assert!(made.status.success(), "{}", text(&made));
    let data = tempfile::tempdir().unwrap();
    let mut server = Server::spawn(
        data.path(),
        &[
            "--tls-cert",
            cert.to_str().unwrap(),
            "--tls-key",
            key.to_str().unwrap(),
        ],
    );
    assert!(server.url.starts_with("https://"), "{}", server.url);
    let pem = std::fs::read(&cert).unwrap();
    let http = reqwest::Client::builder()
        .add_root_certificate(reqwest::Certificate::from_pem(&pem).unwrap())
        .build()
        .unwrap();
    server.http = http;
    let tenant = server
        .post(
            "/api/v1/tenants",
            json!({ "name": "acme", "tier": "managed" }),
        )
        .await;
    let enrollment = server
        .post(
            "/api/v1/enrollments",
            json!({ "tenant_id": tenant["id"], "uses": 2 }),
        )
        .await;
    let token = enrollment["token"].as_str().unwrap();

    let untrusting = Endpoint::new(&["inventory"]);
    let out = untrusting.enroll(&server.url, token, "ws-x");
    assert!(!out.status.success(), "an unknown CA is not trusted");
    assert!(!untrusting.state().join("agent.json").exists());

    let mut endpoint = Endpoint::new(&["inventory"]);
    let out = endpoint.enroll_with(
        &server.url,
        token,
        "ws-a",
        &["--ca-cert", cert.to_str().unwrap()],
    );
    assert!(out.status.success(), "{}", text(&out));
    let device = endpoint.device_id();
    endpoint.start();
    server.reachable(&device).await;
    assert!(endpoint.log().contains("connected"), "{}", endpoint.log());
}

/// An enrollment token made with `approve`: the enrolled device waits
/// (`pending-approval`, not reachable, its agent refused at the handshake
/// and retrying) and its jobs wait with it; an admin's approval (audited)
/// lets the agent in, and the waiting job runs.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_device_enrolled_with_an_approval_token_waits_for_the_admin() {
    let (server, tenant) = Server::with_plugin(account_unlock_wasm(), "accounts").await;
    // The README's commands, through the CLI.
    let token = server.cli(&[
        "enrollment",
        "create",
        "--tenant",
        &tenant,
        "--tags",
        "office",
        "--expires",
        "7d",
        "--uses",
        "50",
        "--approve",
        "-q",
    ]);
    let token = token.trim();
    assert!(token.starts_with("ste_"), "{token}");
    let mut endpoint = Endpoint::new(&["inventory", "accounts"]);
    let out = endpoint.enroll(&server.url, token, "ws-1");
    assert!(out.status.success(), "{}", text(&out));
    assert!(
        text(&out).contains("steward devices approve"),
        "{}",
        text(&out)
    );
    let device = endpoint.device_id();
    endpoint.start();

    let playbook = server
        .post(
            "/api/v1/playbooks",
            json!({
                "tenant_id": tenant, "name": "unlock",
                "steps": [{ "plugin": "account-unlock", "mode": "remediate",
                            "params": { "user": "jdoe", "ticket": "T-9" } }],
                "target": { "devices": [device] }
            }),
        )
        .await;
    let pid = playbook["id"].as_str().unwrap();
    let run = server
        .post(&format!("/api/v1/playbooks/{pid}/runs"), json!({}))
        .await;
    let run_id = run["id"].as_str().unwrap().to_owned();

    // The agent was refused at least once, and keeps asking.
    let deadline = Instant::now() + Duration::from_secs(30);
    while !endpoint.log().contains("waiting for an admin's approval") {
        assert!(Instant::now() < deadline, "{}", endpoint.log());
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let waiting = server.device(&device).await;
    assert_eq!(waiting["agent"], "pending-approval", "{waiting}");
    assert_eq!(waiting["reachable"], false, "{waiting}");
    let jobs = server.get(&format!("/api/v1/runs/{run_id}/jobs")).await["items"].clone();
    assert_eq!(jobs[0]["status"], "queued", "{jobs}");
    assert!(locked(&endpoint.shadow(), "jdoe"));
    assert!(
        endpoint.exit_code(Duration::ZERO).is_none(),
        "the agent keeps trying"
    );

    let listed = server.cli(&["devices", "list", "--tenant", &tenant]);
    assert!(listed.contains("pending-approval"), "{listed}");
    let approved = server.cli(&["devices", "approve", &device]);
    assert!(approved.contains("active"), "{approved}");
    let run = server
        .wait_for(&format!("/api/v1/runs/{run_id}"), "the run", ended)
        .await;
    assert_eq!(run["status"], "succeeded", "{}", endpoint.log());
    assert!(!locked(&endpoint.shadow(), "jdoe"));
    let device_now = server.device(&device).await;
    assert_eq!(device_now["agent"], "active", "{device_now}");
    let audit = server.get("/api/v1/audit?limit=200").await;
    assert!(
        audit["items"]
            .as_array()
            .unwrap()
            .iter()
            .any(|e| e["action"] == "device.approve" && e["detail"]["device"] == device.as_str()),
        "{audit}"
    );
}

/// The agent dies (as kill -9: an abort, no flush) right after its
/// endpoint unlocked the account and before the answer reached the
/// server. The server sees the connection drop mid-call at once (not
/// after the call timeout), the job fails transiently and waits; when the
/// agent is back the retry runs, finds nothing left to unlock and makes
/// no second call, and the lost attempt's journaled intent is in the
/// audit trail as in doubt: applied once, recorded.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_agent_killed_mid_remediation_is_retried_on_return_and_applies_once() {
    let (server, tenant) = Server::with_plugin(account_unlock_wasm(), "accounts").await;
    let enrollment = server
        .post("/api/v1/enrollments", json!({ "tenant_id": tenant }))
        .await;
    let mut endpoint = Endpoint::new(&["inventory", "accounts"]);
    let out = endpoint.enroll(&server.url, enrollment["token"].as_str().unwrap(), "ws-k");
    assert!(out.status.success(), "{}", text(&out));
    let device = endpoint.device_id();
    endpoint.start_env(&[("STEWARD_FAILPOINTS", "agent-after-call:accounts-unlock=1")]);
    server.reachable(&device).await;
    let pid = &server.unlock_playbook(&tenant, &device, 3, "T-1").await;
    let run = server
        .post(&format!("/api/v1/playbooks/{pid}/runs"), json!({}))
        .await;
    let run_id = run["id"].as_str().unwrap().to_owned();

    // The endpoint unlocked, then its agent died before answering.
    assert!(
        endpoint.exited(Duration::from_secs(60)).is_some(),
        "the failpoint stopped the agent\n{}",
        endpoint.log()
    );
    assert!(!locked(&endpoint.shadow(), "jdoe"), "the unlock was made");
    let job = server
        .wait_for(&format!("/api/v1/runs/{run_id}/jobs"), "the retry", |j| {
            j["items"][0]["status"] == "queued" && j["items"][0]["attempt"].as_u64() >= Some(1)
        })
        .await["items"]
        .clone();
    assert!(
        job[0]["last_error"]
            .as_str()
            .is_some_and(|e| e.contains("agent")),
        "{job}"
    );

    endpoint.start();
    let run = server
        .wait_for(&format!("/api/v1/runs/{run_id}"), "the run", ended)
        .await;
    let jobs = server.get(&format!("/api/v1/runs/{run_id}/jobs")).await["items"].clone();
    assert_eq!(run["status"], "succeeded", "{jobs}\n{}", endpoint.log());
    assert!(jobs[0]["attempt"].as_u64().unwrap() >= 2, "{jobs}");
    let job_id = jobs[0]["id"].as_str().unwrap();
    let audit = server.get("/api/v1/audit?limit=200").await;
    let unlocks: Vec<&str> = audit["items"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["action"] == "accounts.unlock" && e["job_id"] == job_id)
        .map(|e| e["outcome"].as_str().unwrap_or_default())
        .collect();
    // The lost attempt's unlock is in the trail as in doubt (its intent
    // was journaled, its outcome never reached the server); the retry
    // made no second unlock.
    assert!(
        unlocks.contains(&"in-doubt"),
        "the lost attempt's call is audited from the journal: {unlocks:?}\n{audit}"
    );
    assert!(
        !unlocks.contains(&"applied"),
        "no second unlock: {unlocks:?}"
    );
}

fn patching_wasm() -> String {
    let bytes = std::fs::read(steward_tests::component("steward-plugin-patching")).unwrap();
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

/// The walkthrough with the first-party `patching` plugin on two real
/// endpoints, each its own dpkg/apt sandbox with a local repository: a
/// patch playbook that requires approval is planned on both through their
/// agents, the plans are approved, and each sandbox changes exactly as
/// planned (the security update `libfoo` 1.0 → 1.1; `tool`, not a security
/// update, stays at 1.0).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_patch_playbook_is_planned_approved_and_applied_across_two_agents() {
    use steward_tests::apt::version_on_disk;
    let (server, tenant) = Server::with_plugin(patching_wasm(), "packages").await;
    let enrollment = server
        .post(
            "/api/v1/enrollments",
            json!({ "tenant_id": tenant, "uses": 2, "tags": ["office"] }),
        )
        .await;
    let token = enrollment["token"].as_str().unwrap();
    let mut endpoints = [
        Endpoint::with_apt(&["inventory", "packages"]),
        Endpoint::with_apt(&["inventory", "packages"]),
    ];
    for (i, e) in endpoints.iter_mut().enumerate() {
        let out = e.enroll(&server.url, token, &format!("ws-{i}"));
        assert!(out.status.success(), "{}", text(&out));
        e.start();
    }
    for e in &endpoints {
        server
            .wait_for(
                &format!("/api/v1/devices/{}", e.device_id()),
                "the agent",
                |d| d["reachable"] == true,
            )
            .await;
    }
    let playbook = server
        .post(
            "/api/v1/playbooks",
            json!({
                "tenant_id": tenant, "name": "patch",
                "steps": [{ "plugin": "patching", "mode": "remediate", "requires-approval": true }],
                "target": { "tags": ["office"] }
            }),
        )
        .await;
    let pid = playbook["id"].as_str().unwrap();
    let run = server
        .post(&format!("/api/v1/playbooks/{pid}/runs"), json!({}))
        .await;
    let run_id = run["id"].as_str().unwrap().to_owned();

    // Both plans wait for approval; nothing changed yet.
    let approvals = server
        .wait_for("/api/v1/approvals", "both plans", |a| {
            a.as_array().is_some_and(|a| a.len() == 2)
        })
        .await;
    for e in &endpoints {
        assert_eq!(
            version_on_disk(&e.root(), "libfoo"),
            "1.0",
            "planning changed nothing"
        );
    }
    for approval in approvals.as_array().unwrap() {
        let planned: Vec<(String, String)> = approval["planned"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|c| c["kind"] == "package-upgrade")
            .map(|c| {
                (
                    c["target"].as_str().unwrap().to_owned(),
                    c["after"].as_str().unwrap_or_default().to_owned(),
                )
            })
            .collect();
        assert_eq!(
            planned,
            [("libfoo".to_owned(), "1.1".to_owned())],
            "{approval}"
        );
        let job = approval["job"]["id"].as_str().unwrap();
        server
            .post(
                &format!("/api/v1/approvals/{job}/approve"),
                json!({ "comment": "patch Tuesday" }),
            )
            .await;
    }
    let run = server
        .wait_for(&format!("/api/v1/runs/{run_id}"), "the run", ended)
        .await;
    let jobs = server.get(&format!("/api/v1/runs/{run_id}/jobs")).await["items"].clone();
    assert_eq!(
        run["status"],
        "succeeded",
        "{jobs}\n{}\n{}",
        endpoints[0].log(),
        endpoints[1].log()
    );
    for e in &endpoints {
        assert_eq!(
            version_on_disk(&e.root(), "libfoo"),
            "1.1",
            "the approved upgrade"
        );
        assert_eq!(
            version_on_disk(&e.root(), "tool"),
            "1.0",
            "nothing beyond the plan"
        );
    }
    let changes = server.get(&format!("/api/v1/runs/{run_id}/changes")).await;
    let upgrades = |outcome: &str| -> Vec<(String, String, String)> {
        let mut v: Vec<_> = changes
            .as_array()
            .unwrap()
            .iter()
            .map(|c| &c["change"])
            .filter(|c| c["kind"] == "package-upgrade" && c["outcome"] == outcome)
            .map(|c| {
                (
                    c["target"].as_str().unwrap().to_owned(),
                    c["before"].as_str().unwrap_or_default().to_owned(),
                    c["after"].as_str().unwrap_or_default().to_owned(),
                )
            })
            .collect();
        v.sort();
        v
    };
    let libfoo = ("libfoo".to_owned(), "1.0".to_owned(), "1.1".to_owned());
    assert_eq!(
        upgrades("planned"),
        [libfoo.clone(), libfoo.clone()],
        "{changes}"
    );
    assert_eq!(
        upgrades("applied"),
        upgrades("planned"),
        "applied as planned"
    );
}

/// The `backups` capability over an agent: the endpoint's own restic
/// repository (configured in its policy, the password in a file only the
/// agent reads), the 0.2.0 `backup-check` plugin on the server; the restore
/// test runs on the endpoint, within its ceiling, and its evidence reaches
/// the server as changes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_agents_backups_are_checked_and_restore_tested_from_the_server() {
    let server = Server::start();
    let tenant = server
        .post(
            "/api/v1/tenants",
            json!({ "name": "acme", "tier": "managed" }),
        )
        .await["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let wasm = base64::engine::general_purpose::STANDARD
        .encode(std::fs::read(steward_tests::component("steward-plugin-backup-check")).unwrap());
    server
        .post(
            "/api/v1/plugins",
            json!({ "wasm": wasm, "grants": ["backups", "tickets=backups"] }),
        )
        .await;
    let mut endpoint = Endpoint::new(&["inventory", "backups=nightly-*"]);
    let dir = endpoint.dir.path().to_path_buf();
    let src = dir.join("files");
    std::fs::create_dir_all(&src).unwrap();
    std::fs::write(src.join("ledger.csv"), "date,amount\n2026-12-01,10\n").unwrap();
    std::fs::write(src.join("notes.txt"), "keep me\n").unwrap();
    let password = "agent-side-secret-5521";
    std::fs::write(dir.join("restic.pass"), password).unwrap();
    let restic = |args: &[&str]| {
        let out = Command::new("restic")
            .args(args)
            .env("RESTIC_REPOSITORY", dir.join("repo"))
            .env("RESTIC_PASSWORD", password)
            .env("RESTIC_CACHE_DIR", dir.join("cache"))
            .output()
            .expect("restic runs (.ci/setup installs it)");
        assert!(out.status.success(), "{}", text(&out));
    };
    restic(&["init"]);
    restic(&["backup", "-q", src.to_str().unwrap()]);
    let policy = dir.join("agent.toml");
    let mut text_policy = std::fs::read_to_string(&policy).unwrap();
    text_policy.push_str(&format!(
        "backup-state-dir = {:?}\n\n[[providers.backup-sets]]\nname = \"nightly-files\"\ntool = \"restic\"\nrepository = {:?}\npassword-file = {:?}\npaths = [{:?}]\n",
        dir.join("backup-state").display().to_string(),
        dir.join("repo").display().to_string(),
        dir.join("restic.pass").display().to_string(),
        src.display().to_string(),
    ));
    std::fs::write(&policy, text_policy).unwrap();

    let enrollment = server
        .post(
            "/api/v1/enrollments",
            json!({ "tenant_id": tenant, "uses": 1, "expires_in_seconds": 600 }),
        )
        .await;
    let out = endpoint.enroll(
        &server.url,
        enrollment["token"].as_str().unwrap(),
        "backup-host",
    );
    assert!(out.status.success(), "{}", text(&out));
    let device = endpoint.device_id();
    endpoint.start();
    server.reachable(&device).await;
    let playbook = server
        .post(
            "/api/v1/playbooks",
            json!({
                "tenant_id": tenant, "name": "backups",
                "steps": [{ "plugin": "backup-check", "mode": "remediate",
                            "params": { "sample": 2 } }],
                "target": { "devices": [device] }
            }),
        )
        .await;
    let run = server
        .post(
            &format!(
                "/api/v1/playbooks/{}/runs",
                playbook["id"].as_str().unwrap()
            ),
            json!({}),
        )
        .await;
    let run_id = run["id"].as_str().unwrap().to_owned();
    let done = server
        .wait_for(&format!("/api/v1/runs/{run_id}"), "the run to end", ended)
        .await;
    assert_eq!(done["status"], "succeeded", "{done}\n{}", endpoint.log());
    let changes = server.get(&format!("/api/v1/runs/{run_id}/changes")).await;
    let all = serde_json::to_string(&changes).unwrap();
    assert!(all.contains("restore-test"), "{all}");
    assert!(all.contains("matches the snapshot"), "{all}");
    assert!(all.contains("\"passed\""), "{all}");
    // The password stayed on the endpoint.
    assert!(!all.contains(password));
    let audit = serde_json::to_string(&server.get("/api/v1/audit?limit=200").await).unwrap();
    assert!(audit.contains("restore-test"), "{audit}");
    assert!(!audit.contains(password));
    // The scratch copy is gone from the endpoint.
    let scratch = dir.join("backup-state/scratch");
    assert_eq!(std::fs::read_dir(&scratch).unwrap().count(), 0);
}
