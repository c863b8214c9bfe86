-- The registry index. Portable between SQLite and PostgreSQL: ids are TEXT
-- made by the application, times are BIGINT unix milliseconds, flags are
-- BIGINT 0/1 (sqlx's Any driver cannot read SQLite booleans), JSON is TEXT.

-- Who may publish: a token (only its sha256 is kept) and the namespaces it
-- owns.
CREATE TABLE publishers (
    id          TEXT PRIMARY KEY,
    name        TEXT NOT NULL UNIQUE,
    token_hash  TEXT NOT NULL UNIQUE,
    created_at  BIGINT NOT NULL
);

-- A namespace belongs to one publisher. `unsigned` = 1 lets it publish
-- modules without a signature (development registries only).
CREATE TABLE namespaces (
    name          TEXT PRIMARY KEY,
    publisher_id  TEXT NOT NULL REFERENCES publishers (id),
    unsigned      BIGINT NOT NULL DEFAULT 0 CHECK (unsigned IN (0, 1))
);
CREATE INDEX namespaces_publisher ON namespaces (publisher_id);

-- A publisher's ed25519 public keys (base64), by key id.
CREATE TABLE keys (
    key_id        TEXT PRIMARY KEY,
    publisher_id  TEXT NOT NULL REFERENCES publishers (id),
    public_key    TEXT NOT NULL,
    created_at    BIGINT NOT NULL
);
CREATE INDEX keys_publisher ON keys (publisher_id);

-- Published versions: immutable apart from `yanked`. The bytes live in the
-- blob store under `digest`.
CREATE TABLE versions (
    namespace     TEXT NOT NULL REFERENCES namespaces (name),
    name          TEXT NOT NULL,
    version       TEXT NOT NULL,
    digest        TEXT NOT NULL,
    size          BIGINT NOT NULL,
    manifest      TEXT NOT NULL,
    signature     TEXT,
    key_id        TEXT REFERENCES keys (key_id),
    yanked        BIGINT NOT NULL DEFAULT 0 CHECK (yanked IN (0, 1)),
    published_at  BIGINT NOT NULL,
    PRIMARY KEY (namespace, name, version),
    CHECK ((signature IS NULL) = (key_id IS NULL))
);
CREATE INDEX versions_digest ON versions (digest);
