//! Reading the audit log (admins).

use axum::Json;
use axum::extract::State;
use bedside_records::audit::{self, AuditEntry, AuditFilter};
use bedside_records::ids::{PatientId, UserId};
use chrono::{DateTime, Utc};
use serde::Deserialize;

use crate::app::AppState;
use crate::error::ApiError;
use crate::extract::{ApiQuery, optional_param};
use crate::policy::{Access, Ctx};

/// Filters.
#[derive(Deserialize, utoipa::IntoParams)]
pub(crate) struct AuditQuery {
    /// Only this patient.
    patient_id: Option<String>,
    /// Only this actor.
    actor_id: Option<String>,
    /// From (RFC 3339, inclusive).
    from: Option<String>,
    /// To (RFC 3339, exclusive).
    to: Option<String>,
    /// Rows older than this id (paging).
    before_id: Option<i64>,
    /// At most this many rows (default 100, max 1000).
    limit: Option<i64>,
}

/// The audit log, newest first.
#[utoipa::path(get, path = "/api/v1/audit", tag = "audit", security(("bearer" = [])), params(AuditQuery), responses(
    (status = 200, body = [AuditEntry]), (status = 403, body = crate::error::ErrorBody), (status = 422, body = crate::error::ErrorBody)))]
pub(crate) async fn list(
    State(state): State<AppState>,
    ctx: Ctx,
    ApiQuery(query): ApiQuery<AuditQuery>,
) -> Result<Json<Vec<AuditEntry>>, ApiError> {
    ctx.allow(&state, Access::Admin, "audit.read").await?;
    let filter = AuditFilter {
        patient_id: optional_param::<PatientId>(
            "patient_id",
            query.patient_id.as_deref(),
            "a patient id",
        )?,
        actor_id: optional_param::<UserId>("actor_id", query.actor_id.as_deref(), "a user id")?,
        from: optional_param::<DateTime<Utc>>("from", query.from.as_deref(), "an RFC 3339 time")?,
        to: optional_param::<DateTime<Utc>>("to", query.to.as_deref(), "an RFC 3339 time")?,
        before_id: query.before_id,
        limit: query.limit.unwrap_or(100),
    };
    Ok(Json(audit::list(state.db(), &filter).await?))
}
