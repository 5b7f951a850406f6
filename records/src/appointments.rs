//! Appointments in the database: booking (the exclusion constraint refuses
//! double-booking, also between concurrent requests), listing, lifecycle
//! transitions through [`crate::appointment::transition`], and the no-show sweep.

use chrono::{DateTime, Duration, Utc};
use serde::Serialize;
use sqlx::PgPool;

use crate::appointment::{self, AppointmentStatus, TransitionContext};
use crate::domain::{AppointmentKind, BoundedText};
use crate::ids::{AppointmentId, PatientId, PractitionerId};

/// An appointment with the names the pages show.
#[derive(Clone, Serialize, sqlx::FromRow, utoipa::ToSchema)]
pub struct Appointment {
    /// Id.
    pub id: AppointmentId,
    /// Patient.
    pub patient_id: PatientId,
    /// Patient's full name.
    pub patient_name: String,
    /// Clinician.
    pub practitioner_id: PractitionerId,
    /// Clinician's name.
    pub practitioner_name: String,
    /// Start (UTC).
    pub starts_at: DateTime<Utc>,
    /// End (UTC).
    pub ends_at: DateTime<Utc>,
    /// Video or in person.
    pub kind: AppointmentKind,
    /// Reason for the visit.
    pub reason: String,
    /// Lifecycle status.
    pub status: AppointmentStatus,
    /// When the visit started.
    pub started_at: Option<DateTime<Utc>>,
    /// When the visit finished.
    pub finished_at: Option<DateTime<Utc>>,
    /// When it was booked.
    pub created_at: DateTime<Utc>,
    /// Last changed.
    pub updated_at: DateTime<Utc>,
    /// Bumped by every change (FHIR `meta.versionId`, the ETag).
    pub version: i64,
}

impl std::fmt::Debug for Appointment {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Appointment")
            .field("id", &self.id)
            .field("status", &self.status)
            .finish_non_exhaustive()
    }
}

/// Length of a visit in minutes: 5 to 480.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct VisitLength(i64);

impl VisitLength {
    /// Parses a duration in minutes.
    ///
    /// # Errors
    /// Outside 5–480 minutes.
    pub fn parse(minutes: i64) -> Result<Self, crate::domain::InvalidInput> {
        if (5..=480).contains(&minutes) {
            Ok(Self(minutes))
        } else {
            Err(crate::domain::InvalidInput::new(
                "duration_minutes",
                "must be between 5 and 480 minutes",
            ))
        }
    }
    /// As a duration.
    pub fn duration(self) -> Duration {
        Duration::minutes(self.0)
    }
}

/// A booking request, validated.
#[derive(Debug, Clone)]
pub struct NewAppointment {
    /// Patient.
    pub patient_id: PatientId,
    /// Clinician.
    pub practitioner_id: PractitionerId,
    /// Start.
    pub starts_at: DateTime<Utc>,
    /// Length.
    pub length: VisitLength,
    /// Kind.
    pub kind: AppointmentKind,
    /// Reason.
    pub reason: BoundedText,
}

const SELECT: &str =
    "SELECT a.id, a.patient_id, p.given_name || ' ' || p.family_name AS patient_name,
        a.practitioner_id, pr.name AS practitioner_name, a.starts_at, a.ends_at, a.kind, a.reason,
        a.status, a.started_at, a.finished_at, a.created_at, a.updated_at, a.version
     FROM appointments a
     JOIN patients p ON p.id = a.patient_id
     JOIN practitioners pr ON pr.id = a.practitioner_id";

/// Books an appointment.
///
/// # Errors
/// [`crate::RecordsError::Overlap`] when the clinician is busy then,
/// [`crate::RecordsError::NotFound`] for an unknown patient or practitioner,
/// [`crate::RecordsError::Erased`] for an erased one.
pub async fn book(db: &PgPool, new: &NewAppointment) -> crate::Result<Appointment> {
    let erased: Option<Option<DateTime<Utc>>> =
        sqlx::query_scalar("SELECT erased_at FROM patients WHERE id = $1")
            .bind(new.patient_id)
            .fetch_optional(db)
            .await?;
    if matches!(erased, Some(Some(_))) {
        return Err(crate::RecordsError::Erased);
    }
    let id = AppointmentId::new();
    sqlx::query(
        "INSERT INTO appointments (id, patient_id, practitioner_id, starts_at, ends_at, kind, reason, status)
         VALUES ($1, $2, $3, $4, $5, $6, $7, 'booked')",
    )
    .bind(id)
    .bind(new.patient_id)
    .bind(new.practitioner_id)
    .bind(new.starts_at)
    .bind(new.starts_at + new.length.duration())
    .bind(new.kind)
    .bind(new.reason.as_str())
    .execute(db)
    .await?;
    get(db, id).await
}

/// One appointment.
///
/// # Errors
/// [`crate::RecordsError::NotFound`] when there is none.
pub async fn get(db: &PgPool, id: AppointmentId) -> crate::Result<Appointment> {
    sqlx::query_as::<_, Appointment>(sqlx::AssertSqlSafe(format!("{SELECT} WHERE a.id = $1")))
        .bind(id)
        .fetch_optional(db)
        .await?
        .ok_or(crate::RecordsError::NotFound("appointment"))
}

/// Which appointments to list; all optional, combined with AND.
#[derive(Debug, Clone, Default)]
pub struct AppointmentFilter {
    /// Starting at or after.
    pub from: Option<DateTime<Utc>>,
    /// Starting before.
    pub to: Option<DateTime<Utc>>,
    /// With this clinician.
    pub practitioner_id: Option<PractitionerId>,
    /// With this patient.
    pub patient_id: Option<PatientId>,
    /// Any of these ids (empty: any).
    pub ids: Vec<AppointmentId>,
    /// In any of these states (empty: any).
    pub statuses: Vec<AppointmentStatus>,
    /// Only visits that have started (FHIR Encounters).
    pub started_only: bool,
    /// `from` and `to` bound the held period (start to finish, or now)
    /// instead of the booked start: they select visits held at some time
    /// in the range.
    pub by_period: bool,
    /// Only what this clinician may read: their own appointments and those
    /// of patients related to them.
    pub visible_to: Option<PractitionerId>,
}

/// Appointments matching `filter`, by start time (at most 1000).
///
/// # Errors
/// Fails when the database does.
pub async fn list(db: &PgPool, filter: &AppointmentFilter) -> crate::Result<Vec<Appointment>> {
    Ok(page(db, filter, 0, 1000).await?.0)
}

/// A page of the appointments matching `filter` by start time: `limit` of
/// them after skipping `offset`, and how many match in all.
///
/// # Errors
/// Fails when the database does.
pub async fn page(
    db: &PgPool,
    filter: &AppointmentFilter,
    offset: i64,
    limit: i64,
) -> crate::Result<(Vec<Appointment>, i64)> {
    let ids: Vec<uuid::Uuid> = filter.ids.iter().map(|id| id.0).collect();
    let statuses: Vec<&str> = filter.statuses.iter().map(|s| s.as_str()).collect();
    let rows: Vec<(i64, Option<uuid::Uuid>)> = sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "WITH matching AS (
             SELECT a.id, a.starts_at FROM appointments a
             WHERE ($1::timestamptz IS NULL
                    OR (CASE WHEN $11 THEN coalesce(a.finished_at, 'infinity') >= $1 ELSE a.starts_at >= $1 END))
               AND ($2::timestamptz IS NULL
                    OR (CASE WHEN $11 THEN a.started_at < $2 ELSE a.starts_at < $2 END))
               AND ($3::uuid IS NULL OR a.practitioner_id = $3)
               AND ($4::uuid IS NULL OR a.patient_id = $4)
               AND (cardinality($5::uuid[]) = 0 OR a.id = ANY($5))
               AND (cardinality($6::text[]) = 0 OR a.status = ANY($6))
               AND (NOT $7 OR a.started_at IS NOT NULL)
               AND ($8::uuid IS NULL OR a.practitioner_id = $8 OR {related})
         )
         SELECT (SELECT count(*) FROM matching), page.id
         FROM (SELECT 1) one
         LEFT JOIN LATERAL (SELECT id FROM matching ORDER BY starts_at, id OFFSET $9 LIMIT $10) page ON true",
        related = crate::care::related_sql("$8", "a.patient_id")
    )))
    .bind(filter.from)
    .bind(filter.to)
    .bind(filter.practitioner_id)
    .bind(filter.patient_id)
    .bind(&ids)
    .bind(&statuses)
    .bind(filter.started_only)
    .bind(filter.visible_to)
    .bind(offset.max(0))
    .bind(limit.clamp(0, 1000))
    .bind(filter.by_period)
    .fetch_all(db)
    .await?;
    let total = rows.first().map_or(0, |(total, _)| *total);
    let order: Vec<uuid::Uuid> = rows.into_iter().filter_map(|(_, id)| id).collect();
    let mut found = sqlx::query_as::<_, Appointment>(sqlx::AssertSqlSafe(format!(
        "{SELECT} WHERE a.id = ANY($1)"
    )))
    .bind(&order)
    .fetch_all(db)
    .await?;
    found.sort_by_key(|a| order.iter().position(|id| *id == a.id.0));
    Ok((found, total))
}

/// What a client may change about a booked appointment in one update.
#[derive(Debug, Clone)]
pub struct Amendment {
    /// New start.
    pub starts_at: DateTime<Utc>,
    /// New length.
    pub length: VisitLength,
    /// Video or in person.
    pub kind: AppointmentKind,
    /// Reason.
    pub reason: BoundedText,
    /// The status to move to (the current one for a plain reschedule).
    pub status: AppointmentStatus,
}

/// Changes an appointment as a whole, the way a FHIR update does: if it is
/// still at `if_version`, reschedules it (only while booked; the
/// no-double-booking constraint still holds) and moves its status along the
/// lifecycle. Either everything changes or nothing does.
///
/// # Errors
/// [`crate::RecordsError::VersionConflict`], [`crate::RecordsError::NotFound`],
/// [`crate::RecordsError::Overlap`], [`crate::RecordsError::Transition`]
/// (including a reschedule of an appointment that is no longer booked).
pub async fn amend(
    db: &PgPool,
    id: AppointmentId,
    if_version: i64,
    amendment: &Amendment,
    now: DateTime<Utc>,
    no_show_grace: Duration,
) -> crate::Result<Appointment> {
    let mut tx = db.begin().await?;
    type Current = (
        AppointmentStatus,
        DateTime<Utc>,
        DateTime<Utc>,
        AppointmentKind,
        String,
        i64,
    );
    let row: Option<Current> = sqlx::query_as(
        "SELECT status, starts_at, ends_at, kind, reason, version FROM appointments WHERE id = $1 FOR UPDATE",
    )
    .bind(id)
    .fetch_optional(&mut *tx)
    .await?;
    let (status, starts_at, ends_at, kind, reason, version) =
        row.ok_or(crate::RecordsError::NotFound("appointment"))?;
    if version != if_version {
        return Err(crate::RecordsError::VersionConflict {
            what: "appointment",
            expected: if_version,
            current: version,
        });
    }
    let new_end = amendment.starts_at + amendment.length.duration();
    let rescheduled = (starts_at, ends_at, kind, reason.as_str())
        != (
            amendment.starts_at,
            new_end,
            amendment.kind,
            amendment.reason.as_str(),
        );
    if rescheduled {
        if status != AppointmentStatus::Booked {
            return Err(crate::RecordsError::Transition(
                appointment::TransitionError::NotBooked(status),
            ));
        }
        if amendment.starts_at != starts_at && amendment.starts_at < now - Duration::minutes(5) {
            return Err(
                crate::domain::InvalidInput::new("start", "must not be in the past").into(),
            );
        }
        if amendment.kind != kind {
            // A visit that moves to the clinic can no longer be joined by video.
            sqlx::query(
                "UPDATE join_links SET revoked_at = $2 WHERE appointment_id = $1 AND revoked_at IS NULL",
            )
            .bind(id)
            .bind(now)
            .execute(&mut *tx)
            .await?;
        }
        sqlx::query(
            "UPDATE appointments SET starts_at = $2, ends_at = $3, kind = $4, reason = $5, updated_at = $6
             WHERE id = $1",
        )
        .bind(id)
        .bind(amendment.starts_at)
        .bind(new_end)
        .bind(amendment.kind)
        .bind(amendment.reason.as_str())
        .bind(now)
        .execute(&mut *tx)
        .await?;
    }
    if amendment.status != status {
        let next = appointment::transition(
            status,
            amendment.status,
            TransitionContext {
                starts_at: amendment.starts_at,
                now,
                no_show_grace,
            },
        )?;
        apply_transition(&mut tx, id, next, now).await?;
    }
    tx.commit().await?;
    get(db, id).await
}

/// Moves an appointment to `to`, if its lifecycle allows it now.
///
/// # Errors
/// [`crate::RecordsError::Transition`] when the lifecycle refuses,
/// [`crate::RecordsError::NotFound`] for an unknown appointment.
pub async fn transition(
    db: &PgPool,
    id: AppointmentId,
    to: AppointmentStatus,
    now: DateTime<Utc>,
    no_show_grace: Duration,
) -> crate::Result<Appointment> {
    let mut tx = db.begin().await?;
    let row: Option<(AppointmentStatus, DateTime<Utc>)> =
        sqlx::query_as("SELECT status, starts_at FROM appointments WHERE id = $1 FOR UPDATE")
            .bind(id)
            .fetch_optional(&mut *tx)
            .await?;
    let (from, starts_at) = row.ok_or(crate::RecordsError::NotFound("appointment"))?;
    let next = appointment::transition(
        from,
        to,
        TransitionContext {
            starts_at,
            now,
            no_show_grace,
        },
    )?;
    apply_transition(&mut tx, id, next, now).await?;
    tx.commit().await?;
    get(db, id).await
}

/// Writes a decided transition: the status, its timestamp, and for a final
/// state the end of the appointment's join links.
async fn apply_transition(
    tx: &mut sqlx::Transaction<'_, sqlx::Postgres>,
    id: AppointmentId,
    next: AppointmentStatus,
    now: DateTime<Utc>,
) -> crate::Result<()> {
    sqlx::query(
        "UPDATE appointments SET status = $2, updated_at = $3,
            arrived_at = CASE WHEN $2 = 'arrived' THEN $3 ELSE arrived_at END,
            started_at = CASE WHEN $2 = 'in_progress' THEN $3 ELSE started_at END,
            finished_at = CASE WHEN $2 = 'finished' THEN $3 ELSE finished_at END
         WHERE id = $1",
    )
    .bind(id)
    .bind(next)
    .bind(now)
    .execute(&mut **tx)
    .await?;
    if next.is_final() {
        // A visit that is over, cancelled or missed can no longer be joined,
        // and the visit sessions its links gave out end with them.
        sqlx::query(
            "UPDATE join_links SET revoked_at = $2 WHERE appointment_id = $1 AND revoked_at IS NULL",
        )
        .bind(id)
        .bind(now)
        .execute(&mut **tx)
        .await?;
    }
    Ok(())
}

/// Marks every still-booked appointment whose grace period has run out as
/// a no-show, closes its join link and writes its audit row (as the
/// system), all in one statement: the change is never seen unaudited.
/// Returns what changed.
///
/// # Errors
/// Fails when the database does.
pub async fn sweep_no_shows(
    db: &PgPool,
    now: DateTime<Utc>,
    grace: Duration,
) -> crate::Result<Vec<(AppointmentId, PatientId)>> {
    Ok(sqlx::query_as(
        "WITH missed AS (
             UPDATE appointments SET status = 'no_show', updated_at = $1
             WHERE status = 'booked' AND starts_at <= $2
             RETURNING id, patient_id
         ), closed AS (
             UPDATE join_links SET revoked_at = $1
             WHERE revoked_at IS NULL AND appointment_id IN (SELECT id FROM missed)
         ), audited AS (
             INSERT INTO audit_log (actor_id, actor_role, patient_id, action, resource, outcome, request_id, client_addr, resource_path)
             SELECT NULL, 'system', patient_id, 'appointment.no_show', 'no-show sweep', 'allowed', 'no-show-sweep', '-', ''
             FROM missed
         )
         SELECT id, patient_id FROM missed",
    )
    .bind(now)
    .bind(now - grace)
    .fetch_all(db)
    .await?)
}
