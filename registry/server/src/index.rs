//! The index: publishers, namespaces, keys and published versions, in
//! SQLite or PostgreSQL.
//!
//! Everything goes through sqlx's Any driver, so one set of statements
//! serves both databases: the schema (`migrations/`, embedded at compile
//! time) uses TEXT ids, BIGINT unix-millisecond times and BIGINT 0/1
//! flags, and statements use `$n` placeholders, which both accept. SQLite
//! is one file in WAL mode with foreign keys on and a busy timeout, created
//! with its directory on first open; two processes opening a new file at
//! once are serialised by a lock file beside it while migrating
//! (PostgreSQL takes its own advisory lock).
//!
//! Versions are immutable: the only update is the `yanked` flag. Publishing
//! is one `INSERT … ON CONFLICT DO NOTHING`, so of two racing publishes of
//! the same version exactly one wins and the other learns
//! [`IndexError::VersionExists`].
//!
//! Publisher tokens are `stwr_` and 64 hex digits of OS randomness; only
//! their sha256 is stored.

use std::path::Path;

use chrono::{DateTime, Utc};
use rand::RngCore as _;
use semver::Version;
use sha2::{Digest as _, Sha256};
use sqlx::any::AnyRow;
use sqlx::{AnyPool, Row as _};

use steward_contract::Digest;
use steward_contract::manifest::{Manifest, check_name_part};
use steward_registry::api::{KeyInfo, VersionRecord};
use steward_sqlkit::{self, EmbeddedMigrations};

/// The prefix of every publisher token.
pub const TOKEN_PREFIX: &str = "stwr_";

/// `(version, description, sql)` of every migration, oldest first. A
/// released migration is never edited (sqlx refuses a changed checksum).
const MIGRATIONS: &[(i64, &str, &str)] = &[(
    1,
    "registry",
    include_str!("../migrations/0001_registry.sql"),
)];

/// Per-connection SQLite settings.
const SQLITE_PRAGMAS: &str = "PRAGMA busy_timeout = 10000; \
    PRAGMA journal_mode = WAL; \
    PRAGMA synchronous = NORMAL; \
    PRAGMA foreign_keys = ON;";

pub use steward_sqlkit::Backend;

/// What went wrong in the index.
#[derive(Debug, thiserror::Error)]
pub enum IndexError {
    /// The database URL's scheme is not supported.
    #[error(transparent)]
    UnsupportedUrl(#[from] steward_sqlkit::UnsupportedUrl),
    /// An argument is invalid.
    #[error("invalid {field}: {message}")]
    Invalid {
        /// What was invalid.
        field: &'static str,
        /// Why.
        message: String,
    },
    /// A publisher with that name exists.
    #[error("a publisher named `{0}` already exists")]
    PublisherExists(String),
    /// The namespace is owned already.
    #[error("namespace `{namespace}` is already owned by publisher `{owner}`")]
    NamespaceTaken {
        /// The namespace.
        namespace: String,
        /// Its owner's name.
        owner: String,
    },
    /// The key is registered to another publisher.
    #[error("key `{0}` is registered to another publisher")]
    KeyTaken(String),
    /// That version was published before.
    #[error(
        "{namespace}/{name} {version} is already published; versions are immutable, publish a new version"
    )]
    VersionExists {
        /// The namespace.
        namespace: String,
        /// The module.
        name: String,
        /// The version.
        version: Version,
    },
    /// The database cannot be opened.
    #[error("cannot open the {backend} database: {source}")]
    Open {
        /// Which database.
        backend: &'static str,
        /// Why.
        source: sqlx::Error,
    },
    /// A migration failed.
    #[error("cannot migrate the database: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    /// A stored row does not decode.
    #[error("corrupt index row: {0}")]
    Corrupt(String),
    /// A statement failed.
    #[error("database error: {0}")]
    Database(#[from] sqlx::Error),
}

/// A publisher, as a token authenticates it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Publisher {
    /// Its id.
    pub id: String,
    /// Its unique name.
    pub name: String,
}

/// A publisher just created, with the token shown once.
#[derive(Debug, Clone)]
pub struct NewPublisher {
    /// The publisher.
    pub publisher: Publisher,
    /// Its token (`stwr_…`); only its hash is stored.
    pub token: String,
    /// The namespaces it owns.
    pub namespaces: Vec<String>,
    /// Whether those namespaces accept unsigned modules.
    pub unsigned: bool,
}

/// A namespace and its owner.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Namespace {
    /// The namespace.
    pub name: String,
    /// The owning publisher's id.
    pub publisher_id: String,
    /// Whether it accepts unsigned modules.
    pub unsigned: bool,
}

/// A registered key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyRecord {
    /// `ed25519:…`.
    pub key_id: String,
    /// The publisher it belongs to.
    pub publisher_id: String,
    /// The public key, base64.
    pub public_key: String,
}

/// A version about to be inserted.
#[derive(Debug, Clone)]
pub struct NewVersion {
    /// The checked manifest (its name gives namespace and module).
    pub manifest: Manifest,
    /// The module bytes' digest.
    pub digest: Digest,
    /// Their size.
    pub size: u64,
    /// The signature and the id of its key, if signed.
    pub signature: Option<(String, String)>,
}

/// A new random publisher token.
pub fn new_token() -> String {
    let mut bytes = [0u8; 32];
    rand::rngs::OsRng.fill_bytes(&mut bytes);
    format!("{TOKEN_PREFIX}{}", hex::encode(bytes))
}

/// What the index keeps of a token.
pub fn hash_token(token: &str) -> String {
    hex::encode(Sha256::digest(token.as_bytes()))
}

/// The index. Cheap to clone: clones share the pool.
#[derive(Debug, Clone)]
pub struct Index {
    pool: AnyPool,
    backend: Backend,
}

impl Index {
    /// Opens the database at `url` (`sqlite://PATH` or
    /// `postgres://USER@HOST:PORT/DB`), creating a SQLite file and its
    /// directory if missing, and applies pending migrations.
    ///
    /// # Errors
    ///
    /// An unsupported URL, a database that cannot be opened, or a failed
    /// migration.
    pub async fn open(url: &str) -> Result<Self, IndexError> {
        let backend = Backend::from_url(url)?;
        let pool = steward_sqlkit::open_pool(
            url,
            backend,
            "registry.db",
            SQLITE_PRAGMAS,
            match backend {
                Backend::Sqlite => 4,
                Backend::Postgres => 10,
            },
            EmbeddedMigrations(MIGRATIONS),
        )
        .await
        .map_err(|e| match e {
            steward_sqlkit::OpenError::Invalid(message) => database_url_error(message),
            steward_sqlkit::OpenError::Connect(source) => IndexError::Open {
                backend: backend.name(),
                source,
            },
            steward_sqlkit::OpenError::Migrate(e) => IndexError::Migrate(e),
        })?;
        Ok(Self { pool, backend })
    }

    /// Which database this is.
    pub fn backend(&self) -> Backend {
        self.backend
    }

    /// Checks the database answers.
    ///
    /// # Errors
    ///
    /// The database cannot be reached.
    pub async fn ping(&self) -> Result<(), IndexError> {
        sqlx::query("SELECT 1").execute(&self.pool).await?;
        Ok(())
    }

    /// Closes the pool.
    pub async fn close(&self) {
        self.pool.close().await;
    }

    /// Creates a publisher owning `namespaces` (at least one), with a new
    /// token. `unsigned` lets those namespaces publish unsigned modules.
    ///
    /// # Errors
    ///
    /// Invalid names, a publisher of that name, or a namespace owned
    /// already.
    pub async fn add_publisher(
        &self,
        name: &str,
        namespaces: &[String],
        unsigned: bool,
    ) -> Result<NewPublisher, IndexError> {
        check_name_part("publisher name", name).map_err(|message| IndexError::Invalid {
            field: "publisher name",
            message,
        })?;
        if namespaces.is_empty() {
            return Err(IndexError::Invalid {
                field: "namespace",
                message: "a publisher needs at least one namespace".into(),
            });
        }
        let mut namespaces = namespaces.to_vec();
        namespaces.sort();
        namespaces.dedup();
        for ns in &namespaces {
            check_name_part("namespace", ns).map_err(|message| IndexError::Invalid {
                field: "namespace",
                message,
            })?;
        }
        let mut bytes = [0u8; 8];
        rand::rngs::OsRng.fill_bytes(&mut bytes);
        let id = format!("pub-{}", hex::encode(bytes));
        let token = new_token();
        let now = Utc::now().timestamp_millis();

        let mut tx = match self.backend {
            Backend::Sqlite => self.pool.begin_with("BEGIN IMMEDIATE").await?,
            Backend::Postgres => self.pool.begin().await?,
        };
        let exists = sqlx::query("SELECT 1 FROM publishers WHERE name = $1")
            .bind(name)
            .fetch_optional(&mut *tx)
            .await?;
        if exists.is_some() {
            return Err(IndexError::PublisherExists(name.to_owned()));
        }
        for ns in &namespaces {
            let owner = sqlx::query(
                "SELECT p.name FROM namespaces n JOIN publishers p ON p.id = n.publisher_id \
                 WHERE n.name = $1",
            )
            .bind(ns.as_str())
            .fetch_optional(&mut *tx)
            .await?;
            if let Some(row) = owner {
                return Err(IndexError::NamespaceTaken {
                    namespace: ns.clone(),
                    owner: row.try_get(0)?,
                });
            }
        }
        let inserted = sqlx::query(
            "INSERT INTO publishers (id, name, token_hash, created_at) VALUES ($1, $2, $3, $4)",
        )
        .bind(id.as_str())
        .bind(name)
        .bind(hash_token(&token))
        .bind(now)
        .execute(&mut *tx)
        .await;
        if let Err(e) = inserted {
            return Err(if is_unique_violation(&e) {
                IndexError::PublisherExists(name.to_owned())
            } else {
                e.into()
            });
        }
        for ns in &namespaces {
            let inserted = sqlx::query(
                "INSERT INTO namespaces (name, publisher_id, unsigned) VALUES ($1, $2, $3)",
            )
            .bind(ns.as_str())
            .bind(id.as_str())
            .bind(i64::from(unsigned))
            .execute(&mut *tx)
            .await;
            if let Err(e) = inserted {
                return Err(if is_unique_violation(&e) {
                    IndexError::NamespaceTaken {
                        namespace: ns.clone(),
                        owner: "another publisher".into(),
                    }
                } else {
                    e.into()
                });
            }
        }
        tx.commit().await?;
        Ok(NewPublisher {
            publisher: Publisher {
                id,
                name: name.to_owned(),
            },
            token,
            namespaces,
            unsigned,
        })
    }

    /// The publisher a token belongs to.
    ///
    /// # Errors
    ///
    /// The database failed.
    pub async fn publisher_by_token(&self, token: &str) -> Result<Option<Publisher>, IndexError> {
        let row = sqlx::query("SELECT id, name FROM publishers WHERE token_hash = $1")
            .bind(hash_token(token))
            .fetch_optional(&self.pool)
            .await?;
        row.map(|row| {
            Ok(Publisher {
                id: row.try_get(0)?,
                name: row.try_get(1)?,
            })
        })
        .transpose()
    }

    /// A namespace and its owner.
    ///
    /// # Errors
    ///
    /// The database failed.
    pub async fn namespace(&self, name: &str) -> Result<Option<Namespace>, IndexError> {
        let row =
            sqlx::query("SELECT name, publisher_id, unsigned FROM namespaces WHERE name = $1")
                .bind(name)
                .fetch_optional(&self.pool)
                .await?;
        row.map(|row| {
            Ok(Namespace {
                name: row.try_get(0)?,
                publisher_id: row.try_get(1)?,
                unsigned: row.try_get::<i64, _>(2)? != 0,
            })
        })
        .transpose()
    }

    /// Registers a public key to a publisher. Registering the same key
    /// again for the same publisher is a no-op; the answer says whether the
    /// key is new.
    ///
    /// # Errors
    ///
    /// [`IndexError::KeyTaken`] when another publisher registered it.
    pub async fn register_key(
        &self,
        publisher_id: &str,
        key_id: &str,
        public_key: &str,
    ) -> Result<bool, IndexError> {
        let inserted = sqlx::query(
            "INSERT INTO keys (key_id, publisher_id, public_key, created_at) \
             VALUES ($1, $2, $3, $4) ON CONFLICT (key_id) DO NOTHING",
        )
        .bind(key_id)
        .bind(publisher_id)
        .bind(public_key)
        .bind(Utc::now().timestamp_millis())
        .execute(&self.pool)
        .await?
        .rows_affected();
        if inserted == 1 {
            return Ok(true);
        }
        match self.key(key_id).await? {
            Some(key) if key.publisher_id == publisher_id => Ok(false),
            _ => Err(IndexError::KeyTaken(key_id.to_owned())),
        }
    }

    /// A registered key.
    ///
    /// # Errors
    ///
    /// The database failed.
    pub async fn key(&self, key_id: &str) -> Result<Option<KeyRecord>, IndexError> {
        let row =
            sqlx::query("SELECT key_id, publisher_id, public_key FROM keys WHERE key_id = $1")
                .bind(key_id)
                .fetch_optional(&self.pool)
                .await?;
        row.map(|row| {
            Ok(KeyRecord {
                key_id: row.try_get(0)?,
                publisher_id: row.try_get(1)?,
                public_key: row.try_get(2)?,
            })
        })
        .transpose()
    }

    /// A publisher's keys, oldest first.
    ///
    /// # Errors
    ///
    /// The database failed.
    pub async fn keys_of(&self, publisher_id: &str) -> Result<Vec<KeyInfo>, IndexError> {
        let rows = sqlx::query(
            "SELECT key_id, public_key FROM keys WHERE publisher_id = $1 \
             ORDER BY created_at, key_id",
        )
        .bind(publisher_id)
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|row| {
                Ok(KeyInfo {
                    key_id: row.try_get(0)?,
                    public_key: row.try_get(1)?,
                })
            })
            .collect()
    }

    /// Every version of a module, in ascending semver order.
    ///
    /// # Errors
    ///
    /// The database failed or a row does not decode.
    pub async fn versions(
        &self,
        namespace: &str,
        name: &str,
    ) -> Result<Vec<VersionRecord>, IndexError> {
        let rows = sqlx::query(&format!(
            "SELECT {VERSION_COLUMNS} FROM versions WHERE namespace = $1 AND name = $2"
        ))
        .bind(namespace)
        .bind(name)
        .fetch_all(&self.pool)
        .await?;
        let mut records = rows
            .iter()
            .map(record_from_row)
            .collect::<Result<Vec<_>, _>>()?;
        records.sort_by(|a, b| a.version.cmp(&b.version));
        Ok(records)
    }

    /// One version.
    ///
    /// # Errors
    ///
    /// The database failed or the row does not decode.
    pub async fn version(
        &self,
        namespace: &str,
        name: &str,
        version: &Version,
    ) -> Result<Option<VersionRecord>, IndexError> {
        let row = sqlx::query(&format!(
            "SELECT {VERSION_COLUMNS} FROM versions \
             WHERE namespace = $1 AND name = $2 AND version = $3"
        ))
        .bind(namespace)
        .bind(name)
        .bind(version.to_string())
        .fetch_optional(&self.pool)
        .await?;
        row.as_ref().map(record_from_row).transpose()
    }

    /// Inserts a published version.
    ///
    /// # Errors
    ///
    /// [`IndexError::VersionExists`] when it was published before (also
    /// when a concurrent publish won the race).
    pub async fn insert_version(&self, new: &NewVersion) -> Result<VersionRecord, IndexError> {
        let namespace = new.manifest.namespace().to_owned();
        let name = new.manifest.module().to_owned();
        // Millisecond precision: what the column keeps.
        let published_ms = Utc::now().timestamp_millis();
        let published_at =
            DateTime::from_timestamp_millis(published_ms).expect("the current time is in range");
        let size = i64::try_from(new.size).map_err(|_| IndexError::Invalid {
            field: "size",
            message: "too large".into(),
        })?;
        let (signature, key_id) = match &new.signature {
            Some((signature, key_id)) => (Some(signature.clone()), Some(key_id.clone())),
            None => (None, None),
        };
        let manifest_json =
            String::from_utf8(new.manifest.canonical_json()).expect("serde_json writes UTF-8");
        let inserted = sqlx::query(
            "INSERT INTO versions (namespace, name, version, digest, size, manifest, signature, \
             key_id, yanked, published_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, 0, $9) \
             ON CONFLICT (namespace, name, version) DO NOTHING",
        )
        .bind(namespace.as_str())
        .bind(name.as_str())
        .bind(new.manifest.version.to_string())
        .bind(new.digest.to_string())
        .bind(size)
        .bind(manifest_json)
        .bind(signature.clone())
        .bind(key_id.clone())
        .bind(published_ms)
        .execute(&self.pool)
        .await?
        .rows_affected();
        if inserted == 0 {
            return Err(IndexError::VersionExists {
                namespace,
                name,
                version: new.manifest.version.clone(),
            });
        }
        Ok(VersionRecord {
            namespace,
            name,
            version: new.manifest.version.clone(),
            digest: new.digest,
            size: new.size,
            manifest: new.manifest.clone(),
            signature,
            key_id,
            yanked: false,
            published_at,
        })
    }

    /// Sets or clears a version's `yanked` flag; `None` when there is no
    /// such version.
    ///
    /// # Errors
    ///
    /// The database failed.
    pub async fn set_yanked(
        &self,
        namespace: &str,
        name: &str,
        version: &Version,
        yanked: bool,
    ) -> Result<Option<VersionRecord>, IndexError> {
        sqlx::query(
            "UPDATE versions SET yanked = $1 WHERE namespace = $2 AND name = $3 AND version = $4",
        )
        .bind(i64::from(yanked))
        .bind(namespace)
        .bind(name)
        .bind(version.to_string())
        .execute(&self.pool)
        .await?;
        self.version(namespace, name, version).await
    }

    /// The latest non-yanked version of every module whose `namespace/name`
    /// or description contains `query` (case-insensitive), by name, at
    /// most `limit`.
    ///
    /// The match runs here rather than in SQL (the description lives in
    /// the manifest JSON, and case folding differs between the databases);
    /// it reads every non-yanked version, which is fine for a registry of
    /// thousands of versions.
    ///
    /// # Errors
    ///
    /// The database failed or a row does not decode.
    pub async fn search(
        &self,
        query: &str,
        limit: usize,
    ) -> Result<Vec<VersionRecord>, IndexError> {
        let needle = query.trim().to_lowercase();
        let rows = sqlx::query(&format!(
            "SELECT {VERSION_COLUMNS} FROM versions WHERE yanked = 0 ORDER BY namespace, name"
        ))
        .fetch_all(&self.pool)
        .await?;
        let mut latest: std::collections::BTreeMap<(String, String), VersionRecord> =
            std::collections::BTreeMap::new();
        for row in &rows {
            let record = record_from_row(row)?;
            let full_name = format!("{}/{}", record.namespace, record.name);
            let matches = full_name.to_lowercase().contains(&needle)
                || record.manifest.description.to_lowercase().contains(&needle);
            if !matches {
                continue;
            }
            let key = (record.namespace.clone(), record.name.clone());
            match latest.get(&key) {
                Some(best) if best.version >= record.version => {}
                _ => {
                    latest.insert(key, record);
                }
            }
        }
        Ok(latest.into_values().take(limit).collect())
    }
}

/// The columns [`record_from_row`] reads, in order.
const VERSION_COLUMNS: &str =
    "namespace, name, version, digest, size, manifest, signature, key_id, yanked, published_at";

fn record_from_row(row: &AnyRow) -> Result<VersionRecord, IndexError> {
    let corrupt =
        |what: &str, e: &dyn std::fmt::Display| IndexError::Corrupt(format!("{what}: {e}"));
    let version: String = row.try_get(2)?;
    let digest: String = row.try_get(3)?;
    let size: i64 = row.try_get(4)?;
    let manifest: String = row.try_get(5)?;
    let published_at: i64 = row.try_get(9)?;
    Ok(VersionRecord {
        namespace: row.try_get(0)?,
        name: row.try_get(1)?,
        version: version.parse().map_err(|e| corrupt("version", &e))?,
        digest: digest.parse().map_err(|e| corrupt("digest", &e))?,
        size: u64::try_from(size).map_err(|e| corrupt("size", &e))?,
        manifest: serde_json::from_str(&manifest).map_err(|e| corrupt("manifest", &e))?,
        signature: row.try_get(6)?,
        key_id: row.try_get(7)?,
        yanked: row.try_get::<i64, _>(8)? != 0,
        published_at: DateTime::from_timestamp_millis(published_at)
            .ok_or_else(|| corrupt("published_at", &published_at))?,
    })
}

fn is_unique_violation(e: &sqlx::Error) -> bool {
    matches!(e, sqlx::Error::Database(db) if db.is_unique_violation())
}

/// Checks a `sqlite:` URL, asks for the file to be created when missing
/// and creates its directory (see [`steward_sqlkit::prepare_sqlite_url`]).
#[cfg(test)]
fn prepare_sqlite_url(url: &str) -> Result<String, IndexError> {
    steward_sqlkit::prepare_sqlite_url(url, "registry.db").map_err(database_url_error)
}

fn database_url_error(message: String) -> IndexError {
    IndexError::Invalid {
        field: "database URL",
        message,
    }
}

/// `sqlite://<data-dir>/registry.db`: the default database.
pub fn default_database_url(data_dir: &Path) -> String {
    format!("sqlite://{}", data_dir.join("registry.db").display())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_are_prefixed_random_hex_and_hashed() {
        let a = new_token();
        let b = new_token();
        assert_ne!(a, b);
        let hex_part = a.strip_prefix(TOKEN_PREFIX).unwrap();
        assert_eq!(hex_part.len(), 64);
        assert!(hex_part.bytes().all(|c| c.is_ascii_hexdigit()));
        assert_eq!(hash_token(&a).len(), 64);
        assert_ne!(hash_token(&a), hash_token(&b));
    }

    #[test]
    fn the_backend_comes_from_the_url() {
        assert_eq!(
            Backend::from_url("sqlite:///x.db").unwrap(),
            Backend::Sqlite
        );
        assert_eq!(
            Backend::from_url("postgres://u@h/db").unwrap(),
            Backend::Postgres
        );
        assert!(Backend::from_url("mysql://x").is_err());
        assert!(prepare_sqlite_url("sqlite://:memory:").is_err());
    }

    #[tokio::test]
    async fn publishers_keys_and_versions_round_trip_in_sqlite() {
        let dir = tempfile::tempdir().unwrap();
        let index = Index::open(&default_database_url(dir.path()))
            .await
            .unwrap();
        let acme = index
            .add_publisher("acme", &["acme".into(), "acme-labs".into()], false)
            .await
            .unwrap();
        assert_eq!(acme.namespaces, ["acme", "acme-labs"]);
        assert!(matches!(
            index.add_publisher("acme", &["other".into()], false).await,
            Err(IndexError::PublisherExists(_))
        ));
        assert!(matches!(
            index.add_publisher("rival", &["acme".into()], false).await,
            Err(IndexError::NamespaceTaken { .. })
        ));
        assert!(matches!(
            index.add_publisher("Bad Name", &["x".into()], false).await,
            Err(IndexError::Invalid { .. })
        ));
        let found = index
            .publisher_by_token(&acme.token)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(found, acme.publisher);
        assert!(
            index
                .publisher_by_token("stwr_nope")
                .await
                .unwrap()
                .is_none()
        );
        let ns = index.namespace("acme").await.unwrap().unwrap();
        assert_eq!(ns.publisher_id, acme.publisher.id);
        assert!(!ns.unsigned);

        assert!(
            index
                .register_key(&acme.publisher.id, "ed25519:k", "PK")
                .await
                .unwrap()
        );
        assert!(
            !index
                .register_key(&acme.publisher.id, "ed25519:k", "PK")
                .await
                .unwrap()
        );
        let rival = index
            .add_publisher("rival", &["rival".into()], true)
            .await
            .unwrap();
        assert!(matches!(
            index
                .register_key(&rival.publisher.id, "ed25519:k", "PK")
                .await,
            Err(IndexError::KeyTaken(_))
        ));

        let manifest = Manifest {
            name: "acme/patching".into(),
            version: "1.0.0".parse().unwrap(),
            description: "Patches packages".into(),
            license: "MIT".into(),
            homepage: None,
            wit: "steward:plugin@0.1.0".into(),
            capabilities: ["packages".to_string()].into(),
        };
        let new = NewVersion {
            manifest: manifest.clone(),
            digest: Digest::of(b"m"),
            size: 1,
            signature: Some(("sig".into(), "ed25519:k".into())),
        };
        let record = index.insert_version(&new).await.unwrap();
        assert!(matches!(
            index.insert_version(&new).await,
            Err(IndexError::VersionExists { .. })
        ));
        let listed = index.versions("acme", "patching").await.unwrap();
        assert_eq!(listed, vec![record.clone()]);
        let yanked = index
            .set_yanked("acme", "patching", &manifest.version, true)
            .await
            .unwrap()
            .unwrap();
        assert!(yanked.yanked);
        assert!(index.search("patch", 10).await.unwrap().is_empty());
        index
            .set_yanked("acme", "patching", &manifest.version, false)
            .await
            .unwrap();
        assert_eq!(index.search("PACKAGES", 10).await.unwrap(), vec![record]);
        assert!(
            index
                .set_yanked("acme", "patching", &"9.9.9".parse().unwrap(), true)
                .await
                .unwrap()
                .is_none()
        );
    }
}
