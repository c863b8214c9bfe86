//! `steward plugin keygen`, `steward plugin register-key` and `steward
//! plugin publish`, run as the real `steward` binary against a real
//! `steward-registry` process (port 0, a temporary data directory, SQLite).

// Not in `support`: the benchmarks include that module, without the
// registry crate.
#[path = "support/registry.rs"]
mod registry_support;

use std::ffi::OsStr;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use registry_support::Registry;
use steward_contract::signing::SecretKey;
use steward_contract::{Digest, imports};
use steward_registry::client::verify_resolved;

/// Runs `steward ARGS` without the registry variables of the caller's
/// environment.
fn steward<I, S>(args: I) -> Output
where
    I: IntoIterator<Item = S>,
    S: AsRef<OsStr>,
{
    steward_with_env(args, &[])
}

fn steward_with_env<I, S>(args: I, env: &[(&str, &str)]) -> Output
where
    I: IntoIterator<Item = S>,
    S: AsRef<OsStr>,
{
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_steward"));
    cmd.args(args)
        .env_remove("STEWARD_REGISTRY")
        .env_remove("STEWARD_REGISTRY_TOKEN")
        .stdin(Stdio::null());
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd.output().expect("run steward")
}

fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

#[track_caller]
fn assert_ok(out: &Output) {
    assert!(
        out.status.success(),
        "steward failed ({}):\nstdout: {}\nstderr: {}",
        out.status,
        stdout(out),
        stderr(out)
    );
}

#[track_caller]
fn assert_fails(out: &Output) {
    assert!(
        !out.status.success(),
        "steward succeeded:\nstdout: {}\nstderr: {}",
        stdout(out),
        stderr(out)
    );
}

/// `keygen --out FILE`: the key id and public key it printed.
fn keygen(file: &Path) -> (String, String) {
    let out = steward([
        OsStr::new("plugin"),
        "keygen".as_ref(),
        "--out".as_ref(),
        file.as_os_str(),
    ]);
    assert_ok(&out);
    let text = stdout(&out);
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 2, "{text}");
    let key_id = lines[0].strip_prefix("key id: ").expect(&text).to_owned();
    let public_key = lines[1]
        .strip_prefix("public key: ")
        .expect(&text)
        .to_owned();
    let key = SecretKey::load(file).expect("keygen writes a loadable key file");
    assert_eq!(key.key_id(), key_id);
    assert_eq!(key.public_key(), public_key);
    (key_id, public_key)
}

/// `register-key`, with the registry and token from the environment.
fn register_key(registry: &Registry, token: &str, key: &Path) {
    let out = steward_with_env(
        [
            OsStr::new("plugin"),
            "register-key".as_ref(),
            "--key".as_ref(),
            key.as_os_str(),
        ],
        &[
            ("STEWARD_REGISTRY", &registry.url),
            ("STEWARD_REGISTRY_TOKEN", token),
        ],
    );
    assert_ok(&out);
    let key_id = SecretKey::load(key).unwrap().key_id();
    assert_eq!(stdout(&out), format!("registered {key_id}\n"));
}

fn template() -> PathBuf {
    steward_tests::component("steward-plugin-template")
}

/// `publish FILE --name … --version VERSION … EXTRA --registry … --token …`.
fn publish_with_flags(
    registry: &Registry,
    token: &str,
    name: &str,
    version: &str,
    extra: &[&OsStr],
) -> Output {
    let file = template();
    let mut args: Vec<&OsStr> = vec![
        "plugin".as_ref(),
        "publish".as_ref(),
        file.as_os_str(),
        "--name".as_ref(),
        name.as_ref(),
        "--version".as_ref(),
        version.as_ref(),
        "--description".as_ref(),
        "Reports failing disks and end-of-life systems".as_ref(),
        "--license".as_ref(),
        "Apache-2.0".as_ref(),
        "--homepage".as_ref(),
        "https://example.com/template".as_ref(),
    ];
    args.extend_from_slice(extra);
    args.extend([
        OsStr::new("--registry"),
        registry.url.as_ref(),
        "--token".as_ref(),
        token.as_ref(),
    ]);
    steward(args)
}

#[tokio::test]
async fn keygen_register_key_and_publish_with_flags() {
    let registry = Registry::start();
    let token = registry.add_publisher("acme", &["acme", "beta"], false);
    let dir = tempfile::tempdir().unwrap();
    let key_file = dir.path().join("acme.key");
    let (key_id, public_key) = keygen(&key_file);
    register_key(&registry, &token, &key_file);

    let bytes = std::fs::read(template()).unwrap();
    let imports = imports::inspect(&bytes).unwrap();
    assert_eq!(
        imports.capabilities,
        ["inventory".to_string(), "tickets".to_string()].into(),
        "the template plugin's imports changed; update this test"
    );

    // Under another name or version than the component's own: refused
    // before anything is sent, as no host would install it.
    for (name, version) in [("acme/other", "0.1.0"), ("acme/template", "1.0.0")] {
        let out = publish_with_flags(
            &registry,
            &token,
            name,
            version,
            &["--key".as_ref(), key_file.as_os_str()],
        );
        assert_fails(&out);
        let err = stderr(&out);
        assert!(
            err.contains("describes itself as `template` 0.1.0")
                && err.contains(&format!("publishes it as `{name}` {version}"))
                && err.contains("nothing was uploaded"),
            "{err}"
        );
    }

    let out = publish_with_flags(
        &registry,
        &token,
        "acme/template",
        "0.1.0",
        &["--key".as_ref(), key_file.as_os_str()],
    );
    assert_ok(&out);
    let digest = Digest::of(&bytes);
    assert_eq!(
        stdout(&out),
        format!("published acme/template 0.1.0 {digest}\n")
    );

    let client = registry.client(None);
    let versions = client.versions("acme", "template").await.unwrap();
    assert_eq!(versions.len(), 1, "{versions:?}");
    let record = &versions[0];
    assert_eq!(record.version.to_string(), "0.1.0");
    assert_eq!(record.digest, digest);
    assert_eq!(record.key_id.as_deref(), Some(key_id.as_str()));
    assert_eq!(record.manifest.name, "acme/template");
    assert_eq!(record.manifest.license, "Apache-2.0");
    assert_eq!(
        record.manifest.homepage.as_deref(),
        Some("https://example.com/template")
    );
    assert_eq!(record.manifest.wit, imports.wit);
    assert_eq!(record.manifest.capabilities, imports.capabilities);

    // What a host installing it would check: digest and signature under
    // the key generated above.
    let resolved = client.resolve("acme", "template", "^0.1").await.unwrap();
    assert_eq!(resolved.public_key.as_deref(), Some(public_key.as_str()));
    let downloaded = client.download(&digest, 64 << 20).await.unwrap();
    let verified = verify_resolved(&resolved, &downloaded, &[public_key]).unwrap();
    assert_eq!(verified.key_id, key_id);

    // Versions are immutable: the registry's code and detail reach stderr.
    let again = publish_with_flags(
        &registry,
        &token,
        "acme/template",
        "0.1.0",
        &["--key".as_ref(), key_file.as_os_str()],
    );
    assert_fails(&again);
    let err = stderr(&again);
    assert!(err.starts_with("error: "), "{err}");
    assert!(
        err.contains(steward_registry::api::codes::VERSION_EXISTS),
        "{err}"
    );
    assert!(err.contains("acme/template 0.1.0"), "{err}");
    assert!(stdout(&again).is_empty(), "{}", stdout(&again));
    assert_eq!(client.versions("acme", "template").await.unwrap().len(), 1);

    // A key nobody registered: the registry's code, and what to do.
    let stray = dir.path().join("stray.key");
    keygen(&stray);
    let out = publish_with_flags(
        &registry,
        &token,
        "beta/template",
        "0.1.0",
        &["--key".as_ref(), stray.as_os_str()],
    );
    assert_fails(&out);
    let err = stderr(&out);
    assert!(
        err.contains(steward_registry::api::codes::UNKNOWN_KEY),
        "{err}"
    );
    assert!(
        err.contains("hint: ") && err.contains("register-key"),
        "{err}"
    );
    assert_eq!(client.versions("acme", "template").await.unwrap().len(), 1);
    let err = client.versions("beta", "template").await.unwrap_err();
    assert_eq!(err.code(), Some("not-found"), "{err}");
}

#[tokio::test]
async fn a_manifest_file_must_match_the_components_imports() {
    let registry = Registry::start();
    let token = registry.add_publisher("acme", &["acme"], false);
    let dir = tempfile::tempdir().unwrap();
    let key_file = dir.path().join("acme.key");
    let (key_id, _) = keygen(&key_file);
    register_key(&registry, &token, &key_file);
    let file = template();

    let publish_manifest = |manifest: serde_json::Value| {
        let path = dir.path().join("manifest.json");
        std::fs::write(&path, serde_json::to_vec_pretty(&manifest).unwrap()).unwrap();
        steward([
            OsStr::new("plugin"),
            "publish".as_ref(),
            file.as_os_str(),
            "--manifest".as_ref(),
            path.as_os_str(),
            "--key".as_ref(),
            key_file.as_os_str(),
            "--registry".as_ref(),
            registry.url.as_ref(),
            "--token".as_ref(),
            token.as_ref(),
        ])
    };
    let manifest = |version: &str, capabilities: &[&str]| {
        serde_json::json!({
            "name": "acme/template",
            "version": version,
            "description": "Reports failing disks",
            "license": "MIT",
            "wit": "steward:plugin@0.2.0",
            "capabilities": capabilities,
        })
    };

    // A manifest that matches is published as written.
    let out = publish_manifest(manifest("0.1.0", &["tickets", "inventory"]));
    assert_ok(&out);
    assert!(
        stdout(&out).starts_with("published acme/template 0.1.0 sha256:"),
        "{}",
        stdout(&out)
    );
    let client = registry.client(None);
    let before = client.versions("acme", "template").await.unwrap();
    assert_eq!(before.len(), 1);
    assert_eq!(before[0].manifest.license, "MIT");
    assert_eq!(before[0].key_id.as_deref(), Some(key_id.as_str()));

    // Other capabilities: refused locally, naming both sets, before any
    // upload (the registry's own refusal code never appears).
    let out = publish_manifest(manifest("1.1.0", &["packages"]));
    assert_fails(&out);
    let err = stderr(&out);
    assert!(err.starts_with("error: "), "{err}");
    assert!(err.contains("declares capabilities [packages]"), "{err}");
    assert!(err.contains("imports [inventory, tickets]"), "{err}");
    assert!(
        !err.contains(steward_registry::api::codes::CAPABILITIES_MISMATCH),
        "the upload reached the registry: {err}"
    );
    assert_eq!(client.versions("acme", "template").await.unwrap(), before);

    // Fewer capabilities than imported, likewise.
    let out = publish_manifest(manifest("1.1.0", &[]));
    assert_fails(&out);
    assert!(
        stderr(&out).contains("declares capabilities [none]"),
        "{}",
        stderr(&out)
    );
    assert_eq!(client.versions("acme", "template").await.unwrap(), before);
}

#[tokio::test]
async fn an_unsigned_namespace_takes_unsigned_uploads() {
    let registry = Registry::start();
    let token = registry.add_publisher("dev", &["dev"], true);
    let out = publish_with_flags(
        &registry,
        &token,
        "dev/template",
        "0.1.0",
        &["--unsigned".as_ref()],
    );
    assert_ok(&out);
    assert!(
        stdout(&out).starts_with("published dev/template 0.1.0 sha256:"),
        "{}",
        stdout(&out)
    );
    let versions = registry
        .client(None)
        .versions("dev", "template")
        .await
        .unwrap();
    assert_eq!(versions.len(), 1);
    assert_eq!(versions[0].key_id, None);
    assert_eq!(versions[0].signature, None);

    // A signed namespace refuses them, with the registry's code.
    let token = registry.add_publisher("acme", &["acme"], false);
    let out = publish_with_flags(
        &registry,
        &token,
        "acme/template",
        "0.1.0",
        &["--unsigned".as_ref()],
    );
    assert_fails(&out);
    assert!(
        stderr(&out).contains(steward_registry::api::codes::SIGNATURE_REQUIRED),
        "{}",
        stderr(&out)
    );
    assert!(
        stderr(&out).contains("publish with --key"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn keygen_refuses_an_existing_file() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("existing.key");
    std::fs::write(&file, "precious\n").unwrap();
    let out = steward([
        OsStr::new("plugin"),
        "keygen".as_ref(),
        "--out".as_ref(),
        file.as_os_str(),
    ]);
    assert_fails(&out);
    let err = stderr(&out);
    assert!(err.starts_with("error: "), "{err}");
    assert!(err.contains("already exists"), "{err}");
    assert!(stdout(&out).is_empty(), "{}", stdout(&out));
    assert_eq!(std::fs::read_to_string(&file).unwrap(), "precious\n");
}

#[test]
fn publish_needs_one_signing_choice_and_one_manifest_form() {
    let file = template();
    let dir = tempfile::tempdir().unwrap();
    let key_file = dir.path().join("k.key");
    keygen(&key_file);
    let manifest_file = dir.path().join("manifest.json");
    let base = [
        OsStr::new("plugin"),
        "publish".as_ref(),
        file.as_os_str(),
        "--registry".as_ref(),
        "http://127.0.0.1:9".as_ref(),
        "--token".as_ref(),
        "stwr_x".as_ref(),
    ];
    let run = |extra: &[&OsStr]| {
        let mut args = base.to_vec();
        args.extend_from_slice(extra);
        let out = steward(args);
        assert_fails(&out);
        stderr(&out)
    };
    let flags: [&OsStr; 8] = [
        "--name".as_ref(),
        "acme/x".as_ref(),
        "--version".as_ref(),
        "1.0.0".as_ref(),
        "--description".as_ref(),
        "d".as_ref(),
        "--license".as_ref(),
        "MIT".as_ref(),
    ];

    let both = run(&[
        &flags[..],
        &[
            "--key".as_ref(),
            key_file.as_os_str(),
            "--unsigned".as_ref(),
        ],
    ]
    .concat());
    assert!(both.contains("cannot be used with"), "{both}");
    let neither = run(&flags);
    assert!(neither.contains("required"), "{neither}");
    assert!(neither.contains("--key"), "{neither}");

    let conflict = run(&[
        &flags[..],
        &[
            "--manifest".as_ref(),
            manifest_file.as_os_str(),
            "--unsigned".as_ref(),
        ],
    ]
    .concat());
    assert!(conflict.contains("cannot be used with"), "{conflict}");

    let none = run(&["--unsigned".as_ref()]);
    assert!(none.contains("no manifest"), "{none}");
    let partial = run(&[&flags[..6], &["--unsigned".as_ref()]].concat());
    assert!(partial.contains("missing: --license"), "{partial}");
}
