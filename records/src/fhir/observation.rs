//! Vital-sign Observations from stored readings.
//!
//! A reading is stored as one row per metric, keyed by device, metric and
//! time; it has no id of its own. An Observation's id is that key written
//! out (`{sign}.{device}.{microseconds since 1970}`, at most 64 characters
//! as FHIR allows), so a read finds the row by its unique key and the id
//! never changes. Blood pressure is stored as systolic and diastolic rows
//! of one device at one time and served as one panel (LOINC 85354-9) with
//! two components, as the vital-signs profile wants; the panel's id uses
//! the systolic row's key.

use bedside_vitals_store::metric::Metric;
pub use bedside_vitals_store::observations::Reading;
use chrono::{DateTime, Utc};
use serde_json::{Value, json};
use uuid::Uuid;

use super::{FhirBase, LOINC, UCUM, instant, reference};

/// The observation category code system.
const CATEGORY: &str = "http://terminology.hl7.org/CodeSystem/observation-category";

/// One kind of Observation Bedside serves.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum VitalSign {
    /// Heart rate, 8867-4.
    HeartRate,
    /// Oxygen saturation, 2708-6 with 59408-5 (by pulse oximetry).
    OxygenSaturation,
    /// Respiratory rate, 9279-1.
    RespiratoryRate,
    /// Body temperature, 8310-5.
    BodyTemperature,
    /// Blood pressure panel, 85354-9, with systolic 8480-6 and diastolic 8462-4.
    BloodPressure,
    /// Body weight, 29463-7.
    BodyWeight,
    /// Glucose by meter, 2339-0 (category laboratory: not a vital sign).
    Glucose,
    /// Air or supplemental oxygen (NEWS2), 3150-0, coded.
    SupplementalOxygen,
    /// Level of consciousness, ACVPU, 67775-7, coded.
    Consciousness,
}

impl VitalSign {
    /// Every kind.
    pub const ALL: [VitalSign; 9] = [
        VitalSign::HeartRate,
        VitalSign::OxygenSaturation,
        VitalSign::RespiratoryRate,
        VitalSign::BodyTemperature,
        VitalSign::BloodPressure,
        VitalSign::BodyWeight,
        VitalSign::Glucose,
        VitalSign::SupplementalOxygen,
        VitalSign::Consciousness,
    ];

    /// The short key in Observation ids.
    pub fn key(self) -> &'static str {
        match self {
            VitalSign::HeartRate => "hr",
            VitalSign::OxygenSaturation => "spo2",
            VitalSign::RespiratoryRate => "rr",
            VitalSign::BodyTemperature => "temp",
            VitalSign::BloodPressure => "bp",
            VitalSign::BodyWeight => "wt",
            VitalSign::Glucose => "glu",
            VitalSign::SupplementalOxygen => "o2",
            VitalSign::Consciousness => "acvpu",
        }
    }

    /// The metric whose rows carry it (systolic for the blood-pressure panel).
    pub fn stored_metric(self) -> Metric {
        match self {
            VitalSign::HeartRate => Metric::HeartRate,
            VitalSign::OxygenSaturation => Metric::Spo2,
            VitalSign::RespiratoryRate => Metric::RespiratoryRate,
            VitalSign::BodyTemperature => Metric::BodyTemperature,
            VitalSign::BloodPressure => Metric::SystolicBp,
            VitalSign::BodyWeight => Metric::BodyWeight,
            VitalSign::Glucose => Metric::Glucose,
            VitalSign::SupplementalOxygen => Metric::SupplementalOxygen,
            VitalSign::Consciousness => Metric::Consciousness,
        }
    }

    /// The kind a stored metric's rows are served as; `None` for diastolic
    /// rows, which are served inside their blood-pressure panel.
    pub fn of_metric(metric: Metric) -> Option<VitalSign> {
        VitalSign::ALL
            .into_iter()
            .find(|sign| sign.stored_metric() == metric)
    }

    /// The LOINC codings of `Observation.code`, the first the primary one.
    pub fn codings(self) -> &'static [(&'static str, &'static str)] {
        match self {
            VitalSign::HeartRate => &[("8867-4", "Heart rate")],
            VitalSign::OxygenSaturation => &[
                ("2708-6", "Oxygen saturation in Arterial blood"),
                (
                    "59408-5",
                    "Oxygen saturation in Arterial blood by Pulse oximetry",
                ),
            ],
            VitalSign::RespiratoryRate => &[("9279-1", "Respiratory rate")],
            VitalSign::BodyTemperature => &[("8310-5", "Body temperature")],
            VitalSign::BloodPressure => {
                &[("85354-9", "Blood pressure panel with all children optional")]
            }
            VitalSign::BodyWeight => &[("29463-7", "Body weight")],
            VitalSign::Glucose => &[("2339-0", "Glucose [Mass/volume] in Blood")],
            VitalSign::SupplementalOxygen => &[("3150-0", "Inhaled oxygen concentration")],
            VitalSign::Consciousness => &[("67775-7", "Level of responsiveness")],
        }
    }

    /// The kind a LOINC code names (any of its codings).
    pub fn from_loinc(code: &str) -> Option<VitalSign> {
        VitalSign::ALL
            .into_iter()
            .find(|sign| sign.codings().iter().any(|(c, _)| *c == code))
    }

    /// The Observation category code.
    pub fn category(self) -> (&'static str, &'static str) {
        match self {
            VitalSign::Glucose => ("laboratory", "Laboratory"),
            VitalSign::Consciousness => ("exam", "Exam"),
            _ => ("vital-signs", "Vital Signs"),
        }
    }

    /// The R4 vital-signs profile the Observation claims, if any.
    fn profile(self) -> Option<&'static str> {
        match self {
            VitalSign::HeartRate => Some("heartrate"),
            VitalSign::OxygenSaturation => Some("oxygensat"),
            VitalSign::RespiratoryRate => Some("resprate"),
            VitalSign::BodyTemperature => Some("bodytemp"),
            VitalSign::BloodPressure => Some("bp"),
            VitalSign::BodyWeight => Some("bodyweight"),
            // A coded air-or-oxygen answer is not the vital-signs
            // profile's Quantity.
            VitalSign::SupplementalOxygen | VitalSign::Glucose | VitalSign::Consciousness => None,
        }
    }
}

/// An Observation id: the key of the reading behind it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ObservationId {
    /// Which kind.
    pub sign: VitalSign,
    /// The device.
    pub device_id: Uuid,
    /// When.
    pub time: DateTime<Utc>,
}

impl ObservationId {
    /// The id of a reading's Observation; `None` for a diastolic row.
    pub fn of(reading: &Reading) -> Option<ObservationId> {
        Some(ObservationId {
            sign: VitalSign::of_metric(reading.metric)?,
            device_id: reading.device_id,
            time: reading.time,
        })
    }

    /// Parses an id written by [`std::fmt::Display`]; `None` for anything else.
    pub fn parse(raw: &str) -> Option<ObservationId> {
        let mut parts = raw.split('.');
        let (key, device, micros) = (parts.next()?, parts.next()?, parts.next()?);
        if parts.next().is_some() || device.len() != 32 {
            return None;
        }
        let sign = VitalSign::ALL.into_iter().find(|s| s.key() == key)?;
        let device_id = Uuid::try_parse(device).ok()?;
        let time = DateTime::from_timestamp_micros(micros.parse().ok()?)?;
        Some(ObservationId {
            sign,
            device_id,
            time,
        })
    }
}

impl std::fmt::Display for ObservationId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{}.{}.{}",
            self.sign.key(),
            self.device_id.simple(),
            self.time.timestamp_micros()
        )
    }
}

/// Display names of the canonical UCUM units.
fn unit_display(code: &str) -> &str {
    match code {
        "/min" => "/min",
        "Cel" => "Cel",
        "mm[Hg]" => "mmHg",
        other => other,
    }
}

fn quantity(value: f64, metric: Metric) -> Value {
    let code = metric.unit();
    json!({ "value": value, "unit": unit_display(code), "system": UCUM, "code": code })
}

fn code(codings: &[(&str, &str)]) -> Value {
    let coding: Vec<Value> = codings
        .iter()
        .map(|(code, display)| json!({ "system": LOINC, "code": code, "display": display }))
        .collect();
    json!({ "coding": coding, "text": codings[0].1 })
}

const ACVPU: [(&str, &str); 5] = [
    ("A", "Alert"),
    ("C", "New confusion"),
    ("V", "Responds to voice"),
    ("P", "Responds to pain"),
    ("U", "Unresponsive"),
];

/// The Observation of a reading; `None` for a diastolic row (it is a
/// component of its systolic row's panel).
pub fn observation(base: &FhirBase, reading: &Reading) -> Option<Value> {
    let id = ObservationId::of(reading)?;
    let sign = id.sign;
    let (category, category_display) = sign.category();
    let mut resource = json!({
        "resourceType": "Observation",
        "id": id.to_string(),
        "meta": { "lastUpdated": instant(reading.received_at) },
        "status": "final",
        "category": [{
            "coding": [{ "system": CATEGORY, "code": category, "display": category_display }],
            "text": category_display
        }],
        "code": code(sign.codings()),
        "subject": reference("Patient", reading.patient_id, None),
        "effectiveDateTime": instant(reading.time),
        "device": reference("Device", reading.device_id, None)
    });
    if let Some(profile) = sign.profile() {
        resource["meta"]["profile"] =
            json!([format!("http://hl7.org/fhir/StructureDefinition/{profile}")]);
    }
    match sign {
        VitalSign::BloodPressure => {
            let diastolic = match reading.diastolic {
                Some(value) => json!({
                    "code": code(&[("8462-4", "Diastolic blood pressure")]),
                    "valueQuantity": quantity(value, Metric::DiastolicBp)
                }),
                None => json!({
                    "code": code(&[("8462-4", "Diastolic blood pressure")]),
                    "dataAbsentReason": { "coding": [{
                        "system": "http://terminology.hl7.org/CodeSystem/data-absent-reason",
                        "code": "unknown",
                        "display": "Unknown"
                    }] }
                }),
            };
            resource["component"] = json!([
                {
                    "code": code(&[("8480-6", "Systolic blood pressure")]),
                    "valueQuantity": quantity(reading.value, Metric::SystolicBp)
                },
                diastolic
            ]);
        }
        VitalSign::SupplementalOxygen => {
            let (code, display) = if reading.value >= 0.5 {
                ("oxygen", "Supplemental oxygen")
            } else {
                ("air", "Room air")
            };
            resource["valueCodeableConcept"] = json!({
                "coding": [{ "system": base.code_system("air-or-oxygen"), "code": code, "display": display }],
                "text": display
            });
        }
        VitalSign::Consciousness => {
            let index = (reading.value.round().clamp(0.0, 4.0)) as usize;
            let (code, display) = ACVPU[index];
            resource["valueCodeableConcept"] = json!({
                "coding": [{ "system": base.code_system("acvpu"), "code": code, "display": display }],
                "text": display
            });
        }
        _ => resource["valueQuantity"] = quantity(reading.value, reading.metric),
    }
    Some(resource)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn base() -> FhirBase {
        FhirBase {
            url: "https://clinic.example/fhir".into(),
            mrn_system: "https://clinic.example/fhir/sid/mrn".into(),
        }
    }

    fn reading(metric: Metric, value: f64, diastolic: Option<f64>) -> Reading {
        Reading {
            patient_id: Uuid::new_v4(),
            device_id: Uuid::new_v4(),
            metric,
            time: DateTime::from_timestamp_micros(1_790_000_000_123_456).unwrap(),
            value,
            diastolic,
            received_at: Utc::now(),
        }
    }

    #[test]
    fn ids_round_trip_and_fit_in_64_characters() {
        for sign in VitalSign::ALL {
            let r = reading(sign.stored_metric(), 1.0, None);
            let id = ObservationId::of(&r).unwrap();
            let text = id.to_string();
            assert!(text.len() <= 64, "{text}");
            assert!(
                text.chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '.')
            );
            assert_eq!(ObservationId::parse(&text), Some(id));
        }
    }

    #[test]
    fn malformed_ids_are_refused() {
        let device = Uuid::new_v4().simple().to_string();
        for bad in [
            String::new(),
            "hr".into(),
            format!("hr.{device}"),
            format!("xx.{device}.1"),
            format!("hr.{device}.notanumber"),
            format!("hr.{device}.1.2"),
            format!("hr.{}.1", &device[..31]),
            format!("hr.{device}.99999999999999999999"),
        ] {
            assert_eq!(ObservationId::parse(&bad), None, "{bad}");
        }
    }

    #[test]
    fn blood_pressure_is_one_panel_with_two_components() {
        let r = reading(Metric::SystolicBp, 128.0, Some(82.0));
        let o = observation(&base(), &r).unwrap();
        assert_eq!(o["code"]["coding"][0]["code"], "85354-9");
        assert_eq!(o["component"][0]["code"]["coding"][0]["code"], "8480-6");
        assert_eq!(o["component"][0]["valueQuantity"]["value"], 128.0);
        assert_eq!(o["component"][1]["code"]["coding"][0]["code"], "8462-4");
        assert_eq!(o["component"][1]["valueQuantity"]["code"], "mm[Hg]");
        assert!(o.get("valueQuantity").is_none());
        assert_eq!(
            observation(&base(), &reading(Metric::DiastolicBp, 82.0, None)),
            None
        );
    }

    #[test]
    fn a_panel_without_its_diastolic_says_why() {
        let o = observation(&base(), &reading(Metric::SystolicBp, 128.0, None)).unwrap();
        assert_eq!(
            o["component"][1]["dataAbsentReason"]["coding"][0]["code"],
            "unknown"
        );
    }

    #[test]
    fn quantities_carry_ucum_codes_and_the_vital_signs_category() {
        let o = observation(&base(), &reading(Metric::HeartRate, 72.0, None)).unwrap();
        assert_eq!(o["valueQuantity"]["system"], UCUM);
        assert_eq!(o["valueQuantity"]["code"], "/min");
        assert_eq!(o["category"][0]["coding"][0]["code"], "vital-signs");
        assert_eq!(
            o["meta"]["profile"][0],
            "http://hl7.org/fhir/StructureDefinition/heartrate"
        );
        assert_eq!(o["effectiveDateTime"], "2026-09-21T14:13:20.123456Z");
    }

    #[test]
    fn every_loinc_code_finds_its_sign() {
        for sign in VitalSign::ALL {
            for (code, _) in sign.codings() {
                assert_eq!(VitalSign::from_loinc(code), Some(sign));
            }
        }
        assert_eq!(VitalSign::from_loinc("8480-6"), None);
    }
}
