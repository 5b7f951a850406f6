//! `Observation`: search (keyset-paged), read, and `$lastn`.

use axum::extract::{RawQuery, State};
use axum::http::{HeaderMap, StatusCode};
use bedside_records::fhir::observation::{ObservationId, VitalSign, observation};
use bedside_records::fhir::search::{self, Query, SearchError, TimeRange};
use bedside_records::fhir::{LOINC, bundle};
use bedside_records::ids::PatientId;
use bedside_vitals_store::metric::Metric;
use bedside_vitals_store::observations::{self as readings, Cursor, Filter};
use serde_json::Value;

use super::{Fhir, bad_search, base, reach, read_owned, search_link, search_query, token_patient};
use crate::app::AppState;
use crate::auth::scopes::Need;
use crate::error::ApiError;
use crate::extract::ApiPath;
use crate::policy::{Access, Ctx};

/// The category system Observation.category codes come from.
const CATEGORY: &str = "http://terminology.hl7.org/CodeSystem/observation-category";

/// The patient a search is about: `patient` or `subject`, required (a
/// `patient/` token's own patient when neither is given).
fn patient_param(
    query: &Query,
    token_patient: Option<PatientId>,
) -> Result<PatientId, SearchError> {
    let mut found = None;
    for param in ["patient", "subject"] {
        if let Some(raw) = query.single(param)? {
            found = Some(PatientId(search::reference_id(param, raw, "Patient")?));
        }
    }
    found.or(token_patient).ok_or_else(|| {
        SearchError::new(
            "patient",
            "Observation searches need a patient (patient=Patient/{id})",
        )
    })
}

/// The stored metrics `code` and `category` select (empty: all).
fn metrics(query: &Query) -> Result<Vec<Metric>, SearchError> {
    let mut signs: Option<Vec<VitalSign>> = None;
    let codes = search::tokens(query, "code")?;
    if !codes.is_empty() {
        signs = Some(
            if codes.iter().any(|t| t.any_code() && t.allows_system(LOINC)) {
                VitalSign::ALL.to_vec()
            } else {
                codes
                    .iter()
                    .filter(|t| t.allows_system(LOINC))
                    .filter_map(|t| VitalSign::from_loinc(&t.code))
                    .collect()
            },
        );
    }
    let categories = search::tokens(query, "category")?;
    if !categories.is_empty() {
        let in_category: Vec<VitalSign> = VitalSign::ALL
            .into_iter()
            .filter(|sign| {
                categories
                    .iter()
                    .any(|t| t.allows_system(CATEGORY) && t.code == sign.category().0)
            })
            .collect();
        signs = Some(match signs {
            Some(s) => s.into_iter().filter(|x| in_category.contains(x)).collect(),
            None => in_category,
        });
    }
    Ok(match signs {
        None => Vec::new(),
        // Codes that name nothing Bedside stores match nothing: a metric
        // list that cannot match (diastolic alone is never returned).
        Some(s) if s.is_empty() => vec![Metric::DiastolicBp],
        Some(s) => s.into_iter().map(VitalSign::stored_metric).collect(),
    })
}

fn filter(
    query: &Query,
    state: &AppState,
    patient: PatientId,
    default_newest: bool,
) -> Result<Filter, SearchError> {
    let mut range = TimeRange::default();
    for value in query.all("date") {
        range.narrow("date", value, state.settings().time_zone)?;
    }
    Ok(Filter {
        patient_id: patient.0,
        metrics: metrics(query)?,
        from: range.from,
        to: range.to,
        newest_first: search::newest_first(query, default_newest)?,
    })
}

/// `GET /fhir/Observation?patient=&code=&category=&date=&_sort=&_count=`
pub(super) async fn search(
    State(state): State<AppState>,
    ctx: Ctx,
    headers: HeaderMap,
    RawQuery(raw): RawQuery,
) -> Result<Fhir, ApiError> {
    let query = search_query("Observation", raw.as_deref(), &headers, &["_sort"])?;
    let token_patient = token_patient(&ctx);
    let patient = patient_param(&query, token_patient).map_err(bad_search)?;
    reach(
        &ctx,
        &state,
        "Observation",
        Need::Search,
        Access::Patient(patient),
        "fhir.observation.search",
        false,
    )
    .await?;
    let filter = filter(&query, &state, patient, true).map_err(bad_search)?;
    let count = search::count(&query).map_err(bad_search)?;
    let cursor = match query.single("_cursor").map_err(bad_search)? {
        None => None,
        Some(raw) => Some(Cursor::decode(raw).ok_or_else(|| {
            bad_search(SearchError::new(
                "_cursor",
                "is not a cursor this server gave out",
            ))
        })?),
    };
    // The total is counted once, on the first page: a client paging on
    // has it already, and counting a million readings per page would cost
    // more than the page.
    let total = if cursor.is_none() && search::wants_total(&query).map_err(bad_search)? {
        Some(readings::count(state.db(), &filter).await?)
    } else {
        None
    };
    let page = if count == 0 {
        Vec::new()
    } else {
        readings::page(state.db(), &filter, cursor, count).await?
    };
    let base = base(&state);
    let mut links = vec![("self", search_link(&base, "Observation", &query, &[]))];
    if count > 0
        && page.len() as i64 == count
        && let Some(last) = page.last()
    {
        links.push((
            "next",
            search_link(
                &base,
                "Observation",
                &query,
                &[("_cursor", Cursor::after(last).encode())],
            ),
        ));
    }
    let resources: Vec<Value> = page.iter().filter_map(|r| observation(&base, r)).collect();
    Ok(Fhir::ok(bundle::searchset(&base, resources, total, &links)))
}

/// `GET /fhir/Observation/{id}`
pub(super) async fn read(
    State(state): State<AppState>,
    ctx: Ctx,
    ApiPath(id): ApiPath<String>,
) -> Result<Fhir, ApiError> {
    let id = ObservationId::parse(&id).ok_or_else(|| ApiError::not_found("Observation"))?;
    let reading = readings::get(state.db(), id.device_id, id.sign.stored_metric(), id.time).await?;
    let reading = read_owned(
        &ctx,
        &state,
        "Observation",
        "fhir.observation.read",
        reading,
        |r| PatientId(r.patient_id),
    )
    .await?;
    let resource =
        observation(&base(&state), &reading).ok_or_else(|| ApiError::not_found("Observation"))?;
    Ok(Fhir::versioned(StatusCode::OK, resource))
}

/// `GET /fhir/Observation/$lastn?patient=&code=&category=&max=`: the
/// newest `max` (default 1) readings of each code.
pub(super) async fn last_n(
    State(state): State<AppState>,
    ctx: Ctx,
    headers: HeaderMap,
    RawQuery(raw): RawQuery,
) -> Result<Fhir, ApiError> {
    let query = search_query("Observation", raw.as_deref(), &headers, &["max"])?;
    let patient = patient_param(&query, token_patient(&ctx)).map_err(bad_search)?;
    reach(
        &ctx,
        &state,
        "Observation",
        Need::Search,
        Access::Patient(patient),
        "fhir.observation.lastn",
        false,
    )
    .await?;
    let max = match query.single("max").map_err(bad_search)? {
        None => 1,
        Some(raw) => raw
            .parse::<i64>()
            .ok()
            .filter(|n| (1..=1000).contains(n))
            .ok_or_else(|| {
                bad_search(SearchError::new(
                    "max",
                    "must be a whole number from 1 to 1000",
                ))
            })?,
    };
    let filter = filter(&query, &state, patient, true).map_err(bad_search)?;
    let found = readings::last_n(state.db(), &filter, max).await?;
    let base = base(&state);
    let resources: Vec<Value> = found.iter().filter_map(|r| observation(&base, r)).collect();
    let total = resources.len() as i64;
    let self_link = search_link(&base, "Observation/$lastn", &query, &[]);
    Ok(Fhir::ok(bundle::searchset(
        &base,
        resources,
        Some(total),
        &[("self", self_link)],
    )))
}
