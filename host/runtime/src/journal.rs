//! The mutation journal: results of mutating capability calls already
//! applied for a run, so a run repeated after a crash replays them instead
//! of applying them twice.
//!
//! A call is identified by its run id, its fingerprint (capability,
//! function and argument summary, as audited) and its occurrence among
//! calls with that fingerprint in the run. Replaying by fingerprint rather
//! than by position keeps a re-run correct when the plugin makes its calls
//! in another order, or skips some because the device changed meanwhile.
//!
//! The journal is write-ahead: before a call is made its intent is
//! recorded durably, and after the provider returns its result. So:
//!
//! - a call whose intent cannot be recorded is not made, and an attempt
//!   whose journal failed (an intent or a result not recorded: the store is
//!   down, its disk full) makes no further mutating call; the plugin sees
//!   `unavailable` and the job is retried once the store is back;
//! - a later attempt that finds a result replays it;
//! - a later attempt that finds an intent without a result knows the call
//!   is in doubt (the earlier attempt crashed between the two writes, or
//!   lost its store): it reconciles with the device instead of applying
//!   blind. The capability looks for the call's effect (no update pending
//!   for the packages, the file no longer detected, the account not
//!   locked); in place, the call is not made again and is audited as
//!   `reconciled`; not in place, it is made. Calls with nothing to look
//!   for are safe to repeat and are made again (an update of signatures, a
//!   reboot schedule, a ticket keyed by the job).
//!
//! The window left is the time between the provider's return and the
//! result's write; a crash there makes the call in doubt, never unknown.

use std::collections::HashMap;
use std::sync::Mutex;

use async_trait::async_trait;

/// Identifies one mutating call of one run.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct JournalKey {
    /// The run (for the control plane, the job: stable across attempts).
    pub run_id: String,
    /// `capability.function arguments`.
    pub call: String,
    /// 0 for the first call with this fingerprint in the run, 1 for the next…
    pub occurrence: u32,
}

impl std::fmt::Display for JournalKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}#{}", self.run_id, self.call, self.occurrence)
    }
}

/// What the journal knows of a call before it is made.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Prior {
    /// Never intended: make it.
    None,
    /// Applied by an earlier attempt, with this JSON result: replay it.
    Done(String),
    /// Intended by an earlier attempt that recorded no result: it may or
    /// may not have been applied.
    InDoubt,
}

/// Where intended and applied calls are remembered.
#[async_trait]
pub trait Journal: Send + Sync {
    /// What is known of `key` from earlier attempts.
    async fn replay(&self, key: &JournalKey) -> anyhow::Result<Prior>;
    /// Records, durably, that `key` is about to be made.
    async fn intend(&self, key: &JournalKey) -> anyhow::Result<()>;
    /// Remembers that `key` was applied with the JSON `result`.
    async fn record(&self, key: &JournalKey, result: String) -> anyhow::Result<()>;
}

/// A journal in memory, for tests and single-process use.
#[derive(Debug, Default)]
pub struct MemoryJournal {
    entries: Mutex<HashMap<JournalKey, Option<String>>>,
}

impl MemoryJournal {
    /// How many calls are recorded as applied.
    pub fn len(&self) -> usize {
        self.entries
            .lock()
            .expect("journal lock poisoned")
            .values()
            .filter(|r| r.is_some())
            .count()
    }

    /// Whether nothing is recorded.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[async_trait]
impl Journal for MemoryJournal {
    async fn replay(&self, key: &JournalKey) -> anyhow::Result<Prior> {
        Ok(
            match self.entries.lock().expect("journal lock poisoned").get(key) {
                None => Prior::None,
                Some(None) => Prior::InDoubt,
                Some(Some(result)) => Prior::Done(result.clone()),
            },
        )
    }

    async fn intend(&self, key: &JournalKey) -> anyhow::Result<()> {
        self.entries
            .lock()
            .expect("journal lock poisoned")
            .entry(key.clone())
            .or_insert(None);
        Ok(())
    }

    async fn record(&self, key: &JournalKey, result: String) -> anyhow::Result<()> {
        self.entries
            .lock()
            .expect("journal lock poisoned")
            .insert(key.clone(), Some(result));
        Ok(())
    }
}
