//! Request bodies: JSON read under a size limit and decoded with the path
//! of the offending field, so that a bad body gets a problem naming it.

use axum::extract::{FromRequest, Request};
use axum::http::{StatusCode, header};
use serde::de::DeserializeOwned;

use super::problem::ApiError;

/// Bodies larger than this are refused with 413, except plugin uploads.
pub const MAX_BODY: usize = 1024 * 1024;

/// Plugin uploads (base64 in JSON) may be this large.
pub const MAX_UPLOAD: usize = 64 * 1024 * 1024;

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
    let value: Result<T, _> = serde_path_to_error::deserialize(&mut *de);
    if value.is_ok() {
        de.end()
            .map_err(|e| malformed(format!("{e} (one JSON object per body)")))?;
    }
    let value = value.map_err(|e| {
        let path = e.path().to_string();
        let inner = e.into_inner();
        if !inner.is_data() {
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
        let de = serde_urlencoded::Deserializer::new(form_urlencoded::parse(query.as_bytes()));
        let value: Result<T, _> = serde_path_to_error::deserialize(de);
        value.map(Query).map_err(|e| {
            let path = e.path().to_string();
            let message = e.into_inner().to_string();
            let field = match message
                .strip_prefix("unknown field `")
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
