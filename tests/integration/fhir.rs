//! The FHIR R4 API: every interaction and search parameter the
//! CapabilityStatement lists, exercised over HTTP against the real
//! application and PostgreSQL; access, scopes and audit; bad input; and
//! every resource Bedside produces checked by an independent validator
//! (fhir.resources 6.1.0 from PyPI, generated from HL7's R4 4.0.1
//! structure definitions; `scripts/test.sh` installs it into
//! `target/test-tools`).

use std::collections::BTreeMap;
use std::io::Write as _;
use std::process::{Command, Stdio};

use bedside_records::appointment::AppointmentStatus;
use bedside_records::appointments;
use bedside_records::consents;
use bedside_records::domain::ConsentRecorder;
use bedside_records::fhir::capability::SUPPORTED;
use bedside_test_support::{TestApp, World};
use bedside_vitals_store::metric::Metric;
use bedside_vitals_store::store::{NewReading, insert_batch};
use chrono::{DateTime, Duration, Utc};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use crate::support::{audit_rows, request_id};

/// A FHIR request: method, path under `/fhir`, token, body; the answer's
/// status, headers and JSON.
async fn fhir(
    app: &TestApp,
    method: Method,
    path: &str,
    token: Option<&str>,
    body: Option<&Value>,
    headers: &[(&str, &str)],
) -> (StatusCode, reqwest::header::HeaderMap, Value) {
    let mut request = app
        .client
        .request(method, app.url(&format!("/fhir{path}")))
        .header("accept", "application/fhir+json");
    if let Some(token) = token {
        request = request.bearer_auth(token);
    }
    if let Some(body) = body {
        request = request
            .header("content-type", "application/fhir+json")
            .body(body.to_string());
    }
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    let response = request
        .send()
        .await
        .expect("the request reaches the server");
    let status = response.status();
    let headers = response.headers().clone();
    let text = response.text().await.expect("a body");
    let json = serde_json::from_str(&text).unwrap_or_else(|e| panic!("not JSON ({e}): {text}"));
    (status, headers, json)
}

async fn get(app: &TestApp, path: &str, token: &str) -> Value {
    let (status, headers, body) = fhir(app, Method::GET, path, Some(token), None, &[]).await;
    assert_eq!(status, StatusCode::OK, "GET {path}: {body}");
    assert!(
        headers["content-type"]
            .to_str()
            .unwrap()
            .starts_with("application/fhir+json"),
        "GET {path}"
    );
    body
}

/// The path under `/fhir` of an absolute link the server wrote.
fn link_path(url: &str) -> String {
    url.split_once("/fhir")
        .map(|(_, rest)| rest.to_owned())
        .expect("a link under /fhir")
}

fn next_link(bundle: &Value) -> Option<String> {
    bundle["link"]
        .as_array()?
        .iter()
        .find(|l| l["relation"] == "next")
        .and_then(|l| l["url"].as_str())
        .map(link_path)
}

fn entries(bundle: &Value) -> Vec<Value> {
    bundle["entry"]
        .as_array()
        .map(|e| e.iter().map(|e| e["resource"].clone()).collect())
        .unwrap_or_default()
}

fn ids(bundle: &Value) -> Vec<String> {
    entries(bundle)
        .iter()
        .map(|r| r["id"].as_str().unwrap_or_default().to_owned())
        .collect()
}

/// The validator's verdict on each document.
fn verdicts(documents: &[Value]) -> Vec<Value> {
    let python = crate::support::test_python();
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tools/validate_fhir.py");
    let mut child = Command::new(&python)
        .arg(script)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| {
            panic!("the FHIR validator ({python}) does not run: {e}; ./scripts/test.sh installs it")
        });
    let mut input = child.stdin.take().expect("stdin");
    let lines: String = documents.iter().map(|d| format!("{d}\n")).collect();
    let writer = std::thread::spawn(move || input.write_all(lines.as_bytes()));
    let output = child.wait_with_output().expect("the validator finishes");
    writer
        .join()
        .expect("writer")
        .expect("write to the validator");
    let verdicts: Vec<Value> = String::from_utf8_lossy(&output.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).expect("a verdict line"))
        .collect();
    assert_eq!(verdicts.len(), documents.len(), "one verdict per document");
    verdicts
}

/// Runs the independent validator over documents; panics with its
/// verdicts when one fails. Returns the resources validated, by type.
pub(crate) fn validate(documents: &[Value]) -> BTreeMap<String, u64> {
    let verdicts = verdicts(documents);
    let mut counts = BTreeMap::new();
    for (document, verdict) in documents.iter().zip(&verdicts) {
        assert_eq!(
            verdict["ok"], true,
            "the validator refused {}: {}",
            document, verdict["error"]
        );
        for (kind, n) in verdict["types"].as_object().expect("types") {
            *counts.entry(kind.clone()).or_default() += n.as_u64().unwrap_or(0);
        }
    }
    counts
}

/// Readings of every metric for patient A's device, one set per minute
/// from `start`, `sets` of them.
async fn store_readings(app: &TestApp, world: &World, start: DateTime<Utc>, sets: i64) {
    // Weekly partitions back to the oldest reading (plain PostgreSQL).
    bedside_vitals_store::partitions::maintain(
        &app.db,
        Utc::now(),
        Utc::now() - start + Duration::days(8),
        Duration::days(7),
    )
    .await
    .expect("partitions");
    let mut batch = Vec::new();
    for i in 0..sets {
        let time = start + Duration::minutes(i);
        for (metric, value) in [
            (Metric::HeartRate, 70.0 + (i % 10) as f64),
            (Metric::Spo2, 96.0),
            (Metric::RespiratoryRate, 16.0),
            (Metric::BodyTemperature, 37.1),
            (Metric::SystolicBp, 128.0),
            (Metric::DiastolicBp, 82.0),
            (Metric::BodyWeight, 71.5),
            (Metric::Glucose, 110.0),
            (Metric::SupplementalOxygen, 0.0),
            (Metric::Consciousness, 0.0),
        ] {
            batch.push(NewReading {
                time,
                device_id: world.device_a.0,
                metric,
                patient_id: world.patient_a.0,
                value,
            });
        }
        if batch.len() >= 5000 {
            insert_batch(&app.db, &batch).await.expect("store");
            batch.clear();
        }
    }
    insert_batch(&app.db, &batch).await.expect("store");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_resource_bedside_serves_passes_the_independent_validator() {
    let app = TestApp::spawn().await;
    let world = World::seed(&app).await;
    let admin = world.admin.token.as_str();
    store_readings(&app, &world, Utc::now() - Duration::hours(2), 3).await;
    // Appointment A is held and finished, so it has an Encounter.
    let now = Utc::now();
    for to in [
        AppointmentStatus::Arrived,
        AppointmentStatus::InProgress,
        AppointmentStatus::Finished,
    ] {
        appointments::transition(&app.db, world.appointment_a, to, now, Duration::minutes(15))
            .await
            .expect("transition");
    }
    consents::record(
        &app.db,
        world.patient_a,
        "2026-01",
        ConsentRecorder::Patient,
        None,
        Some(world.appointment_a),
    )
    .await
    .expect("consent");

    let pa = world.patient_a;
    let mut documents = vec![
        fhir(&app, Method::GET, "/metadata", None, None, &[])
            .await
            .2,
        get(&app, &format!("/Patient/{pa}"), admin).await,
        get(&app, "/Patient", admin).await,
        get(&app, "/Practitioner", admin).await,
        get(&app, &format!("/Device/{}", world.device_a), admin).await,
        get(&app, "/Device", admin).await,
        get(
            &app,
            &format!("/Appointment/{}", world.appointment_a),
            admin,
        )
        .await,
        get(&app, "/Appointment", admin).await,
        get(&app, &format!("/Encounter/{}", world.appointment_a), admin).await,
        get(&app, &format!("/Encounter?patient={pa}"), admin).await,
        get(
            &app,
            &format!("/Observation?patient={pa}&_count=100"),
            admin,
        )
        .await,
        get(
            &app,
            &format!("/Observation/$lastn?patient={pa}&max=2"),
            admin,
        )
        .await,
        get(&app, &format!("/Consent?patient={pa}"), admin).await,
        get(&app, &format!("/Flag?patient={pa}"), admin).await,
        get(&app, &format!("/Flag/{}", world.alert_a), admin).await,
        get(&app, &format!("/AuditEvent?patient={pa}&_count=20"), admin).await,
        get(&app, &format!("/Patient/{pa}/$everything"), admin).await,
        // Errors are resources too.
        fhir(
            &app,
            Method::GET,
            "/Patient/not-an-id",
            Some(admin),
            None,
            &[],
        )
        .await
        .2,
    ];
    // One read of each type found only through a search above (by the
    // search's place in `documents`; reads are appended behind them).
    for (resource, search) in [("Practitioner", 3), ("Consent", 12), ("AuditEvent", 15)] {
        let id = entries(&documents[search])[0]["id"]
            .as_str()
            .unwrap()
            .to_owned();
        documents.push(get(&app, &format!("/{resource}/{id}"), admin).await);
    }
    for observation in entries(&documents[10]) {
        let id = observation["id"].as_str().unwrap();
        let read = get(&app, &format!("/Observation/{id}"), admin).await;
        assert_eq!(read, observation, "a read returns what the search did");
        documents.push(read);
    }

    let counts = validate(&documents);
    for supported in SUPPORTED {
        assert!(
            counts.get(supported.resource_type).copied().unwrap_or(0) > 0,
            "no {} was validated: {counts:?}",
            supported.resource_type
        );
    }
    for kind in ["Bundle", "CapabilityStatement", "OperationOutcome"] {
        assert!(counts.contains_key(kind), "no {kind} validated: {counts:?}");
    }
    let total: u64 = counts.values().sum();
    println!("FHIR validator: {total} resources passed, by type: {counts:?}");
    app.stop().await.expect("stop");
}

#[test]
fn the_validator_refuses_what_r4_does_not_allow() {
    // Proof that a pass means something: resources broken the ways a
    // mapping could break them are refused.
    let broken = [
        json!({ "resourceType": "Observation", "code": { "text": "x" } }),
        json!({ "resourceType": "Observation", "status": "final", "code": { "text": "x" },
                "valueQuantity": { "value": "seventy" } }),
        json!({ "resourceType": "Patient", "birthDate": "15.06.1950" }),
        json!({ "resourceType": "Patient", "colour": "blue" }),
        json!({ "resourceType": "Bundle", "type": "searchset",
                "entry": [{ "resource": { "resourceType": "Encounter", "status": "finished" } }] }),
    ];
    for (document, verdict) in broken.iter().zip(verdicts(&broken)) {
        assert_eq!(verdict["ok"], false, "the validator passed {document}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_capability_statement_lists_exactly_the_served_types() {
    let app = TestApp::spawn().await;
    let (status, headers, statement) = fhir(&app, Method::GET, "/metadata", None, None, &[]).await;
    assert_eq!(status, StatusCode::OK);
    assert!(
        headers["content-type"]
            .to_str()
            .unwrap()
            .starts_with("application/fhir+json")
    );
    assert_eq!(statement["fhirVersion"], "4.0.1");
    let types: Vec<&str> = statement["rest"][0]["resource"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["type"].as_str().unwrap())
        .collect();
    assert_eq!(
        types,
        SUPPORTED
            .iter()
            .map(|r| r.resource_type)
            .collect::<Vec<_>>()
    );
    // Every listed type answers a search (not 404 or 405) for an admin.
    let world = World::seed(&app).await;
    for r in SUPPORTED {
        let path = match r.resource_type {
            "Observation" | "Consent" | "Flag" => {
                format!("/{}?patient={}", r.resource_type, world.patient_a)
            }
            other => format!("/{other}"),
        };
        let bundle = get(&app, &path, &world.admin.token).await;
        assert_eq!(bundle["type"], "searchset", "{path}");
    }
    app.stop().await.expect("stop");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn searches_filter_sort_and_page_as_clinical_systems_expect() {
    let app = TestApp::spawn().await;
    let world = World::seed(&app).await;
    let admin = world.admin.token.as_str();
    let pa = world.patient_a;

    // Patient: identifier (with and without system), name prefix and
    // :exact, birthdate with prefixes, gender, _id.
    let patient = get(&app, &format!("/Patient/{pa}"), admin).await;
    let mrn = patient["identifier"][0]["value"]
        .as_str()
        .unwrap()
        .to_owned();
    let system = patient["identifier"][0]["system"]
        .as_str()
        .unwrap()
        .to_owned();
    for query in [
        format!("identifier={mrn}"),
        format!("identifier={system}|{mrn}"),
        format!("name=ali&identifier={mrn}"),
        format!("name:exact=Alice&identifier={mrn}"),
        format!("family=And&birthdate=1950-06-15&identifier={mrn}"),
        format!("birthdate=ge1950-06&birthdate=lt1950-07&identifier={mrn}"),
        format!("gender=female&_id={pa}"),
    ] {
        let bundle = get(
            &app,
            &format!("/Patient?{}", query.replace('|', "%7C")),
            admin,
        )
        .await;
        assert_eq!(ids(&bundle), vec![pa.to_string()], "{query}");
        assert_eq!(bundle["total"], 1, "{query}");
    }
    for query in [
        format!("identifier=urn:other%7C{mrn}"),
        format!("name:exact=alice&identifier={mrn}"),
        format!("birthdate=1950-06-16&identifier={mrn}"),
        format!("gender=male&_id={pa}"),
    ] {
        let bundle = get(&app, &format!("/Patient?{query}"), admin).await;
        assert_eq!(bundle["total"], 0, "{query}");
    }

    // Observation: 120 minutes of readings; code, date range, sort, paging.
    let start = DateTime::parse_from_rfc3339("2026-03-01T08:00:00Z")
        .unwrap()
        .with_timezone(&Utc);
    store_readings(&app, &world, start, 120).await;
    let hr = format!("/Observation?patient=Patient/{pa}&code=http://loinc.org%7C8867-4");
    let all = get(&app, &format!("{hr}&_count=1000"), admin).await;
    assert_eq!(all["total"], 120);
    let window = get(
        &app,
        &format!(
            "{hr}&date=ge2026-03-01T08:30:00Z&date=lt2026-03-01T09:00:00Z&_sort=date&_count=7"
        ),
        admin,
    )
    .await;
    assert_eq!(window["total"], 30);
    // Follow `next` to the end: every reading once, oldest first.
    let mut seen: Vec<String> = Vec::new();
    let mut page = window;
    loop {
        for o in entries(&page) {
            assert_eq!(o["code"]["coding"][0]["code"], "8867-4");
            seen.push(o["effectiveDateTime"].as_str().unwrap().to_owned());
        }
        match next_link(&page) {
            Some(next) => page = get(&app, &next, admin).await,
            None => break,
        }
    }
    assert_eq!(seen.len(), 30);
    assert!(
        seen.windows(2).all(|w| w[0] < w[1]),
        "oldest first: {seen:?}"
    );
    assert_eq!(seen[0], "2026-03-01T08:30:00Z");
    // Newest first by default; the blood-pressure panel holds both values.
    let bp = get(
        &app,
        &format!("/Observation?patient={pa}&code=85354-9&_count=1"),
        admin,
    )
    .await;
    let panel = &entries(&bp)[0];
    assert_eq!(panel["effectiveDateTime"], "2026-03-01T09:59:00Z");
    assert_eq!(panel["component"][0]["valueQuantity"]["value"], 128.0);
    assert_eq!(panel["component"][1]["valueQuantity"]["code"], "mm[Hg]");
    assert_eq!(panel["component"][1]["valueQuantity"]["value"], 82.0);
    // The diastolic code alone is no Observation of its own.
    let dia = get(
        &app,
        &format!("/Observation?patient={pa}&code=8462-4"),
        admin,
    )
    .await;
    assert_eq!(dia["total"], 0);
    // Category narrows: vital signs without glucose (laboratory).
    let vitals = get(
        &app,
        &format!(
            "/Observation?patient={pa}&category=vital-signs&date=2026-03-01T08:00Z&_count=100"
        ),
        admin,
    )
    .await;
    let codes: Vec<&str> = entries(&vitals)
        .iter()
        .map(|o| o["code"]["coding"][0]["code"].as_str().unwrap().to_owned())
        .map(|c| if c == "2339-0" { "glucose" } else { "vital" })
        .collect();
    assert!(
        !codes.is_empty() && codes.iter().all(|c| *c == "vital"),
        "{codes:?}"
    );
    // $lastn: the newest two per code.
    let last = get(
        &app,
        &format!("/Observation/$lastn?patient={pa}&code=8867-4,29463-7&max=2"),
        admin,
    )
    .await;
    assert_eq!(entries(&last).len(), 4);

    // Appointment: date, practitioner, patient, status.
    let appointment = world.appointment_a.to_string();
    let practitioner = world.clinician_a.practitioner.unwrap();
    let today = Utc::now().format("%Y-%m-%d").to_string();
    for query in [
        format!("patient={pa}"),
        format!("practitioner=Practitioner/{practitioner}&status=booked&_id={appointment}"),
        format!("date=ge{today}&patient={pa}"),
    ] {
        let bundle = get(&app, &format!("/Appointment?{query}"), admin).await;
        assert_eq!(ids(&bundle), vec![appointment.clone()], "{query}");
    }
    let none = get(
        &app,
        &format!("/Appointment?patient={pa}&status=cancelled"),
        admin,
    )
    .await;
    assert_eq!(none["total"], 0);
    app.stop().await.expect("stop");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn creates_and_updates_carry_versions_and_refuse_stale_ones() {
    let app = TestApp::spawn().await;
    let world = World::seed(&app).await;
    let admin = world.admin.token.as_str();
    let system = get(&app, &format!("/Patient/{}", world.patient_a), admin).await["identifier"][0]
        ["system"]
        .as_str()
        .unwrap()
        .to_owned();
    let mrn = format!("FHIR-{}", &uuid::Uuid::new_v4().simple().to_string()[..8]);
    let new_patient = json!({
        "resourceType": "Patient",
        "identifier": [{ "system": system, "value": mrn }],
        "name": [{ "family": "Fischer", "given": ["Frieda", "Maria"] }],
        "gender": "female",
        "birthDate": "1961-04-02",
        "telecom": [{ "system": "email", "value": "frieda@example.org" }]
    });
    let (status, headers, created) = fhir(
        &app,
        Method::POST,
        "/Patient",
        Some(admin),
        Some(&new_patient),
        &[],
    )
    .await;
    assert_eq!(status, StatusCode::CREATED, "{created}");
    let id = created["id"].as_str().unwrap().to_owned();
    assert_eq!(created["meta"]["versionId"], "1");
    assert_eq!(headers["etag"], "W/\"1\"");
    assert!(
        headers["location"]
            .to_str()
            .unwrap()
            .ends_with(&format!("/fhir/Patient/{id}/_history/1"))
    );
    assert_eq!(created["name"][0]["given"], json!(["Frieda", "Maria"]));

    let mut changed = created.clone();
    changed["birthDate"] = json!("1961-04-03");
    let path = format!("/Patient/{id}");
    let (status, _, outcome) =
        fhir(&app, Method::PUT, &path, Some(admin), Some(&changed), &[]).await;
    assert_eq!(status, StatusCode::PRECONDITION_REQUIRED, "{outcome}");
    let (status, _, outcome) = fhir(
        &app,
        Method::PUT,
        &path,
        Some(admin),
        Some(&changed),
        &[("if-match", "W/\"7\"")],
    )
    .await;
    assert_eq!(status, StatusCode::PRECONDITION_FAILED);
    assert_eq!(outcome["resourceType"], "OperationOutcome");
    assert_eq!(outcome["issue"][0]["code"], "conflict");
    let (status, headers, updated) = fhir(
        &app,
        Method::PUT,
        &path,
        Some(admin),
        Some(&changed),
        &[("if-match", "W/\"1\"")],
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{updated}");
    assert_eq!(updated["birthDate"], "1961-04-03");
    assert_eq!(updated["meta"]["versionId"], "2");
    assert_eq!(headers["etag"], "W/\"2\"");
    // The same stale version again loses.
    let (status, _, _) = fhir(
        &app,
        Method::PUT,
        &path,
        Some(admin),
        Some(&changed),
        &[("if-match", "W/\"1\"")],
    )
    .await;
    assert_eq!(status, StatusCode::PRECONDITION_FAILED);

    // Bad resources name the element at fault; nothing is stored.
    for (body, expression) in [
        (
            json!({ "resourceType": "Patient", "name": [{ "family": "X", "given": ["Y"] }], "gender": "female", "birthDate": "1961-04-02" }),
            "Patient.identifier",
        ),
        (
            {
                let mut p = new_patient.clone();
                p["birthDate"] = json!("1961-02-30");
                p
            },
            "Patient.birthDate",
        ),
        (
            {
                let mut p = new_patient.clone();
                p["gender"] = json!("robot");
                p
            },
            "Patient.gender",
        ),
        (json!({ "resourceType": "Observation" }), "resourceType"),
    ] {
        let (status, _, outcome) = fhir(
            &app,
            Method::POST,
            "/Patient",
            Some(admin),
            Some(&body),
            &[],
        )
        .await;
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
        assert_eq!(
            outcome["issue"][0]["expression"][0], expression,
            "{outcome}"
        );
    }
    let duplicate = fhir(
        &app,
        Method::POST,
        "/Patient",
        Some(admin),
        Some(&new_patient),
        &[],
    )
    .await;
    assert_eq!(duplicate.0, StatusCode::CONFLICT, "{}", duplicate.2);
    assert_eq!(duplicate.2["issue"][0]["code"], "duplicate");
    // Not JSON, not a FHIR media type, not acceptable.
    let response = app
        .client
        .post(app.url("/fhir/Patient"))
        .bearer_auth(admin)
        .header("content-type", "application/fhir+json")
        .body("{not json")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::BAD_REQUEST);
    let response = app
        .client
        .post(app.url("/fhir/Patient"))
        .bearer_auth(admin)
        .header("content-type", "text/plain")
        .body(new_patient.to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::UNSUPPORTED_MEDIA_TYPE);
    let response = app
        .client
        .get(app.url(&format!("/fhir{path}")))
        .bearer_auth(admin)
        .header("accept", "application/fhir+xml")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::NOT_ACCEPTABLE);
    assert!(
        response.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("application/fhir+json")
    );
    let response = app
        .client
        .get(app.url(&format!("/fhir{path}?_format=xml")))
        .bearer_auth(admin)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::NOT_ACCEPTABLE);

    // Appointment: book, reschedule with If-Match, cancel.
    let start = (Utc::now() + Duration::days(3)).with_timezone(&Utc);
    let start = start - Duration::seconds(start.timestamp() % 60);
    let booking = json!({
        "resourceType": "Appointment",
        "status": "booked",
        "description": "Follow-up on blood pressure",
        "start": start.to_rfc3339(),
        "end": (start + Duration::minutes(20)).to_rfc3339(),
        "participant": [
            { "actor": { "reference": format!("Patient/{id}") }, "status": "accepted" },
            { "actor": { "reference": format!("Practitioner/{}", world.clinician_a.practitioner.unwrap()) }, "status": "accepted" }
        ]
    });
    let (status, _, booked) = fhir(
        &app,
        Method::POST,
        "/Appointment",
        Some(admin),
        Some(&booking),
        &[],
    )
    .await;
    assert_eq!(status, StatusCode::CREATED, "{booked}");
    assert_eq!(booked["minutesDuration"], 20);
    let appointment_path = format!("/Appointment/{}", booked["id"].as_str().unwrap());
    // The clinician is busy then: a second booking overlaps.
    let (status, _, overlap) = fhir(
        &app,
        Method::POST,
        "/Appointment",
        Some(admin),
        Some(&booking),
        &[],
    )
    .await;
    assert_eq!(status, StatusCode::CONFLICT, "{overlap}");
    let mut later = booked.clone();
    later["start"] = json!((start + Duration::hours(1)).to_rfc3339());
    later["end"] = json!((start + Duration::minutes(90)).to_rfc3339());
    let (status, _, moved) = fhir(
        &app,
        Method::PUT,
        &appointment_path,
        Some(admin),
        Some(&later),
        &[("if-match", "W/\"1\"")],
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{moved}");
    assert_eq!(moved["minutesDuration"], 30);
    assert_eq!(moved["meta"]["versionId"], "2");
    let mut cancelled = moved.clone();
    cancelled["status"] = json!("cancelled");
    let (status, _, done) = fhir(
        &app,
        Method::PUT,
        &appointment_path,
        Some(admin),
        Some(&cancelled),
        &[("if-match", "W/\"2\"")],
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{done}");
    assert_eq!(done["status"], "cancelled");
    // A cancelled appointment cannot be rescheduled or move to another patient.
    let mut again = done.clone();
    again["start"] = json!((start + Duration::hours(2)).to_rfc3339());
    again["end"] = json!((start + Duration::minutes(150)).to_rfc3339());
    let (status, _, _) = fhir(
        &app,
        Method::PUT,
        &appointment_path,
        Some(admin),
        Some(&again),
        &[("if-match", "W/\"3\"")],
    )
    .await;
    assert_eq!(status, StatusCode::CONFLICT);
    let mut other = done.clone();
    other["participant"][0]["actor"]["reference"] = json!(format!("Patient/{}", world.patient_b));
    let (status, _, outcome) = fhir(
        &app,
        Method::PUT,
        &appointment_path,
        Some(admin),
        Some(&other),
        &[("if-match", "W/\"3\"")],
    )
    .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(
        outcome["issue"][0]["expression"][0],
        "Appointment.participant"
    );
    app.stop().await.expect("stop");
}

/// Mints a token with scopes through the API, as a FHIR client would get one.
async fn scoped_token(
    app: &TestApp,
    staff_token: &str,
    scope: &str,
    patient: Option<String>,
) -> (StatusCode, Value) {
    let mut body = json!({ "scope": scope });
    if let Some(patient) = patient {
        body["patient"] = json!(patient);
    }
    let response = app
        .client
        .post(app.url("/api/v1/auth/fhir-token"))
        .bearer_auth(staff_token)
        .json(&body)
        .send()
        .await
        .unwrap();
    (response.status(), response.json().await.unwrap())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn access_follows_the_clinics_rules_and_the_tokens_scopes() {
    let app = TestApp::spawn().await;
    let world = World::seed(&app).await;
    let (pa, pb) = (world.patient_a, world.patient_b);
    store_readings(&app, &world, Utc::now() - Duration::hours(1), 2).await;

    // Without a token: 401 as an OperationOutcome, audited.
    let (status, _, outcome) = fhir(
        &app,
        Method::GET,
        &format!("/Patient/{pa}"),
        None,
        None,
        &[],
    )
    .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert_eq!(outcome["issue"][0]["code"], "login");
    // Clinician B has no relation to patient A: refused and audited.
    let response = app
        .client
        .get(app.url(&format!("/fhir/Patient/{pa}")))
        .bearer_auth(&world.clinician_b.token)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::FORBIDDEN);
    let rows = audit_rows(&app, &request_id(&response)).await;
    assert_eq!(
        rows,
        vec![("denied".to_owned(), "clinician".to_owned(), Some(pa.0))]
    );
    // Clinician A reads patient A, audited as allowed; their patient search sees only A.
    let response = app
        .client
        .get(app.url(&format!("/fhir/Observation?patient={pa}")))
        .bearer_auth(&world.clinician_a.token)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(
        audit_rows(&app, &request_id(&response)).await,
        vec![("allowed".to_owned(), "clinician".to_owned(), Some(pa.0))]
    );
    let mine = get(&app, "/Patient", &world.clinician_a.token).await;
    assert_eq!(ids(&mine), vec![pa.to_string()]);
    // AuditEvent is for admins.
    let (status, _, _) = fhir(
        &app,
        Method::GET,
        "/AuditEvent",
        Some(&world.clinician_a.token),
        None,
        &[],
    )
    .await;
    assert_eq!(status, StatusCode::FORBIDDEN);

    // A patient/ token bound to A reads A and nothing else.
    let (status, granted) = scoped_token(
        &app,
        &world.clinician_a.token,
        "launch/patient patient/*.read",
        Some(pa.to_string()),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{granted}");
    assert_eq!(granted["patient"], pa.to_string());
    let token = granted["access_token"].as_str().unwrap().to_owned();
    get(&app, &format!("/Patient/{pa}"), &token).await;
    let own = get(&app, "/Observation?code=8867-4", &token).await;
    assert_eq!(
        own["total"], 2,
        "a patient token's search is about its patient"
    );
    assert_eq!(
        ids(&get(&app, "/Patient", &token).await),
        vec![pa.to_string()]
    );
    let (status, _, outcome) = fhir(
        &app,
        Method::GET,
        &format!("/Patient/{pb}"),
        Some(&token),
        None,
        &[],
    )
    .await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    assert_eq!(outcome["issue"][0]["details"]["text"], "insufficient_scope");
    let (status, _, _) = fhir(
        &app,
        Method::GET,
        &format!("/Observation?patient={pb}"),
        Some(&token),
        None,
        &[],
    )
    .await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    // Read scopes do not write.
    let (status, _, _) = fhir(
        &app,
        Method::PUT,
        &format!("/Patient/{pa}"),
        Some(&token),
        Some(&json!({"resourceType": "Patient"})),
        &[("if-match", "W/\"1\"")],
    )
    .await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    // A scoped token reaches /fhir only: not the REST API.
    let response = app
        .client
        .get(app.url(&format!("/api/v1/patients/{pa}")))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::FORBIDDEN);

    // user/Observation.read reads observations but not patients.
    let (_, granted) =
        scoped_token(&app, &world.clinician_a.token, "user/Observation.rs", None).await;
    let token = granted["access_token"].as_str().unwrap().to_owned();
    get(&app, &format!("/Observation?patient={pa}"), &token).await;
    let (status, _, _) = fhir(
        &app,
        Method::GET,
        &format!("/Patient/{pa}"),
        Some(&token),
        None,
        &[],
    )
    .await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    // Scopes never widen: clinician B's user/*.read still cannot read A.
    let (_, granted) = scoped_token(&app, &world.clinician_b.token, "user/*.read", None).await;
    let token = granted["access_token"].as_str().unwrap().to_owned();
    let (status, _, _) = fhir(
        &app,
        Method::GET,
        &format!("/Patient/{pa}"),
        Some(&token),
        None,
        &[],
    )
    .await;
    assert_eq!(status, StatusCode::FORBIDDEN);

    // Minting: system/ only for admins; patient/ only for a patient the
    // caller may see; malformed scopes are named.
    assert_eq!(
        scoped_token(&app, &world.clinician_a.token, "system/*.read", None)
            .await
            .0,
        StatusCode::FORBIDDEN
    );
    let (status, granted) = scoped_token(&app, &world.admin.token, "system/*.read", None).await;
    assert_eq!(status, StatusCode::OK);
    let system = granted["access_token"].as_str().unwrap().to_owned();
    assert_eq!(
        get(&app, "/Patient?_count=0", &system).await["total"]
            .as_i64()
            .map(|n| n >= 2),
        Some(true)
    );
    assert_eq!(
        scoped_token(
            &app,
            &world.clinician_b.token,
            "patient/*.read",
            Some(pa.to_string())
        )
        .await
        .0,
        StatusCode::FORBIDDEN
    );
    let (status, error) =
        scoped_token(&app, &world.admin.token, "user/Medication.read", None).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(error["field"], "scope");
    assert_eq!(
        scoped_token(&app, &world.admin.token, "patient/*.read", None)
            .await
            .0,
        StatusCode::UNPROCESSABLE_ENTITY
    );

    // Unknown search parameters: ignored, or refused under handling=strict.
    let lenient = get(
        &app,
        &format!("/Patient?_id={pa}&colour=blue"),
        &world.admin.token,
    )
    .await;
    assert_eq!(lenient["total"], 1);
    assert!(
        !lenient["link"][0]["url"]
            .as_str()
            .unwrap()
            .contains("colour")
    );
    let (status, _, outcome) = fhir(
        &app,
        Method::GET,
        &format!("/Patient?_id={pa}&colour=blue"),
        Some(&world.admin.token),
        None,
        &[("prefer", "handling=strict")],
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(outcome["issue"][0]["expression"][0], "colour");
    // Malformed search values name their parameter.
    for (query, param) in [
        (format!("/Observation?patient={pa}&date=yesterday"), "date"),
        (format!("/Observation?patient={pa}&date=xx2026"), "date"),
        (format!("/Observation?patient={pa}&_count=many"), "_count"),
        (format!("/Observation?patient={pa}&_sort=value"), "_sort"),
        (
            format!("/Observation?patient={pa}&_cursor=garbage"),
            "_cursor",
        ),
        ("/Observation?code=8867-4".to_owned(), "patient"),
        ("/Observation?patient=Practitioner/1".to_owned(), "patient"),
        (format!("/Patient?gender=robot&_id={pa}"), "gender"),
        ("/Appointment?status=later".to_owned(), "status"),
    ] {
        let (status, _, outcome) = fhir(
            &app,
            Method::GET,
            &query,
            Some(&world.admin.token),
            None,
            &[],
        )
        .await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{query}: {outcome}");
        assert_eq!(outcome["issue"][0]["expression"][0], param, "{query}");
    }
    // Unknown ids are 404 OperationOutcomes.
    for path in [
        "/Patient/00000000-0000-0000-0000-000000000000",
        "/Observation/hr.nope.1",
        "/Flag/x",
        "/AuditEvent/x",
        "/Nothing",
    ] {
        let (status, _, outcome) =
            fhir(&app, Method::GET, path, Some(&world.admin.token), None, &[]).await;
        assert_eq!(status, StatusCode::NOT_FOUND, "{path}");
        assert_eq!(outcome["issue"][0]["code"], "not-found", "{path}");
    }
    app.stop().await.expect("stop");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn everything_streams_a_long_history_whole() {
    let app = TestApp::spawn().await;
    let world = World::seed(&app).await;
    // 2,500 minutes of 10 metrics: 22,500 Observations (blood pressure is
    // one panel), more than twenty pages of the stream.
    store_readings(&app, &world, Utc::now() - Duration::days(3), 2500).await;
    let bundle = get(
        &app,
        &format!("/Patient/{}/$everything", world.patient_a),
        &world.admin.token,
    )
    .await;
    let resources = entries(&bundle);
    let mut by_type: BTreeMap<&str, usize> = BTreeMap::new();
    for r in &resources {
        *by_type
            .entry(r["resourceType"].as_str().unwrap())
            .or_default() += 1;
    }
    assert_eq!(by_type.get("Observation"), Some(&22_500), "{by_type:?}");
    assert_eq!(by_type.get("Patient"), Some(&1));
    assert!(
        by_type.contains_key("Device")
            && by_type.contains_key("Appointment")
            && by_type.contains_key("Flag"),
        "{by_type:?}"
    );
    let keys: std::collections::BTreeSet<(&str, &str)> = resources
        .iter()
        .filter_map(|r| Some((r["resourceType"].as_str()?, r["id"].as_str()?)))
        .collect();
    assert_eq!(keys.len(), resources.len(), "no resource twice");
    // A patient/ token without Observation scope gets the record without readings.
    let (_, granted) = scoped_token(
        &app,
        &world.clinician_a.token,
        "patient/Patient.read patient/Appointment.read",
        Some(world.patient_a.to_string()),
    )
    .await;
    let token = granted["access_token"].as_str().unwrap();
    let narrow = get(
        &app,
        &format!("/Patient/{}/$everything", world.patient_a),
        token,
    )
    .await;
    let kinds: std::collections::BTreeSet<String> = entries(&narrow)
        .iter()
        .map(|r| r["resourceType"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(
        kinds,
        ["Appointment", "Patient"]
            .into_iter()
            .map(str::to_owned)
            .collect()
    );
    app.stop().await.expect("stop");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scopes_grant_each_permission_on_its_own_and_refusals_name_the_actor() {
    let app = TestApp::spawn().await;
    let world = World::seed(&app).await;
    let appointment = get(
        &app,
        &format!("/Appointment/{}", world.appointment_a),
        &world.admin.token,
    )
    .await;
    // SMART v2 `c` creates, it does not update; `s` searches, it does not read.
    let (_, granted) = scoped_token(
        &app,
        &world.admin.token,
        "system/Appointment.c system/Patient.s",
        None,
    )
    .await;
    let token = granted["access_token"].as_str().unwrap().to_owned();
    let response = app
        .client
        .put(app.url(&format!("/fhir/Appointment/{}", world.appointment_a)))
        .bearer_auth(&token)
        .header("content-type", "application/fhir+json")
        .header("if-match", "W/\"1\"")
        .body(appointment.to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::FORBIDDEN);
    let rows: Vec<(String, Option<uuid::Uuid>, String)> =
        sqlx::query_as("SELECT outcome, actor_id, action FROM audit_log WHERE request_id = $1")
            .bind(request_id(&response))
            .fetch_all(&app.db)
            .await
            .unwrap();
    assert_eq!(
        rows,
        vec![(
            "denied".to_owned(),
            Some(world.admin.user.0),
            "fhir.appointment.update".to_owned()
        )]
    );
    get(&app, "/Patient", &token).await;
    let (status, _, _) = fhir(
        &app,
        Method::GET,
        &format!("/Patient/{}", world.patient_a),
        Some(&token),
        None,
        &[],
    )
    .await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    // A scope that grants nothing is refused at minting.
    assert_eq!(
        scoped_token(&app, &world.admin.token, "user/Patient.d", None)
            .await
            .0,
        StatusCode::UNPROCESSABLE_ENTITY
    );
    // A scoped token does not open the live feed.
    let (mut socket, _) =
        tokio_tungstenite::connect_async(app.url("/ws").replacen("http", "ws", 1))
            .await
            .unwrap();
    use futures::{SinkExt as _, StreamExt as _};
    socket
        .send(tokio_tungstenite::tungstenite::Message::Text(
            json!({"v": 1, "type": "hello", "token": token})
                .to_string()
                .into(),
        ))
        .await
        .unwrap();
    let refused = tokio::time::timeout(std::time::Duration::from_secs(10), async {
        while let Some(Ok(message)) = socket.next().await {
            if let tokio_tungstenite::tungstenite::Message::Text(text) = message {
                let value: Value = serde_json::from_str(&text).unwrap();
                if value["type"] == "error" {
                    return value["code"].as_str().unwrap_or_default().to_owned();
                }
                assert_ne!(value["type"], "welcome", "the feed welcomed a scoped token");
            }
        }
        String::new()
    })
    .await
    .expect("the feed answers within 10 s");
    assert_eq!(refused, "unauthenticated");
    app.stop().await.expect("stop");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clinicians_write_only_what_the_rest_api_lets_them() {
    let app = TestApp::spawn().await;
    let world = World::seed(&app).await;
    let clinician = world.clinician_a.token.as_str();
    let start = Utc::now() + Duration::days(5);
    let start = start - Duration::seconds(start.timestamp() % 60);
    let booking = |patient: String, practitioner: String| {
        json!({
            "resourceType": "Appointment", "status": "booked", "description": "Check-up",
            "start": start.to_rfc3339(), "end": (start + Duration::minutes(15)).to_rfc3339(),
            "participant": [
                { "actor": { "reference": format!("Patient/{patient}") }, "status": "accepted" },
                { "actor": { "reference": format!("Practitioner/{practitioner}") }, "status": "accepted" }
            ]
        })
    };
    let own = world.clinician_a.practitioner.unwrap().to_string();
    let other = world.clinician_b.practitioner.unwrap().to_string();
    // Into their own schedule for their own patient: yes.
    let (status, _, _) = fhir(
        &app,
        Method::POST,
        "/Appointment",
        Some(clinician),
        Some(&booking(world.patient_a.to_string(), own.clone())),
        &[],
    )
    .await;
    assert_eq!(status, StatusCode::CREATED);
    // For a stranger, or into a colleague's schedule: no.
    for body in [
        booking(world.patient_b.to_string(), own),
        booking(world.patient_a.to_string(), other),
    ] {
        let (status, _, _) = fhir(
            &app,
            Method::POST,
            "/Appointment",
            Some(clinician),
            Some(&body),
            &[],
        )
        .await;
        assert_eq!(status, StatusCode::FORBIDDEN, "{body}");
    }
    // Another clinician's appointment cannot be changed; patients are registered by admins.
    let theirs = get(
        &app,
        &format!("/Appointment/{}", world.appointment_b),
        &world.admin.token,
    )
    .await;
    let (status, _, _) = fhir(
        &app,
        Method::PUT,
        &format!("/Appointment/{}", world.appointment_b),
        Some(clinician),
        Some(&theirs),
        &[("if-match", "W/\"1\"")],
    )
    .await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    let (status, _, _) = fhir(
        &app,
        Method::POST,
        "/Patient",
        Some(clinician),
        Some(&json!({"resourceType": "Patient"})),
        &[],
    )
    .await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    // An unknown appointment id answers a clinician as a stranger's would.
    let (status, _, _) = fhir(
        &app,
        Method::GET,
        &format!("/Appointment/{}", uuid::Uuid::new_v4()),
        Some(clinician),
        None,
        &[],
    )
    .await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    app.stop().await.expect("stop");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn search_edges_neither_widen_nor_lose_results() {
    let app = TestApp::spawn().await;
    let world = World::seed(&app).await;
    let admin = world.admin.token.as_str();
    let pa = world.patient_a;
    // Unsupported modifiers and _id where it is not supported are refused,
    // not dropped (dropping them would return more than was asked).
    for (query, param) in [
        (format!("/Patient?gender:not=male&_id={pa}"), "gender:not"),
        (
            format!("/Patient?name:missing=true&_id={pa}"),
            "name:missing",
        ),
        (format!("/Observation?patient={pa}&_id=x"), "_id"),
    ] {
        let (status, _, outcome) = fhir(&app, Method::GET, &query, Some(admin), None, &[]).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{query}");
        assert_eq!(outcome["issue"][0]["expression"][0], param);
    }
    // A status list with one FHIR status Bedside never uses still finds the others.
    let mixed = get(
        &app,
        &format!("/Appointment?patient={pa}&status=booked,proposed"),
        admin,
    )
    .await;
    assert_eq!(ids(&mixed), vec![world.appointment_a.to_string()]);
    // Each name text keeps its own modifier.
    let both = get(
        &app,
        &format!("/Patient?family:exact=Anders&given=ali&_id={pa}"),
        admin,
    )
    .await;
    assert_eq!(both["total"], 1);
    let system = get(&app, &format!("/Patient/{pa}"), admin).await["identifier"][0]["system"]
        .as_str()
        .unwrap()
        .to_owned();
    let any_mrn = get(
        &app,
        &format!("/Patient?identifier={system}%7C&_id={pa}"),
        admin,
    )
    .await;
    assert_eq!(
        any_mrn["total"], 1,
        "system| matches any identifier of the system"
    );
    // vread serves the current version only.
    get(&app, &format!("/Patient/{pa}/_history/1"), admin).await;
    let (status, _, _) = fhir(
        &app,
        Method::GET,
        &format!("/Patient/{pa}/_history/2"),
        Some(admin),
        None,
        &[],
    )
    .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    // An Encounter's date is the time it was held, not the booked start.
    let held_from = Utc::now();
    for to in [AppointmentStatus::Arrived, AppointmentStatus::InProgress] {
        appointments::transition(
            &app.db,
            world.appointment_a,
            to,
            held_from,
            Duration::minutes(15),
        )
        .await
        .unwrap();
    }
    let during = get(
        &app,
        &format!(
            "/Encounter?patient={pa}&date=ge{}",
            (held_from + Duration::hours(1)).format("%Y-%m-%dT%H:%M:%SZ")
        ),
        admin,
    )
    .await;
    assert_eq!(
        during["total"], 1,
        "a visit still being held is held at any later time"
    );
    let before = get(
        &app,
        &format!(
            "/Encounter?patient={pa}&date=lt{}",
            (held_from - Duration::hours(1)).format("%Y-%m-%dT%H:%M:%SZ")
        ),
        admin,
    )
    .await;
    assert_eq!(before["total"], 0);
    // $everything lists the held visit as Appointment and Encounter (same id).
    let everything = get(&app, &format!("/Patient/{pa}/$everything"), admin).await;
    let keys: Vec<(String, String)> = entries(&everything)
        .iter()
        .map(|r| {
            (
                r["resourceType"].as_str().unwrap().to_owned(),
                r["id"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    let unique: std::collections::BTreeSet<_> = keys.iter().cloned().collect();
    assert_eq!(unique.len(), keys.len(), "no resource twice");
    assert!(keys.contains(&("Encounter".to_owned(), world.appointment_a.to_string())));
    app.stop().await.expect("stop");
}
