//! Signed tokens (JWT, RFC 7519) and opaque refresh tokens.
//!
//! Access, visit and TOTP-challenge tokens are JWTs signed with HMAC-SHA256
//! under the server's key. Verification pins the algorithm (so `alg: none`
//! and algorithm-confusion tokens fail), and requires issuer, audience,
//! expiry, not-before and the token type the route expects. Refresh tokens
//! are opaque random strings stored only as SHA-256, so a leaked database
//! yields no usable token.

use base64::Engine as _;
use bedside_records::domain::StaffRole;
use bedside_records::ids::{AppointmentId, PractitionerId};
use chrono::Utc;
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use rand::RngCore;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::time::Duration;
use uuid::Uuid;

/// The one algorithm Bedside signs and accepts.
pub const ALGORITHM: Algorithm = Algorithm::HS256;

/// Allowed clock difference between nodes when checking `exp` and `nbf`.
const LEEWAY_SECS: u64 = 30;

/// What a token may be used for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TokenKind {
    /// A staff member's API access.
    Access,
    /// A patient's session for one visit.
    Visit,
    /// A guest's (interpreter, family member) session for one video visit:
    /// the call and nothing else.
    Guest,
    /// Proof of a correct password while the TOTP code is still due.
    TotpChallenge,
}

/// The claims of every Bedside JWT.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Claims {
    /// Issuer.
    pub iss: String,
    /// Audience.
    pub aud: String,
    /// Subject: a user id (access, challenge) or patient id (visit).
    pub sub: Uuid,
    /// Token type.
    pub typ: TokenKind,
    /// Expiry (seconds since the epoch).
    pub exp: i64,
    /// Not valid before.
    pub nbf: i64,
    /// Issued at.
    pub iat: i64,
    /// Unique id.
    pub jti: Uuid,
    /// Session: the refresh family (access) or the join link (visit).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sid: Option<Uuid>,
    /// Staff role (access).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub role: Option<StaffRole>,
    /// Practitioner record of a clinician (access).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prc: Option<PractitionerId>,
    /// The one appointment a visit token reaches.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub apt: Option<AppointmentId>,
    /// SMART-style scopes (`user/*.read`, ...) of an access token minted for
    /// a FHIR client; such a token reaches only `/fhir`, and only that.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scope: Option<String>,
    /// The patient a `patient/` scope is bound to (SMART's launch context).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub patient: Option<Uuid>,
}

/// Why a token was refused (not shown to clients, who get a plain 401).
#[derive(Debug, thiserror::Error)]
#[error("invalid token: {0}")]
pub struct InvalidToken(#[from] jsonwebtoken::errors::Error);

/// The signing and verification keys with the pinned validation rules.
#[derive(Clone)]
pub struct TokenKeys {
    encoding: EncodingKey,
    decoding: DecodingKey,
    validation: Validation,
    issuer: String,
    audience: String,
}

impl TokenKeys {
    /// Keys from an HMAC secret.
    ///
    /// # Panics
    /// When the secret is shorter than 32 bytes (RFC 7518 §3.2 asks for at
    /// least the hash size).
    pub fn new(secret: &[u8], issuer: &str, audience: &str) -> Self {
        assert!(
            secret.len() >= 32,
            "token signing key must be at least 32 bytes"
        );
        let mut validation = Validation::new(ALGORITHM);
        validation.algorithms = vec![ALGORITHM];
        validation.set_issuer(&[issuer]);
        validation.set_audience(&[audience]);
        validation.set_required_spec_claims(&["exp", "nbf", "iss", "aud", "sub"]);
        validation.validate_exp = true;
        validation.validate_nbf = true;
        validation.leeway = LEEWAY_SECS;
        Self {
            encoding: EncodingKey::from_secret(secret),
            decoding: DecodingKey::from_secret(secret),
            validation,
            issuer: issuer.to_owned(),
            audience: audience.to_owned(),
        }
    }

    /// Claims of a new token of `typ` for `sub`, valid from now for `ttl`.
    pub fn claims(&self, typ: TokenKind, sub: Uuid, ttl: Duration) -> Claims {
        let now = Utc::now().timestamp();
        Claims {
            iss: self.issuer.clone(),
            aud: self.audience.clone(),
            sub,
            typ,
            exp: now + ttl.as_secs() as i64,
            nbf: now,
            iat: now,
            jti: Uuid::new_v4(),
            sid: None,
            role: None,
            prc: None,
            apt: None,
            scope: None,
            patient: None,
        }
    }

    /// Signs claims.
    pub fn sign(&self, claims: &Claims) -> String {
        jsonwebtoken::encode(&Header::new(ALGORITHM), claims, &self.encoding)
            .expect("HMAC signing of serializable claims cannot fail")
    }

    /// Verifies a token's signature, algorithm, issuer, audience and times.
    /// The caller checks the type.
    ///
    /// # Errors
    /// [`InvalidToken`] for any failed check.
    pub fn verify(&self, token: &str) -> Result<Claims, InvalidToken> {
        Ok(jsonwebtoken::decode::<Claims>(token, &self.decoding, &self.validation)?.claims)
    }
}

/// A new opaque refresh token and the hash to store.
pub fn new_refresh_token() -> (String, Vec<u8>) {
    let mut bytes = [0u8; 32];
    rand::rngs::OsRng.fill_bytes(&mut bytes);
    let token = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes);
    let hash = hash_refresh_token(&token);
    (token, hash)
}

/// How a refresh token is stored and looked up.
pub fn hash_refresh_token(token: &str) -> Vec<u8> {
    Sha256::digest(token.as_bytes()).to_vec()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn keys() -> TokenKeys {
        TokenKeys::new(&[7u8; 32], "bedside", "bedside-api")
    }

    #[test]
    fn a_fresh_token_verifies() {
        let k = keys();
        let c = k.claims(TokenKind::Access, Uuid::new_v4(), Duration::from_secs(60));
        let back = k.verify(&k.sign(&c)).unwrap();
        assert_eq!(back.sub, c.sub);
        assert_eq!(back.typ, TokenKind::Access);
    }

    #[test]
    fn expired_future_foreign_and_unsigned_tokens_fail() {
        let k = keys();
        let base = k.claims(TokenKind::Access, Uuid::new_v4(), Duration::from_secs(60));
        let expired = Claims {
            exp: Utc::now().timestamp() - 3600,
            nbf: Utc::now().timestamp() - 7200,
            ..base.clone()
        };
        assert!(k.verify(&k.sign(&expired)).is_err());
        let early = Claims {
            nbf: Utc::now().timestamp() + 3600,
            exp: Utc::now().timestamp() + 7200,
            ..base.clone()
        };
        assert!(k.verify(&k.sign(&early)).is_err());
        let other = TokenKeys::new(&[8u8; 32], "bedside", "bedside-api");
        assert!(k.verify(&other.sign(&base)).is_err());
        let wrong_aud = Claims {
            aud: "someone-else".into(),
            ..base.clone()
        };
        assert!(k.verify(&k.sign(&wrong_aud)).is_err());
        let wrong_iss = Claims {
            iss: "mallory".into(),
            ..base.clone()
        };
        assert!(k.verify(&k.sign(&wrong_iss)).is_err());
        // alg: none, with the same claims and an empty signature
        let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
        let none = format!(
            "{}.{}.",
            b64.encode(br#"{"alg":"none","typ":"JWT"}"#),
            b64.encode(serde_json::to_vec(&base).unwrap())
        );
        assert!(k.verify(&none).is_err());
        assert!(k.verify("garbage").is_err());
    }
}
