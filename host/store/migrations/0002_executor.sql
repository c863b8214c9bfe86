-- What the executor needs beside the queue: which worker ran a job, the
-- mutation journal, and alert state shared by every `steward` process.

-- The worker that took the latest lease (kept after the job ends, unlike
-- `lease_owner`): shows how jobs were split between processes.
ALTER TABLE jobs ADD COLUMN claimed_by TEXT;

-- Mutating capability calls a job's attempts applied, so a later attempt
-- replays them instead of applying them again (see runtime/journal.rs).
CREATE TABLE journal (
    job_id TEXT NOT NULL,
    -- `capability.function arguments`.
    call TEXT NOT NULL,
    occurrence BIGINT NOT NULL,
    -- JSON: what the provider returned.
    result TEXT NOT NULL,
    at BIGINT NOT NULL,
    PRIMARY KEY (job_id, call, occurrence)
);

-- Open alerts, one row per (tenant, device, plugin, condition).
CREATE TABLE alert_state (
    alert_key TEXT PRIMARY KEY,
    -- JSON: the open alert.
    alert TEXT NOT NULL,
    updated_at BIGINT NOT NULL
);
