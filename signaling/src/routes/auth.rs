//! Staff authentication: login (password, then TOTP when enrolled), token
//! refresh with rotation, logout, TOTP enrolment, and the caller's account.
//!
//! Failed logins are throttled per account and per client address from
//! counts kept in the database (so they survive restarts and span nodes).
//! Messages never say whether an e-mail exists.

use std::time::Duration;

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use bedside_records::auth_state::{self, Rotation};
use bedside_records::domain::StaffRole;
use bedside_records::ids::{PractitionerId, UserId};
use bedside_records::users::{self, User};
use serde::{Deserialize, Serialize};

use crate::app::AppState;
use crate::auth::tokens::{self, TokenKind};
use crate::auth::{Caller, password, totp};
use crate::error::ApiError;
use crate::extract::{ApiJson, RequestMeta};
use crate::policy::{Access, Ctx};

/// How long a TOTP challenge stays open after a correct password.
const CHALLENGE_TTL: Duration = Duration::from_secs(5 * 60);

/// E-mail and password.
#[derive(Deserialize, utoipa::ToSchema)]
pub(crate) struct LoginRequest {
    /// Login e-mail.
    email: String,
    /// Password.
    password: String,
}

/// A signed-in session.
#[derive(Serialize, utoipa::ToSchema)]
pub(crate) struct TokenResponse {
    /// Bearer token for API calls.
    access_token: String,
    /// Opaque token for `/auth/refresh`; rotates on every use.
    refresh_token: String,
    /// Seconds until the access token expires.
    expires_in: u64,
    /// Always `Bearer`.
    token_type: &'static str,
}

/// The password was right; a TOTP code is due.
#[derive(Serialize, utoipa::ToSchema)]
pub(crate) struct TotpChallenge {
    /// Always true.
    totp_required: bool,
    /// Token to send with the code to `/auth/login/totp`.
    challenge_token: String,
    /// Seconds the challenge stays open.
    expires_in: u64,
}

/// Either tokens or a TOTP challenge.
#[derive(Serialize, utoipa::ToSchema)]
#[serde(untagged)]
pub(crate) enum LoginResponse {
    /// Signed in.
    Tokens(TokenResponse),
    /// A TOTP code is due.
    Challenge(TotpChallenge),
}

fn invalid_credentials() -> ApiError {
    ApiError::new(
        StatusCode::UNAUTHORIZED,
        "invalid_credentials",
        "the e-mail or password is not right",
    )
}

fn too_many_attempts(window: Duration) -> ApiError {
    let mut error = ApiError::new(
        StatusCode::TOO_MANY_REQUESTS,
        "too_many_attempts",
        "too many failed sign-in attempts; wait a few minutes and try again",
    );
    error.retry_after = Some(window.as_secs());
    error
}

/// Records this attempt first, then counts: concurrent attempts each see
/// the others, so a burst cannot slip past the limit between a check and a
/// later insert. A successful sign-in clears the account's attempts.
async fn throttle(state: &AppState, account: &str, client: &str) -> Result<(), ApiError> {
    let s = state.settings();
    let window =
        chrono::Duration::from_std(s.login_window).unwrap_or(chrono::Duration::minutes(15));
    auth_state::record_login_failure(state.db(), account, client).await?;
    let (by_account, by_client) =
        auth_state::recent_login_failures(state.db(), account, client, window).await?;
    // The counts include this attempt: the limit is how many may fail.
    if by_account > s.login_max_failures_per_account || by_client > s.login_max_failures_per_client
    {
        tracing::warn!(by_account, by_client, "login throttled");
        return Err(too_many_attempts(s.login_window));
    }
    Ok(())
}

/// Signs in with e-mail and password.
#[utoipa::path(post, path = "/api/v1/auth/login", tag = "auth", request_body = LoginRequest, responses(
    (status = 200, body = LoginResponse, description = "tokens, or a TOTP challenge"),
    (status = 401, body = crate::error::ErrorBody, description = "`invalid_credentials`"),
    (status = 429, body = crate::error::ErrorBody, description = "`too_many_attempts`")))]
pub(crate) async fn login(
    State(state): State<AppState>,
    meta: RequestMeta,
    ApiJson(body): ApiJson<LoginRequest>,
) -> Result<Json<LoginResponse>, ApiError> {
    if !state.settings().password_login {
        return Err(ApiError::new(
            StatusCode::FORBIDDEN,
            "password_login_disabled",
            "this clinic signs in through its identity provider",
        ));
    }
    if body.email.len() > 254 {
        return Err(ApiError::invalid("email", "email: is too long"));
    }
    if body.password.len() > 1024 {
        return Err(ApiError::invalid("password", "password: is too long"));
    }
    if body.email.chars().any(char::is_control) {
        return Err(ApiError::invalid(
            "email",
            "email: is not an e-mail address",
        ));
    }
    let account = body.email.trim().to_lowercase();
    throttle(&state, &account, &meta.client_addr).await?;
    let credentials = users::credentials_by_email(state.db(), &account).await?;
    let ok = password::verify_blocking(
        body.password,
        credentials.as_ref().map(|c| c.password_hash.clone()),
    )
    .await;
    let credentials = match credentials {
        Some(c) if ok && c.active => c,
        _ => return Err(invalid_credentials()),
    };
    let window = chrono::Duration::from_std(state.settings().login_window)
        .unwrap_or(chrono::Duration::minutes(15));
    auth_state::clear_login_failures(state.db(), &account, window).await?;
    if credentials.totp_enabled {
        let keys = state.keys();
        let claims = keys.claims(TokenKind::TotpChallenge, credentials.id.0, CHALLENGE_TTL);
        return Ok(Json(LoginResponse::Challenge(TotpChallenge {
            totp_required: true,
            challenge_token: keys.sign(&claims),
            expires_in: CHALLENGE_TTL.as_secs(),
        })));
    }
    tracing::info!(user = %credentials.id, "signed in");
    Ok(Json(LoginResponse::Tokens(
        start_session(&state, credentials.id, credentials.role).await?,
    )))
}

/// The second step of a login with TOTP.
#[derive(Deserialize, utoipa::ToSchema)]
pub(crate) struct TotpLoginRequest {
    /// From the login answer.
    challenge_token: String,
    /// Six-digit code, or a recovery code.
    code: String,
}

/// Completes a login with a TOTP or recovery code.
#[utoipa::path(post, path = "/api/v1/auth/login/totp", tag = "auth", request_body = TotpLoginRequest, responses(
    (status = 200, body = TokenResponse),
    (status = 401, body = crate::error::ErrorBody, description = "`invalid_code` or `invalid_challenge`"),
    (status = 429, body = crate::error::ErrorBody, description = "`too_many_attempts`")))]
pub(crate) async fn login_totp(
    State(state): State<AppState>,
    meta: RequestMeta,
    ApiJson(body): ApiJson<TotpLoginRequest>,
) -> Result<Json<TokenResponse>, ApiError> {
    let claims = state
        .keys()
        .verify(&body.challenge_token)
        .ok()
        .filter(|c| c.typ == TokenKind::TotpChallenge)
        .ok_or_else(|| {
            ApiError::new(
                StatusCode::UNAUTHORIZED,
                "invalid_challenge",
                "the sign-in took too long; start again",
            )
        })?;
    let user = UserId(claims.sub);
    let account = format!("totp:{user}");
    throttle(&state, &account, &meta.client_addr).await?;
    let credentials = users::credentials(state.db(), user).await?;
    let secret = credentials
        .totp_secret
        .as_deref()
        .filter(|_| credentials.totp_enabled);
    // A code counts once: its time step must be later than the last accepted one.
    let by_totp = match secret.and_then(|s| totp::matching_step(s, &body.code)) {
        Some(step) => users::accept_totp_step(state.db(), user, step).await?,
        None => false,
    };
    let ok = by_totp
        || (secret.is_some()
            && body.code.len() <= 64
            && users::consume_recovery_code(
                state.db(),
                user,
                &totp::hash_recovery_code(&body.code),
            )
            .await?);
    if !ok || !credentials.active {
        return Err(ApiError::new(
            StatusCode::UNAUTHORIZED,
            "invalid_code",
            "that code is not right",
        )
        .with_field("code"));
    }
    let window = chrono::Duration::from_std(state.settings().login_window)
        .unwrap_or(chrono::Duration::minutes(15));
    auth_state::clear_login_failures(state.db(), &account, window).await?;
    tracing::info!(user = %user, recovery = !by_totp, "signed in with second factor");
    Ok(Json(start_session(&state, user, credentials.role).await?))
}

async fn practitioner_of(
    state: &AppState,
    user: UserId,
    role: StaffRole,
) -> Result<Option<PractitionerId>, ApiError> {
    Ok(match role {
        StaffRole::Clinician => bedside_records::practitioners::for_user(state.db(), user).await?,
        StaffRole::Admin => None,
    })
}

pub(crate) async fn start_session(
    state: &AppState,
    user: UserId,
    role: StaffRole,
) -> Result<TokenResponse, ApiError> {
    let (refresh_token, hash) = tokens::new_refresh_token();
    let expires = chrono::Utc::now()
        + chrono::Duration::from_std(state.settings().refresh_ttl)
            .unwrap_or(chrono::Duration::hours(12));
    let family = auth_state::start_family(state.db(), user, &hash, expires).await?;
    let practitioner = practitioner_of(state, user, role).await?;
    Ok(issue_tokens(
        state,
        user,
        role,
        practitioner,
        family,
        refresh_token,
    ))
}

fn issue_tokens(
    state: &AppState,
    user: UserId,
    role: StaffRole,
    practitioner: Option<PractitionerId>,
    family: uuid::Uuid,
    refresh_token: String,
) -> TokenResponse {
    let keys = state.keys();
    let ttl = state.settings().access_ttl;
    let mut claims = keys.claims(TokenKind::Access, user.0, ttl);
    claims.sid = Some(family);
    claims.role = Some(role);
    claims.prc = practitioner;
    TokenResponse {
        access_token: keys.sign(&claims),
        refresh_token,
        expires_in: ttl.as_secs(),
        token_type: "Bearer",
    }
}

/// A refresh token.
#[derive(Deserialize, utoipa::ToSchema)]
pub(crate) struct RefreshRequest {
    /// The newest refresh token.
    refresh_token: String,
}

/// Exchanges a refresh token for new tokens. The old refresh token stops
/// working; presenting it again revokes the whole session.
#[utoipa::path(post, path = "/api/v1/auth/refresh", tag = "auth", request_body = RefreshRequest, responses(
    (status = 200, body = TokenResponse),
    (status = 401, body = crate::error::ErrorBody, description = "`invalid_refresh_token` or `refresh_token_reused`")))]
pub(crate) async fn refresh(
    State(state): State<AppState>,
    ApiJson(body): ApiJson<RefreshRequest>,
) -> Result<Json<TokenResponse>, ApiError> {
    let presented = tokens::hash_refresh_token(&body.refresh_token);
    let (token, successor) = tokens::new_refresh_token();
    let expires = chrono::Utc::now()
        + chrono::Duration::from_std(state.settings().refresh_ttl)
            .unwrap_or(chrono::Duration::hours(12));
    match auth_state::rotate(state.db(), &presented, &successor, expires).await? {
        Rotation::Rotated(user, family) => {
            let credentials = users::credentials(state.db(), user).await?;
            let practitioner = practitioner_of(&state, user, credentials.role).await?;
            Ok(Json(issue_tokens(
                &state,
                user,
                credentials.role,
                practitioner,
                family,
                token,
            )))
        }
        Rotation::ReuseDetected => {
            tracing::warn!("rotated refresh token presented again; session revoked");
            Err(ApiError::new(
                StatusCode::UNAUTHORIZED,
                "refresh_token_reused",
                "this session was ended for safety; sign in again",
            ))
        }
        Rotation::Invalid => Err(ApiError::new(
            StatusCode::UNAUTHORIZED,
            "invalid_refresh_token",
            "the session has ended; sign in again",
        )),
    }
}

/// Ends the session of a refresh token (and its access tokens).
#[utoipa::path(post, path = "/api/v1/auth/logout", tag = "auth", request_body = RefreshRequest, responses((status = 204)))]
pub(crate) async fn logout(
    State(state): State<AppState>,
    ApiJson(body): ApiJson<RefreshRequest>,
) -> Result<StatusCode, ApiError> {
    let hash = tokens::hash_refresh_token(&body.refresh_token);
    if let Some(user) = auth_state::revoke_family_of(state.db(), &hash).await? {
        tracing::info!(user = %user, "signed out");
    }
    Ok(StatusCode::NO_CONTENT)
}

/// The caller's own account.
#[utoipa::path(get, path = "/api/v1/me", tag = "auth", security(("bearer" = [])), responses(
    (status = 200, body = User), (status = 401, body = crate::error::ErrorBody)))]
pub(crate) async fn me(State(state): State<AppState>, ctx: Ctx) -> Result<Json<User>, ApiError> {
    let user = staff_user(&state, &ctx, "account.read").await?;
    Ok(Json(users::get(state.db(), user).await?))
}

/// A TOTP enrolment in progress.
#[derive(Serialize, utoipa::ToSchema)]
pub(crate) struct TotpEnrollment {
    /// Base32 secret, for typing into an app.
    secret: String,
    /// `otpauth://` URI.
    otpauth_uri: String,
    /// The URI as an SVG QR code.
    qr_svg: String,
}

/// The staff account behind the request; anyone else is refused (and the
/// refusal audited).
async fn staff_user(state: &AppState, ctx: &Ctx, action: &str) -> Result<UserId, ApiError> {
    match ctx.allow_list(state, Access::AnyStaff, action).await? {
        Caller::Staff { user, .. } => Ok(user),
        Caller::Patient { .. } | Caller::Guest { .. } => Err(ApiError::forbidden()),
    }
}

/// Starts TOTP enrolment: a new secret to scan. Not required until confirmed.
#[utoipa::path(post, path = "/api/v1/auth/totp/enroll", tag = "auth", security(("bearer" = [])), responses(
    (status = 200, body = TotpEnrollment), (status = 409, body = crate::error::ErrorBody, description = "`totp_already_enabled`")))]
pub(crate) async fn totp_enroll(
    State(state): State<AppState>,
    ctx: Ctx,
) -> Result<Json<TotpEnrollment>, ApiError> {
    let user = staff_user(&state, &ctx, "account.totp.enroll").await?;
    let account = users::get(state.db(), user).await?;
    if account.totp_enabled {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            "totp_already_enabled",
            "two-step sign-in is already on",
        ));
    }
    let secret = totp::new_secret();
    users::begin_totp(state.db(), user, &secret).await?;
    let issuer = state.settings().clinic_name.clone();
    let uri = totp::otpauth_uri(&secret, &account.email, &issuer).ok_or_else(|| {
        ApiError::internal(&std::io::Error::other("otpauth URI could not be built"))
    })?;
    let qr_svg = totp::qr_svg(&uri).unwrap_or_default();
    Ok(Json(TotpEnrollment {
        secret,
        otpauth_uri: uri,
        qr_svg,
    }))
}

/// A code from the authenticator app.
#[derive(Deserialize, utoipa::ToSchema)]
pub(crate) struct TotpConfirmRequest {
    /// Six-digit code.
    code: String,
}

/// Recovery codes, shown once.
#[derive(Serialize, utoipa::ToSchema)]
pub(crate) struct RecoveryCodes {
    /// Single-use codes for when the phone is lost.
    recovery_codes: Vec<String>,
}

/// Confirms enrolment with a first code; TOTP is required from then on.
#[utoipa::path(post, path = "/api/v1/auth/totp/confirm", tag = "auth", security(("bearer" = [])), request_body = TotpConfirmRequest, responses(
    (status = 200, body = RecoveryCodes), (status = 422, body = crate::error::ErrorBody, description = "`invalid_code`")))]
pub(crate) async fn totp_confirm(
    State(state): State<AppState>,
    ctx: Ctx,
    ApiJson(body): ApiJson<TotpConfirmRequest>,
) -> Result<Response, ApiError> {
    let user = staff_user(&state, &ctx, "account.totp.confirm").await?;
    let credentials = users::credentials(state.db(), user).await?;
    if credentials.totp_enabled {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            "totp_already_enabled",
            "two-step sign-in is already on",
        ));
    }
    let Some(secret) = credentials.totp_secret else {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            "totp_not_enrolled",
            "start enrolment first",
        ));
    };
    let step = totp::matching_step(&secret, &body.code);
    let fresh = match step {
        Some(step) => users::accept_totp_step(state.db(), user, step).await?,
        None => false,
    };
    if !fresh {
        return Err(ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_code",
            "that code is not right",
        )
        .with_field("code"));
    }
    let codes = totp::new_recovery_codes();
    let hashes: Vec<String> = codes.iter().map(|c| totp::hash_recovery_code(c)).collect();
    users::enable_totp(state.db(), user, &hashes).await?;
    tracing::info!(user = %user, "two-step sign-in enabled");
    Ok(Json(RecoveryCodes {
        recovery_codes: codes,
    })
    .into_response())
}

/// What a FHIR client is to be allowed.
#[derive(Deserialize, utoipa::ToSchema)]
pub(crate) struct FhirTokenRequest {
    /// SMART scopes, space-separated: `user/*.read`, `patient/Observation.read`,
    /// `system/*.read` (admins only), `.write` or SMART v2 letters.
    scope: String,
    /// The patient a `patient/` scope is bound to.
    #[schema(format = Uuid)]
    patient: Option<String>,
    /// Lifetime in seconds (at most the access-token lifetime).
    expires_in: Option<u64>,
}

/// A token for a FHIR client, as a SMART token response.
#[derive(Serialize, utoipa::ToSchema)]
pub(crate) struct FhirTokenResponse {
    /// Bearer token for `/fhir` (and nothing else).
    access_token: String,
    /// Always `Bearer`.
    token_type: &'static str,
    /// Seconds until it expires.
    expires_in: u64,
    /// The scopes granted, normalised.
    scope: String,
    /// The patient of a `patient/` grant.
    #[serde(skip_serializing_if = "Option::is_none")]
    patient: Option<String>,
}

/// Mints a token with SMART scopes for a FHIR client acting for the
/// signed-in staff member. Scopes only narrow what the member may do
/// anyway; the token reaches `/fhir` only and ends with the member's
/// session.
#[utoipa::path(post, path = "/api/v1/auth/fhir-token", tag = "auth", security(("bearer" = [])), request_body = FhirTokenRequest, responses(
    (status = 200, body = FhirTokenResponse), (status = 403, body = crate::error::ErrorBody),
    (status = 422, body = crate::error::ErrorBody, description = "`validation_failed` naming `scope` or `patient`")))]
pub(crate) async fn fhir_token(
    State(state): State<AppState>,
    ctx: Ctx,
    ApiJson(body): ApiJson<FhirTokenRequest>,
) -> Result<Json<FhirTokenResponse>, ApiError> {
    use crate::auth::scopes::{Grant, ScopeContext};
    let grant = Grant::parse(&body.scope).map_err(|e| ApiError::invalid("scope", e.to_string()))?;
    let patient = match (grant.context, body.patient.as_deref()) {
        (ScopeContext::Patient, Some(raw)) => Some(
            uuid::Uuid::try_parse(raw.trim())
                .map(bedside_records::ids::PatientId)
                .map_err(|_| ApiError::invalid("patient", "patient: must be a patient id"))?,
        ),
        (ScopeContext::Patient, None) => {
            return Err(ApiError::invalid(
                "patient",
                "patient: patient/ scopes need the patient they are for",
            ));
        }
        (_, Some(_)) => {
            return Err(ApiError::invalid(
                "patient",
                "patient: only patient/ scopes are bound to a patient",
            ));
        }
        (_, None) => None,
    };
    let access = match (grant.context, patient) {
        (ScopeContext::System, _) => Access::Admin,
        (_, Some(patient)) => Access::Patient(patient),
        _ => Access::AnyStaff,
    };
    let caller = ctx.allow(&state, access, "fhir_token.issue").await?;
    let Caller::Staff {
        user,
        role,
        practitioner,
        session,
        grant: None,
    } = caller
    else {
        // Patients, guests and scoped tokens cannot mint tokens.
        return Err(ApiError::forbidden());
    };
    let max = state.settings().access_ttl;
    let ttl = body.expires_in.map_or(max, |secs| {
        Duration::from_secs(secs.min(max.as_secs()).max(1))
    });
    let keys = state.keys();
    let mut claims = keys.claims(TokenKind::Access, user.0, ttl);
    claims.sid = Some(session);
    claims.role = Some(role);
    claims.prc = practitioner;
    claims.scope = Some(grant.to_scope_string());
    claims.patient = patient.map(|p| p.0);
    tracing::info!(user = %user, context = grant.context.as_str(), "FHIR token issued");
    Ok(Json(FhirTokenResponse {
        access_token: keys.sign(&claims),
        token_type: "Bearer",
        expires_in: ttl.as_secs(),
        scope: grant.to_scope_string(),
        patient: patient.map(|p| p.to_string()),
    }))
}
