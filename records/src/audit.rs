//! The audit log: one row per read or write of health data, allowed or
//! denied. Rows are only ever inserted; the database refuses changes.

use chrono::{DateTime, Utc};
use serde::Serialize;
use sqlx::PgPool;

use crate::ids::{PatientId, UserId};

/// Whether the audited attempt was let through.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    /// The caller was allowed and the action ran.
    Allowed,
    /// The caller was refused.
    Denied,
}

impl Outcome {
    fn as_str(self) -> &'static str {
        match self {
            Outcome::Allowed => "allowed",
            Outcome::Denied => "denied",
        }
    }
}

/// One audited attempt, as the HTTP edge describes it.
#[derive(Debug, Clone)]
pub struct AuditEvent<'a> {
    /// The staff user, when the actor is one.
    pub actor_id: Option<UserId>,
    /// `admin`, `clinician`, `patient` or `anonymous`.
    pub actor_role: &'a str,
    /// The patient whose data was touched, when known.
    pub patient_id: Option<PatientId>,
    /// What was done: a short verb phrase such as `patient.read`.
    pub action: &'a str,
    /// The route template (`GET /api/v1/patients/{id}`): a stable label.
    pub resource: &'a str,
    /// The concrete path (`/api/v1/patients/<uuid>`): ids only, never a query string.
    pub resource_path: &'a str,
    /// Allowed or denied.
    pub outcome: Outcome,
    /// The request id of the HTTP request.
    pub request_id: &'a str,
    /// The client's address as the server saw it.
    pub client_addr: &'a str,
}

/// Appends one audit row.
///
/// # Errors
/// Fails only when the database does; callers must then fail the request,
/// since an unaudited access to health data is not allowed to happen.
pub async fn record(db: &PgPool, event: &AuditEvent<'_>) -> crate::Result<()> {
    sqlx::query(
        "INSERT INTO audit_log (actor_id, actor_role, patient_id, action, resource, outcome, request_id, client_addr, resource_path)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
    )
    .bind(event.actor_id)
    .bind(event.actor_role)
    .bind(event.patient_id)
    .bind(event.action)
    .bind(event.resource)
    .bind(event.outcome.as_str())
    .bind(event.request_id)
    .bind(event.client_addr)
    .bind(event.resource_path)
    .execute(db)
    .await?;
    Ok(())
}

/// Appends one row per patient for an access that spanned several patients
/// (a list), in one statement. With no patients, one row without a patient.
///
/// # Errors
/// As [`record`].
pub async fn record_for_patients(
    db: &PgPool,
    event: &AuditEvent<'_>,
    patients: &[PatientId],
) -> crate::Result<()> {
    if patients.is_empty() {
        return record(db, event).await;
    }
    let mut unique: Vec<uuid::Uuid> = patients.iter().map(|p| p.0).collect();
    unique.sort_unstable();
    unique.dedup();
    sqlx::query(
        "INSERT INTO audit_log (actor_id, actor_role, patient_id, action, resource, outcome, request_id, client_addr, resource_path)
         SELECT $1, $2, p, $4, $5, $6, $7, $8, $9 FROM unnest($3::uuid[]) AS p",
    )
    .bind(event.actor_id)
    .bind(event.actor_role)
    .bind(&unique)
    .bind(event.action)
    .bind(event.resource)
    .bind(event.outcome.as_str())
    .bind(event.request_id)
    .bind(event.client_addr)
    .bind(event.resource_path)
    .execute(db)
    .await?;
    Ok(())
}

/// An audit row as read back.
#[derive(Debug, Clone, Serialize, sqlx::FromRow, utoipa::ToSchema)]
pub struct AuditEntry {
    /// Sequence number.
    pub id: i64,
    /// When it happened (UTC).
    pub at: DateTime<Utc>,
    /// The staff user, if any.
    pub actor_id: Option<UserId>,
    /// The actor's role.
    pub actor_role: String,
    /// The patient concerned, if any.
    pub patient_id: Option<PatientId>,
    /// What was done.
    pub action: String,
    /// On what: the route template.
    pub resource: String,
    /// On what: the concrete path (ids only).
    pub resource_path: String,
    /// `allowed` or `denied`.
    pub outcome: String,
    /// The HTTP request id.
    pub request_id: String,
    /// The client's address.
    pub client_addr: String,
}

/// Filters for reading the log; all optional, combined with AND.
#[derive(Debug, Clone, Default)]
pub struct AuditFilter {
    /// Only rows about this patient.
    pub patient_id: Option<PatientId>,
    /// Only rows by this actor.
    pub actor_id: Option<UserId>,
    /// Only rows at or after this time.
    pub from: Option<DateTime<Utc>>,
    /// Only rows before this time.
    pub to: Option<DateTime<Utc>>,
    /// Only rows with an id below this (for paging backwards).
    pub before_id: Option<i64>,
    /// At most this many rows (capped at 1000).
    pub limit: i64,
}

/// Reads the log, newest first.
///
/// # Errors
/// Fails when the database does.
pub async fn list(db: &PgPool, filter: &AuditFilter) -> crate::Result<Vec<AuditEntry>> {
    let rows = sqlx::query_as::<_, AuditEntry>(
        "SELECT id, at, actor_id, actor_role, patient_id, action, resource, resource_path, outcome, request_id, client_addr
         FROM audit_log
         WHERE ($1::uuid IS NULL OR patient_id = $1)
           AND ($2::uuid IS NULL OR actor_id = $2)
           AND ($3::timestamptz IS NULL OR at >= $3)
           AND ($4::timestamptz IS NULL OR at < $4)
           AND ($5::bigint IS NULL OR id < $5)
         ORDER BY id DESC
         LIMIT $6",
    )
    .bind(filter.patient_id)
    .bind(filter.actor_id)
    .bind(filter.from)
    .bind(filter.to)
    .bind(filter.before_id)
    .bind(filter.limit.clamp(1, 1000))
    .fetch_all(db)
    .await?;
    Ok(rows)
}

/// Counts rows (used by tests and the admin overview).
///
/// # Errors
/// Fails when the database does.
pub async fn count(db: &PgPool) -> crate::Result<i64> {
    Ok(sqlx::query_scalar("SELECT count(*) FROM audit_log")
        .fetch_one(db)
        .await?)
}
