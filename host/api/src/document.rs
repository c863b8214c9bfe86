//! The OpenAPI document completed with what every handler shares, so it
//! states what the server does rather than what each `#[utoipa::path]`
//! happened to list.
//!
//! The extractors every handler goes through decide most error answers,
//! so they are documented from the operation's shape, in one place:
//!
//! - every error is `application/problem+json` with the [`Problem`]
//!   schema (utoipa writes `application/json`);
//! - an operation with a token ([`Caller`]) may answer 401 (no or a bad
//!   token), 403 (the role does not allow it), 404 (an object the caller
//!   does not see) and 503 (the store is unavailable);
//! - one with parameters or a body may answer 400 (a bad parameter,
//!   malformed JSON); one with a body 413 (too large), 415 (not JSON) and
//!   422 (a field at fault);
//! - integers read as `u32` are documented with their real bounds (utoipa
//!   writes `int32`, whose range is half of it);
//! - every `name` of a request body follows the store's rule for names
//!   (`name_field`: not blank, at most 256 characters, no control
//!   character), every `tags` entry the tag rule ([`crate::check_tags`]).
//!
//! [`Problem`]: crate::problem::Problem
//! [`Caller`]: crate::auth::Caller

use serde_json::{Map, Value, json};
use utoipa::openapi::OpenApi;

const PROBLEM: &str = "#/components/schemas/Problem";
const PROBLEM_TYPE: &str = "application/problem+json";

/// The longest name in characters (`steward_store::MAX_NAME_CHARS`).
const MAX_NAME_CHARS: usize = 256;

/// A path or query parameter: no control character (C0, DEL, C1).
const PARAMETER_PATTERN: &str = r"^[^\x00-\x1f\x7f-\x9f]*$";

/// A string of a request body: no control character but tab, line feed
/// and carriage return (`body::decode`).
const BODY_TEXT_PATTERN: &str = r"^[^\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f]*$";

/// A name: not blank, no control character (C0, DEL, C1).
const NAME_PATTERN: &str = r"^[^\x00-\x1f\x7f-\x9f]*[^\s\x00-\x1f\x7f-\x9f][^\x00-\x1f\x7f-\x9f]*$";

/// `doc` as served: JSON with the shared answers and constraints added
/// (see the module doc).
pub(crate) fn complete(doc: &OpenApi) -> String {
    let mut value = serde_json::to_value(doc).expect("the OpenAPI document serialises");
    complete_value(&mut value);
    value.to_string()
}

fn complete_value(doc: &mut Value) {
    let global_security = doc.get("security").cloned();
    let schemas = doc
        .pointer("/components/schemas")
        .and_then(Value::as_object)
        .cloned()
        .unwrap_or_default();
    if let Some(paths) = doc.get_mut("paths").and_then(Value::as_object_mut) {
        for item in paths.values_mut() {
            let Some(item) = item.as_object_mut() else {
                continue;
            };
            for (method, op) in item.iter_mut() {
                if matches!(method.as_str(), "get" | "post" | "put" | "patch" | "delete") {
                    complete_operation(op, global_security.as_ref(), &schemas);
                }
            }
        }
    }
    // The schemas a request body reaches: their strings refuse control
    // characters as `body::decode` does (ids, which never hold one, all).
    let mut reached: Vec<String> = Vec::new();
    if let Some(paths) = doc.get("paths") {
        collect_refs(&collect_bodies(paths), &mut reached);
    }
    loop {
        let before = reached.len();
        for name in reached.clone() {
            if let Some(schema) = schemas.get(&name) {
                collect_refs(schema, &mut reached);
            }
        }
        if reached.len() == before {
            break;
        }
    }
    if let Some(all) = doc
        .pointer_mut("/components/schemas")
        .and_then(Value::as_object_mut)
    {
        for (name, schema) in all.iter_mut() {
            walk_schema(schema);
            if reached.contains(name) {
                let pattern = if name.ends_with("Id") {
                    PARAMETER_PATTERN
                } else {
                    BODY_TEXT_PATTERN
                };
                refuse_controls_in_body(schema, pattern);
            }
        }
    }
    if let Some(paths) = doc.get_mut("paths").and_then(Value::as_object_mut) {
        for item in paths.values_mut().filter_map(Value::as_object_mut) {
            for op in item.values_mut() {
                if let Some(schema) =
                    op.pointer_mut("/requestBody/content/application~1json/schema")
                {
                    refuse_controls_in_body(schema, BODY_TEXT_PATTERN);
                }
            }
        }
    }
}

/// The request body schemas of every operation.
fn collect_bodies(paths: &Value) -> Value {
    let mut out = Vec::new();
    for item in paths.as_object().into_iter().flat_map(|m| m.values()) {
        for op in item.as_object().into_iter().flat_map(|m| m.values()) {
            if let Some(schema) = op.pointer("/requestBody/content/application~1json/schema") {
                out.push(schema.clone());
            }
        }
    }
    Value::Array(out)
}

/// The component names `value` refers to, added to `out`.
fn collect_refs(value: &Value, out: &mut Vec<String>) {
    match value {
        Value::Object(map) => {
            if let Some(name) = map
                .get("$ref")
                .and_then(Value::as_str)
                .and_then(|r| r.strip_prefix("#/components/schemas/"))
                && !out.iter().any(|n| n == name)
            {
                out.push(name.to_owned());
            }
            map.values().for_each(|v| collect_refs(v, out));
        }
        Value::Array(items) => items.iter().for_each(|v| collect_refs(v, out)),
        _ => {}
    }
}

/// `pattern` on every string of `schema` that has no pattern, format or
/// enum of its own, and on the keys of free-form objects.
fn refuse_controls_in_body(schema: &mut Value, pattern: &str) {
    match schema {
        Value::Object(map) => {
            let is_string = match map.get("type") {
                Some(Value::String(t)) => t == "string",
                Some(Value::Array(ts)) => ts.iter().any(|t| t == "string"),
                _ => false,
            };
            if is_string
                && !map.contains_key("pattern")
                && !map.contains_key("format")
                && !map.contains_key("enum")
            {
                map.insert("pattern".into(), json!(pattern));
            }
            let free_object =
                map.get("type") == Some(&json!("object")) && !map.contains_key("properties");
            if free_object {
                map.entry("propertyNames")
                    .or_insert(json!({ "pattern": BODY_TEXT_PATTERN }));
            }
            for (key, v) in map.iter_mut() {
                // Not into names of properties (keys of `properties`).
                if key == "properties" {
                    if let Some(props) = v.as_object_mut() {
                        props
                            .values_mut()
                            .for_each(|p| refuse_controls_in_body(p, pattern));
                    }
                } else if key != "propertyNames" {
                    refuse_controls_in_body(v, pattern);
                }
            }
        }
        Value::Array(items) => items
            .iter_mut()
            .for_each(|v| refuse_controls_in_body(v, pattern)),
        _ => {}
    }
}

fn problem_response(description: &str) -> Value {
    json!({
        "description": description,
        "content": { PROBLEM_TYPE: { "schema": { "$ref": PROBLEM } } }
    })
}

/// A string parameter's schema with [`PARAMETER_PATTERN`] (`body::Path`
/// and `body::Query` refuse control characters). A parameter of an id
/// type (`$ref` to a string schema, maybe optional) becomes a plain
/// string with the pattern: a query string has no null.
fn refuse_controls_in_parameter(schema: &mut Value, schemas: &Map<String, Value>) {
    let is_string_schema = |v: &Value| {
        v.get("$ref")
            .and_then(Value::as_str)
            .and_then(|r| r.strip_prefix("#/components/schemas/"))
            .and_then(|name| schemas.get(name))
            .is_some_and(|s| s.get("type") == Some(&json!("string")) && s.get("enum").is_none())
    };
    let string_ref = is_string_schema(schema)
        || schema
            .get("oneOf")
            .and_then(Value::as_array)
            .is_some_and(|alts| {
                alts.iter().any(is_string_schema)
                    && alts
                        .iter()
                        .all(|a| is_string_schema(a) || a.get("type") == Some(&json!("null")))
            });
    if string_ref {
        *schema = json!({ "type": "string", "pattern": PARAMETER_PATTERN });
        return;
    }
    let is_string = match schema.get("type") {
        Some(Value::String(t)) => t == "string",
        Some(Value::Array(ts)) => ts.iter().any(|t| t == "string"),
        _ => false,
    };
    let Some(map) = schema.as_object_mut() else {
        return;
    };
    if is_string && !map.contains_key("format") && !map.contains_key("enum") {
        map.entry("pattern").or_insert(json!(PARAMETER_PATTERN));
    }
}

fn complete_operation(
    op: &mut Value,
    global_security: Option<&Value>,
    schemas: &Map<String, Value>,
) {
    let Some(op) = op.as_object_mut() else {
        return;
    };
    let secured = match op.get("security") {
        // `security(())` writes `[{}]`: no token.
        Some(Value::Array(reqs)) => reqs
            .iter()
            .any(|r| r.as_object().is_some_and(|o| !o.is_empty())),
        Some(_) => true,
        None => global_security.is_some(),
    };
    let has_params = op
        .get("parameters")
        .and_then(Value::as_array)
        .is_some_and(|p| !p.is_empty());
    let has_body = op.get("requestBody").is_some();
    if let Some(params) = op.get_mut("parameters").and_then(Value::as_array_mut) {
        for param in params {
            if let Some(schema) = param.get_mut("schema") {
                walk_schema(schema);
                refuse_controls_in_parameter(schema, schemas);
            }
        }
    }
    let responses = op
        .entry("responses")
        .or_insert_with(|| Value::Object(Map::new()))
        .as_object_mut()
        .expect("responses is an object");
    // Problems are served as problem+json.
    for response in responses.values_mut() {
        let Some(content) = response.get_mut("content").and_then(Value::as_object_mut) else {
            continue;
        };
        let is_problem = content
            .get("application/json")
            .and_then(|c| c.pointer("/schema/$ref"))
            .and_then(Value::as_str)
            == Some(PROBLEM);
        if is_problem {
            let body = content.remove("application/json").expect("present");
            content.insert(PROBLEM_TYPE.to_owned(), body);
        }
    }
    let mut add = |status: &str, description: &str| {
        responses
            .entry(status.to_owned())
            .or_insert_with(|| problem_response(description));
    };
    if has_params || has_body {
        add("400", "A parameter or the body is malformed");
        add(
            "422",
            "A parameter or field is invalid (the problem names it)",
        );
    }
    if has_body {
        add("413", "The body is too large");
        add("415", "The body is not of the documented type");
    }
    if secured {
        add("401", "No token, or an unknown or revoked one");
        add("403", "The caller's role does not allow this");
        add("404", "An object named is missing or not the caller's");
        add(
            "503",
            "The store cannot be reached or cannot write just now",
        );
    }
}

/// Integer bounds of `u32` and the name rule, in a schema and all it
/// holds.
fn walk_schema(schema: &mut Value) {
    match schema {
        Value::Object(map) => {
            let is_u32 = map.get("format").and_then(Value::as_str) == Some("int32")
                && map.get("minimum").and_then(Value::as_f64) == Some(0.0);
            if is_u32 {
                map.insert("format".into(), json!("int64"));
                map.entry("maximum").or_insert(json!(u32::MAX));
            }
            if let Some(Value::Object(props)) = map.get_mut("properties")
                && let Some(Value::Object(name)) = props.get_mut("name")
                && name.get("type").and_then(Value::as_str) == Some("string")
            {
                name.entry("minLength").or_insert(json!(1));
                name.entry("maxLength").or_insert(json!(MAX_NAME_CHARS));
                name.entry("pattern").or_insert(json!(NAME_PATTERN));
            }
            if let Some(Value::Object(props)) = map.get_mut("properties")
                && let Some(Value::Object(items)) =
                    props.get_mut("tags").and_then(|t| t.get_mut("items"))
                && items.get("type").and_then(Value::as_str) == Some("string")
            {
                items.entry("minLength").or_insert(json!(1));
                items
                    .entry("maxLength")
                    .or_insert(json!(crate::MAX_TAG_CHARS));
                items.entry("pattern").or_insert(json!(NAME_PATTERN));
            }
            for v in map.values_mut() {
                walk_schema(v);
            }
        }
        Value::Array(items) => items.iter_mut().for_each(walk_schema),
        _ => {}
    }
}
