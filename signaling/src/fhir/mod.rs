//! The HL7 FHIR R4 API under `/fhir`.
//!
//! The resources, search parsing and Bundles are pure functions in
//! `bedside_records::fhir`; this module fetches rows, decides access and
//! writes HTTP. Every handler goes through [`reach`]: a token's SMART
//! scopes first ([`crate::auth::scopes`]), then the same policy rule and
//! audit row as the REST route over the same data.
//!
//! ## Conventions
//! - JSON only: `Accept` and `_format` must allow `application/fhir+json`
//!   (or plain JSON), bodies must be JSON; otherwise 406 or 415.
//! - Errors are OperationOutcomes ([`crate::error::render`] writes them for
//!   every `/fhir` path), with the element or parameter at fault as
//!   `expression`.
//! - Search parameters the server does not know are ignored (and left out
//!   of the `self` link) unless the client sends `Prefer: handling=strict`.
//! - Updates need `If-Match` with the current version (428 without, 412
//!   on a stale one); `ETag` and `Last-Modified` answer every read.

mod appointments;
mod observations;
mod others;
mod patients;
pub(crate) mod record;

use axum::Router;
use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use bedside_records::fhir::capability::SUPPORTED;
use bedside_records::fhir::search::{Query, SearchError};
use bedside_records::fhir::{FHIR_JSON, FhirBase, etag, if_match_version};
use bedside_records::ids::{PatientId, PractitionerId};
use serde_json::Value;

use crate::app::AppState;
use crate::auth::Caller;
use crate::auth::scopes::{Grant, Need};
use crate::error::ApiError;
use crate::policy::{Access, Ctx};
use bedside_records::domain::StaffRole;

/// The `/fhir` routes (nested by [`crate::router`]).
pub(crate) fn router() -> Router<AppState> {
    Router::new()
        .route("/metadata", get(metadata))
        .route("/Patient", get(patients::search).post(patients::create))
        .route("/Patient/{id}", get(patients::read).put(patients::update))
        .route("/Patient/{id}/$everything", get(patients::everything))
        .route("/Patient/{id}/_history/{version}", get(patients::vread))
        .route("/Observation", get(observations::search))
        .route("/Observation/$lastn", get(observations::last_n))
        .route("/Observation/{id}", get(observations::read))
        .route(
            "/Appointment",
            get(appointments::search).post(appointments::create),
        )
        .route(
            "/Appointment/{id}",
            get(appointments::read).put(appointments::update),
        )
        .route(
            "/Appointment/{id}/_history/{version}",
            get(appointments::vread),
        )
        .route("/Encounter", get(appointments::search_encounters))
        .route("/Encounter/{id}", get(appointments::read_encounter))
        .route("/Practitioner", get(others::search_practitioners))
        .route("/Practitioner/{id}", get(others::read_practitioner))
        .route("/Device", get(others::search_devices))
        .route("/Device/{id}", get(others::read_device))
        .route("/Consent", get(others::search_consents))
        .route("/Consent/{id}", get(others::read_consent))
        .route("/AuditEvent", get(others::search_audit_events))
        .route("/AuditEvent/{id}", get(others::read_audit_event))
        .route("/Flag", get(others::search_flags))
        .route("/Flag/{id}", get(others::read_flag))
        .layer(axum::middleware::from_fn(negotiate))
}

/// `GET /fhir/metadata`: the CapabilityStatement (no sign-in needed, as
/// clients read it before they have a token).
async fn metadata(State(state): State<AppState>) -> Response {
    let statement = bedside_records::fhir::capability::capability_statement(
        &base(&state),
        env!("CARGO_PKG_VERSION"),
        chrono::Utc::now(),
    );
    Fhir::ok(statement).into_response()
}

/// Where this server's resources live.
pub(crate) fn base(state: &AppState) -> FhirBase {
    let root = state.settings().public_base_url.trim_end_matches('/');
    FhirBase {
        url: format!("{root}/fhir"),
        mrn_system: state.settings().mrn_system.clone(),
    }
}

/// A FHIR JSON response.
pub(crate) struct Fhir {
    status: StatusCode,
    body: Value,
    headers: HeaderMap,
}

impl Fhir {
    /// 200 with `body`.
    pub(crate) fn ok(body: Value) -> Self {
        Self {
            status: StatusCode::OK,
            body,
            headers: HeaderMap::new(),
        }
    }

    /// A versioned resource: `ETag` and `Last-Modified` from its `meta`.
    pub(crate) fn versioned(status: StatusCode, body: Value) -> Self {
        let mut response = Self {
            status,
            body,
            headers: HeaderMap::new(),
        };
        if let Some(version) = response.body["meta"]["versionId"]
            .as_str()
            .and_then(|v| v.parse::<i64>().ok())
            && let Ok(value) = HeaderValue::from_str(&etag(version))
        {
            response.headers.insert(header::ETAG, value);
        }
        if let Some(modified) = response.body["meta"]["lastUpdated"]
            .as_str()
            .and_then(|t| chrono::DateTime::parse_from_rfc3339(t).ok())
            && let Ok(value) = HeaderValue::from_str(
                &modified
                    .with_timezone(&chrono::Utc)
                    .format("%a, %d %b %Y %H:%M:%S GMT")
                    .to_string(),
            )
        {
            response.headers.insert(header::LAST_MODIFIED, value);
        }
        response
    }
}

/// `vread`: the resource if `version` is its current one (Bedside keeps no
/// history), 404 otherwise.
pub(crate) fn current_version(resource: Fhir, version: &str) -> Result<Fhir, ApiError> {
    if resource.body["meta"]["versionId"].as_str() == Some(version) {
        Ok(resource)
    } else {
        Err(ApiError::new(
            StatusCode::NOT_FOUND,
            "not_found",
            "no such version: Bedside keeps the current version only",
        ))
    }
}

impl Fhir {
    /// Adds `Location` (after a create).
    pub(crate) fn with_location(mut self, url: &str) -> Self {
        if let Ok(value) = HeaderValue::from_str(url) {
            self.headers.insert(header::LOCATION, value);
        }
        self
    }
}

impl IntoResponse for Fhir {
    fn into_response(self) -> Response {
        let body = serde_json::to_vec(&self.body).unwrap_or_default();
        let mut response = (self.status, Body::from(body)).into_response();
        response.headers_mut().insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/fhir+json; charset=utf-8"),
        );
        response.headers_mut().extend(self.headers);
        response
    }
}

/// Middleware: JSON in and out, or a clear refusal.
async fn negotiate(request: Request, next: Next) -> Response {
    let accept = request
        .headers()
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("*/*");
    let format = request.uri().query().and_then(|q| {
        form_urlencoded::parse(q.as_bytes())
            .find(|(name, _)| name == "_format")
            .map(|(_, value)| value.into_owned())
    });
    let wants_json = |media: &str| {
        media.split(',').any(|part| {
            let media = part.split(';').next().unwrap_or("").trim();
            matches!(
                media,
                "*/*" | "application/*" | "application/json" | "application/fhir+json" | "json"
            ) || media == FHIR_JSON
        })
    };
    if !wants_json(accept) || format.as_deref().is_some_and(|f| !wants_json(f)) {
        return ApiError::new(
            StatusCode::NOT_ACCEPTABLE,
            "not_acceptable",
            "this server speaks FHIR JSON only: accept application/fhir+json",
        )
        .into_response();
    }
    if matches!(*request.method(), http::Method::POST | http::Method::PUT) {
        let content_type = request
            .headers()
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("");
        let media = content_type.split(';').next().unwrap_or("").trim();
        if media != FHIR_JSON && media != "application/json" {
            return ApiError::new(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "unsupported_media_type",
                "send the resource as application/fhir+json",
            )
            .into_response();
        }
    }
    next.run(request).await
}

/// Parses a JSON body sent to a FHIR route.
pub(crate) fn json_body(bytes: &[u8]) -> Result<Value, ApiError> {
    serde_json::from_slice(bytes).map_err(|error| {
        ApiError::new(
            StatusCode::BAD_REQUEST,
            "malformed_json",
            format!("the body is not valid JSON: {error}"),
        )
    })
}

/// A search parameter error: 400 naming the parameter.
pub(crate) fn bad_search(error: SearchError) -> ApiError {
    ApiError::new(
        StatusCode::BAD_REQUEST,
        "invalid_search",
        format!("{}: {}", error.param, error.reason),
    )
    .with_field(error.param)
}

/// A resource the client sent that does not hold: 422 naming the element.
pub(crate) fn bad_resource(error: bedside_records::fhir::input::InputError) -> ApiError {
    ApiError::new(
        StatusCode::UNPROCESSABLE_ENTITY,
        "invalid_resource",
        format!("{}: {}", error.expression, error.reason),
    )
    .with_field(error.expression)
}

/// The version an update's `If-Match` names.
///
/// # Errors
/// 428 without one, 400 for a malformed one.
pub(crate) fn required_version(headers: &HeaderMap) -> Result<i64, ApiError> {
    let Some(raw) = headers.get(header::IF_MATCH) else {
        return Err(ApiError::new(
            StatusCode::PRECONDITION_REQUIRED,
            "if_match_required",
            "an update needs If-Match with the version read (its ETag, e.g. W/\"3\")",
        ));
    };
    raw.to_str().ok().and_then(if_match_version).ok_or_else(|| {
        ApiError::new(
            StatusCode::BAD_REQUEST,
            "invalid_if_match",
            "If-Match must be an ETag such as W/\"3\"",
        )
    })
}

/// A search's query, checked against the parameters its resource type
/// supports: unknown ones are dropped, or refused under
/// `Prefer: handling=strict`.
pub(crate) fn search_query(
    resource_type: &str,
    raw: Option<&str>,
    headers: &HeaderMap,
    extra_known: &[&str],
) -> Result<Query, ApiError> {
    let pairs: Vec<(String, String)> = form_urlencoded::parse(raw.unwrap_or("").as_bytes())
        .map(|(n, v)| (n.into_owned(), v.into_owned()))
        .collect();
    let mut known: Vec<String> = SUPPORTED
        .iter()
        .find(|r| r.resource_type == resource_type)
        .map(|r| {
            r.search
                .iter()
                .map(|(name, _, _)| (*name).to_owned())
                .collect()
        })
        .unwrap_or_default();
    known.extend(extra_known.iter().map(|k| (*k).to_owned()));
    let query = Query::new(pairs);
    let known_refs: Vec<&str> = known.iter().map(String::as_str).collect();
    let unknown = query.unknown(&known_refs);
    let strict = headers
        .get("prefer")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.split([',', ';']).any(|p| p.trim() == "handling=strict"));
    if unknown.is_empty() {
        return Ok(query);
    }
    // Dropping these would make the search broader than asked, so they are
    // refused even when leniency ignores other unknown parameters.
    for name in &unknown {
        let (base_name, modifier) = name.split_once(':').unwrap_or((name, ""));
        if !modifier.is_empty() && known_refs.contains(&base_name) {
            return Err(bad_search(SearchError::new(
                *name,
                format!("the :{modifier} modifier is not supported here"),
            )));
        }
        if base_name == "_id" {
            return Err(bad_search(SearchError::new(
                "_id",
                format!(
                    "is not supported for {resource_type}; read {resource_type}/{{id}} instead"
                ),
            )));
        }
    }
    if strict {
        return Err(bad_search(SearchError::new(
            unknown[0],
            format!("is not a search parameter of {resource_type} on this server"),
        )));
    }
    let unknown: Vec<String> = unknown.into_iter().map(str::to_owned).collect();
    Ok(Query::new(
        query
            .pairs()
            .iter()
            .filter(|(n, _)| !unknown.contains(n))
            .cloned()
            .collect(),
    ))
}

/// A link to the same search with some paging parameters replaced.
pub(crate) fn search_link(
    base: &FhirBase,
    resource_type: &str,
    query: &Query,
    replace: &[(&str, String)],
) -> String {
    let mut serializer = form_urlencoded::Serializer::new(String::new());
    for (name, value) in query.pairs() {
        if !replace.iter().any(|(r, _)| r == name) {
            serializer.append_pair(name, value);
        }
    }
    for (name, value) in replace {
        serializer.append_pair(name, value);
    }
    let query = serializer.finish();
    if query.is_empty() {
        format!("{}/{resource_type}", base.url)
    } else {
        format!("{}/{resource_type}?{query}", base.url)
    }
}

/// `self`, and `next`/`previous` for an offset-paged search.
fn offset_links(
    base: &FhirBase,
    resource_type: &str,
    query: &Query,
    offset: i64,
    count: i64,
    total: i64,
) -> Vec<(&'static str, String)> {
    let mut links = vec![("self", search_link(base, resource_type, query, &[]))];
    if count > 0 && offset + count < total {
        links.push((
            "next",
            search_link(
                base,
                resource_type,
                query,
                &[("_offset", (offset + count).to_string())],
            ),
        ));
    }
    if offset > 0 {
        links.push((
            "previous",
            search_link(
                base,
                resource_type,
                query,
                &[("_offset", (offset - count.max(1)).max(0).to_string())],
            ),
        ));
    }
    links
}

/// The searchset Bundle of one page of an offset-paged search, with its
/// total and paging links.
pub(crate) fn offset_searchset(
    base: &FhirBase,
    resource_type: &str,
    query: &Query,
    resources: Vec<Value>,
    offset: i64,
    count: i64,
    total: i64,
) -> Fhir {
    let links = offset_links(base, resource_type, query, offset, count, total);
    Fhir::ok(bedside_records::fhir::bundle::searchset(
        base,
        resources,
        Some(total),
        &links,
    ))
}

/// Who is asking, as far as lists are concerned.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Reach {
    /// The caller.
    pub(crate) caller: Caller,
    /// A `patient/` token's one patient: every list is limited to it.
    pub(crate) only_patient: Option<PatientId>,
    /// A clinician's practitioner record: lists are limited to their patients.
    pub(crate) clinician: Option<PractitionerId>,
    /// A scoped token's grant.
    grant: Option<Grant>,
}

impl Reach {
    /// Whether the token may read `resource_type` (always, without scopes).
    pub(crate) fn may_read(&self, resource_type: &str) -> bool {
        self.grant
            .is_none_or(|g| g.allows(resource_type, Need::Read))
    }
}

/// The patient a `patient/` token is bound to, if the caller holds one:
/// per-patient searches default to it.
pub(crate) fn token_patient(ctx: &Ctx) -> Option<PatientId> {
    match ctx.caller() {
        Ok(Caller::Staff {
            grant: Some(grant), ..
        }) => grant.patient,
        _ => None,
    }
}

/// Decides a read of one resource that belongs to a patient, under the
/// rule for that patient's record. A resource that does not exist is
/// decided as nobody's, so the answer (403 or 404) does not reveal to a
/// caller without access which ids exist.
pub(crate) async fn read_owned<T>(
    ctx: &Ctx,
    state: &AppState,
    resource_type: &'static str,
    action: &str,
    found: Option<T>,
    owner: impl Fn(&T) -> PatientId,
) -> Result<T, ApiError> {
    let patient = found.as_ref().map_or(PatientId(uuid::Uuid::nil()), &owner);
    reach(
        ctx,
        state,
        resource_type,
        Need::Read,
        Access::Patient(patient),
        action,
        false,
    )
    .await?;
    found.ok_or_else(|| ApiError::not_found(resource_type))
}

/// Decides a FHIR request: the token's scopes for `resource_type` and
/// `need`, then `access` through the policy (which writes the audit row).
/// `list` reads audit the patients they return themselves
/// ([`Ctx::audit_list`]).
///
/// # Errors
/// 401 without a valid identity, 403 when the scopes or the policy refuse.
pub(crate) async fn reach(
    ctx: &Ctx,
    state: &AppState,
    resource_type: &str,
    need: Need,
    access: Access<'_>,
    action: &str,
    list: bool,
) -> Result<Reach, ApiError> {
    let caller = ctx.caller_or_deny(state, access, action).await?;
    let (clinician, grant) = match caller {
        Caller::Staff {
            role,
            practitioner,
            grant,
            ..
        } => (
            (role == StaffRole::Clinician)
                .then(|| practitioner.unwrap_or(PractitionerId(uuid::Uuid::nil()))),
            grant,
        ),
        // Patients' visit sessions and guests use the call, not the records API.
        Caller::Patient { .. } | Caller::Guest { .. } => {
            ctx.audit_denied(state, &caller, access.patient(), action)
                .await?;
            return Err(ApiError::forbidden());
        }
    };
    if let Some(grant) = grant {
        // A `patient/` token reaches its one patient: never another, and
        // never the admin-wide views (the registry, the audit log).
        let outside_patient = grant.patient.is_some_and(|only| {
            access.patient().is_some_and(|p| p != only) || matches!(access, Access::Admin)
        });
        if !grant.allows(resource_type, need) || outside_patient {
            ctx.audit_denied(state, &caller, access.patient(), action)
                .await?;
            let what = match need {
                Need::Read => "read",
                Need::Search => "search",
                Need::Create => "create",
                Need::Update => "update",
            };
            return Err(ApiError::new(
                StatusCode::FORBIDDEN,
                "insufficient_scope",
                if outside_patient {
                    "the token is bound to another patient".to_owned()
                } else {
                    format!("the token's scopes do not allow {resource_type}.{what}")
                },
            ));
        }
    }
    let caller = if list {
        ctx.allow_list(state, access, action).await?
    } else {
        ctx.allow(state, access, action).await?
    };
    Ok(Reach {
        caller,
        only_patient: grant.and_then(|g| g.patient),
        clinician,
        grant,
    })
}
