//! Staff sign-in through the clinic's OpenID Connect provider (Keycloak,
//! Entra ID, and the like), with the `openidconnect` crate: discovery, the
//! authorization code flow with PKCE (S256), and ID-token validation
//! against the provider's JWKS: issuer, audience, expiry, nonce, and the
//! signing algorithms the clinic pins.
//!
//! A provider account becomes a Bedside user by its verified e-mail the
//! first time and by its stable subject afterwards. Its role comes from a
//! claim (`groups`, or a dotted path such as `realm_access.roles`) mapped
//! through the configured values; an account whose role at the provider
//! differs from its Bedside account's is refused (an admin decides), and
//! one with no mapped value is refused too.

use std::sync::Arc;
use std::time::{Duration, Instant};

use bedside_records::domain::StaffRole;
use openidconnect::core::{
    CoreAuthenticationFlow, CoreClient, CoreJwsSigningAlgorithm, CoreProviderMetadata,
};
use openidconnect::{
    AuthorizationCode, ClientId, ClientSecret, CsrfToken, IssuerUrl, Nonce, PkceCodeChallenge,
    PkceCodeVerifier, RedirectUrl, Scope,
};
use tokio::sync::Mutex;

/// The provider Bedside trusts, from configuration.
#[derive(Clone)]
pub struct OidcSettings {
    /// The issuer URL (discovery is at `{issuer}/.well-known/openid-configuration`).
    pub issuer: String,
    /// Bedside's client id at the provider.
    pub client_id: String,
    /// Its client secret.
    pub client_secret: String,
    /// What the sign-in button says ("Sign in with {display_name}").
    pub display_name: String,
    /// The claim holding roles or groups: a name or a dotted path.
    pub roles_claim: String,
    /// Values of that claim that make an admin.
    pub admin_values: Vec<String>,
    /// Values that make a clinician.
    pub clinician_values: Vec<String>,
    /// The ID-token signing algorithms accepted (e.g. `RS256`, `ES256`).
    pub allowed_algs: Vec<String>,
    /// Whether a first sign-in without a Bedside account creates one.
    pub create_users: bool,
    /// Scopes asked for besides `openid`.
    pub scopes: Vec<String>,
}

impl std::fmt::Debug for OidcSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OidcSettings")
            .field("issuer", &self.issuer)
            .field("client_id", &self.client_id)
            .finish_non_exhaustive()
    }
}

/// Why a sign-in failed; each maps to one stable error code.
#[derive(Debug, thiserror::Error)]
pub enum OidcError {
    /// The provider cannot be reached or its discovery document is bad.
    #[error("the identity provider is unavailable")]
    Unavailable(String),
    /// The code exchange failed (bad code, client secret, PKCE verifier).
    #[error("the identity provider did not accept the sign-in")]
    Exchange(String),
    /// The ID token failed validation.
    #[error("the identity provider's ID token was not valid")]
    InvalidToken(String),
    /// A claim Bedside needs is missing or unverified.
    #[error("{0}")]
    Claims(&'static str),
}

/// What a validated ID token says about the person.
#[derive(Debug, Clone)]
pub struct Identity {
    /// The issuer.
    pub issuer: String,
    /// The provider's stable id of the account.
    pub subject: String,
    /// The verified e-mail address, lower-cased.
    pub email: String,
    /// Their name, when given.
    pub name: Option<String>,
    /// The role the provider's claim maps to.
    pub role: Option<StaffRole>,
}

/// A sign-in about to leave for the provider.
pub struct Start {
    /// Where to send the browser.
    pub url: String,
    /// The CSRF state (bound to the browser by a cookie).
    pub state: String,
    /// The nonce the ID token must carry.
    pub nonce: String,
    /// The PKCE verifier.
    pub pkce_verifier: String,
}

/// The provider: settings, and its discovery document cached for an hour
/// (a key rotation is picked up by discovering again).
pub struct Provider {
    settings: OidcSettings,
    redirect_uri: String,
    http: openidconnect::reqwest::Client,
    metadata: Mutex<Option<(Instant, Arc<CoreProviderMetadata>)>>,
}

const METADATA_TTL: Duration = Duration::from_secs(3600);

impl Provider {
    /// A provider whose callback is `redirect_uri`.
    ///
    /// # Errors
    /// When the HTTP client cannot be built.
    pub fn new(settings: OidcSettings, redirect_uri: String) -> Result<Self, OidcError> {
        let http = openidconnect::reqwest::ClientBuilder::new()
            // Following redirects opens the client up to SSRF.
            .redirect(openidconnect::reqwest::redirect::Policy::none())
            .timeout(Duration::from_secs(15))
            .build()
            .map_err(|e| OidcError::Unavailable(e.to_string()))?;
        Ok(Self {
            settings,
            redirect_uri,
            http,
            metadata: Mutex::new(None),
        })
    }

    /// The settings.
    pub fn settings(&self) -> &OidcSettings {
        &self.settings
    }

    async fn metadata(&self, fresh: bool) -> Result<Arc<CoreProviderMetadata>, OidcError> {
        let mut cached = self.metadata.lock().await;
        if let Some((at, metadata)) = cached.as_ref()
            && !fresh
            && at.elapsed() < METADATA_TTL
        {
            return Ok(metadata.clone());
        }
        let issuer = IssuerUrl::new(self.settings.issuer.clone())
            .map_err(|e| OidcError::Unavailable(e.to_string()))?;
        let metadata = Arc::new(
            CoreProviderMetadata::discover_async(issuer, &self.http)
                .await
                .map_err(|e| OidcError::Unavailable(e.to_string()))?,
        );
        *cached = Some((Instant::now(), metadata.clone()));
        Ok(metadata)
    }

    fn client(
        &self,
        metadata: &CoreProviderMetadata,
    ) -> Result<
        CoreClient<
            openidconnect::EndpointSet,
            openidconnect::EndpointNotSet,
            openidconnect::EndpointNotSet,
            openidconnect::EndpointNotSet,
            openidconnect::EndpointMaybeSet,
            openidconnect::EndpointMaybeSet,
        >,
        OidcError,
    > {
        let redirect = RedirectUrl::new(self.redirect_uri.clone())
            .map_err(|e| OidcError::Unavailable(e.to_string()))?;
        Ok(CoreClient::from_provider_metadata(
            metadata.clone(),
            ClientId::new(self.settings.client_id.clone()),
            Some(ClientSecret::new(self.settings.client_secret.clone())),
        )
        .set_redirect_uri(redirect))
    }

    /// Starts a sign-in: the provider URL with a fresh state, nonce and
    /// PKCE challenge.
    ///
    /// # Errors
    /// When the provider is unavailable.
    pub async fn start(&self) -> Result<Start, OidcError> {
        let metadata = self.metadata(false).await?;
        let client = self.client(&metadata)?;
        let (challenge, verifier) = PkceCodeChallenge::new_random_sha256();
        let mut request = client
            .authorize_url(
                CoreAuthenticationFlow::AuthorizationCode,
                CsrfToken::new_random,
                Nonce::new_random,
            )
            .set_pkce_challenge(challenge);
        for scope in &self.settings.scopes {
            request = request.add_scope(Scope::new(scope.clone()));
        }
        let (url, state, nonce) = request.url();
        Ok(Start {
            url: url.to_string(),
            state: state.secret().clone(),
            nonce: nonce.secret().clone(),
            pkce_verifier: verifier.secret().clone(),
        })
    }

    /// Finishes a sign-in: exchanges the code with the PKCE verifier and
    /// validates the ID token (issuer, audience, expiry, nonce, signature
    /// by the provider's JWKS with a pinned algorithm).
    ///
    /// # Errors
    /// [`OidcError`] naming what failed.
    pub async fn finish(
        &self,
        code: &str,
        nonce: &str,
        pkce_verifier: &str,
    ) -> Result<Identity, OidcError> {
        let metadata = self.metadata(false).await?;
        let client = self.client(&metadata)?;
        let response = client
            .exchange_code(AuthorizationCode::new(code.to_owned()))
            .map_err(|e| OidcError::Exchange(e.to_string()))?
            .set_pkce_verifier(PkceCodeVerifier::new(pkce_verifier.to_owned()))
            .request_async(&self.http)
            .await
            .map_err(|e| OidcError::Exchange(e.to_string()))?;
        let id_token = response
            .extra_fields()
            .id_token()
            .ok_or(OidcError::InvalidToken("no ID token".into()))?;
        let algs: Vec<CoreJwsSigningAlgorithm> = self
            .settings
            .allowed_algs
            .iter()
            .filter_map(|a| serde_json::from_value(serde_json::Value::String(a.clone())).ok())
            .collect();
        let nonce = Nonce::new(nonce.to_owned());
        let verify = |client: &CoreClient<_, _, _, _, _, _>| {
            id_token
                .claims(
                    &client.id_token_verifier().set_allowed_algs(algs.clone()),
                    &nonce,
                )
                .cloned()
        };
        let claims = match verify(&client) {
            Ok(claims) => claims,
            // The provider may have rotated its keys since discovery.
            Err(first) => {
                let metadata = self.metadata(true).await?;
                verify(&self.client(&metadata)?)
                    .map_err(|_| OidcError::InvalidToken(first.to_string()))?
            }
        };
        // An e-mail the provider does not vouch for (`email_verified` false
        // or absent) could be anyone's: it never matches an account.
        if claims.email_verified() != Some(true) {
            return Err(OidcError::Claims(
                "the identity provider has not verified this account's e-mail address",
            ));
        }
        let email = claims
            .email()
            .map(|e| e.as_str().trim().to_lowercase())
            .ok_or(OidcError::Claims(
                "the identity provider gave no e-mail address (ask for the email scope)",
            ))?;
        let name = claims
            .name()
            .and_then(|n| n.get(None))
            .map(|n| n.as_str().to_owned());
        // The token is verified; read the role claim from its payload.
        let payload = payload_of(&id_token.to_string())
            .ok_or(OidcError::InvalidToken("unreadable payload".into()))?;
        Ok(Identity {
            issuer: claims.issuer().as_str().to_owned(),
            subject: claims.subject().as_str().to_owned(),
            email,
            name,
            role: role_of(&payload, &self.settings),
        })
    }
}

/// The JSON payload of a compact JWT (already verified by the caller).
fn payload_of(jwt: &str) -> Option<serde_json::Value> {
    use base64::Engine as _;
    let payload = jwt.split('.').nth(1)?;
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(payload.trim_end_matches('='))
        .ok()?;
    serde_json::from_slice(&bytes).ok()
}

/// The Bedside role the claims map to: admin wins over clinician.
fn role_of(payload: &serde_json::Value, settings: &OidcSettings) -> Option<StaffRole> {
    let mut value = payload;
    for part in settings.roles_claim.split('.') {
        value = value.get(part)?;
    }
    let values: Vec<&str> = match value {
        serde_json::Value::Array(items) => items.iter().filter_map(|v| v.as_str()).collect(),
        serde_json::Value::String(one) => one.split_whitespace().collect(),
        _ => Vec::new(),
    };
    let has = |wanted: &[String]| values.iter().any(|v| wanted.iter().any(|w| w == v));
    if has(&settings.admin_values) {
        Some(StaffRole::Admin)
    } else if has(&settings.clinician_values) {
        Some(StaffRole::Clinician)
    } else {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings(claim: &str) -> OidcSettings {
        OidcSettings {
            issuer: "https://idp.example".into(),
            client_id: "bedside".into(),
            client_secret: "s".into(),
            display_name: "IdP".into(),
            roles_claim: claim.into(),
            admin_values: vec!["bedside-admins".into()],
            clinician_values: vec!["bedside-clinicians".into()],
            allowed_algs: vec!["RS256".into()],
            create_users: true,
            scopes: vec![],
        }
    }

    #[test]
    fn roles_map_from_arrays_nested_paths_and_space_separated_strings() {
        let groups = serde_json::json!({ "groups": ["staff", "bedside-clinicians"] });
        assert_eq!(
            role_of(&groups, &settings("groups")),
            Some(StaffRole::Clinician)
        );
        let both = serde_json::json!({ "groups": ["bedside-clinicians", "bedside-admins"] });
        assert_eq!(role_of(&both, &settings("groups")), Some(StaffRole::Admin));
        let keycloak = serde_json::json!({ "realm_access": { "roles": ["bedside-admins"] } });
        assert_eq!(
            role_of(&keycloak, &settings("realm_access.roles")),
            Some(StaffRole::Admin)
        );
        let spaced = serde_json::json!({ "roles": "x bedside-clinicians" });
        assert_eq!(
            role_of(&spaced, &settings("roles")),
            Some(StaffRole::Clinician)
        );
        for none in [
            serde_json::json!({}),
            serde_json::json!({ "groups": ["nurses"] }),
            serde_json::json!({ "groups": 7 }),
        ] {
            assert_eq!(role_of(&none, &settings("groups")), None, "{none}");
        }
    }

    #[test]
    fn a_jwt_payload_is_read_and_garbage_is_not() {
        use base64::Engine as _;
        let body = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(br#"{"sub":"a"}"#);
        assert_eq!(payload_of(&format!("h.{body}.s")).unwrap()["sub"], "a");
        assert!(payload_of("nodots").is_none());
        assert!(payload_of("a.!!!.c").is_none());
    }
}
