//! The CapabilityStatement, from one table of what each resource supports.
//! The `/fhir` routes are written against this table and an integration
//! test exercises every interaction and search parameter it lists, so the
//! statement cannot promise what the server does not do.

use chrono::{DateTime, Utc};
use serde_json::{Value, json};

use super::{FHIR_JSON, FHIR_VERSION, FhirBase, instant};

/// A search parameter: name, FHIR type, and what it matches.
pub type SearchParam = (&'static str, &'static str, &'static str);

/// What Bedside supports for one resource type.
#[derive(Debug)]
pub struct ResourceSupport {
    /// The resource type.
    pub resource_type: &'static str,
    /// The profile its instances claim or follow, if any.
    pub profile: Option<&'static str>,
    /// Whether clients may create and update it (with `If-Match`); such
    /// types also answer `vread` of their current version.
    pub writable: bool,
    /// Whether its instances carry `meta.versionId` (and an ETag).
    pub versioned: bool,
    /// Search parameters.
    pub search: &'static [SearchParam],
    /// Instance or type operations: name and definition URL.
    pub operations: &'static [(&'static str, &'static str)],
    /// What the statement says about it.
    pub documentation: &'static str,
}

/// Everything `/fhir` serves.
pub const SUPPORTED: &[ResourceSupport] = &[
    ResourceSupport {
        resource_type: "Patient",
        profile: None,
        writable: true,
        versioned: true,
        search: &[
            ("_id", "token", "The patient's id"),
            (
                "identifier",
                "token",
                "Medical record number (system|value)",
            ),
            (
                "name",
                "string",
                "Start of the given or family name (:exact, :contains)",
            ),
            ("family", "string", "Start of the family name"),
            ("given", "string", "Start of a given name"),
            ("birthdate", "date", "Date of birth, with prefixes"),
            ("gender", "token", "Administrative gender"),
        ],
        operations: &[(
            "everything",
            "http://hl7.org/fhir/OperationDefinition/Patient-everything",
        )],
        documentation: "Clinicians see the patients in their care or with an appointment with them; admins see all. Updates need If-Match.",
    },
    ResourceSupport {
        resource_type: "Practitioner",
        profile: None,
        writable: false,
        versioned: false,
        search: &[
            ("_id", "token", "The practitioner's id"),
            ("name", "string", "Part of the name"),
        ],
        operations: &[],
        documentation: "The clinic's clinicians.",
    },
    ResourceSupport {
        resource_type: "Device",
        profile: None,
        writable: false,
        versioned: false,
        search: &[(
            "patient",
            "reference",
            "The patient the device is assigned to now",
        )],
        operations: &[],
        documentation: "Home devices, with the patient each is assigned to now.",
    },
    ResourceSupport {
        resource_type: "Appointment",
        profile: None,
        writable: true,
        versioned: true,
        search: &[
            ("_id", "token", "The appointment's id"),
            ("date", "date", "Start, with prefixes"),
            ("patient", "reference", "The patient participant"),
            ("practitioner", "reference", "The practitioner participant"),
            (
                "status",
                "token",
                "booked, arrived, checked-in, fulfilled, cancelled, noshow",
            ),
        ],
        operations: &[],
        documentation: "Video and clinic visits. Create books (status booked); update reschedules a booked appointment or moves its status along Bedside's lifecycle. Updates need If-Match.",
    },
    ResourceSupport {
        resource_type: "Encounter",
        profile: None,
        writable: false,
        versioned: true,
        search: &[
            ("patient", "reference", "The patient"),
            ("date", "date", "Start of the encounter, with prefixes"),
        ],
        operations: &[],
        documentation: "The held part of an appointment (class VR for video), from the moment it starts; its id is the appointment's.",
    },
    ResourceSupport {
        resource_type: "Observation",
        profile: Some("http://hl7.org/fhir/StructureDefinition/vitalsigns"),
        writable: false,
        versioned: false,
        search: &[
            ("patient", "reference", "The patient (required, or subject)"),
            ("subject", "reference", "The patient"),
            ("code", "token", "LOINC code (blood pressure: 85354-9)"),
            ("category", "token", "vital-signs, laboratory or exam"),
            ("date", "date", "Time of measurement, with prefixes"),
        ],
        operations: &[(
            "lastn",
            "http://hl7.org/fhir/OperationDefinition/Observation-lastn",
        )],
        documentation: "Home-device readings; blood pressure as a panel with systolic and diastolic components. Search needs a patient; _sort=date or -date (default), _count up to 1000; pages by the next link (a cursor). The total is counted on the first page (_total=none skips it).",
    },
    ResourceSupport {
        resource_type: "Consent",
        profile: None,
        writable: false,
        versioned: false,
        search: &[("patient", "reference", "The patient")],
        operations: &[],
        documentation: "The telemedicine consents patients accepted.",
    },
    ResourceSupport {
        resource_type: "AuditEvent",
        profile: None,
        writable: false,
        versioned: false,
        search: &[
            (
                "patient",
                "reference",
                "The patient whose data was accessed",
            ),
            ("date", "date", "When, with prefixes"),
        ],
        operations: &[],
        documentation: "A read-only view of the audit log; admins only.",
    },
    ResourceSupport {
        resource_type: "Flag",
        profile: None,
        writable: false,
        versioned: false,
        search: &[("patient", "reference", "The patient")],
        operations: &[],
        documentation: "Alerts (thresholds, NEWS2, device offline): active while open or acknowledged; severity in the flag-priority extension.",
    },
];

/// The CapabilityStatement of this server.
pub fn capability_statement(base: &FhirBase, software_version: &str, now: DateTime<Utc>) -> Value {
    let resources: Vec<Value> = SUPPORTED
        .iter()
        .map(|r| {
            let mut interactions =
                vec![json!({ "code": "read" }), json!({ "code": "search-type" })];
            if r.writable {
                interactions.push(json!({ "code": "vread", "documentation": "The current version only: Bedside keeps no history." }));
                interactions.push(json!({ "code": "create" }));
                interactions.push(json!({ "code": "update" }));
            }
            let mut resource = json!({
                "type": r.resource_type,
                "documentation": r.documentation,
                "interaction": interactions,
                "versioning": match (r.writable, r.versioned) {
                    (true, _) => "versioned-update",
                    (false, true) => "versioned",
                    (false, false) => "no-version",
                },
                "readHistory": false,
                "updateCreate": false,
                "conditionalCreate": false,
                "conditionalUpdate": false,
                "conditionalDelete": "not-supported",
                "searchParam": r.search.iter().map(|(name, kind, doc)| json!({
                    "name": name, "type": kind, "documentation": doc
                })).collect::<Vec<_>>()
            });
            if let Some(profile) = r.profile {
                resource["profile"] = json!(profile);
            }
            if !r.operations.is_empty() {
                resource["operation"] = r
                    .operations
                    .iter()
                    .map(|(name, definition)| json!({ "name": name, "definition": definition }))
                    .collect();
            }
            resource
        })
        .collect();
    json!({
        "resourceType": "CapabilityStatement",
        "status": "active",
        "date": instant(now),
        "publisher": "Bedside",
        "kind": "instance",
        "software": { "name": "Bedside", "version": software_version },
        "implementation": { "description": "Bedside FHIR R4 API", "url": base.url },
        "fhirVersion": FHIR_VERSION,
        "format": [FHIR_JSON, "json"],
        "rest": [{
            "mode": "server",
            "documentation": "Bearer tokens from Bedside's sign-in, or tokens with SMART scopes (patient/, user/ or system/ with Type.read, Type.write or v2 letters) minted by POST /api/v1/auth/fhir-token for a signed-in staff member; scopes narrow what a token may do, and the clinic's access rules and audit apply to every request. Unknown search parameters are ignored unless the request says Prefer: handling=strict.",
            "security": {
                "cors": false,
                "service": [{ "coding": [{
                    "system": "http://terminology.hl7.org/CodeSystem/restful-security-service",
                    "code": "OAuth",
                    "display": "OAuth"
                }] }]
            },
            "resource": resources
        }]
    })
}
