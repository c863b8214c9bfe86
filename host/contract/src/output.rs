//! The rules a plugin's output must keep, stated in the WIT docs of
//! `finding.id` and `change.kind`. The runtime applies them to what a
//! plugin returns; the store applies them again to each completion, so one
//! bad job can never fail a batch of others. One place, so the two agree.

use std::collections::HashSet;

/// The longest finding id, in bytes.
pub const MAX_FINDING_ID_BYTES: usize = 256;

/// The longest change kind, in bytes.
pub const MAX_CHANGE_KIND_BYTES: usize = 64;

/// Finding ids: non-empty, at most [`MAX_FINDING_ID_BYTES`], no control
/// characters, unique within one check. The error names the finding.
pub fn check_finding_ids<'a>(ids: impl IntoIterator<Item = &'a str>) -> Result<(), String> {
    let mut seen = HashSet::new();
    for (i, id) in ids.into_iter().enumerate() {
        let why = if id.trim().is_empty() {
            "its id is empty".to_string()
        } else if id.len() > MAX_FINDING_ID_BYTES {
            format!(
                "its id is {} bytes long, more than {MAX_FINDING_ID_BYTES}",
                id.len()
            )
        } else if id.chars().any(char::is_control) {
            "its id contains control characters".to_string()
        } else if !seen.insert(id) {
            format!(
                "its id `{id}` was returned already (it is repeated); ids are unique within a check"
            )
        } else {
            continue;
        };
        return Err(format!("finding {i}: {why}"));
    }
    Ok(())
}

/// Change kinds: non-empty, at most [`MAX_CHANGE_KIND_BYTES`], no control
/// characters. The error names the change.
pub fn check_change_kinds<'a>(kinds: impl IntoIterator<Item = &'a str>) -> Result<(), String> {
    for (i, kind) in kinds.into_iter().enumerate() {
        let why = if kind.trim().is_empty() {
            "its kind is empty".to_string()
        } else if kind.len() > MAX_CHANGE_KIND_BYTES {
            format!(
                "its kind is {} bytes long, more than {MAX_CHANGE_KIND_BYTES}",
                kind.len()
            )
        } else if kind.chars().any(char::is_control) {
            "its kind contains control characters".to_string()
        } else {
            continue;
        };
        return Err(format!("change {i}: {why}"));
    }
    Ok(())
}
