//! Accounts in an LDAP directory: OpenLDAP with the password-policy overlay,
//! or Active Directory.
//!
//! The provider binds with the service credentials from its configuration
//! (never from the plugin) on a fresh connection per call, so a directory
//! restart costs one failed call and nothing else.
//!
//! | flavour | locked when | lock time | failures | unlock |
//! |---|---|---|---|---|
//! | OpenLDAP ppolicy | `pwdAccountLockedTime` present | that attribute (generalized time) | count of `pwdFailureTime` values | delete `pwdAccountLockedTime` (the overlay then drops `pwdFailureTime`) |
//! | Active Directory | `lockoutTime` > 0 | `lockoutTime` (FILETIME) | `badPwdCount` | replace `lockoutTime` with `0` |
//!
//! Group membership comes from a search for groups whose `member` names the
//! account, and is reported by the groups' `cn`.

use std::collections::{HashMap, HashSet};
use std::fmt;
use std::time::Duration;

use async_trait::async_trait;
use chrono::NaiveDateTime;
use ldap3::{
    Ldap, LdapConnAsync, LdapConnSettings, LdapError, Mod, Scope, SearchEntry, ldap_escape,
};
use serde::Deserialize;

use super::AccountsProvider;
use crate::bindings::accounts::{Account, AccountSource};
use crate::bindings::types::{HostError, Instant, Outcome, RunMode};
use crate::store::outcome_for;

/// Which directory server's lockout attributes to use.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Flavour {
    /// OpenLDAP with `overlay ppolicy` and `ppolicy_use_lockout`.
    Openldap,
    /// Microsoft Active Directory.
    ActiveDirectory,
}

impl Flavour {
    fn default_filter(self) -> &'static str {
        match self {
            Flavour::Openldap => "(objectClass=inetOrgPerson)",
            Flavour::ActiveDirectory => "(&(objectCategory=person)(objectClass=user))",
        }
    }

    fn default_name_attribute(self) -> &'static str {
        match self {
            Flavour::Openldap => "uid",
            Flavour::ActiveDirectory => "sAMAccountName",
        }
    }
}

/// How to reach and read the directory. Comes from the host's
/// configuration file; the password never reaches a plugin or a log.
#[derive(Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct DirectoryConfig {
    /// `ldap://host:port` or `ldaps://host:port`.
    pub url: String,
    /// Service account DN used for every operation.
    pub bind_dn: String,
    /// Its password.
    pub bind_password: String,
    /// Subtree holding the accounts and groups.
    pub base_dn: String,
    /// Lockout attribute set.
    pub flavour: Flavour,
    /// LDAP filter selecting user entries; a per-flavour default when absent.
    #[serde(default)]
    pub user_filter: Option<String>,
    /// Attribute holding the login name (`uid`, `sAMAccountName`).
    #[serde(default)]
    pub name_attribute: Option<String>,
    /// Upgrade `ldap://` with StartTLS.
    #[serde(default)]
    pub starttls: bool,
    /// Connect and per-operation timeout in seconds (default 10).
    #[serde(default)]
    pub timeout_seconds: Option<u64>,
}

impl fmt::Debug for DirectoryConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DirectoryConfig")
            .field("url", &self.url)
            .field("bind_dn", &self.bind_dn)
            .field("bind_password", &"<redacted>")
            .field("base_dn", &self.base_dn)
            .field("flavour", &self.flavour)
            .finish_non_exhaustive()
    }
}

/// The directory accounts provider.
#[derive(Debug, Clone)]
pub struct Directory {
    config: DirectoryConfig,
}

const PWD_LOCKED: &str = "pwdAccountLockedTime";
const PWD_FAILURES: &str = "pwdFailureTime";
const AD_LOCKOUT: &str = "lockoutTime";
const AD_BAD_COUNT: &str = "badPwdCount";
const AD_CONTROL: &str = "userAccountControl";
/// `userAccountControl` bit for a disabled account.
const AD_ACCOUNTDISABLE: u64 = 0x2;
/// ppolicy's "locked until an administrator unlocks" marker.
const PPOLICY_PERMANENT: &str = "000001010000Z";

impl Directory {
    /// A provider for `config`. Nothing is contacted until the first call.
    pub fn new(config: DirectoryConfig) -> Self {
        Self { config }
    }

    fn timeout(&self) -> Duration {
        Duration::from_secs(self.config.timeout_seconds.unwrap_or(10).max(1))
    }

    fn filter(&self) -> &str {
        self.config
            .user_filter
            .as_deref()
            .unwrap_or(self.config.flavour.default_filter())
    }

    fn name_attribute(&self) -> &str {
        self.config
            .name_attribute
            .as_deref()
            .unwrap_or(self.config.flavour.default_name_attribute())
    }

    /// A connection bound as the service account.
    async fn connect(&self) -> Result<Ldap, HostError> {
        let url = &self.config.url;
        let settings = LdapConnSettings::new()
            .set_conn_timeout(self.timeout())
            .set_starttls(self.config.starttls);
        let (conn, mut ldap) = LdapConnAsync::with_settings(settings, url)
            .await
            .map_err(|e| HostError::Unavailable(format!("directory {url} is unreachable: {e}")))?;
        ldap3::drive!(conn);
        let bound = ldap
            .with_timeout(self.timeout())
            .simple_bind(&self.config.bind_dn, &self.config.bind_password)
            .await
            .map_err(|e| HostError::Unavailable(format!("directory {url} did not answer: {e}")))?;
        match bound.rc {
            0 => Ok(ldap),
            49 => Err(HostError::Failed(format!(
                "directory {url} refused the service bind as {}: invalid credentials",
                self.config.bind_dn
            ))),
            rc => Err(HostError::Failed(format!(
                "directory {url} refused the service bind as {}: result {rc} {}",
                self.config.bind_dn, bound.text
            ))),
        }
    }

    fn lockout_attributes(&self) -> Vec<&'static str> {
        match self.config.flavour {
            Flavour::Openldap => vec![PWD_LOCKED, PWD_FAILURES],
            Flavour::ActiveDirectory => vec![AD_LOCKOUT, AD_BAD_COUNT, AD_CONTROL],
        }
    }

    async fn search(&self, ldap: &mut Ldap, filter: &str) -> Result<Vec<Account>, HostError> {
        let mut attrs = vec![self.name_attribute()];
        attrs.extend(self.lockout_attributes());
        let (entries, _) = ldap
            .with_timeout(self.timeout())
            .search(&self.config.base_dn, Scope::Subtree, filter, attrs)
            .await
            .and_then(|r| r.success())
            .map_err(|e| failed("search", &e))?;
        let mut accounts = Vec::with_capacity(entries.len());
        for raw in entries {
            let entry = SearchEntry::construct(raw);
            let groups = self.groups_of(ldap, &entry.dn).await?;
            accounts.push(self.entry(entry, groups));
        }
        accounts.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(accounts)
    }

    async fn groups_of(&self, ldap: &mut Ldap, dn: &str) -> Result<Vec<String>, HostError> {
        let filter = format!("(member={})", ldap_escape(dn));
        let (entries, _) = ldap
            .with_timeout(self.timeout())
            .search(&self.config.base_dn, Scope::Subtree, &filter, vec!["cn"])
            .await
            .and_then(|r| r.success())
            .map_err(|e| failed("group search", &e))?;
        let mut groups: Vec<String> = entries
            .into_iter()
            .filter_map(|raw| first(&SearchEntry::construct(raw).attrs, "cn").map(str::to_string))
            .collect();
        groups.sort();
        Ok(groups)
    }

    fn entry(&self, entry: SearchEntry, groups: Vec<String>) -> Account {
        let attrs = &entry.attrs;
        let name = first(attrs, self.name_attribute())
            .unwrap_or(&entry.dn)
            .to_string();
        let (locked, locked_since, failed_attempts, disabled) = match self.config.flavour {
            Flavour::Openldap => {
                let lock = first(attrs, PWD_LOCKED);
                let failures = values(attrs, PWD_FAILURES).map_or(0, |v| v.len());
                (
                    lock.is_some(),
                    lock.filter(|l| *l != PPOLICY_PERMANENT)
                        .and_then(generalized_time),
                    failures as u32,
                    lock == Some(PPOLICY_PERMANENT),
                )
            }
            Flavour::ActiveDirectory => {
                let lockout = first(attrs, AD_LOCKOUT)
                    .and_then(|v| v.parse::<u64>().ok())
                    .unwrap_or(0);
                let bad = first(attrs, AD_BAD_COUNT)
                    .and_then(|v| v.parse::<u32>().ok())
                    .unwrap_or(0);
                let control = first(attrs, AD_CONTROL)
                    .and_then(|v| v.parse::<u64>().ok())
                    .unwrap_or(0);
                (
                    lockout > 0,
                    (lockout > 0).then(|| filetime(lockout)),
                    bad,
                    control & AD_ACCOUNTDISABLE != 0,
                )
            }
        };
        Account {
            name,
            path: Some(entry.dn),
            source: AccountSource::Directory,
            locked,
            locked_since,
            failed_attempts,
            groups,
            disabled,
        }
    }

    fn locked_filter(&self) -> String {
        let lock = match self.config.flavour {
            Flavour::Openldap => format!("({PWD_LOCKED}=*)"),
            Flavour::ActiveDirectory => format!("({AD_LOCKOUT}>=1)"),
        };
        format!("(&{}{lock})", self.filter())
    }

    async fn find(&self, ldap: &mut Ldap, name: &str) -> Result<Account, HostError> {
        if name.trim().is_empty() {
            return Err(HostError::InvalidArgument("account name is empty".into()));
        }
        let filter = format!(
            "(&{}({}={}))",
            self.filter(),
            self.name_attribute(),
            ldap_escape(name)
        );
        let mut found = self.search(ldap, &filter).await?;
        match found.len() {
            1 => Ok(found.remove(0)),
            0 => Err(HostError::NotFound(format!(
                "no account named '{name}' in the directory"
            ))),
            n => Err(HostError::Failed(format!(
                "{n} directory entries are named '{name}'; refusing to guess"
            ))),
        }
    }
}

#[async_trait]
impl AccountsProvider for Directory {
    async fn locked(&self) -> Result<Vec<Account>, HostError> {
        let mut ldap = self.connect().await?;
        let entries = self.search(&mut ldap, &self.locked_filter()).await?;
        let _ = ldap.unbind().await;
        Ok(entries)
    }

    async fn lookup(&self, name: &str) -> Result<Account, HostError> {
        let mut ldap = self.connect().await?;
        let account = self.find(&mut ldap, name).await?;
        let _ = ldap.unbind().await;
        Ok(account)
    }

    async fn unlock(&self, name: &str, mode: RunMode) -> Result<Outcome, HostError> {
        let mut ldap = self.connect().await?;
        let account = self.find(&mut ldap, name).await?;
        if mode == RunMode::Plan || !account.locked {
            // Unlocking an unlocked account is a no-op: a retried job must
            // not fail because its first attempt already succeeded.
            let _ = ldap.unbind().await;
            return Ok(outcome_for(mode));
        }
        let dn = account.path.clone().unwrap_or_default();
        let mods: Vec<Mod<&str>> = match self.config.flavour {
            // `pwdFailureTime` is NO-USER-MODIFICATION; the overlay clears
            // it itself once the lock is gone.
            Flavour::Openldap => vec![Mod::Delete(PWD_LOCKED, HashSet::new())],
            Flavour::ActiveDirectory => vec![Mod::Replace(AD_LOCKOUT, HashSet::from(["0"]))],
        };
        ldap.with_timeout(self.timeout())
            .modify(&dn, mods)
            .await
            .and_then(|r| r.success())
            .map_err(|e| failed("unlock", &e))?;
        let after = self.find(&mut ldap, name).await?;
        let _ = ldap.unbind().await;
        if after.locked {
            return Err(HostError::Failed(format!(
                "directory accepted the unlock of '{name}' but the account is still locked"
            )));
        }
        Ok(Outcome::Applied)
    }
}

fn failed(operation: &str, e: &LdapError) -> HostError {
    match e {
        LdapError::LdapResult { result } if result.rc == 50 => HostError::Failed(format!(
            "directory {operation} refused: the service account lacks access rights"
        )),
        LdapError::LdapResult { result } => HostError::Failed(format!(
            "directory {operation} failed: result {} {}",
            result.rc, result.text
        )),
        LdapError::Timeout { .. } | LdapError::Io { .. } => {
            HostError::Unavailable(format!("directory {operation} failed: {e}"))
        }
        _ => HostError::Failed(format!("directory {operation} failed: {e}")),
    }
}

/// Attribute values by name, case-insensitively (servers echo their own
/// spelling).
fn values<'a>(attrs: &'a HashMap<String, Vec<String>>, name: &str) -> Option<&'a Vec<String>> {
    attrs
        .iter()
        .find(|(k, v)| k.eq_ignore_ascii_case(name) && !v.is_empty())
        .map(|(_, v)| v)
}

fn first<'a>(attrs: &'a HashMap<String, Vec<String>>, name: &str) -> Option<&'a str> {
    values(attrs, name)
        .and_then(|v| v.first())
        .map(String::as_str)
}

/// `20261123125959Z` or `20261123125959.123456Z`.
fn generalized_time(value: &str) -> Option<Instant> {
    let value = value.strip_suffix('Z')?;
    let (whole, fraction) = value.split_once('.').unwrap_or((value, ""));
    let at = NaiveDateTime::parse_from_str(whole, "%Y%m%d%H%M%S").ok()?;
    let digits: String = fraction.chars().take(9).collect();
    let nanoseconds = if digits.is_empty() {
        0
    } else {
        digits.parse::<u32>().ok()? * 10u32.pow(9 - digits.len() as u32)
    };
    Some(Instant {
        seconds: at.and_utc().timestamp(),
        nanoseconds,
    })
}

/// Windows FILETIME: 100-ns intervals since 1601-01-01 UTC.
fn filetime(value: u64) -> Instant {
    const UNIX_EPOCH_IN_FILETIME_SECONDS: i64 = 11_644_473_600;
    Instant {
        seconds: (value / 10_000_000) as i64 - UNIX_EPOCH_IN_FILETIME_SECONDS,
        nanoseconds: ((value % 10_000_000) * 100) as u32,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generalized_times_parse_with_and_without_fractions() {
        let t = generalized_time("20261123125959Z").expect("parses");
        assert_eq!(t.seconds, 1_795_438_799);
        assert_eq!(t.nanoseconds, 0);
        let t = generalized_time("20261123125959.25Z").expect("parses");
        assert_eq!(t.nanoseconds, 250_000_000);
        assert!(generalized_time("yesterday").is_none());
    }

    #[test]
    fn filetimes_convert_to_unix_time() {
        // 2026-11-23T12:59:59Z
        let t = filetime((1_795_438_799 + 11_644_473_600) * 10_000_000 + 5);
        assert_eq!(t.seconds, 1_795_438_799);
        assert_eq!(t.nanoseconds, 500);
    }
}
