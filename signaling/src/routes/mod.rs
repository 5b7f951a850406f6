//! The REST routes under `/api/v1`, one module per resource. Each handler
//! states its access rule through [`crate::policy::Ctx`].

pub(crate) mod appointments;
pub(crate) mod audit;
pub(crate) mod auth;
pub(crate) mod calendar;
pub(crate) mod devices;
pub(crate) mod guests;
pub(crate) mod notes;
pub(crate) mod oidc;
pub(crate) mod patients;
pub(crate) mod people;
pub(crate) mod privacy;
pub(crate) mod system;
pub(crate) mod visit;
pub(crate) mod vitals;

use axum::Router;
use axum::routing::{delete, get, patch, post, put};

use crate::app::AppState;
use crate::error::ApiError;

pub(crate) fn api_router() -> Router<AppState> {
    Router::new()
        .route("/openapi.json", get(crate::openapi::serve))
        .route("/clinic", get(system::clinic))
        .route("/auth/login", post(auth::login))
        .route("/auth/login/totp", post(auth::login_totp))
        .route("/auth/refresh", post(auth::refresh))
        .route("/auth/logout", post(auth::logout))
        .route("/auth/fhir-token", post(auth::fhir_token))
        .route("/auth/oidc/login", get(oidc::login))
        .route("/auth/oidc/callback", get(oidc::callback))
        .route("/auth/oidc/exchange", post(oidc::exchange))
        .route("/auth/totp/enroll", post(auth::totp_enroll))
        .route("/auth/totp/confirm", post(auth::totp_confirm))
        .route("/auth/join", post(visit::join))
        .route("/auth/guest", post(guests::redeem))
        .route("/me", get(auth::me))
        .route("/visit", get(visit::current))
        .route("/visit/consent", post(visit::consent))
        .route("/users", get(people::list_users).post(people::create_user))
        .route("/users/{id}", patch(people::update_user))
        .route("/users/{id}/totp/reset", post(people::reset_totp))
        .route("/me/password", post(people::change_password))
        .route(
            "/me/calendar-feed",
            post(calendar::issue).delete(calendar::revoke),
        )
        .route("/practitioners", get(people::list_practitioners))
        .route("/patients", get(patients::list).post(patients::create))
        .route("/patients/{id}", get(patients::read).put(patients::update))
        .route("/patients/{id}/devices", get(patients::devices))
        .route("/patients/{id}/export", get(privacy::export))
        .route(
            "/patients/{id}/erasure",
            get(privacy::erasure_of).post(privacy::erase),
        )
        .route("/patients/{id}/appointments", get(patients::appointments))
        .route("/patients/{id}/notes", get(patients::notes))
        .route(
            "/patients/{id}/consents",
            get(patients::consents).post(patients::record_consent),
        )
        .route(
            "/patients/{id}/care-team",
            get(patients::care_team).post(patients::add_to_care_team),
        )
        .route(
            "/patients/{id}/care-team/{practitioner_id}",
            delete(patients::remove_from_care_team),
        )
        .route("/devices", get(devices::list).post(devices::provision))
        .route(
            "/devices/{id}/assignment",
            post(devices::assign).delete(devices::unassign),
        )
        .route(
            "/appointments",
            get(appointments::list).post(appointments::book),
        )
        .route("/appointments/{id}", get(appointments::read))
        .route(
            "/appointments/{id}/transitions",
            post(appointments::transition),
        )
        .route(
            "/appointments/{id}/join-link",
            post(appointments::new_join_link),
        )
        .route(
            "/appointments/{id}/guest-links",
            get(guests::list).post(guests::issue),
        )
        .route(
            "/appointments/{id}/guest-links/{link_id}",
            delete(guests::revoke),
        )
        .route(
            "/appointments/{id}/notes",
            get(notes::list_for_appointment).post(notes::create),
        )
        .route("/notes/{id}", put(notes::update))
        .route("/notes/{id}/sign", post(notes::sign))
        .route("/notes/{id}/amendments", post(notes::amend))
        .route("/audit", get(audit::list))
        .route("/patients/{id}/vitals/latest", get(vitals::latest))
        .route("/patients/{id}/vitals/{metric}", get(vitals::history))
        .route("/patients/{id}/news2", get(vitals::news2_now))
        .route(
            "/patients/{id}/news2/settings",
            get(vitals::news2_settings).put(vitals::set_news2_settings),
        )
        .route("/patients/{id}/alerts", get(vitals::alerts))
        .route("/patients/{id}/devices/status", get(vitals::device_status))
        .route("/patients/{id}/thresholds", get(vitals::thresholds))
        .route(
            "/patients/{id}/thresholds/{metric}",
            put(vitals::set_threshold),
        )
        .route("/alerts/{id}/acknowledge", post(vitals::acknowledge))
        .fallback(|| async { ApiError::not_found("route") })
}
