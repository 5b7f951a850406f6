//! Visit notes: drafts a clinician edits, then signs. A signed note never
//! changes (the database refuses it too); corrections are amendments,
//! separate signed notes that point at the original.

use chrono::{DateTime, Utc};
use serde::Serialize;
use sqlx::PgPool;

use crate::domain::{BoundedText, InvalidInput};
use crate::ids::{AppointmentId, NoteId, PatientId, UserId};

/// Longest note accepted, in characters (about 30 pages).
pub const MAX_NOTE_CHARS: usize = 100_000;

/// A visit note.
#[derive(Clone, Serialize, sqlx::FromRow, utoipa::ToSchema)]
pub struct Note {
    /// Id.
    pub id: NoteId,
    /// The visit.
    pub appointment_id: AppointmentId,
    /// The patient.
    pub patient_id: PatientId,
    /// Author.
    pub author_id: UserId,
    /// Author's name.
    pub author_name: String,
    /// Text.
    pub text: String,
    /// `draft` or `signed`.
    pub status: String,
    /// When signed.
    pub signed_at: Option<DateTime<Utc>>,
    /// The note this one amends.
    pub amends_note_id: Option<NoteId>,
    /// Created.
    pub created_at: DateTime<Utc>,
    /// Last edited.
    pub updated_at: DateTime<Utc>,
}

impl std::fmt::Debug for Note {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Note")
            .field("id", &self.id)
            .field("status", &self.status)
            .finish_non_exhaustive()
    }
}

const SELECT: &str =
    "SELECT n.id, n.appointment_id, n.patient_id, n.author_id, u.name AS author_name, n.text,
        n.status, n.signed_at, n.amends_note_id, n.created_at, n.updated_at
     FROM visit_notes n JOIN users u ON u.id = n.author_id";

/// Parses note text.
///
/// # Errors
/// Empty or longer than [`MAX_NOTE_CHARS`].
pub fn parse_text(raw: &str) -> Result<BoundedText, InvalidInput> {
    BoundedText::parse("text", raw, MAX_NOTE_CHARS)
}

/// Starts a draft note on a visit.
///
/// # Errors
/// [`crate::RecordsError::NotFound`] for an unknown appointment.
pub async fn create(
    db: &PgPool,
    appointment: AppointmentId,
    author: UserId,
    text: &BoundedText,
) -> crate::Result<Note> {
    let id = NoteId::new();
    let inserted = sqlx::query(
        "INSERT INTO visit_notes (id, appointment_id, patient_id, author_id, text, status)
         SELECT $1, a.id, a.patient_id, $3, $4, 'draft' FROM appointments a WHERE a.id = $2",
    )
    .bind(id)
    .bind(appointment)
    .bind(author)
    .bind(text.as_str())
    .execute(db)
    .await?
    .rows_affected();
    if inserted == 0 {
        return Err(crate::RecordsError::NotFound("appointment"));
    }
    get(db, id).await
}

/// One note.
///
/// # Errors
/// [`crate::RecordsError::NotFound`] when there is none.
pub async fn get(db: &PgPool, id: NoteId) -> crate::Result<Note> {
    sqlx::query_as::<_, Note>(sqlx::AssertSqlSafe(format!("{SELECT} WHERE n.id = $1")))
        .bind(id)
        .fetch_optional(db)
        .await?
        .ok_or(crate::RecordsError::NotFound("note"))
}

/// Replaces a draft's text.
///
/// # Errors
/// [`crate::RecordsError::NoteSigned`] once signed, [`crate::RecordsError::NotFound`].
pub async fn update_draft(db: &PgPool, id: NoteId, text: &BoundedText) -> crate::Result<Note> {
    let changed = sqlx::query(
        "UPDATE visit_notes SET text = $2, updated_at = now() WHERE id = $1 AND status = 'draft'",
    )
    .bind(id)
    .bind(text.as_str())
    .execute(db)
    .await?
    .rows_affected();
    if changed == 0 {
        get(db, id).await?; // NotFound if it does not exist
        return Err(crate::RecordsError::NoteSigned);
    }
    get(db, id).await
}

/// Signs a draft.
///
/// # Errors
/// [`crate::RecordsError::NoteSigned`] when already signed, [`crate::RecordsError::NotFound`].
pub async fn sign(db: &PgPool, id: NoteId) -> crate::Result<Note> {
    let changed = sqlx::query(
        "UPDATE visit_notes SET status = 'signed', signed_at = now(), updated_at = now()
         WHERE id = $1 AND status = 'draft'",
    )
    .bind(id)
    .execute(db)
    .await?
    .rows_affected();
    if changed == 0 {
        get(db, id).await?;
        return Err(crate::RecordsError::NoteSigned);
    }
    get(db, id).await
}

/// Adds a signed amendment to a signed note; the original stays as it was.
///
/// # Errors
/// [`crate::RecordsError::Invalid`] when the original is still a draft (edit it
/// instead), [`crate::RecordsError::NotFound`].
pub async fn amend(
    db: &PgPool,
    original: NoteId,
    author: UserId,
    text: &BoundedText,
) -> crate::Result<Note> {
    let note = get(db, original).await?;
    if note.status != "signed" {
        return Err(InvalidInput::new(
            "note",
            "a draft is edited, not amended; amend it once signed",
        )
        .into());
    }
    let id = NoteId::new();
    sqlx::query(
        "INSERT INTO visit_notes (id, appointment_id, patient_id, author_id, text, status, signed_at, amends_note_id)
         VALUES ($1, $2, $3, $4, $5, 'signed', now(), $6)",
    )
    .bind(id)
    .bind(note.appointment_id)
    .bind(note.patient_id)
    .bind(author)
    .bind(text.as_str())
    .bind(original)
    .execute(db)
    .await?;
    get(db, id).await
}

/// A visit's notes, oldest first.
///
/// # Errors
/// Fails when the database does.
pub async fn for_appointment(db: &PgPool, appointment: AppointmentId) -> crate::Result<Vec<Note>> {
    Ok(sqlx::query_as::<_, Note>(sqlx::AssertSqlSafe(format!(
        "{SELECT} WHERE n.appointment_id = $1 ORDER BY n.created_at, n.id"
    )))
    .bind(appointment)
    .fetch_all(db)
    .await?)
}

/// A patient's notes, newest first.
///
/// # Errors
/// Fails when the database does.
pub async fn for_patient(db: &PgPool, patient: PatientId) -> crate::Result<Vec<Note>> {
    Ok(sqlx::query_as::<_, Note>(sqlx::AssertSqlSafe(format!(
        "{SELECT} WHERE n.patient_id = $1 ORDER BY n.created_at DESC, n.id"
    )))
    .bind(patient)
    .fetch_all(db)
    .await?)
}
