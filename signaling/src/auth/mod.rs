//! Authentication: who is calling.
//!
//! - Staff log in with e-mail and password ([`password`], argon2id), then a
//!   TOTP code when enrolled ([`totp`]), and receive a short-lived access
//!   token plus a rotating refresh token ([`tokens`]).
//! - Patients never have passwords: a join link's token is exchanged for a
//!   visit token scoped to one appointment.
//! - [`Caller`] is the extractor handlers use: it verifies the bearer token
//!   (pinned algorithm, issuer, audience, expiry, not-before, type) and that
//!   its session was not revoked since.

pub mod oidc;
pub mod password;
pub mod scopes;
pub mod tokens;
pub mod totp;

use axum::extract::FromRequestParts;
use axum::http::header;
use axum::http::request::Parts;
use bedside_records::domain::StaffRole;
use bedside_records::ids::{AppointmentId, PatientId, PractitionerId, UserId};
use uuid::Uuid;

use crate::app::AppState;
use crate::error::ApiError;
use tokens::TokenKind;

/// An authenticated caller.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Caller {
    /// An admin or clinician.
    Staff {
        /// Account.
        user: UserId,
        /// Role.
        role: StaffRole,
        /// A clinician's practitioner record.
        practitioner: Option<PractitionerId>,
        /// Session (refresh-token family).
        session: Uuid,
        /// For a token minted for a FHIR client: its scopes, which narrow
        /// what the staff member may do (and keep it to `/fhir`).
        grant: Option<scopes::Grant>,
    },
    /// A patient in a visit session: one appointment, nothing else.
    Patient {
        /// The visit.
        appointment: AppointmentId,
        /// The patient.
        patient: PatientId,
        /// The join link the session came from.
        link: Uuid,
    },
    /// A guest of one video visit (interpreter, family member), let in by
    /// a guest link: the call's signaling and nothing else.
    Guest {
        /// The visit.
        appointment: AppointmentId,
        /// The guest link (revoking it ends the session).
        link: Uuid,
    },
}

impl Caller {
    /// The role as written in audit rows.
    pub fn role_name(&self) -> &'static str {
        match self {
            Caller::Staff { role, .. } => role.as_str(),
            Caller::Patient { .. } => "patient",
            Caller::Guest { .. } => "guest",
        }
    }
    /// Whether this is a token minted for a FHIR client, which reaches
    /// only `/fhir` (not the REST API, not the live feed).
    pub fn is_scoped(&self) -> bool {
        matches!(self, Caller::Staff { grant: Some(_), .. })
    }
    /// The staff account, if any.
    pub fn user(&self) -> Option<UserId> {
        match self {
            Caller::Staff { user, .. } => Some(*user),
            Caller::Patient { .. } | Caller::Guest { .. } => None,
        }
    }
}

/// Why a request carries no valid identity. Kept apart from the 401 the
/// client sees so the policy can audit the attempt before refusing it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuthFailure {
    /// No `Authorization: Bearer` header.
    Missing,
    /// Bad signature, algorithm, issuer, audience, type, or not valid now.
    Invalid,
    /// Valid token whose session was logged out or whose link was replaced.
    Revoked,
}

/// The caller of a request, or why there is none. Extracting never fails:
/// handlers hand it to the policy, which decides and audits.
#[derive(Debug, Clone, Copy)]
pub struct Identity(pub Result<Caller, AuthFailure>);

impl FromRequestParts<AppState> for Identity {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &AppState,
    ) -> Result<Self, Self::Rejection> {
        match bearer(parts) {
            Some(token) => identify(state, token).await,
            None => Ok(Identity(Err(AuthFailure::Missing))),
        }
    }
}

/// Who a bearer token belongs to (the WebSocket sends it in its first
/// message, since browsers cannot set headers on a WebSocket).
///
/// # Errors
/// Only when the database fails while checking the session.
pub async fn identify(state: &AppState, token: &str) -> Result<Identity, ApiError> {
    let Ok(claims) = state.keys().verify(token) else {
        return Ok(Identity(Err(AuthFailure::Invalid)));
    };
    let caller = match claims.typ {
        TokenKind::Access => {
            let (Some(role), Some(session)) = (claims.role, claims.sid) else {
                return Ok(Identity(Err(AuthFailure::Invalid)));
            };
            if !bedside_records::auth_state::session_is_live(state.db(), session).await? {
                return Ok(Identity(Err(AuthFailure::Revoked)));
            }
            let grant = match claims.scope.as_deref() {
                None => None,
                Some(scope) => match scopes::Grant::parse(scope) {
                    Ok(grant) => Some(grant.for_patient(claims.patient.map(PatientId))),
                    Err(_) => return Ok(Identity(Err(AuthFailure::Invalid))),
                },
            };
            if grant.is_some_and(|g| {
                (g.context == scopes::ScopeContext::Patient) != g.patient.is_some()
            }) {
                return Ok(Identity(Err(AuthFailure::Invalid)));
            }
            Caller::Staff {
                user: UserId(claims.sub),
                role,
                practitioner: claims.prc,
                session,
                grant,
            }
        }
        TokenKind::Visit => {
            let (Some(appointment), Some(link)) = (claims.apt, claims.sid) else {
                return Ok(Identity(Err(AuthFailure::Invalid)));
            };
            if !bedside_records::join_links::is_live(state.db(), link).await? {
                return Ok(Identity(Err(AuthFailure::Revoked)));
            }
            Caller::Patient {
                appointment,
                patient: PatientId(claims.sub),
                link,
            }
        }
        TokenKind::Guest => {
            let (Some(appointment), Some(link)) = (claims.apt, claims.sid) else {
                return Ok(Identity(Err(AuthFailure::Invalid)));
            };
            if bedside_records::guest_links::live_guest(state.db(), link)
                .await?
                .is_none()
            {
                return Ok(Identity(Err(AuthFailure::Revoked)));
            }
            Caller::Guest { appointment, link }
        }
        TokenKind::TotpChallenge => return Ok(Identity(Err(AuthFailure::Invalid))),
    };
    Ok(Identity(Ok(caller)))
}

fn bearer(parts: &Parts) -> Option<&str> {
    let value = parts.headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = value.split_once(' ')?;
    scheme
        .eq_ignore_ascii_case("bearer")
        .then_some(token.trim())
}
