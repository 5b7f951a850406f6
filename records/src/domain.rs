//! Validated value types. Each has a `parse` that is the only way to build
//! it from outside input, so once a value exists it is valid; every failure
//! names the input field it came from so the HTTP edge can point at it.

use chrono::{Datelike, NaiveDate, Utc};
use serde::{Deserialize, Serialize};

/// A value that failed validation, with the input field it came from.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {reason}")]
pub struct InvalidInput {
    /// Name of the input field (as in the JSON body).
    pub field: &'static str,
    /// Why it was refused, in words fit for the person who typed it.
    pub reason: String,
}

impl InvalidInput {
    /// A refusal of `field` because of `reason`.
    pub fn new(field: &'static str, reason: impl Into<String>) -> Self {
        Self {
            field,
            reason: reason.into(),
        }
    }
}

type Parsed<T> = Result<T, InvalidInput>;

/// Trims `raw` and checks it is non-empty, at most `max` characters and free
/// of control characters.
fn clean_text(field: &'static str, raw: &str, max: usize) -> Parsed<String> {
    let text = raw.trim();
    if text.is_empty() {
        return Err(InvalidInput::new(field, "must not be empty"));
    }
    if text.chars().count() > max {
        return Err(InvalidInput::new(
            field,
            format!("must be at most {max} characters"),
        ));
    }
    if text
        .chars()
        .any(|c| c.is_control() && c != '\n' && c != '\t')
    {
        return Err(InvalidInput::new(
            field,
            "must not contain control characters",
        ));
    }
    Ok(text.to_owned())
}

/// Free text with a length bound (names, reasons, qualifications).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct BoundedText(String);

impl BoundedText {
    /// Parses trimmed, non-empty text of at most `max` characters.
    pub fn parse(field: &'static str, raw: &str, max: usize) -> Parsed<Self> {
        clean_text(field, raw, max).map(Self)
    }
    /// The text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// An e-mail address, lower-cased. Only the shape is checked: deliverability
/// is the mail system's business.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Email(String);

impl Email {
    /// Parses an address of the form `local@domain.tld`.
    pub fn parse(field: &'static str, raw: &str) -> Parsed<Self> {
        let text = clean_text(field, raw, 254)?.to_lowercase();
        let valid = match text.split_once('@') {
            Some((local, domain)) => {
                !local.is_empty()
                    && domain.contains('.')
                    && !domain.starts_with('.')
                    && !domain.ends_with('.')
                    && !text.contains(char::is_whitespace)
                    && !domain.contains('@')
            }
            None => false,
        };
        if valid {
            Ok(Self(text))
        } else {
            Err(InvalidInput::new(field, "is not an e-mail address"))
        }
    }
    /// The address.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// A medical record number: the clinic's own identifier for a patient.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Mrn(String);

impl Mrn {
    /// Parses 1–32 letters, digits, `-` or `/`.
    pub fn parse(raw: &str) -> Parsed<Self> {
        let text = clean_text("mrn", raw, 32)?;
        if text
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '/')
        {
            Ok(Self(text))
        } else {
            Err(InvalidInput::new(
                "mrn",
                "may contain only letters, digits, '-' and '/'",
            ))
        }
    }
    /// The MRN.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// A birth date: a real calendar date, not in the future, not before 1880.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct BirthDate(NaiveDate);

impl BirthDate {
    /// Parses `YYYY-MM-DD`.
    pub fn parse(raw: &str) -> Parsed<Self> {
        let date = NaiveDate::parse_from_str(raw.trim(), "%Y-%m-%d")
            .map_err(|_| InvalidInput::new("birth_date", "must be a date as YYYY-MM-DD"))?;
        if date > Utc::now().date_naive() {
            return Err(InvalidInput::new("birth_date", "must not be in the future"));
        }
        if date.year() < 1880 {
            return Err(InvalidInput::new("birth_date", "is implausibly early"));
        }
        Ok(Self(date))
    }
    /// The date.
    pub fn date(self) -> NaiveDate {
        self.0
    }
}

/// A password as typed, checked only for length: NIST SP 800-63B advises
/// length over composition rules. Never logged: `Debug` is redacted.
#[derive(Clone)]
pub struct NewPassword(String);

impl NewPassword {
    /// The minimum length; 12 characters resist offline guessing with argon2id.
    pub const MIN_CHARS: usize = 12;

    /// Parses a password of 12–256 characters.
    pub fn parse(raw: &str) -> Parsed<Self> {
        let n = raw.chars().count();
        if n < Self::MIN_CHARS {
            return Err(InvalidInput::new(
                "password",
                format!("must be at least {} characters", Self::MIN_CHARS),
            ));
        }
        if n > 256 {
            return Err(InvalidInput::new(
                "password",
                "must be at most 256 characters",
            ));
        }
        Ok(Self(raw.to_owned()))
    }
    /// The password, to hash it.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for NewPassword {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("NewPassword(<redacted>)")
    }
}

/// Declares a closed set of values stored as text in PostgreSQL and as
/// snake_case strings in JSON.
macro_rules! text_enum {
    ($(#[$doc:meta])* $name:ident, $field:literal { $($(#[$vdoc:meta])* $variant:ident = $text:literal),+ $(,)? }) => {
        $(#[$doc])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, utoipa::ToSchema)]
        #[serde(rename_all = "snake_case")]
        pub enum $name {
            $($(#[$vdoc])* $variant),+
        }

        impl $name {
            /// Every value, in declaration order.
            pub const ALL: &'static [$name] = &[$($name::$variant),+];

            /// The stored and wire spelling.
            pub fn as_str(self) -> &'static str {
                match self {
                    $($name::$variant => $text),+
                }
            }

            /// Parses the wire spelling.
            pub fn parse(raw: &str) -> Result<Self, InvalidInput> {
                match raw {
                    $($text => Ok($name::$variant),)+
                    _ => Err(InvalidInput::new(
                        $field,
                        format!("must be one of: {}", [$($text),+].join(", ")),
                    )),
                }
            }
        }

        impl std::fmt::Display for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(self.as_str())
            }
        }

        impl sqlx::Type<sqlx::Postgres> for $name {
            fn type_info() -> sqlx::postgres::PgTypeInfo {
                <&str as sqlx::Type<sqlx::Postgres>>::type_info()
            }
            fn compatible(ty: &sqlx::postgres::PgTypeInfo) -> bool {
                <&str as sqlx::Type<sqlx::Postgres>>::compatible(ty)
            }
        }

        impl<'q> sqlx::Encode<'q, sqlx::Postgres> for $name {
            fn encode_by_ref(
                &self,
                buf: &mut sqlx::postgres::PgArgumentBuffer,
            ) -> Result<sqlx::encode::IsNull, sqlx::error::BoxDynError> {
                <&str as sqlx::Encode<sqlx::Postgres>>::encode_by_ref(&self.as_str(), buf)
            }
        }

        impl<'r> sqlx::Decode<'r, sqlx::Postgres> for $name {
            fn decode(value: sqlx::postgres::PgValueRef<'r>) -> Result<Self, sqlx::error::BoxDynError> {
                let text = <&str as sqlx::Decode<sqlx::Postgres>>::decode(value)?;
                Ok($name::parse(text)?)
            }
        }
    };
}

text_enum!(
    /// Administrative sex, as HL7 FHIR's `AdministrativeGender`.
    Sex, "sex" { Female = "female", Male = "male", Other = "other", Unknown = "unknown" }
);

text_enum!(
    /// Kinds of home device Bedside knows how to ingest.
    DeviceKind, "kind" {
        PulseOximeter = "pulse_oximeter",
        BloodPressureMonitor = "blood_pressure_monitor",
        Thermometer = "thermometer",
        Scale = "scale",
        Glucometer = "glucometer",
    }
);

text_enum!(
    /// Whether a visit is held by video or in the clinic.
    AppointmentKind, "kind" { Video = "video", InPerson = "in_person" }
);

text_enum!(
    /// Roles of staff accounts. Patients and devices are not accounts: they
    /// hold visit-scoped sessions and MQTT identities.
    StaffRole, "role" { Admin = "admin", Clinician = "clinician" }
);

text_enum!(
    /// Who recorded a consent.
    ConsentRecorder, "recorded_by_role" { Patient = "patient", Clinician = "clinician", Admin = "admin" }
);

/// A device serial number as printed on the device.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Serial(String);

impl Serial {
    /// Parses 1–64 printable ASCII characters without spaces.
    pub fn parse(raw: &str) -> Parsed<Self> {
        let text = clean_text("serial", raw, 64)?;
        if text.chars().all(|c| c.is_ascii_graphic()) {
            Ok(Self(text))
        } else {
            Err(InvalidInput::new(
                "serial",
                "may contain only printable ASCII characters without spaces",
            ))
        }
    }
    /// The serial.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn emails_are_lowercased_and_checked() {
        assert_eq!(
            Email::parse("email", " Ann@Clinic.Example ")
                .unwrap()
                .as_str(),
            "ann@clinic.example"
        );
        for bad in [
            "",
            "ann",
            "ann@",
            "@clinic.example",
            "ann@clinic",
            "a b@c.d",
            "ann@@c.d",
            "ann@.c",
        ] {
            assert!(Email::parse("email", bad).is_err(), "{bad:?} accepted");
        }
    }

    #[test]
    fn birth_dates_must_be_real_and_past() {
        assert!(BirthDate::parse("1970-02-28").is_ok());
        for bad in [
            "1970-02-30",
            "19700228",
            "2999-01-01",
            "1700-01-01",
            "yesterday",
        ] {
            let err = BirthDate::parse(bad).unwrap_err();
            assert_eq!(err.field, "birth_date");
        }
    }

    #[test]
    fn mrn_and_serial_refuse_odd_characters() {
        assert!(Mrn::parse("MRN-0001/7").is_ok());
        assert!(Mrn::parse("MRN 1").is_err());
        assert!(Mrn::parse(&"9".repeat(33)).is_err());
        assert!(Serial::parse("OX-1234").is_ok());
        assert!(Serial::parse("OX 1234").is_err());
        assert!(Serial::parse("").is_err());
    }

    #[test]
    fn text_enums_round_trip_and_refuse_unknown() {
        for kind in DeviceKind::ALL {
            assert_eq!(DeviceKind::parse(kind.as_str()).unwrap(), *kind);
        }
        let err = Sex::parse("F").unwrap_err();
        assert!(err.reason.contains("female"));
    }

    #[test]
    fn passwords_need_length_and_never_print() {
        assert!(NewPassword::parse("short").is_err());
        let p = NewPassword::parse("correct horse battery").unwrap();
        assert!(!format!("{p:?}").contains("horse"));
    }

    #[test]
    fn text_is_trimmed_bounded_and_free_of_controls() {
        assert_eq!(
            BoundedText::parse("reason", "  cough ", 10)
                .unwrap()
                .as_str(),
            "cough"
        );
        assert!(BoundedText::parse("reason", "   ", 10).is_err());
        assert!(BoundedText::parse("reason", "a\u{0}b", 10).is_err());
        assert!(BoundedText::parse("reason", &"x".repeat(11), 10).is_err());
    }
}
