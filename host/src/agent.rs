//! `steward agent`: the endpoint's side of a remote device.
//!
//! `enroll` makes an ed25519 key pair on the endpoint, sends the public half
//! with an enrollment token, and keeps the key (mode 0600) and the server's
//! address in the state directory. `run` connects out to the server (the
//! agent opens no port), proves itself by signing the server's nonce,
//! answers provider calls with this machine's real providers within the
//! endpoint's ceiling (the policy file), heartbeats, and reconnects with
//! jittered exponential backoff.

use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use clap::Args;
use futures_util::{SinkExt as _, StreamExt as _};
use rand::Rng as _;
use serde::{Deserialize, Serialize};
use steward_contract::signing::SecretKey;
use steward_runtime::capability::inventory::DeviceRecord;
use steward_runtime::capability::{Grant, Grants};
use steward_runtime::device::Device;
use steward_runtime::device::local::{self, LocalConfig};
use steward_runtime::device::remote::{AgentMessage, ServerMessage, answer, challenge_payload};
use tokio::sync::mpsc;
use tokio_tungstenite::tungstenite::Message;

/// The agent's version, sent at enrollment and on every connection.
pub const AGENT_VERSION: &str = env!("CARGO_PKG_VERSION");

/// The exit code of `steward agent run` when the server revoked the agent:
/// retrying cannot help (the systemd unit does not restart on it).
pub const EXIT_REVOKED: u8 = 3;

/// `steward agent enroll`.
#[derive(Debug, Args)]
pub struct EnrollArgs {
    /// The server's base URL (`https://steward.example:8443`). Plain
    /// `http://` only for a loopback address, or with `--insecure`.
    #[arg(long, env = "STEWARD_SERVER")]
    server: String,
    /// The enrollment token (`steward enrollment create`).
    #[arg(long, env = "STEWARD_ENROLLMENT_TOKEN", hide_env_values = true)]
    token: String,
    /// A PEM certificate to trust for the server, besides the system's.
    #[arg(long, value_name = "PEM")]
    ca_cert: Option<PathBuf>,
    /// Where the agent keeps its key and the server's address.
    #[arg(
        long,
        env = "STEWARD_AGENT_DIR",
        default_value = "/var/lib/steward-agent",
        value_name = "DIR"
    )]
    state_dir: PathBuf,
    /// Allow plain `http://` to a server that is not on this machine.
    /// Everything, the enrollment token included, then crosses the network
    /// in clear text.
    #[arg(long)]
    insecure: bool,
    /// The name the device gets (default: this machine's host name).
    #[arg(long)]
    hostname: Option<String>,
}

/// `steward agent run`.
#[derive(Debug, Args)]
pub struct RunArgs {
    /// Where `enroll` kept the key and the server's address.
    #[arg(
        long,
        env = "STEWARD_AGENT_DIR",
        default_value = "/var/lib/steward-agent",
        value_name = "DIR"
    )]
    state_dir: PathBuf,
    /// The endpoint's policy (TOML): the ceiling on what any server may do
    /// here, and where the providers work; see docs/agent.toml.
    #[arg(
        long,
        env = "STEWARD_AGENT_CONFIG",
        default_value = "/etc/steward/agent.toml",
        value_name = "FILE"
    )]
    config: PathBuf,
}

/// What `enroll` keeps in `<state-dir>/agent.json`.
#[derive(Debug, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
struct Identity {
    server: String,
    device_id: String,
    tenant_id: String,
    #[serde(default)]
    ca_cert: Option<PathBuf>,
    #[serde(default)]
    insecure: bool,
}

/// The endpoint's policy file.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub struct Policy {
    /// The ceiling: grants in the `--grant` syntax (`packages`,
    /// `accounts=jdoe,svc-*`, `antivirus=/home/**`). A provider call
    /// outside it is refused here as `denied`, whatever the server grants.
    /// Empty: nothing is allowed.
    pub allow: Vec<String>,
    /// Where this machine's providers work.
    #[serde(default)]
    pub providers: ProviderSettings,
}

/// Where the endpoint's providers work (defaults: this machine).
#[derive(Debug, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub struct ProviderSettings {
    /// The root dpkg/apt work on.
    #[serde(default = "root")]
    pub apt_root: PathBuf,
    /// Run `apt-get update` before listing updates.
    #[serde(default)]
    pub apt_refresh: bool,
    /// ClamAV's database directory.
    #[serde(default = "clamav_db")]
    pub clamav_database_dir: PathBuf,
    /// Where quarantined files go.
    #[serde(default = "quarantine")]
    pub quarantine_dir: PathBuf,
    /// A private ClamAV mirror for signature updates.
    #[serde(default)]
    pub clamav_mirror: Option<String>,
    /// The root holding `etc/passwd`, `etc/shadow` and faillock tallies.
    #[serde(default = "root")]
    pub accounts_root: PathBuf,
    /// This machine's backup sets (`[[providers.backup-sets]]`: `name`,
    /// `tool`, `repository`, `password-file`, `paths`, `exclude`).
    #[serde(default)]
    pub backup_sets: Vec<steward_runtime::capability::backups::SetConfig>,
    /// Where the backups provider keeps its records and scratch copies.
    #[serde(default = "backup_state")]
    pub backup_state_dir: PathBuf,
}

impl Default for ProviderSettings {
    fn default() -> Self {
        Self {
            apt_root: root(),
            apt_refresh: false,
            clamav_database_dir: clamav_db(),
            quarantine_dir: quarantine(),
            clamav_mirror: None,
            accounts_root: root(),
            backup_sets: Vec::new(),
            backup_state_dir: backup_state(),
        }
    }
}

fn backup_state() -> PathBuf {
    "/var/lib/steward-agent/backups".into()
}

fn root() -> PathBuf {
    "/".into()
}

fn clamav_db() -> PathBuf {
    "/var/lib/clamav".into()
}

fn quarantine() -> PathBuf {
    "/var/lib/steward-agent/quarantine".into()
}

impl Policy {
    /// Reads and checks the policy file.
    ///
    /// # Errors
    ///
    /// The file cannot be read, is not valid TOML of this shape, or a
    /// grant in `allow` does not parse (naming it).
    pub fn load(path: &Path) -> anyhow::Result<(Self, Grants)> {
        let text = std::fs::read_to_string(path).with_context(|| {
            format!(
                "cannot read the agent's policy file {} (see docs/agent.toml for one)",
                path.display()
            )
        })?;
        let policy: Policy =
            toml::from_str(&text).with_context(|| format!("{} is invalid", path.display()))?;
        let mut ceiling = Grants::none();
        for (i, g) in policy.allow.iter().enumerate() {
            let grant: Grant = g
                .parse()
                .with_context(|| format!("{}: `allow[{i}]` = `{g}`", path.display()))?;
            ceiling = ceiling.with(grant);
        }
        Ok((policy, ceiling))
    }
}

fn is_loopback(url: &reqwest::Url) -> bool {
    match url.host_str() {
        Some("localhost") => true,
        Some(host) => host
            .trim_start_matches('[')
            .trim_end_matches(']')
            .parse::<IpAddr>()
            .is_ok_and(|ip| ip.is_loopback()),
        None => false,
    }
}

/// The server's URL, refusing plain HTTP to another machine unless
/// `insecure`.
fn server_url(server: &str, insecure: bool) -> anyhow::Result<reqwest::Url> {
    let url = reqwest::Url::parse(server.trim())
        .with_context(|| format!("`{server}` is not a URL like https://steward.example:8443"))?;
    match url.scheme() {
        "https" => {}
        "http" if is_loopback(&url) => {}
        "http" if insecure => {
            tracing::warn!(%url, "--insecure: talking plain HTTP to a server on the network; the traffic is not encrypted");
        }
        "http" => anyhow::bail!(
            "`{url}` is plain HTTP to another machine; use https:// (with --ca-cert for a private CA), or --insecure to send everything in clear text"
        ),
        other => anyhow::bail!("`{url}`: the scheme must be https (or http), not `{other}`"),
    }
    Ok(url)
}

fn http_client(ca_cert: Option<&Path>) -> anyhow::Result<reqwest::Client> {
    let mut builder = reqwest::Client::builder()
        .connect_timeout(Duration::from_secs(10))
        .timeout(Duration::from_secs(30));
    if let Some(path) = ca_cert {
        let pem = std::fs::read(path)
            .with_context(|| format!("cannot read the CA certificate {}", path.display()))?;
        builder = builder.add_root_certificate(
            reqwest::Certificate::from_pem(&pem)
                .with_context(|| format!("{} is not a PEM certificate", path.display()))?,
        );
    }
    Ok(builder.build()?)
}

fn hostname() -> String {
    std::fs::read_to_string("/etc/hostname")
        .map(|s| s.trim().to_owned())
        .ok()
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| "localhost".into())
}

/// What the endpoint says of itself at enrollment.
fn facts() -> serde_json::Value {
    let os = std::fs::read_to_string("/etc/os-release")
        .ok()
        .and_then(|text| {
            text.lines()
                .find_map(|l| l.strip_prefix("PRETTY_NAME="))
                .map(|v| v.trim_matches('"').to_owned())
        })
        .unwrap_or_default();
    let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease")
        .map(|s| s.trim().to_owned())
        .unwrap_or_default();
    serde_json::json!({ "os": os, "kernel": kernel, "arch": std::env::consts::ARCH })
}

/// `steward agent enroll`.
///
/// # Errors
///
/// A refused or unreachable enrollment, or a state directory that cannot
/// be written; nothing is kept then.
pub async fn enroll(args: EnrollArgs) -> anyhow::Result<()> {
    let url = server_url(&args.server, args.insecure)?;
    let identity_path = args.state_dir.join("agent.json");
    if identity_path.exists() {
        anyhow::bail!(
            "{} exists: this endpoint is enrolled already (remove the state directory to enroll again)",
            identity_path.display()
        );
    }
    let key = SecretKey::generate();
    let http = http_client(args.ca_cert.as_deref())?;
    let response = http
        .post(url.join("/api/v1/agent/enroll")?)
        .json(&serde_json::json!({
            "token": args.token.trim(),
            "public_key": key.public_key(),
            "hostname": args.hostname.unwrap_or_else(hostname),
            "facts": facts(),
            "agent_version": AGENT_VERSION,
        }))
        .send()
        .await
        .with_context(|| format!("cannot reach the server at {url}"))?;
    let status = response.status();
    let body: serde_json::Value = response.json().await.unwrap_or_default();
    if !status.is_success() {
        anyhow::bail!(
            "the server refused the enrollment ({status}): {}",
            body["detail"].as_str().unwrap_or("no detail")
        );
    }
    let identity = Identity {
        server: url.to_string(),
        device_id: body["device_id"].as_str().unwrap_or_default().to_owned(),
        tenant_id: body["tenant_id"].as_str().unwrap_or_default().to_owned(),
        ca_cert: args.ca_cert,
        insecure: args.insecure,
    };
    anyhow::ensure!(
        !identity.device_id.is_empty(),
        "the server's answer names no device"
    );
    std::fs::create_dir_all(&args.state_dir)
        .with_context(|| format!("cannot create {}", args.state_dir.display()))?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt as _;
        std::fs::set_permissions(&args.state_dir, std::fs::Permissions::from_mode(0o700))?;
    }
    key.save(&args.state_dir.join("agent.key"))?;
    let json = serde_json::to_vec_pretty(&identity)?;
    std::fs::write(&identity_path, json)
        .with_context(|| format!("cannot write {}", identity_path.display()))?;
    println!(
        "enrolled as device {} of tenant {}; start it with `steward agent run`",
        identity.device_id, identity.tenant_id
    );
    if body["approved"] == false {
        println!(
            "it connects once an admin approves it: `steward devices approve {}`",
            identity.device_id
        );
    }
    Ok(())
}

/// How a session ended.
enum Ended {
    /// The server said goodbye (a newer connection, a server stopping).
    Goodbye(String),
    /// The server revoked this agent.
    Revoked,
    /// The agent waits for an admin's approval (its token asked for it).
    PendingApproval,
}

/// The longest wait between connection attempts of an agent waiting for
/// approval.
const APPROVAL_POLL: Duration = Duration::from_secs(10);

/// `steward agent run`: returns the exit code.
///
/// # Errors
///
/// The state directory or the policy file cannot be read.
pub async fn run(args: RunArgs) -> anyhow::Result<u8> {
    let identity: Identity = serde_json::from_slice(
        &std::fs::read(args.state_dir.join("agent.json")).with_context(|| {
            format!(
                "{} holds no enrollment; run `steward agent enroll` first",
                args.state_dir.display()
            )
        })?,
    )
    .context("agent.json is invalid")?;
    let key = SecretKey::load(&args.state_dir.join("agent.key"))?;
    let (policy, ceiling) = Policy::load(&args.config)?;
    let url = server_url(&identity.server, identity.insecure)?;
    let mut ws_url = url.join("/api/v1/agent/connect")?;
    let scheme = if url.scheme() == "https" { "wss" } else { "ws" };
    ws_url
        .set_scheme(scheme)
        .map_err(|()| anyhow::anyhow!("cannot make a WebSocket URL of {url}"))?;
    let connector = tls_connector(identity.ca_cert.as_deref())?;
    let settings = &policy.providers;
    let config = LocalConfig {
        apt_root: settings.apt_root.clone(),
        apt_refresh: settings.apt_refresh,
        clamav_database_dir: settings.clamav_database_dir.clone(),
        quarantine_dir: settings.quarantine_dir.clone(),
        clamav_mirror: settings.clamav_mirror.clone(),
        accounts_root: settings.accounts_root.clone(),
        directory: None,
        record: DeviceRecord {
            id: Some(identity.device_id.clone()),
            tenant_id: Some(identity.tenant_id.clone()),
            ..DeviceRecord::default()
        },
        backup_sets: settings.backup_sets.clone(),
        backup_state_dir: settings.backup_state_dir.clone(),
    };
    local::backups(&config).context("the policy's backup sets are invalid")?;
    let device = Arc::new(local::device(&config));
    let ceiling = Arc::new(ceiling);
    tracing::info!(device = %identity.device_id, server = %url, ceiling = ?policy.allow, "agent starting");
    let mut backoff = Duration::from_secs(1);
    loop {
        let started = Instant::now();
        let mut longest = Duration::from_secs(60);
        let ended = tokio::select! {
            ended = session(&ws_url, connector.clone(), &identity.device_id, &key, &device, &ceiling) => ended,
            _ = tokio::signal::ctrl_c() => {
                tracing::info!("stopping");
                return Ok(0);
            }
        };
        match ended {
            Ok(Ended::Revoked) => {
                tracing::error!("the server revoked this agent; enroll it again to manage it");
                return Ok(EXIT_REVOKED);
            }
            Ok(Ended::Goodbye(reason)) => tracing::warn!(%reason, "disconnected"),
            Ok(Ended::PendingApproval) => {
                tracing::info!(
                    device = %identity.device_id,
                    "waiting for an admin's approval (`steward devices approve {}`)",
                    identity.device_id
                );
                // Asking again soon, so an approval takes effect quickly.
                longest = APPROVAL_POLL;
            }
            Err(e) => tracing::warn!(error = %format!("{e:#}"), "connection failed"),
        }
        if started.elapsed() > Duration::from_secs(60) {
            backoff = Duration::from_secs(1);
        }
        // Full jitter: a fleet that lost its server does not come back in
        // step.
        backoff = backoff.min(longest);
        let wait = rand::thread_rng().gen_range(Duration::from_millis(100)..=backoff);
        tracing::info!(wait_ms = wait.as_millis() as u64, "reconnecting");
        tokio::select! {
            _ = tokio::time::sleep(wait) => {}
            _ = tokio::signal::ctrl_c() => return Ok(0),
        }
        backoff = (backoff * 2).min(Duration::from_secs(60));
    }
}

fn tls_connector(ca_cert: Option<&Path>) -> anyhow::Result<tokio_tungstenite::Connector> {
    let mut builder = native_tls::TlsConnector::builder();
    if let Some(path) = ca_cert {
        let pem = std::fs::read(path)
            .with_context(|| format!("cannot read the CA certificate {}", path.display()))?;
        builder.add_root_certificate(
            native_tls::Certificate::from_pem(&pem)
                .with_context(|| format!("{} is not a PEM certificate", path.display()))?,
        );
    }
    Ok(tokio_tungstenite::Connector::NativeTls(builder.build()?))
}

async fn session(
    url: &reqwest::Url,
    connector: tokio_tungstenite::Connector,
    device_id: &str,
    key: &SecretKey,
    device: &Arc<Device>,
    ceiling: &Arc<Grants>,
) -> anyhow::Result<Ended> {
    let config = tokio_tungstenite::tungstenite::protocol::WebSocketConfig::default()
        .max_message_size(Some(steward_runtime::device::remote::MAX_FRAME_BYTES))
        .max_frame_size(Some(steward_runtime::device::remote::MAX_FRAME_BYTES));
    let (socket, _) = tokio::time::timeout(
        Duration::from_secs(15),
        tokio_tungstenite::connect_async_tls_with_config(
            url.as_str(),
            Some(config),
            false,
            Some(connector),
        ),
    )
    .await
    .context("connecting timed out")?
    .with_context(|| format!("cannot connect to {url}"))?;
    let (mut sink, mut stream) = socket.split();
    let next = |text: Option<Result<Message, _>>| -> anyhow::Result<Option<ServerMessage>> {
        match text {
            None => anyhow::bail!("the server closed the connection"),
            Some(Err(e)) => Err(anyhow::Error::new(e).context("the connection failed")),
            Some(Ok(Message::Text(t))) => Ok(Some(
                serde_json::from_str(t.as_str()).context("a malformed message from the server")?,
            )),
            Some(Ok(Message::Close(_))) => anyhow::bail!("the server closed the connection"),
            Some(Ok(_)) => Ok(None),
        }
    };
    let send =
        |m: &AgentMessage| Message::Text(serde_json::to_string(m).unwrap_or_default().into());
    // The handshake.
    let nonce = loop {
        match next(stream.next().await)? {
            Some(ServerMessage::Challenge { nonce }) => break nonce,
            Some(ServerMessage::Goodbye { reason }) => return Ok(goodbye(reason)),
            Some(other) => anyhow::bail!("expected a challenge, got {other:?}"),
            None => {}
        }
    };
    sink.send(send(&AgentMessage::Hello {
        device_id: device_id.to_owned(),
        signature: key.sign(&challenge_payload(&nonce, device_id)),
        agent_version: AGENT_VERSION.to_owned(),
    }))
    .await?;
    let heartbeat = loop {
        match next(stream.next().await)? {
            Some(ServerMessage::Welcome {
                heartbeat_seconds, ..
            }) => break Duration::from_secs(heartbeat_seconds.clamp(1, 300)),
            Some(ServerMessage::Goodbye { reason }) => return Ok(goodbye(reason)),
            Some(other) => anyhow::bail!("expected a welcome, got {other:?}"),
            None => {}
        }
    };
    tracing::info!("connected");
    let (replies, mut outgoing) = mpsc::channel::<AgentMessage>(64);
    let mut ticker = tokio::time::interval(heartbeat);
    loop {
        tokio::select! {
            _ = ticker.tick() => sink.send(send(&AgentMessage::Heartbeat {})).await?,
            reply = outgoing.recv() => {
                if let Some(reply) = reply {
                    sink.send(send(&reply)).await?;
                }
            }
            frame = stream.next() => match next(frame)? {
                Some(ServerMessage::Call { id, call }) => {
                    let (device, ceiling, replies) = (device.clone(), ceiling.clone(), replies.clone());
                    tokio::spawn(async move {
                        let name = call.name();
                        let result = answer(&device, &ceiling, call).await;
                        if let Err(e) = &result {
                            tracing::info!(call = %name, error = ?e, "call refused or failed");
                        }
                        // For the fault tests: die between a call's effect
                        // and its answer.
                        steward_contract::failpoint::hit_at("agent-after-call", name);
                        let _ = replies.send(AgentMessage::Reply { id, result }).await;
                    });
                }
                Some(ServerMessage::Goodbye { reason }) => return Ok(goodbye(reason)),
                Some(other) => anyhow::bail!("unexpected {other:?}"),
                None => {}
            },
        }
    }
}

fn goodbye(reason: String) -> Ended {
    if reason.contains("revoked") {
        Ended::Revoked
    } else if reason.contains("waiting for an admin's approval") {
        Ended::PendingApproval
    } else {
        Ended::Goodbye(reason)
    }
}
