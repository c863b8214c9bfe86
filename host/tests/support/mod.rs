//! Test databases for the store: a fresh SQLite file, or a fresh database
//! on the test PostgreSQL server (`steward_tests::postgres`), per test.

#![allow(dead_code)]

pub mod control;

use steward_store::Store;

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
    let server = steward_tests::postgres::server();
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
    let url = steward_tests::postgres::with_database(server, &name);
    let store = Store::open(&url).await.expect("open PostgreSQL store");
    TestDb {
        url,
        store,
        _dir: None,
    }
}

static NEXT_DB: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);

/// A small tmpfs mounted for one test, unmounted when dropped. Mounting
/// needs root, as CI runs; elsewhere the test says so and fails.
pub struct SmallDisk {
    dir: tempfile::TempDir,
}

impl SmallDisk {
    pub fn mount(megabytes: u32) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let status = std::process::Command::new("mount")
            .args([
                "-t",
                "tmpfs",
                "-o",
                &format!("size={megabytes}m"),
                "steward-test",
            ])
            .arg(dir.path())
            .status()
            .expect("run mount");
        assert!(
            status.success(),
            "mounting a {megabytes} MiB tmpfs failed: the disk-full tests need root (CI runs as root)"
        );
        Self { dir }
    }

    pub fn path(&self) -> &std::path::Path {
        self.dir.path()
    }

    /// Fills the file system to the last byte with `fill`.
    pub fn fill(&self) -> std::path::PathBuf {
        use std::io::Write as _;
        let path = self.path().join("fill");
        let mut file = std::fs::File::create(&path).unwrap();
        let chunk = vec![0u8; 64 * 1024];
        loop {
            if file.write_all(&chunk).is_err() {
                break;
            }
        }
        // The last partial chunk, byte by byte, to the very end.
        while file.write_all(&[0]).is_ok() {}
        let _ = file.sync_all();
        path
    }
}

impl Drop for SmallDisk {
    fn drop(&mut self) {
        let _ = std::process::Command::new("umount")
            .arg("-l")
            .arg(self.dir.path())
            .status();
    }
}
