//! Installing plugins from a module registry: the real `steward-registry`
//! binary on port 0 and the real Steward server (the `Server` that
//! `steward serve` runs) on port 0, through HTTP and the `steward` CLI.
//!
//! A vendor publishes `acme/vendor-demo` 1.0.0, 1.1.0 (same capabilities)
//! and 2.0.0 (asks for `tickets` too); the admin installs by requirement,
//! grants, runs, upgrades; and every refusal leaves the installed plugins
//! and the trusted keys as they were.

mod support;
// Not in `support`: the benchmarks include that module, without the
// registry crate.
#[path = "support/registry.rs"]
mod registry_support;

use std::process::Command;
use std::time::{Duration, Instant};

use registry_support::{Registry, manifest};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use steward_contract::signing::SecretKey;
use steward_host::serve::{ServeConfig, Server};
use steward_registry::api::VersionRecord;
use steward_registry::client::RegistryClient;
use support::control::{fixture, simulated_facts};
use tokio::sync::watch;

const OWNER: &str = "stw_owner_token_for_registry_tests_0123456789";

struct Steward {
    base: String,
    http: reqwest::Client,
    stop: watch::Sender<bool>,
    task: tokio::task::JoinHandle<anyhow::Result<()>>,
    _dir: tempfile::TempDir,
}

async fn steward(registry_url: &str, extra: &str) -> Steward {
    let dir = tempfile::tempdir().unwrap();
    let config: ServeConfig = toml::from_str(&format!(
        "data-dir = {:?}\nlisten = \"127.0.0.1:0\"\ntick-ms = 100\nowner-token = {OWNER:?}\n\
         [registry]\nurl = {:?}\n{extra}",
        dir.path().display().to_string(),
        registry_url
    ))
    .unwrap();
    let server = Server::open(&config).await.expect("server opens");
    let addr = server.api_addr().expect("the API listens");
    let (stop, rx) = watch::channel(false);
    let task = tokio::spawn(server.run(rx));
    Steward {
        base: format!("http://{addr}"),
        http: reqwest::Client::new(),
        stop,
        task,
        _dir: dir,
    }
}

impl Steward {
    async fn call(&self, method: Method, path: &str, body: Option<Value>) -> (StatusCode, Value) {
        let mut req = self
            .http
            .request(method, format!("{}{path}", self.base))
            .bearer_auth(OWNER);
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

    async fn get(&self, path: &str) -> Value {
        let (status, v) = self.call(Method::GET, path, None).await;
        assert_eq!(status, StatusCode::OK, "GET {path}: {v}");
        v
    }

    async fn post(&self, path: &str, body: Value) -> (StatusCode, Value) {
        self.call(Method::POST, path, Some(body)).await
    }

    /// What a refusal must leave alone: installed plugins and trusted keys.
    async fn installed_state(&self) -> (Value, Value) {
        (
            self.get("/api/v1/plugins").await,
            self.get("/api/v1/registry/trust").await,
        )
    }

    /// POSTs, expects a refusal with `status` and `code`, and checks that
    /// nothing installed or trusted changed. Returns the problem.
    async fn refused(&self, path: &str, body: Value, status: StatusCode, code: &str) -> Value {
        let before = self.installed_state().await;
        let (got, problem) = self.post(path, body.clone()).await;
        assert_eq!(got, status, "POST {path} {body}: {problem}");
        assert_eq!(problem["code"], code, "{problem}");
        assert_eq!(self.installed_state().await, before, "nothing changed");
        problem
    }

    /// Runs `playbook` now and waits for the run to end; the run detail.
    async fn run(&self, playbook: &str) -> Value {
        let (status, run) = self
            .post(&format!("/api/v1/playbooks/{playbook}/runs"), json!({}))
            .await;
        assert_eq!(status, StatusCode::CREATED, "{run}");
        let id = run["id"].as_str().unwrap().to_owned();
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let run = self.get(&format!("/api/v1/runs/{id}")).await;
            if run["status"] != "running" {
                return run;
            }
            assert!(Instant::now() < deadline, "run never ended: {run}");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    async fn stop(self) {
        self.stop.send(true).unwrap();
        self.task.await.unwrap().unwrap();
    }
}

fn bytes(package: &str) -> Vec<u8> {
    std::fs::read(steward_tests::component(package)).unwrap()
}

/// A publisher owning `namespace` (signed uploads only) with a registered
/// key: its client and the key.
async fn signing_vendor(registry: &Registry, namespace: &str) -> (RegistryClient, SecretKey) {
    let token = registry.add_publisher(namespace, &[namespace], false);
    let vendor = registry.client(Some(&token));
    let key = SecretKey::generate();
    vendor.register_key(&key.public_key()).await.unwrap();
    (vendor, key)
}

/// Publishes the `vendor-demo` test component built as `version` under
/// `module`, asking for the capabilities it imports, signed by `key`.
async fn publish(
    vendor: &RegistryClient,
    key: &SecretKey,
    module: &str,
    version: &str,
) -> VersionRecord {
    let bytes = bytes(&format!("guest-vendor-demo-{}", version.replace('.', "-")));
    let capabilities = steward_contract::imports::inspect(&bytes)
        .unwrap()
        .capabilities;
    let capabilities: Vec<&str> = capabilities.iter().map(String::as_str).collect();
    vendor
        .publish(
            bytes,
            &manifest(module, version, &capabilities),
            Some(key),
            |_, _| {},
        )
        .await
        .unwrap()
}

/// A tenant with one simulated device; its id.
async fn tenant(api: &Steward) -> String {
    let (status, t) = api
        .post(
            "/api/v1/tenants",
            json!({ "name": "acme-client", "tier": "managed" }),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{t}");
    let t = t["id"].as_str().unwrap().to_owned();
    let (status, d) = api
        .post(
            "/api/v1/devices",
            json!({ "tenant_id": t, "name": "ws-01",
                    "facts": simulated_facts(&fixture("ws-01", &t)) }),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{d}");
    t
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn publish_resolve_install_grant_run_and_upgrade() {
    let registry = Registry::start();
    let (vendor, key) = signing_vendor(&registry, "acme").await;
    let v1 = publish(&vendor, &key, "acme/vendor-demo", "1.0.0").await;

    let api = steward(&registry.url, "").await;

    // The offer: the version ^1 resolves to, its signer (unknown here, so
    // trusted on first use), nothing to grant.
    let offer = api
        .get("/api/v1/registry/offer?module=acme/vendor-demo@%5E1")
        .await;
    assert_eq!(offer["version"], "1.0.0");
    assert_eq!(offer["digest"], v1.digest.to_string());
    assert_eq!(offer["signed_by"], key.key_id());
    assert_eq!(offer["trust"], "first-use");
    assert_eq!(offer["capabilities"], json!([]));

    let (status, installed) = api
        .post(
            "/api/v1/plugins/from-registry",
            json!({ "module": "acme/vendor-demo@^1" }),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{installed}");
    assert_eq!(installed["plugin"], "vendor-demo");
    assert_eq!(installed["version"], "1.0.0");
    assert_eq!(installed["digest"], v1.digest.to_string());
    assert_eq!(installed["source"]["module"], "acme/vendor-demo");
    assert_eq!(installed["source"]["requirement"], "^1");
    assert_eq!(installed["source"]["signed_by"], key.key_id());
    let trust = api.get("/api/v1/registry/trust").await;
    assert_eq!(trust.as_array().unwrap().len(), 1, "{trust}");
    assert_eq!(trust[0]["namespace"], "acme");
    assert_eq!(trust[0]["key_id"], key.key_id());
    assert_eq!(trust[0]["how"], "first-use");
    let audit = api.get("/api/v1/audit?limit=50").await;
    assert!(
        audit["items"]
            .as_array()
            .unwrap()
            .iter()
            .any(|e| e["action"] == "registry.trust"
                && e["detail"]["how"] == "first-use"
                && e["detail"]["key-id"] == key.key_id().as_str()),
        "{audit}"
    );

    // A run pins the version each step resolves to, and runs those bytes.
    let t = tenant(&api).await;
    let (status, playbook) = api
        .post(
            "/api/v1/playbooks",
            json!({ "tenant_id": t, "name": "vendor check",
                    "steps": [{ "plugin": "vendor-demo@^1" }], "target": {} }),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{playbook}");
    let playbook = playbook["id"].as_str().unwrap().to_owned();
    let run = api.run(&playbook).await;
    assert_eq!(run["status"], "succeeded", "{run}");
    assert_eq!(
        run["pins"],
        json!([{ "plugin": "vendor-demo", "version": "1.0.0", "digest": v1.digest.to_string() }])
    );
    let id = run["id"].as_str().unwrap();
    let jobs = api.get(&format!("/api/v1/runs/{id}/jobs")).await["items"].clone();
    assert_eq!(jobs[0]["plugin_digest"], v1.digest.to_string(), "{jobs}");
    let findings = api.get(&format!("/api/v1/runs/{id}/findings")).await;
    assert!(
        findings.to_string().contains("vendor-demo 1.0.0 ran"),
        "{findings}"
    );

    // 1.1.0 asks for nothing new: the upgrade keeps the grants, no new
    // approval (the default policy is automatic).
    let v11 = publish(&vendor, &key, "acme/vendor-demo", "1.1.0").await;
    let (status, up) = api
        .post("/api/v1/plugins/vendor-demo/upgrade", json!({}))
        .await;
    assert_eq!(status, StatusCode::OK, "{up}");
    assert_eq!(up["changed"], true);
    assert_eq!(up["from"]["version"], "1.0.0");
    assert_eq!(up["to"]["version"], "1.1.0");
    assert_eq!(up["to"]["digest"], v11.digest.to_string());
    let (_, again) = api
        .post("/api/v1/plugins/vendor-demo/upgrade", json!({}))
        .await;
    assert_eq!(again["changed"], false, "{again}");
    let run = api.run(&playbook).await;
    assert_eq!(run["pins"][0]["version"], "1.1.0", "{run}");

    // 2.0.0 asks for `tickets`: refused until granted, then installed.
    let v2 = publish(&vendor, &key, "acme/vendor-demo", "2.0.0").await;
    let problem = api
        .refused(
            "/api/v1/plugins/vendor-demo/upgrade",
            json!({ "requirement": "^2" }),
            StatusCode::UNPROCESSABLE_ENTITY,
            "grants-required",
        )
        .await;
    assert_eq!(problem["field"], "grants");
    assert!(
        problem["detail"].as_str().unwrap().contains("tickets"),
        "{problem}"
    );
    let (status, up) = api
        .post(
            "/api/v1/plugins/vendor-demo/upgrade",
            json!({ "requirement": "^2", "grants": ["tickets=vendor"] }),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{up}");
    assert_eq!(up["to"]["version"], "2.0.0");
    assert_eq!(up["to"]["digest"], v2.digest.to_string());
    assert_eq!(up["to"]["grants"], json!(["tickets=vendor"]));

    // The playbook still asks for ^1: its runs stay on 1.1.0.
    let run = api.run(&playbook).await;
    assert_eq!(run["pins"][0]["version"], "1.1.0", "{run}");

    // Yanked: 1.0.0 stays installed and runs for a step pinned to it, but
    // a new install cannot choose it.
    vendor
        .yank("acme", "vendor-demo", &"1.0.0".parse().unwrap())
        .await
        .unwrap();
    let (status, pinned) = api
        .post(
            "/api/v1/playbooks",
            json!({ "tenant_id": t, "name": "pinned to 1.0.0",
                    "steps": [{ "plugin": "vendor-demo", "version": "=1.0.0" }], "target": {} }),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{pinned}");
    let run = api.run(pinned["id"].as_str().unwrap()).await;
    assert_eq!(run["status"], "succeeded", "{run}");
    assert_eq!(run["pins"][0]["digest"], v1.digest.to_string());
    api.refused(
        "/api/v1/plugins/from-registry",
        json!({ "module": "acme/vendor-demo@=1.0.0" }),
        StatusCode::NOT_FOUND,
        "no-match",
    )
    .await;

    // The audit trail names the admin for each install and upgrade.
    let audit = api.get("/api/v1/audit?limit=50").await;
    let actions: Vec<&str> = audit["items"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["actor"] == "user:owner")
        .filter_map(|e| e["action"].as_str())
        .collect();
    assert!(
        actions.contains(&"plugin.install-from-registry"),
        "{actions:?}"
    );
    assert_eq!(
        actions.iter().filter(|a| **a == "plugin.upgrade").count(),
        2
    );

    // Revoking the key does not reopen trust on first use: the namespace
    // had a key, so its modules are refused until one is trusted again.
    let (status, _) = api
        .call(
            Method::DELETE,
            &format!("/api/v1/registry/trust/acme/{}", key.key_id()),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    let offer = api
        .get("/api/v1/registry/offer?module=acme/vendor-demo@%5E1")
        .await;
    assert_eq!(offer["trust"], "untrusted", "{offer}");
    api.refused(
        "/api/v1/plugins/from-registry",
        json!({ "module": "acme/vendor-demo@^1" }),
        StatusCode::UNPROCESSABLE_ENTITY,
        "untrusted-key",
    )
    .await;
    api.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refusals_store_nothing() {
    let registry = Registry::start();
    let (vendor, key) = signing_vendor(&registry, "acme").await;
    let dev = registry.add_publisher("dev", &["dev"], true);
    let v1 = bytes("guest-vendor-demo-1-0-0");
    let v11 = bytes("guest-vendor-demo-1-1-0");

    // The registry refuses, and keeps nothing: publishing into another
    // publisher's namespace, publishing an existing version again, a
    // manifest whose capabilities are not the component's imports.
    let published = publish(&vendor, &key, "acme/vendor-demo", "1.0.0").await;
    let refusals = [
        (manifest("dev/vendor-demo", "1.0.0", &[]), v1.clone()),
        (manifest("acme/vendor-demo", "1.0.0", &[]), v11.clone()),
        (
            manifest("acme/vendor-demo", "1.2.0", &["tickets"]),
            v11.clone(),
        ),
    ];
    for (m, bytes) in refusals {
        let e = vendor
            .publish(bytes, &m, Some(&key), |_, _| {})
            .await
            .expect_err("refused");
        assert!(e.code().is_some(), "a refusal with a code: {e}");
    }
    let versions = vendor.versions("acme", "vendor-demo").await.unwrap();
    assert_eq!(versions.len(), 1, "only 1.0.0 was kept");

    // Explicit trust only: the signer is not trusted.
    let api = steward(&registry.url, "trust-on-first-use = false\n").await;
    let offer = api
        .get("/api/v1/registry/offer?module=acme/vendor-demo")
        .await;
    assert_eq!(offer["trust"], "untrusted");
    api.refused(
        "/api/v1/plugins/from-registry",
        json!({ "module": "acme/vendor-demo@^1" }),
        StatusCode::UNPROCESSABLE_ENTITY,
        "untrusted-key",
    )
    .await;

    // Trusting another key of the namespace does not help…
    let stranger = SecretKey::generate();
    let (status, _) = api
        .post(
            "/api/v1/registry/trust",
            json!({ "namespace": "acme", "public_key": stranger.public_key() }),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED);
    api.refused(
        "/api/v1/plugins/from-registry",
        json!({ "module": "acme/vendor-demo@^1" }),
        StatusCode::UNPROCESSABLE_ENTITY,
        "untrusted-key",
    )
    .await;
    // …nor does a malformed key.
    api.refused(
        "/api/v1/registry/trust",
        json!({ "namespace": "acme", "public_key": "not a key" }),
        StatusCode::UNPROCESSABLE_ENTITY,
        "invalid",
    )
    .await;

    // Tampered bytes on the registry's disk: the digest does not match.
    let (status, _) = api
        .post(
            "/api/v1/registry/trust",
            json!({ "namespace": "acme", "public_key": key.public_key() }),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED);
    let blob = registry.blob_path(&published.digest);
    let original = std::fs::read(&blob).unwrap();
    let mut tampered = original.clone();
    let last = tampered.len() - 1;
    tampered[last] ^= 0xff;
    std::fs::write(&blob, &tampered).unwrap();
    api.refused(
        "/api/v1/plugins/from-registry",
        json!({ "module": "acme/vendor-demo@^1" }),
        StatusCode::BAD_GATEWAY,
        "digest-mismatch",
    )
    .await;
    std::fs::write(&blob, &original).unwrap();

    // Unsigned, from a namespace this server does not allow unsigned.
    registry
        .client(Some(&dev))
        .publish(
            v1.clone(),
            &manifest("dev/vendor-demo", "1.0.0", &[]),
            None,
            |_, _| {},
        )
        .await
        .unwrap();
    let offer = api
        .get("/api/v1/registry/offer?module=dev/vendor-demo")
        .await;
    assert_eq!(offer["trust"], "unsigned");
    api.refused(
        "/api/v1/plugins/from-registry",
        json!({ "module": "dev/vendor-demo" }),
        StatusCode::UNPROCESSABLE_ENTITY,
        "unsigned-module",
    )
    .await;

    // Capabilities requested but not granted; bad grants; bad requests.
    publish(&vendor, &key, "acme/vendor-demo", "2.0.0").await;
    let problem = api
        .refused(
            "/api/v1/plugins/from-registry",
            json!({ "module": "acme/vendor-demo@^2", "grants": ["packages"] }),
            StatusCode::UNPROCESSABLE_ENTITY,
            "grants-required",
        )
        .await;
    assert_eq!(problem["field"], "grants");
    api.refused(
        "/api/v1/plugins/from-registry",
        json!({ "module": "acme/vendor-demo@^2", "grants": ["no-such-capability"] }),
        StatusCode::UNPROCESSABLE_ENTITY,
        "invalid",
    )
    .await;
    for (body, field) in [
        (json!({ "module": "vendor-demo@^1" }), "module"),
        (json!({ "module": "acme/vendor-demo@one" }), "module"),
        (
            json!({ "module": "acme/vendor-demo", "grant": [] }),
            "grant",
        ),
    ] {
        let before = api.installed_state().await;
        let (status, problem) = api.post("/api/v1/plugins/from-registry", body).await;
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{problem}");
        assert_eq!(problem["field"], field, "{problem}");
        assert_eq!(api.installed_state().await, before);
    }
    api.refused(
        "/api/v1/plugins/from-registry",
        json!({ "module": "acme/no-such-module" }),
        StatusCode::NOT_FOUND,
        "not-found",
    )
    .await;
    // Upgrading a plugin that is not installed, or did not come from a
    // registry.
    api.refused(
        "/api/v1/plugins/vendor-demo/upgrade",
        json!({}),
        StatusCode::NOT_FOUND,
        "not-found",
    )
    .await;
    use base64::Engine as _;
    let wasm = base64::engine::general_purpose::STANDARD.encode(bytes("guest-trivial"));
    let (status, uploaded) = api
        .post("/api/v1/plugins", json!({ "wasm": wasm, "grants": [] }))
        .await;
    assert_eq!(status, StatusCode::CREATED, "{uploaded}");
    api.refused(
        "/api/v1/plugins/trivial/upgrade",
        json!({}),
        StatusCode::CONFLICT,
        "not-from-registry",
    )
    .await;

    // Each refused install is in the audit trail, with why.
    let audit = api.get("/api/v1/audit?limit=200").await;
    let refused: Vec<&str> = audit["items"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["action"] == "plugin.install-from-registry" && e["outcome"] == "refused")
        .filter_map(|e| e["detail"]["code"].as_str())
        .collect();
    for code in [
        "untrusted-key",
        "digest-mismatch",
        "unsigned-module",
        "grants-required",
    ] {
        assert!(refused.contains(&code), "{code} in {refused:?}");
    }

    // After all that, the right install still works, through the CLI.
    let out = Command::new(env!("CARGO_BIN_EXE_steward"))
        .args([
            "plugins",
            "install-from",
            "acme/vendor-demo@^2",
            "--grant-requested",
        ])
        .env("STEWARD_URL", &api.base)
        .env("STEWARD_TOKEN", OWNER)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("capabilities: tickets"), "{stdout}");
    assert!(stdout.contains(&key.key_id()), "{stdout}");
    let plugins = api.get("/api/v1/plugins").await;
    let demo: Vec<&Value> = plugins
        .as_array()
        .unwrap()
        .iter()
        .filter(|p| p["plugin"] == "vendor-demo")
        .collect();
    assert_eq!(demo.len(), 1, "{plugins}");
    assert_eq!(demo[0]["version"], "2.0.0");
    assert_eq!(demo[0]["grants"], json!(["tickets"]));
    api.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn automatic_upgrades_stay_within_the_grants() {
    let registry = Registry::start();
    let (vendor, key) = signing_vendor(&registry, "acme").await;
    publish(&vendor, &key, "acme/vendor-demo", "1.0.0").await;
    let api = steward(&registry.url, "check-every-seconds = 1\n").await;
    let (status, installed) = api
        .post(
            "/api/v1/plugins/from-registry",
            json!({ "module": "acme/vendor-demo" }),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{installed}");
    assert_eq!(installed["source"]["requirement"], "*");

    // 1.1.0 asks for nothing new: the server installs it by itself.
    let v11 = publish(&vendor, &key, "acme/vendor-demo", "1.1.0").await;
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let plugins = api.get("/api/v1/plugins").await;
        if plugins
            .as_array()
            .unwrap()
            .iter()
            .any(|p| p["digest"] == v11.digest.to_string())
        {
            break;
        }
        assert!(Instant::now() < deadline, "never upgraded: {plugins}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let audit = api.get("/api/v1/audit?limit=50").await;
    assert!(
        audit["items"]
            .as_array()
            .unwrap()
            .iter()
            .any(|e| e["actor"] == "system:auto-upgrade" && e["detail"]["to"] == "1.1.0"),
        "{audit}"
    );

    // 2.0.0 asks for `tickets`: several checks later it is still not
    // installed; it waits for an admin to grant it.
    publish(&vendor, &key, "acme/vendor-demo", "2.0.0").await;
    tokio::time::sleep(Duration::from_millis(3500)).await;
    let plugins = api.get("/api/v1/plugins").await;
    let versions: Vec<&str> = plugins
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|p| p["version"].as_str())
        .collect();
    assert_eq!(versions, ["1.0.0", "1.1.0"], "{plugins}");
    api.stop().await;
}

/// A registry (or anything between it and the server) that answers a
/// request for `acme/vendor-demo` with `evil/vendor-demo`, a module of a
/// namespace nobody trusts yet: a proxy in front of the real registry
/// that rewrites the namespace of resolve requests.
async fn forging_proxy(upstream: String) -> String {
    use axum::body::Bytes;
    use axum::http::{StatusCode as Status, Uri};

    let http = reqwest::Client::new();
    let app = axum::Router::new().fallback(move |uri: Uri| {
        let (http, upstream) = (http.clone(), upstream.clone());
        async move {
            let path = uri.to_string().replace("/modules/acme/", "/modules/evil/");
            let resp = http.get(format!("{upstream}{path}")).send().await.unwrap();
            let status = Status::from_u16(resp.status().as_u16()).unwrap();
            let body: Bytes = resp.bytes().await.unwrap();
            (status, body)
        }
    });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await });
    format!("http://{addr}")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_registry_cannot_substitute_another_module() {
    let registry = Registry::start();
    let (vendor, key) = signing_vendor(&registry, "evil").await;
    publish(&vendor, &key, "evil/vendor-demo", "1.0.0").await;

    let proxy = forging_proxy(registry.url.clone()).await;
    let api = steward(&proxy, "").await;
    let problem = api
        .refused(
            "/api/v1/plugins/from-registry",
            json!({ "module": "acme/vendor-demo@^1" }),
            StatusCode::BAD_GATEWAY,
            "registry-wrong-answer",
        )
        .await;
    assert!(
        problem["detail"]
            .as_str()
            .unwrap()
            .contains("evil/vendor-demo"),
        "{problem}"
    );
    assert_eq!(api.get("/api/v1/registry/trust").await, json!([]));
    api.stop().await;
}

/// A console session for `token` over plain HTTP, as a browser gets one:
/// the sign-in form's one-time cookie and field, then the session cookie.
async fn console_session(base: &str, token: &str) -> (reqwest::Client, String) {
    let http = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let form = http.get(format!("{base}/login")).send().await.unwrap();
    let nonce = cookie_value(&form, "steward_login");
    let session = http
        .post(format!("{base}/login"))
        .header("cookie", format!("steward_login={nonce}"))
        .form(&[
            ("token", token),
            ("csrf", nonce.as_str()),
            ("next", "/plugins"),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(session.status(), StatusCode::SEE_OTHER);
    let cookie = format!(
        "steward_session={}",
        cookie_value(&session, "steward_session")
    );
    (http, cookie)
}

fn cookie_value(resp: &reqwest::Response, name: &str) -> String {
    resp.headers()
        .get_all("set-cookie")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .find_map(|v| {
            v.strip_prefix(&format!("{name}="))?
                .split(';')
                .next()
                .map(str::to_owned)
        })
        .unwrap_or_else(|| panic!("no {name} cookie"))
}

/// The value of the first `name="csrf"` field of a page.
fn csrf_of(page: &str) -> String {
    let at = page.find(r#"name="csrf" value=""#).expect("a CSRF field");
    let rest = &page[at + r#"name="csrf" value=""#.len()..];
    rest[..rest.find('"').unwrap()].to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_console_shows_offers_and_the_capabilities_an_upgrade_adds() {
    let registry = Registry::start();
    let (vendor, key) = signing_vendor(&registry, "acme").await;
    publish(&vendor, &key, "acme/vendor-demo", "1.0.0").await;
    let api = steward(&registry.url, "").await;
    let (status, installed) = api
        .post(
            "/api/v1/plugins/from-registry",
            json!({ "module": "acme/vendor-demo@^1" }),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{installed}");
    publish(&vendor, &key, "acme/vendor-demo", "1.1.0").await;
    publish(&vendor, &key, "acme/vendor-demo", "2.0.0").await;

    let (http, cookie) = console_session(&api.base, OWNER).await;
    let get = |path: &str| {
        let req = http
            .get(format!("{}{path}", api.base))
            .header("cookie", &cookie);
        async move {
            let resp = req.send().await.unwrap();
            (resp.status(), resp.text().await.unwrap())
        }
    };
    let (status, page) = get("/plugins").await;
    assert_eq!(status, StatusCode::OK);
    // Within ^1: 1.1.0, nothing new; the newest: 2.0.0, `tickets` new.
    assert!(page.contains("Upgrade to 1.1.0"), "{page}");
    assert!(page.contains("Upgrade to 2.0.0"), "{page}");
    assert!(page.contains("tickets (new)"), "{page}");
    assert_eq!(page.matches("(new)").count(), 1, "{page}");
    let csrf = csrf_of(&page);
    let post = |form: Vec<(&'static str, String)>| {
        let req = http
            .post(format!("{}/plugins/vendor-demo/upgrade", api.base))
            .header("cookie", &cookie)
            .form(&form);
        async move {
            let resp = req.send().await.unwrap();
            (resp.status(), resp.text().await.unwrap())
        }
    };
    // Without its CSRF token: refused, nothing installed.
    let (status, _) = post(vec![("requirement", "^2".into())]).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    // To ^2 without granting `tickets`: the API's refusal, as a page.
    let (status, refused) = post(vec![("csrf", csrf.clone()), ("requirement", "^2".into())]).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{refused}");
    assert!(refused.contains("tickets"), "{refused}");
    let (_, plugins) = api.call(Method::GET, "/api/v1/plugins", None).await;
    assert_eq!(
        plugins.as_array().unwrap().len(),
        1,
        "nothing installed: {plugins}"
    );
    // Granting it narrowed, as the form's field allows.
    let (status, _) = post(vec![
        ("csrf", csrf),
        ("requirement", "^2".into()),
        ("grant-0", "tickets=vendor".into()),
    ])
    .await;
    assert_eq!(status, StatusCode::SEE_OTHER);
    let (_, plugins) = api.call(Method::GET, "/api/v1/plugins", None).await;
    let newest = plugins.as_array().unwrap().last().unwrap().clone();
    assert_eq!(newest["version"], "2.0.0", "{plugins}");
    assert_eq!(newest["grants"], json!(["tickets=vendor"]));
    // Up to date within ^2 now: the 2.0.0 offer shows as installed.
    let (_, page) = get("/plugins").await;
    assert!(!page.contains("Upgrade to 2.0.0"), "{page}");
    api.stop().await;
}
