//! Data protection: the export of a patient's whole record, erasure on a
//! recorded request (proved by searching every API answer and every table
//! for the person afterwards), and the retention of the audit log and of
//! refused device messages.

use bedside_records::appointments::{self, NewAppointment, VisitLength};
use bedside_records::consents;
use bedside_records::domain::{
    AppointmentKind, BirthDate, BoundedText, ConsentRecorder, Email, Mrn, Sex,
};
use bedside_records::ids::{AppointmentId, PatientId};
use bedside_records::patients::{self, PatientDetails};
use bedside_records::{care, guest_links, join_links, notes};
use bedside_test_support::{TestApp, World};
use bedside_vitals_store::metric::Metric;
use bedside_vitals_store::store::{NewReading, insert_batch};
use chrono::{Duration, Utc};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use crate::support::{request_id, send};

/// Everything that identified the person in the erasure test.
const IDENTITY: [&str; 6] = [
    "zebulon",
    "quixotefield",
    "zq-4471",
    "zebulon.q@example.org",
    "5550199",
    "1977-08-14",
];

struct Person {
    patient: PatientId,
    appointment: AppointmentId,
}

/// A patient whose identity is spread over every place Bedside keeps text:
/// demographics, a booked visit's reason, a signed note and a draft, a
/// guest's name and label, a consent, readings and an alert.
async fn memorable_patient(app: &TestApp, world: &World) -> Person {
    let db = &app.db;
    let patient = patients::create(
        db,
        &PatientDetails {
            mrn: Mrn::parse("ZQ-4471").unwrap(),
            given_name: BoundedText::parse("given_name", "Zebulon", 100).unwrap(),
            family_name: BoundedText::parse("family_name", "Quixotefield", 100).unwrap(),
            birth_date: BirthDate::parse("1977-08-14").unwrap(),
            sex: Sex::Male,
            email: Some(Email::parse("email", "zebulon.q@example.org").unwrap()),
            phone: Some(BoundedText::parse("phone", "+49 170 5550199", 40).unwrap()),
        },
    )
    .await
    .unwrap()
    .id;
    let clinician = world.clinician_a.practitioner.unwrap();
    care::add(db, patient, clinician).await.unwrap();
    let appointment = appointments::book(
        db,
        &NewAppointment {
            patient_id: patient,
            practitioner_id: clinician,
            starts_at: Utc::now() + Duration::days(2),
            length: VisitLength::parse(20).unwrap(),
            kind: AppointmentKind::Video,
            reason: BoundedText::parse("reason", "Zebulon Quixotefield: cough since May", 500)
                .unwrap(),
        },
    )
    .await
    .unwrap()
    .id;
    join_links::issue(db, appointment, app.state.link_secret())
        .await
        .unwrap();
    let (_, token) = guest_links::issue(
        db,
        appointment,
        "Quixotefield's daughter",
        world.clinician_a.user,
    )
    .await
    .unwrap();
    guest_links::redeem(db, &token, "Zelda Quixotefield")
        .await
        .unwrap();
    let text = BoundedText::parse(
        "text",
        "Zebulon Quixotefield, born 1977-08-14, reports a dry cough.",
        1000,
    )
    .unwrap();
    let signed = notes::create(db, appointment, world.clinician_a.user, &text)
        .await
        .unwrap();
    notes::sign(db, signed.id).await.unwrap();
    notes::create(db, appointment, world.clinician_a.user, &text)
        .await
        .unwrap();
    consents::record(
        db,
        patient,
        "2026-01",
        ConsentRecorder::Patient,
        None,
        Some(appointment),
    )
    .await
    .unwrap();
    bedside_vitals_store::partitions::maintain(
        db,
        Utc::now(),
        Duration::days(30),
        Duration::days(7),
    )
    .await
    .unwrap();
    let device = bedside_records::devices::provision(
        db,
        &bedside_records::domain::Serial::parse("ZQ-OX-1").unwrap(),
        bedside_records::domain::DeviceKind::PulseOximeter,
        Some(patient),
    )
    .await
    .unwrap()
    .device
    .id;
    let readings: Vec<NewReading> = (0..10)
        .map(|i| NewReading {
            time: Utc::now() - Duration::minutes(i),
            device_id: device.0,
            metric: Metric::HeartRate,
            patient_id: patient.0,
            value: 70.0,
        })
        .collect();
    insert_batch(db, &readings).await.unwrap();
    let mut tx = db.begin().await.unwrap();
    bedside_vitals_store::alerts::open(
        &mut tx,
        patient.0,
        "threshold:heart_rate",
        "high",
        &json!({"value": 70}),
        Utc::now(),
    )
    .await
    .unwrap();
    tx.commit().await.unwrap();
    Person {
        patient,
        appointment,
    }
}

async fn body_text(app: &TestApp, path: &str, token: &str) -> (StatusCode, String) {
    let response = app
        .client
        .get(app.url(path))
        .bearer_auth(token)
        .send()
        .await
        .unwrap();
    (response.status(), response.text().await.unwrap())
}

fn identity_in(text: &str) -> Vec<&'static str> {
    let lower = text.to_lowercase();
    IDENTITY
        .into_iter()
        .filter(|needle| lower.contains(needle))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_export_holds_the_whole_record_and_only_admins_get_it() {
    let app = TestApp::spawn().await;
    let world = World::seed(&app).await;
    let person = memorable_patient(&app, &world).await;
    let path = format!("/api/v1/patients/{}/export", person.patient);

    let response = app
        .client
        .get(app.url(&path))
        .bearer_auth(&world.clinician_a.token)
        .send()
        .await
        .unwrap();
    assert_eq!(
        response.status(),
        StatusCode::FORBIDDEN,
        "clinicians do not export"
    );

    let response = app
        .client
        .get(app.url(&path))
        .bearer_auth(&world.admin.token)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    assert!(
        response.headers()["content-disposition"]
            .to_str()
            .unwrap()
            .starts_with("attachment")
    );
    let rid = request_id(&response);
    let bundle: Value = response.json().await.unwrap();
    assert_eq!(bundle["type"], "collection");
    let mut kinds = std::collections::BTreeMap::<String, usize>::new();
    for entry in bundle["entry"].as_array().unwrap() {
        *kinds
            .entry(
                entry["resource"]["resourceType"]
                    .as_str()
                    .unwrap()
                    .to_owned(),
            )
            .or_default() += 1;
    }
    assert_eq!(kinds.get("Patient"), Some(&1));
    assert_eq!(
        kinds.get("DocumentReference"),
        Some(&2),
        "both notes: {kinds:?}"
    );
    assert_eq!(kinds.get("Observation"), Some(&10));
    assert_eq!(kinds.get("Consent"), Some(&1));
    assert_eq!(kinds.get("Flag"), Some(&1));
    assert!(
        kinds.get("AuditEvent").is_some_and(|n| *n >= 2),
        "the audit rows about the patient, this export's included: {kinds:?}"
    );
    // The note's text travels whole.
    let note = bundle["entry"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["resource"]["resourceType"] == "DocumentReference")
        .unwrap();
    use base64::Engine as _;
    let text = base64::engine::general_purpose::STANDARD
        .decode(
            note["resource"]["content"][0]["attachment"]["data"]
                .as_str()
                .unwrap(),
        )
        .unwrap();
    assert!(String::from_utf8(text).unwrap().contains("dry cough"));
    crate::fhir::validate(&[bundle]);
    let audited: Vec<(String, Option<uuid::Uuid>)> =
        sqlx::query_as("SELECT action, patient_id FROM audit_log WHERE request_id = $1")
            .bind(&rid)
            .fetch_all(&app.db)
            .await
            .unwrap();
    assert_eq!(
        audited,
        vec![("patient.export".to_owned(), Some(person.patient.0))]
    );
    app.stop().await.expect("stop");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn after_erasure_no_answer_and_no_table_shows_the_person() {
    let app = TestApp::spawn().await;
    let world = World::seed(&app).await;
    let person = memorable_patient(&app, &world).await;
    let (admin, clinician) = (world.admin.token.as_str(), world.clinician_a.token.as_str());
    let pid = person.patient;
    // Before: the identity is there to be found (the searches below can fail).
    let (_, before) = body_text(&app, &format!("/api/v1/patients/{pid}"), admin).await;
    assert_eq!(identity_in(&before).len(), IDENTITY.len(), "{before}");

    // A reminder is planned for the booked visit (a day before it).
    let planned = bedside_records::reminders::plan(
        &app.db,
        Utc::now() + Duration::days(1) + Duration::hours(1),
        Duration::days(2),
        &[1440],
        &[bedside_records::reminders::Channel::Email],
    )
    .await
    .unwrap();
    assert_eq!(planned, 1);
    let request = json!({ "received_on": Utc::now().format("%Y-%m-%d").to_string(), "reference": "DPO-2026-114" });
    let path = format!("/api/v1/patients/{pid}/erasure");
    let refused = send(&app, Method::POST, &path, Some(clinician), Some(&request)).await;
    assert_eq!(refused.status(), StatusCode::FORBIDDEN, "only admins erase");
    let response = send(&app, Method::POST, &path, Some(admin), Some(&request)).await;
    assert_eq!(response.status(), StatusCode::OK);
    let rid = request_id(&response);
    let done: Value = response.json().await.unwrap();
    assert_eq!(done["reference"], "DPO-2026-114");
    assert_eq!(done["vitals"], "deleted");
    // Reminders planned for the visit are not sent to the erased person.
    let pending: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM reminder_outbox WHERE appointment_id = $1 AND status IN ('pending', 'sending')",
    )
    .bind(person.appointment)
    .fetch_one(&app.db)
    .await
    .unwrap();
    assert_eq!(pending, 0);
    let audited: Vec<(String, String)> =
        sqlx::query_as("SELECT action, outcome FROM audit_log WHERE request_id = $1")
            .bind(&rid)
            .fetch_all(&app.db)
            .await
            .unwrap();
    assert_eq!(
        audited,
        vec![("patient.erase".to_owned(), "allowed".to_owned())]
    );

    // Every answer about the patient, through every API.
    let appointment = person.appointment;
    let answers = [
        format!("/api/v1/patients/{pid}"),
        "/api/v1/patients?q=Quixote".to_owned(),
        "/api/v1/patients?q=Zebulon".to_owned(),
        "/api/v1/patients".to_owned(),
        format!("/api/v1/patients/{pid}/appointments"),
        format!("/api/v1/patients/{pid}/notes"),
        format!("/api/v1/patients/{pid}/consents"),
        format!("/api/v1/patients/{pid}/devices"),
        format!("/api/v1/appointments/{appointment}"),
        format!("/api/v1/appointments/{appointment}/notes"),
        format!("/api/v1/appointments/{appointment}/guest-links"),
        format!("/api/v1/audit?patient_id={pid}"),
        format!("/api/v1/patients/{pid}/export"),
        format!("/api/v1/patients/{pid}/erasure"),
        format!("/fhir/Patient/{pid}"),
        format!("/fhir/Patient/{pid}/$everything"),
        format!("/fhir/Appointment?patient={pid}"),
        format!("/fhir/AuditEvent?patient={pid}"),
    ];
    for path in &answers {
        for token in [admin, clinician] {
            let (status, text) = body_text(&app, path, token).await;
            assert!(
                status.is_success() || status == StatusCode::FORBIDDEN,
                "{path}: {status} {text}"
            );
            assert_eq!(
                identity_in(&text),
                Vec::<&str>::new(),
                "{path} still shows the person: {text}"
            );
        }
    }
    let (_, shell) = body_text(&app, &format!("/fhir/Patient/{pid}"), admin).await;
    let shell: Value = serde_json::from_str(&shell).unwrap();
    assert_eq!(shell["active"], false);
    let searched: Value =
        serde_json::from_str(&body_text(&app, "/fhir/Patient?name=Quixote", admin).await.1)
            .unwrap();
    assert_eq!(searched["total"], 0);
    let readings: Value = serde_json::from_str(
        &body_text(&app, &format!("/fhir/Observation?patient={pid}"), admin)
            .await
            .1,
    )
    .unwrap();
    assert_eq!(
        readings["total"], 0,
        "readings deleted (privacy.erasure_vitals = delete)"
    );

    // Every table, every row, as text.
    let tables: Vec<String> = sqlx::query_scalar(
        "SELECT quote_ident(c.relname) FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
         WHERE n.nspname = 'public' AND c.relkind IN ('r', 'p')",
    )
    .fetch_all(&app.db).await.unwrap();
    assert!(tables.len() > 15, "{tables:?}");
    for table in tables {
        let rows: Vec<String> = sqlx::query_scalar(sqlx::AssertSqlSafe(format!(
            "SELECT t::text FROM {table} t"
        )))
        .fetch_all(&app.db)
        .await
        .unwrap();
        for row in rows {
            assert_eq!(
                identity_in(&row),
                Vec::<&str>::new(),
                "table {table} keeps the person: {row}"
            );
        }
    }

    // The shell takes no new data, and an erasure happens once.
    let again = send(&app, Method::POST, &path, Some(admin), Some(&request)).await;
    assert_eq!(again.status(), StatusCode::CONFLICT);
    let update = send(&app, Method::PUT, &format!("/api/v1/patients/{pid}"), Some(admin), Some(&json!({
        "mrn": "ZQ-4471", "given_name": "Zebulon", "family_name": "Quixotefield", "birth_date": "1977-08-14", "sex": "male"
    }))).await;
    assert_eq!(update.status(), StatusCode::CONFLICT);
    assert_eq!(
        update.json::<Value>().await.unwrap()["code"],
        "patient_erased"
    );
    // Other patients are untouched.
    let (_, other) = body_text(
        &app,
        &format!("/api/v1/patients/{}", world.patient_a),
        admin,
    )
    .await;
    assert!(other.contains("Alice"), "{other}");
    app.stop().await.expect("stop");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readings_can_stay_pseudonymised_when_the_clinic_says_so() {
    let app = TestApp::spawn_with(|c| {
        c.privacy.erasure_vitals = bedside_server::config::ErasureVitals::Pseudonymise;
    })
    .await;
    let world = World::seed(&app).await;
    let person = memorable_patient(&app, &world).await;
    let request = json!({ "received_on": "2026-01-02", "reference": "DPO-7" });
    let response = send(
        &app,
        Method::POST,
        &format!("/api/v1/patients/{}/erasure", person.patient),
        Some(&world.admin.token),
        Some(&request),
    )
    .await;
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(
        response.json::<Value>().await.unwrap()["vitals"],
        "pseudonymised"
    );
    let (_, text) = body_text(
        &app,
        &format!("/fhir/Observation?patient={}", person.patient),
        &world.admin.token,
    )
    .await;
    let readings: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(readings["total"], 10);
    assert_eq!(identity_in(&text), Vec::<&str>::new());
    // Malformed requests name their field.
    for (body, field) in [
        (
            json!({ "received_on": "tomorrow", "reference": "x" }),
            "received_on",
        ),
        (
            json!({ "received_on": "2999-01-01", "reference": "x" }),
            "received_on",
        ),
        (
            json!({ "received_on": "2026-01-02", "reference": "" }),
            "reference",
        ),
    ] {
        let response = send(
            &app,
            Method::POST,
            &format!("/api/v1/patients/{}/erasure", world.patient_b),
            Some(&world.admin.token),
            Some(&body),
        )
        .await;
        assert_eq!(
            response.status(),
            StatusCode::UNPROCESSABLE_ENTITY,
            "{body}"
        );
        assert_eq!(response.json::<Value>().await.unwrap()["field"], field);
    }
    app.stop().await.expect("stop");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retention_removes_only_what_is_older_than_its_period() {
    let app = TestApp::spawn().await;
    let db = &app.db;
    let insert_audit = |days_ago: i64, action: &'static str| {
        sqlx::query(
            "INSERT INTO audit_log (at, actor_role, action, resource, outcome, request_id, client_addr, resource_path)
             VALUES (now() - make_interval(days => $1::int), 'system', $2, 'test', 'allowed', 'retention-test', '-', '')",
        )
        .bind(days_ago as i32)
        .bind(action)
        .execute(db)
    };
    insert_audit(400, "old.one").await.unwrap();
    insert_audit(10, "recent.one").await.unwrap();
    sqlx::query("INSERT INTO rejected_messages (received_at, topic, reason, detail, payload) VALUES (now() - interval '100 days', 't', 'r', 'd', ''), (now(), 't', 'r', 'd', '')")
        .execute(db).await.unwrap();

    // Without the retention pass the log stays append-only, old rows too.
    let refused = sqlx::query("DELETE FROM audit_log WHERE action = 'old.one'")
        .execute(db)
        .await;
    assert!(
        refused.is_err(),
        "a plain DELETE of the audit log is refused"
    );
    assert!(
        sqlx::query("UPDATE audit_log SET action = 'x' WHERE action = 'old.one'")
            .execute(db)
            .await
            .is_err()
    );
    assert!(sqlx::query("TRUNCATE audit_log").execute(db).await.is_err());

    let config = bedside_server::config::RetentionConfig {
        audit_days: 365,
        rejected_messages_days: 90,
    };
    bedside_server::app::enforce_retention(&app.state, &config).await;
    let actions: Vec<String> = sqlx::query_scalar(
        "SELECT action FROM audit_log WHERE request_id = 'retention-test' ORDER BY action",
    )
    .fetch_all(db)
    .await
    .unwrap();
    assert_eq!(actions, vec!["recent.one"]);
    let rejected: i64 = sqlx::query_scalar("SELECT count(*) FROM rejected_messages")
        .fetch_one(db)
        .await
        .unwrap();
    assert_eq!(rejected, 1);
    // The pass cannot reach newer rows even if asked to: the trigger checks the date.
    let mut tx = db.begin().await.unwrap();
    sqlx::query(
        "SELECT set_config('bedside.audit_purge_before', (now() - interval '20 days')::text, true)",
    )
    .execute(&mut *tx)
    .await
    .unwrap();
    assert!(
        sqlx::query("DELETE FROM audit_log WHERE action = 'recent.one'")
            .execute(&mut *tx)
            .await
            .is_err()
    );
    tx.rollback().await.unwrap();
    app.stop().await.expect("stop");
}
