-- What the web API needs: users with a role and the tenants they may see,
-- their API tokens (stored hashed), and each run's tenant so that a run can
-- be listed and guarded by tenant without reading its playbook.

CREATE TABLE users (
    id TEXT PRIMARY KEY,
    name TEXT NOT NULL UNIQUE,
    role TEXT NOT NULL CHECK (role IN ('owner', 'admin', 'technician', 'viewer')),
    -- JSON array of tenant ids the user may see; NULL: every tenant.
    tenants TEXT,
    created_at BIGINT NOT NULL
);

CREATE TABLE api_tokens (
    id TEXT PRIMARY KEY,
    user_id TEXT NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    label TEXT NOT NULL DEFAULT '',
    -- Hex sha256 of the token; the token itself is shown once and never
    -- stored.
    token_hash TEXT NOT NULL UNIQUE,
    created_at BIGINT NOT NULL,
    revoked_at BIGINT
);
CREATE INDEX api_tokens_user ON api_tokens (user_id);

-- NULL for a run of a playbook shared by every tenant.
ALTER TABLE runs ADD COLUMN tenant_id TEXT;
UPDATE runs SET tenant_id = (SELECT p.tenant_id FROM playbooks p WHERE p.id = runs.playbook_id);
-- Listing a tenant's runs newest first, one page at a time (ids are
-- time-ordered).
CREATE INDEX runs_tenant ON runs (tenant_id, id);
