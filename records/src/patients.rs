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
    /// Last changed.
    pub updated_at: DateTime<Utc>,
    /// Bumped by every change (FHIR `meta.versionId`, the ETag).
    pub version: i64,
    /// When the person's identity was erased on their request (the row is
    /// then a pseudonymous shell).
    pub erased_at: Option<DateTime<Utc>>,
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

const COLUMNS: &str = "id, mrn, given_name, family_name, birth_date, sex, email, phone, created_at, updated_at, version, erased_at";

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

/// Replaces a patient's details. With `if_version`, only when the patient
/// is still at that version (optimistic locking for FHIR's `If-Match`).
///
/// # Errors
/// [`crate::RecordsError::NotFound`], [`crate::RecordsError::Duplicate`]
/// (MRN) or [`crate::RecordsError::VersionConflict`].
pub async fn update(
    db: &PgPool,
    id: PatientId,
    details: &PatientDetails,
    if_version: Option<i64>,
) -> crate::Result<Patient> {
    let updated = sqlx::query_as::<_, Patient>(sqlx::AssertSqlSafe(format!(
        "UPDATE patients SET mrn = $2, given_name = $3, family_name = $4, birth_date = $5, sex = $6,
                email = $7, phone = $8
         WHERE id = $1 AND ($9::bigint IS NULL OR version = $9) AND erased_at IS NULL
         RETURNING {COLUMNS}"
    )))
    .bind(id)
    .bind(details.mrn.as_str())
    .bind(details.given_name.as_str())
    .bind(details.family_name.as_str())
    .bind(details.birth_date.date())
    .bind(details.sex)
    .bind(details.email.as_ref().map(Email::as_str))
    .bind(details.phone.as_ref().map(BoundedText::as_str))
    .bind(if_version)
    .fetch_optional(db)
    .await?;
    if let Some(patient) = updated {
        return Ok(patient);
    }
    let current = get(db, id).await?;
    match if_version {
        _ if current.erased_at.is_some() => Err(crate::RecordsError::Erased),
        Some(expected) => Err(crate::RecordsError::VersionConflict {
            what: "patient",
            expected,
            current: current.version,
        }),
        None => Err(crate::RecordsError::NotFound("patient")),
    }
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
           AND ($2::uuid IS NULL OR {related})
         ORDER BY p.family_name, p.given_name, p.id
         LIMIT $3",
        related = crate::care::related_sql("$2", "p.id")
    )))
    .bind(pattern)
    .bind(practitioner)
    .bind(limit.clamp(1, 500))
    .fetch_all(db)
    .await?)
}

/// What a FHIR Patient search asks for; all optional, combined with AND.
#[derive(Debug, Clone, Default)]
pub struct PatientCriteria {
    /// Any of these ids.
    pub ids: Vec<PatientId>,
    /// Any of these MRNs (exact).
    pub mrns: Vec<String>,
    /// Name texts that must all match.
    pub names: Vec<NameSearch>,
    /// Born on or after.
    pub born_from: Option<NaiveDate>,
    /// Born before.
    pub born_before: Option<NaiveDate>,
    /// Any of these sexes.
    pub sexes: Vec<Sex>,
    /// Only this clinician's patients (care team or appointment).
    pub visible_to: Option<PractitionerId>,
}

/// One name text of a search: which part of the name it is about and how
/// it matches.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NameSearch {
    /// The family name, a given name, or either (`name`).
    pub part: NamePart,
    /// The text.
    pub text: String,
    /// How it matches.
    pub how: NameMatch,
}

/// The part of a name a search text is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NamePart {
    /// Any part (FHIR `name`).
    Any,
    /// The family name (`family`).
    Family,
    /// One of the given names (`given`).
    Given,
}

/// How a name text matches a name (FHIR string search and its modifiers).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum NameMatch {
    /// The start of the name, ignoring case (FHIR's default).
    #[default]
    Prefix,
    /// The whole name, case and all (`:exact`).
    Exact,
    /// Anywhere in the name, ignoring case (`:contains`).
    Contains,
}

impl NameMatch {
    /// The `LIKE` operator and pattern for `text`.
    fn pattern(self, text: &str) -> String {
        let escaped = text
            .replace('\\', "\\\\")
            .replace('%', "\\%")
            .replace('_', "\\_");
        match self {
            NameMatch::Prefix => format!("{escaped}%"),
            NameMatch::Exact => escaped,
            NameMatch::Contains => format!("%{escaped}%"),
        }
    }
}

/// The patients matching `criteria`, by family name, given name and id;
/// `limit` of them after skipping `offset`, and how many match in all.
///
/// # Errors
/// Fails when the database does.
pub async fn find(
    db: &PgPool,
    criteria: &PatientCriteria,
    offset: i64,
    limit: i64,
) -> crate::Result<(Vec<Patient>, i64)> {
    let parts: Vec<&str> = criteria
        .names
        .iter()
        .map(|n| match n.part {
            NamePart::Any => "any",
            NamePart::Family => "family",
            NamePart::Given => "given",
        })
        .collect();
    let patterns: Vec<String> = criteria
        .names
        .iter()
        .map(|n| n.how.pattern(&n.text))
        .collect();
    let exact: Vec<bool> = criteria
        .names
        .iter()
        .map(|n| n.how == NameMatch::Exact)
        .collect();
    // Exact matches are case-sensitive, the others not.
    let matches = |column: &str| {
        format!(
            "(CASE WHEN n.exact THEN {column} LIKE n.pattern ELSE {column} ILIKE n.pattern END)"
        )
    };
    let ids: Vec<uuid::Uuid> = criteria.ids.iter().map(|id| id.0).collect();
    let sexes: Vec<&str> = criteria.sexes.iter().map(|s| s.as_str()).collect();
    let rows: Vec<(i64, Option<uuid::Uuid>)> = sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "WITH matching AS (
             SELECT p.id, p.family_name, p.given_name FROM patients p
             WHERE (cardinality($1::uuid[]) = 0 OR p.id = ANY($1))
               AND (cardinality($2::text[]) = 0 OR p.mrn = ANY($2))
               AND NOT EXISTS (
                   SELECT 1 FROM unnest($3::text[], $4::text[], $5::bool[]) n(part, pattern, exact)
                   WHERE NOT ((n.part IN ('any', 'family') AND {family})
                              OR (n.part IN ('any', 'given')
                                  AND ({given} OR EXISTS (SELECT 1 FROM regexp_split_to_table(p.given_name, '\\s+') part
                                                         WHERE {given_part})))))
               AND ($6::date IS NULL OR p.birth_date >= $6)
               AND ($7::date IS NULL OR p.birth_date < $7)
               AND (cardinality($8::text[]) = 0 OR p.sex::text = ANY($8))
               AND ($9::uuid IS NULL OR {related})
         )
         SELECT (SELECT count(*) FROM matching), page.id
         FROM (SELECT 1) one
         LEFT JOIN LATERAL (SELECT id FROM matching ORDER BY family_name, given_name, id
                            OFFSET $10 LIMIT $11) page ON true",
        related = crate::care::related_sql("$9", "p.id"),
        family = matches("p.family_name"),
        given = matches("p.given_name"),
        given_part = matches("part"),
    )))
    .bind(&ids)
    .bind(&criteria.mrns)
    .bind(&parts)
    .bind(&patterns)
    .bind(&exact)
    .bind(criteria.born_from)
    .bind(criteria.born_before)
    .bind(&sexes)
    .bind(criteria.visible_to)
    .bind(offset.max(0))
    .bind(limit.clamp(0, 1000))
    .fetch_all(db)
    .await?;
    let total = rows.first().map_or(0, |(total, _)| *total);
    let page: Vec<uuid::Uuid> = rows.into_iter().filter_map(|(_, id)| id).collect();
    let mut patients = sqlx::query_as::<_, Patient>(sqlx::AssertSqlSafe(format!(
        "SELECT {COLUMNS} FROM patients WHERE id = ANY($1)"
    )))
    .bind(&page)
    .fetch_all(db)
    .await?;
    patients.sort_by_key(|p| page.iter().position(|id| *id == p.id.0));
    Ok((patients, total))
}
