//! FHIR resources from Bedside's rows: one function per resource type.

use serde_json::{Value, json};

use super::{FhirBase, instant, meta, reference};
use crate::appointment::AppointmentStatus;
use crate::appointments::Appointment;
use crate::audit::AuditEntry;
use crate::consents::Consent;
use crate::devices::Device;
use crate::domain::{AppointmentKind, ConsentRecorder, DeviceKind};
use crate::notes::Note;
use crate::patients::Patient;
use crate::practitioners::Practitioner;

/// HL7's participation types (v3): the appointment's clinician is the primary performer.
const PARTICIPATION_TYPE: &str = "http://terminology.hl7.org/CodeSystem/v3-ParticipationType";

/// A Patient.
pub fn patient(base: &FhirBase, p: &Patient) -> Value {
    let mut telecom = Vec::new();
    if let Some(email) = &p.email {
        telecom.push(json!({ "system": "email", "value": email, "use": "home" }));
    }
    if let Some(phone) = &p.phone {
        telecom.push(json!({ "system": "phone", "value": phone, "use": "mobile" }));
    }
    let given: Vec<&str> = p.given_name.split_whitespace().collect();
    let mut resource = json!({
        "resourceType": "Patient",
        "id": p.id.to_string(),
        "meta": meta(p.version, p.updated_at),
        "identifier": [{
            "use": "usual",
            "type": { "coding": [{
                "system": "http://terminology.hl7.org/CodeSystem/v2-0203",
                "code": "MR",
                "display": "Medical record number"
            }] },
            "system": base.mrn_system,
            "value": p.mrn
        }],
        // An erased patient is a pseudonymous shell, no longer in use.
        "active": p.erased_at.is_none(),
        "name": [{ "use": "official", "family": p.family_name, "given": given }],
        "gender": p.sex.as_str(),
        "birthDate": p.birth_date.format("%Y-%m-%d").to_string()
    });
    if !telecom.is_empty() {
        resource["telecom"] = Value::Array(telecom);
    }
    resource
}

/// A Practitioner.
pub fn practitioner(p: &Practitioner) -> Value {
    let mut resource = json!({
        "resourceType": "Practitioner",
        "id": p.id.to_string(),
        "active": p.active,
        "name": [{ "text": p.name }]
    });
    if let Some(email) = &p.email {
        resource["telecom"] = json!([{ "system": "email", "value": email, "use": "work" }]);
    }
    if let Some(qualification) = &p.qualification {
        resource["qualification"] = json!([{ "code": { "text": qualification } }]);
    }
    resource
}

fn device_kind_name(kind: DeviceKind) -> &'static str {
    match kind {
        DeviceKind::PulseOximeter => "Pulse oximeter",
        DeviceKind::BloodPressureMonitor => "Blood pressure monitor",
        DeviceKind::Thermometer => "Thermometer",
        DeviceKind::Scale => "Scale",
        DeviceKind::Glucometer => "Glucometer",
    }
}

/// A Device, with the patient it is assigned to now.
pub fn device(base: &FhirBase, d: &Device) -> Value {
    let name = device_kind_name(d.kind);
    let mut resource = json!({
        "resourceType": "Device",
        "id": d.id.to_string(),
        "status": "active",
        "serialNumber": d.serial,
        "deviceName": [{ "name": format!("{name} {}", d.serial), "type": "user-friendly-name" }],
        "type": {
            "coding": [{ "system": base.code_system("device-kind"), "code": d.kind.as_str(), "display": name }],
            "text": name
        }
    });
    if let Some(patient) = d.patient_id {
        resource["patient"] = reference("Patient", patient, None);
    }
    resource
}

/// FHIR's `AppointmentStatus` for Bedside's lifecycle. A visit being held
/// is `checked-in` (its Encounter is `in-progress`): FHIR's appointment has
/// no "in progress", and `arrived` is the waiting room.
pub fn appointment_status(status: AppointmentStatus) -> &'static str {
    match status {
        AppointmentStatus::Booked => "booked",
        AppointmentStatus::Arrived => "arrived",
        AppointmentStatus::InProgress => "checked-in",
        AppointmentStatus::Finished => "fulfilled",
        AppointmentStatus::Cancelled => "cancelled",
        AppointmentStatus::NoShow => "noshow",
    }
}

/// Bedside's status for a FHIR appointment status; `None` for the FHIR
/// statuses Bedside has no state for (`proposed`, `pending`, `waitlist`,
/// `entered-in-error`).
pub fn appointment_status_from_fhir(code: &str) -> Option<AppointmentStatus> {
    AppointmentStatus::ALL
        .into_iter()
        .find(|s| appointment_status(*s) == code)
}

/// The coding of a visit's kind (`Appointment.serviceType`).
pub fn visit_kind(base: &FhirBase, kind: AppointmentKind) -> Value {
    let display = match kind {
        AppointmentKind::Video => "Video visit",
        AppointmentKind::InPerson => "Visit in the clinic",
    };
    json!({
        "coding": [{ "system": base.code_system("visit-kind"), "code": kind.as_str(), "display": display }],
        "text": display
    })
}

/// An Appointment.
pub fn appointment(base: &FhirBase, a: &Appointment) -> Value {
    json!({
        "resourceType": "Appointment",
        "id": a.id.to_string(),
        "meta": meta(a.version, a.updated_at),
        "status": appointment_status(a.status),
        "serviceType": [visit_kind(base, a.kind)],
        "description": a.reason,
        "start": instant(a.starts_at),
        "end": instant(a.ends_at),
        "minutesDuration": (a.ends_at - a.starts_at).num_minutes(),
        "created": instant(a.created_at),
        "participant": [
            {
                "actor": reference("Patient", a.patient_id, Some(&a.patient_name)),
                "required": "required",
                "status": "accepted"
            },
            {
                "type": [{ "coding": [{ "system": PARTICIPATION_TYPE, "code": "PPRF", "display": "primary performer" }] }],
                "actor": reference("Practitioner", a.practitioner_id, Some(&a.practitioner_name)),
                "required": "required",
                "status": "accepted"
            }
        ]
    })
}

/// The Encounter of an appointment that has started (video visits are
/// class `VR`, virtual; clinic visits `AMB`, ambulatory); `None` before it starts.
pub fn encounter(a: &Appointment) -> Option<Value> {
    let started = a.started_at?;
    let status = match a.status {
        AppointmentStatus::Finished => "finished",
        _ => "in-progress",
    };
    let class = match a.kind {
        AppointmentKind::Video => json!({
            "system": "http://terminology.hl7.org/CodeSystem/v3-ActCode", "code": "VR", "display": "virtual"
        }),
        AppointmentKind::InPerson => json!({
            "system": "http://terminology.hl7.org/CodeSystem/v3-ActCode", "code": "AMB", "display": "ambulatory"
        }),
    };
    let mut period = json!({ "start": instant(started) });
    let mut resource = json!({
        "resourceType": "Encounter",
        "id": a.id.to_string(),
        "meta": meta(a.version, a.updated_at),
        "status": status,
        "class": class,
        "subject": reference("Patient", a.patient_id, Some(&a.patient_name)),
        "participant": [{
            "type": [{ "coding": [{ "system": PARTICIPATION_TYPE, "code": "PPRF", "display": "primary performer" }] }],
            "individual": reference("Practitioner", a.practitioner_id, Some(&a.practitioner_name))
        }],
        "appointment": [reference("Appointment", a.id, None)],
        "reasonCode": [{ "text": a.reason }]
    });
    if let Some(finished) = a.finished_at {
        period["end"] = json!(instant(finished));
        let minutes = (finished - started).num_seconds() as f64 / 60.0;
        resource["length"] = json!({
            "value": (minutes * 10.0).round() / 10.0,
            "unit": "min",
            "system": super::UCUM,
            "code": "min"
        });
    }
    resource["period"] = period;
    Some(resource)
}

/// A Consent: the telemedicine consent a patient accepted (an opt-in to
/// care by video under the named version of the consent text).
pub fn consent(base: &FhirBase, c: &Consent) -> Value {
    let mut resource = json!({
        "resourceType": "Consent",
        "id": c.id.to_string(),
        "status": "active",
        "scope": { "coding": [{
            "system": "http://terminology.hl7.org/CodeSystem/consentscope",
            "code": "treatment",
            "display": "Treatment"
        }] },
        "category": [{
            "coding": [{ "system": super::LOINC, "code": "59284-0", "display": "Consent Document" }],
            "text": "Telemedicine consent"
        }],
        "patient": reference("Patient", c.patient_id, None),
        "dateTime": instant(c.accepted_at),
        "policy": [{ "uri": format!("{}/consent-text/{}/{}", base.url, c.kind, c.text_version) }],
        "policyRule": { "coding": [{
            "system": "http://terminology.hl7.org/CodeSystem/v3-ActCode",
            "code": "OPTIN",
            "display": "opt-in"
        }] }
    });
    if c.recorded_by_role == ConsentRecorder::Patient {
        resource["performer"] = json!([reference("Patient", c.patient_id, None)]);
    }
    resource
}

/// The CRUDE action code of an audited action, from its verb.
fn audit_action(action: &str) -> &'static str {
    let verb = action.rsplit('.').next().unwrap_or(action);
    match verb {
        "read" | "list" | "search" | "everything" | "lastn" | "export" | "history" => "R",
        "create" | "book" | "record" | "provision" | "issue" | "register" => "C",
        "update" | "transition" | "sign" | "amend" | "assign" | "acknowledge" | "set" => "U",
        "delete" | "revoke" | "remove" | "unassign" | "erase" => "D",
        _ => "E",
    }
}

/// An AuditEvent: a read-only view of one audit row. Staff are identified
/// by their account id (the audit log records accounts, not practitioners).
pub fn audit_event(base: &FhirBase, row: &AuditEntry) -> Value {
    let mut agent = json!({
        "role": [{ "text": row.actor_role }],
        "requestor": true,
        "network": { "address": row.client_addr, "type": "2" }
    });
    if let Some(actor) = row.actor_id {
        agent["who"] = json!({
            "identifier": { "system": format!("{}/sid/user", base.url), "value": actor.to_string() }
        });
    }
    let mut entity = vec![json!({
        "what": { "identifier": { "system": format!("{}/sid/request", base.url), "value": row.request_id } },
        "name": row.resource,
        "description": row.resource_path
    })];
    if let Some(patient) = row.patient_id {
        entity.insert(0, json!({ "what": reference("Patient", patient, None) }));
    }
    json!({
        "resourceType": "AuditEvent",
        "id": row.id.to_string(),
        "type": {
            "system": "http://terminology.hl7.org/CodeSystem/audit-event-type",
            "code": "rest",
            "display": "RESTful Operation"
        },
        "subtype": [{ "system": base.code_system("audit-action"), "code": row.action }],
        "action": audit_action(&row.action),
        "recorded": instant(row.at),
        "outcome": if row.outcome == "allowed" { "0" } else { "4" },
        "outcomeDesc": row.outcome,
        "agent": [agent],
        "source": { "observer": { "display": "Bedside" } },
        "entity": entity
    })
}

/// A Flag for an alert: active while open or acknowledged, with the
/// standard `flag-priority` extension carrying its severity.
pub fn flag(base: &FhirBase, alert: &bedside_vitals_store::alerts::Alert) -> Value {
    let (priority, priority_display) = match alert.severity.as_str() {
        "low" => ("PL", "Low priority"),
        "medium" => ("PM", "Medium priority"),
        _ => ("PH", "High priority"),
    };
    let mut period = json!({ "start": instant(alert.opened_at) });
    if let Some(resolved) = alert.resolved_at {
        period["end"] = json!(instant(resolved));
    }
    json!({
        "resourceType": "Flag",
        "id": alert.id.to_string(),
        "meta": { "lastUpdated": instant(alert.updated_at) },
        "extension": [{
            "url": "http://hl7.org/fhir/StructureDefinition/flag-priority",
            "valueCodeableConcept": {
                "coding": [{ "system": "http://hl7.org/fhir/flag-priority-code", "code": priority, "display": priority_display }],
                "text": alert.severity
            }
        }],
        "status": if alert.status == "resolved" { "inactive" } else { "active" },
        "category": [{ "coding": [{
            "system": "http://terminology.hl7.org/CodeSystem/flag-category",
            "code": "clinical",
            "display": "Clinical"
        }] }],
        "code": {
            "coding": [{ "system": base.code_system("alert-rule"), "code": alert.rule }],
            "text": format!("{} alert: {}", alert.severity, alert.rule)
        },
        "subject": reference("Patient", alert.patient_id, None),
        "period": period
    })
}

/// A visit note as a DocumentReference (LOINC 11506-3, progress note):
/// signed notes are `final`, drafts `preliminary`; an amendment `appends`
/// to the note it amends. The text travels as a base64 attachment.
pub fn document_reference(note: &Note) -> Value {
    use base64::Engine as _;
    let mut resource = json!({
        "resourceType": "DocumentReference",
        "id": note.id.to_string(),
        "status": "current",
        "docStatus": if note.signed_at.is_some() { "final" } else { "preliminary" },
        "type": { "coding": [{ "system": super::LOINC, "code": "11506-3", "display": "Progress note" }] },
        "subject": reference("Patient", note.patient_id, None),
        "date": instant(note.updated_at),
        "author": [{ "display": note.author_name }],
        "content": [{ "attachment": {
            "contentType": "text/plain; charset=utf-8",
            "data": base64::engine::general_purpose::STANDARD.encode(note.text.as_bytes()),
            "creation": instant(note.created_at)
        } }],
        "context": { "related": [reference("Appointment", note.appointment_id, None)] }
    });
    if let Some(amended) = note.amends_note_id {
        resource["relatesTo"] =
            json!([{ "code": "appends", "target": reference("DocumentReference", amended, None) }]);
    }
    resource
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_bedside_status_survives_the_round_trip_through_fhir() {
        for status in AppointmentStatus::ALL {
            assert_eq!(
                appointment_status_from_fhir(appointment_status(status)),
                Some(status)
            );
        }
        assert_eq!(appointment_status_from_fhir("proposed"), None);
    }

    #[test]
    fn audit_actions_map_to_crude_codes() {
        assert_eq!(audit_action("patient.read"), "R");
        assert_eq!(audit_action("patient.list"), "R");
        assert_eq!(audit_action("appointment.book"), "C");
        assert_eq!(audit_action("note.sign"), "U");
        assert_eq!(audit_action("guest_link.revoke"), "D");
        assert_eq!(audit_action("visit.join"), "E");
    }
}
