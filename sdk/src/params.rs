//! Typed access to the run's parameters.
//!
//! The host has already checked every value against the types in
//! [`Descriptor`](crate::Descriptor) and filled in defaults, so these
//! getters only fail when the plugin asks for a parameter it did not
//! declare with that type.

use crate::bindings::steward::plugin::config;
use crate::{ParamProblem, ParamValue, PluginError};

fn wrong(name: &str, expected: &str) -> PluginError {
    PluginError::InvalidParam(ParamProblem {
        name: name.to_string(),
        message: format!("expected a {expected} value"),
    })
}

/// A boolean parameter, `None` when absent.
///
/// # Example
///
/// ```no_run
/// let security_only = steward_sdk::params::boolean("security-only")?.unwrap_or(true);
/// # Ok::<(), steward_sdk::PluginError>(())
/// ```
pub fn boolean(name: &str) -> Result<Option<bool>, PluginError> {
    match config::get(name) {
        None => Ok(None),
        Some(ParamValue::Boolean(b)) => Ok(Some(b)),
        Some(_) => Err(wrong(name, "boolean")),
    }
}

/// An integer parameter, `None` when absent.
///
/// # Example
///
/// ```no_run
/// let max = steward_sdk::params::integer("max-packages")?.unwrap_or(50);
/// # Ok::<(), steward_sdk::PluginError>(())
/// ```
pub fn integer(name: &str) -> Result<Option<i64>, PluginError> {
    match config::get(name) {
        None => Ok(None),
        Some(ParamValue::Integer(i)) => Ok(Some(i)),
        Some(_) => Err(wrong(name, "integer")),
    }
}

/// A float parameter, `None` when absent. Integers are accepted.
///
/// # Example
///
/// ```no_run
/// let ratio = steward_sdk::params::float("max-wear")?.unwrap_or(0.3);
/// # Ok::<(), steward_sdk::PluginError>(())
/// ```
pub fn float(name: &str) -> Result<Option<f64>, PluginError> {
    match config::get(name) {
        None => Ok(None),
        Some(ParamValue::Float(f)) => Ok(Some(f)),
        Some(ParamValue::Integer(i)) => Ok(Some(i as f64)),
        Some(_) => Err(wrong(name, "float")),
    }
}

/// A text parameter, `None` when absent.
///
/// # Example
///
/// ```no_run
/// let queue = steward_sdk::params::text("queue")?.unwrap_or_else(|| "helpdesk".into());
/// # Ok::<(), steward_sdk::PluginError>(())
/// ```
pub fn text(name: &str) -> Result<Option<String>, PluginError> {
    match config::get(name) {
        None => Ok(None),
        Some(ParamValue::Text(s)) => Ok(Some(s)),
        Some(_) => Err(wrong(name, "text")),
    }
}

/// A text-list parameter, empty when absent.
///
/// # Example
///
/// ```no_run
/// let holds = steward_sdk::params::text_list("exclude")?;
/// # Ok::<(), steward_sdk::PluginError>(())
/// ```
pub fn text_list(name: &str) -> Result<Vec<String>, PluginError> {
    match config::get(name) {
        None => Ok(Vec::new()),
        Some(ParamValue::TextList(l)) => Ok(l),
        Some(_) => Err(wrong(name, "text-list")),
    }
}

/// An integer parameter that must be at least `min`, `None` when absent.
///
/// # Example
///
/// ```no_run
/// let days = steward_sdk::params::integer_at_least("security-days", 0)?.unwrap_or(3);
/// # Ok::<(), steward_sdk::PluginError>(())
/// ```
pub fn integer_at_least(name: &str, min: i64) -> Result<Option<i64>, PluginError> {
    match integer(name)? {
        Some(v) if v < min => Err(PluginError::InvalidParam(ParamProblem {
            name: name.to_string(),
            message: format!("must be at least {min}, got {v}"),
        })),
        other => Ok(other),
    }
}
