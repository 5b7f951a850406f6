//! Guests of a video visit (an interpreter, a family member): the clinician
//! issues a single-use, revocable guest link; the guest redeems it with
//! their name for a session that reaches that visit's call and nothing else,
//! and waits in the waiting room like the patient.

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use bedside_records::appointments;
use bedside_records::audit::Outcome;
use bedside_records::domain::AppointmentKind;
use bedside_records::guest_links::{self, GuestLink, Redemption};
use bedside_records::ids::AppointmentId;
use chrono::Utc;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::app::AppState;
use crate::auth::Caller;
use crate::auth::tokens::TokenKind;
use crate::error::ApiError;
use crate::extract::{ApiJson, ApiPath};
use crate::policy::Ctx;
use crate::routes::appointments::{guarded, join_window};
use crate::visits::Person;

/// What to call the guest.
#[derive(Deserialize, utoipa::ToSchema)]
pub(crate) struct NewGuestLink {
    /// 1–80 characters, e.g. "Interpreter" or "Daughter".
    label: String,
}

/// A new guest link: the URL to send, shown once.
#[derive(Serialize, utoipa::ToSchema)]
pub(crate) struct IssuedGuestLink {
    /// The link.
    link: GuestLink,
    /// The URL the guest opens (single use).
    join_url: String,
}

fn label_of(raw: &str, field: &str) -> Result<String, ApiError> {
    let label = raw.trim();
    if label.is_empty() || label.chars().count() > 80 || label.chars().any(char::is_control) {
        return Err(ApiError::invalid(
            field,
            format!("{field}: 1 to 80 characters, no control characters"),
        ));
    }
    Ok(label.to_owned())
}

/// Invites a guest into a video visit (the clinician of the visit or an admin).
#[utoipa::path(post, path = "/api/v1/appointments/{id}/guest-links", tag = "visit", security(("bearer" = [])), params(("id" = String, Path, format = Uuid)), request_body = NewGuestLink, responses(
    (status = 201, body = IssuedGuestLink), (status = 409, body = crate::error::ErrorBody, description = "`not_a_video_visit` or `visit_over`")))]
pub(crate) async fn issue(
    State(state): State<AppState>,
    ctx: Ctx,
    ApiPath(id): ApiPath<AppointmentId>,
    ApiJson(body): ApiJson<NewGuestLink>,
) -> Result<(StatusCode, Json<IssuedGuestLink>), ApiError> {
    let label = label_of(&body.label, "label")?;
    let appointment = guarded(&state, &ctx, id, true, "visit.guest_link.issue").await?;
    if appointment.kind != AppointmentKind::Video {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            "not_a_video_visit",
            "only video visits have guests",
        ));
    }
    if appointment.status.is_final() {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            "visit_over",
            "this visit has ended",
        ));
    }
    let Caller::Staff { user, .. } = ctx.caller()? else {
        return Err(ApiError::forbidden());
    };
    let (link, token) = guest_links::issue(state.db(), id, &label, user).await?;
    let join_url = format!(
        "{}/guest#t={token}",
        state.settings().public_base_url.trim_end_matches('/')
    );
    Ok((
        StatusCode::CREATED,
        Json(IssuedGuestLink { link, join_url }),
    ))
}

/// The guest links of a visit.
#[utoipa::path(get, path = "/api/v1/appointments/{id}/guest-links", tag = "visit", security(("bearer" = [])), params(("id" = String, Path, format = Uuid)), responses(
    (status = 200, body = Vec<GuestLink>)))]
pub(crate) async fn list(
    State(state): State<AppState>,
    ctx: Ctx,
    ApiPath(id): ApiPath<AppointmentId>,
) -> Result<Json<Vec<GuestLink>>, ApiError> {
    guarded(&state, &ctx, id, true, "visit.guest_link.list").await?;
    Ok(Json(guest_links::list(state.db(), id).await?))
}

/// Revokes a guest link: unused, it no longer works; used, the guest is
/// taken out of the call and their session ends.
#[utoipa::path(delete, path = "/api/v1/appointments/{id}/guest-links/{link_id}", tag = "visit", security(("bearer" = [])), params(("id" = String, Path, format = Uuid), ("link_id" = String, Path, format = Uuid)), responses(
    (status = 200, body = GuestLink), (status = 404, body = crate::error::ErrorBody)))]
pub(crate) async fn revoke(
    State(state): State<AppState>,
    ctx: Ctx,
    ApiPath((id, link_id)): ApiPath<(AppointmentId, Uuid)>,
) -> Result<Json<GuestLink>, ApiError> {
    guarded(&state, &ctx, id, true, "visit.guest_link.revoke").await?;
    let link = guest_links::revoke(state.db(), id, link_id)
        .await?
        .ok_or_else(|| ApiError::not_found("guest link"))?;
    if let Some(participant) = state.visits().expel(id, Person::Guest(link_id))
        && let Some(sfu) = state.sfu()
    {
        sfu.leave(participant);
    }
    Ok(Json(link))
}

/// A guest link's token and the guest's name.
#[derive(Deserialize, utoipa::ToSchema)]
pub(crate) struct GuestJoinRequest {
    /// The token (the part after `#t=`).
    token: String,
    /// The guest's name, shown to the others (1–80 characters).
    name: String,
}

/// A guest's session.
#[derive(Serialize, utoipa::ToSchema)]
pub(crate) struct GuestSession {
    /// Bearer token for the visit's call only.
    access_token: String,
    /// Seconds until it expires.
    expires_in: u64,
    /// The visit.
    #[schema(value_type = String, format = Uuid)]
    appointment_id: AppointmentId,
}

/// Redeems a guest link (once) for a session scoped to the visit's call.
#[utoipa::path(post, path = "/api/v1/auth/guest", tag = "visit", request_body = GuestJoinRequest, responses(
    (status = 200, body = GuestSession),
    (status = 401, body = crate::error::ErrorBody, description = "`invalid_guest_link` (unknown or revoked)"),
    (status = 403, body = crate::error::ErrorBody, description = "`join_link_early` or `join_link_expired`"),
    (status = 409, body = crate::error::ErrorBody, description = "`guest_link_used`: someone already used this link")))]
pub(crate) async fn redeem(
    State(state): State<AppState>,
    ctx: Ctx,
    ApiJson(body): ApiJson<GuestJoinRequest>,
) -> Result<Json<GuestSession>, ApiError> {
    let name = label_of(&body.name, "name")?;
    let invalid = || {
        ApiError::new(
            StatusCode::UNAUTHORIZED,
            "invalid_guest_link",
            "this guest link is not valid; ask the clinic for a new one",
        )
    };
    // The window is checked before the link is used up, so an early guest
    // can come back with the same link.
    let Some(found) = guest_links::find(state.db(), body.token.trim()).await? else {
        ctx.audit_attempt(
            &state,
            "anonymous",
            None,
            "visit.guest_join",
            Outcome::Denied,
        )
        .await?;
        return Err(invalid());
    };
    let appointment = appointments::get(state.db(), found).await?;
    let (valid_from, valid_until) = join_window(state.settings(), &appointment);
    let now = Utc::now();
    let patient = Some(appointment.patient_id);
    let redeemed = if now < valid_from {
        Err(ApiError::new(
            StatusCode::FORBIDDEN,
            "join_link_early",
            "the visit has not opened yet; try again closer to its time",
        ))
    } else if now >= valid_until || appointment.status.is_final() {
        Err(ApiError::new(
            StatusCode::FORBIDDEN,
            "join_link_expired",
            "this visit has ended",
        ))
    } else {
        match guest_links::redeem(state.db(), body.token.trim(), &name).await? {
            Redemption::Redeemed(link) => Ok(link),
            Redemption::AlreadyUsed => Err(ApiError::new(
                StatusCode::CONFLICT,
                "guest_link_used",
                "this guest link was already used; ask the clinician for a new one",
            )),
            Redemption::Revoked | Redemption::Unknown => Err(invalid()),
        }
    };
    let link = match redeemed {
        Ok(link) => link,
        Err(refusal) => {
            ctx.audit_attempt(
                &state,
                "guest",
                patient,
                "visit.guest_join",
                Outcome::Denied,
            )
            .await?;
            return Err(refusal);
        }
    };
    ctx.audit_attempt(
        &state,
        "guest",
        patient,
        "visit.guest_join",
        Outcome::Allowed,
    )
    .await?;
    // A guest cannot exchange the (used) link again, so the session lasts
    // until the visit's window closes, not the 15 minutes of an access
    // token; revoking the link ends it at once (checked on every use).
    let ttl = (valid_until - now)
        .to_std()
        .unwrap_or_default()
        .max(std::time::Duration::from_secs(1));
    let keys = state.keys();
    let mut claims = keys.claims(TokenKind::Guest, link.id, ttl);
    claims.apt = Some(appointment.id);
    claims.sid = Some(link.id);
    Ok(Json(GuestSession {
        access_token: keys.sign(&claims),
        expires_in: ttl.as_secs(),
        appointment_id: appointment.id,
    }))
}
