//! Installed plugins: component bytes kept by digest in the data
//! directory, versions and grants in the store, modules loaded once.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use anyhow::Context as _;
use steward_contract::Digest;

use steward_runtime::bindings::types::Descriptor;
use steward_runtime::capability::{Grant, GrantError, Grants};
use steward_runtime::{LoadError, Module, RunError, Runtime};
use steward_store::{
    NewPluginVersion, PluginSource, PluginVersion, Store, StoreError, Timestamp, TrustedKey,
};

/// Why an install was refused or failed. The caller's mistakes (a grant
/// that does not parse, a component that does not load, is not granted
/// what it imports, or describes itself under another name) are told
/// apart from the server's own failures (its disk, its database), which
/// an API answers as 500 without their text.
#[derive(Debug, thiserror::Error)]
pub enum InstallError {
    /// A grant does not parse.
    #[error("grant `{grant}`: {error}")]
    Grant {
        /// The grant as given.
        grant: String,
        /// Why it does not parse.
        error: GrantError,
    },
    /// The component does not load, or imports what was not granted.
    #[error(transparent)]
    Load(#[from] LoadError),
    /// The component's `describe` failed.
    #[error("the plugin's `describe` failed: {0}")]
    Describe(RunError),
    /// A registry module describes itself under another name or version.
    #[error(
        "the component describes itself as `{name}` {version}, but the registry published it as `{module}` {published}"
    )]
    DescribedAs {
        /// What `describe` says.
        name: String,
        /// What `describe` says.
        version: String,
        /// The registry module.
        module: String,
        /// The version it was published as.
        published: String,
    },
    /// An upload of another version of an installed plugin that does not
    /// say which installed version it replaces.
    #[error(
        "plugin `{name}` is installed already ({}); to install {version} beside it, name the version it replaces (`replaces`)",
        if installed.is_empty() { "no version".to_string() } else { installed.join(", ") }
    )]
    ReplacesRequired {
        /// The plugin.
        name: String,
        /// The uploaded version.
        version: String,
        /// The installed versions.
        installed: Vec<String>,
    },
    /// The store refused (another origin for the name, other bytes for a
    /// version) or failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// Writing the component to the data directory failed.
    #[error("failed to write the component to {path}: {source}")]
    Disk {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
}

impl InstallError {
    /// Whether the server failed (disk, database), not the request.
    pub fn is_internal(&self) -> bool {
        match self {
            InstallError::Disk { .. } => true,
            InstallError::Load(LoadError::Host(_)) => true,
            InstallError::Store(e) => e.is_internal(),
            _ => false,
        }
    }

    /// The field of the request at fault, for a refusal.
    pub fn field(&self) -> &'static str {
        match self {
            InstallError::Grant { .. }
            | InstallError::Load(LoadError::NotGranted(_) | LoadError::UnusedGrant(..)) => "grants",
            InstallError::ReplacesRequired { .. } => "replaces",
            _ => "wasm",
        }
    }
}

fn parse_grants(grants: &[String]) -> Result<Vec<Grant>, InstallError> {
    grants
        .iter()
        .map(|g| {
            g.parse::<Grant>().map_err(|error| InstallError::Grant {
                grant: g.clone(),
                error,
            })
        })
        .collect()
}

/// Where a registry install came from: recorded with the version, and
/// checked against what the component says of itself.
pub struct Provenance {
    /// The registry module and how it was verified.
    pub source: PluginSource,
    /// The version the registry published it as.
    pub version: String,
    /// The key to trust on first use, recorded in the install's
    /// transaction.
    pub first_use_key: Option<TrustedKey>,
}

/// A loaded plugin version: module, description and grants.
pub struct Loaded {
    /// The compiled module.
    pub module: Arc<Module>,
    /// What `describe` says.
    pub descriptor: Descriptor,
    /// What it was granted.
    pub grants: Grants,
}

/// Installed plugin components on disk, loaded on first use.
pub struct PluginLibrary {
    runtime: Arc<Runtime>,
    dir: PathBuf,
    loaded: Mutex<HashMap<String, Arc<Loaded>>>,
}

impl PluginLibrary {
    /// A library keeping components in `dir` (created if absent).
    pub fn open(runtime: Arc<Runtime>, dir: PathBuf) -> anyhow::Result<Self> {
        std::fs::create_dir_all(&dir)
            .with_context(|| format!("failed to create the module directory {}", dir.display()))?;
        Ok(Self {
            runtime,
            dir,
            loaded: Mutex::default(),
        })
    }

    /// The runtime that runs the library's modules.
    pub fn runtime(&self) -> &Arc<Runtime> {
        &self.runtime
    }

    /// Installs a component with `grants`: it must load, describe itself,
    /// and have every capability it imports granted. Records its name and
    /// version (from `describe`) and digest in the store.
    pub async fn install(
        &self,
        store: &Store,
        bytes: &[u8],
        grants: &[String],
    ) -> Result<PluginVersion, InstallError> {
        self.install_from(store, bytes, grants, None).await
    }

    /// [`install`](PluginLibrary::install), recording where the component
    /// came from. A registry module must describe itself under the
    /// module's name (`acme/patching` → `patching`) and version.
    pub async fn install_from(
        &self,
        store: &Store,
        bytes: &[u8],
        grants: &[String],
        provenance: Option<Provenance>,
    ) -> Result<PluginVersion, InstallError> {
        self.install_checked(store, bytes, grants, provenance, None)
            .await
    }

    /// An upload through the API: like [`install`](PluginLibrary::install),
    /// but a component whose name is installed already under other
    /// versions is refused unless `replaces` names one of them, so an
    /// upload that describes itself as `patching 99.0.0` cannot slip in
    /// beside the real `patching` and take over its playbooks.
    pub async fn install_upload(
        &self,
        store: &Store,
        bytes: &[u8],
        grants: &[String],
        replaces: Option<&str>,
    ) -> Result<PluginVersion, InstallError> {
        self.install_checked(store, bytes, grants, None, Some(replaces))
            .await
    }

    async fn install_checked(
        &self,
        store: &Store,
        bytes: &[u8],
        grants: &[String],
        provenance: Option<Provenance>,
        upload: Option<Option<&str>>,
    ) -> Result<PluginVersion, InstallError> {
        let (source, expected_version, first_use_key) = match provenance {
            Some(p) => (Some(p.source), Some(p.version), p.first_use_key),
            None => (None, None, None),
        };
        let granted: Grants = parse_grants(grants)?.into_iter().collect();
        let module = self.runtime.load(bytes).await?;
        module.authorize_exactly(&granted)?;
        let descriptor = self
            .runtime
            .describe(&module)
            .await
            .result
            .map_err(InstallError::Describe)?;
        if let Some(source) = &source {
            let expected = source.module.rsplit('/').next().unwrap_or(&source.module);
            if descriptor.name != expected || Some(&descriptor.version) != expected_version.as_ref()
            {
                return Err(InstallError::DescribedAs {
                    name: descriptor.name,
                    version: descriptor.version,
                    module: source.module.clone(),
                    published: expected_version.unwrap_or_default(),
                });
            }
        }
        if let Some(replaces) = upload {
            let installed: Vec<String> = store
                .plugin_versions()
                .await?
                .into_iter()
                .filter(|v| v.plugin == descriptor.name)
                .map(|v| v.version)
                .collect();
            let new_version = !installed.is_empty() && !installed.contains(&descriptor.version);
            let named = replaces.is_some_and(|r| installed.iter().any(|v| v == r));
            if !named && (new_version || replaces.is_some()) {
                return Err(InstallError::ReplacesRequired {
                    name: descriptor.name,
                    version: descriptor.version,
                    installed,
                });
            }
        }
        let path = self.path(&module.digest);
        if !path.exists() {
            let disk = |source| InstallError::Disk {
                path: path.clone(),
                source,
            };
            let tmp = tempfile::NamedTempFile::new_in(&self.dir).map_err(disk)?;
            std::fs::write(tmp.path(), bytes).map_err(disk)?;
            tmp.persist(&path).map_err(|e| disk(e.error))?;
        }
        let now = Timestamp::now();
        store
            .add_plugin_version(
                &NewPluginVersion {
                    plugin: descriptor.name.clone(),
                    version: descriptor.version.clone(),
                    digest: module.digest.to_string(),
                    grants: grants.to_vec(),
                    source: source.clone(),
                    first_use_key,
                },
                now,
            )
            .await?;
        // A re-install may change the grants a loaded copy was made with.
        self.loaded
            .lock()
            .expect("library lock poisoned")
            .remove(&module.digest.to_string());
        tracing::info!(plugin = %descriptor.name, version = %descriptor.version, digest = %module.digest, "plugin installed");
        Ok(PluginVersion {
            plugin: descriptor.name,
            version: descriptor.version,
            digest: module.digest.to_string(),
            grants: grants.to_vec(),
            installed_at: now,
            source,
        })
    }

    /// The installed version `version`, loaded.
    pub async fn load(&self, version: &PluginVersion) -> anyhow::Result<Arc<Loaded>> {
        if let Some(l) = self
            .loaded
            .lock()
            .expect("library lock poisoned")
            .get(&version.digest)
        {
            return Ok(l.clone());
        }
        let digest: Digest = version
            .digest
            .parse()
            .map_err(|e| anyhow::anyhow!("plugin `{}`: {e}", version.plugin))?;
        let path = self.path(&digest);
        let bytes = std::fs::read(&path).with_context(|| {
            format!(
                "plugin `{}` {} is installed but its component {} cannot be read",
                version.plugin,
                version.version,
                path.display()
            )
        })?;
        if Digest::of(&bytes) != digest {
            anyhow::bail!(
                "the component of plugin `{}` {} at {} does not match its digest {}",
                version.plugin,
                version.version,
                path.display(),
                version.digest
            );
        }
        let module = self.runtime.load(&bytes).await?;
        let descriptor = self.describe(&module).await?;
        let grants: Grants = parse_grants(&version.grants)?.into_iter().collect();
        let loaded = Arc::new(Loaded {
            module,
            descriptor,
            grants,
        });
        self.loaded
            .lock()
            .expect("library lock poisoned")
            .insert(version.digest.clone(), loaded.clone());
        Ok(loaded)
    }

    async fn describe(&self, module: &Module) -> anyhow::Result<Descriptor> {
        self.runtime
            .describe(module)
            .await
            .result
            .map_err(|e| anyhow::anyhow!("the plugin's `describe` failed: {e}"))
    }

    /// The bytes of an installed component.
    pub fn bytes(&self, version: &PluginVersion) -> anyhow::Result<Vec<u8>> {
        let digest: Digest = version
            .digest
            .parse()
            .map_err(|e| anyhow::anyhow!("plugin `{}`: {e}", version.plugin))?;
        let path = self.path(&digest);
        std::fs::read(&path).with_context(|| format!("cannot read {}", path.display()))
    }

    fn path(&self, digest: &Digest) -> PathBuf {
        self.dir.join(format!("sha256-{}.wasm", digest.hex()))
    }
}
