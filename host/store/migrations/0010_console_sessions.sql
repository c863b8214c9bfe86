-- Web console sessions. A session is made by signing in with an API token
-- and acts for that token's user with the same role and tenants; the
-- browser holds a random session secret in an HttpOnly cookie and the store
-- keeps only its sha256. Each session has its own CSRF token, which every
-- form posts back.
CREATE TABLE console_sessions (
    id TEXT PRIMARY KEY,
    user_id TEXT NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    -- The API token it was signed in with: revoking that token ends it.
    token_id TEXT NOT NULL REFERENCES api_tokens (id) ON DELETE CASCADE,
    session_hash TEXT NOT NULL UNIQUE,
    csrf TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    last_seen_at BIGINT NOT NULL,
    ended_at BIGINT
);
CREATE INDEX console_sessions_user ON console_sessions (user_id);

-- A device's page lists the runs that touched it and its changes, newest
-- first.
CREATE INDEX jobs_device ON jobs (device_id, id);
CREATE INDEX changes_device ON changes (device_id, at);
