-- The alert inbox (and, below, the journal's intents and the readiness
-- probe). The alert inbox: a job's observation for the alerter, written in the
-- transaction that ends the job (its completion, its failure, or the sweep
-- that times it out), deleted once the alerter has taken it. A crash after
-- the job's commit leaves the row here, and the next pass of any process's
-- alert loop observes it: alerts are at least once across a crash.
CREATE TABLE alert_inbox (
    job_id TEXT NOT NULL,
    attempt BIGINT NOT NULL,
    -- JSON: the alerter's observation; NULL for a job the sweep timed out,
    -- whose observation the alerter makes from the job.
    observation TEXT,
    created_at BIGINT NOT NULL,
    -- When another process may take it (the one that wrote it is expected
    -- to, at once).
    retry_at BIGINT NOT NULL,
    PRIMARY KEY (job_id, attempt)
);
CREATE INDEX alert_inbox_retry ON alert_inbox (retry_at);

-- One row, rewritten by readiness probes: a store that cannot write (a
-- full disk, a read-only file system) is not ready.
CREATE TABLE store_probe (
    id BIGINT PRIMARY KEY,
    at BIGINT NOT NULL
);

-- The mutation journal is write-ahead: a call's intent is recorded here
-- before the provider is called, its result in `journal` after. An intent
-- without a result is a call in doubt (its attempt crashed or lost its
-- store between the two).
CREATE TABLE journal_intents (
    job_id TEXT NOT NULL,
    call TEXT NOT NULL,
    occurrence BIGINT NOT NULL,
    at BIGINT NOT NULL,
    PRIMARY KEY (job_id, call, occurrence)
);
