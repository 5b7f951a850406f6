//! Sign-in as staff and patients use it: passwords, throttling, TOTP with
//! recovery codes, refresh rotation with reuse detection, join links.

use bedside_records::appointments::{self, NewAppointment, VisitLength};
use bedside_records::domain::{AppointmentKind, BoundedText};
use bedside_signaling::auth::totp;
use bedside_test_support::world::{PASSWORD, staff};
use bedside_test_support::{TestApp, World};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use crate::support::{json as body_of, send};

async fn login(app: &TestApp, email: &str, password: &str) -> reqwest::Response {
    send(
        app,
        Method::POST,
        "/api/v1/auth/login",
        None,
        Some(&json!({"email": email, "password": password})),
    )
    .await
}

#[tokio::test]
async fn staff_sign_in_with_a_password_and_get_short_lived_tokens() {
    let app = TestApp::spawn().await;
    let w = World::seed(&app).await;
    let response = login(&app, &w.clinician_a.email.to_uppercase(), PASSWORD).await;
    assert_eq!(response.status(), StatusCode::OK);
    let tokens = body_of(response).await;
    assert_eq!(tokens["token_type"], "Bearer");
    assert!(
        tokens["expires_in"]
            .as_u64()
            .is_some_and(|s| s > 0 && s <= 900)
    );
    let me = send(
        &app,
        Method::GET,
        "/api/v1/me",
        tokens["access_token"].as_str(),
        None,
    )
    .await;
    assert_eq!(body_of(me).await["email"], json!(w.clinician_a.email));

    for (email, password) in [
        (w.clinician_a.email.as_str(), "wrong password!"),
        ("nobody@test.example", PASSWORD),
    ] {
        let response = login(&app, email, password).await;
        assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
        assert_eq!(
            body_of(response).await["code"],
            "invalid_credentials",
            "same answer whether or not the account exists"
        );
    }
}

#[tokio::test]
async fn failed_logins_are_throttled_per_account_and_per_client_address() {
    let app = TestApp::spawn_with(|c| {
        c.auth.login_max_failures_per_account = 3;
        c.auth.login_max_failures_per_client = 6;
    })
    .await;
    let w = World::seed(&app).await;
    for _ in 0..3 {
        assert_eq!(
            login(&app, &w.admin.email, "wrong password!")
                .await
                .status(),
            StatusCode::UNAUTHORIZED
        );
    }
    // Now even the right password is refused for this account...
    let throttled = login(&app, &w.admin.email, PASSWORD).await;
    assert_eq!(throttled.status(), StatusCode::TOO_MANY_REQUESTS);
    assert!(throttled.headers().contains_key("retry-after"));
    assert_eq!(body_of(throttled).await["code"], "too_many_attempts");
    // ...while another account still signs in from this address.
    assert_eq!(
        login(&app, &w.clinician_b.email, PASSWORD).await.status(),
        StatusCode::OK
    );
    // Spraying other accounts from one address hits the per-address limit:
    // every attempt counts, the throttled one above included (4 so far).
    for i in 0..2 {
        assert_eq!(
            login(&app, &format!("spray{i}@test.example"), "x")
                .await
                .status(),
            StatusCode::UNAUTHORIZED
        );
    }
    assert_eq!(
        login(&app, &w.clinician_a.email, PASSWORD).await.status(),
        StatusCode::TOO_MANY_REQUESTS
    );
}

#[tokio::test]
async fn totp_enrolment_then_sign_in_with_a_code_or_a_single_use_recovery_code() {
    let app = TestApp::spawn().await;
    let clinician = staff(
        &app,
        bedside_records::domain::StaffRole::Clinician,
        "totp@test.example",
        "Dr. T",
    )
    .await;
    let token = Some(clinician.token.as_str());
    let enrolment =
        body_of(send(&app, Method::POST, "/api/v1/auth/totp/enroll", token, None).await).await;
    let secret = enrolment["secret"].as_str().expect("secret").to_owned();
    assert!(
        enrolment["otpauth_uri"]
            .as_str()
            .expect("uri")
            .starts_with("otpauth://totp/")
    );
    assert!(enrolment["qr_svg"].as_str().expect("svg").contains("<svg"));
    let wrong = send(
        &app,
        Method::POST,
        "/api/v1/auth/totp/confirm",
        token,
        Some(&json!({"code": "000000"})),
    )
    .await;
    assert_eq!(wrong.status(), StatusCode::UNPROCESSABLE_ENTITY);
    let code = totp::current_code(&secret).expect("code");
    let confirmed = send(
        &app,
        Method::POST,
        "/api/v1/auth/totp/confirm",
        token,
        Some(&json!({"code": code})),
    )
    .await;
    assert_eq!(confirmed.status(), StatusCode::OK);
    let recovery: Vec<String> =
        serde_json::from_value(body_of(confirmed).await["recovery_codes"].clone()).expect("codes");
    assert_eq!(recovery.len(), 10);

    // The password alone no longer signs in: it yields a challenge.
    let challenge = body_of(login(&app, "totp@test.example", PASSWORD).await).await;
    assert_eq!(challenge["totp_required"], true);
    assert!(challenge.get("access_token").is_none());
    let challenge_token = challenge["challenge_token"]
        .as_str()
        .expect("challenge")
        .to_owned();
    let step = |code: String| {
        let body = json!({"challenge_token": challenge_token, "code": code});
        let app = &app;
        async move {
            send(
                app,
                Method::POST,
                "/api/v1/auth/login/totp",
                None,
                Some(&body),
            )
            .await
        }
    };
    assert_eq!(
        step("123456".into()).await.status(),
        StatusCode::UNAUTHORIZED
    );
    // The enrolment used this step's code; a code counts once, so sign in
    // with the next step's (accepted within one step of clock skew).
    let replayed = step(code.clone()).await;
    assert_eq!(
        replayed.status(),
        StatusCode::UNAUTHORIZED,
        "a used code is refused"
    );
    let next_step = (chrono::Utc::now().timestamp() as u64 / 30 + 1) * 30;
    let next = totp::code_at(&secret, next_step).expect("code");
    let ok = step(next.clone()).await;
    assert_eq!(ok.status(), StatusCode::OK);
    assert!(body_of(ok).await["access_token"].is_string());
    assert_eq!(
        step(next).await.status(),
        StatusCode::UNAUTHORIZED,
        "and so is its replay"
    );
    // A recovery code works once.
    assert_eq!(step(recovery[0].clone()).await.status(), StatusCode::OK);
    assert_eq!(
        step(recovery[0].clone()).await.status(),
        StatusCode::UNAUTHORIZED
    );
}

#[tokio::test]
async fn refresh_tokens_rotate_and_reuse_revokes_the_whole_session() {
    let app = TestApp::spawn().await;
    let w = World::seed(&app).await;
    let first = body_of(login(&app, &w.admin.email, PASSWORD).await).await;
    let refresh = |token: &Value| {
        let body = json!({"refresh_token": token});
        let app = &app;
        async move { send(app, Method::POST, "/api/v1/auth/refresh", None, Some(&body)).await }
    };
    let second = refresh(&first["refresh_token"]).await;
    assert_eq!(second.status(), StatusCode::OK);
    let second = body_of(second).await;
    assert_ne!(second["refresh_token"], first["refresh_token"]);
    let access = second["access_token"].as_str().expect("access").to_owned();
    assert_eq!(
        send(&app, Method::GET, "/api/v1/me", Some(&access), None)
            .await
            .status(),
        StatusCode::OK
    );

    // Someone replays the first (already rotated) token: the family dies.
    let replay = refresh(&first["refresh_token"]).await;
    assert_eq!(replay.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(body_of(replay).await["code"], "refresh_token_reused");
    assert_eq!(
        refresh(&second["refresh_token"]).await.status(),
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(
        send(&app, Method::GET, "/api/v1/me", Some(&access), None)
            .await
            .status(),
        StatusCode::UNAUTHORIZED
    );

    // Logout ends a session the same way.
    let third = body_of(login(&app, &w.admin.email, PASSWORD).await).await;
    let out = send(
        &app,
        Method::POST,
        "/api/v1/auth/logout",
        None,
        Some(&json!({"refresh_token": third["refresh_token"]})),
    )
    .await;
    assert_eq!(out.status(), StatusCode::NO_CONTENT);
    assert_eq!(
        refresh(&third["refresh_token"]).await.status(),
        StatusCode::UNAUTHORIZED
    );
}

async fn video_visit_at(
    app: &TestApp,
    w: &World,
    minutes_from_now: i64,
) -> (String, bedside_records::ids::AppointmentId) {
    let appointment = appointments::book(
        &app.db,
        &NewAppointment {
            patient_id: w.patient_a,
            practitioner_id: w.clinician_a.practitioner.expect("clinician"),
            starts_at: chrono::Utc::now() + chrono::Duration::minutes(minutes_from_now),
            length: VisitLength::parse(30).expect("length"),
            kind: AppointmentKind::Video,
            reason: BoundedText::parse("reason", "check", 100).expect("reason"),
        },
    )
    .await
    .expect("book");
    (
        bedside_records::join_links::issue(&app.db, appointment.id, app.state.link_secret())
            .await
            .expect("link"),
        appointment.id,
    )
}

#[tokio::test]
async fn a_join_link_works_only_inside_its_window_and_only_for_its_visit() {
    let app = TestApp::spawn().await;
    let w = World::seed(&app).await;
    let join = |token: String| {
        let app = &app;
        async move {
            send(
                app,
                Method::POST,
                "/api/v1/auth/join",
                None,
                Some(&json!({"token": token})),
            )
            .await
        }
    };
    // Opens 15 minutes before the start (the default).
    let (early, _) = video_visit_at(&app, &w, 120).await;
    let response = join(early).await;
    assert_eq!(response.status(), StatusCode::FORBIDDEN);
    let body = body_of(response).await;
    assert_eq!(body["code"], "join_link_early");
    assert!(body["valid_from"].is_string());
    // Closed after the end.
    let (late, _) = video_visit_at(&app, &w, -45).await;
    assert_eq!(body_of(join(late).await).await["code"], "join_link_expired");
    assert_eq!(
        body_of(join("made-up".into()).await).await["code"],
        "invalid_join_link"
    );

    // Inside the window: a session for that one visit.
    let response = join(w.join_a.clone()).await;
    assert_eq!(response.status(), StatusCode::OK);
    let session = body_of(response).await;
    assert_eq!(session["appointment_id"], json!(w.appointment_a));
    let visit_token = session["access_token"].as_str().expect("token").to_owned();
    let visit =
        body_of(send(&app, Method::GET, "/api/v1/visit", Some(&visit_token), None).await).await;
    assert_eq!(visit["appointment"]["id"], json!(w.appointment_a));
    assert_eq!(visit["consent_required"], true);
    // Consent, then it is not asked again and shows on the patient's record.
    let consent = send(
        &app,
        Method::POST,
        "/api/v1/visit/consent",
        Some(&visit_token),
        Some(&json!({"consent_version": visit["consent_version"]})),
    )
    .await;
    assert_eq!(consent.status(), StatusCode::CREATED);
    let visit =
        body_of(send(&app, Method::GET, "/api/v1/visit", Some(&visit_token), None).await).await;
    assert_eq!(visit["consent_required"], false);
    let consents = body_of(
        send(
            &app,
            Method::GET,
            &format!("/api/v1/patients/{}/consents", w.patient_a),
            Some(&w.clinician_a.token),
            None,
        )
        .await,
    )
    .await;
    assert_eq!(consents[0]["recorded_by_role"], "patient");
    // The session reaches nothing else: not another visit, not the patient record.
    for path in [
        format!("/api/v1/appointments/{}", w.appointment_b),
        format!("/api/v1/patients/{}", w.patient_a),
        "/api/v1/patients".to_owned(),
    ] {
        assert_eq!(
            send(&app, Method::GET, &path, Some(&visit_token), None)
                .await
                .status(),
            StatusCode::FORBIDDEN,
            "{path}"
        );
    }
    // A cancelled visit's link is closed.
    let cancel = send(
        &app,
        Method::POST,
        &format!("/api/v1/appointments/{}/transitions", w.appointment_b),
        Some(&w.clinician_b.token),
        Some(&json!({"to": "cancelled"})),
    )
    .await;
    assert_eq!(cancel.status(), StatusCode::OK);
    assert_eq!(
        body_of(join(w.join_b.clone()).await).await["code"],
        "join_link_expired"
    );
}

#[tokio::test]
async fn admins_deactivate_accounts_and_reset_two_step_sign_in() {
    let app = TestApp::spawn().await;
    let w = World::seed(&app).await;
    let path = format!("/api/v1/users/{}", w.clinician_a.user);
    let me = |token: String| {
        let app = &app;
        async move {
            send(app, Method::GET, "/api/v1/me", Some(&token), None)
                .await
                .status()
        }
    };
    assert_eq!(me(w.clinician_a.token.clone()).await, StatusCode::OK);
    let off = send(
        &app,
        Method::PATCH,
        &path,
        Some(&w.admin.token),
        Some(&json!({"active": false})),
    )
    .await;
    assert_eq!(off.status(), StatusCode::OK);
    assert_eq!(body_of(off).await["active"], false);
    assert_eq!(
        me(w.clinician_a.token.clone()).await,
        StatusCode::UNAUTHORIZED,
        "sessions end at once"
    );
    assert_eq!(
        login(&app, &w.clinician_a.email, PASSWORD).await.status(),
        StatusCode::UNAUTHORIZED
    );
    let on = send(
        &app,
        Method::PATCH,
        &path,
        Some(&w.admin.token),
        Some(&json!({"active": true})),
    )
    .await;
    assert_eq!(on.status(), StatusCode::OK);
    assert_eq!(
        login(&app, &w.clinician_a.email, PASSWORD).await.status(),
        StatusCode::OK
    );

    // A lost phone: the admin resets TOTP and the password alone signs in again.
    let enrol = body_of(
        send(
            &app,
            Method::POST,
            "/api/v1/auth/totp/enroll",
            Some(&w.clinician_b.token),
            None,
        )
        .await,
    )
    .await;
    let code = totp::current_code(enrol["secret"].as_str().expect("secret")).expect("code");
    let confirm = send(
        &app,
        Method::POST,
        "/api/v1/auth/totp/confirm",
        Some(&w.clinician_b.token),
        Some(&json!({"code": code})),
    )
    .await;
    assert_eq!(confirm.status(), StatusCode::OK);
    assert_eq!(
        body_of(login(&app, &w.clinician_b.email, PASSWORD).await).await["totp_required"],
        true
    );
    let reset = send(
        &app,
        Method::POST,
        &format!("/api/v1/users/{}/totp/reset", w.clinician_b.user),
        Some(&w.admin.token),
        None,
    )
    .await;
    assert_eq!(reset.status(), StatusCode::NO_CONTENT);
    assert!(
        body_of(login(&app, &w.clinician_b.email, PASSWORD).await).await["access_token"]
            .is_string()
    );
}

#[tokio::test]
async fn changing_a_password_ends_the_other_sessions() {
    let app = TestApp::spawn().await;
    let w = World::seed(&app).await;
    let other = body_of(login(&app, &w.clinician_a.email, PASSWORD).await).await;
    let other_token = other["access_token"].as_str().expect("token").to_owned();
    let change = send(
        &app,
        Method::POST,
        "/api/v1/me/password",
        Some(&w.clinician_a.token),
        Some(&json!({"current_password": PASSWORD, "new_password": "a brand new long password"})),
    )
    .await;
    assert_eq!(change.status(), StatusCode::NO_CONTENT);
    assert_eq!(
        send(
            &app,
            Method::GET,
            "/api/v1/me",
            Some(&w.clinician_a.token),
            None
        )
        .await
        .status(),
        StatusCode::OK,
        "this session stays"
    );
    assert_eq!(
        send(&app, Method::GET, "/api/v1/me", Some(&other_token), None)
            .await
            .status(),
        StatusCode::UNAUTHORIZED,
        "others end"
    );
    assert_eq!(
        login(&app, &w.clinician_a.email, PASSWORD).await.status(),
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(
        login(&app, &w.clinician_a.email, "a brand new long password")
            .await
            .status(),
        StatusCode::OK
    );
}

#[tokio::test]
async fn a_device_provisioned_through_the_api_is_written_to_the_broker_files() {
    let app = TestApp::spawn().await;
    let w = World::seed(&app).await;
    let response = send(&app, Method::POST, "/api/v1/devices", Some(&w.admin.token),
        Some(&json!({"serial": "BP-API-1", "kind": "blood_pressure_monitor", "patient_id": w.patient_a}))).await;
    assert_eq!(response.status(), StatusCode::CREATED);
    let body = body_of(response).await;
    // Files written, but no running broker was reloaded (none is configured here).
    assert_eq!(body["broker_updated"], false);
    let username = body["mqtt_username"].as_str().expect("username");
    let passwd = std::fs::read_to_string(app.config.data_dir.join("mosquitto/passwd"))
        .expect("password file");
    assert!(
        passwd
            .lines()
            .any(|l| l.starts_with(&format!("{username}:$7$"))),
        "{passwd}"
    );
    let acl = std::fs::read_to_string(app.config.data_dir.join("mosquitto/acl")).expect("acl file");
    assert!(acl.contains(&format!("topic write bedside/v1/devices/{username}/vitals")));
    assert!(bedside_records::mosquitto::verify_password(
        body["mqtt_password"].as_str().expect("password"),
        passwd
            .lines()
            .find(|l| l.starts_with(username))
            .expect("line")
            .split_once(':')
            .expect("colon")
            .1,
    ));
}

#[tokio::test]
async fn joining_marks_the_patient_arrived_and_a_finished_visit_ends_the_session() {
    let app = TestApp::spawn().await;
    let w = World::seed(&app).await;
    let session = body_of(
        send(
            &app,
            Method::POST,
            "/api/v1/auth/join",
            None,
            Some(&json!({"token": w.join_a})),
        )
        .await,
    )
    .await;
    let token = session["access_token"].as_str().expect("token").to_owned();
    assert!(session["expires_in"].as_u64().is_some_and(|s| s <= 900));
    let visit = format!("/api/v1/appointments/{}", w.appointment_a);
    let appointment = body_of(send(&app, Method::GET, &visit, Some(&token), None).await).await;
    assert_eq!(
        appointment["status"], "arrived",
        "joining is arriving: the no-show sweep leaves a waiting patient alone"
    );
    for to in ["in_progress", "finished"] {
        let r = send(
            &app,
            Method::POST,
            &format!("{visit}/transitions"),
            Some(&w.clinician_a.token),
            Some(&json!({"to": to})),
        )
        .await;
        assert_eq!(r.status(), StatusCode::OK);
    }
    assert_eq!(
        send(&app, Method::GET, &visit, Some(&token), None)
            .await
            .status(),
        StatusCode::UNAUTHORIZED,
        "the visit session ended with the visit"
    );
    let again = send(
        &app,
        Method::POST,
        "/api/v1/auth/join",
        None,
        Some(&json!({"token": w.join_a})),
    )
    .await;
    assert_eq!(again.status(), StatusCode::FORBIDDEN);
    assert_eq!(
        body_of(again).await["code"],
        "join_link_expired",
        "the patient is told the visit is over"
    );
}
