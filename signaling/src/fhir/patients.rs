//! `Patient`: search, read, create, update and `$everything`.

use axum::body::{Body, Bytes};
use axum::extract::{RawQuery, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use bedside_records::appointments::{self, AppointmentFilter};
use bedside_records::domain::Sex;
use bedside_records::fhir::observation::observation;
use bedside_records::fhir::search::{self, SearchError, TimeRange};
use bedside_records::fhir::{bundle, input, resources};
use bedside_records::ids::PatientId;
use bedside_records::patients::{self, NameMatch, PatientCriteria};
use bedside_records::{consents, devices};
use bedside_vitals_store::observations::{self as readings, Cursor, Filter};
use serde_json::{Value, json};

use super::{
    Fhir, bad_resource, bad_search, base, json_body, offset_searchset, reach, required_version,
    search_query,
};
use crate::app::AppState;
use crate::auth::scopes::Need;
use crate::error::ApiError;
use crate::extract::ApiPath;
use crate::policy::{Access, Ctx};

/// Name-search modifiers accepted besides the plain parameters.
const MODIFIERS: &[&str] = &[
    "name:exact",
    "name:contains",
    "family:exact",
    "family:contains",
    "given:exact",
    "given:contains",
];

/// An id in a URL: Bedside's ids are UUIDs; anything else names nothing.
pub(super) fn path_id(raw: &str, what: &str) -> Result<uuid::Uuid, ApiError> {
    uuid::Uuid::try_parse(raw).map_err(|_| ApiError::not_found(what))
}

/// `GET /fhir/Patient?identifier=&name=&birthdate=&gender=&_id=`
pub(super) async fn search(
    State(state): State<AppState>,
    ctx: Ctx,
    headers: HeaderMap,
    RawQuery(raw): RawQuery,
) -> Result<Fhir, ApiError> {
    let query = search_query("Patient", raw.as_deref(), &headers, MODIFIERS)?;
    let reach = reach(
        &ctx,
        &state,
        "Patient",
        Need::Read,
        Access::AnyStaff,
        "fhir.patient.search",
        true,
    )
    .await?;
    let base = base(&state);
    let mut criteria = criteria(&query, &base).map_err(bad_search)?;
    criteria.visible_to = reach.clinician;
    if let Some(only) = reach.only_patient {
        if !criteria.ids.is_empty() && !criteria.ids.contains(&only) {
            criteria.ids = vec![PatientId(uuid::Uuid::nil())];
        } else {
            criteria.ids = vec![only];
        }
    }
    let count = search::count(&query).map_err(bad_search)?;
    let offset = search::offset(&query).map_err(bad_search)?;
    let (found, total) = patients::find(state.db(), &criteria, offset, count).await?;
    let ids: Vec<PatientId> = found.iter().map(|p| p.id).collect();
    ctx.audit_list(&state, &reach.caller, "fhir.patient.search", &ids)
        .await?;
    let resources = found.iter().map(|p| resources::patient(&base, p)).collect();
    Ok(offset_searchset(
        &base, "Patient", &query, resources, offset, count, total,
    ))
}

fn criteria(
    query: &search::Query,
    base: &bedside_records::fhir::FhirBase,
) -> Result<PatientCriteria, SearchError> {
    let mut criteria = PatientCriteria::default();
    for token in search::tokens(query, "_id")? {
        // An id that is not one of ours matches nothing (not an error).
        criteria.ids.push(PatientId(
            uuid::Uuid::try_parse(&token.code).unwrap_or(uuid::Uuid::nil()),
        ));
    }
    for token in search::tokens(query, "identifier")? {
        if token.allows_system(&base.mrn_system) {
            criteria.mrns.push(token.code);
        } else {
            // Another system's identifier: nothing of ours carries it.
            criteria.mrns.push(String::new());
        }
    }
    for (param, texts) in [
        ("name", &mut criteria.names),
        ("family", &mut criteria.family),
        ("given", &mut criteria.given),
    ] {
        for (modifier, how) in [
            ("", NameMatch::Prefix),
            (":exact", NameMatch::Exact),
            (":contains", NameMatch::Contains),
        ] {
            let name = format!("{param}{modifier}");
            for value in query.all(&name) {
                if value.trim().is_empty() || value.len() > 100 {
                    return Err(SearchError::new(
                        name.clone(),
                        "must be 1 to 100 characters",
                    ));
                }
                if how != NameMatch::Prefix {
                    criteria.name_match = how;
                }
                texts.push(value.trim().to_owned());
            }
        }
    }
    let mut born = TimeRange::default();
    for value in query.all("birthdate") {
        born.narrow("birthdate", value, chrono_tz::UTC)?;
    }
    criteria.born_from = born.from.map(|t| t.date_naive());
    criteria.born_before = born.to.map(|t| t.date_naive());
    for token in search::tokens(query, "gender")? {
        let sex = Sex::parse(&token.code)
            .map_err(|_| SearchError::new("gender", "must be male, female, other or unknown"))?;
        criteria.sexes.push(sex);
    }
    Ok(criteria)
}

/// `GET /fhir/Patient/{id}`
pub(super) async fn read(
    State(state): State<AppState>,
    ctx: Ctx,
    ApiPath(id): ApiPath<String>,
) -> Result<Fhir, ApiError> {
    let id = PatientId(path_id(&id, "Patient")?);
    reach(
        &ctx,
        &state,
        "Patient",
        Need::Read,
        Access::Patient(id),
        "fhir.patient.read",
        false,
    )
    .await?;
    let patient = patients::get(state.db(), id).await?;
    Ok(Fhir::versioned(
        StatusCode::OK,
        resources::patient(&base(&state), &patient),
    ))
}

/// `POST /fhir/Patient`: registers a patient (admins, as in the REST API).
pub(super) async fn create(
    State(state): State<AppState>,
    ctx: Ctx,
    body: Bytes,
) -> Result<Fhir, ApiError> {
    reach(
        &ctx,
        &state,
        "Patient",
        Need::Write,
        Access::Admin,
        "fhir.patient.create",
        false,
    )
    .await?;
    let base = base(&state);
    let body = json_body(&body)?;
    let details = input::patient(&base, &body, None).map_err(bad_resource)?;
    let patient = patients::create(state.db(), &details).await?;
    let resource = resources::patient(&base, &patient);
    let location = format!(
        "{}/_history/{}",
        base.full_url("Patient", &patient.id.to_string()),
        patient.version
    );
    Ok(Fhir::versioned(StatusCode::CREATED, resource).with_location(&location))
}

/// `PUT /fhir/Patient/{id}` with `If-Match`.
pub(super) async fn update(
    State(state): State<AppState>,
    ctx: Ctx,
    headers: HeaderMap,
    ApiPath(id): ApiPath<String>,
    body: Bytes,
) -> Result<Fhir, ApiError> {
    let raw_id = id;
    let id = PatientId(path_id(&raw_id, "Patient")?);
    reach(
        &ctx,
        &state,
        "Patient",
        Need::Write,
        Access::AdminFor(id),
        "fhir.patient.update",
        false,
    )
    .await?;
    let version = required_version(&headers)?;
    let base = base(&state);
    let body = json_body(&body)?;
    let details = input::patient(&base, &body, Some(&raw_id)).map_err(bad_resource)?;
    let patient = patients::update(state.db(), id, &details, Some(version)).await?;
    Ok(Fhir::versioned(
        StatusCode::OK,
        resources::patient(&base, &patient),
    ))
}

/// Readings per streamed chunk of `$everything`: memory stays at one page
/// whatever the patient's history.
const EVERYTHING_PAGE: i64 = 1000;

/// `GET /fhir/Patient/{id}/$everything`: the patient's whole record as one
/// searchset Bundle, streamed. The record's small parts (patient, devices,
/// appointments and encounters, consents, alerts) come first; then every
/// reading, oldest first, a page at a time. The types a scoped token may
/// not read are left out.
pub(super) async fn everything(
    State(state): State<AppState>,
    ctx: Ctx,
    ApiPath(id): ApiPath<String>,
) -> Result<Response, ApiError> {
    let id = PatientId(path_id(&id, "Patient")?);
    let reach = reach(
        &ctx,
        &state,
        "Patient",
        Need::Read,
        Access::Patient(id),
        "fhir.patient.everything",
        false,
    )
    .await?;
    let may = |resource_type: &str| reach.may_read(resource_type);
    let base = base(&state);
    let db = state.db().clone();
    let patient = patients::get(&db, id).await?;
    let mut head: Vec<Value> = vec![resources::patient(&base, &patient)];
    if may("Device") {
        for assignment in devices::for_patient(&db, id).await? {
            if assignment.assigned_to.is_none() {
                head.push(resources::device(&base, &assignment.device));
            }
        }
    }
    let (visits, _) = appointments::page(
        &db,
        &AppointmentFilter {
            patient_id: Some(id),
            ..Default::default()
        },
        0,
        1000,
    )
    .await?;
    for visit in &visits {
        if may("Appointment") {
            head.push(resources::appointment(&base, visit));
        }
        if may("Encounter")
            && let Some(encounter) = resources::encounter(visit)
        {
            head.push(encounter);
        }
    }
    if may("Consent") {
        for consent in consents::for_patient(&db, id).await? {
            head.push(resources::consent(&base, &consent));
        }
    }
    if may("Flag") {
        for alert in bedside_vitals_store::alerts::for_patient(&db, id.0, 1000).await? {
            head.push(resources::flag(&base, &alert));
        }
    }

    let mut opening = serde_json::to_vec(&json!({
        "resourceType": "Bundle",
        "id": uuid::Uuid::new_v4().to_string(),
        "meta": { "lastUpdated": bedside_records::fhir::instant(chrono::Utc::now()) },
        "type": "searchset",
        "link": [{ "relation": "self", "url": format!("{}/Patient/{id}/$everything", base.url) }],
    }))
    .unwrap_or_default();
    // Reopen the object to append the entry array as the stream goes.
    opening.pop();
    opening.extend_from_slice(b",\"entry\":[");
    let mut first = true;
    for resource in head {
        push_entry(&mut opening, &base, resource, &mut first);
    }

    let filter = Filter {
        patient_id: id.0,
        metrics: Vec::new(),
        from: None,
        to: None,
        newest_first: false,
    };
    struct Streaming {
        db: sqlx::PgPool,
        base: bedside_records::fhir::FhirBase,
        filter: Filter,
        cursor: Option<Cursor>,
        first: bool,
        state: Stage,
    }
    enum Stage {
        Opening(Vec<u8>),
        Readings,
        Closing,
        Done,
    }
    let start = Streaming {
        db,
        base,
        filter,
        cursor: None,
        first,
        state: Stage::Opening(opening),
    };
    let with_readings = may("Observation");
    let stream = futures::stream::unfold(start, move |mut s| async move {
        match std::mem::replace(&mut s.state, Stage::Done) {
            Stage::Opening(bytes) => {
                s.state = if with_readings {
                    Stage::Readings
                } else {
                    Stage::Closing
                };
                Some((Ok::<_, std::io::Error>(Bytes::from(bytes)), s))
            }
            Stage::Readings => {
                match readings::page(&s.db, &s.filter, s.cursor, EVERYTHING_PAGE).await {
                    Ok(page) => {
                        s.state = if (page.len() as i64) < EVERYTHING_PAGE {
                            Stage::Closing
                        } else {
                            Stage::Readings
                        };
                        s.cursor = page.last().map(Cursor::after);
                        let mut chunk = Vec::with_capacity(page.len() * 700);
                        for reading in &page {
                            if let Some(resource) = observation(&s.base, reading) {
                                push_entry(&mut chunk, &s.base, resource, &mut s.first);
                            }
                        }
                        Some((Ok(Bytes::from(chunk)), s))
                    }
                    Err(error) => {
                        // The status is sent; all that is left is to cut the
                        // body short, which the client sees as invalid JSON.
                        tracing::error!(%error, "Patient/$everything failed while streaming");
                        Some((Err(std::io::Error::other("database failed")), s))
                    }
                }
            }
            Stage::Closing => Some((Ok(Bytes::from_static(b"]}")), s)),
            Stage::Done => None,
        }
    });
    let mut response = (StatusCode::OK, Body::from_stream(stream)).into_response();
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        axum::http::HeaderValue::from_static("application/fhir+json; charset=utf-8"),
    );
    Ok(response)
}

fn push_entry(
    out: &mut Vec<u8>,
    base: &bedside_records::fhir::FhirBase,
    resource: Value,
    first: &mut bool,
) {
    if !*first {
        out.push(b',');
    }
    *first = false;
    // Writing a `Value` into a Vec cannot fail.
    let _ = serde_json::to_writer(&mut *out, &bundle::entry(base, resource, Some("match")));
}
