//! `state`: a small key/value store per plugin per device.

use std::collections::BTreeMap;
use std::sync::Mutex;

use crate::HostState;
use crate::bindings::state::Host;
use crate::bindings::types::HostError;
use crate::capability::Capability;

/// Longest key accepted.
pub const MAX_KEY_BYTES: usize = 256;
/// Longest value accepted.
pub const MAX_VALUE_BYTES: usize = 64 << 10;
/// Most keys per plugin per device.
pub const MAX_KEYS: usize = 10_000;
/// Most bytes (keys and values) per plugin per device.
pub const MAX_STATE_BYTES: usize = 1 << 20;

/// Whether setting `key` to `value` in `map` (one plugin's state on one
/// device) keeps within [`MAX_KEYS`] and [`MAX_STATE_BYTES`]; every
/// [`StateStore`] checks it before a write.
///
/// # Errors
///
/// `limit-exceeded`, naming the quota.
pub fn check_quota(
    map: &BTreeMap<String, String>,
    key: &str,
    value: &str,
) -> Result<(), HostError> {
    if map.len() >= MAX_KEYS && !map.contains_key(key) {
        return Err(HostError::LimitExceeded(format!(
            "a plugin may keep at most {MAX_KEYS} state keys per device"
        )));
    }
    let others: usize = map
        .iter()
        .filter(|(k, _)| k.as_str() != key)
        .map(|(k, v)| k.len() + v.len())
        .sum();
    if others + key.len() + value.len() > MAX_STATE_BYTES {
        return Err(HostError::LimitExceeded(format!(
            "a plugin may keep at most {MAX_STATE_BYTES} bytes of state per device"
        )));
    }
    Ok(())
}

/// Stores plugin state. Keys are namespaced by plugin name and device id by
/// the caller.
pub trait StateStore: Send + Sync {
    /// The value of `key`.
    fn get(&self, plugin: &str, device: &str, key: &str) -> Option<String>;
    /// Sets `key`; fails past [`MAX_KEYS`].
    fn set(&self, plugin: &str, device: &str, key: &str, value: &str) -> Result<(), HostError>;
    /// Removes `key`.
    fn delete(&self, plugin: &str, device: &str, key: &str);
    /// Keys starting with `prefix`, sorted.
    fn keys(&self, plugin: &str, device: &str, prefix: &str) -> Vec<String>;
}

/// State in memory, for the local runner and tests.
#[derive(Debug, Default)]
pub struct MemoryState {
    entries: Mutex<BTreeMap<(String, String), BTreeMap<String, String>>>,
}

impl StateStore for MemoryState {
    fn get(&self, plugin: &str, device: &str, key: &str) -> Option<String> {
        let entries = self.entries.lock().expect("state lock poisoned");
        entries
            .get(&(plugin.into(), device.into()))?
            .get(key)
            .cloned()
    }

    fn set(&self, plugin: &str, device: &str, key: &str, value: &str) -> Result<(), HostError> {
        let mut entries = self.entries.lock().expect("state lock poisoned");
        let map = entries.entry((plugin.into(), device.into())).or_default();
        check_quota(map, key, value)?;
        map.insert(key.into(), value.into());
        Ok(())
    }

    fn delete(&self, plugin: &str, device: &str, key: &str) {
        let mut entries = self.entries.lock().expect("state lock poisoned");
        if let Some(map) = entries.get_mut(&(plugin.into(), device.into())) {
            map.remove(key);
        }
    }

    fn keys(&self, plugin: &str, device: &str, prefix: &str) -> Vec<String> {
        let entries = self.entries.lock().expect("state lock poisoned");
        entries
            .get(&(plugin.into(), device.into()))
            .map(|m| {
                m.keys()
                    .filter(|k| k.starts_with(prefix))
                    .cloned()
                    .collect()
            })
            .unwrap_or_default()
    }
}

impl Host for HostState {
    async fn get(&mut self, key: String) -> wasmtime::Result<Option<String>> {
        let device = self.run_device(Capability::State)?;
        Ok(device.state.get(&self.plugin, &device.id, &key))
    }

    async fn set(&mut self, key: String, value: String) -> wasmtime::Result<Result<(), HostError>> {
        let device = self.run_device(Capability::State)?;
        if key.len() > MAX_KEY_BYTES || value.len() > MAX_VALUE_BYTES {
            return Ok(Err(HostError::LimitExceeded(format!(
                "state keys are at most {MAX_KEY_BYTES} bytes and values at most {MAX_VALUE_BYTES} bytes"
            ))));
        }
        Ok(device.state.set(&self.plugin, &device.id, &key, &value))
    }

    async fn delete(&mut self, key: String) -> wasmtime::Result<()> {
        let device = self.run_device(Capability::State)?;
        device.state.delete(&self.plugin, &device.id, &key);
        Ok(())
    }

    async fn keys(&mut self, prefix: String) -> wasmtime::Result<Vec<String>> {
        let device = self.run_device(Capability::State)?;
        Ok(device.state.keys(&self.plugin, &device.id, &prefix))
    }
}
