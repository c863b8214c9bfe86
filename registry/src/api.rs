//! The registry's HTTP API types, shared by the server and the client.
//!
//! Every JSON body is kebab-case. Errors are `application/problem+json`
//! ([`Problem`], RFC 9457) with a stable [`code`](Problem::code) that
//! programs match on; the codes are listed in [`codes`].

use chrono::{DateTime, Utc};
use semver::Version;
use serde::{Deserialize, Serialize};

use steward_contract::Digest;
use steward_contract::manifest::Manifest;

/// Upload header: the manifest, base64 (standard) of its JSON.
pub const MANIFEST_HEADER: &str = "steward-manifest";
/// Upload header: the signature, base64, over
/// [`signing_payload`](steward_contract::signing::signing_payload).
pub const SIGNATURE_HEADER: &str = "steward-signature";
/// Upload header: the id of the key that made the signature.
pub const KEY_ID_HEADER: &str = "steward-key-id";
/// The media type of module bytes.
pub const WASM_MEDIA_TYPE: &str = "application/wasm";
/// The media type of errors.
pub const PROBLEM_MEDIA_TYPE: &str = "application/problem+json";

/// One published version of a module, as the index keeps it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct VersionRecord {
    /// The publisher's namespace (`acme`).
    pub namespace: String,
    /// The module's name within it (`patching`).
    pub name: String,
    /// The version.
    pub version: Version,
    /// The sha256 of the module's bytes: where to download them.
    pub digest: Digest,
    /// The module's size in bytes.
    pub size: u64,
    /// The manifest it was published with.
    pub manifest: Manifest,
    /// The publisher's signature (base64), absent for a module in an
    /// unsigned namespace published without one.
    pub signature: Option<String>,
    /// The id of the key that made [`signature`](VersionRecord::signature).
    pub key_id: Option<String>,
    /// Yanked versions are never chosen by [resolution](crate::resolve)
    /// but stay downloadable by digest.
    pub yanked: bool,
    /// When it was published.
    pub published_at: DateTime<Utc>,
}

/// `GET /v1/modules/{namespace}/{name}`: every version, oldest first.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct ModuleVersions {
    /// The namespace.
    pub namespace: String,
    /// The module's name.
    pub name: String,
    /// Its versions in ascending semver order, yanked ones included.
    pub versions: Vec<VersionRecord>,
}

/// `GET /v1/modules/{namespace}/{name}/resolve?req=…`: the chosen version
/// and, when it is signed, the public key of the key that signed it.
///
/// The public key is what the registry says; a client decides for itself
/// whether to trust it (see [`crate::client::verify_resolved`]).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct Resolved {
    /// The chosen version.
    pub record: VersionRecord,
    /// The base64 public key of [`VersionRecord::key_id`], if signed.
    pub public_key: Option<String>,
}

/// `POST /v1/keys` body.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub struct RegisterKey {
    /// The ed25519 public key, base64.
    pub public_key: String,
}

/// `POST /v1/keys` answer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct RegisteredKey {
    /// The key's id, to send in `Steward-Key-Id`.
    pub key_id: String,
}

/// A publisher's public key.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct KeyInfo {
    /// `ed25519:…`.
    pub key_id: String,
    /// The public key, base64.
    pub public_key: String,
}

/// `GET /v1/namespaces/{namespace}/keys`: the keys of the publisher that
/// owns the namespace.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct NamespaceKeys {
    /// The namespace.
    pub namespace: String,
    /// Whether the namespace accepts unsigned modules (development only).
    pub unsigned: bool,
    /// The owner's registered keys.
    pub keys: Vec<KeyInfo>,
}

/// `GET /v1/search?q=…`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct SearchResults {
    /// The latest non-yanked version of each matching module, by name.
    pub results: Vec<VersionRecord>,
}

/// The body of every error response.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Problem {
    /// A URI naming the kind of problem.
    #[serde(rename = "type")]
    pub kind: String,
    /// The HTTP status's reason phrase.
    pub title: String,
    /// The HTTP status.
    pub status: u16,
    /// What went wrong, for a person.
    pub detail: String,
    /// What went wrong, for a program: one of [`codes`].
    pub code: String,
}

/// The problem codes, from the one table every Steward API shares.
pub use steward_contract::codes;
