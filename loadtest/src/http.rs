//! `loadtest http`: latency and throughput of the appointments day list.
//!
//! `seed` books a clinician's appointments through the API as an admin
//! would (default 10,000, 16 a day); `run` signs in as that clinician and
//! requests one seeded day's list from several concurrent workers for a
//! fixed time, several times, and prints each run and the medians.
//! Start the server with a high `BEDSIDE_HTTP__RATE_LIMIT_PER_SECOND` for
//! this: the per-client rate limit exists to stop exactly such a flood.

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use chrono::{Duration as ChronoDuration, NaiveDate, Utc};
use clap::{Args, Subcommand};
use serde_json::{Value, json};

use crate::stats::{median, summarise};

/// `loadtest http ...`
#[derive(Debug, Subcommand)]
pub(crate) enum HttpAction {
    /// Create a clinician, patients and N appointments through the API.
    Seed(SeedArgs),
    /// Measure `GET /api/v1/appointments?date=…` as that clinician.
    Run(RunArgs),
}

#[derive(Debug, Args)]
pub(crate) struct Server {
    /// Base URL of the server.
    #[arg(long, default_value = "https://localhost:8443")]
    base: String,
    /// Accept a self-signed certificate (the demo's).
    #[arg(long)]
    insecure: bool,
}

#[derive(Debug, Args)]
pub(crate) struct SeedArgs {
    #[command(flatten)]
    server: Server,
    /// Admin e-mail.
    #[arg(long, default_value = "admin@demo.bedside.test")]
    admin_email: String,
    /// Admin password.
    #[arg(long, default_value = "bedside-demo-2026")]
    admin_password: String,
    /// The clinician to create (or reuse) and book for.
    #[arg(long, default_value = "loadtest.clinician@bedside.test")]
    clinician_email: String,
    /// Their password.
    #[arg(long, default_value = "loadtest-clinician-password")]
    clinician_password: String,
    /// Appointments to book.
    #[arg(long, default_value_t = 10_000)]
    appointments: usize,
    /// Appointments per day (30 minutes each from 07:00 UTC).
    #[arg(long, default_value_t = 16)]
    per_day: usize,
    /// Distinct patients to spread them over.
    #[arg(long, default_value_t = 200)]
    patients: usize,
    /// Concurrent booking requests.
    #[arg(long, default_value_t = 8)]
    concurrency: usize,
}

#[derive(Debug, Args)]
pub(crate) struct RunArgs {
    #[command(flatten)]
    server: Server,
    /// The clinician to sign in as.
    #[arg(long, default_value = "loadtest.clinician@bedside.test")]
    clinician_email: String,
    /// Their password.
    #[arg(long, default_value = "loadtest-clinician-password")]
    clinician_password: String,
    /// The day to list (YYYY-MM-DD); default: the first seeded day (tomorrow).
    #[arg(long)]
    date: Option<NaiveDate>,
    /// Concurrent workers, each with one request in flight.
    #[arg(long, default_value_t = 8)]
    concurrency: usize,
    /// Seconds per run.
    #[arg(long, default_value_t = 10)]
    seconds: u64,
    /// Runs (figures are reported per run and as medians).
    #[arg(long, default_value_t = 5)]
    runs: usize,
}

pub(crate) async fn run(action: HttpAction) -> anyhow::Result<()> {
    match action {
        HttpAction::Seed(args) => seed(args).await,
        HttpAction::Run(args) => measure(args).await,
    }
}

fn client(server: &Server) -> anyhow::Result<reqwest::Client> {
    Ok(reqwest::Client::builder()
        .danger_accept_invalid_certs(server.insecure)
        .pool_max_idle_per_host(256)
        .build()?)
}

/// Signs in; the access token.
pub(crate) async fn login(
    client: &reqwest::Client,
    base: &str,
    email: &str,
    password: &str,
) -> anyhow::Result<String> {
    let response = client
        .post(format!("{base}/api/v1/auth/login"))
        .json(&json!({"email": email, "password": password}))
        .send()
        .await
        .context("cannot reach the server")?;
    let status = response.status();
    let body: Value = response.json().await?;
    if !status.is_success() {
        bail!("login as {email} failed: {status} {body}");
    }
    body["access_token"]
        .as_str()
        .map(str::to_owned)
        .context("the login answer had no access token (TOTP enabled?)")
}

pub(crate) async fn post(
    client: &reqwest::Client,
    base: &str,
    token: &str,
    path: &str,
    body: Value,
) -> anyhow::Result<Value> {
    let response = client
        .post(format!("{base}{path}"))
        .bearer_auth(token)
        .json(&body)
        .send()
        .await?;
    let status = response.status();
    let body: Value = response.json().await.unwrap_or(Value::Null);
    if !status.is_success() {
        bail!("POST {path} failed: {status} {body}");
    }
    Ok(body)
}

async fn seed(args: SeedArgs) -> anyhow::Result<()> {
    let base = args.server.base.trim_end_matches('/').to_owned();
    let client = client(&args.server)?;
    let admin = login(&client, &base, &args.admin_email, &args.admin_password).await?;
    let tag = Utc::now().timestamp();
    let clinician = post(&client, &base, &admin, "/api/v1/users", json!({
        "email": args.clinician_email, "name": "Dr. Load Test", "role": "clinician", "password": args.clinician_password
    }))
    .await
    .with_context(|| format!("creating {} (use another --clinician-email if it exists)", args.clinician_email))?;
    let practitioner = clinician["practitioner_id"]
        .as_str()
        .context("practitioner id")?
        .to_owned();
    let mut patients = Vec::with_capacity(args.patients);
    for i in 0..args.patients {
        let patient = post(&client, &base, &admin, "/api/v1/patients", json!({
            "mrn": format!("LT{tag}-{i}"), "given_name": "Load", "family_name": format!("Patient {i}"),
            "birth_date": "1960-01-01", "sex": "unknown"
        }))
        .await?;
        patients.push(patient["id"].as_str().context("patient id")?.to_owned());
    }
    let first_day = (Utc::now() + ChronoDuration::days(1)).date_naive();
    let started = Instant::now();
    let jobs: Vec<(usize, String)> = (0..args.appointments)
        .map(|i| {
            let day = first_day + ChronoDuration::days((i / args.per_day) as i64);
            let start = day.and_hms_opt(7, 0, 0).expect("07:00").and_utc()
                + ChronoDuration::minutes(30 * (i % args.per_day) as i64);
            (i, start.to_rfc3339())
        })
        .collect();
    let jobs = Arc::new(std::sync::Mutex::new(jobs.into_iter()));
    let mut workers = Vec::new();
    for _ in 0..args.concurrency.max(1) {
        let (jobs, client, base, admin, practitioner, patients) = (
            jobs.clone(),
            client.clone(),
            base.clone(),
            admin.clone(),
            practitioner.clone(),
            patients.clone(),
        );
        workers.push(tokio::spawn(async move {
            loop {
                let next = jobs.lock().expect("jobs").next();
                let Some((i, start)) = next else { return Ok::<_, anyhow::Error>(()) };
                post(&client, &base, &admin, "/api/v1/appointments", json!({
                    "patient_id": patients[i % patients.len()], "practitioner_id": practitioner, "start": start,
                    "duration_minutes": 30, "kind": if i % 3 == 0 { "in_person" } else { "video" }, "reason": "Load test"
                }))
                .await?;
            }
        }));
    }
    for worker in workers {
        worker.await??;
    }
    println!(
        "seeded {} appointments for {} over {} patients in {:.1}s; first day {first_day}",
        args.appointments,
        args.clinician_email,
        args.patients,
        started.elapsed().as_secs_f64()
    );
    Ok(())
}

async fn measure(args: RunArgs) -> anyhow::Result<()> {
    let base = args.server.base.trim_end_matches('/').to_owned();
    let client = client(&args.server)?;
    let token = login(
        &client,
        &base,
        &args.clinician_email,
        &args.clinician_password,
    )
    .await?;
    let date = args
        .date
        .unwrap_or_else(|| (Utc::now() + ChronoDuration::days(1)).date_naive());
    let url = format!("{base}/api/v1/appointments?date={date}");
    let probe = client.get(&url).bearer_auth(&token).send().await?;
    let status = probe.status();
    let rows = probe
        .json::<Vec<Value>>()
        .await
        .map(|v| v.len())
        .unwrap_or(0);
    if !status.is_success() {
        bail!("GET {url} answered {status}");
    }
    println!(
        "GET /api/v1/appointments?date={date}: {rows} appointments per answer; {} workers, {} s x {} runs",
        args.concurrency, args.seconds, args.runs
    );
    let (mut rates, mut p50s, mut p99s) = (Vec::new(), Vec::new(), Vec::new());
    for run in 1..=args.runs {
        let deadline = Instant::now() + Duration::from_secs(args.seconds);
        let started = Instant::now();
        let mut workers = Vec::new();
        for _ in 0..args.concurrency.max(1) {
            let (client, url, token) = (client.clone(), url.clone(), token.clone());
            workers.push(tokio::spawn(async move {
                let mut latencies = Vec::new();
                let mut errors = 0usize;
                while Instant::now() < deadline {
                    let sent = Instant::now();
                    match client.get(&url).bearer_auth(&token).send().await {
                        Ok(r) if r.status().is_success() => {
                            let _ = r.bytes().await;
                            latencies.push(sent.elapsed());
                        }
                        _ => errors += 1,
                    }
                }
                (latencies, errors)
            }));
        }
        let mut latencies = Vec::new();
        let mut errors = 0;
        for worker in workers {
            let (l, e) = worker.await?;
            latencies.extend(l);
            errors += e;
        }
        let elapsed = started.elapsed().as_secs_f64();
        let summary = summarise(latencies).context("no request succeeded")?;
        let rate = summary.count as f64 / elapsed;
        println!(
            "run {run}: {:>8.0} req/s  p50 {:>7.2} ms  p90 {:>7.2} ms  p99 {:>7.2} ms  max {:>7.2} ms  ({} ok, {errors} errors)",
            rate,
            ms(summary.p50),
            ms(summary.p90),
            ms(summary.p99),
            ms(summary.max),
            summary.count
        );
        rates.push(rate);
        p50s.push(ms(summary.p50));
        p99s.push(ms(summary.p99));
    }
    println!(
        "median of {} runs: {:.0} req/s, p50 {:.2} ms, p99 {:.2} ms",
        args.runs,
        median(rates),
        median(p50s),
        median(p99s)
    );
    Ok(())
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}
