//! A patient's whole record as one streamed Bundle. `Patient/$everything`
//! and the data-protection export share it.
//!
//! The record's small parts (the patient, devices, appointments and
//! encounters, consents, alerts, and for the export the visit notes) are
//! read first; then the readings, oldest first, and for the export the
//! audit rows about the patient, newest first, are fetched and written a
//! thousand at a time. The server holds one page, whatever the history.
//! A database failure halfway cuts the body short (the status is sent by
//! then), which a client sees as invalid JSON, never as a short record.

use axum::body::{Body, Bytes};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use bedside_records::appointments::{self, AppointmentFilter};
use bedside_records::audit::{self, AuditFilter};
use bedside_records::fhir::observation::observation;
use bedside_records::fhir::{FhirBase, bundle, instant, resources};
use bedside_records::ids::PatientId;
use bedside_records::{consents, devices, notes, patients};
use bedside_vitals_store::observations::{self as readings, Cursor, Filter};
use serde_json::{Value, json};

use crate::error::ApiError;

type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// Rows per streamed chunk.
const PAGE: i64 = 1000;

/// What goes into the Bundle besides the patient.
pub(crate) struct Contents<'a> {
    /// Whether a resource type may be included (a scoped token's reach).
    pub(crate) may: &'a (dyn Fn(&str) -> bool + Sync),
    /// The visit notes, as DocumentReferences (the export).
    pub(crate) notes: bool,
    /// The audit rows about the patient, as AuditEvents (the export).
    pub(crate) audit: bool,
    /// `searchset` for `$everything`, `collection` for the export.
    pub(crate) bundle_type: &'static str,
    /// The Bundle's `self` link.
    pub(crate) self_link: String,
}

enum Stage {
    Opening(Vec<u8>),
    Readings(Option<Cursor>),
    Audit(Option<i64>),
    Closing,
    Done,
}

struct Streaming {
    db: sqlx::PgPool,
    base: FhirBase,
    patient: PatientId,
    readings: bool,
    audit: bool,
    first: bool,
    stage: Stage,
}

/// The record of `patient` as a streamed FHIR JSON response.
///
/// # Errors
/// When the small parts cannot be read (before anything is sent).
pub(crate) async fn stream(
    db: &sqlx::PgPool,
    base: FhirBase,
    patient: PatientId,
    contents: Contents<'_>,
) -> Result<Response, ApiError> {
    let may = contents.may;
    let record = patients::get(db, patient).await?;
    let mut head: Vec<Value> = vec![resources::patient(&base, &record)];
    if may("Device") {
        for assignment in devices::for_patient(db, patient).await? {
            if assignment.assigned_to.is_none() {
                head.push(resources::device(&base, &assignment.device));
            }
        }
    }
    let filter = AppointmentFilter {
        patient_id: Some(patient),
        ..Default::default()
    };
    let mut offset = 0;
    loop {
        let (visits, total) = appointments::page(db, &filter, offset, 1000).await?;
        for visit in &visits {
            if may("Appointment") {
                head.push(resources::appointment(&base, visit));
            }
            if may("Encounter")
                && let Some(encounter) = resources::encounter(visit)
            {
                head.push(encounter);
            }
        }
        offset += visits.len() as i64;
        if visits.is_empty() || offset >= total {
            break;
        }
    }
    if may("Consent") {
        for consent in consents::for_patient(db, patient).await? {
            head.push(resources::consent(&base, &consent));
        }
    }
    if may("Flag") {
        for alert in bedside_vitals_store::alerts::for_patient(db, patient.0, 100_000).await? {
            head.push(resources::flag(&base, &alert));
        }
    }
    if contents.notes {
        for note in notes::for_patient(db, patient).await? {
            head.push(resources::document_reference(&note));
        }
    }

    let mut opening = serde_json::to_vec(&json!({
        "resourceType": "Bundle",
        "id": uuid::Uuid::new_v4().to_string(),
        "meta": { "lastUpdated": instant(chrono::Utc::now()) },
        "type": contents.bundle_type,
        "link": [{ "relation": "self", "url": contents.self_link }],
    }))
    .unwrap_or_default();
    // Reopen the object to append the entry array as the stream goes.
    opening.pop();
    opening.extend_from_slice(b",\"entry\":[");
    let search_mode = contents.bundle_type == "searchset";
    let mut first = true;
    for resource in head {
        push_entry(&mut opening, &base, resource, search_mode, &mut first);
    }
    let start = Streaming {
        db: db.clone(),
        base,
        patient,
        readings: may("Observation"),
        audit: contents.audit,
        first,
        stage: Stage::Opening(opening),
    };
    let body = futures::stream::unfold(start, move |mut s| async move {
        let next = match std::mem::replace(&mut s.stage, Stage::Done) {
            Stage::Opening(bytes) => {
                s.stage = s.after_opening();
                Ok(bytes)
            }
            Stage::Readings(cursor) => s.readings_page(cursor, search_mode).await,
            Stage::Audit(before) => s.audit_page(before, search_mode).await,
            Stage::Closing => Ok(b"]}".to_vec()),
            Stage::Done => return None,
        };
        match next {
            Ok(bytes) => Some((Ok::<_, std::io::Error>(Bytes::from(bytes)), s)),
            Err(error) => {
                tracing::error!(%error, "a patient's record failed while streaming");
                Some((Err(std::io::Error::other("database failed")), s))
            }
        }
    });
    let mut response = (StatusCode::OK, Body::from_stream(body)).into_response();
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/fhir+json; charset=utf-8"),
    );
    Ok(response)
}

impl Streaming {
    fn after_opening(&self) -> Stage {
        self.after_readings_from(self.readings)
    }

    fn after_readings_from(&self, readings: bool) -> Stage {
        if readings {
            Stage::Readings(None)
        } else if self.audit {
            Stage::Audit(None)
        } else {
            Stage::Closing
        }
    }

    async fn readings_page(
        &mut self,
        cursor: Option<Cursor>,
        search_mode: bool,
    ) -> Result<Vec<u8>, BoxError> {
        let filter = Filter {
            patient_id: self.patient.0,
            metrics: Vec::new(),
            from: None,
            to: None,
            newest_first: false,
        };
        let page = readings::page(&self.db, &filter, cursor, PAGE).await?;
        self.stage = if (page.len() as i64) < PAGE {
            self.after_readings_from(false)
        } else {
            Stage::Readings(page.last().map(Cursor::after))
        };
        let mut chunk = Vec::with_capacity(page.len() * 700);
        for reading in &page {
            if let Some(resource) = observation(&self.base, reading) {
                push_entry(
                    &mut chunk,
                    &self.base,
                    resource,
                    search_mode,
                    &mut self.first,
                );
            }
        }
        Ok(chunk)
    }

    async fn audit_page(
        &mut self,
        before: Option<i64>,
        search_mode: bool,
    ) -> Result<Vec<u8>, BoxError> {
        let rows = audit::list(
            &self.db,
            &AuditFilter {
                patient_id: Some(self.patient),
                actor_id: None,
                from: None,
                to: None,
                before_id: before,
                limit: PAGE,
            },
        )
        .await?;
        self.stage = match rows.last() {
            Some(last) if rows.len() as i64 == PAGE => Stage::Audit(Some(last.id)),
            _ => Stage::Closing,
        };
        let mut chunk = Vec::with_capacity(rows.len() * 900);
        for row in &rows {
            let resource = resources::audit_event(&self.base, row);
            push_entry(
                &mut chunk,
                &self.base,
                resource,
                search_mode,
                &mut self.first,
            );
        }
        Ok(chunk)
    }
}

fn push_entry(
    out: &mut Vec<u8>,
    base: &FhirBase,
    resource: Value,
    search_mode: bool,
    first: &mut bool,
) {
    if !*first {
        out.push(b',');
    }
    *first = false;
    let mode = search_mode.then_some("match");
    // Writing a `Value` into a Vec cannot fail.
    let _ = serde_json::to_writer(&mut *out, &bundle::entry(base, resource, mode));
}
