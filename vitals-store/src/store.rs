//! Writing readings and rejections.

use chrono::{DateTime, Utc};
use uuid::Uuid;

use crate::metric::Metric;

/// One reading to store, already validated and in its canonical unit, with
/// the patient its device was assigned to at the reading's time.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct NewReading {
    /// When it was measured.
    pub time: DateTime<Utc>,
    /// The device.
    pub device_id: Uuid,
    /// What was measured.
    pub metric: Metric,
    /// The patient it belongs to.
    pub patient_id: Uuid,
    /// The value.
    pub value: f64,
}

/// Inserts readings in one statement (column arrays through `UNNEST`);
/// readings already stored (same device, metric and time) are skipped, so
/// a redelivered batch is harmless. Returns how many rows were new.
///
/// # Errors
/// When the database fails; nothing of the batch is then stored.
pub async fn insert_batch(
    db: impl sqlx::PgExecutor<'_>,
    readings: &[NewReading],
) -> crate::Result<u64> {
    if readings.is_empty() {
        return Ok(0);
    }
    let mut times = Vec::with_capacity(readings.len());
    let mut devices = Vec::with_capacity(readings.len());
    let mut metrics = Vec::with_capacity(readings.len());
    let mut patients = Vec::with_capacity(readings.len());
    let mut values = Vec::with_capacity(readings.len());
    for r in readings {
        times.push(r.time);
        devices.push(r.device_id);
        metrics.push(r.metric.name());
        patients.push(r.patient_id);
        values.push(r.value);
    }
    // One statement: the new rows, then the per-patient latest values from
    // those rows only (a redelivered duplicate changes nothing). DISTINCT ON
    // keeps one row per key, as one INSERT may not update a row twice; a
    // late reading never replaces a newer latest value.
    let inserted: i64 = sqlx::query_scalar(
        "WITH new AS (
             INSERT INTO vitals (time, device_id, metric, patient_id, value)
             SELECT * FROM unnest($1::timestamptz[], $2::uuid[], $3::text[], $4::uuid[], $5::float8[])
             ON CONFLICT (device_id, metric, time) DO NOTHING
             RETURNING time, device_id, metric, patient_id, value
         ), latest AS (
             INSERT INTO vitals_latest (patient_id, metric, time, value, device_id)
             SELECT DISTINCT ON (patient_id, metric) patient_id, metric, time, value, device_id
             FROM new ORDER BY patient_id, metric, time DESC
             ON CONFLICT (patient_id, metric) DO UPDATE
                 SET time = EXCLUDED.time, value = EXCLUDED.value, device_id = EXCLUDED.device_id
                 WHERE vitals_latest.time < EXCLUDED.time
         )
         SELECT count(*) FROM new",
    )
    .bind(&times)
    .bind(&devices)
    .bind(&metrics)
    .bind(&patients)
    .bind(&values)
    .fetch_one(db)
    .await?;
    Ok(inserted.max(0) as u64)
}

/// A message or record the gateway refused.
#[derive(Debug, Clone)]
pub struct Rejected<'a> {
    /// The device, when the topic named a known one.
    pub device_id: Option<Uuid>,
    /// The MQTT topic.
    pub topic: &'a str,
    /// A bounded reason code (e.g. `unknown_unit`).
    pub reason: &'a str,
    /// A short explanation.
    pub detail: String,
    /// The record's position in its pack, for record-level refusals.
    pub record_index: Option<i32>,
    /// The payload (the caller bounds its size).
    pub payload: &'a [u8],
}

/// Stores refusals in one statement.
///
/// # Errors
/// When the database fails.
pub async fn insert_rejected(
    db: impl sqlx::PgExecutor<'_>,
    rejected: &[Rejected<'_>],
) -> crate::Result<()> {
    if rejected.is_empty() {
        return Ok(());
    }
    let devices: Vec<Option<Uuid>> = rejected.iter().map(|r| r.device_id).collect();
    let topics: Vec<&str> = rejected.iter().map(|r| r.topic).collect();
    let reasons: Vec<&str> = rejected.iter().map(|r| r.reason).collect();
    let details: Vec<&str> = rejected.iter().map(|r| r.detail.as_str()).collect();
    let indexes: Vec<Option<i32>> = rejected.iter().map(|r| r.record_index).collect();
    let payloads: Vec<&[u8]> = rejected.iter().map(|r| r.payload).collect();
    sqlx::query(
        "INSERT INTO rejected_messages (device_id, topic, reason, detail, record_index, payload)
         SELECT * FROM unnest($1::uuid[], $2::text[], $3::text[], $4::text[], $5::int4[], $6::bytea[])",
    )
    .bind(&devices)
    .bind(&topics)
    .bind(&reasons)
    .bind(&details)
    .bind(&indexes)
    .bind(&payloads)
    .execute(db)
    .await?;
    Ok(())
}

/// Deletes refused messages received before `before` (retention); returns
/// how many.
///
/// # Errors
/// When the database fails.
pub async fn purge_rejected_before(db: &sqlx::PgPool, before: DateTime<Utc>) -> crate::Result<u64> {
    Ok(
        sqlx::query("DELETE FROM rejected_messages WHERE received_at < $1")
            .bind(before)
            .execute(db)
            .await?
            .rows_affected(),
    )
}
