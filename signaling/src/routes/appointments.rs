//! Appointments: booking, the day's schedule, lifecycle transitions and
//! patient join links. Times travel as RFC 3339; lists by day use the
//! clinic's time zone, and every appointment also carries its local times.

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use bedside_records::appointment::AppointmentStatus;
use bedside_records::appointments::{
    self, Appointment, AppointmentFilter, NewAppointment, VisitLength,
};
use bedside_records::domain::{AppointmentKind, BoundedText, StaffRole};
use bedside_records::ids::{AppointmentId, PatientId, PractitionerId};
use bedside_records::join_links;
use chrono::{DateTime, NaiveDate, TimeZone, Utc};
use chrono_tz::Tz;
use serde::{Deserialize, Serialize};

use crate::app::{AppState, Settings};
use crate::auth::Caller;
use crate::error::ApiError;
use crate::extract::{ApiJson, ApiPath, ApiQuery, optional_param};
use crate::policy::{Access, Ctx};

/// An appointment as the API shows it.
#[derive(Serialize, utoipa::ToSchema)]
pub(crate) struct AppointmentView {
    #[schema(value_type = String, format = Uuid)]
    id: AppointmentId,
    #[schema(value_type = String, format = Uuid)]
    patient_id: PatientId,
    /// Patient's full name.
    patient_name: String,
    #[schema(value_type = String, format = Uuid)]
    practitioner_id: PractitionerId,
    /// Clinician's name.
    practitioner_name: String,
    /// Start (UTC).
    start: DateTime<Utc>,
    /// End (UTC).
    end: DateTime<Utc>,
    /// Start in the clinic's time zone, RFC 3339 with offset.
    start_local: String,
    /// End in the clinic's time zone.
    end_local: String,
    /// The clinic's time zone.
    time_zone: String,
    /// Length.
    duration_minutes: i64,
    /// `video` or `in_person`.
    kind: AppointmentKind,
    /// Reason for the visit.
    reason: String,
    /// Lifecycle status.
    status: AppointmentStatus,
    /// The patient's join link: only in the answer that created it.
    #[serde(skip_serializing_if = "Option::is_none")]
    join_url: Option<String>,
}

impl AppointmentView {
    pub(crate) fn new(a: Appointment, settings: &Settings, join_url: Option<String>) -> Self {
        let tz = settings.time_zone;
        Self {
            id: a.id,
            patient_id: a.patient_id,
            patient_name: a.patient_name,
            practitioner_id: a.practitioner_id,
            practitioner_name: a.practitioner_name,
            start: a.starts_at,
            end: a.ends_at,
            start_local: a.starts_at.with_timezone(&tz).to_rfc3339(),
            end_local: a.ends_at.with_timezone(&tz).to_rfc3339(),
            time_zone: tz.name().to_owned(),
            duration_minutes: (a.ends_at - a.starts_at).num_minutes(),
            kind: a.kind,
            reason: a.reason,
            status: a.status,
            join_url,
        }
    }
}

/// The UTC instants a calendar day of the clinic spans.
pub(crate) fn day_bounds(tz: Tz, day: NaiveDate) -> (DateTime<Utc>, DateTime<Utc>) {
    let start_of = |d: NaiveDate| {
        let midnight = d.and_hms_opt(0, 0, 0).expect("midnight exists");
        tz.from_local_datetime(&midnight)
            .earliest()
            // A DST gap at midnight: the day starts an hour later.
            .or_else(|| {
                tz.from_local_datetime(&(midnight + chrono::Duration::hours(1)))
                    .earliest()
            })
            .map(|t| t.with_timezone(&Utc))
            .unwrap_or_else(|| Utc.from_utc_datetime(&midnight))
    };
    (start_of(day), start_of(day.succ_opt().unwrap_or(day)))
}

/// Which appointments.
#[derive(Deserialize, utoipa::IntoParams)]
pub(crate) struct ListQuery {
    /// Day in the clinic's time zone, `YYYY-MM-DD`; default today.
    date: Option<String>,
    /// Clinician; a clinician's own by default.
    practitioner_id: Option<String>,
    /// Patient.
    patient_id: Option<String>,
}

/// A day's appointments, by start time.
#[utoipa::path(get, path = "/api/v1/appointments", tag = "appointments", security(("bearer" = [])), params(ListQuery), responses(
    (status = 200, body = [AppointmentView]), (status = 403, body = crate::error::ErrorBody), (status = 422, body = crate::error::ErrorBody)))]
pub(crate) async fn list(
    State(state): State<AppState>,
    ctx: Ctx,
    ApiQuery(query): ApiQuery<ListQuery>,
) -> Result<Json<Vec<AppointmentView>>, ApiError> {
    let tz = state.settings().time_zone;
    let day = match query.date.as_deref().filter(|d| !d.is_empty()) {
        None | Some("today") => Utc::now().with_timezone(&tz).date_naive(),
        Some(raw) => NaiveDate::parse_from_str(raw, "%Y-%m-%d")
            .map_err(|_| ApiError::invalid("date", "date: must be a day as YYYY-MM-DD"))?,
    };
    let requested: Option<PractitionerId> = optional_param(
        "practitioner_id",
        query.practitioner_id.as_deref(),
        "a practitioner id",
    )?;
    let patient: Option<PatientId> =
        optional_param("patient_id", query.patient_id.as_deref(), "a patient id")?;
    let practitioner = match (ctx.caller(), requested) {
        (
            Ok(Caller::Staff {
                role: StaffRole::Clinician,
                practitioner,
                ..
            }),
            None,
        ) => practitioner,
        (_, requested) => requested,
    };
    let caller = match practitioner {
        Some(pr) => {
            ctx.allow_list(&state, Access::ScheduleOf(pr), "appointment.list")
                .await?
        }
        None => {
            ctx.allow_list(&state, Access::Admin, "appointment.list")
                .await?
        }
    };
    let (from, to) = day_bounds(tz, day);
    let filter = AppointmentFilter {
        from: Some(from),
        to: Some(to),
        practitioner_id: practitioner,
        patient_id: patient,
        ..Default::default()
    };
    let list = appointments::list(state.db(), &filter).await?;
    let patients: Vec<PatientId> = list.iter().map(|a| a.patient_id).collect();
    ctx.audit_list(&state, &caller, "appointment.list", &patients)
        .await?;
    Ok(Json(
        list.into_iter()
            .map(|a| AppointmentView::new(a, state.settings(), None))
            .collect(),
    ))
}

/// A booking.
#[derive(Deserialize, utoipa::ToSchema)]
pub(crate) struct BookRequest {
    #[schema(value_type = String, format = Uuid)]
    patient_id: PatientId,
    #[schema(value_type = String, format = Uuid)]
    practitioner_id: PractitionerId,
    /// Start, RFC 3339 with offset.
    start: String,
    /// Length in minutes (5–480).
    duration_minutes: i64,
    /// `video` or `in_person`.
    kind: String,
    /// Reason for the visit.
    reason: String,
}

/// How far in the past a start may lie (clock skew, a form left open).
const PAST_TOLERANCE_MINUTES: i64 = 5;

/// Books an appointment; a video visit gets its patient join link.
#[utoipa::path(post, path = "/api/v1/appointments", tag = "appointments", security(("bearer" = [])), request_body = BookRequest, responses(
    (status = 201, body = AppointmentView), (status = 404, body = crate::error::ErrorBody),
    (status = 409, body = crate::error::ErrorBody, description = "`appointment_overlap`"), (status = 422, body = crate::error::ErrorBody)))]
pub(crate) async fn book(
    State(state): State<AppState>,
    ctx: Ctx,
    ApiJson(body): ApiJson<BookRequest>,
) -> Result<(StatusCode, Json<AppointmentView>), ApiError> {
    ctx.allow(
        &state,
        Access::Book {
            practitioner: body.practitioner_id,
            patient: body.patient_id,
        },
        "appointment.book",
    )
    .await?;
    let starts_at = DateTime::parse_from_rfc3339(body.start.trim())
        .map_err(|_| {
            ApiError::invalid(
                "start",
                "start: must be a date and time like 2026-11-23T09:30:00+01:00",
            )
        })?
        .with_timezone(&Utc);
    if starts_at < Utc::now() - chrono::Duration::minutes(PAST_TOLERANCE_MINUTES) {
        return Err(ApiError::invalid("start", "start: must not be in the past"));
    }
    let new = NewAppointment {
        patient_id: body.patient_id,
        practitioner_id: body.practitioner_id,
        starts_at,
        length: VisitLength::parse(body.duration_minutes)?,
        kind: AppointmentKind::parse(&body.kind)?,
        reason: BoundedText::parse("reason", &body.reason, 500)?,
    };
    let appointment = appointments::book(state.db(), &new).await?;
    let join_url = match appointment.kind {
        AppointmentKind::Video => Some(join_url(
            &state,
            join_links::issue(state.db(), appointment.id, state.link_secret()).await?,
        )),
        AppointmentKind::InPerson => None,
    };
    tracing::info!(appointment = %appointment.id, "appointment booked");
    Ok((
        StatusCode::CREATED,
        Json(AppointmentView::new(
            appointment,
            state.settings(),
            join_url,
        )),
    ))
}

/// The URL a patient opens. The token travels in the fragment, which
/// browsers never send to servers or in `Referer`, so it stays out of logs.
fn join_url(state: &AppState, token: String) -> String {
    format!(
        "{}/join#t={token}",
        state.settings().public_base_url.trim_end_matches('/')
    )
}

/// One appointment.
#[utoipa::path(get, path = "/api/v1/appointments/{id}", tag = "appointments", security(("bearer" = [])), params(("id" = String, Path, format = Uuid)), responses(
    (status = 200, body = AppointmentView), (status = 403, body = crate::error::ErrorBody), (status = 404, body = crate::error::ErrorBody)))]
pub(crate) async fn read(
    State(state): State<AppState>,
    ctx: Ctx,
    ApiPath(id): ApiPath<AppointmentId>,
) -> Result<Json<AppointmentView>, ApiError> {
    let appointment = guarded(&state, &ctx, id, false, "appointment.read").await?;
    Ok(Json(AppointmentView::new(
        appointment,
        state.settings(),
        None,
    )))
}

/// Loads an appointment behind its rule. An unknown id is a 404 only for
/// callers who could see some appointment at all, so ids cannot be probed
/// anonymously.
pub(crate) async fn guarded(
    state: &AppState,
    ctx: &Ctx,
    id: AppointmentId,
    manage: bool,
    action: &str,
) -> Result<Appointment, ApiError> {
    let appointment = match appointments::get(state.db(), id).await {
        Ok(a) => a,
        Err(bedside_records::RecordsError::NotFound(_)) => {
            ctx.allow_list(state, Access::AnyStaff, action).await?;
            return Err(ApiError::not_found("appointment"));
        }
        Err(e) => return Err(e.into()),
    };
    let access = if manage {
        Access::ManageAppointment(&appointment)
    } else {
        Access::Appointment(&appointment)
    };
    ctx.allow(state, access, action).await?;
    Ok(appointment)
}

/// The status to move to.
#[derive(Deserialize, utoipa::ToSchema)]
pub(crate) struct TransitionRequest {
    /// `arrived`, `in_progress`, `finished`, `cancelled` or `no_show`.
    to: String,
}

/// Moves an appointment along its lifecycle.
#[utoipa::path(post, path = "/api/v1/appointments/{id}/transitions", tag = "appointments", security(("bearer" = [])), params(("id" = String, Path, format = Uuid)), request_body = TransitionRequest, responses(
    (status = 200, body = AppointmentView), (status = 409, body = crate::error::ErrorBody, description = "`invalid_transition`"),
    (status = 422, body = crate::error::ErrorBody)))]
pub(crate) async fn transition(
    State(state): State<AppState>,
    ctx: Ctx,
    ApiPath(id): ApiPath<AppointmentId>,
    ApiJson(body): ApiJson<TransitionRequest>,
) -> Result<Json<AppointmentView>, ApiError> {
    let appointment = guarded(&state, &ctx, id, true, "appointment.transition").await?;
    let to = AppointmentStatus::parse(body.to.trim()).ok_or_else(|| {
        ApiError::invalid(
            "to",
            "to: must be one of arrived, in_progress, finished, cancelled, no_show",
        )
    })?;
    let grace = chrono::Duration::from_std(state.settings().no_show_grace)
        .unwrap_or(chrono::Duration::minutes(15));
    let updated =
        appointments::transition(state.db(), appointment.id, to, Utc::now(), grace).await?;
    tracing::info!(appointment = %id, status = %updated.status, "appointment status changed");
    Ok(Json(AppointmentView::new(updated, state.settings(), None)))
}

/// A patient's join link and when it works.
#[derive(Serialize, utoipa::ToSchema)]
pub(crate) struct JoinLink {
    /// The URL to send the patient.
    join_url: String,
    /// Opens at.
    valid_from: DateTime<Utc>,
    /// Closes at (the appointment's end).
    valid_until: DateTime<Utc>,
}

/// Issues a new join link for a video visit; earlier links stop working.
#[utoipa::path(post, path = "/api/v1/appointments/{id}/join-link", tag = "appointments", security(("bearer" = [])), params(("id" = String, Path, format = Uuid)), responses(
    (status = 200, body = JoinLink), (status = 409, body = crate::error::ErrorBody, description = "`not_a_video_visit`")))]
pub(crate) async fn new_join_link(
    State(state): State<AppState>,
    ctx: Ctx,
    ApiPath(id): ApiPath<AppointmentId>,
) -> Result<Json<JoinLink>, ApiError> {
    let appointment = guarded(&state, &ctx, id, true, "appointment.join_link.issue").await?;
    if appointment.kind != AppointmentKind::Video {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            "not_a_video_visit",
            "only video visits have join links",
        ));
    }
    let token = join_links::issue(state.db(), id, state.link_secret()).await?;
    let (valid_from, valid_until) = join_window(state.settings(), &appointment);
    Ok(Json(JoinLink {
        join_url: join_url(&state, token),
        valid_from,
        valid_until,
    }))
}

/// When a join link for `appointment` works: from the configured lead time
/// before the start until the end.
pub(crate) fn join_window(
    settings: &Settings,
    appointment: &Appointment,
) -> (DateTime<Utc>, DateTime<Utc>) {
    let lead = chrono::Duration::from_std(settings.join_opens_before)
        .unwrap_or(chrono::Duration::minutes(15));
    (appointment.starts_at - lead, appointment.ends_at)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clinic_days_follow_the_time_zone_across_dst() {
        let berlin = chrono_tz::Europe::Berlin;
        let (from, to) = day_bounds(berlin, NaiveDate::from_ymd_opt(2026, 11, 23).unwrap());
        assert_eq!(from.to_rfc3339(), "2026-11-22T23:00:00+00:00");
        assert_eq!(to - from, chrono::Duration::hours(24));
        // Spring forward: 23 hours.
        let (from, to) = day_bounds(berlin, NaiveDate::from_ymd_opt(2026, 3, 29).unwrap());
        assert_eq!(to - from, chrono::Duration::hours(23));
    }
}
