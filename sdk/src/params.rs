//! Typed access to the run's parameters.
//!
//! The host has already checked every value against the types in
//! [`Descriptor`](crate::Descriptor) and filled in defaults, so these
//! getters only fail when the plugin asks for a parameter it did not
//! declare with that type.

use crate::host::config;
use crate::{ParamProblem, ParamValue, PluginError};

fn wrong(name: &str, expected: &str) -> PluginError {
    PluginError::InvalidParam(ParamProblem {
        name: name.to_string(),
        message: format!(
            "the plugin reads it as {expected}, but its description declares another type"
        ),
    })
}

fn absent(name: &str) -> PluginError {
    PluginError::InvalidParam(ParamProblem {
        name: name.to_string(),
        message: "has no value and no default in the plugin's description".into(),
    })
}

/// A parameter's value, as the type `T` it was described with: the caller's
/// value, or the default written once in `describe`. Absent with no
/// default is an `invalid-param` error naming it.
///
/// # Example
///
/// ```no_run
/// use steward_sdk::params;
///
/// // Described as `ParamSpec::integer("max-packages", "…").default_integer(50)`:
/// let max: i64 = params::get("max-packages")?;
/// let queue: String = params::get("queue")?;
/// # Ok::<(), steward_sdk::PluginError>(())
/// ```
pub fn get<T: FromParam>(name: &str) -> Result<T, PluginError> {
    match config::get(name) {
        None => Err(absent(name)),
        Some(v) => T::from_param(v).ok_or_else(|| wrong(name, T::WORDS)),
    }
}

/// One of `choices` (a text parameter), or an `invalid-param` error
/// listing them.
///
/// # Example
///
/// ```no_run
/// let reboot = steward_sdk::params::choice("reboot", &["never", "if-required", "always"])?;
/// # Ok::<(), steward_sdk::PluginError>(())
/// ```
pub fn choice(name: &str, choices: &[&str]) -> Result<String, PluginError> {
    let value: String = get(name)?;
    if choices.contains(&value.as_str()) {
        Ok(value)
    } else {
        Err(PluginError::InvalidParam(ParamProblem {
            name: name.to_string(),
            message: format!("must be one of {}, got `{value}`", choices.join(", ")),
        }))
    }
}

/// A Rust type a parameter value converts to ([`get`]).
pub trait FromParam: Sized {
    /// The type in words, for errors.
    const WORDS: &'static str;
    /// The value, if it has this type.
    fn from_param(value: ParamValue) -> Option<Self>;
}

impl FromParam for bool {
    const WORDS: &'static str = "a boolean";
    fn from_param(value: ParamValue) -> Option<Self> {
        match value {
            ParamValue::Boolean(b) => Some(b),
            _ => None,
        }
    }
}

impl FromParam for i64 {
    const WORDS: &'static str = "an integer";
    fn from_param(value: ParamValue) -> Option<Self> {
        match value {
            ParamValue::Integer(i) => Some(i),
            _ => None,
        }
    }
}

impl FromParam for f64 {
    const WORDS: &'static str = "a number";
    fn from_param(value: ParamValue) -> Option<Self> {
        match value {
            ParamValue::Float(f) => Some(f),
            ParamValue::Integer(i) => Some(i as f64),
            _ => None,
        }
    }
}

impl FromParam for String {
    const WORDS: &'static str = "text";
    fn from_param(value: ParamValue) -> Option<Self> {
        match value {
            ParamValue::Text(s) => Some(s),
            _ => None,
        }
    }
}

impl FromParam for Vec<String> {
    const WORDS: &'static str = "a text list";
    fn from_param(value: ParamValue) -> Option<Self> {
        match value {
            ParamValue::TextList(l) => Some(l),
            _ => None,
        }
    }
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
        Some(_) => Err(wrong(name, "a boolean")),
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
        Some(_) => Err(wrong(name, "an integer")),
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
        Some(_) => Err(wrong(name, "a number")),
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
        Some(_) => Err(wrong(name, "a text list")),
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
