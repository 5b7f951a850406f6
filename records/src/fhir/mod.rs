//! HL7 FHIR R4 (4.0.1) views of Bedside's records, as pure functions.
//!
//! Rows in, JSON resources out (and back in, for the two resources clients
//! may write: Patient and Appointment). Nothing here touches the database
//! or HTTP; the signaling crate's `/fhir` routes fetch rows, check access,
//! and call these.
//!
//! ## Layout
//! - [`resources`]: Patient, Practitioner, Device, Appointment, Encounter,
//!   Consent, AuditEvent and Flag from their rows.
//! - [`observation`]: vital-sign Observations from stored readings, and
//!   their ids (a reading has no id of its own: its key is device, metric
//!   and time).
//! - [`input`]: Patient and Appointment resources sent by clients, parsed
//!   into the domain's validated types, with the element at fault named.
//! - [`search`]: search parameter values (dates with prefixes, tokens,
//!   references, `_count`, `_sort`) parsed into typed filters.
//! - [`bundle`]: searchset Bundles with paging links, OperationOutcome.
//! - [`capability`]: the CapabilityStatement, built from one table of what
//!   each resource type supports, so it cannot claim more than the routes do.
//!
//! ## Choices (see `docs/fhir.md`)
//! - Hand-written JSON, not a generated FHIR model crate: the generated
//!   crates on crates.io cover every resource of every version and would
//!   add minutes to every build on a 2-core machine for the ten resources
//!   used here. Tests validate every resource Bedside produces with an
//!   independent validator instead.
//! - Alerts are `Flag`s: a Flag is a standing warning about a patient that
//!   is active until it is not, which is what an alert is; `DetectedIssue`
//!   is about a proposed or ongoing action (a drug interaction).
//! - An Encounter is the held part of a video or clinic appointment: it
//!   exists from the moment the visit starts and shares the appointment's id.

pub mod bundle;
pub mod capability;
pub mod input;
pub mod observation;
pub mod resources;
pub mod search;

use chrono::{DateTime, SecondsFormat, Utc};
use serde_json::{Value, json};

/// The media type FHIR clients ask for and get.
pub const FHIR_JSON: &str = "application/fhir+json";

/// The FHIR version served.
pub const FHIR_VERSION: &str = "4.0.1";

/// LOINC's code system.
pub const LOINC: &str = "http://loinc.org";

/// UCUM's code system.
pub const UCUM: &str = "http://unitsofmeasure.org";

/// Where Bedside's resources live, and the identifier system of the
/// clinic's medical record numbers.
#[derive(Debug, Clone)]
pub struct FhirBase {
    /// The FHIR base URL, e.g. `https://clinic.example/fhir` (no trailing slash).
    pub url: String,
    /// `Patient.identifier.system` of the MRN.
    pub mrn_system: String,
}

impl FhirBase {
    /// The absolute URL of a resource (`Bundle.entry.fullUrl`).
    pub fn full_url(&self, resource_type: &str, id: &str) -> String {
        format!("{}/{resource_type}/{id}", self.url)
    }
    /// The canonical URL of one of Bedside's own code systems.
    pub fn code_system(&self, name: &str) -> String {
        format!("{}/CodeSystem/{name}", self.url)
    }
}

/// An `instant`: UTC with the offset written out, to the microsecond
/// stored (FHIR allows any precision).
pub fn instant(at: DateTime<Utc>) -> String {
    at.to_rfc3339_opts(SecondsFormat::AutoSi, true)
}

/// `meta` with a version and the time of the last change.
pub fn meta(version: i64, last_updated: DateTime<Utc>) -> Value {
    json!({ "versionId": version.to_string(), "lastUpdated": instant(last_updated) })
}

/// A literal reference, with an optional display.
pub fn reference(resource_type: &str, id: impl std::fmt::Display, display: Option<&str>) -> Value {
    let mut reference = json!({ "reference": format!("{resource_type}/{id}") });
    if let Some(display) = display {
        reference["display"] = json!(display);
    }
    reference
}

/// The weak ETag of a version, as FHIR writes it: `W/"3"`.
pub fn etag(version: i64) -> String {
    format!("W/\"{version}\"")
}

/// The version an `If-Match` header names (`W/"3"` or `"3"`).
pub fn if_match_version(header: &str) -> Option<i64> {
    let tag = header.trim();
    let tag = tag.strip_prefix("W/").unwrap_or(tag);
    tag.strip_prefix('"')?.strip_suffix('"')?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn if_match_takes_weak_and_strong_tags_and_nothing_else() {
        assert_eq!(if_match_version("W/\"3\""), Some(3));
        assert_eq!(if_match_version(" \"12\" "), Some(12));
        assert_eq!(if_match_version(&etag(7)), Some(7));
        for bad in ["3", "W/3", "\"three\"", "W/\"\"", "*", "\"3"] {
            assert_eq!(if_match_version(bad), None, "{bad}");
        }
    }

    #[test]
    fn instants_carry_an_offset() {
        let at = DateTime::parse_from_rfc3339("2026-03-01T08:30:00.250Z")
            .unwrap()
            .with_timezone(&Utc);
        assert_eq!(instant(at), "2026-03-01T08:30:00.250Z");
    }
}
