//! The read-mostly resources: `Practitioner`, `Device`, `Consent`,
//! `AuditEvent` (a view of the audit log) and `Flag` (alerts).

use axum::extract::{RawQuery, State};
use axum::http::HeaderMap;
use bedside_records::audit::{self, AuditFilter};
use bedside_records::fhir::search::{self, Query, SearchError, TimeRange};
use bedside_records::fhir::{FhirBase, bundle, resources};
use bedside_records::ids::{ConsentId, DeviceId, PatientId, PractitionerId};
use bedside_records::{consents, devices, practitioners};
use serde_json::Value;

use super::patients::path_id;
use super::{
    Fhir, bad_search, base, offset_searchset, reach, read_owned, search_link, search_query,
    token_patient,
};
use crate::app::AppState;
use crate::auth::scopes::Need;
use crate::error::ApiError;
use crate::extract::ApiPath;
use crate::policy::{Access, Ctx};

/// The searchset of one page of an in-memory list (the clinic's
/// practitioners and devices, a patient's consents and alerts: hundreds,
/// not millions).
fn listed<T>(
    state: &AppState,
    resource_type: &str,
    query: &Query,
    all: Vec<T>,
    to_resource: impl Fn(&FhirBase, &T) -> Value,
) -> Result<Fhir, ApiError> {
    let count = search::count(query).map_err(bad_search)?;
    let offset = search::offset(query).map_err(bad_search)?;
    let total = all.len() as i64;
    let base = base(state);
    let resources = all
        .iter()
        .skip(offset as usize)
        .take(count as usize)
        .map(|item| to_resource(&base, item))
        .collect();
    Ok(offset_searchset(
        &base,
        resource_type,
        query,
        resources,
        offset,
        count,
        total,
    ))
}

fn optional_patient(query: &Query) -> Result<Option<PatientId>, SearchError> {
    query
        .single("patient")?
        .map(|raw| search::reference_id("patient", raw, "Patient").map(PatientId))
        .transpose()
}

/// The start of a search over one patient's resources: the query, the
/// patient (`patient`, or a `patient/` token's own), and the decision on
/// reading that patient's record.
async fn patient_search(
    state: &AppState,
    ctx: &Ctx,
    headers: &HeaderMap,
    raw: Option<&str>,
    resource_type: &'static str,
    action: &str,
) -> Result<(Query, PatientId), ApiError> {
    let query = search_query(resource_type, raw, headers, &[])?;
    let patient = optional_patient(&query)
        .map_err(bad_search)?
        .or_else(|| token_patient(ctx))
        .ok_or_else(|| {
            bad_search(SearchError::new(
                "patient",
                format!("{resource_type} searches need a patient (patient=Patient/{{id}})"),
            ))
        })?;
    reach(
        ctx,
        state,
        resource_type,
        Need::Search,
        Access::Patient(patient),
        action,
        false,
    )
    .await?;
    Ok((query, patient))
}

/// `GET /fhir/Practitioner?name=&_id=`: any staff member (no health data).
pub(super) async fn search_practitioners(
    State(state): State<AppState>,
    ctx: Ctx,
    headers: HeaderMap,
    RawQuery(raw): RawQuery,
) -> Result<Fhir, ApiError> {
    let query = search_query("Practitioner", raw.as_deref(), &headers, &[])?;
    reach(
        &ctx,
        &state,
        "Practitioner",
        Need::Search,
        Access::AnyStaff,
        "fhir.practitioner.search",
        true,
    )
    .await?;
    let ids: Vec<String> = search::tokens(&query, "_id")
        .map_err(bad_search)?
        .into_iter()
        .map(|t| t.code)
        .collect();
    let names: Vec<String> = query.all("name").map(str::to_lowercase).collect();
    let all: Vec<_> = practitioners::list(state.db())
        .await?
        .into_iter()
        .filter(|p| ids.is_empty() || ids.contains(&p.id.to_string()))
        .filter(|p| {
            let name = p.name.to_lowercase();
            names.iter().all(|n| name.contains(n.as_str()))
        })
        .collect();
    listed(&state, "Practitioner", &query, all, |_, p| {
        resources::practitioner(p)
    })
}

/// `GET /fhir/Practitioner/{id}`
pub(super) async fn read_practitioner(
    State(state): State<AppState>,
    ctx: Ctx,
    ApiPath(id): ApiPath<String>,
) -> Result<Fhir, ApiError> {
    reach(
        &ctx,
        &state,
        "Practitioner",
        Need::Read,
        Access::AnyStaff,
        "fhir.practitioner.read",
        true,
    )
    .await?;
    let id = PractitionerId(path_id(&id, "Practitioner")?);
    let practitioner = practitioners::get(state.db(), id).await?;
    Ok(Fhir::ok(resources::practitioner(&practitioner)))
}

/// `GET /fhir/Device?patient=`: a patient's devices for whoever may read
/// the patient; the whole registry for admins (as in the REST API).
pub(super) async fn search_devices(
    State(state): State<AppState>,
    ctx: Ctx,
    headers: HeaderMap,
    RawQuery(raw): RawQuery,
) -> Result<Fhir, ApiError> {
    let query = search_query("Device", raw.as_deref(), &headers, &[])?;
    let patient = optional_patient(&query)
        .map_err(bad_search)?
        .or_else(|| token_patient(&ctx));
    let all = match patient {
        Some(patient) => {
            reach(
                &ctx,
                &state,
                "Device",
                Need::Search,
                Access::Patient(patient),
                "fhir.device.search",
                false,
            )
            .await?;
            devices::for_patient(state.db(), patient)
                .await?
                .into_iter()
                .filter(|a| a.assigned_to.is_none())
                .map(|a| a.device)
                .collect()
        }
        None => {
            let reach = reach(
                &ctx,
                &state,
                "Device",
                Need::Search,
                Access::Admin,
                "fhir.device.search",
                true,
            )
            .await?;
            let all = devices::list(state.db()).await?;
            let patients: Vec<PatientId> = all.iter().filter_map(|d| d.patient_id).collect();
            ctx.audit_list(&state, &reach.caller, "fhir.device.search", &patients)
                .await?;
            all
        }
    };
    listed(&state, "Device", &query, all, resources::device)
}

/// `GET /fhir/Device/{id}`
pub(super) async fn read_device(
    State(state): State<AppState>,
    ctx: Ctx,
    ApiPath(id): ApiPath<String>,
) -> Result<Fhir, ApiError> {
    let device = match path_id(&id, "Device") {
        Ok(id) => match devices::get(state.db(), DeviceId(id)).await {
            Ok(device) => Some(device),
            Err(bedside_records::RecordsError::NotFound(_)) => None,
            Err(e) => return Err(e.into()),
        },
        Err(_) => None,
    };
    // An assigned device is the patient's record; an unassigned one is
    // the registry's, which admins keep.
    let access = match device.as_ref().and_then(|d| d.patient_id) {
        Some(patient) => Access::Patient(patient),
        None => Access::Admin,
    };
    reach(
        &ctx,
        &state,
        "Device",
        Need::Read,
        access,
        "fhir.device.read",
        false,
    )
    .await?;
    let device = device.ok_or_else(|| ApiError::not_found("Device"))?;
    Ok(Fhir::ok(resources::device(&base(&state), &device)))
}

/// `GET /fhir/Consent?patient=`
pub(super) async fn search_consents(
    State(state): State<AppState>,
    ctx: Ctx,
    headers: HeaderMap,
    RawQuery(raw): RawQuery,
) -> Result<Fhir, ApiError> {
    let (query, patient) = patient_search(
        &state,
        &ctx,
        &headers,
        raw.as_deref(),
        "Consent",
        "fhir.consent.search",
    )
    .await?;
    let all = consents::for_patient(state.db(), patient).await?;
    listed(&state, "Consent", &query, all, resources::consent)
}

/// `GET /fhir/Consent/{id}`
pub(super) async fn read_consent(
    State(state): State<AppState>,
    ctx: Ctx,
    ApiPath(id): ApiPath<String>,
) -> Result<Fhir, ApiError> {
    let consent = match path_id(&id, "Consent") {
        Ok(id) => consents::get(state.db(), ConsentId(id)).await?,
        Err(_) => None,
    };
    let consent = read_owned(&ctx, &state, "Consent", "fhir.consent.read", consent, |c| {
        c.patient_id
    })
    .await?;
    Ok(Fhir::ok(resources::consent(&base(&state), &consent)))
}

/// `GET /fhir/AuditEvent?patient=&date=`: admins only, newest first,
/// paged by `_cursor` (the last row's sequence number).
pub(super) async fn search_audit_events(
    State(state): State<AppState>,
    ctx: Ctx,
    headers: HeaderMap,
    RawQuery(raw): RawQuery,
) -> Result<Fhir, ApiError> {
    let query = search_query("AuditEvent", raw.as_deref(), &headers, &[])?;
    reach(
        &ctx,
        &state,
        "AuditEvent",
        Need::Search,
        Access::Admin,
        "fhir.auditevent.search",
        false,
    )
    .await?;
    let mut range = TimeRange::default();
    for value in query.all("date") {
        range
            .narrow("date", value, state.settings().time_zone)
            .map_err(bad_search)?;
    }
    let count = search::count(&query).map_err(bad_search)?;
    let before_id = match query.single("_cursor").map_err(bad_search)? {
        None => None,
        Some(raw) => Some(raw.parse::<i64>().map_err(|_| {
            bad_search(SearchError::new(
                "_cursor",
                "is not a cursor this server gave out",
            ))
        })?),
    };
    let rows = if count == 0 {
        Vec::new()
    } else {
        audit::list(
            state.db(),
            &AuditFilter {
                patient_id: optional_patient(&query).map_err(bad_search)?,
                actor_id: None,
                from: range.from,
                to: range.to,
                before_id,
                limit: count,
            },
        )
        .await?
    };
    let base = base(&state);
    let mut links = vec![("self", search_link(&base, "AuditEvent", &query, &[]))];
    if rows.len() as i64 == count
        && let Some(last) = rows.last()
    {
        links.push((
            "next",
            search_link(
                &base,
                "AuditEvent",
                &query,
                &[("_cursor", last.id.to_string())],
            ),
        ));
    }
    let resources: Vec<Value> = rows
        .iter()
        .map(|r| resources::audit_event(&base, r))
        .collect();
    Ok(Fhir::ok(bundle::searchset(&base, resources, None, &links)))
}

/// `GET /fhir/AuditEvent/{id}`: admins only.
pub(super) async fn read_audit_event(
    State(state): State<AppState>,
    ctx: Ctx,
    ApiPath(id): ApiPath<String>,
) -> Result<Fhir, ApiError> {
    reach(
        &ctx,
        &state,
        "AuditEvent",
        Need::Read,
        Access::Admin,
        "fhir.auditevent.read",
        false,
    )
    .await?;
    let id: i64 = id.parse().map_err(|_| ApiError::not_found("AuditEvent"))?;
    let row = audit::list(
        state.db(),
        &AuditFilter {
            patient_id: None,
            actor_id: None,
            from: None,
            to: None,
            before_id: id.checked_add(1),
            limit: 1,
        },
    )
    .await?
    .into_iter()
    .find(|r| r.id == id)
    .ok_or_else(|| ApiError::not_found("AuditEvent"))?;
    Ok(Fhir::ok(resources::audit_event(&base(&state), &row)))
}

/// `GET /fhir/Flag?patient=`: the patient's alerts, newest first.
pub(super) async fn search_flags(
    State(state): State<AppState>,
    ctx: Ctx,
    headers: HeaderMap,
    RawQuery(raw): RawQuery,
) -> Result<Fhir, ApiError> {
    let (query, patient) = patient_search(
        &state,
        &ctx,
        &headers,
        raw.as_deref(),
        "Flag",
        "fhir.flag.search",
    )
    .await?;
    let all = bedside_vitals_store::alerts::for_patient(state.db(), patient.0, 100_000).await?;
    listed(&state, "Flag", &query, all, resources::flag)
}

/// `GET /fhir/Flag/{id}`
pub(super) async fn read_flag(
    State(state): State<AppState>,
    ctx: Ctx,
    ApiPath(id): ApiPath<String>,
) -> Result<Fhir, ApiError> {
    let alert = match path_id(&id, "Flag") {
        Ok(id) => bedside_vitals_store::alerts::get(state.db(), id).await?,
        Err(_) => None,
    };
    let alert = read_owned(&ctx, &state, "Flag", "fhir.flag.read", alert, |a| {
        PatientId(a.patient_id)
    })
    .await?;
    Ok(Fhir::ok(resources::flag(&base(&state), &alert)))
}
