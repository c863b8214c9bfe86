//! Command-line interface: the local runner (`steward plugin inspect`,
//! `steward plugin run`).

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use clap::{Args, Parser, Subcommand};

use crate::text::safe;
use serde_json::json;
use steward_contract::kebab;
use steward_runtime::audit::{AuditEvent, AuditOutcome, MemoryAudit};
use steward_runtime::bindings::types::{
    Change, Descriptor, Finding, Outcome, ParamType, ParamValue, PluginScope, RunMode, Severity,
};
use steward_runtime::capability::{Grant, Grants};
use steward_runtime::device::fleet;
use steward_runtime::device::local::{self, LocalConfig};
use steward_runtime::device::simulated::{Fixture, Simulated};
use steward_runtime::{
    ArtifactSource, EngineSettings, Limits, LogLine, Module, RunError, RunReport, RunSpec, Runtime,
    RuntimeConfig, resolve_text_params,
};

/// Steward: automated checks and remediation for managed devices.
#[derive(Debug, Parser)]
#[command(name = "steward", version, about)]
struct Cli {
    /// Directory for precompiled plugin artifacts.
    #[arg(long, global = true, env = "STEWARD_CACHE_DIR", value_name = "DIR")]
    cache_dir: Option<PathBuf>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Work with plugin components: inspect and run them locally, without a
    /// server, or publish them to a module registry.
    #[command(subcommand)]
    Plugin(PluginCommand),
    /// Simulated fleets for demos and load tests.
    #[command(subcommand)]
    Fleet(FleetCommand),
    /// Run the control plane: the scheduler fires playbooks, workers run
    /// their jobs, the sweeper reclaims expired leases and expires jobs.
    /// Stops cleanly on SIGINT or SIGTERM (jobs running are finished; claimed jobs not started go back to the queue).
    #[cfg(feature = "server")]
    Serve(crate::server::ServeArgs),
    /// The endpoint's agent: enroll this machine with a server, then run
    /// (connects out to the server and serves its provider calls within
    /// this endpoint's policy).
    #[command(subcommand)]
    Agent(AgentCommand),
    #[command(flatten)]
    Remote(crate::remote::Remote),
    /// Time to remediate findings per tenant tier against per-tier
    /// targets, from the store.
    #[cfg(feature = "server")]
    Sla(crate::server::SlaArgs),
}

#[derive(Debug, Subcommand)]
enum AgentCommand {
    /// Enrolls this machine: makes its key pair, joins the token's tenant.
    Enroll(crate::agent::EnrollArgs),
    /// Connects to the server and serves it until stopped (SIGINT or
    /// SIGTERM); reconnects with backoff. Exits 3 when revoked.
    Run(crate::agent::RunArgs),
}

#[derive(Debug, Subcommand)]
enum FleetCommand {
    /// Write a device fixture whose tenant has a generated fleet (the same
    /// seed gives the same fleet), for `plugin run --device FIXTURE`.
    Generate {
        /// Number of devices.
        #[arg(long, default_value_t = 200)]
        devices: usize,
        /// Seed of the generator.
        #[arg(long, default_value_t = 1)]
        seed: u64,
        /// Tenant id.
        #[arg(long, default_value = "acme")]
        tenant: String,
        /// The fleet's "today", `YYYY-MM-DD`; the fixture's clock is fixed there.
        #[arg(long, value_parser = parse_date)]
        today: chrono::NaiveDate,
        /// Percent of devices with a failing disk.
        #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(u8).range(0..=100))]
        failing_percent: u8,
        /// Output file (`.json` or `.toml`).
        #[arg(long, short)]
        output: PathBuf,
    },
}

#[derive(Debug, Subcommand)]
enum PluginCommand {
    /// Print a plugin's description and the capabilities it requests.
    Inspect {
        /// The plugin component (`.wasm`).
        file: PathBuf,
        /// Print JSON instead of text.
        #[arg(long)]
        json: bool,
    },
    /// Run a plugin's check, then its remediation, against a device.
    Run(Box<RunArgs>),
    /// Create an ed25519 signing key for publishing plugins to a registry;
    /// prints its key id and public key.
    Keygen(crate::publish::KeygenArgs),
    /// Register a signing key's public half with a registry, under the
    /// publisher token.
    RegisterKey(crate::publish::RegisterKeyArgs),
    /// Upload a plugin component and its manifest to a registry, signed
    /// with a registered key; prints `published NS/MODULE VERSION DIGEST`.
    Publish(Box<crate::publish::PublishArgs>),
    /// Write a new plugin (Rust or Python) with a fixture device and a
    /// test case, anywhere on disk.
    New(crate::author::NewArgs),
    /// Build a plugin directory's component for its language; prints the
    /// file and the capabilities it requests.
    Build(crate::author::DirArgs),
    /// Run a plugin against the fixture devices of its test cases
    /// (`tests/*.toml`) and compare with their expectations; exits 1 on a
    /// difference, printing it.
    Test(crate::author::TestArgs),
}

#[derive(Debug, Args)]
struct RunArgs {
    /// The plugin component (`.wasm`).
    file: PathBuf,
    /// `local` for this machine's real providers (dpkg/apt, ClamAV), or a
    /// simulated device fixture (`.toml` or `.json`).
    #[arg(long, value_name = "local|FIXTURE")]
    device: String,
    /// On `--device local`, remediate after the check (with `--plan`, only
    /// plan). Without it a local run only checks.
    #[arg(long)]
    remediate: bool,
    /// On `--device local`: run `apt-get update` before listing updates.
    #[arg(long)]
    apt_refresh: bool,
    /// On `--device local`: the private mirror freshclam updates from.
    #[arg(long, value_name = "URL")]
    clamav_mirror: Option<String>,
    /// On `--device local`: where quarantined files go.
    #[arg(
        long,
        value_name = "DIR",
        default_value = "/var/lib/steward/quarantine"
    )]
    quarantine_dir: PathBuf,
    /// On `--device local`: root of the local accounts (`etc/passwd`,
    /// `etc/shadow`, faillock tallies).
    #[arg(long, value_name = "DIR", default_value = "/")]
    accounts_root: PathBuf,
    /// On `--device local`: a directory to serve accounts from, as a TOML
    /// file (`url`, `bind-dn`, `bind-password`, `base-dn`, `flavour` =
    /// `openldap` or `active-directory`).
    #[arg(long, value_name = "FILE")]
    directory: Option<PathBuf>,
    /// On `--device local`: this machine's backup sets, as a TOML file
    /// (`state-dir`, and `[[set]]` tables: `name`, `tool` = `restic` or
    /// `borg`, `repository`, `password-file`, `paths`, `exclude`).
    #[arg(long, value_name = "FILE")]
    backups: Option<PathBuf>,
    /// On `--device local`: the admin's record of this machine as a TOML
    /// file (`id`, `tenant-id`, `tags`, `[admin]` purchase-date, ...).
    #[arg(long, value_name = "FILE")]
    device_record: Option<PathBuf>,
    /// Plan only: mutating calls record what they would do and change nothing.
    #[arg(long)]
    plan: bool,
    /// Run the check only.
    #[arg(long, conflicts_with = "plan")]
    check_only: bool,
    /// A parameter, `name=value` (repeatable). Lists are comma-separated.
    #[arg(long = "param", value_name = "NAME=VALUE", value_parser = parse_param)]
    params: Vec<(String, String)>,
    /// A capability grant, `capability` or `capability=pattern,...`
    /// (repeatable). Example: `--grant packages=openssl*,libssl*`.
    #[arg(long = "grant", value_name = "GRANT")]
    grants: Vec<Grant>,
    /// Linear memory cap in MiB.
    #[arg(long, default_value_t = 64)]
    memory_mib: usize,
    /// CPU time limit in milliseconds.
    #[arg(long, default_value_t = 10_000)]
    cpu_ms: u64,
    /// Wall-clock limit in milliseconds, host calls included.
    #[arg(long, default_value_t = 120_000)]
    wall_ms: u64,
    /// Print JSON instead of text.
    #[arg(long)]
    json: bool,
}

fn read_toml<T: serde::de::DeserializeOwned>(path: &Path) -> anyhow::Result<T> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("failed to read {}", path.display()))?;
    toml::from_str(&text).with_context(|| format!("invalid {}", path.display()))
}

fn parse_date(s: &str) -> Result<chrono::NaiveDate, String> {
    chrono::NaiveDate::parse_from_str(s, "%Y-%m-%d")
        .map_err(|e| format!("`{s}` is not a YYYY-MM-DD date: {e}"))
}

/// Leaves out absent optional values, which TOML cannot write.
fn drop_nulls(value: &mut serde_json::Value) {
    match value {
        serde_json::Value::Object(map) => {
            map.retain(|_, v| !v.is_null());
            map.values_mut().for_each(drop_nulls);
        }
        serde_json::Value::Array(items) => items.iter_mut().for_each(drop_nulls),
        _ => {}
    }
}

fn generate_fleet(spec: &fleet::FleetSpec, output: &Path) -> anyhow::Result<ExitCode> {
    let fixture = fleet::fixture(spec);
    let mut value = steward_contract::kebab::to_value(&fixture)?;
    let text = if output.extension().is_some_and(|e| e == "toml") {
        drop_nulls(&mut value);
        toml::to_string(&value)?
    } else {
        serde_json::to_string_pretty(&value)?
    };
    std::fs::write(output, text)
        .with_context(|| format!("failed to write {}", output.display()))?;
    println!(
        "wrote {} devices of tenant {} to {}",
        fixture.fleet.len() + 1,
        spec.tenant_id,
        output.display()
    );
    Ok(ExitCode::SUCCESS)
}

fn parse_param(s: &str) -> Result<(String, String), String> {
    s.split_once('=')
        .map(|(k, v)| (k.trim().to_string(), v.to_string()))
        .ok_or_else(|| format!("`{s}` is not `name=value`"))
}

pub fn main() -> ExitCode {
    let cli = Cli::parse();
    // An agent is a service: it logs what it does by default.
    let default_log = match cli.command {
        Command::Agent(AgentCommand::Run(_)) => "info",
        _ => "error",
    };
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("STEWARD_LOG")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default_log)),
        )
        .with_writer(std::io::stderr)
        .init();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(err) => {
            eprintln!("error: failed to start the async runtime: {err}");
            return ExitCode::from(2);
        }
    };
    match runtime.block_on(dispatch(cli)) {
        Ok(code) => code,
        Err(err) => {
            eprintln!("error: {}", safe(&format!("{err:#}")));
            ExitCode::from(2)
        }
    }
}

async fn dispatch(cli: Cli) -> anyhow::Result<ExitCode> {
    let cache_dir = cli.cache_dir.unwrap_or_else(default_cache_dir);
    match cli.command {
        Command::Plugin(PluginCommand::Inspect { file, json }) => {
            let runtime = open_runtime(cache_dir, Limits::default())?;
            inspect(&runtime, &file, json).await
        }
        Command::Plugin(PluginCommand::Run(args)) => {
            let limits = Limits {
                memory_bytes: args.memory_mib << 20,
                cpu_time: Duration::from_millis(args.cpu_ms),
                wall_time: Duration::from_millis(args.wall_ms),
                ..Limits::default()
            };
            let runtime = open_runtime(cache_dir, limits)?;
            run(&runtime, *args).await
        }
        Command::Plugin(PluginCommand::Keygen(args)) => crate::publish::keygen(&args),
        Command::Plugin(PluginCommand::RegisterKey(args)) => {
            crate::publish::register_key(&args).await
        }
        Command::Plugin(PluginCommand::Publish(args)) => {
            let runtime = open_runtime(cache_dir, Limits::default())?;
            crate::publish::publish(&args, &runtime).await
        }
        Command::Plugin(PluginCommand::New(args)) => crate::author::new(&args),
        Command::Plugin(PluginCommand::Build(args)) => {
            let runtime = open_runtime(cache_dir, Limits::default())?;
            crate::author::build(&runtime, &args).await
        }
        Command::Plugin(PluginCommand::Test(args)) => {
            let runtime = open_runtime(cache_dir, Limits::default())?;
            crate::author::test(&runtime, &args).await
        }
        #[cfg(feature = "server")]
        Command::Serve(args) => crate::server::serve(args).await,
        Command::Remote(remote) => crate::remote::run(remote).await,
        Command::Agent(AgentCommand::Enroll(args)) => {
            crate::agent::enroll(args).await?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Agent(AgentCommand::Run(args)) => {
            Ok(ExitCode::from(crate::agent::run(args).await?))
        }
        #[cfg(feature = "server")]
        Command::Sla(args) => crate::server::sla(args).await,
        Command::Fleet(FleetCommand::Generate {
            devices,
            seed,
            tenant,
            today,
            failing_percent,
            output,
        }) => generate_fleet(
            &fleet::FleetSpec {
                tenant_id: tenant,
                devices,
                seed,
                today: steward_runtime::capability::inventory::eol::date(today),
                failing_percent,
            },
            &output,
        ),
    }
}

fn default_cache_dir() -> PathBuf {
    let base = std::env::var_os("XDG_CACHE_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache")))
        .unwrap_or_else(std::env::temp_dir);
    base.join("steward").join("artifacts")
}

fn open_runtime(cache_dir: PathBuf, limits: Limits) -> anyhow::Result<Runtime> {
    Runtime::new(RuntimeConfig {
        cache_dir,
        engine: EngineSettings {
            max_instances: 8,
            max_memory_bytes: limits.memory_bytes.max(64 << 20),
            pooling: true,
        },
        limits,
    })
}

pub(crate) async fn load(runtime: &Runtime, file: &Path) -> anyhow::Result<Arc<Module>> {
    let bytes =
        std::fs::read(file).with_context(|| format!("failed to read {}", file.display()))?;
    runtime
        .load(&bytes)
        .await
        .with_context(|| format!("cannot load {}", file.display()))
}

pub(crate) async fn describe(runtime: &Runtime, module: &Module) -> anyhow::Result<Descriptor> {
    let report = runtime.describe(module).await;
    report.result.context("`describe` failed")
}

fn artifact_word(source: ArtifactSource) -> &'static str {
    match source {
        ArtifactSource::Compiled => "compiled",
        ArtifactSource::Cache => "cached",
    }
}

async fn inspect(runtime: &Runtime, file: &Path, as_json: bool) -> anyhow::Result<ExitCode> {
    let module = load(runtime, file).await?;
    let descriptor = describe(runtime, &module).await?;
    let requested: Vec<&str> = module.requested.iter().map(|c| c.name()).collect();
    if as_json {
        let out = json!({
            "descriptor": kebab::to_value(&descriptor)?,
            "digest": module.digest,
            "artifact": artifact_word(module.source),
            "wit": format!("steward:plugin@{}", module.wit_version),
            "denied-imports": module.denied_imports,
            "requested-capabilities": requested,
        });
        println!("{}", serde_json::to_string_pretty(&out)?);
        return Ok(ExitCode::SUCCESS);
    }
    println!("{} {}", safe(&descriptor.name), safe(&descriptor.version));
    println!("  {}", safe(&descriptor.summary));
    println!(
        "digest:    {} ({})",
        module.digest,
        artifact_word(module.source)
    );
    let scope = match descriptor.scope {
        PluginScope::Device => "one device per run",
        PluginScope::Tenant => "every device of a tenant per run",
    };
    println!("scope:     {scope}");
    println!("wit:       steward:plugin@{}", module.wit_version);
    if !module.denied_imports.is_empty() {
        println!(
            "denied:    {} (imported, denied at run time)",
            module.denied_imports.join(", ")
        );
    }
    println!(
        "requests:  {}",
        if requested.is_empty() {
            "nothing beyond log, config, clock and state".to_string()
        } else {
            requested.join(", ")
        }
    );
    if descriptor.params.is_empty() {
        println!("parameters: none");
    } else {
        println!("parameters:");
        for p in &descriptor.params {
            let default = p
                .default
                .as_ref()
                .map(|d| format!(" (default {})", safe(&show_value(d))))
                .unwrap_or_default();
            let required = if p.required { " (required)" } else { "" };
            println!(
                "  {:<20} {:<10} {}{default}{required}",
                safe(&p.name),
                type_name(p.type_),
                safe(&p.description)
            );
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn type_name(t: ParamType) -> &'static str {
    match t {
        ParamType::Boolean => "boolean",
        ParamType::Integer => "integer",
        ParamType::Float => "float",
        ParamType::Text => "text",
        ParamType::TextList => "text-list",
    }
}

fn show_value(v: &ParamValue) -> String {
    match v {
        ParamValue::Boolean(b) => b.to_string(),
        ParamValue::Integer(i) => i.to_string(),
        ParamValue::Float(f) => f.to_string(),
        ParamValue::Text(s) => s.clone(),
        ParamValue::TextList(l) => l.join(","),
    }
}

async fn run(runtime: &Runtime, args: RunArgs) -> anyhow::Result<ExitCode> {
    let module = load(runtime, &args.file).await?;
    let grants: Grants = args.grants.iter().cloned().collect();
    module.authorize_exactly(&grants)?;
    let descriptor = describe(runtime, &module).await?;
    let params = resolve_text_params(&descriptor, &args.params)?;
    let local = args.device == "local";
    let backups: Option<steward_runtime::capability::backups::BackupsFile> =
        args.backups.as_deref().map(read_toml).transpose()?;
    let device = Arc::new(if local {
        let defaults = LocalConfig::default();
        let (backup_sets, backup_state_dir) = match backups {
            Some(b) => (b.set, b.state_dir.unwrap_or(defaults.backup_state_dir)),
            None => (Vec::new(), defaults.backup_state_dir),
        };
        let config = LocalConfig {
            apt_refresh: args.apt_refresh,
            clamav_mirror: args.clamav_mirror.clone(),
            quarantine_dir: args.quarantine_dir.clone(),
            accounts_root: args.accounts_root.clone(),
            directory: args.directory.as_deref().map(read_toml).transpose()?,
            record: args
                .device_record
                .as_deref()
                .map(read_toml)
                .transpose()?
                .unwrap_or_default(),
            backup_sets,
            backup_state_dir,
            ..LocalConfig::default()
        };
        // A bad set is refused here, before the plugin runs.
        local::backups(&config)?;
        local::device(&config)
    } else {
        Simulated::new(Fixture::load(Path::new(&args.device))?).device()
    });
    // A real machine is only changed when asked for explicitly.
    let remediate = !args.check_only && (!local || args.remediate);
    let audit = Arc::new(MemoryAudit::default());
    let mode = if args.plan {
        RunMode::Plan
    } else {
        RunMode::Apply
    };
    let spec = RunSpec {
        run_id: format!("local-{}", std::process::id()),
        plugin: descriptor.name.clone(),
        mode,
        params,
        grants,
        device: device.clone(),
        audit: audit.clone(),
        limits: Some(runtime.limits()),
        journal: None,
    };

    let check = runtime.check(&module, spec.clone()).await;
    let mut logs = vec![("check", check.log.clone(), check.log_dropped)];
    let mut error: Option<(&str, RunError)> = None;
    let mut findings = Vec::new();
    let mut changes = Vec::new();
    let mut failures = Vec::new();
    match check.result {
        Ok(f) => findings = f,
        Err(e) => error = Some(("check", e)),
    }
    if error.is_none() && remediate && !findings.is_empty() {
        let RunReport {
            result,
            log,
            log_dropped,
            ..
        } = runtime.remediate(&module, spec, findings.clone()).await;
        logs.push(("remediate", log, log_dropped));
        match result {
            Ok(r) => {
                changes = r.changes;
                failures = r.failures;
            }
            Err(e) => error = Some(("remediate", e)),
        }
    }
    let audit = audit.events();

    if args.json {
        let out = json!({
            "plugin": { "name": descriptor.name, "version": descriptor.version, "digest": module.digest, "artifact": artifact_word(module.source) },
            "device": { "id": device.id, "name": device.name, "tenant": device.tenant_id },
            "mode": if !remediate { "check" } else if args.plan { "plan" } else { "apply" },
            "findings": kebab::to_value(&findings)?,
            "changes": kebab::to_value(&changes)?,
            "failures": kebab::to_value(&failures)?,
            "audit": audit,
            "log": logs.iter().map(|(phase, lines, dropped)| json!({"phase": phase, "lines": lines, "dropped": dropped})).collect::<Vec<_>>(),
            "error": error.as_ref().map(|(phase, e)| json!({"phase": phase, "code": e.code(), "message": e.to_string()})),
        });
        println!("{}", serde_json::to_string_pretty(&out)?);
    } else {
        let mode_word = if !remediate {
            "check only"
        } else if args.plan {
            "plan mode"
        } else {
            "apply mode"
        };
        print_human(
            &descriptor,
            &module,
            &device.name,
            mode_word,
            &findings,
            &changes,
            &audit,
            &logs,
        );
        for f in &failures {
            eprintln!(
                "error: remediate could not fix {}: {}",
                safe(&f.finding_id),
                safe(&f.error)
            );
        }
        if let Some((phase, e)) = &error {
            eprintln!("error: {phase} failed: {}", safe(&e.to_string()));
        }
    }
    Ok(if error.is_some() || !failures.is_empty() {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    })
}

#[allow(clippy::too_many_arguments)]
fn print_human(
    descriptor: &Descriptor,
    module: &Module,
    device: &str,
    mode: &str,
    findings: &[Finding],
    changes: &[Change],
    audit: &[AuditEvent],
    logs: &[(&str, Vec<LogLine>, usize)],
) {
    println!(
        "{} {} ({}, {}) on {device}, {mode}",
        safe(&descriptor.name),
        safe(&descriptor.version),
        module.digest.short(),
        artifact_word(module.source),
    );
    println!("\nfindings ({}):", findings.len());
    for f in findings {
        let severity = match f.severity {
            Severity::Info => "info",
            Severity::Warning => "warning",
            Severity::Critical => "critical",
        };
        println!("  {severity:<8} {:<32} {}", safe(&f.id), safe(&f.summary));
        if !f.detail.is_empty() {
            println!("           {}", safe(&f.detail));
        }
    }
    println!("\nchanges ({}):", changes.len());
    for c in changes {
        let outcome = match c.outcome {
            Outcome::Applied => "applied",
            Outcome::Planned => "planned",
        };
        let delta = match (&c.before, &c.after) {
            (Some(b), Some(a)) => format!(" {} -> {}", safe(b), safe(a)),
            (None, Some(a)) => format!(" -> {}", safe(a)),
            _ => String::new(),
        };
        println!(
            "  {outcome:<8} {:<16} {}{delta}  {}",
            safe(&c.kind),
            safe(&c.target),
            safe(&c.description)
        );
    }
    if !audit.is_empty() {
        println!("\naudit ({}):", audit.len());
        for e in audit {
            let outcome = match &e.outcome {
                AuditOutcome::Applied => "applied".to_string(),
                AuditOutcome::Planned => "planned".to_string(),
                AuditOutcome::Denied(r) => format!("denied: {}", safe(r)),
                AuditOutcome::Failed(r) => format!("failed: {}", safe(r)),
                AuditOutcome::Replayed => "replayed".to_string(),
                AuditOutcome::Reconciled => "reconciled".to_string(),
            };
            println!(
                "  {}.{} {}  => {outcome}",
                e.capability,
                e.function,
                safe(&e.arguments)
            );
        }
    }
    for (phase, lines, dropped) in logs {
        if lines.is_empty() && *dropped == 0 {
            continue;
        }
        println!("\nlog ({phase}):");
        for l in lines {
            let fields: String = l
                .fields
                .iter()
                .map(|(k, v)| format!(" {}={}", safe(k), safe(v)))
                .collect();
            println!("  {:<5} {}{fields}", safe(l.level), safe(&l.message));
        }
        if *dropped > 0 {
            println!("  ... {dropped} more lines dropped (log limit)");
        }
    }
}
