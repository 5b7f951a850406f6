//! Readings as records for other systems: keyset-paged search, one reading
//! by its key, the last n per metric. The FHIR API serves these as
//! Observations.
//!
//! A reading is one row; a blood-pressure reading is the systolic row with
//! the diastolic row of the same device and time beside it (the diastolic
//! rows are never returned on their own). Paging is by key, not by offset,
//! so the ten-thousandth page of a million readings costs what the first
//! does, and a reading stored while a client pages never shifts the pages.

use chrono::{DateTime, Utc};
use sqlx::PgPool;
use uuid::Uuid;

use crate::metric::Metric;

/// A stored reading, with the diastolic value beside a systolic one.
#[derive(Debug, Clone, PartialEq)]
pub struct Reading {
    /// The patient the device belonged to at `time`.
    pub patient_id: Uuid,
    /// The device.
    pub device_id: Uuid,
    /// The stored metric (never diastolic).
    pub metric: Metric,
    /// When it was measured.
    pub time: DateTime<Utc>,
    /// The value in the metric's canonical unit.
    pub value: f64,
    /// For a systolic reading: the diastolic reading of the same device and time.
    pub diastolic: Option<f64>,
    /// When Bedside stored it.
    pub received_at: DateTime<Utc>,
}

/// Where a page ends: the sort key of its last reading. The next page
/// starts after it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cursor {
    /// The last reading's time.
    pub time: DateTime<Utc>,
    /// Its device.
    pub device_id: Uuid,
    /// Its metric.
    pub metric: Metric,
}

impl Cursor {
    /// The cursor after `reading`.
    pub fn after(reading: &Reading) -> Cursor {
        Cursor {
            time: reading.time,
            device_id: reading.device_id,
            metric: reading.metric,
        }
    }

    /// An opaque token for a paging link.
    pub fn encode(&self) -> String {
        format!(
            "{}.{}.{}",
            self.time.timestamp_micros(),
            self.device_id.simple(),
            self.metric.name()
        )
    }

    /// Parses [`Cursor::encode`]'s token; `None` for anything else.
    pub fn decode(raw: &str) -> Option<Cursor> {
        let mut parts = raw.splitn(3, '.');
        let time = DateTime::from_timestamp_micros(parts.next()?.parse().ok()?)?;
        let device_id = Uuid::try_parse(parts.next()?).ok()?;
        let metric = Metric::from_name(parts.next()?)?;
        Some(Cursor {
            time,
            device_id,
            metric,
        })
    }
}

/// What to search for: one patient's readings of some metrics in a range.
#[derive(Debug, Clone, PartialEq)]
pub struct Filter {
    /// The patient.
    pub patient_id: Uuid,
    /// The metrics to return; empty means all (diastolic rows are never
    /// returned on their own whatever is asked).
    pub metrics: Vec<Metric>,
    /// Inclusive lower bound on the reading's time.
    pub from: Option<DateTime<Utc>>,
    /// Exclusive upper bound.
    pub to: Option<DateTime<Utc>>,
    /// Newest first (otherwise oldest first).
    pub newest_first: bool,
}

impl Filter {
    /// The metric names the query binds.
    fn metric_names(&self) -> Vec<&'static str> {
        let chosen: Vec<Metric> = if self.metrics.is_empty() {
            Metric::ALL.to_vec()
        } else {
            self.metrics.clone()
        };
        chosen
            .into_iter()
            .filter(|m| *m != Metric::DiastolicBp)
            .map(Metric::name)
            .collect()
    }
}

type Row = (
    Uuid,
    Uuid,
    String,
    DateTime<Utc>,
    f64,
    Option<f64>,
    DateTime<Utc>,
);

/// The columns of a [`Reading`], `v` being the row and `d` its diastolic
/// partner (joined only for systolic rows).
const COLUMNS: &str =
    "v.patient_id, v.device_id, v.metric, v.time, v.value, d.value, v.received_at";
const DIASTOLIC_JOIN: &str = "LEFT JOIN vitals d ON v.metric = 'systolic_bp'
    AND d.device_id = v.device_id AND d.metric = 'diastolic_bp' AND d.time = v.time";

fn reading(row: Row) -> Option<Reading> {
    let (patient_id, device_id, name, time, value, diastolic, received_at) = row;
    Some(Reading {
        patient_id,
        device_id,
        metric: Metric::from_name(&name)?,
        time,
        value,
        diastolic,
        received_at,
    })
}

/// One page of a search: at most `limit` readings after `after`, in the
/// filter's order (time, then device and metric, so the order is total).
///
/// Each metric's next readings come from its own index range (patient,
/// metric, time), bounded below (or above, newest first) by the cursor's
/// time so partitions before it are never read; the page is the first
/// `limit` of their merge. A page costs the same on the first day of a
/// patient's history and after a million readings.
///
/// # Errors
/// When the database fails.
pub async fn page(
    db: &PgPool,
    filter: &Filter,
    after: Option<Cursor>,
    limit: i64,
) -> crate::Result<Vec<Reading>> {
    let order = if filter.newest_first { "DESC" } else { "ASC" };
    per_metric(
        db,
        filter,
        after,
        limit.clamp(0, 10_000),
        &format!("ORDER BY r.time {order}, r.device_id {order}, r.metric {order} LIMIT $8"),
    )
    .await
}

/// The next `limit` readings of each metric of the filter after `after`,
/// each from its own index range (one LATERAL scan per metric, however
/// many readings there are), combined by `outer` (the final ORDER BY and
/// LIMIT over `r`).
async fn per_metric(
    db: &PgPool,
    filter: &Filter,
    after: Option<Cursor>,
    limit: i64,
    outer: &str,
) -> crate::Result<Vec<Reading>> {
    let (order, compare, bound) = if filter.newest_first {
        ("DESC", "<", "<=")
    } else {
        ("ASC", ">", ">=")
    };
    let sql = format!(
        "SELECT r.* FROM unnest($2::text[]) AS m(metric)
         CROSS JOIN LATERAL (
             SELECT {COLUMNS} FROM vitals v {DIASTOLIC_JOIN}
             WHERE v.patient_id = $1 AND v.metric = m.metric
               AND ($3::timestamptz IS NULL OR v.time >= $3)
               AND ($4::timestamptz IS NULL OR v.time < $4)
               AND ($5::timestamptz IS NULL OR v.time {bound} $5)
               AND ($5::timestamptz IS NULL OR (v.time, v.device_id, v.metric) {compare} ($5, $6, $7))
             ORDER BY v.time {order}, v.device_id {order}
             LIMIT $8
         ) r
         {outer}"
    );
    let rows: Vec<Row> = sqlx::query_as(sqlx::AssertSqlSafe(sql))
        .bind(filter.patient_id)
        .bind(filter.metric_names())
        .bind(filter.from)
        .bind(filter.to)
        .bind(after.map(|c| c.time))
        .bind(after.map(|c| c.device_id))
        .bind(after.map(|c| c.metric.name()))
        .bind(limit)
        .fetch_all(db)
        .await?;
    Ok(rows.into_iter().filter_map(reading).collect())
}

/// How many readings the filter matches.
///
/// # Errors
/// When the database fails.
pub async fn count(db: &PgPool, filter: &Filter) -> crate::Result<i64> {
    Ok(sqlx::query_scalar(
        "SELECT count(*) FROM vitals v
         WHERE v.patient_id = $1 AND v.metric = ANY($2)
           AND ($3::timestamptz IS NULL OR v.time >= $3)
           AND ($4::timestamptz IS NULL OR v.time < $4)",
    )
    .bind(filter.patient_id)
    .bind(filter.metric_names())
    .bind(filter.from)
    .bind(filter.to)
    .fetch_one(db)
    .await?)
}

/// The reading stored under its key; `None` when there is none (or the key
/// names a diastolic row, which is no reading of its own).
///
/// # Errors
/// When the database fails.
pub async fn get(
    db: &PgPool,
    device_id: Uuid,
    metric: Metric,
    time: DateTime<Utc>,
) -> crate::Result<Option<Reading>> {
    if metric == Metric::DiastolicBp {
        return Ok(None);
    }
    let row: Option<Row> = sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "SELECT {COLUMNS} FROM vitals v {DIASTOLIC_JOIN}
         WHERE v.device_id = $1 AND v.metric = $2 AND v.time = $3"
    )))
    .bind(device_id)
    .bind(metric.name())
    .bind(time)
    .fetch_optional(db)
    .await?;
    Ok(row.and_then(reading))
}

/// The `max` newest readings of each of the patient's metrics (all when
/// `metrics` is empty) in the range, metric by metric, newest first.
///
/// # Errors
/// When the database fails.
pub async fn last_n(db: &PgPool, filter: &Filter, max: i64) -> crate::Result<Vec<Reading>> {
    let newest = Filter {
        newest_first: true,
        ..filter.clone()
    };
    per_metric(
        db,
        &newest,
        None,
        max.clamp(1, 1000),
        "ORDER BY r.metric, r.time DESC",
    )
    .await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_cursor_survives_its_round_trip_and_garbage_is_refused() {
        let cursor = Cursor {
            time: DateTime::from_timestamp_micros(1_790_000_000_123_456).unwrap(),
            device_id: Uuid::from_u128(0xfeed),
            metric: Metric::SystolicBp,
        };
        assert_eq!(Cursor::decode(&cursor.encode()), Some(cursor));
        for garbage in [
            "",
            "1.2.3",
            "x.0000000000000000000000000000feed.spo2",
            "1..spo2",
        ] {
            assert_eq!(Cursor::decode(garbage), None, "{garbage}");
        }
    }

    #[test]
    fn diastolic_rows_are_never_asked_for_on_their_own() {
        let mut filter = Filter {
            patient_id: Uuid::nil(),
            metrics: vec![Metric::DiastolicBp, Metric::SystolicBp],
            from: None,
            to: None,
            newest_first: true,
        };
        assert_eq!(filter.metric_names(), vec!["systolic_bp"]);
        filter.metrics.clear();
        assert_eq!(filter.metric_names().len(), Metric::ALL.len() - 1);
    }
}
