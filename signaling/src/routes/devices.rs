//! Devices: provisioning with a broker identity, and assignment to patients.

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use bedside_records::devices::{self, Device};
use bedside_records::domain::{DeviceKind, Serial};
use bedside_records::ids::{DeviceId, PatientId};
use serde::{Deserialize, Serialize};

use crate::app::AppState;
use crate::error::ApiError;
use crate::extract::{ApiJson, ApiPath};
use crate::policy::{Access, Ctx};

/// Every device.
#[utoipa::path(get, path = "/api/v1/devices", tag = "devices", security(("bearer" = [])), responses(
    (status = 200, body = [Device]), (status = 403, body = crate::error::ErrorBody)))]
pub(crate) async fn list(
    State(state): State<AppState>,
    ctx: Ctx,
) -> Result<Json<Vec<Device>>, ApiError> {
    let caller = ctx.allow_list(&state, Access::Admin, "device.list").await?;
    let list = devices::list(state.db()).await?;
    let patients: Vec<PatientId> = list.iter().filter_map(|d| d.patient_id).collect();
    ctx.audit_list(&state, &caller, "device.list", &patients)
        .await?;
    Ok(Json(list))
}

/// A device to register.
#[derive(Deserialize, utoipa::ToSchema)]
pub(crate) struct ProvisionRequest {
    /// Serial number.
    serial: String,
    /// `pulse_oximeter`, `blood_pressure_monitor`, `thermometer`, `scale` or `glucometer`.
    kind: String,
    /// Assign it to this patient from now on.
    #[schema(value_type = Option<String>, format = Uuid)]
    patient_id: Option<PatientId>,
}

/// A provisioned device with its one-time broker credentials.
#[derive(Serialize, utoipa::ToSchema)]
pub(crate) struct ProvisionResponse {
    /// The device.
    device: Device,
    /// MQTT username (the device id).
    mqtt_username: String,
    /// MQTT password: shown this once, stored only as a hash.
    mqtt_password: String,
    /// Line for Mosquitto's password file.
    password_file_line: String,
    /// Lines for Mosquitto's ACL file.
    acl_lines: String,
    /// Whether the broker's files were rewritten and the broker reloaded, so
    /// the device can connect now. False: add the lines by hand (the
    /// server's log says why it could not).
    broker_updated: bool,
}

/// Registers a device and creates its MQTT identity.
#[utoipa::path(post, path = "/api/v1/devices", tag = "devices", security(("bearer" = [])), request_body = ProvisionRequest, responses(
    (status = 201, body = ProvisionResponse), (status = 409, body = crate::error::ErrorBody), (status = 422, body = crate::error::ErrorBody)))]
pub(crate) async fn provision(
    State(state): State<AppState>,
    ctx: Ctx,
    ApiJson(body): ApiJson<ProvisionRequest>,
) -> Result<(StatusCode, Json<ProvisionResponse>), ApiError> {
    let access = match body.patient_id {
        Some(patient) => Access::AdminFor(patient),
        None => Access::Admin,
    };
    ctx.allow(&state, access, "device.provision").await?;
    let serial = Serial::parse(&body.serial)?;
    let kind = DeviceKind::parse(&body.kind)?;
    let provisioned = devices::provision(state.db(), &serial, kind, body.patient_id).await?;
    tracing::info!(device = %provisioned.device.id, "device provisioned");
    let broker_updated = match state.devices_changed().await {
        Some(Ok(reloaded)) => reloaded,
        Some(Err(error)) => {
            tracing::error!(%error, "the broker's files could not be updated for a new device");
            false
        }
        None => false,
    };
    Ok((
        StatusCode::CREATED,
        Json(ProvisionResponse {
            mqtt_username: provisioned.device.mqtt_username.clone(),
            device: provisioned.device,
            mqtt_password: provisioned.mqtt_password,
            password_file_line: provisioned.password_line,
            acl_lines: provisioned.acl,
            broker_updated,
        }),
    ))
}

/// The patient to assign a device to.
#[derive(Deserialize, utoipa::ToSchema)]
pub(crate) struct AssignRequest {
    /// Patient id.
    #[schema(value_type = String, format = Uuid)]
    patient_id: PatientId,
}

/// Assigns a device to a patient from now on (ending any current assignment).
#[utoipa::path(post, path = "/api/v1/devices/{id}/assignment", tag = "devices", security(("bearer" = [])), params(("id" = String, Path, format = Uuid)), request_body = AssignRequest, responses(
    (status = 201), (status = 404, body = crate::error::ErrorBody)))]
pub(crate) async fn assign(
    State(state): State<AppState>,
    ctx: Ctx,
    ApiPath(id): ApiPath<DeviceId>,
    ApiJson(body): ApiJson<AssignRequest>,
) -> Result<StatusCode, ApiError> {
    ctx.allow(&state, Access::AdminFor(body.patient_id), "device.assign")
        .await?;
    devices::assign(state.db(), id, body.patient_id).await?;
    Ok(StatusCode::CREATED)
}

/// Ends a device's current assignment.
#[utoipa::path(delete, path = "/api/v1/devices/{id}/assignment", tag = "devices", security(("bearer" = [])), params(("id" = String, Path, format = Uuid)), responses(
    (status = 204), (status = 404, body = crate::error::ErrorBody)))]
pub(crate) async fn unassign(
    State(state): State<AppState>,
    ctx: Ctx,
    ApiPath(id): ApiPath<DeviceId>,
) -> Result<StatusCode, ApiError> {
    let caller = ctx
        .allow_list(&state, Access::Admin, "device.unassign")
        .await?;
    let patient = devices::unassign(state.db(), id).await?;
    ctx.audit_list(&state, &caller, "device.unassign", &[patient])
        .await?;
    Ok(StatusCode::NO_CONTENT)
}
