//! The registry's HTTP API types, shared by the server and the client.
//!
//! Every JSON body is kebab-case. Errors are `application/problem+json`
//! ([`Problem`], RFC 9457) with a stable [`code`](Problem::code) that
//! programs match on; the codes are listed in [`codes`].

use chrono::{DateTime, Utc};
use semver::Version;
use serde::{Deserialize, Serialize};

use crate::Digest;
use crate::manifest::Manifest;

/// Upload header: the manifest, base64 (standard) of its JSON.
pub const MANIFEST_HEADER: &str = "steward-manifest";
/// Upload header: the signature, base64, over
/// [`signing_payload`](crate::signing::signing_payload).
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

/// The stable problem codes.
pub mod codes {
    /// 400: the request is malformed (bad JSON, bad digest syntax, …).
    pub const BAD_REQUEST: &str = "bad-request";
    /// 401: no token, or a token the registry does not know.
    pub const UNAUTHORIZED: &str = "unauthorized";
    /// 403: the namespace belongs to another publisher (or to nobody).
    pub const NOT_YOUR_NAMESPACE: &str = "not-your-namespace";
    /// 404: no such module, version, namespace or blob.
    pub const NOT_FOUND: &str = "not-found";
    /// 404: the module exists but no version satisfies the requirement.
    pub const NO_MATCH: &str = "no-match";
    /// 409: that version was published before; versions are immutable.
    pub const VERSION_EXISTS: &str = "version-exists";
    /// 409: the public key is registered to another publisher.
    pub const KEY_TAKEN: &str = "key-taken";
    /// 413: the module (or body) is larger than the registry accepts.
    pub const TOO_LARGE: &str = "too-large";
    /// 422: a path segment (namespace, name, version) is invalid.
    pub const INVALID: &str = "invalid";
    /// 422: the manifest header is missing, undecodable or invalid.
    pub const BAD_MANIFEST: &str = "bad-manifest";
    /// 422: the manifest's name or version differs from the upload path.
    pub const MANIFEST_MISMATCH: &str = "manifest-mismatch";
    /// 422: the namespace only accepts signed modules.
    pub const SIGNATURE_REQUIRED: &str = "signature-required";
    /// 422: the key id is not registered to the publishing publisher.
    pub const UNKNOWN_KEY: &str = "unknown-key";
    /// 422: the signature does not verify over the digest and manifest.
    pub const BAD_SIGNATURE: &str = "bad-signature";
    /// 422: the public key is not a usable ed25519 key.
    pub const BAD_KEY: &str = "bad-key";
    /// 422: the manifest's capabilities differ from the component's imports.
    pub const CAPABILITIES_MISMATCH: &str = "capabilities-mismatch";
    /// 422: the manifest's WIT package version differs from the component's
    /// (or the component mixes versions).
    pub const WIT_MISMATCH: &str = "wit-mismatch";
    /// 422: the bytes are not a WebAssembly component.
    pub const NOT_A_COMPONENT: &str = "not-a-component";
    /// 422: a component, but not a Steward plugin (no `plugin` export, or
    /// an import of an unknown `steward:plugin` interface).
    pub const NOT_A_PLUGIN: &str = "not-a-plugin";
    /// 422: the version requirement does not parse.
    pub const BAD_REQUIREMENT: &str = "bad-requirement";
    /// 500: the registry failed; its log has the details.
    pub const INTERNAL: &str = "internal";
    /// 503: the registry cannot reach its database.
    pub const UNAVAILABLE: &str = "unavailable";
}
