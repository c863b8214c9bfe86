//! BorgBackup 1.x: `list --json`, `info --json`, `check --verify-data`,
//! `create --json`, `list --json-lines` (with `{sha256}` for the sampled
//! files) and `extract`. A snapshot's id is its archive name.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::Deserialize;

use super::{Entry, Restored, Runner, parse_local};
use crate::bindings::backups::Snapshot;
use crate::bindings::types::HostError;

#[derive(Deserialize)]
struct Listing {
    archives: Vec<Archive>,
}

#[derive(Deserialize)]
struct Archive {
    name: String,
    #[serde(default)]
    time: Option<String>,
    #[serde(default)]
    start: Option<String>,
}

fn parse<T: serde::de::DeserializeOwned>(text: &str, what: &str) -> Result<T, HostError> {
    serde_json::from_str(text.trim())
        .map_err(|e| HostError::failed(format!("borg printed {what} that does not parse: {e}")))
}

pub(super) async fn snapshots(runner: &Runner) -> Result<Vec<Snapshot>, HostError> {
    let listing: Listing = parse(&runner.ok(&["list", "--json"]).await?, "a listing")?;
    let paths: Vec<String> = runner
        .config
        .paths
        .iter()
        .map(|p| p.display().to_string())
        .collect();
    listing
        .archives
        .into_iter()
        .map(|a| {
            let time = a.time.or(a.start).unwrap_or_default();
            Ok(Snapshot {
                time: parse_local(&time)
                    .ok_or_else(|| HostError::failed(format!("borg printed the time `{time}`")))?,
                id: a.name,
                paths: paths.clone(),
                size_bytes: 0,
                files: 0,
            })
        })
        .collect()
}

#[derive(Deserialize)]
struct Info {
    archives: Vec<InfoArchive>,
}

#[derive(Deserialize)]
struct InfoArchive {
    stats: ArchiveStats,
}

#[derive(Deserialize)]
struct ArchiveStats {
    original_size: u64,
    nfiles: u64,
}

pub(super) async fn size(runner: &Runner, name: &str) -> Result<(u64, u64), HostError> {
    let archive = format!("::{name}");
    let info: Info = parse(
        &runner.ok(&["info", "--json", &archive]).await?,
        "archive info",
    )?;
    let stats = &info
        .archives
        .first()
        .ok_or_else(|| HostError::failed("borg info printed no archive"))?
        .stats;
    Ok((stats.original_size, stats.nfiles))
}

/// Borg 1.x has no sampled read: `--verify-data` reads every chunk back.
pub(super) async fn verify(runner: &Runner) -> Result<(bool, u8, Vec<String>), HostError> {
    let out = runner.run(&["check", "--verify-data"]).await?;
    if out.success {
        return Ok((true, 100, Vec::new()));
    }
    if out.stderr.contains("passphrase supplied") || out.stderr.contains("does not exist") {
        return Err(runner.failure("check", &out));
    }
    let errors: Vec<String> = out
        .stderr
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with("Starting") && !l.starts_with("Checking"))
        .map(str::to_string)
        .take(50)
        .collect();
    Ok((false, 100, errors))
}

#[derive(Deserialize)]
struct Created {
    archive: Archive,
}

pub(super) async fn backup(runner: &Runner) -> Result<String, HostError> {
    let mut args: Vec<String> = vec![
        "create".into(),
        "--json".into(),
        "::{hostname}-{now:%Y-%m-%dT%H:%M:%S.%f}".into(),
    ];
    for pattern in &runner.config.exclude {
        args.push("--exclude".into());
        args.push(pattern.clone());
    }
    args.extend(runner.config.paths.iter().map(|p| p.display().to_string()));
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let created: Created = parse(&runner.ok(&args).await?, "the new archive")?;
    Ok(created.archive.name)
}

#[derive(Deserialize)]
struct Item {
    #[serde(rename = "type")]
    kind: String,
    path: String,
    #[serde(default)]
    size: u64,
    #[serde(default)]
    mtime: Option<String>,
    #[serde(default)]
    sha256: Option<String>,
}

pub(super) async fn files(runner: &Runner, name: &str) -> Result<Vec<Entry>, HostError> {
    let archive = format!("::{name}");
    let out = runner.ok(&["list", "--json-lines", &archive]).await?;
    Ok(out
        .lines()
        .filter_map(|l| serde_json::from_str::<Item>(l).ok())
        .filter(|i| i.kind == "-")
        .map(|i| Entry {
            live: PathBuf::from(format!("/{}", i.path)),
            mtime: i.mtime.as_deref().and_then(parse_local).map(|t| t.seconds),
            size: i.size,
            stored: i.path,
        })
        .collect())
}

/// The sha256 Borg computes from each sampled file's chunks.
pub(super) async fn hashes(
    runner: &Runner,
    name: &str,
    files: &[Entry],
) -> Result<BTreeMap<String, String>, String> {
    let archive = format!("::{name}");
    let mut args: Vec<String> = vec![
        "list".into(),
        "--json-lines".into(),
        "--format".into(),
        "{sha256}".into(),
        archive,
    ];
    args.extend(files.iter().map(|f| format!("pp:{}", f.stored)));
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let out = runner
        .run(&args)
        .await
        .map_err(|e| crate::describe_host_error(&e))?;
    if !out.success {
        return Err(out.last_lines(2));
    }
    Ok(out
        .stdout
        .lines()
        .filter_map(|l| serde_json::from_str::<Item>(l).ok())
        .filter_map(|i| Some((i.path, i.sha256?)))
        .collect())
}

pub(super) async fn restore(
    runner: &Runner,
    name: &str,
    files: &[Entry],
    scratch: &Path,
) -> Result<Restored, HostError> {
    let archive = format!("::{name}");
    let mut args: Vec<String> = vec!["extract".into(), archive];
    args.extend(files.iter().map(|f| format!("pp:{}", f.stored)));
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let mut cmd_out = {
        // extract writes into its working directory: the scratch one.
        let mut cmd = runner.command_in(&args, scratch);
        cmd.output().await.map_err(|e| {
            HostError::Unavailable(format!("cannot run `borg` (is it installed?): {e}"))
        })?
    };
    let stderr = runner.clean(&String::from_utf8_lossy(&std::mem::take(
        &mut cmd_out.stderr,
    )));
    let mut restored = Restored::default();
    if !cmd_out.status.success() {
        if stderr.contains("passphrase supplied") {
            return Err(HostError::Failed(format!(
                "`borg extract` failed for backup set `{}`: the passphrase is incorrect",
                runner.config.name
            )));
        }
        let last: Vec<&str> = stderr
            .lines()
            .map(str::trim)
            .filter(|l| !l.is_empty())
            .collect();
        let reason = last
            .iter()
            .rev()
            .find(|l| l.contains("Error") || l.contains("error"))
            .or(last.last())
            .map_or_else(|| "borg extract failed".to_string(), |l| l.to_string());
        restored.failure = Some(reason);
    }
    Ok(restored)
}
