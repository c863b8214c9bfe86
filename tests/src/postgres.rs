//! The test PostgreSQL server shared by the host's and the registry's
//! tests (and the benchmarks).
//!
//! The server is `STEWARD_TEST_POSTGRES_URL` when set (CI starts one with
//! `.ci/postgres start`). Otherwise the first caller starts a throwaway
//! cluster for this test process with `.ci/postgres start` in a temp dir on
//! a free loopback port, once (a `OnceLock`). Statics are never dropped, so
//! no destructor could stop it; instead the process spawns `.ci/postgres
//! guard DIR` with a pipe as its standard input and keeps the write end
//! open for its whole life (in the static). When the process ends, however
//! it ends (success, panic, abort, `kill -9`), the kernel closes the pipe,
//! the guard reads end of file and stops the cluster (`pg_ctl -m
//! immediate`) and removes its directory. The pipe is close-on-exec, so no
//! other child keeps it open.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::{Mutex, OnceLock};

/// The cluster script (`.ci/postgres` once in the project).
pub const PG_SCRIPT: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../.ci/postgres");

/// The URL of the test server: from the environment, or a cluster started
/// for this process.
pub fn server() -> &'static str {
    static SERVER: OnceLock<String> = OnceLock::new();
    SERVER.get_or_init(|| {
        if let Ok(url) = std::env::var("STEWARD_TEST_POSTGRES_URL") {
            return url;
        }
        start_cluster()
    })
}

/// `url` with its database name replaced by `name`.
pub fn with_database(url: &str, name: &str) -> String {
    let (base, query) = url
        .split_once('?')
        .map_or((url, None), |(b, q)| (b, Some(q)));
    let slash = base.rfind('/').expect("a database URL has a path");
    let mut out = format!("{}/{name}", &base[..slash]);
    if let Some(query) = query {
        out.push('?');
        out.push_str(query);
    }
    out
}

/// The guards, with the write ends of their standard input: kept (never
/// waited for, never dropped) until the process exits. One per attempted
/// start, so a failed one is cleaned up too.
static GUARDS: Mutex<Vec<Child>> = Mutex::new(Vec::new());

fn start_cluster() -> String {
    start_cluster_named("steward-pg").1
}

/// Starts a cluster in a temp dir named from `prefix`, guarded; returns
/// the dir and the URL. The free port found is only free until someone
/// takes it: tries again on another, three times.
fn start_cluster_named(prefix: &str) -> (PathBuf, String) {
    for attempt in 1..=3 {
        if let Some(started) = try_start_cluster(prefix, attempt) {
            return started;
        }
    }
    panic!(".ci/postgres start failed three times; is Debian's postgresql package installed?");
}

fn try_start_cluster(prefix: &str, attempt: u32) -> Option<(PathBuf, String)> {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("find a free loopback port")
        .port();
    let dir: PathBuf =
        std::env::temp_dir().join(format!("{prefix}-{}-{port}-{attempt}", std::process::id()));
    // The guard first, so even a failed start is cleaned up.
    let guard = Command::new(PG_SCRIPT)
        .arg("guard")
        .arg(&dir)
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .spawn()
        .expect("spawn the PostgreSQL guard");
    GUARDS
        .lock()
        .unwrap_or_else(|poison| poison.into_inner())
        .push(guard);
    let out = Command::new(PG_SCRIPT)
        .arg("start")
        .arg(&dir)
        .arg(port.to_string())
        .stderr(Stdio::inherit())
        .output()
        .expect("run .ci/postgres start");
    if !out.status.success() {
        return None;
    }
    let url = String::from_utf8(out.stdout).expect("UTF-8 URL");
    Some((dir, url.trim().to_owned()))
}

/// A PostgreSQL cluster of one test's own, which the test may stop and
/// start again (an outage) without touching the shared [`server`]. Its
/// guard stops it when the process ends; dropping it stops it sooner.
pub struct Dedicated {
    dir: PathBuf,
    url: String,
}

impl Dedicated {
    /// Starts a cluster on a free loopback port.
    pub fn start() -> Self {
        let (dir, url) = start_cluster_named("steward-pg-dedicated");
        Self { dir, url }
    }

    /// The URL of its `steward_test` database.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// Stops the server, keeping its data.
    pub fn halt(&self) {
        self.script("halt");
    }

    /// Starts it again.
    pub fn resume(&self) {
        self.script("resume");
    }

    fn script(&self, command: &str) {
        let status = Command::new(PG_SCRIPT)
            .arg(command)
            .arg(&self.dir)
            .status()
            .expect("run .ci/postgres");
        assert!(status.success(), ".ci/postgres {command} failed");
    }
}

impl Drop for Dedicated {
    fn drop(&mut self) {
        let _ = Command::new(PG_SCRIPT).arg("stop").arg(&self.dir).status();
    }
}
