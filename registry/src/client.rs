//! The registry's client: what the Steward host and CLI use to publish,
//! resolve and download modules.
//!
//! Every call is one HTTP request. A refusal comes back as
//! [`ClientError::Api`] carrying the server's problem `code` (one of
//! [`crate::api::codes`]) and `detail`, so callers can match on the code
//! and show the detail.
//!
//! Uploads and downloads stream: [`RegistryClient::publish`] reads a file
//! twice (once to hash it for the signature, once to send it) and never
//! holds it whole; [`RegistryClient::download`] stops as soon as the body
//! passes its size bound and checks the digest of what arrived.
//!
//! Nothing the registry says is trusted for installing a module:
//! [`verify_resolved`] checks the downloaded bytes against the digest and
//! the signature against keys the caller trusts.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use bytes::Bytes;
use futures_util::StreamExt as _;
use reqwest::Method;
use reqwest::header::{CONTENT_LENGTH, CONTENT_TYPE};
use semver::Version;
use serde::de::DeserializeOwned;
use sha2::{Digest as _, Sha256};
use tokio::io::AsyncReadExt as _;

use crate::api::{
    KEY_ID_HEADER, MANIFEST_HEADER, ModuleVersions, NamespaceKeys, Problem, RegisterKey,
    RegisteredKey, Resolved, SIGNATURE_HEADER, SearchResults, VersionRecord, WASM_MEDIA_TYPE,
};
use steward_contract::Digest;
use steward_contract::manifest::{Manifest, ManifestError, check_name_part};
use steward_contract::signing::{self, SecretKey, SigningError};

/// How many bytes an upload sends at a time (and reports progress for).
const UPLOAD_CHUNK: usize = 64 * 1024;

/// Why a registry call failed.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// The registry refused, with its problem code and detail.
    #[error("the registry refused ({status} {code}): {detail}")]
    Api {
        /// The HTTP status.
        status: u16,
        /// The problem code (`version-exists`, `bad-signature`, …), or
        /// `http-<status>` when the answer was not a problem document.
        code: String,
        /// The server's explanation.
        detail: String,
    },
    /// The registry could not be reached, or the connection failed.
    #[error("cannot talk to the registry at {url}: {source}")]
    Http {
        /// The URL requested.
        url: String,
        /// What failed.
        source: reqwest::Error,
    },
    /// A local file could not be read.
    #[error("cannot read {}: {source}", path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// What failed.
        source: std::io::Error,
    },
    /// A download is larger than the caller allowed.
    #[error("the module is larger than the {max} bytes allowed")]
    TooLarge {
        /// The bound.
        max: u64,
    },
    /// A download was slower than the client's floor (see
    /// [`RegistryClient::with_download_floor`]).
    #[error("the download from {url} did not finish within {seconds:.1} s")]
    TooSlow {
        /// The URL requested.
        url: String,
        /// The time it had.
        seconds: f64,
    },
    /// Downloaded bytes do not have the digest asked for.
    #[error("the downloaded bytes have digest {actual}, not the {expected} asked for")]
    DigestMismatch {
        /// The digest asked for.
        expected: Digest,
        /// The digest of what arrived.
        actual: Digest,
    },
    /// The manifest to publish is invalid.
    #[error(transparent)]
    Manifest(#[from] ManifestError),
    /// An argument is invalid (a name, a key).
    #[error("{0}")]
    Invalid(String),
    /// The call needs a publisher token and the client has none.
    #[error("this needs a publisher token; create the client with one")]
    NoToken,
    /// The registry answered something that is not the API's JSON.
    #[error("unexpected answer from the registry: {0}")]
    InvalidResponse(String),
}

impl ClientError {
    /// The server's problem code, for a refusal.
    pub fn code(&self) -> Option<&str> {
        match self {
            ClientError::Api { code, .. } => Some(code),
            _ => None,
        }
    }

    /// The HTTP status, for a refusal.
    pub fn status(&self) -> Option<u16> {
        match self {
            ClientError::Api { status, .. } => Some(*status),
            _ => None,
        }
    }

    /// The server's explanation, for a refusal.
    pub fn detail(&self) -> Option<&str> {
        match self {
            ClientError::Api { detail, .. } => Some(detail),
            _ => None,
        }
    }
}

/// Where the bytes of a module to publish come from.
#[derive(Debug, Clone)]
pub enum PublishSource {
    /// A file, streamed from disk.
    File(PathBuf),
    /// Bytes in memory.
    Bytes(Bytes),
}

impl From<&Path> for PublishSource {
    fn from(p: &Path) -> Self {
        PublishSource::File(p.to_owned())
    }
}

impl From<PathBuf> for PublishSource {
    fn from(p: PathBuf) -> Self {
        PublishSource::File(p)
    }
}

impl From<&PathBuf> for PublishSource {
    fn from(p: &PathBuf) -> Self {
        PublishSource::File(p.clone())
    }
}

impl From<Vec<u8>> for PublishSource {
    fn from(b: Vec<u8>) -> Self {
        PublishSource::Bytes(b.into())
    }
}

impl From<&[u8]> for PublishSource {
    fn from(b: &[u8]) -> Self {
        PublishSource::Bytes(Bytes::copy_from_slice(b))
    }
}

impl From<Bytes> for PublishSource {
    fn from(b: Bytes) -> Self {
        PublishSource::Bytes(b)
    }
}

/// A client of one registry.
#[derive(Debug, Clone)]
pub struct RegistryClient {
    base: String,
    token: Option<String>,
    http: reqwest::Client,
    download_floor: DownloadFloor,
}

/// How slow a download may be: after `grace`, it must have averaged
/// `bytes_per_second` over its size (or, without a `Content-Length`, over
/// the most the caller accepts).
#[derive(Debug, Clone, Copy)]
struct DownloadFloor {
    grace: Duration,
    bytes_per_second: u64,
}

impl DownloadFloor {
    fn limit(self, size: u64) -> Duration {
        self.grace + Duration::from_secs_f64(size as f64 / self.bytes_per_second.max(1) as f64)
    }
}

impl RegistryClient {
    /// A client of the registry at `base_url` (`http://host:port`, with or
    /// without a trailing `/`), authenticating with `token` (a publisher
    /// token, `stwr_…`) when given. Reads need no token.
    ///
    /// # Errors
    ///
    /// [`ClientError::Invalid`] for a URL that is not `http://` or
    /// `https://`; [`ClientError::Http`] when the HTTP client cannot be
    /// built.
    pub fn new(base_url: impl Into<String>, token: Option<String>) -> Result<Self, ClientError> {
        let base = base_url.into().trim_end_matches('/').to_owned();
        if !(base.starts_with("http://") || base.starts_with("https://")) {
            return Err(ClientError::Invalid(format!(
                "the registry URL `{base}` must start with http:// or https://"
            )));
        }
        // A stalled registry fails a call instead of holding it (and an
        // API request waiting on it) forever; a large download that keeps
        // moving is not cut off.
        let http = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(10))
            .read_timeout(Duration::from_secs(60))
            .user_agent(concat!(
                "steward-registry-client/",
                env!("CARGO_PKG_VERSION")
            ))
            .build()
            .map_err(|source| ClientError::Http {
                url: base.clone(),
                source,
            })?;
        Ok(Self {
            base,
            token,
            http,
            download_floor: DownloadFloor {
                grace: Duration::from_secs(60),
                bytes_per_second: 256 * 1024,
            },
        })
    }

    /// Sets how slow a download may be before it fails with
    /// [`ClientError::TooSlow`]: it gets `grace` plus its size at
    /// `bytes_per_second` (by default one minute plus 256 KiB/s), so a
    /// registry that keeps trickling bytes cannot hold a caller forever.
    pub fn with_download_floor(mut self, grace: Duration, bytes_per_second: u64) -> Self {
        self.download_floor = DownloadFloor {
            grace,
            bytes_per_second,
        };
        self
    }

    /// The registry's base URL.
    pub fn base_url(&self) -> &str {
        &self.base
    }

    /// Registers a public key (base64) to the token's publisher and
    /// returns its key id. Registering a key twice is harmless.
    ///
    /// # Errors
    ///
    /// `bad-key` for an unusable key, `key-taken` when another publisher
    /// registered it, `unauthorized` without a valid token.
    pub async fn register_key(&self, public_key: &str) -> Result<String, ClientError> {
        let url = self.url(&["v1", "keys"]);
        let request = self.authed(Method::POST, &url)?.json(&RegisterKey {
            public_key: public_key.to_owned(),
        });
        let registered: RegisteredKey = self.json(request, &url).await?;
        Ok(registered.key_id)
    }

    /// Publishes a module version: `module`'s bytes with `manifest`, signed
    /// by `key` (which must be registered) unless `None` (accepted only by
    /// unsigned namespaces). The body streams; `progress(sent, total)` is
    /// called as bytes go out.
    ///
    /// # Errors
    ///
    /// [`ClientError::Manifest`] for an invalid manifest (nothing is sent);
    /// [`ClientError::Io`] when the file cannot be read; the server's
    /// refusals as [`ClientError::Api`] (see [`crate::server`]).
    pub async fn publish<P>(
        &self,
        module: impl Into<PublishSource>,
        manifest: &Manifest,
        key: Option<&SecretKey>,
        progress: P,
    ) -> Result<VersionRecord, ClientError>
    where
        P: Fn(u64, u64) + Send + Sync + 'static,
    {
        manifest.validate()?;
        let module = module.into();
        let (digest, total) = match &module {
            PublishSource::File(path) => hash_file(path).await?,
            PublishSource::Bytes(bytes) => (Digest::of(bytes), bytes.len() as u64),
        };
        let url = self.url(&[
            "v1",
            "modules",
            manifest.namespace(),
            manifest.module(),
            &manifest.version.to_string(),
        ]);
        let mut request = self
            .authed(Method::PUT, &url)?
            .header(CONTENT_TYPE, WASM_MEDIA_TYPE)
            .header(CONTENT_LENGTH, total)
            .header(MANIFEST_HEADER, BASE64.encode(manifest.canonical_json()));
        if let Some(key) = key {
            request = request
                .header(SIGNATURE_HEADER, key.sign_module(&digest, manifest))
                .header(KEY_ID_HEADER, key.key_id());
        }
        let progress = Arc::new(progress);
        progress(0, total);
        let body = match module {
            PublishSource::File(path) => file_body(path, total, progress),
            PublishSource::Bytes(bytes) => bytes_body(bytes, progress),
        };
        self.json(request.body(body), &url).await
    }

    /// Every version of a module (yanked ones included), oldest first.
    ///
    /// # Errors
    ///
    /// `not-found` when the module has no versions.
    pub async fn versions(
        &self,
        namespace: &str,
        name: &str,
    ) -> Result<Vec<VersionRecord>, ClientError> {
        check_module(namespace, name)?;
        let url = self.url(&["v1", "modules", namespace, name]);
        let listing: ModuleVersions = self.json(self.http.get(&url), &url).await?;
        Ok(listing.versions)
    }

    /// The highest non-yanked version matching `requirement` (Cargo's
    /// rules, see [`crate::resolve`]) and the public key of its signing key.
    ///
    /// # Errors
    ///
    /// `no-match` (the detail lists the versions), `not-found`,
    /// `bad-requirement`.
    pub async fn resolve(
        &self,
        namespace: &str,
        name: &str,
        requirement: &str,
    ) -> Result<Resolved, ClientError> {
        check_module(namespace, name)?;
        let url = self.url(&["v1", "modules", namespace, name, "resolve"]);
        let request = self.http.get(&url).query(&[("req", requirement)]);
        self.json(request, &url).await
    }

    /// Downloads the bytes with `digest`, refusing more than `max_bytes`
    /// and checking that what arrived has that digest.
    ///
    /// # Errors
    ///
    /// [`ClientError::TooLarge`], [`ClientError::DigestMismatch`],
    /// [`ClientError::TooSlow`], `not-found`.
    pub async fn download(&self, digest: &Digest, max_bytes: u64) -> Result<Vec<u8>, ClientError> {
        let url = self.url(&["v1", "blobs", &digest.to_string()]);
        let started = tokio::time::Instant::now();
        let too_slow = |limit: Duration| ClientError::TooSlow {
            url: url.clone(),
            seconds: limit.as_secs_f64(),
        };
        // Until the size is known, the most the caller accepts sets it.
        let mut limit = self.download_floor.limit(max_bytes);
        let response =
            tokio::time::timeout_at(started + limit, self.send(self.http.get(&url), &url))
                .await
                .map_err(|_| too_slow(limit))??;
        if response.content_length().is_some_and(|len| len > max_bytes) {
            return Err(ClientError::TooLarge { max: max_bytes });
        }
        if let Some(len) = response.content_length() {
            limit = self.download_floor.limit(len);
        }
        let capacity = response.content_length().unwrap_or(0).min(max_bytes);
        let mut out = Vec::with_capacity(usize::try_from(capacity).unwrap_or(0));
        let mut hasher = Sha256::new();
        let mut stream = response.bytes_stream();
        while let Some(chunk) = tokio::time::timeout_at(started + limit, stream.next())
            .await
            .map_err(|_| too_slow(limit))?
        {
            let chunk = chunk.map_err(|source| ClientError::Http {
                url: url.clone(),
                source,
            })?;
            if (out.len() + chunk.len()) as u64 > max_bytes {
                return Err(ClientError::TooLarge { max: max_bytes });
            }
            hasher.update(&chunk);
            out.extend_from_slice(&chunk);
        }
        let actual = Digest::from_bytes(hasher.finalize().into());
        if actual != *digest {
            return Err(ClientError::DigestMismatch {
                expected: *digest,
                actual,
            });
        }
        Ok(out)
    }

    /// Yanks a version: resolution stops choosing it; it stays
    /// downloadable by digest.
    ///
    /// # Errors
    ///
    /// `not-your-namespace`, `not-found`, `unauthorized`.
    pub async fn yank(
        &self,
        namespace: &str,
        name: &str,
        version: &Version,
    ) -> Result<VersionRecord, ClientError> {
        self.set_yanked(namespace, name, version, "yank").await
    }

    /// Undoes a yank.
    ///
    /// # Errors
    ///
    /// As [`yank`](RegistryClient::yank).
    pub async fn unyank(
        &self,
        namespace: &str,
        name: &str,
        version: &Version,
    ) -> Result<VersionRecord, ClientError> {
        self.set_yanked(namespace, name, version, "unyank").await
    }

    /// The latest non-yanked version of each module whose name or
    /// description contains `query` (case-insensitive).
    ///
    /// # Errors
    ///
    /// The registry cannot be reached.
    pub async fn search(&self, query: &str) -> Result<Vec<VersionRecord>, ClientError> {
        let url = self.url(&["v1", "search"]);
        let request = self.http.get(&url).query(&[("q", query)]);
        let results: SearchResults = self.json(request, &url).await?;
        Ok(results.results)
    }

    /// The public keys of the publisher owning `namespace`, and whether the
    /// namespace accepts unsigned modules.
    ///
    /// # Errors
    ///
    /// `not-found` for an unknown namespace.
    pub async fn keys(&self, namespace: &str) -> Result<NamespaceKeys, ClientError> {
        check_name_part("namespace", namespace).map_err(ClientError::Invalid)?;
        let url = self.url(&["v1", "namespaces", namespace, "keys"]);
        self.json(self.http.get(&url), &url).await
    }

    async fn set_yanked(
        &self,
        namespace: &str,
        name: &str,
        version: &Version,
        action: &str,
    ) -> Result<VersionRecord, ClientError> {
        check_module(namespace, name)?;
        let url = self.url(&[
            "v1",
            "modules",
            namespace,
            name,
            &version.to_string(),
            action,
        ]);
        self.json(self.authed(Method::POST, &url)?, &url).await
    }

    /// `base/seg1/seg2…`. Segments are names checked to be
    /// `[a-z0-9-]`, versions (`[0-9A-Za-z.-]`) or digests, none of which
    /// need escaping.
    fn url(&self, segments: &[&str]) -> String {
        let mut url = self.base.clone();
        for segment in segments {
            url.push('/');
            url.push_str(segment);
        }
        url
    }

    fn authed(&self, method: Method, url: &str) -> Result<reqwest::RequestBuilder, ClientError> {
        let token = self.token.as_deref().ok_or(ClientError::NoToken)?;
        Ok(self.http.request(method, url).bearer_auth(token))
    }

    /// Sends and turns a non-2xx answer into [`ClientError::Api`].
    async fn send(
        &self,
        request: reqwest::RequestBuilder,
        url: &str,
    ) -> Result<reqwest::Response, ClientError> {
        let response = request.send().await.map_err(|source| ClientError::Http {
            url: url.to_owned(),
            source,
        })?;
        if response.status().is_success() {
            return Ok(response);
        }
        Err(refusal(response).await)
    }

    async fn json<T: DeserializeOwned>(
        &self,
        request: reqwest::RequestBuilder,
        url: &str,
    ) -> Result<T, ClientError> {
        let response = self.send(request, url).await?;
        let bytes = response.bytes().await.map_err(|source| ClientError::Http {
            url: url.to_owned(),
            source,
        })?;
        serde_json::from_slice(&bytes).map_err(|e| ClientError::InvalidResponse(e.to_string()))
    }
}

/// The problem document of a refusal, or what can be made of the body.
async fn refusal(response: reqwest::Response) -> ClientError {
    let status = response.status();
    let body = response.bytes().await.unwrap_or_default();
    match serde_json::from_slice::<Problem>(&body) {
        Ok(problem) => ClientError::Api {
            status: status.as_u16(),
            code: problem.code,
            detail: problem.detail,
        },
        Err(_) => {
            let text = String::from_utf8_lossy(&body);
            let text: String = text.chars().take(500).collect();
            ClientError::Api {
                status: status.as_u16(),
                code: format!("http-{}", status.as_u16()),
                detail: if text.trim().is_empty() {
                    status
                        .canonical_reason()
                        .unwrap_or("no explanation")
                        .to_owned()
                } else {
                    text
                },
            }
        }
    }
}

fn check_module(namespace: &str, name: &str) -> Result<(), ClientError> {
    check_name_part("namespace", namespace)
        .and_then(|()| check_name_part("module name", name))
        .map_err(ClientError::Invalid)
}

async fn hash_file(path: &Path) -> Result<(Digest, u64), ClientError> {
    let io = |source| ClientError::Io {
        path: path.to_owned(),
        source,
    };
    let mut file = tokio::fs::File::open(path).await.map_err(io)?;
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; UPLOAD_CHUNK];
    let mut total = 0u64;
    loop {
        let n = file.read(&mut buf).await.map_err(io)?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
        total += n as u64;
    }
    Ok((Digest::from_bytes(hasher.finalize().into()), total))
}

/// A body streaming `path`, reporting progress. The file must still be
/// `total` bytes long (the `Content-Length` sent).
fn file_body<P>(path: PathBuf, total: u64, progress: Arc<P>) -> reqwest::Body
where
    P: Fn(u64, u64) + Send + Sync + 'static,
{
    struct State<P> {
        file: Option<tokio::fs::File>,
        path: PathBuf,
        sent: u64,
        progress: Arc<P>,
    }
    let state = State {
        file: None,
        path,
        sent: 0,
        progress,
    };
    let stream = futures_util::stream::unfold(Some(state), move |state| async move {
        let mut state = state?;
        if state.file.is_none() {
            match tokio::fs::File::open(&state.path).await {
                Ok(file) => state.file = Some(file),
                Err(e) => return Some((Err(e), None)),
            }
        }
        let file = state.file.as_mut().expect("opened above");
        let mut buf = vec![0u8; UPLOAD_CHUNK];
        match file.read(&mut buf).await {
            Ok(0) => None,
            Ok(n) => {
                buf.truncate(n);
                state.sent += n as u64;
                (state.progress)(state.sent, total.max(state.sent));
                Some((Ok(Bytes::from(buf)), Some(state)))
            }
            Err(e) => Some((Err(e), None)),
        }
    });
    reqwest::Body::wrap_stream(stream)
}

/// A body sending `bytes` in chunks, reporting progress.
fn bytes_body<P>(bytes: Bytes, progress: Arc<P>) -> reqwest::Body
where
    P: Fn(u64, u64) + Send + Sync + 'static,
{
    let total = bytes.len() as u64;
    let stream = futures_util::stream::unfold(0usize, move |offset| {
        let bytes = bytes.clone();
        let progress = progress.clone();
        async move {
            if offset >= bytes.len() {
                return None;
            }
            let end = (offset + UPLOAD_CHUNK).min(bytes.len());
            progress(end as u64, total);
            Some((Ok::<_, std::io::Error>(bytes.slice(offset..end)), end))
        }
    });
    reqwest::Body::wrap_stream(stream)
}

/// Why a resolved module must not be installed.
#[derive(Debug, thiserror::Error)]
pub enum VerifyError {
    /// The bytes are not the ones the record names.
    #[error("the module's bytes have digest {actual}, but the registry record says {expected}")]
    DigestMismatch {
        /// The record's digest.
        expected: Digest,
        /// The bytes' digest.
        actual: Digest,
    },
    /// The record's manifest names another module or version.
    #[error("the record is for {record} but its manifest says {manifest}")]
    ManifestMismatch {
        /// `namespace/name version` of the record.
        record: String,
        /// `name version` of the manifest.
        manifest: String,
    },
    /// The version carries no signature (published to an unsigned
    /// namespace). The digest did match.
    #[error("the module is not signed")]
    Unsigned,
    /// The signing key is not among the trusted keys.
    #[error("the module is signed by key {key_id}, which is not trusted")]
    UntrustedKey {
        /// The signing key's id.
        key_id: String,
    },
    /// The signature does not verify under the trusted key.
    #[error("the signature by key {key_id} does not verify: {source}")]
    BadSignature {
        /// The signing key's id.
        key_id: String,
        /// Why.
        source: SigningError,
    },
}

/// What [`verify_resolved`] established.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verified {
    /// The trusted key whose signature verified.
    pub key_id: String,
}

/// Checks that `bytes` are the module `resolved` names and that it is
/// signed by one of `trusted_public_keys` (base64 ed25519 keys).
///
/// In order: the bytes' sha256 is the record's digest; the record's
/// manifest names the record's module and version; the record has a
/// signature; a trusted key has the signature's key id; the signature
/// verifies over [`signing_payload`](signing::signing_payload) of the
/// digest and manifest under that key.
///
/// The public key in `resolved` is the registry's claim and is not used:
/// a caller that chooses to trust the registry's keys (trust on first use)
/// passes them in `trusted_public_keys` itself. Malformed trusted keys are
/// skipped. A caller that accepts unsigned modules (development) can treat
/// [`VerifyError::Unsigned`] as success: the digest check has passed by
/// then.
///
/// # Errors
///
/// The first check that fails, as [`VerifyError`].
pub fn verify_resolved(
    resolved: &Resolved,
    bytes: &[u8],
    trusted_public_keys: &[String],
) -> Result<Verified, VerifyError> {
    let record = &resolved.record;
    let actual = Digest::of(bytes);
    if actual != record.digest {
        return Err(VerifyError::DigestMismatch {
            expected: record.digest,
            actual,
        });
    }
    verify_record(resolved, trusted_public_keys)
}

/// [`verify_resolved`] without the digest check, for bytes already known
/// to have the record's digest ([`RegistryClient::download`] checks it as
/// they arrive): the manifest names the record's module and version, and
/// the signature verifies with one of `trusted_public_keys`.
///
/// # Errors
///
/// As [`verify_resolved`], but never [`VerifyError::DigestMismatch`].
pub fn verify_record(
    resolved: &Resolved,
    trusted_public_keys: &[String],
) -> Result<Verified, VerifyError> {
    let record = &resolved.record;
    let expected_name = format!("{}/{}", record.namespace, record.name);
    if record.manifest.name != expected_name || record.manifest.version != record.version {
        return Err(VerifyError::ManifestMismatch {
            record: format!("{expected_name} {}", record.version),
            manifest: format!("{} {}", record.manifest.name, record.manifest.version),
        });
    }
    let (Some(signature), Some(key_id)) = (&record.signature, &record.key_id) else {
        return Err(VerifyError::Unsigned);
    };
    let trusted = trusted_public_keys
        .iter()
        .find(|key| signing::key_id_of(key).is_ok_and(|id| id == *key_id))
        .ok_or_else(|| VerifyError::UntrustedKey {
            key_id: key_id.clone(),
        })?;
    let payload = signing::signing_payload(&record.digest, &record.manifest);
    signing::verify(trusted, &payload, signature).map_err(|source| VerifyError::BadSignature {
        key_id: key_id.clone(),
        source,
    })?;
    Ok(Verified {
        key_id: key_id.clone(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A registry that sends a blob a few bytes at a time.
    async fn trickling(chunks: usize, every: Duration) -> String {
        let app = axum::Router::new().route(
            "/v1/blobs/{digest}",
            axum::routing::get(move || async move {
                let stream = futures_util::stream::unfold(0, move |sent| async move {
                    if sent == chunks {
                        return None;
                    }
                    tokio::time::sleep(every).await;
                    Some((
                        Ok::<_, std::io::Error>(Bytes::from_static(b"0123456789")),
                        sent + 1,
                    ))
                });
                axum::body::Body::from_stream(stream)
            }),
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        url
    }

    #[tokio::test]
    async fn a_download_slower_than_the_floor_fails_and_one_above_it_does_not() {
        let bytes = b"0123456789".repeat(20);
        let digest = Digest::of(&bytes);
        // 200 bytes, 10 every 50 ms: a second. Sent without a length, so
        // the 400 bytes accepted set the limit: 0.2 s + 400 B at 1 kB/s.
        let url = trickling(20, Duration::from_millis(50)).await;
        let slow = RegistryClient::new(url.clone(), None)
            .unwrap()
            .with_download_floor(Duration::from_millis(200), 1_000);
        let err = slow.download(&digest, 400).await.unwrap_err();
        assert!(matches!(err, ClientError::TooSlow { .. }), "{err}");
        assert!(err.to_string().contains("within 0.6 s"), "{err}");
        let patient = RegistryClient::new(url, None)
            .unwrap()
            .with_download_floor(Duration::from_secs(30), 1_000);
        assert_eq!(patient.download(&digest, 400).await.unwrap(), bytes);
    }

    fn resolved(key: Option<&SecretKey>, bytes: &[u8]) -> Resolved {
        let manifest = Manifest {
            name: "acme/patching".into(),
            version: "1.0.0".parse().unwrap(),
            description: "Patches".into(),
            license: "MIT".into(),
            homepage: None,
            wit: "steward:plugin@0.1.0".into(),
            capabilities: ["packages".to_string()].into(),
        };
        let digest = Digest::of(bytes);
        Resolved {
            record: VersionRecord {
                namespace: "acme".into(),
                name: "patching".into(),
                version: manifest.version.clone(),
                digest,
                size: bytes.len() as u64,
                signature: key.map(|k| k.sign_module(&digest, &manifest)),
                key_id: key.map(SecretKey::key_id),
                manifest,
                yanked: false,
                published_at: chrono::Utc::now(),
            },
            public_key: key.map(SecretKey::public_key),
        }
    }

    #[test]
    fn verification_checks_digest_manifest_and_trusted_signature() {
        let key = SecretKey::generate();
        let r = resolved(Some(&key), b"module");
        let verified = verify_resolved(&r, b"module", &[key.public_key()]).unwrap();
        assert_eq!(verified.key_id, key.key_id());

        assert!(matches!(
            verify_resolved(&r, b"modulE", &[key.public_key()]),
            Err(VerifyError::DigestMismatch { .. })
        ));
        let stranger = SecretKey::generate();
        assert!(matches!(
            verify_resolved(&r, b"module", &[stranger.public_key(), "garbage".into()]),
            Err(VerifyError::UntrustedKey { .. })
        ));
        assert!(matches!(
            verify_resolved(&r, b"module", &[]),
            Err(VerifyError::UntrustedKey { .. })
        ));

        // A record whose manifest was changed after signing.
        let mut changed = r.clone();
        changed
            .record
            .manifest
            .capabilities
            .insert("tickets".into());
        assert!(matches!(
            verify_resolved(&changed, b"module", &[key.public_key()]),
            Err(VerifyError::BadSignature { .. })
        ));
        let mut renamed = r;
        renamed.record.name = "other".into();
        assert!(matches!(
            verify_resolved(&renamed, b"module", &[key.public_key()]),
            Err(VerifyError::ManifestMismatch { .. })
        ));

        let unsigned = resolved(None, b"module");
        assert!(matches!(
            verify_resolved(&unsigned, b"module", &[key.public_key()]),
            Err(VerifyError::Unsigned)
        ));
    }

    #[test]
    fn base_urls_are_checked_and_trimmed() {
        let client = RegistryClient::new("http://127.0.0.1:1/", None).unwrap();
        assert_eq!(client.base_url(), "http://127.0.0.1:1");
        assert_eq!(
            client.url(&["v1", "modules", "acme", "x"]),
            "http://127.0.0.1:1/v1/modules/acme/x"
        );
        assert!(matches!(
            RegistryClient::new("ftp://x", None),
            Err(ClientError::Invalid(_))
        ));
    }
}
