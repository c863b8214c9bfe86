//! Local Linux accounts under a configurable root: `etc/passwd`,
//! `etc/shadow`, `etc/group` and pam_faillock's tally files.
//!
//! An account is locked when its shadow password starts with `!`
//! (`usermod -L`, `passwd -l`) in front of a password hash (`!` alone or
//! `!*` means the account never had a password, which is not a lockout) or
//! when pam_faillock has counted `deny`
//! failures within `fail_interval` and `unlock_time` has not passed. The
//! faillock settings come from `etc/security/faillock.conf` under the root
//! with pam's defaults (deny 3, fail_interval 900 s, unlock_time 600 s,
//! dir `/var/run/faillock`).
//!
//! Unlocking removes the shadow `!` (like `usermod -U`) and empties the tally
//! file (like `faillock --reset`). Files are replaced atomically with their
//! mode and owner kept.

use std::collections::BTreeMap;
use std::io::Write as _;
use std::os::unix::fs::{MetadataExt as _, PermissionsExt as _};
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use async_trait::async_trait;

use super::AccountsProvider;
use crate::bindings::accounts::{Account, AccountSource};
use crate::bindings::types::{HostError, Instant, Outcome, RunMode};
use crate::store::outcome_for;

/// Local accounts on the device (or under a chroot-style root).
#[derive(Debug, Clone)]
pub struct LocalAccounts {
    root: PathBuf,
    /// Accounts below this uid are listed only when pam_faillock has a tally
    /// file for them.
    min_uid: u32,
}

/// pam_faillock settings.
#[derive(Debug, Clone, PartialEq)]
struct Faillock {
    dir: PathBuf,
    deny: u32,
    fail_interval: u64,
    unlock_time: u64,
}

/// `struct tally` from pam_faillock: 52-byte source, u16 reserved, u16
/// status, u64 time; native endianness.
const TALLY_SIZE: usize = 64;
const TALLY_STATUS_VALID: u16 = 0x1;

struct Passwd {
    name: String,
    uid: u32,
    gid: u32,
}

impl LocalAccounts {
    /// Accounts under `root` (`/` for this machine).
    pub fn new(root: impl Into<PathBuf>) -> Self {
        Self {
            root: root.into(),
            min_uid: 1000,
        }
    }

    fn path(&self, relative: &str) -> PathBuf {
        self.root.join(relative.trim_start_matches('/'))
    }

    fn read(&self, relative: &str) -> Result<String, HostError> {
        let path = self.path(relative);
        std::fs::read_to_string(&path)
            .map_err(|e| HostError::Unavailable(format!("cannot read {}: {e}", path.display())))
    }

    fn faillock(&self) -> Faillock {
        let mut settings = Faillock {
            dir: self.path("var/run/faillock"),
            deny: 3,
            fail_interval: 900,
            unlock_time: 600,
        };
        let Ok(text) = std::fs::read_to_string(self.path("etc/security/faillock.conf")) else {
            return settings;
        };
        for line in text.lines().map(str::trim) {
            if line.starts_with('#') {
                continue;
            }
            let Some((key, value)) = line.split_once('=') else {
                continue;
            };
            let value = value.trim();
            match key.trim() {
                "dir" => settings.dir = self.path(value),
                "deny" => settings.deny = value.parse().unwrap_or(settings.deny),
                "fail_interval" => {
                    settings.fail_interval = value.parse().unwrap_or(settings.fail_interval)
                }
                "unlock_time" => {
                    settings.unlock_time = match value {
                        "never" => 0,
                        v => v.parse().unwrap_or(settings.unlock_time),
                    }
                }
                _ => {}
            }
        }
        settings
    }

    /// Every account worth reporting, by name.
    fn accounts(&self) -> Result<BTreeMap<String, Account>, HostError> {
        let passwd = parse_passwd(&self.read("etc/passwd")?);
        let shadow = parse_colon_file(&self.read("etc/shadow")?);
        let groups = self.groups(&passwd)?;
        let faillock = self.faillock();
        let now = now_seconds();
        let mut accounts = BTreeMap::new();
        for user in &passwd {
            let tally_file = faillock.dir.join(&user.name);
            let tracked = tally_file.exists();
            if (user.uid < self.min_uid && !tracked) || user.name == "nobody" {
                continue;
            }
            let tally = read_tally(&tally_file);
            let fields = shadow.get(&user.name);
            let hash = fields.and_then(|f| f.first()).map_or("", String::as_str);
            // `!`, `!!` or `!*` alone: the account never had a password
            // (key- or service-only login), which is not a lockout.
            let no_password =
                hash.trim_start_matches('!').is_empty() || hash.trim_start_matches('!') == "*";
            let shadow_locked = hash.starts_with('!') && !no_password;
            let expired = fields
                .and_then(|f| f.get(6))
                .and_then(|d| d.parse::<i64>().ok())
                .is_some_and(|days| days * 86_400 <= now as i64);
            let recent: Vec<u64> = tally
                .iter()
                .copied()
                .filter(|t| {
                    faillock.fail_interval == 0 || now.saturating_sub(*t) <= faillock.fail_interval
                })
                .collect();
            let last_failure = recent.iter().copied().max();
            let tally_locked = faillock.deny > 0
                && recent.len() as u32 >= faillock.deny
                && last_failure.is_some_and(|t| {
                    faillock.unlock_time == 0 || now.saturating_sub(t) < faillock.unlock_time
                });
            accounts.insert(
                user.name.clone(),
                Account {
                    name: user.name.clone(),
                    path: None,
                    source: AccountSource::Local,
                    locked: shadow_locked || tally_locked,
                    locked_since: last_failure.filter(|_| tally_locked).map(|t| Instant {
                        seconds: t as i64,
                        nanoseconds: 0,
                    }),
                    failed_attempts: recent.len() as u32,
                    groups: groups.get(&user.name).cloned().unwrap_or_default(),
                    disabled: expired,
                },
            );
        }
        Ok(accounts)
    }

    fn groups(&self, passwd: &[Passwd]) -> Result<BTreeMap<String, Vec<String>>, HostError> {
        let text = self.read("etc/group")?;
        let mut by_user: BTreeMap<String, Vec<String>> = BTreeMap::new();
        for line in text.lines().filter(|l| !l.trim().is_empty()) {
            let fields: Vec<&str> = line.split(':').collect();
            let (Some(name), Some(gid)) = (fields.first(), fields.get(2)) else {
                continue;
            };
            let gid: Option<u32> = gid.parse().ok();
            let members = fields.get(3).copied().unwrap_or("");
            for user in passwd {
                let primary = gid == Some(user.gid);
                let listed = members.split(',').any(|m| m.trim() == user.name);
                if primary || listed {
                    by_user
                        .entry(user.name.clone())
                        .or_default()
                        .push((*name).to_string());
                }
            }
        }
        for groups in by_user.values_mut() {
            groups.sort();
            groups.dedup();
        }
        Ok(by_user)
    }

    /// Drops the `!` lock from `name`'s shadow hash; leaves the file alone
    /// when the hash carries none.
    fn unlock_shadow(&self, name: &str) -> Result<(), HostError> {
        let path = self.path("etc/shadow");
        let text = self.read("etc/shadow")?;
        let mut out = String::with_capacity(text.len());
        let mut changed = false;
        for line in text.split_inclusive('\n') {
            let mut fields: Vec<&str> = line.splitn(3, ':').collect();
            if fields.first() == Some(&name) && fields.len() == 3 && fields[1].starts_with('!') {
                changed = true;
                let unlocked = fields[1].trim_start_matches('!');
                if unlocked.is_empty() || unlocked == "*" {
                    return Err(HostError::Failed(format!(
                        "'{name}' has no password to restore; set one instead of unlocking"
                    )));
                }
                fields[1] = unlocked;
                out.push_str(&fields.join(":"));
            } else {
                out.push_str(line);
            }
        }
        if !changed {
            return Ok(());
        }
        replace_file(&path, out.as_bytes())
    }
}

#[async_trait]
impl AccountsProvider for LocalAccounts {
    async fn locked(&self) -> Result<Vec<Account>, HostError> {
        let this = self.clone();
        blocking(move || this.accounts())
            .await
            .map(|all| all.into_values().filter(|a| a.locked).collect())
    }

    async fn lookup(&self, name: &str) -> Result<Account, HostError> {
        let this = self.clone();
        let name = name.to_string();
        blocking(move || {
            this.accounts()?
                .remove(&name)
                .ok_or_else(|| HostError::NotFound(format!("no local account named '{name}'")))
        })
        .await
    }

    async fn unlock(&self, name: &str, mode: RunMode) -> Result<Outcome, HostError> {
        let account = self.lookup(name).await?;
        if mode == RunMode::Plan || !account.locked {
            return Ok(outcome_for(mode));
        }
        let this = self.clone();
        let name = name.to_string();
        blocking(move || {
            this.unlock_shadow(&name)?;
            let tally = this.faillock().dir.join(&name);
            if tally.exists() {
                replace_file(&tally, &[])?;
            }
            let after = this.accounts()?;
            match after.get(&name) {
                Some(a) if !a.locked => Ok(Outcome::Applied),
                _ => Err(HostError::Failed(format!(
                    "'{name}' is still locked after the unlock"
                ))),
            }
        })
        .await
    }
}

async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, HostError> + Send + 'static,
) -> Result<T, HostError> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| HostError::Failed(format!("local accounts task failed: {e}")))?
}

fn now_seconds() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

fn parse_passwd(text: &str) -> Vec<Passwd> {
    text.lines()
        .filter_map(|line| {
            let f: Vec<&str> = line.split(':').collect();
            Some(Passwd {
                name: f.first().filter(|n| !n.is_empty())?.to_string(),
                uid: f.get(2)?.parse().ok()?,
                gid: f.get(3)?.parse().ok()?,
            })
        })
        .collect()
}

/// `name:field:field...` → name → the remaining fields.
fn parse_colon_file(text: &str) -> BTreeMap<String, Vec<String>> {
    text.lines()
        .filter_map(|line| {
            let mut f = line.split(':');
            let name = f.next().filter(|n| !n.is_empty())?;
            Some((name.to_string(), f.map(str::to_string).collect()))
        })
        .collect()
}

/// Times of the valid failures in a pam_faillock tally file; none when the
/// file is absent or unreadable.
fn read_tally(path: &Path) -> Vec<u64> {
    let Ok(bytes) = std::fs::read(path) else {
        return Vec::new();
    };
    bytes
        .chunks_exact(TALLY_SIZE)
        .filter_map(|record| {
            let status = u16::from_ne_bytes([record[54], record[55]]);
            let time = u64::from_ne_bytes(record[56..64].try_into().ok()?);
            (status & TALLY_STATUS_VALID != 0).then_some(time)
        })
        .collect()
}

/// Replaces `path` with `contents` atomically, keeping mode and owner.
fn replace_file(path: &Path, contents: &[u8]) -> Result<(), HostError> {
    let fail =
        |e: std::io::Error| HostError::Failed(format!("cannot write {}: {e}", path.display()));
    let meta = std::fs::metadata(path).map_err(fail)?;
    let dir = path.parent().unwrap_or(Path::new("."));
    let mut tmp = tempfile::NamedTempFile::new_in(dir).map_err(fail)?;
    tmp.write_all(contents).map_err(fail)?;
    tmp.as_file().sync_all().map_err(fail)?;
    std::fs::set_permissions(
        tmp.path(),
        std::fs::Permissions::from_mode(meta.mode() & 0o7777),
    )
    .map_err(fail)?;
    std::os::unix::fs::chown(tmp.path(), Some(meta.uid()), Some(meta.gid())).map_err(fail)?;
    tmp.persist(path).map_err(|e| fail(e.error))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tally_records_are_read_by_status_and_time() {
        let dir = tempfile::tempdir().expect("temp dir");
        let mut bytes = Vec::new();
        for (status, time) in [(TALLY_STATUS_VALID | 0x2, 1_000u64), (0, 2_000), (1, 3_000)] {
            let mut record = [0u8; TALLY_SIZE];
            record[..4].copy_from_slice(b"tty1");
            record[54..56].copy_from_slice(&status.to_ne_bytes());
            record[56..].copy_from_slice(&time.to_ne_bytes());
            bytes.extend_from_slice(&record);
        }
        bytes.extend_from_slice(&[0u8; 10]); // a torn tail is ignored
        std::fs::write(dir.path().join("alice"), bytes).expect("write tally");
        assert_eq!(read_tally(&dir.path().join("alice")), vec![1_000, 3_000]);
        assert!(read_tally(&dir.path().join("nobody")).is_empty());
    }
}
