//! The appointment-reminder outbox (migration 0007): planning rows,
//! claiming due ones with a lease, and recording what happened.
//!
//! Delivery is at least once: a row is marked sent only after the SMTP
//! server or SMS webhook accepted it, in its own statement. A sender that
//! dies between the two leaves a claim whose lease runs out; the row is
//! then sent again with the same message id (the outbox row's id), so the
//! only repeat possible is of that one message, recognisably. A row is
//! never lost: it stays claimable until sent, skipped (the visit was
//! cancelled, moved or the patient has no address) or failed for good.

use chrono::{DateTime, Duration, Utc};
use sqlx::PgPool;

use crate::domain::AppointmentKind;
use crate::ids::{AppointmentId, PatientId};

/// How a reminder reaches the patient.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Channel {
    /// E-mail over SMTP.
    Email,
    /// A text message through the clinic's SMS webhook.
    Sms,
}

impl Channel {
    fn as_str(self) -> &'static str {
        match self {
            Channel::Email => "email",
            Channel::Sms => "sms",
        }
    }
}

/// Plans reminders for booked appointments starting within `horizon`: one
/// row per channel and lead time whose due time comes after the booking
/// (a visit booked an hour ahead gets no day-ahead reminder). Existing rows
/// are left alone, so planning again is harmless. Returns the rows added.
///
/// # Errors
/// Fails when the database does.
pub async fn plan(
    db: &PgPool,
    now: DateTime<Utc>,
    horizon: Duration,
    lead_minutes: &[i32],
    channels: &[Channel],
) -> crate::Result<u64> {
    let channels: Vec<&str> = channels.iter().map(|c| c.as_str()).collect();
    Ok(sqlx::query(
        "INSERT INTO reminder_outbox (id, appointment_id, channel, lead_minutes, starts_at, due_at, next_attempt_at)
         SELECT gen_random_uuid(), a.id, c.channel, l.minutes, a.starts_at,
                a.starts_at - make_interval(mins => l.minutes),
                a.starts_at - make_interval(mins => l.minutes)
         FROM appointments a
         JOIN patients p ON p.id = a.patient_id
         CROSS JOIN unnest($3::int[]) AS l(minutes)
         CROSS JOIN unnest($4::text[]) AS c(channel)
         WHERE a.status = 'booked' AND a.starts_at > $1 AND a.starts_at <= $1 + $2
           AND p.erased_at IS NULL
           AND (c.channel <> 'email' OR p.email IS NOT NULL)
           AND (c.channel <> 'sms' OR p.phone IS NOT NULL)
           AND a.starts_at - make_interval(mins => l.minutes) >= a.created_at
         ON CONFLICT (appointment_id, channel, lead_minutes, starts_at) DO NOTHING",
    )
    .bind(now)
    .bind(horizon)
    .bind(lead_minutes)
    .bind(&channels)
    .execute(db)
    .await?
    .rows_affected())
}

/// A claimed reminder with what its message needs. Personal data: never
/// logged (`Debug` shows the ids).
#[derive(Clone, sqlx::FromRow)]
pub struct DueReminder {
    /// The outbox row (also the message's id).
    pub id: uuid::Uuid,
    /// The appointment.
    pub appointment_id: AppointmentId,
    /// The patient.
    pub patient_id: PatientId,
    /// `email` or `sms`.
    pub channel: String,
    /// The start the reminder is about.
    pub starts_at: DateTime<Utc>,
    /// Whether the appointment is still booked at that start.
    pub still_due: bool,
    /// Video or in the clinic.
    pub kind: AppointmentKind,
    /// The patient's given name, for the greeting.
    pub given_name: String,
    /// E-mail address.
    pub email: Option<String>,
    /// Phone number.
    pub phone: Option<String>,
    /// The clinician's name.
    pub practitioner_name: String,
    /// Which attempt this is (1 for the first).
    pub attempts: i32,
}

impl std::fmt::Debug for DueReminder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DueReminder")
            .field("id", &self.id)
            .field("appointment_id", &self.appointment_id)
            .field("channel", &self.channel)
            .finish_non_exhaustive()
    }
}

/// Claims up to `batch` due reminders for `lease`: until it runs out no
/// other sender takes them (`SKIP LOCKED` keeps concurrent senders apart).
///
/// # Errors
/// Fails when the database does.
pub async fn claim(
    db: &PgPool,
    now: DateTime<Utc>,
    lease: Duration,
    batch: i64,
) -> crate::Result<Vec<DueReminder>> {
    Ok(sqlx::query_as::<_, DueReminder>(
        "WITH claimed AS (
             UPDATE reminder_outbox SET status = 'sending', attempts = attempts + 1, next_attempt_at = $1 + $2
             WHERE id IN (SELECT id FROM reminder_outbox
                          WHERE status IN ('pending', 'sending') AND next_attempt_at <= $1
                          ORDER BY next_attempt_at
                          LIMIT $3
                          FOR UPDATE SKIP LOCKED)
             RETURNING id, appointment_id, channel, starts_at, attempts
         )
         SELECT c.id, c.appointment_id, a.patient_id, c.channel, c.starts_at,
                (a.status = 'booked' AND a.starts_at = c.starts_at AND a.starts_at > $1
                 AND p.erased_at IS NULL) AS still_due,
                a.kind, p.given_name, p.email, p.phone, pr.name AS practitioner_name, c.attempts
         FROM claimed c
         JOIN appointments a ON a.id = c.appointment_id
         JOIN patients p ON p.id = a.patient_id
         JOIN practitioners pr ON pr.id = a.practitioner_id",
    )
    .bind(now)
    .bind(lease)
    .bind(batch.clamp(1, 1000))
    .fetch_all(db)
    .await?)
}

/// What became of a claimed reminder.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome<'a> {
    /// Accepted by the SMTP server or the SMS webhook.
    Sent,
    /// Not to be sent (cancelled, moved, no address); the reason is a code.
    Skipped(&'a str),
    /// Failed now; tried again at the given time. The reason is a code
    /// (no server text, which can echo addresses).
    Retry(&'a str, DateTime<Utc>),
    /// Failed for good.
    Failed(&'a str),
}

/// Whether a claimed reminder is still to be sent right now: the visit is
/// still booked at the reminded start, not begun, the patient not erased
/// (read again just before sending: the claim may be a while old), and no
/// closer reminder of the same visit and channel is due as well.
///
/// # Errors
/// Fails when the database does.
pub async fn still_due(db: &PgPool, id: uuid::Uuid, now: DateTime<Utc>) -> crate::Result<bool> {
    Ok(sqlx::query_scalar(
        "SELECT EXISTS (SELECT 1 FROM reminder_outbox r
                        JOIN appointments a ON a.id = r.appointment_id
                        JOIN patients p ON p.id = a.patient_id
                        WHERE r.id = $1 AND a.status = 'booked' AND a.starts_at = r.starts_at
                          AND a.starts_at > $2 AND p.erased_at IS NULL
                          -- A closer reminder of the same visit is due as
                          -- well (after downtime, or a visit moved closer):
                          -- that one says it, not two at once.
                          AND NOT EXISTS (SELECT 1 FROM reminder_outbox o
                                          WHERE o.appointment_id = r.appointment_id
                                            AND o.channel = r.channel AND o.starts_at = r.starts_at
                                            AND o.lead_minutes < r.lead_minutes
                                            AND o.due_at <= $2))",
    )
    .bind(id)
    .bind(now)
    .fetch_one(db)
    .await?)
}

/// Records the outcome of the claim `attempt` of a reminder. A sender whose
/// claim was taken over (its lease ran out) records nothing: the outcome
/// belongs to the newer claim. Returns whether it was recorded.
///
/// # Errors
/// Fails when the database does.
pub async fn record(
    db: &PgPool,
    id: uuid::Uuid,
    attempt: i32,
    outcome: Outcome<'_>,
    now: DateTime<Utc>,
) -> crate::Result<bool> {
    let (status, error, next): (&str, Option<&str>, DateTime<Utc>) = match outcome {
        Outcome::Sent => ("sent", None, now),
        Outcome::Skipped(reason) => ("skipped", Some(reason), now),
        Outcome::Retry(reason, at) => ("pending", Some(reason), at),
        Outcome::Failed(reason) => ("failed", Some(reason), now),
    };
    Ok(sqlx::query(
        "UPDATE reminder_outbox SET status = $2, last_error = $3, next_attempt_at = $4,
                sent_at = CASE WHEN $2 = 'sent' THEN $5 ELSE sent_at END
         WHERE id = $1 AND status = 'sending' AND attempts = $6",
    )
    .bind(id)
    .bind(status)
    .bind(error)
    .bind(next)
    .bind(now)
    .bind(attempt)
    .execute(db)
    .await?
    .rows_affected()
        == 1)
}

/// Counts rows by status, for metrics and tests.
///
/// # Errors
/// Fails when the database does.
pub async fn counts(db: &PgPool) -> crate::Result<Vec<(String, i64)>> {
    Ok(sqlx::query_as(
        "SELECT status, count(*) FROM reminder_outbox GROUP BY status ORDER BY status",
    )
    .fetch_all(db)
    .await?)
}
