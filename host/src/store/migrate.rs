//! The schema migrations, embedded in the binary at compile time so a
//! shipped `steward` needs no migrations folder. One portable set serves
//! both backends (see `migrations/`).

use std::borrow::Cow;
use std::future::Future;
use std::pin::Pin;

use sqlx::error::BoxDynError;
use sqlx::migrate::{Migration, MigrationSource, MigrationType, Migrator};

/// `(version, description, sql)` of every migration, oldest first. A
/// released migration is never edited (sqlx refuses a changed checksum);
/// a change is a new file.
const MIGRATIONS: &[(i64, &str, &str)] = &[
    (
        1,
        "control plane",
        include_str!("../../migrations/0001_control_plane.sql"),
    ),
    (
        2,
        "executor",
        include_str!("../../migrations/0002_executor.sql"),
    ),
    (3, "api", include_str!("../../migrations/0003_api.sql")),
    (
        4,
        "registry",
        include_str!("../../migrations/0004_registry.sql"),
    ),
];

/// The embedded migrations as a sqlx [`MigrationSource`].
#[derive(Debug)]
struct Embedded;

impl MigrationSource<'static> for Embedded {
    fn resolve(
        self,
    ) -> Pin<Box<dyn Future<Output = Result<Vec<Migration>, BoxDynError>> + Send + 'static>> {
        Box::pin(async {
            Ok(MIGRATIONS
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

/// The migrator for the embedded migrations. It takes a database-wide
/// lock while migrating (an advisory lock on PostgreSQL), so replicas
/// starting together migrate once.
pub(crate) async fn migrator() -> Result<Migrator, sqlx::migrate::MigrateError> {
    Migrator::new(Embedded).await
}
