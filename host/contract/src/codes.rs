//! The one table of problem codes. Every Steward API (the server's
//! `/api/v1`, the registry's) answers an error as `application/problem+json`
//! whose `code` is one of these; clients match on the code, never on the
//! text. A code that means the same thing in two places is spelled once.

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
/// 503: the server (a registry or a host) cannot reach its database or
/// write to it just now; nothing was changed, and `Retry-After` says when
/// to try again.
pub const UNAVAILABLE: &str = "unavailable";

/// 422: the component imports something no host links (the network, a WASI
/// package outside the sandboxed subset, a foreign interface).
pub const FORBIDDEN_IMPORT: &str = "forbidden-import";

// The host's install and run codes (`steward serve`'s API). A code a host
// and the registry both answer is spelled once, above.

/// 409: the plugin's other version or origin refuses the install.
pub const INSTALL_REFUSED: &str = "install-refused";
/// 422: the install requests capabilities that were not granted.
pub const GRANTS_REQUIRED: &str = "grants-required";
/// 409: the server has no registry configured.
pub const REGISTRY_NOT_CONFIGURED: &str = "registry-not-configured";
/// 502: the registry refused the request.
pub const REGISTRY_REFUSED: &str = "registry-refused";
/// 502: the registry could not be reached.
pub const REGISTRY_UNAVAILABLE: &str = "registry-unavailable";
/// 502: the registry answered for another module than the one asked for.
pub const REGISTRY_WRONG_ANSWER: &str = "registry-wrong-answer";
/// 422: the downloaded bytes do not hash to the digest the registry named.
pub const DIGEST_MISMATCH: &str = "digest-mismatch";
/// 422: the module is not signed, and the namespace's trust requires it.
pub const UNSIGNED_MODULE: &str = "unsigned-module";
/// 422: the signing key is not trusted for the namespace.
pub const UNTRUSTED_KEY: &str = "untrusted-key";
/// 409: the installed plugin did not come from a registry.
pub const NOT_FROM_REGISTRY: &str = "not-from-registry";
/// 409: the registry's offer changed since it was shown.
pub const OFFER_CHANGED: &str = "offer-changed";
/// 409: the change needs an approval first.
pub const APPROVAL_REQUIRED: &str = "approval-required";
/// 403: the caller's role or tenants do not allow the call.
pub const FORBIDDEN: &str = "forbidden";
/// 409: an upload of another version of an installed plugin does not say
/// which installed version it replaces.
pub const REPLACES_REQUIRED: &str = "replaces-required";
/// 409: an object with that name or id exists.
pub const ALREADY_EXISTS: &str = "already-exists";
/// 409: the device's agent was revoked; the endpoint must enroll again.
pub const REVOKED: &str = "revoked";
