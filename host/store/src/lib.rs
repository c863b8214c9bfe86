//! The control plane's store: tenants, devices, playbooks, schedules, runs,
//! the job queue and what jobs report, in SQLite or PostgreSQL.
//!
//! # One code path, two databases
//!
//! Everything goes through sqlx's Any driver ([`sqlx::AnyPool`]), so the
//! same statements run on both (on SQLite, the API's hottest reads run the
//! same statements on plain read connections instead: `read.rs`). What
//! makes that work:
//!
//! - **Portable schema** (`migrations/`, embedded at compile time): ids are
//!   TEXT made by the application (`ids.rs`), times are BIGINT unix
//!   milliseconds ([`Timestamp`]), flags are BIGINT 0/1 (the Any driver
//!   cannot read SQLite BOOLEAN columns), JSON is TEXT. Partial indexes,
//!   CHECK constraints, `ON CONFLICT`, `RETURNING`, `UPDATE … FROM`, CTEs
//!   with column lists and `$n` placeholders mean the same on both (SQLite
//!   reads `$3` as "the third argument", repeated or not). Statements built
//!   at run time (multi-row `VALUES`, `IN` lists) use plain `?` on SQLite
//!   instead (`sql.rs` says why).
//! - **Where the dialects differ** the code branches on [`Backend`]:
//!   claiming (and the sweeps that pick rows to change) add `FOR UPDATE
//!   SKIP LOCKED` on PostgreSQL; claiming takes per-tenant and per-plugin
//!   advisory locks on PostgreSQL for the concurrency limits; and a
//!   PostgreSQL write transaction starts by pinning the planner to index
//!   plans (`POSTGRES_BEGIN`: queue tables change faster than their
//!   statistics). SQLite needs none of it: it has one writer at a time,
//!   and every write transaction starts with `BEGIN IMMEDIATE` (taking the
//!   write lock up front, so a transaction never fails half-way trying to
//!   upgrade a read lock) behind an in-process mutex (so this process's
//!   writers queue in order instead of polling the busy handler; other
//!   processes sharing the file wait in the busy handler).
//! - **SQLite** is one file in WAL mode with `synchronous = NORMAL`
//!   (durable across a process crash; the last transactions may be lost on
//!   power loss, never corrupted), foreign keys on and a busy timeout,
//!   created with its directory on first start.
//!
//! # The job queue
//!
//! A run (one firing of a playbook) fans out into jobs. A job is `queued`
//! until a worker [claims](Store::claim) it, which leases it to the worker
//! (`lease_owner`, `lease_until`) and counts an attempt. Claim order is the
//! tenant's tier, then due time; a job whose device is marked unreachable is
//! skipped and stays queued (see *Offline devices*). One claim takes up to
//! `n` jobs in one transaction (with no concurrency limit configured, in
//! one `UPDATE … WHERE id IN (SELECT … LIMIT n) RETURNING …`);
//! [`enqueue_jobs`](Store::enqueue_jobs), [`complete`](Store::complete) and
//! the sweeps work on batches with multi-row statements, so the cost per
//! job is a few index updates, not a round trip. The `jobs` table has no
//! foreign keys, for speed; the schema explains what keeps its references
//! valid.
//!
//! **Nobody else runs a leased job.** On PostgreSQL the claim selects with
//! `FOR UPDATE SKIP LOCKED`: a row another claimer is taking is skipped,
//! and a row another claimer took since this statement's snapshot is
//! re-checked (`status = 'queued'` no longer holds) and dropped. On SQLite
//! the claim is one write transaction. Every later write about a leased
//! job (heartbeat, completion, failure, apply marker) is a conditional
//! update on `lease_owner = worker AND attempts = attempt` (a CHECK
//! constraint makes `lease_owner` set exactly while `status = 'leased'`):
//! the attempt number is a fencing token, so a worker whose lease
//! was reclaimed cannot complete, fail or renew the job, even if the same
//! worker id claims the job again later.
//!
//! **Leases and timeouts.** A worker renews its leases with
//! [`heartbeat`](Store::heartbeat); a renewal never reaches past the job's
//! start plus its timeout plus one lease, so a hung worker that keeps
//! heartbeating still loses the job. [`reclaim_expired`](Store::reclaim_expired)
//! puts jobs whose lease ran out back in the queue (the attempt counts, and
//! the same backoff as a transient failure applies) or, out of attempts,
//! ends them as `timed-out`. The executor's side of the contract: it stops
//! an attempt at the job's timeout (the runtime's wall-clock deadline) and
//! whenever a heartbeat reports the lease lost or cannot reach the store
//! before the lease runs out, so by the time a lease can be reclaimed its
//! old holder has stopped.
//!
//! **Retries.** [`fail`](Store::fail) with [`FailureKind::Transient`] or
//! [`FailureKind::TimedOut`] queues the job again after
//! `base · 2^(attempt−1)`, capped ([`Backoff`]), while attempts remain. A
//! permanent failure, and a plugin that *reports* a failed remediation
//! ([`Outcome::Failed`] in a completion), end the job at once: they are
//! not retried blindly.
//!
//! **Concurrency limits.** A tenant or a plugin may have
//! `max_concurrent_jobs`: at most that many of its jobs leased at once.
//! Counting is kept cheap by a partial index over leased jobs only
//! (`jobs_leased`): the count costs as much as the jobs in flight, never
//! the queue's length, and only limited tenants and plugins are counted. A claim first drops saturated tenants and
//! plugins from its candidates (so they cannot block the head of the
//! queue), then takes candidates while each has room; when a limit fills
//! within the batch and leaves it short, it fetches more candidates without
//! the filled tenants and plugins (at most four rounds). Exactness: on
//! SQLite the whole claim is one writer. On PostgreSQL, after locking its
//! candidates the claim takes a transaction-scoped advisory lock per
//! limited tenant and plugin among them and counts those under the lock;
//! the lock is held until commit, so the next claimer for the same key
//! counts after this one's leases are visible. The first round waits for
//! its locks in key order, so claimers cannot deadlock; later rounds only
//! try (a busy key gets no room in this claim). Unlimited tenants and
//! plugins take no lock. The concurrency test fails without these locks.
//!
//! **Offline devices.** A device marked unreachable
//! ([`set_device_reachable`](Store::set_device_reachable)) keeps its jobs
//! queued: the claim joins the device and skips them. When it comes back
//! they are claimed in their normal order. A job with an expiry that has
//! not started by then is ended by [`expire_due`](Store::expire_due) as
//! `expired` with a reason naming the unreachable device; jobs are never
//! dropped. A claim never takes a job past its expiry, even before the
//! sweep has run.
//!
//! **Runs end** when their last job ends: after each transaction that ends
//! jobs, the store re-checks those jobs' runs in a separate statement. Two
//! processes ending a run's last two jobs at once both re-check after their
//! own commit, and the later check sees both, so the run is finished
//! exactly once; a crash between commit and re-check is repaired by
//! [`finish_settled_runs`](Store::finish_settled_runs), which the sweeper
//! calls.
//!
//! # A schedule fires once
//!
//! [`create_run_for_firing`](Store::create_run_for_firing) inserts the run
//! with `(schedule_id, fire_at)` under a UNIQUE constraint with `ON
//! CONFLICT DO NOTHING`, in the same transaction as its jobs and the
//! schedule's `last_fired_at`/`next_fire_at`. Two `steward` processes firing
//! the same schedule race on the unique index: PostgreSQL makes the second
//! insert wait for the first transaction and then do nothing (SQLite
//! serialises them outright), so exactly one gets a run id and the other
//! gets `None`. Because the jobs are in the same transaction, a crash
//! cannot leave a fired run without its jobs, and a retried firing after a
//! crash before commit fires normally.
//!
//! # No mutating change is applied twice
//!
//! A queue cannot make "run exactly once" true across `kill -9`: a worker
//! can die after a plugin changed a device and before the completion
//! committed, and then the job runs again. What holds instead, and why:
//!
//! 1. **A completion is recorded once.** Completions, failures and
//!    heartbeats are fenced by `(lease_owner, attempts)` (so by
//!    `status = 'leased'`) in the same statement that writes them, and the
//!    job's findings, changes, logs and follow-up jobs are written in that
//!    transaction only if the fenced update matched. A stale worker (lease
//!    reclaimed, job re-claimed, or the job already completed) gets its
//!    completion refused, so no change is ever *recorded* twice and no
//!    follow-up step is enqueued twice.
//! 2. **Two workers never apply at once.** A lease is only reclaimed after
//!    `lease_until`, which its holder must not outlive (see *Leases and
//!    timeouts*), so a second attempt only starts after the first has
//!    stopped.
//! 3. **A re-run knows it is a re-run.** Before its first mutating call in
//!    apply mode the executor calls [`mark_applying`](Store::mark_applying),
//!    which records the attempt in `applying_attempt` (fenced like a
//!    completion). When a later attempt is claimed, [`Job::interrupted_apply`]
//!    says an earlier one may have changed the device without reporting.
//!    Such a job must not replay a recorded plan: the executor runs the
//!    remediation again from a fresh look at the device, in plan mode first.
//!    Steps that need approval go back to an admin when the fresh plan
//!    differs from the approved one.
//! 4. **Providers converge.** Every mutating provider call describes a
//!    target state, not a delta, and is a no-op when the device is already
//!    there: upgrading to version X when X is installed, unlocking an
//!    unlocked account, quarantining a file already quarantined, opening a
//!    ticket with a dedupe key that exists (`tickets.dedupe_key`). So a
//!    change the dead attempt did apply is found applied and not made
//!    again, and the re-run's changes list only what it changed itself.
//!
//! Together: each change is applied by at most one live attempt at a time,
//! an interrupted attempt's changes are detected by the next attempt's
//! fresh plan rather than re-applied, and the record of changes holds each
//! accepted attempt once.

mod admin;
mod agents;
mod console;
mod durable;
mod error;
pub use steward_contract::failpoint;
mod ids;
mod inventory;
mod migrate;
mod model;
mod queue;
mod read;
mod reports;
mod results;
mod runs;
mod sql;
mod trust;
mod wake;

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use sqlx::any::Any;
use sqlx::{AnyConnection, AnyPool, Transaction};
use tokio::sync::{Mutex, OwnedMutexGuard};

pub use admin::{
    ApiToken, AuditFilter, NewUser, RunFilter, RunLog, RunPageJson, Scope, StoreMetrics,
    StoredAudit, StoredWebhook, User,
};
pub use agents::{AgentRecord, BAD_ENROLLMENT_TOKEN, Enrollment, NewAgent, NewEnrollment};
pub use console::{ConsoleSession, FleetFilter, FleetRow, FleetSort, OpenFindings};
pub use durable::{
    INBOX_HOLD, InboxEntry, MAX_OUTBOX_HOLD, MAX_TICKETS_PER_JOB, NewTicket, OutboxEvent,
    PluginSource, PluginVersion, StoredTicket, TierSla,
};
pub use error::{Result, StoreError};
pub use ids::new_id;
pub use ids::{DeviceId, JobId, PlaybookId, RunId, ScheduleId, SiteId, TenantId, Timestamp};
pub use model::{
    AuditEvent, Change, ChangeOutcome, Completion, Device, DeviceRef, FailOutcome, Failure,
    FailureKind, Finding, Firing, Job, JobMode, JobStatus, NewChange, NewDevice, NewFinding,
    NewJob, NewLog, NewPlaybook, NewPluginVersion, NewSchedule, NewTenant, Outcome, Pin, Playbook,
    Reclaimed, Role, Run, RunStatus, Schedule, Severity, Site, Tenant, Tier,
};
pub use queue::MAX_CLAIM;
pub use reports::TenantChange;
pub use trust::{TrustHow, TrustedKey};

pub use steward_sqlkit::{Backend, UnsupportedUrl};

/// How long a job waits before its next attempt after a transient failure
/// or a reclaimed lease: `base · 2^(attempt−1)`, at most `cap`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Backoff {
    /// The wait after the first failed attempt.
    pub base: Duration,
    /// The longest wait.
    pub cap: Duration,
}

impl Default for Backoff {
    /// 10 seconds, doubling, at most one hour.
    fn default() -> Self {
        Self {
            base: Duration::from_secs(10),
            cap: Duration::from_secs(3600),
        }
    }
}

impl Backoff {
    /// The wait after attempt number `attempt` (1-based) failed.
    pub fn delay(&self, attempt: u32) -> Duration {
        let doublings = attempt.saturating_sub(1).min(31);
        self.base
            .checked_mul(1u32 << doublings)
            .map_or(self.cap, |d| d.min(self.cap))
    }
}

/// How to open a [`Store`].
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct StoreOptions {
    /// Connections in the pool; default 4 for SQLite (readers run beside
    /// the one writer in WAL mode), 10 for PostgreSQL.
    pub max_connections: Option<u32>,
    /// Retry backoff.
    pub backoff: Backoff,
}

/// The control plane's store. Cheap to clone: clones share the pool.
#[derive(Debug, Clone)]
pub struct Store {
    pool: AnyPool,
    backend: Backend,
    /// Serialises this process's SQLite write transactions (see the module
    /// doc); unused on PostgreSQL.
    write_lock: Arc<Mutex<()>>,
    backoff: Backoff,
    /// Bumped after each commit that created, changed or finished runs or
    /// added jobs to them (see [`Store::runs_generation`]).
    runs_generation: Arc<AtomicU64>,
    /// Woken with every bump of `runs_generation`.
    runs_notify: Arc<tokio::sync::Notify>,
    /// Bumped after every write transaction's commit (see
    /// [`Store::writes_generation`]).
    writes_generation: Arc<AtomicU64>,
    /// The last [`writable`](Store::writable) probe: when, and its result.
    probe: Arc<tokio::sync::Mutex<Option<Probe>>>,
    /// Wakes executors when jobs become claimable (see [`wake`]).
    jobs_wake: Arc<wake::JobsWake>,
    /// SQLite only: plain read connections for the API's hottest reads,
    /// run on the caller's thread (see `read.rs`).
    readers: Option<Arc<read::Readers>>,
}

/// A readiness probe's time and result.
type Probe = (std::time::Instant, std::result::Result<(), String>);

/// A write transaction: `BEGIN IMMEDIATE` behind the process's write mutex
/// on SQLite, [`POSTGRES_BEGIN`] (read committed, plans pinned to indexes)
/// on PostgreSQL. Dropping it without [`commit`](WriteTx::commit) rolls
/// back.
pub(crate) struct WriteTx {
    // Field order matters: the transaction is rolled back before the
    // mutex is released.
    tx: Transaction<'static, Any>,
    _guard: Option<OwnedMutexGuard<()>>,
    runs_generation: Arc<AtomicU64>,
    runs_notify: Arc<tokio::sync::Notify>,
    runs_changed: bool,
    writes_generation: Arc<AtomicU64>,
    jobs_wake: Arc<wake::JobsWake>,
    jobs_ready: bool,
    postgres: bool,
}

impl WriteTx {
    pub(crate) fn conn(&mut self) -> &mut AnyConnection {
        &mut self.tx
    }

    pub(crate) async fn commit(mut self) -> Result<()> {
        if self.jobs_ready && self.postgres {
            // Delivered to the listening replicas if, and when, this commits.
            sqlx::query("SELECT pg_notify($1, '')")
                .bind(wake::JOBS_CHANNEL)
                .execute(&mut *self.tx)
                .await?;
        }
        self.tx.commit().await?;
        self.writes_generation.fetch_add(1, Ordering::Release);
        if self.runs_changed {
            self.runs_generation.fetch_add(1, Ordering::Release);
            self.runs_notify.notify_waiters();
        }
        if self.jobs_ready {
            self.jobs_wake.wake();
        }
        Ok(())
    }

    /// Rolls back now, releasing row locks before the next statement on
    /// another connection (a dropped transaction rolls back only when its
    /// connection is next used).
    pub(crate) async fn rollback(self) -> Result<()> {
        self.tx.rollback().await?;
        Ok(())
    }

    /// Says this transaction creates, changes or finishes runs or adds jobs
    /// to them: its commit bumps [`Store::runs_generation`].
    pub(crate) fn mark_runs_changed(&mut self) {
        self.runs_changed = true;
    }

    /// Says this transaction makes jobs claimable (new or re-queued jobs, a
    /// device now held by this process): its commit wakes the executors
    /// (see [`wake`]).
    pub(crate) fn mark_jobs_ready(&mut self) {
        self.jobs_ready = true;
    }
}

/// Per-connection SQLite settings. `journal_mode` is persistent (a no-op
/// once the file is in WAL mode); the others hold per connection. A 64 MiB
/// page cache and reads through a 256 MiB memory map keep hot queue pages
/// out of `pread` system calls (the queue alone went from about 7,400 to
/// 8,800 jobs/s in `bench --bin jobs`).
const SQLITE_PRAGMAS: &str = "PRAGMA busy_timeout = 10000; \
    PRAGMA journal_mode = WAL; \
    PRAGMA synchronous = NORMAL; \
    PRAGMA foreign_keys = ON; \
    PRAGMA cache_size = -65536; \
    PRAGMA mmap_size = 268435456; \
    PRAGMA temp_store = MEMORY;";

/// How a PostgreSQL write transaction starts (one round trip: the simple
/// protocol takes several statements).
///
/// The settings steer the transaction to plans that find jobs by key and
/// walk the queue index in order. The queue grows and drains faster than
/// autovacuum refreshes statistics; with stale ones PostgreSQL estimates a
/// handful of rows and sorts the whole queue, bitmap-scans it, hash-joins a
/// batch against a partial index full of dead entries, or scans a run's
/// jobs to see whether it has ended: tens of milliseconds per batch
/// instead of one, as measured. A disabled plan kind is only priced out, so
/// a table without a usable index (the few tenants with limits) is still
/// scanned, but at a price that would trigger JIT compilation (100 ms a
/// statement), so JIT is off too. `SET LOCAL` ends with the transaction.
/// SQLite's planner uses the indexes without statistics.
const POSTGRES_BEGIN: &str = "BEGIN; SET LOCAL enable_seqscan = off; \
    SET LOCAL enable_bitmapscan = off; SET LOCAL enable_sort = off; \
    SET LOCAL enable_hashjoin = off; SET LOCAL enable_mergejoin = off; SET LOCAL jit = off";

impl Store {
    /// Opens the database at `url` with default options, creating a SQLite
    /// file (and its directory) if missing, and applies pending migrations.
    ///
    /// `url` is `sqlite://PATH` (relative or, with a third slash, absolute)
    /// or `postgres://USER@HOST:PORT/DB`.
    ///
    /// # Errors
    ///
    /// An unsupported scheme, a database that cannot be opened, or a failed
    /// migration.
    pub async fn open(url: &str) -> Result<Self> {
        Self::open_with(url, StoreOptions::default()).await
    }

    /// [`open`](Store::open) with options.
    ///
    /// # Errors
    ///
    /// As [`open`](Store::open).
    #[tracing::instrument(skip_all, fields(backend))]
    pub async fn open_with(url: &str, options: StoreOptions) -> Result<Self> {
        sqlx::any::install_default_drivers();
        let backend = Backend::from_url(url)?;
        tracing::Span::current().record("backend", backend.name());
        let pool = steward_sqlkit::open_pool(
            url,
            backend,
            "steward.db",
            SQLITE_PRAGMAS,
            options.max_connections.unwrap_or(match backend {
                Backend::Sqlite => 4,
                Backend::Postgres => 10,
            }),
            migrate::source(backend),
        )
        .await
        .map_err(|e| match e {
            steward_sqlkit::OpenError::Invalid(message) => {
                StoreError::invalid("database-url", message)
            }
            steward_sqlkit::OpenError::Connect(source) => StoreError::Open {
                backend: backend.name(),
                source,
            },
            steward_sqlkit::OpenError::Migrate(e) => StoreError::Migrate(e),
        })?;
        tracing::debug!("store open");
        Ok(Self {
            pool,
            backend,
            write_lock: Arc::new(Mutex::new(())),
            backoff: options.backoff,
            runs_generation: Arc::new(AtomicU64::new(0)),
            runs_notify: Arc::default(),
            writes_generation: Arc::new(AtomicU64::new(0)),
            probe: Arc::default(),
            jobs_wake: wake::JobsWake::new((backend == Backend::Postgres).then(|| url.to_string())),
            readers: (backend == Backend::Sqlite)
                .then(|| Arc::new(read::Readers::new(steward_sqlkit::sqlite_path(url)))),
        })
    }

    /// Whether the database takes a write now, for readiness: a probe
    /// write ([`probe_write`](Store::probe_write)), at most one a second
    /// however often it is asked (callers within a second of the last
    /// probe share its answer), so an unauthenticated readiness check
    /// cannot be turned into a stream of writes. `Err` says why, for logs.
    pub async fn writable(&self) -> std::result::Result<(), String> {
        const FRESH: std::time::Duration = std::time::Duration::from_secs(1);
        let mut last = self.probe.lock().await;
        if let Some((at, result)) = last.as_ref()
            && at.elapsed() < FRESH
        {
            return result.clone();
        }
        let result = self
            .probe_write(ids::Timestamp::now())
            .await
            .map_err(|e| error_chain(&e));
        *last = Some((std::time::Instant::now(), result.clone()));
        result
    }

    /// Which database this store talks to.
    pub fn backend(&self) -> Backend {
        self.backend
    }

    /// Closes the pool, waiting for connections in use to come back.
    pub async fn close(&self) {
        self.pool.close().await;
    }

    /// Starts a write transaction (see [`WriteTx`]).
    pub(crate) async fn write(&self) -> Result<WriteTx> {
        match self.backend {
            Backend::Sqlite => {
                let guard = self.write_lock.clone().lock_owned().await;
                let tx = self.pool.begin_with("BEGIN IMMEDIATE").await?;
                Ok(WriteTx {
                    tx,
                    _guard: Some(guard),
                    runs_generation: self.runs_generation.clone(),
                    runs_notify: self.runs_notify.clone(),
                    runs_changed: false,
                    writes_generation: self.writes_generation.clone(),
                    jobs_wake: self.jobs_wake.clone(),
                    jobs_ready: false,
                    postgres: false,
                })
            }
            Backend::Postgres => Ok(WriteTx {
                tx: self.pool.begin_with(POSTGRES_BEGIN).await?,
                _guard: None,
                runs_generation: self.runs_generation.clone(),
                runs_notify: self.runs_notify.clone(),
                runs_changed: false,
                writes_generation: self.writes_generation.clone(),
                jobs_wake: self.jobs_wake.clone(),
                jobs_ready: false,
                postgres: true,
            }),
        }
    }

    /// A counter this store (and its clones) bumps after every commit that
    /// creates, changes or finishes runs or adds jobs to them: a reader
    /// that cached something about runs at one value knows it is stale at
    /// another. Changes made by other processes sharing the database do not
    /// move it.
    pub fn runs_generation(&self) -> u64 {
        self.runs_generation.load(Ordering::Acquire)
    }

    /// A counter this store (and its clones) bumps after every write
    /// transaction's commit: anything read from the store at one value
    /// (a run's jobs per state) may be stale at another. Changes made by
    /// other processes sharing the database do not move it.
    pub fn writes_generation(&self) -> u64 {
        self.writes_generation.load(Ordering::Acquire)
    }

    /// Resolves at the next bump of [`runs_generation`](Self::runs_generation)
    /// (a commit of this process that changed runs), so a follower of a
    /// run wakes on a change instead of polling.
    pub async fn runs_changed(&self) {
        self.runs_notify.notified().await;
    }

    /// Resolves when jobs may have become claimable: a commit of this
    /// process that added, approved or re-queued jobs or took a device's
    /// agent connection, or on PostgreSQL such a commit of any process
    /// (`LISTEN steward_jobs`). An executor waits on this beside its idle
    /// poll. A wake with no waiter is kept for the next one.
    pub async fn jobs_ready(&self) {
        self.jobs_wake.woken().await;
    }

    /// The pool, for reads outside a transaction.
    pub(crate) fn pool(&self) -> &AnyPool {
        &self.pool
    }

    /// SQLite's plain read connections; `None` on PostgreSQL.
    pub(crate) fn readers(&self) -> Option<&read::Readers> {
        self.readers.as_deref()
    }
}

/// `err` and its sources, joined by `: `.
fn error_chain(err: &dyn std::error::Error) -> String {
    let mut out = err.to_string();
    let mut source = err.source();
    while let Some(e) = source {
        out.push_str(": ");
        out.push_str(&e.to_string());
        source = e.source();
    }
    out
}

/// Checks a `sqlite:` URL, asks for the file to be created when missing
/// and creates its directory (see [`steward_sqlkit::prepare_sqlite_url`]).
#[cfg(test)]
fn prepare_sqlite_url(url: &str) -> Result<String> {
    steward_sqlkit::prepare_sqlite_url(url, "steward.db")
        .map_err(|e| StoreError::invalid("database-url", e))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backend_comes_from_the_url_scheme() {
        assert_eq!(Backend::from_url("sqlite://x.db").unwrap(), Backend::Sqlite);
        assert_eq!(
            Backend::from_url("postgresql://u@h/db").unwrap(),
            Backend::Postgres
        );
        let err = Backend::from_url("mysql://root:secret@h/db").unwrap_err();
        assert_eq!(
            err.to_string(),
            "unsupported database URL scheme `mysql`: expected `sqlite://PATH` or `postgres://HOST/DB`"
        );
    }

    #[test]
    fn backoff_doubles_up_to_the_cap() {
        let b = Backoff {
            base: Duration::from_secs(10),
            cap: Duration::from_secs(60),
        };
        assert_eq!(b.delay(1), Duration::from_secs(10));
        assert_eq!(b.delay(2), Duration::from_secs(20));
        assert_eq!(b.delay(3), Duration::from_secs(40));
        assert_eq!(b.delay(4), Duration::from_secs(60));
        assert_eq!(b.delay(u32::MAX), Duration::from_secs(60));
    }

    #[test]
    fn sqlite_urls_create_the_file_unless_a_mode_is_given() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sub/steward.db");
        let url = format!("sqlite://{}", path.display());
        assert_eq!(prepare_sqlite_url(&url).unwrap(), format!("{url}?mode=rwc"));
        assert!(path.parent().unwrap().is_dir());
        let ro = format!("{url}?mode=ro");
        assert_eq!(prepare_sqlite_url(&ro).unwrap(), ro);
        assert!(prepare_sqlite_url("sqlite::memory:").is_err());
    }
}
