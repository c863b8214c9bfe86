//! `steward serve` and `steward sla`: the commands that need the control
//! plane, its store and the web API. Built with the `server` feature (on by
//! default); without it, `steward` is the plugin author's and endpoint's
//! binary: `plugin new/build/test/run/inspect/publish`, `agent`, `fleet`
//! and the API client commands, with no sqlx, axum or object_store.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Args;
use steward_control::registry::RegistrySettings;
use steward_host::serve::{ServeConfig, Server};
use steward_store::{Tier, Timestamp};

/// `steward serve`'s arguments.
#[derive(Debug, Args)]
pub struct ServeArgs {
    /// Configuration file (TOML): `data-dir`, `database`, `listen`,
    /// `worker-id`, `max-in-flight`, `claim-batch`, `lease-seconds`,
    /// `tick-ms`, `max-instances`, `retry-base-ms`, `[[webhooks]]`
    /// (`id`, `url`, `secret`, `tenants`), `[[plugins]]` (`file`,
    /// `grants`), `[this-machine]` (`tenant`, `tags`), `[[playbooks]]`
    /// (`name`, `tenant`, `steps`, `target`, `schedule`); see
    /// docs/steward.toml. Without one: `./steward-data`, SQLite, the API
    /// on 127.0.0.1:8080.
    #[arg(long, env = "STEWARD_CONFIG", value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Where the web API listens (`host:port`); overrides `listen`.
    #[arg(long, env = "STEWARD_LISTEN", value_name = "ADDR")]
    pub listen: Option<String>,
    /// Directory for the SQLite file, plugin components and the compile
    /// cache; overrides `data-dir`.
    #[arg(long, env = "STEWARD_DATA_DIR", value_name = "DIR")]
    pub data_dir: Option<PathBuf>,
    /// `sqlite://PATH` or `postgres://USER@HOST:PORT/DB`; overrides
    /// `database`.
    #[arg(long, env = "STEWARD_DATABASE", value_name = "URL")]
    pub database: Option<String>,
    /// The first owner's API token (at least 32 characters), used only
    /// when the store has no users yet; without it a token is made and
    /// printed once.
    #[arg(
        long,
        env = "STEWARD_OWNER_TOKEN",
        value_name = "TOKEN",
        hide_env_values = true
    )]
    pub owner_token: Option<String>,
    /// The module registry plugins are installed from
    /// (`http://host:port`); overrides `[registry] url`.
    #[arg(long, env = "STEWARD_REGISTRY", value_name = "URL")]
    pub registry: Option<String>,
    /// A PEM certificate chain to serve the API over TLS (with
    /// `--tls-key`); overrides `tls-cert`.
    #[arg(long, env = "STEWARD_TLS_CERT", value_name = "PEM")]
    pub tls_cert: Option<PathBuf>,
    /// The certificate's PEM private key; overrides `tls-key`.
    #[arg(long, env = "STEWARD_TLS_KEY", value_name = "PEM")]
    pub tls_key: Option<PathBuf>,
}

/// `steward sla`'s arguments.
#[derive(Debug, Args)]
pub struct SlaArgs {
    /// Configuration file, as for `serve` (for the database).
    #[arg(long, env = "STEWARD_CONFIG", value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Look at findings first seen in the last this many days.
    #[arg(long, default_value_t = 30)]
    pub days: u32,
    /// Target for VIP tenants, in hours.
    #[arg(long, default_value_t = 4)]
    pub vip_hours: u32,
    /// Target for managed tenants, in hours.
    #[arg(long, default_value_t = 24)]
    pub managed_hours: u32,
    /// Target for on-demand tenants, in hours.
    #[arg(long, default_value_t = 72)]
    pub on_demand_hours: u32,
    /// Print JSON instead of a table.
    #[arg(long)]
    pub json: bool,
}

/// `steward serve`: runs the control plane until SIGINT or SIGTERM.
pub async fn serve(args: ServeArgs) -> anyhow::Result<ExitCode> {
    let ServeArgs {
        config,
        listen,
        data_dir,
        database,
        owner_token,
        registry,
        tls_cert,
        tls_key,
    } = args;
    let mut config = match config {
        Some(p) => ServeConfig::load(&p)?,
        None => ServeConfig {
            listen: Some("127.0.0.1:8080".into()),
            ..ServeConfig::default()
        },
    };
    config.listen = listen.or(config.listen);
    config.data_dir = data_dir.unwrap_or(config.data_dir);
    config.database = database.or(config.database);
    config.owner_token = owner_token.or(config.owner_token);
    config.tls_cert = tls_cert.or(config.tls_cert);
    config.tls_key = tls_key.or(config.tls_key);
    if let Some(url) = registry {
        match &mut config.registry {
            Some(settings) => settings.url = url,
            None => config.registry = Some(RegistrySettings::new(url)),
        }
    }
    run(config).await
}

/// `steward sla`: time to remediate per tenant tier, from the store.
pub async fn sla(args: SlaArgs) -> anyhow::Result<ExitCode> {
    let SlaArgs {
        config,
        days,
        vip_hours,
        managed_hours,
        on_demand_hours,
        json,
    } = args;
    let config = serve_config(config)?;
    let store = steward_store::Store::open(&config.database_url()).await?;
    let targets = [
        (Tier::Vip, vip_hours),
        (Tier::Managed, managed_hours),
        (Tier::OnDemand, on_demand_hours),
    ]
    .into_iter()
    .map(|(t, h)| (t, i64::from(h) * 3600))
    .collect();
    let now = Timestamp::now();
    let since = Timestamp::from_millis(now.as_millis() - i64::from(days) * 86_400_000);
    let report = store.sla_report(since, now, &targets).await?;
    if json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        println!(
            "{:<10} {:>8} {:>9} {:>10} {:>10} {:>6} {:>6} {:>8}",
            "tier", "target", "resolved", "median", "p90", "late", "open", "overdue"
        );
        let fmt =
            |s: Option<i64>| s.map_or("-".to_string(), |s| format!("{:.1}h", s as f64 / 3600.0));
        for r in report {
            println!(
                "{:<10} {:>8} {:>9} {:>10} {:>10} {:>6} {:>6} {:>8}",
                r.tier.as_str(),
                format!("{}h", r.target_seconds / 3600),
                r.resolved,
                fmt(r.median_seconds),
                fmt(r.p90_seconds),
                r.resolved_late,
                r.open,
                r.open_overdue
            );
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn serve_config(path: Option<PathBuf>) -> anyhow::Result<ServeConfig> {
    match path {
        Some(p) => ServeConfig::load(&p),
        None => Ok(ServeConfig::default()),
    }
}

async fn run(config: ServeConfig) -> anyhow::Result<ExitCode> {
    let server = Server::open(&config).await?;
    if let Some(token) = &server.new_owner_token {
        println!("steward: first owner token (shown once, keep it): {token}");
    }
    if let Some(addr) = server.api_addr() {
        let scheme = if server.tls() { "https" } else { "http" };
        println!("steward: API listening on {scheme}://{addr}");
    }
    let (tx, rx) = tokio::sync::watch::channel(false);
    tokio::spawn(async move {
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
            .expect("SIGTERM handler");
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {}
            _ = term.recv() => {}
        }
        eprintln!("steward: stopping; finishing the jobs running, giving back the rest");
        let _ = tx.send(true);
    });
    eprintln!(
        "steward: serving with {} (worker {})",
        steward_store::Backend::from_url(&config.database_url())?.name(),
        config.worker()
    );
    server.run(rx).await?;
    Ok(ExitCode::SUCCESS)
}
