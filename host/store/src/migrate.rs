//! The schema migrations, embedded in the binary at compile time so a
//! shipped `steward` needs no migrations folder. One portable set serves
//! both backends (see `migrations/`), except where a migration has a
//! `.postgres.sql` twin: triggers are written in each database's own
//! dialect.

use steward_sqlkit::{Backend, EmbeddedMigrations};

/// Declares the migration lists of both backends from one list: an entry
/// `(version, description, sqlite_and_postgres)` is shared, an entry
/// `(version, description, sqlite, postgres)` differs.
macro_rules! migrations {
    ($($entry:tt),* $(,)?) => {
        /// `(version, description, sql)` of every migration on SQLite,
        /// oldest first. A released migration is never edited (sqlx refuses
        /// a changed checksum); a change is a new file.
        const SQLITE: &[(i64, &str, &str)] = &[$(migrations!(@sqlite $entry)),*];
        /// The same on PostgreSQL.
        const POSTGRES: &[(i64, &str, &str)] = &[$(migrations!(@postgres $entry)),*];
    };
    (@sqlite ($v:expr, $d:expr, $sql:expr $(,)?)) => { ($v, $d, $sql) };
    (@postgres ($v:expr, $d:expr, $sql:expr $(,)?)) => { ($v, $d, $sql) };
    (@sqlite ($v:expr, $d:expr, $sqlite:expr, $pg:expr $(,)?)) => { ($v, $d, $sqlite) };
    (@postgres ($v:expr, $d:expr, $sqlite:expr, $pg:expr $(,)?)) => { ($v, $d, $pg) };
}

migrations![
    (
        1,
        "control plane",
        include_str!("../migrations/0001_control_plane.sql"),
    ),
    (
        2,
        "executor",
        include_str!("../migrations/0002_executor.sql"),
    ),
    (3, "api", include_str!("../migrations/0003_api.sql")),
    (
        4,
        "registry",
        include_str!("../migrations/0004_registry.sql"),
    ),
    (
        5,
        "alert outbox",
        include_str!("../migrations/0005_alert_outbox.sql"),
    ),
    (
        6,
        "alert outbox reached",
        include_str!("../migrations/0006_alert_outbox_reached.sql"),
    ),
    (7, "agents", include_str!("../migrations/0007_agents.sql")),
    (
        8,
        "alert inbox, journal intents, store probe",
        include_str!("../migrations/0008_alert_inbox.sql"),
    ),
    (
        9,
        "agent approval",
        include_str!("../migrations/0009_agent_approval.sql"),
    ),
    (
        10,
        "console sessions",
        include_str!("../migrations/0010_console_sessions.sql"),
    ),
    (
        11,
        "schedule claims",
        include_str!("../migrations/0011_schedule_claims.sql"),
    ),
    (
        12,
        "run job counts",
        include_str!("../migrations/0012_run_job_counts.sql"),
        include_str!("../migrations/0012_run_job_counts.postgres.sql"),
    ),
    (
        13,
        "a schedule's runs going",
        include_str!("../migrations/0013_schedule_runs_going.sql"),
    ),
];

/// The embedded migrations of `backend`, for `steward_sqlkit::open_pool`
/// (which migrates under a database-wide lock: an advisory lock on
/// PostgreSQL, a lock file beside a SQLite database).
pub(crate) fn source(backend: Backend) -> EmbeddedMigrations {
    EmbeddedMigrations(match backend {
        Backend::Sqlite => SQLITE,
        Backend::Postgres => POSTGRES,
    })
}
