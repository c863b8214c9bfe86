//! What a request carries, read into problem+json errors rather than the
//! framework's plain-text rejections: JSON bodies read under a size limit
//! and decoded with the path of the offending field, query strings and path
//! parameters naming the offending parameter.
//!
//! Control characters are refused here, at the one boundary every request
//! crosses, with a problem naming the field: none in a path parameter or a
//! query parameter, and none in a body's strings other than tab, line feed
//! and carriage return (free text such as a comment may have lines). No name
//! needs one, and PostgreSQL refuses a NUL in any text.

use axum::extract::{FromRequest, Request};
use axum::http::{StatusCode, header};
use serde::de::{DeserializeOwned, Error as _};

use super::problem::ApiError;

/// Bodies larger than this are refused with 413, except plugin uploads.
pub const MAX_BODY: usize = 1024 * 1024;

/// Plugin uploads (base64 in JSON) may be this large.
pub const MAX_UPLOAD: usize = steward_contract::MAX_API_UPLOAD;

/// A JSON body of at most [`MAX_BODY`] bytes.
#[derive(Debug)]
pub struct Json<T>(pub T);

/// A JSON body of at most [`MAX_UPLOAD`] bytes.
#[derive(Debug)]
pub struct Upload<T>(pub T);

/// A `text/csv` body of at most [`MAX_BODY`] bytes.
#[derive(Debug)]
pub struct Csv(pub String);

async fn bytes(req: Request, limit: usize) -> Result<axum::body::Bytes, ApiError> {
    axum::body::to_bytes(req.into_body(), limit)
        .await
        .map_err(|_| {
            ApiError::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                "body-too-large",
                format!("the body is larger than {limit} bytes"),
            )
        })
}

fn content_type_is(req: &Request, wanted: &str) -> bool {
    req.headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .is_some_and(|v| v.trim().eq_ignore_ascii_case(wanted))
}

/// Decodes exactly one JSON object, naming the offending field on a type
/// or value error. Anything after the object (`{…} xyz`, a second object)
/// and a body that is not an object (an array standing in for a struct's
/// fields) are refused.
pub fn decode<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, ApiError> {
    refuse_control_characters(bytes)?;
    let malformed = |why: String| {
        ApiError::new(
            StatusCode::BAD_REQUEST,
            "malformed-json",
            format!("the body is not valid JSON: {why}"),
        )
    };
    let first = bytes.iter().find(|b| !b.is_ascii_whitespace()).copied();
    if first != Some(b'{') {
        return Err(ApiError::invalid(
            "body",
            "the body must be one JSON object (`{…}`)",
        ));
    }
    let de = &mut serde_json::Deserializer::from_slice(bytes);
    let mut value: Result<T, _> = serde_path_to_error::deserialize(&mut *de);
    if value.is_ok() {
        de.end()
            .map_err(|e| malformed(format!("{e} (one JSON object per body)")))?;
    }
    // JSON does not tell `5` from `5.0`; serde does. A whole number
    // written with a fraction is taken where an integer is wanted.
    if let Err(e) = &value
        && e.inner()
            .to_string()
            .starts_with("invalid type: floating point")
        && let Ok(mut parsed) = serde_json::from_slice::<serde_json::Value>(bytes)
    {
        whole_floats_as_integers(&mut parsed);
        value = serde_path_to_error::deserialize(parsed).map_err(|e| {
            let path = e.path().clone();
            serde_path_to_error::Error::new(path, serde_json::Error::custom(e.into_inner()))
        });
    }
    let value = value.map_err(|e| {
        let path = e.path().to_string();
        let inner = e.into_inner();
        if !inner.is_data() {
            // serde_json reports a value of the wrong kind for an enum
            // (`"tier": 5`) as a syntax error; the body is valid JSON, so
            // it is the field's value at fault.
            if serde_json::from_slice::<serde::de::IgnoredAny>(bytes).is_ok() {
                let field = if path == "." { "body".to_owned() } else { path };
                return ApiError::invalid(
                    field.clone(),
                    format!("invalid `{field}`: not a value this field takes"),
                );
            }
            return ApiError::new(
                StatusCode::BAD_REQUEST,
                "malformed-json",
                format!("the body is not valid JSON: {inner}"),
            );
        }
        let message = inner.to_string();
        // serde reports an unknown field at its parent; name the field.
        // serde_path_to_error's path already ends at an unknown field; a
        // missing field is reported at its parent.
        let missing = message
            .strip_prefix("missing field `")
            .and_then(|m| m.split('`').next());
        let unknown = message
            .strip_prefix("unknown field `")
            .and_then(|m| m.split('`').next());
        let field = match (missing, unknown) {
            (Some(name), _) if path == "." => name.to_owned(),
            (Some(name), _) => format!("{path}.{name}"),
            (None, Some(name)) if path == "." => name.to_owned(),
            _ if path == "." => "body".to_owned(),
            _ => path,
        };
        let message = message
            .split(" at line ")
            .next()
            .unwrap_or(&message)
            .to_owned();
        ApiError::invalid(field.clone(), format!("invalid `{field}`: {message}"))
    })?;
    Ok(value)
}

/// Every whole number in `value` written with a fraction (`677.0`) as an
/// integer.
pub(crate) fn whole_floats_as_integers(value: &mut serde_json::Value) {
    use serde_json::Value;
    match value {
        Value::Number(n) if n.is_f64() => {
            let f = n.as_f64().expect("an f64");
            if f.fract() == 0.0 && f >= 0.0 && f < u64::MAX as f64 {
                *value = Value::from(f as u64);
            } else if f.fract() == 0.0 && f < 0.0 && f > i64::MIN as f64 {
                *value = Value::from(f as i64);
            }
        }
        Value::Array(items) => items.iter_mut().for_each(whole_floats_as_integers),
        Value::Object(map) => map.values_mut().for_each(whole_floats_as_integers),
        _ => {}
    }
}

/// Whether `c` is a control character no text of ours needs.
fn is_refused_control(c: char, allow_lines: bool) -> bool {
    c.is_control() && !(allow_lines && matches!(c, '\t' | '\n' | '\r'))
}

/// The refusal of a control character in `field`.
fn control_character(field: &str, c: char) -> ApiError {
    ApiError::invalid(
        field,
        format!(
            "`{field}` contains the control character U+{:04X}; no field takes one",
            u32::from(c)
        ),
    )
}

/// Refuses a JSON body with a control character (other than tab, line feed
/// and carriage return) in any string or key, naming where. The bytes are
/// scanned first, so a body with none (every body but a hostile one) is
/// not parsed twice: in valid JSON a control character can only be an
/// escape (`\u0000`, `\b`, `\f`) or a raw C1 character (U+0080–U+009F,
/// UTF-8 `C2 80`–`C2 9F`).
fn refuse_control_characters(bytes: &[u8]) -> Result<(), ApiError> {
    let suspicious = bytes.windows(2).any(|w| {
        (w[0] == b'\\' && matches!(w[1], b'u' | b'b' | b'f'))
            || (w[0] == 0xc2 && (0x80..=0x9f).contains(&w[1]))
    });
    if !suspicious {
        return Ok(());
    }
    // Not valid JSON: decoding reports that.
    let Ok(value) = serde_json::from_slice::<serde_json::Value>(bytes) else {
        return Ok(());
    };
    fn walk(value: &serde_json::Value, path: &mut String) -> Option<(String, char)> {
        let bad = |s: &str| s.chars().find(|&c| is_refused_control(c, true));
        match value {
            serde_json::Value::String(s) => bad(s).map(|c| (path.clone(), c)),
            serde_json::Value::Array(items) => items.iter().enumerate().find_map(|(i, v)| {
                let len = path.len();
                path.push_str(&format!("[{i}]"));
                let found = walk(v, path);
                path.truncate(len);
                found
            }),
            serde_json::Value::Object(map) => map.iter().find_map(|(k, v)| {
                let len = path.len();
                if !path.is_empty() {
                    path.push('.');
                }
                path.push_str(k);
                let found = bad(k).map(|c| (path.clone(), c)).or_else(|| walk(v, path));
                path.truncate(len);
                found
            }),
            _ => None,
        }
    }
    match walk(&value, &mut String::new()) {
        Some((field, c)) => Err(control_character(&crate::printable(&field, 128), c)),
        None => Ok(()),
    }
}

impl<S: Send + Sync, T: DeserializeOwned> FromRequest<S> for Json<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, _: &S) -> Result<Self, ApiError> {
        if !content_type_is(&req, "application/json") {
            return Err(unsupported("application/json"));
        }
        Ok(Json(decode(&bytes(req, MAX_BODY).await?)?))
    }
}

impl<S: Send + Sync, T: DeserializeOwned> FromRequest<S> for Upload<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, _: &S) -> Result<Self, ApiError> {
        if !content_type_is(&req, "application/json") {
            return Err(unsupported("application/json"));
        }
        Ok(Upload(decode(&bytes(req, MAX_UPLOAD).await?)?))
    }
}

impl<S: Send + Sync> FromRequest<S> for Csv {
    type Rejection = ApiError;

    async fn from_request(req: Request, _: &S) -> Result<Self, ApiError> {
        if !content_type_is(&req, "text/csv") {
            return Err(unsupported("text/csv"));
        }
        let bytes = bytes(req, MAX_BODY).await?;
        String::from_utf8(bytes.to_vec())
            .map(Csv)
            .map_err(|_| ApiError::invalid("body", "the CSV is not UTF-8"))
    }
}

fn unsupported(wanted: &str) -> ApiError {
    ApiError::new(
        StatusCode::UNSUPPORTED_MEDIA_TYPE,
        "unsupported-media-type",
        format!("send the body as `{wanted}`"),
    )
}

/// A query string, decoded with the offending parameter named on error.
#[derive(Debug)]
pub struct Query<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned> axum::extract::FromRequestParts<S> for Query<T> {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut axum::http::request::Parts,
        _: &S,
    ) -> Result<Self, ApiError> {
        let query = parts.uri.query().unwrap_or("");
        for (key, value) in form_urlencoded::parse(query.as_bytes()) {
            let refused = |s: &str| s.chars().find(|&c| is_refused_control(c, false));
            if let Some(c) = refused(&key).or_else(|| refused(&value)) {
                let key = crate::printable(&key, 128);
                return Err(control_character(&key, c)
                    .with_status(StatusCode::BAD_REQUEST, "invalid-query"));
            }
        }
        let de = serde_urlencoded::Deserializer::new(form_urlencoded::parse(query.as_bytes()));
        let value: Result<T, _> = serde_path_to_error::deserialize(de);
        value.map(Query).map_err(|e| {
            let path = e.path().to_string();
            let message = e.into_inner().to_string();
            let field = match message
                .strip_prefix("unknown field `")
                .or_else(|| message.strip_prefix("missing field `"))
                .and_then(|m| m.split('`').next())
            {
                Some(name) if path == "." => name.to_owned(),
                _ if path == "." => "query".to_owned(),
                _ => path,
            };
            ApiError::new(
                StatusCode::BAD_REQUEST,
                "invalid-query",
                format!("invalid query parameter `{field}`: {message}"),
            )
            .with_field(field)
        })
    }
}

/// Path parameters, decoded with the offending parameter named on error
/// (a problem, never the framework's plain-text 400), and refused when one
/// holds a control character.
#[derive(Debug)]
pub struct Path<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned + Send> axum::extract::FromRequestParts<S> for Path<T> {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut axum::http::request::Parts,
        state: &S,
    ) -> Result<Self, ApiError> {
        use axum::extract::path::ErrorKind;
        use axum::extract::rejection::{PathRejection, RawPathParamsRejection};
        let invalid = |key: &str, detail: String| {
            ApiError::new(StatusCode::BAD_REQUEST, "invalid-path", detail).with_field(key)
        };
        match axum::extract::RawPathParams::from_request_parts(parts, state).await {
            Ok(raw) => {
                for (key, value) in &raw {
                    if let Some(c) = value.chars().find(|&c| is_refused_control(c, false)) {
                        return Err(control_character(key, c)
                            .with_status(StatusCode::BAD_REQUEST, "invalid-path"));
                    }
                }
            }
            Err(RawPathParamsRejection::InvalidUtf8InPathParam(e)) => {
                // axum names the parameter only in its text: "Invalid UTF-8 in `id`".
                let text = e.body_text();
                let key = text.split('`').nth(1).unwrap_or("path");
                return Err(invalid(key, format!("path parameter `{key}` is not UTF-8")));
            }
            Err(e) => return Err(invalid("path", e.body_text())),
        }
        match axum::extract::Path::<T>::from_request_parts(parts, state).await {
            Ok(axum::extract::Path(value)) => Ok(Path(value)),
            Err(PathRejection::FailedToDeserializePathParams(e)) => {
                let key = match e.kind() {
                    ErrorKind::InvalidUtf8InPathParam { key }
                    | ErrorKind::ParseErrorAtKey { key, .. }
                    | ErrorKind::DeserializeError { key, .. } => key.clone(),
                    _ => "path".to_owned(),
                };
                Err(invalid(
                    &key,
                    format!("invalid path parameter `{key}`: {}", e.body_text()),
                ))
            }
            Err(e) => Err(invalid("path", e.body_text())),
        }
    }
}
