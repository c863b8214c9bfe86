//! Checking the caller's parameters against the plugin's description
//! before a run starts.

use std::collections::BTreeMap;

use crate::bindings::types::{Descriptor, ParamSpec, ParamType, ParamValue};

/// A parameter the caller gave that the plugin cannot take.
#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
pub enum ParamError {
    /// The plugin declares no parameter of that name.
    #[error("unknown parameter `{name}`; `{plugin}` accepts: {accepted}")]
    Unknown {
        /// The name given.
        name: String,
        /// The plugin.
        plugin: String,
        /// The names it accepts, comma-separated.
        accepted: String,
    },
    /// The value does not parse as the declared type.
    #[error("parameter `{name}` expects {expected}, got `{value}`")]
    WrongType {
        /// The parameter.
        name: String,
        /// The declared type, in words.
        expected: &'static str,
        /// The value given.
        value: String,
    },
    /// A required parameter was not given.
    #[error("parameter `{name}` is required")]
    Missing {
        /// The parameter.
        name: String,
    },
    /// A parameter required to remediate was not given.
    #[error("parameter `{name}` is required to remediate (a check runs without it)")]
    MissingToRemediate {
        /// The parameter.
        name: String,
    },
    /// A text value does not match the parameter's pattern.
    #[error("parameter `{name}` must match `{pattern}`, got `{value}`")]
    Pattern {
        /// The parameter.
        name: String,
        /// The pattern.
        pattern: String,
        /// The value given.
        value: String,
    },
}

/// The longest `param-spec.pattern`, in bytes.
pub const MAX_PATTERN_BYTES: usize = 256;

/// A parameter's pattern, anchored to match a whole value, within a size
/// bound a hostile pattern cannot blow up.
pub(crate) fn compile_pattern(pattern: &str) -> Result<regex::Regex, String> {
    if pattern.len() > MAX_PATTERN_BYTES {
        return Err(format!("longer than {MAX_PATTERN_BYTES} bytes"));
    }
    regex::RegexBuilder::new(&format!("^(?:{pattern})$"))
        .size_limit(1 << 20)
        .dfa_size_limit(1 << 20)
        .build()
        .map_err(|e| e.to_string())
}

/// Every value of a parameter with a pattern matches it.
fn check_patterns(
    descriptor: &Descriptor,
    values: &BTreeMap<String, ParamValue>,
) -> Result<(), ParamError> {
    for spec in &descriptor.params {
        let (Some(pattern), Some(value)) = (&spec.pattern, values.get(&spec.name)) else {
            continue;
        };
        // A descriptor with a bad pattern is refused at load; here it
        // matches nothing.
        let re = compile_pattern(pattern).ok();
        let texts: Vec<&str> = match value {
            ParamValue::Text(t) => vec![t.as_str()],
            ParamValue::TextList(l) => l.iter().map(String::as_str).collect(),
            _ => Vec::new(),
        };
        if let Some(bad) = texts
            .into_iter()
            .find(|t| !re.as_ref().is_some_and(|re| re.is_match(t)))
        {
            return Err(ParamError::Pattern {
                name: spec.name.clone(),
                pattern: pattern.clone(),
                value: bad.chars().take(128).collect(),
            });
        }
    }
    Ok(())
}

/// Refuses a remediation whose parameters lack one the plugin requires to
/// remediate (`param-spec.required-to-remediate`).
pub fn check_remediation(descriptor: &Descriptor, params: &Params) -> Result<(), ParamError> {
    match descriptor
        .params
        .iter()
        .find(|s| s.required_to_remediate && params.get(&s.name).is_none())
    {
        Some(spec) => Err(ParamError::MissingToRemediate {
            name: spec.name.clone(),
        }),
        None => Ok(()),
    }
}

fn type_words(t: ParamType) -> &'static str {
    match t {
        ParamType::Boolean => "a boolean (`true` or `false`)",
        ParamType::Integer => "an integer",
        ParamType::Float => "a number",
        ParamType::Text => "text",
        ParamType::TextList => "a comma-separated list",
    }
}

/// Parses one textual value (from the command line or a form) as `t`.
fn parse(t: ParamType, raw: &str) -> Option<ParamValue> {
    Some(match t {
        ParamType::Boolean => ParamValue::Boolean(raw.parse().ok()?),
        ParamType::Integer => ParamValue::Integer(raw.parse().ok()?),
        ParamType::Float => ParamValue::Float(raw.parse::<f64>().ok().filter(|f| f.is_finite())?),
        ParamType::Text => ParamValue::Text(raw.to_string()),
        ParamType::TextList => ParamValue::TextList(
            raw.split(',')
                .map(str::trim)
                .filter(|s| !s.is_empty())
                .map(str::to_string)
                .collect(),
        ),
    })
}

/// Parameters checked against a plugin's description, defaults filled in.
/// Only [`resolve_text_params`] makes one with values, so a run never sees
/// an unchecked parameter.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Params(BTreeMap<String, ParamValue>);

impl Params {
    /// The value of `name`.
    pub fn get(&self, name: &str) -> Option<&ParamValue> {
        self.0.get(name)
    }
}

/// Validates textual `key=value` parameters against `descriptor` and fills
/// in defaults.
pub fn resolve_text_params(
    descriptor: &Descriptor,
    given: &[(String, String)],
) -> Result<Params, ParamError> {
    let mut out = BTreeMap::new();
    for (name, raw) in given {
        let spec = spec(descriptor, name)?;
        let value = parse(spec.type_, raw).ok_or_else(|| ParamError::WrongType {
            name: name.clone(),
            expected: type_words(spec.type_),
            value: raw.clone(),
        })?;
        out.insert(name.clone(), value);
    }
    fill_defaults(descriptor, out).map(Params)
}

/// Validates parameters given as a JSON object (as playbooks store them)
/// against `descriptor` and fills in defaults. Values must have the
/// declared JSON type: booleans, integers, numbers, strings, arrays of
/// strings.
pub fn resolve_json_params(
    descriptor: &Descriptor,
    given: &serde_json::Value,
) -> Result<Params, ParamError> {
    let empty = serde_json::Map::new();
    let object = match given {
        serde_json::Value::Object(map) => map,
        serde_json::Value::Null => &empty,
        other => {
            return Err(ParamError::WrongType {
                name: "params".into(),
                expected: "a JSON object",
                value: other.to_string(),
            });
        }
    };
    let mut out = BTreeMap::new();
    for (name, raw) in object {
        let spec = spec(descriptor, name)?;
        let value = match (spec.type_, raw) {
            (ParamType::Boolean, serde_json::Value::Bool(b)) => Some(ParamValue::Boolean(*b)),
            (ParamType::Integer, serde_json::Value::Number(n)) => {
                n.as_i64().map(ParamValue::Integer)
            }
            (ParamType::Float, serde_json::Value::Number(n)) => n.as_f64().map(ParamValue::Float),
            (ParamType::Text, serde_json::Value::String(s)) => Some(ParamValue::Text(s.clone())),
            (ParamType::TextList, serde_json::Value::Array(items)) => items
                .iter()
                .map(|v| v.as_str().map(str::to_owned))
                .collect::<Option<Vec<_>>>()
                .map(ParamValue::TextList),
            _ => None,
        }
        .ok_or_else(|| ParamError::WrongType {
            name: name.clone(),
            expected: json_type_words(spec.type_),
            value: raw.to_string(),
        })?;
        out.insert(name.clone(), value);
    }
    fill_defaults(descriptor, out).map(Params)
}

fn json_type_words(t: ParamType) -> &'static str {
    match t {
        ParamType::Boolean => "a JSON boolean",
        ParamType::Integer => "a JSON integer",
        ParamType::Float => "a JSON number",
        ParamType::Text => "a JSON string",
        ParamType::TextList => "a JSON array of strings",
    }
}

/// The declaration of parameter `name`, or an error listing those the
/// plugin accepts.
fn spec<'a>(descriptor: &'a Descriptor, name: &str) -> Result<&'a ParamSpec, ParamError> {
    descriptor
        .params
        .iter()
        .find(|p| p.name == name)
        .ok_or_else(|| ParamError::Unknown {
            name: name.to_owned(),
            plugin: descriptor.name.clone(),
            accepted: accepted(descriptor),
        })
}

fn accepted(descriptor: &Descriptor) -> String {
    if descriptor.params.is_empty() {
        return "no parameters".to_string();
    }
    descriptor
        .params
        .iter()
        .map(|p| format!("`{}`", p.name))
        .collect::<Vec<_>>()
        .join(", ")
}

fn fill_defaults(
    descriptor: &Descriptor,
    mut values: BTreeMap<String, ParamValue>,
) -> Result<BTreeMap<String, ParamValue>, ParamError> {
    for spec in &descriptor.params {
        if values.contains_key(&spec.name) {
            continue;
        }
        match &spec.default {
            Some(default) => {
                values.insert(spec.name.clone(), default.clone());
            }
            None if spec.required => {
                return Err(ParamError::Missing {
                    name: spec.name.clone(),
                });
            }
            None => {}
        }
    }
    check_patterns(descriptor, &values)?;
    Ok(values)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bindings::types::{ParamSpec, PluginScope};

    fn descriptor() -> Descriptor {
        let spec = |name: &str, t, default, required| ParamSpec {
            name: name.into(),
            type_: t,
            description: String::new(),
            default,
            required,
            required_to_remediate: false,
            pattern: None,
        };
        Descriptor {
            name: "patching".into(),
            version: "1.0.0".into(),
            summary: String::new(),
            params: vec![
                spec(
                    "max-packages",
                    ParamType::Integer,
                    Some(ParamValue::Integer(50)),
                    false,
                ),
                spec("exclude", ParamType::TextList, None, false),
                spec("window", ParamType::Text, None, true),
            ],
            scope: PluginScope::Device,
        }
    }

    fn given(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn fills_defaults_and_parses_lists() {
        let v = resolve_text_params(
            &descriptor(),
            &given(&[("window", "sat"), ("exclude", "linux-*, grub*")]),
        )
        .unwrap();
        assert_eq!(v.get("max-packages"), Some(&ParamValue::Integer(50)));
        assert_eq!(
            v.get("exclude").unwrap(),
            &ParamValue::TextList(vec!["linux-*".into(), "grub*".into()])
        );
    }

    #[test]
    fn wrong_type_names_the_parameter_and_the_value() {
        let err = resolve_text_params(
            &descriptor(),
            &given(&[("window", "sat"), ("max-packages", "lots")]),
        )
        .unwrap_err();
        assert_eq!(
            err.to_string(),
            "parameter `max-packages` expects an integer, got `lots`"
        );
    }

    #[test]
    fn unknown_and_missing_parameters_are_refused() {
        let err = resolve_text_params(&descriptor(), &given(&[("window", "x"), ("colour", "red")]))
            .unwrap_err();
        assert!(
            err.to_string().contains("unknown parameter `colour`"),
            "{err}"
        );
        assert!(err.to_string().contains("`max-packages`"), "{err}");
        let err = resolve_text_params(&descriptor(), &[]).unwrap_err();
        assert_eq!(
            err,
            ParamError::Missing {
                name: "window".into()
            }
        );
    }
}
