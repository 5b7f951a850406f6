//! The vitals store on whichever backend the test database offers: plain
//! PostgreSQL (weekly partitions; what CI runs) or TimescaleDB (a
//! hypertable with compression and retention policies; point
//! `BEDSIDE_TEST_PG_URL` at a server with `timescaledb` preloaded).
//! Idempotent batch inserts, latest values, raw ranges, date_bin buckets
//! and retention, the same on both.

use bedside_test_support::fresh_database;
use bedside_vitals_store::metric::Metric;
use bedside_vitals_store::partitions::{self, Backend};
use bedside_vitals_store::queries::{self, View};
use bedside_vitals_store::store::{self, NewReading, Rejected};
use chrono::{DateTime, Duration, TimeZone, Utc};
use uuid::Uuid;

fn at(minute: i64) -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 11, 23, 10, 0, 0).unwrap() + Duration::minutes(minute)
}

/// The backend the migration must have chosen: TimescaleDB when the
/// extension is installed and preloaded, else native partitioning.
async fn expected_backend(db: &sqlx::PgPool) -> Backend {
    let timescale: bool = sqlx::query_scalar(
        "SELECT EXISTS (SELECT 1 FROM pg_available_extensions WHERE name = 'timescaledb')
                AND current_setting('shared_preload_libraries') LIKE '%timescaledb%'",
    )
    .fetch_one(db)
    .await
    .unwrap();
    if timescale {
        Backend::Timescale
    } else {
        Backend::Partitioned
    }
}

fn reading(device: Uuid, patient: Uuid, metric: Metric, minute: i64, value: f64) -> NewReading {
    NewReading {
        time: at(minute),
        device_id: device,
        metric,
        patient_id: patient,
        value,
    }
}

#[tokio::test]
async fn batches_are_idempotent_and_queries_answer_latest_range_and_buckets() {
    let (db, _) = fresh_database().await;
    let backend = expected_backend(&db).await;
    assert_eq!(partitions::backend(&db).await.unwrap(), backend);
    let made = partitions::maintain(&db, at(0), Duration::days(14), Duration::days(7))
        .await
        .unwrap();
    if backend == Backend::Partitioned {
        assert!(made.created.len() >= 3, "{made:?}");
    }
    let (device, patient) = (Uuid::new_v4(), Uuid::new_v4());
    let batch: Vec<NewReading> = (0..10)
        .flat_map(|m| {
            [
                reading(device, patient, Metric::HeartRate, m, 60.0 + m as f64),
                reading(device, patient, Metric::Spo2, m, 97.0),
            ]
        })
        .collect();
    assert_eq!(store::insert_batch(&db, &batch).await.unwrap(), 20);
    // Redelivery of the same batch stores nothing twice; a half-new batch stores its new half.
    assert_eq!(store::insert_batch(&db, &batch).await.unwrap(), 0);
    let mut mixed = batch[..10].to_vec();
    mixed.extend((10..15).map(|m| reading(device, patient, Metric::HeartRate, m, 80.0)));
    assert_eq!(store::insert_batch(&db, &mixed).await.unwrap(), 5);
    let rows: i64 = sqlx::query_scalar("SELECT count(*) FROM vitals")
        .fetch_one(&db)
        .await
        .unwrap();
    assert_eq!(rows, 25);

    let latest = queries::latest(&db, patient, at(-60)).await.unwrap();
    let hr = latest
        .iter()
        .find(|l| l.metric == Metric::HeartRate)
        .unwrap();
    assert_eq!((hr.time, hr.value), (at(14), 80.0));
    assert_eq!(latest.len(), 2);
    // A late reading (a device catching up after being offline) is stored
    // but does not replace the newer latest value.
    let late = [reading(device, patient, Metric::HeartRate, 12, 99.5)];
    assert_eq!(
        store::insert_batch(&db, &late).await.unwrap(),
        0,
        "minute 12 exists"
    );
    let late = [reading(device, patient, Metric::Spo2, -5, 91.0)];
    assert_eq!(store::insert_batch(&db, &late).await.unwrap(), 1);
    let latest = queries::latest(&db, patient, at(-60)).await.unwrap();
    let spo2 = latest.iter().find(|l| l.metric == Metric::Spo2).unwrap();
    assert_eq!((spo2.time, spo2.value), (at(9), 97.0));
    assert!(
        queries::latest(&db, Uuid::new_v4(), at(-60))
            .await
            .unwrap()
            .is_empty()
    );

    let range = queries::range(&db, patient, Metric::HeartRate, at(2), at(5), 100)
        .await
        .unwrap();
    assert_eq!(
        range.iter().map(|p| p.value).collect::<Vec<_>>(),
        vec![62.0, 63.0, 64.0]
    );

    // One-minute buckets over the hour to 10:15: one reading each, so min = avg = max.
    let buckets = queries::buckets(&db, patient, Metric::HeartRate, View::Hour, at(15))
        .await
        .unwrap();
    assert_eq!(buckets.len(), 15);
    assert_eq!(
        (
            buckets[3].start,
            buckets[3].min,
            buckets[3].max,
            buckets[3].count
        ),
        (at(3), 63.0, 63.0, 1)
    );
    // Fifteen-minute buckets over the day: one bucket holding all 15 readings.
    let day = queries::buckets(&db, patient, Metric::HeartRate, View::Day, at(15))
        .await
        .unwrap();
    assert_eq!(day.len(), 1);
    assert_eq!(
        (day[0].start, day[0].count, day[0].min, day[0].max),
        (at(0), 15, 60.0, 80.0)
    );
    let expected_avg = ((60..70).map(f64::from).sum::<f64>() + 5.0 * 80.0) / 15.0;
    assert!((day[0].avg - expected_avg).abs() < 1e-9);
}

#[tokio::test]
async fn retention_drops_old_readings_on_either_backend() {
    let (db, _) = fresh_database().await;
    if expected_backend(&db).await == Backend::Timescale {
        return timescale_policies_compress_and_drop_old_chunks(&db).await;
    }
    partitions::maintain(&db, at(0), Duration::days(21), Duration::days(7))
        .await
        .unwrap();
    let (device, patient) = (Uuid::new_v4(), Uuid::new_v4());
    let old = NewReading {
        time: at(0) - Duration::days(20),
        device_id: device,
        metric: Metric::BodyWeight,
        patient_id: patient,
        value: 70.0,
    };
    let recent = reading(device, patient, Metric::BodyWeight, 0, 71.0);
    assert_eq!(store::insert_batch(&db, &[old, recent]).await.unwrap(), 2);
    // Two weeks later with 7 days' retention: the old week goes, this week stays.
    let later = at(0) + Duration::days(3);
    let done = partitions::maintain(&db, later, Duration::days(7), Duration::days(7))
        .await
        .unwrap();
    assert!(!done.dropped.is_empty(), "{done:?}");
    let remaining: Vec<f64> = sqlx::query_scalar("SELECT value FROM vitals ORDER BY time")
        .fetch_all(&db)
        .await
        .unwrap();
    assert_eq!(remaining, vec![71.0]);
    // A reading a week ahead of `later` has its partition.
    let ahead = NewReading {
        time: later + Duration::days(6),
        ..recent
    };
    assert_eq!(store::insert_batch(&db, &[ahead]).await.unwrap(), 1);
    // Running again changes nothing.
    let again = partitions::maintain(&db, later, Duration::days(7), Duration::days(7))
        .await
        .unwrap();
    assert!(
        again.created.is_empty() && again.dropped.is_empty(),
        "{again:?}"
    );
}

#[tokio::test]
async fn rejections_are_stored_with_their_reason() {
    let (db, _) = fresh_database().await;
    let device = Uuid::new_v4();
    store::insert_rejected(
        &db,
        &[
            Rejected {
                device_id: Some(device),
                topic: "bedside/v1/devices/x/vitals",
                reason: "unknown_unit",
                detail: "unit \"furlong\"".into(),
                record_index: Some(2),
                payload: b"[...]",
            },
            Rejected {
                device_id: None,
                topic: "bedside/v1/devices/y/vitals",
                reason: "unknown_device",
                detail: String::new(),
                record_index: None,
                payload: b"",
            },
        ],
    )
    .await
    .unwrap();
    let rows: Vec<(Option<Uuid>, String, Option<i32>)> =
        sqlx::query_as("SELECT device_id, reason, record_index FROM rejected_messages ORDER BY id")
            .fetch_all(&db)
            .await
            .unwrap();
    assert_eq!(
        rows,
        vec![
            (Some(device), "unknown_unit".into(), Some(2)),
            (None, "unknown_device".into(), None)
        ]
    );
}

#[tokio::test]
async fn device_liveness_follows_announcements_readings_and_silence() {
    use bedside_vitals_store::liveness;
    let (db, _) = fresh_database().await;
    let device = Uuid::new_v4();
    assert!(
        liveness::seen(&db, &[device], at(0))
            .await
            .unwrap()
            .is_empty(),
        "first sight is not a return"
    );
    assert!(
        liveness::announce(&db, device, false, at(1)).await.unwrap(),
        "going offline is a change"
    );
    assert!(
        !liveness::announce(&db, device, false, at(2)).await.unwrap(),
        "saying it twice is not"
    );
    assert_eq!(
        liveness::seen(&db, &[device], at(3)).await.unwrap(),
        vec![device],
        "a reading brings it back"
    );
    // An online device's last_seen moves in steps of the resolution, not on every message.
    let seconds = |s: i64| at(3) + Duration::seconds(s);
    let last_seen = |db| async move { liveness::of(db, &[device]).await.unwrap()[0].last_seen };
    liveness::seen(&db, &[device], seconds(5)).await.unwrap();
    assert_eq!(last_seen(&db).await, at(3), "5 s later: unchanged");
    liveness::seen(&db, &[device], seconds(21)).await.unwrap();
    assert_eq!(last_seen(&db).await, seconds(21), "21 s later: moved");
    // Silent since 10:03:21: offline once the cutoff passes it, and only once.
    assert!(
        liveness::expire_silent(&db, at(3))
            .await
            .unwrap()
            .is_empty()
    );
    assert_eq!(
        liveness::expire_silent(&db, at(40)).await.unwrap(),
        vec![device]
    );
    assert!(
        liveness::expire_silent(&db, at(40))
            .await
            .unwrap()
            .is_empty()
    );
    let status = liveness::of(&db, &[device]).await.unwrap();
    assert_eq!(
        (status[0].online, status[0].last_seen),
        (false, at(3) + Duration::seconds(21))
    );
}

/// TimescaleDB: the migration's compression policy, the retention policy
/// kept at the configured retention, chunks dropped by the retention job,
/// and idempotent inserts and queries over a compressed chunk.
async fn timescale_policies_compress_and_drop_old_chunks(db: &sqlx::PgPool) {
    let now = Utc::now();
    let done = partitions::maintain(db, now, Duration::days(7), Duration::days(7))
        .await
        .unwrap();
    assert!(
        done.retention_policy_set && done.created.is_empty(),
        "{done:?}"
    );
    let policy = |name: &'static str, key: &'static str| {
        let db = db.clone();
        async move {
            sqlx::query_scalar::<_, String>(
                "SELECT config->>$2 FROM timescaledb_information.jobs
                 WHERE proc_name = $1 AND hypertable_name = 'vitals'",
            )
            .bind(name)
            .bind(key)
            .fetch_one(&db)
            .await
            .unwrap()
        }
    };
    assert_eq!(
        policy("policy_compression", "compress_after").await,
        "7 days"
    );
    assert_eq!(policy("policy_retention", "drop_after").await, "7 days");
    // Maintaining again with the same retention leaves the policy alone.
    let again = partitions::maintain(db, now, Duration::days(7), Duration::days(7))
        .await
        .unwrap();
    assert!(!again.retention_policy_set);

    let (device, patient) = (Uuid::new_v4(), Uuid::new_v4());
    let at_days_ago = |days: i64, value: f64| NewReading {
        time: now - Duration::days(days),
        device_id: device,
        metric: Metric::BodyWeight,
        patient_id: patient,
        value,
    };
    let (old, compressed, recent) = (
        at_days_ago(20, 70.0),
        at_days_ago(3, 71.0),
        at_days_ago(0, 72.0),
    );
    assert_eq!(
        store::insert_batch(db, &[old, compressed, recent])
            .await
            .unwrap(),
        3
    );

    // Compress every chunk older than a day: the reading of three days ago
    // is still found, and storing it again stores nothing.
    let compressed_chunks: i64 = sqlx::query_scalar(
        "SELECT count(compress_chunk(c)) FROM show_chunks('vitals', older_than => now() - interval '1 day') c",
    )
    .fetch_one(db)
    .await
    .unwrap();
    assert!(compressed_chunks >= 2);
    assert_eq!(
        store::insert_batch(db, &[compressed]).await.unwrap(),
        0,
        "no duplicate in a compressed chunk"
    );
    let found = queries::range(
        db,
        patient,
        Metric::BodyWeight,
        now - Duration::days(4),
        now - Duration::days(2),
        10,
    )
    .await
    .unwrap();
    assert_eq!(
        found.iter().map(|p| p.value).collect::<Vec<_>>(),
        vec![71.0]
    );

    // The retention job drops the chunk of twenty days ago, nothing newer.
    let retention_job: i32 = sqlx::query_scalar(
        "SELECT job_id FROM timescaledb_information.jobs WHERE proc_name = 'policy_retention' AND hypertable_name = 'vitals'",
    )
    .fetch_one(db)
    .await
    .unwrap();
    sqlx::query("CALL run_job($1)")
        .bind(retention_job)
        .execute(db)
        .await
        .unwrap();
    let remaining: Vec<f64> = sqlx::query_scalar("SELECT value FROM vitals ORDER BY time")
        .fetch_all(db)
        .await
        .unwrap();
    assert_eq!(remaining, vec![71.0, 72.0]);
}
