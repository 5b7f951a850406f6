//! `Patient`: search, read, create, update and `$everything`.

use axum::body::Bytes;
use axum::extract::{RawQuery, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use bedside_records::domain::Sex;
use bedside_records::fhir::search::{self, SearchError, TimeRange};
use bedside_records::fhir::{input, resources};
use bedside_records::ids::PatientId;
use bedside_records::patients::{self, NameMatch, NamePart, NameSearch, PatientCriteria};

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
        Need::Search,
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
    let identifiers = search::tokens(query, "identifier")?;
    // Every patient has an MRN: `{mrn system}|` alone constrains nothing.
    if !identifiers
        .iter()
        .any(|t| t.any_code() && t.allows_system(&base.mrn_system))
    {
        for token in identifiers {
            if token.allows_system(&base.mrn_system) {
                criteria.mrns.push(token.code);
            } else {
                // Another system's identifier: nothing of ours carries it.
                criteria.mrns.push(String::new());
            }
        }
    }
    for (param, part) in [
        ("name", NamePart::Any),
        ("family", NamePart::Family),
        ("given", NamePart::Given),
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
                criteria.names.push(NameSearch {
                    part,
                    text: value.trim().to_owned(),
                    how,
                });
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

/// `GET /fhir/Patient/{id}/_history/{version}`: the current version only.
pub(super) async fn vread(
    state: State<AppState>,
    ctx: Ctx,
    ApiPath((id, version)): ApiPath<(String, String)>,
) -> Result<Fhir, ApiError> {
    super::current_version(read(state, ctx, ApiPath(id)).await?, &version)
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
        Need::Create,
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
        Need::Update,
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

/// `GET /fhir/Patient/{id}/$everything`: the patient's whole record as one
/// searchset Bundle, streamed ([`super::record`]). The types a scoped token
/// may not read are left out.
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
    let base = base(&state);
    let self_link = format!("{}/Patient/{id}/$everything", base.url);
    super::record::stream(
        state.db(),
        base,
        id,
        super::record::Contents {
            may: &|resource_type| reach.may_read(resource_type),
            notes: false,
            audit: false,
            bundle_type: "searchset",
            self_link,
        },
    )
    .await
}
