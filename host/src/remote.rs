//! The `steward` CLI as a client of the web API: one subcommand per API
//! area, a table by default and `--json` for scripts.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context as _;
use base64::Engine as _;
use clap::{Args, Subcommand};
use futures_util::StreamExt as _;
use serde_json::{Value, json};

/// Where the server is and who calls it.
#[derive(Debug, Clone, Args)]
pub struct Conn {
    /// The server's base URL.
    #[arg(
        long,
        global = true,
        env = "STEWARD_URL",
        default_value = "http://127.0.0.1:8080"
    )]
    url: String,
    /// An API token (as printed by `steward serve` or `steward tokens
    /// create`).
    #[arg(long, global = true, env = "STEWARD_TOKEN", hide_env_values = true)]
    token: Option<String>,
    /// Print the API's JSON instead of a table.
    #[arg(long, global = true)]
    json: bool,
    /// Print only the ids of what was created or listed, one per line
    /// (for scripts: `T=$(steward tenants create acme -q)`).
    #[arg(long, short, global = true, conflicts_with = "json")]
    quiet: bool,
}

/// The client's areas.
#[derive(Debug, Subcommand)]
pub enum Remote {
    /// Tenants (MSP clients).
    Tenants(Area<TenantCmd>),
    /// Sites of tenants.
    Sites(Area<SiteCmd>),
    /// Managed devices.
    Devices(Area<DeviceCmd>),
    /// Enrollment tokens remote agents join with.
    Enrollment(Area<EnrollmentCmd>),
    /// Plugins installed on the server.
    Plugins(Area<PluginsCmd>),
    /// Playbooks.
    Playbooks(Area<PlaybookCmd>),
    /// Schedules of playbooks.
    Schedules(Area<ScheduleCmd>),
    /// Runs and what their jobs reported.
    Runs(Area<RunCmd>),
    /// Plans waiting for approval.
    Approvals(Area<ApprovalCmd>),
    /// API tokens.
    Tokens(Area<TokenCmd>),
    /// Users and their roles.
    Users(Area<UserCmd>),
    /// Webhooks alerts go to.
    Webhooks(Area<WebhookCmd>),
    /// Keys trusted to sign registry modules.
    Trust(Area<TrustCmd>),
    /// A tenant's findings.
    Findings {
        #[command(flatten)]
        conn: Conn,
        /// The tenant id.
        #[arg(long)]
        tenant: String,
        /// Resolved ones too.
        #[arg(long)]
        all: bool,
    },
    /// A tenant's tickets.
    Tickets {
        #[command(flatten)]
        conn: Conn,
        /// The tenant id.
        #[arg(long)]
        tenant: String,
    },
    /// A tenant's monthly service report, saved to a file: time to
    /// remediate against the tier's target, patch compliance, antivirus
    /// health, accounts unlocked, incidents and the refresh forecast.
    Report {
        #[command(flatten)]
        conn: Conn,
        /// The tenant, by name or id.
        #[arg(long)]
        tenant: String,
        /// The calendar month (UTC), `YYYY-MM`.
        #[arg(long)]
        month: String,
        /// `html` (printable, self-contained), `pdf` (printed by the
        /// machine's Chromium) or `json` (the figures).
        #[arg(long, value_enum, default_value_t = ReportFormat::Html)]
        format: ReportFormat,
        /// Where to write it.
        #[arg(long, short)]
        output: PathBuf,
    },
    /// The audit trail, newest first.
    Audit {
        #[command(flatten)]
        conn: Conn,
        /// Only this tenant's.
        #[arg(long)]
        tenant: Option<String>,
        /// How many.
        #[arg(long, default_value_t = 50)]
        limit: u32,
    },
}

/// The forms `steward report` writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum ReportFormat {
    /// One self-contained, printable HTML document.
    Html,
    /// The HTML document printed to PDF by Chromium.
    Pdf,
    /// The figures as JSON.
    Json,
}

/// An area's connection options and command.
#[derive(Debug, Args)]
pub struct Area<C: Subcommand> {
    #[command(flatten)]
    conn: Conn,
    #[command(subcommand)]
    cmd: C,
}

#[derive(Debug, Subcommand)]
pub enum TenantCmd {
    /// Lists tenants.
    List,
    /// Shows one tenant.
    Show { id: String },
    /// Creates a tenant.
    Create {
        name: String,
        /// `vip`, `managed` or `on-demand`.
        #[arg(long, default_value = "managed")]
        tier: String,
        /// At most this many of its jobs at once.
        #[arg(long)]
        max_concurrent_jobs: Option<u32>,
    },
}

#[derive(Debug, Subcommand)]
pub enum SiteCmd {
    /// Lists sites.
    List {
        #[arg(long)]
        tenant: Option<String>,
    },
    /// Creates a site.
    Create {
        #[arg(long)]
        tenant: String,
        name: String,
    },
}

#[derive(Debug, Subcommand)]
pub enum DeviceCmd {
    /// Lists devices.
    List {
        #[arg(long)]
        tenant: Option<String>,
    },
    /// Shows one device.
    Show { id: String },
    /// Adds a device.
    Add {
        #[arg(long)]
        tenant: String,
        name: String,
        #[arg(long)]
        site: Option<String>,
        /// A tag (repeatable).
        #[arg(long = "tag")]
        tags: Vec<String>,
        /// Facts as JSON, for example `{"provider": "local"}` for the
        /// machine the server runs on.
        #[arg(long)]
        facts: Option<String>,
    },
    /// Imports admin fields from a CSV file (`name`, `purchase-date`,
    /// `warranty-end`, `cost`, `class`, `assigned-user`).
    Import {
        #[arg(long)]
        tenant: String,
        file: PathBuf,
    },
    /// Revokes a device's agent: refused from now on, disconnected at once.
    Revoke { id: String },
    /// Approves a device's agent enrolled with an `--approve` token: it
    /// may connect from now on.
    Approve { id: String },
}

#[derive(Debug, Subcommand)]
pub enum EnrollmentCmd {
    /// Makes an enrollment token (shown once).
    Create {
        /// The tenant devices join.
        #[arg(long)]
        tenant: String,
        /// Their site.
        #[arg(long)]
        site: Option<String>,
        /// Tags enrolled devices get, comma-separated.
        #[arg(long, value_delimiter = ',')]
        tags: Vec<String>,
        /// How long the token works: `90s`, `30m`, `24h` or `7d`.
        #[arg(long, default_value = "7d")]
        expires: String,
        /// How many devices may enroll with it.
        #[arg(long, default_value_t = 1)]
        uses: u32,
        /// Enrolled devices wait for an admin's approval
        /// (`steward devices approve ID`) before their agents may connect.
        #[arg(long)]
        approve: bool,
    },
}

/// Seconds in `90s`, `30m`, `24h`, `7d` (or a bare number of seconds).
fn duration_arg(text: &str, flag: &str) -> anyhow::Result<u64> {
    let text = text.trim();
    let (number, unit) = match text.char_indices().find(|(_, c)| !c.is_ascii_digit()) {
        Some((i, _)) => text.split_at(i),
        None => (text, "s"),
    };
    let n: u64 = number
        .parse()
        .with_context(|| format!("{flag}: `{text}` is not a duration like 90s, 30m, 24h or 7d"))?;
    let unit = match unit {
        "s" => 1,
        "m" => 60,
        "h" => 3600,
        "d" => 86_400,
        _ => anyhow::bail!("{flag}: `{text}` is not a duration like 90s, 30m, 24h or 7d"),
    };
    Ok(n.saturating_mul(unit))
}

#[derive(Debug, Subcommand)]
pub enum PluginsCmd {
    /// Lists installed plugin versions.
    List,
    /// Uploads and installs a `.wasm` component.
    Install {
        file: PathBuf,
        /// A capability to grant (repeatable).
        #[arg(long = "grant")]
        grants: Vec<String>,
        /// The installed version this one replaces (needed when the
        /// plugin's name is installed under other versions).
        #[arg(long)]
        replaces: Option<String>,
    },
    /// Replaces an installed version's grants.
    Grant {
        name: String,
        version: String,
        /// A capability to grant (repeatable; the complete list).
        #[arg(long = "grant")]
        grants: Vec<String>,
    },
    /// Shows what installing a registry module would do: the version the
    /// requirement resolves to, its signer and whether that key is trusted,
    /// and the capabilities it requests.
    Offer {
        /// `namespace/name@requirement`, for example `acme/patching@^1.2`.
        module: String,
    },
    /// Installs a module from the server's registry, verified against the
    /// keys trusted for its namespace. Every capability it requests must be
    /// granted: list them with `--grant`, or approve exactly what it asks
    /// with `--grant-requested` (the list is printed first).
    InstallFrom {
        /// `namespace/name@requirement`, for example `acme/patching@^1.2`.
        module: String,
        /// A capability to grant (repeatable).
        #[arg(long = "grant", conflicts_with = "grant_requested")]
        grants: Vec<String>,
        /// Grant every capability the module requests, unrestricted.
        #[arg(long)]
        grant_requested: bool,
    },
    /// Upgrades a plugin installed from the registry to the highest version
    /// its requirement resolves to. Without `--grant` it keeps its grants,
    /// which works when the new version requests nothing more.
    Upgrade {
        name: String,
        /// A new requirement (`^2`).
        #[arg(long)]
        requirement: Option<String>,
        /// The grants of the new version (repeatable; the complete list).
        #[arg(long = "grant", conflicts_with = "no_grants")]
        grants: Vec<String>,
        /// Approve the new version with no grants (it requests none).
        #[arg(long)]
        no_grants: bool,
    },
}

#[derive(Debug, Subcommand)]
pub enum TrustCmd {
    /// Lists the keys trusted to sign each namespace's modules.
    List,
    /// Trusts a key to sign a namespace's modules.
    Add {
        /// The registry namespace.
        #[arg(long)]
        namespace: String,
        /// The ed25519 public key, base64 (`steward plugin keygen` prints it).
        #[arg(long)]
        public_key: String,
    },
    /// Stops trusting a key.
    Remove { namespace: String, key_id: String },
}

#[derive(Debug, Subcommand)]
pub enum PlaybookCmd {
    /// Lists playbooks.
    List {
        #[arg(long)]
        tenant: Option<String>,
    },
    /// Shows one playbook.
    Show { id: String },
    /// Creates a playbook.
    Create {
        #[arg(long)]
        tenant: Option<String>,
        #[arg(long)]
        name: String,
        /// Steps as JSON, or `@FILE`.
        #[arg(long)]
        steps: String,
        /// Target selector as JSON (default: every device of the tenant).
        #[arg(long)]
        target: Option<String>,
    },
    /// Starts a run now.
    Run {
        id: String,
        /// For a shared playbook: the tenant to run for.
        #[arg(long)]
        tenant: Option<String>,
    },
}

#[derive(Debug, Subcommand)]
pub enum ScheduleCmd {
    /// Lists schedules.
    List {
        #[arg(long)]
        playbook: Option<String>,
    },
    /// Schedules a playbook.
    Create {
        #[arg(long)]
        playbook: String,
        /// Crontab expression (5 or 6 fields, or `@daily` …).
        #[arg(long)]
        cron: Option<String>,
        /// IANA time zone.
        #[arg(long)]
        timezone: Option<String>,
        /// The whole spec as JSON instead (`cron`, `timezone`, `window`, …).
        #[arg(long, conflicts_with_all = ["cron", "timezone"])]
        spec: Option<String>,
        /// For a shared playbook: the tenant.
        #[arg(long)]
        tenant: Option<String>,
    },
    /// Turns a schedule on.
    Enable { id: String },
    /// Turns a schedule off.
    Disable { id: String },
}

#[derive(Debug, Subcommand)]
pub enum RunCmd {
    /// Lists runs, newest first.
    List {
        #[arg(long)]
        tenant: Option<String>,
        #[arg(long)]
        status: Option<String>,
        #[arg(long)]
        plugin: Option<String>,
        /// RFC 3339 time.
        #[arg(long)]
        since: Option<String>,
        /// RFC 3339 time.
        #[arg(long)]
        until: Option<String>,
        #[arg(long)]
        limit: Option<u32>,
        /// `next_cursor` of the previous page.
        #[arg(long)]
        cursor: Option<String>,
    },
    /// Shows a run and its jobs per state.
    Show { id: String },
    /// A run's jobs, a page at a time.
    Jobs {
        id: String,
        #[arg(long)]
        limit: Option<u32>,
        /// `next_cursor` of the previous page.
        #[arg(long)]
        cursor: Option<String>,
    },
    /// What a run's jobs found.
    Findings { id: String },
    /// Changes a run's jobs made or planned.
    Changes { id: String },
    /// A run's log lines.
    Logs { id: String },
    /// Follows a run live with a progress bar over its jobs.
    Watch { id: String },
    /// Cancels a run's jobs that have not started.
    Cancel { id: String },
}

#[derive(Debug, Subcommand)]
pub enum ApprovalCmd {
    /// Lists plans waiting for approval.
    List,
    /// Approves a job's plan.
    Approve {
        job: String,
        #[arg(long, default_value = "")]
        comment: String,
    },
    /// Rejects a job's plan.
    Reject {
        job: String,
        #[arg(long, default_value = "")]
        comment: String,
    },
}

#[derive(Debug, Subcommand)]
pub enum TokenCmd {
    /// Lists tokens.
    List,
    /// Creates a token (shown once).
    Create {
        /// The user (default: yourself).
        #[arg(long)]
        user: Option<String>,
        #[arg(long, default_value = "")]
        label: String,
    },
    /// Revokes a token.
    Revoke { id: String },
}

#[derive(Debug, Subcommand)]
pub enum UserCmd {
    /// Lists users.
    List,
    /// Creates a user.
    Create {
        name: String,
        /// `owner`, `admin`, `technician` or `viewer`.
        #[arg(long)]
        role: String,
        /// A tenant id the user may see (repeatable; none: every tenant).
        #[arg(long = "tenant")]
        tenants: Vec<String>,
    },
}

#[derive(Debug, Subcommand)]
pub enum WebhookCmd {
    /// Lists webhooks.
    List,
    /// Adds a webhook.
    Create {
        #[arg(long)]
        url: String,
        #[arg(long, env = "STEWARD_WEBHOOK_SECRET", hide_env_values = true)]
        secret: String,
        #[arg(long)]
        tenant: Option<String>,
    },
    /// Deletes a webhook.
    Delete { id: String },
}

/// The largest component the server takes: its upload body limit less the
/// base64 growth (4 bytes per 3) and room for the JSON around it. Checked
/// before sending, because a server refusing a body mid-stream closes the
/// connection, and the client would see only a broken pipe, not the 413.
const MAX_COMPONENT_UPLOAD: usize = (steward_contract::MAX_API_UPLOAD - 64 * 1024) / 4 * 3;

fn check_upload_size(file: &std::path::Path, len: usize) -> anyhow::Result<()> {
    if len > MAX_COMPONENT_UPLOAD {
        anyhow::bail!(
            "{} is {:.1} MiB; the server takes components of at most {:.1} MiB \
             (uploads are sent base64 in JSON, at most {} MiB)",
            file.display(),
            len as f64 / (1 << 20) as f64,
            MAX_COMPONENT_UPLOAD as f64 / (1 << 20) as f64,
            steward_contract::MAX_API_UPLOAD >> 20
        );
    }
    Ok(())
}

struct Client {
    http: reqwest::Client,
    conn: Conn,
}

impl Client {
    fn new(conn: Conn) -> Self {
        Self {
            http: reqwest::Client::new(),
            conn,
        }
    }

    fn request(&self, method: reqwest::Method, path: &str) -> reqwest::RequestBuilder {
        let url = format!("{}{path}", self.conn.url.trim_end_matches('/'));
        let mut req = self.http.request(method, url);
        if let Some(t) = &self.conn.token {
            req = req.bearer_auth(t);
        }
        req
    }

    async fn send(&self, req: reqwest::RequestBuilder) -> anyhow::Result<Value> {
        let text = self.send_text(req).await?;
        if text.is_empty() {
            return Ok(Value::Null);
        }
        Ok(serde_json::from_str(&text)?)
    }

    /// The body of a successful answer; an error answer's problem as the
    /// error.
    async fn send_text(&self, req: reqwest::RequestBuilder) -> anyhow::Result<String> {
        let resp = req
            .send()
            .await
            .with_context(|| format!("cannot reach the server at {}", self.conn.url))?;
        let status = resp.status();
        let text = resp.text().await?;
        if !status.is_success() {
            let problem: Value = serde_json::from_str(&text).unwrap_or(json!({ "detail": text }));
            let detail = problem["detail"].as_str().unwrap_or("request failed");
            let code = problem["code"].as_str().unwrap_or("");
            anyhow::bail!(
                "{detail} ({status}{}{})",
                if code.is_empty() { "" } else { ", " },
                code
            );
        }
        Ok(text)
    }

    async fn get(&self, path: &str) -> anyhow::Result<Value> {
        self.send(self.request(reqwest::Method::GET, path)).await
    }

    async fn post(&self, path: &str, body: Value) -> anyhow::Result<Value> {
        self.send(
            self.request(reqwest::Method::POST, path)
                .header("content-type", "application/json")
                .body(body.to_string()),
        )
        .await
    }

    async fn put(&self, path: &str, body: Value) -> anyhow::Result<Value> {
        self.send(
            self.request(reqwest::Method::PUT, path)
                .header("content-type", "application/json")
                .body(body.to_string()),
        )
        .await
    }

    async fn patch(&self, path: &str, body: Value) -> anyhow::Result<Value> {
        self.send(
            self.request(reqwest::Method::PATCH, path)
                .header("content-type", "application/json")
                .body(body.to_string()),
        )
        .await
    }

    async fn delete(&self, path: &str) -> anyhow::Result<Value> {
        self.send(self.request(reqwest::Method::DELETE, path)).await
    }

    /// Prints `value` as JSON, or as a table of `columns` (one row per
    /// item of an array, or of a page's `items`).
    fn print(&self, value: &Value, columns: &[&str]) {
        if self.conn.json {
            println!(
                "{}",
                serde_json::to_string_pretty(value).unwrap_or_default()
            );
            return;
        }
        if self.conn.quiet {
            for row in rows(value) {
                println!("{}", cell(&row["id"]));
            }
            return;
        }
        print_table(value, columns);
    }
}

/// A query string of the parameters that are set.
fn query(params: &[(&str, Option<String>)]) -> String {
    let mut ser = form_urlencoded::Serializer::new(String::new());
    for (k, v) in params {
        if let Some(v) = v {
            ser.append_pair(k, v);
        }
    }
    let q = ser.finish();
    if q.is_empty() { q } else { format!("?{q}") }
}

/// A registry offer for a person: what would be installed, who signed it,
/// whether that key is trusted, what it asks for.
fn print_offer(offer: &Value) {
    println!(
        "{} {} ({})",
        cell(&offer["module"]),
        cell(&offer["version"]),
        cell(&offer["digest"])
    );
    println!("  {}", cell(&offer["description"]));
    println!("  license:      {}", cell(&offer["license"]));
    let trust = match offer["trust"].as_str().unwrap_or("") {
        "trusted" => "trusted key",
        "first-use" => {
            "no key trusted for this namespace yet: installing trusts this one (first use)"
        }
        "untrusted" => "NOT trusted: installing is refused (trust the key first)",
        "unsigned-allowed" => "unsigned (the namespace is allowed to be unsigned)",
        _ => "unsigned: installing is refused",
    };
    println!("  signed by:    {} ({trust})", cell(&offer["signed_by"]));
    println!("  capabilities: {}", cell(&offer["capabilities"]));
}

fn cell(v: &Value) -> String {
    match v {
        Value::Null => "-".into(),
        Value::String(s) => crate::text::safe(s).into_owned(),
        Value::Array(a) => a.iter().map(cell).collect::<Vec<_>>().join(","),
        other => crate::text::safe(&other.to_string()).into_owned(),
    }
}

fn lookup<'a>(v: &'a Value, path: &str) -> &'a Value {
    path.split('.').fold(v, |v, k| &v[k])
}

/// The rows of a list, a page's `items`, or the one object.
fn rows(value: &Value) -> Vec<&Value> {
    match value {
        Value::Array(items) => items.iter().collect(),
        Value::Object(o) if o.get("items").is_some_and(Value::is_array) => {
            o["items"].as_array().into_iter().flatten().collect()
        }
        other => vec![other],
    }
}

fn print_table(value: &Value, columns: &[&str]) {
    let rows = rows(value);
    let cells: Vec<Vec<String>> = rows
        .iter()
        .map(|r| {
            columns
                .iter()
                .map(|c| {
                    let v = lookup(r, c);
                    match v.as_i64() {
                        Some(ms) if c.ends_with("at") => chrono::DateTime::from_timestamp_millis(
                            ms,
                        )
                        .map_or_else(|| cell(v), |t| t.format("%Y-%m-%d %H:%M:%S").to_string()),
                        _ => cell(v),
                    }
                })
                .collect()
        })
        .collect();
    let widths: Vec<usize> = columns
        .iter()
        .enumerate()
        .map(|(i, c)| {
            cells
                .iter()
                .map(|r| r[i].chars().count())
                .chain([c.len()])
                .max()
                .unwrap_or(0)
        })
        .collect();
    let line = |values: Vec<String>| {
        let parts: Vec<String> = values
            .iter()
            .zip(&widths)
            .map(|(v, w)| format!("{v:<w$}"))
            .collect();
        println!("{}", parts.join("  ").trim_end());
    };
    line(columns.iter().map(|c| c.to_uppercase()).collect());
    for r in cells {
        line(r);
    }
    if let Some(next) = value.get("next_cursor").and_then(Value::as_str) {
        println!("(more: --cursor {next})");
    }
}

fn json_arg(text: &str, what: &str) -> anyhow::Result<Value> {
    let text = match text.strip_prefix('@') {
        Some(path) => {
            std::fs::read_to_string(path).with_context(|| format!("cannot read {path}"))?
        }
        None => text.to_owned(),
    };
    serde_json::from_str(&text).with_context(|| format!("{what} is not valid JSON"))
}

const RUN_COLUMNS: &[&str] = &["id", "tenant_id", "status", "created_at", "finished_at"];

/// Runs a client command.
pub async fn run(remote: Remote) -> anyhow::Result<ExitCode> {
    // A client command whose output goes to a pipe closed early
    // (`steward runs list | head`) ends quietly, as other CLIs do, instead
    // of panicking in `println!`. (Rust ignores SIGPIPE; the server and
    // the agent keep ignoring it.)
    // SAFETY: restoring a signal's default disposition, before any thread
    // of ours writes to a pipe.
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
    }
    match remote {
        Remote::Tenants(Area { conn, cmd }) => {
            let c = Client::new(conn);
            let cols = &["id", "name", "tier", "max_concurrent_jobs"];
            match cmd {
                TenantCmd::List => c.print(&c.get("/api/v1/tenants").await?, cols),
                TenantCmd::Show { id } => c.print(&c.get(&format!("/api/v1/tenants/{id}")).await?, cols),
                TenantCmd::Create { name, tier, max_concurrent_jobs } => c.print(
                    &c.post("/api/v1/tenants", json!({ "name": name, "tier": tier, "max_concurrent_jobs": max_concurrent_jobs })).await?,
                    cols,
                ),
            }
        }
        Remote::Sites(Area { conn, cmd }) => {
            let c = Client::new(conn);
            let cols = &["id", "tenant_id", "name"];
            match cmd {
                SiteCmd::List { tenant } => c.print(
                    &c.get(&format!("/api/v1/sites{}", query(&[("tenant", tenant)])))
                        .await?,
                    cols,
                ),
                SiteCmd::Create { tenant, name } => c.print(
                    &c.post(
                        "/api/v1/sites",
                        json!({ "tenant_id": tenant, "name": name }),
                    )
                    .await?,
                    cols,
                ),
            }
        }
        Remote::Devices(Area { conn, cmd }) => {
            let c = Client::new(conn);
            let cols = &[
                "id",
                "tenant_id",
                "name",
                "tags",
                "reachable",
                "agent",
                "facts.agent_version",
                "last_seen_at",
            ];
            match cmd {
                DeviceCmd::List { tenant } => c.print(
                    &c.get(&format!("/api/v1/devices{}", query(&[("tenant", tenant)])))
                        .await?,
                    cols,
                ),
                DeviceCmd::Show { id } => {
                    c.print(&c.get(&format!("/api/v1/devices/{id}")).await?, cols)
                }
                DeviceCmd::Add {
                    tenant,
                    name,
                    site,
                    tags,
                    facts,
                } => {
                    let facts = facts
                        .as_deref()
                        .map(|f| json_arg(f, "--facts"))
                        .transpose()?
                        .unwrap_or(json!({}));
                    c.print(
                        &c.post("/api/v1/devices", json!({ "tenant_id": tenant, "name": name, "site_id": site, "tags": tags, "facts": facts })).await?,
                        cols,
                    );
                }
                DeviceCmd::Import { tenant, file } => {
                    let text = std::fs::read_to_string(&file)
                        .with_context(|| format!("cannot read {}", file.display()))?;
                    let req = c
                        .request(
                            reqwest::Method::POST,
                            &format!(
                                "/api/v1/devices/import{}",
                                query(&[("tenant", Some(tenant))])
                            ),
                        )
                        .header("content-type", "text/csv")
                        .body(text);
                    c.print(&c.send(req).await?, &["created", "updated"]);
                }
                DeviceCmd::Revoke { id } => c.print(
                    &c.post(&format!("/api/v1/devices/{id}/revoke"), json!({}))
                        .await?,
                    &["device_id", "disconnected"],
                ),
                DeviceCmd::Approve { id } => c.print(
                    &c.post(&format!("/api/v1/devices/{id}/approve"), json!({}))
                        .await?,
                    &["device_id", "agent"],
                ),
            }
        }
        Remote::Enrollment(Area { conn, cmd }) => {
            let c = Client::new(conn);
            match cmd {
                EnrollmentCmd::Create {
                    tenant,
                    site,
                    tags,
                    expires,
                    uses,
                    approve,
                } => {
                    let expires = duration_arg(&expires, "--expires")?;
                    let created = c
                        .post(
                            "/api/v1/enrollments",
                            json!({ "tenant_id": tenant, "site_id": site, "tags": tags,
                                    "expires_in_seconds": expires, "uses": uses,
                                    "approve": approve }),
                        )
                        .await?;
                    if c.conn.quiet {
                        println!("{}", cell(&created["token"]));
                    } else {
                        c.print(
                            &created,
                            &[
                                "id",
                                "tenant_id",
                                "uses_left",
                                "expires_at",
                                "approve",
                                "token",
                            ],
                        );
                    }
                }
            }
        }
        Remote::Plugins(Area { conn, cmd }) => {
            let c = Client::new(conn);
            let cols = &["plugin", "version", "digest", "grants"];
            match cmd {
                PluginsCmd::List => c.print(&c.get("/api/v1/plugins").await?, cols),
                PluginsCmd::Install {
                    file,
                    grants,
                    replaces,
                } => {
                    let len = std::fs::metadata(&file)
                        .with_context(|| format!("cannot read {}", file.display()))?
                        .len();
                    check_upload_size(&file, usize::try_from(len).unwrap_or(usize::MAX))?;
                    let bytes = std::fs::read(&file)
                        .with_context(|| format!("cannot read {}", file.display()))?;
                    let wasm = base64::engine::general_purpose::STANDARD.encode(bytes);
                    c.print(
                        &c.post(
                            "/api/v1/plugins",
                            json!({ "wasm": wasm, "grants": grants, "replaces": replaces }),
                        )
                        .await?,
                        cols,
                    );
                }
                PluginsCmd::Grant {
                    name,
                    version,
                    grants,
                } => c.print(
                    &c.put(
                        &format!("/api/v1/plugins/{name}/{version}/grants"),
                        json!({ "grants": grants }),
                    )
                    .await?,
                    cols,
                ),
                PluginsCmd::Offer { module } => {
                    let offer = c
                        .get(&format!(
                            "/api/v1/registry/offer{}",
                            query(&[("module", Some(module))])
                        ))
                        .await?;
                    if c.conn.json {
                        c.print(&offer, &[]);
                    } else {
                        print_offer(&offer);
                    }
                }
                PluginsCmd::InstallFrom {
                    module,
                    mut grants,
                    grant_requested,
                } => {
                    let mut module = module;
                    let mut digest = None;
                    if grant_requested || grants.is_empty() {
                        let offer = c
                            .get(&format!(
                                "/api/v1/registry/offer{}",
                                query(&[("module", Some(module.clone()))])
                            ))
                            .await?;
                        let requested: Vec<String> = offer["capabilities"]
                            .as_array()
                            .into_iter()
                            .flatten()
                            .filter_map(|c| c.as_str().map(str::to_owned))
                            .collect();
                        if !c.conn.quiet && !c.conn.json {
                            print_offer(&offer);
                        }
                        // Install exactly what was shown, or nothing.
                        module = format!("{}@={}", cell(&offer["module"]), cell(&offer["version"]));
                        digest = Some(cell(&offer["digest"]));
                        if grant_requested {
                            grants = requested;
                        } else if !requested.is_empty() {
                            anyhow::bail!(
                                "{module} requests {}: grant them with --grant (or approve exactly these with --grant-requested)",
                                requested.join(", ")
                            );
                        }
                    }
                    c.print(
                        &c.post(
                            "/api/v1/plugins/from-registry",
                            json!({ "module": module, "grants": grants, "digest": digest }),
                        )
                        .await?,
                        &["plugin", "version", "digest", "grants", "source.signed_by"],
                    );
                }
                PluginsCmd::Upgrade {
                    name,
                    requirement,
                    grants,
                    no_grants,
                } => {
                    let grants = (no_grants || !grants.is_empty()).then_some(grants);
                    let done = c
                        .post(
                            &format!("/api/v1/plugins/{name}/upgrade"),
                            json!({ "requirement": requirement, "grants": grants }),
                        )
                        .await?;
                    if c.conn.json {
                        c.print(&done, &[]);
                    } else if done["changed"].as_bool() == Some(true) {
                        println!(
                            "upgraded {name} {} -> {} ({})",
                            cell(&done["from"]["version"]),
                            cell(&done["to"]["version"]),
                            cell(&done["to"]["digest"])
                        );
                    } else {
                        println!("{name} {} is up to date", cell(&done["to"]["version"]));
                    }
                }
            }
        }
        Remote::Trust(Area { conn, cmd }) => {
            let c = Client::new(conn);
            let cols = &["namespace", "key_id", "how", "trusted_at"];
            match cmd {
                TrustCmd::List => c.print(&c.get("/api/v1/registry/trust").await?, cols),
                TrustCmd::Add {
                    namespace,
                    public_key,
                } => c.print(
                    &c.post(
                        "/api/v1/registry/trust",
                        json!({ "namespace": namespace, "public_key": public_key }),
                    )
                    .await?,
                    cols,
                ),
                TrustCmd::Remove { namespace, key_id } => {
                    c.delete(&format!("/api/v1/registry/trust/{namespace}/{key_id}"))
                        .await?;
                    println!("no longer trusted: {key_id} for {namespace}");
                }
            }
        }
        Remote::Playbooks(Area { conn, cmd }) => {
            let c = Client::new(conn);
            let cols = &["id", "tenant_id", "name"];
            match cmd {
                PlaybookCmd::List { tenant } => c.print(
                    &c.get(&format!(
                        "/api/v1/playbooks{}",
                        query(&[("tenant", tenant)])
                    ))
                    .await?,
                    cols,
                ),
                PlaybookCmd::Show { id } => c.print(
                    &c.get(&format!("/api/v1/playbooks/{id}")).await?,
                    &["id", "tenant_id", "name", "steps", "target"],
                ),
                PlaybookCmd::Create {
                    tenant,
                    name,
                    steps,
                    target,
                } => {
                    let steps = json_arg(&steps, "--steps")?;
                    let target = target
                        .as_deref()
                        .map(|t| json_arg(t, "--target"))
                        .transpose()?;
                    c.print(&c.post("/api/v1/playbooks", json!({ "tenant_id": tenant, "name": name, "steps": steps, "target": target })).await?, cols);
                }
                PlaybookCmd::Run { id, tenant } => c.print(
                    &c.post(
                        &format!("/api/v1/playbooks/{id}/runs"),
                        json!({ "tenant_id": tenant }),
                    )
                    .await?,
                    RUN_COLUMNS,
                ),
            }
        }
        Remote::Schedules(Area { conn, cmd }) => {
            let c = Client::new(conn);
            let cols = &[
                "id",
                "playbook_id",
                "tenant_id",
                "spec.cron",
                "enabled",
                "next_fire_at",
            ];
            match cmd {
                ScheduleCmd::List { playbook } => c.print(
                    &c.get(&format!(
                        "/api/v1/schedules{}",
                        query(&[("playbook", playbook)])
                    ))
                    .await?,
                    cols,
                ),
                ScheduleCmd::Create {
                    playbook,
                    cron,
                    timezone,
                    spec,
                    tenant,
                } => {
                    let spec = match spec {
                        Some(s) => json_arg(&s, "--spec")?,
                        None => {
                            let mut spec =
                                json!({ "cron": cron.context("give --cron or --spec")? });
                            if let Some(tz) = timezone {
                                spec["timezone"] = json!(tz);
                            }
                            spec
                        }
                    };
                    c.print(
                        &c.post(
                            "/api/v1/schedules",
                            json!({ "playbook_id": playbook, "tenant_id": tenant, "spec": spec }),
                        )
                        .await?,
                        cols,
                    );
                }
                ScheduleCmd::Enable { id } => c.print(
                    &c.patch(
                        &format!("/api/v1/schedules/{id}"),
                        json!({ "enabled": true }),
                    )
                    .await?,
                    cols,
                ),
                ScheduleCmd::Disable { id } => c.print(
                    &c.patch(
                        &format!("/api/v1/schedules/{id}"),
                        json!({ "enabled": false }),
                    )
                    .await?,
                    cols,
                ),
            }
        }
        Remote::Runs(Area { conn, cmd }) => {
            let c = Client::new(conn);
            match cmd {
                RunCmd::List {
                    tenant,
                    status,
                    plugin,
                    since,
                    until,
                    limit,
                    cursor,
                } => {
                    let q = query(&[
                        ("tenant", tenant),
                        ("status", status),
                        ("plugin", plugin),
                        ("since", since),
                        ("until", until),
                        ("limit", limit.map(|l| l.to_string())),
                        ("cursor", cursor),
                    ]);
                    c.print(&c.get(&format!("/api/v1/runs{q}")).await?, RUN_COLUMNS);
                }
                RunCmd::Show { id } => c.print(
                    &c.get(&format!("/api/v1/runs/{id}")).await?,
                    &[
                        "id",
                        "tenant_id",
                        "status",
                        "jobs",
                        "created_at",
                        "finished_at",
                    ],
                ),
                RunCmd::Jobs { id, limit, cursor } => c.print(
                    &c.get(&format!(
                        "/api/v1/runs/{id}/jobs{}",
                        query(&[("limit", limit.map(|l| l.to_string())), ("cursor", cursor),])
                    ))
                    .await?,
                    &[
                        "id",
                        "device_id",
                        "plugin",
                        "mode",
                        "status",
                        "attempt",
                        "last_error",
                    ],
                ),
                RunCmd::Findings { id } => c.print(
                    &c.get(&format!("/api/v1/runs/{id}/findings")).await?,
                    &["device_id", "plugin", "severity", "key", "summary"],
                ),
                RunCmd::Changes { id } => c.print(
                    &c.get(&format!("/api/v1/runs/{id}/changes")).await?,
                    &[
                        "job_id",
                        "change.outcome",
                        "change.kind",
                        "change.target",
                        "change.description",
                    ],
                ),
                RunCmd::Logs { id } => c.print(
                    &c.get(&format!("/api/v1/runs/{id}/logs")).await?,
                    &["job_id", "level", "message"],
                ),
                RunCmd::Watch { id } => return watch(&c, &id).await,
                RunCmd::Cancel { id } => c.print(
                    &c.post(&format!("/api/v1/runs/{id}/cancel"), json!({}))
                        .await?,
                    RUN_COLUMNS,
                ),
            }
        }
        Remote::Approvals(Area { conn, cmd }) => {
            let c = Client::new(conn);
            let job_cols = &["id", "run_id", "device_id", "plugin", "status"];
            match cmd {
                ApprovalCmd::List => c.print(
                    &c.get("/api/v1/approvals").await?,
                    &["job.id", "job.device_id", "job.plugin", "planned"],
                ),
                ApprovalCmd::Approve { job, comment } => c.print(
                    &c.post(
                        &format!("/api/v1/approvals/{job}/approve"),
                        json!({ "comment": comment }),
                    )
                    .await?,
                    job_cols,
                ),
                ApprovalCmd::Reject { job, comment } => c.print(
                    &c.post(
                        &format!("/api/v1/approvals/{job}/reject"),
                        json!({ "comment": comment }),
                    )
                    .await?,
                    job_cols,
                ),
            }
        }
        Remote::Tokens(Area { conn, cmd }) => {
            let c = Client::new(conn);
            let cols = &["id", "user_id", "label", "created_at", "revoked_at"];
            match cmd {
                TokenCmd::List => c.print(&c.get("/api/v1/tokens").await?, cols),
                TokenCmd::Create { user, label } => {
                    let made = c
                        .post("/api/v1/tokens", json!({ "user": user, "label": label }))
                        .await?;
                    if c.conn.json {
                        c.print(&made, cols);
                    } else if c.conn.quiet {
                        println!("{}", cell(&made["token"]));
                    } else {
                        println!("token (shown once): {}", cell(&made["token"]));
                        println!("id: {}", cell(&made["id"]));
                    }
                }
                TokenCmd::Revoke { id } => {
                    c.delete(&format!("/api/v1/tokens/{id}")).await?;
                    println!("revoked {id}");
                }
            }
        }
        Remote::Users(Area { conn, cmd }) => {
            let c = Client::new(conn);
            let cols = &["id", "name", "role", "tenants"];
            match cmd {
                UserCmd::List => c.print(&c.get("/api/v1/users").await?, cols),
                UserCmd::Create {
                    name,
                    role,
                    tenants,
                } => {
                    let tenants = (!tenants.is_empty()).then_some(tenants);
                    c.print(
                        &c.post(
                            "/api/v1/users",
                            json!({ "name": name, "role": role, "tenants": tenants }),
                        )
                        .await?,
                        cols,
                    );
                }
            }
        }
        Remote::Webhooks(Area { conn, cmd }) => {
            let c = Client::new(conn);
            let cols = &["id", "tenant_id", "url", "enabled"];
            match cmd {
                WebhookCmd::List => c.print(&c.get("/api/v1/webhooks").await?, cols),
                WebhookCmd::Create {
                    url,
                    secret,
                    tenant,
                } => c.print(
                    &c.post(
                        "/api/v1/webhooks",
                        json!({ "url": url, "secret": secret, "tenant_id": tenant }),
                    )
                    .await?,
                    cols,
                ),
                WebhookCmd::Delete { id } => {
                    c.delete(&format!("/api/v1/webhooks/{id}")).await?;
                    println!("deleted {id}");
                }
            }
        }
        Remote::Findings { conn, tenant, all } => {
            let c = Client::new(conn);
            let q = query(&[("tenant", Some(tenant)), ("open", Some((!all).to_string()))]);
            c.print(
                &c.get(&format!("/api/v1/findings{q}")).await?,
                &[
                    "device_id",
                    "plugin",
                    "severity",
                    "key",
                    "summary",
                    "resolved_at",
                ],
            );
        }
        Remote::Report {
            conn,
            tenant,
            month,
            format,
            output,
        } => {
            let c = Client::new(conn);
            let tenants = c.get("/api/v1/tenants").await?;
            let id = tenants
                .as_array()
                .into_iter()
                .flatten()
                .find(|t| t["id"] == tenant.as_str() || t["name"] == tenant.as_str())
                .and_then(|t| t["id"].as_str())
                .with_context(|| format!("no tenant named `{tenant}` that this token sees"))?
                .to_owned();
            let as_json = format == ReportFormat::Json;
            let path = format!(
                "/api/v1/reports/{id}{}",
                query(&[
                    ("month", Some(month)),
                    (
                        "format",
                        Some(if as_json { "json" } else { "html" }.to_owned())
                    ),
                ])
            );
            let text = c.send_text(c.request(reqwest::Method::GET, &path)).await?;
            match format {
                ReportFormat::Html | ReportFormat::Json => std::fs::write(&output, text)
                    .with_context(|| format!("cannot write {}", output.display()))?,
                ReportFormat::Pdf => print_pdf(&text, &output)?,
            }
            eprintln!("wrote {}", output.display());
        }
        Remote::Tickets { conn, tenant } => {
            let c = Client::new(conn);
            c.print(
                &c.get(&format!(
                    "/api/v1/tickets{}",
                    query(&[("tenant", Some(tenant))])
                ))
                .await?,
                &["id", "device_id", "queue", "title"],
            );
        }
        Remote::Audit {
            conn,
            tenant,
            limit,
        } => {
            let c = Client::new(conn);
            let q = query(&[("tenant", tenant), ("limit", Some(limit.to_string()))]);
            c.print(
                &c.get(&format!("/api/v1/audit{q}")).await?,
                &["at", "actor", "tenant_id", "action", "outcome"],
            );
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// Follows `/runs/{id}/events`: a progress bar over the run's jobs, log
/// lines above it; exits 0 if the run succeeded, 1 otherwise.
async fn watch(c: &Client, id: &str) -> anyhow::Result<ExitCode> {
    let resp = c
        .request(reqwest::Method::GET, &format!("/api/v1/runs/{id}/events"))
        .send()
        .await
        .with_context(|| format!("cannot reach the server at {}", c.conn.url))?;
    if !resp.status().is_success() {
        let status = resp.status();
        let problem: Value = serde_json::from_str(&resp.text().await?).unwrap_or(Value::Null);
        anyhow::bail!(
            "{} ({status})",
            problem["detail"].as_str().unwrap_or("request failed")
        );
    }
    let bar = indicatif::ProgressBar::new(0);
    if c.conn.json {
        bar.set_draw_target(indicatif::ProgressDrawTarget::hidden());
    }
    bar.set_style(
        indicatif::ProgressStyle::with_template("{bar:40} {pos}/{len} jobs ended {msg}")
            .expect("a valid template"),
    );
    let mut stream = resp.bytes_stream();
    let mut buf = String::new();
    let mut event = String::new();
    let mut data = String::new();
    let mut status = String::from("running");
    while let Some(chunk) = stream.next().await {
        buf.push_str(&String::from_utf8_lossy(&chunk?));
        while let Some(pos) = buf.find('\n') {
            let line = buf[..pos].trim_end_matches('\r').to_owned();
            buf.drain(..=pos);
            if let Some(v) = line.strip_prefix("event:") {
                event = v.trim().to_owned();
            } else if let Some(v) = line.strip_prefix("data:") {
                data.push_str(v.trim_start());
            } else if line.is_empty() && !event.is_empty() {
                let value: Value = serde_json::from_str(&data).unwrap_or(Value::Null);
                if c.conn.json {
                    println!("{}", json!({ "event": event, "data": value }));
                }
                match event.as_str() {
                    "progress" => {
                        let total = value["total"].as_u64().unwrap_or(0);
                        let ended: u64 = value["jobs"]
                            .as_object()
                            .into_iter()
                            .flatten()
                            .filter(|(k, _)| {
                                !matches!(k.as_str(), "queued" | "leased" | "awaiting-approval")
                            })
                            .filter_map(|(_, v)| v.as_u64())
                            .sum();
                        bar.set_length(total);
                        bar.set_position(ended);
                        bar.set_message(cell(&value["jobs"]));
                    }
                    "log" if !c.conn.json => bar.println(format!(
                        "{} {:<5} {}",
                        cell(&value["job_id"]),
                        cell(&value["level"]),
                        cell(&value["message"])
                    )),
                    "end" => status = cell(&value["status"]),
                    _ => {}
                }
                event.clear();
                data.clear();
            }
        }
    }
    bar.finish();
    if !c.conn.json {
        println!("run {id} {status}");
    }
    Ok(if status == "succeeded" {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

/// Prints an HTML document to PDF with the machine's Chromium (headless);
/// a clear error naming what to install when there is none.
fn print_pdf(html: &str, output: &std::path::Path) -> anyhow::Result<()> {
    let browser = [
        "chromium",
        "chromium-browser",
        "google-chrome",
        "google-chrome-stable",
    ]
    .into_iter()
    .find_map(|name| {
        std::env::var_os("PATH").and_then(|paths| {
            std::env::split_paths(&paths)
                .map(|dir| dir.join(name))
                .find(|p| p.is_file())
        })
    })
    .context(
        "a PDF is printed by Chromium, and none is installed here (looked for chromium, \
             chromium-browser and google-chrome in PATH); install Debian's `chromium`, or save \
             `--format html` and print it to PDF from a browser",
    )?;
    let work = tempfile::tempdir()?;
    let page = work.path().join("report.html");
    std::fs::write(&page, html)?;
    let output = std::path::absolute(output)?;
    let ran = std::process::Command::new(&browser)
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--no-pdf-header-footer",
        ])
        .arg(format!(
            "--user-data-dir={}",
            work.path().join("profile").display()
        ))
        .arg(format!("--print-to-pdf={}", output.display()))
        .arg(format!("file://{}", page.display()))
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .output()
        .with_context(|| format!("cannot run {}", browser.display()))?;
    let pdf = std::fs::read(&output).unwrap_or_default();
    if !ran.status.success() || !pdf.starts_with(b"%PDF") {
        anyhow::bail!(
            "{} did not print the PDF ({}): {}",
            browser.display(),
            ran.status,
            String::from_utf8_lossy(&ran.stderr)
                .lines()
                .last()
                .unwrap_or("")
        );
    }
    Ok(())
}
