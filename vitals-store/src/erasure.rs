//! The vitals' part of erasing a patient (see `bedside_records::erasure`):
//! run inside the same transaction, so either the person is erased
//! everywhere or nowhere.

use sqlx::PgConnection;
use uuid::Uuid;

/// Deletes every reading of the patient, their latest values, alerts (with
/// their events), thresholds and NEWS2 settings. Returns the readings
/// deleted. Triggers announce the change to the alert engines' copies.
///
/// # Errors
/// When the database fails.
pub async fn delete_patient_data(tx: &mut PgConnection, patient: Uuid) -> crate::Result<u64> {
    let readings = sqlx::query("DELETE FROM vitals WHERE patient_id = $1")
        .bind(patient)
        .execute(&mut *tx)
        .await?
        .rows_affected();
    for statement in [
        "DELETE FROM vitals_latest WHERE patient_id = $1",
        "DELETE FROM alert_events WHERE alert_id IN (SELECT id FROM alerts WHERE patient_id = $1)",
        "DELETE FROM alerts WHERE patient_id = $1",
        "DELETE FROM alert_thresholds WHERE patient_id = $1",
        "DELETE FROM patient_news2_settings WHERE patient_id = $1",
    ] {
        sqlx::query(statement)
            .bind(patient)
            .execute(&mut *tx)
            .await?;
    }
    Ok(readings)
}
