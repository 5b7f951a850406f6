//! The one error shape of the API.
//!
//! Every failure, whether raised by a handler, an extractor or the router
//! itself (unknown route, wrong method, body too large), reaches the client
//! as `{"code", "message", "request_id", "field"}` with a stable `code`.
//! Handlers return [`ApiError`]; its response carries the payload as an
//! extension and [`render`] (a middleware that knows the request id) writes
//! the body. Internal causes are logged once, here, and never sent.

use axum::Json;
use axum::extract::Request;
use axum::http::{HeaderValue, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use bedside_records::RecordsError;
use serde::Serialize;

/// An API failure: a status, a stable code, words for people, and
/// optionally the input field at fault.
#[derive(Debug, Clone)]
pub struct ApiError {
    /// HTTP status.
    pub status: StatusCode,
    /// Stable machine-readable code.
    pub code: &'static str,
    /// Human-readable explanation, safe to show.
    pub message: String,
    /// The input field at fault.
    pub field: Option<String>,
    /// Seconds to wait, for 429 answers.
    pub retry_after: Option<u64>,
    /// Extra machine-readable facts merged into the body (e.g. `valid_from`).
    pub extra: Option<serde_json::Map<String, serde_json::Value>>,
}

/// The JSON body of every error.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct ErrorBody {
    /// Stable code, e.g. `validation_failed`.
    pub code: String,
    /// Human-readable explanation.
    pub message: String,
    /// The request id, also in the `x-request-id` header.
    pub request_id: String,
    /// The input field at fault, if any.
    pub field: Option<String>,
    /// Extra facts some errors carry, such as `valid_from` for a join link that is not open yet.
    #[serde(flatten, skip_serializing_if = "Option::is_none")]
    pub extra: Option<serde_json::Map<String, serde_json::Value>>,
}

impl ApiError {
    /// A new error.
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        Self {
            status,
            code,
            message: message.into(),
            field: None,
            retry_after: None,
            extra: None,
        }
    }
    /// 401: no valid credentials.
    pub fn unauthenticated() -> Self {
        Self::new(
            StatusCode::UNAUTHORIZED,
            "unauthenticated",
            "sign in to continue",
        )
    }
    /// 403: authenticated but not allowed.
    pub fn forbidden() -> Self {
        Self::new(
            StatusCode::FORBIDDEN,
            "forbidden",
            "you are not allowed to do this",
        )
    }
    /// 404 for a named thing.
    pub fn not_found(what: &str) -> Self {
        Self::new(
            StatusCode::NOT_FOUND,
            "not_found",
            format!("{what} not found"),
        )
    }
    /// 422 about one field.
    pub fn invalid(field: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            field: Some(field.into()),
            ..Self::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                "validation_failed",
                message,
            )
        }
    }
    /// 500; `cause` is logged, not sent.
    pub fn internal(cause: &(dyn std::error::Error + 'static)) -> Self {
        tracing::error!(error = %ErrorChain(cause), "request failed");
        Self::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal",
            "something went wrong on our side; it has been logged",
        )
    }
    /// Attaches the field at fault.
    pub fn with_field(mut self, field: impl Into<String>) -> Self {
        self.field = Some(field.into());
        self
    }
}

/// Displays an error with its sources, `a: b: c`.
struct ErrorChain<'a>(&'a (dyn std::error::Error + 'static));

impl std::fmt::Display for ErrorChain<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", self.0)?;
        let mut source = self.0.source();
        while let Some(s) = source {
            write!(f, ": {s}")?;
            source = s.source();
        }
        Ok(())
    }
}

impl From<RecordsError> for ApiError {
    fn from(error: RecordsError) -> Self {
        match error {
            RecordsError::NotFound(what) => ApiError::not_found(what),
            RecordsError::Invalid(invalid) => ApiError::invalid(
                invalid.field,
                format!("{}: {}", invalid.field, invalid.reason),
            ),
            RecordsError::Overlap => ApiError::new(
                StatusCode::CONFLICT,
                "appointment_overlap",
                "the clinician already has an appointment at that time",
            )
            .with_field("start"),
            RecordsError::AssignmentOverlap => ApiError::new(
                StatusCode::CONFLICT,
                "conflict",
                "the device is already assigned over that period",
            ),
            RecordsError::Transition(t) => {
                ApiError::new(StatusCode::CONFLICT, "invalid_transition", t.to_string())
                    .with_field("to")
            }
            RecordsError::NoteSigned => {
                ApiError::new(StatusCode::CONFLICT, "note_signed", error.to_string())
            }
            RecordsError::Duplicate { what, field } => ApiError::new(
                StatusCode::CONFLICT,
                "duplicate",
                format!("{what} already exists"),
            )
            .with_field(field),
            RecordsError::Erased => {
                ApiError::new(StatusCode::CONFLICT, "patient_erased", error.to_string())
            }
            RecordsError::VersionConflict { .. } => ApiError::new(
                StatusCode::PRECONDITION_FAILED,
                "version_conflict",
                error.to_string(),
            ),
            RecordsError::Database(ref cause) => {
                if is_unavailable(cause) {
                    tracing::error!(error = %ErrorChain(&error), "database unavailable");
                    ApiError::new(
                        StatusCode::SERVICE_UNAVAILABLE,
                        "unavailable",
                        "the service is temporarily unavailable; try again shortly",
                    )
                } else {
                    ApiError::internal(&error)
                }
            }
        }
    }
}

impl From<bedside_vitals_store::StoreError> for ApiError {
    fn from(error: bedside_vitals_store::StoreError) -> Self {
        match error {
            bedside_vitals_store::StoreError::Database(e) => RecordsError::Database(e).into(),
            other => ApiError::internal(&other),
        }
    }
}

fn is_unavailable(error: &sqlx::Error) -> bool {
    matches!(
        error,
        sqlx::Error::PoolTimedOut | sqlx::Error::PoolClosed | sqlx::Error::Io(_)
    )
}

/// The payload an error response carries until [`render`] writes it out.
#[derive(Clone)]
struct Pending {
    code: &'static str,
    message: String,
    field: Option<String>,
    extra: Option<serde_json::Map<String, serde_json::Value>>,
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut response = self.status.into_response();
        if let Some(secs) = self.retry_after {
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(secs));
        }
        response.extensions_mut().insert(Pending {
            code: self.code,
            message: self.message,
            field: self.field,
            extra: self.extra,
        });
        response
    }
}

/// Middleware: gives every error response the JSON error shape with the
/// request id, including errors the router produced on its own (unknown
/// route, wrong method) and plain-text rejections.
pub async fn render(request: Request, next: Next) -> Response {
    let request_id = request
        .headers()
        .get("x-request-id")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("-")
        .to_owned();
    let path = request.uri().path();
    let is_fhir = path == "/fhir" || path.starts_with("/fhir/");
    let is_api = path.starts_with("/api/") || is_fhir;
    let response = next.run(request).await;
    let status = response.status();
    let pending = response.extensions().get::<Pending>().cloned();
    let pending = match pending {
        Some(p) => p,
        None if is_api
            && (status.is_client_error() || status.is_server_error())
            && !is_json(&response) =>
        {
            generic(status)
        }
        None => return response,
    };
    let (mut parts, _) = response.into_parts();
    parts.headers.remove(header::CONTENT_LENGTH);
    parts.extensions.remove::<Pending>();
    if is_fhir {
        return operation_outcome(parts, &pending, &request_id);
    }
    let body = ErrorBody {
        code: pending.code.to_owned(),
        message: pending.message,
        request_id,
        field: pending.field,
        extra: pending.extra,
    };
    let mut rendered = (parts.status, Json(body)).into_response();
    for (name, value) in &parts.headers {
        if name != header::CONTENT_TYPE {
            rendered.headers_mut().insert(name.clone(), value.clone());
        }
    }
    rendered
}

/// The FHIR API's error shape: an OperationOutcome whose issue code is
/// FHIR's IssueType for our stable code, the request id as a second,
/// informational issue.
fn operation_outcome(
    parts: axum::http::response::Parts,
    pending: &Pending,
    request_id: &str,
) -> Response {
    let issue_type = match pending.code {
        "not_found" => "not-found",
        "unauthenticated" => "login",
        "forbidden" | "insufficient_scope" => "forbidden",
        "validation_failed" | "invalid_resource" => "invariant",
        "invalid_search" | "malformed_json" | "invalid_if_match" | "bad_request" => "invalid",
        "version_conflict"
        | "if_match_required"
        | "appointment_overlap"
        | "invalid_transition"
        | "conflict" => "conflict",
        "duplicate" => "duplicate",
        "rate_limited" => "throttled",
        "payload_too_large" => "too-long",
        "method_not_allowed" | "unsupported_media_type" | "not_acceptable" => "not-supported",
        "timeout" => "timeout",
        "unavailable" => "transient",
        "internal" => "exception",
        _ => "processing",
    };
    let severity = if parts.status.is_server_error() {
        "fatal"
    } else {
        "error"
    };
    let mut outcome = bedside_records::fhir::bundle::operation_outcome(
        severity,
        issue_type,
        &pending.message,
        pending.field.as_deref(),
    );
    // Bedside's stable code, for clients that branch on it.
    outcome["issue"][0]["details"] = serde_json::json!({ "text": pending.code });
    if let Some(issues) = outcome["issue"].as_array_mut() {
        issues.push(serde_json::json!({
            "severity": "information",
            "code": "informational",
            "diagnostics": format!("request id {request_id}")
        }));
    }
    let mut rendered = (parts.status, Json(outcome)).into_response();
    for (name, value) in &parts.headers {
        if name != header::CONTENT_TYPE {
            rendered.headers_mut().insert(name.clone(), value.clone());
        }
    }
    rendered.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/fhir+json; charset=utf-8"),
    );
    rendered
}

fn is_json(response: &Response) -> bool {
    response
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| {
            v.starts_with("application/json") || v.starts_with("application/fhir+json")
        })
}

fn generic(status: StatusCode) -> Pending {
    let (code, message) = match status {
        StatusCode::NOT_FOUND => ("not_found", "no such resource"),
        StatusCode::METHOD_NOT_ALLOWED => ("method_not_allowed", "this method is not allowed here"),
        StatusCode::PAYLOAD_TOO_LARGE => ("payload_too_large", "the request body is too large"),
        StatusCode::UNSUPPORTED_MEDIA_TYPE => (
            "unsupported_media_type",
            "send JSON with Content-Type: application/json",
        ),
        StatusCode::TOO_MANY_REQUESTS => ("rate_limited", "too many requests; slow down"),
        StatusCode::REQUEST_TIMEOUT => ("timeout", "the request took too long"),
        s if s.is_server_error() => (
            "internal",
            "something went wrong on our side; it has been logged",
        ),
        _ => ("bad_request", "the request is not valid"),
    };
    Pending {
        code,
        message: message.to_owned(),
        field: None,
        extra: None,
    }
}
