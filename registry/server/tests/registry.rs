//! The registry end to end: the real `steward-registry` binary on port 0
//! with a temp data dir, driven through the client library, on SQLite and
//! on PostgreSQL.

mod support;

use std::sync::{Arc, Mutex};

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use steward_contract::Digest;
use steward_contract::signing::SecretKey;
use steward_registry::client::{ClientError, VerifyError, verify_resolved};
use support::{
    Db, RawPublish, Registry, assert_streamed_within, code, component, component_path, manifest,
    padded_component_file, raw_publish,
};

/// Runs a scenario on SQLite and on PostgreSQL.
macro_rules! on_both_databases {
    ($($scenario:ident),* $(,)?) => {
        $(
            mod $scenario {
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn sqlite() {
                    super::$scenario(super::Db::Sqlite).await;
                }

                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn postgres() {
                    super::$scenario(super::Db::Postgres).await;
                }
            }
        )*
    };
}

on_both_databases!(
    publish_resolve_download_verify,
    refusals_store_nothing,
    yank_hides_from_resolution_but_not_from_download,
    search_finds_latest_versions_by_name_or_description,
    oversized_uploads_are_refused_and_store_nothing,
    unsigned_namespaces_accept_unsigned_modules,
);

const MAX: u64 = 16 * 1024 * 1024;

/// A registry with publisher `acme` (namespace `acme`, one registered
/// key) and publisher `rival` (namespace `rival`).
struct Setup {
    registry: Registry,
    acme: String,
    rival: String,
    key: SecretKey,
}

async fn setup(db: Db, extra: &[&str]) -> Setup {
    let registry = Registry::start_with(db, extra).await;
    let acme = registry.add_publisher("acme", &["acme"], false);
    let rival = registry.add_publisher("rival", &["rival"], false);
    let key = SecretKey::generate();
    let key_id = registry
        .client(Some(&acme))
        .register_key(&key.public_key())
        .await
        .unwrap();
    assert_eq!(key_id, key.key_id());
    Setup {
        registry,
        acme,
        rival,
        key,
    }
}

async fn publish_resolve_download_verify(db: Db) {
    let Setup {
        registry,
        acme,
        key,
        ..
    } = setup(db, &[]).await;
    let client = registry.client(Some(&acme));

    // 1.0.0 from a file, with progress.
    let path = component_path("steward-plugin-patching");
    let bytes = component("steward-plugin-patching");
    let seen = Arc::new(Mutex::new(Vec::new()));
    let progress = seen.clone();
    let m100 = manifest("acme/patching", "1.0.0", &["packages"]);
    let record = client
        .publish(&path, &m100, Some(&key), move |sent, total| {
            progress.lock().unwrap().push((sent, total));
        })
        .await
        .unwrap();
    assert_eq!(record.namespace, "acme");
    assert_eq!(record.name, "patching");
    assert_eq!(record.digest, Digest::of(&bytes));
    assert_eq!(record.size, bytes.len() as u64);
    assert_eq!(record.manifest, m100);
    assert_eq!(record.key_id.as_deref(), Some(key.key_id().as_str()));
    assert!(!record.yanked);
    let seen = seen.lock().unwrap().clone();
    let total = bytes.len() as u64;
    assert_eq!(seen.first(), Some(&(0, total)));
    assert_eq!(seen.last(), Some(&(total, total)));
    assert!(seen.windows(2).all(|w| w[0].0 <= w[1].0), "{seen:?}");
    assert_eq!(
        registry.blob_files(),
        vec![record.digest.hex()],
        "the blob is stored under its digest, no temporary file left"
    );

    // 1.1.0 from memory (the same bytes: one blob serves both) and a
    // pre-release.
    let m110 = manifest("acme/patching", "1.1.0", &["packages"]);
    client
        .publish(bytes.clone(), &m110, Some(&key), |_, _| {})
        .await
        .unwrap();
    let m200b = manifest("acme/patching", "2.0.0-beta.1", &["packages"]);
    client
        .publish(bytes.clone(), &m200b, Some(&key), |_, _| {})
        .await
        .unwrap();
    assert_eq!(registry.blob_files().len(), 1);

    let anonymous = registry.client(None);
    let versions = anonymous.versions("acme", "patching").await.unwrap();
    let listed: Vec<String> = versions.iter().map(|r| r.version.to_string()).collect();
    assert_eq!(listed, ["1.0.0", "1.1.0", "2.0.0-beta.1"]);

    // Resolution follows Cargo's rules.
    for (req, expected) in [
        ("^1", "1.1.0"),
        ("1.0", "1.1.0"),
        ("~1.0", "1.0.0"),
        ("=1.0.0", "1.0.0"),
        ("*", "1.1.0"),
        ("", "1.1.0"),
        ("^2.0.0-beta.1", "2.0.0-beta.1"),
    ] {
        let resolved = anonymous.resolve("acme", "patching", req).await.unwrap();
        assert_eq!(resolved.record.version.to_string(), expected, "{req}");
    }
    let err = anonymous
        .resolve("acme", "patching", "^3")
        .await
        .unwrap_err();
    assert_eq!(code(&err), "no-match");
    assert_eq!(err.status(), Some(404));
    let detail = err.detail().unwrap();
    assert!(
        detail.contains("1.0.0") && detail.contains("1.1.0") && detail.contains("^3"),
        "the refusal lists what there is: {detail}"
    );
    let err = anonymous
        .resolve("acme", "patching", "latest")
        .await
        .unwrap_err();
    assert_eq!(code(&err), "bad-requirement");
    let err = anonymous.resolve("acme", "nothing", "*").await.unwrap_err();
    assert_eq!(code(&err), "not-found");

    // Download and verify against the namespace's published keys.
    let resolved = anonymous.resolve("acme", "patching", "^1").await.unwrap();
    assert_eq!(
        resolved.public_key.as_deref(),
        Some(key.public_key().as_str())
    );
    let downloaded = anonymous
        .download(&resolved.record.digest, MAX)
        .await
        .unwrap();
    assert_eq!(downloaded, bytes);
    let keys = anonymous.keys("acme").await.unwrap();
    assert!(!keys.unsigned);
    assert_eq!(keys.keys.len(), 1);
    assert_eq!(keys.keys[0].key_id, key.key_id());
    let trusted: Vec<String> = keys.keys.iter().map(|k| k.public_key.clone()).collect();
    let verified = verify_resolved(&resolved, &downloaded, &trusted).unwrap();
    assert_eq!(verified.key_id, key.key_id());
    // Someone else's key is not trusted; changed bytes do not verify.
    let stranger = SecretKey::generate();
    assert!(matches!(
        verify_resolved(&resolved, &downloaded, &[stranger.public_key()]),
        Err(VerifyError::UntrustedKey { .. })
    ));
    let mut changed = downloaded.clone();
    *changed.last_mut().unwrap() ^= 1;
    assert!(matches!(
        verify_resolved(&resolved, &changed, &trusted),
        Err(VerifyError::DigestMismatch { .. })
    ));

    // Downloads are bounded and checked.
    let err = anonymous
        .download(&resolved.record.digest, 1000)
        .await
        .unwrap_err();
    assert!(matches!(err, ClientError::TooLarge { max: 1000 }), "{err}");
    let err = anonymous
        .download(&Digest::of(b"nothing"), MAX)
        .await
        .unwrap_err();
    assert_eq!(code(&err), "not-found");

    // Other plugins carry their own capabilities.
    for (plugin, name, caps) in [
        ("steward-plugin-antivirus", "acme/antivirus", &["antivirus"]),
        (
            "steward-plugin-account-unlock",
            "acme/account-unlock",
            &["accounts"],
        ),
    ] {
        let m = manifest(name, "0.1.0", caps);
        let record = client
            .publish(component(plugin), &m, Some(&key), |_, _| {})
            .await
            .unwrap();
        assert_eq!(record.manifest.capabilities, m.capabilities);
    }

    // Keys: registering again is harmless, another publisher cannot take
    // it, garbage is refused, unknown namespaces are not found.
    assert_eq!(
        client.register_key(&key.public_key()).await.unwrap(),
        key.key_id()
    );
    let err = client.register_key("bm90IGEga2V5").await.unwrap_err();
    assert_eq!(code(&err), "bad-key");
    let err = anonymous.keys("nobody").await.unwrap_err();
    assert_eq!(code(&err), "not-found");
    let err = anonymous.register_key(&key.public_key()).await.unwrap_err();
    assert!(matches!(err, ClientError::NoToken), "{err}");
    let err = registry
        .client(Some("stwr_0000"))
        .register_key(&key.public_key())
        .await
        .unwrap_err();
    assert_eq!(code(&err), "unauthorized");
    assert_eq!(err.status(), Some(401));

    // The process stops cleanly on SIGTERM.
    assert!(registry.terminate().success());
}

async fn refusals_store_nothing(db: Db) {
    let Setup {
        registry,
        acme,
        rival,
        key,
    } = setup(db, &[]).await;
    let client = registry.client(Some(&acme));
    let bytes = component("steward-plugin-patching");
    let good = manifest("acme/patching", "1.0.0", &["packages"]);
    client
        .publish(bytes.clone(), &good, Some(&key), |_, _| {})
        .await
        .unwrap();

    let snapshot = || async {
        let versions = registry
            .client(None)
            .versions("acme", "patching")
            .await
            .unwrap();
        (versions, registry.blob_files())
    };
    let before = snapshot().await;
    let next = manifest("acme/patching", "1.1.0", &["packages"]);

    // Not the caller's namespace (another publisher's, or nobody's).
    let rival_client = registry.client(Some(&rival));
    let rival_key = SecretKey::generate();
    rival_client
        .register_key(&rival_key.public_key())
        .await
        .unwrap();
    let err = rival_client
        .publish(bytes.clone(), &next, Some(&rival_key), |_, _| {})
        .await
        .unwrap_err();
    assert_eq!(
        (err.status(), code(&err)),
        (Some(403), "not-your-namespace")
    );
    let err = client
        .publish(
            bytes.clone(),
            &manifest("nobody/patching", "1.0.0", &["packages"]),
            Some(&key),
            |_, _| {},
        )
        .await
        .unwrap_err();
    assert_eq!(code(&err), "not-your-namespace");

    // The version exists: versions are immutable, even with other bytes.
    let err = client
        .publish(
            component("steward-plugin-antivirus"),
            &manifest("acme/patching", "1.0.0", &["antivirus"]),
            Some(&key),
            |_, _| {},
        )
        .await
        .unwrap_err();
    assert_eq!((err.status(), code(&err)), (Some(409), "version-exists"));

    // No signature for a signed namespace.
    let err = client
        .publish(bytes.clone(), &next, None, |_, _| {})
        .await
        .unwrap_err();
    assert_eq!(
        (err.status(), code(&err)),
        (Some(422), "signature-required")
    );

    // A key the publisher never registered, and one another publisher did.
    let unregistered = SecretKey::generate();
    let err = client
        .publish(bytes.clone(), &next, Some(&unregistered), |_, _| {})
        .await
        .unwrap_err();
    assert_eq!(code(&err), "unknown-key");
    let err = client
        .publish(bytes.clone(), &next, Some(&rival_key), |_, _| {})
        .await
        .unwrap_err();
    assert_eq!(code(&err), "unknown-key");

    // Capabilities that differ from the component's imports, both ways.
    for caps in [&[][..], &["packages", "tickets"][..]] {
        let err = client
            .publish(
                bytes.clone(),
                &manifest("acme/patching", "1.1.0", caps),
                Some(&key),
                |_, _| {},
            )
            .await
            .unwrap_err();
        assert_eq!(code(&err), "capabilities-mismatch");
        let detail = err.detail().unwrap();
        assert!(
            detail.contains("component imports [packages]"),
            "names both sets: {detail}"
        );
    }

    // A WIT version the component was not built against.
    let mut other_wit = next.clone();
    other_wit.wit = "steward:plugin@0.1.0".into();
    let err = client
        .publish(bytes.clone(), &other_wit, Some(&key), |_, _| {})
        .await
        .unwrap_err();
    assert_eq!(code(&err), "wit-mismatch");

    // Not a component at all, or a core module (properly signed).
    for junk in [b"definitely not wasm".to_vec(), b"\0asm\x01\0\0\0".to_vec()] {
        let err = client
            .publish(junk, &next, Some(&key), |_, _| {})
            .await
            .unwrap_err();
        assert_eq!(code(&err), "not-a-component", "{err}");
    }

    // An invalid manifest never leaves the client.
    let mut bad = next.clone();
    bad.capabilities.insert("network".into());
    assert!(matches!(
        client
            .publish(bytes.clone(), &bad, Some(&key), |_, _| {})
            .await,
        Err(ClientError::Manifest(_))
    ));

    // Requests the client would never send.
    // The valid request; each refusal below changes one part of it.
    let valid = || RawPublish {
        path: "acme/patching/1.1.0",
        token: &acme,
        manifest_json: next.canonical_json(),
        signature: Some((key.sign_module(&Digest::of(&bytes), &next), key.key_id())),
        body: bytes.clone(),
    };
    // Tampered bytes: signed over the real bytes, other bytes sent.
    let mut tampered = bytes.clone();
    let middle = tampered.len() / 2;
    tampered[middle] ^= 0x55;
    let (status, problem) = raw_publish(
        &registry,
        RawPublish {
            body: tampered,
            ..valid()
        },
    )
    .await;
    assert_eq!((status, problem.code.as_str()), (422, "bad-signature"));
    // A manifest changed after signing.
    let mut widened = next.clone();
    widened.description = "Something else".into();
    let (_, problem) = raw_publish(
        &registry,
        RawPublish {
            manifest_json: widened.canonical_json(),
            ..valid()
        },
    )
    .await;
    assert_eq!(problem.code, "bad-signature");
    // The manifest names another module or version than the path.
    for path in ["acme/other/1.1.0", "acme/patching/1.2.0"] {
        let (status, problem) = raw_publish(&registry, RawPublish { path, ..valid() }).await;
        assert_eq!(
            (status, problem.code.as_str()),
            (422, "manifest-mismatch"),
            "{path}"
        );
    }
    // A manifest that is not JSON, or has unknown fields.
    let mut extra: serde_json::Value = serde_json::from_slice(&next.canonical_json()).unwrap();
    extra["unexpected"] = "field".into();
    for manifest_json in [b"{not json".to_vec(), serde_json::to_vec(&extra).unwrap()] {
        let (status, problem) = raw_publish(
            &registry,
            RawPublish {
                manifest_json,
                ..valid()
            },
        )
        .await;
        assert_eq!((status, problem.code.as_str()), (422, "bad-manifest"));
    }
    // A signature that is not base64 of 64 bytes.
    let (_, problem) = raw_publish(
        &registry,
        RawPublish {
            signature: Some((BASE64.encode(b"short"), key.key_id())),
            ..valid()
        },
    )
    .await;
    assert_eq!(problem.code, "bad-signature");
    // No valid token.
    let (status, problem) = raw_publish(
        &registry,
        RawPublish {
            token: "stwr_not-a-token",
            ..valid()
        },
    )
    .await;
    assert_eq!((status, problem.code.as_str()), (401, "unauthorized"));
    // A path that is not a module.
    let (status, problem) = raw_publish(
        &registry,
        RawPublish {
            path: "Acme/patching/1.1.0",
            ..valid()
        },
    )
    .await;
    assert_eq!((status, problem.code.as_str()), (422, "invalid"));

    assert_eq!(snapshot().await, before, "no refusal stored anything");
    // Nothing else got in under another name either.
    let err = registry
        .client(None)
        .versions("acme", "other")
        .await
        .unwrap_err();
    assert_eq!(code(&err), "not-found");

    // Problems never leak internals.
    let response = reqwest::get(format!("{}/v1/blobs/sha256:nothex", registry.url))
        .await
        .unwrap();
    assert_eq!(response.status(), 400);
    let response = reqwest::get(format!("{}/v1/nowhere", registry.url))
        .await
        .unwrap();
    assert_eq!(response.status(), 404);
    let problem: serde_json::Value = response.json().await.unwrap();
    assert_eq!(problem["code"], "not-found");
    assert_eq!(problem["status"], 404);

    // And the good upload still goes through afterwards.
    client
        .publish(bytes.clone(), &next, Some(&key), |_, _| {})
        .await
        .unwrap();
}

async fn yank_hides_from_resolution_but_not_from_download(db: Db) {
    let Setup {
        registry,
        acme,
        rival,
        key,
    } = setup(db, &[]).await;
    let client = registry.client(Some(&acme));
    let patching = component("steward-plugin-patching");
    client
        .publish(
            patching.clone(),
            &manifest("acme/patching", "1.0.0", &["packages"]),
            Some(&key),
            |_, _| {},
        )
        .await
        .unwrap();
    // 1.1.0 is different bytes: the template plugin, honestly declared.
    let template = component("steward-plugin-template");
    let template_caps = steward_contract::imports::inspect(&template)
        .unwrap()
        .capabilities;
    let caps: Vec<&str> = template_caps.iter().map(String::as_str).collect();
    let newer = client
        .publish(
            template.clone(),
            &manifest("acme/patching", "1.1.0", &caps),
            Some(&key),
            |_, _| {},
        )
        .await
        .unwrap();
    let v110: semver::Version = "1.1.0".parse().unwrap();
    let anonymous = registry.client(None);
    assert_eq!(
        anonymous
            .resolve("acme", "patching", "^1")
            .await
            .unwrap()
            .record
            .version,
        v110
    );

    // Only the owner may yank.
    let err = registry
        .client(Some(&rival))
        .yank("acme", "patching", &v110)
        .await
        .unwrap_err();
    assert_eq!(code(&err), "not-your-namespace");
    let err = anonymous.yank("acme", "patching", &v110).await.unwrap_err();
    assert!(matches!(err, ClientError::NoToken), "{err}");

    let yanked = client.yank("acme", "patching", &v110).await.unwrap();
    assert!(yanked.yanked);
    let resolved = anonymous.resolve("acme", "patching", "^1").await.unwrap();
    assert_eq!(resolved.record.version.to_string(), "1.0.0");
    let err = anonymous
        .resolve("acme", "patching", "=1.1.0")
        .await
        .unwrap_err();
    assert_eq!(code(&err), "no-match");
    assert!(err.detail().unwrap().contains("1.1.0 (yanked)"), "{err}");
    // Still listed, flagged, and downloadable by digest.
    let versions = anonymous.versions("acme", "patching").await.unwrap();
    assert!(versions.iter().any(|r| r.version == v110 && r.yanked));
    assert_eq!(
        anonymous.download(&newer.digest, MAX).await.unwrap(),
        template
    );
    // Yanking twice is harmless; a missing version is not found.
    client.yank("acme", "patching", &v110).await.unwrap();
    let err = client
        .yank("acme", "patching", &"9.9.9".parse().unwrap())
        .await
        .unwrap_err();
    assert_eq!(code(&err), "not-found");

    let restored = client.unyank("acme", "patching", &v110).await.unwrap();
    assert!(!restored.yanked);
    assert_eq!(
        anonymous
            .resolve("acme", "patching", "^1")
            .await
            .unwrap()
            .record
            .version,
        v110
    );
}

async fn search_finds_latest_versions_by_name_or_description(db: Db) {
    let Setup {
        registry,
        acme,
        key,
        ..
    } = setup(db, &[]).await;
    let client = registry.client(Some(&acme));
    let patching = component("steward-plugin-patching");
    for version in ["1.0.0", "1.2.0", "1.10.0"] {
        let mut m = manifest("acme/patching", version, &["packages"]);
        m.description = "Keeps operating system PACKAGES up to date".into();
        client
            .publish(patching.clone(), &m, Some(&key), |_, _| {})
            .await
            .unwrap();
    }
    let mut av = manifest("acme/antivirus", "0.3.0", &["antivirus"]);
    av.description = "Scans and quarantines".into();
    client
        .publish(
            component("steward-plugin-antivirus"),
            &av,
            Some(&key),
            |_, _| {},
        )
        .await
        .unwrap();

    let anonymous = registry.client(None);
    let by_name = anonymous.search("patch").await.unwrap();
    assert_eq!(by_name.len(), 1);
    assert_eq!(by_name[0].manifest.name, "acme/patching");
    assert_eq!(
        by_name[0].version.to_string(),
        "1.10.0",
        "the latest by semver, not by text"
    );
    let by_description = anonymous.search("quarantine").await.unwrap();
    assert_eq!(by_description.len(), 1);
    assert_eq!(by_description[0].name, "antivirus");
    let case_insensitive = anonymous.search("packages up").await.unwrap();
    assert_eq!(case_insensitive.len(), 1);
    let everything = anonymous.search("").await.unwrap();
    let names: Vec<&str> = everything.iter().map(|r| r.name.as_str()).collect();
    assert_eq!(names, ["antivirus", "patching"]);
    assert!(anonymous.search("no such thing").await.unwrap().is_empty());
    // Special characters are text, not patterns.
    assert!(anonymous.search("%").await.unwrap().is_empty());

    // The latest yanked: the next one shows; all yanked: the module hides.
    client
        .yank("acme", "patching", &"1.10.0".parse().unwrap())
        .await
        .unwrap();
    let found = anonymous.search("patch").await.unwrap();
    assert_eq!(found[0].version.to_string(), "1.2.0");
    client
        .yank("acme", "antivirus", &"0.3.0".parse().unwrap())
        .await
        .unwrap();
    assert!(anonymous.search("quarantine").await.unwrap().is_empty());
}

async fn oversized_uploads_are_refused_and_store_nothing(db: Db) {
    // Patching is ~90 KB; allow 64 KiB.
    let Setup {
        registry,
        acme,
        key,
        ..
    } = setup(db, &["--max-module-bytes", "65536"]).await;
    let client = registry.client(Some(&acme));
    let bytes = component("steward-plugin-patching");
    assert!(bytes.len() > 65536);
    let m = manifest("acme/patching", "1.0.0", &["packages"]);

    // Declared too large: refused before the body is read.
    let err = client
        .publish(bytes.clone(), &m, Some(&key), |_, _| {})
        .await
        .unwrap_err();
    assert_eq!((err.status(), code(&err)), (Some(413), "too-large"));
    assert!(registry.blob_files().is_empty());

    // No length declared (chunked): refused as soon as it passes the limit,
    // and the client, still streaming 64 MiB, reads the 413 (the server
    // discards the rest rather than closing on it).
    let signature = key.sign_module(&Digest::of(&bytes), &m);
    let chunks = (0..1024).map(|_| Ok::<_, std::io::Error>(vec![0u8; 64 * 1024]));
    let response = reqwest::Client::new()
        .put(format!("{}/v1/modules/acme/patching/1.0.0", registry.url))
        .bearer_auth(&acme)
        .header("steward-manifest", BASE64.encode(m.canonical_json()))
        .header("steward-signature", signature)
        .header("steward-key-id", key.key_id())
        .body(reqwest::Body::wrap_stream(futures_util::stream::iter(
            chunks,
        )))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 413);
    let problem: serde_json::Value = response.json().await.unwrap();
    assert_eq!(problem["code"], "too-large");

    assert!(
        registry.blob_files().is_empty(),
        "{:?}",
        registry.blob_files()
    );
    let err = registry
        .client(None)
        .versions("acme", "patching")
        .await
        .unwrap_err();
    assert_eq!(code(&err), "not-found");

    // Something within the limit still goes in.
    let small = component("guest-trivial");
    assert!(small.len() <= 65536);
    client
        .publish(
            small,
            &manifest("acme/trivial", "1.0.0", &[]),
            Some(&key),
            |_, _| {},
        )
        .await
        .unwrap();
    assert_eq!(registry.blob_files().len(), 1);
}

async fn unsigned_namespaces_accept_unsigned_modules(db: Db) {
    let registry = Registry::start(db).await;
    let dev = registry.add_publisher("dev", &["dev", "dev-two"], true);
    let client = registry.client(Some(&dev));
    let bytes = component("steward-plugin-patching");
    let record = client
        .publish(
            component_path("steward-plugin-patching"),
            &manifest("dev-two/patching", "0.1.0", &["packages"]),
            None,
            |_, _| {},
        )
        .await
        .unwrap();
    assert!(record.signature.is_none() && record.key_id.is_none());
    let anonymous = registry.client(None);
    let keys = anonymous.keys("dev-two").await.unwrap();
    assert!(keys.unsigned && keys.keys.is_empty());
    let resolved = anonymous.resolve("dev-two", "patching", "*").await.unwrap();
    assert!(resolved.public_key.is_none());
    let downloaded = anonymous
        .download(&resolved.record.digest, MAX)
        .await
        .unwrap();
    assert_eq!(downloaded, bytes);
    assert!(matches!(
        verify_resolved(&resolved, &downloaded, &[]),
        Err(VerifyError::Unsigned)
    ));

    // Signed modules are welcome too, and verified.
    let key = SecretKey::generate();
    client.register_key(&key.public_key()).await.unwrap();
    let m = manifest("dev/patching", "0.1.0", &["packages"]);
    let (status, problem) = raw_publish(
        &registry,
        RawPublish {
            path: "dev/patching/0.1.0",
            token: &dev,
            manifest_json: m.canonical_json(),
            signature: Some((key.sign_module(&Digest::of(b"other"), &m), key.key_id())),
            body: bytes.clone(),
        },
    )
    .await;
    assert_eq!((status, problem.code.as_str()), (422, "bad-signature"));
    client
        .publish(bytes, &m, Some(&key), |_, _| {})
        .await
        .unwrap();
}

#[tokio::test]
async fn publisher_add_refuses_taken_names_and_namespaces() {
    let registry = Registry::start(Db::Sqlite).await;
    registry.add_publisher("acme", &["acme"], false);
    for args in [
        &["publisher", "add", "acme", "--namespace", "other"][..],
        &["publisher", "add", "rival", "--namespace", "acme"][..],
        &["publisher", "add", "Bad", "--namespace", "bad"][..],
    ] {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_steward-registry"))
            .args(args)
            .arg("--data-dir")
            .arg(&registry.data_dir)
            .env("STEWARD_REGISTRY_LOG", "off")
            .output()
            .unwrap();
        assert!(!out.status.success(), "{args:?}");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(stderr.starts_with("steward-registry: "), "{stderr}");
        assert!(!String::from_utf8_lossy(&out.stdout).contains("stwr_"));
    }
    let response = reqwest::get(format!("{}/healthz", registry.url))
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
}

/// A 48 MiB module goes in and out while the server's resident memory
/// stays below the module's size: the upload is hashed, inspected and
/// written to disk as it arrives, and the download is streamed from the
/// file. The module is a real plugin component with one more nested core
/// module (48 MiB of custom section), which the import check skips
/// without buffering, as it does a plugin's own code.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn large_modules_stream_through_bounded_memory() {
    const PAD: u64 = 48 * 1024 * 1024;
    let Setup {
        registry,
        acme,
        key,
        ..
    } = setup(Db::Sqlite, &["--max-module-bytes", "104857600"]).await;

    let dir = tempfile::tempdir().unwrap();
    let (file, digest) = padded_component_file(PAD, dir.path());

    let sent = Arc::new(Mutex::new(Vec::new()));
    let progress = sent.clone();
    let record = registry
        .client(Some(&acme))
        .publish(
            file,
            &manifest("acme/large", "1.0.0", &[]),
            Some(&key),
            move |done, total| progress.lock().unwrap().push((done, total)),
        )
        .await
        .unwrap();
    assert_eq!(record.digest, digest);
    let sent = sent.lock().unwrap().clone();
    assert!(
        sent.len() > 100,
        "progress reported per chunk: {}",
        sent.len()
    );
    assert_eq!(sent.last().unwrap().0, sent.last().unwrap().1);

    assert_streamed_within(&registry, &digest, PAD, "registry peak RSS").await;

    // Over the limit: refused with the limit in the message.
    let err = registry
        .client(Some(&acme))
        .download(&digest, 1024 * 1024)
        .await
        .unwrap_err();
    assert!(matches!(err, ClientError::TooLarge { .. }), "{err}");
}
