//! Precompiled components on disk, keyed by the module's sha256 and the
//! engine's compatibility hash.
//!
//! Deserialising an artifact is only sound for bytes wasmtime produced, so
//! the cache only loads files it wrote: each artifact has a sidecar with
//! the sha256 of the artifact itself, written after the artifact, and a
//! mismatch (a torn write, a foreign file) means recompile.

use std::hash::{Hash, Hasher};
use std::io::Write;
use std::path::{Path, PathBuf};

use serde::Serialize;
use steward_contract::Digest;
use wasmtime::Engine;
use wasmtime::component::Component;

/// Where a loaded component came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum ArtifactSource {
    /// Compiled from the wasm bytes now (and written to the cache).
    Compiled,
    /// Loaded from a precompiled artifact on disk.
    Cache,
}

/// The on-disk artifact cache.
#[derive(Debug, Clone)]
pub struct ArtifactCache {
    dir: PathBuf,
    engine_key: String,
}

impl ArtifactCache {
    /// Opens (creating if needed, mode 0700) the cache directory.
    pub fn open(dir: &Path, engine: &Engine) -> std::io::Result<Self> {
        std::fs::create_dir_all(dir)?;
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))?;
        }
        let mut hasher = std::collections::hash_map::DefaultHasher::new();
        engine.precompile_compatibility_hash().hash(&mut hasher);
        Ok(Self {
            dir: dir.to_path_buf(),
            engine_key: format!("{:016x}", hasher.finish()),
        })
    }

    /// The artifact's path for `digest` on this engine.
    pub fn artifact_path(&self, digest: &Digest) -> PathBuf {
        self.dir
            .join(format!("{}-{}.cwasm", digest.hex(), self.engine_key))
    }

    fn sidecar_path(&self, digest: &Digest) -> PathBuf {
        self.artifact_path(digest).with_extension("cwasm.sha256")
    }

    /// Loads the precompiled component for `digest`, or compiles `bytes`
    /// and stores the artifact.
    pub fn load_or_compile(
        &self,
        engine: &Engine,
        digest: &Digest,
        bytes: &[u8],
    ) -> wasmtime::Result<(Component, ArtifactSource)> {
        if let Some(component) = self.try_load(engine, digest) {
            return Ok((component, ArtifactSource::Cache));
        }
        let artifact = engine.precompile_component(bytes)?;
        if let Err(err) = self.store(digest, &artifact) {
            tracing::warn!(%err, %digest, "could not write the compiled artifact; it will be compiled again next time");
        }
        // SAFETY: `artifact` was produced by `precompile_component` on this
        // very engine a moment ago.
        let component = unsafe { Component::deserialize(engine, &artifact)? };
        Ok((component, ArtifactSource::Compiled))
    }

    fn try_load(&self, engine: &Engine, digest: &Digest) -> Option<Component> {
        let artifact = std::fs::read(self.artifact_path(digest)).ok()?;
        let expected = std::fs::read_to_string(self.sidecar_path(digest)).ok()?;
        if Digest::of(&artifact).to_string() != expected.trim() {
            tracing::warn!(%digest, "cached artifact does not match its checksum; recompiling");
            return None;
        }
        // SAFETY: the artifact's checksum matches the sidecar this cache
        // wrote after writing the artifact it compiled itself, and the file
        // name carries this engine's compatibility hash.
        match unsafe { Component::deserialize(engine, &artifact) } {
            Ok(c) => Some(c),
            Err(err) => {
                tracing::warn!(%err, %digest, "cached artifact was refused; recompiling");
                None
            }
        }
    }

    fn store(&self, digest: &Digest, artifact: &[u8]) -> std::io::Result<()> {
        write_atomically(&self.artifact_path(digest), artifact)?;
        write_atomically(
            &self.sidecar_path(digest),
            Digest::of(artifact).to_string().as_bytes(),
        )
    }
}

fn write_atomically(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let dir = path.parent().unwrap_or(Path::new("."));
    let mut tmp = tempfile::NamedTempFile::new_in(dir)?;
    tmp.write_all(bytes)?;
    tmp.as_file().sync_all()?;
    tmp.persist(path).map(|_| ()).map_err(|e| e.error)
}
