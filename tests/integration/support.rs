//! Small helpers shared by the test modules.

use bedside_test_support::TestApp;
use reqwest::{Method, Response};
use serde_json::Value;

/// Sends `method path` with an optional bearer token and JSON body.
pub(crate) async fn send(
    app: &TestApp,
    method: Method,
    path: &str,
    token: Option<&str>,
    body: Option<&Value>,
) -> Response {
    let mut request = app.client.request(method, app.url(path));
    if let Some(token) = token {
        request = request.bearer_auth(token);
    }
    if let Some(body) = body {
        request = request.json(body);
    }
    request
        .send()
        .await
        .expect("the request reaches the server")
}

/// The response's request id header.
pub(crate) fn request_id(response: &Response) -> String {
    response
        .headers()
        .get("x-request-id")
        .and_then(|v| v.to_str().ok())
        .expect("every response carries x-request-id")
        .to_owned()
}

/// Audit rows written for one request, as (outcome, actor_role, patient_id).
pub(crate) async fn audit_rows(
    app: &TestApp,
    request_id: &str,
) -> Vec<(String, String, Option<uuid::Uuid>)> {
    sqlx::query_as(
        "SELECT outcome, actor_role, patient_id FROM audit_log WHERE request_id = $1 ORDER BY id",
    )
    .bind(request_id)
    .fetch_all(&app.db)
    .await
    .expect("read the audit log")
}

/// Parses a JSON body.
pub(crate) async fn json(response: Response) -> Value {
    response.json().await.expect("a JSON body")
}

/// A patient with made-up details (`mrn` must be unique in the database).
pub(crate) async fn new_patient(
    db: &sqlx::PgPool,
    mrn: &str,
) -> bedside_records::patients::Patient {
    use bedside_records::domain::{BirthDate, BoundedText, Mrn, Sex};
    bedside_records::patients::create(
        db,
        &bedside_records::patients::PatientDetails {
            mrn: Mrn::parse(mrn).unwrap(),
            given_name: BoundedText::parse("given_name", "Gina", 50).unwrap(),
            family_name: BoundedText::parse("family_name", "Gateway", 50).unwrap(),
            birth_date: BirthDate::parse("1950-01-01").unwrap(),
            sex: Sex::Female,
            email: None,
            phone: None,
        },
    )
    .await
    .unwrap()
}

/// The Python of the tests' tools (`scripts/test.sh` installs them into
/// `target/test-tools`; `BEDSIDE_TEST_PYTHON` overrides).
pub(crate) fn test_python() -> String {
    std::env::var("BEDSIDE_TEST_PYTHON").unwrap_or_else(|_| {
        concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../target/test-tools/bin/python"
        )
        .to_owned()
    })
}
