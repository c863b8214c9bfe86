//! What the registry's index and the host's store both need to open a
//! database through sqlx's Any driver: migrations embedded in the binary,
//! and a SQLite file that is created on first use and migrated once when
//! several processes open it at the same moment.
//!
//! sqlx takes a database-wide lock while migrating on PostgreSQL but not
//! on SQLite, where two processes opening a new file at once would both
//! migrate it: [`lock_file`] on [`sqlite_lock_path`] serialises them.
//! Errors are messages; each caller wraps them in its own error type.

use std::borrow::Cow;
use std::future::Future;
use std::path::{Path, PathBuf};
use std::pin::Pin;

use std::time::Duration;

use sqlx::AnyPool;
use sqlx::Connection as _;
use sqlx::Executor as _;
use sqlx::any::AnyPoolOptions;
use sqlx::error::BoxDynError;
use sqlx::migrate::{MigrateError, Migration, MigrationSource, MigrationType, Migrator};

/// Migrations compiled into the binary: `(version, description, sql)`,
/// oldest first.
#[derive(Debug, Clone, Copy)]
pub struct EmbeddedMigrations(pub &'static [(i64, &'static str, &'static str)]);

impl MigrationSource<'static> for EmbeddedMigrations {
    fn resolve(
        self,
    ) -> Pin<Box<dyn Future<Output = Result<Vec<Migration>, BoxDynError>> + Send + 'static>> {
        Box::pin(async move {
            Ok(self
                .0
                .iter()
                .map(|&(version, description, sql)| {
                    Migration::new(
                        version,
                        Cow::Borrowed(description),
                        MigrationType::Simple,
                        Cow::Borrowed(sql),
                        false,
                    )
                })
                .collect())
        })
    }
}

/// Which database a pool talks to: the host's store and the registry's
/// index both run on either.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Backend {
    /// One SQLite file in WAL mode.
    Sqlite,
    /// A PostgreSQL database, possibly shared by several processes.
    Postgres,
}

impl Backend {
    /// The backend a database URL names: `sqlite:` or `postgres:`/
    /// `postgresql:`.
    ///
    /// # Errors
    ///
    /// [`UnsupportedUrl`] for any other scheme.
    pub fn from_url(url: &str) -> Result<Self, UnsupportedUrl> {
        let scheme = url.split_once(':').map_or(url, |(scheme, _)| scheme);
        match scheme.to_ascii_lowercase().as_str() {
            "sqlite" => Ok(Backend::Sqlite),
            "postgres" | "postgresql" => Ok(Backend::Postgres),
            _ => Err(UnsupportedUrl {
                scheme: scheme.chars().take(32).collect(),
            }),
        }
    }

    /// The database's name for humans.
    pub const fn name(self) -> &'static str {
        match self {
            Backend::Sqlite => "SQLite",
            Backend::Postgres => "PostgreSQL",
        }
    }
}

/// A database URL that names no supported backend.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "unsupported database URL scheme `{scheme}`: expected `sqlite://PATH` or `postgres://HOST/DB`"
)]
pub struct UnsupportedUrl {
    /// The scheme that was given (at most 32 characters; the URL itself
    /// may hold a password).
    pub scheme: String,
}

/// Checks a `sqlite:` URL, asks for the file to be created when missing
/// (`mode=rwc`, unless a mode is given) and creates its directory.
/// `example` names a file for the message refusing an in-memory database.
///
/// # Errors
///
/// An in-memory database (its pool's connections would not share it), or
/// a directory that cannot be created.
pub fn prepare_sqlite_url(url: &str, example: &str) -> Result<String, String> {
    let rest = url
        .strip_prefix("sqlite://")
        .or_else(|| url.strip_prefix("sqlite:"))
        .unwrap_or(url);
    let (path, query) = rest.split_once('?').unwrap_or((rest, ""));
    if path.is_empty() || path == ":memory:" || query.contains("mode=memory") {
        return Err(format!(
            "an in-memory SQLite database cannot be shared by the pool's connections; \
             give a file path such as `sqlite://{example}`"
        ));
    }
    if let Some(parent) = Path::new(path).parent()
        && !parent.as_os_str().is_empty()
    {
        std::fs::create_dir_all(parent)
            .map_err(|e| format!("cannot create the database's directory: {e}"))?;
    }
    Ok(if query.split('&').any(|p| p.starts_with("mode=")) {
        url.to_owned()
    } else if query.is_empty() {
        format!("{url}?mode=rwc")
    } else {
        format!("{url}&mode=rwc")
    })
}

/// The database file of a `sqlite:` URL (its path, without the query).
fn sqlite_file(url: &str) -> &str {
    let rest = url
        .strip_prefix("sqlite://")
        .or_else(|| url.strip_prefix("sqlite:"))
        .unwrap_or(url);
    rest.split_once('?').map_or(rest, |(p, _)| p)
}

/// The database file of a `sqlite:` URL, for opening it without sqlx.
pub fn sqlite_path(url: &str) -> PathBuf {
    PathBuf::from(sqlite_file(url))
}

/// `<database file>.migrate-lock` for a prepared `sqlite:` URL.
pub fn sqlite_lock_path(url: &str) -> PathBuf {
    PathBuf::from(format!("{}.migrate-lock", sqlite_file(url)))
}

/// Opens (creating) `path` and waits for an exclusive lock on it, held
/// until the file is dropped.
///
/// # Errors
///
/// The file cannot be opened or locked.
pub async fn lock_file(path: PathBuf) -> Result<std::fs::File, String> {
    tokio::task::spawn_blocking(move || {
        let file = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&path)?;
        file.lock()?;
        std::io::Result::Ok(file)
    })
    .await
    .map_err(|e| format!("lock task failed: {e}"))?
    .map_err(|e| format!("cannot lock the database for migration: {e}"))
}

/// How long a caller waits for a pooled connection before the store
/// reports itself unavailable: long enough for a burst of requests to queue
/// behind a few connections, short enough that an API call to a server
/// whose database is down answers 503 in seconds, not half a minute.
pub const ACQUIRE_TIMEOUT: Duration = Duration::from_secs(5);

/// Opens one connection to a prepared `sqlite:` URL and reads its schema,
/// so a file that is not a database (or cannot be opened) fails at once,
/// naming the file and the cause, instead of the pool retrying it until
/// its acquire timeout and reporting only that it timed out.
async fn check_sqlite_file(url: &str) -> Result<(), OpenError> {
    let path = sqlite_file(url);
    let fail = |e: sqlx::Error| {
        let cause = match &e {
            sqlx::Error::Database(db) => db.message().to_owned(),
            other => other.to_string(),
        };
        OpenError::Invalid(format!("cannot open the SQLite database `{path}`: {cause}"))
    };
    let mut conn = sqlx::AnyConnection::connect(url).await.map_err(fail)?;
    // Only a read, waiting on other processes' locks: another process may
    // be migrating a new file this moment (switching it to WAL needs it
    // alone, so the pool's own connections set the pragmas).
    conn.execute("PRAGMA busy_timeout = 10000")
        .await
        .map_err(fail)?;
    conn.execute("SELECT count(*) FROM sqlite_master")
        .await
        .map_err(fail)?;
    conn.close().await.map_err(fail)
}

/// How [`open_pool`] failed; each caller wraps it in its own error type.
#[derive(Debug)]
pub enum OpenError {
    /// The URL cannot be used (an in-memory SQLite database, a directory
    /// that cannot be created), or the SQLite migration lock failed.
    Invalid(String),
    /// The database could not be connected to.
    Connect(sqlx::Error),
    /// A migration failed.
    Migrate(MigrateError),
}

/// A pool on `url`, a `backend` database (a SQLite file is prepared
/// with [`prepare_sqlite_url`], named like `example` in its error, and each
/// connection runs `sqlite_pragmas`), at most `max_connections` of them,
/// with `migrations` applied: on SQLite under [`lock_file`] on
/// [`sqlite_lock_path`], since sqlx locks migrations on PostgreSQL only.
///
/// # Errors
///
/// See [`OpenError`].
pub async fn open_pool(
    url: &str,
    backend: Backend,
    example: &str,
    sqlite_pragmas: &'static str,
    max_connections: u32,
    migrations: EmbeddedMigrations,
) -> Result<AnyPool, OpenError> {
    sqlx::any::install_default_drivers();
    let options = AnyPoolOptions::new()
        .max_connections(max_connections)
        .acquire_timeout(ACQUIRE_TIMEOUT);
    let (url, options, lock) = if backend == Backend::Sqlite {
        let url = prepare_sqlite_url(url, example).map_err(OpenError::Invalid)?;
        check_sqlite_file(&url).await?;
        let lock = sqlite_lock_path(&url);
        let options = options
            .after_connect(move |conn, _| {
                Box::pin(async move {
                    conn.execute(sqlite_pragmas).await?;
                    Ok(())
                })
            })
            .after_release(|conn, _| {
                Box::pin(async move {
                    // A transaction dropped without its commit (the commit
                    // failed: a full disk, an I/O error) queued a rollback;
                    // the ping waits for it. If the rollback failed too,
                    // sqlx still counts the connection as inside a
                    // transaction and every later `BEGIN` on it would fail
                    // ("non-zero transaction depth"): close it, so the pool
                    // opens a fresh one and the store recovers by itself
                    // once the disk has room again.
                    conn.ping().await?;
                    Ok(!conn.is_in_transaction())
                })
            });
        (url, options, Some(lock))
    } else {
        (url.to_owned(), options, None)
    };
    let pool = options.connect(&url).await.map_err(OpenError::Connect)?;
    let migrator = Migrator::new(migrations)
        .await
        .map_err(OpenError::Migrate)?;
    let _guard = match lock {
        Some(path) => Some(lock_file(path).await.map_err(OpenError::Invalid)?),
        None => None,
    };
    migrator.run(&pool).await.map_err(OpenError::Migrate)?;
    Ok(pool)
}
