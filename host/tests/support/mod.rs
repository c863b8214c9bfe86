//! Test databases for the store: a fresh SQLite file, or a fresh database
//! on a PostgreSQL server, per test.
//!
//! The PostgreSQL server is `STEWARD_TEST_POSTGRES_URL` when set (CI starts
//! one with `.ci/postgres start`). Otherwise the first test that needs it starts a
//! throwaway cluster for this test process with `.ci/postgres start` in a temp dir
//! on a free loopback port, once (a `OnceLock`). Statics are never dropped,
//! so no destructor could stop it; instead the process spawns `.ci/postgres guard
//! DIR` with a pipe as its standard input and keeps the write end open for
//! its whole life (in the static). When the process ends, however it ends
//! (success, panic, abort, `kill -9`), the kernel closes the pipe, the
//! guard reads end of file and stops the cluster (`pg_ctl -m immediate`)
//! and removes its directory. The pipe is close-on-exec, so no other child
//! keeps it open.

#![allow(dead_code)]

pub mod control;

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::{Mutex, OnceLock};

use steward_host::store::Store;

/// The cluster script (`.ci/postgres` once in the project).
pub const PG_SCRIPT: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../.ci/postgres");

/// Every test, once per backend: `sqlite::name` and `postgres::name`.
#[allow(unused_macros)] // Not every test crate that includes this module uses it.
macro_rules! on_both_backends {
    ($($name:ident),* $(,)?) => {
        mod sqlite {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    super::$name(super::support::sqlite().await).await;
                }
            )*
        }
        mod postgres {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    super::$name(super::support::postgres().await).await;
                }
            )*
        }
    };
}

/// A store on a database of its own, and the URL to open it again (as a
/// second process would).
pub struct TestDb {
    /// The database URL.
    pub url: String,
    /// A store opened on it.
    pub store: Store,
    _dir: Option<tempfile::TempDir>,
}

impl TestDb {
    /// Another store on the same database, with its own pool: what a second
    /// `steward` process would have.
    pub async fn reopen(&self) -> Store {
        Store::open(&self.url)
            .await
            .expect("reopen the test database")
    }
}

/// A store on a new SQLite file in a temp dir.
pub async fn sqlite() -> TestDb {
    let dir = tempfile::tempdir().expect("temp dir");
    let url = format!("sqlite://{}", dir.path().join("steward.db").display());
    let store = Store::open(&url).await.expect("open SQLite store");
    TestDb {
        url,
        store,
        _dir: Some(dir),
    }
}

/// A store on a new database of the test PostgreSQL server.
pub async fn postgres() -> TestDb {
    let server = postgres_server();
    let name = format!(
        "t_{}_{}",
        std::process::id(),
        NEXT_DB.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
    );
    sqlx::any::install_default_drivers();
    let mut admin = <sqlx::AnyConnection as sqlx::Connection>::connect(server)
        .await
        .expect("connect to the test PostgreSQL server");
    sqlx::Executor::execute(&mut admin, format!("CREATE DATABASE {name}").as_str())
        .await
        .expect("create a test database");
    let url = with_database(server, &name);
    let store = Store::open(&url).await.expect("open PostgreSQL store");
    TestDb {
        url,
        store,
        _dir: None,
    }
}

static NEXT_DB: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);

/// `url` with its database name replaced by `name`.
fn with_database(url: &str, name: &str) -> String {
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

/// The URL of the test server: from the environment, or a cluster started
/// for this process.
pub fn postgres_server() -> &'static str {
    static SERVER: OnceLock<String> = OnceLock::new();
    SERVER.get_or_init(|| {
        if let Ok(url) = std::env::var("STEWARD_TEST_POSTGRES_URL") {
            return url;
        }
        start_cluster()
    })
}

/// The guard, with the write end of its standard input: kept (never
/// waited for, never dropped) until the process exits.
static GUARD: OnceLock<Mutex<Child>> = OnceLock::new();

fn start_cluster() -> String {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("find a free loopback port")
        .port();
    let dir: PathBuf =
        std::env::temp_dir().join(format!("steward-pg-{}-{}", std::process::id(), port));
    // The guard first, so even a failed start is cleaned up.
    let guard = Command::new(PG_SCRIPT)
        .arg("guard")
        .arg(&dir)
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .spawn()
        .expect("spawn the PostgreSQL guard");
    let _ = GUARD.set(Mutex::new(guard));
    let out = Command::new(PG_SCRIPT)
        .arg("start")
        .arg(&dir)
        .arg(port.to_string())
        .stderr(Stdio::inherit())
        .output()
        .expect("run .ci/postgres start");
    assert!(
        out.status.success(),
        ".ci/postgres start failed; is Debian's postgresql package installed?"
    );
    let url = String::from_utf8(out.stdout).expect("UTF-8 URL");
    url.trim().to_owned()
}
