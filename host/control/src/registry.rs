//! Installing plugins from a module registry.
//!
//! `vendor/name@^1.2` is resolved by the registry (Cargo's semver rules,
//! yanked versions never chosen), its bytes downloaded by digest and
//! checked here before anything is stored:
//!
//! 1. the bytes have the digest the registry named, and the manifest names
//!    that module and version;
//! 2. the signature verifies under a key this server trusts for the
//!    namespace: one an admin added (explicit), or, when the namespace has
//!    no trusted key yet and trust on first use is on, the key the registry
//!    reports, which is then recorded as trusted (first use) and shown in
//!    the trust list. A namespace may be configured as unsigned for
//!    development;
//! 3. the capabilities the manifest requests are the component's real
//!    imports, and every one is granted by the caller: an install without
//!    the grants is refused with the list to approve;
//! 4. the component describes itself under the module's name.
//!
//! An upgrade resolves the requirement the version was installed with
//! again. One that requests no capability beyond what is granted keeps the
//! grants (automatic under the `automatic` upgrade policy); one that
//! requests more needs the new grants. A yanked version stays installed
//! and keeps running the runs pinned to it.

use std::collections::BTreeSet;

use serde::{Deserialize, Serialize};
use steward_contract::codes;
use steward_contract::imports::{self, ImportsError};
use steward_contract::manifest::ImportsMismatch;
use steward_registry::api::Resolved;
use steward_registry::client::{ClientError, RegistryClient, VerifyError, verify_record};

use super::plugins::{InstallError, PluginLibrary, Provenance};
use steward_runtime::capability::Grant;
use steward_store::{
    AuditEvent, PluginSource, PluginVersion, Store, StoreError, Timestamp, TrustHow, TrustedKey,
};

/// The largest module downloaded from a registry.
pub const MAX_MODULE_BYTES: u64 = 64 * 1024 * 1024;

/// Whether an upgrade that requests no new capability needs an admin.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum UpgradePolicy {
    /// It keeps the grants it had; nobody needs to approve it again.
    #[default]
    Automatic,
    /// Every upgrade names its grants again.
    Approve,
}

/// The `[registry]` section of the server's configuration.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub struct RegistrySettings {
    /// The registry's base URL (`http://host:port`).
    pub url: String,
    /// Trust the key that signed the first module installed from a
    /// namespace with no trusted key yet (recorded, listed, removable).
    /// Off: only keys an admin added are trusted.
    #[serde(default = "yes")]
    pub trust_on_first_use: bool,
    /// Namespaces whose modules may be unsigned (development only).
    #[serde(default)]
    pub unsigned_namespaces: Vec<String>,
    /// Upgrades that request no new capability.
    #[serde(default)]
    pub upgrades: UpgradePolicy,
    /// With `upgrades = "automatic"`: how often the server looks for newer
    /// versions of the plugins it installed from the registry and installs
    /// those that request nothing beyond their grants. Absent: only when
    /// an admin asks.
    #[serde(default)]
    pub check_every_seconds: Option<u64>,
}

impl RegistrySettings {
    /// The registry at `url` with the default policies: trust on first
    /// use, every namespace signed, automatic upgrades.
    pub fn new(url: String) -> Self {
        Self {
            url,
            trust_on_first_use: true,
            unsigned_namespaces: Vec::new(),
            upgrades: UpgradePolicy::Automatic,
            check_every_seconds: None,
        }
    }
}

fn yes() -> bool {
    true
}

/// `namespace/name@requirement`; the requirement defaults to `*`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ModuleRef {
    /// The publisher's namespace.
    pub namespace: String,
    /// The module.
    pub name: String,
    /// A semver requirement (Cargo's rules).
    pub requirement: String,
}

impl std::str::FromStr for ModuleRef {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let (module, requirement) = s.split_once('@').unwrap_or((s, "*"));
        let Some((namespace, name)) = module.split_once('/') else {
            return Err(format!(
                "`{s}` is not `namespace/name@requirement` (for example `acme/patching@^1.2`)"
            ));
        };
        for (what, part) in [("namespace", namespace), ("name", name)] {
            steward_contract::manifest::check_name_part(what, part)?;
        }
        semver::VersionReq::parse(requirement)
            .map_err(|e| format!("`{requirement}` is not a semver requirement: {e}"))?;
        Ok(Self {
            namespace: namespace.to_owned(),
            name: name.to_owned(),
            requirement: requirement.to_owned(),
        })
    }
}

impl std::fmt::Display for ModuleRef {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}@{}", self.namespace, self.name, self.requirement)
    }
}

/// Whether the signer of a module is trusted here.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "kebab-case")]
pub enum Trust {
    /// Signed by a key trusted for the namespace.
    Trusted,
    /// The namespace has no trusted key; installing trusts the signer
    /// (trust on first use).
    FirstUse,
    /// Signed by a key the namespace does not trust: installing is refused.
    Untrusted,
    /// Not signed, and the namespace is configured as unsigned.
    UnsignedAllowed,
    /// Not signed: installing is refused.
    Unsigned,
}

/// What installing a module would do: the version the requirement resolves
/// to, who signed it, and the capabilities to grant.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Offer {
    /// `namespace/name`.
    pub module: String,
    /// The requirement asked.
    pub requirement: String,
    /// The version it resolves to.
    pub version: String,
    /// Its digest.
    pub digest: String,
    /// The manifest's description.
    pub description: String,
    /// Its license.
    pub license: String,
    /// The capabilities it requests: every one must be granted.
    pub capabilities: Vec<String>,
    /// The signing key's id, if signed.
    pub signed_by: Option<String>,
    /// Whether that key is trusted here.
    pub trust: Trust,
}

/// What an upgrade did.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Upgrade {
    /// The version installed before.
    pub from: PluginVersion,
    /// The version installed now (`from` when already up to date).
    pub to: PluginVersion,
    /// Whether a newer version was installed.
    pub changed: bool,
}

/// Why a registry install or upgrade was refused.
#[derive(Debug, thiserror::Error)]
pub enum RegistryError {
    /// No registry is configured.
    #[error("no module registry is configured (set `[registry] url` or `--registry`)")]
    NotConfigured,
    /// Bad input, naming the field.
    #[error("{message}")]
    Invalid {
        /// The field.
        field: &'static str,
        /// Why.
        message: String,
    },
    /// The registry refused or could not be reached.
    #[error("the registry: {0}")]
    Registry(#[from] ClientError),
    /// The bytes or the signature do not check.
    #[error("{0}")]
    Verify(VerifyError),
    /// The manifest does not describe the component: other capabilities
    /// or another WIT package.
    #[error("{0}; refusing to install")]
    Imports(ImportsMismatch),
    /// Capabilities requested but not granted.
    #[error(
        "{module} {version} requests capabilities that are not granted: {}; grant them to install",
        missing.join(", ")
    )]
    GrantsRequired {
        /// The module.
        module: String,
        /// The version.
        version: String,
        /// What is missing.
        missing: Vec<String>,
    },
    /// The plugin was not installed from a registry.
    #[error("plugin `{0}` was not installed from a registry")]
    NotFromRegistry(String),
    /// The module resolves to other bytes than the offer approved.
    #[error(
        "the approved offer was {expected}, but the module now resolves to {now}; look at the offer again"
    )]
    OfferChanged {
        /// The approved digest.
        expected: String,
        /// What it resolves to now.
        now: String,
    },
    /// No such plugin is installed.
    #[error("no plugin `{0}` is installed")]
    NotInstalled(String),
    /// The upgrade policy is `approve` and the upgrade named no grants.
    #[error(
        "{module} {version} is available; the upgrade policy is `approve`, so name its grants (an empty list when it needs none)"
    )]
    ApprovalRequired {
        /// The module.
        module: String,
        /// The version.
        version: String,
    },
    /// The registry answered with another module, a version the
    /// requirement does not allow, or a yanked one.
    #[error("asked the registry for {asked} and it answered {got}; refusing it")]
    WrongAnswer {
        /// What was asked.
        asked: String,
        /// What came back.
        got: String,
    },
    /// The registry's bytes are not a plugin component, or import what no
    /// host links.
    #[error("{0}")]
    Component(ImportsError),
    /// Installing failed (the component does not load, describes itself
    /// under another name, the server's disk failed, …).
    #[error(transparent)]
    Install(InstallError),
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl RegistryError {
    /// A stable code for the API.
    pub fn code(&self) -> &'static str {
        match self {
            RegistryError::NotConfigured => codes::REGISTRY_NOT_CONFIGURED,
            RegistryError::Invalid { .. } => codes::INVALID,
            RegistryError::Registry(ClientError::DigestMismatch { .. }) => codes::DIGEST_MISMATCH,
            RegistryError::Registry(ClientError::TooLarge { .. }) => codes::TOO_LARGE,
            RegistryError::Registry(e) => match e.code() {
                Some(codes::NO_MATCH) => codes::NO_MATCH,
                Some(codes::NOT_FOUND) => codes::NOT_FOUND,
                Some(_) => codes::REGISTRY_REFUSED,
                None => codes::REGISTRY_UNAVAILABLE,
            },
            RegistryError::Verify(VerifyError::DigestMismatch { .. }) => codes::DIGEST_MISMATCH,
            RegistryError::Verify(VerifyError::ManifestMismatch { .. }) => codes::MANIFEST_MISMATCH,
            RegistryError::Verify(VerifyError::Unsigned) => codes::UNSIGNED_MODULE,
            RegistryError::Verify(VerifyError::UntrustedKey { .. }) => codes::UNTRUSTED_KEY,
            RegistryError::Verify(VerifyError::BadSignature { .. }) => codes::BAD_SIGNATURE,
            RegistryError::Imports(ImportsMismatch::Capabilities { .. }) => {
                codes::CAPABILITIES_MISMATCH
            }
            RegistryError::Imports(ImportsMismatch::Wit { .. }) => codes::WIT_MISMATCH,
            RegistryError::GrantsRequired { .. } => codes::GRANTS_REQUIRED,
            RegistryError::NotFromRegistry(_) => codes::NOT_FROM_REGISTRY,
            RegistryError::NotInstalled(_) => codes::NOT_FOUND,
            RegistryError::OfferChanged { .. } => codes::OFFER_CHANGED,
            RegistryError::ApprovalRequired { .. } => codes::APPROVAL_REQUIRED,
            RegistryError::WrongAnswer { .. } => codes::REGISTRY_WRONG_ANSWER,
            RegistryError::Component(ImportsError::Refused(_)) => codes::FORBIDDEN_IMPORT,
            RegistryError::Component(_) => codes::NOT_A_PLUGIN,
            RegistryError::Install(e) if e.is_internal() => codes::INTERNAL,
            RegistryError::Install(_) => codes::INSTALL_REFUSED,
            RegistryError::Store(_) => "store",
        }
    }
}

/// The server's link to its registry.
pub struct Registry {
    settings: RegistrySettings,
    client: RegistryClient,
}

impl Registry {
    /// A registry client for `settings`.
    ///
    /// # Errors
    ///
    /// A URL that is not `http(s)://`.
    pub fn new(settings: RegistrySettings) -> anyhow::Result<Self> {
        if let Some(rest) = settings.url.split_once("://").map(|(_, r)| r)
            && rest
                .split('/')
                .next()
                .is_some_and(|host| host.contains('@'))
        {
            anyhow::bail!(
                "registry `url`: credentials in the URL are not supported (they would show in errors and logs)"
            );
        }
        let client = RegistryClient::new(settings.url.clone(), None)
            .map_err(|e| anyhow::anyhow!("registry `url`: {e}"))?;
        Ok(Self { settings, client })
    }

    /// The settings it was made with.
    pub fn settings(&self) -> &RegistrySettings {
        &self.settings
    }

    /// What installing `module` would do, without installing anything.
    ///
    /// # Errors
    ///
    /// The registry's refusal (`no-match`, `not-found`) or a store failure.
    pub async fn offer(&self, store: &Store, module: &ModuleRef) -> Result<Offer, RegistryError> {
        let resolved = self.resolve(module).await?;
        let trust = self.trust_of(store, &resolved).await?;
        let record = &resolved.record;
        Ok(Offer {
            module: format!("{}/{}", record.namespace, record.name),
            requirement: module.requirement.clone(),
            version: record.version.to_string(),
            digest: record.digest.to_string(),
            description: record.manifest.description.clone(),
            license: record.manifest.license.clone(),
            capabilities: record.manifest.capabilities.iter().cloned().collect(),
            signed_by: record.key_id.clone(),
            trust,
        })
    }

    /// Resolves, downloads, verifies and installs `module` with `grants`.
    /// Nothing is stored when any check fails. The signer is recorded as
    /// trusted on first use, in the install's transaction, when that is how
    /// it was trusted: returned then.
    ///
    /// # Errors
    ///
    /// See [`RegistryError`].
    pub async fn install(
        &self,
        store: &Store,
        library: &PluginLibrary,
        module: &ModuleRef,
        grants: &[String],
        expected_digest: Option<&str>,
    ) -> Result<(PluginVersion, Option<TrustedKey>), RegistryError> {
        let resolved = self.resolve(module).await?;
        if let Some(expected) = expected_digest
            && expected != resolved.record.digest.to_string()
        {
            return Err(RegistryError::OfferChanged {
                expected: expected.to_owned(),
                now: format!("{} {}", resolved.record.version, resolved.record.digest),
            });
        }
        self.install_resolved(store, library, module, &resolved, grants, true)
            .await
    }

    /// Upgrades `plugin` (installed from the registry) to the highest
    /// version its requirement (or `requirement`, when given) resolves to.
    /// `grants: None` keeps the current grants, which the `automatic`
    /// policy allows when nothing new is requested.
    ///
    /// # Errors
    ///
    /// [`RegistryError::GrantsRequired`] when the new version requests
    /// capabilities not granted, or when the policy is `approve` and no
    /// grants were given; the rest as for [`install`](Registry::install).
    pub async fn upgrade(
        &self,
        store: &Store,
        library: &PluginLibrary,
        plugin: &str,
        requirement: Option<&str>,
        grants: Option<&[String]>,
    ) -> Result<Upgrade, RegistryError> {
        let installed = store.plugin_versions().await?;
        if !installed.iter().any(|v| v.plugin == plugin) {
            return Err(RegistryError::NotInstalled(plugin.to_owned()));
        }
        let current = installed
            .iter()
            .filter(|v| v.plugin == plugin && v.source.is_some())
            .filter_map(|v| Some((semver::Version::parse(&v.version).ok()?, v)))
            .max_by(|(a, _), (b, _)| a.cmp(b))
            .map(|(_, v)| v.clone())
            .ok_or_else(|| RegistryError::NotFromRegistry(plugin.to_owned()))?;
        let source = current.source.as_ref().expect("filtered on source");
        let text = format!(
            "{}@{}",
            source.module,
            requirement.unwrap_or(&source.requirement)
        );
        let module: ModuleRef = text.parse().map_err(|message| RegistryError::Invalid {
            field: "requirement",
            message,
        })?;
        let resolved = self.resolve(&module).await?;
        Self::check_answer(&module, &resolved)?;
        let record = &resolved.record;
        // Without a new requirement an upgrade only moves forward: the
        // highest installed version stays when the registry offers nothing
        // newer (say the newest was yanked).
        let current_version = semver::Version::parse(&current.version).ok();
        let newer = current_version.as_ref().is_none_or(|v| record.version > *v);
        let same = installed.iter().find(|v| {
            v.plugin == plugin
                && v.version == record.version.to_string()
                && v.digest == record.digest.to_string()
        });
        if same.is_some() || (requirement.is_none() && !newer) {
            if grants.is_some() {
                return Err(RegistryError::Invalid {
                    field: "grants",
                    message: format!(
                        "`{plugin}` {} is already the version to run; change its grants with PUT /api/v1/plugins/{plugin}/{}/grants",
                        current.version, current.version
                    ),
                });
            }
            return Ok(Upgrade {
                to: same.cloned().unwrap_or_else(|| current.clone()),
                from: current,
                changed: false,
            });
        }
        let grants = match grants {
            Some(g) => g.to_vec(),
            None => {
                // Nothing beyond what the current version was granted.
                require_granted(&resolved, &current.grants)?;
                if self.settings.upgrades == UpgradePolicy::Approve {
                    return Err(RegistryError::ApprovalRequired {
                        module: format!("{}/{}", record.namespace, record.name),
                        version: record.version.to_string(),
                    });
                }
                current.grants.clone()
            }
        };
        let (to, _) = self
            .install_resolved(store, library, &module, &resolved, &grants, false)
            .await?;
        Ok(Upgrade {
            from: current,
            to,
            changed: true,
        })
    }

    /// Upgrades every plugin installed from the registry that has a newer
    /// version within its requirement requesting nothing beyond its
    /// grants, recording each in the audit trail (actor
    /// `system:auto-upgrade`). Versions that need a new approval are left
    /// for an admin, and logged. Does nothing unless the policy is
    /// `automatic`. Returns what was upgraded.
    pub async fn auto_upgrade(&self, store: &Store, library: &PluginLibrary) -> Vec<Upgrade> {
        if self.settings.upgrades != UpgradePolicy::Automatic {
            return Vec::new();
        }
        let plugins: BTreeSet<String> = match store.plugin_versions().await {
            Ok(v) => v
                .into_iter()
                .filter(|v| v.source.is_some())
                .map(|v| v.plugin)
                .collect(),
            Err(e) => {
                tracing::warn!(error = %e, "cannot list plugins to upgrade");
                return Vec::new();
            }
        };
        let mut done = Vec::new();
        for plugin in plugins {
            match self.upgrade(store, library, &plugin, None, None).await {
                Ok(up) if up.changed => {
                    tracing::info!(plugin, from = %up.from.version, to = %up.to.version, "plugin upgraded automatically");
                    let event = AuditEvent {
                        at: Timestamp::now(),
                        actor: "system:auto-upgrade".into(),
                        tenant_id: None,
                        run_id: None,
                        job_id: None,
                        attempt: None,
                        device_id: None,
                        plugin: Some(plugin.clone()),
                        plugin_digest: Some(up.to.digest.clone()),
                        action: "plugin.upgrade".into(),
                        detail: serde_json::json!({
                            "plugin": plugin, "from": up.from.version, "to": up.to.version,
                            "digest": up.to.digest,
                        }),
                        outcome: "ok".into(),
                    };
                    if let Err(e) = store.append_audit(&[event]).await {
                        tracing::warn!(error = %e, "cannot audit an automatic upgrade");
                    }
                    done.push(up);
                }
                Ok(_) => {}
                Err(RegistryError::GrantsRequired {
                    version, missing, ..
                }) => {
                    tracing::info!(plugin, version, missing = ?missing, "a newer version needs new grants; left for an admin");
                }
                Err(e) => tracing::warn!(plugin, error = %e, "automatic upgrade failed"),
            }
        }
        done
    }

    async fn resolve(&self, module: &ModuleRef) -> Result<Resolved, RegistryError> {
        Ok(self
            .client
            .resolve(&module.namespace, &module.name, &module.requirement)
            .await?)
    }

    async fn trust_of(&self, store: &Store, resolved: &Resolved) -> Result<Trust, RegistryError> {
        let record = &resolved.record;
        let Some(key_id) = &record.key_id else {
            return Ok(if self.unsigned_allowed(&record.namespace) {
                Trust::UnsignedAllowed
            } else {
                Trust::Unsigned
            });
        };
        let (trusted, first_use) = self.trust_state(store, &record.namespace).await?;
        Ok(if trusted.iter().any(|k| &k.key_id == key_id) {
            Trust::Trusted
        } else if first_use {
            Trust::FirstUse
        } else {
            Trust::Untrusted
        })
    }

    /// The keys trusted for `namespace`, and whether trust on first use
    /// applies to it: enabled, and the namespace never had a key (a revoked
    /// one included; with a trusted key it has had one).
    async fn trust_state(
        &self,
        store: &Store,
        namespace: &str,
    ) -> Result<(Vec<TrustedKey>, bool), RegistryError> {
        let trusted = store.trusted_keys(Some(namespace)).await?;
        let first_use = self.settings.trust_on_first_use
            && trusted.is_empty()
            && !store.namespace_ever_trusted(namespace).await?;
        Ok((trusted, first_use))
    }

    fn unsigned_allowed(&self, namespace: &str) -> bool {
        self.settings
            .unsigned_namespaces
            .iter()
            .any(|n| n == namespace)
    }

    /// Checks what the registry answered against what was asked: the
    /// module, a version the requirement allows, not yanked. A registry
    /// (or anything between it and us) cannot substitute another module.
    fn check_answer(module: &ModuleRef, resolved: &Resolved) -> Result<(), RegistryError> {
        let record = &resolved.record;
        let allowed = semver::VersionReq::parse(&module.requirement)
            .is_ok_and(|req| req.matches(&record.version));
        if record.namespace != module.namespace
            || record.name != module.name
            || record.yanked
            || !allowed
        {
            return Err(RegistryError::WrongAnswer {
                asked: module.to_string(),
                got: format!(
                    "{}/{} {}{}",
                    record.namespace,
                    record.name,
                    record.version,
                    if record.yanked { " (yanked)" } else { "" }
                ),
            });
        }
        Ok(())
    }

    async fn install_resolved(
        &self,
        store: &Store,
        library: &PluginLibrary,
        module: &ModuleRef,
        resolved: &Resolved,
        grants: &[String],
        allow_first_use: bool,
    ) -> Result<(PluginVersion, Option<TrustedKey>), RegistryError> {
        Self::check_answer(module, resolved)?;
        let record = &resolved.record;
        let name = format!("{}/{}", record.namespace, record.name);
        require_granted(resolved, grants)?;
        let bytes = self
            .client
            .download(&record.digest, MAX_MODULE_BYTES)
            .await?;

        let (trusted, first_use) = self.trust_state(store, &record.namespace).await?;
        let first_use = allow_first_use && first_use;
        let mut keys: Vec<String> = trusted.iter().map(|k| k.public_key.clone()).collect();
        if first_use && let Some(claimed) = &resolved.public_key {
            keys.push(claimed.clone());
        }
        // `download` checked the bytes against the record's digest.
        let signed_by = match verify_record(resolved, &keys) {
            Ok(verified) => Some(verified.key_id),
            Err(VerifyError::Unsigned) if self.unsigned_allowed(&record.namespace) => None,
            Err(e) => return Err(RegistryError::Verify(e)),
        };

        let imported = imports::inspect(&bytes).map_err(RegistryError::Component)?;
        record
            .manifest
            .describes(&imported)
            .map_err(RegistryError::Imports)?;

        let source = PluginSource {
            module: name,
            requirement: module.requirement.clone(),
            signed_by: signed_by.clone(),
            capabilities: record.manifest.capabilities.iter().cloned().collect(),
        };
        // The key the registry reported is trusted only if it is the one
        // whose signature just verified (on first use no other key is
        // trusted), and only with this install.
        let first_use_key = match (&signed_by, &resolved.public_key) {
            (Some(key_id), Some(public_key)) if first_use => Some(TrustedKey {
                namespace: record.namespace.clone(),
                key_id: key_id.clone(),
                public_key: public_key.clone(),
                how: TrustHow::FirstUse,
                trusted_at: Timestamp::now(),
            }),
            _ => None,
        };
        let trusted_now = first_use_key.clone();
        let installed = library
            .install_from(
                store,
                &bytes,
                grants,
                Some(Provenance {
                    source,
                    version: record.version.to_string(),
                    first_use_key,
                }),
            )
            .await
            .map_err(|e| match e {
                InstallError::Store(store) => RegistryError::Store(store),
                e => RegistryError::Install(e),
            })?;
        if let Some(key) = &trusted_now {
            tracing::warn!(namespace = %key.namespace, key = %key.key_id, "trusted a registry key on first use");
        }
        Ok((installed, trusted_now))
    }
}

/// Refuses, listing them, the capabilities `resolved` requests that
/// `grants` does not grant.
fn require_granted(resolved: &Resolved, grants: &[String]) -> Result<(), RegistryError> {
    let granted = capabilities_of(grants)?;
    let record = &resolved.record;
    let missing: Vec<String> = record
        .manifest
        .capabilities
        .iter()
        .filter(|c| !granted.contains(*c))
        .cloned()
        .collect();
    if missing.is_empty() {
        return Ok(());
    }
    Err(RegistryError::GrantsRequired {
        module: format!("{}/{}", record.namespace, record.name),
        version: record.version.to_string(),
        missing,
    })
}

/// The capability names of grant strings (`accounts=jdoe` → `accounts`).
fn capabilities_of(grants: &[String]) -> Result<BTreeSet<String>, RegistryError> {
    grants
        .iter()
        .map(|g| {
            g.parse::<Grant>()
                .map(|grant| grant.capability.name().to_owned())
                .map_err(|e| RegistryError::Invalid {
                    field: "grants",
                    message: format!("grant `{g}`: {e}"),
                })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn module_refs_parse_with_a_default_requirement() {
        let r: ModuleRef = "acme/patching@^1.2".parse().unwrap();
        assert_eq!(
            (
                r.namespace.as_str(),
                r.name.as_str(),
                r.requirement.as_str()
            ),
            ("acme", "patching", "^1.2")
        );
        let any: ModuleRef = "acme/patching".parse().unwrap();
        assert_eq!(any.requirement, "*");
        assert!("patching@1".parse::<ModuleRef>().is_err());
        assert!("acme/patching@not a version".parse::<ModuleRef>().is_err());
        assert!("Acme/patching".parse::<ModuleRef>().is_err());
    }

    #[test]
    fn grants_name_their_capability() {
        let caps = capabilities_of(&["packages".into(), "accounts=jdoe,svc-*".into()]).unwrap();
        assert_eq!(
            caps.into_iter().collect::<Vec<_>>(),
            ["accounts", "packages"]
        );
        assert!(matches!(
            capabilities_of(&["no-such-capability".into()]),
            Err(RegistryError::Invalid {
                field: "grants",
                ..
            })
        ));
    }
}
