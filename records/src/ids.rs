//! Identifiers. They are random UUIDs that mean nothing outside the database,
//! so they are safe in logs and URLs; each kind has its own type so a patient
//! id can never be passed where a device id is expected.

use serde::{Deserialize, Serialize};
use uuid::Uuid;

macro_rules! id_type {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        #[derive(
            Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord,
            Serialize, Deserialize, sqlx::Type, utoipa::ToSchema,
        )]
        #[serde(transparent)]
        #[sqlx(transparent)]
        #[schema(value_type = String, format = Uuid)]
        pub struct $name(pub Uuid);

        impl $name {
            /// A new random id (UUID v7: time-ordered, so indexes stay compact).
            pub fn new() -> Self {
                Self(Uuid::now_v7())
            }
        }

        impl Default for $name {
            fn default() -> Self {
                Self::new()
            }
        }

        impl std::fmt::Display for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                self.0.fmt(f)
            }
        }

        impl std::str::FromStr for $name {
            type Err = uuid::Error;
            fn from_str(s: &str) -> Result<Self, Self::Err> {
                Uuid::parse_str(s).map(Self)
            }
        }
    };
}

id_type!(
    /// A staff account (admin or clinician).
    UserId
);
id_type!(
    /// A patient.
    PatientId
);
id_type!(
    /// A practitioner (the clinical role of a clinician user).
    PractitionerId
);
id_type!(
    /// A home medical device.
    DeviceId
);
id_type!(
    /// An appointment (a visit).
    AppointmentId
);
id_type!(
    /// A visit note.
    NoteId
);
id_type!(
    /// A consent record.
    ConsentId
);
