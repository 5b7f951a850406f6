//! The records side of OpenID Connect sign-in (migration 0008): sign-ins
//! in progress, the one-time hand-off of a finished one to the web client,
//! and the link between a provider's account and a Bedside user.

use sqlx::PgPool;

use crate::ids::UserId;
use crate::join_links::{hash, new_token};

/// A sign-in in progress, as stored when the browser left for the provider.
#[derive(Debug, Clone)]
pub struct PendingLogin {
    /// The nonce the ID token must carry.
    pub nonce: String,
    /// The PKCE code verifier.
    pub pkce_verifier: String,
    /// Where the web client goes afterwards (a path of Bedside's own).
    pub next: String,
}

/// Records a sign-in in progress under its `state`.
///
/// # Errors
/// Fails when the database does.
pub async fn start_login(db: &PgPool, state: &str, login: &PendingLogin) -> crate::Result<()> {
    // Abandoned sign-ins do not pile up.
    sqlx::query("DELETE FROM oidc_logins WHERE created_at < now() - interval '10 minutes'")
        .execute(db)
        .await?;
    sqlx::query(
        "INSERT INTO oidc_logins (state_hash, nonce, pkce_verifier, next) VALUES ($1, $2, $3, $4)",
    )
    .bind(hash(state))
    .bind(&login.nonce)
    .bind(&login.pkce_verifier)
    .bind(&login.next)
    .execute(db)
    .await?;
    Ok(())
}

/// Takes (and deletes) the sign-in started under `state`, if it is at most
/// ten minutes old: a state is good once.
///
/// # Errors
/// Fails when the database does.
pub async fn take_login(db: &PgPool, state: &str) -> crate::Result<Option<PendingLogin>> {
    let row: Option<(String, String, String)> = sqlx::query_as(
        "DELETE FROM oidc_logins WHERE state_hash = $1 AND created_at > now() - interval '10 minutes'
         RETURNING nonce, pkce_verifier, next",
    )
    .bind(hash(state))
    .fetch_optional(db)
    .await?;
    Ok(row.map(|(nonce, pkce_verifier, next)| PendingLogin {
        nonce,
        pkce_verifier,
        next,
    }))
}

/// A one-time code the web client exchanges for the user's tokens, bound
/// to the browser that holds `browser` (its sign-in state cookie).
///
/// # Errors
/// Fails when the database does.
pub async fn hand_off(db: &PgPool, user: UserId, browser: &str) -> crate::Result<String> {
    let code = new_token();
    sqlx::query("DELETE FROM oidc_handoffs WHERE created_at < now() - interval '1 minute'")
        .execute(db)
        .await?;
    sqlx::query("INSERT INTO oidc_handoffs (code_hash, user_id, browser_hash) VALUES ($1, $2, $3)")
        .bind(hash(&code))
        .bind(user)
        .bind(hash(browser))
        .execute(db)
        .await?;
    Ok(code)
}

/// Takes (and deletes) a hand-off code at most a minute old, presented by
/// the browser it is bound to.
///
/// # Errors
/// Fails when the database does.
pub async fn take_hand_off(
    db: &PgPool,
    code: &str,
    browser: &str,
) -> crate::Result<Option<UserId>> {
    if code.len() > 128 || browser.len() > 128 {
        return Ok(None);
    }
    Ok(sqlx::query_scalar(
        "DELETE FROM oidc_handoffs
         WHERE code_hash = $1 AND browser_hash = $2 AND created_at > now() - interval '1 minute'
         RETURNING user_id",
    )
    .bind(hash(code))
    .bind(hash(browser))
    .fetch_optional(db)
    .await?)
}

/// The user a provider account is linked to.
///
/// # Errors
/// Fails when the database does.
pub async fn linked_user(
    db: &PgPool,
    issuer: &str,
    subject: &str,
) -> crate::Result<Option<UserId>> {
    Ok(
        sqlx::query_scalar(
            "SELECT user_id FROM user_identities WHERE issuer = $1 AND subject = $2",
        )
        .bind(issuer)
        .bind(subject)
        .fetch_optional(db)
        .await?,
    )
}

/// Whether the user is already linked to an account of this provider.
///
/// # Errors
/// Fails when the database does.
pub async fn has_identity(db: &PgPool, issuer: &str, user: UserId) -> crate::Result<bool> {
    Ok(sqlx::query_scalar(
        "SELECT EXISTS (SELECT 1 FROM user_identities WHERE issuer = $1 AND user_id = $2)",
    )
    .bind(issuer)
    .bind(user)
    .fetch_one(db)
    .await?)
}

/// Links a provider account to a user (once; a second link of the same
/// account is ignored).
///
/// # Errors
/// Fails when the database does.
pub async fn link(db: &PgPool, issuer: &str, subject: &str, user: UserId) -> crate::Result<()> {
    sqlx::query(
        "INSERT INTO user_identities (issuer, subject, user_id) VALUES ($1, $2, $3)
         ON CONFLICT (issuer, subject) DO NOTHING",
    )
    .bind(issuer)
    .bind(subject)
    .bind(user)
    .execute(db)
    .await?;
    Ok(())
}
