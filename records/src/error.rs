use crate::appointment::TransitionError;
use crate::domain::InvalidInput;

/// Everything a records operation can fail with. The HTTP edge maps each
/// variant to one status and stable error code.
#[derive(Debug, thiserror::Error)]
pub enum RecordsError {
    /// The named record does not exist (or a referenced id does not).
    #[error("{0} not found")]
    NotFound(&'static str),
    /// An input value failed validation; `field` names the input.
    #[error(transparent)]
    Invalid(#[from] InvalidInput),
    /// The clinician already has a live appointment overlapping that time.
    #[error("the clinician already has an appointment at that time")]
    Overlap,
    /// The device is already assigned to a patient over that period.
    #[error("the device is already assigned over that period")]
    AssignmentOverlap,
    /// The appointment cannot move to the requested status.
    #[error(transparent)]
    Transition(#[from] TransitionError),
    /// The visit note is signed and cannot change; amend it instead.
    #[error("the note is signed and can no longer change; add an amendment")]
    NoteSigned,
    /// A unique value (e-mail, MRN, device serial) is already taken.
    #[error("{what} already exists")]
    Duplicate {
        /// Human name of the taken thing.
        what: &'static str,
        /// The input field that carried it.
        field: &'static str,
    },
    /// The patient was erased on their request: their shell takes no new
    /// data.
    #[error("the patient's record was erased on their request and takes no new data")]
    Erased,
    /// The record changed since the version the caller based its change
    /// on (FHIR `If-Match`): re-read it and try again.
    #[error("{what} has changed since version {expected}; it is now at version {current}")]
    VersionConflict {
        /// Which record.
        what: &'static str,
        /// The version the caller expected.
        expected: i64,
        /// The record's version now.
        current: i64,
    },
    /// The database failed or refused for a reason not listed above.
    #[error("database error")]
    Database(#[source] sqlx::Error),
}

impl From<sqlx::Error> for RecordsError {
    fn from(error: sqlx::Error) -> Self {
        let Some(db) = error.as_database_error() else {
            return match error {
                sqlx::Error::RowNotFound => RecordsError::NotFound("record"),
                other => RecordsError::Database(other),
            };
        };
        match (db.code().as_deref(), db.constraint()) {
            (Some("23P01"), Some("appointments_no_double_booking")) => RecordsError::Overlap,
            (Some("23P01"), Some("device_assignments_no_overlap")) => {
                RecordsError::AssignmentOverlap
            }
            (Some("23505"), Some("users_email_key")) => RecordsError::Duplicate {
                what: "a user with this e-mail",
                field: "email",
            },
            (Some("23505"), Some("patients_mrn_key")) => RecordsError::Duplicate {
                what: "a patient with this MRN",
                field: "mrn",
            },
            (Some("23505"), Some("devices_kind_serial_key")) => RecordsError::Duplicate {
                what: "a device of this kind with this serial",
                field: "serial",
            },
            (Some("23505"), Some("care_relationships_pkey")) => RecordsError::Duplicate {
                what: "this care relationship",
                field: "practitioner_id",
            },
            (Some("23503"), Some(constraint)) => RecordsError::NotFound(referenced(constraint)),
            _ => RecordsError::Database(error),
        }
    }
}

/// Names the record a foreign-key violation points at, from the constraint
/// name PostgreSQL generates (`<table>_<column>_fkey`).
fn referenced(constraint: &str) -> &'static str {
    if constraint.contains("patient_id") {
        "patient"
    } else if constraint.contains("practitioner_id") {
        "practitioner"
    } else if constraint.contains("device_id") {
        "device"
    } else if constraint.contains("appointment_id") {
        "appointment"
    } else if constraint.contains("user_id") || constraint.contains("author_id") {
        "user"
    } else {
        "referenced record"
    }
}
