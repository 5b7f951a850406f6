//! Guest links: a clinician's invitation of an interpreter or a family
//! member into one video visit. A link is single-use: redeeming it records
//! the guest's name and marks it used, atomically, so two people holding
//! the same link cannot both get in. Revoking it ends the guest's access
//! (their session checks the link on every use). Only the token's SHA-256
//! is stored.

use chrono::{DateTime, Utc};
use sqlx::PgPool;

use crate::ids::{AppointmentId, UserId};

/// A guest link as the clinician sees it (never the token).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, sqlx::FromRow, utoipa::ToSchema)]
pub struct GuestLink {
    /// Id (also the session id of the guest's session).
    pub id: uuid::Uuid,
    /// The visit.
    #[schema(value_type = String, format = Uuid)]
    pub appointment_id: AppointmentId,
    /// What the clinician called the guest.
    pub label: String,
    /// The name the guest gave, once redeemed.
    pub guest_name: Option<String>,
    /// When issued.
    pub created_at: DateTime<Utc>,
    /// When redeemed.
    pub used_at: Option<DateTime<Utc>>,
    /// When revoked.
    pub revoked_at: Option<DateTime<Utc>>,
}

const COLUMNS: &str = "id, appointment_id, label, guest_name, created_at, used_at, revoked_at";

/// Issues a guest link for `appointment`; returns it and its token (shown
/// once, to the clinician who sends it on).
///
/// # Errors
/// [`crate::RecordsError::NotFound`] for an unknown appointment.
pub async fn issue(
    db: &PgPool,
    appointment: AppointmentId,
    label: &str,
    created_by: UserId,
) -> crate::Result<(GuestLink, String)> {
    let token = crate::join_links::new_token();
    let link = sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "INSERT INTO guest_links (id, appointment_id, token_hash, label, created_by)
         VALUES ($1, $2, $3, $4, $5) RETURNING {COLUMNS}"
    )))
    .bind(uuid::Uuid::now_v7())
    .bind(appointment)
    .bind(crate::join_links::hash(&token))
    .bind(label)
    .bind(created_by)
    .fetch_one(db)
    .await?;
    Ok((link, token))
}

/// The guest links of an appointment, newest first.
///
/// # Errors
/// Fails when the database does.
pub async fn list(db: &PgPool, appointment: AppointmentId) -> crate::Result<Vec<GuestLink>> {
    Ok(sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "SELECT {COLUMNS} FROM guest_links WHERE appointment_id = $1 ORDER BY created_at DESC"
    )))
    .bind(appointment)
    .fetch_all(db)
    .await?)
}

/// Revokes a link of `appointment`; `None` when there is no such link.
///
/// # Errors
/// Fails when the database does.
pub async fn revoke(
    db: &PgPool,
    appointment: AppointmentId,
    link: uuid::Uuid,
) -> crate::Result<Option<GuestLink>> {
    Ok(sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "UPDATE guest_links SET revoked_at = COALESCE(revoked_at, now())
         WHERE id = $1 AND appointment_id = $2 RETURNING {COLUMNS}"
    )))
    .bind(link)
    .bind(appointment)
    .fetch_optional(db)
    .await?)
}

/// What redeeming a token found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Redemption {
    /// Redeemed now: the guest may enter.
    Redeemed(GuestLink),
    /// Someone redeemed it before.
    AlreadyUsed,
    /// Revoked by the clinician.
    Revoked,
    /// No such link.
    Unknown,
}

/// Redeems a token for the guest `name`: at most once, ever.
///
/// # Errors
/// Fails when the database does.
pub async fn redeem(db: &PgPool, token: &str, name: &str) -> crate::Result<Redemption> {
    if token.len() > 128 {
        return Ok(Redemption::Unknown);
    }
    let hash = crate::join_links::hash(token);
    let redeemed: Option<GuestLink> = sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "UPDATE guest_links SET used_at = now(), guest_name = $2
         WHERE token_hash = $1 AND used_at IS NULL AND revoked_at IS NULL RETURNING {COLUMNS}"
    )))
    .bind(&hash)
    .bind(name)
    .fetch_optional(db)
    .await?;
    if let Some(link) = redeemed {
        return Ok(Redemption::Redeemed(link));
    }
    let state: Option<(bool, bool)> = sqlx::query_as(
        "SELECT revoked_at IS NOT NULL, used_at IS NOT NULL FROM guest_links WHERE token_hash = $1",
    )
    .bind(&hash)
    .fetch_optional(db)
    .await?;
    Ok(match state {
        Some((true, _)) => Redemption::Revoked,
        Some((false, true)) => Redemption::AlreadyUsed,
        _ => Redemption::Unknown,
    })
}

/// The appointment of a link, whatever its state (to check its window
/// before using it up).
///
/// # Errors
/// Fails when the database does.
pub async fn find(db: &PgPool, token: &str) -> crate::Result<Option<AppointmentId>> {
    if token.len() > 128 {
        return Ok(None);
    }
    Ok(
        sqlx::query_scalar("SELECT appointment_id FROM guest_links WHERE token_hash = $1")
            .bind(crate::join_links::hash(token))
            .fetch_optional(db)
            .await?,
    )
}

/// A redeemed, unrevoked link: the guest's name, for a live guest session.
///
/// # Errors
/// Fails when the database does.
pub async fn live_guest(db: &PgPool, link: uuid::Uuid) -> crate::Result<Option<String>> {
    Ok(sqlx::query_scalar(
        "SELECT guest_name FROM guest_links WHERE id = $1 AND revoked_at IS NULL AND used_at IS NOT NULL",
    )
    .bind(link)
    .fetch_optional(db)
    .await?
    .flatten())
}
