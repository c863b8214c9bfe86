//! Writing to the run log.
//!
//! Lines go to the host's run log with their level and fields, and become
//! `tracing` events in the run's span. Plain `println!` and `eprintln!` also
//! reach the run log, without levels.

use crate::Field;
use crate::host::log::{Level, emit};

fn fields(pairs: &[(&str, &str)]) -> Vec<Field> {
    pairs
        .iter()
        .map(|(k, v)| Field {
            key: (*k).to_string(),
            value: (*v).to_string(),
        })
        .collect()
}

/// Logs at info level.
///
/// # Example
///
/// ```no_run
/// steward_sdk::log::info("scanning /srv");
/// ```
pub fn info(message: &str) {
    emit(Level::Info, message, &[]);
}

/// Logs at warn level.
///
/// # Example
///
/// ```no_run
/// steward_sdk::log::warn("signatures are old");
/// ```
pub fn warn(message: &str) {
    emit(Level::Warn, message, &[]);
}

/// Logs at error level.
///
/// # Example
///
/// ```no_run
/// steward_sdk::log::error("engine missing");
/// ```
pub fn error(message: &str) {
    emit(Level::Error, message, &[]);
}

/// Logs at debug level.
///
/// # Example
///
/// ```no_run
/// steward_sdk::log::debug("raw output follows");
/// ```
pub fn debug(message: &str) {
    emit(Level::Debug, message, &[]);
}

/// Logs at info level with key/value fields.
///
/// # Example
///
/// ```no_run
/// steward_sdk::log::info_with("upgraded", &[("package", "openssl"), ("to", "3.0.15")]);
/// ```
pub fn info_with(message: &str, pairs: &[(&str, &str)]) {
    emit(Level::Info, message, &fields(pairs));
}

/// Logs at warn level with key/value fields.
///
/// # Example
///
/// ```no_run
/// steward_sdk::log::warn_with("locked", &[("account", "jdoe")]);
/// ```
pub fn warn_with(message: &str, pairs: &[(&str, &str)]) {
    emit(Level::Warn, message, &fields(pairs));
}
