//! Video-visit signaling on `/ws` against the real server: the patient
//! waits until the clinician admits them, only the right people reach a
//! visit, and bad input (malformed, unknown, oversized, SDP garbage,
//! another participant's fields, a flood) gets its documented error code
//! while the other participant's socket carries on. The media side with
//! real browsers is in `web-client/e2e/video-visit.test.mjs`.

use bedside_test_support::{TestApp, World};
use reqwest::Method;
use serde_json::{Value, json};

use crate::live_feed::{Socket, connect, next, say};
use crate::support::send;

/// A socket past `hello` with `token`.
async fn hello(app: &TestApp, token: &str, role: &str) -> Socket {
    let mut socket = connect(app).await;
    say(
        &mut socket,
        json!({"type": "hello", "v": 1, "token": token}),
    )
    .await;
    let welcome = next(&mut socket, "welcome", |m| m["type"] == "welcome").await;
    assert_eq!(welcome["role"], role);
    socket
}

/// The next error, with its code and the message type it refused.
async fn error(socket: &mut Socket) -> (String, Value) {
    let error = next(socket, "an error", |m| m["type"] == "error").await;
    (
        error["code"].as_str().unwrap_or("").to_owned(),
        error["refused"].clone(),
    )
}

#[tokio::test]
async fn the_patient_waits_until_admitted_and_bad_input_gets_its_code() {
    let app = TestApp::spawn_with(|c| {
        c.visits.stun_urls = vec!["stun:stun.clinic.example:3478".into()];
        c.visits.turn_urls = vec!["turn:turn.clinic.example:3478?transport=udp".into()];
        c.visits.turn_secret = Some("north-wind".into());
    })
    .await;
    let w = World::seed(&app).await;
    let visit = w.appointment_a.0.to_string();

    // The clinician opens the room, and gets the ICE servers with a TURN
    // credential for their seat, valid for the configured four hours.
    let mut clinician = hello(&app, &w.clinician_a.token, "clinician").await;
    say(
        &mut clinician,
        json!({"type": "join", "appointment_id": visit}),
    )
    .await;
    let ice = next(&mut clinician, "ice servers", |m| {
        m["type"] == "ice_servers"
    })
    .await;
    let joined = next(&mut clinician, "joined", |m| m["type"] == "joined").await;
    assert_eq!(joined["state"], "admitted");
    assert_eq!(
        ice["ice_servers"][0]["urls"][0],
        "stun:stun.clinic.example:3478"
    );
    let turn = &ice["ice_servers"][1];
    let username = turn["username"].as_str().unwrap();
    let (expiry, participant) = username.split_once(':').unwrap();
    assert_eq!(participant, joined["participant_id"].as_str().unwrap());
    let left = expiry.parse::<i64>().unwrap() - chrono::Utc::now().timestamp();
    assert!((4 * 3600 - 60..=4 * 3600).contains(&left), "{username}");
    assert_eq!(
        turn["credential"].as_str().unwrap(),
        bedside_signaling::ice::turn_password("north-wind", username)
    );

    // The patient: no live feeds, no joining before consent, not another visit.
    let mut patient = hello(&app, &w.visit_a, "patient").await;
    say(
        &mut patient,
        json!({"type": "subscribe", "patients": [w.patient_a.0]}),
    )
    .await;
    assert_eq!(error(&mut patient).await.0, "forbidden");
    say(
        &mut patient,
        json!({"type": "join", "appointment_id": visit}),
    )
    .await;
    assert_eq!(
        error(&mut patient).await,
        ("consent_required".to_owned(), json!("join"))
    );
    say(
        &mut patient,
        json!({"type": "join", "appointment_id": w.appointment_b.0}),
    )
    .await;
    assert_eq!(error(&mut patient).await.0, "forbidden");
    let consent = send(
        &app,
        Method::POST,
        "/api/v1/visit/consent",
        Some(&w.visit_a),
        Some(&json!({"consent_version": "2026-01"})),
    )
    .await;
    assert_eq!(consent.status(), 201);
    say(
        &mut patient,
        json!({"type": "join", "appointment_id": visit}),
    )
    .await;
    let joined = next(&mut patient, "joined", |m| m["type"] == "joined").await;
    assert_eq!(joined["state"], "waiting");
    let patient_id = joined["participant_id"].clone();

    // Waiting: no media, no chat; the clinician sees them in the lobby.
    say(&mut patient, json!({"type": "offer", "sdp": "v=0"})).await;
    assert_eq!(
        error(&mut patient).await,
        ("not_admitted".to_owned(), json!("offer"))
    );
    say(&mut patient, json!({"type": "audio_only", "enabled": true})).await;
    assert_eq!(
        error(&mut patient).await,
        ("not_admitted".to_owned(), json!("audio_only"))
    );
    let lobby = next(&mut clinician, "the lobby with the patient", |m| {
        m["type"] == "lobby" && m["waiting"].as_array().is_some_and(|w| !w.is_empty())
    })
    .await;
    assert_eq!(lobby["waiting"][0]["participant_id"], patient_id);
    // Only the clinician admits; a clinician of another visit is refused.
    say(
        &mut patient,
        json!({"type": "admit", "participant_id": patient_id}),
    )
    .await;
    assert_eq!(error(&mut patient).await.0, "clinician_only");
    let mut stranger = hello(&app, &w.clinician_b.token, "clinician").await;
    say(
        &mut stranger,
        json!({"type": "join", "appointment_id": visit}),
    )
    .await;
    assert_eq!(error(&mut stranger).await.0, "forbidden");

    say(
        &mut clinician,
        json!({"type": "admit", "participant_id": patient_id}),
    )
    .await;
    let admitted = next(&mut patient, "admitted", |m| m["type"] == "admitted").await;
    assert_eq!(admitted["participants"][0]["role"], "clinician");
    next(&mut clinician, "the patient joining", |m| {
        m["type"] == "participant_joined" && m["participant"]["participant_id"] == patient_id
    })
    .await;

    // Bad input from the admitted patient, each with its code.
    say(
        &mut patient,
        json!({"type": "offer", "sdp": "not an sdp at all"}),
    )
    .await;
    assert_eq!(
        error(&mut patient).await,
        ("sdp_rejected".to_owned(), json!("offer"))
    );
    say(&mut patient, json!({"type": "answer", "sdp": "v=0"})).await;
    assert_eq!(error(&mut patient).await.0, "not_connected");
    // Audio only needs a media connection first; a preferred layer needs a
    // size the server accepts and someone else in this call.
    say(&mut patient, json!({"type": "audio_only", "enabled": true})).await;
    assert_eq!(
        error(&mut patient).await,
        ("not_connected".to_owned(), json!("audio_only"))
    );
    let clinician_id = admitted["participants"][0]["participant_id"].clone();
    for bad_height in [json!(0), json!(4321), json!(70_000), json!(1u64 << 40)] {
        say(
            &mut patient,
            json!({"type": "preferred_layer", "participant_id": clinician_id, "max_height": bad_height}),
        )
        .await;
        assert_eq!(
            error(&mut patient).await,
            ("invalid_layer".to_owned(), json!("preferred_layer")),
            "{bad_height}"
        );
    }
    for not_in_call in [patient_id.clone(), json!(uuid::Uuid::new_v4())] {
        say(
            &mut patient,
            json!({"type": "preferred_layer", "participant_id": not_in_call, "max_height": 360}),
        )
        .await;
        assert_eq!(error(&mut patient).await.0, "no_such_participant");
    }
    say(
        &mut patient,
        json!({"type": "candidate", "candidate": {"candidate": "candidate:1 1 udp 1 10.0.0.1 9 typ host", "sdpMid": "0"}, "participant_id": lobby["waiting"][0]["participant_id"]}),
    )
    .await;
    assert_eq!(error(&mut patient).await.0, "malformed_message");
    for garbage in [
        "{".to_owned(),
        json!({"type": "teleport"}).to_string(),
        json!({"type": "chat"}).to_string(),
    ] {
        patient.send_text(&garbage).await;
        assert_eq!(
            error(&mut patient).await.0,
            "malformed_message",
            "{garbage}"
        );
    }
    patient
        .send_text(&json!({"type": "chat", "text": "x".repeat(70 * 1024)}).to_string())
        .await;
    assert_eq!(error(&mut patient).await.0, "message_too_large");
    say(&mut patient, json!({"type": "chat", "text": ""})).await;
    assert_eq!(error(&mut patient).await.0, "invalid_chat");

    // A flood is refused, and the clinician's socket is unaffected.
    for _ in 0..150 {
        say(&mut patient, json!({"type": "ping"})).await;
    }
    assert_eq!(error(&mut patient).await.0, "rate_limited");
    say(
        &mut clinician,
        json!({"type": "chat", "text": "still here"}),
    )
    .await;
    let chat = next(&mut clinician, "the clinician's chat", |m| {
        m["type"] == "chat"
    })
    .await;
    assert_eq!(chat["text"], "still here");

    // Ending the visit tells the patient and finishes the appointment.
    say(&mut clinician, json!({"type": "end_visit"})).await;
    next(&mut patient, "the end", |m| m["type"] == "visit_ended").await;
    let appointment = send(
        &app,
        Method::GET,
        &format!("/api/v1/appointments/{visit}"),
        Some(&w.clinician_a.token),
        None,
    )
    .await;
    let appointment: Value = appointment.json().await.unwrap();
    assert_eq!(appointment["status"], "finished");
    let audited: Vec<String> =
        sqlx::query_scalar("SELECT action FROM audit_log WHERE action LIKE 'visit.%' ORDER BY id")
            .fetch_all(&app.db)
            .await
            .unwrap();
    for action in ["visit.join", "visit.admit", "visit.end"] {
        assert!(
            audited.iter().any(|a| a == action),
            "{action} in {audited:?}"
        );
    }
}

/// Sending raw text (for what `say` cannot express: invalid JSON).
trait SendText {
    async fn send_text(&mut self, text: &str);
}

impl SendText for Socket {
    async fn send_text(&mut self, text: &str) {
        use futures::SinkExt;
        self.send(tokio_tungstenite::tungstenite::Message::Text(text.into()))
            .await
            .expect("send");
    }
}

#[tokio::test]
async fn a_guest_link_works_once_and_revoking_it_takes_the_guest_out() {
    let app = TestApp::spawn().await;
    let w = World::seed(&app).await;
    let visit = w.appointment_a.0.to_string();
    let links = format!("/api/v1/appointments/{visit}/guest-links");

    // Only the visit's clinician (or an admin) invites.
    let refused = send(
        &app,
        Method::POST,
        &links,
        Some(&w.clinician_b.token),
        Some(&json!({"label": "Interpreter"})),
    )
    .await;
    assert_eq!(refused.status(), 403);
    let issued = send(
        &app,
        Method::POST,
        &links,
        Some(&w.clinician_a.token),
        Some(&json!({"label": "Interpreter"})),
    )
    .await;
    assert_eq!(issued.status(), 201);
    let issued: Value = issued.json().await.unwrap();
    let url = issued["join_url"].as_str().unwrap();
    let token = url.split("#t=").nth(1).unwrap().to_owned();
    let link_id = issued["link"]["id"].as_str().unwrap().to_owned();

    let redeem = |name: &'static str| {
        let token = token.clone();
        let app = &app;
        async move {
            send(
                app,
                Method::POST,
                "/api/v1/auth/guest",
                None,
                Some(&json!({"token": token, "name": name})),
            )
            .await
        }
    };
    let first = redeem("Ana").await;
    assert_eq!(first.status(), 200);
    let session: Value = first.json().await.unwrap();
    let second = redeem("Someone else").await;
    assert_eq!(second.status(), 409);
    assert_eq!(
        second.json::<Value>().await.unwrap()["code"],
        "guest_link_used"
    );
    let guest_token = session["access_token"].as_str().unwrap().to_owned();

    // The guest reaches nothing but the call: no records, no other visit.
    let records = send(
        &app,
        Method::GET,
        &format!("/api/v1/patients/{}", w.patient_a.0),
        Some(&guest_token),
        None,
    )
    .await;
    assert_eq!(records.status(), 403);
    let mut clinician = hello(&app, &w.clinician_a.token, "clinician").await;
    say(
        &mut clinician,
        json!({"type": "join", "appointment_id": visit}),
    )
    .await;
    next(&mut clinician, "joined", |m| m["type"] == "joined").await;
    let mut guest = hello(&app, &guest_token, "guest").await;
    say(
        &mut guest,
        json!({"type": "join", "appointment_id": w.appointment_b.0}),
    )
    .await;
    assert_eq!(error(&mut guest).await.0, "forbidden");
    say(&mut guest, json!({"type": "join", "appointment_id": visit})).await;
    let joined = next(&mut guest, "joined", |m| m["type"] == "joined").await;
    assert_eq!(
        (joined["state"].as_str(), joined["role"].as_str()),
        (Some("waiting"), Some("guest"))
    );
    let lobby = next(&mut clinician, "the guest waiting", |m| {
        m["type"] == "lobby" && m["waiting"].as_array().is_some_and(|w| !w.is_empty())
    })
    .await;
    assert_eq!(lobby["waiting"][0]["name"], "Ana");
    say(
        &mut clinician,
        json!({"type": "admit", "participant_id": joined["participant_id"]}),
    )
    .await;
    next(&mut guest, "admitted", |m| m["type"] == "admitted").await;

    // Revoking the link takes the guest out and ends their session.
    let revoked = send(
        &app,
        Method::DELETE,
        &format!("{links}/{link_id}"),
        Some(&w.clinician_a.token),
        None,
    )
    .await;
    assert_eq!(revoked.status(), 200);
    next(&mut guest, "removed", |m| m["type"] == "removed").await;
    // The guest's socket, still open, cannot take a seat again.
    say(&mut guest, json!({"type": "join", "appointment_id": visit})).await;
    assert_eq!(error(&mut guest).await.0, "forbidden");
    next(&mut clinician, "the guest leaving", |m| {
        m["type"] == "participant_left" && m["participant_id"] == joined["participant_id"]
    })
    .await;
    let mut again = connect(&app).await;
    say(
        &mut again,
        json!({"type": "hello", "v": 1, "token": guest_token}),
    )
    .await;
    assert_eq!(error(&mut again).await.0, "unauthenticated");
}
