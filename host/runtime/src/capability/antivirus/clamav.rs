//! The ClamAV provider (Debian's `clamav` and `clamav-daemon` packages).
//!
//! Status from `clamscan --version`, the database directory (the header of a
//! `.cvd`/`.cld` carries its version) and whether a `clamd` process runs;
//! scans with `clamscan`; signature updates with `freshclam` against the
//! configured private mirror; quarantine moves a file into a directory of
//! mode 0700 as mode 0400 beside a JSON record, restorable by id.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::SystemTime;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};
use tokio::process::Command;

use super::AntivirusProvider;
use crate::bindings::antivirus::{
    Detection, EngineStatus, QuarantineRecord, ScanReport, SignatureDatabase,
};
use crate::bindings::types::{HostError, Outcome, RunMode};
use crate::capability::clock::instant_of;
use crate::store::outcome_for;

/// ClamAV on this machine.
#[derive(Debug, Clone)]
pub struct ClamAv {
    /// Where the signature databases live (`/var/lib/clamav`).
    pub database_dir: PathBuf,
    /// Where quarantined files go.
    pub quarantine_dir: PathBuf,
    /// The private mirror freshclam updates from (`http://mirror.example`);
    /// updates are refused when unset.
    pub mirror: Option<String>,
}

/// The record kept beside each quarantined file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct QuarantineEntry {
    /// Quarantine id (the file's name in the quarantine directory).
    pub id: String,
    /// Where the file was.
    pub original_path: String,
    /// What it was detected as.
    pub signature: String,
    /// Unix seconds when it was quarantined.
    pub quarantined_at: u64,
}

/// The version in a `.cvd`/`.cld` header: `ClamAV-VDB:<date>:<version>:...`.
fn cvd_version(path: &Path) -> Option<String> {
    use std::io::Read;
    let mut header = [0u8; 512];
    std::fs::File::open(path)
        .ok()?
        .read_exact(&mut header)
        .ok()?;
    let text = String::from_utf8_lossy(&header);
    let mut fields = text.split(':');
    (fields.next()? == "ClamAV-VDB").then_some(())?;
    fields.nth(1).map(|v| v.trim().to_string())
}

fn process_running(name: &str) -> bool {
    std::fs::read_dir("/proc")
        .map(|entries| {
            entries.flatten().any(|e| {
                std::fs::read_to_string(e.path().join("comm")).is_ok_and(|c| c.trim() == name)
            })
        })
        .unwrap_or(false)
}

/// `path: Signature FOUND` lines and the `Scanned files:` count.
fn parse_scan(output: &str) -> (Vec<Detection>, u64) {
    let detections = output
        .lines()
        .filter_map(|l| {
            let rest = l.strip_suffix(" FOUND")?;
            let (path, signature) = rest.rsplit_once(": ")?;
            Some(Detection {
                path: path.to_string(),
                signature: signature.to_string(),
            })
        })
        .collect();
    let scanned = output
        .lines()
        .find_map(|l| l.strip_prefix("Scanned files: "))
        .and_then(|n| n.trim().parse().ok())
        .unwrap_or(0);
    (detections, scanned)
}

async fn output(cmd: &mut Command, what: &str) -> Result<std::process::Output, HostError> {
    cmd.stdin(Stdio::null())
        .kill_on_drop(true)
        .output()
        .await
        .map_err(|e| {
            HostError::Unavailable(format!("cannot run `{what}` (is ClamAV installed?): {e}"))
        })
}

impl ClamAv {
    fn record_path(&self, id: &str) -> PathBuf {
        self.quarantine_dir.join(format!("{id}.json"))
    }

    /// Puts a quarantined file back where it was and forgets the record.
    pub fn restore(&self, id: &str) -> Result<QuarantineEntry, HostError> {
        if id.is_empty() || !id.chars().all(|c| c.is_ascii_alphanumeric() || c == '-') {
            return Err(HostError::InvalidArgument(format!(
                "`{id}` is not a quarantine id"
            )));
        }
        let record = std::fs::read_to_string(self.record_path(id))
            .map_err(|_| HostError::NotFound(format!("no quarantined file `{id}`")))?;
        let entry: QuarantineEntry = serde_json::from_str(&record).map_err(|e| {
            HostError::Failed(format!("quarantine record `{id}` is unreadable: {e}"))
        })?;
        let original = Path::new(&entry.original_path);
        if original.exists() {
            return Err(HostError::InvalidArgument(format!(
                "`{}` exists again; not overwriting it",
                entry.original_path
            )));
        }
        move_file(&self.quarantine_dir.join(id), original)
            .map_err(|e| HostError::Failed(format!("cannot restore `{id}`: {e}")))?;
        set_mode(original, 0o600).map_err(HostError::failed)?;
        std::fs::remove_file(self.record_path(id)).map_err(HostError::failed)?;
        Ok(entry)
    }

    /// Every quarantined file's record.
    pub fn quarantined(&self) -> Vec<QuarantineEntry> {
        let Ok(entries) = std::fs::read_dir(&self.quarantine_dir) else {
            return Vec::new();
        };
        let mut out: Vec<QuarantineEntry> = entries
            .flatten()
            .filter(|e| e.path().extension().is_some_and(|x| x == "json"))
            .filter_map(|e| serde_json::from_str(&std::fs::read_to_string(e.path()).ok()?).ok())
            .collect();
        out.sort_by(|a, b| a.id.cmp(&b.id));
        out
    }
}

fn move_file(from: &Path, to: &Path) -> std::io::Result<()> {
    match std::fs::rename(from, to) {
        Ok(()) => Ok(()),
        // Across file systems: copy, then remove.
        Err(_) => {
            std::fs::copy(from, to)?;
            std::fs::remove_file(from)
        }
    }
}

fn set_mode(path: &Path, mode: u32) -> std::io::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))
}

#[async_trait]
impl AntivirusProvider for ClamAv {
    async fn status(&self) -> Result<EngineStatus, HostError> {
        let version = match Command::new("clamscan").arg("--version").output().await {
            Ok(o) if o.status.success() => {
                let text = String::from_utf8_lossy(&o.stdout);
                text.trim()
                    .strip_prefix("ClamAV ")
                    .map(|v| v.split('/').next().unwrap_or(v).to_string())
            }
            _ => {
                return Ok(EngineStatus {
                    installed: false,
                    engine: "ClamAV".into(),
                    version: None,
                    service_running: false,
                    databases: Vec::new(),
                });
            }
        };
        let mut databases: Vec<SignatureDatabase> = std::fs::read_dir(&self.database_dir)
            .map(|d| d.flatten().collect::<Vec<_>>())
            .unwrap_or_default()
            .into_iter()
            .filter(|e| {
                let p = e.path();
                let ext = p.extension().and_then(|x| x.to_str()).unwrap_or("");
                matches!(
                    ext,
                    "cvd"
                        | "cld"
                        | "hdb"
                        | "hsb"
                        | "mdb"
                        | "ndb"
                        | "ldb"
                        | "cdb"
                        | "ign2"
                        | "fp"
                        | "sfp"
                )
            })
            .map(|e| {
                let path = e.path();
                SignatureDatabase {
                    name: e.file_name().to_string_lossy().into_owned(),
                    version: cvd_version(&path),
                    updated: e.metadata().and_then(|m| m.modified()).ok().map(instant_of),
                }
            })
            .collect();
        databases.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(EngineStatus {
            installed: true,
            engine: "ClamAV".into(),
            version,
            service_running: process_running("clamd"),
            databases,
        })
    }

    async fn scan(&self, paths: &[String]) -> Result<ScanReport, HostError> {
        if let Some(missing) = paths.iter().find(|p| !Path::new(p).exists()) {
            return Err(HostError::NotFound(format!(
                "no file or directory `{missing}`"
            )));
        }
        for path in paths {
            without_links(path)?;
        }
        let started = instant_of(SystemTime::now());
        let out = output(
            Command::new("clamscan")
                .arg("--database")
                .arg(&self.database_dir)
                .args(["--recursive", "--stdout", "--infected", "--"])
                .args(paths),
            "clamscan",
        )
        .await?;
        // 0: clean, 1: detections, anything else: an error.
        let stdout = String::from_utf8_lossy(&out.stdout);
        if !matches!(out.status.code(), Some(0 | 1)) {
            let stderr = String::from_utf8_lossy(&out.stderr);
            let reason = stderr
                .lines()
                .rfind(|l| !l.trim().is_empty())
                .unwrap_or("no output");
            return Err(HostError::Failed(format!(
                "clamscan failed ({}): {reason}",
                out.status
            )));
        }
        let (detections, scanned_files) = parse_scan(&stdout);
        Ok(ScanReport {
            paths: paths.to_vec(),
            scanned_files,
            detections,
            started,
            finished: instant_of(SystemTime::now()),
        })
    }

    async fn update_signatures(&self, mode: RunMode) -> Result<Outcome, HostError> {
        let mirror = self.mirror.as_ref().ok_or_else(|| {
            HostError::Unavailable("no signature mirror is configured for this device".into())
        })?;
        if mode == RunMode::Plan {
            return Ok(Outcome::Planned);
        }
        let config = tempfile::NamedTempFile::new().map_err(HostError::failed)?;
        let owner = if running_as_root() { "root" } else { "clamav" };
        std::fs::write(
            config.path(),
            format!(
                "DatabaseDirectory {}\nPrivateMirror {mirror}\nDNSDatabaseInfo no\nMaxAttempts 1\nConnectTimeout 10\nReceiveTimeout 60\nDatabaseOwner {owner}\n",
                self.database_dir.display()
            ),
        )
        .map_err(HostError::failed)?;
        let out = output(
            Command::new("freshclam")
                .arg(format!("--config-file={}", config.path().display()))
                .arg("--stdout"),
            "freshclam",
        )
        .await?;
        if !out.status.success() {
            let text = String::from_utf8_lossy(&out.stdout);
            let reason = text
                .lines()
                .filter_map(|l| l.strip_prefix("ERROR: "))
                .find(|l| l.contains("process failed"))
                .or_else(|| text.lines().rfind(|l| l.starts_with("ERROR: ")))
                .unwrap_or("no output");
            return Err(HostError::Unavailable(format!(
                "signature update from `{mirror}` failed: {reason}"
            )));
        }
        Ok(Outcome::Applied)
    }

    async fn quarantine(
        &self,
        path: &str,
        signature: &str,
        mode: RunMode,
    ) -> Result<QuarantineRecord, HostError> {
        let source = Path::new(path);
        if !source.is_file() {
            return Err(HostError::NotFound(format!("no file at `{path}`")));
        }
        // The grant was checked on the path as written; a symbolic link on
        // the way would move a file from outside it.
        without_links(path)?;
        // Only a file a scan detects, with that signature, is quarantined.
        let report = self.scan(&[path.to_owned()]).await?;
        if !report.detections.iter().any(|d| {
            d.path == path
                && (d.signature == signature
                    || d.signature.strip_suffix(".UNOFFICIAL") == Some(signature))
        }) {
            return Err(HostError::Denied(format!(
                "no scan detects `{signature}` in `{path}`; only detected files are quarantined"
            )));
        }
        let now = SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .unwrap_or_default();
        let id = match mode {
            RunMode::Plan => "planned".to_string(),
            RunMode::Apply => {
                steward_contract::Digest::of(format!("{path}\0{}", now.as_nanos()).as_bytes())
                    .short()
            }
        };
        if mode == RunMode::Apply {
            std::fs::create_dir_all(&self.quarantine_dir)
                .and_then(|_| set_mode(&self.quarantine_dir, 0o700))
                .map_err(|e| {
                    HostError::Failed(format!("cannot prepare the quarantine directory: {e}"))
                })?;
            let entry = QuarantineEntry {
                id: id.clone(),
                original_path: path.to_string(),
                signature: signature.to_string(),
                quarantined_at: now.as_secs(),
            };
            let target = self.quarantine_dir.join(&id);
            move_file(source, &target)
                .and_then(|_| set_mode(&target, 0o400))
                .map_err(|e| HostError::Failed(format!("cannot quarantine `{path}`: {e}")))?;
            let record = serde_json::to_string_pretty(&entry).map_err(HostError::failed)?;
            std::fs::write(self.record_path(&id), record)
                .and_then(|_| set_mode(&self.record_path(&id), 0o600))
                .map_err(|e| {
                    HostError::Failed(format!("cannot write the quarantine record: {e}"))
                })?;
        }
        Ok(QuarantineRecord {
            id,
            original_path: path.to_string(),
            signature: signature.to_string(),
            outcome: outcome_for(mode),
        })
    }
}

/// Refuses a path that goes through a symbolic link (or `.`/`..`): what
/// the grant's scope was checked against must be the file that is touched.
fn without_links(path: &str) -> Result<(), HostError> {
    let given = Path::new(path);
    let resolved = std::fs::canonicalize(given)
        .map_err(|e| HostError::NotFound(format!("cannot resolve `{path}`: {e}")))?;
    let plain = given.is_absolute()
        && given.components().all(|c| {
            !matches!(
                c,
                std::path::Component::CurDir | std::path::Component::ParentDir
            )
        });
    let normal: PathBuf = given.components().collect();
    if !plain || resolved != normal {
        return Err(HostError::Denied(format!(
            "`{path}` goes through a symbolic link (it is `{}`); antivirus calls follow no links",
            resolved.display()
        )));
    }
    Ok(())
}

fn running_as_root() -> bool {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("Uid:"))
                .map(|l| l.split_whitespace().nth(1) == Some("0"))
        })
        .unwrap_or(false)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_clamscan_output() {
        let out = "/srv/a/eicar.com: Steward.Test.EICAR.UNOFFICIAL FOUND\n\n----------- SCAN SUMMARY -----------\nScanned files: 2\nInfected files: 1\n";
        let (d, n) = parse_scan(out);
        assert_eq!(n, 2);
        assert_eq!(d[0].path, "/srv/a/eicar.com");
        assert_eq!(d[0].signature, "Steward.Test.EICAR.UNOFFICIAL");
    }
}
