//! `loadtest devices`: a swarm of home devices against a running Bedside.
//!
//! `seed` registers N patients with a pulse oximeter each; `run` connects
//! every device as its own MQTT client and publishes QoS 1 SenML packs (two
//! readings each) at a chosen total rate for a chosen time, then reports:
//!
//! - accepted messages/s and readings/s (stored rows over the time from the
//!   first publish to the last commit);
//! - publish→commit latency of every reading, from PostgreSQL's commit
//!   timestamps after the run (nothing polls the database during it);
//! - publish→alert latency: probe devices (patients in the load-test
//!   clinician's care) periodically send an SpO2 below the clinic's
//!   threshold; a real feed client on `/ws` times the `opened` alert;
//! - rows stored versus sent for every device (exactly once);
//! - in the same run, the direct-insert ceiling (UNNEST and COPY) and, with
//!   `--passthrough-port`, the Mosquitto pass-through ceiling;
//! - the CPU each process group used during the publishing window.
//!
//! `scripts/loadtest-devices.sh` sets all of this up on one machine.

mod ceilings;

mod observe;
mod seed;
mod swarm;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use clap::{Args, Subcommand};
use serde::Serialize;
use sqlx::PgPool;
use sqlx::postgres::PgPoolOptions;
use tokio::time::Instant;
use uuid::Uuid;

use crate::cpu;
use crate::stats::summarise;
use ceilings::{Broker, DirectInsert, InsertMethod, PassThrough};
use swarm::{Observations, Swarm};

/// `loadtest devices ...`
#[derive(Debug, Subcommand)]
pub(crate) enum DevicesAction {
    /// Register patients, each with a pulse oximeter (directly in the database).
    Seed(seed::SeedArgs),
    /// Connect the devices and publish; print the figures.
    Run(Box<RunArgs>),
}

#[derive(Debug, Args)]
pub(crate) struct RunArgs {
    /// The file `seed` wrote.
    #[arg(long, default_value = "loadtest-devices.json")]
    devices_file: PathBuf,
    /// Use only the first N devices of the file.
    #[arg(long)]
    devices: Option<usize>,
    /// Bedside's Mosquitto.
    #[arg(long, default_value = "127.0.0.1")]
    mqtt_host: String,
    /// Its port.
    #[arg(long, default_value_t = 1884)]
    mqtt_port: u16,
    /// Bedside's database (for the commit poller, the per-device counts and
    /// the direct-insert ceiling).
    #[arg(long, env = "BEDSIDE_DATABASE__URL")]
    database_url: String,
    /// Bedside's base URL (plain HTTP: the feed client speaks ws://).
    #[arg(long, default_value = "http://127.0.0.1:8080")]
    base: String,
    /// The clinician whose feed watches the probes.
    #[arg(long, default_value = "loadtest.clinician@bedside.test")]
    clinician_email: String,
    /// Their password.
    #[arg(long, env = "LOADTEST_CLINICIAN_PASSWORD")]
    clinician_password: String,
    /// Messages per second over all devices.
    #[arg(long, default_value_t = 10_000.0)]
    rate: f64,
    /// Seconds of publishing.
    #[arg(long, default_value_t = 60)]
    seconds: u64,
    /// New connections per second while connecting.
    #[arg(long, default_value_t = 2_000)]
    connect_rate: usize,
    /// Every Nth pack of a probe device is out of range (one a second at 1 pack/s is too
    /// dense: the alert must resolve in between).
    #[arg(long, default_value_t = 4)]
    probe_every: u64,
    /// Readings per batch in the direct-insert ceiling (the gateway's
    /// default batch of 1,000 messages holds 2,000).
    #[arg(long, default_value_t = 2_000)]
    batch_readings: usize,
    /// Seconds for each ceiling measurement.
    #[arg(long, default_value_t = 10.0)]
    ceiling_seconds: f64,
    /// A Mosquitto for the pass-through ceiling, started from the same
    /// shipped configuration (a second instance, so its load does not reach
    /// Bedside's gateway). Skipped when absent.
    #[arg(long)]
    passthrough_port: Option<u16>,
    /// Its user (may publish and subscribe below `loadtest/passthrough/`).
    #[arg(long, default_value = "loadtest")]
    passthrough_username: String,
    /// Its password.
    #[arg(long, env = "LOADTEST_PASSTHROUGH_PASSWORD", default_value = "")]
    passthrough_password: String,
    /// Publisher connections for the pass-through ceiling. One: Mosquitto
    /// reads one packet per connection per pass of its event loop, so many
    /// publishers flat out starve the one subscriber's acknowledgements
    /// (50 of them: about 1,400 messages/s reached it, with Mosquitto 2.0.21
    /// keeping its in-flight window) and measure that starvation, not how
    /// fast the broker can hand one subscriber a stream.
    #[arg(long, default_value_t = 1)]
    passthrough_publishers: usize,
    /// Also write the report as JSON here.
    #[arg(long)]
    json: Option<PathBuf>,
    /// A shell command started when publishing starts and waited for at the
    /// end, e.g. a profiler (`perf record -a -g -- sleep 20`).
    #[arg(long)]
    profile_command: Option<String>,
}

pub(crate) async fn run(action: DevicesAction) -> anyhow::Result<()> {
    match action {
        DevicesAction::Seed(args) => seed::seed(args).await,
        DevicesAction::Run(args) => measure(*args).await,
    }
}

/// Percentiles in milliseconds.
#[derive(Debug, Clone, Serialize)]
struct Latency {
    samples: usize,
    p50_ms: f64,
    p99_ms: f64,
    max_ms: f64,
}

impl Latency {
    fn of(latencies: Vec<Duration>) -> Option<Self> {
        let ms = |d: Duration| d.as_secs_f64() * 1000.0;
        summarise(latencies).map(|s| Self {
            samples: s.count,
            p50_ms: ms(s.p50),
            p99_ms: ms(s.p99),
            max_ms: ms(s.max),
        })
    }
}

/// Everything a run measured.
#[derive(Debug, Serialize)]
struct Report {
    devices: usize,
    offered_messages_per_second: f64,
    seconds: u64,
    messages_sent: u64,
    messages_acked_by_broker: u64,
    readings_expected: u64,
    readings_stored: u64,
    accepted_messages_per_second: f64,
    accepted_readings_per_second: f64,
    drain_seconds_after_last_publish: f64,
    devices_missing_rows: usize,
    devices_with_extra_rows: usize,
    reconnects: usize,
    publish_to_commit: Option<Latency>,
    publish_to_alert: Option<Latency>,
    alert_probes_injected: usize,
    direct_insert: Vec<DirectInsert>,
    gateway_share_of_direct_insert: Option<f64>,
    passthrough: Option<PassThrough>,
    cpu_cores_used: Vec<cpu::Usage>,
}

async fn measure(args: RunArgs) -> anyhow::Result<()> {
    let mut seeded = seed::load(&args.devices_file)?;
    if let Some(n) = args.devices {
        seeded.truncate(n);
    }
    let devices = seeded.len();
    anyhow::ensure!(devices > 0, "no devices in {}", args.devices_file.display());
    anyhow::ensure!(args.rate > 0.0, "--rate must be positive");
    let db = PgPoolOptions::new()
        .max_connections(4)
        .connect(&args.database_url)
        .await
        .context("cannot connect to the database")?;

    // Ceilings first, while Bedside is idle.
    let mut direct = Vec::new();
    for method in [InsertMethod::Unnest, InsertMethod::Copy] {
        let ceiling = ceilings::direct_insert(
            &args.database_url,
            method,
            args.batch_readings,
            args.ceiling_seconds,
        )
        .await?;
        eprintln!(
            "direct insert ({method:?}): {:.0} readings/s, batch p50 {:.1} ms p99 {:.1} ms",
            ceiling.readings_per_second, ceiling.batch_p50_ms, ceiling.batch_p99_ms
        );
        direct.push(ceiling);
    }
    let passthrough = match args.passthrough_port {
        Some(port) => {
            let broker = Broker {
                host: args.mqtt_host.clone(),
                port,
                username: args.passthrough_username.clone(),
                password: args.passthrough_password.clone(),
            };
            let p =
                ceilings::pass_through(&broker, args.passthrough_publishers, args.ceiling_seconds)
                    .await?;
            eprintln!(
                "broker pass-through: {:.0} messages/s",
                p.messages_per_second
            );
            Some(p)
        }
        None => None,
    };

    let probes: Vec<Uuid> = seeded
        .iter()
        .filter(|d| d.probe)
        .map(|d| d.patient_id)
        .collect();
    let device_ids: Vec<Uuid> = seeded.iter().map(|d| d.device_id).collect();
    eprintln!("connecting {devices} devices…");
    let swarm = Swarm::connect(
        seeded,
        &args.mqtt_host,
        args.mqtt_port,
        args.connect_rate,
        Duration::from_secs(120),
    )
    .await?;
    let feed = observe::Feed::open(
        args.base.trim_end_matches('/'),
        &args.clinician_email,
        &args.clinician_password,
        &probes,
    )
    .await?;

    let observations = Arc::new(Observations::default());
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let alerts = tokio::spawn(feed.watch_alerts(observations.clone(), stop_rx));

    let start = Instant::now() + Duration::from_secs(1);
    let end = start + Duration::from_secs(args.seconds);
    let first_time = chrono::Utc::now();
    eprintln!(
        "publishing {:.0} messages/s for {} s…",
        args.rate, args.seconds
    );
    let publishers = swarm.publish(
        args.rate,
        start,
        end,
        args.probe_every.max(2),
        observations.clone(),
    );
    tokio::time::sleep_until(start).await;
    let profiler = match &args.profile_command {
        Some(command) => Some(
            tokio::process::Command::new("sh")
                .args(["-c", command])
                .spawn()
                .with_context(|| format!("cannot start {command:?}"))?,
        ),
        None => None,
    };
    let cpu_before = cpu::Sample::now();
    tokio::time::sleep_until(end).await;
    let cpu_cores_used = cpu::Sample::now().since(&cpu_before, args.seconds as f64);
    for publisher in publishers {
        publisher.await?;
    }
    let published_until = Instant::now();
    let (sent, _) = swarm.totals();
    let acked_deadline = Instant::now() + Duration::from_secs(30);
    while swarm.totals().1 < sent && Instant::now() < acked_deadline {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let (sent, acked) = swarm.totals();

    // Drain: wait until every reading is stored or nothing moved for 30 s.
    let expected = sent * 2;
    let window = (
        first_time - chrono::Duration::seconds(5),
        chrono::Utc::now() + chrono::Duration::seconds(5),
    );
    let (stored, last_change) = drain(&db, window, expected).await?;
    let drain_seconds = last_change
        .saturating_duration_since(published_until)
        .as_secs_f64();
    let _ = stop_tx.send(true);
    let commits = observe::commit_latencies(&db, window).await?;
    let alert_latencies = alerts.await??;

    let per_device = per_device_rows(&db, &device_ids, window).await?;
    let (mut missing, mut extra) = (0, 0);
    for device in &swarm.devices {
        let sent = device.sent.load(std::sync::atomic::Ordering::Relaxed) * 2;
        let rows = per_device
            .get(&device.seeded.device_id)
            .copied()
            .unwrap_or(0);
        if rows < sent {
            missing += 1;
        }
        if rows > sent {
            extra += 1;
        }
    }
    let reconnects = swarm
        .connection_errors
        .load(std::sync::atomic::Ordering::Relaxed);
    swarm.close().await;
    if let Some(mut profiler) = profiler {
        profiler
            .wait()
            .await
            .context("the profile command failed")?;
    }

    // From the first publish to the last commit; without commit
    // timestamps, to when the drain poll (1 s resolution) saw the last row.
    let active = observe::ingest_span(&db, window)
        .await?
        .unwrap_or_else(|| last_change.saturating_duration_since(start).as_secs_f64())
        .max(1e-3);
    let accepted_readings = stored as f64 / active;
    let best_direct = direct
        .iter()
        .map(|d| d.readings_per_second)
        .fold(0.0, f64::max);
    let report = Report {
        devices,
        offered_messages_per_second: args.rate,
        seconds: args.seconds,
        messages_sent: sent,
        messages_acked_by_broker: acked,
        readings_expected: expected,
        readings_stored: stored,
        accepted_messages_per_second: accepted_readings / 2.0,
        accepted_readings_per_second: accepted_readings,
        drain_seconds_after_last_publish: drain_seconds,
        devices_missing_rows: missing,
        devices_with_extra_rows: extra,
        reconnects,
        publish_to_commit: commits.and_then(Latency::of),
        publish_to_alert: Latency::of(alert_latencies.seen),
        alert_probes_injected: observations
            .probes_injected
            .load(std::sync::atomic::Ordering::Relaxed),
        gateway_share_of_direct_insert: (best_direct > 0.0)
            .then(|| accepted_readings / best_direct),
        direct_insert: direct,
        passthrough,
        cpu_cores_used,
    };
    print_table(&report);
    if let Some(path) = &args.json {
        std::fs::write(path, serde_json::to_vec_pretty(&report)?)
            .with_context(|| format!("cannot write {}", path.display()))?;
    }
    Ok(())
}

type Window = (chrono::DateTime<chrono::Utc>, chrono::DateTime<chrono::Utc>);

/// Polls the stored count (every second: a count is not free) until it
/// reaches `expected` or stalls for 30 s. Only the swarm publishes during a
/// run, so the window alone selects its rows. Returns the count and when
/// it was first seen at that value.
async fn drain(db: &PgPool, window: Window, expected: u64) -> anyhow::Result<(u64, Instant)> {
    let mut last = (0u64, Instant::now());
    loop {
        let count: i64 =
            sqlx::query_scalar("SELECT count(*) FROM vitals WHERE time BETWEEN $1 AND $2")
                .bind(window.0)
                .bind(window.1)
                .fetch_one(db)
                .await?;
        let count = count.max(0) as u64;
        if count != last.0 {
            last = (count, Instant::now());
        }
        if count >= expected || last.1.elapsed() > Duration::from_secs(30) {
            return Ok(last);
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}

async fn per_device_rows(
    db: &PgPool,
    devices: &[Uuid],
    window: Window,
) -> anyhow::Result<std::collections::HashMap<Uuid, u64>> {
    let rows: Vec<(Uuid, i64)> = sqlx::query_as(
        "SELECT device_id, count(*) FROM vitals WHERE device_id = ANY($1) AND time BETWEEN $2 AND $3 GROUP BY device_id",
    )
    .bind(devices)
    .bind(window.0)
    .bind(window.1)
    .fetch_all(db)
    .await?;
    Ok(rows
        .into_iter()
        .map(|(d, n)| (d, n.max(0) as u64))
        .collect())
}

fn print_table(r: &Report) {
    let latency = |l: &Option<Latency>| match l {
        Some(l) => format!(
            "p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms ({} samples)",
            l.p50_ms, l.p99_ms, l.max_ms, l.samples
        ),
        None => "no samples".to_owned(),
    };
    println!("| figure | value |");
    println!("| --- | --- |");
    println!("| devices (MQTT connections) | {} |", r.devices);
    println!(
        "| offered | {:.0} messages/s for {} s |",
        r.offered_messages_per_second, r.seconds
    );
    println!(
        "| messages sent / acked by broker | {} / {} |",
        r.messages_sent, r.messages_acked_by_broker
    );
    println!(
        "| readings stored / expected | {} / {} |",
        r.readings_stored, r.readings_expected
    );
    println!(
        "| accepted | {:.0} messages/s, {:.0} readings/s |",
        r.accepted_messages_per_second, r.accepted_readings_per_second
    );
    println!(
        "| drain after last publish | {:.1} s |",
        r.drain_seconds_after_last_publish
    );
    println!(
        "| devices with missing / extra rows | {} / {} |",
        r.devices_missing_rows, r.devices_with_extra_rows
    );
    println!("| device reconnects | {} |", r.reconnects);
    println!(
        "| publish→commit | {} |",
        match &r.publish_to_commit {
            None => "not measured (track_commit_timestamp is off)".to_owned(),
            some => latency(some),
        }
    );
    println!(
        "| publish→alert on the feed | {} of {} probes: {} |",
        r.publish_to_alert.as_ref().map_or(0, |l| l.samples),
        r.alert_probes_injected,
        latency(&r.publish_to_alert)
    );
    for d in &r.direct_insert {
        println!(
            "| direct insert ceiling ({:?}) | {:.0} readings/s (batch p50 {:.1} ms) |",
            d.method, d.readings_per_second, d.batch_p50_ms
        );
    }
    if let Some(share) = r.gateway_share_of_direct_insert {
        println!("| gateway / best direct insert | {:.0} % |", share * 100.0);
    }
    if let Some(p) = &r.passthrough {
        println!(
            "| broker pass-through ceiling | {:.0} messages/s ({} publishers) |",
            p.messages_per_second, p.publishers
        );
    }
    let cpu: Vec<String> = r
        .cpu_cores_used
        .iter()
        .map(|u| format!("{} {:.2}", u.group, u.cores))
        .collect();
    println!("| CPU cores used while publishing | {} |", cpu.join(", "));
}
