//! Home devices, their MQTT identities and their assignment history.
//!
//! A device's MQTT username is its id, so the topic id the broker's ACL
//! allows it to write under is the id the gateway looks up. Only a
//! Mosquitto-format hash of its password is stored; the password itself is
//! handed out once, at provisioning.

use chrono::{DateTime, Utc};
use serde::Serialize;
use sqlx::PgPool;

use crate::domain::{DeviceKind, Serial};
use crate::ids::{DeviceId, PatientId};
use crate::mosquitto;

/// A registered device.
#[derive(Debug, Clone, Serialize, sqlx::FromRow, utoipa::ToSchema)]
pub struct Device {
    /// Id (also the MQTT topic id).
    pub id: DeviceId,
    /// Serial number.
    pub serial: String,
    /// Kind.
    pub kind: DeviceKind,
    /// MQTT username.
    pub mqtt_username: String,
    /// The patient it is assigned to now, if any.
    pub patient_id: Option<PatientId>,
    /// Registered.
    pub created_at: DateTime<Utc>,
}

/// A device just provisioned, with the one-time MQTT password.
#[derive(Debug, Clone)]
pub struct Provisioned {
    /// The device.
    pub device: Device,
    /// The MQTT password, shown once and never stored.
    pub mqtt_password: String,
    /// Its Mosquitto password-file line.
    pub password_line: String,
    /// Its Mosquitto ACL block.
    pub acl: String,
}

/// One period of a device's assignment to a patient.
#[derive(Debug, Clone, Serialize, sqlx::FromRow, utoipa::ToSchema)]
pub struct Assignment {
    /// The device.
    #[sqlx(flatten)]
    pub device: Device,
    /// From.
    pub assigned_from: DateTime<Utc>,
    /// Until (open while current).
    pub assigned_to: Option<DateTime<Utc>>,
}

const SELECT_DEVICE: &str = "SELECT d.id, d.serial, d.kind, d.mqtt_username, d.created_at,
        (SELECT a.patient_id FROM device_assignments a
          WHERE a.device_id = d.id AND a.assigned_to IS NULL) AS patient_id
     FROM devices d";

/// Registers a device with a fresh MQTT identity, assigned to `patient`
/// from now on when given.
///
/// # Errors
/// [`crate::RecordsError::Duplicate`] for a known kind and serial,
/// [`crate::RecordsError::NotFound`] for an unknown patient.
pub async fn provision(
    db: &PgPool,
    serial: &Serial,
    kind: DeviceKind,
    patient: Option<PatientId>,
) -> crate::Result<Provisioned> {
    let id = DeviceId::new();
    let username = id.to_string();
    let password = mosquitto::generate_password();
    let hash = mosquitto::hash_password(&password);
    let mut tx = db.begin().await?;
    sqlx::query(
        "INSERT INTO devices (id, serial, kind, mqtt_username, mqtt_password_hash) VALUES ($1, $2, $3, $4, $5)",
    )
    .bind(id)
    .bind(serial.as_str())
    .bind(kind)
    .bind(&username)
    .bind(&hash)
    .execute(&mut *tx)
    .await?;
    if let Some(patient) = patient {
        insert_assignment(&mut tx, id, patient, Utc::now()).await?;
    }
    tx.commit().await?;
    Ok(Provisioned {
        device: get(db, id).await?,
        password_line: mosquitto::password_line(&username, &hash),
        acl: mosquitto::device_acl(&username, &username),
        mqtt_password: password,
    })
}

async fn insert_assignment(
    tx: &mut sqlx::PgConnection,
    device: DeviceId,
    patient: PatientId,
    from: DateTime<Utc>,
) -> crate::Result<()> {
    sqlx::query(
        "INSERT INTO device_assignments (id, device_id, patient_id, assigned_from) VALUES ($1, $2, $3, $4)",
    )
    .bind(uuid::Uuid::now_v7())
    .bind(device)
    .bind(patient)
    .bind(from)
    .execute(tx)
    .await?;
    Ok(())
}

/// One device.
///
/// # Errors
/// [`crate::RecordsError::NotFound`] when there is none.
pub async fn get(db: &PgPool, id: DeviceId) -> crate::Result<Device> {
    sqlx::query_as::<_, Device>(sqlx::AssertSqlSafe(format!(
        "{SELECT_DEVICE} WHERE d.id = $1"
    )))
    .bind(id)
    .fetch_optional(db)
    .await?
    .ok_or(crate::RecordsError::NotFound("device"))
}

/// Every device, newest first.
///
/// # Errors
/// Fails when the database does.
pub async fn list(db: &PgPool) -> crate::Result<Vec<Device>> {
    Ok(sqlx::query_as::<_, Device>(sqlx::AssertSqlSafe(format!(
        "{SELECT_DEVICE} ORDER BY d.created_at DESC, d.id"
    )))
    .fetch_all(db)
    .await?)
}

/// Assigns a device to a patient from now on, ending any current assignment
/// first (a device moves from one patient to the next without a gap).
///
/// # Errors
/// [`crate::RecordsError::NotFound`] for an unknown device or patient.
pub async fn assign(db: &PgPool, device: DeviceId, patient: PatientId) -> crate::Result<()> {
    let mut tx = db.begin().await?;
    // The database's clock, as `unassign` uses, so periods never disagree.
    let now: DateTime<Utc> = sqlx::query_scalar("SELECT now()")
        .fetch_one(&mut *tx)
        .await?;
    // Lock the device row so two concurrent assignments serialise.
    let found: Option<DeviceId> =
        sqlx::query_scalar("SELECT id FROM devices WHERE id = $1 FOR UPDATE")
            .bind(device)
            .fetch_optional(&mut *tx)
            .await?;
    if found.is_none() {
        return Err(crate::RecordsError::NotFound("device"));
    }
    sqlx::query("UPDATE device_assignments SET assigned_to = $2 WHERE device_id = $1 AND assigned_to IS NULL")
        .bind(device)
        .bind(now)
        .execute(&mut *tx)
        .await?;
    insert_assignment(&mut tx, device, patient, now).await?;
    tx.commit().await?;
    Ok(())
}

/// Ends a device's current assignment.
///
/// # Errors
/// [`crate::RecordsError::NotFound`] when it has none.
pub async fn unassign(db: &PgPool, device: DeviceId) -> crate::Result<PatientId> {
    sqlx::query_scalar(
        "UPDATE device_assignments SET assigned_to = now()
         WHERE device_id = $1 AND assigned_to IS NULL RETURNING patient_id",
    )
    .bind(device)
    .fetch_optional(db)
    .await?
    .ok_or(crate::RecordsError::NotFound("current assignment"))
}

/// A patient's devices, current and past, newest first.
///
/// # Errors
/// Fails when the database does.
pub async fn for_patient(db: &PgPool, patient: PatientId) -> crate::Result<Vec<Assignment>> {
    Ok(sqlx::query_as::<_, Assignment>(
        "SELECT d.id, d.serial, d.kind, d.mqtt_username, d.created_at,
                CASE WHEN a.assigned_to IS NULL THEN a.patient_id END AS patient_id,
                a.assigned_from, a.assigned_to
         FROM device_assignments a JOIN devices d ON d.id = a.device_id
         WHERE a.patient_id = $1
         ORDER BY a.assigned_from DESC",
    )
    .bind(patient)
    .fetch_all(db)
    .await?)
}

/// The patient a device was assigned to at `at`, if any.
///
/// # Errors
/// Fails when the database does.
pub async fn patient_at(
    db: &PgPool,
    device: DeviceId,
    at: DateTime<Utc>,
) -> crate::Result<Option<PatientId>> {
    Ok(sqlx::query_scalar(
        "SELECT patient_id FROM device_assignments
         WHERE device_id = $1 AND tstzrange(assigned_from, assigned_to) @> $2::timestamptz",
    )
    .bind(device)
    .bind(at)
    .fetch_optional(db)
    .await?)
}

/// The broker's password file and ACL file for every device plus the
/// gateway's own account, as Mosquitto reads them.
///
/// # Errors
/// Fails when the database does.
pub async fn broker_files(
    db: &PgPool,
    gateway_username: &str,
    gateway_password: &str,
) -> crate::Result<(String, String)> {
    let rows: Vec<(String, String)> = sqlx::query_as(
        "SELECT mqtt_username, mqtt_password_hash FROM devices ORDER BY created_at, id",
    )
    .fetch_all(db)
    .await?;
    let mut passwords = mosquitto::password_line(
        gateway_username,
        &mosquitto::hash_password(gateway_password),
    );
    passwords.push('\n');
    let mut acl = mosquitto::gateway_acl(gateway_username);
    for (username, hash) in &rows {
        passwords.push_str(&mosquitto::password_line(username, hash));
        passwords.push('\n');
        acl.push('\n');
        acl.push_str(&mosquitto::device_acl(username, username));
    }
    Ok((passwords, acl))
}

/// device, patient, from, to (a device never assigned has no patient).
type HistoryRow = (
    uuid::Uuid,
    Option<uuid::Uuid>,
    Option<DateTime<Utc>>,
    Option<DateTime<Utc>>,
);

/// The assignment history of the given devices, for resolving which
/// patient each reading belongs to. A device that exists but was never
/// assigned appears once with `None`; an unknown device does not appear.
///
/// # Errors
/// Fails when the database does.
pub async fn assignment_history(
    db: &PgPool,
    devices: &[uuid::Uuid],
) -> crate::Result<Vec<(uuid::Uuid, Option<AssignmentPeriod>)>> {
    let rows: Vec<HistoryRow> = sqlx::query_as(
        "SELECT d.id, a.patient_id, a.assigned_from, a.assigned_to
         FROM devices d LEFT JOIN device_assignments a ON a.device_id = d.id
         WHERE d.id = ANY($1)",
    )
    .bind(devices)
    .fetch_all(db)
    .await?;
    Ok(rows
        .into_iter()
        .map(|(device, patient, from, to)| {
            let period = match (patient, from) {
                (Some(patient), Some(from)) => Some(AssignmentPeriod {
                    patient: PatientId(patient),
                    from,
                    to,
                }),
                _ => None,
            };
            (device, period)
        })
        .collect())
}

/// One period a device belonged to a patient.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AssignmentPeriod {
    /// The patient.
    pub patient: PatientId,
    /// From (inclusive).
    pub from: DateTime<Utc>,
    /// Until (exclusive); open while current.
    pub to: Option<DateTime<Utc>>,
}

impl AssignmentPeriod {
    /// Whether `at` falls in the period.
    pub fn contains(&self, at: DateTime<Utc>) -> bool {
        at >= self.from && self.to.is_none_or(|to| at < to)
    }
}
