//! The STUN and TURN servers handed to browsers for a video visit. TURN
//! credentials are short-lived and need no account: the "TURN REST API"
//! scheme that coturn implements (`use-auth-secret` with
//! `static-auth-secret`): the username is `<expiry unix time>:<participant
//! id>`, the password the base64 HMAC-SHA1 of the username under the secret
//! shared with the TURN server. The server checks the expiry itself.

use std::time::Duration;

use base64::Engine as _;
use hmac::{Hmac, Mac};
use serde::Serialize;
use uuid::Uuid;

/// Which ICE servers browsers get.
#[derive(Clone, Debug, Default)]
pub struct IceSettings {
    /// `stun:` URLs.
    pub stun_urls: Vec<String>,
    /// `turn:`/`turns:` URLs; used only with `turn_secret`.
    pub turn_urls: Vec<String>,
    /// The secret shared with the TURN server (`static-auth-secret`).
    pub turn_secret: Option<String>,
    /// How long a TURN credential is valid (a call longer than this keeps
    /// its allocation; a new connection gets a new credential).
    pub turn_ttl: Duration,
}

/// One entry of `RTCConfiguration.iceServers`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct IceServer {
    /// The server's URLs.
    pub urls: Vec<String>,
    /// TURN username.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub username: Option<String>,
    /// TURN password.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub credential: Option<String>,
}

/// The ICE servers for `participant`, TURN credentials valid from `now`
/// (unix seconds) for the configured time.
pub fn ice_servers(settings: &IceSettings, participant: Uuid, now: i64) -> Vec<IceServer> {
    let mut servers = Vec::new();
    if !settings.stun_urls.is_empty() {
        servers.push(IceServer {
            urls: settings.stun_urls.clone(),
            username: None,
            credential: None,
        });
    }
    if let Some(secret) = &settings.turn_secret
        && !settings.turn_urls.is_empty()
    {
        let expiry = now.saturating_add(i64::try_from(settings.turn_ttl.as_secs()).unwrap_or(0));
        let username = format!("{expiry}:{participant}");
        let credential = turn_password(secret, &username);
        servers.push(IceServer {
            urls: settings.turn_urls.clone(),
            username: Some(username),
            credential: Some(credential),
        });
    }
    servers
}

/// The TURN REST API password of `username` under `secret`.
pub fn turn_password(secret: &str, username: &str) -> String {
    let mut mac =
        Hmac::<sha1::Sha1>::new_from_slice(secret.as_bytes()).expect("HMAC takes any key length");
    mac.update(username.as_bytes());
    base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_password_is_coturns_hmac_sha1_of_the_username() {
        // Computed independently with Python's hmac and hashlib.
        assert_eq!(
            turn_password(
                "north-wind",
                "1700003600:3f1c2b4e-0000-4000-8000-000000000001"
            ),
            "lY1GtcPmzc3cE/xz1c2CxX2AoOw="
        );
    }

    #[test]
    fn turn_needs_a_secret_and_credentials_expire_after_the_ttl() {
        let participant = Uuid::parse_str("3f1c2b4e-0000-4000-8000-000000000001").unwrap();
        let mut settings = IceSettings {
            stun_urls: vec!["stun:stun.clinic.example:3478".into()],
            turn_urls: vec!["turn:turn.clinic.example:3478?transport=udp".into()],
            turn_secret: None,
            turn_ttl: Duration::from_secs(3600),
        };
        let servers = ice_servers(&settings, participant, 1_700_000_000);
        assert_eq!(servers.len(), 1, "no TURN without a secret: {servers:?}");
        assert_eq!(servers[0].username, None);
        settings.turn_secret = Some("north-wind".into());
        let servers = ice_servers(&settings, participant, 1_700_000_000);
        assert_eq!(servers.len(), 2);
        assert_eq!(
            servers[1].username.as_deref(),
            Some("1700003600:3f1c2b4e-0000-4000-8000-000000000001")
        );
        assert_eq!(
            servers[1].credential.as_deref(),
            Some("lY1GtcPmzc3cE/xz1c2CxX2AoOw=")
        );
        settings.stun_urls.clear();
        settings.turn_urls.clear();
        assert!(ice_servers(&settings, participant, 0).is_empty());
    }
}
