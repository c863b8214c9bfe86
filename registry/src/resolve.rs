//! Choosing a version for a requirement, by Cargo's rules.
//!
//! Requirements are parsed by the `semver` crate, which implements Cargo's
//! syntax and matching, so a Steward playbook pins a module exactly like a
//! `Cargo.toml` pins a crate:
//!
//! | requirement      | matches                                   |
//! |------------------|-------------------------------------------|
//! | `1.2.3`, `^1.2.3`| `>=1.2.3, <2.0.0`                          |
//! | `^0.2.3`         | `>=0.2.3, <0.3.0` (left-most non-zero)     |
//! | `^0.0.3`         | `=0.0.3`                                   |
//! | `~1.2.3`         | `>=1.2.3, <1.3.0`                          |
//! | `~1`             | `>=1.0.0, <2.0.0`                          |
//! | `=1.2.3`         | exactly `1.2.3`                            |
//! | `1.*`, `1.2.*`   | wildcards                                  |
//! | `*`              | any release                                |
//! | `>=1.2, <1.5`    | comparators, comma-separated, all must hold|
//!
//! **Pre-releases** (`1.3.0-beta.1`) match only when a comparator of the
//! requirement names a pre-release of the same `major.minor.patch`:
//! `^1.3.0-beta.1` accepts `1.3.0-beta.2` (and `1.3.0`, `1.4.0`), but
//! `^1.2` never picks `1.3.0-beta.1`, and `*` never picks a pre-release.
//!
//! **Yanked** versions are never chosen, not even by an exact requirement:
//! a yank means "do not start using this". A host that already recorded a
//! yanked version's digest still downloads it by digest.
//!
//! Among the versions that match, the highest by semver precedence wins.

use semver::{Version, VersionReq};

/// Why a requirement cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("`{requirement}` is not a version requirement: {reason}")]
pub struct RequirementError {
    /// The requirement as given.
    pub requirement: String,
    /// What the parser said.
    pub reason: String,
}

/// Parses a requirement. An empty one (after trimming) means `*`.
///
/// # Errors
///
/// [`RequirementError`] with the parser's reason.
pub fn parse_requirement(requirement: &str) -> Result<VersionReq, RequirementError> {
    let trimmed = requirement.trim();
    if trimmed.is_empty() {
        return Ok(VersionReq::STAR);
    }
    VersionReq::parse(trimmed).map_err(|e| RequirementError {
        requirement: requirement.to_owned(),
        reason: e.to_string(),
    })
}

/// The highest version among `candidates` (`(version, yanked)`) that is not
/// yanked and matches `requirement`.
pub fn resolve<'a, I>(candidates: I, requirement: &VersionReq) -> Option<&'a Version>
where
    I: IntoIterator<Item = (&'a Version, bool)>,
{
    candidates
        .into_iter()
        .filter(|(version, yanked)| !*yanked && requirement.matches(version))
        .map(|(version, _)| version)
        .max()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Resolves `req` over `versions` (a `!` suffix marks a yanked one).
    fn pick(versions: &[&str], req: &str) -> Option<String> {
        let parsed: Vec<(Version, bool)> = versions
            .iter()
            .map(|v| match v.strip_suffix('!') {
                Some(v) => (v.parse().unwrap(), true),
                None => (v.parse().unwrap(), false),
            })
            .collect();
        let req = parse_requirement(req).unwrap();
        resolve(parsed.iter().map(|(v, y)| (v, *y)), &req).map(ToString::to_string)
    }

    const MANY: &[&str] = &[
        "0.0.3", "0.0.4", "0.2.3", "0.2.9", "0.3.0", "1.0.0", "1.2.0", "1.2.3", "1.2.9", "1.3.0",
        "1.9.1", "2.0.0", "2.1.0",
    ];

    #[test]
    fn caret_is_the_default_and_allows_compatible_updates() {
        assert_eq!(pick(MANY, "^1.2").as_deref(), Some("1.9.1"));
        assert_eq!(pick(MANY, "1.2").as_deref(), Some("1.9.1"));
        assert_eq!(pick(MANY, "^1.2.3").as_deref(), Some("1.9.1"));
        assert_eq!(pick(MANY, "1").as_deref(), Some("1.9.1"));
        assert_eq!(pick(MANY, "^2").as_deref(), Some("2.1.0"));
        assert_eq!(pick(MANY, "^3"), None);
        // Below 1.0 the left-most non-zero part is the breaking one.
        assert_eq!(pick(MANY, "^0.2.3").as_deref(), Some("0.2.9"));
        assert_eq!(pick(MANY, "0.2").as_deref(), Some("0.2.9"));
        assert_eq!(pick(MANY, "^0.0.3").as_deref(), Some("0.0.3"));
        assert_eq!(pick(MANY, "^0").as_deref(), Some("0.3.0"));
        // A lower bound above every candidate of the major.
        assert_eq!(pick(MANY, "^1.9.2"), None);
    }

    #[test]
    fn tilde_allows_patch_updates_only() {
        assert_eq!(pick(MANY, "~1.2.3").as_deref(), Some("1.2.9"));
        assert_eq!(pick(MANY, "~1.2").as_deref(), Some("1.2.9"));
        assert_eq!(pick(MANY, "~1").as_deref(), Some("1.9.1"));
        assert_eq!(pick(MANY, "~0.2.4").as_deref(), Some("0.2.9"));
        assert_eq!(pick(MANY, "~1.4"), None);
    }

    #[test]
    fn exact_picks_that_version_only() {
        assert_eq!(pick(MANY, "=1.2.3").as_deref(), Some("1.2.3"));
        assert_eq!(pick(MANY, "=1.2.4"), None);
        // `=1.2` is `>=1.2.0, <1.3.0`.
        assert_eq!(pick(MANY, "=1.2").as_deref(), Some("1.2.9"));
    }

    #[test]
    fn wildcards_and_comparators() {
        assert_eq!(pick(MANY, "*").as_deref(), Some("2.1.0"));
        assert_eq!(pick(MANY, "").as_deref(), Some("2.1.0"));
        assert_eq!(pick(MANY, "1.*").as_deref(), Some("1.9.1"));
        assert_eq!(pick(MANY, "1.2.*").as_deref(), Some("1.2.9"));
        assert_eq!(pick(MANY, "0.*").as_deref(), Some("0.3.0"));
        assert_eq!(pick(MANY, ">=1.2, <1.5").as_deref(), Some("1.3.0"));
        assert_eq!(pick(MANY, "<1").as_deref(), Some("0.3.0"));
        assert_eq!(pick(MANY, ">2.1.0"), None);
    }

    #[test]
    fn yanked_versions_are_never_picked() {
        let versions = ["1.0.0", "1.1.0", "1.2.0!", "2.0.0!"];
        assert_eq!(pick(&versions, "^1").as_deref(), Some("1.1.0"));
        assert_eq!(pick(&versions, "*").as_deref(), Some("1.1.0"));
        assert_eq!(pick(&versions, "=1.2.0"), None, "not even exactly");
        assert_eq!(pick(&versions, "^2"), None);
        assert_eq!(pick(&["1.0.0!"], "*"), None);
    }

    #[test]
    fn pre_releases_only_when_the_requirement_names_one() {
        let versions = ["1.2.0", "1.3.0-alpha.1", "1.3.0-beta.2", "2.0.0-rc.1"];
        // Plain requirements never pick a pre-release, however high.
        assert_eq!(pick(&versions, "^1.2").as_deref(), Some("1.2.0"));
        assert_eq!(pick(&versions, "*").as_deref(), Some("1.2.0"));
        assert_eq!(pick(&versions, ">=1.2").as_deref(), Some("1.2.0"));
        assert_eq!(pick(&versions, "^2"), None);
        // Naming a pre-release opts in to that major.minor.patch's
        // pre-releases, and picks the highest.
        assert_eq!(
            pick(&versions, "^1.3.0-alpha.1").as_deref(),
            Some("1.3.0-beta.2")
        );
        assert_eq!(
            pick(&versions, "=1.3.0-alpha.1").as_deref(),
            Some("1.3.0-alpha.1")
        );
        assert_eq!(
            pick(&versions, "^2.0.0-rc.1").as_deref(),
            Some("2.0.0-rc.1")
        );
        // ... but not another version's pre-releases.
        assert_eq!(
            pick(&["1.3.0-beta.2", "1.4.0-rc.1"], "^1.3.0-beta.1").as_deref(),
            Some("1.3.0-beta.2")
        );
        assert_eq!(pick(&["1.4.0-rc.1"], "^1.3.0-beta.1"), None);
        // The release beats its pre-releases.
        assert_eq!(
            pick(&["1.3.0-beta.2", "1.3.0"], "^1.3.0-beta.1").as_deref(),
            Some("1.3.0")
        );
        // A yanked pre-release is skipped too.
        assert_eq!(
            pick(&["1.3.0-beta.1", "1.3.0-beta.2!"], "^1.3.0-beta.1").as_deref(),
            Some("1.3.0-beta.1")
        );
    }

    #[test]
    fn bad_requirements_are_explained() {
        for bad in ["^^1", "1.2.3.4", "latest", ">= x"] {
            let err = parse_requirement(bad).unwrap_err();
            assert_eq!(err.requirement, bad);
            assert!(err.to_string().contains(bad), "{err}");
        }
    }
}
