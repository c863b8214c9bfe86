//! A real `steward-registry` process on port 0, for the host's tests.
//!
//! The binary belongs to another package, so Cargo gives the host's tests
//! no `CARGO_BIN_EXE_` for it: [`binary`] builds it beside `steward`.

#![allow(dead_code)]

use std::io::BufRead as _;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdout, Command, Stdio};
use std::sync::OnceLock;

use steward_contract::Manifest;
use steward_registry::client::RegistryClient;

/// The `steward-registry` binary next to `steward`, built (or brought up
/// to date) once per test process with the same profile: `cargo test -p
/// steward-host` does not build other packages' binaries, and the build is
/// a no-op when the binary is current.
pub fn binary() -> &'static Path {
    static BIN: OnceLock<PathBuf> = OnceLock::new();
    BIN.get_or_init(|| {
        let bin = Path::new(env!("CARGO_BIN_EXE_steward")).with_file_name("steward-registry");
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
        let status = Command::new(cargo)
            .current_dir(env!("CARGO_MANIFEST_DIR"))
            .args([
                "build",
                "--quiet",
                "-p",
                "steward-registry-server",
                "--bin",
                "steward-registry",
            ])
            .status()
            .expect("run cargo build for steward-registry");
        assert!(status.success(), "building steward-registry failed");
        assert!(bin.exists(), "{} was not built", bin.display());
        bin
    })
}

/// A running registry; killed when dropped.
pub struct Registry {
    /// `http://127.0.0.1:PORT`.
    pub url: String,
    /// Its data directory.
    pub data_dir: PathBuf,
    child: Child,
    /// Kept open so the server never writes to a closed pipe.
    _stdout: std::io::Lines<std::io::BufReader<ChildStdout>>,
    _dir: tempfile::TempDir,
}

impl Registry {
    /// Starts `steward-registry serve` on port 0 with a SQLite index.
    pub fn start() -> Self {
        let dir = tempfile::tempdir().expect("temp dir");
        let data_dir = dir.path().join("data");
        let mut child = Command::new(binary())
            .args(["serve", "--listen", "127.0.0.1:0"])
            .arg("--data-dir")
            .arg(&data_dir)
            .env_remove("STEWARD_REGISTRY_DATABASE")
            .env_remove("STEWARD_REGISTRY_MAX_MODULE_BYTES")
            .env("STEWARD_REGISTRY_LOG", "warn")
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("start steward-registry serve");
        let mut lines = std::io::BufReader::new(child.stdout.take().unwrap()).lines();
        let line = lines
            .next()
            .expect("serve prints its address")
            .expect("UTF-8 output");
        let url = line
            .strip_prefix("steward-registry: listening on ")
            .unwrap_or_else(|| panic!("unexpected first line: {line}"))
            .to_owned();
        Self {
            url,
            data_dir,
            child,
            _stdout: lines,
            _dir: dir,
        }
    }

    /// `steward-registry publisher add NAME --namespace NS…`; its token.
    pub fn add_publisher(&self, name: &str, namespaces: &[&str], unsigned: bool) -> String {
        let mut cmd = Command::new(binary());
        cmd.args(["publisher", "add", name])
            .arg("--data-dir")
            .arg(&self.data_dir)
            .env("STEWARD_REGISTRY_LOG", "warn")
            .env_remove("STEWARD_REGISTRY_DATABASE");
        for ns in namespaces {
            cmd.args(["--namespace", ns]);
        }
        if unsigned {
            cmd.arg("--unsigned-namespace");
        }
        let out = cmd.output().expect("run publisher add");
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success(),
            "publisher add failed: {stdout}{}",
            String::from_utf8_lossy(&out.stderr)
        );
        stdout
            .lines()
            .find_map(|l| {
                l.strip_prefix("steward-registry: publisher token (shown once, keep it): ")
            })
            .unwrap_or_else(|| panic!("no token in: {stdout}"))
            .to_owned()
    }

    /// A client with `token`.
    pub fn client(&self, token: Option<&str>) -> RegistryClient {
        RegistryClient::new(&self.url, token.map(str::to_owned)).unwrap()
    }

    /// Where the registry keeps the blob with this digest.
    pub fn blob_path(&self, digest: &steward_contract::Digest) -> PathBuf {
        self.data_dir
            .join("blobs")
            .join("sha256")
            .join(digest.hex())
    }
}

impl Drop for Registry {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A manifest for `name` (`ns/module`) at `version` requesting
/// `capabilities`.
pub fn manifest(name: &str, version: &str, capabilities: &[&str]) -> Manifest {
    Manifest {
        name: name.into(),
        version: version.parse().unwrap(),
        description: format!("The {name} module, for tests"),
        license: "Apache-2.0".into(),
        homepage: None,
        wit: "steward:plugin@0.2.0".into(),
        capabilities: capabilities.iter().map(|s| s.to_string()).collect(),
    }
}
