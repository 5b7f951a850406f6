//! Practitioners: the clinical identity of clinician accounts.

use serde::Serialize;
use sqlx::PgPool;

use crate::ids::{PractitionerId, UserId};

/// A practitioner.
#[derive(Debug, Clone, Serialize, sqlx::FromRow, utoipa::ToSchema)]
pub struct Practitioner {
    /// Id.
    pub id: PractitionerId,
    /// The clinician's login account.
    pub user_id: Option<UserId>,
    /// Display name.
    pub name: String,
    /// Login e-mail of the account.
    pub email: Option<String>,
    /// Qualification.
    pub qualification: Option<String>,
    /// Whether they take appointments.
    pub active: bool,
}

const SELECT: &str = "SELECT p.id, p.user_id, p.name, u.email, p.qualification, p.active
     FROM practitioners p LEFT JOIN users u ON u.id = p.user_id";

/// Every practitioner, by name.
///
/// # Errors
/// Fails when the database does.
pub async fn list(db: &PgPool) -> crate::Result<Vec<Practitioner>> {
    Ok(
        sqlx::query_as::<_, Practitioner>(sqlx::AssertSqlSafe(format!("{SELECT} ORDER BY p.name")))
            .fetch_all(db)
            .await?,
    )
}

/// One practitioner.
///
/// # Errors
/// [`crate::RecordsError::NotFound`] when there is none.
pub async fn get(db: &PgPool, id: PractitionerId) -> crate::Result<Practitioner> {
    sqlx::query_as::<_, Practitioner>(sqlx::AssertSqlSafe(format!("{SELECT} WHERE p.id = $1")))
        .bind(id)
        .fetch_optional(db)
        .await?
        .ok_or(crate::RecordsError::NotFound("practitioner"))
}

/// The practitioner record of a clinician account, if it has one.
///
/// # Errors
/// Fails when the database does.
pub async fn for_user(db: &PgPool, user: UserId) -> crate::Result<Option<PractitionerId>> {
    Ok(
        sqlx::query_scalar("SELECT id FROM practitioners WHERE user_id = $1")
            .bind(user)
            .fetch_optional(db)
            .await?,
    )
}
