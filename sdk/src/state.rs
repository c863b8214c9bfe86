//! Typed plugin state: what a plugin remembers between runs on one device
//! (when it last nagged, what it saw last time), as any serde type.
//!
//! The host keeps strings per plugin and device ([`host::state`]); these
//! helpers store values as JSON under a key, so a plugin never writes its
//! own encoding. A value that no longer parses as the type asked for (the
//! plugin changed its state's shape) reads as absent, so a new version
//! starts afresh instead of failing every run.
//!
//! [`host::state`]: crate::host::state

use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::host::state;
use crate::{HostError, PluginError};

/// The value stored under `key`, if there is one of type `T`.
///
/// # Example
///
/// ```no_run
/// #[derive(serde::Serialize, serde::Deserialize)]
/// struct Seen { count: u32 }
///
/// let seen: Option<Seen> = steward_sdk::state::get("seen");
/// let count = seen.map_or(0, |s| s.count);
/// ```
pub fn get<T: DeserializeOwned>(key: &str) -> Option<T> {
    serde_json::from_str(&state::get(key)?).ok()
}

/// Stores `value` under `key`, replacing what was there. The host bounds
/// the size of each value and the number of keys; past them this is a
/// `limit-exceeded` error.
///
/// # Example
///
/// ```no_run
/// steward_sdk::state::set("last-nag", &steward_sdk::Date::new(2026, 11, 23))?;
/// # Ok::<(), steward_sdk::PluginError>(())
/// ```
pub fn set<T: Serialize + ?Sized>(key: &str, value: &T) -> Result<(), PluginError> {
    let json = serde_json::to_string(value).map_err(|e| {
        PluginError::Host(HostError::InvalidArgument(format!(
            "state `{key}` cannot be stored as JSON: {e}"
        )))
    })?;
    state::set(key, &json).map_err(PluginError::Host)
}

/// Forgets `key`.
pub fn delete(key: &str) {
    state::delete(key);
}

/// The keys starting with `prefix`.
pub fn keys(prefix: &str) -> Vec<String> {
    state::keys(prefix)
}
