//! `steward-registry`: the module registry server and its admin commands.
//!
//! ```text
//! steward-registry serve --listen 127.0.0.1:8470 --data-dir /var/lib/steward-registry
//! steward-registry publisher add acme --namespace acme --data-dir /var/lib/steward-registry
//! ```
//!
//! The data directory holds the SQLite index (`registry.db`, unless
//! `--database` names another, for example PostgreSQL) and the blobs
//! (`blobs/sha256/<hex>`, unless `--blobs s3://BUCKET[/PREFIX]` keeps them
//! in an S3-compatible bucket instead). `serve` prints `steward-registry: listening on
//! http://ADDR` on standard output once bound (so `--listen 127.0.0.1:0`
//! can be used and the port read back) and stops on SIGTERM or SIGINT,
//! letting requests in flight finish.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::Context as _;
use clap::{Args, Parser, Subcommand};
use steward_registry_server::blobs::s3::MAX_S3_BLOB_BYTES;
use steward_registry_server::blobs::{BlobStore, FsBlobStore, S3BlobStore, S3Location, S3Options};
use steward_registry_server::index::{Index, default_database_url};
use steward_registry_server::server::{self, DEFAULT_MAX_MODULE_BYTES, ServerConfig};

#[derive(Debug, Parser)]
#[command(
    name = "steward-registry",
    version,
    about = "Steward's module registry"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Serve the registry's HTTP API.
    Serve {
        /// Address to listen on (port 0 picks a free port).
        #[arg(
            long,
            env = "STEWARD_REGISTRY_LISTEN",
            default_value = "127.0.0.1:8470"
        )]
        listen: SocketAddr,
        #[command(flatten)]
        storage: Storage,
        #[command(flatten)]
        blobs: Blobs,
        /// The largest module accepted, in bytes.
        #[arg(long, env = "STEWARD_REGISTRY_MAX_MODULE_BYTES", default_value_t = DEFAULT_MAX_MODULE_BYTES)]
        max_module_bytes: u64,
    },
    /// Manage publishers.
    #[command(subcommand)]
    Publisher(PublisherCommand),
}

#[derive(Debug, Subcommand)]
enum PublisherCommand {
    /// Create a publisher owning one or more namespaces and print its
    /// token (shown once).
    Add {
        /// The publisher's name ([a-z0-9-]).
        name: String,
        /// A namespace the publisher owns; repeat for several.
        #[arg(long = "namespace", required = true)]
        namespaces: Vec<String>,
        /// Let these namespaces publish unsigned modules (development only).
        #[arg(long)]
        unsigned_namespace: bool,
        #[command(flatten)]
        storage: Storage,
    },
}

#[derive(Debug, Args)]
struct Storage {
    /// Directory holding the default SQLite index and the blobs (unless
    /// `serve --blobs` keeps them in S3).
    #[arg(long, env = "STEWARD_REGISTRY_DATA_DIR")]
    data_dir: PathBuf,
    /// Database URL (`sqlite://PATH` or `postgres://…`); default
    /// `sqlite://<data-dir>/registry.db`.
    #[arg(long, env = "STEWARD_REGISTRY_DATABASE")]
    database: Option<String>,
}

/// Where `serve` keeps module bytes.
#[derive(Debug, Args)]
struct Blobs {
    /// Keep module bytes in an S3-compatible bucket, at
    /// `PREFIX/sha256/<hex>`, instead of under `<data-dir>/blobs`.
    /// Credentials come from AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY
    /// (and the other standard AWS_* variables, or the instance's role).
    #[arg(
        long,
        env = "STEWARD_REGISTRY_BLOBS",
        value_name = "s3://BUCKET[/PREFIX]"
    )]
    blobs: Option<S3Location>,
    /// The S3 service's URL, for S3-compatible services (MinIO, Ceph,
    /// R2…); default AWS for the region (or AWS_ENDPOINT).
    #[arg(
        long,
        env = "STEWARD_REGISTRY_S3_ENDPOINT",
        value_name = "URL",
        requires = "blobs"
    )]
    s3_endpoint: Option<String>,
    /// The bucket's region; default AWS_REGION, else us-east-1.
    #[arg(
        long,
        env = "STEWARD_REGISTRY_S3_REGION",
        value_name = "REGION",
        requires = "blobs"
    )]
    s3_region: Option<String>,
    /// Allow a plain-HTTP --s3-endpoint (testing only).
    #[arg(long, env = "STEWARD_REGISTRY_S3_ALLOW_HTTP", requires = "blobs")]
    s3_allow_http: bool,
}

impl Storage {
    async fn open_index(&self) -> anyhow::Result<Index> {
        std::fs::create_dir_all(&self.data_dir).with_context(|| {
            format!(
                "cannot create the data directory {}",
                self.data_dir.display()
            )
        })?;
        let url = self
            .database
            .clone()
            .unwrap_or_else(|| default_database_url(&self.data_dir));
        Index::open(&url).await.context("cannot open the index")
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("STEWARD_REGISTRY_LOG")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .init();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("steward-registry: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(cli)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("steward-registry: {e:#}");
            ExitCode::FAILURE
        }
    }
}

async fn run(cli: Cli) -> anyhow::Result<()> {
    match cli.command {
        Command::Serve {
            listen,
            storage,
            blobs,
            max_module_bytes,
        } => serve(listen, &storage, &blobs, max_module_bytes).await,
        Command::Publisher(PublisherCommand::Add {
            name,
            namespaces,
            unsigned_namespace,
            storage,
        }) => add_publisher(&name, &namespaces, unsigned_namespace, &storage).await,
    }
}

async fn serve(
    listen: SocketAddr,
    storage: &Storage,
    blobs: &Blobs,
    max_module_bytes: u64,
) -> anyhow::Result<()> {
    anyhow::ensure!(max_module_bytes > 0, "--max-module-bytes must be positive");
    anyhow::ensure!(
        blobs.blobs.is_none() || max_module_bytes <= MAX_S3_BLOB_BYTES,
        "--max-module-bytes can be at most {MAX_S3_BLOB_BYTES} (5 GiB) with S3 blobs"
    );
    let (store, blobs_at) = open_blobs(storage, blobs).await?;
    let index = storage.open_index().await?;
    let app = server::router(index.clone(), store, ServerConfig { max_module_bytes });
    let listener = tokio::net::TcpListener::bind(listen)
        .await
        .with_context(|| format!("cannot listen on {listen}"))?;
    let addr = listener
        .local_addr()
        .context("cannot read the bound address")?;
    println!("steward-registry: listening on http://{addr}");
    tracing::info!(
        %addr,
        database = index.backend().name(),
        blobs = %blobs_at,
        max_module_bytes,
        "serving"
    );
    axum::serve(listener, app)
        .with_graceful_shutdown(shutdown_signal())
        .await
        .context("the server failed")?;
    index.close().await;
    eprintln!("steward-registry: stopped");
    Ok(())
}

async fn shutdown_signal() {
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut term) => {
                term.recv().await;
            }
            Err(e) => {
                tracing::error!(error = %e, "cannot watch for SIGTERM");
                std::future::pending::<()>().await;
            }
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        () = term => {}
    }
    eprintln!("steward-registry: stopping; finishing requests in flight");
}

/// The blob store, and where it is for the log.
async fn open_blobs(
    storage: &Storage,
    blobs: &Blobs,
) -> anyhow::Result<(Arc<dyn BlobStore>, String)> {
    let Some(location) = &blobs.blobs else {
        let root = storage.data_dir.join("blobs");
        let store = FsBlobStore::open(&root)
            .with_context(|| format!("cannot open the blob store in {}", root.display()))?;
        return Ok((Arc::new(store), root.display().to_string()));
    };
    let options = S3Options {
        endpoint: blobs.s3_endpoint.clone(),
        region: blobs.s3_region.clone(),
        allow_http: blobs.s3_allow_http,
    };
    let store = S3BlobStore::open(location, &options)
        .await
        .with_context(|| format!("cannot open the blob store {location}"))?;
    Ok((Arc::new(store), location.to_string()))
}

async fn add_publisher(
    name: &str,
    namespaces: &[String],
    unsigned: bool,
    storage: &Storage,
) -> anyhow::Result<()> {
    let index = storage.open_index().await?;
    let created = index.add_publisher(name, namespaces, unsigned).await?;
    index.close().await;
    println!(
        "steward-registry: created publisher `{}` owning {}{}",
        created.publisher.name,
        created.namespaces.join(", "),
        if created.unsigned {
            " (unsigned modules accepted: development only)"
        } else {
            ""
        }
    );
    println!(
        "steward-registry: publisher token (shown once, keep it): {}",
        created.token
    );
    Ok(())
}
