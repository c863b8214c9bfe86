//! Blobs in an S3-compatible object store, through the `object_store`
//! crate: `s3://BUCKET[/PREFIX]`, each blob at `PREFIX/sha256/<64 hex>`.
//!
//! An upload is hashed as it arrives and keeps at most one part
//! ([`PART_SIZE`]) in memory, plus at most [`PARTS_IN_FLIGHT`] parts being
//! sent:
//!
//! * A blob of at most one part (most modules) stays in memory until it is
//!   committed, then goes in one `PUT` straight to `sha256/<hex>`: the
//!   digest is known by then, and S3 makes an object visible whole or not
//!   at all. Nothing reaches the store before the commit, so a refused
//!   upload leaves nothing behind.
//! * A larger blob becomes a multipart upload to a temporary key,
//!   `PREFIX/uploads/<random>`, as soon as it outgrows one part (the
//!   digest, and so the final key, is only known at the end). Committing
//!   completes it, copies it to `sha256/<hex>` (`CopyObject`, so at most
//!   5 GiB: [`MAX_S3_BLOB_BYTES`]) and deletes the temporary key. An upload
//!   dropped without committing aborts its multipart upload (in a task it
//!   spawns, so shortly after the drop), which discards the parts sent.
//!
//! Committing a digest that is already stored (a `HEAD` tells) writes
//! nothing: the `PUT` is skipped, or the multipart upload aborted. A
//! commit runs in a task of its own, so it finishes, or cleans up after
//! itself, even if the request that started it goes away.
//!
//! What can remain after a crash (the process killed, or the runtime shut
//! down, while an upload is in progress): an incomplete multipart upload,
//! invisible to listings and reads, which the bucket's
//! `AbortIncompleteMultipartUpload` lifecycle rule should remove
//! (`object_store` cannot list them; the same rule catches a part S3 was
//! still storing when its upload was aborted); or a completed temporary
//! object under `uploads/` whose copy or deletion did not happen, which
//! [`S3BlobStore::open`] deletes once it is a day old, as
//! [`FsBlobStore`](super::FsBlobStore) does with its temporary files. Keys
//! under `sha256/` are only ever written whole, with the bytes their name
//! says.

use std::fmt;
use std::io;
use std::str::FromStr;
use std::sync::Arc;

use async_trait::async_trait;
use bytes::Bytes;
use futures_util::{StreamExt as _, TryStreamExt as _};
use object_store::ClientConfigKey;
use object_store::aws::{AmazonS3Builder, AmazonS3ConfigKey};
use object_store::path::Path;
use object_store::{ObjectStore, ObjectStoreExt as _, PutPayload, WriteMultipart};
use sha2::{Digest as _, Sha256};

use super::{Blob, BlobStore, BlobUpload, STALE_UPLOAD, digest_of};
use steward_contract::Digest;

/// The size of a multipart upload's parts, and the most an upload keeps in
/// memory before it starts one (S3's smallest part but the last is 5 MiB).
pub const PART_SIZE: usize = 5 * 1024 * 1024;

/// At most this many parts of one upload are being sent at a time.
pub const PARTS_IN_FLIGHT: usize = 2;

/// The largest blob an S3 store takes: the largest object `CopyObject`
/// copies in one request.
pub const MAX_S3_BLOB_BYTES: u64 = 5 * 1024 * 1024 * 1024;

/// How long one request to S3 may take in all, body included, unless
/// `AWS_TIMEOUT` says otherwise. A download reads its object only as fast
/// as the registry's client takes the bytes, so `object_store`'s default
/// (30 s) would cut slow downloads of large modules short.
const REQUEST_TIMEOUT: &str = "15 minutes";

/// Where in S3 the blobs live: `s3://BUCKET[/PREFIX]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct S3Location {
    /// The bucket.
    pub bucket: String,
    /// Key prefix without leading or trailing `/` (`""` for none).
    pub prefix: String,
}

/// Why a string is not an [`S3Location`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct BadS3Location(String);

impl FromStr for S3Location {
    type Err = BadS3Location;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let rest = s.strip_prefix("s3://").ok_or_else(|| {
            BadS3Location(format!(
                "`{s}` is not a blob store: use `s3://BUCKET[/PREFIX]` for an S3-compatible store, or leave --blobs out to keep blobs under --data-dir"
            ))
        })?;
        let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
        let bucket_ok = (3..=63).contains(&bucket.len())
            && bucket
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'.' || b == b'-')
            && bucket.starts_with(|c: char| c.is_ascii_alphanumeric())
            && bucket.ends_with(|c: char| c.is_ascii_alphanumeric());
        if !bucket_ok {
            return Err(BadS3Location(format!(
                "`{bucket}` in `{s}` is not an S3 bucket name: 3 to 63 lowercase letters, digits, `.` and `-`, starting and ending with a letter or digit"
            )));
        }
        let prefix = prefix.strip_suffix('/').unwrap_or(prefix);
        let prefix_ok = prefix.is_empty()
            || prefix.split('/').all(|segment| {
                !segment.is_empty()
                    && segment != "."
                    && segment != ".."
                    && segment
                        .bytes()
                        .all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b))
            });
        if !prefix_ok {
            return Err(BadS3Location(format!(
                "`{prefix}` in `{s}` is not a key prefix: `/`-separated names of letters, digits, `.`, `_` and `-` (not `.` or `..`)"
            )));
        }
        Ok(Self {
            bucket: bucket.to_owned(),
            prefix: prefix.to_owned(),
        })
    }
}

impl fmt::Display for S3Location {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "s3://{}", self.bucket)?;
        if !self.prefix.is_empty() {
            write!(f, "/{}", self.prefix)?;
        }
        Ok(())
    }
}

/// How to reach the S3 service. Credentials, and anything not set here,
/// come from the standard `AWS_*` environment variables
/// (`AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY`, `AWS_SESSION_TOKEN`,
/// `AWS_REGION`, `AWS_ENDPOINT`, …) or, without keys there, the instance's
/// or container's role.
#[derive(Debug, Clone, Default)]
pub struct S3Options {
    /// The service's URL (`https://…`), for S3-compatible services;
    /// default AWS for the region.
    pub endpoint: Option<String>,
    /// The region; default `AWS_REGION`, else `us-east-1`.
    pub region: Option<String>,
    /// Allow a plain-HTTP endpoint (testing only).
    pub allow_http: bool,
}

/// Blobs as objects: `PREFIX/sha256/<hex>` in an S3 bucket.
#[derive(Clone)]
pub struct S3BlobStore {
    store: Arc<dyn ObjectStore>,
    location: S3Location,
    /// `PREFIX`, as a path.
    root: Path,
}

impl fmt::Debug for S3BlobStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("S3BlobStore")
            .field("location", &self.location.to_string())
            .finish_non_exhaustive()
    }
}

impl S3BlobStore {
    /// Connects to the bucket and deletes temporary uploads a crashed
    /// process left behind more than a day ago; listing them is also the
    /// check that the bucket is there and the credentials work.
    ///
    /// # Errors
    ///
    /// The options are invalid (an `http://` endpoint without
    /// `allow_http`, say) or the bucket cannot be listed.
    pub async fn open(location: &S3Location, options: &S3Options) -> io::Result<Self> {
        let invalid = |m: String| io::Error::new(io::ErrorKind::InvalidInput, m);
        let mut builder = AmazonS3Builder::from_env().with_bucket_name(&location.bucket);
        if std::env::var_os("AWS_TIMEOUT").is_none() {
            builder = builder.with_config(
                AmazonS3ConfigKey::Client(ClientConfigKey::Timeout),
                REQUEST_TIMEOUT,
            );
        }
        if let Some(endpoint) = &options.endpoint {
            let endpoint = endpoint.trim_end_matches('/');
            if endpoint.starts_with("http://") {
                if !options.allow_http {
                    return Err(invalid(format!(
                        "the S3 endpoint `{endpoint}` is plain HTTP: use https://, or allow HTTP explicitly (--s3-allow-http) for testing"
                    )));
                }
            } else if !endpoint.starts_with("https://") {
                return Err(invalid(format!(
                    "the S3 endpoint `{endpoint}` must be an https:// (or http://) URL"
                )));
            }
            builder = builder.with_endpoint(endpoint);
        }
        if let Some(region) = &options.region {
            builder = builder.with_region(region);
        }
        if options.allow_http {
            builder = builder.with_allow_http(true);
        }
        let store = builder
            .build()
            .map_err(|e| invalid(format!("cannot configure S3 access: {e}")))?;
        Self::with_store(Arc::new(store), location.clone()).await
    }

    /// The store over an `object_store` client already set up for
    /// `location`'s bucket (`location` gives the prefix, and names the
    /// store in messages). Like [`open`](Self::open), deletes stale
    /// temporary uploads.
    ///
    /// # Errors
    ///
    /// The bucket cannot be listed.
    pub async fn with_store(store: Arc<dyn ObjectStore>, location: S3Location) -> io::Result<Self> {
        let root = Path::from_iter(location.prefix.split('/').filter(|s| !s.is_empty()));
        let store = Self {
            store,
            location,
            root,
        };
        store.remove_stale_uploads().await?;
        Ok(store)
    }

    /// Where the blobs are.
    pub fn location(&self) -> &S3Location {
        &self.location
    }

    /// The key of a blob: `PREFIX/sha256/<hex>`.
    pub fn key_of(&self, digest: &Digest) -> String {
        self.blob_path(digest).to_string()
    }

    /// The prefix of temporary uploads: `PREFIX/uploads/`.
    pub fn uploads_prefix(&self) -> String {
        format!("{}/", self.root.clone().join("uploads"))
    }

    fn blob_path(&self, digest: &Digest) -> Path {
        self.root.clone().join("sha256").join(digest.hex())
    }

    async fn remove_stale_uploads(&self) -> io::Result<()> {
        let uploads = self.root.clone().join("uploads");
        let mut listing = self.store.list(Some(&uploads));
        let now = chrono::Utc::now();
        let mut stale = Vec::new();
        while let Some(meta) = listing
            .try_next()
            .await
            .map_err(|e| io::Error::other(format!("cannot list {}/uploads: {e}", self.location)))?
        {
            let age = (now - meta.last_modified).to_std().unwrap_or_default();
            if age > STALE_UPLOAD {
                stale.push(meta.location);
            }
        }
        for key in stale {
            match self.store.delete(&key).await {
                Ok(()) => tracing::info!(%key, "removed a stale temporary upload"),
                Err(e) => {
                    tracing::warn!(%key, error = %e, "cannot remove a stale temporary upload")
                }
            }
        }
        Ok(())
    }
}

#[async_trait]
impl BlobStore for S3BlobStore {
    async fn begin(&self) -> io::Result<Box<dyn BlobUpload>> {
        Ok(Box::new(S3Upload {
            store: self.store.clone(),
            root: self.root.clone(),
            hasher: Sha256::new(),
            size: 0,
            buffer: Vec::new(),
            multipart: None,
        }))
    }

    async fn open(&self, digest: &Digest) -> io::Result<Option<Blob>> {
        match self.store.get(&self.blob_path(digest)).await {
            Ok(result) => Ok(Some(Blob {
                size: result.meta.size,
                stream: result.into_stream().map_err(to_io).boxed(),
            })),
            Err(object_store::Error::NotFound { .. }) => Ok(None),
            Err(e) => Err(to_io(e)),
        }
    }

    async fn contains(&self, digest: &Digest) -> io::Result<bool> {
        exists(self.store.as_ref(), &self.blob_path(digest)).await
    }
}

/// An upload: in memory while it is at most one part, then a multipart
/// upload to a temporary key.
struct S3Upload {
    store: Arc<dyn ObjectStore>,
    root: Path,
    hasher: Sha256,
    size: u64,
    /// The whole blob, until it outgrows one part.
    buffer: Vec<u8>,
    /// The multipart upload and its temporary key, once started.
    multipart: Option<(WriteMultipart, Path)>,
}

#[async_trait]
impl BlobUpload for S3Upload {
    async fn write(&mut self, chunk: &[u8]) -> io::Result<()> {
        self.hasher.update(chunk);
        self.size += chunk.len() as u64;
        if let Some((writer, _)) = &mut self.multipart {
            writer
                .wait_for_capacity(PARTS_IN_FLIGHT)
                .await
                .map_err(to_io)?;
            writer.write(chunk);
            return Ok(());
        }
        if self.buffer.len() + chunk.len() <= PART_SIZE {
            self.buffer.extend_from_slice(chunk);
            return Ok(());
        }
        let temp = self
            .root
            .clone()
            .join("uploads")
            .join(hex::encode(rand::random::<[u8; 16]>()));
        let upload = self.store.put_multipart(&temp).await.map_err(to_io)?;
        let mut writer = WriteMultipart::new_with_chunk_size(upload, PART_SIZE);
        writer.write(&std::mem::take(&mut self.buffer));
        writer.write(chunk);
        self.multipart = Some((writer, temp));
        Ok(())
    }

    fn size(&self) -> u64 {
        self.size
    }

    fn digest(&self) -> Digest {
        digest_of(self.hasher.clone())
    }

    async fn commit(mut self: Box<Self>) -> io::Result<Digest> {
        let digest = digest_of(self.hasher.clone());
        let key = self.root.clone().join("sha256").join(digest.hex());
        let store = self.store.clone();
        // In a task of its own: dropping this future (the client went
        // away) must not stop a commit halfway.
        let task = match self.multipart.take() {
            None => {
                let bytes = Bytes::from(std::mem::take(&mut self.buffer));
                tokio::spawn(async move {
                    if exists(store.as_ref(), &key).await? {
                        return Ok(());
                    }
                    store
                        .put(&key, PutPayload::from(bytes))
                        .await
                        .map(drop)
                        .map_err(to_io)
                })
            }
            Some((writer, temp)) => tokio::spawn(commit_multipart(store, writer, temp, key)),
        };
        task.await.map_err(io::Error::other)??;
        Ok(digest)
    }
}

impl Drop for S3Upload {
    fn drop(&mut self) {
        let Some((writer, temp)) = self.multipart.take() else {
            return;
        };
        match tokio::runtime::Handle::try_current() {
            Ok(runtime) => {
                runtime.spawn(abort(writer, temp));
            }
            Err(_) => tracing::warn!(
                upload = %temp,
                "a multipart upload dropped outside a runtime is left to the bucket's lifecycle rule"
            ),
        }
    }
}

/// Completes a multipart upload, copies it under its digest and deletes
/// the temporary key; or, when the digest is stored already, aborts it.
async fn commit_multipart(
    store: Arc<dyn ObjectStore>,
    writer: WriteMultipart,
    temp: Path,
    key: Path,
) -> io::Result<()> {
    match exists(store.as_ref(), &key).await {
        Ok(false) => {}
        Ok(true) => {
            abort(writer, temp).await;
            return Ok(());
        }
        Err(e) => {
            abort(writer, temp).await;
            return Err(e);
        }
    }
    // On failure `finish` aborts the upload itself.
    writer.finish().await.map_err(to_io)?;
    let copied = store.copy(&temp, &key).await.map_err(to_io);
    if let Err(e) = store.delete(&temp).await {
        tracing::warn!(
            upload = %temp,
            error = %e,
            "cannot delete a temporary upload; it is removed at a start once a day old"
        );
    }
    copied
}

async fn abort(writer: WriteMultipart, temp: Path) {
    if let Err(e) = writer.abort().await {
        tracing::warn!(
            upload = %temp,
            error = %e,
            "cannot abort a multipart upload; it is left to the bucket's lifecycle rule"
        );
    }
}

async fn exists(store: &dyn ObjectStore, key: &Path) -> io::Result<bool> {
    match store.head(key).await {
        Ok(_) => Ok(true),
        Err(object_store::Error::NotFound { .. }) => Ok(false),
        Err(e) => Err(to_io(e)),
    }
}

fn to_io(e: object_store::Error) -> io::Error {
    match e {
        object_store::Error::NotFound { .. } => io::Error::new(io::ErrorKind::NotFound, e),
        e => io::Error::other(e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn locations_parse_and_print() {
        for (text, bucket, prefix, printed) in [
            ("s3://modules", "modules", "", "s3://modules"),
            ("s3://modules/", "modules", "", "s3://modules"),
            (
                "s3://my.bucket-1/steward/registry",
                "my.bucket-1",
                "steward/registry",
                "s3://my.bucket-1/steward/registry",
            ),
            ("s3://abc/p_q-r.s/", "abc", "p_q-r.s", "s3://abc/p_q-r.s"),
        ] {
            let location: S3Location = text.parse().unwrap();
            assert_eq!(location.bucket, bucket, "{text}");
            assert_eq!(location.prefix, prefix, "{text}");
            assert_eq!(location.to_string(), printed);
            assert_eq!(printed.parse::<S3Location>().unwrap(), location);
        }
    }

    #[test]
    fn bad_locations_say_what_is_wrong() {
        for (text, says) in [
            ("/var/lib/blobs", "use `s3://BUCKET[/PREFIX]`"),
            ("gs://bucket", "use `s3://BUCKET[/PREFIX]`"),
            ("s3://", "not an S3 bucket name"),
            ("s3://ab", "not an S3 bucket name"),
            ("s3://Upper", "not an S3 bucket name"),
            ("s3://under_score", "not an S3 bucket name"),
            ("s3://-dash", "not an S3 bucket name"),
            (&format!("s3://{}", "a".repeat(64)), "not an S3 bucket name"),
            ("s3://bucket//x", "not a key prefix"),
            ("s3://bucket/a/../b", "not a key prefix"),
            ("s3://bucket/a b", "not a key prefix"),
            ("s3://bucket/x?y", "not a key prefix"),
        ] {
            let err = text.parse::<S3Location>().unwrap_err().to_string();
            assert!(err.contains(says), "{text}: {err}");
        }
    }

    #[tokio::test]
    async fn endpoints_must_be_urls_and_http_must_be_allowed() {
        let location: S3Location = "s3://bucket".parse().unwrap();
        for (endpoint, allow_http, says) in [
            ("http://127.0.0.1:9000", false, "--s3-allow-http"),
            ("ftp://example.invalid", true, "must be an https://"),
            ("127.0.0.1:9000", true, "must be an https://"),
        ] {
            let options = S3Options {
                endpoint: Some(endpoint.into()),
                region: None,
                allow_http,
            };
            let err = S3BlobStore::open(&location, &options).await.unwrap_err();
            assert_eq!(err.kind(), io::ErrorKind::InvalidInput, "{endpoint}");
            assert!(err.to_string().contains(says), "{endpoint}: {err}");
        }
    }
}
