//! Installed plugins: component bytes kept by digest in the data
//! directory, versions and grants in the store, modules loaded once.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use anyhow::Context as _;
use steward_registry::Digest;

use crate::bindings::types::Descriptor;
use crate::capability::{Grant, Grants};
use crate::runtime::{Module, Runtime};
use crate::store::{NewPluginVersion, PluginSource, PluginVersion, Store, Timestamp, TrustedKey};

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
    ) -> anyhow::Result<PluginVersion> {
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
    ) -> anyhow::Result<PluginVersion> {
        let (source, expected_version, first_use_key) = match provenance {
            Some(p) => (Some(p.source), Some(p.version), p.first_use_key),
            None => (None, None, None),
        };
        let parsed: Vec<Grant> = grants
            .iter()
            .map(|g| {
                g.parse::<Grant>()
                    .map_err(|e| anyhow::anyhow!("grant `{g}`: {e}"))
            })
            .collect::<anyhow::Result<_>>()?;
        let module = self.runtime.load(bytes)?;
        let granted: Grants = parsed.into_iter().collect();
        module.authorize(&granted)?;
        let descriptor = self.describe(&module).await?;
        if let Some(source) = &source {
            let expected = source.module.rsplit('/').next().unwrap_or(&source.module);
            anyhow::ensure!(
                descriptor.name == expected
                    && Some(&descriptor.version) == expected_version.as_ref(),
                "the component describes itself as `{}` {}, but the registry published it as `{}` {}",
                descriptor.name,
                descriptor.version,
                source.module,
                expected_version.unwrap_or_default()
            );
        }
        let path = self.path(&module.digest);
        if !path.exists() {
            let tmp = tempfile::NamedTempFile::new_in(&self.dir)?;
            std::fs::write(tmp.path(), bytes)?;
            tmp.persist(&path)
                .with_context(|| format!("failed to write {}", path.display()))?;
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
        let module = self.runtime.load(&bytes)?;
        let descriptor = self.describe(&module).await?;
        let grants: Grants = version
            .grants
            .iter()
            .map(|g| {
                g.parse::<Grant>()
                    .map_err(|e| anyhow::anyhow!("grant `{g}`: {e}"))
            })
            .collect::<anyhow::Result<_>>()?;
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
