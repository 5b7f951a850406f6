//! Clinicians' calendar feeds: a secret URL per clinician that calendar
//! applications subscribe to. Only the token's SHA-256 is stored; a new
//! feed revokes the old one, and revoking ends it.

use sqlx::PgPool;

use crate::appointments::{self, Appointment, AppointmentFilter};
use crate::ids::PractitionerId;

/// Issues a new feed token for `practitioner`, revoking the live one.
///
/// # Errors
/// Fails when the database does.
pub async fn issue(db: &PgPool, practitioner: PractitionerId) -> crate::Result<String> {
    let token = crate::join_links::new_token();
    let mut tx = db.begin().await?;
    sqlx::query(
        "UPDATE calendar_feeds SET revoked_at = now() WHERE practitioner_id = $1 AND revoked_at IS NULL",
    )
    .bind(practitioner)
    .execute(&mut *tx)
    .await?;
    sqlx::query("INSERT INTO calendar_feeds (id, practitioner_id, token_hash) VALUES ($1, $2, $3)")
        .bind(uuid::Uuid::now_v7())
        .bind(practitioner)
        .bind(crate::join_links::hash(&token))
        .execute(&mut *tx)
        .await?;
    tx.commit().await?;
    Ok(token)
}

/// Revokes the practitioner's live feed; whether there was one.
///
/// # Errors
/// Fails when the database does.
pub async fn revoke(db: &PgPool, practitioner: PractitionerId) -> crate::Result<bool> {
    Ok(sqlx::query(
        "UPDATE calendar_feeds SET revoked_at = now() WHERE practitioner_id = $1 AND revoked_at IS NULL",
    )
    .bind(practitioner)
    .execute(db)
    .await?
    .rows_affected()
        > 0)
}

/// The practitioner (and their account) a live feed token belongs to; a
/// feed of a deactivated account or practitioner answers nothing.
///
/// # Errors
/// Fails when the database does.
pub async fn resolve(
    db: &PgPool,
    token: &str,
) -> crate::Result<Option<(PractitionerId, crate::ids::UserId)>> {
    if token.len() > 128 {
        return Ok(None);
    }
    Ok(sqlx::query_as(
        "SELECT f.practitioner_id, u.id FROM calendar_feeds f
         JOIN practitioners p ON p.id = f.practitioner_id AND p.active
         JOIN users u ON u.id = p.user_id AND u.active
         WHERE f.token_hash = $1 AND f.revoked_at IS NULL",
    )
    .bind(crate::join_links::hash(token))
    .fetch_optional(db)
    .await?)
}

/// The appointments a feed shows: the practitioner's, from `days_back`
/// days ago to `days_ahead` days ahead, cancelled ones included (so
/// calendars remove them).
///
/// # Errors
/// Fails when the database does.
pub async fn appointments_of(
    db: &PgPool,
    practitioner: PractitionerId,
    now: chrono::DateTime<chrono::Utc>,
    days_back: i64,
    days_ahead: i64,
) -> crate::Result<Vec<Appointment>> {
    let filter = AppointmentFilter {
        practitioner_id: Some(practitioner),
        from: Some(now - chrono::Duration::days(days_back)),
        to: Some(now + chrono::Duration::days(days_ahead)),
        ..Default::default()
    };
    let mut all = Vec::new();
    loop {
        let (page, total) = appointments::page(db, &filter, all.len() as i64, 1000).await?;
        let done = page.is_empty();
        all.extend(page);
        if done || all.len() as i64 >= total {
            return Ok(all);
        }
    }
}
