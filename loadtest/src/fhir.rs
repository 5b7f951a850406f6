//! `loadtest fhir`: FHIR search latency and `$everything` memory over a
//! patient with a long history.
//!
//! `seed` registers a patient with a pulse oximeter through Bedside's
//! records code and bulk-loads readings straight into `vitals` (heart rate
//! and SpO2 every 30 seconds back from now, as a bulk import would: the
//! ingest path is measured by `loadtest devices`). `run` signs in as an
//! admin and, for a fixed time, several times, sends the search a clinical
//! system sends for recent vitals,
//! `Observation?patient=…&code=8867-4&date=ge…` (first pages, with their
//! total), from concurrent workers; then it follows the `next` links of
//! one such search to the end; then it exports the patient with
//! `Patient/$everything` while sampling the server's resident memory, and
//! reports how far it rose above the level before the export.

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use bedside_records::devices;
use bedside_records::domain::{BirthDate, BoundedText, DeviceKind, Mrn, Serial, Sex};
use bedside_records::patients::{self, PatientDetails};
use chrono::Utc;
use clap::{Args, Subcommand};
use serde_json::{Value, json};
use sqlx::postgres::PgPoolOptions;

use crate::cpu::process_rss_bytes;
use crate::http::login;
use crate::stats::{median, summarise};

/// `loadtest fhir ...`
#[derive(Debug, Subcommand)]
pub(crate) enum FhirAction {
    /// Register a patient and bulk-load their readings.
    Seed(SeedArgs),
    /// Measure search latency and the memory of `$everything`.
    Run(RunArgs),
}

#[derive(Debug, Args)]
pub(crate) struct SeedArgs {
    /// Bedside's database.
    #[arg(long, env = "BEDSIDE_DATABASE__URL")]
    database_url: String,
    /// Readings to load (half heart rate, half SpO2).
    #[arg(long, default_value_t = 1_000_000)]
    readings: u64,
}

#[derive(Debug, Args)]
pub(crate) struct RunArgs {
    /// Base URL of the server.
    #[arg(long, default_value = "http://127.0.0.1:8080")]
    base: String,
    /// Admin e-mail.
    #[arg(long, default_value = "loadtest.admin@bedside.test")]
    admin_email: String,
    /// Admin password.
    #[arg(long, env = "LOADTEST_ADMIN_PASSWORD")]
    admin_password: String,
    /// The patient (as printed by `seed`).
    #[arg(long)]
    patient: String,
    /// Seconds per search run.
    #[arg(long, default_value_t = 20)]
    seconds: u64,
    /// Search runs.
    #[arg(long, default_value_t = 3)]
    runs: usize,
    /// Concurrent searching clients.
    #[arg(long, default_value_t = 4)]
    concurrency: usize,
    /// How far back the searches reach (`date=ge` now minus this many days).
    #[arg(long, default_value_t = 7)]
    days: i64,
    /// The server's process id, for its memory during `$everything`.
    #[arg(long)]
    server_pid: Option<u32>,
    /// Write the figures as JSON here.
    #[arg(long)]
    json: Option<std::path::PathBuf>,
}

pub(crate) async fn run(action: FhirAction) -> anyhow::Result<()> {
    match action {
        FhirAction::Seed(args) => seed(args).await,
        FhirAction::Run(args) => measure(args).await,
    }
}

async fn seed(args: SeedArgs) -> anyhow::Result<()> {
    let db = PgPoolOptions::new()
        .max_connections(2)
        .connect(&args.database_url)
        .await
        .context("cannot connect to the database")?;
    let tag = Utc::now().timestamp();
    let patient = patients::create(
        &db,
        &PatientDetails {
            mrn: Mrn::parse(&format!("LF{tag}"))?,
            given_name: BoundedText::parse("given_name", "Long", 100)?,
            family_name: BoundedText::parse("family_name", "History", 100)?,
            birth_date: BirthDate::parse("1948-02-29")?,
            sex: Sex::Unknown,
            email: None,
            phone: None,
        },
    )
    .await?;
    let device = devices::provision(
        &db,
        &Serial::parse(&format!("LF-OX-{tag}"))?,
        DeviceKind::PulseOximeter,
        None,
    )
    .await?
    .device;
    // Assigned from before the first reading, as the readings say.
    let timestamps = args.readings.div_ceil(2) as i64;
    let first = Utc::now() - chrono::Duration::seconds(30 * timestamps);
    sqlx::query(
        "INSERT INTO device_assignments (id, device_id, patient_id, assigned_from) VALUES ($1, $2, $3, $4)",
    )
    .bind(uuid::Uuid::new_v4())
    .bind(device.id)
    .bind(patient.id)
    .bind(first - chrono::Duration::minutes(1))
    .execute(&db)
    .await
    .context("assigning the device")?;
    // The partitions the server makes when its ingest runs (off here).
    bedside_vitals_store::partitions::maintain(
        &db,
        Utc::now(),
        chrono::Duration::days(365),
        chrono::Duration::days(14),
    )
    .await?;
    let started = Instant::now();
    // In slices of 100,000 timestamps, so no one statement holds the table long.
    let mut done = 0;
    while done < timestamps {
        let n = (timestamps - done).min(100_000);
        sqlx::query(
            "INSERT INTO vitals (time, device_id, metric, patient_id, value)
             SELECT $3 + make_interval(secs => 30 * i), $1, m.metric, $2,
                    CASE m.metric WHEN 'heart_rate' THEN 60 + (i % 40) ELSE 92 + (i % 8) END
             FROM generate_series($4::bigint, $5::bigint - 1) AS i
             CROSS JOIN (VALUES ('heart_rate'), ('spo2')) AS m(metric)",
        )
        .bind(device.id)
        .bind(patient.id)
        .bind(first)
        .bind(done)
        .bind(done + n)
        .execute(&db)
        .await
        .context("loading readings")?;
        done += n;
    }
    sqlx::query("ANALYZE vitals").execute(&db).await?;
    eprintln!(
        "seeded {} readings over {} days in {:.1} s",
        timestamps * 2,
        (30 * timestamps) / 86_400,
        started.elapsed().as_secs_f64()
    );
    println!("{}", patient.id);
    Ok(())
}

async fn fhir_get(client: &reqwest::Client, url: &str, token: &str) -> anyhow::Result<Value> {
    let response = client
        .get(url)
        .bearer_auth(token)
        .header("accept", "application/fhir+json")
        .send()
        .await?;
    let status = response.status();
    let body: Value = response.json().await?;
    if !status.is_success() {
        bail!("GET {url}: {status} {body}");
    }
    Ok(body)
}

async fn measure(args: RunArgs) -> anyhow::Result<()> {
    let base = args.base.trim_end_matches('/').to_owned();
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(64)
        .build()?;
    let token = login(&client, &base, &args.admin_email, &args.admin_password).await?;
    let since = (Utc::now() - chrono::Duration::days(args.days))
        .format("%Y-%m-%dT%H:%M:%SZ")
        .to_string();
    let search = format!(
        "{base}/fhir/Observation?patient=Patient/{}&code=http://loinc.org%7C8867-4&date=ge{since}",
        args.patient
    );
    let first = fhir_get(&client, &search, &token).await?;
    let total = first["total"].as_i64().unwrap_or(-1);
    let stored: i64 = {
        let all = fhir_get(
            &client,
            &format!(
                "{base}/fhir/Observation?patient=Patient/{}&_count=0",
                args.patient
            ),
            &token,
        )
        .await?;
        all["total"].as_i64().unwrap_or(-1)
    };
    println!(
        "patient {}: {stored} Observations stored; the search matches {total} (heart rate since {since})",
        args.patient
    );

    let mut runs = Vec::new();
    for run in 1..=args.runs {
        let deadline = Instant::now() + Duration::from_secs(args.seconds);
        let mut workers = Vec::new();
        for _ in 0..args.concurrency.max(1) {
            let (client, token, search) = (client.clone(), token.clone(), search.clone());
            workers.push(tokio::spawn(async move {
                let mut latencies = Vec::new();
                while Instant::now() < deadline {
                    let started = Instant::now();
                    let page = fhir_get(&client, &search, &token).await?;
                    latencies.push(started.elapsed());
                    if page["entry"].as_array().map_or(0, Vec::len) == 0 {
                        bail!("the search returned nothing");
                    }
                }
                Ok::<_, anyhow::Error>(latencies)
            }));
        }
        let mut latencies = Vec::new();
        for worker in workers {
            latencies.extend(worker.await??);
        }
        let summary = summarise(latencies).context("no searches completed")?;
        println!(
            "run {run} search  {:>6} requests {:>7.1}/s  p50 {:>6.2} ms  p90 {:>6.2} ms  p99 {:>6.2} ms  max {:>6.2} ms",
            summary.count,
            summary.count as f64 / args.seconds as f64,
            ms(summary.p50),
            ms(summary.p90),
            ms(summary.p99),
            ms(summary.max)
        );
        runs.push(summary);
    }
    let p50 = median(runs.iter().map(|s| ms(s.p50)).collect());
    let p99 = median(runs.iter().map(|s| ms(s.p99)).collect());
    let rate = median(
        runs.iter()
            .map(|s| s.count as f64 / args.seconds as f64)
            .collect(),
    );

    // Every page of the search, by its next links.
    let started = Instant::now();
    let (mut pages, mut seen, mut page_times) = (0, 0, Vec::new());
    let mut url = Some(format!("{search}&_count=1000"));
    while let Some(next) = url {
        let t = Instant::now();
        let page = fhir_get(&client, &next, &token).await?;
        page_times.push(t.elapsed());
        pages += 1;
        seen += page["entry"].as_array().map_or(0, Vec::len) as i64;
        url = page["link"]
            .as_array()
            .and_then(|links| links.iter().find(|l| l["relation"] == "next"))
            .and_then(|l| l["url"].as_str())
            .and_then(|u| u.find("/fhir/").map(|at| format!("{base}{}", &u[at..])));
    }
    let paging = summarise(page_times).context("no pages")?;
    println!(
        "paging: {seen} of {total} in {pages} pages of 1000 in {:.2} s (page p50 {:.1} ms, max {:.1} ms)",
        started.elapsed().as_secs_f64(),
        ms(paging.p50),
        ms(paging.max)
    );
    if seen != total {
        bail!("paging returned {seen} readings, the total said {total}");
    }

    // $everything, with the server's memory sampled while it streams.
    let everything = export(&client, &base, &token, &args.patient, args.server_pid).await?;
    println!(
        "$everything: {} entries, {:.1} MiB in {:.1} s; server resident memory {:.1} MiB before, peak {:.1} MiB (+{:.1} MiB)",
        everything.entries,
        everything.bytes as f64 / 1_048_576.0,
        everything.seconds,
        everything.rss_before as f64 / 1_048_576.0,
        everything.rss_peak as f64 / 1_048_576.0,
        everything.rss_peak.saturating_sub(everything.rss_before) as f64 / 1_048_576.0
    );
    println!(
        "\nmedians over {} runs: search p50 {p50:.2} ms, p99 {p99:.2} ms, {rate:.1} searches/s ({} clients)",
        args.runs, args.concurrency
    );
    if let Some(path) = args.json {
        let report = json!({
            "stored_observations": stored,
            "search": { "url_shape": "Observation?patient=…&code=8867-4&date=ge…", "matches": total,
                        "concurrency": args.concurrency, "seconds": args.seconds,
                        "runs": runs.iter().map(|s| json!({"requests": s.count, "p50_ms": ms(s.p50), "p99_ms": ms(s.p99), "max_ms": ms(s.max)})).collect::<Vec<_>>(),
                        "median_p50_ms": p50, "median_p99_ms": p99, "median_per_second": rate },
            "paging": { "pages": pages, "readings": seen, "page_p50_ms": ms(paging.p50), "page_max_ms": ms(paging.max) },
            "everything": { "entries": everything.entries, "bytes": everything.bytes, "seconds": everything.seconds,
                            "server_rss_before": everything.rss_before, "server_rss_peak": everything.rss_peak },
        });
        std::fs::write(&path, serde_json::to_vec_pretty(&report)?)?;
    }
    Ok(())
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

struct Export {
    entries: u64,
    bytes: u64,
    seconds: f64,
    rss_before: u64,
    rss_peak: u64,
}

/// Streams `$everything` to nowhere (counting entries), sampling the
/// server's resident memory every 10 ms meanwhile.
async fn export(
    client: &reqwest::Client,
    base: &str,
    token: &str,
    patient: &str,
    server_pid: Option<u32>,
) -> anyhow::Result<Export> {
    let rss = move || server_pid.and_then(process_rss_bytes).unwrap_or(0);
    let rss_before = rss();
    let peak = Arc::new(std::sync::atomic::AtomicU64::new(rss_before));
    let sampling = Arc::new(std::sync::atomic::AtomicBool::new(true));
    let sampler = {
        let (peak, sampling) = (peak.clone(), sampling.clone());
        tokio::spawn(async move {
            while sampling.load(std::sync::atomic::Ordering::Relaxed) {
                peak.fetch_max(rss(), std::sync::atomic::Ordering::Relaxed);
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        })
    };
    let started = Instant::now();
    let response = client
        .get(format!("{base}/fhir/Patient/{patient}/$everything"))
        .bearer_auth(token)
        .header("accept", "application/fhir+json")
        .send()
        .await?;
    if !response.status().is_success() {
        bail!("$everything: {}", response.status());
    }
    // Entries are counted by their `fullUrl` key, across chunk boundaries.
    const KEY: &[u8] = b"\"fullUrl\"";
    let (mut entries, mut bytes, mut tail) = (0u64, 0u64, Vec::new());
    let mut last = Vec::new();
    let mut response = response;
    while let Some(chunk) = response.chunk().await? {
        bytes += chunk.len() as u64;
        if !chunk.is_empty() {
            last = chunk.to_vec();
        }
        tail.extend_from_slice(&chunk);
        entries += tail.windows(KEY.len()).filter(|w| *w == KEY).count() as u64;
        let keep = tail.len().min(KEY.len() - 1);
        tail.drain(..tail.len() - keep);
    }
    // The Bundle's last bytes close it; a stream cut short does not.
    if !last.ends_with(b"]}") {
        bail!("$everything ended before its Bundle closed");
    }
    let seconds = started.elapsed().as_secs_f64();
    sampling.store(false, std::sync::atomic::Ordering::Relaxed);
    sampler.await?;
    Ok(Export {
        entries,
        bytes,
        seconds,
        rss_before,
        rss_peak: peak.load(std::sync::atomic::Ordering::Relaxed),
    })
}
