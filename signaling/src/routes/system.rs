//! Liveness, readiness and clinic facts.

use axum::Json;
use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::routing::get;
use chrono::{DateTime, Utc};
use serde::Serialize;

use crate::app::AppState;

pub(crate) fn router() -> Router<AppState> {
    Router::new()
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
}

/// Liveness: the process answers.
#[utoipa::path(get, path = "/healthz", tag = "system", responses((status = 200, description = "alive")))]
pub(crate) async fn healthz() -> &'static str {
    "ok"
}

/// Readiness: the database answers, every embedded migration is applied,
/// and every registered part (such as the device gateway) says it is ready.
/// The answer names each check: `ok` or why not.
#[utoipa::path(get, path = "/readyz", tag = "system", responses(
    (status = 200, description = "ready: every check is `ok`"),
    (status = 503, description = "not ready: the failing checks say why")))]
pub(crate) async fn readyz(State(state): State<AppState>) -> impl IntoResponse {
    let mut checks = std::collections::BTreeMap::new();
    match bedside_records_ready(&state).await {
        Ok(applied) => {
            let expected = state.settings().expected_migrations as i64;
            checks.insert("database", "ok".to_owned());
            checks.insert(
                "migrations",
                if applied >= expected {
                    "ok".to_owned()
                } else {
                    format!("{applied} of {expected} migrations applied")
                },
            );
        }
        Err(reason) => {
            checks.insert("database", reason);
            checks.insert("migrations", "unknown".to_owned());
        }
    }
    for (name, ready) in state.readiness_checks() {
        checks.insert(
            name,
            if ready {
                "ok".to_owned()
            } else {
                "not ready".to_owned()
            },
        );
    }
    let status = if checks.values().all(|v| v == "ok") {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (status, Json(checks))
}

async fn bedside_records_ready(state: &AppState) -> Result<i64, String> {
    let query = sqlx::query_scalar::<_, i64>("SELECT count(*) FROM _sqlx_migrations WHERE success")
        .fetch_one(state.db());
    match tokio::time::timeout(std::time::Duration::from_secs(2), query).await {
        Ok(Ok(n)) => Ok(n),
        Ok(Err(sqlx::Error::Database(_))) => Ok(0), // reachable, schema table missing
        Ok(Err(_)) => Err("unreachable".to_owned()),
        Err(_) => Err("timed out".to_owned()),
    }
}

/// Facts about the clinic the pages need before login.
#[derive(Serialize, utoipa::ToSchema)]
pub(crate) struct Clinic {
    /// Display name.
    name: String,
    /// IANA time zone, e.g. `Europe/Berlin`.
    time_zone: String,
    /// Server time (UTC), so clients can spot a wrong clock.
    now: DateTime<Utc>,
    /// How staff sign in.
    sign_in: SignIn,
}

/// The ways staff may sign in.
#[derive(Serialize, utoipa::ToSchema)]
pub(crate) struct SignIn {
    /// E-mail and password (with TOTP when enrolled).
    password: bool,
    /// The identity provider's name, when sign-in through it is set up
    /// (`GET /api/v1/auth/oidc/login`).
    provider: Option<String>,
}

/// The clinic's name and time zone.
#[utoipa::path(get, path = "/api/v1/clinic", tag = "system", responses((status = 200, body = Clinic)))]
pub(crate) async fn clinic(State(state): State<AppState>) -> Json<Clinic> {
    let settings = state.settings();
    Json(Clinic {
        name: settings.clinic_name.clone(),
        time_zone: settings.time_zone.name().to_owned(),
        now: Utc::now(),
        sign_in: SignIn {
            password: settings.password_login,
            provider: settings.oidc.as_ref().map(|o| o.display_name.clone()),
        },
    })
}
