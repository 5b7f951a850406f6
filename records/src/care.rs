//! Care relationships: which clinician looks after which patient. Together
//! with appointments they decide whether a clinician may see a patient.

use sqlx::PgPool;

use crate::ids::{PatientId, PractitionerId};
use crate::practitioners::Practitioner;

/// Puts a patient in a practitioner's care.
///
/// # Errors
/// [`crate::RecordsError::NotFound`] for an unknown patient or practitioner,
/// [`crate::RecordsError::Duplicate`] when the relationship exists.
pub async fn add(
    db: &PgPool,
    patient: PatientId,
    practitioner: PractitionerId,
) -> crate::Result<()> {
    sqlx::query("INSERT INTO care_relationships (patient_id, practitioner_id) VALUES ($1, $2)")
        .bind(patient)
        .bind(practitioner)
        .execute(db)
        .await?;
    Ok(())
}

/// Ends a care relationship.
///
/// # Errors
/// [`crate::RecordsError::NotFound`] when there was none.
pub async fn remove(
    db: &PgPool,
    patient: PatientId,
    practitioner: PractitionerId,
) -> crate::Result<()> {
    let removed = sqlx::query(
        "DELETE FROM care_relationships WHERE patient_id = $1 AND practitioner_id = $2",
    )
    .bind(patient)
    .bind(practitioner)
    .execute(db)
    .await?
    .rows_affected();
    if removed == 0 {
        return Err(crate::RecordsError::NotFound("care relationship"));
    }
    Ok(())
}

/// The practitioners caring for a patient.
///
/// # Errors
/// Fails when the database does.
pub async fn care_team(db: &PgPool, patient: PatientId) -> crate::Result<Vec<Practitioner>> {
    Ok(sqlx::query_as::<_, Practitioner>(
        "SELECT p.id, p.user_id, p.name, u.email, p.qualification, p.active
         FROM care_relationships c
         JOIN practitioners p ON p.id = c.practitioner_id
         LEFT JOIN users u ON u.id = p.user_id
         WHERE c.patient_id = $1 ORDER BY p.name",
    )
    .bind(patient)
    .fetch_all(db)
    .await?)
}

/// Whether a practitioner may see a patient: a care relationship or an
/// appointment between them that was not cancelled (a booking that never
/// happened grants nothing).
///
/// # Errors
/// Fails when the database does.
pub async fn is_related(
    db: &PgPool,
    practitioner: PractitionerId,
    patient: PatientId,
) -> crate::Result<bool> {
    Ok(sqlx::query_scalar(sqlx::AssertSqlSafe(format!(
        "SELECT {}",
        related_sql("$1", "$2")
    )))
    .bind(practitioner)
    .bind(patient)
    .fetch_one(db)
    .await?)
}

/// The SQL condition "the practitioner `practitioner` (an SQL expression)
/// is related to the patient `patient`": in their care, or with an
/// appointment with them that was not cancelled. The one definition the
/// policy's check and every list filtered to a clinician's patients share,
/// so a list never shows what a read would refuse.
pub(crate) fn related_sql(practitioner: &str, patient: &str) -> String {
    format!(
        "(EXISTS (SELECT 1 FROM care_relationships rel_c
                  WHERE rel_c.practitioner_id = {practitioner} AND rel_c.patient_id = {patient})
          OR EXISTS (SELECT 1 FROM appointments rel_a
                     WHERE rel_a.practitioner_id = {practitioner} AND rel_a.patient_id = {patient}
                       AND rel_a.status <> 'cancelled'))"
    )
}
