//! Personal data never reaches the logs. Everything the application logs at
//! every level while a patient is registered, read, listed, updated, booked
//! and refused is captured; the patient's name and birth date must not
//! appear anywhere in it.

use std::io::Write;
use std::sync::{Arc, Mutex};

use bedside_test_support::{TestApp, World};
use reqwest::Method;
use serde_json::json;

use crate::support::send;

#[derive(Clone, Default)]
struct Capture(Arc<Mutex<Vec<u8>>>);

impl Write for Capture {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().expect("capture lock").extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl<'a> tracing_subscriber::fmt::MakeWriter<'a> for Capture {
    type Writer = Capture;
    fn make_writer(&'a self) -> Self::Writer {
        self.clone()
    }
}

// One thread, so the subscriber installed for this test sees every task the
// application spawns.
#[tokio::test(flavor = "current_thread")]
async fn patient_names_and_birth_dates_never_reach_the_logs() {
    let capture = Capture::default();
    let subscriber = tracing_subscriber::fmt()
        .with_max_level(tracing::Level::TRACE)
        .with_writer(capture.clone())
        .with_ansi(false)
        .finish();
    let _guard = tracing::subscriber::set_default(subscriber);

    let app = TestApp::spawn().await;
    let w = World::seed(&app).await;
    let admin = Some(w.admin.token.as_str());
    let given = "Wilhelmina";
    let family = "Zyxwvutsrq";
    let born = "1931-07-04";
    let created = send(&app, Method::POST, "/api/v1/patients", admin, Some(&json!({
        "mrn": "RED-1", "given_name": given, "family_name": family, "birth_date": born, "sex": "female",
        "email": "wilhelmina@example.org", "phone": "+49 30 1234567"
    })))
    .await;
    assert_eq!(created.status(), reqwest::StatusCode::CREATED);
    let id = created.json::<serde_json::Value>().await.expect("json")["id"]
        .as_str()
        .expect("id")
        .to_owned();
    send(
        &app,
        Method::GET,
        &format!("/api/v1/patients/{id}"),
        admin,
        None,
    )
    .await;
    send(
        &app,
        Method::GET,
        &format!("/api/v1/patients?q={family}"),
        admin,
        None,
    )
    .await;
    send(
        &app,
        Method::GET,
        &format!("/api/v1/patients/{id}"),
        Some(&w.clinician_b.token),
        None,
    )
    .await;
    send(&app, Method::PUT, &format!("/api/v1/patients/{id}"), admin, Some(&json!({
        "mrn": "RED-1", "given_name": given, "family_name": family, "birth_date": "1931-02-30", "sex": "female"
    })))
    .await;
    send(&app, Method::POST, "/api/v1/patients", admin, Some(&json!({
        "mrn": "RED-1", "given_name": given, "family_name": family, "birth_date": born, "sex": "female"
    })))
    .await;
    send(&app, Method::POST, "/api/v1/appointments", admin, Some(&json!({
        "patient_id": id, "practitioner_id": w.clinician_a.practitioner,
        "start": (chrono::Utc::now() + chrono::Duration::days(1)).to_rfc3339(), "duration_minutes": 30, "kind": "video", "reason": "Chest pain"
    })))
    .await;
    send(
        &app,
        Method::GET,
        "/api/v1/appointments?date=today",
        admin,
        None,
    )
    .await;
    app.stop().await.expect("stop");

    let logs = String::from_utf8(capture.0.lock().expect("lock").clone()).expect("utf8");
    assert!(
        logs.contains("patient registered"),
        "the capture saw the application's logs:\n{logs}"
    );
    for secret in [
        given,
        family,
        born,
        "1931",
        "wilhelmina@example.org",
        "1234567",
        "Chest pain",
    ] {
        assert!(
            !contains_standalone(&logs, secret),
            "{secret:?} leaked into the logs:\n{}",
            context(&logs, secret)
        );
    }
}

/// Whether `needle` occurs in `logs` other than inside a longer run of
/// digits: the birth year 1931 must not appear, but a timestamp's
/// fraction `09.193183` is not a leak.
fn contains_standalone(logs: &str, needle: &str) -> bool {
    let digit = |c: Option<char>| c.is_some_and(|c| c.is_ascii_digit());
    logs.match_indices(needle).any(|(at, _)| {
        let before = logs[..at].chars().next_back();
        let after = logs[at + needle.len()..].chars().next();
        let glued_before = needle.starts_with(|c: char| c.is_ascii_digit()) && digit(before);
        let glued_after = needle.ends_with(|c: char| c.is_ascii_digit()) && digit(after);
        !glued_before && !glued_after
    })
}

fn context(logs: &str, needle: &str) -> String {
    logs.lines()
        .filter(|l| l.contains(needle))
        .take(5)
        .collect::<Vec<_>>()
        .join("\n")
}
