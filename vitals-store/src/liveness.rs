//! Device liveness: what each device last announced and when it was last
//! heard from. The alert engine turns changes into `offline:<device>` alerts.

use chrono::{DateTime, Utc};
use serde::Serialize;
use sqlx::PgPool;
use uuid::Uuid;

/// A device's liveness.
#[derive(Debug, Clone, PartialEq, Serialize, sqlx::FromRow, utoipa::ToSchema)]
pub struct DeviceStatus {
    /// The device.
    pub device_id: Uuid,
    /// Whether it is online.
    pub online: bool,
    /// Last message of any kind.
    pub last_seen: DateTime<Utc>,
    /// When `online` last changed.
    pub changed_at: DateTime<Utc>,
    /// The battery level it last reported, 0–100 %.
    pub battery_percent: Option<f32>,
    /// When that level was measured.
    pub battery_at: Option<DateTime<Utc>>,
}

/// How stale `last_seen` may be for a device that is online: between this
/// and twice this, spread per device by its id so that devices that came
/// online together do not all rewrite their rows in the same second. A
/// device publishing every second would otherwise rewrite its status row
/// every second (10,000 devices: 10,000 row updates a second for nothing);
/// the silence timer counts in minutes and dashboards show "seconds ago".
pub const LAST_SEEN_RESOLUTION_SECS: i32 = 10;

/// Records that devices were heard from at `at` (a reading counts as a sign
/// of life). Returns the devices that were offline and are now back.
/// `last_seen` of an online device moves only once it is
/// [`LAST_SEEN_RESOLUTION_SECS`] (to twice that) old.
///
/// # Errors
/// When the database fails.
pub async fn seen(
    db: impl sqlx::PgExecutor<'_>,
    devices: &[Uuid],
    at: DateTime<Utc>,
) -> crate::Result<Vec<Uuid>> {
    if devices.is_empty() {
        return Ok(Vec::new());
    }
    // Devices offline before this statement are the ones that came back:
    // the upsert always turns an offline device online. (Read before, in
    // the same snapshot; data-modifying CTEs run even when unreferenced.)
    let came_back: Vec<Uuid> = sqlx::query_scalar(
        "WITH before AS (
             SELECT device_id FROM device_status WHERE device_id = ANY($1) AND NOT online
         ), upsert AS (
             INSERT INTO device_status (device_id, online, last_seen, changed_at)
             SELECT d, true, $2, $2 FROM unnest($1::uuid[]) AS d
             ON CONFLICT (device_id) DO UPDATE SET
                 last_seen = GREATEST(device_status.last_seen, EXCLUDED.last_seen),
                 changed_at = CASE WHEN device_status.online THEN device_status.changed_at ELSE EXCLUDED.changed_at END,
                 online = true
             WHERE NOT device_status.online
                OR device_status.last_seen < EXCLUDED.last_seen
                   - make_interval(secs => $3 * (1 + get_byte(uuid_send(device_status.device_id), 15) / 255.0))
         )
         SELECT device_id FROM before",
    )
    .bind(devices)
    .bind(at)
    .bind(f64::from(LAST_SEEN_RESOLUTION_SECS))
    .fetch_all(db)
    .await?;
    Ok(came_back)
}

/// Records an announced status (`online` or `offline`). Returns whether it changed.
///
/// # Errors
/// When the database fails.
pub async fn announce(
    db: impl sqlx::PgExecutor<'_>,
    device: Uuid,
    online: bool,
    at: DateTime<Utc>,
) -> crate::Result<bool> {
    let changed: Option<bool> = sqlx::query_scalar(
        "WITH before AS (SELECT online FROM device_status WHERE device_id = $1)
         INSERT INTO device_status (device_id, online, last_seen, changed_at) VALUES ($1, $2, $3, $3)
         ON CONFLICT (device_id) DO UPDATE SET
             online = $2,
             last_seen = GREATEST(device_status.last_seen, $3),
             changed_at = CASE WHEN device_status.online = $2 THEN device_status.changed_at ELSE $3 END
         RETURNING (SELECT b.online FROM before b) IS DISTINCT FROM $2",
    )
    .bind(device)
    .bind(online)
    .bind(at)
    .fetch_optional(db)
    .await?;
    Ok(changed.unwrap_or(false))
}

/// Records battery levels as (device, percent, measured at): per device
/// the newest, and only if newer than the one held. Devices must have a status row
/// already (a message from them was [`seen`] first).
///
/// # Errors
/// When the database fails.
pub async fn battery(
    db: impl sqlx::PgExecutor<'_>,
    levels: &[(Uuid, f64, DateTime<Utc>)],
) -> crate::Result<()> {
    if levels.is_empty() {
        return Ok(());
    }
    // One row per device, its newest level: an UPDATE … FROM with a device
    // twice would apply either row.
    let mut newest: std::collections::HashMap<Uuid, (f64, DateTime<Utc>)> =
        std::collections::HashMap::new();
    for &(device, percent, at) in levels {
        let slot = newest.entry(device).or_insert((percent, at));
        if at > slot.1 {
            *slot = (percent, at);
        }
    }
    let levels: Vec<(Uuid, f64, DateTime<Utc>)> =
        newest.into_iter().map(|(d, (p, at))| (d, p, at)).collect();
    let devices: Vec<Uuid> = levels.iter().map(|l| l.0).collect();
    let percents: Vec<f32> = levels.iter().map(|l| l.1 as f32).collect();
    let times: Vec<DateTime<Utc>> = levels.iter().map(|l| l.2).collect();
    sqlx::query(
        "UPDATE device_status s SET battery_percent = l.percent, battery_at = l.at
         FROM unnest($1::uuid[], $2::real[], $3::timestamptz[]) AS l(device_id, percent, at)
         WHERE s.device_id = l.device_id AND (s.battery_at IS NULL OR s.battery_at < l.at)",
    )
    .bind(devices)
    .bind(percents)
    .bind(times)
    .execute(db)
    .await?;
    Ok(())
}

/// Marks online devices silent since before `cutoff` as offline and returns them.
///
/// # Errors
/// When the database fails.
pub async fn expire_silent(db: &PgPool, cutoff: DateTime<Utc>) -> crate::Result<Vec<Uuid>> {
    Ok(sqlx::query_scalar(
        "UPDATE device_status SET online = false, changed_at = now()
         WHERE online AND last_seen < $1 RETURNING device_id",
    )
    .bind(cutoff)
    .fetch_all(db)
    .await?)
}

/// The liveness of the given devices.
///
/// # Errors
/// When the database fails.
pub async fn of(db: &PgPool, devices: &[Uuid]) -> crate::Result<Vec<DeviceStatus>> {
    Ok(sqlx::query_as::<_, DeviceStatus>(
        "SELECT device_id, online, last_seen, changed_at, battery_percent, battery_at
         FROM device_status WHERE device_id = ANY($1)",
    )
    .bind(devices)
    .fetch_all(db)
    .await?)
}
