//! Module bytes, addressed by their digest.
//!
//! The index says which digest a version has; a [`BlobStore`] keeps the
//! bytes. A blob is written through a [`BlobUpload`] that hashes as it
//! writes, and only becomes visible under its digest when
//! [committed](BlobUpload::commit): dropping an upload discards everything
//! it wrote. Blobs are immutable, so two uploads of the same bytes commit
//! the same blob and neither can corrupt the other.
//!
//! [`FsBlobStore`] keeps each blob in `<root>/sha256/<64 hex>`. An upload
//! is a temporary file (`.upload-…`) in that same directory, so committing
//! is an atomic `rename` on one file system after an `fsync`: a reader
//! sees either no blob or the whole blob, never part of one.
//!
//! [`S3BlobStore`] keeps each blob at `<prefix>/sha256/<64 hex>` in an
//! S3-compatible bucket, through the `object_store` crate; how it streams,
//! commits and cleans up is in [its module](s3).

use std::fmt;
use std::io;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use async_trait::async_trait;
use bytes::Bytes;
use futures_util::stream::BoxStream;
use sha2::{Digest as _, Sha256};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _, BufWriter};

use steward_contract::Digest;

pub mod s3;

pub use s3::{BadS3Location, S3BlobStore, S3Location, S3Options};

/// How many bytes a blob stream yields at a time.
const READ_CHUNK: usize = 64 * 1024;

/// Leftover uploads older than this are removed when a store opens (a
/// process that crashed mid-upload leaves its temporary file behind).
const STALE_UPLOAD: Duration = Duration::from_secs(24 * 3600);

/// A stored blob, ready to stream.
pub struct Blob {
    /// Its size in bytes.
    pub size: u64,
    /// Its bytes, in order.
    pub stream: BoxStream<'static, io::Result<Bytes>>,
}

impl fmt::Debug for Blob {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Blob")
            .field("size", &self.size)
            .finish_non_exhaustive()
    }
}

/// Where module bytes live.
#[async_trait]
pub trait BlobStore: Send + Sync + fmt::Debug + 'static {
    /// Starts a new blob. Nothing is visible until it is committed.
    async fn begin(&self) -> io::Result<Box<dyn BlobUpload>>;

    /// The blob with this digest, if stored.
    async fn open(&self, digest: &Digest) -> io::Result<Option<Blob>>;

    /// Whether a blob with this digest is stored.
    async fn contains(&self, digest: &Digest) -> io::Result<bool>;
}

/// A blob being written. Dropping it without committing discards it.
#[async_trait]
pub trait BlobUpload: Send {
    /// Appends bytes.
    async fn write(&mut self, chunk: &[u8]) -> io::Result<()>;

    /// Bytes written so far.
    fn size(&self) -> u64;

    /// The digest of the bytes written so far.
    fn digest(&self) -> Digest;

    /// Makes the blob durable and visible under its digest, which it
    /// returns.
    async fn commit(self: Box<Self>) -> io::Result<Digest>;
}

/// Blobs as files: `<root>/sha256/<hex>`.
#[derive(Debug, Clone)]
pub struct FsBlobStore {
    dir: PathBuf,
}

impl FsBlobStore {
    /// Opens (creating) the store under `root`, removing uploads a crashed
    /// process left behind more than a day ago.
    ///
    /// # Errors
    ///
    /// The directory cannot be created or read.
    pub fn open(root: &Path) -> io::Result<Self> {
        let dir = root.join("sha256");
        std::fs::create_dir_all(&dir)?;
        for entry in std::fs::read_dir(&dir)? {
            let entry = entry?;
            let stale = entry.file_name().to_string_lossy().starts_with(".upload-")
                && entry
                    .metadata()
                    .and_then(|m| m.modified())
                    .ok()
                    .and_then(|t| SystemTime::now().duration_since(t).ok())
                    .is_some_and(|age| age > STALE_UPLOAD);
            if stale {
                let _ = std::fs::remove_file(entry.path());
            }
        }
        Ok(Self { dir })
    }

    /// The directory holding the blobs (`<root>/sha256`).
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The file of a blob.
    pub fn path_of(&self, digest: &Digest) -> PathBuf {
        self.dir.join(digest.hex())
    }
}

#[async_trait]
impl BlobStore for FsBlobStore {
    async fn begin(&self) -> io::Result<Box<dyn BlobUpload>> {
        let dir = self.dir.clone();
        let temp = tokio::task::spawn_blocking(move || {
            tempfile::Builder::new()
                .prefix(".upload-")
                .tempfile_in(&dir)
        })
        .await
        .map_err(io::Error::other)??;
        let (file, path) = temp.into_parts();
        Ok(Box::new(FsUpload {
            file: BufWriter::with_capacity(READ_CHUNK, tokio::fs::File::from_std(file)),
            path,
            dir: self.dir.clone(),
            hasher: Sha256::new(),
            size: 0,
        }))
    }

    async fn open(&self, digest: &Digest) -> io::Result<Option<Blob>> {
        let file = match tokio::fs::File::open(self.path_of(digest)).await {
            Ok(file) => file,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(e),
        };
        let size = file.metadata().await?.len();
        let stream = futures_util::stream::unfold(Some(file), |file| async move {
            let mut file = file?;
            let mut buf = vec![0u8; READ_CHUNK];
            match file.read(&mut buf).await {
                Ok(0) => None,
                Ok(n) => {
                    buf.truncate(n);
                    Some((Ok(Bytes::from(buf)), Some(file)))
                }
                Err(e) => Some((Err(e), None)),
            }
        });
        Ok(Some(Blob {
            size,
            stream: Box::pin(stream),
        }))
    }

    async fn contains(&self, digest: &Digest) -> io::Result<bool> {
        tokio::fs::try_exists(self.path_of(digest)).await
    }
}

/// An upload into a temporary file beside the blobs.
struct FsUpload {
    file: BufWriter<tokio::fs::File>,
    /// Removes the temporary file when dropped.
    path: tempfile::TempPath,
    dir: PathBuf,
    hasher: Sha256,
    size: u64,
}

#[async_trait]
impl BlobUpload for FsUpload {
    async fn write(&mut self, chunk: &[u8]) -> io::Result<()> {
        self.hasher.update(chunk);
        self.size += chunk.len() as u64;
        self.file.write_all(chunk).await
    }

    fn size(&self) -> u64 {
        self.size
    }

    fn digest(&self) -> Digest {
        digest_of(self.hasher.clone())
    }

    async fn commit(self: Box<Self>) -> io::Result<Digest> {
        let FsUpload {
            mut file,
            path,
            dir,
            hasher,
            ..
        } = *self;
        let digest = digest_of(hasher);
        file.flush().await?;
        let file = file.into_inner();
        file.sync_all().await?;
        drop(file);
        let target = dir.join(digest.hex());
        tokio::task::spawn_blocking(move || {
            #[cfg(unix)]
            {
                use std::os::unix::fs::PermissionsExt as _;
                std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644))?;
            }
            path.persist(&target).map_err(|e| e.error)?;
            // Make the rename itself durable.
            #[cfg(unix)]
            std::fs::File::open(&dir)?.sync_all()?;
            io::Result::Ok(())
        })
        .await
        .map_err(io::Error::other)??;
        Ok(digest)
    }
}

fn digest_of(hasher: Sha256) -> Digest {
    let bytes: [u8; 32] = hasher.finalize().into();
    Digest::from_bytes(bytes)
}

#[cfg(test)]
mod tests {
    use futures_util::TryStreamExt as _;

    use super::*;

    fn listing(dir: &Path) -> Vec<String> {
        let mut names: Vec<String> = std::fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        names
    }

    #[tokio::test]
    async fn a_committed_blob_is_stored_under_its_digest() {
        let root = tempfile::tempdir().unwrap();
        let store = FsBlobStore::open(root.path()).unwrap();
        let mut upload = store.begin().await.unwrap();
        upload.write(b"hello ").await.unwrap();
        upload.write(b"world").await.unwrap();
        assert_eq!(upload.size(), 11);
        let expected = Digest::of(b"hello world");
        assert_eq!(upload.digest(), expected);
        assert!(!store.contains(&expected).await.unwrap());
        assert_eq!(upload.commit().await.unwrap(), expected);
        assert!(store.contains(&expected).await.unwrap());
        assert_eq!(listing(store.dir()), vec![expected.hex()]);

        let blob = store.open(&expected).await.unwrap().unwrap();
        assert_eq!(blob.size, 11);
        let chunks: Vec<Bytes> = blob.stream.try_collect().await.unwrap();
        assert_eq!(chunks.concat(), b"hello world");
        assert!(store.open(&Digest::of(b"x")).await.unwrap().is_none());
    }

    #[tokio::test]
    async fn a_dropped_upload_leaves_nothing() {
        let root = tempfile::tempdir().unwrap();
        let store = FsBlobStore::open(root.path()).unwrap();
        let mut upload = store.begin().await.unwrap();
        upload.write(&[7u8; 200_000]).await.unwrap();
        assert_eq!(listing(store.dir()).len(), 1, "the temporary file");
        drop(upload);
        assert!(listing(store.dir()).is_empty());
    }
}
