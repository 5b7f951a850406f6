//! Staff accounts (admins and clinicians). Password hashes are computed by
//! the caller (argon2id in the signaling crate); this store keeps them.

use chrono::{DateTime, Utc};
use serde::Serialize;
use sqlx::PgPool;

use crate::domain::{BoundedText, Email, StaffRole};
use crate::ids::{PractitionerId, UserId};

/// A staff account as shown to admins and to the user themself.
#[derive(Debug, Clone, Serialize, sqlx::FromRow, utoipa::ToSchema)]
pub struct User {
    /// Id.
    pub id: UserId,
    /// Login e-mail.
    pub email: String,
    /// Display name.
    pub name: String,
    /// Role.
    pub role: StaffRole,
    /// Whether TOTP is required at login.
    pub totp_enabled: bool,
    /// Whether the account may log in.
    pub active: bool,
    /// The practitioner record of a clinician.
    pub practitioner_id: Option<PractitionerId>,
    /// Created.
    pub created_at: DateTime<Utc>,
}

/// What login needs to see of an account. Never serialized, and its
/// `Debug` hides the hash and the secret.
#[derive(Clone, sqlx::FromRow)]
pub struct Credentials {
    /// Id.
    pub id: UserId,
    /// Role.
    pub role: StaffRole,
    /// argon2id PHC string.
    pub password_hash: String,
    /// Base32 TOTP secret, once enrolment started.
    pub totp_secret: Option<String>,
    /// Whether TOTP is required.
    pub totp_enabled: bool,
    /// Whether the account may log in.
    pub active: bool,
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Credentials")
            .field("id", &self.id)
            .field("role", &self.role)
            .field("totp_enabled", &self.totp_enabled)
            .field("active", &self.active)
            .finish_non_exhaustive()
    }
}

/// A new account.
#[derive(Debug, Clone)]
pub struct NewUser {
    /// Login e-mail.
    pub email: Email,
    /// Display name.
    pub name: BoundedText,
    /// Role.
    pub role: StaffRole,
    /// argon2id PHC string of the initial password.
    pub password_hash: String,
    /// A clinician's qualification (e.g. "MD, General Practice").
    pub qualification: Option<BoundedText>,
}

const SELECT_USER: &str = "SELECT u.id, u.email, u.name, u.role, u.totp_enabled, u.active, p.id AS practitioner_id, u.created_at
     FROM users u LEFT JOIN practitioners p ON p.user_id = u.id";

/// Creates an account; a clinician also gets a practitioner record.
///
/// # Errors
/// [`crate::RecordsError::Duplicate`] when the e-mail is taken.
pub async fn create(db: &PgPool, new: &NewUser) -> crate::Result<User> {
    let mut tx = db.begin().await?;
    let id = UserId::new();
    sqlx::query(
        "INSERT INTO users (id, email, name, role, password_hash) VALUES ($1, $2, $3, $4, $5)",
    )
    .bind(id)
    .bind(new.email.as_str())
    .bind(new.name.as_str())
    .bind(new.role)
    .bind(&new.password_hash)
    .execute(&mut *tx)
    .await?;
    if new.role == StaffRole::Clinician {
        sqlx::query(
            "INSERT INTO practitioners (id, user_id, name, qualification) VALUES ($1, $2, $3, $4)",
        )
        .bind(PractitionerId::new())
        .bind(id)
        .bind(new.name.as_str())
        .bind(new.qualification.as_ref().map(BoundedText::as_str))
        .execute(&mut *tx)
        .await?;
    }
    tx.commit().await?;
    get(db, id).await
}

/// One account.
///
/// # Errors
/// [`crate::RecordsError::NotFound`] when there is none.
pub async fn get(db: &PgPool, id: UserId) -> crate::Result<User> {
    sqlx::query_as::<_, User>(sqlx::AssertSqlSafe(format!(
        "{SELECT_USER} WHERE u.id = $1"
    )))
    .bind(id)
    .fetch_optional(db)
    .await?
    .ok_or(crate::RecordsError::NotFound("user"))
}

/// Every account, by name.
///
/// # Errors
/// Fails when the database does.
pub async fn list(db: &PgPool) -> crate::Result<Vec<User>> {
    Ok(sqlx::query_as::<_, User>(sqlx::AssertSqlSafe(format!(
        "{SELECT_USER} ORDER BY u.name"
    )))
    .fetch_all(db)
    .await?)
}

/// Login data for an e-mail (case-insensitive), if such an account exists.
///
/// # Errors
/// Fails when the database does.
pub async fn credentials_by_email(db: &PgPool, email: &str) -> crate::Result<Option<Credentials>> {
    Ok(sqlx::query_as::<_, Credentials>(
        "SELECT id, role, password_hash, totp_secret, totp_enabled, active FROM users WHERE lower(email) = lower($1)",
    )
    .bind(email)
    .fetch_optional(db)
    .await?)
}

/// Login data by id.
///
/// # Errors
/// [`crate::RecordsError::NotFound`] when there is no such account.
pub async fn credentials(db: &PgPool, id: UserId) -> crate::Result<Credentials> {
    sqlx::query_as::<_, Credentials>(
        "SELECT id, role, password_hash, totp_secret, totp_enabled, active FROM users WHERE id = $1",
    )
    .bind(id)
    .fetch_optional(db)
    .await?
    .ok_or(crate::RecordsError::NotFound("user"))
}

/// Stores a TOTP secret at the start of enrolment (not yet required).
///
/// # Errors
/// Fails when the database does.
pub async fn begin_totp(db: &PgPool, id: UserId, secret_base32: &str) -> crate::Result<()> {
    sqlx::query("UPDATE users SET totp_secret = $2 WHERE id = $1 AND NOT totp_enabled")
        .bind(id)
        .bind(secret_base32)
        .execute(db)
        .await?;
    Ok(())
}

/// Makes TOTP required and replaces the recovery codes with `code_hashes`.
///
/// # Errors
/// Fails when the database does.
pub async fn enable_totp(db: &PgPool, id: UserId, code_hashes: &[String]) -> crate::Result<()> {
    let mut tx = db.begin().await?;
    sqlx::query("UPDATE users SET totp_enabled = true WHERE id = $1")
        .bind(id)
        .execute(&mut *tx)
        .await?;
    sqlx::query("DELETE FROM recovery_codes WHERE user_id = $1")
        .bind(id)
        .execute(&mut *tx)
        .await?;
    for hash in code_hashes {
        sqlx::query("INSERT INTO recovery_codes (id, user_id, code_hash) VALUES ($1, $2, $3)")
            .bind(uuid::Uuid::now_v7())
            .bind(id)
            .bind(hash)
            .execute(&mut *tx)
            .await?;
    }
    tx.commit().await?;
    Ok(())
}

/// Accepts a TOTP time step when it is later than the last one accepted,
/// so each code signs in once. True when accepted.
///
/// # Errors
/// Fails when the database does.
pub async fn accept_totp_step(db: &PgPool, id: UserId, step: u64) -> crate::Result<bool> {
    let step = i64::try_from(step).unwrap_or(i64::MAX);
    let accepted = sqlx::query(
        "UPDATE users SET totp_last_step = $2 WHERE id = $1 AND (totp_last_step IS NULL OR totp_last_step < $2)",
    )
    .bind(id)
    .bind(step)
    .execute(db)
    .await?
    .rows_affected();
    Ok(accepted == 1)
}

/// Uses up a recovery code; true when it existed and was unused.
///
/// # Errors
/// Fails when the database does.
pub async fn consume_recovery_code(
    db: &PgPool,
    id: UserId,
    code_hash: &str,
) -> crate::Result<bool> {
    let used = sqlx::query(
        "UPDATE recovery_codes SET used_at = now() WHERE user_id = $1 AND code_hash = $2 AND used_at IS NULL",
    )
    .bind(id)
    .bind(code_hash)
    .execute(db)
    .await?
    .rows_affected();
    Ok(used == 1)
}

/// Changes an account's name and whether it may sign in. Deactivating ends
/// its sessions at once (every request checks the account is active).
///
/// # Errors
/// [`crate::RecordsError::NotFound`] for an unknown account.
pub async fn update(
    db: &PgPool,
    id: UserId,
    name: Option<&BoundedText>,
    active: Option<bool>,
) -> crate::Result<User> {
    let changed = sqlx::query(
        "UPDATE users SET name = COALESCE($2, name), active = COALESCE($3, active) WHERE id = $1",
    )
    .bind(id)
    .bind(name.map(BoundedText::as_str))
    .bind(active)
    .execute(db)
    .await?
    .rows_affected();
    if changed == 0 {
        return Err(crate::RecordsError::NotFound("user"));
    }
    if let Some(name) = name {
        sqlx::query("UPDATE practitioners SET name = $2 WHERE user_id = $1")
            .bind(id)
            .bind(name.as_str())
            .execute(db)
            .await?;
    }
    get(db, id).await
}

/// Turns two-step sign-in off and forgets the secret and recovery codes
/// (for a lost phone); the user can enrol again.
///
/// # Errors
/// [`crate::RecordsError::NotFound`] for an unknown account.
pub async fn reset_totp(db: &PgPool, id: UserId) -> crate::Result<()> {
    let mut tx = db.begin().await?;
    let changed = sqlx::query(
        "UPDATE users SET totp_enabled = false, totp_secret = NULL, totp_last_step = NULL WHERE id = $1",
    )
    .bind(id)
    .execute(&mut *tx)
    .await?
    .rows_affected();
    if changed == 0 {
        return Err(crate::RecordsError::NotFound("user"));
    }
    sqlx::query("DELETE FROM recovery_codes WHERE user_id = $1")
        .bind(id)
        .execute(&mut *tx)
        .await?;
    tx.commit().await?;
    Ok(())
}

/// Replaces an account's password hash.
///
/// # Errors
/// [`crate::RecordsError::NotFound`] for an unknown account.
pub async fn set_password_hash(db: &PgPool, id: UserId, password_hash: &str) -> crate::Result<()> {
    let changed = sqlx::query("UPDATE users SET password_hash = $2 WHERE id = $1")
        .bind(id)
        .bind(password_hash)
        .execute(db)
        .await?
        .rows_affected();
    if changed == 0 {
        return Err(crate::RecordsError::NotFound("user"));
    }
    Ok(())
}
