-- Enrollment tokens made with `--approve`: the devices enrolled with them
-- wait for an admin's approval before their agents may connect (and so
-- before any job runs on them).
ALTER TABLE enrollments ADD COLUMN needs_approval BIGINT NOT NULL DEFAULT 0
    CHECK (needs_approval IN (0, 1));

-- When an admin approved the agent; NULL while it waits. Agents enrolled
-- before approvals existed were approved by their token.
ALTER TABLE agents ADD COLUMN approved_at BIGINT;
UPDATE agents SET approved_at = enrolled_at;
