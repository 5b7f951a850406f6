//! `Appointment` (search, read, create, update) and `Encounter` (search,
//! read): the held part of an appointment shares its row and its id.

use axum::body::Bytes;
use axum::extract::{RawQuery, State};
use axum::http::{HeaderMap, StatusCode};
use bedside_records::appointment::AppointmentStatus;
use bedside_records::appointments::{
    self, Amendment, Appointment, AppointmentFilter, NewAppointment,
};
use bedside_records::fhir::input;
use bedside_records::fhir::resources::{self, appointment_status_from_fhir};
use bedside_records::fhir::search::{self, Query, SearchError, TimeRange};
use bedside_records::ids::{AppointmentId, PatientId, PractitionerId};
use chrono::Utc;

use super::patients::path_id;
use super::{
    Fhir, bad_resource, bad_search, base, json_body, offset_searchset, reach, required_version,
    search_query,
};
use crate::app::AppState;
use crate::auth::scopes::Need;
use crate::error::ApiError;
use crate::extract::ApiPath;
use crate::policy::{Access, Ctx};

/// How far in the past a new appointment may start (as in the REST API).
const PAST_TOLERANCE_MINUTES: i64 = 5;

fn filter(
    query: &Query,
    state: &AppState,
    encounters: bool,
) -> Result<AppointmentFilter, SearchError> {
    let mut filter = AppointmentFilter {
        started_only: encounters,
        // An Encounter's date is its period, an Appointment's its start.
        by_period: encounters,
        ..Default::default()
    };
    for token in search::tokens(query, "_id")? {
        filter.ids.push(AppointmentId(
            uuid::Uuid::try_parse(&token.code).unwrap_or(uuid::Uuid::nil()),
        ));
    }
    let mut range = TimeRange::default();
    for value in query.all("date") {
        range.narrow("date", value, state.settings().time_zone)?;
    }
    filter.from = range.from;
    filter.to = range.to;
    if let Some(raw) = query.single("patient")? {
        filter.patient_id = Some(PatientId(search::reference_id("patient", raw, "Patient")?));
    }
    if !encounters {
        if let Some(raw) = query.single("practitioner")? {
            filter.practitioner_id = Some(PractitionerId(search::reference_id(
                "practitioner",
                raw,
                "Practitioner",
            )?));
        }
        let statuses = search::tokens(query, "status")?;
        for token in &statuses {
            match appointment_status_from_fhir(&token.code) {
                Some(status) => filter.statuses.push(status),
                // A FHIR status Bedside never uses matches nothing.
                None if is_fhir_appointment_status(&token.code) => {}
                None => {
                    return Err(SearchError::new(
                        "status",
                        format!("{:?} is not an appointment status", token.code),
                    ));
                }
            }
        }
        if !statuses.is_empty() && filter.statuses.is_empty() {
            filter.ids = vec![AppointmentId(uuid::Uuid::nil())];
        }
    }
    Ok(filter)
}

fn is_fhir_appointment_status(code: &str) -> bool {
    matches!(
        code,
        "proposed" | "pending" | "entered-in-error" | "waitlist"
    )
}

async fn search_rows(
    state: &AppState,
    ctx: &Ctx,
    headers: &HeaderMap,
    raw: Option<&str>,
    resource_type: &'static str,
) -> Result<(Vec<Appointment>, i64, Query, i64, i64), ApiError> {
    let encounters = resource_type == "Encounter";
    let query = search_query(resource_type, raw, headers, &[])?;
    let action = if encounters {
        "fhir.encounter.search"
    } else {
        "fhir.appointment.search"
    };
    let reach = reach(
        ctx,
        state,
        resource_type,
        Need::Search,
        Access::AnyStaff,
        action,
        true,
    )
    .await?;
    let mut filter = filter(&query, state, encounters).map_err(bad_search)?;
    filter.visible_to = reach.clinician;
    if let Some(only) = reach.only_patient {
        if filter.patient_id.is_some_and(|p| p != only) {
            filter.ids = vec![AppointmentId(uuid::Uuid::nil())];
        }
        filter.patient_id = Some(only);
    }
    let count = search::count(&query).map_err(bad_search)?;
    let offset = search::offset(&query).map_err(bad_search)?;
    let (found, total) = appointments::page(state.db(), &filter, offset, count).await?;
    let patients: Vec<PatientId> = found.iter().map(|a| a.patient_id).collect();
    ctx.audit_list(state, &reach.caller, action, &patients)
        .await?;
    Ok((found, total, query, offset, count))
}

/// `GET /fhir/Appointment?date=&patient=&practitioner=&status=&_id=`
pub(super) async fn search(
    State(state): State<AppState>,
    ctx: Ctx,
    headers: HeaderMap,
    RawQuery(raw): RawQuery,
) -> Result<Fhir, ApiError> {
    let (found, total, query, offset, count) =
        search_rows(&state, &ctx, &headers, raw.as_deref(), "Appointment").await?;
    let base = base(&state);
    let resources = found
        .iter()
        .map(|a| resources::appointment(&base, a))
        .collect();
    Ok(offset_searchset(
        &base,
        "Appointment",
        &query,
        resources,
        offset,
        count,
        total,
    ))
}

/// `GET /fhir/Encounter?patient=&date=`
pub(super) async fn search_encounters(
    State(state): State<AppState>,
    ctx: Ctx,
    headers: HeaderMap,
    RawQuery(raw): RawQuery,
) -> Result<Fhir, ApiError> {
    let (found, total, query, offset, count) =
        search_rows(&state, &ctx, &headers, raw.as_deref(), "Encounter").await?;
    let base = base(&state);
    let resources = found.iter().filter_map(resources::encounter).collect();
    Ok(offset_searchset(
        &base,
        "Encounter",
        &query,
        resources,
        offset,
        count,
        total,
    ))
}

/// Loads an appointment behind its rule and the token's scopes. An unknown
/// id is a 404 only for callers who could see some appointment at all.
async fn guarded(
    state: &AppState,
    ctx: &Ctx,
    raw_id: &str,
    resource_type: &'static str,
    need: Need,
    action: &str,
) -> Result<Appointment, ApiError> {
    let found = match path_id(raw_id, resource_type) {
        Ok(id) => match appointments::get(state.db(), AppointmentId(id)).await {
            Ok(a) => Some(a),
            Err(bedside_records::RecordsError::NotFound(_)) => None,
            Err(e) => return Err(e.into()),
        },
        Err(_) => None,
    };
    let Some(appointment) = found else {
        // Decided as nobody's record: a caller who may not see every
        // patient gets 403 whether or not the id exists.
        reach(
            ctx,
            state,
            resource_type,
            need,
            Access::Patient(PatientId(uuid::Uuid::nil())),
            action,
            false,
        )
        .await?;
        return Err(ApiError::not_found(resource_type));
    };
    let access = match need {
        Need::Update => Access::ManageAppointment(&appointment),
        _ => Access::Appointment(&appointment),
    };
    reach(ctx, state, resource_type, need, access, action, false).await?;
    Ok(appointment)
}

/// `GET /fhir/Appointment/{id}`
pub(super) async fn read(
    State(state): State<AppState>,
    ctx: Ctx,
    ApiPath(id): ApiPath<String>,
) -> Result<Fhir, ApiError> {
    let appointment = guarded(
        &state,
        &ctx,
        &id,
        "Appointment",
        Need::Read,
        "fhir.appointment.read",
    )
    .await?;
    Ok(Fhir::versioned(
        StatusCode::OK,
        resources::appointment(&base(&state), &appointment),
    ))
}

/// `GET /fhir/Appointment/{id}/_history/{version}`: the current version only.
pub(super) async fn vread(
    state: State<AppState>,
    ctx: Ctx,
    ApiPath((id, version)): ApiPath<(String, String)>,
) -> Result<Fhir, ApiError> {
    super::current_version(read(state, ctx, ApiPath(id)).await?, &version)
}

/// `GET /fhir/Encounter/{id}`: 404 until the visit has started.
pub(super) async fn read_encounter(
    State(state): State<AppState>,
    ctx: Ctx,
    ApiPath(id): ApiPath<String>,
) -> Result<Fhir, ApiError> {
    let appointment = guarded(
        &state,
        &ctx,
        &id,
        "Encounter",
        Need::Read,
        "fhir.encounter.read",
    )
    .await?;
    let encounter =
        resources::encounter(&appointment).ok_or_else(|| ApiError::not_found("Encounter"))?;
    Ok(Fhir::versioned(StatusCode::OK, encounter))
}

/// `POST /fhir/Appointment`: books (status `booked`), under the same rule
/// as the REST API: admins, or a clinician into their own schedule for a
/// patient in their care.
pub(super) async fn create(
    State(state): State<AppState>,
    ctx: Ctx,
    body: Bytes,
) -> Result<Fhir, ApiError> {
    let base = base(&state);
    let body = json_body(&body)?;
    let parsed = input::appointment(&base, &body, None).map_err(bad_resource)?;
    reach(
        &ctx,
        &state,
        "Appointment",
        Need::Create,
        Access::Book {
            practitioner: parsed.practitioner,
            patient: parsed.patient,
        },
        "fhir.appointment.create",
        false,
    )
    .await?;
    if parsed.status != AppointmentStatus::Booked {
        return Err(bad_resource(input::InputError::new(
            "Appointment.status",
            "a new appointment is booked",
        )));
    }
    if parsed.starts_at < Utc::now() - chrono::Duration::minutes(PAST_TOLERANCE_MINUTES) {
        return Err(bad_resource(input::InputError::new(
            "Appointment.start",
            "must not be in the past",
        )));
    }
    let appointment = appointments::book(
        state.db(),
        &NewAppointment {
            patient_id: parsed.patient,
            practitioner_id: parsed.practitioner,
            starts_at: parsed.starts_at,
            length: parsed.length,
            kind: parsed.kind,
            reason: parsed.reason,
        },
    )
    .await?;
    tracing::info!(appointment = %appointment.id, "appointment booked through FHIR");
    let location = format!(
        "{}/_history/{}",
        base.full_url("Appointment", &appointment.id.to_string()),
        appointment.version
    );
    Ok(Fhir::versioned(
        StatusCode::CREATED,
        resources::appointment(&base, &appointment),
    )
    .with_location(&location))
}

/// `PUT /fhir/Appointment/{id}` with `If-Match`: reschedules a booked
/// appointment and/or moves its status along the lifecycle. The patient
/// and the clinician cannot change (cancel and book anew).
pub(super) async fn update(
    State(state): State<AppState>,
    ctx: Ctx,
    headers: HeaderMap,
    ApiPath(id): ApiPath<String>,
    body: Bytes,
) -> Result<Fhir, ApiError> {
    let current = guarded(
        &state,
        &ctx,
        &id,
        "Appointment",
        Need::Update,
        "fhir.appointment.update",
    )
    .await?;
    let version = required_version(&headers)?;
    let base = base(&state);
    let body = json_body(&body)?;
    let parsed = input::appointment(&base, &body, Some(&id)).map_err(bad_resource)?;
    if parsed.patient != current.patient_id || parsed.practitioner != current.practitioner_id {
        return Err(bad_resource(input::InputError::new(
            "Appointment.participant",
            "the patient and the practitioner of an appointment cannot change; cancel it and book anew",
        )));
    }
    let grace = chrono::Duration::from_std(state.settings().no_show_grace)
        .unwrap_or(chrono::Duration::minutes(15));
    let updated = appointments::amend(
        state.db(),
        current.id,
        version,
        &Amendment {
            starts_at: parsed.starts_at,
            length: parsed.length,
            kind: parsed.kind,
            reason: parsed.reason,
            status: parsed.status,
        },
        Utc::now(),
        grace,
    )
    .await?;
    tracing::info!(appointment = %updated.id, status = %updated.status, "appointment updated through FHIR");
    Ok(Fhir::versioned(
        StatusCode::OK,
        resources::appointment(&base, &updated),
    ))
}
