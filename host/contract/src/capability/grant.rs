//! Grants: which capabilities a plugin may use and, within each, which
//! resources (package names, paths, account names, ticket queues).
//!
//! A grant is written `capability` (unrestricted) or
//! `capability=pattern,pattern` on the command line, and as a table of lists
//! in a manifest. Patterns are globs (`openssl*`, `/srv/**`); the inventory
//! scope is `device` or `tenant`.

use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use super::Capability;

/// Why a grant could not be parsed or applied.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum GrantError {
    /// The name is not one of the capabilities of `steward:plugin`.
    #[error("unknown capability `{0}`; valid capabilities are {names}", names = capability_names())]
    UnknownCapability(String),
    /// A scope pattern is empty or malformed.
    #[error("invalid scope `{pattern}` for capability `{capability}`: {reason}")]
    InvalidScope {
        /// The capability the scope was given for.
        capability: Capability,
        /// The offending pattern.
        pattern: String,
        /// What is wrong with it.
        reason: &'static str,
    },
}

fn capability_names() -> String {
    Capability::ALL
        .iter()
        .map(|c| c.name())
        .collect::<Vec<_>>()
        .join(", ")
}

/// Why a glob pattern is malformed: an unclosed `[` class or `{`
/// alternation, or a stray closing one (the syntax of `glob_match`).
fn glob_problem(pattern: &str) -> Option<&'static str> {
    let (mut class, mut braces, mut escaped) = (false, 0u32, false);
    for c in pattern.chars() {
        if escaped {
            escaped = false;
            continue;
        }
        match c {
            '\\' => escaped = true,
            '[' if !class => class = true,
            ']' if class => class = false,
            ']' => return Some("a `]` closes no `[`"),
            '{' if !class => braces += 1,
            '}' if !class && braces == 0 => return Some("a `}` closes no `{`"),
            '}' if !class => braces -= 1,
            _ => {}
        }
    }
    if class {
        Some("a `[` character class is not closed")
    } else if braces > 0 {
        Some("a `{` alternation is not closed")
    } else if escaped {
        Some("the pattern ends in a lone `\\`")
    } else {
        None
    }
}

/// One capability with its scope.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Grant {
    /// The capability granted.
    pub capability: Capability,
    /// Glob patterns the call's resource must match; `None` is unrestricted.
    pub scope: Option<Vec<String>>,
}

impl FromStr for Grant {
    type Err = GrantError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let (name, scope) = match s.split_once('=') {
            Some((name, patterns)) => (
                name.trim(),
                Some(patterns.split(',').map(|p| p.trim().to_string()).collect()),
            ),
            None => (s.trim(), None),
        };
        Grant::new(name.parse()?, scope)
    }
}

/// The pattern that stands for "any resource".
const UNRESTRICTED: &str = "*";

impl Grant {
    /// A grant of `capability` limited to `scope` (`None` or `["*"]` is
    /// unrestricted), checked for well-formed patterns.
    pub fn new(capability: Capability, scope: Option<Vec<String>>) -> Result<Self, GrantError> {
        let scope = scope.filter(|p| !(p.len() == 1 && p[0] == UNRESTRICTED));
        let grant = Grant { capability, scope };
        grant.validate()?;
        Ok(grant)
    }

    fn validate(&self) -> Result<(), GrantError> {
        let invalid = |pattern: &str, reason| GrantError::InvalidScope {
            capability: self.capability,
            pattern: pattern.to_string(),
            reason,
        };
        for pattern in self.scope.iter().flatten() {
            if pattern.is_empty() {
                return Err(invalid(pattern, "a scope pattern cannot be empty"));
            }
            if let Some(reason) = glob_problem(pattern) {
                return Err(invalid(pattern, reason));
            }
            match self.capability {
                Capability::Inventory if pattern != "device" && pattern != "tenant" => {
                    return Err(invalid(
                        pattern,
                        "the inventory scope is `device` or `tenant`",
                    ));
                }
                Capability::Antivirus if !pattern.starts_with('/') => {
                    return Err(invalid(
                        pattern,
                        "antivirus scopes are absolute path patterns",
                    ));
                }
                Capability::Antivirus if pattern.split('/').any(|c| c == "..") => {
                    return Err(invalid(pattern, "path patterns cannot contain `..`"));
                }
                _ => {}
            }
        }
        Ok(())
    }
}

impl fmt::Display for Grant {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.scope {
            None => write!(f, "{}", self.capability),
            Some(patterns) => write!(f, "{}={}", self.capability, patterns.join(",")),
        }
    }
}

/// The set of grants a plugin was installed with.
///
/// Serialised as a table from capability name to a list of patterns, for
/// example `{ packages = ["openssl*"], tickets = ["*"] }`, where `["*"]` is
/// unrestricted and an empty list grants the capability with nothing in
/// scope.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "BTreeMap<String, Vec<String>>")]
#[serde(into = "BTreeMap<String, Vec<String>>")]
pub struct Grants {
    entries: BTreeMap<Capability, Option<Vec<String>>>,
}

impl Grants {
    /// Grants nothing beyond the always-granted capabilities.
    pub fn none() -> Self {
        Self::default()
    }

    /// Adds a grant, replacing any earlier grant of the same capability.
    pub fn with(mut self, grant: Grant) -> Self {
        self.entries.insert(grant.capability, grant.scope);
        self
    }

    /// The capabilities granted explicitly.
    pub fn capabilities(&self) -> impl Iterator<Item = Capability> + '_ {
        self.entries.keys().copied()
    }

    /// Whether the capability may be imported at all.
    pub fn allows_capability(&self, capability: Capability) -> bool {
        capability.always_granted() || self.entries.contains_key(&capability)
    }

    /// Whether a call touching `resource` is within the capability's scope.
    /// Paths are normalised first, so `/srv/../etc` never matches `/srv/**`.
    pub fn allows(&self, capability: Capability, resource: &str) -> bool {
        match self.entries.get(&capability) {
            None => capability.always_granted(),
            Some(None) => true,
            Some(Some(patterns)) => {
                if capability == Capability::Antivirus
                    && (!resource.starts_with('/') || resource.split('/').any(|c| c == ".."))
                {
                    return false;
                }
                let resource = if capability == Capability::Antivirus {
                    resource.trim_end_matches('/')
                } else {
                    resource
                };
                // Account names match case-insensitively: a directory's
                // (Active Directory's, LDAP's) are, and local ones are
                // lowercase (useradd's NAME_REGEX), so `JDoe` is `jdoe`.
                if capability == Capability::Accounts {
                    let resource = resource.to_lowercase();
                    return patterns
                        .iter()
                        .any(|p| glob_match::glob_match(&p.to_lowercase(), &resource));
                }
                // `/srv/**` covers the directory `/srv` itself too.
                patterns.iter().any(|p| {
                    glob_match::glob_match(p, resource) || p.strip_suffix("/**") == Some(resource)
                })
            }
        }
    }

    /// The granted capabilities in order, with their scopes.
    pub fn iter(&self) -> impl Iterator<Item = Grant> + '_ {
        self.entries.iter().map(|(c, s)| Grant {
            capability: *c,
            scope: s.clone(),
        })
    }
}

impl FromIterator<Grant> for Grants {
    fn from_iter<I: IntoIterator<Item = Grant>>(iter: I) -> Self {
        iter.into_iter().fold(Grants::none(), Grants::with)
    }
}

impl TryFrom<BTreeMap<String, Vec<String>>> for Grants {
    type Error = GrantError;

    fn try_from(map: BTreeMap<String, Vec<String>>) -> Result<Self, Self::Error> {
        map.into_iter()
            .map(|(name, patterns)| Grant::new(name.parse()?, Some(patterns)))
            .collect()
    }
}

impl From<Grants> for BTreeMap<String, Vec<String>> {
    fn from(g: Grants) -> Self {
        g.entries
            .into_iter()
            .map(|(c, s)| {
                let patterns = s.unwrap_or_else(|| vec![UNRESTRICTED.to_string()]);
                (c.name().to_string(), patterns)
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn grants(specs: &[&str]) -> Grants {
        specs.iter().map(|s| s.parse::<Grant>().unwrap()).collect()
    }

    #[test]
    fn unscoped_grant_allows_everything_and_scoped_grant_only_matches() {
        let g = grants(&["packages", "accounts=jdoe,svc-*"]);
        assert!(g.allows(Capability::Packages, "openssl"));
        assert!(g.allows(Capability::Accounts, "svc-backup"));
        assert!(!g.allows(Capability::Accounts, "administrator"));
        // Account names are case-insensitive, as a directory's are.
        assert!(g.allows(Capability::Accounts, "SVC-Backup"));
        assert!(!g.allows(Capability::Tickets, "helpdesk"));
        assert!(g.allows_capability(Capability::Log));
        assert!(!g.allows_capability(Capability::Antivirus));
    }

    #[test]
    fn path_scope_refuses_parent_escapes() {
        let g = grants(&["antivirus=/srv/**"]);
        assert!(g.allows(Capability::Antivirus, "/srv/share/a.exe"));
        assert!(g.allows(Capability::Antivirus, "/srv"));
        assert!(!g.allows(Capability::Antivirus, "/srvx"));
        assert!(!g.allows(Capability::Antivirus, "/srv/../etc/shadow"));
        assert!(!g.allows(Capability::Antivirus, "srv/x"));
        assert!(!g.allows(Capability::Antivirus, "/etc/shadow"));
    }

    #[test]
    fn errors_name_the_bad_capability_or_scope() {
        let err = "networking".parse::<Grant>().unwrap_err();
        assert!(err.to_string().contains("`networking`"), "{err}");
        let err = "inventory=fleet".parse::<Grant>().unwrap_err();
        assert!(err.to_string().contains("`device` or `tenant`"), "{err}");
        let err = "antivirus=relative/path".parse::<Grant>().unwrap_err();
        assert!(err.to_string().contains("absolute"), "{err}");
        // Every capability is listed, `backups` included.
        let err = "networking".parse::<Grant>().unwrap_err();
        assert!(err.to_string().ends_with("tickets, backups"), "{err}");
        // A malformed glob is refused, not silently never matched.
        for (bad, says) in [
            ("accounts=c[fo", "`[` character class is not closed"),
            ("packages=lib{a,b", "`{` alternation is not closed"),
            ("tickets=queue]", "`]` closes no `[`"),
        ] {
            let err = bad.parse::<Grant>().unwrap_err();
            assert!(err.to_string().contains(says), "{bad}: {err}");
        }
        for good in ["accounts=c[fo]*", "packages=lib{ssl}*", "packages=a\\[b"] {
            assert!(good.parse::<Grant>().is_ok(), "{good}");
        }
    }

    #[test]
    fn grants_round_trip_through_toml() {
        let g = grants(&["packages=openssl*", "tickets"]);
        let text = toml::to_string(&g).unwrap();
        assert_eq!(toml::from_str::<Grants>(&text).unwrap(), g);
    }
}
