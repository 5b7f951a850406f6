//! Rules the database itself enforces, proven against it directly with the
//! application's own connection: the audit log is append-only, signed notes
//! never change, device assignment history is kept.

use bedside_records::domain::BoundedText;
use bedside_records::{devices, notes};
use bedside_test_support::{TestApp, World};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use crate::support::{json as body_of, send};

#[tokio::test]
async fn the_application_role_cannot_update_delete_or_truncate_audit_rows() {
    let app = TestApp::spawn().await;
    let w = World::seed(&app).await;
    send(
        &app,
        Method::GET,
        &format!("/api/v1/patients/{}", w.patient_a),
        Some(&w.admin.token),
        None,
    )
    .await;
    let before: i64 = sqlx::query_scalar("SELECT count(*) FROM audit_log")
        .fetch_one(&app.db)
        .await
        .expect("count");
    assert!(before > 0);
    for statement in [
        "UPDATE audit_log SET outcome = 'denied'",
        "UPDATE audit_log SET actor_role = 'nobody' WHERE id = (SELECT min(id) FROM audit_log)",
        "DELETE FROM audit_log",
        "DELETE FROM audit_log WHERE id = (SELECT max(id) FROM audit_log)",
        "TRUNCATE audit_log",
    ] {
        let error = sqlx::query(statement)
            .execute(&app.db)
            .await
            .expect_err(statement);
        assert!(
            error.to_string().contains("append-only"),
            "{statement}: {error}"
        );
    }
    let after: i64 = sqlx::query_scalar("SELECT count(*) FROM audit_log")
        .fetch_one(&app.db)
        .await
        .expect("count");
    assert_eq!(before, after);
    let changed: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM audit_log WHERE outcome = 'denied' OR actor_role = 'nobody'",
    )
    .fetch_one(&app.db)
    .await
    .expect("count");
    assert_eq!(changed, 0);
}

#[tokio::test]
async fn signed_notes_are_immutable_and_amendments_keep_the_original() {
    let app = TestApp::spawn().await;
    let w = World::seed(&app).await;
    let token = Some(w.clinician_a.token.as_str());
    let create = send(
        &app,
        Method::POST,
        &format!("/api/v1/appointments/{}/notes", w.appointment_a),
        token,
        Some(&json!({"text": "Cough for a week."})),
    )
    .await;
    assert_eq!(create.status(), StatusCode::CREATED);
    let note = body_of(create).await;
    let id = note["id"].as_str().expect("id").to_owned();
    assert_eq!(note["status"], "draft");
    let edited = body_of(
        send(
            &app,
            Method::PUT,
            &format!("/api/v1/notes/{id}"),
            token,
            Some(&json!({"text": "Cough for two weeks."})),
        )
        .await,
    )
    .await;
    assert_eq!(edited["text"], "Cough for two weeks.");
    // Only the author edits a draft.
    let other = send(
        &app,
        Method::PUT,
        &format!("/api/v1/notes/{id}"),
        Some(&w.admin.token),
        Some(&json!({"text": "x"})),
    )
    .await;
    assert_eq!(other.status(), StatusCode::FORBIDDEN);
    let signed = body_of(
        send(
            &app,
            Method::POST,
            &format!("/api/v1/notes/{id}/sign"),
            token,
            None,
        )
        .await,
    )
    .await;
    assert_eq!(signed["status"], "signed");
    assert!(signed["signed_at"].is_string());
    let refused = send(
        &app,
        Method::PUT,
        &format!("/api/v1/notes/{id}"),
        token,
        Some(&json!({"text": "changed"})),
    )
    .await;
    assert_eq!(refused.status(), StatusCode::CONFLICT);
    assert_eq!(body_of(refused).await["code"], "note_signed");
    // Not even the database lets the application change or delete it.
    let note_id: uuid::Uuid = id.parse().expect("uuid");
    for statement in [
        "UPDATE visit_notes SET text = 'forged' WHERE id = $1",
        "DELETE FROM visit_notes WHERE id = $1",
    ] {
        assert!(
            sqlx::query(statement)
                .bind(note_id)
                .execute(&app.db)
                .await
                .is_err(),
            "{statement}"
        );
    }
    let amendment = send(
        &app,
        Method::POST,
        &format!("/api/v1/notes/{id}/amendments"),
        token,
        Some(&json!({"text": "Correction: three weeks."})),
    )
    .await;
    assert_eq!(amendment.status(), StatusCode::CREATED);
    let amendment = body_of(amendment).await;
    assert_eq!(amendment["amends_note_id"], json!(id));
    let all: Vec<Value> = body_of(
        send(
            &app,
            Method::GET,
            &format!("/api/v1/appointments/{}/notes", w.appointment_a),
            token,
            None,
        )
        .await,
    )
    .await
    .as_array()
    .expect("notes")
    .clone();
    let original = all
        .iter()
        .find(|n| n["id"] == json!(id))
        .expect("original kept");
    assert_eq!(original["text"], "Cough for two weeks.");
    // And the store refuses too, with its typed error.
    let text = BoundedText::parse("text", "x", 10).expect("text");
    assert!(matches!(
        notes::update_draft(&app.db, w.signed_note_a, &text).await,
        Err(bedside_records::RecordsError::NoteSigned)
    ));
}

#[tokio::test]
async fn device_assignments_keep_their_history_and_answer_who_owned_a_reading() {
    let app = TestApp::spawn().await;
    let w = World::seed(&app).await;
    let before_move = chrono::Utc::now();
    let moved = send(
        &app,
        Method::POST,
        &format!("/api/v1/devices/{}/assignment", w.device_a),
        Some(&w.admin.token),
        Some(&json!({"patient_id": w.patient_b})),
    )
    .await;
    assert_eq!(moved.status(), StatusCode::CREATED);
    assert_eq!(
        devices::patient_at(&app.db, w.device_a, before_move)
            .await
            .expect("query"),
        Some(w.patient_a)
    );
    assert_eq!(
        devices::patient_at(&app.db, w.device_a, chrono::Utc::now())
            .await
            .expect("query"),
        Some(w.patient_b)
    );
    let history_a = body_of(
        send(
            &app,
            Method::GET,
            &format!("/api/v1/patients/{}/devices", w.patient_a),
            Some(&w.admin.token),
            None,
        )
        .await,
    )
    .await;
    assert!(
        history_a[0]["assigned_to"].is_string(),
        "A's period is closed: {history_a}"
    );
    let unassign = send(
        &app,
        Method::DELETE,
        &format!("/api/v1/devices/{}/assignment", w.device_a),
        Some(&w.admin.token),
        None,
    )
    .await;
    assert_eq!(unassign.status(), StatusCode::NO_CONTENT);
    assert_eq!(
        devices::patient_at(&app.db, w.device_a, chrono::Utc::now())
            .await
            .expect("query"),
        None
    );
    let again = send(
        &app,
        Method::DELETE,
        &format!("/api/v1/devices/{}/assignment", w.device_a),
        Some(&w.admin.token),
        None,
    )
    .await;
    assert_eq!(again.status(), StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn admins_read_the_audit_log_filtered_by_patient_actor_and_time() {
    let app = TestApp::spawn().await;
    let w = World::seed(&app).await;
    let start = chrono::Utc::now();
    send(
        &app,
        Method::GET,
        &format!("/api/v1/patients/{}", w.patient_a),
        Some(&w.clinician_a.token),
        None,
    )
    .await;
    send(
        &app,
        Method::GET,
        &format!("/api/v1/patients/{}", w.patient_a),
        Some(&w.clinician_b.token),
        None,
    )
    .await;
    send(
        &app,
        Method::GET,
        &format!("/api/v1/patients/{}", w.patient_b),
        Some(&w.clinician_b.token),
        None,
    )
    .await;
    let query = |q: String| {
        let app = &app;
        let token = w.admin.token.clone();
        async move {
            let rows = body_of(
                send(
                    app,
                    Method::GET,
                    &format!("/api/v1/audit?{q}"),
                    Some(&token),
                    None,
                )
                .await,
            )
            .await;
            rows.as_array().expect("rows").clone()
        }
    };
    let about_a = query(format!(
        "patient_id={}&from={}",
        w.patient_a,
        urlencode(&start.to_rfc3339())
    ))
    .await;
    assert_eq!(about_a.len(), 2, "{about_a:?}");
    assert!(
        about_a
            .iter()
            .any(|r| r["outcome"] == "denied" && r["actor_id"] == json!(w.clinician_b.user))
    );
    assert!(
        about_a
            .iter()
            .all(|r| r["resource"] == "GET /api/v1/patients/{id}" && r["request_id"].is_string())
    );
    let by_b = query(format!(
        "actor_id={}&from={}",
        w.clinician_b.user,
        urlencode(&start.to_rfc3339())
    ))
    .await;
    assert_eq!(by_b.len(), 2);
    let none = query(format!(
        "to={}",
        urlencode(&(start - chrono::Duration::hours(1)).to_rfc3339())
    ))
    .await;
    assert!(none.is_empty());
    let limited = query("limit=1".into()).await;
    assert_eq!(limited.len(), 1);
}

fn urlencode(s: &str) -> String {
    s.replace('+', "%2B").replace(':', "%3A")
}
