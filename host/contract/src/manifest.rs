//! The module manifest: what a publisher says about a module version.
//!
//! A manifest travels with every upload (base64 JSON in the
//! `Steward-Manifest` header), is stored beside the version in the index
//! and is part of what a publisher signs (see [`crate::signing`]). Its JSON
//! form is kebab-case and strict: unknown fields are refused, so a typo
//! cannot silently drop a field a publisher meant to sign.
//!
//! [`Manifest::validate`] checks what the type system cannot (name syntax,
//! the WIT package, known capability names, …) and names the offending
//! field in its error. The registry additionally checks the manifest
//! against the uploaded component (its real imports) and the upload's path.

use std::collections::BTreeSet;

use serde::{Deserialize, Serialize};

use crate::capability::Capability;
use crate::imports::{Imports, WIT_PACKAGE, WIT_VERSION};

/// Longest namespace or module name, in bytes.
pub const MAX_NAME_LEN: usize = 64;
/// Longest description, in characters.
pub const MAX_DESCRIPTION_LEN: usize = 2000;
/// Longest license expression, in characters.
pub const MAX_LICENSE_LEN: usize = 200;
/// Longest homepage URL, in characters.
pub const MAX_HOMEPAGE_LEN: usize = 2000;

/// What a publisher declares about one version of a module.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub struct Manifest {
    /// `namespace/module`, for example `acme/patching`: the publisher's
    /// namespace and the module's name, each `[a-z0-9-]`.
    pub name: String,
    /// The module's version. Build metadata (`+…`) is refused: versions are
    /// told apart by precedence alone.
    pub version: semver::Version,
    /// One line or a short paragraph for people browsing the registry.
    pub description: String,
    /// The license, as an SPDX expression such as `Apache-2.0`.
    pub license: String,
    /// Where to read more (`https://…`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub homepage: Option<String>,
    /// The WIT package the component was built against, for example
    /// `steward:plugin@0.1.0`.
    pub wit: String,
    /// The requestable capabilities the component imports (`packages`,
    /// `tickets`, …). Always-granted interfaces (`log`, `config`, `clock`,
    /// `state`) are not listed.
    pub capabilities: BTreeSet<String>,
}

/// How a manifest fails to describe its component.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ImportsMismatch {
    /// The manifest's capabilities are not the component's requestable
    /// imports.
    #[error(
        "the manifest declares capabilities [{}] but the component imports [{}]",
        list(manifest),
        list(component)
    )]
    Capabilities {
        /// From the manifest.
        manifest: BTreeSet<String>,
        /// From the component.
        component: BTreeSet<String>,
    },
    /// The manifest's `wit` is not the package the component was built
    /// against.
    #[error(
        "the manifest says `wit` is `{manifest}` but the component was built against `{component}`"
    )]
    Wit {
        /// From the manifest.
        manifest: String,
        /// From the component.
        component: String,
    },
}

impl ImportsMismatch {
    /// The registry's problem code for it.
    pub fn code(&self) -> &'static str {
        match self {
            Self::Capabilities { .. } => crate::codes::CAPABILITIES_MISMATCH,
            Self::Wit { .. } => crate::codes::WIT_MISMATCH,
        }
    }
}

fn list(set: &BTreeSet<String>) -> String {
    if set.is_empty() {
        "none".to_owned()
    } else {
        set.iter().cloned().collect::<Vec<_>>().join(", ")
    }
}

/// A manifest field that is wrong, and why.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("manifest field `{field}`: {message}")]
pub struct ManifestError {
    /// The offending field (`name`, `version`, `capabilities`, …).
    pub field: &'static str,
    /// What is wrong with it.
    pub message: String,
}

impl ManifestError {
    fn new(field: &'static str, message: impl Into<String>) -> Self {
        Self {
            field,
            message: message.into(),
        }
    }
}

impl Manifest {
    /// Parses a manifest from JSON (strict: unknown fields are refused)
    /// and [validates](Manifest::validate) it.
    ///
    /// # Errors
    ///
    /// [`ManifestError`] naming the field when the JSON does not decode
    /// (`field` is `manifest` when no single field is to blame) or a field
    /// is invalid.
    pub fn from_json(bytes: &[u8]) -> Result<Self, ManifestError> {
        let manifest: Manifest = serde_json::from_slice(bytes)
            .map_err(|e| ManifestError::new("manifest", format!("not a valid manifest: {e}")))?;
        manifest.validate()?;
        Ok(manifest)
    }

    /// The canonical JSON form: `serde_json::to_vec` of this struct, fields
    /// in declaration order, capabilities sorted, no whitespace. This is
    /// the form that is signed.
    pub fn canonical_json(&self) -> Vec<u8> {
        serde_json::to_vec(self).expect("a manifest always serialises")
    }

    /// The namespace part of [`name`](Manifest::name) (before the `/`).
    pub fn namespace(&self) -> &str {
        self.name.split_once('/').map_or("", |(ns, _)| ns)
    }

    /// The module part of [`name`](Manifest::name) (after the `/`).
    pub fn module(&self) -> &str {
        self.name.split_once('/').map_or("", |(_, m)| m)
    }

    /// Whether this manifest describes the component whose imports are
    /// `imports`: the same capabilities, built against the same WIT
    /// package. The registry refuses a publish, `steward plugin publish`
    /// an upload and the host an install, when it does not.
    pub fn describes(&self, imports: &Imports) -> Result<(), ImportsMismatch> {
        if self.capabilities != imports.capabilities {
            return Err(ImportsMismatch::Capabilities {
                manifest: self.capabilities.clone(),
                component: imports.capabilities.clone(),
            });
        }
        if self.wit != imports.wit {
            return Err(ImportsMismatch::Wit {
                manifest: self.wit.clone(),
                component: imports.wit.clone(),
            });
        }
        Ok(())
    }

    /// Checks every field.
    ///
    /// # Errors
    ///
    /// The first invalid field, by name, with the reason.
    pub fn validate(&self) -> Result<(), ManifestError> {
        let Some((namespace, module)) = self.name.split_once('/') else {
            return Err(ManifestError::new(
                "name",
                format!(
                    "`{}` must be `namespace/module`, for example `acme/patching`",
                    self.name
                ),
            ));
        };
        check_name_part("namespace", namespace).map_err(|m| ManifestError::new("name", m))?;
        check_name_part("module name", module).map_err(|m| ManifestError::new("name", m))?;

        if !self.version.build.is_empty() {
            return Err(ManifestError::new(
                "version",
                format!(
                    "`{}` has build metadata (`+{}`); versions are compared by precedence, which ignores it, so it is not allowed",
                    self.version, self.version.build
                ),
            ));
        }

        let description = self.description.trim();
        if description.is_empty() {
            return Err(ManifestError::new("description", "must not be empty"));
        }
        if self.description.chars().count() > MAX_DESCRIPTION_LEN {
            return Err(ManifestError::new(
                "description",
                format!("must be at most {MAX_DESCRIPTION_LEN} characters"),
            ));
        }
        if self
            .description
            .chars()
            .any(|c| c.is_control() && c != '\n')
        {
            return Err(ManifestError::new(
                "description",
                "must not contain control characters other than newlines",
            ));
        }

        let license = self.license.trim();
        if license.is_empty() {
            return Err(ManifestError::new(
                "license",
                "must not be empty; give an SPDX expression such as `Apache-2.0`",
            ));
        }
        if self.license.chars().count() > MAX_LICENSE_LEN || self.license.contains('\n') {
            return Err(ManifestError::new(
                "license",
                format!("must be one line of at most {MAX_LICENSE_LEN} characters"),
            ));
        }

        if let Some(homepage) = &self.homepage {
            let scheme_ok = homepage.starts_with("https://") || homepage.starts_with("http://");
            if !scheme_ok
                || homepage.len() > MAX_HOMEPAGE_LEN
                || homepage
                    .chars()
                    .any(|c| c.is_whitespace() || c.is_control())
            {
                return Err(ManifestError::new(
                    "homepage",
                    format!(
                        "`{homepage}` must be an http:// or https:// URL without spaces, at most {MAX_HOMEPAGE_LEN} characters"
                    ),
                ));
            }
        }

        let wit_version = self
            .wit
            .strip_prefix(WIT_PACKAGE)
            .and_then(|rest| rest.strip_prefix('@'))
            .ok_or_else(|| {
                ManifestError::new(
                    "wit",
                    format!(
                        "`{}` must be `{WIT_PACKAGE}@<version>`, for example `{WIT_PACKAGE}@{WIT_VERSION}`",
                        self.wit
                    ),
                )
            })?;
        semver::Version::parse(wit_version).map_err(|e| {
            ManifestError::new(
                "wit",
                format!("`{wit_version}` is not a semver version: {e}"),
            )
        })?;

        let requestable = || {
            Capability::ALL
                .into_iter()
                .filter(|c| !c.always_granted())
                .map(Capability::name)
                .collect::<Vec<_>>()
                .join(", ")
        };
        for capability in &self.capabilities {
            match capability.parse::<Capability>() {
                Ok(c) if c.always_granted() => {
                    return Err(ManifestError::new(
                        "capabilities",
                        format!(
                            "`{capability}` is always granted; list only requestable capabilities ({})",
                            requestable()
                        ),
                    ));
                }
                Ok(c) if !c.in_version(wit_version) => {
                    return Err(ManifestError::new(
                        "capabilities",
                        format!(
                            "`{capability}` is an interface of `{WIT_PACKAGE}@{}` and later, not of `{}`",
                            c.since(),
                            self.wit
                        ),
                    ));
                }
                Ok(_) => {}
                Err(_) => {
                    return Err(ManifestError::new(
                        "capabilities",
                        format!(
                            "`{capability}` is not a Steward capability; known: {}",
                            requestable()
                        ),
                    ));
                }
            }
        }
        Ok(())
    }
}

/// Checks one part of a module's name (a namespace or a module name):
/// 1 to [`MAX_NAME_LEN`] characters of `[a-z0-9-]`, not starting or ending
/// with `-`. `what` names the part in the message.
///
/// # Errors
///
/// The reason, for a person.
pub fn check_name_part(what: &str, part: &str) -> Result<(), String> {
    if part.is_empty() {
        return Err(format!("the {what} must not be empty"));
    }
    if part.len() > MAX_NAME_LEN {
        return Err(format!(
            "the {what} `{part}` is longer than {MAX_NAME_LEN} characters"
        ));
    }
    if !part
        .bytes()
        .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
    {
        return Err(format!(
            "the {what} `{part}` may contain only lowercase letters, digits and `-`"
        ));
    }
    if part.starts_with('-') || part.ends_with('-') {
        return Err(format!(
            "the {what} `{part}` must not start or end with `-`"
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn manifest() -> Manifest {
        Manifest {
            name: "acme/patching".into(),
            version: "1.2.3".parse().unwrap(),
            description: "Keeps packages patched".into(),
            license: "Apache-2.0".into(),
            homepage: Some("https://example.com/patching".into()),
            wit: "steward:plugin@0.1.0".into(),
            capabilities: ["packages".to_string()].into(),
        }
    }

    fn field_of(m: &Manifest) -> &'static str {
        m.validate().expect_err("should be invalid").field
    }

    #[test]
    fn a_good_manifest_validates_and_splits_its_name() {
        let m = manifest();
        m.validate().unwrap();
        assert_eq!(m.namespace(), "acme");
        assert_eq!(m.module(), "patching");
    }

    #[test]
    fn json_is_kebab_case_strict_and_canonical() {
        let m = manifest();
        let json = String::from_utf8(m.canonical_json()).unwrap();
        assert_eq!(
            json,
            r#"{"name":"acme/patching","version":"1.2.3","description":"Keeps packages patched","license":"Apache-2.0","homepage":"https://example.com/patching","wit":"steward:plugin@0.1.0","capabilities":["packages"]}"#
        );
        assert_eq!(Manifest::from_json(json.as_bytes()).unwrap(), m);

        let unknown = json.replace("\"license\"", "\"licence\"");
        let err = Manifest::from_json(unknown.as_bytes()).unwrap_err();
        assert_eq!(err.field, "manifest");
        assert!(err.message.contains("licence"), "{err}");

        let mut no_homepage = manifest();
        no_homepage.homepage = None;
        let json = String::from_utf8(no_homepage.canonical_json()).unwrap();
        assert!(!json.contains("homepage"), "{json}");
        assert_eq!(Manifest::from_json(json.as_bytes()).unwrap(), no_homepage);
    }

    #[test]
    fn capabilities_serialise_sorted_whatever_the_input_order() {
        let json = r#"{"name":"a/b","version":"1.0.0","description":"d","license":"MIT","wit":"steward:plugin@0.1.0","capabilities":["tickets","accounts"]}"#;
        let m = Manifest::from_json(json.as_bytes()).unwrap();
        let out = String::from_utf8(m.canonical_json()).unwrap();
        assert!(
            out.ends_with(r#""capabilities":["accounts","tickets"]}"#),
            "{out}"
        );
    }

    #[test]
    fn invalid_fields_are_named() {
        for name in [
            "patching",
            "Acme/patching",
            "acme/",
            "/x",
            "acme/pat_ching",
            "-acme/x",
            "acme/x/y",
        ] {
            let mut m = manifest();
            m.name = name.into();
            assert_eq!(field_of(&m), "name", "{name}");
        }
        let mut m = manifest();
        m.name = format!("acme/{}", "a".repeat(MAX_NAME_LEN + 1));
        assert_eq!(field_of(&m), "name");

        let mut m = manifest();
        m.version = "1.0.0+build.5".parse().unwrap();
        assert_eq!(field_of(&m), "version");

        let mut m = manifest();
        m.description = "  ".into();
        assert_eq!(field_of(&m), "description");

        let mut m = manifest();
        m.license = String::new();
        assert_eq!(field_of(&m), "license");

        let mut m = manifest();
        m.homepage = Some("ftp://example.com".into());
        assert_eq!(field_of(&m), "homepage");

        for wit in [
            "steward:plugin",
            "steward:other@0.1.0",
            "steward:plugin@one",
        ] {
            let mut m = manifest();
            m.wit = wit.into();
            assert_eq!(field_of(&m), "wit", "{wit}");
        }

        for cap in ["log", "network"] {
            let mut m = manifest();
            m.capabilities.insert(cap.into());
            let err = m.validate().unwrap_err();
            assert_eq!(err.field, "capabilities");
            assert!(err.message.contains(cap), "{err}");
        }
    }

    #[test]
    fn name_parts_follow_the_rules() {
        assert!(check_name_part("namespace", "acme-2").is_ok());
        assert!(check_name_part("namespace", "").is_err());
        assert!(check_name_part("namespace", "acme-").is_err());
        assert!(check_name_part("namespace", "ACME").is_err());
        assert!(check_name_part("namespace", "a.b").is_err());
    }
}
