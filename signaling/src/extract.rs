//! Extractors that turn bad input into the API's error shape: malformed
//! JSON is a 400 `malformed_json`, a wrong type or missing field a 422
//! `validation_failed` naming the field, a body over the limit a 413, a
//! bad path id a 404. Never a 500 and never axum's plain-text rejections.

use axum::extract::rejection::BytesRejection;
use axum::extract::{ConnectInfo, FromRequest, FromRequestParts, MatchedPath, Request};
use axum::http::request::Parts;
use axum::http::{StatusCode, header};
use bytes::Bytes;
use serde::de::DeserializeOwned;
use std::net::SocketAddr;

use crate::error::ApiError;

/// A JSON body, parsed with errors that name the offending field.
pub struct ApiJson<T>(pub T);

impl<S, T> FromRequest<S> for ApiJson<T>
where
    S: Send + Sync,
    T: DeserializeOwned,
{
    type Rejection = ApiError;

    async fn from_request(request: Request, state: &S) -> Result<Self, Self::Rejection> {
        let is_json = request
            .headers()
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.split(';').next())
            .is_some_and(|v| v.trim().eq_ignore_ascii_case("application/json"));
        if !is_json {
            return Err(ApiError::new(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "unsupported_media_type",
                "send JSON with Content-Type: application/json",
            ));
        }
        let bytes =
            Bytes::from_request(request, state)
                .await
                .map_err(|rejection| match rejection {
                    BytesRejection::FailedToBufferBody(_)
                        if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE =>
                    {
                        ApiError::new(
                            StatusCode::PAYLOAD_TOO_LARGE,
                            "payload_too_large",
                            "the request body is too large",
                        )
                    }
                    other => ApiError::new(
                        other.status(),
                        "bad_request",
                        "the request body could not be read",
                    ),
                })?;
        parse_json(&bytes).map(ApiJson)
    }
}

/// Parses JSON bytes into `T` with the error mapping described above.
///
/// # Errors
/// `malformed_json` (400) for syntax errors and truncated input,
/// `validation_failed` (422) with the field for type and shape errors.
pub fn parse_json<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, ApiError> {
    // Syntax first, so a broken document is always `malformed_json` even when
    // its first values would also have had the wrong type.
    serde_json::from_slice::<serde::de::IgnoredAny>(bytes).map_err(|error| classify(error, "."))?;
    let mut de = serde_json::Deserializer::from_slice(bytes);
    let value: T = serde_path_to_error::deserialize(&mut de).map_err(|error| {
        let path = error.path().to_string();
        classify(error.into_inner(), &path)
    })?;
    // Trailing bytes after the document are malformed input too.
    de.end().map_err(|error| classify(error, "."))?;
    Ok(value)
}

fn classify(inner: serde_json::Error, path: &str) -> ApiError {
    match inner.classify() {
        serde_json::error::Category::Syntax
        | serde_json::error::Category::Eof
        | serde_json::error::Category::Io => ApiError::new(
            StatusCode::BAD_REQUEST,
            "malformed_json",
            format!("the body is not valid JSON ({})", position(&inner)),
        ),
        serde_json::error::Category::Data => {
            let text = inner.to_string();
            let field = missing_field(&text).map(str::to_owned).unwrap_or_else(|| {
                if path == "." {
                    String::from("body")
                } else {
                    path.to_owned()
                }
            });
            ApiError::invalid(field.clone(), format!("{field}: {}", strip_position(&text)))
        }
    }
}

fn position(error: &serde_json::Error) -> String {
    format!("line {} column {}", error.line(), error.column())
}

fn missing_field(message: &str) -> Option<&str> {
    message.strip_prefix("missing field `")?.split('`').next()
}

fn strip_position(message: &str) -> &str {
    message.split(" at line ").next().unwrap_or(message)
}

/// A path parameter; a value that does not parse (e.g. not a UUID) is a 404,
/// since no such resource can exist.
pub struct ApiPath<T>(pub T);

impl<S, T> FromRequestParts<S> for ApiPath<T>
where
    S: Send + Sync,
    T: DeserializeOwned + Send,
{
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        axum::extract::Path::<T>::from_request_parts(parts, state)
            .await
            .map(|axum::extract::Path(value)| ApiPath(value))
            .map_err(|_| ApiError::not_found("resource"))
    }
}

/// Query parameters; a malformed one is a 422 naming it.
pub struct ApiQuery<T>(pub T);

impl<S, T> FromRequestParts<S> for ApiQuery<T>
where
    S: Send + Sync,
    T: DeserializeOwned + Send,
{
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        let query = parts.uri.query().unwrap_or("");
        let de = serde_urlencoded::Deserializer::new(form_urlencoded::parse(query.as_bytes()));
        serde_path_to_error::deserialize(de)
            .map(ApiQuery)
            .map_err(|error| {
                let field = error.path().to_string();
                let message = error.into_inner().to_string();
                let field = missing_field(&message).map(str::to_owned).unwrap_or(field);
                ApiError::invalid(field.clone(), format!("{field}: {message}"))
            })
    }
}

/// Parses an optional query parameter that arrives as text (ids, times),
/// treating an empty value as absent.
///
/// # Errors
/// `validation_failed` naming `field` when the value does not parse.
pub fn optional_param<T: std::str::FromStr>(
    field: &'static str,
    raw: Option<&str>,
    expected: &str,
) -> Result<Option<T>, ApiError> {
    raw.map(str::trim)
        .filter(|s| !s.is_empty())
        .map(|s| {
            s.parse::<T>()
                .map_err(|_| ApiError::invalid(field, format!("{field}: must be {expected}")))
        })
        .transpose()
}

/// Facts about the request every audit row and log line needs.
#[derive(Debug, Clone)]
pub struct RequestMeta {
    /// The request id (from `x-request-id`, set by the request-id layer).
    pub request_id: String,
    /// The client's IP address, or `unknown` when the server did not record it.
    pub client_addr: String,
    /// `METHOD /route/{template}`: a label with no ids in it.
    pub route: String,
    /// The request path without its query: ids only, no names.
    pub path: String,
}

impl<S: Send + Sync> FromRequestParts<S> for RequestMeta {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        Ok(RequestMeta::from_parts(parts))
    }
}

/// Route templates whose paths carry a secret.
const SECRET_PATHS: &[&str] = &["/calendar/{file}"];

impl RequestMeta {
    /// Reads the meta data from request parts.
    pub fn from_parts(parts: &Parts) -> Self {
        let request_id = parts
            .headers
            .get("x-request-id")
            .and_then(|v| v.to_str().ok())
            .unwrap_or("-")
            .to_owned();
        let client_addr = client_addr(parts);
        let template = parts
            .extensions
            .get::<MatchedPath>()
            .map(|p| p.as_str().to_owned())
            .unwrap_or_else(|| "unmatched".to_owned());
        // A path that is itself a credential (a calendar feed's secret) is
        // recorded as its template: audit rows must not hold live secrets.
        let secret_path = SECRET_PATHS.contains(&template.as_str());
        Self {
            request_id,
            client_addr,
            route: format!("{} {}", parts.method, template),
            // Nested routers (`/fhir`) see their path without the prefix;
            // the audit row wants the path the client asked for.
            path: if secret_path {
                template.clone()
            } else {
                parts
                    .extensions
                    .get::<axum::extract::OriginalUri>()
                    .map_or(&parts.uri, |original| &original.0)
                    .path()
                    .chars()
                    .take(512)
                    .collect()
            },
        }
    }

    /// Whether the request is for the FHIR API (the only place a token
    /// with SMART scopes reaches).
    pub fn is_fhir(&self) -> bool {
        let template = self.route.split_once(' ').map_or("", |(_, t)| t);
        template == "/fhir" || template.starts_with("/fhir/")
    }
}

/// The client address as the socket saw it. Behind a reverse proxy this is
/// the proxy; trusting `X-Forwarded-For` needs a configured proxy list,
/// which a later issue adds with multi-node deployments.
pub fn client_addr(parts: &Parts) -> String {
    parts
        .extensions
        .get::<ConnectInfo<SocketAddr>>()
        .map(|ConnectInfo(addr)| addr.ip().to_string())
        .unwrap_or_else(|| "unknown".to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde::Deserialize;

    #[derive(Debug, Deserialize)]
    #[allow(dead_code)]
    struct Body {
        name: String,
        age: i64,
        nested: Option<Inner>,
    }

    #[derive(Debug, Deserialize)]
    #[allow(dead_code)]
    struct Inner {
        when: String,
    }

    #[test]
    fn malformed_json_is_a_400() {
        for bad in [
            "",
            "{",
            "{\"name\": }",
            "nul",
            "{\"name\":\"a\",\"age\":1} trailing",
            "\u{0}",
        ] {
            let err = parse_json::<Body>(bad.as_bytes()).unwrap_err();
            assert_eq!(err.status, StatusCode::BAD_REQUEST, "{bad:?}");
            assert_eq!(err.code, "malformed_json");
        }
    }

    #[test]
    fn wrong_types_and_missing_fields_name_the_field() {
        let err = parse_json::<Body>(br#"{"name": 5, "age": 1}"#).unwrap_err();
        assert_eq!(
            (err.status, err.code, err.field.as_deref()),
            (
                StatusCode::UNPROCESSABLE_ENTITY,
                "validation_failed",
                Some("name")
            )
        );
        let err = parse_json::<Body>(br#"{"name": "a"}"#).unwrap_err();
        assert_eq!(err.field.as_deref(), Some("age"));
        let err =
            parse_json::<Body>(br#"{"name": "a", "age": 1, "nested": {"when": []}}"#).unwrap_err();
        assert_eq!(err.field.as_deref(), Some("nested.when"));
        let err = parse_json::<Body>(br#"[1,2]"#).unwrap_err();
        assert_eq!(err.code, "validation_failed");
    }
}
