//! Remote agents at fleet scale, against one real `steward serve` on this
//! machine (SQLite, the embedded default), with the load generator in this
//! process on the same two cores:
//!
//! 1. **Held connections**: `AGENTS` simulated agents (default 50,000)
//!    enroll with one token, then connect and stay connected, each with its
//!    own ed25519 key, signing the server's nonce, heartbeating every 15 s.
//!    They connect from 64 loopback source addresses (127.0.0.2 …), since
//!    one address has about 28,000 ephemeral ports. Printed: the time to
//!    connect them all and the server's resident memory per connected
//!    agent (its RSS with all connected, less its RSS with none, over the
//!    count).
//! 2. **Jobs through the connections**: all but `JOB_AGENTS` (default
//!    10,000) disconnect; a check playbook of the first-party `patching`
//!    plugin (three provider calls per job, each a round trip over the
//!    agent's WebSocket) runs across the rest. Printed: jobs per second from
//!    the run's start to its end, and the time from the run's start to each
//!    agent's first provider call (p50, p99, max). The baseline, measured
//!    the same way in the same run, is the same playbook over the same
//!    number of simulated devices answered in the server's own process, so
//!    the ratio is what the agents' connections cost.
//! 3. **Restart storm**: with a run in flight, the server is stopped
//!    (SIGTERM) and started again on the same port under the `JOB_AGENTS`
//!    agents, which reconnect with the real agent's backoff (full jitter,
//!    1 s doubling to 60 s). Printed: the time from the stop until all are
//!    connected again, until the interrupted run has ended with every job
//!    succeeded (none lost), and until a new run across all of them has.
//!
//! Each simulated agent answers provider calls with the real agent's code
//! (`steward_runtime::device::remote::answer`, ceiling included) from one
//! shared fixture device (`tests/e2e/device.toml`).
//!
//! `cargo build --release -p steward-host -p steward-bench && \
//!  target/release/agents [AGENTS] [JOB_AGENTS]`
//! (as root, or with a file limit above twice `AGENTS`: the bench raises
//! its own and the server's).

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use anyhow::Context as _;
use futures_util::{SinkExt as _, StreamExt as _};
use rand::Rng as _;
use serde_json::{Value, json};
use steward_contract::signing::SecretKey;
use steward_runtime::capability::{Grant, Grants};
use steward_runtime::device::Device;
use steward_runtime::device::remote::{AgentMessage, ServerMessage, answer, challenge_payload};
use steward_runtime::device::simulated::{Fixture, Simulated};
use tokio::sync::watch;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;

const OWNER: &str = "stw_bench_owner_token_0123456789abcdef";
const SOURCE_ADDRESSES: u8 = 64;
const JOBS_TARGET: f64 = 2_000.0;

fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let agents: usize = args
        .first()
        .map(|a| a.parse())
        .transpose()?
        .unwrap_or(50_000);
    let job_agents: usize = args
        .get(1)
        .map(|a| a.parse())
        .transpose()?
        .unwrap_or(10_000)
        .min(agents);
    let files = raise_file_limit((agents as u64) + 4096)?;
    // One socket per agent in this process and in the server: both live
    // under the same limit, which only CAP_SYS_RESOURCE can raise.
    let fit = usize::try_from(files.saturating_sub(1000)).unwrap_or(usize::MAX);
    if agents > fit {
        println!(
            "the open-file limit is {files} and cannot be raised here (no CAP_SYS_RESOURCE): \
             {fit} agents instead of {agents}"
        );
    }
    let agents = agents.min(fit);
    let job_agents = job_agents.min(agents);
    println!(
        "{agents} simulated agents ({job_agents} for jobs and the restart) against one `steward serve` \
         on SQLite, load generator in the same machine, 2 cores; file limit {files}"
    );
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?
        .block_on(run(agents, job_agents))
}

/// Raises this process's open-file limit (and so the server's, which
/// inherits it) to `want`, or as far as allowed.
fn raise_file_limit(want: u64) -> anyhow::Result<u64> {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit/setrlimit with a valid pointer.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) != 0 {
            anyhow::bail!("getrlimit failed");
        }
        let raised = libc::rlimit {
            rlim_cur: want.max(lim.rlim_cur),
            rlim_max: want.max(lim.rlim_max),
        };
        if libc::setrlimit(libc::RLIMIT_NOFILE, &raised) == 0 {
            return Ok(raised.rlim_cur);
        }
        // Not root: as far as the hard limit goes.
        let capped = libc::rlimit {
            rlim_cur: lim.rlim_max,
            rlim_max: lim.rlim_max,
        };
        libc::setrlimit(libc::RLIMIT_NOFILE, &capped);
        Ok(capped.rlim_cur)
    }
}

/// The `steward` binary beside this one (built by the same command).
fn steward_binary() -> anyhow::Result<PathBuf> {
    let bin = std::env::current_exe()?
        .parent()
        .context("no directory")?
        .join("steward");
    anyhow::ensure!(
        bin.exists(),
        "{} is missing: cargo build --release -p steward-host -p steward-bench",
        bin.display()
    );
    Ok(bin)
}

struct Server {
    bin: PathBuf,
    config: PathBuf,
    child: Option<Child>,
    url: String,
    http: reqwest::Client,
}

impl Server {
    fn start(bin: &Path, data: &Path, port: u16, patching: &Path) -> anyhow::Result<Self> {
        let config = data.join("steward.toml");
        std::fs::write(
            &config,
            format!(
                "data-dir = {data:?}\nlisten = \"127.0.0.1:{port}\"\nowner-token = {OWNER:?}\n\
                 max-in-flight = 512\nclaim-batch = 512\n\n\
                 [api-limits]\nmax-connections = 200000\n\n\
                 [[plugins]]\nfile = {patching:?}\ngrants = [\"packages\"]\n",
                data = data.display().to_string(),
                patching = patching.display().to_string(),
            ),
        )?;
        let mut server = Self {
            bin: bin.to_owned(),
            config,
            child: None,
            url: format!("http://127.0.0.1:{port}"),
            http: reqwest::Client::new(),
        };
        server.spawn()?;
        Ok(server)
    }

    fn spawn(&mut self) -> anyhow::Result<()> {
        let mut child = Command::new(&self.bin)
            .args(["serve", "--config"])
            .arg(&self.config)
            .env("STEWARD_LOG", "warn")
            .env_remove("RUST_BACKTRACE")
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()?;
        let stdout = child.stdout.take().context("no stdout")?;
        let mut lines = std::io::BufRead::lines(std::io::BufReader::new(stdout));
        loop {
            let line = lines.next().context("serve exited before listening")??;
            if line.starts_with("steward: API listening on ") {
                break;
            }
        }
        std::thread::spawn(move || for _ in lines {});
        self.child = Some(child);
        Ok(())
    }

    fn pid(&self) -> u32 {
        self.child.as_ref().map_or(0, Child::id)
    }

    /// Stops the server as SIGTERM does (jobs in flight are finished).
    fn stop(&mut self) -> anyhow::Result<()> {
        if let Some(mut child) = self.child.take() {
            // SAFETY: signalling our own child.
            unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
            child.wait()?;
        }
        Ok(())
    }

    fn rss_kib(&self) -> u64 {
        rss_kib(self.pid())
    }

    async fn call(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<Value>,
    ) -> anyhow::Result<Value> {
        let mut req = self
            .http
            .request(method, format!("{}{path}", self.url))
            .bearer_auth(OWNER);
        if let Some(body) = body {
            req = req.json(&body);
        }
        let resp = req.send().await?;
        let status = resp.status();
        let v: Value = resp.json().await.unwrap_or(Value::Null);
        anyhow::ensure!(status.is_success(), "{path}: {status} {v}");
        Ok(v)
    }

    async fn get(&self, path: &str) -> anyhow::Result<Value> {
        self.call(reqwest::Method::GET, path, None).await
    }

    async fn post(&self, path: &str, body: Value) -> anyhow::Result<Value> {
        self.call(reqwest::Method::POST, path, Some(body)).await
    }

    /// Starts a run of `playbook`; waits for its end. Returns the run and
    /// the seconds from the request to the end (the server's own clock:
    /// `finished_at - created_at`).
    async fn run(&self, playbook: &str) -> anyhow::Result<(Value, f64)> {
        let run = self
            .post(&format!("/api/v1/playbooks/{playbook}/runs"), json!({}))
            .await?;
        let id = run["id"].as_str().context("no run id")?.to_owned();
        self.wait_run(&id).await
    }

    async fn wait_run(&self, id: &str) -> anyhow::Result<(Value, f64)> {
        loop {
            if let Ok(run) = self.get(&format!("/api/v1/runs/{id}")).await
                && let (Some(end), Some(start)) =
                    (run["finished_at"].as_i64(), run["created_at"].as_i64())
            {
                return Ok((run, (end - start) as f64 / 1000.0));
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

fn rss_kib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .unwrap_or(0)
}

/// What the simulated agents saw, shared.
struct Stats {
    epoch: Instant,
    connected: AtomicUsize,
    calls: AtomicU64,
    /// Per agent: microseconds since `epoch` of its first provider call
    /// since the last reset (0: none yet).
    first_call: Vec<AtomicU64>,
}

impl Stats {
    fn reset_first_calls(&self) {
        for f in &self.first_call {
            f.store(0, Ordering::Relaxed);
        }
    }

    /// Times from `since` to each agent's first call among `agents`, in ms.
    fn first_call_ms(&self, agents: usize, since: Instant) -> Vec<f64> {
        let base = since.duration_since(self.epoch).as_micros() as f64;
        let mut v: Vec<f64> = self.first_call[..agents]
            .iter()
            .map(|f| f.load(Ordering::Relaxed))
            .filter(|&t| t > 0)
            .map(|t| (t as f64 - base) / 1000.0)
            .collect();
        v.sort_by(f64::total_cmp);
        v
    }
}

struct Agent {
    index: usize,
    device_id: String,
    key: SecretKey,
}

struct Shared {
    server: SocketAddr,
    device: Device,
    ceiling: Grants,
    stats: Stats,
}

/// One simulated agent: connects from its source address, answers calls,
/// heartbeats, and reconnects as the real agent does until `stop`.
async fn agent_loop(agent: Agent, shared: Arc<Shared>, mut stop: watch::Receiver<bool>) {
    let mut backoff = Duration::from_secs(1);
    loop {
        let started = Instant::now();
        tokio::select! {
            _ = session(&agent, &shared) => {}
            _ = stop.wait_for(|s| *s) => return,
        }
        if started.elapsed() > Duration::from_secs(60) {
            backoff = Duration::from_secs(1);
        }
        let wait = rand::thread_rng().gen_range(Duration::from_millis(100)..=backoff);
        tokio::select! {
            _ = tokio::time::sleep(wait) => {}
            _ = stop.wait_for(|s| *s) => return,
        }
        backoff = (backoff * 2).min(Duration::from_secs(60));
    }
}

async fn session(agent: &Agent, shared: &Shared) -> anyhow::Result<()> {
    let source = Ipv4Addr::new(
        127,
        0,
        0,
        2 + (agent.index % SOURCE_ADDRESSES as usize) as u8,
    );
    let socket = tokio::net::TcpSocket::new_v4()?;
    socket.bind(SocketAddr::new(IpAddr::V4(source), 0))?;
    let stream = socket.connect(shared.server).await?;
    let config = WebSocketConfig::default()
        .read_buffer_size(4 << 10)
        .write_buffer_size(0);
    let url = format!("ws://{}/api/v1/agent/connect", shared.server);
    let (ws, _) = tokio_tungstenite::client_async_with_config(url, stream, Some(config)).await?;
    let (mut sink, mut stream) = ws.split();
    let text =
        |m: &AgentMessage| Message::Text(serde_json::to_string(m).unwrap_or_default().into());
    let mut next = async || -> anyhow::Result<ServerMessage> {
        loop {
            match stream.next().await {
                Some(Ok(Message::Text(t))) => return Ok(serde_json::from_str(t.as_str())?),
                Some(Ok(Message::Close(_))) | None => anyhow::bail!("closed"),
                Some(Err(e)) => return Err(e.into()),
                Some(Ok(_)) => {}
            }
        }
    };
    let ServerMessage::Challenge { nonce } = next().await? else {
        anyhow::bail!("no challenge");
    };
    sink.send(text(&AgentMessage::Hello {
        device_id: agent.device_id.clone(),
        signature: agent.key.sign(&challenge_payload(&nonce, &agent.device_id)),
        agent_version: "bench".into(),
    }))
    .await?;
    let ServerMessage::Welcome {
        heartbeat_seconds, ..
    } = next().await?
    else {
        anyhow::bail!("refused");
    };
    let stats = &shared.stats;
    stats.connected.fetch_add(1, Ordering::Relaxed);
    // Counted out however the session ends, dropped by a stop included.
    struct Connected<'a>(&'a AtomicUsize);
    impl Drop for Connected<'_> {
        fn drop(&mut self) {
            self.0.fetch_sub(1, Ordering::Relaxed);
        }
    }
    let _connected = Connected(&stats.connected);
    async {
        let every = Duration::from_secs(heartbeat_seconds.clamp(1, 300));
        let mut ticker = tokio::time::interval_at(tokio::time::Instant::now() + every, every);
        loop {
            tokio::select! {
                _ = ticker.tick() => sink.send(text(&AgentMessage::Heartbeat {})).await?,
                message = next() => match message? {
                    ServerMessage::Call { id, call } => {
                        let at = stats.epoch.elapsed().as_micros() as u64;
                        let _ = stats.first_call[agent.index].compare_exchange(
                            0, at.max(1), Ordering::Relaxed, Ordering::Relaxed);
                        stats.calls.fetch_add(1, Ordering::Relaxed);
                        let result = answer(&shared.device, &shared.ceiling, call).await;
                        sink.send(text(&AgentMessage::Reply { id, result })).await?;
                    }
                    ServerMessage::Goodbye { .. } => anyhow::bail!("goodbye"),
                    _ => {}
                },
            }
        }
        #[allow(unreachable_code)]
        anyhow::Ok(())
    }
    .await
}

async fn wait_connected(stats: &Stats, want: usize, within: Duration) -> anyhow::Result<Duration> {
    let start = Instant::now();
    while stats.connected.load(Ordering::Relaxed) != want {
        anyhow::ensure!(
            start.elapsed() < within,
            "{} of {want} agents connected after {within:?}",
            stats.connected.load(Ordering::Relaxed)
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    Ok(start.elapsed())
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    sorted[((sorted.len() as f64 * p).ceil() as usize).clamp(1, sorted.len()) - 1]
}

async fn run(agents: usize, job_agents: usize) -> anyhow::Result<()> {
    let bin = steward_binary()?;
    let patching = steward_tests::component("steward-plugin-patching");
    let data = tempfile::tempdir()?;
    let port = std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port();
    let mut server = Server::start(&bin, data.path(), port, &patching)?;
    let tenant = server
        .post(
            "/api/v1/tenants",
            json!({ "name": "fleet", "tier": "managed" }),
        )
        .await?;
    let tenant = tenant["id"].as_str().context("tenant id")?.to_owned();

    // Enrollment: two tokens, so the job agents carry a tag.
    let t0 = Instant::now();
    let mut enrolled = Vec::with_capacity(agents);
    for (uses, tags) in [
        (job_agents, vec!["jobs"]),
        (agents - job_agents, vec!["idle"]),
    ] {
        if uses == 0 {
            continue;
        }
        let token = server
            .post(
                "/api/v1/enrollments",
                json!({ "tenant_id": tenant, "uses": uses, "tags": tags }),
            )
            .await?["token"]
            .as_str()
            .context("token")?
            .to_owned();
        let base = enrolled.len();
        let results = futures_util::stream::iter(0..uses)
            .map(|i| {
                let (http, url, token) = (server.http.clone(), server.url.clone(), token.clone());
                async move {
                    let key = SecretKey::generate();
                    let resp: Value = http
                        .post(format!("{url}/api/v1/agent/enroll"))
                        .json(&json!({ "token": token, "public_key": key.public_key(),
                                       "hostname": format!("ws-{}", base + i) }))
                        .send()
                        .await?
                        .json()
                        .await?;
                    let device_id = resp["device_id"]
                        .as_str()
                        .with_context(|| format!("enrollment refused: {resp}"))?
                        .to_owned();
                    anyhow::Ok((device_id, key))
                }
            })
            .buffered(32)
            .collect::<Vec<_>>()
            .await;
        for r in results {
            let (device_id, key) = r?;
            enrolled.push(Agent {
                index: enrolled.len(),
                device_id,
                key,
            });
        }
    }
    println!(
        "enrolled {agents} agents in {:.1} s ({:.0}/s)",
        t0.elapsed().as_secs_f64(),
        agents as f64 / t0.elapsed().as_secs_f64()
    );

    let fixture_path = steward_tests::workspace_root().join("tests/e2e/device.toml");
    let fixture: Fixture = toml::from_str(&std::fs::read_to_string(fixture_path)?)?;
    let shared = Arc::new(Shared {
        server: SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), port),
        device: Simulated::new(fixture.clone()).device(),
        ceiling: ["inventory", "packages"]
            .iter()
            .try_fold(Grants::none(), |g, text| {
                text.parse::<Grant>().map(|x| g.with(x))
            })?,
        stats: Stats {
            epoch: Instant::now(),
            connected: AtomicUsize::new(0),
            calls: AtomicU64::new(0),
            first_call: (0..agents).map(|_| AtomicU64::new(0)).collect(),
        },
    });

    // 1. Held connections.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let rss_none = server.rss_kib();
    let (stop_idle, idle_rx) = watch::channel(false);
    let (stop_jobs, jobs_rx) = watch::channel(false);
    for agent in enrolled {
        let rx = if agent.index < job_agents {
            jobs_rx.clone()
        } else {
            idle_rx.clone()
        };
        tokio::spawn(agent_loop(agent, shared.clone(), rx));
    }
    let took = wait_connected(&shared.stats, agents, Duration::from_secs(600)).await?;
    tokio::time::sleep(Duration::from_secs(2)).await;
    let rss_all = server.rss_kib();
    println!(
        "held connected: {agents} agents, all connected in {:.1} s; server RSS {} MiB with none, {} MiB with all: \
         {:.1} KiB per connected agent (this load generator: {} MiB)",
        took.as_secs_f64(),
        rss_none / 1024,
        rss_all / 1024,
        (rss_all.saturating_sub(rss_none)) as f64 / agents as f64,
        rss_kib(std::process::id()) / 1024,
    );
    // Heartbeats flow for a while: still all connected.
    tokio::time::sleep(Duration::from_secs(20)).await;
    println!(
        "after 20 s of heartbeats: {} connected, server RSS {} MiB",
        shared.stats.connected.load(Ordering::Relaxed),
        server.rss_kib() / 1024
    );
    stop_idle.send_replace(true);
    wait_connected(&shared.stats, job_agents, Duration::from_secs(120)).await?;

    // 2. Jobs through the connections, against the same playbook over
    //    simulated devices answered in the server's own process.
    let check = |name: &str, tags: Vec<&str>| {
        json!({
            "tenant_id": tenant, "name": name,
            "steps": [{ "plugin": "patching", "mode": "check" }],
            "target": { "tags": tags }
        })
    };
    let sim_tenant = server
        .post(
            "/api/v1/tenants",
            json!({ "name": "local-sim", "tier": "managed" }),
        )
        .await?;
    let sim_tenant = sim_tenant["id"].as_str().context("tenant id")?.to_owned();
    let rows: Vec<Value> = (0..job_agents)
        .map(|i| {
            let mut f = fixture.clone();
            f.facts.id = format!("sim-{i}");
            json!({ "tenant_id": sim_tenant, "name": format!("sim-{i}"), "tags": ["sim"],
                    "facts": { "provider": "simulated", "fixture": f } })
        })
        .collect();
    for chunk in rows.chunks(500) {
        for row in chunk {
            server.post("/api/v1/devices", row.clone()).await?;
        }
    }
    let local = server
        .post(
            "/api/v1/playbooks",
            json!({ "tenant_id": sim_tenant, "name": "check-sim",
                    "steps": [{ "plugin": "patching", "mode": "check" }],
                    "target": { "tags": ["sim"] } }),
        )
        .await?;
    let local = local["id"].as_str().context("playbook")?.to_owned();
    let remote = server
        .post("/api/v1/playbooks", check("check", vec!["jobs"]))
        .await?;
    let remote = remote["id"].as_str().context("playbook")?.to_owned();

    // A warm-up run of each (compile cache, instance pool, SQLite pages).
    server.run(&local).await?;
    server.run(&remote).await?;
    let (run, local_s) = server.run(&local).await?;
    anyhow::ensure!(run["status"] == "succeeded", "the local run: {run}");
    shared.stats.reset_first_calls();
    let calls_before = shared.stats.calls.load(Ordering::Relaxed);
    let started = Instant::now();
    let (run, remote_s) = server.run(&remote).await?;
    anyhow::ensure!(run["status"] == "succeeded", "the agents' run: {run}");
    let waits = shared.stats.first_call_ms(job_agents, started);
    let calls = shared.stats.calls.load(Ordering::Relaxed) - calls_before;
    let (local_rate, remote_rate) = (job_agents as f64 / local_s, job_agents as f64 / remote_s);
    println!(
        "check playbook over {job_agents} connected agents: {remote_rate:.0} jobs/s ({calls} provider calls \
         over the connections), target {JOBS_TARGET:.0}: {}",
        if remote_rate >= JOBS_TARGET {
            "met"
        } else {
            "NOT met"
        }
    );
    println!(
        "baseline, the same playbook over {job_agents} simulated devices in the server's process: \
         {local_rate:.0} jobs/s; agents / baseline = {:.2}",
        remote_rate / local_rate
    );
    println!(
        "run start to each agent's first provider call ({} agents): p50 {:.0} ms, p99 {:.0} ms, max {:.0} ms",
        waits.len(),
        percentile(&waits, 0.5),
        percentile(&waits, 0.99),
        waits.last().copied().unwrap_or(f64::NAN)
    );

    // 3. Restart storm.
    let run = server
        .post(&format!("/api/v1/playbooks/{remote}/runs"), json!({}))
        .await?;
    let interrupted = run["id"].as_str().context("run id")?.to_owned();
    tokio::time::sleep(Duration::from_millis(200)).await;
    let stopped_at = Instant::now();
    server.stop()?;
    let stop_took = stopped_at.elapsed();
    server.spawn()?;
    let up = stopped_at.elapsed();
    let back = wait_connected(&shared.stats, job_agents, Duration::from_secs(300)).await? + up;
    let (run, _) = server.wait_run(&interrupted).await?;
    let interrupted_done = stopped_at.elapsed();
    let jobs = server
        .get(&format!("/api/v1/runs/{interrupted}/jobs?limit=1"))
        .await
        .unwrap_or(Value::Null);
    anyhow::ensure!(
        run["status"] == "succeeded",
        "the interrupted run did not succeed: {run} {jobs}"
    );
    let (run, _) = server.run(&remote).await?;
    anyhow::ensure!(
        run["status"] == "succeeded",
        "the run after the restart: {run}"
    );
    let working = stopped_at.elapsed();
    println!(
        "restart storm under {job_agents} agents: stop took {:.1} s, serving again after {:.1} s; \
         all agents connected after {:.1} s (target 60 s: {}); the interrupted run ended with every job \
         succeeded after {:.1} s; a new run across all of them succeeded after {:.1} s",
        stop_took.as_secs_f64(),
        up.as_secs_f64(),
        back.as_secs_f64(),
        if back < Duration::from_secs(60) {
            "met"
        } else {
            "NOT met"
        },
        interrupted_done.as_secs_f64(),
        working.as_secs_f64(),
    );
    stop_jobs.send_replace(true);
    server.stop()?;
    Ok(())
}
