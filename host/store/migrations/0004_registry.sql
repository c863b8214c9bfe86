-- Installing from a module registry: where an installed version came from
-- and who signed it, the keys trusted per namespace, and the exact plugin
-- versions a run was pinned to when it was created.

-- `namespace/module` in the registry; NULL for a component uploaded or
-- configured as a file.
ALTER TABLE plugin_versions ADD COLUMN source TEXT;
-- The semver requirement it was installed with (`^1.2`); an upgrade
-- resolves it again.
ALTER TABLE plugin_versions ADD COLUMN requirement TEXT;
-- The id of the trusted key whose signature verified (`ed25519:…`); NULL
-- for an unsigned module of a namespace allowed to be unsigned.
ALTER TABLE plugin_versions ADD COLUMN signed_by TEXT;
-- The capabilities the registry manifest requested, JSON array.
ALTER TABLE plugin_versions ADD COLUMN capabilities TEXT;

CREATE TABLE trusted_keys (
    namespace TEXT NOT NULL,
    key_id TEXT NOT NULL,
    -- base64 ed25519 public key.
    public_key TEXT NOT NULL,
    -- 'explicit': an admin added it; 'first-use': recorded when the first
    -- module of the namespace was installed.
    how TEXT NOT NULL CHECK (how IN ('explicit', 'first-use')),
    trusted_at BIGINT NOT NULL,
    -- Set when an admin stops trusting it. The row stays: a namespace
    -- that ever had a trusted key is never trusted on first use again.
    revoked_at BIGINT,
    PRIMARY KEY (namespace, key_id)
);

-- JSON array, one entry per playbook step: {"plugin", "version", "digest"}.
-- NULL for runs created before pinning existed or without a playbook.
ALTER TABLE runs ADD COLUMN pins TEXT;
