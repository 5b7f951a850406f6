//! Booking and the appointment lifecycle through the API and the database.

use std::time::Duration;

use bedside_records::appointments::{self, NewAppointment, VisitLength};
use bedside_records::domain::{AppointmentKind, BoundedText};
use bedside_test_support::{TestApp, World, wait_for};
use chrono::{DateTime, Utc};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use crate::support::{json as body_of, send};

fn slot(days: i64, hour: u32, minute: u32) -> DateTime<Utc> {
    let day = (Utc::now() + chrono::Duration::days(days)).date_naive();
    day.and_hms_opt(hour, minute, 0).expect("time").and_utc()
}

async fn book(app: &TestApp, w: &World, start: DateTime<Utc>, minutes: i64) -> reqwest::Response {
    let body = json!({"patient_id": w.patient_a, "practitioner_id": w.clinician_a.practitioner, "start": start.to_rfc3339(),
        "duration_minutes": minutes, "kind": "video", "reason": "Review"});
    send(
        app,
        Method::POST,
        "/api/v1/appointments",
        Some(&w.admin.token),
        Some(&body),
    )
    .await
}

#[tokio::test]
async fn booking_a_video_visit_returns_its_join_link_and_local_times() {
    let app = TestApp::spawn().await;
    let w = World::seed(&app).await;
    let response = book(&app, &w, slot(2, 9, 0), 30).await;
    assert_eq!(response.status(), StatusCode::CREATED);
    let a = body_of(response).await;
    assert_eq!(a["status"], "booked");
    assert_eq!(a["duration_minutes"], 30);
    assert!(
        a["join_url"]
            .as_str()
            .expect("join url")
            .contains("/join#t=")
    );
    // Stored in UTC, shown in the clinic's zone (Europe/Berlin by default).
    assert!(a["start"].as_str().expect("start").ends_with('Z'));
    let local =
        DateTime::parse_from_rfc3339(a["start_local"].as_str().expect("local")).expect("rfc3339");
    assert!(matches!(local.offset().local_minus_utc(), 3600 | 7200));
    assert_eq!(local.with_timezone(&Utc), slot(2, 9, 0));
    // The link is not shown again on reads.
    let read = body_of(
        send(
            &app,
            Method::GET,
            &format!("/api/v1/appointments/{}", a["id"].as_str().expect("id")),
            Some(&w.admin.token),
            None,
        )
        .await,
    )
    .await;
    assert!(read.get("join_url").is_none());
}

#[tokio::test]
async fn a_clinician_cannot_be_double_booked_but_back_to_back_and_freed_slots_are_fine() {
    let app = TestApp::spawn().await;
    let w = World::seed(&app).await;
    let first = body_of(book(&app, &w, slot(3, 10, 0), 30).await).await;
    let overlap = book(&app, &w, slot(3, 10, 15), 30).await;
    assert_eq!(overlap.status(), StatusCode::CONFLICT);
    let error = body_of(overlap).await;
    assert_eq!(error["code"], "appointment_overlap");
    assert_eq!(error["field"], "start");
    assert_eq!(
        book(&app, &w, slot(3, 10, 30), 30).await.status(),
        StatusCode::CREATED,
        "back to back"
    );
    assert_eq!(
        book(&app, &w, slot(3, 9, 30), 30).await.status(),
        StatusCode::CREATED,
        "back to back before"
    );
    let id = first["id"].as_str().expect("id");
    let cancel = send(
        &app,
        Method::POST,
        &format!("/api/v1/appointments/{id}/transitions"),
        Some(&w.admin.token),
        Some(&json!({"to": "cancelled"})),
    )
    .await;
    assert_eq!(cancel.status(), StatusCode::OK);
    assert_eq!(
        book(&app, &w, slot(3, 10, 0), 30).await.status(),
        StatusCode::CREATED,
        "a cancelled slot is free again"
    );
}

#[tokio::test]
async fn concurrent_overlapping_bookings_let_exactly_one_through() {
    let app = TestApp::spawn().await;
    let w = World::seed(&app).await;
    let attempts = (0..12).map(|i| {
        let (app, w) = (&app, &w);
        async move {
            book(
                app,
                w,
                slot(4, 14, 0) + chrono::Duration::minutes(i % 3),
                30,
            )
            .await
            .status()
        }
    });
    let statuses = futures::future::join_all(attempts).await;
    let created = statuses
        .iter()
        .filter(|s| **s == StatusCode::CREATED)
        .count();
    let conflicts = statuses
        .iter()
        .filter(|s| **s == StatusCode::CONFLICT)
        .count();
    assert_eq!((created, conflicts), (1, 11), "{statuses:?}");
}

#[tokio::test]
async fn the_lifecycle_runs_booked_arrived_in_progress_finished_and_refuses_shortcuts() {
    let app = TestApp::spawn().await;
    let w = World::seed(&app).await;
    let path = format!("/api/v1/appointments/{}/transitions", w.appointment_a);
    let to = |status: &str| {
        let (app, path, token) = (&app, path.clone(), w.clinician_a.token.clone());
        let body = json!({"to": status});
        async move { send(app, Method::POST, &path, Some(&token), Some(&body)).await }
    };
    assert_eq!(
        body_of(to("in_progress").await).await["code"],
        "invalid_transition"
    );
    assert_eq!(
        body_of(to("no_show").await).await["code"],
        "invalid_transition",
        "not before the grace period"
    );
    for status in ["arrived", "in_progress", "finished"] {
        let response = to(status).await;
        assert_eq!(response.status(), StatusCode::OK);
        assert_eq!(body_of(response).await["status"], status);
    }
    for status in ["cancelled", "arrived", "booked"] {
        assert_eq!(
            to(status).await.status(),
            StatusCode::CONFLICT,
            "finished is final ({status})"
        );
    }
}

#[tokio::test]
async fn the_server_marks_no_shows_after_the_grace_period() {
    let app = TestApp::spawn_with(|c| {
        c.visits.no_show_grace_minutes = 1;
        c.visits.no_show_sweep_secs = 1;
    })
    .await;
    let w = World::seed(&app).await;
    let book_at = |minutes_ago: i64| {
        let db = app.db.clone();
        let (patient, practitioner) = (w.patient_b, w.clinician_b.practitioner.expect("clinician"));
        async move {
            appointments::book(
                &db,
                &NewAppointment {
                    patient_id: patient,
                    practitioner_id: practitioner,
                    starts_at: Utc::now() - chrono::Duration::minutes(minutes_ago),
                    length: VisitLength::parse(5).expect("length"),
                    kind: AppointmentKind::InPerson,
                    reason: BoundedText::parse("reason", "x", 10).expect("reason"),
                },
            )
            .await
            .expect("book")
            .id
        }
    };
    let overdue = book_at(2).await;
    let within_grace = book_at(-90).await;
    let status = |id| {
        let db = app.db.clone();
        async move { appointments::get(&db, id).await.expect("read").status }
    };
    wait_for(
        "the sweep to mark the overdue visit",
        Duration::from_secs(20),
        || async {
            (status(overdue).await == bedside_records::appointment::AppointmentStatus::NoShow)
                .then_some(())
        },
    )
    .await;
    assert_eq!(
        status(within_grace).await,
        bedside_records::appointment::AppointmentStatus::Booked
    );
    let audited: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM audit_log WHERE action = 'appointment.no_show' AND patient_id = $1",
    )
    .bind(w.patient_b)
    .fetch_one(&app.db)
    .await
    .expect("audit");
    assert_eq!(audited, 1);
}

#[tokio::test]
async fn the_day_list_uses_the_clinic_time_zone() {
    let app = TestApp::spawn_with(|c| c.clinic.time_zone = "Pacific/Auckland".into()).await;
    let w = World::seed(&app).await;
    // 23:30 UTC is already the next day in Auckland (UTC+12/+13).
    let late = slot(5, 23, 30);
    assert_eq!(book(&app, &w, late, 20).await.status(), StatusCode::CREATED);
    let auckland_day = late
        .with_timezone(&chrono_tz::Pacific::Auckland)
        .date_naive();
    let list: Vec<Value> = body_of(
        send(
            &app,
            Method::GET,
            &format!("/api/v1/appointments?date={auckland_day}"),
            Some(&w.admin.token),
            None,
        )
        .await,
    )
    .await
    .as_array()
    .expect("list")
    .clone();
    assert!(
        list.iter()
            .any(|a| a["start"] == json!(late.to_rfc3339_opts(chrono::SecondsFormat::Secs, true))),
        "{list:?}"
    );
    let utc_day = late.date_naive();
    let other: Vec<Value> = body_of(
        send(
            &app,
            Method::GET,
            &format!("/api/v1/appointments?date={utc_day}"),
            Some(&w.admin.token),
            None,
        )
        .await,
    )
    .await
    .as_array()
    .expect("list")
    .clone();
    assert!(
        other
            .iter()
            .all(|a| a["start"] != json!(late.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)))
    );
}
