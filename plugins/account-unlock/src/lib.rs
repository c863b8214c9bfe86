//! `account-unlock`: reports locked-out accounts and unlocks them by policy
//! or on request.
//!
//! Check: one finding per locked account (`locked:<name>`), critical when
//! the account is in a privileged group, a warning otherwise.
//!
//! Remediate, on request (`user` and `ticket` given): looks the account up
//! and unlocks it when policy allows, recording the ticket in the change.
//! Scheduled (no `user`): every locked account is decided in name order,
//! and every decision is a change: `unlock`, or `kept-locked` saying why.
//!
//! Policy, in the order it is applied:
//! 1. an account in a privileged group is never unlocked, not even on
//!    request (a locked-out admin is a security event for a person);
//! 2. `allowed-ous` (DN suffixes) and `allowed-groups`, when given, bound
//!    what may be unlocked; a local account has no DN, so it is outside any
//!    `allowed-ous`;
//! 3. scheduled runs only: the account must have been locked for at least
//!    `auto-unlock-after-minutes`; without that parameter nothing is
//!    unlocked automatically.
//!
//! The plugin re-reads lock state in `remediate` instead of trusting the
//! findings: lockouts come and go by the minute. A `kept-locked` change
//! makes no capability call, so its outcome is the run's mode: `planned` in
//! plan mode, `applied` (the decision stands) otherwise.

use steward_sdk::host::accounts::{self, Account, AccountSource};
use steward_sdk::host::clock;
use steward_sdk::{
    Change, Descriptor, Finding, HostError, Outcome, ParamProblem, ParamSpec, Plugin, PluginError,
    Remediation, Severity, export_plugin, log, params,
};

struct AccountUnlock;

/// Group names that make an account privileged unless the caller says
/// otherwise: Active Directory's built-in admin groups and the usual Unix
/// ones.
const DEFAULT_PRIVILEGED: &[&str] = &[
    "Domain Admins",
    "Enterprise Admins",
    "Schema Admins",
    "Administrators",
    "wheel",
    "sudo",
    "admin",
    "root",
];

fn invalid(name: &str, message: impl Into<String>) -> PluginError {
    PluginError::InvalidParam(ParamProblem {
        name: name.to_string(),
        message: message.into(),
    })
}

/// A DN suffix from `allowed-ous`, as given and as normalised RDNs.
struct OuSuffix {
    text: String,
    rdns: Vec<String>,
}

/// An on-demand unlock: the account and the ticket that asked for it.
struct OnDemand {
    user: String,
    ticket: String,
}

/// The run's parameters, checked.
struct Policy {
    allowed_ous: Vec<OuSuffix>,
    allowed_groups: Vec<String>,
    privileged_groups: Vec<String>,
    auto_unlock_after: Option<i64>,
    on_demand: Option<OnDemand>,
}

/// What to do with one locked account.
enum Decision {
    Unlock(String),
    KeepLocked(String),
}

impl Policy {
    /// Reads and checks every parameter, in `check` too, so a bad value is
    /// reported before anything is looked at or changed.
    fn load() -> Result<Self, PluginError> {
        let mut allowed_ous = Vec::new();
        for text in params::text_list("allowed-ous")? {
            let rdns = dn_rdns(&text);
            if let Some(bad) = rdns.iter().find(|r| !r.contains('=')) {
                return Err(invalid(
                    "allowed-ous",
                    format!(
                        "`{text}` is not a DN suffix: `{bad}` has no `=`; write suffixes like \
                         `OU=Staff;DC=corp;DC=example` (`;` separates RDNs where `,` separates \
                         list items)"
                    ),
                ));
            }
            // A DN written with commas on the command line arrives split
            // into single RDNs; refuse them rather than match too much or
            // nothing.
            if rdns.len() < 2 {
                return Err(invalid(
                    "allowed-ous",
                    format!(
                        "`{text}` is a single RDN, not a DN suffix; write the OU down to its \
                         domain with `;` between RDNs, like `OU=Staff;DC=corp;DC=example` \
                         (`,` separates list items)"
                    ),
                ));
            }
            if rdns.iter().all(|r| r.starts_with("dc=")) {
                return Err(invalid(
                    "allowed-ous",
                    format!(
                        "`{text}` names a whole domain, not an OU; leave `allowed-ous` empty to \
                         allow any OU, or write the OU with `;` between RDNs, like \
                         `OU=Staff;DC=corp;DC=example`"
                    ),
                ));
            }
            allowed_ous.push(OuSuffix { text, rdns });
        }
        let allowed_groups = params::text_list("allowed-groups")?;
        let privileged_groups = params::text_list("privileged-groups")?;
        if privileged_groups.is_empty() {
            return Err(invalid(
                "privileged-groups",
                format!(
                    "must name at least one group (default: {})",
                    DEFAULT_PRIVILEGED.join(", ")
                ),
            ));
        }
        let auto_unlock_after = params::integer_at_least("auto-unlock-after-minutes", 0)?;
        let user = params::text("user")?;
        let ticket = params::text("ticket")?;
        let on_demand = match (user, ticket) {
            (None, ticket) => {
                if let Some(t) = ticket {
                    log::warn_with(
                        "`ticket` is only used with `user`; ignored",
                        &[("ticket", &t)],
                    );
                }
                None
            }
            (Some(user), ticket) => {
                let user = user.trim().to_string();
                if user.is_empty() {
                    return Err(invalid("user", "must name the account to unlock"));
                }
                let ticket = ticket.map(|t| t.trim().to_string()).unwrap_or_default();
                if ticket.is_empty() {
                    return Err(invalid(
                        "ticket",
                        format!(
                            "required when `user` is given: name the ticket that asked to unlock \
                             `{user}`"
                        ),
                    ));
                }
                if ticket.chars().any(char::is_control) {
                    return Err(invalid("ticket", "must be a ticket reference on one line"));
                }
                Some(OnDemand { user, ticket })
            }
        };
        Ok(Policy {
            allowed_ous,
            allowed_groups,
            privileged_groups,
            auto_unlock_after,
            on_demand,
        })
    }

    /// The account's first group that is privileged, as the account names it.
    fn privileged_group<'a>(&self, account: &'a Account) -> Option<&'a str> {
        account
            .groups
            .iter()
            .find(|g| in_list(&self.privileged_groups, g))
            .map(String::as_str)
    }

    /// Why policy forbids unlocking the account at all, whatever the lock age.
    fn forbidden(&self, account: &Account) -> Option<String> {
        if let Some(group) = self.privileged_group(account) {
            return Some(format!(
                "member of privileged group `{group}`; privileged accounts are never unlocked \
                 by this plugin"
            ));
        }
        if !self.allowed_ous.is_empty() {
            let allowed = || {
                self.allowed_ous
                    .iter()
                    .map(|o| format!("`{}`", o.text))
                    .collect::<Vec<_>>()
                    .join(", ")
            };
            match &account.path {
                None => {
                    return Some(format!(
                        "local account with no DN, outside the allowed OUs ({})",
                        allowed()
                    ));
                }
                Some(path) => {
                    let rdns = dn_rdns(path);
                    if !self.allowed_ous.iter().any(|o| rdns.ends_with(&o.rdns)) {
                        return Some(format!(
                            "`{path}` is outside the allowed OUs ({})",
                            allowed()
                        ));
                    }
                }
            }
        }
        if !self.allowed_groups.is_empty()
            && !account
                .groups
                .iter()
                .any(|g| in_list(&self.allowed_groups, g))
        {
            return Some(format!(
                "in none of the allowed groups ({})",
                self.allowed_groups
                    .iter()
                    .map(|g| format!("`{g}`"))
                    .collect::<Vec<_>>()
                    .join(", ")
            ));
        }
        None
    }

    /// The decision for a locked account in a scheduled run.
    fn decide_scheduled(&self, account: &Account, now: i64) -> Decision {
        if let Some(why) = self.forbidden(account) {
            return Decision::KeepLocked(why);
        }
        let Some(after) = self.auto_unlock_after else {
            return Decision::KeepLocked(
                "automatic unlock is off (`auto-unlock-after-minutes` is not set)".into(),
            );
        };
        match locked_minutes(account, now) {
            None => Decision::KeepLocked(format!(
                "lock time unknown, policy unlocks after {after} min"
            )),
            Some(m) if m < after => {
                Decision::KeepLocked(format!("locked {m} min, policy unlocks after {after} min"))
            }
            Some(m) => {
                Decision::Unlock(format!("locked {m} min, policy unlocks after {after} min"))
            }
        }
    }
}

/// Case-insensitive membership, comparing short group names.
fn in_list(list: &[String], group: &str) -> bool {
    let group = short_group(group);
    list.iter().any(|g| g.trim().eq_ignore_ascii_case(group))
}

/// `Domain Admins` from `CN=Domain Admins,CN=Users,DC=corp,DC=example`, so a
/// provider that reports group DNs still matches short names.
fn short_group(group: &str) -> &str {
    let group = group.trim();
    let first_rdn = group.split(',').next().unwrap_or(group);
    match first_rdn.split_once('=') {
        Some((_, value)) => value.trim(),
        None => group,
    }
}

/// The RDNs of a DN, lower-cased with spaces around `=` removed. Both `,`
/// and the older `;` separate RDNs; a backslash escapes the next character.
fn dn_rdns(dn: &str) -> Vec<String> {
    let mut rdns = Vec::new();
    let mut current = String::new();
    let mut chars = dn.chars();
    while let Some(c) = chars.next() {
        match c {
            '\\' => {
                current.push(c);
                if let Some(next) = chars.next() {
                    current.push(next);
                }
            }
            ',' | ';' => rdns.push(std::mem::take(&mut current)),
            _ => current.push(c),
        }
    }
    rdns.push(current);
    rdns.into_iter()
        .map(|r| match r.split_once('=') {
            Some((k, v)) => format!("{}={}", k.trim(), v.trim()).to_lowercase(),
            None => r.trim().to_lowercase(),
        })
        .filter(|r| !r.is_empty())
        .collect()
}

/// Whole minutes the account has been locked; a lock time in the future
/// (clock skew) counts as zero.
fn locked_minutes(account: &Account, now: i64) -> Option<i64> {
    account
        .locked_since
        .map(|since| (now - since.seconds).max(0) / 60)
}

fn source_name(source: AccountSource) -> &'static str {
    match source {
        AccountSource::Directory => "directory",
        AccountSource::Local => "local",
    }
}

/// `2026-11-23T09:05:00Z` for seconds since the Unix epoch.
fn rfc3339(seconds: i64) -> String {
    let days = seconds.div_euclid(86_400);
    let secs = seconds.rem_euclid(86_400);
    let (y, m, d) = civil_from_days(days);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z",
        secs / 3600,
        secs % 3600 / 60,
        secs % 60
    )
}

/// The civil date of a day count since 1970-01-01 (Howard Hinnant's
/// algorithm).
fn civil_from_days(z: i64) -> (i64, i64, i64) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d)
}

/// The outcome of a decision that makes no capability call.
fn decision_outcome() -> Outcome {
    if steward_sdk::is_plan() {
        Outcome::Planned
    } else {
        Outcome::Applied
    }
}

fn kept_locked(account: &Account, why: &str) -> Change {
    log::info_with("kept locked", &[("account", &account.name), ("why", why)]);
    Change::new("kept-locked", &account.name, decision_outcome())
        .description(format!("{} stays locked: {why}", account.name))
        .before("locked")
        .after("locked")
}

impl Plugin for AccountUnlock {
    fn describe() -> Descriptor {
        Descriptor::new(
            "account-unlock",
            env!("CARGO_PKG_VERSION"),
            "Reports locked-out accounts and unlocks them by policy or on request",
        )
        .param(ParamSpec::text_list(
            "allowed-ous",
            "DN suffixes whose accounts may be unlocked, case-insensitive; `;` separates RDNs \
             (`OU=Staff;DC=corp;DC=example`); empty allows any",
        ))
        .param(ParamSpec::text_list(
            "allowed-groups",
            "Only accounts in at least one of these groups may be unlocked; empty allows any",
        ))
        .param(
            ParamSpec::text_list(
                "privileged-groups",
                "Accounts in any of these groups are never unlocked (case-insensitive)",
            )
            .default_text_list(DEFAULT_PRIVILEGED),
        )
        .param(ParamSpec::integer(
            "auto-unlock-after-minutes",
            "Unlock accounts locked at least this long; absent means never automatically",
        ))
        .param(ParamSpec::text(
            "user",
            "Unlock this one account now (needs `ticket`)",
        ))
        .param(ParamSpec::text(
            "ticket",
            "The ticket that asked for the on-demand unlock of `user`",
        ))
    }

    fn check() -> Result<Vec<Finding>, PluginError> {
        let policy = Policy::load()?;
        let now = clock::now().seconds;
        let mut locked = accounts::locked()?;
        locked.sort_by(|a, b| a.name.cmp(&b.name));
        let findings = locked
            .iter()
            .map(|a| {
                let privileged = policy.privileged_group(a);
                let severity = if privileged.is_some() {
                    Severity::Critical
                } else {
                    Severity::Warning
                };
                let since = a
                    .locked_since
                    .map(|s| rfc3339(s.seconds))
                    .unwrap_or_else(|| "unknown".into());
                let minutes = locked_minutes(a, now);
                Finding::new(format!("locked:{}", a.name), severity, "Account locked out")
                    .detail(format!(
                        "{} ({} account{}) locked {}after {} failed attempts{}{}",
                        a.name,
                        source_name(a.source),
                        a.path
                            .as_deref()
                            .map(|p| format!(" {p}"))
                            .unwrap_or_default(),
                        minutes.map(|m| format!("for {m} min ")).unwrap_or_default(),
                        a.failed_attempts,
                        privileged
                            .map(|g| format!("; privileged (`{g}`)"))
                            .unwrap_or_default(),
                        if a.disabled { "; also disabled" } else { "" },
                    ))
                    .resource(&a.name)
                    .field("locked-since", since)
                    .field(
                        "locked-minutes",
                        minutes.map(|m| m.to_string()).unwrap_or_default(),
                    )
                    .field("failed-attempts", a.failed_attempts.to_string())
                    .field("source", source_name(a.source))
                    .field("path", a.path.clone().unwrap_or_default())
                    .field("groups", a.groups.join(", "))
                    .field("privileged", privileged.unwrap_or_default())
                    .field("disabled", a.disabled.to_string())
            })
            .collect();
        log::info(&format!("{} accounts locked", locked.len()));
        Ok(findings)
    }

    fn remediate(_findings: Vec<Finding>) -> Result<Remediation, PluginError> {
        let policy = Policy::load()?;
        match &policy.on_demand {
            Some(request) => unlock_on_demand(&policy, request),
            None => unlock_scheduled(&policy),
        }
    }
}

fn unlock_on_demand(policy: &Policy, request: &OnDemand) -> Result<Remediation, PluginError> {
    let OnDemand { user, ticket } = request;
    let account = match accounts::lookup(user) {
        Ok(a) => a,
        Err(HostError::NotFound(m)) => {
            return Err(PluginError::Failed(format!(
                "cannot unlock `{user}` (ticket {ticket}): no such account ({m}); nothing was \
                 changed"
            )));
        }
        Err(e) => return Err(e.into()),
    };
    if !account.locked {
        log::info_with(
            "account is not locked; nothing to do",
            &[("account", user), ("ticket", ticket)],
        );
        return Ok(Remediation::new());
    }
    if let Some(why) = policy.forbidden(&account) {
        return Ok(vec![kept_locked(&account, &format!("{why} (ticket {ticket})"))].into());
    }
    // The ticket reaches the host's audit trail with the unlock.
    let outcome = accounts::unlock(&account.name, account.source, &format!("ticket {ticket}"))?;
    log::info_with(
        "unlocked on request",
        &[("account", &account.name), ("ticket", ticket)],
    );
    Ok(vec![
        Change::new("unlock", &account.name, outcome)
            .description(format!(
                "Unlock {} on request, ticket {ticket}",
                account.name
            ))
            .before("locked")
            .after(format!("ticket={ticket}")),
    ]
    .into())
}

/// Unlocks what the policy allows; an account the host could not unlock is
/// a failure beside the others' changes, so their record is kept.
fn unlock_scheduled(policy: &Policy) -> Result<Remediation, PluginError> {
    let now = clock::now().seconds;
    let mut locked = accounts::locked()?;
    locked.sort_by(|a, b| a.name.cmp(&b.name));
    let mut done = Remediation::new();
    let changes = &mut done.changes;
    for account in &locked {
        let why = match policy.decide_scheduled(account, now) {
            Decision::KeepLocked(why) => {
                changes.push(kept_locked(account, &why));
                continue;
            }
            Decision::Unlock(why) => why,
        };
        match accounts::unlock(&account.name, account.source, &why) {
            Ok(outcome) => {
                log::info_with("unlocked", &[("account", &account.name), ("why", &why)]);
                changes.push(
                    Change::new("unlock", &account.name, outcome)
                        .description(format!("Unlock {}: {why}", account.name))
                        .before("locked")
                        .after("unlocked"),
                );
            }
            // The host has audited the denial; the other accounts can
            // still be decided.
            Err(HostError::Denied(m)) => changes.push(kept_locked(
                account,
                &format!("outside this plugin's `accounts` grant ({m})"),
            )),
            // Unlocked or removed since `locked()`: nothing left to do.
            Err(HostError::NotFound(m)) => {
                log::warn_with(
                    "account vanished",
                    &[("account", &account.name), ("why", &m)],
                );
            }
            Err(e) => done.failures.push(steward_sdk::Failure {
                finding_id: format!("locked:{}", account.name),
                error: e.describe(),
            }),
        }
    }
    Ok(done)
}

export_plugin!(AccountUnlock);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dn_suffixes_compare_case_and_space_insensitively() {
        let dn = dn_rdns("CN=Doe\\, John, OU=Staff,DC=Corp,DC=example");
        assert_eq!(dn, ["cn=doe\\, john", "ou=staff", "dc=corp", "dc=example"]);
        assert!(dn.ends_with(&dn_rdns("ou=STAFF;dc=corp; DC=example")));
        assert!(!dn.ends_with(&dn_rdns("OU=Admins;DC=corp;DC=example")));
    }

    #[test]
    fn group_dns_match_short_names() {
        let privileged = vec!["Domain Admins".to_string()];
        assert!(in_list(&privileged, "domain admins"));
        assert!(in_list(&privileged, "CN=Domain Admins,CN=Users,DC=corp"));
        assert!(in_list(&privileged, "cn=Domain Admins"));
        assert!(!in_list(&privileged, "Domain Users"));
    }

    #[test]
    fn formats_rfc3339() {
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00Z");
        assert_eq!(rfc3339(1_795_392_000), "2026-11-23T00:00:00Z");
        assert_eq!(rfc3339(951_782_400 + 3_661), "2000-02-29T01:01:01Z");
    }
}
