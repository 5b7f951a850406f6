//! Backend detection, partitions ahead of time, and retention on plain
//! PostgreSQL. (TimescaleDB manages its chunks and retention itself.)
//!
//! Partitions are weekly (Monday 00:00 UTC to the next Monday). The server
//! calls [`maintain`] at start-up, before ingesting, and then periodically:
//! it makes sure a partition exists for every week from the retention
//! horizon to `ahead` from now, and drops whole partitions older than the
//! horizon. Readings older than retention are refused by the gateway, and
//! readings more than minutes in the future too, so every accepted reading
//! has a partition.

use chrono::{DateTime, Datelike, Duration, NaiveTime, Utc};
use sqlx::PgPool;

/// Which storage the `vitals` table uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    /// A TimescaleDB hypertable.
    Timescale,
    /// Native range partitioning.
    Partitioned,
}

/// Finds out which backend the migration chose.
///
/// # Errors
/// When the database fails.
pub async fn backend(db: &PgPool) -> crate::Result<Backend> {
    let timescale: bool = sqlx::query_scalar(
        "SELECT EXISTS (SELECT 1 FROM pg_extension WHERE extname = 'timescaledb')
            AND to_regclass('timescaledb_information.hypertables') IS NOT NULL",
    )
    .fetch_one(db)
    .await?;
    Ok(if timescale {
        Backend::Timescale
    } else {
        Backend::Partitioned
    })
}

/// The Monday 00:00 UTC starting the week that holds `t`.
pub fn week_start(t: DateTime<Utc>) -> DateTime<Utc> {
    let day = t.date_naive() - Duration::days(i64::from(t.weekday().num_days_from_monday()));
    day.and_time(NaiveTime::MIN).and_utc()
}

fn partition_name(start: DateTime<Utc>) -> String {
    format!("vitals_w{}", start.format("%Y%m%d"))
}

/// What a maintenance run did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Maintenance {
    /// Partitions created.
    pub created: Vec<String>,
    /// Partitions dropped for retention.
    pub dropped: Vec<String>,
    /// On TimescaleDB: the retention policy was set to the configured retention.
    pub retention_policy_set: bool,
}

/// Ensures weekly partitions from `now - retention` to `now + ahead` and
/// drops those wholly older than `now - retention`. On TimescaleDB, which
/// makes its chunks and drops old ones itself, it only keeps the retention
/// policy at `retention` (the migration starts it at 365 days).
///
/// # Errors
/// When the database fails.
pub async fn maintain(
    db: &PgPool,
    now: DateTime<Utc>,
    retention: Duration,
    ahead: Duration,
) -> crate::Result<Maintenance> {
    let mut done = Maintenance::default();
    // A latest value must not outlive the readings it summarises (on both
    // backends: TimescaleDB's retention policy knows nothing of this table).
    sqlx::query("DELETE FROM vitals_latest WHERE time < $1")
        .bind(now - retention)
        .execute(db)
        .await?;
    if backend(db).await? == Backend::Timescale {
        done.retention_policy_set = keep_retention_policy(db, retention).await?;
        return Ok(done);
    }
    let horizon = now - retention;
    let existing: Vec<String> = sqlx::query_scalar(
        "SELECT c.relname::text FROM pg_inherits i
         JOIN pg_class c ON c.oid = i.inhrelid
         JOIN pg_class p ON p.oid = i.inhparent
         WHERE p.relname = 'vitals'",
    )
    .fetch_all(db)
    .await?;
    let mut week = week_start(horizon);
    while week <= now + ahead {
        let name = partition_name(week);
        if !existing.contains(&name) {
            let next = week + Duration::weeks(1);
            // Names and bounds come from dates this function formats, never from input.
            let sql = format!(
                "CREATE TABLE IF NOT EXISTS {name} PARTITION OF vitals FOR VALUES FROM ('{}') TO ('{}')",
                week.to_rfc3339(),
                next.to_rfc3339()
            );
            sqlx::query(sqlx::AssertSqlSafe(sql)).execute(db).await?;
            done.created.push(name);
        }
        week += Duration::weeks(1);
    }
    for name in existing {
        let Some(start) = name
            .strip_prefix("vitals_w")
            .and_then(|d| chrono::NaiveDate::parse_from_str(d, "%Y%m%d").ok())
            .map(|d| d.and_time(NaiveTime::MIN).and_utc())
        else {
            continue;
        };
        if start + Duration::weeks(1) <= horizon {
            sqlx::query(sqlx::AssertSqlSafe(format!("DROP TABLE IF EXISTS {name}")))
                .execute(db)
                .await?;
            done.dropped.push(name);
        }
    }
    if !done.created.is_empty() || !done.dropped.is_empty() {
        tracing::info!(
            created = done.created.len(),
            dropped = done.dropped.len(),
            "vitals partitions maintained"
        );
    }
    Ok(done)
}

/// Sets TimescaleDB's retention policy on `vitals` to `retention` (whole
/// days, as configured) unless it is already that; true when it changed.
async fn keep_retention_policy(db: &PgPool, retention: Duration) -> crate::Result<bool> {
    let days = i32::try_from(retention.num_days()).unwrap_or(i32::MAX);
    let current: bool = sqlx::query_scalar(
        "SELECT EXISTS (SELECT 1 FROM timescaledb_information.jobs
                        WHERE proc_name = 'policy_retention' AND hypertable_name = 'vitals'
                          AND (config->>'drop_after')::interval = make_interval(days => $1))",
    )
    .bind(days)
    .fetch_one(db)
    .await?;
    if current {
        return Ok(false);
    }
    let mut tx = db.begin().await?;
    sqlx::query("SELECT remove_retention_policy('vitals', if_exists => true)")
        .execute(&mut *tx)
        .await?;
    sqlx::query("SELECT add_retention_policy('vitals', drop_after => make_interval(days => $1))")
        .bind(days)
        .execute(&mut *tx)
        .await?;
    tx.commit().await?;
    tracing::info!(
        retention_days = retention.num_days(),
        "vitals retention policy set"
    );
    Ok(true)
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    #[test]
    fn weeks_start_on_monday_midnight_utc() {
        let sunday_late = Utc.with_ymd_and_hms(2026, 11, 29, 23, 59, 59).unwrap();
        assert_eq!(
            week_start(sunday_late),
            Utc.with_ymd_and_hms(2026, 11, 23, 0, 0, 0).unwrap()
        );
        let monday = Utc.with_ymd_and_hms(2026, 11, 23, 0, 0, 0).unwrap();
        assert_eq!(week_start(monday), monday);
        assert_eq!(partition_name(monday), "vitals_w20261123");
    }
}
