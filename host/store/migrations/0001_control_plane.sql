-- The control plane's tables, in SQL that SQLite and PostgreSQL both accept.
--
-- Portable on purpose: ids are TEXT made by the application (time-ordered
-- hex), times are BIGINT unix milliseconds, flags are BIGINT 0/1 (SQLite has
-- no boolean and sqlx's Any driver cannot read SQLite BOOLEAN columns), JSON
-- is TEXT. Partial indexes and ON CONFLICT work the same on both.

CREATE TABLE tenants (
    id TEXT PRIMARY KEY,
    name TEXT NOT NULL UNIQUE,
    tier TEXT NOT NULL CHECK (tier IN ('vip', 'managed', 'on-demand')),
    -- At most this many jobs of the tenant leased at once; NULL: no limit.
    max_concurrent_jobs BIGINT CHECK (max_concurrent_jobs >= 0),
    created_at BIGINT NOT NULL
);
-- Every claim asks whether any limit is configured (and which).
CREATE INDEX tenants_limited ON tenants (id) WHERE max_concurrent_jobs IS NOT NULL;

CREATE TABLE sites (
    id TEXT PRIMARY KEY,
    tenant_id TEXT NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    name TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    UNIQUE (tenant_id, name)
);

CREATE TABLE devices (
    id TEXT PRIMARY KEY,
    tenant_id TEXT NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    site_id TEXT REFERENCES sites (id) ON DELETE SET NULL,
    name TEXT NOT NULL,
    -- JSON array of strings.
    tags TEXT NOT NULL DEFAULT '[]',
    -- JSON object: what inventory last reported.
    facts TEXT NOT NULL DEFAULT '{}',
    -- JSON object: admin fields (purchase date, warranty end, cost, class,
    -- assigned user).
    admin TEXT NOT NULL DEFAULT '{}',
    -- 0 while the device cannot be reached: its queued jobs wait.
    reachable BIGINT NOT NULL DEFAULT 1 CHECK (reachable IN (0, 1)),
    last_seen_at BIGINT,
    created_at BIGINT NOT NULL,
    UNIQUE (tenant_id, name)
);
CREATE INDEX devices_site ON devices (site_id);

CREATE TABLE plugins (
    name TEXT PRIMARY KEY,
    -- At most this many jobs of the plugin leased at once; NULL: no limit.
    max_concurrent_jobs BIGINT CHECK (max_concurrent_jobs >= 0),
    created_at BIGINT NOT NULL
);
CREATE INDEX plugins_limited ON plugins (name) WHERE max_concurrent_jobs IS NOT NULL;

CREATE TABLE plugin_versions (
    plugin TEXT NOT NULL REFERENCES plugins (name) ON DELETE CASCADE,
    version TEXT NOT NULL,
    -- `sha256:<hex>` of the component bytes.
    digest TEXT NOT NULL,
    -- JSON array of grant strings (`packages`, `accounts=jdoe,svc-*`, ...).
    grants TEXT NOT NULL DEFAULT '[]',
    installed_at BIGINT NOT NULL,
    PRIMARY KEY (plugin, version)
);

CREATE TABLE playbooks (
    id TEXT PRIMARY KEY,
    -- NULL: shared by every tenant.
    tenant_id TEXT REFERENCES tenants (id) ON DELETE CASCADE,
    name TEXT NOT NULL,
    -- JSON array of steps: plugin, version, params, mode, on_failure,
    -- requires_approval.
    steps TEXT NOT NULL,
    -- JSON target selector: tenant, sites, tags, device ids.
    target TEXT NOT NULL DEFAULT '{}',
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL
);

CREATE TABLE schedules (
    id TEXT PRIMARY KEY,
    playbook_id TEXT NOT NULL REFERENCES playbooks (id) ON DELETE CASCADE,
    tenant_id TEXT REFERENCES tenants (id) ON DELETE CASCADE,
    -- JSON: the scheduler's spec (cron, time zone, window, jitter, misfire,
    -- overlap). The store does not read it.
    spec TEXT NOT NULL,
    enabled BIGINT NOT NULL DEFAULT 1 CHECK (enabled IN (0, 1)),
    -- The latest firing handled (fired or skipped).
    last_fired_at BIGINT,
    -- When the scheduler should look at this schedule again.
    next_fire_at BIGINT,
    created_at BIGINT NOT NULL
);
CREATE INDEX schedules_due ON schedules (next_fire_at) WHERE enabled = 1;

CREATE TABLE runs (
    id TEXT PRIMARY KEY,
    playbook_id TEXT REFERENCES playbooks (id) ON DELETE SET NULL,
    schedule_id TEXT REFERENCES schedules (id) ON DELETE SET NULL,
    -- The cron time of the firing that started this run; NULL when started
    -- by hand.
    fire_at BIGINT,
    status TEXT NOT NULL DEFAULT 'running'
        CHECK (status IN ('running', 'succeeded', 'failed', 'cancelled')),
    created_at BIGINT NOT NULL,
    finished_at BIGINT,
    -- One run per firing, however many processes fire the schedule.
    UNIQUE (schedule_id, fire_at)
);
CREATE INDEX runs_running ON runs (created_at) WHERE status = 'running';

-- No foreign keys on purpose: this is the hottest table, and on PostgreSQL
-- each key check is a locking lookup per row (they more than doubled the
-- cost of an enqueue in the benchmark). The store checks the run, tenant
-- and device of every job in the transaction that inserts it, and whatever
-- deletes a run, tenant or device must delete its jobs in the same
-- transaction. A job whose device row is gone anyway is claimed (and fails
-- visibly) rather than left waiting for a device that cannot come back.
CREATE TABLE jobs (
    id TEXT PRIMARY KEY,
    run_id TEXT NOT NULL,
    tenant_id TEXT NOT NULL,
    -- NULL for a tenant-scope plugin (one job for all the tenant's devices).
    device_id TEXT,
    -- The tenant's tier when enqueued: 0 vip, 1 managed, 2 on-demand.
    tier_rank BIGINT NOT NULL,
    plugin TEXT NOT NULL,
    plugin_digest TEXT,
    step_index BIGINT NOT NULL DEFAULT 0,
    mode TEXT NOT NULL CHECK (mode IN ('check', 'plan', 'remediate')),
    -- JSON object of plugin parameters.
    params TEXT NOT NULL DEFAULT '{}',
    status TEXT NOT NULL CHECK (status IN (
        'queued', 'leased', 'succeeded', 'failed', 'timed-out', 'expired',
        'cancelled', 'awaiting-approval')),
    due_at BIGINT NOT NULL,
    expires_at BIGINT,
    -- Leases taken so far; the current attempt while leased. Fences stale
    -- completions.
    attempts BIGINT NOT NULL DEFAULT 0,
    max_attempts BIGINT NOT NULL CHECK (max_attempts >= 1),
    timeout_ms BIGINT NOT NULL CHECK (timeout_ms > 0),
    lease_owner TEXT,
    lease_until BIGINT,
    started_at BIGINT,
    -- The attempt that started applying changes; see the store's module doc.
    applying_attempt BIGINT,
    last_error TEXT,
    -- JSON: what the plugin returned.
    result TEXT,
    created_at BIGINT NOT NULL,
    finished_at BIGINT,
    -- A job has a lease holder exactly while it is leased, so fencing on
    -- `lease_owner` and `attempts` implies `status = 'leased'` (and lets
    -- PostgreSQL find the row by id instead of through a partial index).
    CHECK ((status = 'leased') = (lease_owner IS NOT NULL AND lease_until IS NOT NULL))
);
-- Every index on `jobs` is paid for on each status change (PostgreSQL
-- cannot update a row in place when an indexed column changes), so there
-- are few. The queue, in claim order:
CREATE INDEX jobs_queue ON jobs (tier_rank, due_at, id) WHERE status = 'queued';
CREATE INDEX jobs_expiry ON jobs (expires_at)
    WHERE status IN ('queued', 'awaiting-approval') AND expires_at IS NOT NULL;
-- Jobs in flight, for the concurrency limits' counts and lease expiry: its
-- size is bounded by what workers hold, not by the queue, so even a full
-- scan of it is cheap.
CREATE INDEX jobs_leased ON jobs (tenant_id, plugin, lease_until) WHERE status = 'leased';
-- A run's jobs by status: whether a run has jobs left.
CREATE INDEX jobs_run ON jobs (run_id, status);

CREATE TABLE findings (
    id TEXT PRIMARY KEY,
    tenant_id TEXT NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    device_id TEXT REFERENCES devices (id) ON DELETE CASCADE,
    -- The device id, or the tenant id for a tenant-scope plugin.
    subject TEXT NOT NULL,
    plugin TEXT NOT NULL,
    -- The plugin's stable id for the problem.
    finding_key TEXT NOT NULL,
    severity TEXT NOT NULL CHECK (severity IN ('info', 'warning', 'critical')),
    summary TEXT NOT NULL,
    detail TEXT NOT NULL DEFAULT '',
    resource TEXT NOT NULL DEFAULT '',
    -- JSON object.
    fields TEXT NOT NULL DEFAULT '{}',
    first_seen_at BIGINT NOT NULL,
    last_seen_at BIGINT NOT NULL,
    -- Set when a later check of the same subject no longer finds it.
    resolved_at BIGINT,
    last_job_id TEXT NOT NULL,
    UNIQUE (subject, plugin, finding_key)
);
CREATE INDEX findings_open ON findings (tenant_id, severity) WHERE resolved_at IS NULL;

CREATE TABLE changes (
    job_id TEXT NOT NULL REFERENCES jobs (id) ON DELETE CASCADE,
    seq BIGINT NOT NULL,
    attempt BIGINT NOT NULL,
    tenant_id TEXT NOT NULL,
    device_id TEXT,
    plugin TEXT NOT NULL,
    kind TEXT NOT NULL,
    target TEXT NOT NULL,
    description TEXT NOT NULL,
    before_value TEXT,
    after_value TEXT,
    outcome TEXT NOT NULL CHECK (outcome IN ('applied', 'planned')),
    at BIGINT NOT NULL,
    PRIMARY KEY (job_id, seq)
);
CREATE INDEX changes_tenant ON changes (tenant_id, at);

CREATE TABLE job_logs (
    job_id TEXT NOT NULL REFERENCES jobs (id) ON DELETE CASCADE,
    attempt BIGINT NOT NULL,
    seq BIGINT NOT NULL,
    at BIGINT NOT NULL,
    level TEXT NOT NULL,
    message TEXT NOT NULL,
    -- JSON object.
    fields TEXT NOT NULL DEFAULT '{}',
    PRIMARY KEY (job_id, attempt, seq)
);

CREATE TABLE approvals (
    id TEXT PRIMARY KEY,
    job_id TEXT NOT NULL REFERENCES jobs (id) ON DELETE CASCADE,
    decision TEXT NOT NULL CHECK (decision IN ('approved', 'rejected')),
    decided_by TEXT NOT NULL,
    note TEXT NOT NULL DEFAULT '',
    decided_at BIGINT NOT NULL
);
CREATE INDEX approvals_job ON approvals (job_id);

CREATE TABLE plugin_state (
    plugin TEXT NOT NULL,
    -- The device id, or the tenant id for a tenant-scope plugin.
    subject TEXT NOT NULL,
    key TEXT NOT NULL,
    value TEXT NOT NULL,
    updated_at BIGINT NOT NULL,
    PRIMARY KEY (plugin, subject, key)
);

CREATE TABLE tickets (
    id TEXT PRIMARY KEY,
    tenant_id TEXT NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    device_id TEXT REFERENCES devices (id) ON DELETE SET NULL,
    job_id TEXT REFERENCES jobs (id) ON DELETE SET NULL,
    queue TEXT NOT NULL,
    title TEXT NOT NULL,
    body TEXT NOT NULL DEFAULT '',
    status TEXT NOT NULL DEFAULT 'open' CHECK (status IN ('open', 'closed')),
    -- Set by the plugin so that a retried job finds its ticket again.
    dedupe_key TEXT,
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL,
    UNIQUE (tenant_id, dedupe_key)
);

CREATE TABLE audit_events (
    id TEXT PRIMARY KEY,
    at BIGINT NOT NULL,
    -- Who: a user, an API token, or `job:<id>` for a plugin's host call.
    actor TEXT NOT NULL,
    tenant_id TEXT,
    run_id TEXT,
    job_id TEXT,
    attempt BIGINT,
    device_id TEXT,
    plugin TEXT,
    plugin_digest TEXT,
    action TEXT NOT NULL,
    -- JSON: arguments summary.
    detail TEXT NOT NULL DEFAULT '{}',
    outcome TEXT NOT NULL
);
CREATE INDEX audit_events_tenant ON audit_events (tenant_id, at);
CREATE INDEX audit_events_job ON audit_events (job_id);

CREATE TABLE webhooks (
    id TEXT PRIMARY KEY,
    -- NULL: events of every tenant.
    tenant_id TEXT REFERENCES tenants (id) ON DELETE CASCADE,
    url TEXT NOT NULL,
    -- JSON array of event names.
    events TEXT NOT NULL DEFAULT '[]',
    secret TEXT NOT NULL,
    enabled BIGINT NOT NULL DEFAULT 1 CHECK (enabled IN (0, 1)),
    created_at BIGINT NOT NULL
);

CREATE TABLE webhook_deliveries (
    id TEXT PRIMARY KEY,
    webhook_id TEXT NOT NULL REFERENCES webhooks (id) ON DELETE CASCADE,
    event TEXT NOT NULL,
    -- JSON body.
    payload TEXT NOT NULL,
    status TEXT NOT NULL DEFAULT 'pending'
        CHECK (status IN ('pending', 'delivered', 'failed')),
    attempts BIGINT NOT NULL DEFAULT 0,
    next_attempt_at BIGINT NOT NULL,
    last_error TEXT,
    created_at BIGINT NOT NULL,
    delivered_at BIGINT
);
CREATE INDEX webhook_deliveries_due ON webhook_deliveries (next_attempt_at)
    WHERE status = 'pending';
