//! A real `steward-registry` process per test, on port 0 with a temp data
//! dir, on SQLite or on a fresh database of a throwaway PostgreSQL server.
//!
//! The PostgreSQL server is `steward_tests::postgres::server()`.

#![allow(dead_code)]

pub mod s3;

use std::io::BufRead as _;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use steward_contract::Digest;
use steward_contract::Manifest;
use steward_registry::api::Problem;
use steward_registry::client::{ClientError, RegistryClient};

/// Which database a test registry uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Db {
    /// `sqlite://<data-dir>/registry.db` (the default).
    Sqlite,
    /// A new database on the test PostgreSQL server.
    Postgres,
}

/// A running registry.
pub struct Registry {
    /// `http://127.0.0.1:PORT`.
    pub url: String,
    /// Its data directory.
    pub data_dir: PathBuf,
    /// The `--database` given, if any.
    pub database: Option<String>,
    child: Child,
    _dir: tempfile::TempDir,
}

impl Registry {
    /// Starts a registry with default limits.
    pub async fn start(db: Db) -> Self {
        Self::start_with(db, &[]).await
    }

    /// Starts a registry with extra `serve` arguments.
    pub async fn start_with(db: Db, extra: &[&str]) -> Self {
        Self::start_configured(db, extra, &[]).await
    }

    /// Starts a registry with extra `serve` arguments and environment
    /// variables. Of the environment inherited, the registry's own
    /// settings and every `AWS_*` variable are left out.
    pub async fn start_configured(db: Db, extra: &[&str], env: &[(&str, String)]) -> Self {
        let dir = tempfile::tempdir().expect("temp dir");
        let data_dir = dir.path().join("data");
        let database = match db {
            Db::Sqlite => None,
            Db::Postgres => Some(postgres_database().await),
        };
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_steward-registry"));
        cmd.args(["serve", "--listen", "127.0.0.1:0"])
            .arg("--data-dir")
            .arg(&data_dir)
            .args(extra)
            .env_remove("STEWARD_REGISTRY_DATABASE")
            .env_remove("STEWARD_REGISTRY_MAX_MODULE_BYTES")
            .env("STEWARD_REGISTRY_LOG", "warn")
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit());
        for (name, _) in std::env::vars_os() {
            let name = name.to_string_lossy();
            if name.starts_with("AWS_")
                || name.starts_with("STEWARD_REGISTRY_BLOBS")
                || name.starts_with("STEWARD_REGISTRY_S3_")
            {
                cmd.env_remove(name.as_ref());
            }
        }
        cmd.envs(env.iter().map(|(name, value)| (name, value)));
        if let Some(url) = &database {
            cmd.args(["--database", url]);
        }
        let mut child = cmd.spawn().expect("start steward-registry serve");
        let stdout = child.stdout.take().unwrap();
        let url = tokio::task::spawn_blocking(move || {
            let mut lines = std::io::BufReader::new(stdout).lines();
            let line = lines
                .next()
                .expect("serve prints its address")
                .expect("UTF-8 output");
            line.strip_prefix("steward-registry: listening on ")
                .unwrap_or_else(|| panic!("unexpected first line: {line}"))
                .to_owned()
        })
        .await
        .unwrap();
        Registry {
            url,
            data_dir,
            database,
            child,
            _dir: dir,
        }
    }

    /// Creates a publisher with `steward-registry publisher add` and
    /// returns its token.
    pub fn add_publisher(&self, name: &str, namespaces: &[&str], unsigned: bool) -> String {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_steward-registry"));
        cmd.args(["publisher", "add", name])
            .arg("--data-dir")
            .arg(&self.data_dir)
            .env("STEWARD_REGISTRY_LOG", "warn")
            .env_remove("STEWARD_REGISTRY_DATABASE");
        for ns in namespaces {
            cmd.args(["--namespace", ns]);
        }
        if unsigned {
            cmd.arg("--unsigned-namespace");
        }
        if let Some(url) = &self.database {
            cmd.args(["--database", url]);
        }
        let out = cmd.output().expect("run publisher add");
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success(),
            "publisher add failed: {stdout}{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let token = stdout
            .lines()
            .find_map(|l| {
                l.strip_prefix("steward-registry: publisher token (shown once, keep it): ")
            })
            .unwrap_or_else(|| panic!("no token in: {stdout}"))
            .to_owned();
        assert!(
            token.starts_with("stwr_") && token.len() == 5 + 64,
            "{token}"
        );
        token
    }

    /// The process id of the server.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// A client with `token`.
    pub fn client(&self, token: Option<&str>) -> RegistryClient {
        RegistryClient::new(&self.url, token.map(str::to_owned)).unwrap()
    }

    /// The blob directory's entries, sorted (temporary uploads included).
    pub fn blob_files(&self) -> Vec<String> {
        let dir = self.data_dir.join("blobs").join("sha256");
        let mut names: Vec<String> = std::fs::read_dir(&dir)
            .unwrap_or_else(|e| panic!("read {}: {e}", dir.display()))
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        names
    }

    /// Sends SIGTERM and waits for the process.
    pub fn terminate(mut self) -> std::process::ExitStatus {
        let _ = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
        self.child.wait().expect("wait for steward-registry")
    }
}

impl Drop for Registry {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The bytes of a built component.
pub fn component(package: &str) -> Vec<u8> {
    std::fs::read(component_path(package)).expect("read a built component")
}

/// The path of a built component.
pub fn component_path(package: &str) -> PathBuf {
    steward_tests::component(package)
}

/// `n` as unsigned LEB128.
pub fn leb128(mut n: u64, out: &mut Vec<u8>) {
    loop {
        let byte = (n & 0x7f) as u8;
        n >>= 7;
        if n == 0 {
            out.push(byte);
            return;
        }
        out.push(byte | 0x80);
    }
}

/// A real plugin component (`guest-trivial`, no capabilities) made about
/// `pad` bytes larger by one more nested core module holding a custom
/// section of `pad` bytes, which the import check skips without
/// buffering, as it does a plugin's own code.
pub fn padded_component(pad: u64) -> Vec<u8> {
    let mut core = b"\0asm\x01\0\0\0".to_vec();
    core.push(0); // a custom section
    let name = b"padding";
    let mut body = Vec::new();
    leb128(name.len() as u64, &mut body);
    body.extend_from_slice(name);
    leb128(pad + body.len() as u64, &mut core);
    core.extend_from_slice(&body);
    core.resize(core.len() + pad as usize, 0x5a);
    let mut bytes = component("guest-trivial");
    bytes.push(1); // a core module section
    leb128(core.len() as u64, &mut bytes);
    bytes.extend_from_slice(&core);
    bytes
}

/// The high-water mark of a process's resident memory, in bytes.
pub fn peak_rss(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let kib: u64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().strip_suffix("kB"))
        .and_then(|v| v.trim().parse().ok())
        .expect("VmHWM in /proc/PID/status");
    kib * 1024
}

/// A valid manifest for `name` (`ns/module`) at `version`.
pub fn manifest(name: &str, version: &str, capabilities: &[&str]) -> Manifest {
    Manifest {
        name: name.into(),
        version: version.parse().unwrap(),
        description: format!("The {name} module, for tests"),
        license: "Apache-2.0".into(),
        homepage: None,
        wit: "steward:plugin@0.2.0".into(),
        capabilities: capabilities.iter().map(|s| s.to_string()).collect(),
    }
}

/// A `PUT` built by hand, for requests the client would never send.
pub struct RawPublish<'a> {
    pub path: &'a str,
    pub token: &'a str,
    pub manifest_json: Vec<u8>,
    pub signature: Option<(String, String)>,
    pub body: Vec<u8>,
}

/// Sends a hand-built publish and returns the status and problem.
pub async fn raw_publish(registry: &Registry, req: RawPublish<'_>) -> (u16, Problem) {
    let mut builder = reqwest::Client::new()
        .put(format!("{}/v1/modules/{}", registry.url, req.path))
        .bearer_auth(req.token)
        .header("content-type", "application/wasm")
        .header("steward-manifest", BASE64.encode(&req.manifest_json));
    if let Some((signature, key_id)) = req.signature {
        builder = builder
            .header("steward-signature", signature)
            .header("steward-key-id", key_id);
    }
    let response = builder.body(req.body).send().await.expect("send");
    let status = response.status().as_u16();
    let content_type = response
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    let text = response.text().await.unwrap();
    if status < 300 {
        panic!("the raw publish was accepted: {text}");
    }
    assert_eq!(content_type, "application/problem+json", "{text}");
    (
        status,
        serde_json::from_str(&text).expect("a problem document"),
    )
}

/// A new, empty database on the test PostgreSQL server.
pub async fn postgres_database() -> String {
    static NEXT: AtomicU32 = AtomicU32::new(0);
    let server = steward_tests::postgres::server();
    let name = format!(
        "registry_{}_{}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    );
    sqlx::any::install_default_drivers();
    let mut admin = <sqlx::AnyConnection as sqlx::Connection>::connect(server)
        .await
        .expect("connect to the test PostgreSQL server");
    sqlx::Executor::execute(&mut admin, format!("CREATE DATABASE {name}").as_str())
        .await
        .expect("create a test database");
    steward_tests::postgres::with_database(server, &name)
}

/// The problem code of a refusal.
pub fn code(err: &ClientError) -> &str {
    err.code()
        .unwrap_or_else(|| panic!("expected a refusal with a code, got {err}"))
}

/// [`padded_component`] with `pad` bytes, written to `large.wasm` in `dir`:
/// the file and its digest (the bytes are not kept in memory).
pub fn padded_component_file(pad: u64, dir: &std::path::Path) -> (PathBuf, Digest) {
    let bytes = padded_component(pad);
    let file = dir.join("large.wasm");
    std::fs::write(&file, &bytes).unwrap();
    (file, Digest::of(&bytes))
}

/// Downloads `digest` from `registry` and checks what arrives, then that
/// the registry process's resident memory stayed below `pad` (the
/// module's padding) all along; `what` names the figure printed.
pub async fn assert_streamed_within(registry: &Registry, digest: &Digest, pad: u64, what: &str) {
    let downloaded = registry
        .client(None)
        .download(digest, 104_857_600)
        .await
        .unwrap();
    assert_eq!(Digest::of(&downloaded), *digest);
    drop(downloaded);

    let peak = peak_rss(registry.pid());
    eprintln!("{what}: {} MiB", peak >> 20);
    assert!(
        peak < pad,
        "the registry's resident memory peaked at {} MiB for a {} MiB module",
        peak >> 20,
        pad >> 20
    );
}
