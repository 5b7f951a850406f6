//! Clinicians' calendar feeds (RFC 5545 iCalendar over a secret URL that
//! calendar applications subscribe to).
//!
//! A feed leaves Bedside for whatever calendar service the clinician uses,
//! so its events name no patient and no reason: "Video visit" or "Clinic
//! visit", the time, and a link to the visit page in Bedside, where the
//! clinic's access rules apply. Cancelled visits stay in the feed as
//! cancelled (so subscribed calendars remove them); each event's SEQUENCE
//! is the appointment's version, so a moved visit updates in place.

use axum::Json;
use axum::extract::State;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use bedside_records::appointment::AppointmentStatus;
use bedside_records::audit::Outcome;
use bedside_records::calendar_feeds;
use bedside_records::domain::AppointmentKind;
use chrono::Utc;
use icalendar::{Calendar, Component, Event, EventLike, EventStatus};
use serde::Serialize;

use crate::app::AppState;
use crate::auth::Caller;
use crate::error::ApiError;
use crate::extract::ApiPath;
use crate::policy::{Access, Ctx};

/// How far back and ahead a feed reaches, in days.
const DAYS_BACK: i64 = 30;
const DAYS_AHEAD: i64 = 180;

/// A new feed's address.
#[derive(Serialize, utoipa::ToSchema)]
pub(crate) struct CalendarFeed {
    /// The secret URL to subscribe to (shown once).
    url: String,
}

/// The caller's own practitioner record, decided and audited: calendar
/// feeds are for clinicians' own schedules.
async fn own_schedule(
    state: &AppState,
    ctx: &Ctx,
    action: &str,
) -> Result<bedside_records::ids::PractitionerId, ApiError> {
    let caller = ctx.caller_or_deny(state, Access::AnyStaff, action).await?;
    match caller {
        Caller::Staff {
            practitioner: Some(practitioner),
            ..
        } => {
            ctx.allow(state, Access::ScheduleOf(practitioner), action)
                .await?;
            Ok(practitioner)
        }
        _ => {
            ctx.audit_denied(state, &caller, None, action).await?;
            Err(ApiError::new(
                StatusCode::FORBIDDEN,
                "forbidden",
                "calendar feeds are for clinicians' own schedules",
            ))
        }
    }
}

/// Creates the caller's calendar feed, revoking the previous one.
#[utoipa::path(post, path = "/api/v1/me/calendar-feed", tag = "appointments", security(("bearer" = [])), responses(
    (status = 201, body = CalendarFeed), (status = 403, body = crate::error::ErrorBody)))]
pub(crate) async fn issue(
    State(state): State<AppState>,
    ctx: Ctx,
) -> Result<(StatusCode, Json<CalendarFeed>), ApiError> {
    let practitioner = own_schedule(&state, &ctx, "calendar_feed.issue").await?;
    let token = calendar_feeds::issue(state.db(), practitioner).await?;
    let base = state.settings().public_base_url.trim_end_matches('/');
    Ok((
        StatusCode::CREATED,
        Json(CalendarFeed {
            url: format!("{base}/calendar/{token}.ics"),
        }),
    ))
}

/// Revokes the caller's calendar feed (there may be none: still 204).
#[utoipa::path(delete, path = "/api/v1/me/calendar-feed", tag = "appointments", security(("bearer" = [])), responses(
    (status = 204), (status = 403, body = crate::error::ErrorBody)))]
pub(crate) async fn revoke(
    State(state): State<AppState>,
    ctx: Ctx,
) -> Result<StatusCode, ApiError> {
    let practitioner = own_schedule(&state, &ctx, "calendar_feed.revoke").await?;
    calendar_feeds::revoke(state.db(), practitioner).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// `GET /calendar/{token}.ics`: the feed (the token is the credential).
pub(crate) async fn feed(
    State(state): State<AppState>,
    ctx: Ctx,
    ApiPath(file): ApiPath<String>,
) -> Result<Response, ApiError> {
    let token = file.strip_suffix(".ics").unwrap_or(&file);
    let Some((practitioner, user)) = calendar_feeds::resolve(state.db(), token).await? else {
        ctx.audit_attempt(
            &state,
            "calendar",
            None,
            "calendar_feed.read",
            Outcome::Denied,
        )
        .await?;
        return Err(ApiError::not_found("calendar feed"));
    };
    let now = Utc::now();
    let visits =
        calendar_feeds::appointments_of(state.db(), practitioner, now, DAYS_BACK, DAYS_AHEAD)
            .await?;
    ctx.audit_for_user(&state, user, "clinician", "calendar_feed.read")
        .await?;
    let settings = state.settings();
    let base = settings.public_base_url.trim_end_matches('/');
    let host = base.split("://").nth(1).unwrap_or(base);
    let mut calendar = Calendar::new();
    calendar
        .name(&format!("{} — visits", settings.clinic_name))
        .timezone(settings.time_zone.name())
        .append_property(("REFRESH-INTERVAL;VALUE=DURATION", "PT15M"))
        .append_property(("X-PUBLISHED-TTL", "PT15M"));
    for visit in visits {
        let summary = match visit.kind {
            AppointmentKind::Video => "Video visit",
            AppointmentKind::InPerson => "Clinic visit",
        };
        let url = format!("{base}/visits/{}", visit.id);
        let mut event = Event::new();
        event
            .uid(&format!("{}@{host}", visit.id))
            .summary(summary)
            .description(&format!("Open in Bedside: {url}"))
            .url(&url)
            .starts(visit.starts_at)
            .ends(visit.ends_at)
            .timestamp(visit.updated_at)
            .sequence(u32::try_from(visit.version - 1).unwrap_or(0))
            .status(match visit.status {
                AppointmentStatus::Cancelled | AppointmentStatus::NoShow => EventStatus::Cancelled,
                _ => EventStatus::Confirmed,
            });
        calendar.push(event.done());
    }
    let mut response = calendar.done().to_string().into_response();
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/calendar; charset=utf-8"),
    );
    response.headers_mut().insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static("private, max-age=300"),
    );
    Ok(response)
}
