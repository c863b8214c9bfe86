//! The registry with its blobs in S3: the real `steward-registry` binary
//! with `--blobs s3://…`, and the store itself, against a real
//! S3-compatible server (moto's, see `support::s3`) on a loopback port.
//! What the bucket holds is read back through the S3 API: ListObjectsV2
//! for the objects, ListMultipartUploads for uploads still in progress.

mod support;

use std::sync::{Arc, Mutex};

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use bytes::Bytes;
use futures_util::TryStreamExt as _;
use steward_contract::Digest;
use steward_contract::signing::SecretKey;
use steward_registry::client::verify_resolved;
use steward_registry_server::blobs::s3::PART_SIZE;
use steward_registry_server::blobs::{BlobStore, S3BlobStore, S3Location};
use support::s3::S3Server;
use support::{
    Db, RawPublish, Registry, assert_streamed_within, code, component, component_path, manifest,
    padded_component, padded_component_file, raw_publish,
};

const BUCKET: &str = "steward-modules";

/// How a test registry is told about its bucket.
enum Config {
    /// `--blobs … --s3-endpoint … --s3-allow-http`.
    Flags,
    /// `STEWARD_REGISTRY_BLOBS` and the other variables.
    Env,
}

/// A moto server with the bucket, and a registry keeping its blobs there
/// under `prefix`, with publisher `acme` (namespace `acme`, one key).
struct Setup {
    s3: S3Server,
    registry: Registry,
    acme: String,
    key: SecretKey,
}

async fn setup(prefix: &str, config: Config, extra: &[&str]) -> Setup {
    let s3 = S3Server::start().await;
    s3.create_bucket(BUCKET).await;
    let blobs = if prefix.is_empty() {
        format!("s3://{BUCKET}")
    } else {
        format!("s3://{BUCKET}/{prefix}")
    };
    let mut env = s3.env();
    let mut args: Vec<&str> = Vec::new();
    match config {
        Config::Flags => args.extend([
            "--blobs",
            blobs.as_str(),
            "--s3-endpoint",
            s3.endpoint.as_str(),
            "--s3-allow-http",
        ]),
        Config::Env => env.extend([
            ("STEWARD_REGISTRY_BLOBS", blobs.clone()),
            ("STEWARD_REGISTRY_S3_ENDPOINT", s3.endpoint.clone()),
            ("STEWARD_REGISTRY_S3_REGION", "us-east-1".to_owned()),
            ("STEWARD_REGISTRY_S3_ALLOW_HTTP", "true".to_owned()),
        ]),
    }
    args.extend(extra);
    let registry = Registry::start_configured(Db::Sqlite, &args, &env).await;
    let acme = registry.add_publisher("acme", &["acme"], false);
    let key = SecretKey::generate();
    registry
        .client(Some(&acme))
        .register_key(&key.public_key())
        .await
        .unwrap();
    Setup {
        s3,
        registry,
        acme,
        key,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn publish_resolve_download_verify() {
    let Setup {
        s3,
        registry,
        acme,
        key,
    } = setup("steward/registry", Config::Flags, &[]).await;
    let client = registry.client(Some(&acme));
    let bytes = component("steward-plugin-patching");
    let record = client
        .publish(
            component_path("steward-plugin-patching"),
            &manifest("acme/patching", "1.0.0", &["packages"]),
            Some(&key),
            |_, _| {},
        )
        .await
        .unwrap();
    assert_eq!(record.digest, Digest::of(&bytes));
    let blob_key = format!("steward/registry/sha256/{}", record.digest.hex());
    assert_eq!(s3.objects(BUCKET).await, std::slice::from_ref(&blob_key));
    assert!(
        !registry.data_dir.join("blobs").exists(),
        "nothing on the file system"
    );

    // The same bytes under other versions: still one object.
    for version in ["1.1.0", "2.0.0-beta.1"] {
        let again = client
            .publish(
                bytes.clone(),
                &manifest("acme/patching", version, &["packages"]),
                Some(&key),
                |_, _| {},
            )
            .await
            .unwrap();
        assert_eq!(again.digest, record.digest);
    }
    assert_eq!(s3.objects(BUCKET).await, std::slice::from_ref(&blob_key));
    // Other bytes: another object.
    let antivirus = client
        .publish(
            component("steward-plugin-antivirus"),
            &manifest("acme/antivirus", "0.1.0", &["antivirus"]),
            Some(&key),
            |_, _| {},
        )
        .await
        .unwrap();
    let mut expected = vec![
        blob_key,
        format!("steward/registry/sha256/{}", antivirus.digest.hex()),
    ];
    expected.sort();
    assert_eq!(s3.objects(BUCKET).await, expected);
    assert!(s3.multipart_uploads(BUCKET).await.is_empty());

    // Resolve, download from the bucket, verify against the namespace's
    // keys.
    let anonymous = registry.client(None);
    let resolved = anonymous.resolve("acme", "patching", "^1").await.unwrap();
    assert_eq!(resolved.record.version.to_string(), "1.1.0");
    let downloaded = anonymous
        .download(&resolved.record.digest, 16 * 1024 * 1024)
        .await
        .unwrap();
    assert_eq!(downloaded, bytes);
    let trusted: Vec<String> = anonymous
        .keys("acme")
        .await
        .unwrap()
        .keys
        .into_iter()
        .map(|k| k.public_key)
        .collect();
    let verified = verify_resolved(&resolved, &downloaded, &trusted).unwrap();
    assert_eq!(verified.key_id, key.key_id());
    let response = reqwest::get(format!(
        "{}/v1/blobs/{}",
        registry.url, resolved.record.digest
    ))
    .await
    .unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(
        response.headers()["content-length"],
        bytes.len().to_string().as_str()
    );
    let err = anonymous
        .download(&Digest::of(b"nothing"), 1024)
        .await
        .unwrap_err();
    assert_eq!(code(&err), "not-found");

    assert!(registry.terminate().success());
}

/// Refusals, before the body is read, after it was held in memory, and
/// after it had become a multipart upload, leave no object and no upload
/// in progress in the bucket. Configured through the environment.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refusals_leave_nothing_in_the_bucket() {
    const MAX: u64 = 12 * 1024 * 1024;
    let max = MAX.to_string();
    let Setup {
        s3,
        registry,
        acme,
        key,
    } = setup("", Config::Env, &["--max-module-bytes", &max]).await;
    let client = registry.client(Some(&acme));
    let next = manifest("acme/patching", "1.0.0", &["packages"]);
    let bytes = component("steward-plugin-patching");
    assert!(bytes.len() < PART_SIZE);

    // Tampered bytes, small enough to stay in memory.
    let mut tampered = bytes.clone();
    let middle = tampered.len() / 2;
    tampered[middle] ^= 0x55;
    let (status, problem) = raw_publish(
        &registry,
        RawPublish {
            path: "acme/patching/1.0.0",
            token: &acme,
            manifest_json: next.canonical_json(),
            signature: Some((key.sign_module(&Digest::of(&bytes), &next), key.key_id())),
            body: tampered,
        },
    )
    .await;
    assert_eq!((status, problem.code.as_str()), (422, "bad-signature"));

    // Two parts' worth with a signature over other bytes: refused once all
    // of it is in, by then a multipart upload.
    let large = padded_component(2 * PART_SIZE as u64);
    let large_manifest = manifest("acme/large", "1.0.0", &[]);
    let (status, problem) = raw_publish(
        &registry,
        RawPublish {
            path: "acme/large/1.0.0",
            token: &acme,
            manifest_json: large_manifest.canonical_json(),
            signature: Some((
                key.sign_module(&Digest::of(b"other"), &large_manifest),
                key.key_id(),
            )),
            body: large.clone(),
        },
    )
    .await;
    assert_eq!((status, problem.code.as_str()), (422, "bad-signature"));

    // Not a component, properly signed.
    let junk = vec![7u8; PART_SIZE + 1024];
    let err = client
        .publish(junk, &next, Some(&key), |_, _| {})
        .await
        .unwrap_err();
    assert_eq!(code(&err), "not-a-component");

    // Declared too large: refused before the body is read.
    let too_large = padded_component(MAX);
    let err = client
        .publish(too_large, &large_manifest, Some(&key), |_, _| {})
        .await
        .unwrap_err();
    assert_eq!((err.status(), code(&err)), (Some(413), "too-large"));

    // Chunked, no length declared: refused once past the limit, by then
    // two parts into a multipart upload.
    let chunks = (0..1024).map(|_| Ok::<_, std::io::Error>(vec![0u8; 64 * 1024]));
    let response = reqwest::Client::new()
        .put(format!("{}/v1/modules/acme/patching/1.0.0", registry.url))
        .bearer_auth(&acme)
        .header("steward-manifest", BASE64.encode(next.canonical_json()))
        .header(
            "steward-signature",
            key.sign_module(&Digest::of(&bytes), &next),
        )
        .header("steward-key-id", key.key_id())
        .body(reqwest::Body::wrap_stream(futures_util::stream::iter(
            chunks,
        )))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 413);

    s3.await_no_multipart_uploads(BUCKET).await;
    assert_eq!(s3.objects(BUCKET).await, Vec::<String>::new());
    // The three refused after outgrowing one part were multipart uploads,
    // all aborted; nothing was ever written under sha256/.
    let uploads = format!("/{BUCKET}/uploads/");
    let started = s3.multipart_uploads_started(&uploads);
    assert_eq!(started.len(), 3, "{:#?}", s3.answered());
    assert_eq!(
        s3.multipart_uploads_aborted(&uploads),
        started,
        "{:#?}",
        s3.answered()
    );
    assert_eq!(s3.count_requests(&format!("PUT /{BUCKET}/sha256/"), ""), 0);
    for module in ["patching", "large"] {
        let err = registry
            .client(None)
            .versions("acme", module)
            .await
            .unwrap_err();
        assert_eq!(code(&err), "not-found");
    }

    // The good uploads still go in afterwards, small and large.
    let small = client
        .publish(bytes, &next, Some(&key), |_, _| {})
        .await
        .unwrap();
    let large = client
        .publish(large, &large_manifest, Some(&key), |_, _| {})
        .await
        .unwrap();
    let mut expected = vec![
        format!("sha256/{}", small.digest.hex()),
        format!("sha256/{}", large.digest.hex()),
    ];
    expected.sort();
    assert_eq!(s3.objects(BUCKET).await, expected);
    assert!(s3.multipart_uploads(BUCKET).await.is_empty());
}

/// A 48 MiB module goes into the bucket and back while the server's
/// resident memory stays below the module's size: the upload is sent in
/// parts as it arrives, the download streamed from the bucket. The same
/// bytes again under another version store nothing more.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn large_modules_stream_through_bounded_memory() {
    const PAD: u64 = 48 * 1024 * 1024;
    let Setup {
        s3,
        registry,
        acme,
        key,
    } = setup("blobs", Config::Flags, &["--max-module-bytes", "104857600"]).await;

    let dir = tempfile::tempdir().unwrap();
    let (file, digest) = padded_component_file(PAD, dir.path());

    let sent = Arc::new(Mutex::new(Vec::new()));
    let progress = sent.clone();
    let client = registry.client(Some(&acme));
    let record = client
        .publish(
            file.clone(),
            &manifest("acme/large", "1.0.0", &[]),
            Some(&key),
            move |done, total| progress.lock().unwrap().push((done, total)),
        )
        .await
        .unwrap();
    assert_eq!(record.digest, digest);
    let blob_key = format!("blobs/sha256/{}", digest.hex());
    assert_eq!(s3.objects(BUCKET).await, std::slice::from_ref(&blob_key));
    assert!(s3.multipart_uploads(BUCKET).await.is_empty());

    assert_streamed_within(&registry, &digest, PAD, "registry peak RSS with S3 blobs").await;

    // Again under another version: the upload is dropped, not copied.
    let put_blob = format!("PUT /{BUCKET}/blobs/sha256/");
    assert!(
        s3.count_requests(&put_blob, "") >= 1,
        "{:#?}",
        s3.requests()
    );
    let before = s3.requests().len();
    client
        .publish(
            file,
            &manifest("acme/large", "1.0.1", &[]),
            Some(&key),
            |_, _| {},
        )
        .await
        .unwrap();
    s3.await_no_multipart_uploads(BUCKET).await;
    assert_eq!(s3.objects(BUCKET).await, [blob_key]);
    // A copy under the digest the first time (a client may retry it), and
    // none the second time, whose upload was aborted.
    let second = s3.requests().split_off(before);
    assert!(
        !second.iter().any(|r| r.starts_with(&put_blob)),
        "{second:#?}"
    );
    let uploads = format!("/{BUCKET}/blobs/uploads/");
    let started = s3.multipart_uploads_started(&uploads);
    assert_eq!(started.len(), 2, "{:#?}", s3.answered());
    let aborted = s3.multipart_uploads_aborted(&uploads);
    assert_eq!(aborted.len(), 1, "{:#?}", s3.answered());
    assert!(aborted.is_subset(&started));
}

/// Bad S3 settings stop `serve` at once with a message that says what is
/// wrong.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_s3_settings_are_refused_at_startup() {
    let s3 = S3Server::start().await;
    s3.create_bucket(BUCKET).await;
    let data = tempfile::tempdir().unwrap();
    let bucket = format!("s3://{BUCKET}");
    let serve = |args: &[&str]| {
        let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_steward-registry"));
        cmd.args(["serve", "--listen", "127.0.0.1:0", "--data-dir"])
            .arg(data.path())
            .args(args)
            .env("STEWARD_REGISTRY_LOG", "off");
        for (name, _) in std::env::vars_os() {
            let name = name.to_string_lossy();
            if name.starts_with("AWS_") || name.starts_with("STEWARD_REGISTRY_") {
                cmd.env_remove(name.as_ref());
            }
        }
        cmd.envs(s3.env());
        let out = cmd.output().unwrap();
        assert!(
            out.stdout.is_empty(),
            "{args:?} served: {}",
            String::from_utf8_lossy(&out.stdout)
        );
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };

    // Refused while parsing the command line.
    for (args, says) in [
        (
            &["--blobs", "gs://bucket"][..],
            "use `s3://BUCKET[/PREFIX]`",
        ),
        (
            &["--blobs", "/var/lib/blobs"][..],
            "use `s3://BUCKET[/PREFIX]`",
        ),
        (&["--blobs", "s3://Modules"][..], "not an S3 bucket name"),
        (&["--blobs", "s3://"][..], "not an S3 bucket name"),
        (&["--blobs", "s3://modules//x"][..], "not a key prefix"),
        (&["--s3-region", "eu-west-1"][..], "--blobs"),
        (&["--s3-endpoint", s3.endpoint.as_str()][..], "--blobs"),
    ] {
        let (code, stderr) = serve(args);
        assert_eq!(code, Some(2), "{args:?}: {stderr}");
        assert!(stderr.contains(says), "{args:?}: {stderr}");
    }

    // Refused when opening the store.
    let missing = "s3://no-such-bucket".to_owned();
    let closed = format!(
        "http://{}",
        std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .unwrap()
    );
    for (args, says) in [
        (
            vec!["--blobs", &bucket, "--s3-endpoint", &s3.endpoint],
            "--s3-allow-http",
        ),
        (
            vec!["--blobs", &bucket, "--s3-endpoint", "ftp://127.0.0.1"],
            "must be an https://",
        ),
        (
            vec![
                "--blobs",
                &missing,
                "--s3-endpoint",
                &s3.endpoint,
                "--s3-allow-http",
            ],
            "cannot open the blob store s3://no-such-bucket",
        ),
        (
            vec![
                "--blobs",
                &bucket,
                "--s3-endpoint",
                &closed,
                "--s3-allow-http",
            ],
            "cannot open the blob store s3://steward-modules: cannot list",
        ),
        (
            vec![
                "--blobs",
                &bucket,
                "--s3-endpoint",
                &s3.endpoint,
                "--s3-allow-http",
                "--max-module-bytes",
                "6442450944",
            ],
            "at most 5368709120",
        ),
    ] {
        let (code, stderr) = serve(&args);
        assert_eq!(code, Some(1), "{args:?}: {stderr}");
        assert!(
            stderr.starts_with("steward-registry: ") && stderr.contains(says),
            "{args:?}: {stderr}"
        );
    }
    let (_, stderr) = serve(&[
        "--blobs",
        &missing,
        "--s3-endpoint",
        &s3.endpoint,
        "--s3-allow-http",
    ]);
    assert!(stderr.contains("NoSuchBucket"), "{stderr}");
}

/// The store on its own: what a commit, a duplicate and a dropped upload
/// leave in the bucket, on both sides of the one-part threshold.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_store_commits_whole_blobs_and_drops_leave_nothing() {
    let s3 = S3Server::start().await;
    s3.create_bucket(BUCKET).await;
    let location: S3Location = format!("s3://{BUCKET}/p").parse().unwrap();
    let store = S3BlobStore::with_store(s3.client(BUCKET), location)
        .await
        .unwrap();
    let read = |digest: Digest| {
        let store = store.clone();
        async move {
            let blob = store.open(&digest).await.unwrap().expect("stored");
            let size = blob.size;
            let chunks: Vec<Bytes> = blob.stream.try_collect().await.unwrap();
            let bytes = chunks.concat();
            assert_eq!(bytes.len() as u64, size);
            bytes
        }
    };

    // Small: one PUT at commit, nothing before.
    let mut upload = store.begin().await.unwrap();
    upload.write(b"hello ").await.unwrap();
    upload.write(b"world").await.unwrap();
    assert_eq!(upload.size(), 11);
    let hello = Digest::of(b"hello world");
    assert_eq!(upload.digest(), hello);
    assert!(s3.objects(BUCKET).await.is_empty());
    assert!(!store.contains(&hello).await.unwrap());
    assert_eq!(upload.commit().await.unwrap(), hello);
    assert!(store.contains(&hello).await.unwrap());
    assert_eq!(store.key_of(&hello), format!("p/sha256/{}", hello.hex()));
    assert_eq!(s3.objects(BUCKET).await, [store.key_of(&hello)]);
    assert_eq!(read(hello).await, b"hello world");
    assert!(store.open(&Digest::of(b"x")).await.unwrap().is_none());
    assert!(!store.contains(&Digest::of(b"x")).await.unwrap());

    // A dropped small upload never reached the bucket.
    let mut upload = store.begin().await.unwrap();
    upload.write(&[1u8; 1000]).await.unwrap();
    drop(upload);
    assert_eq!(s3.objects(BUCKET).await, [store.key_of(&hello)]);

    // Large: a multipart upload under uploads/ from the first part on,
    // then copied under its digest and the temporary key deleted.
    let large: Vec<u8> = (0..PART_SIZE * 2 + 12345)
        .map(|i| (i % 251) as u8)
        .collect();
    let large_digest = Digest::of(&large);
    for round in 0..2 {
        let mut upload = store.begin().await.unwrap();
        for chunk in large.chunks(64 * 1024) {
            upload.write(chunk).await.unwrap();
        }
        let uploads = s3.multipart_uploads(BUCKET).await;
        assert_eq!(uploads.len(), 1, "{uploads:?}");
        assert!(
            uploads[0].starts_with(&store.uploads_prefix()),
            "{uploads:?}"
        );
        assert_eq!(upload.commit().await.unwrap(), large_digest, "{round}");
        assert!(s3.multipart_uploads(BUCKET).await.is_empty());
        let mut expected = vec![store.key_of(&hello), store.key_of(&large_digest)];
        expected.sort();
        assert_eq!(s3.objects(BUCKET).await, expected, "{round}");
    }
    assert_eq!(read(large_digest).await, large);

    // A dropped large upload aborts its multipart upload.
    let mut upload = store.begin().await.unwrap();
    for chunk in large[..PART_SIZE + 1].chunks(64 * 1024) {
        upload.write(chunk).await.unwrap();
    }
    assert_eq!(s3.multipart_uploads(BUCKET).await.len(), 1);
    drop(upload);
    s3.await_no_multipart_uploads(BUCKET).await;
    assert_eq!(s3.objects(BUCKET).await.len(), 2);

    // Opening the store again finds nothing stale to remove.
    let again = S3BlobStore::with_store(s3.client(BUCKET), store.location().clone())
        .await
        .unwrap();
    assert!(again.contains(&large_digest).await.unwrap());
}
