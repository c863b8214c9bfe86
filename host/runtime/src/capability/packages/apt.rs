//! The dpkg/apt provider, on a configurable root.
//!
//! Every apt and dpkg call is pointed at `root` (`-o Dir=ROOT`, the dpkg
//! status file under it, `DPkg::Options::=--root=ROOT`), so tests run against
//! a sandbox root with a local repository and never touch this machine's own
//! packages; production uses `/`.
//!
//! - updates: the `Inst` lines of a simulated `dist-upgrade` that ignores
//!   holds, marked held from dpkg's selections, security when the archive's
//!   origin, label or suite says so;
//! - plan: a simulated `install --only-upgrade`, so the plan lists exactly
//!   what apt would install, dependencies included;
//! - apply: the same simulation, then the real install, then a check that
//!   dpkg now has every planned version.

use std::path::{Path, PathBuf};
use std::process::Stdio;

use async_trait::async_trait;
use tokio::process::Command;

use super::PackagesProvider;
use crate::bindings::packages::{AvailableUpdate, InstalledPackage, PackageChange, RebootStatus};
use crate::bindings::types::{HostError, Outcome, RunMode};
use crate::store::outcome_for;

/// apt and dpkg on `root`.
#[derive(Debug, Clone)]
pub struct Apt {
    root: PathBuf,
    /// Run `apt-get update` before listing updates.
    refresh: bool,
}

/// One `Inst` line of apt's simulation.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Planned {
    name: String,
    from: Option<String>,
    to: String,
    origin: String,
}

impl Apt {
    /// A provider for the system rooted at `root` (`/` for this machine).
    pub fn new(root: impl Into<PathBuf>, refresh: bool) -> Self {
        Self {
            root: root.into(),
            refresh,
        }
    }

    fn root_str(&self) -> String {
        self.root.display().to_string()
    }

    fn apt_options(&self) -> Vec<String> {
        let r = self.root_str();
        [
            format!("Dir={r}"),
            format!("Dir::State::status={r}/var/lib/dpkg/status"),
            format!("Dir::Etc::sourcelist={r}/etc/apt/sources.list"),
            format!("Dir::Etc::sourceparts={r}/etc/apt/sources.list.d"),
            format!("Dir::Etc::Parts={r}/etc/apt/apt.conf.d"),
            format!("Dir::Etc::Preferences={r}/etc/apt/preferences"),
            format!("Dir::Etc::PreferencesParts={r}/etc/apt/preferences.d"),
            format!("DPkg::Options::=--root={r}"),
            format!("DPkg::Options::=--admindir={r}/var/lib/dpkg"),
            "DPkg::Options::=--force-confold".to_string(),
            "APT::Sandbox::User=root".to_string(),
        ]
        .into_iter()
        .flat_map(|o| ["-o".to_string(), o])
        .collect()
    }

    async fn apt_get(&self, args: &[&str]) -> Result<String, HostError> {
        let mut cmd = Command::new("apt-get");
        cmd.args(self.apt_options()).args(args);
        if self.root != Path::new("/") {
            // Maintainer scripts cannot chroot into a sandbox root that has
            // no shell; run them from the host instead.
            cmd.args(["-o", "DPkg::Options::=--force-script-chrootless"]);
        }
        run(cmd.env("DEBIAN_FRONTEND", "noninteractive"), "apt-get").await
    }

    async fn installed_map(&self) -> Result<Vec<(InstalledPackage, bool)>, HostError> {
        let mut cmd = Command::new("dpkg-query");
        cmd.arg(format!("--admindir={}/var/lib/dpkg", self.root_str()))
            .args(["-W", "-f", "${Package}\\t${Version}\\t${Architecture}\\t${db:Status-Abbrev}\\t${db:Status-Want}\\n"]);
        let out = run(&mut cmd, "dpkg-query").await?;
        Ok(out
            .lines()
            .filter_map(|l| {
                let f: Vec<&str> = l.split('\t').collect();
                (f.len() == 5 && f[3].trim().ends_with('i')).then(|| {
                    (
                        InstalledPackage {
                            name: f[0].into(),
                            version: f[1].into(),
                            architecture: f[2].into(),
                        },
                        f[4] == "hold",
                    )
                })
            })
            .collect())
    }

    async fn simulate_upgrade(&self, names: &[String]) -> Result<Vec<Planned>, HostError> {
        let mut args = vec!["-s", "install", "--only-upgrade"];
        args.extend(names.iter().map(String::as_str));
        Ok(parse_simulation(&self.apt_get(&args).await?))
    }
}

async fn run(cmd: &mut Command, what: &str) -> Result<String, HostError> {
    let out = cmd
        .stdin(Stdio::null())
        .kill_on_drop(true)
        .output()
        .await
        .map_err(|e| HostError::Unavailable(format!("cannot run `{what}`: {e}")))?;
    if !out.status.success() {
        let stderr = String::from_utf8_lossy(&out.stderr);
        let last = stderr.lines().rfind(|l| !l.trim().is_empty()).unwrap_or("");
        return Err(HostError::Failed(format!(
            "`{what}` exited with {}: {last}",
            out.status
        )));
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// Parses `Inst name [old] (new origin:suite [arch])` lines.
fn parse_simulation(output: &str) -> Vec<Planned> {
    output
        .lines()
        .filter_map(|line| {
            let rest = line.strip_prefix("Inst ")?;
            let (name, rest) = rest.split_once(' ')?;
            let (from, rest) = match rest.strip_prefix('[') {
                Some(r) => {
                    let (old, r) = r.split_once("] ")?;
                    (Some(old.to_string()), r)
                }
                None => (None, rest),
            };
            let inner = rest.strip_prefix('(')?;
            let mut parts = inner.split(' ');
            let to = parts.next()?.to_string();
            let origin = parts
                .take_while(|p| !p.starts_with('['))
                .collect::<Vec<_>>()
                .join(" ");
            Some(Planned {
                name: name.to_string(),
                from,
                to,
                origin,
            })
        })
        .collect()
}

fn is_security(origin: &str) -> bool {
    origin.to_ascii_lowercase().contains("security")
}

#[async_trait]
impl PackagesProvider for Apt {
    async fn installed(&self) -> Result<Vec<InstalledPackage>, HostError> {
        Ok(self
            .installed_map()
            .await?
            .into_iter()
            .map(|(p, _)| p)
            .collect())
    }

    async fn updates(&self) -> Result<Vec<AvailableUpdate>, HostError> {
        if self.refresh {
            self.apt_get(&["update", "-q"]).await.map_err(|e| match e {
                HostError::Failed(m) => {
                    HostError::Unavailable(format!("cannot refresh package lists: {m}"))
                }
                other => other,
            })?;
        }
        let held: Vec<String> = self
            .installed_map()
            .await?
            .into_iter()
            .filter(|(_, h)| *h)
            .map(|(p, _)| p.name)
            .collect();
        let sim = self
            .apt_get(&["-s", "-o", "APT::Ignore-Hold=true", "dist-upgrade"])
            .await?;
        Ok(parse_simulation(&sim)
            .into_iter()
            .filter_map(|p| {
                Some(AvailableUpdate {
                    held: held.contains(&p.name),
                    security: is_security(&p.origin),
                    installed_version: p.from?,
                    candidate_version: p.to,
                    origin: p.origin,
                    name: p.name,
                })
            })
            .collect())
    }

    async fn reboot_required(&self) -> Result<RebootStatus, HostError> {
        let flag = self.root.join("var/run/reboot-required");
        let pkgs = std::fs::read_to_string(self.root.join("var/run/reboot-required.pkgs"))
            .unwrap_or_default();
        Ok(RebootStatus {
            required: flag.exists(),
            packages: pkgs
                .lines()
                .map(str::trim)
                .filter(|l| !l.is_empty())
                .map(String::from)
                .collect(),
        })
    }

    async fn install_updates(
        &self,
        names: &[String],
        mode: RunMode,
    ) -> Result<Vec<PackageChange>, HostError> {
        if let Some(bad) = names
            .iter()
            .find(|n| n.is_empty() || n.starts_with('-') || n.contains(char::is_whitespace))
        {
            return Err(HostError::InvalidArgument(format!(
                "`{bad}` is not a package name"
            )));
        }
        let installed = self.installed_map().await?;
        for name in names {
            match installed.iter().find(|(p, _)| &p.name == name) {
                None => return Err(HostError::NotFound(format!("`{name}` is not installed"))),
                Some((_, true)) => {
                    return Err(HostError::InvalidArgument(format!("`{name}` is held back")));
                }
                Some(_) => {}
            }
        }
        let planned = self.simulate_upgrade(names).await?;
        if mode == RunMode::Apply && !planned.is_empty() {
            let mut args = vec!["-y", "-q", "install", "--only-upgrade"];
            args.extend(names.iter().map(String::as_str));
            self.apt_get(&args).await?;
            let now = self.installed_map().await?;
            for p in &planned {
                let ok = now
                    .iter()
                    .any(|(i, _)| i.name == p.name && i.version == p.to);
                if !ok {
                    return Err(HostError::Failed(format!(
                        "apt finished but `{}` is not at {}",
                        p.name, p.to
                    )));
                }
            }
        }
        Ok(planned
            .into_iter()
            .map(|p| PackageChange {
                name: p.name,
                from_version: p.from,
                to_version: p.to,
                outcome: outcome_for(mode),
            })
            .collect())
    }

    async fn schedule_reboot(&self, reason: &str, mode: RunMode) -> Result<Outcome, HostError> {
        if mode == RunMode::Apply {
            let dir = self.root.join("var/lib/steward");
            std::fs::create_dir_all(&dir)
                .and_then(|_| std::fs::write(dir.join("reboot-requested"), reason))
                .map_err(|e| HostError::Failed(format!("cannot record the reboot request: {e}")))?;
        }
        Ok(outcome_for(mode))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_apt_simulation_lines() {
        let out = "NOTE: simulation\nInst libfoo [1.0] (1.1 Debian-Security:stable-security [all])\nInst newdep (2.0 Debian:stable [amd64])\nConf libfoo (1.1 Debian-Security:stable-security [all])\n";
        let p = parse_simulation(out);
        assert_eq!(p.len(), 2);
        assert_eq!(p[0].name, "libfoo");
        assert_eq!(p[0].from.as_deref(), Some("1.0"));
        assert_eq!(p[0].to, "1.1");
        assert!(is_security(&p[0].origin));
        assert_eq!(p[1].from, None);
        assert!(!is_security(&p[1].origin));
    }
}
