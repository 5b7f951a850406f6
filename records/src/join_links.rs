//! Patient join links: an unguessable token bound to one appointment. Only
//! its SHA-256 is stored; issuing a new link revokes the older ones.
//!
//! A token is the HMAC of its link's id under the server's [`LinkSecret`]
//! (256 bits, unguessable without the secret), so the server can write the
//! live link into a reminder days after an admin sent it, without storing
//! the token: the reminder repeats the link the patient already has rather
//! than replacing it. When a
//! link may be used (from a lead time before the start until the end) is
//! decided from the appointment by the caller, so a rescheduled visit moves
//! its window with it.

use hmac::{Hmac, Mac};
use rand::RngCore;
use sha2::{Digest, Sha256};
use sqlx::PgPool;

use crate::ids::AppointmentId;

/// The key join-link tokens are derived under (the server derives it from
/// its signing key). Never logged.
#[derive(Clone)]
pub struct LinkSecret(Vec<u8>);

impl LinkSecret {
    /// The join-link key derived from the server's signing key (its own
    /// label, so it is never the key that signs tokens). Rotating the
    /// signing key makes live links unwritable (reminders then go out
    /// without one); the links themselves keep working.
    ///
    /// # Panics
    /// When shorter than 32 bytes: a configuration bug the server checks first.
    pub fn from_signing_key(key: &[u8]) -> Self {
        assert!(
            key.len() >= 32,
            "a join-link secret needs at least 32 bytes"
        );
        let mut mac = Hmac::<Sha256>::new_from_slice(key).expect("HMAC takes any key length");
        mac.update(b"bedside join-link key v1");
        Self(mac.finalize().into_bytes().to_vec())
    }

    /// The token of link `id`: URL-safe base64 of HMAC-SHA256(secret, id).
    fn token(&self, id: uuid::Uuid) -> String {
        use base64::Engine as _;
        let mut mac = Hmac::<Sha256>::new_from_slice(&self.0).expect("HMAC takes any key length");
        mac.update(b"bedside join link ");
        mac.update(id.as_bytes());
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(mac.finalize().into_bytes())
    }
}

impl std::fmt::Debug for LinkSecret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("LinkSecret(<redacted>)")
    }
}

/// A fresh random token: 32 random bytes, URL-safe base64 (256 bits).
pub(crate) fn new_token() -> String {
    use base64::Engine as _;
    let mut bytes = [0u8; 32];
    rand::rngs::OsRng.fill_bytes(&mut bytes);
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

pub(crate) fn hash(token: &str) -> Vec<u8> {
    Sha256::digest(token.as_bytes()).to_vec()
}

/// Issues a new join token for `appointment`, revoking earlier ones.
///
/// # Errors
/// [`crate::RecordsError::NotFound`] for an unknown appointment.
pub async fn issue(
    db: &PgPool,
    appointment: AppointmentId,
    secret: &LinkSecret,
) -> crate::Result<String> {
    let id = uuid::Uuid::now_v7();
    let token = secret.token(id);
    let mut tx = db.begin().await?;
    // Serialise issues for one appointment, so at most one link is live.
    let exists: Option<AppointmentId> =
        sqlx::query_scalar("SELECT id FROM appointments WHERE id = $1 FOR UPDATE")
            .bind(appointment)
            .fetch_optional(&mut *tx)
            .await?;
    if exists.is_none() {
        return Err(crate::RecordsError::NotFound("appointment"));
    }
    sqlx::query(
        "UPDATE join_links SET revoked_at = now() WHERE appointment_id = $1 AND revoked_at IS NULL",
    )
    .bind(appointment)
    .execute(&mut *tx)
    .await?;
    sqlx::query("INSERT INTO join_links (id, appointment_id, token_hash) VALUES ($1, $2, $3)")
        .bind(id)
        .bind(appointment)
        .bind(hash(&token))
        .execute(&mut *tx)
        .await?;
    tx.commit().await?;
    Ok(token)
}

/// The token of the appointment's live link, when it was derived (links
/// from before derivation, or under another key, cannot be written out
/// again). Never issues a link: a reminder must not replace the link the
/// patient has.
///
/// # Errors
/// Fails when the database does.
pub async fn live_token(
    db: &PgPool,
    appointment: AppointmentId,
    secret: &LinkSecret,
) -> crate::Result<Option<String>> {
    let live: Option<(uuid::Uuid, Vec<u8>)> = sqlx::query_as(
        "SELECT id, token_hash FROM join_links WHERE appointment_id = $1 AND revoked_at IS NULL",
    )
    .bind(appointment)
    .fetch_optional(db)
    .await?;
    Ok(live.and_then(|(id, stored)| {
        let token = secret.token(id);
        (hash(&token) == stored).then_some(token)
    }))
}

/// The link id and appointment of a live (unrevoked) token. The link id is
/// the session id of the visit session it is exchanged for.
///
/// # Errors
/// Fails when the database does.
pub async fn resolve(
    db: &PgPool,
    token: &str,
) -> crate::Result<Option<(uuid::Uuid, AppointmentId)>> {
    Ok(lookup(db, token)
        .await?
        .filter(|l| l.live)
        .map(|l| (l.id, l.appointment_id)))
}

/// A join link as found by its token, live or not.
#[derive(Debug, Clone, Copy, sqlx::FromRow)]
pub struct FoundLink {
    /// The link (the session id of visit sessions it gives out).
    pub id: uuid::Uuid,
    /// Its appointment.
    pub appointment_id: AppointmentId,
    /// False once replaced by a newer link or closed with its visit.
    pub live: bool,
}

/// Finds a link by its token, revoked ones included, so a patient holding
/// the link of a cancelled or finished visit can be told so.
///
/// # Errors
/// Fails when the database does.
pub async fn lookup(db: &PgPool, token: &str) -> crate::Result<Option<FoundLink>> {
    if token.len() > 128 {
        return Ok(None);
    }
    Ok(sqlx::query_as(
        "SELECT id, appointment_id, revoked_at IS NULL AS live FROM join_links WHERE token_hash = $1",
    )
    .bind(hash(token))
    .fetch_optional(db)
    .await?)
}

/// Whether the link a visit session came from is still live.
///
/// # Errors
/// Fails when the database does.
pub async fn is_live(db: &PgPool, link: uuid::Uuid) -> crate::Result<bool> {
    Ok(sqlx::query_scalar(
        "SELECT EXISTS (SELECT 1 FROM join_links WHERE id = $1 AND revoked_at IS NULL)",
    )
    .bind(link)
    .fetch_one(db)
    .await?)
}
