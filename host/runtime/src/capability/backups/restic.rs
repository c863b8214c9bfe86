//! restic: `snapshots --json`, `stats --mode restore-size`, `check
//! --read-data-subset`, `backup --json`, `ls --json` and `restore
//! --include … --verify`.

use std::path::{Path, PathBuf};

use serde::Deserialize;

use super::{Entry, Restored, Runner, parse_rfc3339};
use crate::bindings::backups::Snapshot;
use crate::bindings::types::HostError;

#[derive(Deserialize)]
struct Listed {
    id: String,
    time: String,
    #[serde(default)]
    paths: Vec<String>,
}

pub(super) async fn snapshots(runner: &Runner) -> Result<Vec<Snapshot>, HostError> {
    let out = runner.ok(&["snapshots", "--json", "--no-lock"]).await?;
    let listed: Vec<Listed> = serde_json::from_str(out.trim()).map_err(|e| {
        HostError::failed(format!("restic printed snapshots that do not parse: {e}"))
    })?;
    listed
        .into_iter()
        .map(|s| {
            Ok(Snapshot {
                time: parse_rfc3339(&s.time).ok_or_else(|| {
                    HostError::failed(format!("restic printed the time `{}`", s.time))
                })?,
                id: s.id,
                paths: s.paths,
                size_bytes: 0,
                files: 0,
            })
        })
        .collect()
}

#[derive(Deserialize)]
struct Stats {
    total_size: u64,
    total_file_count: u64,
}

pub(super) async fn size(runner: &Runner, id: &str) -> Result<(u64, u64), HostError> {
    let out = runner
        .ok(&["stats", "--json", "--no-lock", "--mode", "restore-size", id])
        .await?;
    let stats: Stats = serde_json::from_str(out.trim())
        .map_err(|e| HostError::failed(format!("restic printed stats that do not parse: {e}")))?;
    Ok((stats.total_size, stats.total_file_count))
}

pub(super) async fn verify(
    runner: &Runner,
    percent: u8,
) -> Result<(bool, u8, Vec<String>), HostError> {
    let subset = format!("--read-data-subset={percent}%");
    let out = runner.run(&["check", &subset]).await?;
    if out.success {
        return Ok((true, percent, Vec::new()));
    }
    // A wrong password or a missing repository is not a finding about the
    // data: it is the call failing.
    let text = format!("{}\n{}", out.stdout, out.stderr);
    if text.contains("wrong password") || text.contains("unable to open config file") {
        return Err(runner.failure("check", &out));
    }
    let errors: Vec<String> = text
        .lines()
        .map(str::trim)
        .filter(|l| {
            !l.is_empty()
                && !l.starts_with('[')
                && !l.starts_with("using temporary cache")
                && !l.starts_with("create exclusive lock")
                && !l.starts_with("load indexes")
                && !l.starts_with("check all packs")
                && !l.starts_with("check snapshots")
                && !l.starts_with("read ")
                && !l.starts_with("no errors")
        })
        .map(|l| runner.clean(l))
        .take(50)
        .collect();
    Ok((false, percent, errors))
}

#[derive(Deserialize)]
struct Summary {
    message_type: String,
    #[serde(default)]
    snapshot_id: Option<String>,
}

pub(super) async fn backup(runner: &Runner) -> Result<String, HostError> {
    let mut args: Vec<String> = vec!["backup".into(), "--json".into()];
    for pattern in &runner.config.exclude {
        args.push("--exclude".into());
        args.push(pattern.clone());
    }
    args.push("--".into());
    args.extend(runner.config.paths.iter().map(|p| p.display().to_string()));
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let out = runner.ok(&args).await?;
    out.lines()
        .filter_map(|l| serde_json::from_str::<Summary>(l).ok())
        .find(|s| s.message_type == "summary")
        .and_then(|s| s.snapshot_id)
        .ok_or_else(|| HostError::failed("restic made no snapshot (no summary printed)"))
}

#[derive(Deserialize)]
struct Node {
    #[serde(rename = "type")]
    kind: Option<String>,
    path: Option<String>,
    #[serde(default)]
    size: u64,
    mtime: Option<String>,
    struct_type: String,
}

pub(super) async fn files(runner: &Runner, id: &str) -> Result<Vec<Entry>, HostError> {
    let out = runner.ok(&["ls", "--json", "--no-lock", id]).await?;
    Ok(out
        .lines()
        .filter_map(|l| serde_json::from_str::<Node>(l).ok())
        .filter(|n| n.struct_type == "node" && n.kind.as_deref() == Some("file"))
        .filter_map(|n| {
            let path = n.path?;
            Some(Entry {
                live: PathBuf::from(&path),
                mtime: n
                    .mtime
                    .as_deref()
                    .and_then(parse_rfc3339)
                    .map(|t| t.seconds),
                size: n.size,
                stored: path,
            })
        })
        .collect())
}

/// A path as a restic `--include` pattern matching only itself.
fn literal(path: &str) -> String {
    let mut out = String::with_capacity(path.len());
    for c in path.chars() {
        if matches!(c, '*' | '?' | '[' | ']' | '\\') {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

pub(super) async fn restore(
    runner: &Runner,
    id: &str,
    files: &[Entry],
    scratch: &Path,
) -> Result<Restored, HostError> {
    let target = scratch.display().to_string();
    let mut args: Vec<String> = vec![
        "restore".into(),
        id.into(),
        "--no-lock".into(),
        "--verify".into(),
        "--target".into(),
        target,
    ];
    for f in files {
        args.push("--include".into());
        args.push(literal(&f.stored));
    }
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let out = runner.run(&args).await?;
    let mut restored = Restored::default();
    // restic names each file it could not restore or verify.
    for line in out.stderr.lines() {
        if let Some(rest) = line.trim().strip_prefix("ignoring error for ")
            && let Some((path, error)) = rest.split_once(": ")
        {
            restored
                .errors
                .entry(path.to_string())
                .or_insert_with(|| error.to_string());
        }
    }
    if !out.success {
        if out.stderr.contains("wrong password") {
            return Err(runner.failure("restore", &out));
        }
        restored.failure = Some(out.last_lines(2));
    }
    Ok(restored)
}

#[cfg(test)]
mod tests {
    #[test]
    fn include_patterns_match_only_the_path() {
        assert_eq!(super::literal("/srv/a*b[1].txt"), "/srv/a\\*b\\[1\\].txt");
    }
}
