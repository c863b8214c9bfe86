-- Enrollment tokens: an admin makes one for a tenant (optionally a site
-- and tags, always an expiry and a use count); an endpoint's agent presents
-- it once to join. Only the token's sha256 is stored.
CREATE TABLE enrollments (
    id TEXT PRIMARY KEY,
    tenant_id TEXT NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    site_id TEXT REFERENCES sites (id) ON DELETE SET NULL,
    -- JSON array of strings, given to every device enrolled with it.
    tags TEXT NOT NULL DEFAULT '[]',
    token_hash TEXT NOT NULL UNIQUE,
    uses_left BIGINT NOT NULL CHECK (uses_left >= 0),
    expires_at BIGINT NOT NULL,
    created_by TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    revoked_at BIGINT
);
CREATE INDEX enrollments_tenant ON enrollments (tenant_id);

-- An enrolled agent: the device it is and the public half of the key pair
-- it made on the endpoint. It proves itself on every connection by
-- signing the server's nonce; no bearer secret crosses the wire.
CREATE TABLE agents (
    device_id TEXT PRIMARY KEY REFERENCES devices (id) ON DELETE CASCADE,
    public_key TEXT NOT NULL UNIQUE,
    enrollment_id TEXT REFERENCES enrollments (id) ON DELETE SET NULL,
    enrolled_at BIGINT NOT NULL,
    revoked_at BIGINT,
    agent_version TEXT NOT NULL DEFAULT '',
    -- 1 while a server process holds its connection.
    connected BIGINT NOT NULL DEFAULT 0 CHECK (connected IN (0, 1)),
    connected_at BIGINT,
    last_seen_at BIGINT
);

-- The server process (its worker id) holding the connection of the
-- device's agent; NULL for a device without one. Only that process claims
-- the device's jobs, so a job runs where the agent is connected.
ALTER TABLE devices ADD COLUMN held_by TEXT;
