//! Crash points for the fault tests, as FoundationDB's and TiKV's
//! failpoints: `STEWARD_FAILPOINTS="after-completion-commit=3"` makes the
//! process abort (no destructor, no flush: as a SIGKILL) the third time it
//! passes the named point. Unset, a point costs one relaxed atomic load
//! after the first. The points:
//!
//! - `after-completion-commit`: the executor committed a batch of job
//!   completions (with their audit events and alert-inbox rows) and has
//!   done nothing else with it yet;
//! - `after-approval-commit`: an approval (or rejection) and its audit
//!   event are committed, and the API has not answered yet;
//! - `agent-after-call:<call>` (in `steward agent run`): the endpoint's
//!   provider answered a call (for example `accounts.unlock`), and the
//!   answer has not been sent to the server.

use std::collections::HashMap;
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU32, Ordering};

fn points() -> &'static HashMap<String, (u32, AtomicU32)> {
    static POINTS: OnceLock<HashMap<String, (u32, AtomicU32)>> = OnceLock::new();
    POINTS.get_or_init(|| {
        std::env::var("STEWARD_FAILPOINTS")
            .unwrap_or_default()
            .split(',')
            .filter_map(|p| {
                let (name, n) = p.trim().split_once('=')?;
                Some((name.to_owned(), (n.parse().ok()?, AtomicU32::new(0))))
            })
            .collect()
    })
}

/// Passes the point `name`: aborts the process if this is the pass its
/// `STEWARD_FAILPOINTS` entry names.
pub fn hit(name: &str) {
    hit_at(name, "");
}

/// Passes the point `<scope>:<name>` (`agent-after-call:accounts-unlock`),
/// building that name only when failpoints are set, so a hot path pays
/// nothing for it.
pub fn hit_at(scope: &str, name: &str) {
    let points = points();
    if points.is_empty() {
        return;
    }
    let full;
    let name = if name.is_empty() {
        scope
    } else {
        full = format!("{scope}:{name}");
        &full
    };
    if let Some((at, passes)) = points.get(name)
        && passes.fetch_add(1, Ordering::SeqCst) + 1 == *at
    {
        eprintln!("steward: failpoint `{name}` reached (pass {at}): aborting");
        std::process::abort();
    }
}
