//! The queries dashboards and the alert engine use. Plain SQL that both
//! backends answer the same way.

use std::collections::BTreeMap;

use chrono::{DateTime, Duration, Utc};
use serde::Serialize;
use sqlx::PgPool;
use uuid::Uuid;

use crate::metric::Metric;

/// The latest value of one metric.
#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
pub struct Latest {
    /// The metric.
    pub metric: Metric,
    /// When measured.
    pub time: DateTime<Utc>,
    /// Value in the canonical unit.
    pub value: f64,
    /// The device that measured it.
    #[serde(skip)]
    #[schema(ignore)]
    pub device_id: Uuid,
}

/// The latest value of every metric of a patient measured since `since`.
///
/// # Errors
/// When the database fails.
pub async fn latest(
    db: &PgPool,
    patient: Uuid,
    since: DateTime<Utc>,
) -> crate::Result<Vec<Latest>> {
    Ok(latest_for_patients(db, &[patient], since)
        .await?
        .remove(&patient)
        .unwrap_or_default())
}

/// [`latest`] for several patients in one query, by patient (patients
/// without values are absent). Reads `vitals_latest`, which the batch
/// insert keeps current.
///
/// # Errors
/// When the database fails.
pub async fn latest_for_patients(
    db: &PgPool,
    patients: &[Uuid],
    since: DateTime<Utc>,
) -> crate::Result<BTreeMap<Uuid, Vec<Latest>>> {
    let mut latest: BTreeMap<Uuid, Vec<Latest>> = BTreeMap::new();
    if patients.is_empty() {
        return Ok(latest);
    }
    let rows: Vec<(Uuid, String, DateTime<Utc>, f64, Uuid)> = sqlx::query_as(
        "SELECT patient_id, metric, time, value, device_id FROM vitals_latest
         WHERE patient_id = ANY($1) AND time >= $2
         ORDER BY patient_id, metric",
    )
    .bind(patients)
    .bind(since)
    .fetch_all(db)
    .await?;
    for (patient, name, time, value, device_id) in rows {
        if let Some(metric) = Metric::from_name(&name) {
            latest.entry(patient).or_default().push(Latest {
                metric,
                time,
                value,
                device_id,
            });
        }
    }
    Ok(latest)
}

/// One stored point.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, utoipa::ToSchema)]
pub struct Point {
    /// When.
    pub time: DateTime<Utc>,
    /// Value.
    pub value: f64,
}

/// Raw readings of one metric in `[from, to)`, oldest first, at most `limit`.
///
/// # Errors
/// When the database fails.
pub async fn range(
    db: &PgPool,
    patient: Uuid,
    metric: Metric,
    from: DateTime<Utc>,
    to: DateTime<Utc>,
    limit: i64,
) -> crate::Result<Vec<Point>> {
    let rows: Vec<(DateTime<Utc>, f64)> = sqlx::query_as(
        "SELECT time, value FROM vitals
         WHERE patient_id = $1 AND metric = $2 AND time >= $3 AND time < $4
         ORDER BY time LIMIT $5",
    )
    .bind(patient)
    .bind(metric.name())
    .bind(from)
    .bind(to)
    .bind(limit.clamp(1, 100_000))
    .fetch_all(db)
    .await?;
    Ok(rows
        .into_iter()
        .map(|(time, value)| Point { time, value })
        .collect())
}

/// The chart views and their bucket widths.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, serde::Deserialize, utoipa::ToSchema)]
pub enum View {
    /// The last hour in 1-minute buckets.
    #[serde(rename = "1h")]
    Hour,
    /// The last day in 15-minute buckets.
    #[serde(rename = "24h")]
    Day,
    /// The last week in 1-hour buckets.
    #[serde(rename = "7d")]
    Week,
    /// The last 30 days in 6-hour buckets.
    #[serde(rename = "30d")]
    Month,
}

impl View {
    /// How far back the view reaches.
    pub fn span(self) -> Duration {
        match self {
            View::Hour => Duration::hours(1),
            View::Day => Duration::hours(24),
            View::Week => Duration::days(7),
            View::Month => Duration::days(30),
        }
    }

    /// The bucket width.
    pub fn bucket(self) -> Duration {
        match self {
            View::Hour => Duration::minutes(1),
            View::Day => Duration::minutes(15),
            View::Week => Duration::hours(1),
            View::Month => Duration::hours(6),
        }
    }
}

/// One bucket's summary.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, utoipa::ToSchema)]
pub struct Bucket {
    /// Start of the bucket (aligned to the bucket width since 2000-01-01 UTC).
    pub start: DateTime<Utc>,
    /// Lowest value.
    pub min: f64,
    /// Mean value.
    pub avg: f64,
    /// Highest value.
    pub max: f64,
    /// Readings in the bucket.
    pub count: i64,
}

/// Bucketed min/avg/max of one metric over the view ending at `until`.
///
/// # Errors
/// When the database fails.
pub async fn buckets(
    db: &PgPool,
    patient: Uuid,
    metric: Metric,
    view: View,
    until: DateTime<Utc>,
) -> crate::Result<Vec<Bucket>> {
    let width = sqlx::postgres::types::PgInterval::try_from(
        view.bucket().to_std().expect("positive bucket"),
    )
    .expect("bucket widths fit an interval");
    let rows: Vec<(DateTime<Utc>, f64, f64, f64, i64)> = sqlx::query_as(
        "SELECT date_bin($1::interval, time, TIMESTAMPTZ '2000-01-01 00:00:00+00') AS start,
                min(value), avg(value), max(value), count(*)
         FROM vitals
         WHERE patient_id = $2 AND metric = $3 AND time >= $4 AND time < $5
         GROUP BY start ORDER BY start",
    )
    .bind(width)
    .bind(patient)
    .bind(metric.name())
    .bind(until - view.span())
    .bind(until)
    .fetch_all(db)
    .await?;
    Ok(rows
        .into_iter()
        .map(|(start, min, avg, max, count)| Bucket {
            start,
            min,
            avg,
            max,
            count,
        })
        .collect())
}
