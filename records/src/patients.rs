//! Patients: demographics and contact details. Everything here is personal
//! health information: it is read only through audited routes and never
//! logged (`Patient`'s `Debug` shows the id alone).

use chrono::{DateTime, NaiveDate, Utc};
use serde::Serialize;
use sqlx::PgPool;

use crate::domain::{BirthDate, BoundedText, Email, Mrn, Sex};
use crate::ids::{PatientId, PractitionerId};

/// A patient record.
#[derive(Clone, Serialize, sqlx::FromRow, utoipa::ToSchema)]
pub struct Patient {
    /// Id.
    pub id: PatientId,
    /// Medical record number.
    pub mrn: String,
    /// Given name(s).
    pub given_name: String,
    /// Family name.
    pub family_name: String,
    /// Birth date.
    pub birth_date: NaiveDate,
    /// Administrative sex.
    pub sex: Sex,
    /// E-mail for reminders.
    pub email: Option<String>,
    /// Phone number.
    pub phone: Option<String>,
    /// Created.
    pub created_at: DateTime<Utc>,
}

impl std::fmt::Debug for Patient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Patient")
            .field("id", &self.id)
            .finish_non_exhaustive()
    }
}

/// Validated patient details, for create and update.
#[derive(Clone)]
pub struct PatientDetails {
    /// MRN.
    pub mrn: Mrn,
    /// Given name(s).
    pub given_name: BoundedText,
    /// Family name.
    pub family_name: BoundedText,
    /// Birth date.
    pub birth_date: BirthDate,
    /// Sex.
    pub sex: Sex,
    /// E-mail.
    pub email: Option<Email>,
    /// Phone.
    pub phone: Option<BoundedText>,
}

const COLUMNS: &str = "id, mrn, given_name, family_name, birth_date, sex, email, phone, created_at";

/// Registers a patient.
///
/// # Errors
/// [`crate::RecordsError::Duplicate`] when the MRN is taken.
pub async fn create(db: &PgPool, details: &PatientDetails) -> crate::Result<Patient> {
    Ok(sqlx::query_as::<_, Patient>(sqlx::AssertSqlSafe(format!(
        "INSERT INTO patients (id, mrn, given_name, family_name, birth_date, sex, email, phone)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8) RETURNING {COLUMNS}"
    )))
    .bind(PatientId::new())
    .bind(details.mrn.as_str())
    .bind(details.given_name.as_str())
    .bind(details.family_name.as_str())
    .bind(details.birth_date.date())
    .bind(details.sex)
    .bind(details.email.as_ref().map(Email::as_str))
    .bind(details.phone.as_ref().map(BoundedText::as_str))
    .fetch_one(db)
    .await?)
}

/// Replaces a patient's details.
///
/// # Errors
/// [`crate::RecordsError::NotFound`] or [`crate::RecordsError::Duplicate`] (MRN).
pub async fn update(
    db: &PgPool,
    id: PatientId,
    details: &PatientDetails,
) -> crate::Result<Patient> {
    sqlx::query_as::<_, Patient>(sqlx::AssertSqlSafe(format!(
        "UPDATE patients SET mrn = $2, given_name = $3, family_name = $4, birth_date = $5, sex = $6,
                email = $7, phone = $8, updated_at = now()
         WHERE id = $1 RETURNING {COLUMNS}"
    )))
    .bind(id)
    .bind(details.mrn.as_str())
    .bind(details.given_name.as_str())
    .bind(details.family_name.as_str())
    .bind(details.birth_date.date())
    .bind(details.sex)
    .bind(details.email.as_ref().map(Email::as_str))
    .bind(details.phone.as_ref().map(BoundedText::as_str))
    .fetch_optional(db)
    .await?
    .ok_or(crate::RecordsError::NotFound("patient"))
}

/// One patient.
///
/// # Errors
/// [`crate::RecordsError::NotFound`] when there is none.
pub async fn get(db: &PgPool, id: PatientId) -> crate::Result<Patient> {
    sqlx::query_as::<_, Patient>(sqlx::AssertSqlSafe(format!(
        "SELECT {COLUMNS} FROM patients WHERE id = $1"
    )))
    .bind(id)
    .fetch_optional(db)
    .await?
    .ok_or(crate::RecordsError::NotFound("patient"))
}

/// Whether a patient exists.
///
/// # Errors
/// Fails when the database does.
pub async fn exists(db: &PgPool, id: PatientId) -> crate::Result<bool> {
    Ok(
        sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM patients WHERE id = $1)")
            .bind(id)
            .fetch_one(db)
            .await?,
    )
}

/// Patients matching `query` (name or MRN, case-insensitive substring), by
/// family name. With `practitioner`, only that clinician's patients: those
/// in their care or with an appointment with them.
///
/// # Errors
/// Fails when the database does.
pub async fn search(
    db: &PgPool,
    query: Option<&str>,
    practitioner: Option<PractitionerId>,
    limit: i64,
) -> crate::Result<Vec<Patient>> {
    let pattern = query.map(str::trim).filter(|q| !q.is_empty()).map(|q| {
        format!(
            "%{}%",
            q.replace('\\', "\\\\")
                .replace('%', "\\%")
                .replace('_', "\\_")
        )
    });
    Ok(sqlx::query_as::<_, Patient>(sqlx::AssertSqlSafe(format!(
        "SELECT {COLUMNS} FROM patients p
         WHERE ($1::text IS NULL OR p.mrn ILIKE $1 OR p.given_name ILIKE $1 OR p.family_name ILIKE $1
                OR (p.given_name || ' ' || p.family_name) ILIKE $1)
           AND ($2::uuid IS NULL
                OR EXISTS (SELECT 1 FROM care_relationships c WHERE c.patient_id = p.id AND c.practitioner_id = $2)
                OR EXISTS (SELECT 1 FROM appointments a WHERE a.patient_id = p.id AND a.practitioner_id = $2))
         ORDER BY p.family_name, p.given_name, p.id
         LIMIT $3"
    )))
    .bind(pattern)
    .bind(practitioner)
    .bind(limit.clamp(1, 500))
    .fetch_all(db)
    .await?)
}
