//! Publishing plugins to a module registry: `steward plugin keygen`,
//! `steward plugin register-key` and `steward plugin publish`.
//!
//! A vendor creates a signing key once (`keygen`), registers its public
//! half with the registry under their publisher token (`register-key`),
//! then uploads each version of a plugin with its manifest, signed by that
//! key (`publish`). The manifest's `wit` and `capabilities` are read from
//! the component itself when the manifest is given as flags, and checked
//! against the component when it is given as a file, so a manifest the
//! registry would refuse for that reason is refused before any byte is
//! sent.

use std::io::IsTerminal as _;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context as _;
use clap::{ArgGroup, Args};
use steward_contract::Manifest;
use steward_contract::imports::{self, Imports};
use steward_contract::signing::SecretKey;
use steward_registry::api::codes;
use steward_registry::client::{ClientError, RegistryClient};
use steward_runtime::Runtime;

/// `steward plugin keygen`.
#[derive(Debug, Args)]
pub struct KeygenArgs {
    /// Where to write the new secret key (a JSON key file, mode 0600). The
    /// file must not exist: an existing key is never overwritten.
    #[arg(long, value_name = "FILE")]
    pub out: PathBuf,
}

/// Where the registry is and who is calling it.
#[derive(Debug, Args)]
pub struct RegistryArgs {
    /// The registry's base URL, for example `http://127.0.0.1:8470`.
    #[arg(long, env = "STEWARD_REGISTRY", value_name = "URL")]
    pub registry: Option<String>,
    /// The publisher token (`stwr_…`) printed by `steward-registry
    /// publisher add`.
    #[arg(
        long,
        env = "STEWARD_REGISTRY_TOKEN",
        value_name = "TOKEN",
        hide_env_values = true
    )]
    pub token: Option<String>,
}

impl RegistryArgs {
    fn client(&self) -> anyhow::Result<RegistryClient> {
        let url = self
            .registry
            .clone()
            .context("no registry given: pass --registry URL or set STEWARD_REGISTRY")?;
        let token = self.token.clone().context(
            "no publisher token given: pass --token TOKEN or set STEWARD_REGISTRY_TOKEN \
             (`steward-registry publisher add` prints one)",
        )?;
        Ok(RegistryClient::new(url, Some(token))?)
    }
}

/// `steward plugin register-key`.
#[derive(Debug, Args)]
pub struct RegisterKeyArgs {
    /// The key file written by `steward plugin keygen`; only its public
    /// half is sent.
    #[arg(long, value_name = "FILE")]
    pub key: PathBuf,
    #[command(flatten)]
    pub registry: RegistryArgs,
}

/// `steward plugin publish`.
#[derive(Debug, Args)]
#[command(group(ArgGroup::new("signing").required(true).args(["key", "unsigned"])))]
pub struct PublishArgs {
    /// The plugin component (`.wasm`) to upload.
    #[arg(value_name = "FILE.wasm")]
    pub file: PathBuf,
    /// The manifest as a JSON file (kebab-case fields `name`, `version`,
    /// `description`, `license`, optional `homepage`, `wit`,
    /// `capabilities`). Its `wit` and `capabilities` must match what the
    /// component imports. Instead of this, give the manifest as flags.
    #[arg(
        long,
        value_name = "MANIFEST.json",
        conflicts_with_all = ["name", "version", "description", "license", "homepage"]
    )]
    pub manifest: Option<PathBuf>,
    /// Manifest as flags: the module's name, `namespace/module` (the
    /// namespace must be one the publisher token owns). `wit` and
    /// `capabilities` are read from the component.
    #[arg(long, value_name = "NS/MODULE")]
    pub name: Option<String>,
    /// Manifest as flags: the version (semver, without `+build`
    /// metadata). Published versions are immutable.
    #[arg(long, value_name = "X.Y.Z")]
    pub version: Option<String>,
    /// Manifest as flags: a line or short paragraph describing the module.
    #[arg(long, value_name = "TEXT")]
    pub description: Option<String>,
    /// Manifest as flags: the license, an SPDX expression such as
    /// `Apache-2.0`.
    #[arg(long, value_name = "SPDX")]
    pub license: Option<String>,
    /// Manifest as flags (optional): where to read more, an `https://` URL.
    #[arg(long, value_name = "URL")]
    pub homepage: Option<String>,
    /// Sign the upload with this key file (from `steward plugin keygen`,
    /// registered with `steward plugin register-key`).
    #[arg(long, value_name = "FILE")]
    pub key: Option<PathBuf>,
    /// Upload without a signature; only namespaces created with
    /// `--unsigned-namespace` accept this (development only).
    #[arg(long)]
    pub unsigned: bool,
    #[command(flatten)]
    pub registry: RegistryArgs,
}

/// `steward plugin keygen`: writes a new key file and prints its id and
/// public key.
pub fn keygen(args: &KeygenArgs) -> anyhow::Result<ExitCode> {
    let out = &args.out;
    // Claim the path atomically, so an existing file (or one created
    // meanwhile) is never replaced; `save` then fills it in.
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    match options.open(out) {
        Ok(_) => {}
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => anyhow::bail!(
            "{} already exists; refusing to overwrite a key file (choose another --out, or \
             remove the file if you really mean to replace that key)",
            out.display()
        ),
        Err(e) => return Err(e).with_context(|| format!("cannot create {}", out.display())),
    }
    let key = SecretKey::generate();
    if let Err(e) = key.save(out) {
        let _ = std::fs::remove_file(out);
        return Err(e).context("cannot write the key file");
    }
    println!("key id: {}", key.key_id());
    println!("public key: {}", key.public_key());
    eprintln!(
        "wrote the secret key to {} (keep it private); register it with `steward plugin \
         register-key --key {}`",
        out.display(),
        out.display()
    );
    Ok(ExitCode::SUCCESS)
}

/// `steward plugin register-key`: registers a key file's public key with
/// the token's publisher.
pub async fn register_key(args: &RegisterKeyArgs) -> anyhow::Result<ExitCode> {
    let key = load_key(&args.key)?;
    let client = args.registry.client()?;
    let key_id = client.register_key(&key.public_key()).await.map_err(|e| {
        registry_error(
            e,
            format!(
                "cannot register key {} at {}",
                key.key_id(),
                client.base_url()
            ),
        )
    })?;
    println!("registered {key_id}");
    Ok(ExitCode::SUCCESS)
}

/// `steward plugin publish`: uploads a component with its manifest,
/// showing the bytes sent on standard error.
pub async fn publish(args: &PublishArgs, runtime: &Runtime) -> anyhow::Result<ExitCode> {
    // Read once for both checks; the upload streams the file again.
    let file = &args.file;
    let bytes = std::fs::read(file).with_context(|| format!("cannot read {}", file.display()))?;
    let imports = imports::inspect(&bytes)
        .with_context(|| format!("{} is not a Steward plugin component", file.display()))?;
    let manifest = manifest_for(args, &imports)?;
    check_describes(runtime, file, &bytes, &manifest).await?;
    let key = args.key.as_deref().map(load_key).transpose()?;
    let client = args.registry.client()?;

    let bar = indicatif::ProgressBar::new(0);
    if !std::io::stderr().is_terminal() {
        bar.set_draw_target(indicatif::ProgressDrawTarget::hidden());
    }
    bar.set_style(
        indicatif::ProgressStyle::with_template(
            "uploading {msg} {bar:40} {bytes}/{total_bytes} ({bytes_per_sec})",
        )
        .expect("a valid template"),
    );
    bar.set_message(format!("{} {}", manifest.name, manifest.version));
    let progress = {
        let bar = bar.clone();
        move |sent: u64, total: u64| {
            bar.set_length(total);
            bar.set_position(sent);
        }
    };
    let result = client
        .publish(args.file.clone(), &manifest, key.as_ref(), progress)
        .await;
    bar.finish_and_clear();
    let record = result.map_err(|e| {
        registry_error(
            e,
            format!(
                "cannot publish {} {} to {}",
                manifest.name,
                manifest.version,
                client.base_url()
            ),
        )
    })?;
    println!(
        "published {}/{} {} {}",
        record.namespace, record.name, record.version, record.digest
    );
    match &record.key_id {
        Some(key_id) => eprintln!("signed by {key_id}"),
        None => eprintln!("unsigned (this namespace accepts unsigned modules)"),
    }
    Ok(ExitCode::SUCCESS)
}

/// `what` failed because of `e`, with a hint for the refusals a
/// publisher can fix on their side.
fn registry_error(e: ClientError, what: String) -> anyhow::Error {
    let hint = match e.code() {
        Some(codes::UNKNOWN_KEY) => Some(
            "register the signing key with this publisher first: `steward plugin register-key --key FILE`",
        ),
        Some(codes::SIGNATURE_REQUIRED) => {
            Some("this namespace takes signed modules only: publish with --key FILE")
        }
        Some(codes::KEY_TAKEN) => Some(
            "another publisher registered this key; create one of your own with `steward plugin keygen`",
        ),
        Some(codes::UNAUTHORIZED) => {
            Some("check the publisher token (--token or STEWARD_REGISTRY_TOKEN)")
        }
        _ => None,
    };
    match hint {
        // A refusal has no source to lose.
        Some(hint) => anyhow::anyhow!("{what}: {e}\nhint: {hint}"),
        None => anyhow::Error::new(e).context(what),
    }
}

fn load_key(path: &Path) -> anyhow::Result<SecretKey> {
    SecretKey::load(path).context("cannot load the signing key")
}

/// A host installs a registry module only if the component describes
/// itself under the module's name and version (`acme/patching` 1.2.0 →
/// `patching` 1.2.0); so is refused here what no host would install.
async fn check_describes(
    runtime: &Runtime,
    file: &Path,
    bytes: &[u8],
    manifest: &Manifest,
) -> anyhow::Result<()> {
    let module = runtime
        .load(bytes)
        .await
        .with_context(|| format!("cannot load {}", file.display()))?;
    let descriptor = runtime.describe(&module).await.result.with_context(|| {
        format!(
            "`describe` of {} failed (nothing was uploaded)",
            file.display()
        )
    })?;
    let version = manifest.version.to_string();
    anyhow::ensure!(
        descriptor.name == manifest.module() && descriptor.version == version,
        "{} describes itself as `{}` {}, but the manifest publishes it as `{}` {}; hosts refuse \
         to install a module that does not describe itself under its name and version \
         (nothing was uploaded)",
        file.display(),
        descriptor.name,
        descriptor.version,
        manifest.name,
        version
    );
    Ok(())
}

/// The manifest from `--manifest` (checked against `imports`) or built
/// from the flags and `imports`.
fn manifest_for(args: &PublishArgs, imports: &Imports) -> anyhow::Result<Manifest> {
    if let Some(path) = &args.manifest {
        let bytes =
            std::fs::read(path).with_context(|| format!("cannot read {}", path.display()))?;
        let manifest = Manifest::from_json(&bytes)
            .with_context(|| format!("invalid manifest {}", path.display()))?;
        manifest.describes(imports).with_context(|| {
            format!(
                "the manifest {} does not describe {} (nothing was uploaded)",
                path.display(),
                args.file.display()
            )
        })?;
        return Ok(manifest);
    }

    let flags = [
        ("--name", &args.name),
        ("--version", &args.version),
        ("--description", &args.description),
        ("--license", &args.license),
    ];
    let missing: Vec<&str> = flags
        .iter()
        .filter(|(_, value)| value.is_none())
        .map(|(flag, _)| *flag)
        .collect();
    if missing.len() == flags.len() && args.homepage.is_none() {
        anyhow::bail!(
            "no manifest: pass --manifest MANIFEST.json, or --name NS/MODULE --version X.Y.Z \
             --description TEXT --license SPDX [--homepage URL]"
        );
    }
    if !missing.is_empty() {
        anyhow::bail!(
            "without --manifest, the manifest is given as flags: --name, --version, \
             --description and --license are all required (missing: {})",
            missing.join(", ")
        );
    }
    let version = args.version.as_deref().unwrap_or_default();
    let manifest = Manifest {
        name: args.name.clone().unwrap_or_default(),
        version: version
            .parse()
            .with_context(|| format!("--version `{version}` is not a semver version"))?,
        description: args.description.clone().unwrap_or_default(),
        license: args.license.clone().unwrap_or_default(),
        homepage: args.homepage.clone(),
        wit: imports.wit.clone(),
        capabilities: imports.capabilities.clone(),
    };
    manifest.validate()?;
    Ok(manifest)
}
