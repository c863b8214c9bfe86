//! The store's error type: bad input names the field or the unknown id,
//! database failures never show SQL or connection strings.

use super::ids::{DeviceId, PlaybookId, RunId, ScheduleId, SiteId, TenantId};

/// Why a store operation failed.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The database URL names no backend the store supports.
    #[error(transparent)]
    UnsupportedUrl(#[from] steward_sqlkit::UnsupportedUrl),
    /// The database could not be opened or created.
    #[error("failed to open the {backend} database")]
    Open {
        /// `SQLite` or `PostgreSQL`.
        backend: &'static str,
        /// What went wrong.
        #[source]
        source: sqlx::Error,
    },
    /// Applying the schema migrations failed.
    #[error("failed to migrate the database schema")]
    Migrate(#[source] sqlx::migrate::MigrateError),
    /// A value is out of range or malformed.
    #[error("invalid `{field}`: {message}")]
    Invalid {
        /// The field, as the API names it.
        field: &'static str,
        /// What is wrong and what is valid.
        message: String,
    },
    /// No tenant has this id.
    #[error("unknown tenant `{0}`")]
    UnknownTenant(TenantId),
    /// No site has this id.
    #[error("unknown site `{0}`")]
    UnknownSite(SiteId),
    /// No device has this id.
    #[error("unknown device `{0}`")]
    UnknownDevice(DeviceId),
    /// A device or site was named under a tenant it does not belong to.
    #[error("`{what}` belongs to tenant `{actual}`, not to tenant `{expected}`")]
    WrongTenant {
        /// The device or site id.
        what: String,
        /// The tenant named in the request.
        expected: TenantId,
        /// The tenant that owns it.
        actual: TenantId,
    },
    /// No playbook has this id.
    #[error("unknown playbook `{0}`")]
    UnknownPlaybook(PlaybookId),
    /// No schedule has this id.
    #[error("unknown schedule `{0}`")]
    UnknownSchedule(ScheduleId),
    /// No run has this id.
    #[error("unknown run `{0}`")]
    UnknownRun(RunId),
    /// A run that has finished takes no more jobs.
    #[error("run `{0}` has finished and takes no more jobs")]
    RunFinished(RunId),
    /// A unique name is already taken.
    #[error("{what} `{name}` already exists")]
    AlreadyExists {
        /// What kind of thing (`tenant`, `site`, `device`).
        what: &'static str,
        /// The name that is taken.
        name: String,
    },
    /// A stored value could not be read back (a JSON column that does not
    /// parse, an unknown status): the database was changed behind the
    /// store's back.
    #[error("corrupt value in column `{column}`: {message}")]
    Corrupt {
        /// The column.
        column: &'static str,
        /// What was wrong.
        message: String,
    },
    /// The database failed; the source has the details, which are for logs,
    /// not for API clients.
    #[error("database error")]
    Database(#[from] sqlx::Error),
    /// A read on one of SQLite's plain read connections failed (see
    /// `read.rs`); like [`StoreError::Database`], for logs.
    #[error("database error")]
    Read(#[source] rusqlite::Error),
}

impl StoreError {
    /// Whether the store itself failed (the database, its schema, a value
    /// changed behind its back), as opposed to refusing the request.
    pub fn is_internal(&self) -> bool {
        matches!(
            self,
            StoreError::UnsupportedUrl(_)
                | StoreError::Open { .. }
                | StoreError::Migrate(_)
                | StoreError::Corrupt { .. }
                | StoreError::Database(_)
                | StoreError::Read(_)
        )
    }

    /// Whether the database could not be reached or could not write just
    /// now (connection refused or lost, the pool's wait ran out, a full
    /// disk, I/O errors, a server shutting down or starting), as opposed to
    /// a request it refused or a bug: the caller may try again later, and
    /// the API answers 503 `store-unavailable`.
    pub fn is_unavailable(&self) -> bool {
        match self {
            StoreError::Database(e) | StoreError::Open { source: e, .. } => is_unavailable(e),
            StoreError::Read(rusqlite::Error::SqliteFailure(e, _)) => matches!(
                e.code,
                rusqlite::ErrorCode::DatabaseBusy
                    | rusqlite::ErrorCode::DatabaseLocked
                    | rusqlite::ErrorCode::CannotOpen
                    | rusqlite::ErrorCode::SystemIoFailure
                    | rusqlite::ErrorCode::DiskFull
                    | rusqlite::ErrorCode::OutOfMemory
            ),
            _ => false,
        }
    }

    pub(crate) fn invalid(field: &'static str, message: impl Into<String>) -> Self {
        Self::Invalid {
            field,
            message: message.into(),
        }
    }

    pub(crate) fn corrupt(column: &'static str, message: impl std::fmt::Display) -> Self {
        Self::Corrupt {
            column,
            message: message.to_string(),
        }
    }
}

/// See [`StoreError::is_unavailable`].
pub(crate) fn is_unavailable(err: &sqlx::Error) -> bool {
    match err {
        sqlx::Error::Io(_)
        | sqlx::Error::Tls(_)
        | sqlx::Error::PoolTimedOut
        | sqlx::Error::PoolClosed
        | sqlx::Error::WorkerCrashed
        | sqlx::Error::Protocol(_) => true,
        sqlx::Error::Database(db) => {
            let code = db.code();
            let code = code.as_deref().unwrap_or("");
            // SQLite's primary result codes (the low byte of the extended
            // one): BUSY, LOCKED, NOMEM, READONLY, IOERR, FULL, CANTOPEN.
            if let Ok(n) = code.parse::<i32>() {
                return matches!(n & 0xff, 5 | 6 | 7 | 8 | 10 | 13 | 14);
            }
            // PostgreSQL's SQLSTATE classes: connection exceptions (08),
            // insufficient resources such as a full disk (53), the server
            // shutting down or starting (57P01..57P05), system errors (58).
            code.starts_with("08")
                || code.starts_with("53")
                || code.starts_with("57P")
                || code.starts_with("58")
        }
        _ => false,
    }
}

/// Whether `err` is a unique-constraint violation (same check on both
/// backends).
pub(crate) fn is_unique_violation(err: &sqlx::Error) -> bool {
    matches!(err, sqlx::Error::Database(db) if db.is_unique_violation())
}

/// An insert's result, with a unique-constraint violation reported as
/// [`StoreError::AlreadyExists`] naming `what` and `name`.
pub(crate) fn unique_insert<T>(
    inserted: std::result::Result<T, sqlx::Error>,
    what: &'static str,
    name: &str,
) -> Result<T> {
    match inserted {
        Err(e) if is_unique_violation(&e) => Err(StoreError::AlreadyExists {
            what,
            name: name.to_owned(),
        }),
        other => Ok(other?),
    }
}

/// The store's result type.
pub type Result<T, E = StoreError> = std::result::Result<T, E>;
