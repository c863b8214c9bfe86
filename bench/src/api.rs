//! API throughput: requests per second and latency percentiles for listing
//! runs (`GET /api/v1/runs`, a page of 50, authenticated) with 100,000
//! runs stored in SQLite, and for one run with its jobs per state
//! (`GET /api/v1/runs/{id}`) on a run of 10,000 jobs, served from memory
//! and, with a commit every millisecond beside it, from the store; the server and the
//! load generator sharing this machine's two cores. The baseline, measured in the same run by the same
//! generator, is `GET /healthz` (no token, no store), so the ratio is what
//! authentication, the query and the JSON cost.
//!
//! Beside them, the web console's pages as a signed-in owner sees them with
//! 10,000 devices (and 20,000 open findings) stored as well: the fleet
//! (every tenant, and one tenant with its month's charts) and the runs
//! list, each on one connection so that its latency is the server's time
//! for the page, with the page's weight.
//!
//! `cargo run --release -p steward-bench --bin api [RUNS] [SECONDS] [CONNECTIONS]`.

#[path = "../../host/tests/support/mod.rs"]
mod support;

use std::sync::Arc;
use std::time::{Duration, Instant};

use sqlx::Connection as _;
use steward_api::{self as api, ApiState, auth};
use steward_control::plane::ControlPlane;
use steward_control::plugins::PluginLibrary;
use steward_store::{NewTenant, NewUser, Role, Tier, Timestamp};
use support::control::runtime_with;

const TARGET_RPS: f64 = 20_000.0;
const TARGET_P99_MS: f64 = 10.0;
/// `GET /api/v1/runs/{id}` on a run of [`BIG_RUN_JOBS`] jobs.
const TARGET_RUN_P99_MS: f64 = 1.0;
const BIG_RUN_JOBS: u64 = 10_000;
/// Console pages: p99 server time and weight.
const TARGET_PAGE_P99_MS: f64 = 50.0;
const TARGET_PAGE_BYTES: usize = 200 * 1024;
const DEVICES: u64 = 10_000;

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let arg = |i: usize, default: u64| -> anyhow::Result<u64> {
        Ok(args
            .get(i)
            .map(|a| a.parse())
            .transpose()?
            .unwrap_or(default))
    };
    let runs = arg(0, 100_000)?;
    let seconds = arg(1, 10)?;
    let connections = arg(2, 32)? as usize;

    let db = support::sqlite().await;
    let store = db.store.clone();
    let now = Timestamp::now();
    let mut tenants = Vec::new();
    for name in ["acme", "globex", "initech", "umbrella"] {
        let t = store
            .create_tenant(
                &NewTenant {
                    name: name.into(),
                    tier: Tier::Managed,
                    max_concurrent_jobs: None,
                },
                now,
            )
            .await?;
        tenants.push(t.id);
    }
    let start = Timestamp::now().as_millis() - runs as i64 * 1000;
    let started = Instant::now();
    insert_runs(&db.url, &tenants, runs, start).await?;
    println!(
        "{runs} runs stored in SQLite in {:.1} s; {connections} connections for {seconds} s each, 2 cores, load generator in the same process",
        started.elapsed().as_secs_f64()
    );

    let owner = store
        .create_user(
            &NewUser {
                name: "owner".into(),
                role: Role::Owner,
                tenants: None,
            },
            now,
        )
        .await?;
    let token = auth::new_token();
    store
        .create_token(&owner.id, "bench", &auth::hash_token(&token), now)
        .await?;
    let tech = store
        .create_user(
            &NewUser {
                name: "tech".into(),
                role: Role::Technician,
                tenants: Some(vec![tenants[0].clone()]),
            },
            now,
        )
        .await?;
    let tech_token = auth::new_token();
    store
        .create_token(&tech.id, "bench", &auth::hash_token(&tech_token), now)
        .await?;

    let dir = tempfile::tempdir()?;
    let library = Arc::new(PluginLibrary::open(
        runtime_with(4, false),
        dir.path().into(),
    )?);
    let state = ApiState::new(ControlPlane::new(store.clone(), library), None, Vec::new());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let base = format!("http://{}", listener.local_addr()?);
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(api::serve(listener, state, async {
        let _ = stopped.await;
    }));

    let duration = Duration::from_secs(seconds);
    let health = load(&base, &["/healthz".into()], None, connections, duration).await?;
    let list = load(
        &base,
        &["/api/v1/runs".into()],
        Some(&token),
        connections,
        duration,
    )
    .await?;
    let scoped = load(
        &base,
        &["/api/v1/runs?status=succeeded".into()],
        Some(&tech_token),
        connections,
        duration,
    )
    .await?;
    // 20,000 different pages: more than the cache holds or sees again
    // within its second, so every request reads the store.
    let deep: Vec<String> = (0..20_000u64)
        .map(|i| {
            let n = (i * 7_919) % runs;
            let created = start + n as i64 * 1000;
            format!("/api/v1/runs?cursor={created:012x}{n:08x}000000000000")
        })
        .collect();
    let uncached = load(&base, &deep, Some(&token), connections, duration).await?;
    let big_run = insert_big_run(&db.url, &tenants[0], BIG_RUN_JOBS, start).await?;
    let run_path = [format!("/api/v1/runs/{big_run}")];
    let one_run = load(&base, &run_path, Some(&token), connections, duration).await?;
    // The same with a commit every millisecond beside it: any commit
    // empties the detail's cache, so the run and its jobs per status are
    // read from the store again after each one.
    let writing = tokio::spawn({
        let store = store.clone();
        async move {
            loop {
                store.probe_write(Timestamp::now()).await?;
                tokio::time::sleep(Duration::from_millis(1)).await;
            }
            #[allow(unreachable_code)]
            anyhow::Ok(())
        }
    });
    let one_run_written = load(&base, &run_path, Some(&token), connections, duration).await?;
    writing.abort();
    let reads = store_reads(
        &db.url,
        &store,
        &steward_store::RunId::from(big_run.clone()),
    )
    .await?;
    println!(
        "{:<48} {:>10} {:>8} {:>8} {:>8} {:>7}",
        "endpoint", "req/s", "p50 ms", "p99 ms", "max ms", "ratio"
    );
    for (name, r) in [
        ("GET /healthz (baseline)", &health),
        ("GET /api/v1/runs (owner, page of 50)", &list),
        ("GET /api/v1/runs?status=succeeded (technician)", &scoped),
        (
            "GET /api/v1/runs?cursor=… (20,000 pages, uncached)",
            &uncached,
        ),
        ("GET /api/v1/runs/{id} (10,000 jobs)", &one_run),
        (
            "GET /api/v1/runs/{id} (same, a commit every ms)",
            &one_run_written,
        ),
    ] {
        println!(
            "{name:<48} {:>10.0} {:>8.2} {:>8.2} {:>8.2} {:>7.2}",
            r.rps,
            r.p50,
            r.p99,
            r.max,
            r.rps / health.rps
        );
    }
    for (name, r) in [
        ("owner", &list),
        ("technician", &scoped),
        ("uncached pages", &uncached),
    ] {
        println!(
            "listing runs ({name}): {:.0} req/s (target {TARGET_RPS:.0}: {}), p99 {:.2} ms (target < {TARGET_P99_MS} ms: {})",
            r.rps,
            if r.rps >= TARGET_RPS {
                "met"
            } else {
                "NOT met"
            },
            r.p99,
            if r.p99 < TARGET_P99_MS {
                "met"
            } else {
                "NOT met"
            },
        );
    }
    for (name, r) in [
        ("served from memory", &one_run),
        ("read from the store, a commit every ms", &one_run_written),
    ] {
        println!(
            "one run of {BIG_RUN_JOBS} jobs ({name}): p99 {:.2} ms (target < {TARGET_RUN_P99_MS} ms: {})",
            r.p99,
            if r.p99 < TARGET_RUN_P99_MS {
                "met"
            } else {
                "NOT met"
            },
        );
    }

    println!(
        "reading a run of {BIG_RUN_JOBS} jobs from the store (one at a time, {} reads each): \
         the run and its kept counts p50 {:.3} ms, p99 {:.3} ms; counting its jobs \
         (the previous way) p50 {:.3} ms, p99 {:.3} ms; ratio of p50s {:.1}x",
        STORE_READS,
        reads.0.0,
        reads.0.1,
        reads.1.0,
        reads.1.1,
        reads.1.0 / reads.0.0
    );

    // The console: 10,000 devices across the tenants, two open findings
    // each, and a signed-in owner.
    let started = Instant::now();
    insert_devices(&db.url, &tenants, DEVICES, now.as_millis()).await?;
    println!(
        "{DEVICES} devices and {} open findings stored in {:.1} s",
        DEVICES * 2,
        started.elapsed().as_secs_f64()
    );
    let owner_token = store
        .token_user(&auth::hash_token(&token))
        .await?
        .expect("the owner's token")
        .0;
    let secret = "sts_bench_session";
    store
        .create_console_session(&owner_token.id, &auth::hash_token(secret), "csrf", now)
        .await?;
    let cookie = format!("Cookie: steward_session={secret}");
    let pages = [
        (
            "console /fleet (10,000 devices, page of 200)",
            "/fleet".to_owned(),
        ),
        (
            "console /fleet?tenant= (2,500 devices, charts)",
            format!("/fleet?tenant={}", tenants[0]),
        ),
        (
            "console /runs (100,000 runs, page of 50)",
            "/runs".to_owned(),
        ),
    ];
    let mut measured = Vec::new();
    for (name, path) in &pages {
        let r = load_with(
            &base,
            std::slice::from_ref(path),
            Some(&cookie),
            1,
            duration,
        )
        .await?;
        measured.push((*name, r));
    }
    println!(
        "{:<48} {:>10} {:>8} {:>8} {:>8} {:>9}",
        "console page (one connection)", "pages/s", "p50 ms", "p99 ms", "max ms", "KiB"
    );
    for (name, r) in &measured {
        println!(
            "{name:<48} {:>10.0} {:>8.2} {:>8.2} {:>8.2} {:>9.1}",
            r.rps,
            r.p50,
            r.p99,
            r.max,
            r.bytes as f64 / 1024.0
        );
    }
    for (name, r) in &measured {
        println!(
            "{name}: p99 {:.2} ms (target < {TARGET_PAGE_P99_MS} ms: {}), {:.1} KiB (target < {} KiB: {})",
            r.p99,
            if r.p99 < TARGET_PAGE_P99_MS {
                "met"
            } else {
                "NOT met"
            },
            r.bytes as f64 / 1024.0,
            TARGET_PAGE_BYTES / 1024,
            if r.bytes < TARGET_PAGE_BYTES {
                "met"
            } else {
                "NOT met"
            },
        );
    }
    let _ = stop.send(());
    server.await??;
    Ok(())
}

/// Reads of [`store_reads`] per way.
const STORE_READS: usize = 2_000;

/// p50 and p99 in ms of reading the run `id` with its jobs per status as
/// the API does (`Store::run` and `Store::job_counts_of_run`, the counts
/// the database keeps), and of counting its jobs per status with `GROUP
/// BY` over its jobs on a pool connection (how it was read before).
async fn store_reads(
    url: &str,
    store: &steward_store::Store,
    id: &steward_store::RunId,
) -> anyhow::Result<((f64, f64), (f64, f64))> {
    let pct = |mut v: Vec<f64>| {
        v.sort_by(f64::total_cmp);
        let at = |p: f64| v[((v.len() as f64 * p) as usize).min(v.len() - 1)];
        (at(0.5), at(0.99))
    };
    let mut kept = Vec::with_capacity(STORE_READS);
    for _ in 0..STORE_READS {
        let t = Instant::now();
        store.run(id).await?.expect("the big run");
        let counts = store.job_counts_of_run(id).await?;
        anyhow::ensure!(counts.values().sum::<u64>() == BIG_RUN_JOBS);
        kept.push(t.elapsed().as_secs_f64() * 1e3);
    }
    let pool = sqlx::AnyPool::connect(url).await?;
    let mut counted = Vec::with_capacity(STORE_READS);
    for _ in 0..STORE_READS {
        let t = Instant::now();
        let rows: Vec<(String, i64)> =
            sqlx::query_as("SELECT status, COUNT(*) FROM jobs WHERE run_id = $1 GROUP BY status")
                .bind(id.as_str())
                .fetch_all(&pool)
                .await?;
        anyhow::ensure!(rows.iter().map(|r| r.1).sum::<i64>() as u64 == BIG_RUN_JOBS);
        counted.push(t.elapsed().as_secs_f64() * 1e3);
    }
    Ok((pct(kept), pct(counted)))
}

/// `count` devices spread over `tenants`, each with an open warning and an
/// open info finding (`patching`), inserted directly like [`insert_runs`].
async fn insert_devices(
    url: &str,
    tenants: &[steward_store::TenantId],
    count: u64,
    now: i64,
) -> anyhow::Result<()> {
    let mut conn = sqlx::AnyConnection::connect(url).await?;
    let mut i = 0u64;
    while i < count {
        let mut tx = conn.begin().await?;
        let end = (i + 2_000).min(count);
        for n in i..end {
            let id = format!("{now:012x}{n:08x}0000000000aa");
            let tenant = tenants[n as usize % tenants.len()].as_str();
            sqlx::query(
                "INSERT INTO devices (id, tenant_id, name, tags, created_at, last_seen_at) \
                 VALUES ($1, $2, $3, $4, $5, $5)",
            )
            .bind(&id)
            .bind(tenant)
            .bind(format!("ws-{n:05}"))
            .bind(r#"["office"]"#)
            .bind(now)
            .execute(&mut *tx)
            .await?;
            for (k, key, severity) in [
                (0, "security-update:openssl", "warning"),
                (1, "update:curl", "info"),
            ] {
                sqlx::query(
                    "INSERT INTO findings (id, tenant_id, device_id, subject, plugin, finding_key, \
                     severity, summary, first_seen_at, last_seen_at, last_job_id) \
                     VALUES ($1, $2, $3, $3, 'patching', $4, $5, 'Update pending', $6, $6, 'bench')",
                )
                .bind(format!("{id}{k}"))
                .bind(tenant)
                .bind(&id)
                .bind(key)
                .bind(severity)
                .bind(now - (n as i64 % 100) * 3_600_000)
                .execute(&mut *tx)
                .await?;
            }
        }
        tx.commit().await?;
        i = end;
    }
    Ok(())
}

/// One running run of `jobs` jobs in every state, inserted directly like
/// [`insert_runs`]; returns its id.
async fn insert_big_run(
    url: &str,
    tenant: &steward_store::TenantId,
    jobs: u64,
    start: i64,
) -> anyhow::Result<String> {
    let mut conn = sqlx::AnyConnection::connect(url).await?;
    let mut tx = conn.begin().await?;
    let run = format!("{:012x}{:08x}000000000001", start + 1, 0);
    sqlx::query(
        "INSERT INTO runs (id, tenant_id, status, created_at) VALUES ($1, $2, 'running', $3)",
    )
    .bind(&run)
    .bind(tenant.as_str())
    .bind(start)
    .execute(&mut *tx)
    .await?;
    for n in 0..jobs {
        let status = [
            "succeeded",
            "succeeded",
            "failed",
            "queued",
            "awaiting-approval",
        ][n as usize % 5];
        sqlx::query(
            "INSERT INTO jobs (id, run_id, tenant_id, device_id, tier_rank, plugin, mode, status, \
             due_at, max_attempts, timeout_ms, created_at) \
             VALUES ($1, $2, $3, $4, 1, 'patching', 'check', $5, $6, 3, 60000, $6)",
        )
        .bind(format!("{:012x}{n:08x}000000000002", start))
        .bind(&run)
        .bind(tenant.as_str())
        .bind(format!("device-{n}"))
        .bind(status)
        .bind(start)
        .execute(&mut *tx)
        .await?;
    }
    tx.commit().await?;
    Ok(run)
}

/// Inserts `count` finished runs spread over `tenants`, one transaction
/// per 5,000 (the bench's own connection: the store has no bulk insert of
/// runs, and making 100,000 runs one by one would take minutes).
async fn insert_runs(
    url: &str,
    tenants: &[steward_store::TenantId],
    count: u64,
    start: i64,
) -> anyhow::Result<()> {
    let mut conn = sqlx::AnyConnection::connect(url).await?;
    let mut i = 0u64;
    while i < count {
        let mut tx = conn.begin().await?;
        let end = (i + 5_000).min(count);
        for n in i..end {
            let created = start + n as i64 * 1000;
            let status = ["succeeded", "succeeded", "succeeded", "failed"][n as usize % 4];
            sqlx::query(
                "INSERT INTO runs (id, tenant_id, status, created_at, finished_at) \
                 VALUES ($1, $2, $3, $4, $5)",
            )
            .bind(format!("{created:012x}{n:08x}000000000000"))
            .bind(tenants[n as usize % tenants.len()].as_str())
            .bind(status)
            .bind(created)
            .bind(created + 30_000)
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await?;
        i = end;
    }
    Ok(())
}

struct Load {
    rps: f64,
    p50: f64,
    p99: f64,
    max: f64,
    /// The largest response body, bytes.
    bytes: usize,
}

/// `connections` clients, each on its own keep-alive connection, sending
/// `GET url` back to back for `duration`; every response must be 200.
///
/// The generator is a minimal HTTP/1.1 client (write the request, read the
/// headers, read `Content-Length` bytes) so that it takes as little of the
/// two cores from the server as it can; a general-purpose client costs
/// more per request than the `/healthz` handler does.
async fn load(
    base: &str,
    paths: &[String],
    token: Option<&str>,
    connections: usize,
    duration: Duration,
) -> anyhow::Result<Load> {
    let header = token.map(|t| format!("Authorization: Bearer {t}"));
    load_with(base, paths, header.as_deref(), connections, duration).await
}

/// [`load`] sending `header` (a whole header line) with each request.
async fn load_with(
    base: &str,
    paths: &[String],
    header: Option<&str>,
    connections: usize,
    duration: Duration,
) -> anyhow::Result<Load> {
    let addr = base.strip_prefix("http://").expect("an http URL");
    let requests: Vec<Vec<u8>> = paths
        .iter()
        .map(|path| {
            let mut request = format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\n");
            if let Some(h) = header {
                request.push_str(h);
                request.push_str("\r\n");
            }
            request.push_str("\r\n");
            request.into_bytes()
        })
        .collect();
    let requests = Arc::new(requests);
    let started = Instant::now();
    let deadline = started + duration;
    let mut tasks = Vec::new();
    for c in 0..connections {
        let requests = requests.clone();
        let addr = addr.to_owned();
        tasks.push(tokio::spawn(async move {
            let stream = tokio::net::TcpStream::connect(&addr).await?;
            stream.set_nodelay(true)?;
            let mut conn = tokio::io::BufReader::new(stream);
            // Each connection walks the paths from its own offset.
            let mut next = c * requests.len() / connections.max(1);
            let mut latencies = Vec::new();
            let mut largest = 0;
            while Instant::now() < deadline {
                let t = Instant::now();
                largest = largest.max(get(&mut conn, &requests[next % requests.len()]).await?);
                latencies.push(t.elapsed());
                next += 1;
            }
            anyhow::Ok((latencies, largest))
        }));
    }
    let mut all = Vec::new();
    let mut bytes = 0;
    for t in tasks {
        let (latencies, largest) = t.await??;
        all.extend(latencies);
        bytes = bytes.max(largest);
    }
    let elapsed = started.elapsed().as_secs_f64();
    all.sort();
    let pct =
        |p: f64| all[((all.len() as f64 * p) as usize).min(all.len() - 1)].as_secs_f64() * 1e3;
    Ok(Load {
        rps: all.len() as f64 / elapsed,
        p50: pct(0.50),
        p99: pct(0.99),
        max: pct(1.0),
        bytes,
    })
}

/// One request and its whole response on a keep-alive connection; the
/// body's length.
async fn get(
    conn: &mut tokio::io::BufReader<tokio::net::TcpStream>,
    request: &[u8],
) -> anyhow::Result<usize> {
    use tokio::io::{AsyncBufReadExt as _, AsyncReadExt as _, AsyncWriteExt as _};
    conn.get_mut().write_all(request).await?;
    let mut line = String::new();
    conn.read_line(&mut line).await?;
    anyhow::ensure!(
        line.starts_with("HTTP/1.1 200"),
        "unexpected response: {line}"
    );
    let mut length = None;
    loop {
        line.clear();
        conn.read_line(&mut line).await?;
        let header = line.trim_end();
        if header.is_empty() {
            break;
        }
        if let Some((name, value)) = header.split_once(':')
            && name.eq_ignore_ascii_case("content-length")
        {
            length = Some(value.trim().parse::<usize>()?);
        }
    }
    let length = length.ok_or_else(|| anyhow::anyhow!("no Content-Length"))?;
    let mut body = vec![0; length];
    conn.read_exact(&mut body).await?;
    Ok(length)
}
