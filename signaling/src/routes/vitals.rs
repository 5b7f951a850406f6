//! A patient's vitals, NEWS2, alerts and thresholds for the dashboard and
//! the chart page. Reads are audited per patient like the rest of the record.

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use bedside_alerts::news2::{self, SpO2Scale};
use bedside_alerts::rules;
use bedside_records::ids::PatientId;
use bedside_vitals_store::alerts::{self as alert_store, Alert};
use bedside_vitals_store::metric::Metric;
use bedside_vitals_store::queries::{self, Bucket, View};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::app::AppState;
use crate::error::ApiError;
use crate::extract::{ApiJson, ApiPath, ApiQuery};
use crate::live::LiveEvent;
use crate::policy::{Access, Ctx};

/// How old a reading may be and still count as a patient's current value.
const CURRENT: chrono::Duration = chrono::Duration::hours(24);

fn metric(raw: &str) -> Result<Metric, ApiError> {
    Metric::from_name(raw).ok_or_else(|| ApiError::not_found("metric"))
}

/// One current value.
#[derive(Serialize, utoipa::ToSchema)]
pub(crate) struct CurrentValue {
    metric: Metric,
    value: f64,
    /// Canonical UCUM unit.
    unit: &'static str,
    time: DateTime<Utc>,
}

/// The latest value of each metric measured in the last 24 hours.
#[utoipa::path(get, path = "/api/v1/patients/{id}/vitals/latest", tag = "vitals", security(("bearer" = [])),
    params(("id" = String, Path, format = Uuid)), responses((status = 200, body = [CurrentValue]), (status = 403, body = crate::error::ErrorBody)))]
pub(crate) async fn latest(
    State(state): State<AppState>,
    ctx: Ctx,
    ApiPath(id): ApiPath<PatientId>,
) -> Result<Json<Vec<CurrentValue>>, ApiError> {
    ctx.allow(&state, Access::Patient(id), "vitals.read")
        .await?;
    let latest = queries::latest(state.db(), id.0, Utc::now() - CURRENT).await?;
    Ok(Json(
        latest
            .into_iter()
            .map(|l| CurrentValue {
                metric: l.metric,
                value: l.value,
                unit: l.metric.unit(),
                time: l.time,
            })
            .collect(),
    ))
}

/// Which chart view.
#[derive(Deserialize, utoipa::IntoParams)]
pub(crate) struct ViewQuery {
    /// `1h`, `24h`, `7d` or `30d` (default `24h`).
    view: Option<View>,
}

/// A metric's history in buckets.
#[derive(Serialize, utoipa::ToSchema)]
pub(crate) struct History {
    metric: Metric,
    unit: &'static str,
    view: View,
    buckets: Vec<Bucket>,
}

/// A metric's min/avg/max per bucket over 1 h, 24 h, 7 d or 30 d.
#[utoipa::path(get, path = "/api/v1/patients/{id}/vitals/{metric}", tag = "vitals", security(("bearer" = [])),
    params(("id" = String, Path, format = Uuid), ("metric" = String, Path), ViewQuery),
    responses((status = 200, body = History), (status = 404, body = crate::error::ErrorBody)))]
pub(crate) async fn history(
    State(state): State<AppState>,
    ctx: Ctx,
    ApiPath((id, raw_metric)): ApiPath<(PatientId, String)>,
    ApiQuery(query): ApiQuery<ViewQuery>,
) -> Result<Json<History>, ApiError> {
    ctx.allow(&state, Access::Patient(id), "vitals.read")
        .await?;
    let metric = metric(&raw_metric)?;
    let view = query.view.unwrap_or(View::Day);
    let buckets = queries::buckets(state.db(), id.0, metric, view, Utc::now()).await?;
    Ok(Json(History {
        metric,
        unit: metric.unit(),
        view,
        buckets,
    }))
}

/// The current NEWS2.
#[derive(Serialize, utoipa::ToSchema)]
pub(crate) struct News2 {
    /// Sum of the parameters observed.
    total: u8,
    /// `low`, `low_medium`, `medium` or `high`.
    #[schema(value_type = String)]
    band: news2::RiskBand,
    /// Parameters with no reading in the last hour.
    #[schema(value_type = Vec<String>)]
    missing: Vec<news2::Parameter>,
    /// The SpO2 scale the score used (1, or 2 when a clinician set it).
    spo2_scale: i16,
}

/// NEWS2 from each parameter's latest reading of the last hour.
#[utoipa::path(get, path = "/api/v1/patients/{id}/news2", tag = "vitals", security(("bearer" = [])),
    params(("id" = String, Path, format = Uuid)), responses((status = 200, body = News2), (status = 403, body = crate::error::ErrorBody)))]
pub(crate) async fn news2_now(
    State(state): State<AppState>,
    ctx: Ctx,
    ApiPath(id): ApiPath<PatientId>,
) -> Result<Json<News2>, ApiError> {
    ctx.allow(&state, Access::Patient(id), "vitals.read")
        .await?;
    let (latest, scale) = futures::try_join!(
        queries::latest(state.db(), id.0, Utc::now() - chrono::Duration::hours(1)),
        alert_store::spo2_scale(state.db(), id.0),
    )?;
    let observations = bedside_alerts::engine::observations(&latest);
    let scale = SpO2Scale::from_number(scale);
    let score = news2::score(&observations, scale);
    Ok(Json(News2 {
        total: score.total,
        band: score.band,
        missing: score.missing,
        spo2_scale: scale.number(),
    }))
}

/// A patient's NEWS2 settings.
#[derive(Serialize, Deserialize, utoipa::ToSchema)]
pub(crate) struct News2Settings {
    /// 1, or 2 for hypercapnic respiratory failure with a prescribed
    /// target of 88–92 % (a clinician's decision, RCP 2017).
    spo2_scale: i16,
}

/// The patient's NEWS2 settings.
#[utoipa::path(get, path = "/api/v1/patients/{id}/news2/settings", tag = "vitals", security(("bearer" = [])),
    params(("id" = String, Path, format = Uuid)), responses((status = 200, body = News2Settings), (status = 403, body = crate::error::ErrorBody)))]
pub(crate) async fn news2_settings(
    State(state): State<AppState>,
    ctx: Ctx,
    ApiPath(id): ApiPath<PatientId>,
) -> Result<Json<News2Settings>, ApiError> {
    ctx.allow(&state, Access::Patient(id), "news2_settings.read")
        .await?;
    let spo2_scale = alert_store::spo2_scale(state.db(), id.0).await?;
    Ok(Json(News2Settings { spo2_scale }))
}

/// Puts a patient on SpO2 scale 1 or 2 (the patient's clinicians only).
/// The alert engine applies it from the patient's next reading.
#[utoipa::path(put, path = "/api/v1/patients/{id}/news2/settings", tag = "vitals", security(("bearer" = [])),
    params(("id" = String, Path, format = Uuid)), request_body = News2Settings,
    responses((status = 204), (status = 403, body = crate::error::ErrorBody), (status = 422, body = crate::error::ErrorBody)))]
pub(crate) async fn set_news2_settings(
    State(state): State<AppState>,
    ctx: Ctx,
    ApiPath(id): ApiPath<PatientId>,
    ApiJson(body): ApiJson<News2Settings>,
) -> Result<StatusCode, ApiError> {
    let caller = ctx
        .allow(&state, Access::Clinical(id), "news2_settings.update")
        .await?;
    if !matches!(body.spo2_scale, 1 | 2) {
        return Err(ApiError::invalid(
            "spo2_scale",
            "spo2_scale: must be 1 or 2",
        ));
    }
    let user = caller.user().ok_or_else(ApiError::forbidden)?;
    alert_store::set_spo2_scale(state.db(), id.0, body.spo2_scale, user.0).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// One of the patient's devices and how it is doing.
#[derive(Serialize, utoipa::ToSchema)]
pub(crate) struct DeviceState {
    device_id: uuid::Uuid,
    /// `pulse_oximeter`, `blood_pressure_monitor`, `thermometer`, `scale` or `glucometer`.
    kind: String,
    serial: String,
    /// Online, offline, or unknown (never heard from).
    online: Option<bool>,
    /// Last message of any kind.
    last_seen: Option<DateTime<Utc>>,
    /// Battery level it last reported, 0–100 %.
    battery_percent: Option<f32>,
    /// When that level was measured.
    battery_at: Option<DateTime<Utc>>,
}

/// The devices assigned to the patient now, with their liveness and battery.
#[utoipa::path(get, path = "/api/v1/patients/{id}/devices/status", tag = "vitals", security(("bearer" = [])),
    params(("id" = String, Path, format = Uuid)), responses((status = 200, body = [DeviceState]), (status = 403, body = crate::error::ErrorBody)))]
pub(crate) async fn device_status(
    State(state): State<AppState>,
    ctx: Ctx,
    ApiPath(id): ApiPath<PatientId>,
) -> Result<Json<Vec<DeviceState>>, ApiError> {
    ctx.allow(&state, Access::Patient(id), "devices.status.read")
        .await?;
    let current: Vec<_> = bedside_records::devices::for_patient(state.db(), id)
        .await?
        .into_iter()
        .filter(|a| a.assigned_to.is_none())
        .map(|a| a.device)
        .collect();
    let ids: Vec<uuid::Uuid> = current.iter().map(|d| d.id.0).collect();
    let statuses = bedside_vitals_store::liveness::of(state.db(), &ids).await?;
    Ok(Json(
        current
            .into_iter()
            .map(|d| {
                let status = statuses.iter().find(|s| s.device_id == d.id.0);
                DeviceState {
                    device_id: d.id.0,
                    kind: d.kind.as_str().to_owned(),
                    serial: d.serial,
                    online: status.map(|s| s.online),
                    last_seen: status.map(|s| s.last_seen),
                    battery_percent: status.and_then(|s| s.battery_percent),
                    battery_at: status.and_then(|s| s.battery_at),
                }
            })
            .collect(),
    ))
}

/// The patient's live alerts, most urgent first.
#[utoipa::path(get, path = "/api/v1/patients/{id}/alerts", tag = "vitals", security(("bearer" = [])),
    params(("id" = String, Path, format = Uuid)), responses((status = 200, body = [Alert]), (status = 403, body = crate::error::ErrorBody)))]
pub(crate) async fn alerts(
    State(state): State<AppState>,
    ctx: Ctx,
    ApiPath(id): ApiPath<PatientId>,
) -> Result<Json<Vec<Alert>>, ApiError> {
    ctx.allow(&state, Access::Patient(id), "alerts.read")
        .await?;
    Ok(Json(
        alert_store::live_for_patients(state.db(), &[id.0]).await?,
    ))
}

/// Acknowledges an open alert; every feed watching the patient hears of it.
#[utoipa::path(post, path = "/api/v1/alerts/{id}/acknowledge", tag = "vitals", security(("bearer" = [])),
    params(("id" = String, Path, format = Uuid)), responses(
    (status = 200, body = Alert), (status = 404, body = crate::error::ErrorBody), (status = 409, body = crate::error::ErrorBody, description = "`not_open`")))]
pub(crate) async fn acknowledge(
    State(state): State<AppState>,
    ctx: Ctx,
    ApiPath(id): ApiPath<uuid::Uuid>,
) -> Result<Json<Alert>, ApiError> {
    let Some(alert) = alert_store::get(state.db(), id).await? else {
        ctx.allow_list(&state, Access::AnyStaff, "alert.acknowledge")
            .await?;
        return Err(ApiError::not_found("alert"));
    };
    let caller = ctx
        .allow(
            &state,
            Access::Patient(PatientId(alert.patient_id)),
            "alert.acknowledge",
        )
        .await?;
    let user = caller.user().ok_or_else(ApiError::forbidden)?;
    let Some(transition) = alert_store::acknowledge(state.db(), id, user.0).await? else {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            "not_open",
            "the alert is not open (already acknowledged or resolved)",
        ));
    };
    let updated = transition.alert.clone();
    state.live().publish(LiveEvent::alert(transition));
    Ok(Json(updated))
}

/// A metric's effective threshold.
#[derive(Serialize, utoipa::ToSchema)]
pub(crate) struct ThresholdView {
    metric: Metric,
    unit: &'static str,
    low: Option<f64>,
    high: Option<f64>,
    /// `patient` when a clinician set it for this patient, else `clinic`.
    source: &'static str,
}

/// The thresholds in force for a patient: overrides, else clinic defaults.
#[utoipa::path(get, path = "/api/v1/patients/{id}/thresholds", tag = "vitals", security(("bearer" = [])),
    params(("id" = String, Path, format = Uuid)), responses((status = 200, body = [ThresholdView]), (status = 403, body = crate::error::ErrorBody)))]
pub(crate) async fn thresholds(
    State(state): State<AppState>,
    ctx: Ctx,
    ApiPath(id): ApiPath<PatientId>,
) -> Result<Json<Vec<ThresholdView>>, ApiError> {
    ctx.allow(&state, Access::Patient(id), "thresholds.read")
        .await?;
    let overrides = alert_store::thresholds(state.db(), id.0).await?;
    let views = Metric::ALL
        .into_iter()
        .filter_map(|m| {
            let own = overrides.iter().find(|(name, _, _)| name == m.name());
            match (own, rules::clinic_default(m)) {
                (Some((_, low, high)), _) => Some(ThresholdView {
                    metric: m,
                    unit: m.unit(),
                    low: *low,
                    high: *high,
                    source: "patient",
                }),
                (None, Some(t)) => Some(ThresholdView {
                    metric: m,
                    unit: m.unit(),
                    low: t.low,
                    high: t.high,
                    source: "clinic",
                }),
                (None, None) => None,
            }
        })
        .collect();
    Ok(Json(views))
}

/// New limits; both empty returns the metric to the clinic default.
#[derive(Deserialize, utoipa::ToSchema)]
pub(crate) struct ThresholdRequest {
    /// Alert below this (canonical unit).
    low: Option<f64>,
    /// Alert above this (canonical unit).
    high: Option<f64>,
}

/// Sets a patient's threshold for one metric (the patient's clinicians only).
#[utoipa::path(put, path = "/api/v1/patients/{id}/thresholds/{metric}", tag = "vitals", security(("bearer" = [])),
    params(("id" = String, Path, format = Uuid), ("metric" = String, Path)), request_body = ThresholdRequest,
    responses((status = 204), (status = 403, body = crate::error::ErrorBody), (status = 422, body = crate::error::ErrorBody)))]
pub(crate) async fn set_threshold(
    State(state): State<AppState>,
    ctx: Ctx,
    ApiPath((id, raw_metric)): ApiPath<(PatientId, String)>,
    ApiJson(body): ApiJson<ThresholdRequest>,
) -> Result<StatusCode, ApiError> {
    let caller = ctx
        .allow(&state, Access::Clinical(id), "thresholds.update")
        .await?;
    let metric = metric(&raw_metric)?;
    let (min, max) = metric.plausible();
    for (field, value) in [("low", body.low), ("high", body.high)] {
        if let Some(v) = value
            && (!v.is_finite() || v < min || v > max)
        {
            return Err(ApiError::invalid(
                field,
                format!("{field}: must be within {min}–{max} {}", metric.unit()),
            ));
        }
    }
    if let (Some(low), Some(high)) = (body.low, body.high)
        && low >= high
    {
        return Err(ApiError::invalid("low", "low: must be below high"));
    }
    let user = caller.user().ok_or_else(ApiError::forbidden)?;
    alert_store::set_threshold(state.db(), id.0, metric.name(), body.low, body.high, user.0)
        .await?;
    Ok(StatusCode::NO_CONTENT)
}
