//! Staff sign-in through an OpenID Connect provider: panva's
//! `oidc-provider` (npm, OpenID Certified), started here with Bedside as a
//! confidential client that must use PKCE. The test drives the whole code
//! flow over HTTP as a browser would: Bedside's login redirect, the
//! provider's login and consent forms, the callback, the hand-off.

use std::io::{BufRead as _, BufReader};
use std::process::{Child, Command, Stdio};

use bedside_test_support::{TestApp, free_port};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use crate::support::send;

const REDIRECT: &str = "http://127.0.0.1:8080/api/v1/auth/oidc/callback";

struct Provider {
    child: Child,
    port: u16,
    /// Kept open: a closed pipe would kill the provider at its next log line.
    _stdout: BufReader<std::process::ChildStdout>,
}

impl Provider {
    fn start(accounts: &Value, alg: &str) -> Self {
        let port = free_port();
        let mut child = Command::new("node")
            .arg(concat!(
                env!("CARGO_MANIFEST_DIR"),
                "/tools/oidc/provider.mjs"
            ))
            .arg(port.to_string())
            .arg(REDIRECT)
            .env("OIDC_ACCOUNTS", accounts.to_string())
            .env("OIDC_ID_TOKEN_ALG", alg)
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("node runs the provider (./scripts/test.sh installs it)");
        let mut stdout = BufReader::new(child.stdout.take().unwrap());
        let mut line = String::new();
        stdout.read_line(&mut line).unwrap();
        assert_eq!(line.trim(), "ready", "the OpenID provider did not start");
        Self {
            child,
            port,
            _stdout: stdout,
        }
    }

    fn issuer(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }
}

impl Drop for Provider {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn oidc_config(provider: &Provider, algs: &[&str]) -> bedside_server::config::OidcConfig {
    serde_json::from_value(json!({
        "issuer": provider.issuer(),
        "client_id": "bedside",
        "client_secret": "bedside-test-secret",
        "display_name": "Test IdP",
        "roles_claim": "groups",
        "admin_values": ["bedside-admins"],
        "clinician_values": ["bedside-clinicians"],
        "allowed_algs": algs,
        "create_users": true,
        "scopes": ["email", "profile", "groups"]
    }))
    .unwrap()
}

fn location(response: &reqwest::Response) -> String {
    response
        .headers()
        .get("location")
        .unwrap_or_else(|| panic!("{} without a Location", response.status()))
        .to_str()
        .unwrap()
        .to_owned()
}

/// The browser's side of a sign-in as `login`: Bedside's redirect, the
/// provider's forms, the callback. Returns where the callback sends the
/// browser (the login page with `#oidc=…` or `#oidc_error=…`) and the
/// state cookie, for replays.
/// `location` resolved against the page it came from (the provider sends
/// relative redirects).
fn resolve(from: &str, location: &str) -> String {
    if location.starts_with("http://") || location.starts_with("https://") {
        return location.to_owned();
    }
    let origin_end = from[8..].find('/').map_or(from.len(), |i| i + 8);
    format!("{}{location}", &from[..origin_end])
}

async fn browse(app: &TestApp, login: &str, send_cookie: bool) -> (String, String, String) {
    let start = app
        .client
        .get(app.url("/api/v1/auth/oidc/login?next=/today"))
        .send()
        .await
        .unwrap();
    assert_eq!(start.status(), StatusCode::SEE_OTHER);
    let cookie = start
        .headers()
        .get("set-cookie")
        .unwrap()
        .to_str()
        .unwrap()
        .split(';')
        .next()
        .unwrap()
        .to_owned();
    assert!(cookie.starts_with("bedside_oidc_state="));
    // The provider's pages, with their own cookies, no automatic redirects.
    let browser = reqwest::Client::builder()
        .cookie_store(true)
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let mut url = location(&start);
    assert!(url.contains("code_challenge_method=S256"), "PKCE: {url}");
    let callback = loop {
        if url.starts_with(REDIRECT) {
            break url;
        }
        let page = browser.get(&url).send().await.unwrap();
        if page.status().is_redirection() {
            url = resolve(&url, &location(&page));
            continue;
        }
        // An interaction page: log in, or consent.
        let html = page.text().await.unwrap();
        let form = if html.contains(r#"name="prompt" value="login""#) {
            vec![("prompt", "login"), ("login", login), ("password", "any")]
        } else {
            assert!(
                html.contains(r#"value="consent""#),
                "an unexpected page: {html}"
            );
            vec![("prompt", "consent")]
        };
        let posted = browser.post(&url).form(&form).send().await.unwrap();
        url = resolve(&url, &location(&posted));
    };
    let path = &callback["http://127.0.0.1:8080".len()..];
    let mut request = app.client.get(app.url(path));
    if send_cookie {
        request = request.header("cookie", &cookie);
    }
    let landed = request.send().await.unwrap();
    assert_eq!(landed.status(), StatusCode::SEE_OTHER);
    (location(&landed), cookie, path.to_owned())
}

/// Signs in as `login` and exchanges the hand-off code: the tokens, or the
/// error code the login page was given.
async fn sign_in(app: &TestApp, login: &str) -> Result<Value, String> {
    let (landed, cookie, _) = browse(app, login, true).await;
    if let Some(error) = landed.split("#oidc_error=").nth(1) {
        return Err(error.to_owned());
    }
    assert!(landed.starts_with("/login?next=%2Ftoday#oidc="), "{landed}");
    let code = landed.split("#oidc=").nth(1).unwrap();
    let exchange = |cookie: Option<&str>| {
        let mut request = app
            .client
            .post(app.url("/api/v1/auth/oidc/exchange"))
            .json(&json!({ "code": code }));
        if let Some(cookie) = cookie {
            request = request.header("cookie", cookie);
        }
        request.send()
    };
    // Another browser (no state cookie) cannot use the code.
    assert_eq!(
        exchange(None).await.unwrap().status(),
        StatusCode::UNAUTHORIZED
    );
    let response = exchange(Some(&cookie)).await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let tokens: Value = response.json().await.unwrap();
    // The code is good once.
    assert_eq!(
        exchange(Some(&cookie)).await.unwrap().status(),
        StatusCode::UNAUTHORIZED
    );
    Ok(tokens)
}

async fn me(app: &TestApp, tokens: &Value) -> Value {
    let response = send(
        app,
        Method::GET,
        "/api/v1/me",
        tokens["access_token"].as_str(),
        None,
    )
    .await;
    assert_eq!(response.status(), StatusCode::OK);
    response.json().await.unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn staff_sign_in_through_the_clinics_provider_with_their_mapped_role() {
    let accounts_for = |admin: &str, clinician: &str| {
        json!({
            "ada": { "email": admin, "name": "Ada Admin", "groups": ["staff", "bedside-admins"] },
            "cleo": { "email": "cleo.new@clinic.test", "name": "Cleo New", "groups": ["bedside-clinicians"] },
            "nina": { "email": "nina@clinic.test", "name": "Nina Nogroup", "groups": ["staff"] },
            "mallory": { "email": clinician, "name": "Mallory", "groups": ["bedside-admins"] },
            "eve": { "email": admin, "name": "Eve", "groups": ["bedside-admins"] },
            "vera": { "email": "vera@clinic.test", "name": "Vera", "groups": ["bedside-clinicians"], "email_verified": false },
        })
    };
    // The provider's accounts have fixed addresses; Bedside accounts with
    // two of them are made below.
    let provider = Provider::start(
        &accounts_for("ada.oidc@clinic.test", "carl.oidc@clinic.test"),
        "RS256",
    );
    let config = oidc_config(&provider, &["RS256"]);
    let app = TestApp::spawn_with(|c| c.auth.oidc = Some(config)).await;
    let existing_admin = bedside_test_support::world::staff(
        &app,
        bedside_records::domain::StaffRole::Admin,
        "ada.oidc@clinic.test",
        "Ada",
    )
    .await;
    bedside_test_support::world::staff(
        &app,
        bedside_records::domain::StaffRole::Clinician,
        "carl.oidc@clinic.test",
        "Carl",
    )
    .await;

    let clinic: Value = send(&app, Method::GET, "/api/v1/clinic", None, None)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(
        clinic["sign_in"],
        json!({ "password": true, "provider": "Test IdP" })
    );

    // An existing admin, matched by verified e-mail, then by subject.
    let tokens = sign_in(&app, "ada").await.expect("ada signs in");
    let ada = me(&app, &tokens).await;
    assert_eq!(ada["id"], existing_admin.user.0.to_string());
    assert_eq!(ada["role"], "admin");
    assert_eq!(
        me(&app, &sign_in(&app, "ada").await.unwrap()).await["id"],
        ada["id"]
    );
    // A new clinician is created with a practitioner record.
    let cleo = me(&app, &sign_in(&app, "cleo").await.expect("cleo signs in")).await;
    assert_eq!(
        (cleo["role"].as_str(), cleo["email"].as_str()),
        (Some("clinician"), Some("cleo.new@clinic.test"))
    );
    assert!(cleo["practitioner_id"].is_string());
    // No mapped group: refused. A provider role that contradicts the
    // Bedside account's: refused.
    assert_eq!(sign_in(&app, "nina").await.unwrap_err(), "no_role");
    assert_eq!(sign_in(&app, "mallory").await.unwrap_err(), "role_mismatch");
    // Another provider account with Ada's (already linked) e-mail does not
    // get Ada's account; an e-mail the provider does not vouch for matches
    // nobody.
    assert_eq!(
        sign_in(&app, "eve").await.unwrap_err(),
        "account_linked_elsewhere"
    );
    assert_eq!(sign_in(&app, "vera").await.unwrap_err(), "missing_claims");
    let refused: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM audit_log WHERE action = 'auth.oidc_login' AND outcome = 'denied'",
    )
    .fetch_one(&app.db)
    .await
    .unwrap();
    assert_eq!(refused, 4);
    let first: Option<uuid::Uuid> = sqlx::query_scalar(
        "SELECT actor_id FROM audit_log WHERE action = 'auth.oidc_login' AND outcome = 'allowed' ORDER BY id LIMIT 1",
    )
    .fetch_one(&app.db)
    .await
    .unwrap();
    assert_eq!(
        first,
        Some(existing_admin.user.0),
        "a sign-in is audited with its user"
    );

    // The state is bound to the browser and good once.
    let (landed, cookie, callback) = browse(&app, "ada", false).await;
    assert_eq!(landed, "/login#oidc_error=state_mismatch");
    // The same callback from the browser that started it goes through…
    let with_cookie = app
        .client
        .get(app.url(&callback))
        .header("cookie", &cookie)
        .send()
        .await
        .unwrap();
    assert!(
        location(&with_cookie).contains("#oidc="),
        "{}",
        location(&with_cookie)
    );
    // …once: a replay finds its state used up.
    let replay = app
        .client
        .get(app.url(&callback))
        .header("cookie", &cookie)
        .send()
        .await
        .unwrap();
    assert_eq!(location(&replay), "/login#oidc_error=expired");
    app.stop().await.expect("stop");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn id_tokens_must_be_signed_with_a_pinned_algorithm_and_passwords_can_be_switched_off() {
    let accounts = json!({ "ada": { "email": "ada.pin@clinic.test", "name": "Ada", "groups": ["bedside-admins"] } });
    let provider = Provider::start(&accounts, "RS256");
    // The clinic pins ES256; the provider signs with RS256.
    let config = oidc_config(&provider, &["ES256"]);
    let app = TestApp::spawn_with(|c| {
        c.auth.oidc = Some(config);
        c.auth.password_login = false;
    })
    .await;
    bedside_test_support::world::staff(
        &app,
        bedside_records::domain::StaffRole::Admin,
        "ada.pin@clinic.test",
        "Ada",
    )
    .await;
    assert_eq!(sign_in(&app, "ada").await.unwrap_err(), "invalid_id_token");
    let login = send(
        &app,
        Method::POST,
        "/api/v1/auth/login",
        None,
        Some(&json!({
            "email": "ada.pin@clinic.test", "password": bedside_test_support::world::PASSWORD
        })),
    )
    .await;
    assert_eq!(login.status(), StatusCode::FORBIDDEN);
    assert_eq!(
        login.json::<Value>().await.unwrap()["code"],
        "password_login_disabled"
    );
    let clinic: Value = send(&app, Method::GET, "/api/v1/clinic", None, None)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(clinic["sign_in"]["password"], false);
    app.stop().await.expect("stop");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_a_provider_the_sign_in_route_says_so() {
    let app = TestApp::spawn().await;
    let response = send(&app, Method::GET, "/api/v1/auth/oidc/login", None, None).await;
    assert_eq!(response.status(), StatusCode::NOT_FOUND);
    assert_eq!(
        response.json::<Value>().await.unwrap()["code"],
        "oidc_not_configured"
    );
    app.stop().await.expect("stop");
}
