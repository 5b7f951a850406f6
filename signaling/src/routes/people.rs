//! Staff accounts and practitioners.

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use bedside_records::domain::{BoundedText, Email, NewPassword, StaffRole};
use bedside_records::ids::UserId;
use bedside_records::practitioners::{self, Practitioner};
use bedside_records::users::{self, NewUser, User};
use serde::Deserialize;

use crate::app::AppState;
use crate::auth::{Caller, password};
use crate::error::ApiError;
use crate::extract::{ApiJson, ApiPath};
use crate::policy::{Access, Ctx};

/// Every staff account.
#[utoipa::path(get, path = "/api/v1/users", tag = "people", security(("bearer" = [])), responses(
    (status = 200, body = [User]), (status = 401, body = crate::error::ErrorBody), (status = 403, body = crate::error::ErrorBody)))]
pub(crate) async fn list_users(
    State(state): State<AppState>,
    ctx: Ctx,
) -> Result<Json<Vec<User>>, ApiError> {
    ctx.allow(&state, Access::Admin, "user.list").await?;
    Ok(Json(users::list(state.db()).await?))
}

/// A new staff account.
#[derive(Deserialize, utoipa::ToSchema)]
pub(crate) struct CreateUserRequest {
    /// Login e-mail.
    email: String,
    /// Display name.
    name: String,
    /// `admin` or `clinician`.
    role: String,
    /// Initial password (at least 12 characters).
    password: String,
    /// A clinician's qualification.
    qualification: Option<String>,
}

/// Creates an admin or clinician account (a clinician also becomes a practitioner).
#[utoipa::path(post, path = "/api/v1/users", tag = "people", security(("bearer" = [])), request_body = CreateUserRequest, responses(
    (status = 201, body = User), (status = 409, body = crate::error::ErrorBody, description = "`duplicate`"),
    (status = 422, body = crate::error::ErrorBody)))]
pub(crate) async fn create_user(
    State(state): State<AppState>,
    ctx: Ctx,
    ApiJson(body): ApiJson<CreateUserRequest>,
) -> Result<(StatusCode, Json<User>), ApiError> {
    ctx.allow(&state, Access::Admin, "user.create").await?;
    let email = Email::parse("email", &body.email)?;
    let name = BoundedText::parse("name", &body.name, 200)?;
    let role = StaffRole::parse(&body.role)?;
    let new_password = NewPassword::parse(&body.password)?;
    let qualification = body
        .qualification
        .as_deref()
        .filter(|q| !q.trim().is_empty())
        .map(|q| BoundedText::parse("qualification", q, 200))
        .transpose()?;
    let password_hash = password::hash_blocking(new_password.expose().to_owned()).await;
    let user = users::create(
        state.db(),
        &NewUser {
            email,
            name,
            role,
            password_hash,
            qualification,
        },
    )
    .await?;
    tracing::info!(user = %user.id, role = %user.role, "account created");
    Ok((StatusCode::CREATED, Json(user)))
}

/// Every practitioner (for booking).
#[utoipa::path(get, path = "/api/v1/practitioners", tag = "people", security(("bearer" = [])), responses(
    (status = 200, body = [Practitioner]), (status = 401, body = crate::error::ErrorBody)))]
pub(crate) async fn list_practitioners(
    State(state): State<AppState>,
    ctx: Ctx,
) -> Result<Json<Vec<Practitioner>>, ApiError> {
    ctx.allow(&state, Access::AnyStaff, "practitioner.list")
        .await?;
    Ok(Json(practitioners::list(state.db()).await?))
}

impl From<bedside_records::domain::InvalidInput> for ApiError {
    fn from(invalid: bedside_records::domain::InvalidInput) -> Self {
        ApiError::invalid(invalid.field, invalid.to_string())
    }
}

/// Changes to a staff account.
#[derive(Deserialize, utoipa::ToSchema)]
pub(crate) struct UpdateUserRequest {
    /// New display name.
    name: Option<String>,
    /// False to deactivate: sign-in refused and sessions ended at once.
    active: Option<bool>,
}

/// Renames, deactivates or reactivates a staff account.
#[utoipa::path(patch, path = "/api/v1/users/{id}", tag = "people", security(("bearer" = [])), params(("id" = String, Path, format = Uuid)), request_body = UpdateUserRequest, responses(
    (status = 200, body = User), (status = 404, body = crate::error::ErrorBody), (status = 409, body = crate::error::ErrorBody, description = "`cannot_deactivate_self`")))]
pub(crate) async fn update_user(
    State(state): State<AppState>,
    ctx: Ctx,
    ApiPath(id): ApiPath<UserId>,
    ApiJson(body): ApiJson<UpdateUserRequest>,
) -> Result<Json<User>, ApiError> {
    let caller = ctx.allow(&state, Access::Admin, "user.update").await?;
    if body.active == Some(false) && caller.user() == Some(id) {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            "cannot_deactivate_self",
            "you cannot deactivate your own account; ask another admin",
        )
        .with_field("active"));
    }
    let name = body
        .name
        .as_deref()
        .map(|n| BoundedText::parse("name", n, 200))
        .transpose()?;
    let user = users::update(state.db(), id, name.as_ref(), body.active).await?;
    tracing::info!(user = %id, active = user.active, "account updated");
    Ok(Json(user))
}

/// Turns off a staff member's two-step sign-in (a lost phone); they enrol again.
#[utoipa::path(post, path = "/api/v1/users/{id}/totp/reset", tag = "people", security(("bearer" = [])), params(("id" = String, Path, format = Uuid)), responses(
    (status = 204), (status = 404, body = crate::error::ErrorBody)))]
pub(crate) async fn reset_totp(
    State(state): State<AppState>,
    ctx: Ctx,
    ApiPath(id): ApiPath<UserId>,
) -> Result<StatusCode, ApiError> {
    ctx.allow(&state, Access::Admin, "user.totp.reset").await?;
    users::reset_totp(state.db(), id).await?;
    tracing::info!(user = %id, "two-step sign-in reset");
    Ok(StatusCode::NO_CONTENT)
}

/// A password change.
#[derive(Deserialize, utoipa::ToSchema)]
pub(crate) struct ChangePasswordRequest {
    /// The current password.
    current_password: String,
    /// The new password (at least 12 characters).
    new_password: String,
}

/// Changes the caller's password and ends their other sessions.
#[utoipa::path(post, path = "/api/v1/me/password", tag = "auth", security(("bearer" = [])), request_body = ChangePasswordRequest, responses(
    (status = 204), (status = 422, body = crate::error::ErrorBody, description = "`invalid_credentials` on current_password, or a too short new one")))]
pub(crate) async fn change_password(
    State(state): State<AppState>,
    ctx: Ctx,
    ApiJson(body): ApiJson<ChangePasswordRequest>,
) -> Result<StatusCode, ApiError> {
    let Caller::Staff { user, session, .. } = ctx
        .allow_list(&state, Access::AnyStaff, "account.password.change")
        .await?
    else {
        return Err(ApiError::forbidden());
    };
    let new_password = NewPassword::parse(&body.new_password)
        .map_err(|e| ApiError::invalid("new_password", format!("new_password: {}", e.reason)))?;
    let credentials = users::credentials(state.db(), user).await?;
    if !password::verify_blocking(body.current_password, Some(credentials.password_hash)).await {
        return Err(ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_credentials",
            "the current password is not right",
        )
        .with_field("current_password"));
    }
    let hash = password::hash_blocking(new_password.expose().to_owned()).await;
    users::set_password_hash(state.db(), user, &hash).await?;
    bedside_records::auth_state::revoke_sessions_of(state.db(), user, Some(session)).await?;
    tracing::info!(user = %user, "password changed");
    Ok(StatusCode::NO_CONTENT)
}
