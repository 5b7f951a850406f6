//! Erasure of a patient on a recorded data-protection request (GDPR
//! art. 17).
//!
//! The patient row stays, as a pseudonymous shell: every appointment,
//! consent, note and audit row still points at the same id, but nothing
//! left says who the person was. In one transaction, with the request:
//! - demographics become placeholders (`Erased Patient`, MRN `erased-{id}`,
//!   birth date 1900-01-01, sex unknown, no e-mail or phone);
//! - the text of every visit note (signed ones too: the trigger lets an
//!   erasing transaction through) and every appointment reason become
//!   `[erased]`; guests' names and labels go;
//! - join and guest links are revoked, devices unassigned from now, and
//!   pending reminders skipped.
//!
//! Audit rows keep the patient's id, which means nothing once the row
//! behind it is a shell; consents keep their dates (proof the processing
//! had a basis). The vitals are the vitals store's part of the same
//! transaction (deleted or kept, per configuration).

use chrono::{DateTime, NaiveDate, Utc};
use serde::Serialize;
use sqlx::{PgConnection, PgPool};

use crate::domain::BoundedText;
use crate::ids::{PatientId, UserId};

/// What happened to the patient's readings.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum VitalsOnErasure {
    /// Deleted with their alerts and settings.
    Deleted,
    /// Kept under the pseudonymous id (for research or quality statistics).
    Pseudonymised,
}

impl VitalsOnErasure {
    fn as_str(self) -> &'static str {
        match self {
            VitalsOnErasure::Deleted => "deleted",
            VitalsOnErasure::Pseudonymised => "pseudonymised",
        }
    }
}

/// The request an erasure answers.
#[derive(Debug, Clone)]
pub struct ErasureRequest {
    /// When the person asked.
    pub received_on: NaiveDate,
    /// The clinic's reference for it (ticket or letter number).
    pub reference: BoundedText,
}

/// A carried-out erasure.
#[derive(Debug, Clone, Serialize, sqlx::FromRow, utoipa::ToSchema)]
pub struct Erasure {
    /// The (now pseudonymous) patient.
    pub patient_id: PatientId,
    /// When the person asked.
    pub received_on: NaiveDate,
    /// The clinic's reference.
    pub reference: String,
    /// `deleted` or `pseudonymised`.
    pub vitals: String,
    /// The admin who carried it out.
    pub carried_out_by: UserId,
    /// When.
    pub carried_out_at: DateTime<Utc>,
}

/// Erases the patient's identity inside `tx` (the caller commits, together
/// with the vitals store's part).
///
/// # Errors
/// [`crate::RecordsError::NotFound`] for an unknown patient,
/// [`crate::RecordsError::Duplicate`] for one already erased.
pub async fn erase(
    tx: &mut PgConnection,
    patient: PatientId,
    request: &ErasureRequest,
    vitals: VitalsOnErasure,
    by: UserId,
    now: DateTime<Utc>,
) -> crate::Result<Erasure> {
    let erased: Option<Option<DateTime<Utc>>> =
        sqlx::query_scalar("SELECT erased_at FROM patients WHERE id = $1 FOR UPDATE")
            .bind(patient)
            .fetch_optional(&mut *tx)
            .await?;
    match erased {
        None => return Err(crate::RecordsError::NotFound("patient")),
        Some(Some(_)) => {
            return Err(crate::RecordsError::Duplicate {
                what: "an erasure of this patient",
                field: "patient_id",
            });
        }
        Some(None) => {}
    }
    // Lets this transaction overwrite the patient's signed notes.
    sqlx::query("SELECT set_config('bedside.erasing', $1, true)")
        .bind(patient.0.to_string())
        .execute(&mut *tx)
        .await?;
    let statements: [&str; 8] = [
        "UPDATE patients SET mrn = 'erased-' || replace(id::text, '-', ''), given_name = 'Erased',
                family_name = 'Patient', birth_date = DATE '1900-01-01', sex = 'unknown',
                email = NULL, phone = NULL, erased_at = $2, updated_at = $2
         WHERE id = $1",
        "UPDATE visit_notes SET text = '[erased]', updated_at = $2 WHERE patient_id = $1",
        "UPDATE appointments SET reason = '[erased]', updated_at = $2 WHERE patient_id = $1",
        "UPDATE guest_links SET guest_name = NULL, label = '[erased]',
                revoked_at = coalesce(revoked_at, $2)
         WHERE appointment_id IN (SELECT id FROM appointments WHERE patient_id = $1)",
        "UPDATE join_links SET revoked_at = $2
         WHERE revoked_at IS NULL AND appointment_id IN (SELECT id FROM appointments WHERE patient_id = $1)",
        "UPDATE device_assignments SET assigned_to = $2
         WHERE patient_id = $1 AND assigned_to IS NULL AND assigned_from < $2",
        "DELETE FROM device_assignments WHERE patient_id = $1 AND assigned_to IS NULL",
        "UPDATE reminder_outbox SET status = 'skipped', last_error = 'erased', next_attempt_at = $2
         WHERE status IN ('pending', 'sending')
           AND appointment_id IN (SELECT id FROM appointments WHERE patient_id = $1)",
    ];
    for statement in statements {
        sqlx::query(statement)
            .bind(patient)
            .bind(now)
            .execute(&mut *tx)
            .await?;
    }
    Ok(sqlx::query_as::<_, Erasure>(
        "INSERT INTO erasure_requests (id, patient_id, received_on, reference, vitals, carried_out_by, carried_out_at)
         VALUES ($1, $2, $3, $4, $5, $6, $7)
         RETURNING patient_id, received_on, reference, vitals, carried_out_by, carried_out_at",
    )
    .bind(uuid::Uuid::new_v4())
    .bind(patient)
    .bind(request.received_on)
    .bind(request.reference.as_str())
    .bind(vitals.as_str())
    .bind(by)
    .bind(now)
    .fetch_one(&mut *tx)
    .await?)
}

/// The erasure of a patient, if there was one.
///
/// # Errors
/// Fails when the database does.
pub async fn of_patient(db: &PgPool, patient: PatientId) -> crate::Result<Option<Erasure>> {
    Ok(sqlx::query_as::<_, Erasure>(
        "SELECT patient_id, received_on, reference, vitals, carried_out_by, carried_out_at
         FROM erasure_requests WHERE patient_id = $1",
    )
    .bind(patient)
    .fetch_optional(db)
    .await?)
}
