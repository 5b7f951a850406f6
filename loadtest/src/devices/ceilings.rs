//! The two ceilings a run compares the gateway with, measured in the same
//! run on the same machine:
//!
//! - **Direct insert**: batches of readings written straight into the
//!   vitals store by one writer, one transaction per batch, as the
//!   gateway's single batch task does, without MQTT. Two ways: the store's
//!   own `insert_batch` (UNNEST of arrays) and COPY into a staging table
//!   followed by `INSERT … SELECT … ON CONFLICT DO NOTHING`. The faster one
//!   is what the store should use.
//! - **Broker pass-through**: publishers (one connection by default; see
//!   `--passthrough-publishers`) flat out at QoS 1 into Mosquitto and one
//!   bare QoS 1 subscriber counting what arrives.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use anyhow::Context as _;
use bedside_vitals_store::metric::Metric;
use bedside_vitals_store::store::{self, NewReading};
use chrono::Utc;
use rumqttc::{AsyncClient, Event, MqttOptions, Packet, QoS};
use serde::Serialize;
use sqlx::{Connection as _, PgConnection};
use tokio::time::Instant;
use uuid::Uuid;

use super::swarm::pack;

/// How a batch is written.
#[derive(Debug, Clone, Copy, Serialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub(crate) enum InsertMethod {
    /// `INSERT … SELECT * FROM unnest($1, …)` (the store's `insert_batch`).
    Unnest,
    /// COPY into a temporary staging table, then `INSERT … SELECT`.
    Copy,
}

/// Readings per second one writer stored.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct DirectInsert {
    pub(crate) method: InsertMethod,
    pub(crate) readings_per_second: f64,
    pub(crate) batches: u64,
    pub(crate) batch_p50_ms: f64,
    pub(crate) batch_p99_ms: f64,
}

/// Writes batches of `batch_readings` for `seconds` with fake devices (rows
/// removed afterwards) and reports the rate.
pub(crate) async fn direct_insert(
    database_url: &str,
    method: InsertMethod,
    batch_readings: usize,
    seconds: f64,
) -> anyhow::Result<DirectInsert> {
    let mut db = PgConnection::connect(database_url)
        .await
        .context("cannot connect to the database")?;
    if method == InsertMethod::Copy {
        sqlx::query(
            "CREATE TEMP TABLE vitals_staging (time timestamptz, device_id uuid, metric text, patient_id uuid, value float8) ON COMMIT DELETE ROWS",
        )
        .execute(&mut db)
        .await?;
    }
    // 1,000 fake devices with fake patients, as many as the gateway's
    // biggest batch has distinct devices; the vitals table has no foreign keys.
    let fleet: Vec<(Uuid, Uuid)> = (0..1000)
        .map(|_| (Uuid::new_v4(), Uuid::new_v4()))
        .collect();
    let base = Utc::now();
    let mut written = 0u64;
    let mut batch_times = Vec::new();
    let started = Instant::now();
    let until = started + Duration::from_secs_f64(seconds);
    while Instant::now() < until {
        let readings: Vec<NewReading> = (0..batch_readings)
            .map(|i| {
                let n = written + i as u64;
                let (device_id, patient_id) = fleet[(n as usize / 2) % fleet.len()];
                NewReading {
                    // Unique per device and metric, inside the current partition.
                    time: base + chrono::Duration::microseconds((n / 2) as i64),
                    device_id,
                    metric: if n.is_multiple_of(2) {
                        Metric::HeartRate
                    } else {
                        Metric::Spo2
                    },
                    patient_id,
                    value: 70.0 + (n % 20) as f64,
                }
            })
            .collect();
        let batch_started = Instant::now();
        let stored = match method {
            InsertMethod::Unnest => {
                let mut tx = db.begin().await?;
                let stored = store::insert_batch(&mut *tx, &readings).await?;
                tx.commit().await?;
                stored
            }
            InsertMethod::Copy => insert_by_copy(&mut db, &readings).await?,
        };
        batch_times.push(batch_started.elapsed());
        anyhow::ensure!(
            stored == readings.len() as u64,
            "a ceiling batch stored {stored} of {} rows",
            readings.len()
        );
        written += stored;
    }
    let elapsed = started.elapsed().as_secs_f64();
    let devices: Vec<Uuid> = fleet.iter().map(|(d, _)| *d).collect();
    sqlx::query("DELETE FROM vitals WHERE device_id = ANY($1)")
        .bind(&devices)
        .execute(&mut db)
        .await?;
    let summary = crate::stats::summarise(batch_times).context("no batch written")?;
    Ok(DirectInsert {
        method,
        readings_per_second: written as f64 / elapsed,
        batches: summary.count as u64,
        batch_p50_ms: summary.p50.as_secs_f64() * 1000.0,
        batch_p99_ms: summary.p99.as_secs_f64() * 1000.0,
    })
}

async fn insert_by_copy(db: &mut PgConnection, readings: &[NewReading]) -> anyhow::Result<u64> {
    use std::fmt::Write as _;
    let mut text = String::with_capacity(readings.len() * 110);
    for r in readings {
        let _ = writeln!(
            text,
            "{}\t{}\t{}\t{}\t{}",
            r.time.to_rfc3339(),
            r.device_id,
            r.metric.name(),
            r.patient_id,
            r.value
        );
    }
    let mut tx = db.begin().await?;
    let mut copy = tx
        .copy_in_raw("COPY vitals_staging (time, device_id, metric, patient_id, value) FROM STDIN")
        .await?;
    copy.send(text.into_bytes()).await?;
    copy.finish().await?;
    let stored = sqlx::query(
        "INSERT INTO vitals (time, device_id, metric, patient_id, value)
         SELECT time, device_id, metric, patient_id, value FROM vitals_staging
         ON CONFLICT (device_id, metric, time) DO NOTHING",
    )
    .execute(&mut *tx)
    .await?
    .rows_affected();
    tx.commit().await?;
    Ok(stored)
}

/// Messages per second through the broker to one subscriber.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct PassThrough {
    pub(crate) publishers: usize,
    pub(crate) messages_per_second: f64,
    pub(crate) published: u64,
    pub(crate) received: u64,
}

/// Where and as whom the pass-through runs.
#[derive(Debug, Clone)]
pub(crate) struct Broker {
    pub(crate) host: String,
    pub(crate) port: u16,
    pub(crate) username: String,
    pub(crate) password: String,
}

/// `publishers` connections publish flat out (QoS 1, the load's own packs)
/// to `loadtest/passthrough/<n>` for `seconds`; one subscriber on
/// `loadtest/passthrough/+` counts what arrives after a one-second warm-up.
pub(crate) async fn pass_through(
    broker: &Broker,
    publishers: usize,
    seconds: f64,
) -> anyhow::Result<PassThrough> {
    let received = Arc::new(AtomicU64::new(0));
    let published = Arc::new(AtomicU64::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let options = |id: String| {
        let mut o = MqttOptions::new(id, &broker.host, broker.port);
        o.set_credentials(&broker.username, &broker.password)
            .set_keep_alive(Duration::from_secs(60))
            .set_clean_session(true)
            .set_inflight(100);
        o
    };
    let (subscriber, mut sub_loop) =
        AsyncClient::new(options("loadtest-passthrough-sub".into()), 64);
    let (ready_tx, ready_rx) = tokio::sync::oneshot::channel();
    let counter = received.clone();
    let sub_task = tokio::spawn(async move {
        let mut ready = Some(ready_tx);
        loop {
            match sub_loop.poll().await {
                Ok(Event::Incoming(Packet::SubAck(_))) => {
                    if let Some(tx) = ready.take() {
                        let _ = tx.send(());
                    }
                }
                Ok(Event::Incoming(Packet::Publish(_))) => {
                    counter.fetch_add(1, Ordering::Relaxed);
                }
                Ok(_) => {}
                Err(_) => tokio::time::sleep(Duration::from_millis(200)).await,
            }
        }
    });
    subscriber
        .subscribe("loadtest/passthrough/+", QoS::AtLeastOnce)
        .await?;
    tokio::time::timeout(Duration::from_secs(10), ready_rx)
        .await
        .context("the pass-through subscriber was not subscribed within 10 s")??;

    let mut tasks = Vec::new();
    for p in 0..publishers {
        let (client, mut eventloop) =
            AsyncClient::new(options(format!("loadtest-passthrough-{p}")), 64);
        tasks.push(tokio::spawn(async move {
            loop {
                if eventloop.poll().await.is_err() {
                    tokio::time::sleep(Duration::from_millis(200)).await;
                }
            }
        }));
        let (published, stop) = (published.clone(), stop.clone());
        tasks.push(tokio::spawn(async move {
            let topic = format!("loadtest/passthrough/{p}");
            let mut n = 0u64;
            while !stop.load(Ordering::Relaxed) {
                n += 1;
                let payload = pack(Utc::now().timestamp_millis().max(0) as u64, n, false);
                if client
                    .publish(&topic, QoS::AtLeastOnce, false, payload)
                    .await
                    .is_err()
                {
                    return;
                }
                published.fetch_add(1, Ordering::Relaxed);
            }
        }));
    }
    tokio::time::sleep(Duration::from_secs(1)).await;
    let from = received.load(Ordering::Relaxed);
    let started = Instant::now();
    tokio::time::sleep(Duration::from_secs_f64(seconds)).await;
    let counted = received.load(Ordering::Relaxed) - from;
    let elapsed = started.elapsed().as_secs_f64();
    stop.store(true, Ordering::Relaxed);
    tokio::time::sleep(Duration::from_millis(500)).await;
    for task in tasks {
        task.abort();
    }
    let _ = subscriber.try_disconnect();
    sub_task.abort();
    Ok(PassThrough {
        publishers,
        messages_per_second: counted as f64 / elapsed,
        published: published.load(Ordering::Relaxed),
        received: received.load(Ordering::Relaxed),
    })
}
