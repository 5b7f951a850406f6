//! The HTTP edge as a browser and an operator see it: health, readiness,
//! headers, request ids, the API document, metrics on their own listener,
//! the web client with its fallback, rate limits and graceful shutdown.

use bedside_test_support::{TestApp, World};
use reqwest::{Method, StatusCode};
use serde_json::Value;

use crate::support::{json as body_of, send};

#[tokio::test]
async fn health_and_readiness_report_the_database_and_migrations() {
    let app = TestApp::spawn().await;
    let health = send(&app, Method::GET, "/healthz", None, None).await;
    assert_eq!(health.status(), StatusCode::OK);
    let ready = send(&app, Method::GET, "/readyz", None, None).await;
    assert_eq!(ready.status(), StatusCode::OK);
    assert_eq!(
        body_of(ready).await,
        serde_json::json!({"database": "ok", "migrations": "ok"})
    );
    // Roll back the migration bookkeeping: the server is then not ready.
    sqlx::query("DELETE FROM _sqlx_migrations")
        .execute(&app.db)
        .await
        .expect("delete");
    let ready = send(&app, Method::GET, "/readyz", None, None).await;
    assert_eq!(ready.status(), StatusCode::SERVICE_UNAVAILABLE);
}

#[tokio::test]
async fn every_response_has_security_headers_and_a_request_id() {
    let app = TestApp::spawn().await;
    for path in [
        "/healthz",
        "/api/v1/clinic",
        "/api/v1/patients",
        "/api/v1/nope",
    ] {
        let response = send(&app, Method::GET, path, None, None).await;
        let h = response.headers();
        assert_eq!(h["x-content-type-options"], "nosniff", "{path}");
        assert_eq!(h["x-frame-options"], "DENY", "{path}");
        let csp = h["content-security-policy"].to_str().expect("csp");
        assert!(
            csp.contains("script-src 'self'") && csp.contains("frame-ancestors 'none'"),
            "{path}"
        );
        assert!(h.get("x-request-id").is_some(), "{path}");
        assert!(
            h.get("strict-transport-security").is_none(),
            "no HSTS over plain HTTP"
        );
    }
    let response = app
        .client
        .get(app.url("/api/v1/clinic"))
        .header("x-request-id", "trace-me-123")
        .send()
        .await
        .expect("send");
    assert_ne!(
        response.headers()["x-request-id"],
        "trace-me-123",
        "the server makes request ids; a client cannot choose the one audited"
    );
    let error = body_of(send(&app, Method::GET, "/api/v1/patients", None, None).await).await;
    assert!(
        error["request_id"]
            .as_str()
            .is_some_and(|id| !id.is_empty())
    );
}

#[tokio::test]
async fn the_openapi_document_is_generated_and_describes_the_api() {
    let app = TestApp::spawn().await;
    let doc = body_of(send(&app, Method::GET, "/api/v1/openapi.json", None, None).await).await;
    assert!(doc["openapi"].as_str().expect("version").starts_with("3."));
    let paths = doc["paths"].as_object().expect("paths");
    assert!(paths.contains_key("/api/v1/auth/login"));
    assert!(paths.contains_key("/api/v1/appointments/{id}/transitions"));
    assert!(doc["components"]["schemas"]["ErrorBody"].is_object());
    assert!(doc["components"]["securitySchemes"]["bearer"].is_object());
}

#[tokio::test]
async fn metrics_are_on_their_own_listener_labelled_by_route_template() {
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
    let text = app
        .client
        .get(format!("http://{}/metrics", app.metrics_addr))
        .send()
        .await
        .expect("metrics")
        .text()
        .await
        .expect("text");
    assert!(text.contains(r#"bedside_http_requests_total{method="GET",route="/api/v1/patients/{id}",status="200"} 1"#), "{text}");
    assert!(text.contains("bedside_http_request_duration_seconds_bucket"));
    assert!(!text.contains(&w.patient_a.to_string()), "no ids in labels");
    let on_api = send(&app, Method::GET, "/metrics", None, None).await;
    assert_ne!(
        on_api.status(),
        StatusCode::OK,
        "metrics are not on the public listener"
    );
}

#[tokio::test]
async fn the_web_client_is_served_with_a_fallback_to_its_index() {
    let root = tempfile::tempdir().expect("dir");
    std::fs::write(
        root.path().join("index.html"),
        "<!doctype html><title>Bedside</title>",
    )
    .expect("index");
    std::fs::create_dir(root.path().join("assets")).expect("assets");
    std::fs::write(root.path().join("assets/app.js"), "console.log(1)").expect("js");
    let web_root = root.path().to_path_buf();
    let app = TestApp::spawn_with(move |c| c.http.web_root = Some(web_root)).await;
    for page in ["/", "/login", "/patients/123", "/join"] {
        let response = send(&app, Method::GET, page, None, None).await;
        assert_eq!(response.status(), StatusCode::OK, "{page}");
        assert!(
            response
                .text()
                .await
                .expect("text")
                .contains("<title>Bedside</title>"),
            "{page}"
        );
    }
    let js = send(&app, Method::GET, "/assets/app.js", None, None).await;
    assert!(
        js.headers()["content-type"]
            .to_str()
            .expect("type")
            .contains("javascript")
    );
    let api = send(&app, Method::GET, "/api/v1/unknown", None, None).await;
    assert_eq!(
        api.status(),
        StatusCode::NOT_FOUND,
        "API paths never fall back to the page"
    );
}

#[tokio::test]
async fn clients_that_flood_are_rate_limited() {
    let app = TestApp::spawn_with(|c| {
        c.http.rate_limit_per_second = 1;
        c.http.rate_limit_burst = 5;
    })
    .await;
    let mut statuses = Vec::new();
    for _ in 0..8 {
        statuses.push(send(&app, Method::GET, "/api/v1/clinic", None, None).await);
    }
    let limited = statuses
        .into_iter()
        .find(|r| r.status() == StatusCode::TOO_MANY_REQUESTS)
        .expect("a 429 after the burst");
    assert!(limited.headers().contains_key("retry-after"));
    assert_eq!(body_of(limited).await["code"], "rate_limited");
}

#[tokio::test]
async fn shutdown_stops_accepting_and_closes_the_pool() {
    let app = TestApp::spawn().await;
    let base = app.base.clone();
    let db = app.db.clone();
    let client = app.client.clone();
    assert_eq!(
        client
            .get(format!("{base}/healthz"))
            .send()
            .await
            .expect("up")
            .status(),
        StatusCode::OK
    );
    app.stop().await.expect("clean stop");
    assert!(
        client.get(format!("{base}/healthz")).send().await.is_err(),
        "no longer accepting"
    );
    assert!(db.is_closed(), "the pool was closed");
}

#[tokio::test]
async fn clinic_facts_are_public() {
    let app = TestApp::spawn().await;
    let clinic: Value = body_of(send(&app, Method::GET, "/api/v1/clinic", None, None).await).await;
    assert_eq!(clinic["time_zone"], "Europe/Berlin");
}

#[tokio::test]
async fn with_a_certificate_it_serves_https_with_hsts() {
    let dir = tempfile::tempdir().expect("dir");
    let (cert, key) = (dir.path().join("cert.pem"), dir.path().join("key.pem"));
    let status = std::process::Command::new("openssl")
        .args([
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
            "-nodes",
            "-days",
            "2",
            "-subj",
            "/CN=localhost",
        ])
        .args([
            "-addext",
            "subjectAltName=DNS:localhost,IP:127.0.0.1",
            "-keyout",
        ])
        .arg(&key)
        .arg("-out")
        .arg(&cert)
        .stderr(std::process::Stdio::null())
        .status()
        .expect("openssl (apt-get install -y openssl)");
    assert!(status.success());
    let (c, k) = (cert.clone(), key.clone());
    let app = TestApp::spawn_with(move |config| {
        config.http.tls_cert = Some(c);
        config.http.tls_key = Some(k);
    })
    .await;
    let https = app.base.replace("http://", "https://");
    // webpki refuses a self-signed end-entity certificate as its own trust
    // anchor, so this client skips verification: the test is about serving TLS.
    let trusting = reqwest::Client::builder()
        .danger_accept_invalid_certs(true)
        .build()
        .expect("client");
    let response = trusting
        .get(format!("{https}/api/v1/clinic"))
        .send()
        .await
        .expect("a TLS handshake with our certificate");
    assert_eq!(response.status(), StatusCode::OK);
    assert!(
        response.headers()["strict-transport-security"]
            .to_str()
            .expect("hsts")
            .contains("max-age=")
    );
    assert!(
        app.client
            .get(format!("{}/api/v1/clinic", app.base))
            .send()
            .await
            .is_err(),
        "no plain HTTP on the TLS port"
    );
}

#[tokio::test]
async fn readiness_waits_for_the_device_gateway_to_reach_its_broker() {
    let port = bedside_test_support::free_port(); // nothing listens there
    let app = TestApp::spawn_with(move |c| {
        c.ingest.enabled = true;
        c.mqtt.url = format!("mqtt://127.0.0.1:{port}");
    })
    .await;
    let ready = send(&app, Method::GET, "/readyz", None, None).await;
    assert_eq!(ready.status(), StatusCode::SERVICE_UNAVAILABLE);
    let body = body_of(ready).await;
    assert_eq!(body["ingest"], "not ready");
    assert_eq!(body["database"], "ok");
    app.stop()
        .await
        .expect("a gateway that never connected still stops cleanly");
}
