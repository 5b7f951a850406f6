//! Patient and Appointment resources sent by clients, parsed into the
//! domain's validated types. Every refusal names the element at fault as a
//! FHIRPath expression (`Patient.birthDate`), which the edge puts in the
//! OperationOutcome.
//!
//! Elements Bedside does not keep (a second name, an address, extensions)
//! are ignored rather than refused, as FHIR servers commonly do; the
//! CapabilityStatement and `docs/fhir.md` list what is kept.

use chrono::{DateTime, Utc};
use serde_json::Value;

use super::FhirBase;
use super::resources::appointment_status_from_fhir;
use crate::appointment::AppointmentStatus;
use crate::appointments::VisitLength;
use crate::domain::{AppointmentKind, BirthDate, BoundedText, Email, InvalidInput, Mrn, Sex};
use crate::ids::{PatientId, PractitionerId};
use crate::patients::PatientDetails;

/// An element that cannot be used, and why (HTTP 422, or 400 when the
/// body is not the resource it should be).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{expression}: {reason}")]
pub struct InputError {
    /// FHIRPath of the element.
    pub expression: String,
    /// Why.
    pub reason: String,
}

impl InputError {
    /// An error at `expression`.
    pub fn new(expression: impl Into<String>, reason: impl Into<String>) -> Self {
        Self {
            expression: expression.into(),
            reason: reason.into(),
        }
    }

    fn from_invalid(expression: &str, invalid: InvalidInput) -> Self {
        Self::new(expression, invalid.reason)
    }
}

type Parsed<T> = Result<T, InputError>;

/// Checks the resource type and, for an update, that the body's id is the URL's.
fn check_envelope(body: &Value, resource_type: &str, url_id: Option<&str>) -> Parsed<()> {
    if !body.is_object() {
        return Err(InputError::new(
            resource_type,
            "the body must be a JSON object",
        ));
    }
    if body["resourceType"] != resource_type {
        return Err(InputError::new(
            "resourceType",
            format!("must be {resource_type}"),
        ));
    }
    match (url_id, body.get("id")) {
        (Some(url_id), Some(id)) if id != url_id => Err(InputError::new(
            format!("{resource_type}.id"),
            "must be the id in the URL",
        )),
        (Some(_), None) => Err(InputError::new(
            format!("{resource_type}.id"),
            "an update must carry the resource's id",
        )),
        _ => Ok(()),
    }
}

fn string<'a>(value: &'a Value, expression: &str) -> Parsed<Option<&'a str>> {
    match value {
        Value::Null => Ok(None),
        Value::String(s) => Ok(Some(s)),
        _ => Err(InputError::new(expression, "must be a string")),
    }
}

fn array<'a>(value: &'a Value, expression: &str) -> Parsed<&'a [Value]> {
    match value {
        Value::Null => Ok(&[]),
        Value::Array(items) => Ok(items),
        _ => Err(InputError::new(expression, "must be an array")),
    }
}

/// A Patient sent by a client: the MRN is the identifier with the clinic's
/// MRN system; the official (or first) name gives family and given names.
///
/// # Errors
/// [`InputError`] naming the element.
pub fn patient(base: &FhirBase, body: &Value, url_id: Option<&str>) -> Parsed<PatientDetails> {
    check_envelope(body, "Patient", url_id)?;
    let identifiers = array(&body["identifier"], "Patient.identifier")?;
    let mrn = identifiers
        .iter()
        .find(|i| i["system"] == base.mrn_system.as_str())
        .ok_or_else(|| {
            InputError::new(
                "Patient.identifier",
                format!(
                    "needs the clinic's medical record number (system {})",
                    base.mrn_system
                ),
            )
        })?;
    let mrn = string(&mrn["value"], "Patient.identifier.value")?
        .ok_or_else(|| InputError::new("Patient.identifier.value", "is missing"))?;
    let mrn =
        Mrn::parse(mrn).map_err(|e| InputError::from_invalid("Patient.identifier.value", e))?;

    let names = array(&body["name"], "Patient.name")?;
    let name = names
        .iter()
        .find(|n| n["use"] == "official")
        .or_else(|| names.first())
        .ok_or_else(|| InputError::new("Patient.name", "needs a name"))?;
    let family = string(&name["family"], "Patient.name.family")?
        .ok_or_else(|| InputError::new("Patient.name.family", "is missing"))?;
    let mut given = Vec::new();
    for part in array(&name["given"], "Patient.name.given")? {
        given.push(
            string(part, "Patient.name.given")?
                .ok_or_else(|| InputError::new("Patient.name.given", "must be a string"))?,
        );
    }
    if given.is_empty() {
        return Err(InputError::new("Patient.name.given", "needs a given name"));
    }

    let birth_date = string(&body["birthDate"], "Patient.birthDate")?
        .ok_or_else(|| InputError::new("Patient.birthDate", "is missing"))?;
    let birth_date = BirthDate::parse(birth_date)
        .map_err(|e| InputError::from_invalid("Patient.birthDate", e))?;
    let sex = match string(&body["gender"], "Patient.gender")? {
        None => Sex::Unknown,
        Some(gender) => {
            Sex::parse(gender).map_err(|e| InputError::from_invalid("Patient.gender", e))?
        }
    };

    let mut email = None;
    let mut phone = None;
    for point in array(&body["telecom"], "Patient.telecom")? {
        let value = string(&point["value"], "Patient.telecom.value")?;
        match (point["system"].as_str(), value) {
            (Some("email"), Some(value)) if email.is_none() => {
                email = Some(
                    Email::parse("email", value)
                        .map_err(|e| InputError::from_invalid("Patient.telecom.value", e))?,
                );
            }
            (Some("phone" | "sms"), Some(value)) if phone.is_none() => {
                phone = Some(
                    BoundedText::parse("phone", value, 40)
                        .map_err(|e| InputError::from_invalid("Patient.telecom.value", e))?,
                );
            }
            _ => {}
        }
    }

    Ok(PatientDetails {
        mrn,
        given_name: BoundedText::parse("given_name", &given.join(" "), 100)
            .map_err(|e| InputError::from_invalid("Patient.name.given", e))?,
        family_name: BoundedText::parse("family_name", family, 100)
            .map_err(|e| InputError::from_invalid("Patient.name.family", e))?,
        birth_date,
        sex,
        email,
        phone,
    })
}

/// An Appointment sent by a client.
#[derive(Debug, Clone)]
pub struct AppointmentInput {
    /// The patient participant.
    pub patient: PatientId,
    /// The practitioner participant.
    pub practitioner: PractitionerId,
    /// Start.
    pub starts_at: DateTime<Utc>,
    /// End minus start.
    pub length: VisitLength,
    /// From `serviceType` (Bedside's `visit-kind` codes); video when absent.
    pub kind: AppointmentKind,
    /// `description`, else the first `reasonCode.text`.
    pub reason: BoundedText,
    /// The status asked for.
    pub status: AppointmentStatus,
}

fn instant(body: &Value, element: &str) -> Parsed<DateTime<Utc>> {
    let expression = format!("Appointment.{element}");
    let raw = string(&body[element], &expression)?
        .ok_or_else(|| InputError::new(&expression, "is missing"))?;
    DateTime::parse_from_rfc3339(raw)
        .map(|t| t.with_timezone(&Utc))
        .map_err(|_| {
            InputError::new(
                &expression,
                "must be an instant with an offset, like 2026-03-01T09:30:00+01:00",
            )
        })
}

/// Parses an Appointment: one Patient and one Practitioner participant,
/// start and end, the visit kind and the reason.
///
/// # Errors
/// [`InputError`] naming the element.
pub fn appointment(
    base: &FhirBase,
    body: &Value,
    url_id: Option<&str>,
) -> Parsed<AppointmentInput> {
    check_envelope(body, "Appointment", url_id)?;
    let status = string(&body["status"], "Appointment.status")?
        .ok_or_else(|| InputError::new("Appointment.status", "is missing"))?;
    let status = appointment_status_from_fhir(status).ok_or_else(|| {
        InputError::new(
            "Appointment.status",
            format!("{status:?} is not one Bedside keeps (booked, arrived, checked-in, fulfilled, cancelled, noshow)"),
        )
    })?;
    let starts_at = instant(body, "start")?;
    let ends_at = instant(body, "end")?;
    let length = VisitLength::parse((ends_at - starts_at).num_minutes())
        .map_err(|e| InputError::from_invalid("Appointment.end", e))?;
    if (ends_at - starts_at).num_seconds() % 60 != 0 {
        return Err(InputError::new(
            "Appointment.end",
            "must be whole minutes after the start",
        ));
    }

    let mut patient = None;
    let mut practitioner = None;
    for participant in array(&body["participant"], "Appointment.participant")? {
        let reference = string(
            &participant["actor"]["reference"],
            "Appointment.participant.actor.reference",
        )?
        .unwrap_or_default();
        let (kind, id) = reference.rsplit_once('/').unwrap_or(("", reference));
        let kind = kind.rsplit('/').next().unwrap_or(kind);
        let id = uuid::Uuid::try_parse(id).map_err(|_| {
            InputError::new(
                "Appointment.participant.actor.reference",
                format!("{reference:?} is not a Patient or Practitioner of this server"),
            )
        });
        match kind {
            "Patient" if patient.is_none() => patient = Some(PatientId(id?)),
            "Practitioner" if practitioner.is_none() => practitioner = Some(PractitionerId(id?)),
            "Patient" | "Practitioner" => {
                return Err(InputError::new(
                    "Appointment.participant",
                    format!("needs exactly one {kind}"),
                ));
            }
            _ => {
                return Err(InputError::new(
                    "Appointment.participant.actor.reference",
                    format!("{reference:?} is not a Patient or Practitioner reference"),
                ));
            }
        }
    }
    let patient =
        patient.ok_or_else(|| InputError::new("Appointment.participant", "needs a Patient"))?;
    let practitioner = practitioner
        .ok_or_else(|| InputError::new("Appointment.participant", "needs a Practitioner"))?;

    let kind_system = base.code_system("visit-kind");
    let mut kind = AppointmentKind::Video;
    for service in array(&body["serviceType"], "Appointment.serviceType")? {
        for coding in array(&service["coding"], "Appointment.serviceType.coding")? {
            if coding["system"] == kind_system.as_str() {
                let code = string(&coding["code"], "Appointment.serviceType.coding.code")?
                    .unwrap_or_default();
                kind = AppointmentKind::parse(code).map_err(|e| {
                    InputError::from_invalid("Appointment.serviceType.coding.code", e)
                })?;
            }
        }
    }

    let reason = match string(&body["description"], "Appointment.description")? {
        Some(description) => description.to_owned(),
        None => array(&body["reasonCode"], "Appointment.reasonCode")?
            .first()
            .and_then(|r| r["text"].as_str())
            .ok_or_else(|| {
                InputError::new(
                    "Appointment.description",
                    "needs a description or a reasonCode text",
                )
            })?
            .to_owned(),
    };
    let reason = BoundedText::parse("reason", &reason, 500)
        .map_err(|e| InputError::from_invalid("Appointment.description", e))?;

    Ok(AppointmentInput {
        patient,
        practitioner,
        starts_at,
        length,
        kind,
        reason,
        status,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn base() -> FhirBase {
        FhirBase {
            url: "https://clinic.example/fhir".into(),
            mrn_system: "urn:mrn".into(),
        }
    }

    fn good_patient() -> Value {
        json!({
            "resourceType": "Patient",
            "identifier": [{ "system": "urn:other", "value": "x" }, { "system": "urn:mrn", "value": "MRN-1" }],
            "name": [{ "use": "official", "family": "Anders", "given": ["Alice", "Marie"] }],
            "gender": "female",
            "birthDate": "1950-04-01",
            "telecom": [{ "system": "email", "value": "alice@example.org" }, { "system": "phone", "value": "+49 30 1234" }]
        })
    }

    #[test]
    fn a_patient_is_parsed_with_its_mrn_and_joined_given_names() {
        let details = patient(&base(), &good_patient(), None).unwrap();
        assert_eq!(details.mrn.as_str(), "MRN-1");
        assert_eq!(details.given_name.as_str(), "Alice Marie");
        assert_eq!(details.family_name.as_str(), "Anders");
        assert_eq!(details.sex, Sex::Female);
        assert_eq!(details.email.unwrap().as_str(), "alice@example.org");
    }

    #[test]
    fn malformed_patients_name_the_element_at_fault() {
        let cases: Vec<(Value, &str)> = vec![
            (json!([]), "Patient"),
            (json!({ "resourceType": "Observation" }), "resourceType"),
            (
                {
                    let mut p = good_patient();
                    p["identifier"] = json!([]);
                    p
                },
                "Patient.identifier",
            ),
            (
                {
                    let mut p = good_patient();
                    p["identifier"] = json!("MRN-1");
                    p
                },
                "Patient.identifier",
            ),
            (
                {
                    let mut p = good_patient();
                    p["name"] = json!([{ "family": "A" }]);
                    p
                },
                "Patient.name.given",
            ),
            (
                {
                    let mut p = good_patient();
                    p["name"][0]["given"] = json!([7]);
                    p
                },
                "Patient.name.given",
            ),
            (
                {
                    let mut p = good_patient();
                    p["birthDate"] = json!("1950-02-30");
                    p
                },
                "Patient.birthDate",
            ),
            (
                {
                    let mut p = good_patient();
                    p["birthDate"] = json!(1950);
                    p
                },
                "Patient.birthDate",
            ),
            (
                {
                    let mut p = good_patient();
                    p["gender"] = json!("robot");
                    p
                },
                "Patient.gender",
            ),
            (
                {
                    let mut p = good_patient();
                    p["telecom"][0]["value"] = json!("not-an-email");
                    p
                },
                "Patient.telecom.value",
            ),
        ];
        for (body, expression) in cases {
            let error = patient(&base(), &body, None).err().expect("refused");
            assert_eq!(error.expression, expression, "{body}");
        }
    }

    #[test]
    fn an_update_must_carry_the_urls_id() {
        let mut p = good_patient();
        assert_eq!(
            patient(&base(), &p, Some("a"))
                .err()
                .expect("refused")
                .expression,
            "Patient.id"
        );
        p["id"] = json!("b");
        assert_eq!(
            patient(&base(), &p, Some("a"))
                .err()
                .expect("refused")
                .expression,
            "Patient.id"
        );
        p["id"] = json!("a");
        assert!(patient(&base(), &p, Some("a")).is_ok());
    }

    fn good_appointment() -> Value {
        json!({
            "resourceType": "Appointment",
            "status": "booked",
            "start": "2026-03-01T09:30:00+01:00",
            "end": "2026-03-01T09:50:00+01:00",
            "description": "Follow-up",
            "serviceType": [{ "coding": [{ "system": "https://clinic.example/fhir/CodeSystem/visit-kind", "code": "in_person" }] }],
            "participant": [
                { "actor": { "reference": format!("Patient/{}", uuid::Uuid::nil()) }, "status": "accepted" },
                { "actor": { "reference": format!("https://clinic.example/fhir/Practitioner/{}", uuid::Uuid::max()) }, "status": "accepted" }
            ]
        })
    }

    #[test]
    fn an_appointment_is_parsed() {
        let a = appointment(&base(), &good_appointment(), None).unwrap();
        assert_eq!(a.length, VisitLength::parse(20).unwrap());
        assert_eq!(a.kind, AppointmentKind::InPerson);
        assert_eq!(a.practitioner, PractitionerId(uuid::Uuid::max()));
        assert_eq!(a.status, AppointmentStatus::Booked);
    }

    #[test]
    fn malformed_appointments_name_the_element_at_fault() {
        let with = |f: &dyn Fn(&mut Value)| {
            let mut a = good_appointment();
            f(&mut a);
            a
        };
        let cases: Vec<(Value, &str)> = vec![
            (
                with(&|a| a["status"] = json!("proposed")),
                "Appointment.status",
            ),
            (
                with(&|a| {
                    a.as_object_mut().unwrap().remove("status");
                }),
                "Appointment.status",
            ),
            (
                with(&|a| a["start"] = json!("tomorrow")),
                "Appointment.start",
            ),
            (
                with(&|a| a["end"] = json!("2026-03-01T09:30:00+01:00")),
                "Appointment.end",
            ),
            (
                with(&|a| a["end"] = json!("2026-03-01T09:50:30+01:00")),
                "Appointment.end",
            ),
            (
                with(&|a| a["participant"] = json!([])),
                "Appointment.participant",
            ),
            (
                with(&|a| a["participant"][0]["actor"]["reference"] = json!("Group/1")),
                "Appointment.participant.actor.reference",
            ),
            (
                with(&|a| a["participant"][0]["actor"]["reference"] = json!("Patient/42")),
                "Appointment.participant.actor.reference",
            ),
            (
                with(&|a| a["serviceType"][0]["coding"][0]["code"] = json!("hologram")),
                "Appointment.serviceType.coding.code",
            ),
            (
                with(&|a| {
                    a.as_object_mut().unwrap().remove("description");
                }),
                "Appointment.description",
            ),
        ];
        for (body, expression) in cases {
            let error = appointment(&base(), &body, None).unwrap_err();
            assert_eq!(error.expression, expression, "{body}");
        }
    }
}
