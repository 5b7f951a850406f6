//! Retention of the audit log: rows older than the configured period are
//! deleted by the server's retention pass, the one deletion the audit
//! log's trigger allows (migration 0006).

use chrono::{DateTime, Utc};
use sqlx::PgPool;

/// Deletes audit rows recorded before `before`; returns how many.
///
/// # Errors
/// Fails when the database does.
pub async fn purge_audit_before(db: &PgPool, before: DateTime<Utc>) -> crate::Result<u64> {
    let mut tx = db.begin().await?;
    // The trigger lets this transaction delete rows older than this, and
    // only those.
    sqlx::query("SELECT set_config('bedside.audit_purge_before', $1, true)")
        .bind(before.to_rfc3339())
        .execute(&mut *tx)
        .await?;
    let deleted = sqlx::query("DELETE FROM audit_log WHERE at < $1")
        .bind(before)
        .execute(&mut *tx)
        .await?
        .rows_affected();
    tx.commit().await?;
    Ok(deleted)
}
