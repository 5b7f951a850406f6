//! Alerts in the database: the one live alert per patient and rule, its
//! transitions as numbered events (the live feed's sequence), and
//! per-patient thresholds. Severities and statuses are the alert engine's
//! words, stored as text; this module only keeps them.

use chrono::{DateTime, Utc};
use serde::Serialize;
use sqlx::{PgConnection, PgPool};
use uuid::Uuid;

/// An alert as stored.
#[derive(Debug, Clone, PartialEq, Serialize, sqlx::FromRow, utoipa::ToSchema)]
pub struct Alert {
    /// Id.
    pub id: Uuid,
    /// The patient.
    pub patient_id: Uuid,
    /// `threshold:<metric>`, `news2` or `offline:<device id>`.
    pub rule: String,
    /// `low`, `medium`, `high` or `critical`.
    pub severity: String,
    /// `open`, `acknowledged` or `resolved`.
    pub status: String,
    /// Raised.
    pub opened_at: DateTime<Utc>,
    /// Last change.
    pub updated_at: DateTime<Utc>,
    /// Taken by a clinician.
    pub acknowledged_at: Option<DateTime<Utc>>,
    /// Who took it.
    pub acknowledged_by: Option<Uuid>,
    /// Over.
    pub resolved_at: Option<DateTime<Utc>>,
    /// Who resolved it (none: it cleared by itself).
    pub resolved_by: Option<Uuid>,
    /// What the rule saw (value, score, parameters).
    #[schema(value_type = Object)]
    pub detail: serde_json::Value,
}

/// One transition, numbered.
#[derive(Debug, Clone, PartialEq, Serialize, sqlx::FromRow, utoipa::ToSchema)]
pub struct AlertEvent {
    /// Sequence number: strictly increasing across all alerts.
    pub seq: i64,
    /// The alert.
    pub alert_id: Uuid,
    /// When.
    pub at: DateTime<Utc>,
    /// `opened`, `escalated`, `acknowledged` or `resolved`.
    pub kind: String,
    /// The severity after the transition.
    pub severity: String,
    /// The clinician, for acknowledgement and manual resolution.
    pub actor: Option<Uuid>,
}

const COLUMNS: &str = "id, patient_id, rule, severity, status, opened_at, updated_at, acknowledged_at, acknowledged_by, resolved_at, resolved_by, detail";

/// The live (open or acknowledged) alert of a patient for a rule, locked
/// for the rest of the transaction so concurrent evaluations serialise.
///
/// # Errors
/// When the database fails.
pub async fn live_for_update(
    tx: &mut PgConnection,
    patient: Uuid,
    rule: &str,
) -> crate::Result<Option<Alert>> {
    Ok(sqlx::query_as::<_, Alert>(sqlx::AssertSqlSafe(format!(
        "SELECT {COLUMNS} FROM alerts WHERE patient_id = $1 AND rule = $2 AND status <> 'resolved' FOR UPDATE"
    )))
    .bind(patient)
    .bind(rule)
    .fetch_optional(tx)
    .await?)
}

/// A committed transition: the alert as it stands after it, and the
/// numbered event. Everything a live feed shows, so nobody reads it back.
#[derive(Debug, Clone, PartialEq)]
pub struct Transition {
    /// The alert after the transition.
    pub alert: Alert,
    /// The transition.
    pub event: AlertEvent,
}

#[derive(sqlx::FromRow)]
struct TransitionRow {
    #[sqlx(flatten)]
    alert: Alert,
    seq: i64,
    event_at: DateTime<Utc>,
    event_kind: String,
    event_severity: String,
    event_actor: Option<Uuid>,
}

impl From<TransitionRow> for Transition {
    fn from(row: TransitionRow) -> Self {
        Transition {
            event: AlertEvent {
                seq: row.seq,
                alert_id: row.alert.id,
                at: row.event_at,
                kind: row.event_kind,
                severity: row.event_severity,
                actor: row.event_actor,
            },
            alert: row.alert,
        }
    }
}

/// One statement that changes an alert (`change`: a data-modifying
/// statement returning the alert's columns) and records the transition as
/// an event of `kind` by actor `$actor_param`: one round trip, on every
/// alert's path.
fn transition_sql(change: &str, kind: &str, actor_param: &str) -> String {
    format!(
        "WITH a AS ({change} RETURNING {COLUMNS}),
              e AS (INSERT INTO alert_events (alert_id, kind, severity, actor)
                    SELECT id, '{kind}', severity, {actor_param}::uuid FROM a
                    RETURNING seq, at, kind, severity, actor)
         SELECT a.*, e.seq, e.at AS event_at, e.kind AS event_kind,
                e.severity AS event_severity, e.actor AS event_actor
         FROM a, e"
    )
}

/// Opens an alert.
///
/// # Errors
/// When the database fails, or a live alert for the same patient and rule
/// exists (the unique index refuses the duplicate).
pub async fn open(
    tx: &mut PgConnection,
    patient: Uuid,
    rule: &str,
    severity: &str,
    detail: &serde_json::Value,
    at: DateTime<Utc>,
) -> crate::Result<Transition> {
    let sql = transition_sql(
        "INSERT INTO alerts (id, patient_id, rule, severity, status, opened_at, updated_at, detail)
         VALUES ($1, $2, $3, $4, 'open', $5, $5, $6)",
        "opened",
        "NULL",
    );
    Ok(sqlx::query_as::<_, TransitionRow>(sqlx::AssertSqlSafe(sql))
        .bind(Uuid::now_v7())
        .bind(patient)
        .bind(rule)
        .bind(severity)
        .bind(at)
        .bind(detail)
        .fetch_one(tx)
        .await?
        .into())
}

/// Raises a live alert's severity; an acknowledged alert opens again.
///
/// # Errors
/// When the database fails.
pub async fn escalate(
    tx: &mut PgConnection,
    alert: Uuid,
    severity: &str,
    detail: &serde_json::Value,
) -> crate::Result<Transition> {
    let sql = transition_sql(
        "UPDATE alerts SET severity = $2, status = 'open', acknowledged_at = NULL, acknowledged_by = NULL,
                updated_at = now(), detail = $3
         WHERE id = $1",
        "escalated",
        "NULL",
    );
    Ok(sqlx::query_as::<_, TransitionRow>(sqlx::AssertSqlSafe(sql))
        .bind(alert)
        .bind(severity)
        .bind(detail)
        .fetch_one(tx)
        .await?
        .into())
}

/// Resolves a live alert, by a clinician or (with `by` empty) automatically.
///
/// # Errors
/// When the database fails.
pub async fn resolve(
    tx: &mut PgConnection,
    alert: Uuid,
    by: Option<Uuid>,
) -> crate::Result<Transition> {
    let sql = transition_sql(
        "UPDATE alerts SET status = 'resolved', resolved_at = now(), resolved_by = $2, updated_at = now()
         WHERE id = $1",
        "resolved",
        "$2",
    );
    Ok(sqlx::query_as::<_, TransitionRow>(sqlx::AssertSqlSafe(sql))
        .bind(alert)
        .bind(by)
        .fetch_one(tx)
        .await?
        .into())
}

/// Acknowledges an open alert. `None` when it is not open (already taken,
/// or resolved) or does not exist.
///
/// # Errors
/// When the database fails.
pub async fn acknowledge(db: &PgPool, alert: Uuid, by: Uuid) -> crate::Result<Option<Transition>> {
    let sql = transition_sql(
        "UPDATE alerts SET status = 'acknowledged', acknowledged_at = now(), acknowledged_by = $2, updated_at = now()
         WHERE id = $1 AND status = 'open'",
        "acknowledged",
        "$2",
    );
    Ok(sqlx::query_as::<_, TransitionRow>(sqlx::AssertSqlSafe(sql))
        .bind(alert)
        .bind(by)
        .fetch_optional(db)
        .await?
        .map(Into::into))
}

/// Live alerts of the given patients, most urgent and newest first.
///
/// # Errors
/// When the database fails.
pub async fn live_for_patients(db: &PgPool, patients: &[Uuid]) -> crate::Result<Vec<Alert>> {
    Ok(sqlx::query_as::<_, Alert>(sqlx::AssertSqlSafe(format!(
        "SELECT {COLUMNS} FROM alerts WHERE patient_id = ANY($1) AND status <> 'resolved'
         ORDER BY array_position(ARRAY['critical','high','medium','low'], severity), opened_at DESC"
    )))
    .bind(patients)
    .fetch_all(db)
    .await?)
}

/// A patient's alerts, live and resolved, newest first, at most `limit`.
///
/// # Errors
/// When the database fails.
pub async fn for_patient(db: &PgPool, patient: Uuid, limit: i64) -> crate::Result<Vec<Alert>> {
    Ok(sqlx::query_as::<_, Alert>(sqlx::AssertSqlSafe(format!(
        "SELECT {COLUMNS} FROM alerts WHERE patient_id = $1 ORDER BY opened_at DESC, id LIMIT $2"
    )))
    .bind(patient)
    .bind(limit.clamp(1, 100_000))
    .fetch_all(db)
    .await?)
}

/// One alert.
///
/// # Errors
/// When the database fails.
pub async fn get(db: &PgPool, alert: Uuid) -> crate::Result<Option<Alert>> {
    Ok(sqlx::query_as::<_, Alert>(sqlx::AssertSqlSafe(format!(
        "SELECT {COLUMNS} FROM alerts WHERE id = $1"
    )))
    .bind(alert)
    .fetch_optional(db)
    .await?)
}

/// Events after `seq` for alerts of the given patients, oldest first: what
/// a reconnecting feed client missed.
///
/// # Errors
/// When the database fails.
pub async fn events_since(
    db: &PgPool,
    seq: i64,
    patients: &[Uuid],
) -> crate::Result<Vec<AlertEvent>> {
    Ok(sqlx::query_as::<_, AlertEvent>(
        "SELECT e.seq, e.alert_id, e.at, e.kind, e.severity, e.actor
         FROM alert_events e JOIN alerts a ON a.id = e.alert_id
         WHERE e.seq > $1 AND a.patient_id = ANY($2) ORDER BY e.seq",
    )
    .bind(seq)
    .bind(patients)
    .fetch_all(db)
    .await?)
}

/// Each given alert's newest event number, as (alert, seq).
///
/// # Errors
/// When the database fails.
pub async fn newest_events(db: &PgPool, alerts: &[Uuid]) -> crate::Result<Vec<(Uuid, i64)>> {
    Ok(sqlx::query_as(
        "SELECT alert_id, max(seq) FROM alert_events WHERE alert_id = ANY($1) GROUP BY alert_id",
    )
    .bind(alerts)
    .fetch_all(db)
    .await?)
}

/// The newest event number (0 when none): a feed snapshot's position.
///
/// # Errors
/// When the database fails.
pub async fn latest_seq(db: &PgPool) -> crate::Result<i64> {
    Ok(
        sqlx::query_scalar("SELECT coalesce(max(seq), 0) FROM alert_events")
            .fetch_one(db)
            .await?,
    )
}

/// A patient's threshold overrides as (metric, low, high).
///
/// # Errors
/// When the database fails.
pub async fn thresholds(
    db: impl sqlx::PgExecutor<'_>,
    patient: Uuid,
) -> crate::Result<Vec<(String, Option<f64>, Option<f64>)>> {
    Ok(sqlx::query_as(
        "SELECT metric, low, high FROM alert_thresholds WHERE patient_id = $1 ORDER BY metric",
    )
    .bind(patient)
    .fetch_all(db)
    .await?)
}

/// The threshold overrides of several patients as (patient, metric, low, high).
///
/// # Errors
/// When the database fails.
pub async fn thresholds_for(
    db: &PgPool,
    patients: &[Uuid],
) -> crate::Result<Vec<(Uuid, String, Option<f64>, Option<f64>)>> {
    Ok(sqlx::query_as(
        "SELECT patient_id, metric, low, high FROM alert_thresholds WHERE patient_id = ANY($1)",
    )
    .bind(patients)
    .fetch_all(db)
    .await?)
}

/// Sets (or with both limits empty, removes) a patient's threshold for a metric.
///
/// # Errors
/// When the database fails or `low >= high`.
pub async fn set_threshold(
    db: &PgPool,
    patient: Uuid,
    metric: &str,
    low: Option<f64>,
    high: Option<f64>,
    by: Uuid,
) -> crate::Result<()> {
    if low.is_none() && high.is_none() {
        sqlx::query("DELETE FROM alert_thresholds WHERE patient_id = $1 AND metric = $2")
            .bind(patient)
            .bind(metric)
            .execute(db)
            .await?;
        return Ok(());
    }
    sqlx::query(
        "INSERT INTO alert_thresholds (patient_id, metric, low, high, updated_by) VALUES ($1, $2, $3, $4, $5)
         ON CONFLICT (patient_id, metric) DO UPDATE SET low = $3, high = $4, updated_by = $5, updated_at = now()",
    )
    .bind(patient)
    .bind(metric)
    .bind(low)
    .bind(high)
    .bind(by)
    .execute(db)
    .await?;
    Ok(())
}

/// Open (unacknowledged) alerts unchanged since before `cutoff`: candidates
/// for escalation because nobody has taken them.
///
/// # Errors
/// When the database fails.
pub async fn stale_open(db: &PgPool, cutoff: DateTime<Utc>) -> crate::Result<Vec<Alert>> {
    Ok(sqlx::query_as::<_, Alert>(sqlx::AssertSqlSafe(format!(
        "SELECT {COLUMNS} FROM alerts WHERE status = 'open' AND updated_at < $1 ORDER BY updated_at LIMIT 1000"
    )))
    .bind(cutoff)
    .fetch_all(db)
    .await?)
}

/// Of `evidence` as (index, patient, device, time), the indexes with some
/// (device, time) outside every assignment of that device to that patient
/// (the assignment history of the records crate).
///
/// # Errors
/// When the database fails.
pub async fn unfounded(
    tx: &mut PgConnection,
    evidence: &[(usize, Uuid, Uuid, DateTime<Utc>)],
) -> crate::Result<std::collections::BTreeSet<usize>> {
    if evidence.is_empty() {
        return Ok(std::collections::BTreeSet::new());
    }
    let indexes: Vec<i64> = evidence.iter().map(|e| e.0 as i64).collect();
    let patients: Vec<Uuid> = evidence.iter().map(|e| e.1).collect();
    let devices: Vec<Uuid> = evidence.iter().map(|e| e.2).collect();
    let times: Vec<DateTime<Utc>> = evidence.iter().map(|e| e.3).collect();
    let failing: Vec<i64> = sqlx::query_scalar(
        "SELECT DISTINCT e.i FROM unnest($1::bigint[], $2::uuid[], $3::uuid[], $4::timestamptz[])
                AS e(i, patient, device, time)
         WHERE NOT EXISTS (
             SELECT 1 FROM device_assignments a
             WHERE a.device_id = e.device AND a.patient_id = e.patient
               AND a.assigned_from <= e.time AND (a.assigned_to IS NULL OR e.time < a.assigned_to))",
    )
    .bind(indexes)
    .bind(patients)
    .bind(devices)
    .bind(times)
    .fetch_all(&mut *tx)
    .await?;
    Ok(failing.into_iter().map(|i| i as usize).collect())
}

/// The SpO2 scale (1 or 2) of those of `patients` who have one set; the
/// others are on scale 1.
///
/// # Errors
/// When the database fails.
pub async fn spo2_scales_for(db: &PgPool, patients: &[Uuid]) -> crate::Result<Vec<(Uuid, i16)>> {
    Ok(sqlx::query_as(
        "SELECT patient_id, spo2_scale FROM patient_news2_settings WHERE patient_id = ANY($1)",
    )
    .bind(patients)
    .fetch_all(db)
    .await?)
}

/// A patient's SpO2 scale: 1 unless a clinician set 2.
///
/// # Errors
/// When the database fails.
pub async fn spo2_scale(db: impl sqlx::PgExecutor<'_>, patient: Uuid) -> crate::Result<i16> {
    Ok(sqlx::query_scalar(
        "SELECT coalesce((SELECT spo2_scale FROM patient_news2_settings WHERE patient_id = $1), 1::smallint)",
    )
    .bind(patient)
    .fetch_one(db)
    .await?)
}

/// Sets a patient's SpO2 scale (1 or 2; anything else is refused by the
/// table's check).
///
/// # Errors
/// When the database fails or the scale is not 1 or 2.
pub async fn set_spo2_scale(db: &PgPool, patient: Uuid, scale: i16, by: Uuid) -> crate::Result<()> {
    sqlx::query(
        "INSERT INTO patient_news2_settings (patient_id, spo2_scale, updated_by) VALUES ($1, $2, $3)
         ON CONFLICT (patient_id) DO UPDATE SET spo2_scale = $2, updated_by = $3, updated_at = now()",
    )
    .bind(patient)
    .bind(scale)
    .bind(by)
    .execute(db)
    .await?;
    Ok(())
}
