//! The patient's side: exchanging a join link for a visit session, the
//! visit itself, and consent. A patient reaches nothing else.

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use bedside_records::appointment::AppointmentStatus;
use bedside_records::audit::Outcome;
use bedside_records::consents::{self, Consent};
use bedside_records::domain::ConsentRecorder;
use bedside_records::ids::{AppointmentId, PatientId};
use bedside_records::{appointments, join_links, patients};
use chrono::Utc;
use serde::{Deserialize, Serialize};

use crate::app::AppState;
use crate::auth::Caller;
use crate::auth::tokens::TokenKind;
use crate::error::ApiError;
use crate::extract::ApiJson;
use crate::policy::{Access, Ctx};
use crate::routes::appointments::{AppointmentView, join_window};

/// A join link's token (the part after `#t=`).
#[derive(Deserialize, utoipa::ToSchema)]
pub(crate) struct JoinRequest {
    /// The token.
    token: String,
}

/// A visit session.
#[derive(Serialize, utoipa::ToSchema)]
pub(crate) struct VisitSession {
    /// Bearer token scoped to this one visit.
    access_token: String,
    /// Seconds until it expires (exchange the link again to renew).
    expires_in: u64,
    /// The visit.
    #[schema(value_type = String, format = Uuid)]
    appointment_id: AppointmentId,
}

/// Exchanges a patient's join link for a session scoped to that visit,
/// inside the link's window only.
#[utoipa::path(post, path = "/api/v1/auth/join", tag = "visit", request_body = JoinRequest, responses(
    (status = 200, body = VisitSession),
    (status = 401, body = crate::error::ErrorBody, description = "`invalid_join_link`"),
    (status = 403, body = crate::error::ErrorBody, description = "`join_link_early` (with `valid_from`) or `join_link_expired`")))]
pub(crate) async fn join(
    State(state): State<AppState>,
    ctx: Ctx,
    ApiJson(body): ApiJson<JoinRequest>,
) -> Result<Json<VisitSession>, ApiError> {
    // A link replaced by a newer one is simply invalid; the link of a visit
    // that is over or cancelled is answered with what happened to the visit.
    let found = join_links::lookup(state.db(), body.token.trim()).await?;
    let appointment = match &found {
        Some(found) => Some(appointments::get(state.db(), found.appointment_id).await?),
        None => None,
    };
    let (Some(found), Some(appointment)) = (found, appointment) else {
        ctx.audit_attempt(&state, "anonymous", None, "visit.join", Outcome::Denied)
            .await?;
        return Err(invalid_join_link());
    };
    if !found.live && !appointment.status.is_final() {
        ctx.audit_attempt(&state, "anonymous", None, "visit.join", Outcome::Denied)
            .await?;
        return Err(invalid_join_link());
    }
    let link = found.id;
    let (valid_from, valid_until) = join_window(state.settings(), &appointment);
    let now = Utc::now();
    let refusal = if now < valid_from {
        let mut error = ApiError::new(
            StatusCode::FORBIDDEN,
            "join_link_early",
            format!(
                "your visit opens at {}",
                valid_from
                    .with_timezone(&state.settings().time_zone)
                    .format("%H:%M on %e %B %Y")
            ),
        );
        let mut extra = serde_json::Map::new();
        extra.insert(
            "valid_from".into(),
            serde_json::Value::String(valid_from.to_rfc3339()),
        );
        error.extra = Some(extra);
        Some(error)
    } else if now >= valid_until
        || matches!(
            appointment.status,
            AppointmentStatus::Finished | AppointmentStatus::NoShow
        )
    {
        Some(ApiError::new(
            StatusCode::FORBIDDEN,
            "join_link_expired",
            "this visit has ended; contact the clinic if you need another",
        ))
    } else if appointment.status == AppointmentStatus::Cancelled {
        Some(ApiError::new(
            StatusCode::FORBIDDEN,
            "join_link_expired",
            "this visit was cancelled; contact the clinic to book another",
        ))
    } else {
        None
    };
    if let Some(error) = refusal {
        ctx.audit_attempt(
            &state,
            "patient",
            Some(appointment.patient_id),
            "visit.join",
            Outcome::Denied,
        )
        .await?;
        return Err(error);
    }
    ctx.audit_attempt(
        &state,
        "patient",
        Some(appointment.patient_id),
        "visit.join",
        Outcome::Allowed,
    )
    .await?;
    // Joining is arriving: the patient now waits for the clinician, and the
    // no-show sweep leaves them alone.
    if appointment.status == AppointmentStatus::Booked {
        let grace = chrono::Duration::from_std(state.settings().no_show_grace)
            .unwrap_or(chrono::Duration::minutes(15));
        appointments::transition(
            state.db(),
            appointment.id,
            AppointmentStatus::Arrived,
            now,
            grace,
        )
        .await?;
    }
    let keys = state.keys();
    // Never longer than the visit's window, never longer than an access token.
    let until_close = (valid_until - now).to_std().unwrap_or_default();
    let ttl = state
        .settings()
        .access_ttl
        .min(until_close)
        .max(std::time::Duration::from_secs(1));
    let mut claims = keys.claims(TokenKind::Visit, appointment.patient_id.0, ttl);
    claims.apt = Some(appointment.id);
    claims.sid = Some(link);
    tracing::info!(appointment = %appointment.id, "patient joined with link");
    Ok(Json(VisitSession {
        access_token: keys.sign(&claims),
        expires_in: ttl.as_secs(),
        appointment_id: appointment.id,
    }))
}

fn invalid_join_link() -> ApiError {
    ApiError::new(
        StatusCode::UNAUTHORIZED,
        "invalid_join_link",
        "this link is not valid; ask the clinic for a new one",
    )
}

/// The visit as the patient sees it.
#[derive(Serialize, utoipa::ToSchema)]
pub(crate) struct Visit {
    /// The appointment.
    appointment: AppointmentView,
    /// For the greeting.
    patient_given_name: String,
    /// Whether the patient must accept the consent text first.
    consent_required: bool,
    /// Version of the consent text.
    consent_version: String,
    /// The consent text.
    consent_text: String,
}

async fn own_visit(
    state: &AppState,
    ctx: &Ctx,
    action: &str,
) -> Result<(Caller, PatientId, AppointmentId), ApiError> {
    let caller = ctx.allow_list(state, Access::OwnVisit, action).await?;
    let Caller::Patient {
        appointment,
        patient,
        ..
    } = caller
    else {
        return Err(ApiError::forbidden());
    };
    Ok((caller, patient, appointment))
}

/// The caller's visit (visit sessions only).
#[utoipa::path(get, path = "/api/v1/visit", tag = "visit", security(("bearer" = [])), responses(
    (status = 200, body = Visit), (status = 401, body = crate::error::ErrorBody), (status = 403, body = crate::error::ErrorBody)))]
pub(crate) async fn current(
    State(state): State<AppState>,
    ctx: Ctx,
) -> Result<Json<Visit>, ApiError> {
    let (caller, patient, appointment) = own_visit(&state, &ctx, "visit.read").await?;
    ctx.audit_list(&state, &caller, "visit.read", &[patient])
        .await?;
    let appointment = appointments::get(state.db(), appointment).await?;
    let given_name = patients::get(state.db(), patient).await?.given_name;
    let settings = state.settings();
    let consent_required =
        !consents::has_accepted(state.db(), patient, &settings.consent_version).await?;
    Ok(Json(Visit {
        appointment: AppointmentView::new(appointment, settings, None),
        patient_given_name: given_name,
        consent_required,
        consent_version: settings.consent_version.clone(),
        consent_text: settings.consent_text.clone(),
    }))
}

/// The version of the consent text the patient accepts.
#[derive(Deserialize, utoipa::ToSchema)]
pub(crate) struct VisitConsentRequest {
    /// Must match the version shown.
    consent_version: String,
}

/// Records the patient's telemedicine consent.
#[utoipa::path(post, path = "/api/v1/visit/consent", tag = "visit", security(("bearer" = [])), request_body = VisitConsentRequest, responses(
    (status = 201, body = Consent), (status = 422, body = crate::error::ErrorBody, description = "the text changed since it was shown")))]
pub(crate) async fn consent(
    State(state): State<AppState>,
    ctx: Ctx,
    ApiJson(body): ApiJson<VisitConsentRequest>,
) -> Result<(StatusCode, Json<Consent>), ApiError> {
    let (caller, patient, appointment) = own_visit(&state, &ctx, "visit.consent").await?;
    if body.consent_version != state.settings().consent_version {
        return Err(ApiError::invalid(
            "consent_version",
            "consent_version: the consent text has changed; reload the page and read it again",
        ));
    }
    ctx.audit_list(&state, &caller, "visit.consent", &[patient])
        .await?;
    let consent = consents::record(
        state.db(),
        patient,
        &body.consent_version,
        ConsentRecorder::Patient,
        None,
        Some(appointment),
    )
    .await?;
    Ok((StatusCode::CREATED, Json(consent)))
}
