//! Errors as `application/problem+json` (RFC 9457): a stable `code` per
//! kind of error, the offending `field` for validation errors, 4xx for the
//! caller's mistakes and 5xx only for ours. A 5xx never shows SQL, file
//! paths or connection strings: the details go to the log.

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use utoipa::ToSchema;

use steward_control::plane::ControlError;
use steward_control::plugins::InstallError;
use steward_store::StoreError;

/// The body of every error response.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, serde::Deserialize, ToSchema)]
pub struct Problem {
    /// A URI naming the kind of problem.
    #[serde(rename = "type")]
    pub kind: String,
    /// The HTTP status's reason phrase.
    pub title: String,
    /// The HTTP status.
    pub status: u16,
    /// What went wrong, for a person.
    pub detail: String,
    /// Stable, for programs: `invalid`, `malformed-json`, `not-found`, …
    pub code: String,
    /// The offending field (`steps[0].plugin`), for validation errors.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub field: Option<String>,
}

/// An error a handler returns.
#[derive(Debug)]
pub struct ApiError {
    status: StatusCode,
    code: &'static str,
    detail: String,
    field: Option<String>,
}

/// A handler's result.
pub type ApiResult<T> = Result<T, ApiError>;

impl ApiError {
    /// An error with this status and code.
    pub fn new(status: StatusCode, code: &'static str, detail: impl Into<String>) -> Self {
        Self {
            status,
            code,
            detail: detail.into(),
            field: None,
        }
    }

    /// A validation error naming `field` (422).
    pub fn invalid(field: impl Into<String>, detail: impl Into<String>) -> Self {
        Self {
            field: Some(field.into()),
            ..Self::new(StatusCode::UNPROCESSABLE_ENTITY, "invalid", detail)
        }
    }

    /// No such object, or one the caller may not see (404: the two are
    /// indistinguishable on purpose).
    pub fn not_found(what: &str, id: &str) -> Self {
        Self::new(
            StatusCode::NOT_FOUND,
            "not-found",
            format!("no {what} `{id}`"),
        )
    }

    /// The caller's role does not allow this (403).
    pub fn forbidden(detail: impl Into<String>) -> Self {
        Self::new(StatusCode::FORBIDDEN, "forbidden", detail)
    }

    /// Ours: logged in full under a fresh error id, shown as a bare 500
    /// naming only that id, so an operator can find the log line.
    pub fn internal(err: &dyn std::error::Error) -> Self {
        let id = format!("{:016x}", rand::random::<u64>());
        tracing::error!(error_id = %id, error = %crate::chain(err), "request failed");
        Self::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal",
            format!("the server failed; its log has the details under error id {id}"),
        )
    }

    /// The store cannot be reached or cannot write just now: 503
    /// `unavailable` with `Retry-After`, quickly rather than after a long
    /// wait, and logged (as a warning: it is the database's state, not a
    /// bug of ours).
    pub fn unavailable(err: &dyn std::error::Error) -> Self {
        tracing::warn!(error = %crate::chain(err), "the store is unavailable");
        Self::new(
            StatusCode::SERVICE_UNAVAILABLE,
            steward_contract::codes::UNAVAILABLE,
            "the server's database cannot be reached or cannot write just now; \
             nothing was changed, try again shortly",
        )
    }

    /// The same error under another status and code.
    pub fn with_status(mut self, status: StatusCode, code: &'static str) -> Self {
        self.status = status;
        self.code = code;
        self
    }

    /// Adds the offending field.
    pub fn with_field(mut self, field: impl Into<String>) -> Self {
        self.field = Some(field.into());
        self
    }

    /// The status.
    pub fn status(&self) -> StatusCode {
        self.status
    }

    /// What went wrong, for a person.
    pub fn detail(&self) -> &str {
        &self.detail
    }

    fn problem(&self) -> Problem {
        Problem {
            kind: format!("https://steward.invalid/problems/{}", self.code),
            title: self.status.canonical_reason().unwrap_or("Error").to_owned(),
            status: self.status.as_u16(),
            detail: self.detail.clone(),
            code: self.code.to_owned(),
            field: self.field.clone(),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = serde_json::to_vec(&self.problem()).expect("a problem serialises");
        let mut response = (self.status, body).into_response();
        response.headers_mut().insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/problem+json"),
        );
        if self.status == StatusCode::SERVICE_UNAVAILABLE {
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from_static("5"));
        }
        response
    }
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> Self {
        if e.is_unavailable() {
            return ApiError::unavailable(&e);
        }
        match &e {
            StoreError::Invalid { field, .. } => ApiError::invalid(*field, e.to_string()),
            StoreError::UnknownTenant(_)
            | StoreError::UnknownSite(_)
            | StoreError::UnknownDevice(_)
            | StoreError::UnknownPlaybook(_)
            | StoreError::UnknownSchedule(_)
            | StoreError::UnknownRun(_) => {
                ApiError::new(StatusCode::NOT_FOUND, "not-found", e.to_string())
            }
            // Another tenant's object is answered exactly as a missing
            // one, never naming the tenant that owns it.
            StoreError::WrongTenant { what, .. } => ApiError::new(
                StatusCode::NOT_FOUND,
                "not-found",
                format!("unknown device `{what}`"),
            ),
            StoreError::AlreadyExists { .. } => {
                ApiError::new(StatusCode::CONFLICT, "already-exists", e.to_string())
            }
            StoreError::RunFinished(_) => {
                ApiError::new(StatusCode::CONFLICT, "run-finished", e.to_string())
            }
            StoreError::UnsupportedUrl(_)
            | StoreError::Open { .. }
            | StoreError::Migrate(_)
            | StoreError::Corrupt { .. }
            | StoreError::Database(_)
            | StoreError::Read(_) => ApiError::internal(&e),
        }
    }
}

impl From<InstallError> for ApiError {
    /// The caller's mistakes are 422 naming the field; the store's
    /// refusals keep their own status; the server's own failures (disk,
    /// database, compiling) are 500 without their text.
    fn from(e: InstallError) -> Self {
        match e {
            InstallError::Store(store) => store.into(),
            e @ InstallError::ReplacesRequired { .. } => ApiError::new(
                StatusCode::CONFLICT,
                steward_contract::codes::REPLACES_REQUIRED,
                e.to_string(),
            )
            .with_field("replaces"),
            e if e.is_internal() => ApiError::internal(&e),
            e => ApiError::invalid(e.field(), e.to_string()),
        }
    }
}

impl From<ControlError> for ApiError {
    fn from(e: ControlError) -> Self {
        match e {
            ControlError::Invalid { field, message } => {
                ApiError::invalid(field.clone(), format!("invalid `{field}`: {message}"))
            }
            ControlError::Store(e) => e.into(),
        }
    }
}
