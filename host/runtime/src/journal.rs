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
//! The journal is written after the provider returns, so a crash between
//! the two leaves a change the journal does not know; the re-run then
//! calls the provider again. Providers are written to make that second call
//! harmless (unlocking an unlocked account, installing an installed
//! version); store-backed providers (tickets) insert with the journal key
//! and so apply exactly once.

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

/// Where applied calls are remembered.
#[async_trait]
pub trait Journal: Send + Sync {
    /// The JSON result of `key`, if it was applied before.
    async fn replay(&self, key: &JournalKey) -> anyhow::Result<Option<String>>;
    /// Remembers that `key` was applied with the JSON `result`.
    async fn record(&self, key: &JournalKey, result: String) -> anyhow::Result<()>;
}

/// A journal in memory, for tests and single-process use.
#[derive(Debug, Default)]
pub struct MemoryJournal {
    entries: Mutex<HashMap<JournalKey, String>>,
}

impl MemoryJournal {
    /// How many calls are recorded.
    pub fn len(&self) -> usize {
        self.entries.lock().expect("journal lock poisoned").len()
    }

    /// Whether nothing is recorded.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[async_trait]
impl Journal for MemoryJournal {
    async fn replay(&self, key: &JournalKey) -> anyhow::Result<Option<String>> {
        Ok(self
            .entries
            .lock()
            .expect("journal lock poisoned")
            .get(key)
            .cloned())
    }

    async fn record(&self, key: &JournalKey, result: String) -> anyhow::Result<()> {
        self.entries
            .lock()
            .expect("journal lock poisoned")
            .insert(key.clone(), result);
        Ok(())
    }
}
