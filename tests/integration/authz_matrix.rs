//! The authorization matrix: every route of the OpenAPI document, probed by
//! every kind of caller and by every kind of bad token. Each probe asserts
//! the status and, for a refusal, that exactly one denied audit row was
//! written for that request; allowed probes of health data must be audited
//! as allowed too.
//!
//! A route added to the API without a row here fails
//! `every_route_has_a_row`, so no route ships without a declared rule.

use std::collections::BTreeSet;
use std::time::Duration;

use base64::Engine as _;
use bedside_signaling::auth::tokens::{TokenKeys, TokenKind};
use bedside_test_support::{TestApp, World};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use crate::support::{audit_rows, request_id, send};

/// Who calls.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Who {
    Admin,
    /// Clinician A: cares for patient A, clinician of appointment A.
    ClinicianA,
    /// Clinician B: no relation to patient A.
    ClinicianB,
    /// Patient A's visit session.
    PatientA,
    /// Patient B's visit session.
    PatientB,
    /// A guest of appointment A (the call's signaling only: no REST route).
    GuestA,
}

const EVERYONE: [Who; 6] = [
    Who::Admin,
    Who::ClinicianA,
    Who::ClinicianB,
    Who::PatientA,
    Who::PatientB,
    Who::GuestA,
];

/// One row of the matrix.
struct Route {
    method: Method,
    /// The OpenAPI path template.
    template: &'static str,
    /// Who is let through.
    allowed: &'static [Who],
    /// Whether the route touches health data (allowed calls must be audited).
    health_data: bool,
}

const fn route(
    method: Method,
    template: &'static str,
    allowed: &'static [Who],
    health_data: bool,
) -> Route {
    Route {
        method,
        template,
        allowed,
        health_data,
    }
}

use Who::*;

fn matrix() -> Vec<Route> {
    let staff: &'static [Who] = &[Admin, ClinicianA, ClinicianB];
    let admin: &'static [Who] = &[Admin];
    let clinicians: &'static [Who] = &[ClinicianA, ClinicianB];
    let record_a: &'static [Who] = &[Admin, ClinicianA];
    let clinical_a: &'static [Who] = &[ClinicianA];
    let visits: &'static [Who] = &[PatientA, PatientB];
    vec![
        route(Method::GET, "/api/v1/me", staff, false),
        route(Method::POST, "/api/v1/auth/fhir-token", staff, false),
        route(Method::POST, "/api/v1/me/calendar-feed", clinicians, false),
        route(
            Method::DELETE,
            "/api/v1/me/calendar-feed",
            clinicians,
            false,
        ),
        route(Method::POST, "/api/v1/auth/totp/enroll", staff, false),
        route(Method::POST, "/api/v1/auth/totp/confirm", staff, false),
        route(Method::GET, "/api/v1/visit", visits, true),
        route(Method::POST, "/api/v1/visit/consent", visits, true),
        route(Method::GET, "/api/v1/users", admin, false),
        route(Method::PATCH, "/api/v1/users/{id}", admin, false),
        route(Method::POST, "/api/v1/users/{id}/totp/reset", admin, false),
        route(Method::POST, "/api/v1/me/password", staff, false),
        route(Method::POST, "/api/v1/users", admin, false),
        route(Method::GET, "/api/v1/practitioners", staff, false),
        route(Method::GET, "/api/v1/patients", staff, true),
        route(Method::POST, "/api/v1/patients", admin, true),
        route(Method::GET, "/api/v1/patients/{id}", record_a, true),
        route(Method::PUT, "/api/v1/patients/{id}", admin, true),
        route(Method::GET, "/api/v1/patients/{id}/devices", record_a, true),
        route(Method::GET, "/api/v1/patients/{id}/export", admin, true),
        route(Method::POST, "/api/v1/patients/{id}/erasure", admin, true),
        route(Method::GET, "/api/v1/patients/{id}/erasure", admin, true),
        route(
            Method::GET,
            "/api/v1/patients/{id}/appointments",
            record_a,
            true,
        ),
        route(Method::GET, "/api/v1/patients/{id}/notes", clinical_a, true),
        route(
            Method::GET,
            "/api/v1/patients/{id}/consents",
            record_a,
            true,
        ),
        route(
            Method::POST,
            "/api/v1/patients/{id}/consents",
            record_a,
            true,
        ),
        route(
            Method::GET,
            "/api/v1/patients/{id}/care-team",
            record_a,
            true,
        ),
        route(Method::POST, "/api/v1/patients/{id}/care-team", admin, true),
        route(
            Method::DELETE,
            "/api/v1/patients/{id}/care-team/{practitioner_id}",
            admin,
            true,
        ),
        route(Method::GET, "/api/v1/devices", admin, true),
        route(Method::POST, "/api/v1/devices", admin, true),
        route(Method::POST, "/api/v1/devices/{id}/assignment", admin, true),
        route(
            Method::DELETE,
            "/api/v1/devices/{id}/assignment",
            admin,
            true,
        ),
        route(Method::GET, "/api/v1/appointments", record_a, true),
        route(Method::POST, "/api/v1/appointments", record_a, true),
        route(
            Method::GET,
            "/api/v1/appointments/{id}",
            &[Admin, ClinicianA, PatientA],
            true,
        ),
        route(
            Method::POST,
            "/api/v1/appointments/{id}/transitions",
            record_a,
            true,
        ),
        route(
            Method::POST,
            "/api/v1/appointments/{id}/join-link",
            record_a,
            true,
        ),
        route(
            Method::POST,
            "/api/v1/appointments/{id}/guest-links",
            record_a,
            true,
        ),
        route(
            Method::GET,
            "/api/v1/appointments/{id}/guest-links",
            record_a,
            true,
        ),
        route(
            Method::DELETE,
            "/api/v1/appointments/{id}/guest-links/{link_id}",
            record_a,
            true,
        ),
        route(
            Method::GET,
            "/api/v1/appointments/{id}/notes",
            clinical_a,
            true,
        ),
        route(
            Method::POST,
            "/api/v1/appointments/{id}/notes",
            clinical_a,
            true,
        ),
        route(Method::PUT, "/api/v1/notes/{id}", clinical_a, true),
        route(Method::POST, "/api/v1/notes/{id}/sign", clinical_a, true),
        route(
            Method::POST,
            "/api/v1/notes/{id}/amendments",
            clinical_a,
            true,
        ),
        route(Method::GET, "/api/v1/audit", admin, false),
        route(
            Method::GET,
            "/api/v1/patients/{id}/vitals/latest",
            record_a,
            true,
        ),
        route(
            Method::GET,
            "/api/v1/patients/{id}/vitals/{metric}",
            record_a,
            true,
        ),
        route(Method::GET, "/api/v1/patients/{id}/news2", record_a, true),
        route(
            Method::GET,
            "/api/v1/patients/{id}/news2/settings",
            record_a,
            true,
        ),
        route(
            Method::PUT,
            "/api/v1/patients/{id}/news2/settings",
            clinical_a,
            true,
        ),
        route(Method::GET, "/api/v1/patients/{id}/alerts", record_a, true),
        route(
            Method::GET,
            "/api/v1/patients/{id}/devices/status",
            record_a,
            true,
        ),
        route(
            Method::GET,
            "/api/v1/patients/{id}/thresholds",
            record_a,
            true,
        ),
        route(
            Method::PUT,
            "/api/v1/patients/{id}/thresholds/{metric}",
            clinical_a,
            true,
        ),
        route(
            Method::POST,
            "/api/v1/alerts/{id}/acknowledge",
            record_a,
            true,
        ),
    ]
}

/// Routes anyone may call (they authenticate by their body, or serve public facts).
const PUBLIC: [(&str, &str); 11] = [
    ("GET", "/healthz"),
    ("GET", "/readyz"),
    ("GET", "/api/v1/clinic"),
    ("POST", "/api/v1/auth/login"),
    ("POST", "/api/v1/auth/login/totp"),
    ("POST", "/api/v1/auth/refresh"),
    ("POST", "/api/v1/auth/logout"),
    ("POST", "/api/v1/auth/join"),
    ("POST", "/api/v1/auth/guest"),
    ("GET", "/api/v1/auth/oidc/login"),
    ("POST", "/api/v1/auth/oidc/exchange"),
];

/// The concrete path and body of a probe of `route` in `world`.
fn probe(route: &Route, w: &World) -> (String, Option<Value>) {
    let pa = w.patient_a;
    let appt = w.appointment_a;
    let path = match route.template {
        "/api/v1/patients/{id}/care-team/{practitioner_id}" => {
            format!(
                "/api/v1/patients/{pa}/care-team/{}",
                w.clinician_a.practitioner.expect("clinician")
            )
        }
        "/api/v1/appointments" if route.method == Method::GET => {
            format!(
                "/api/v1/appointments?practitioner_id={}",
                w.clinician_a.practitioner.expect("clinician")
            )
        }
        t if t.starts_with("/api/v1/patients/{id}") => t
            .replace("{id}", &pa.to_string())
            .replace("{metric}", "heart_rate"),
        t if t.starts_with("/api/v1/alerts/{id}") => t.replace("{id}", &w.alert_a.to_string()),
        t if t.starts_with("/api/v1/users/{id}") => {
            t.replace("{id}", &w.clinician_b.user.to_string())
        }
        t if t.starts_with("/api/v1/devices/{id}") => t.replace("{id}", &w.device_a.to_string()),
        t if t.starts_with("/api/v1/appointments/{id}") => t
            .replace("{id}", &appt.to_string())
            .replace("{link_id}", &w.guest_link_a.to_string()),
        "/api/v1/notes/{id}/amendments" => format!("/api/v1/notes/{}/amendments", w.signed_note_a),
        t if t.starts_with("/api/v1/notes/{id}") => t.replace("{id}", &w.draft_note_a.to_string()),
        t => t.to_owned(),
    };
    let tag = uuid::Uuid::new_v4().simple().to_string();
    let start = (chrono::Utc::now()
        + chrono::Duration::days(3)
        + chrono::Duration::minutes(rand_minutes()))
    .to_rfc3339();
    let body = match (route.method.as_str(), route.template) {
        ("POST", "/api/v1/auth/totp/confirm") => Some(json!({"code": "000000"})),
        ("POST", "/api/v1/visit/consent") => Some(json!({"consent_version": "2026-01"})),
        ("POST", "/api/v1/auth/fhir-token") => Some(json!({"scope": "user/*.read"})),
        ("POST", "/api/v1/patients/{id}/erasure") => {
            Some(json!({"received_on": "2026-01-02", "reference": "DPO-1"}))
        }
        ("PATCH", "/api/v1/users/{id}") => Some(json!({"name": "Dr. Renamed"})),
        ("POST", "/api/v1/me/password") => Some(
            json!({"current_password": bedside_test_support::world::PASSWORD, "new_password": "another long password"}),
        ),
        ("POST", "/api/v1/users") => Some(
            json!({"email": format!("{tag}@x.example"), "name": "New Person", "role": "clinician", "password": "a long enough password"}),
        ),
        ("POST" | "PUT", "/api/v1/patients") | ("PUT", "/api/v1/patients/{id}") => Some(json!({
            "mrn": format!("M{}", &tag[..12]), "given_name": "Nina", "family_name": "Neu", "birth_date": "1980-01-02", "sex": "female"
        })),
        ("POST", "/api/v1/patients/{id}/consents") => Some(json!({"text_version": "2026-01"})),
        ("POST", "/api/v1/patients/{id}/care-team") => {
            Some(json!({"practitioner_id": w.clinician_b.practitioner}))
        }
        ("POST", "/api/v1/devices") => {
            Some(json!({"serial": format!("S-{tag}"), "kind": "thermometer"}))
        }
        ("POST", "/api/v1/devices/{id}/assignment") => Some(json!({"patient_id": pa})),
        ("POST", "/api/v1/appointments") => Some(json!({
            "patient_id": pa, "practitioner_id": w.clinician_a.practitioner, "start": start,
            "duration_minutes": 20, "kind": "video", "reason": "Check"
        })),
        ("POST", "/api/v1/appointments/{id}/transitions") => Some(json!({"to": "arrived"})),
        ("POST", "/api/v1/appointments/{id}/guest-links") => Some(json!({"label": "Interpreter"})),
        ("POST", "/api/v1/appointments/{id}/notes")
        | ("PUT", "/api/v1/notes/{id}")
        | ("POST", "/api/v1/notes/{id}/amendments") => Some(json!({"text": "Note text"})),
        (_, "/api/v1/appointments/{id}/join-link")
        | (_, "/api/v1/notes/{id}/sign")
        | ("POST", "/api/v1/auth/totp/enroll")
        | ("POST", "/api/v1/users/{id}/totp/reset")
        | ("POST", "/api/v1/alerts/{id}/acknowledge")
        | ("POST", "/api/v1/me/calendar-feed") => None,
        ("PUT", "/api/v1/patients/{id}/thresholds/{metric}") => {
            Some(json!({"low": 40, "high": 140}))
        }
        ("PUT", "/api/v1/patients/{id}/news2/settings") => Some(json!({"spo2_scale": 2})),
        ("POST" | "PUT", t) => panic!("no probe body for {t}"),
        _ => None,
    };
    (path, body)
}

fn rand_minutes() -> i64 {
    (uuid::Uuid::new_v4().as_u128() % 10_000) as i64
}

fn token(w: &World, who: Who) -> &str {
    match who {
        Admin => &w.admin.token,
        ClinicianA => &w.clinician_a.token,
        ClinicianB => &w.clinician_b.token,
        PatientA => &w.visit_a,
        PatientB => &w.visit_b,
        GuestA => &w.guest_a,
    }
}

#[tokio::test]
async fn every_route_has_a_row() {
    let doc: Value = bedside_signaling::openapi::document_json();
    let mut documented = BTreeSet::new();
    for (path, item) in doc["paths"].as_object().expect("paths") {
        for method in item.as_object().expect("operations").keys() {
            documented.insert((method.to_uppercase(), path.clone()));
        }
    }
    let mut declared: BTreeSet<(String, String)> = matrix()
        .iter()
        .map(|r| (r.method.to_string(), r.template.to_owned()))
        .collect();
    declared.extend(
        PUBLIC
            .iter()
            .map(|(m, p)| ((*m).to_owned(), (*p).to_owned())),
    );
    assert_eq!(
        documented, declared,
        "the matrix and the API document disagree"
    );
}

#[tokio::test]
async fn every_caller_gets_exactly_what_its_rule_allows_and_every_refusal_is_audited() {
    let app = TestApp::spawn().await;
    for route in matrix() {
        // Refusals first on a fresh world, then each allowed caller on its own
        // fresh world, so one probe's writes cannot change another's outcome.
        let world = World::seed(&app).await;
        for who in EVERYONE.into_iter().filter(|w| !route.allowed.contains(w)) {
            let (path, body) = probe(&route, &world);
            let response = send(
                &app,
                route.method.clone(),
                &path,
                Some(token(&world, who)),
                body.as_ref(),
            )
            .await;
            let id = request_id(&response);
            assert_eq!(
                response.status(),
                StatusCode::FORBIDDEN,
                "{who:?} {} {path}",
                route.method
            );
            let rows = audit_rows(&app, &id).await;
            assert_eq!(
                rows.len(),
                1,
                "{who:?} {} {path}: one audit row, got {rows:?}",
                route.method
            );
            assert_eq!(rows[0].0, "denied", "{who:?} {} {path}", route.method);
        }
        for who in route.allowed.iter().copied() {
            let world = World::seed(&app).await;
            let (path, body) = probe(&route, &world);
            let response = send(
                &app,
                route.method.clone(),
                &path,
                Some(token(&world, who)),
                body.as_ref(),
            )
            .await;
            let id = request_id(&response);
            let status = response.status();
            let text = response.text().await.unwrap_or_default();
            // Allowed means the rule let the caller through and the probe did its
            // work; confirming TOTP without an enrolment is a business refusal.
            // Reading the erasure of a patient never erased is the other.
            let expected_refusal = (route.template == "/api/v1/auth/totp/confirm"
                && status == StatusCode::CONFLICT)
                || (route.template == "/api/v1/patients/{id}/erasure"
                    && route.method == Method::GET
                    && status == StatusCode::NOT_FOUND);
            assert!(
                status.is_success() || expected_refusal,
                "{who:?} {} {path} -> {status}: {text}",
                route.method
            );
            if route.health_data {
                let rows = audit_rows(&app, &id).await;
                assert!(
                    !rows.is_empty() && rows.iter().all(|r| r.0 == "allowed"),
                    "{who:?} {} {path}: {rows:?}",
                    route.method
                );
            }
        }
    }
}

/// Tokens that must never work, each built to fail exactly one check.
fn bad_tokens(app: &TestApp, w: &World) -> Vec<(&'static str, String)> {
    let keys = app.state.keys();
    let settings = app.state.settings();
    let now = chrono::Utc::now().timestamp();
    let base = {
        let mut c = keys.claims(TokenKind::Access, w.admin.user.0, Duration::from_secs(600));
        c.role = Some(bedside_records::domain::StaffRole::Admin);
        // The admin's real, live session: only the broken property fails.
        c.sid = session_of(&w.admin.token, keys);
        c
    };
    let expired = {
        let mut c = base.clone();
        c.exp = now - 3600;
        c.nbf = now - 7200;
        c.iat = now - 7200;
        c
    };
    let not_yet = {
        let mut c = base.clone();
        c.nbf = now + 3600;
        c.exp = now + 7200;
        c
    };
    let other_key = TokenKeys::new(
        &[42u8; 32],
        &settings.token_issuer,
        &settings.token_audience,
    );
    let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
    let alg_none = format!(
        "{}.{}.",
        b64.encode(br#"{"alg":"none","typ":"JWT"}"#),
        b64.encode(serde_json::to_vec(&base).expect("claims"))
    );
    let challenge = keys.sign(&keys.claims(
        TokenKind::TotpChallenge,
        w.admin.user.0,
        Duration::from_secs(300),
    ));
    vec![
        ("expired", keys.sign(&expired)),
        ("not yet valid", keys.sign(&not_yet)),
        ("signed with another key", other_key.sign(&base)),
        ("alg none", alg_none),
        ("wrong audience", wrong_audience_token(keys, &base)),
        (
            "refresh token used as access",
            w.admin.refresh_token.clone(),
        ),
        ("totp challenge used as access", challenge),
        ("garbage", "not.a.token".to_owned()),
    ]
}

/// A token with the right key but another audience.
fn wrong_audience_token(
    keys: &TokenKeys,
    base: &bedside_signaling::auth::tokens::Claims,
) -> String {
    let mut c = base.clone();
    c.aud = "someone-else".into();
    keys.sign(&c)
}

fn session_of(token: &str, keys: &TokenKeys) -> Option<uuid::Uuid> {
    keys.verify(token).ok().and_then(|c| c.sid)
}

#[tokio::test]
async fn anonymous_and_bad_tokens_are_refused_everywhere_and_audited() {
    let app = TestApp::spawn().await;
    let world = World::seed(&app).await;
    let mut callers: Vec<(&str, Option<String>)> = vec![("anonymous", None)];
    callers.extend(
        bad_tokens(&app, &world)
            .into_iter()
            .map(|(n, t)| (n, Some(t))),
    );
    for route in matrix() {
        for (name, token) in &callers {
            let (path, body) = probe(&route, &world);
            let response = send(
                &app,
                route.method.clone(),
                &path,
                token.as_deref(),
                body.as_ref(),
            )
            .await;
            let id = request_id(&response);
            assert_eq!(
                response.status(),
                StatusCode::UNAUTHORIZED,
                "{name}: {} {path}",
                route.method
            );
            let body: Value = response.json().await.expect("json error");
            assert_eq!(body["code"], "unauthenticated");
            let rows = audit_rows(&app, &id).await;
            assert_eq!(rows.len(), 1, "{name}: {} {path}: {rows:?}", route.method);
            assert_eq!(
                (rows[0].0.as_str(), rows[0].1.as_str()),
                ("denied", "anonymous")
            );
        }
    }
}

#[tokio::test]
async fn a_logged_out_session_and_a_replaced_join_link_stop_working_at_once() {
    let app = TestApp::spawn().await;
    let world = World::seed(&app).await;
    let path = format!("/api/v1/patients/{}", world.patient_a);
    assert_eq!(
        send(&app, Method::GET, &path, Some(&world.admin.token), None)
            .await
            .status(),
        StatusCode::OK
    );
    let logout = send(
        &app,
        Method::POST,
        "/api/v1/auth/logout",
        None,
        Some(&json!({"refresh_token": world.admin.refresh_token})),
    )
    .await;
    assert_eq!(logout.status(), StatusCode::NO_CONTENT);
    let revoked = send(&app, Method::GET, &path, Some(&world.admin.token), None).await;
    assert_eq!(revoked.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(audit_rows(&app, &request_id(&revoked)).await[0].0, "denied");

    let visit = format!("/api/v1/appointments/{}", world.appointment_a);
    assert_eq!(
        send(&app, Method::GET, &visit, Some(&world.visit_a), None)
            .await
            .status(),
        StatusCode::OK
    );
    let reissue = send(
        &app,
        Method::POST,
        &format!("{visit}/join-link"),
        Some(&world.clinician_a.token),
        None,
    )
    .await;
    assert_eq!(reissue.status(), StatusCode::OK);
    assert_eq!(
        send(&app, Method::GET, &visit, Some(&world.visit_a), None)
            .await
            .status(),
        StatusCode::UNAUTHORIZED
    );
}

#[tokio::test]
async fn lists_show_a_clinician_only_their_own_patients() {
    let app = TestApp::spawn().await;
    let world = World::seed(&app).await;
    let response = send(
        &app,
        Method::GET,
        "/api/v1/patients",
        Some(&world.clinician_b.token),
        None,
    )
    .await;
    let ids: Vec<String> = response
        .json::<Vec<Value>>()
        .await
        .expect("list")
        .iter()
        .map(|p| p["id"].as_str().expect("id").to_owned())
        .collect();
    assert_eq!(ids, vec![world.patient_b.to_string()]);
    // Their own schedule by default; another clinician's only for admins.
    let own = send(
        &app,
        Method::GET,
        "/api/v1/appointments",
        Some(&world.clinician_b.token),
        None,
    )
    .await;
    let own: Vec<Value> = own.json().await.expect("list");
    assert!(
        own.iter()
            .all(|a| a["practitioner_id"] == json!(world.clinician_b.practitioner))
    );
}

#[tokio::test]
async fn a_clinician_cannot_gain_a_strangers_record_by_booking_them() {
    let app = TestApp::spawn().await;
    let world = World::seed(&app).await;
    let b_reads_a = || {
        let path = format!("/api/v1/patients/{}", world.patient_a);
        let (app, token) = (&app, world.clinician_b.token.clone());
        async move {
            send(app, Method::GET, &path, Some(&token), None)
                .await
                .status()
        }
    };
    let start = (chrono::Utc::now() + chrono::Duration::days(4)).to_rfc3339();
    let body = json!({"patient_id": world.patient_a, "practitioner_id": world.clinician_b.practitioner, "start": start,
        "duration_minutes": 20, "kind": "video", "reason": "Pretext"});
    let response = send(
        &app,
        Method::POST,
        "/api/v1/appointments",
        Some(&world.clinician_b.token),
        Some(&body),
    )
    .await;
    assert_eq!(response.status(), StatusCode::FORBIDDEN);
    let rows = audit_rows(&app, &request_id(&response)).await;
    assert_eq!(
        rows,
        vec![(
            "denied".to_owned(),
            "clinician".to_owned(),
            Some(world.patient_a.0)
        )]
    );
    assert_eq!(b_reads_a().await, StatusCode::FORBIDDEN);
    // A cancelled booking grants nothing either: an admin books B with A, then cancels.
    let booked = send(
        &app,
        Method::POST,
        "/api/v1/appointments",
        Some(&world.admin.token),
        Some(&body),
    )
    .await;
    assert_eq!(booked.status(), StatusCode::CREATED);
    assert_eq!(
        b_reads_a().await,
        StatusCode::OK,
        "a real appointment relates them"
    );
    let id = booked.json::<Value>().await.expect("json")["id"]
        .as_str()
        .expect("id")
        .to_owned();
    let cancel = send(
        &app,
        Method::POST,
        &format!("/api/v1/appointments/{id}/transitions"),
        Some(&world.admin.token),
        Some(&json!({"to": "cancelled"})),
    )
    .await;
    assert_eq!(cancel.status(), StatusCode::OK);
    assert_eq!(
        b_reads_a().await,
        StatusCode::FORBIDDEN,
        "a cancelled booking grants nothing"
    );
}
