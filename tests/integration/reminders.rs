//! Appointment reminders through the outbox, delivered to a real SMTP
//! server (aiosmtpd from PyPI, started here) and to an SMS webhook (a
//! small HTTP server here), and clinicians' calendar feeds read back with
//! an independent iCalendar parser (the `icalendar` library from PyPI).
//!
//! Passes are driven with a moved clock (`Sender::pass_at`), so a day
//! ahead takes no time and nothing sleeps.

use std::io::{BufRead as _, BufReader, Write as _};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};

use bedside_records::appointment::AppointmentStatus;
use bedside_records::appointments::{self, NewAppointment, VisitLength};
use bedside_records::domain::{AppointmentKind, BirthDate, BoundedText, Email, Mrn, Sex};
use bedside_records::ids::{AppointmentId, PatientId};
use bedside_records::patients::{self, PatientDetails};
use bedside_records::{care, reminders};
use bedside_server::config::RemindersConfig;
use bedside_server::reminders::Sender;
use bedside_test_support::{TestApp, World, free_port};
use chrono::{DateTime, Duration, Utc};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use crate::support::{send, test_python};

/// aiosmtpd on a free port, appending each message to a file.
struct SmtpSink {
    child: Child,
    port: u16,
    file: tempfile::NamedTempFile,
    /// Kept open: a closed pipe would kill the server if it wrote again.
    _stdout: BufReader<std::process::ChildStdout>,
}

impl SmtpSink {
    fn start_on(port: u16) -> Self {
        let file = tempfile::NamedTempFile::new().unwrap();
        let mut child = Command::new(test_python())
            .arg(concat!(env!("CARGO_MANIFEST_DIR"), "/tools/smtp_sink.py"))
            .arg(port.to_string())
            .arg(file.path())
            .stdout(Stdio::piped())
            .spawn()
            .expect("aiosmtpd starts (./scripts/test.sh installs it)");
        let mut stdout = BufReader::new(child.stdout.take().unwrap());
        let mut ready = String::new();
        stdout.read_line(&mut ready).unwrap();
        assert_eq!(ready.trim(), "ready", "the SMTP sink did not start");
        Self {
            child,
            port,
            file,
            _stdout: stdout,
        }
    }

    /// Every message received so far.
    fn messages(&self) -> Vec<Value> {
        std::fs::read_to_string(self.file.path())
            .unwrap_or_default()
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect()
    }
}

impl Drop for SmtpSink {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn config(smtp_port: Option<u16>, sms: Option<String>) -> RemindersConfig {
    serde_json::from_value(json!({
        "lead_minutes": [1440, 60],
        "smtp_url": smtp_port.map(|p| format!("smtp://127.0.0.1:{p}")),
        "from": "Bedside Clinic <no-reply@clinic.test>",
        "sms_webhook_url": sms,
        "sms_webhook_secret": "webhook-secret",
        // The server's own loop stays out of the way: the test drives passes.
        "every_secs": 86400,
        "lease_secs": 300,
        "max_attempts": 3
    }))
    .unwrap()
}

/// A patient with an e-mail address and phone, in clinician A's care, and a
/// video visit with clinician A two days from `now`.
async fn booked_visit(
    app: &TestApp,
    world: &World,
    now: DateTime<Utc>,
) -> (PatientId, AppointmentId) {
    let tag = &uuid::Uuid::new_v4().simple().to_string()[..8];
    let patient = patients::create(
        &app.db,
        &PatientDetails {
            mrn: Mrn::parse(&format!("R-{tag}")).unwrap(),
            given_name: BoundedText::parse("given_name", "Rita", 100).unwrap(),
            family_name: BoundedText::parse("family_name", "Reminder", 100).unwrap(),
            birth_date: BirthDate::parse("1961-01-01").unwrap(),
            sex: Sex::Female,
            email: Some(Email::parse("email", &format!("rita.{tag}@example.org")).unwrap()),
            phone: Some(BoundedText::parse("phone", "+49 170 5550100", 40).unwrap()),
        },
    )
    .await
    .unwrap()
    .id;
    care::add(&app.db, patient, world.clinician_a.practitioner.unwrap())
        .await
        .unwrap();
    let start = now + Duration::days(2);
    let appointment = appointments::book(
        &app.db,
        &NewAppointment {
            patient_id: patient,
            practitioner_id: world.clinician_a.practitioner.unwrap(),
            starts_at: start - Duration::seconds(start.timestamp() % 60),
            length: VisitLength::parse(20).unwrap(),
            kind: AppointmentKind::Video,
            reason: BoundedText::parse("reason", "Persistent cough", 500).unwrap(),
        },
    )
    .await
    .unwrap()
    .id;
    (patient, appointment)
}

/// The message as its reader sees it: quoted-printable soft line breaks
/// joined and `=XX` escapes decoded (the sink keeps the wire form).
fn quoted_printable(data: &str) -> String {
    let joined = data.replace("=\r\n", "").replace("=\n", "");
    let bytes = joined.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = bytes
            .get(i + 1..i + 3)
            .and_then(|h| std::str::from_utf8(h).ok())
            .and_then(|h| u8::from_str_radix(h, 16).ok());
        match (bytes[i], hex) {
            (b'=', Some(byte)) => {
                out.push(byte);
                i += 3;
            }
            (b, _) => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

async fn statuses(app: &TestApp) -> Vec<(String, i64)> {
    reminders::counts(&app.db).await.unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_reminder_reaches_the_patient_once_with_the_link_they_already_have() {
    let sink = SmtpSink::start_on(free_port());
    let app = TestApp::spawn().await;
    let world = World::seed(&app).await;
    let now = Utc::now();
    let (_, appointment) = booked_visit(&app, &world, now).await;
    // The clinic sends the join link when booking; the reminders repeat it.
    let token = bedside_records::join_links::issue(&app.db, appointment, app.state.link_secret())
        .await
        .unwrap();
    let sender = Sender::new(app.state.clone(), config(Some(sink.port), None)).unwrap();

    assert_eq!(sender.pass_at(now).await.unwrap(), 0, "nothing is due yet");
    assert_eq!(
        sender
            .pass_at(now + Duration::days(1) + Duration::minutes(1))
            .await
            .unwrap(),
        1,
        "the day-ahead reminder"
    );
    assert_eq!(
        sender
            .pass_at(now + Duration::days(1) + Duration::minutes(2))
            .await
            .unwrap(),
        0,
        "sent once"
    );
    let hour_before = now + Duration::days(2) - Duration::minutes(59);
    assert_eq!(
        sender.pass_at(hour_before).await.unwrap(),
        1,
        "the hour-ahead reminder"
    );
    assert_eq!(
        sender
            .pass_at(hour_before + Duration::minutes(5))
            .await
            .unwrap(),
        0
    );

    let messages = sink.messages();
    assert_eq!(messages.len(), 2, "{messages:?}");
    let data = &quoted_printable(messages[0]["data"].as_str().unwrap());
    assert!(messages[0]["to"][0].as_str().unwrap().starts_with("rita."));
    assert!(
        data.contains("Subject: Reminder: your video visit on"),
        "{data}"
    );
    assert!(
        data.contains(&format!("/join#t={token}")),
        "the link the patient already has: {data}"
    );
    assert!(data.contains("Dr. A"), "{data}");
    assert!(
        !data.to_lowercase().contains("cough"),
        "no reason for the visit in an e-mail: {data}"
    );
    let ids: Vec<&str> = messages
        .iter()
        .map(|m| {
            let data = m["data"].as_str().unwrap();
            data.lines()
                .find(|l| l.to_lowercase().starts_with("message-id:"))
                .unwrap()
        })
        .collect();
    assert_ne!(ids[0], ids[1], "each reminder is its own message");
    // The link in the reminder still works: the patient is told it opens later.
    let joined = send(
        &app,
        Method::POST,
        "/api/v1/auth/join",
        None,
        Some(&json!({"token": token})),
    )
    .await;
    // Two days ahead the link is recognised and not open yet.
    assert_eq!(joined.status(), StatusCode::FORBIDDEN);
    assert_eq!(
        joined.json::<Value>().await.unwrap()["code"],
        "join_link_early",
        "the reminded link is the live one"
    );
    assert_eq!(statuses(&app).await, vec![("sent".to_owned(), 2)]);
    app.stop().await.expect("stop");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn after_downtime_only_the_closest_reminder_goes_out() {
    let sink = SmtpSink::start_on(free_port());
    let app = TestApp::spawn().await;
    let world = World::seed(&app).await;
    let now = Utc::now();
    booked_visit(&app, &world, now).await;
    let sender = Sender::new(app.state.clone(), config(Some(sink.port), None)).unwrap();
    // The server was down from before the day-ahead reminder until after the
    // hour-ahead one was due: one reminder, the hour-ahead one.
    let late = now + Duration::days(2) - Duration::minutes(30);
    assert_eq!(sender.pass_at(late).await.unwrap(), 1);
    assert_eq!(
        sender.pass_at(late + Duration::minutes(1)).await.unwrap(),
        0
    );
    assert_eq!(sink.messages().len(), 1);
    let statuses: Vec<(i32, String)> =
        sqlx::query_as("SELECT lead_minutes, status FROM reminder_outbox ORDER BY lead_minutes")
            .fetch_all(&app.db)
            .await
            .unwrap();
    assert_eq!(
        statuses,
        vec![(60, "sent".to_owned()), (1440, "skipped".to_owned())]
    );
    app.stop().await.expect("stop");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_reminder_is_lost_to_a_dead_sender_or_an_unreachable_server() {
    let port = free_port();
    let app = TestApp::spawn().await;
    let world = World::seed(&app).await;
    let now = Utc::now();
    booked_visit(&app, &world, now).await;
    let sender = Sender::new(app.state.clone(), config(Some(port), None)).unwrap();
    let due = now + Duration::days(1) + Duration::minutes(1);

    // The SMTP server is down: the reminder waits and is tried again.
    assert_eq!(sender.pass_at(due).await.unwrap(), 0);
    let row: (String, String, i32) = sqlx::query_as(
        "SELECT status, last_error, attempts FROM reminder_outbox WHERE lead_minutes = 1440",
    )
    .fetch_one(&app.db)
    .await
    .unwrap();
    assert_eq!(
        row,
        ("pending".to_owned(), "smtp_unavailable".to_owned(), 1)
    );
    let sink = SmtpSink::start_on(port);
    assert_eq!(
        sender.pass_at(due + Duration::seconds(30)).await.unwrap(),
        0,
        "not before its backoff"
    );
    assert_eq!(sender.pass_at(due + Duration::minutes(2)).await.unwrap(), 1);
    assert_eq!(sink.messages().len(), 1);

    // A sender claims the hour-ahead reminder and dies: nobody sends it
    // while the claim's lease runs, then the next pass does, once.
    let hour_before = now + Duration::days(2) - Duration::minutes(59);
    let claimed = reminders::claim(&app.db, hour_before, Duration::minutes(5), 10)
        .await
        .unwrap();
    assert_eq!(claimed.len(), 1);
    assert_eq!(
        sender
            .pass_at(hour_before + Duration::minutes(1))
            .await
            .unwrap(),
        0,
        "held by the dead sender's lease"
    );
    assert_eq!(
        sender
            .pass_at(hour_before + Duration::minutes(6))
            .await
            .unwrap(),
        1,
        "taken over after the lease"
    );
    assert_eq!(
        sender
            .pass_at(hour_before + Duration::minutes(7))
            .await
            .unwrap(),
        0
    );
    assert_eq!(sink.messages().len(), 2);
    assert_eq!(statuses(&app).await, vec![("sent".to_owned(), 2)]);

    // A cancelled visit's reminders are skipped; a moved one's follow it.
    let (_, cancelled) = booked_visit(&app, &world, now + Duration::days(3)).await;
    let (_, moved) = booked_visit(
        &app,
        &world,
        now + Duration::days(3) + Duration::minutes(30),
    )
    .await;
    let planned_at = now + Duration::days(4) - Duration::minutes(20);
    assert_eq!(
        sender.pass_at(planned_at).await.unwrap(),
        0,
        "planned, not yet due"
    );
    appointments::transition(
        &app.db,
        cancelled,
        AppointmentStatus::Cancelled,
        Utc::now(),
        Duration::minutes(15),
    )
    .await
    .unwrap();
    let current = appointments::get(&app.db, moved).await.unwrap();
    appointments::amend(
        &app.db,
        moved,
        current.version,
        &appointments::Amendment {
            starts_at: current.starts_at + Duration::hours(3),
            length: VisitLength::parse(20).unwrap(),
            kind: current.kind,
            reason: BoundedText::parse("reason", &current.reason, 500).unwrap(),
            status: AppointmentStatus::Booked,
        },
        Utc::now(),
        Duration::minutes(15),
    )
    .await
    .unwrap();
    let day_before_old = now + Duration::days(4) + Duration::minutes(31);
    assert_eq!(
        sender.pass_at(day_before_old).await.unwrap(),
        0,
        "the old time's and the cancelled visit's reminders are skipped"
    );
    assert_eq!(
        sender
            .pass_at(day_before_old + Duration::hours(3))
            .await
            .unwrap(),
        1,
        "the moved visit is reminded at its new time"
    );
    let skipped: i64 = sqlx::query_scalar("SELECT count(*) FROM reminder_outbox WHERE status = 'skipped' AND last_error = 'no_longer_booked'")
        .fetch_one(&app.db).await.unwrap();
    assert_eq!(skipped, 2);
    app.stop().await.expect("stop");
}

/// A webhook call: its signature header and body.
type SignedBody = (Option<String>, Vec<u8>);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn text_messages_go_to_the_webhook_signed_and_retried() {
    // A webhook that fails once, then accepts.
    let received: Arc<Mutex<Vec<SignedBody>>> = Arc::default();
    let calls = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let (seen, count) = (received.clone(), calls.clone());
    let hook = axum::Router::new().route(
        "/sms",
        axum::routing::post(
            move |headers: axum::http::HeaderMap, body: axum::body::Bytes| {
                let (seen, count) = (seen.clone(), count.clone());
                async move {
                    if count.fetch_add(1, std::sync::atomic::Ordering::SeqCst) == 0 {
                        return StatusCode::SERVICE_UNAVAILABLE;
                    }
                    let signature = headers
                        .get("x-bedside-signature")
                        .and_then(|v| v.to_str().ok())
                        .map(str::to_owned);
                    seen.lock().unwrap().push((signature, body.to_vec()));
                    StatusCode::ACCEPTED
                }
            },
        ),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/sms", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, hook).await });

    let app = TestApp::spawn().await;
    let world = World::seed(&app).await;
    let now = Utc::now();
    let (_, appointment) = booked_visit(&app, &world, now).await;
    bedside_records::join_links::issue(&app.db, appointment, app.state.link_secret())
        .await
        .unwrap();
    let mut settings = config(None, Some(url));
    settings.lead_minutes = vec![60];
    let sender = Sender::new(app.state.clone(), settings).unwrap();
    let due = now + Duration::days(2) - Duration::minutes(59);
    assert_eq!(sender.pass_at(due).await.unwrap(), 0, "the webhook failed");
    assert_eq!(
        sender.pass_at(due + Duration::minutes(2)).await.unwrap(),
        1,
        "retried after its backoff"
    );
    let received = received.lock().unwrap().clone();
    assert_eq!(received.len(), 1);
    let (signature, body) = &received[0];
    use hmac::Mac as _;
    let mut mac = hmac::Hmac::<sha2::Sha256>::new_from_slice(b"webhook-secret").unwrap();
    mac.update(body);
    let expected: String = mac
        .finalize()
        .into_bytes()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    assert_eq!(
        signature.as_deref(),
        Some(format!("sha256={expected}").as_str())
    );
    let message: Value = serde_json::from_slice(body).unwrap();
    assert_eq!(message["to"], "+49 170 5550100");
    assert!(message["text"].as_str().unwrap().contains("/join#t="));
    app.stop().await.expect("stop");
}

/// Parses a feed with the independent reader: one JSON value per event.
fn read_feed(ics: &str) -> Vec<Value> {
    let mut child = Command::new(test_python())
        .arg(concat!(env!("CARGO_MANIFEST_DIR"), "/tools/read_ics.py"))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(ics.as_bytes())
        .unwrap();
    let output = child.wait_with_output().unwrap();
    assert!(
        output.status.success(),
        "the iCalendar reader refused the feed: {ics}"
    );
    String::from_utf8(output.stdout)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_clinicians_calendar_feed_shows_their_visits_and_no_patient() {
    let app = TestApp::spawn().await;
    let world = World::seed(&app).await;
    let clinician = world.clinician_a.token.as_str();
    let response = send(
        &app,
        Method::POST,
        "/api/v1/me/calendar-feed",
        Some(&world.admin.token),
        None,
    )
    .await;
    assert_eq!(
        response.status(),
        StatusCode::FORBIDDEN,
        "admins have no schedule"
    );
    let response = send(
        &app,
        Method::POST,
        "/api/v1/me/calendar-feed",
        Some(clinician),
        None,
    )
    .await;
    assert_eq!(response.status(), StatusCode::CREATED);
    let url = response.json::<Value>().await.unwrap()["url"]
        .as_str()
        .unwrap()
        .to_owned();
    let path = &url[url.find("/calendar/").unwrap()..];

    let fetch = |path: String| {
        let app = &app;
        async move {
            let response = app.client.get(app.url(&path)).send().await.unwrap();
            let status = response.status();
            let kind = response
                .headers()
                .get("content-type")
                .map(|v| v.to_str().unwrap().to_owned());
            (status, kind, response.text().await.unwrap())
        }
    };
    let (status, kind, ics) = fetch(path.to_owned()).await;
    assert_eq!(status, StatusCode::OK);
    assert!(kind.unwrap().starts_with("text/calendar"));
    let events = read_feed(&ics);
    assert_eq!(events.len(), 1, "{ics}");
    let event = &events[0];
    assert!(
        event["uid"]
            .as_str()
            .unwrap()
            .starts_with(&world.appointment_a.to_string())
    );
    assert_eq!(event["summary"], "Video visit");
    assert_eq!(event["status"], "CONFIRMED");
    assert!(
        event["url"]
            .as_str()
            .unwrap()
            .ends_with(&format!("/visits/{}", world.appointment_a))
    );
    for private in ["Alice", "Anders", "A-"] {
        assert!(!ics.contains(private), "the feed names the patient: {ics}");
    }
    // A cancelled visit stays, cancelled, with a higher sequence.
    appointments::transition(
        &app.db,
        world.appointment_a,
        AppointmentStatus::Cancelled,
        Utc::now(),
        Duration::minutes(15),
    )
    .await
    .unwrap();
    let events = read_feed(&fetch(path.to_owned()).await.2);
    assert_eq!(events[0]["status"], "CANCELLED");
    assert!(events[0]["sequence"].as_i64().unwrap() > event["sequence"].as_i64().unwrap());
    // A new feed replaces the old URL; revoking ends it; garbage is 404.
    let response = send(
        &app,
        Method::POST,
        "/api/v1/me/calendar-feed",
        Some(clinician),
        None,
    )
    .await;
    let new_url = response.json::<Value>().await.unwrap()["url"]
        .as_str()
        .unwrap()
        .to_owned();
    let new_path = &new_url[new_url.find("/calendar/").unwrap()..];
    assert_eq!(fetch(path.to_owned()).await.0, StatusCode::NOT_FOUND);
    assert_eq!(fetch(new_path.to_owned()).await.0, StatusCode::OK);
    let response = send(
        &app,
        Method::DELETE,
        "/api/v1/me/calendar-feed",
        Some(clinician),
        None,
    )
    .await;
    assert_eq!(response.status(), StatusCode::NO_CONTENT);
    assert_eq!(fetch(new_path.to_owned()).await.0, StatusCode::NOT_FOUND);
    assert_eq!(
        fetch("/calendar/not-a-token.ics".to_owned()).await.0,
        StatusCode::NOT_FOUND
    );
    // Fetches are audited to the clinician, without the secret in the row.
    let rows: Vec<(Option<uuid::Uuid>, String, String)> = sqlx::query_as(
        "SELECT actor_id, resource_path, outcome FROM audit_log WHERE action = 'calendar_feed.read' ORDER BY id",
    )
    .fetch_all(&app.db)
    .await
    .unwrap();
    assert!(
        rows.iter()
            .any(|r| r.0 == Some(world.clinician_a.user.0) && r.2 == "allowed"),
        "{rows:?}"
    );
    assert!(
        rows.iter().all(|r| r.1 == "/calendar/{file}"),
        "no feed secret in the audit log: {rows:?}"
    );
    app.stop().await.expect("stop");
}
