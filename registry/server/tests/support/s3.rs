//! A real S3-compatible server for tests: moto's standalone server
//! (`moto_server`, from PyPI's `moto[s3]`, which `.ci/setup` installs into
//! `target/moto`), one per test, on a free loopback port, killed on drop.
//!
//! moto rather than npm's s3rver: the store aborts multipart uploads and
//! the tests list the ones in progress, which s3rver does not implement.
//! moto checks no signatures, so any key pair is accepted; buckets are
//! created with a plain `PUT /BUCKET`.

use std::collections::BTreeSet;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_util::TryStreamExt as _;
use object_store::ObjectStore;
use object_store::aws::AmazonS3Builder;

/// The key pair the tests give the registry (moto takes any).
pub const ACCESS_KEY_ID: &str = "steward-test";
/// See [`ACCESS_KEY_ID`].
pub const SECRET_ACCESS_KEY: &str = "steward-test-secret";

/// `moto_server`: `STEWARD_TEST_MOTO_SERVER`, else where `.ci/setup`
/// installs it.
pub fn moto_server_path() -> PathBuf {
    std::env::var_os("STEWARD_TEST_MOTO_SERVER")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(concat!(
                env!("CARGO_MANIFEST_DIR"),
                "/../../target/moto/bin/moto_server"
            ))
        })
}

/// A running moto server.
pub struct S3Server {
    /// `http://127.0.0.1:PORT`.
    pub endpoint: String,
    child: Child,
    log: tempfile::NamedTempFile,
}

impl S3Server {
    /// Starts a server and waits until it answers.
    pub async fn start() -> Self {
        let path = moto_server_path();
        assert!(
            path.exists(),
            "{} is missing: run .ci/setup (it installs moto[s3] into target/moto)",
            path.display()
        );
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("find a free loopback port")
            .port();
        let log = tempfile::NamedTempFile::new().expect("a log file");
        let child = Command::new(&path)
            .args(["-H", "127.0.0.1", "-p", &port.to_string()])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log.reopen().expect("reopen the log"))
            .spawn()
            .unwrap_or_else(|e| panic!("start {}: {e}", path.display()));
        let mut server = S3Server {
            endpoint: format!("http://127.0.0.1:{port}"),
            child,
            log,
        };
        let deadline = Instant::now() + Duration::from_secs(60);
        let http = reqwest::Client::new();
        loop {
            if http.get(&server.endpoint).send().await.is_ok() {
                return server;
            }
            if let Ok(Some(status)) = server.child.try_wait() {
                panic!("moto_server exited ({status}): {}", server.log_text());
            }
            assert!(
                Instant::now() < deadline,
                "moto_server did not answer within a minute: {}",
                server.log_text()
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// What the server logged.
    pub fn log_text(&self) -> String {
        std::fs::read_to_string(self.log.path()).unwrap_or_default()
    }

    /// The requests the server has answered so far, as `METHOD /PATH?QUERY`,
    /// read off its log.
    pub fn requests(&self) -> Vec<String> {
        self.answered()
            .into_iter()
            .map(|(request, _)| request)
            .collect()
    }

    /// [`requests`](Self::requests) with the status each was answered with.
    pub fn answered(&self) -> Vec<(String, u16)> {
        self.log_text()
            .lines()
            .filter_map(|line| {
                // `127.0.0.1 - - [date] "METHOD /PATH HTTP/1.1" STATUS -`
                let line = without_colours(line);
                let (_, rest) = line.split_once('"')?;
                let (request, rest) = rest.split_once(" HTTP/")?;
                let (_, rest) = rest.split_once("\" ")?;
                let status = rest.split_whitespace().next()?.parse().ok()?;
                Some((request.to_owned(), status))
            })
            .collect()
    }

    /// How many of [`requests`](Self::requests) start with `prefix` and
    /// contain `part`.
    pub fn count_requests(&self, prefix: &str, part: &str) -> usize {
        self.requests()
            .iter()
            .filter(|r| r.starts_with(prefix) && r.contains(part))
            .count()
    }

    /// The keys under `prefix` (a path such as `/BUCKET/uploads/`) that a
    /// multipart upload was started for.
    pub fn multipart_uploads_started(&self, prefix: &str) -> BTreeSet<String> {
        self.upload_keys("POST", prefix, "?uploads", |_| true)
    }

    /// The keys under `prefix` whose multipart upload an abort
    /// (`DELETE …?uploadId=`) was answered with success for. A client may
    /// retry an abort, so this counts uploads, not requests.
    pub fn multipart_uploads_aborted(&self, prefix: &str) -> BTreeSet<String> {
        self.upload_keys("DELETE", prefix, "?uploadId=", |status| {
            (200..300).contains(&status)
        })
    }

    fn upload_keys(
        &self,
        method: &str,
        prefix: &str,
        query: &str,
        status: impl Fn(u16) -> bool,
    ) -> BTreeSet<String> {
        let start = format!("{method} {prefix}");
        self.answered()
            .into_iter()
            .filter(|(_, answered)| status(*answered))
            .filter_map(|(request, _)| {
                let (key, _) = request.strip_prefix(&start)?.split_once(query)?;
                Some(key.to_owned())
            })
            .collect()
    }

    /// Creates a bucket.
    pub async fn create_bucket(&self, bucket: &str) {
        let response = reqwest::Client::new()
            .put(format!("{}/{bucket}", self.endpoint))
            .send()
            .await
            .expect("create a bucket");
        assert!(response.status().is_success(), "{response:?}");
    }

    /// The environment a registry (or any S3 client) needs besides the
    /// endpoint: the key pair and a region.
    pub fn env(&self) -> Vec<(&'static str, String)> {
        vec![
            ("AWS_ACCESS_KEY_ID", ACCESS_KEY_ID.to_owned()),
            ("AWS_SECRET_ACCESS_KEY", SECRET_ACCESS_KEY.to_owned()),
            ("AWS_REGION", "us-east-1".to_owned()),
        ]
    }

    /// An `object_store` client for `bucket`, to look at what is stored.
    pub fn client(&self, bucket: &str) -> Arc<dyn ObjectStore> {
        Arc::new(
            AmazonS3Builder::new()
                .with_bucket_name(bucket)
                .with_endpoint(&self.endpoint)
                .with_allow_http(true)
                .with_region("us-east-1")
                .with_access_key_id(ACCESS_KEY_ID)
                .with_secret_access_key(SECRET_ACCESS_KEY)
                .build()
                .expect("an S3 client"),
        )
    }

    /// Every object key in `bucket`, sorted (ListObjectsV2).
    pub async fn objects(&self, bucket: &str) -> Vec<String> {
        let mut keys: Vec<String> = self
            .client(bucket)
            .list(None)
            .map_ok(|meta| meta.location.to_string())
            .try_collect()
            .await
            .expect("list the bucket");
        keys.sort();
        keys
    }

    /// The keys of the multipart uploads in progress in `bucket`, sorted
    /// (ListMultipartUploads, which `object_store` does not offer).
    pub async fn multipart_uploads(&self, bucket: &str) -> Vec<String> {
        let xml = reqwest::get(format!("{}/{bucket}?uploads", self.endpoint))
            .await
            .expect("list multipart uploads")
            .error_for_status()
            .expect("list multipart uploads")
            .text()
            .await
            .unwrap();
        let mut keys: Vec<String> = xml
            .split("<Upload>")
            .skip(1)
            .map(|upload| {
                let key = upload
                    .split_once("<Key>")
                    .and_then(|(_, rest)| rest.split_once("</Key>"))
                    .unwrap_or_else(|| panic!("an upload without a key: {xml}"))
                    .0;
                key.to_owned()
            })
            .collect();
        keys.sort();
        keys
    }

    /// Waits (at most 20 s) until `bucket` has no multipart upload in
    /// progress: an upload dropped without committing aborts its multipart
    /// upload in a task of its own, just after the drop.
    pub async fn await_no_multipart_uploads(&self, bucket: &str) {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let uploads = self.multipart_uploads(bucket).await;
            if uploads.is_empty() {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "multipart uploads still in progress: {uploads:?}"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

/// `text` without terminal colour sequences (`ESC [ … m`), which the
/// server's log puts around some requests.
fn without_colours(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut chars = text.chars();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' {
            for c in chars.by_ref() {
                if c == 'm' {
                    break;
                }
            }
        } else {
            out.push(c);
        }
    }
    out
}

impl Drop for S3Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
