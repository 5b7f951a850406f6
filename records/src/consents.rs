//! Telemedicine consent: which version of the consent text a patient
//! accepted, when, and who recorded it.

use chrono::{DateTime, Utc};
use serde::Serialize;
use sqlx::PgPool;

use crate::domain::ConsentRecorder;
use crate::ids::{AppointmentId, ConsentId, PatientId, UserId};

/// A recorded consent.
#[derive(Debug, Clone, Serialize, sqlx::FromRow, utoipa::ToSchema)]
pub struct Consent {
    /// Id.
    pub id: ConsentId,
    /// Patient.
    pub patient_id: PatientId,
    /// Always `telemedicine` for now.
    pub kind: String,
    /// Version of the consent text accepted.
    pub text_version: String,
    /// When.
    pub accepted_at: DateTime<Utc>,
    /// Who recorded it.
    pub recorded_by_role: ConsentRecorder,
}

/// Records that a patient accepted `text_version` of the telemedicine consent.
///
/// # Errors
/// [`crate::RecordsError::NotFound`] for an unknown patient.
pub async fn record(
    db: &PgPool,
    patient: PatientId,
    text_version: &str,
    recorded_by: ConsentRecorder,
    recorded_by_user: Option<UserId>,
    appointment: Option<AppointmentId>,
) -> crate::Result<Consent> {
    Ok(sqlx::query_as::<_, Consent>(
        "INSERT INTO consents (id, patient_id, kind, text_version, recorded_by_role, recorded_by_user, appointment_id)
         VALUES ($1, $2, 'telemedicine', $3, $4, $5, $6)
         RETURNING id, patient_id, kind, text_version, accepted_at, recorded_by_role",
    )
    .bind(ConsentId::new())
    .bind(patient)
    .bind(text_version)
    .bind(recorded_by)
    .bind(recorded_by_user)
    .bind(appointment)
    .fetch_one(db)
    .await?)
}

/// A patient's consents, newest first.
///
/// # Errors
/// Fails when the database does.
pub async fn for_patient(db: &PgPool, patient: PatientId) -> crate::Result<Vec<Consent>> {
    Ok(sqlx::query_as::<_, Consent>(
        "SELECT id, patient_id, kind, text_version, accepted_at, recorded_by_role
         FROM consents WHERE patient_id = $1 ORDER BY accepted_at DESC, id",
    )
    .bind(patient)
    .fetch_all(db)
    .await?)
}

/// One consent.
///
/// # Errors
/// Fails when the database does.
pub async fn get(db: &PgPool, id: ConsentId) -> crate::Result<Option<Consent>> {
    Ok(sqlx::query_as::<_, Consent>(
        "SELECT id, patient_id, kind, text_version, accepted_at, recorded_by_role
         FROM consents WHERE id = $1",
    )
    .bind(id)
    .fetch_optional(db)
    .await?)
}

/// Whether the patient has accepted this version of the text.
///
/// # Errors
/// Fails when the database does.
pub async fn has_accepted(
    db: &PgPool,
    patient: PatientId,
    text_version: &str,
) -> crate::Result<bool> {
    Ok(sqlx::query_scalar(
        "SELECT EXISTS (SELECT 1 FROM consents WHERE patient_id = $1 AND kind = 'telemedicine' AND text_version = $2)",
    )
    .bind(patient)
    .bind(text_version)
    .fetch_one(db)
    .await?)
}
