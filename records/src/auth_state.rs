//! Server-side auth state: refresh-token families and failed-login counts.
//!
//! Refresh tokens rotate on every use. Each login starts a family; each
//! refresh marks the presented token rotated and issues its successor in the
//! same family. Presenting a token that was already rotated means it was
//! copied, so the whole family is revoked (RFC 9700 §4.14.2).

use chrono::{DateTime, Duration, Utc};
use sqlx::PgPool;
use uuid::Uuid;

use crate::ids::UserId;

/// What presenting a refresh token led to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Rotation {
    /// The token was good; its successor is stored. Carries the account
    /// and the family (the session id access tokens carry).
    Rotated(UserId, Uuid),
    /// The token had already been rotated: the family is now revoked.
    ReuseDetected,
    /// Unknown, expired or revoked.
    Invalid,
}

/// A stored refresh token: family, account, expiry, rotated, revoked, account active.
type TokenRow = (
    Uuid,
    UserId,
    DateTime<Utc>,
    Option<DateTime<Utc>>,
    Option<DateTime<Utc>>,
    bool,
);

/// Stores the first token of a new family (a login) and returns the
/// family id, which access tokens carry as their session id.
///
/// # Errors
/// Fails when the database does.
pub async fn start_family(
    db: &PgPool,
    user: UserId,
    token_hash: &[u8],
    expires_at: DateTime<Utc>,
) -> crate::Result<Uuid> {
    let family = Uuid::now_v7();
    sqlx::query(
        "INSERT INTO refresh_tokens (id, family_id, user_id, token_hash, expires_at) VALUES ($1, $2, $3, $4, $5)",
    )
    .bind(Uuid::now_v7())
    .bind(family)
    .bind(user)
    .bind(token_hash)
    .bind(expires_at)
    .execute(db)
    .await?;
    Ok(family)
}

/// Exchanges the token with hash `presented` for a successor with hash `successor`.
///
/// # Errors
/// Fails when the database does.
pub async fn rotate(
    db: &PgPool,
    presented: &[u8],
    successor: &[u8],
    expires_at: DateTime<Utc>,
) -> crate::Result<Rotation> {
    let mut tx = db.begin().await?;
    let row: Option<TokenRow> = sqlx::query_as(
        "SELECT t.family_id, t.user_id, t.expires_at, t.rotated_at, t.revoked_at, u.active
         FROM refresh_tokens t JOIN users u ON u.id = t.user_id
         WHERE t.token_hash = $1 FOR UPDATE OF t",
    )
    .bind(presented)
    .fetch_optional(&mut *tx)
    .await?;
    let Some((family, user, expires, rotated, revoked, active)) = row else {
        return Ok(Rotation::Invalid);
    };
    if revoked.is_some() || !active {
        return Ok(Rotation::Invalid);
    }
    // Reuse is checked before expiry: a stolen token replayed late still
    // ends the session it was stolen from.
    if rotated.is_some() {
        revoke_family_in(&mut tx, family).await?;
        tx.commit().await?;
        return Ok(Rotation::ReuseDetected);
    }
    if expires <= Utc::now() {
        return Ok(Rotation::Invalid);
    }
    sqlx::query("UPDATE refresh_tokens SET rotated_at = now() WHERE token_hash = $1")
        .bind(presented)
        .execute(&mut *tx)
        .await?;
    sqlx::query(
        "INSERT INTO refresh_tokens (id, family_id, user_id, token_hash, expires_at) VALUES ($1, $2, $3, $4, $5)",
    )
    .bind(Uuid::now_v7())
    .bind(family)
    .bind(user)
    .bind(successor)
    // The session keeps its absolute end: rotation never extends it.
    .bind(expires.min(expires_at))
    .execute(&mut *tx)
    .await?;
    tx.commit().await?;
    Ok(Rotation::Rotated(user, family))
}

async fn revoke_family_in(tx: &mut sqlx::PgConnection, family: Uuid) -> crate::Result<()> {
    sqlx::query(
        "UPDATE refresh_tokens SET revoked_at = now() WHERE family_id = $1 AND revoked_at IS NULL",
    )
    .bind(family)
    .execute(tx)
    .await?;
    Ok(())
}

/// Logout: revokes the family of the presented token. Returns the account
/// when the token was known.
///
/// # Errors
/// Fails when the database does.
pub async fn revoke_family_of(db: &PgPool, token_hash: &[u8]) -> crate::Result<Option<UserId>> {
    let mut tx = db.begin().await?;
    let row: Option<(Uuid, UserId)> =
        sqlx::query_as("SELECT family_id, user_id FROM refresh_tokens WHERE token_hash = $1")
            .bind(token_hash)
            .fetch_optional(&mut *tx)
            .await?;
    if let Some((family, _)) = row {
        revoke_family_in(&mut tx, family).await?;
    }
    tx.commit().await?;
    Ok(row.map(|(_, user)| user))
}

/// Remembers a failed login for throttling.
///
/// # Errors
/// Fails when the database does.
pub async fn record_login_failure(
    db: &PgPool,
    account: &str,
    client_addr: &str,
) -> crate::Result<()> {
    sqlx::query("INSERT INTO login_failures (account, client_addr) VALUES (lower($1), $2)")
        .bind(account)
        .bind(client_addr)
        .execute(db)
        .await?;
    Ok(())
}

/// Recent failures for an account and for a client address within `window`.
///
/// # Errors
/// Fails when the database does.
pub async fn recent_login_failures(
    db: &PgPool,
    account: &str,
    client_addr: &str,
    window: Duration,
) -> crate::Result<(i64, i64)> {
    let since = Utc::now() - window;
    Ok(sqlx::query_as(
        "SELECT
            (SELECT count(*) FROM login_failures WHERE account = lower($1) AND at > $3),
            (SELECT count(*) FROM login_failures WHERE client_addr = $2 AND at > $3)",
    )
    .bind(account)
    .bind(client_addr)
    .bind(since)
    .fetch_one(db)
    .await?)
}

/// Forgets an account's failures after a successful login, and prunes old rows.
///
/// # Errors
/// Fails when the database does.
pub async fn clear_login_failures(
    db: &PgPool,
    account: &str,
    window: Duration,
) -> crate::Result<()> {
    sqlx::query("DELETE FROM login_failures WHERE account = lower($1) OR at < $2")
        .bind(account)
        .bind(Utc::now() - window)
        .execute(db)
        .await?;
    Ok(())
}

/// Whether a session (refresh family) is still live: not revoked by logout
/// or reuse, and its account still active. Checked on every request so a
/// logout ends the session's access tokens at once.
///
/// # Errors
/// Fails when the database does.
pub async fn session_is_live(db: &PgPool, family: Uuid) -> crate::Result<bool> {
    Ok(sqlx::query_scalar(
        "SELECT EXISTS (SELECT 1 FROM refresh_tokens t JOIN users u ON u.id = t.user_id
                        WHERE t.family_id = $1 AND t.revoked_at IS NULL AND u.active)",
    )
    .bind(family)
    .fetch_one(db)
    .await?)
}

/// Ends every session of an account except `keep` (the caller's own, after
/// a password change).
///
/// # Errors
/// Fails when the database does.
pub async fn revoke_sessions_of(
    db: &PgPool,
    user: UserId,
    keep: Option<Uuid>,
) -> crate::Result<()> {
    sqlx::query(
        "UPDATE refresh_tokens SET revoked_at = now()
         WHERE user_id = $1 AND revoked_at IS NULL AND ($2::uuid IS NULL OR family_id <> $2)",
    )
    .bind(user)
    .bind(keep)
    .execute(db)
    .await?;
    Ok(())
}
