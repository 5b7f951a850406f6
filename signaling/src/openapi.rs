//! The OpenAPI 3 document of `/api/v1`, generated from the handlers'
//! annotations and the types they exchange, served at `/api/v1/openapi.json`.

use axum::Json;
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{Modify, OpenApi};

use crate::routes::{
    appointments, audit, auth, calendar, devices, guests, notes, oidc, patients, people, privacy,
    system, visit, vitals,
};

struct BearerAuth;

impl Modify for BearerAuth {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .bearer_format("JWT")
                    .build(),
            ),
        );
    }
}

/// The API description.
#[derive(OpenApi)]
#[openapi(
    info(title = "Bedside API", description = "REST API of Bedside, a telemedicine and device-streaming server. Every error answers `{code, message, request_id, field}`."),
    paths(
        system::healthz, system::readyz, system::clinic,
        auth::login, auth::login_totp, auth::refresh, auth::logout, auth::fhir_token, oidc::login, oidc::exchange, auth::me, auth::totp_enroll, auth::totp_confirm,
        visit::join, visit::current, visit::consent,
        guests::issue, guests::list, guests::revoke, guests::redeem,
        people::list_users, people::create_user, people::update_user, people::reset_totp, people::change_password,
        people::list_practitioners,
        patients::list, patients::create, patients::read, patients::update, patients::devices, patients::appointments,
        patients::notes, patients::consents, patients::record_consent, patients::care_team, patients::add_to_care_team,
        patients::remove_from_care_team,
        privacy::export, privacy::erase, privacy::erasure_of,
        calendar::issue, calendar::revoke,
        devices::list, devices::provision, devices::assign, devices::unassign,
        appointments::list, appointments::book, appointments::read, appointments::transition, appointments::new_join_link,
        notes::list_for_appointment, notes::create, notes::update, notes::sign, notes::amend,
        audit::list,
        vitals::latest, vitals::history, vitals::news2_now, vitals::alerts, vitals::acknowledge, vitals::thresholds,
        vitals::set_threshold, vitals::news2_settings, vitals::set_news2_settings, vitals::device_status,
    ),
    components(schemas(crate::error::ErrorBody)),
    modifiers(&BearerAuth),
    tags(
        (name = "auth", description = "Staff sign-in, sessions and two-step verification"),
        (name = "visit", description = "The patient's and guests' side of a video visit"),
        (name = "people", description = "Staff accounts and practitioners"),
        (name = "patients", description = "Patient records"),
        (name = "devices", description = "Home devices"),
        (name = "appointments", description = "Scheduling and the visit lifecycle"),
        (name = "notes", description = "Visit notes"),
        (name = "audit", description = "The audit log"),
        (name = "privacy", description = "Data-protection requests: export and erasure"),
        (name = "vitals", description = "Vitals, NEWS2, alerts and thresholds"),
        (name = "system", description = "Health and clinic facts"),
    )
)]
pub struct ApiDoc;

/// The document as JSON (tests compare it with their route tables).
pub fn document_json() -> serde_json::Value {
    serde_json::to_value(ApiDoc::openapi()).expect("the API document serializes")
}

/// Serves the document.
pub(crate) async fn serve() -> Json<utoipa::openapi::OpenApi> {
    Json(ApiDoc::openapi())
}
