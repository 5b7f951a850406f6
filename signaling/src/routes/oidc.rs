//! Sign-in through the clinic's OpenID Connect provider (see
//! [`crate::auth::oidc`]): the browser leaves for the provider from
//! `/api/v1/auth/oidc/login`, comes back to `/api/v1/auth/oidc/callback`,
//! and lands on the login page with a one-time code in the fragment, which
//! the web client exchanges for tokens. Failures land there too, as
//! `#oidc_error={code}`: the browser is mid-redirect, not a JSON client.
//!
//! The state is bound to the browser by a cookie (so a sign-in cannot be
//! finished in another browser: login CSRF), good once and for ten
//! minutes; the hand-off code is good once and for a minute.

use axum::Json;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use bedside_records::audit::Outcome;
use bedside_records::domain::{BoundedText, Email};
use bedside_records::oidc::{self, PendingLogin};
use bedside_records::users::{self, NewUser};
use serde::Deserialize;

use crate::app::AppState;
use crate::auth::oidc::Identity;
use crate::error::ApiError;
use crate::extract::ApiJson;
use crate::policy::Ctx;
use crate::routes::auth::{TokenResponse, start_session};

const STATE_COOKIE: &str = "bedside_oidc_state";
const COOKIE_PATH: &str = "/api/v1/auth/oidc";

/// Where to go after signing in.
#[derive(Deserialize, utoipa::IntoParams)]
pub(crate) struct LoginQuery {
    /// A path of Bedside's own (default `/`).
    next: Option<String>,
}

/// A path of our own to return to; anything else becomes `/`.
fn own_path(next: Option<&str>) -> String {
    match next {
        Some(p)
            if p.starts_with('/') && !p.starts_with("//") && !p.contains('\\') && p.len() < 512 =>
        {
            p.to_owned()
        }
        _ => "/".to_owned(),
    }
}

fn redirect(location: &str) -> Response {
    let mut response = StatusCode::SEE_OTHER.into_response();
    if let Ok(value) = HeaderValue::from_str(location) {
        response.headers_mut().insert(header::LOCATION, value);
    }
    response
}

fn failed(code: &str) -> Response {
    let mut response = redirect(&format!("/login#oidc_error={code}"));
    clear_cookie(&mut response);
    response
}

fn clear_cookie(response: &mut Response) {
    if let Ok(value) = HeaderValue::from_str(&format!(
        "{STATE_COOKIE}=; Path={COOKIE_PATH}; Max-Age=0; HttpOnly; SameSite=Lax"
    )) {
        response.headers_mut().append(header::SET_COOKIE, value);
    }
}

/// Sends the browser to the provider.
#[utoipa::path(get, path = "/api/v1/auth/oidc/login", tag = "auth", params(LoginQuery), responses(
    (status = 303, description = "to the identity provider"),
    (status = 404, body = crate::error::ErrorBody, description = "`oidc_not_configured`")))]
pub(crate) async fn login(
    State(state): State<AppState>,
    Query(query): Query<LoginQuery>,
) -> Result<Response, ApiError> {
    let provider = state.oidc().ok_or_else(not_configured)?;
    // A browser navigation: failures go back to the login page.
    let start = match provider.start().await {
        Ok(start) => start,
        Err(error) => {
            tracing::warn!(%error, "OpenID Connect provider unavailable");
            return Ok(failed("provider_unavailable"));
        }
    };
    oidc::start_login(
        state.db(),
        &start.state,
        &PendingLogin {
            nonce: start.nonce,
            pkce_verifier: start.pkce_verifier,
            next: own_path(query.next.as_deref()),
        },
    )
    .await?;
    let mut response = redirect(&start.url);
    let secure = if state.settings().tls { "; Secure" } else { "" };
    let cookie = format!(
        "{STATE_COOKIE}={}; Path={COOKIE_PATH}; Max-Age=600; HttpOnly; SameSite=Lax{secure}",
        start.state
    );
    if let Ok(value) = HeaderValue::from_str(&cookie) {
        response.headers_mut().insert(header::SET_COOKIE, value);
    }
    Ok(response)
}

fn not_configured() -> ApiError {
    ApiError::new(
        StatusCode::NOT_FOUND,
        "oidc_not_configured",
        "sign-in through an identity provider is not set up",
    )
}

/// What the provider sends back.
#[derive(Deserialize)]
pub(crate) struct Callback {
    code: Option<String>,
    state: Option<String>,
    error: Option<String>,
}

fn cookie_state(headers: &HeaderMap) -> Option<String> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(name, _)| *name == STATE_COOKIE)
        .map(|(_, value)| value.to_owned())
}

/// The provider's redirect back: finishes the sign-in.
pub(crate) async fn callback(
    State(state): State<AppState>,
    ctx: Ctx,
    headers: HeaderMap,
    Query(callback): Query<Callback>,
) -> Result<Response, ApiError> {
    let provider = state.oidc().ok_or_else(not_configured)?;
    if callback.error.is_some() {
        return Ok(refused(&state, &ctx, "provider_refused").await);
    }
    let (Some(code), Some(returned_state)) = (callback.code, callback.state) else {
        return Ok(refused(&state, &ctx, "bad_callback").await);
    };
    let bound = cookie_state(&headers).is_some_and(|cookie| {
        use subtle::ConstantTimeEq as _;
        bool::from(cookie.as_bytes().ct_eq(returned_state.as_bytes()))
    });
    if !bound {
        return Ok(refused(&state, &ctx, "state_mismatch").await);
    }
    let Some(pending) = oidc::take_login(state.db(), &returned_state).await? else {
        return Ok(refused(&state, &ctx, "expired").await);
    };
    let identity = match provider
        .finish(&code, &pending.nonce, &pending.pkce_verifier)
        .await
    {
        Ok(identity) => identity,
        Err(error) => {
            tracing::warn!(%error, detail = ?error, "OpenID Connect sign-in refused");
            let code = match error {
                crate::auth::oidc::OidcError::Unavailable(_) => "provider_unavailable",
                crate::auth::oidc::OidcError::Exchange(_) => "exchange_failed",
                crate::auth::oidc::OidcError::InvalidToken(_) => "invalid_id_token",
                crate::auth::oidc::OidcError::Claims(_) => "missing_claims",
            };
            return Ok(refused(&state, &ctx, code).await);
        }
    };
    let user = match account_of(&state, &identity).await? {
        Ok(user) => user,
        Err(code) => return Ok(refused(&state, &ctx, code).await),
    };
    let credentials = users::credentials(state.db(), user).await?;
    ctx.audit_for_user(&state, user, credentials.role.as_str(), "auth.oidc_login")
        .await?;
    tracing::info!(user = %user, "signed in through the identity provider");
    // Bound to this browser: the exchange needs the same state cookie, so a
    // code sent to someone else's browser signs nobody in.
    let hand_off = oidc::hand_off(state.db(), user, &returned_state).await?;
    let next = form_urlencoded::byte_serialize(pending.next.as_bytes()).collect::<String>();
    Ok(redirect(&format!("/login?next={next}#oidc={hand_off}")))
}

/// Audits a refused sign-in and sends the browser to the login page with
/// the reason's code.
async fn refused(state: &AppState, ctx: &Ctx, code: &str) -> Response {
    tracing::info!(reason = code, "identity-provider sign-in refused");
    if let Err(error) = ctx
        .audit_attempt(state, "anonymous", None, "auth.oidc_login", Outcome::Denied)
        .await
    {
        tracing::warn!(?error, "could not audit a refused sign-in");
    }
    failed(code)
}

/// The Bedside user of a provider account, linking or creating it the
/// first time; `Err(code)` when the account may not sign in.
async fn account_of(
    state: &AppState,
    identity: &Identity,
) -> Result<Result<bedside_records::ids::UserId, &'static str>, ApiError> {
    let db = state.db();
    let Some(role) = identity.role else {
        return Ok(Err("no_role"));
    };
    let linked = oidc::linked_user(db, &identity.issuer, &identity.subject).await?;
    let user = match linked {
        Some(user) => Some(users::credentials(db, user).await?),
        None => match users::credentials_by_email(db, &identity.email).await? {
            // The e-mail matches a user already linked to another account of
            // this provider (a reused or edited address): never a takeover.
            Some(c) if oidc::has_identity(db, &identity.issuer, c.id).await? => {
                return Ok(Err("account_linked_elsewhere"));
            }
            found => found,
        },
    };
    let user = match user {
        Some(credentials) => {
            if !credentials.active {
                return Ok(Err("account_inactive"));
            }
            if credentials.role != role {
                return Ok(Err("role_mismatch"));
            }
            credentials.id
        }
        None => {
            let settings = state.oidc().map(|p| p.settings().create_users);
            if settings != Some(true) {
                return Ok(Err("no_account"));
            }
            let Ok(email) = Email::parse("email", &identity.email) else {
                return Ok(Err("missing_claims"));
            };
            let name = identity
                .name
                .clone()
                .unwrap_or_else(|| identity.email.clone());
            let name = BoundedText::parse("name", &name, 200)
                .or_else(|_| BoundedText::parse("name", &identity.email, 200))
                .map_err(|_| ApiError::invalid("name", "the provider's name is not usable"))?;
            // No usable password: the account signs in through the provider.
            let unusable = crate::auth::password::hash(&crate::auth::tokens::new_refresh_token().0);
            users::create(
                db,
                &NewUser {
                    email,
                    name,
                    role,
                    password_hash: unusable,
                    qualification: None,
                },
            )
            .await?
            .id
        }
    };
    if linked.is_none() {
        oidc::link(db, &identity.issuer, &identity.subject, user).await?;
    }
    Ok(Ok(user))
}

/// A hand-off code from the callback.
#[derive(Deserialize, utoipa::ToSchema)]
pub(crate) struct ExchangeRequest {
    /// The code from the login page's `#oidc=` fragment.
    code: String,
}

/// Exchanges the one-time code of a finished sign-in for tokens (from the
/// browser that signed in: its state cookie goes with the request).
#[utoipa::path(post, path = "/api/v1/auth/oidc/exchange", tag = "auth", request_body = ExchangeRequest, responses(
    (status = 200, body = TokenResponse), (status = 401, body = crate::error::ErrorBody, description = "`invalid_code`")))]
pub(crate) async fn exchange(
    State(state): State<AppState>,
    headers: HeaderMap,
    ApiJson(body): ApiJson<ExchangeRequest>,
) -> Result<Response, ApiError> {
    let browser = cookie_state(&headers).unwrap_or_default();
    let Some(user) = oidc::take_hand_off(state.db(), body.code.trim(), &browser).await? else {
        return Err(ApiError::new(
            StatusCode::UNAUTHORIZED,
            "invalid_code",
            "the sign-in took too long or was already used; sign in again",
        ));
    };
    let credentials = users::credentials(state.db(), user).await?;
    if !credentials.active {
        return Err(ApiError::unauthenticated());
    }
    let mut response = Json(start_session(&state, user, credentials.role).await?).into_response();
    clear_cookie(&mut response);
    Ok(response)
}
