//! The registry's HTTP server (axum).
//!
//! # Routes
//!
//! | method | path | who | what |
//! |---|---|---|---|
//! | `POST` | `/v1/keys` | publisher | register an ed25519 public key |
//! | `PUT` | `/v1/modules/{namespace}/{name}/{version}` | publisher | publish (body: the component) |
//! | `GET` | `/v1/modules/{namespace}/{name}` | anyone | every version |
//! | `GET` | `/v1/modules/{namespace}/{name}/resolve?req=^1.2` | anyone | the version a requirement picks |
//! | `POST` | `/v1/modules/{namespace}/{name}/{version}/yank` | owner | hide from resolution |
//! | `POST` | `/v1/modules/{namespace}/{name}/{version}/unyank` | owner | undo a yank |
//! | `GET` | `/v1/search?q=text` | anyone | modules by name or description |
//! | `GET` | `/v1/namespaces/{namespace}/keys` | anyone | the owner's public keys |
//! | `GET` | `/v1/blobs/{digest}` | anyone | module bytes |
//! | `GET` | `/healthz` | anyone | liveness and database reachability |
//!
//! Publishers authenticate with `Authorization: Bearer stwr_…`. Reads are
//! open: modules are useless without their signatures' keys, which are
//! public too, and a host checks both itself.
//!
//! Errors are `application/problem+json` with stable codes
//! ([`steward_registry::api::codes`]). A 5xx never shows SQL, file paths or
//! connection strings: the details go to the log.
//!
//! # Publishing
//!
//! `PUT /v1/modules/{namespace}/{name}/{version}` carries the raw component
//! as its body and the manifest, signature and key id in headers
//! ([`steward_registry::api::MANIFEST_HEADER`] …). The checks that need no bytes come
//! first, before the body is read: the token (401), the manifest (422
//! `bad-manifest`), namespace ownership (403 `not-your-namespace`), the
//! manifest naming the path's module and version (422 `manifest-mismatch`),
//! the version being new (409 `version-exists`), a signature unless the
//! namespace is unsigned (422 `signature-required`), the key belonging to
//! the caller (422 `unknown-key`) and a declared `Content-Length` within
//! the limit (413 `too-large`).
//!
//! Then the body streams into a [blob upload](crate::blobs::BlobUpload)
//! (a temporary file; with S3, one part in memory, then a multipart upload)
//! while it is hashed and its component structure parsed ([`Inspector`]);
//! the module is never held in memory whole. Past the size limit the upload stops at
//! once with 413 `too-large`. With all bytes in, the signature is checked
//! over the digest and manifest (422 `bad-signature`: changed bytes have a
//! different digest), then the component: a WebAssembly component (422
//! `not-a-component`) exporting the Steward plugin interface (422
//! `not-a-plugin`), importing exactly the manifest's capabilities (422
//! `capabilities-mismatch`, naming both sets) at the manifest's WIT version
//! (422 `wit-mismatch`). Only then is the blob committed under its digest
//! and the version inserted; every refusal leaves nothing behind (the
//! upload is discarded). Of two racing publishes of one version the
//! index lets exactly one in; the loser gets 409 and may leave its
//! (content-addressed, harmless) blob committed.
//!
//! A refusal sent before the request body is read would make the client
//! see a broken pipe or a connection reset instead of the answer while it
//! is still sending: the server closes the connection with unread bytes.
//! So before answering such a refusal the server reads and discards what
//! is left of the body (a "lingering close", as nginx does), for at most
//! [`DRAIN_TIME`] and [`DRAIN_LIMIT`] bytes; nothing of it is stored. A
//! client still sending after that sees the connection close instead of
//! the problem document.

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::extract::rejection::{PathRejection, QueryRejection};
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post, put};
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use futures_util::StreamExt as _;
use semver::Version;
use serde::Deserialize;

use crate::blobs::BlobStore;
use crate::index::{Index, IndexError, NewVersion, Publisher};
use steward_contract::Digest;
use steward_contract::imports::{Imports, ImportsError, Inspector};
use steward_contract::manifest::{Manifest, check_name_part};
use steward_contract::signing::{self, SigningError};
use steward_registry::api::{
    KEY_ID_HEADER, MANIFEST_HEADER, ModuleVersions, NamespaceKeys, PROBLEM_MEDIA_TYPE, Problem,
    RegisterKey, RegisteredKey, Resolved, SIGNATURE_HEADER, SearchResults, VersionRecord,
    WASM_MEDIA_TYPE, codes,
};
use steward_registry::resolve::{parse_requirement, resolve};

/// The default largest module accepted: 64 MiB.
pub const DEFAULT_MAX_MODULE_BYTES: u64 = 64 * 1024 * 1024;

/// The largest JSON body (key registration).
pub const MAX_JSON_BODY: u64 = 64 * 1024;

/// At most this much of a refused request's body is read and discarded
/// before answering (see the module documentation).
pub const DRAIN_LIMIT: u64 = 1024 * 1024 * 1024;

/// At most this long is spent discarding a refused request's body (like
/// nginx's `lingering_time`): the bound that matters, since discarding
/// costs bandwidth only, never disk or memory.
pub const DRAIN_TIME: Duration = Duration::from_secs(10);

/// An upload that sends nothing for this long is abandoned.
pub const UPLOAD_IDLE_TIMEOUT: Duration = Duration::from_secs(60);

/// Search answers at most this many modules.
pub const SEARCH_LIMIT: usize = 200;

/// How the server behaves.
#[derive(Debug, Clone)]
pub struct ServerConfig {
    /// The largest module accepted, in bytes.
    pub max_module_bytes: u64,
}

impl Default for ServerConfig {
    fn default() -> Self {
        Self {
            max_module_bytes: DEFAULT_MAX_MODULE_BYTES,
        }
    }
}

#[derive(Debug, Clone)]
struct AppState {
    index: Index,
    blobs: Arc<dyn BlobStore>,
    config: ServerConfig,
}

/// The registry's routes over `index` and `blobs`.
pub fn router(index: Index, blobs: Arc<dyn BlobStore>, config: ServerConfig) -> Router {
    let state = AppState {
        index,
        blobs,
        config,
    };
    Router::new()
        .route("/healthz", get(healthz))
        .route("/v1/keys", post(register_key))
        .route("/v1/modules/{namespace}/{name}", get(versions))
        .route(
            "/v1/modules/{namespace}/{name}/resolve",
            get(resolve_version),
        )
        .route("/v1/modules/{namespace}/{name}/{version}", put(publish))
        .route("/v1/modules/{namespace}/{name}/{version}/yank", post(yank))
        .route(
            "/v1/modules/{namespace}/{name}/{version}/unyank",
            post(unyank),
        )
        .route("/v1/search", get(search))
        .route("/v1/namespaces/{namespace}/keys", get(namespace_keys))
        .route("/v1/blobs/{digest}", get(blob))
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .with_state(state)
}

// ---------------------------------------------------------------- errors

/// An error a handler answers with.
#[derive(Debug)]
pub struct ApiError {
    status: StatusCode,
    code: &'static str,
    detail: String,
}

type ApiResult<T> = Result<T, ApiError>;

impl ApiError {
    /// An error with this status, [code](steward_registry::api::codes) and detail.
    pub fn new(status: StatusCode, code: &'static str, detail: impl Into<String>) -> Self {
        Self {
            status,
            code,
            detail: detail.into(),
        }
    }

    fn unprocessable(code: &'static str, detail: impl Into<String>) -> Self {
        Self::new(StatusCode::UNPROCESSABLE_ENTITY, code, detail)
    }

    fn not_found(detail: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, codes::NOT_FOUND, detail)
    }

    fn too_large(limit: u64) -> Self {
        Self::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            codes::TOO_LARGE,
            format!("the module is larger than this registry accepts ({limit} bytes)"),
        )
    }

    /// Ours: logged in full, answered as a bare 500.
    fn internal(context: &str, err: &dyn std::fmt::Display) -> Self {
        tracing::error!(error = %err, "{context}");
        Self::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            codes::INTERNAL,
            "the registry failed; its log has the details",
        )
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let problem = Problem {
            kind: format!("https://steward.invalid/problems/registry/{}", self.code),
            title: self.status.canonical_reason().unwrap_or("Error").to_owned(),
            status: self.status.as_u16(),
            detail: self.detail,
            code: self.code.to_owned(),
        };
        let body = serde_json::to_vec(&problem).expect("a problem serialises");
        let mut response = (self.status, body).into_response();
        response.headers_mut().insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static(PROBLEM_MEDIA_TYPE),
        );
        if self.status == StatusCode::UNAUTHORIZED {
            response
                .headers_mut()
                .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        }
        response
    }
}

impl From<IndexError> for ApiError {
    fn from(e: IndexError) -> Self {
        match &e {
            IndexError::VersionExists { .. } => {
                ApiError::new(StatusCode::CONFLICT, codes::VERSION_EXISTS, e.to_string())
            }
            IndexError::KeyTaken(_) => {
                ApiError::new(StatusCode::CONFLICT, codes::KEY_TAKEN, e.to_string())
            }
            IndexError::Invalid { .. } => ApiError::unprocessable(codes::INVALID, e.to_string()),
            // Publishers are created by the CLI only; no route gets these.
            IndexError::PublisherExists(_)
            | IndexError::NamespaceTaken { .. }
            | IndexError::UnsupportedUrl(_)
            | IndexError::Open { .. }
            | IndexError::Migrate(_)
            | IndexError::Corrupt(_)
            | IndexError::Database(_) => ApiError::internal("index operation failed", &e),
        }
    }
}

impl From<PathRejection> for ApiError {
    fn from(e: PathRejection) -> Self {
        ApiError::new(StatusCode::BAD_REQUEST, codes::BAD_REQUEST, e.body_text())
    }
}

impl From<QueryRejection> for ApiError {
    fn from(e: QueryRejection) -> Self {
        ApiError::new(StatusCode::BAD_REQUEST, codes::BAD_REQUEST, e.body_text())
    }
}

async fn not_found() -> ApiError {
    ApiError::not_found("no such route; the API lives under /v1")
}

async fn method_not_allowed() -> ApiError {
    ApiError::new(
        StatusCode::METHOD_NOT_ALLOWED,
        codes::BAD_REQUEST,
        "this route does not take that method",
    )
}

// ---------------------------------------------------------------- helpers

/// The publisher whose bearer token the request carries.
async fn caller(state: &AppState, headers: &HeaderMap) -> ApiResult<Publisher> {
    let unauthorized =
        |detail: &str| ApiError::new(StatusCode::UNAUTHORIZED, codes::UNAUTHORIZED, detail);
    let value = headers.get(header::AUTHORIZATION).ok_or_else(|| {
        unauthorized("this needs a publisher token: `Authorization: Bearer stwr_…`")
    })?;
    let token = value
        .to_str()
        .ok()
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(str::trim)
        .ok_or_else(|| unauthorized("the Authorization header must be `Bearer <token>`"))?;
    state
        .index
        .publisher_by_token(token)
        .await?
        .ok_or_else(|| unauthorized("the registry does not know this token"))
}

/// Checks the caller owns `namespace`; unknown namespaces are refused the
/// same way, so the answer tells nothing about other publishers.
async fn owned_namespace(
    state: &AppState,
    publisher: &Publisher,
    namespace: &str,
) -> ApiResult<crate::index::Namespace> {
    match state.index.namespace(namespace).await? {
        Some(ns) if ns.publisher_id == publisher.id => Ok(ns),
        _ => Err(ApiError::new(
            StatusCode::FORBIDDEN,
            codes::NOT_YOUR_NAMESPACE,
            format!(
                "publisher `{}` does not own the namespace `{namespace}`",
                publisher.name
            ),
        )),
    }
}

fn check_module_path(namespace: &str, name: &str) -> ApiResult<()> {
    check_name_part("namespace", namespace)
        .and_then(|()| check_name_part("module name", name))
        .map_err(|m| ApiError::unprocessable(codes::INVALID, m))
}

fn parse_version(version: &str) -> ApiResult<Version> {
    version.parse().map_err(|e| {
        ApiError::unprocessable(
            codes::INVALID,
            format!("`{version}` is not a semver version: {e}"),
        )
    })
}

fn header_str<'a>(headers: &'a HeaderMap, name: &str) -> ApiResult<Option<&'a str>> {
    headers
        .get(name)
        .map(|v| {
            v.to_str().map(str::trim).map_err(|_| {
                ApiError::new(
                    StatusCode::BAD_REQUEST,
                    codes::BAD_REQUEST,
                    format!("the {name} header is not ASCII"),
                )
            })
        })
        .transpose()
}

/// Reads and discards what is left of a refused request's body, within
/// [`DRAIN_LIMIT`] and [`DRAIN_TIME`], so the client gets to read the
/// answer (see the module documentation).
async fn drain(stream: &mut axum::body::BodyDataStream) {
    let drain = async {
        let mut seen = 0u64;
        while let Some(Ok(chunk)) = stream.next().await {
            seen += chunk.len() as u64;
            if seen > DRAIN_LIMIT {
                break;
            }
        }
    };
    let _ = tokio::time::timeout(DRAIN_TIME, drain).await;
}

/// Reads a small body whole.
async fn read_small_body(body: Body, limit: u64) -> ApiResult<Vec<u8>> {
    let mut stream = body.into_data_stream();
    let mut out = Vec::new();
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.map_err(|_| {
            ApiError::new(
                StatusCode::BAD_REQUEST,
                codes::BAD_REQUEST,
                "the request body was interrupted",
            )
        })?;
        if (out.len() + chunk.len()) as u64 > limit {
            drain(&mut stream).await;
            return Err(ApiError::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                codes::TOO_LARGE,
                format!("the body is larger than {limit} bytes"),
            ));
        }
        out.extend_from_slice(&chunk);
    }
    Ok(out)
}

// ---------------------------------------------------------------- handlers

async fn healthz(State(state): State<AppState>) -> Response {
    match state.index.ping().await {
        Ok(()) => axum::Json(serde_json::json!({ "status": "ok" })).into_response(),
        Err(e) => {
            tracing::error!(error = %e, "health check: database unreachable");
            ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                codes::UNAVAILABLE,
                "the registry cannot reach its database",
            )
            .into_response()
        }
    }
}

async fn register_key(
    State(state): State<AppState>,
    headers: HeaderMap,
    body: Body,
) -> ApiResult<Response> {
    let publisher = match caller(&state, &headers).await {
        Ok(p) => p,
        Err(e) => {
            drain(&mut body.into_data_stream()).await;
            return Err(e);
        }
    };
    let bytes = read_small_body(body, MAX_JSON_BODY).await?;
    let request: RegisterKey = serde_json::from_slice(&bytes).map_err(|e| {
        ApiError::new(
            StatusCode::BAD_REQUEST,
            codes::BAD_REQUEST,
            format!("the body must be {{\"public-key\": \"<base64>\"}}: {e}"),
        )
    })?;
    let key = signing::decode_public_key(&request.public_key)
        .map_err(|e| ApiError::unprocessable(codes::BAD_KEY, e.to_string()))?;
    let key_id = signing::key_id(key.as_bytes());
    let public_key = BASE64.encode(key.as_bytes());
    let created = state
        .index
        .register_key(&publisher.id, &key_id, &public_key)
        .await?;
    if created {
        tracing::info!(publisher = %publisher.name, %key_id, "key registered");
    }
    let status = if created {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    Ok((status, axum::Json(RegisteredKey { key_id })).into_response())
}

/// What the header checks establish before any byte of the body is read.
struct Upload {
    manifest: Manifest,
    /// `(signature, key id, public key)` when signed.
    signature: Option<(String, String, String)>,
}

async fn publish(
    State(state): State<AppState>,
    path: Result<Path<(String, String, String)>, PathRejection>,
    headers: HeaderMap,
    body: Body,
) -> ApiResult<Response> {
    let mut stream = body.into_data_stream();
    let checked = match check_upload_headers(&state, path, &headers).await {
        Ok(checked) => checked,
        Err(e) => {
            drain(&mut stream).await;
            return Err(e);
        }
    };
    let record = receive(&state, checked, &mut stream).await?;
    tracing::info!(
        module = %record.manifest.name,
        version = %record.version,
        digest = %record.digest,
        size = record.size,
        signed = record.signature.is_some(),
        "published"
    );
    let location = format!("/v1/modules/{}/{}", record.namespace, record.name);
    let mut response = (StatusCode::CREATED, axum::Json(record)).into_response();
    if let Ok(value) = HeaderValue::from_str(&location) {
        response.headers_mut().insert(header::LOCATION, value);
    }
    Ok(response)
}

async fn check_upload_headers(
    state: &AppState,
    path: Result<Path<(String, String, String)>, PathRejection>,
    headers: &HeaderMap,
) -> ApiResult<Upload> {
    let Path((namespace, name, version)) = path?;
    check_module_path(&namespace, &name)?;
    let version = parse_version(&version)?;
    let publisher = caller(state, headers).await?;

    let manifest_b64 = header_str(headers, MANIFEST_HEADER)?.ok_or_else(|| {
        ApiError::unprocessable(
            codes::BAD_MANIFEST,
            "the Steward-Manifest header (base64 of the manifest's JSON) is missing",
        )
    })?;
    let manifest_json = BASE64.decode(manifest_b64).map_err(|e| {
        ApiError::unprocessable(
            codes::BAD_MANIFEST,
            format!("the Steward-Manifest header is not base64: {e}"),
        )
    })?;
    let manifest = Manifest::from_json(&manifest_json)
        .map_err(|e| ApiError::unprocessable(codes::BAD_MANIFEST, e.to_string()))?;

    let ns = owned_namespace(state, &publisher, &namespace).await?;
    let path_name = format!("{namespace}/{name}");
    if manifest.name != path_name {
        return Err(ApiError::unprocessable(
            codes::MANIFEST_MISMATCH,
            format!(
                "the manifest names `{}` but the upload is to `{path_name}`",
                manifest.name
            ),
        ));
    }
    if manifest.version != version {
        return Err(ApiError::unprocessable(
            codes::MANIFEST_MISMATCH,
            format!(
                "the manifest says version {} but the upload is to version {version}",
                manifest.version
            ),
        ));
    }
    if state
        .index
        .version(&namespace, &name, &version)
        .await?
        .is_some()
    {
        return Err(IndexError::VersionExists {
            namespace,
            name,
            version,
        }
        .into());
    }

    let signature = header_str(headers, SIGNATURE_HEADER)?;
    let key_id = header_str(headers, KEY_ID_HEADER)?;
    let signature = match (signature, key_id) {
        (None, None) if ns.unsigned => None,
        (None, None) => {
            return Err(ApiError::unprocessable(
                codes::SIGNATURE_REQUIRED,
                format!(
                    "the namespace `{namespace}` accepts signed modules only: send Steward-Signature and Steward-Key-Id"
                ),
            ));
        }
        (Some(_), None) | (None, Some(_)) => {
            return Err(ApiError::unprocessable(
                codes::SIGNATURE_REQUIRED,
                "a signed upload needs both Steward-Signature and Steward-Key-Id",
            ));
        }
        (Some(signature), Some(key_id)) => {
            let key = state
                .index
                .key(key_id)
                .await?
                .filter(|k| k.publisher_id == publisher.id)
                .ok_or_else(|| {
                    ApiError::unprocessable(
                        codes::UNKNOWN_KEY,
                        format!(
                            "the key `{key_id}` is not registered to publisher `{}`; register it with POST /v1/keys first",
                            publisher.name
                        ),
                    )
                })?;
            Some((signature.to_owned(), key.key_id, key.public_key))
        }
    };

    let declared =
        header_str(headers, header::CONTENT_LENGTH.as_str())?.and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|len| len > state.config.max_module_bytes) {
        return Err(ApiError::too_large(state.config.max_module_bytes));
    }
    Ok(Upload {
        manifest,
        signature,
    })
}

/// Streams the body into the blob store, then runs the checks that need
/// the bytes, then commits.
async fn receive(
    state: &AppState,
    upload: Upload,
    stream: &mut axum::body::BodyDataStream,
) -> ApiResult<VersionRecord> {
    let limit = state.config.max_module_bytes;
    let mut blob = state
        .blobs
        .begin()
        .await
        .map_err(|e| ApiError::internal("cannot start a blob upload", &e))?;
    let mut inspector = Inspector::new();
    let mut inspected: Result<(), ImportsError> = Ok(());
    loop {
        let next = match tokio::time::timeout(UPLOAD_IDLE_TIMEOUT, stream.next()).await {
            Ok(next) => next,
            Err(_) => {
                return Err(ApiError::new(
                    StatusCode::REQUEST_TIMEOUT,
                    codes::BAD_REQUEST,
                    format!(
                        "the upload sent nothing for {} seconds",
                        UPLOAD_IDLE_TIMEOUT.as_secs()
                    ),
                ));
            }
        };
        let Some(chunk) = next else { break };
        let chunk = chunk.map_err(|_| {
            ApiError::new(
                StatusCode::BAD_REQUEST,
                codes::BAD_REQUEST,
                "the upload was interrupted",
            )
        })?;
        if blob.size() + chunk.len() as u64 > limit {
            drop(blob);
            drain(stream).await;
            return Err(ApiError::too_large(limit));
        }
        blob.write(&chunk)
            .await
            .map_err(|e| ApiError::internal("cannot write a blob upload", &e))?;
        if inspected.is_ok() {
            inspected = inspector.feed(&chunk);
        }
    }
    let digest = blob.digest();
    let size = blob.size();

    let Upload {
        manifest,
        signature,
    } = upload;
    if let Some((signature, _, public_key)) = &signature {
        let payload = signing::signing_payload(&digest, &manifest);
        signing::verify(public_key, &payload, signature).map_err(|e| match e {
            SigningError::BadSignatureEncoding(m) => ApiError::unprocessable(
                codes::BAD_SIGNATURE,
                format!("the Steward-Signature header is malformed: {m}"),
            ),
            _ => ApiError::unprocessable(
                codes::BAD_SIGNATURE,
                format!(
                    "the signature does not verify over {digest} and the manifest; the bytes or the manifest differ from what was signed"
                ),
            ),
        })?;
    }
    let imports = inspected
        .and_then(|()| inspector.finish())
        .map_err(imports_error)?;
    check_imports(&manifest, &imports)?;

    let committed = blob
        .commit()
        .await
        .map_err(|e| ApiError::internal("cannot commit a blob", &e))?;
    debug_assert_eq!(committed, digest);
    let record = state
        .index
        .insert_version(&NewVersion {
            manifest,
            digest,
            size,
            signature: signature.map(|(signature, key_id, _)| (signature, key_id)),
        })
        .await?;
    Ok(record)
}

fn imports_error(e: ImportsError) -> ApiError {
    let code = match e {
        ImportsError::NotWasm(_) | ImportsError::CoreModule | ImportsError::Malformed(_) => {
            codes::NOT_A_COMPONENT
        }
        ImportsError::UnknownInterface(_) | ImportsError::NotAPlugin(_) => codes::NOT_A_PLUGIN,
        ImportsError::MixedVersions(_) => codes::WIT_MISMATCH,
        ImportsError::Refused(_) => codes::FORBIDDEN_IMPORT,
    };
    ApiError::unprocessable(code, e.to_string())
}

fn check_imports(manifest: &Manifest, imports: &Imports) -> ApiResult<()> {
    manifest
        .describes(imports)
        .map_err(|e| ApiError::unprocessable(e.code(), e.to_string()))
}

async fn versions(
    State(state): State<AppState>,
    path: Result<Path<(String, String)>, PathRejection>,
) -> ApiResult<axum::Json<ModuleVersions>> {
    let Path((namespace, name)) = path?;
    check_module_path(&namespace, &name)?;
    let versions = state.index.versions(&namespace, &name).await?;
    if versions.is_empty() {
        return Err(ApiError::not_found(format!(
            "no module `{namespace}/{name}`"
        )));
    }
    Ok(axum::Json(ModuleVersions {
        namespace,
        name,
        versions,
    }))
}

#[derive(Debug, Deserialize)]
struct ResolveQuery {
    #[serde(default)]
    req: Option<String>,
}

async fn resolve_version(
    State(state): State<AppState>,
    path: Result<Path<(String, String)>, PathRejection>,
    query: Result<Query<ResolveQuery>, QueryRejection>,
) -> ApiResult<axum::Json<Resolved>> {
    let Path((namespace, name)) = path?;
    let Query(query) = query?;
    check_module_path(&namespace, &name)?;
    let req_text = query.req.unwrap_or_default();
    let requirement = parse_requirement(&req_text)
        .map_err(|e| ApiError::unprocessable(codes::BAD_REQUIREMENT, e.to_string()))?;
    let versions = state.index.versions(&namespace, &name).await?;
    if versions.is_empty() {
        return Err(ApiError::not_found(format!(
            "no module `{namespace}/{name}`"
        )));
    }
    let chosen = resolve(
        versions.iter().map(|r| (&r.version, r.yanked)),
        &requirement,
    )
    .cloned();
    let Some(chosen) = chosen else {
        let available: Vec<String> = versions
            .iter()
            .map(|r| {
                if r.yanked {
                    format!("{} (yanked)", r.version)
                } else {
                    r.version.to_string()
                }
            })
            .collect();
        return Err(ApiError::new(
            StatusCode::NOT_FOUND,
            codes::NO_MATCH,
            format!(
                "no version of `{namespace}/{name}` matches `{requirement}`; available: {}",
                available.join(", ")
            ),
        ));
    };
    let record = versions
        .into_iter()
        .find(|r| r.version == chosen)
        .expect("the chosen version is one of the candidates");
    let public_key = match &record.key_id {
        Some(key_id) => state.index.key(key_id).await?.map(|k| k.public_key),
        None => None,
    };
    Ok(axum::Json(Resolved { record, public_key }))
}

async fn set_yanked(
    state: AppState,
    path: Result<Path<(String, String, String)>, PathRejection>,
    headers: HeaderMap,
    yanked: bool,
) -> ApiResult<axum::Json<VersionRecord>> {
    let Path((namespace, name, version)) = path?;
    check_module_path(&namespace, &name)?;
    let version = parse_version(&version)?;
    let publisher = caller(&state, &headers).await?;
    owned_namespace(&state, &publisher, &namespace).await?;
    let record = state
        .index
        .set_yanked(&namespace, &name, &version, yanked)
        .await?
        .ok_or_else(|| {
            ApiError::not_found(format!("no version {version} of `{namespace}/{name}`"))
        })?;
    tracing::info!(module = %format!("{namespace}/{name}"), %version, yanked, "yank flag set");
    Ok(axum::Json(record))
}

async fn yank(
    State(state): State<AppState>,
    path: Result<Path<(String, String, String)>, PathRejection>,
    headers: HeaderMap,
) -> ApiResult<axum::Json<VersionRecord>> {
    set_yanked(state, path, headers, true).await
}

async fn unyank(
    State(state): State<AppState>,
    path: Result<Path<(String, String, String)>, PathRejection>,
    headers: HeaderMap,
) -> ApiResult<axum::Json<VersionRecord>> {
    set_yanked(state, path, headers, false).await
}

#[derive(Debug, Deserialize)]
struct SearchQuery {
    #[serde(default)]
    q: String,
}

async fn search(
    State(state): State<AppState>,
    query: Result<Query<SearchQuery>, QueryRejection>,
) -> ApiResult<axum::Json<SearchResults>> {
    let Query(query) = query?;
    let results = state.index.search(&query.q, SEARCH_LIMIT).await?;
    Ok(axum::Json(SearchResults { results }))
}

async fn namespace_keys(
    State(state): State<AppState>,
    path: Result<Path<String>, PathRejection>,
) -> ApiResult<axum::Json<NamespaceKeys>> {
    let Path(namespace) = path?;
    check_name_part("namespace", &namespace)
        .map_err(|m| ApiError::unprocessable(codes::INVALID, m))?;
    let ns = state
        .index
        .namespace(&namespace)
        .await?
        .ok_or_else(|| ApiError::not_found(format!("no namespace `{namespace}`")))?;
    let keys = state.index.keys_of(&ns.publisher_id).await?;
    Ok(axum::Json(NamespaceKeys {
        namespace,
        unsigned: ns.unsigned,
        keys,
    }))
}

async fn blob(
    State(state): State<AppState>,
    path: Result<Path<String>, PathRejection>,
) -> ApiResult<Response> {
    let Path(digest) = path?;
    let digest: Digest = digest.parse().map_err(|e: steward_contract::DigestError| {
        ApiError::new(StatusCode::BAD_REQUEST, codes::BAD_REQUEST, e.to_string())
    })?;
    let blob = state
        .blobs
        .open(&digest)
        .await
        .map_err(|e| ApiError::internal("cannot open a blob", &e))?
        .ok_or_else(|| ApiError::not_found(format!("no blob {digest}")))?;
    let mut response = Body::from_stream(blob.stream).into_response();
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static(WASM_MEDIA_TYPE),
    );
    headers.insert(header::CONTENT_LENGTH, HeaderValue::from(blob.size));
    headers.insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static("public, max-age=31536000, immutable"),
    );
    if let Ok(etag) = HeaderValue::from_str(&format!("\"{digest}\"")) {
        headers.insert(header::ETAG, etag);
    }
    Ok(response)
}
