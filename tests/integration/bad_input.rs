//! Bad input on every write route: malformed JSON, wrong types, missing
//! fields, oversized bodies, the wrong content type, invalid dates and enum
//! values, unknown ids. Each answers a 4xx with a stable code (never a 500)
//! and leaves every table exactly as it was.

use bedside_test_support::{TestApp, World};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use crate::support::send;

/// A fingerprint of every table a write route could touch.
async fn fingerprint(app: &TestApp) -> Vec<(String, Option<String>)> {
    let mut out = Vec::new();
    for table in [
        "users",
        "practitioners",
        "patients",
        "care_relationships",
        "devices",
        "device_assignments",
        "appointments",
        "join_links",
        "visit_notes",
        "consents",
        "refresh_tokens",
        "recovery_codes",
        "alerts",
        "alert_events",
        "alert_thresholds",
    ] {
        let digest: Option<String> = sqlx::query_scalar(sqlx::AssertSqlSafe(format!(
            "SELECT md5(string_agg(t::text, '|' ORDER BY t::text)) FROM {table} t"
        )))
        .fetch_one(&app.db)
        .await
        .expect("fingerprint");
        out.push((table.to_owned(), digest));
    }
    out
}

struct WriteRoute {
    method: Method,
    path: String,
    token: Option<String>,
    /// A body of the right shape, used to derive the bad variants.
    valid: Value,
}

fn routes(w: &World) -> Vec<WriteRoute> {
    let admin = Some(w.admin.token.clone());
    let clinician = Some(w.clinician_a.token.clone());
    let pa = w.patient_a;
    let appt = w.appointment_a;
    let r = |method: Method, path: String, token: &Option<String>, valid: Value| WriteRoute {
        method,
        path,
        token: token.clone(),
        valid,
    };
    vec![
        r(
            Method::POST,
            "/api/v1/auth/login".into(),
            &None,
            json!({"email": "x@y.example", "password": "pw"}),
        ),
        r(
            Method::POST,
            "/api/v1/auth/login/totp".into(),
            &None,
            json!({"challenge_token": "x", "code": "123456"}),
        ),
        r(
            Method::POST,
            "/api/v1/auth/refresh".into(),
            &None,
            json!({"refresh_token": "x"}),
        ),
        r(
            Method::POST,
            "/api/v1/auth/logout".into(),
            &None,
            json!({"refresh_token": "x"}),
        ),
        r(
            Method::POST,
            "/api/v1/auth/join".into(),
            &None,
            json!({"token": "x"}),
        ),
        r(
            Method::POST,
            "/api/v1/auth/totp/confirm".into(),
            &admin,
            json!({"code": "123456"}),
        ),
        r(
            Method::POST,
            "/api/v1/visit/consent".into(),
            &Some(w.visit_a.clone()),
            json!({"consent_version": "2026-01"}),
        ),
        r(
            Method::POST,
            "/api/v1/users".into(),
            &admin,
            json!({"email": "n@x.example", "name": "N", "role": "admin", "password": "long enough password"}),
        ),
        r(
            Method::PUT,
            format!("/api/v1/patients/{pa}/thresholds/heart_rate"),
            &clinician,
            json!({"low": 40, "high": 140}),
        ),
        r(
            Method::PATCH,
            format!("/api/v1/users/{}", w.clinician_b.user),
            &admin,
            json!({"name": "N", "active": false}),
        ),
        r(
            Method::POST,
            "/api/v1/me/password".into(),
            &admin,
            json!({"current_password": "x", "new_password": "long enough password"}),
        ),
        r(
            Method::POST,
            "/api/v1/patients".into(),
            &admin,
            json!({"mrn": "Z1", "given_name": "Z", "family_name": "Z", "birth_date": "1990-01-01", "sex": "male"}),
        ),
        r(
            Method::PUT,
            format!("/api/v1/patients/{pa}"),
            &admin,
            json!({"mrn": "Z2", "given_name": "Z", "family_name": "Z", "birth_date": "1990-01-01", "sex": "male"}),
        ),
        r(
            Method::POST,
            format!("/api/v1/patients/{pa}/consents"),
            &admin,
            json!({"text_version": "2026-01"}),
        ),
        r(
            Method::POST,
            format!("/api/v1/patients/{pa}/care-team"),
            &admin,
            json!({"practitioner_id": w.clinician_b.practitioner}),
        ),
        r(
            Method::POST,
            "/api/v1/devices".into(),
            &admin,
            json!({"serial": "Q-1", "kind": "scale"}),
        ),
        r(
            Method::POST,
            format!("/api/v1/devices/{}/assignment", w.device_a),
            &admin,
            json!({"patient_id": w.patient_b}),
        ),
        r(
            Method::POST,
            "/api/v1/appointments".into(),
            &admin,
            json!({
                "patient_id": pa, "practitioner_id": w.clinician_a.practitioner,
                "start": (chrono::Utc::now() + chrono::Duration::days(2)).to_rfc3339(), "duration_minutes": 30, "kind": "video", "reason": "x"
            }),
        ),
        r(
            Method::POST,
            format!("/api/v1/appointments/{appt}/transitions"),
            &clinician,
            json!({"to": "arrived"}),
        ),
        r(
            Method::POST,
            format!("/api/v1/appointments/{appt}/notes"),
            &clinician,
            json!({"text": "x"}),
        ),
        r(
            Method::PUT,
            format!("/api/v1/notes/{}", w.draft_note_a),
            &clinician,
            json!({"text": "x"}),
        ),
        r(
            Method::POST,
            format!("/api/v1/notes/{}/amendments", w.signed_note_a),
            &clinician,
            json!({"text": "x"}),
        ),
    ]
}

/// Every variant of `valid` with one field's value replaced by a value of another type.
fn wrong_types(valid: &Value) -> Vec<(String, Value)> {
    let object = valid.as_object().expect("bodies are objects");
    let mut out = Vec::new();
    for key in object.keys() {
        let replacement = match &object[key] {
            Value::String(_) => json!({"nested": true}),
            Value::Number(_) => json!("thirty"),
            _ => json!([1, 2]),
        };
        let mut body = object.clone();
        body.insert(key.clone(), replacement);
        out.push((key.clone(), Value::Object(body)));
    }
    out
}

async fn raw(
    app: &TestApp,
    route: &WriteRoute,
    content_type: &str,
    body: Vec<u8>,
) -> reqwest::Response {
    let mut request = app
        .client
        .request(route.method.clone(), app.url(&route.path))
        .header("content-type", content_type)
        .body(body);
    if let Some(token) = &route.token {
        request = request.bearer_auth(token);
    }
    request.send().await.expect("request")
}

async fn expect_error(
    response: reqwest::Response,
    status: StatusCode,
    code: &str,
    context: &str,
) -> Value {
    let actual = response.status();
    let body: Value = response.json().await.unwrap_or(Value::Null);
    assert_eq!(actual, status, "{context}: {body}");
    assert_eq!(body["code"], code, "{context}: {body}");
    assert!(
        body["request_id"].as_str().is_some_and(|s| !s.is_empty()),
        "{context}: {body}"
    );
    body
}

#[tokio::test]
async fn malformed_bodies_get_stable_4xx_codes_and_change_nothing() {
    let app = TestApp::spawn().await;
    let world = World::seed(&app).await;
    let before = fingerprint(&app).await;
    for route in routes(&world) {
        let ctx = format!("{} {}", route.method, route.path);
        for malformed in [
            "{",
            "{\"a\": }",
            "nul",
            "[1,",
            "{\"a\":1} trailing",
            "\u{feff}{}",
        ] {
            let response = raw(
                &app,
                &route,
                "application/json",
                malformed.as_bytes().to_vec(),
            )
            .await;
            expect_error(
                response,
                StatusCode::BAD_REQUEST,
                "malformed_json",
                &format!("{ctx} {malformed:?}"),
            )
            .await;
        }
        // A PATCH body, and a threshold (both limits empty resets it), may
        // leave every field out; elsewhere `{}` misses a field.
        if route.method != Method::PATCH && !route.path.contains("/thresholds/") {
            let response = raw(&app, &route, "application/json", b"{}".to_vec()).await;
            let body = expect_error(
                response,
                StatusCode::UNPROCESSABLE_ENTITY,
                "validation_failed",
                &format!("{ctx} missing fields"),
            )
            .await;
            assert!(
                body["field"].is_string(),
                "{ctx}: a missing field is named: {body}"
            );
        }
        for (field, body) in wrong_types(&route.valid) {
            let response = send(
                &app,
                route.method.clone(),
                &route.path,
                route.token.as_deref(),
                Some(&body),
            )
            .await;
            let answer = expect_error(
                response,
                StatusCode::UNPROCESSABLE_ENTITY,
                "validation_failed",
                &format!("{ctx} wrong type of {field}"),
            )
            .await;
            assert_eq!(answer["field"], json!(field), "{ctx}");
        }
        let response = raw(&app, &route, "application/json", b"[1, 2]".to_vec()).await;
        expect_error(
            response,
            StatusCode::UNPROCESSABLE_ENTITY,
            "validation_failed",
            &format!("{ctx} array body"),
        )
        .await;
        let response = raw(
            &app,
            &route,
            "text/plain",
            route.valid.to_string().into_bytes(),
        )
        .await;
        expect_error(
            response,
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported_media_type",
            &ctx,
        )
        .await;
        let huge = format!("{{\"text\": \"{}\"}}", "x".repeat(2 * 1024 * 1024));
        let response = raw(&app, &route, "application/json", huge.into_bytes()).await;
        expect_error(
            response,
            StatusCode::PAYLOAD_TOO_LARGE,
            "payload_too_large",
            &format!("{ctx} oversized"),
        )
        .await;
    }
    assert_eq!(
        fingerprint(&app).await,
        before,
        "bad input changed the database"
    );
}

/// method, path, token, body, expected status, code, field.
type Case<'a> = (
    Method,
    String,
    Option<&'a str>,
    Value,
    StatusCode,
    &'static str,
    Option<&'static str>,
);

#[tokio::test]
async fn invalid_values_dates_and_unknown_ids_are_refused_with_the_field() {
    let app = TestApp::spawn().await;
    let w = World::seed(&app).await;
    let before = fingerprint(&app).await;
    let admin = Some(w.admin.token.as_str());
    let clinician = Some(w.clinician_a.token.as_str());
    let unknown = uuid::Uuid::new_v4();
    let patient = |field: &str, value: Value| {
        let mut body = json!({"mrn": "V-1", "given_name": "V", "family_name": "V", "birth_date": "1990-01-01", "sex": "male"});
        body[field] = value;
        body
    };
    let future = (chrono::Utc::now() + chrono::Duration::days(1)).to_rfc3339();
    let booking = |field: &str, value: Value| {
        let mut body = json!({"patient_id": w.patient_a, "practitioner_id": w.clinician_a.practitioner, "start": future,
            "duration_minutes": 30, "kind": "video", "reason": "x"});
        body[field] = value;
        body
    };
    let cases: Vec<Case> = vec![
        (
            Method::POST,
            "/api/v1/patients".into(),
            admin,
            patient("birth_date", json!("1970-02-30")),
            StatusCode::UNPROCESSABLE_ENTITY,
            "validation_failed",
            Some("birth_date"),
        ),
        (
            Method::POST,
            "/api/v1/patients".into(),
            admin,
            patient("birth_date", json!("2999-01-01")),
            StatusCode::UNPROCESSABLE_ENTITY,
            "validation_failed",
            Some("birth_date"),
        ),
        (
            Method::POST,
            "/api/v1/patients".into(),
            admin,
            patient("sex", json!("F")),
            StatusCode::UNPROCESSABLE_ENTITY,
            "validation_failed",
            Some("sex"),
        ),
        (
            Method::POST,
            "/api/v1/patients".into(),
            admin,
            patient("given_name", json!("   ")),
            StatusCode::UNPROCESSABLE_ENTITY,
            "validation_failed",
            Some("given_name"),
        ),
        (
            Method::POST,
            "/api/v1/patients".into(),
            admin,
            patient("email", json!("not-an-email")),
            StatusCode::UNPROCESSABLE_ENTITY,
            "validation_failed",
            Some("email"),
        ),
        (
            Method::PUT,
            format!("/api/v1/patients/{unknown}"),
            admin,
            patient("mrn", json!("V-2")),
            StatusCode::NOT_FOUND,
            "not_found",
            None,
        ),
        (
            Method::POST,
            "/api/v1/appointments".into(),
            admin,
            booking("start", json!("tomorrow at nine")),
            StatusCode::UNPROCESSABLE_ENTITY,
            "validation_failed",
            Some("start"),
        ),
        (
            Method::POST,
            "/api/v1/appointments".into(),
            admin,
            booking("start", json!("2020-01-01T09:00:00Z")),
            StatusCode::UNPROCESSABLE_ENTITY,
            "validation_failed",
            Some("start"),
        ),
        (
            Method::POST,
            "/api/v1/appointments".into(),
            admin,
            booking("duration_minutes", json!(0)),
            StatusCode::UNPROCESSABLE_ENTITY,
            "validation_failed",
            Some("duration_minutes"),
        ),
        (
            Method::POST,
            "/api/v1/appointments".into(),
            admin,
            booking("kind", json!("phone")),
            StatusCode::UNPROCESSABLE_ENTITY,
            "validation_failed",
            Some("kind"),
        ),
        (
            Method::POST,
            "/api/v1/appointments".into(),
            admin,
            booking("patient_id", json!(unknown)),
            StatusCode::NOT_FOUND,
            "not_found",
            None,
        ),
        (
            Method::POST,
            "/api/v1/appointments".into(),
            admin,
            booking("patient_id", json!("not-a-uuid")),
            StatusCode::UNPROCESSABLE_ENTITY,
            "validation_failed",
            Some("patient_id"),
        ),
        (
            Method::POST,
            "/api/v1/appointments".into(),
            admin,
            booking("practitioner_id", json!(unknown)),
            StatusCode::NOT_FOUND,
            "not_found",
            None,
        ),
        (
            Method::POST,
            format!("/api/v1/appointments/{}/transitions", w.appointment_a),
            clinician,
            json!({"to": "teleported"}),
            StatusCode::UNPROCESSABLE_ENTITY,
            "validation_failed",
            Some("to"),
        ),
        (
            Method::POST,
            format!("/api/v1/appointments/{}/transitions", w.appointment_a),
            clinician,
            json!({"to": "finished"}),
            StatusCode::CONFLICT,
            "invalid_transition",
            Some("to"),
        ),
        (
            Method::POST,
            format!("/api/v1/appointments/{unknown}/transitions"),
            admin,
            json!({"to": "arrived"}),
            StatusCode::NOT_FOUND,
            "not_found",
            None,
        ),
        (
            Method::POST,
            "/api/v1/appointments/not-a-uuid/transitions".into(),
            admin,
            json!({"to": "arrived"}),
            StatusCode::NOT_FOUND,
            "not_found",
            None,
        ),
        (
            Method::POST,
            format!("/api/v1/devices/{unknown}/assignment"),
            admin,
            json!({"patient_id": w.patient_a}),
            StatusCode::NOT_FOUND,
            "not_found",
            None,
        ),
        (
            Method::POST,
            format!("/api/v1/devices/{}/assignment", w.device_a),
            admin,
            json!({"patient_id": unknown}),
            StatusCode::NOT_FOUND,
            "not_found",
            None,
        ),
        (
            Method::POST,
            "/api/v1/devices".into(),
            admin,
            json!({"serial": "has space", "kind": "scale"}),
            StatusCode::UNPROCESSABLE_ENTITY,
            "validation_failed",
            Some("serial"),
        ),
        (
            Method::POST,
            "/api/v1/devices".into(),
            admin,
            json!({"serial": "X-1", "kind": "toaster"}),
            StatusCode::UNPROCESSABLE_ENTITY,
            "validation_failed",
            Some("kind"),
        ),
        (
            Method::POST,
            format!("/api/v1/patients/{}/care-team", w.patient_a),
            admin,
            json!({"practitioner_id": unknown}),
            StatusCode::NOT_FOUND,
            "not_found",
            None,
        ),
        (
            Method::POST,
            format!("/api/v1/patients/{}/care-team", w.patient_a),
            admin,
            json!({"practitioner_id": w.clinician_a.practitioner}),
            StatusCode::CONFLICT,
            "duplicate",
            Some("practitioner_id"),
        ),
        (
            Method::POST,
            "/api/v1/users".into(),
            admin,
            json!({"email": w.clinician_a.email.to_uppercase(), "name": "Dup", "role": "clinician", "password": "long enough password"}),
            StatusCode::CONFLICT,
            "duplicate",
            Some("email"),
        ),
        (
            Method::POST,
            "/api/v1/users".into(),
            admin,
            json!({"email": "p@x.example", "name": "P", "role": "clinician", "password": "short"}),
            StatusCode::UNPROCESSABLE_ENTITY,
            "validation_failed",
            Some("password"),
        ),
        (
            Method::POST,
            "/api/v1/users".into(),
            admin,
            json!({"email": "p@x.example", "name": "P", "role": "root", "password": "long enough password"}),
            StatusCode::UNPROCESSABLE_ENTITY,
            "validation_failed",
            Some("role"),
        ),
        (
            Method::PUT,
            format!("/api/v1/notes/{}", w.signed_note_a),
            clinician,
            json!({"text": "rewrite history"}),
            StatusCode::CONFLICT,
            "note_signed",
            None,
        ),
        (
            Method::POST,
            format!("/api/v1/notes/{}/amendments", w.draft_note_a),
            clinician,
            json!({"text": "x"}),
            StatusCode::UNPROCESSABLE_ENTITY,
            "validation_failed",
            Some("note"),
        ),
        (
            Method::POST,
            format!("/api/v1/appointments/{}/notes", w.appointment_a),
            clinician,
            json!({"text": ""}),
            StatusCode::UNPROCESSABLE_ENTITY,
            "validation_failed",
            Some("text"),
        ),
        (
            Method::GET,
            "/api/v1/appointments?date=2026-13-45".into(),
            admin,
            Value::Null,
            StatusCode::UNPROCESSABLE_ENTITY,
            "validation_failed",
            Some("date"),
        ),
        (
            Method::GET,
            "/api/v1/audit?from=yesterday".into(),
            admin,
            Value::Null,
            StatusCode::UNPROCESSABLE_ENTITY,
            "validation_failed",
            Some("from"),
        ),
        (
            Method::GET,
            "/api/v1/audit?limit=many".into(),
            admin,
            Value::Null,
            StatusCode::UNPROCESSABLE_ENTITY,
            "validation_failed",
            Some("limit"),
        ),
        (
            Method::PUT,
            format!("/api/v1/patients/{}/thresholds/heart_rate", w.patient_a),
            clinician,
            json!({"low": 140, "high": 40}),
            StatusCode::UNPROCESSABLE_ENTITY,
            "validation_failed",
            Some("low"),
        ),
        (
            Method::PUT,
            format!("/api/v1/patients/{}/thresholds/spo2", w.patient_a),
            clinician,
            json!({"low": 150}),
            StatusCode::UNPROCESSABLE_ENTITY,
            "validation_failed",
            Some("low"),
        ),
        (
            Method::PUT,
            format!("/api/v1/patients/{}/thresholds/mood", w.patient_a),
            clinician,
            json!({"low": 1}),
            StatusCode::NOT_FOUND,
            "not_found",
            None,
        ),
        (
            Method::POST,
            format!("/api/v1/alerts/{unknown}/acknowledge"),
            admin,
            Value::Null,
            StatusCode::NOT_FOUND,
            "not_found",
            None,
        ),
        (
            Method::POST,
            "/api/v1/me/password".into(),
            admin,
            json!({"current_password": "wrong", "new_password": "another long password"}),
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_credentials",
            Some("current_password"),
        ),
        (
            Method::POST,
            "/api/v1/me/password".into(),
            admin,
            json!({"current_password": bedside_test_support::world::PASSWORD, "new_password": "short"}),
            StatusCode::UNPROCESSABLE_ENTITY,
            "validation_failed",
            Some("new_password"),
        ),
        (
            Method::PATCH,
            format!("/api/v1/users/{}", w.admin.user),
            admin,
            json!({"active": false}),
            StatusCode::CONFLICT,
            "cannot_deactivate_self",
            Some("active"),
        ),
        (
            Method::PATCH,
            format!("/api/v1/users/{unknown}"),
            admin,
            json!({"active": false}),
            StatusCode::NOT_FOUND,
            "not_found",
            None,
        ),
        (
            Method::POST,
            "/api/v1/auth/login".into(),
            None,
            json!({"email": "nul\u{0}@x.example", "password": "x"}),
            StatusCode::UNPROCESSABLE_ENTITY,
            "validation_failed",
            Some("email"),
        ),
        (
            Method::GET,
            "/api/v1/patients?q=a%00b".into(),
            admin,
            Value::Null,
            StatusCode::UNPROCESSABLE_ENTITY,
            "validation_failed",
            Some("q"),
        ),
        (
            Method::POST,
            "/api/v1/auth/join".into(),
            None,
            json!({"token": "x".repeat(5000)}),
            StatusCode::UNAUTHORIZED,
            "invalid_join_link",
            None,
        ),
    ];
    for (method, path, token, body, status, code, field) in cases {
        let ctx = format!("{method} {path} {body}");
        let body = (!body.is_null()).then_some(body);
        let response = send(&app, method, &path, token, body.as_ref()).await;
        let answer = expect_error(response, status, code, &ctx).await;
        if let Some(field) = field {
            assert_eq!(answer["field"], json!(field), "{ctx}: {answer}");
        }
    }
    assert_eq!(
        fingerprint(&app).await,
        before,
        "refused input changed the database"
    );
}

#[tokio::test]
async fn unknown_routes_and_methods_answer_in_the_error_shape() {
    let app = TestApp::spawn().await;
    let response = send(&app, Method::GET, "/api/v1/no-such-thing", None, None).await;
    expect_error(
        response,
        StatusCode::NOT_FOUND,
        "not_found",
        "unknown route",
    )
    .await;
    let response = send(&app, Method::DELETE, "/api/v1/clinic", None, None).await;
    expect_error(
        response,
        StatusCode::METHOD_NOT_ALLOWED,
        "method_not_allowed",
        "wrong method",
    )
    .await;
}
