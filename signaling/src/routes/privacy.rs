//! Data-protection requests: a patient's whole record for an access
//! request (GDPR art. 15, 20), and erasure on a recorded request (art. 17).
//! Admins only; every call is audited with the patient.

use axum::Json;
use axum::extract::State;
use axum::http::{HeaderValue, header};
use axum::response::Response;
use bedside_records::domain::BoundedText;
use bedside_records::erasure::{self, Erasure, ErasureRequest};
use bedside_records::ids::PatientId;
use chrono::{NaiveDate, Utc};
use serde::Deserialize;

use crate::app::AppState;
use crate::error::ApiError;
use crate::extract::{ApiJson, ApiPath};
use crate::policy::{Access, Ctx};

/// The patient's whole record as one FHIR Bundle (type `collection`): the
/// `Patient/$everything` contents plus the visit notes (DocumentReference)
/// and every audit row about the patient (AuditEvent), streamed.
#[utoipa::path(get, path = "/api/v1/patients/{id}/export", tag = "privacy", security(("bearer" = [])), params(("id" = String, Path, format = Uuid)), responses(
    (status = 200, description = "a FHIR R4 Bundle, application/fhir+json, as an attachment"),
    (status = 403, body = crate::error::ErrorBody), (status = 404, body = crate::error::ErrorBody)))]
pub(crate) async fn export(
    State(state): State<AppState>,
    ctx: Ctx,
    ApiPath(id): ApiPath<PatientId>,
) -> Result<Response, ApiError> {
    ctx.allow(&state, Access::AdminFor(id), "patient.export")
        .await?;
    let base = crate::fhir::base(&state);
    let self_link = format!(
        "{}/api/v1/patients/{id}/export",
        state.settings().public_base_url.trim_end_matches('/')
    );
    let mut response = crate::fhir::record::stream(
        state.db(),
        base,
        id,
        crate::fhir::record::Contents {
            may: &|_| true,
            notes: true,
            audit: true,
            bundle_type: "collection",
            self_link,
        },
    )
    .await?;
    if let Ok(value) = HeaderValue::from_str(&format!(
        "attachment; filename=\"patient-{id}-{}.json\"",
        Utc::now().format("%Y%m%d")
    )) {
        response
            .headers_mut()
            .insert(header::CONTENT_DISPOSITION, value);
    }
    tracing::info!(patient = %id, "patient record exported");
    Ok(response)
}

/// A recorded erasure request.
#[derive(Deserialize, utoipa::ToSchema)]
pub(crate) struct ErasureBody {
    /// When the person asked (YYYY-MM-DD).
    received_on: String,
    /// The clinic's reference for the request (ticket or letter number; no
    /// personal data).
    reference: String,
}

/// Erases the patient's identity on their recorded request: demographics,
/// note texts, appointment reasons and guests' names are overwritten, links
/// revoked, devices unassigned, and the readings deleted or kept under the
/// pseudonymous id (`privacy.erasure_vitals`). Audit rows stay, with ids
/// that no longer lead to a person.
#[utoipa::path(post, path = "/api/v1/patients/{id}/erasure", tag = "privacy", security(("bearer" = [])), params(("id" = String, Path, format = Uuid)), request_body = ErasureBody, responses(
    (status = 200, body = Erasure), (status = 403, body = crate::error::ErrorBody), (status = 404, body = crate::error::ErrorBody),
    (status = 409, body = crate::error::ErrorBody, description = "`duplicate`: already erased"), (status = 422, body = crate::error::ErrorBody)))]
pub(crate) async fn erase(
    State(state): State<AppState>,
    ctx: Ctx,
    ApiPath(id): ApiPath<PatientId>,
    ApiJson(body): ApiJson<ErasureBody>,
) -> Result<Json<Erasure>, ApiError> {
    let caller = ctx
        .allow(&state, Access::AdminFor(id), "patient.erase")
        .await?;
    let received_on = NaiveDate::parse_from_str(body.received_on.trim(), "%Y-%m-%d")
        .ok()
        .filter(|d| *d <= Utc::now().date_naive())
        .ok_or_else(|| {
            ApiError::invalid(
                "received_on",
                "received_on: must be the date of the request, YYYY-MM-DD, not in the future",
            )
        })?;
    let request = ErasureRequest {
        received_on,
        reference: BoundedText::parse("reference", &body.reference, 100)?,
    };
    let by = caller.user().ok_or_else(ApiError::forbidden)?;
    let vitals = state.settings().erasure_vitals;
    let mut tx = state
        .db()
        .begin()
        .await
        .map_err(bedside_records::RecordsError::from)?;
    let done = erasure::erase(&mut tx, id, &request, vitals, by, Utc::now()).await?;
    let deleted = match vitals {
        erasure::VitalsOnErasure::Deleted => {
            bedside_vitals_store::erasure::delete_patient_data(&mut tx, id.0).await?
        }
        erasure::VitalsOnErasure::Pseudonymised => 0,
    };
    tx.commit()
        .await
        .map_err(bedside_records::RecordsError::from)?;
    tracing::info!(patient = %id, readings_deleted = deleted, "patient erased on request");
    Ok(Json(done))
}

/// The erasure of a patient, if one was carried out.
#[utoipa::path(get, path = "/api/v1/patients/{id}/erasure", tag = "privacy", security(("bearer" = [])), params(("id" = String, Path, format = Uuid)), responses(
    (status = 200, body = Erasure), (status = 403, body = crate::error::ErrorBody), (status = 404, body = crate::error::ErrorBody)))]
pub(crate) async fn erasure_of(
    State(state): State<AppState>,
    ctx: Ctx,
    ApiPath(id): ApiPath<PatientId>,
) -> Result<Json<Erasure>, ApiError> {
    ctx.allow(&state, Access::AdminFor(id), "patient.erasure.read")
        .await?;
    erasure::of_patient(state.db(), id)
        .await?
        .map(Json)
        .ok_or_else(|| ApiError::not_found("erasure"))
}
