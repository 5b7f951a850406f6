//! `loadtest devices seed`: a clinic of N patients, each with a pulse
//! oximeter assigned from now, registered through Bedside's own records
//! code (the same path as `bedside devices provision`, without rewriting
//! the broker's files N times). The first `probes` patients are put in
//! the load-test clinician's care so a feed client may watch them.
//! Afterwards run `bedside devices sync` once so Mosquitto knows them.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;

use anyhow::Context as _;
use bedside_records::domain::{BirthDate, BoundedText, DeviceKind, Mrn, Serial, Sex};
use bedside_records::patients::{self, PatientDetails};
use bedside_records::{care, devices, practitioners, users};
use clap::Args;
use serde::{Deserialize, Serialize};
use sqlx::postgres::PgPoolOptions;
use uuid::Uuid;

/// `loadtest devices seed ...`
#[derive(Debug, Args)]
pub(crate) struct SeedArgs {
    /// Bedside's database.
    #[arg(long, env = "BEDSIDE_DATABASE__URL")]
    database_url: String,
    /// Devices (and patients) to register.
    #[arg(long, default_value_t = 10_000)]
    devices: usize,
    /// Patients the clinician watches on the live feed (alert probes).
    #[arg(long, default_value_t = 20)]
    probes: usize,
    /// The clinician (created beforehand, e.g. with `bedside users create`).
    #[arg(long, default_value = "loadtest.clinician@bedside.test")]
    clinician_email: String,
    /// Where to write the devices' credentials (JSON, mode 0600).
    #[arg(long, default_value = "loadtest-devices.json")]
    out: PathBuf,
    /// Concurrent registrations.
    #[arg(long, default_value_t = 8)]
    concurrency: usize,
}

/// One seeded device, as `run` reads it.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct SeededDevice {
    pub(crate) device_id: Uuid,
    pub(crate) password: String,
    pub(crate) patient_id: Uuid,
    /// Watched by the clinician's feed: carries the alert probes.
    pub(crate) probe: bool,
}

pub(crate) async fn seed(args: SeedArgs) -> anyhow::Result<()> {
    let db = PgPoolOptions::new()
        .max_connections(args.concurrency.max(1) as u32)
        .connect(&args.database_url)
        .await
        .context("cannot connect to the database")?;
    let clinician = users::credentials_by_email(&db, &args.clinician_email)
        .await?
        .with_context(|| format!("no user {}", args.clinician_email))?;
    let practitioner = practitioners::for_user(&db, clinician.id)
        .await?
        .with_context(|| format!("{} is not a clinician", args.clinician_email))?;
    let tag = chrono::Utc::now().timestamp();
    let started = Instant::now();
    let next = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let mut workers = Vec::new();
    for _ in 0..args.concurrency.max(1) {
        let (db, next) = (db.clone(), next.clone());
        let (total, probes) = (args.devices, args.probes);
        workers.push(tokio::spawn(async move {
            let mut seeded = Vec::new();
            loop {
                let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                if i >= total {
                    return Ok::<_, anyhow::Error>(seeded);
                }
                let label = format!("LD{tag}-{i}");
                let patient = patients::create(
                    &db,
                    &PatientDetails {
                        mrn: Mrn::parse(&label)?,
                        given_name: BoundedText::parse("given_name", "Load", 100)?,
                        family_name: BoundedText::parse(
                            "family_name",
                            &format!("Device {i}"),
                            100,
                        )?,
                        birth_date: BirthDate::parse("1960-01-01")?,
                        sex: Sex::Unknown,
                        email: None,
                        phone: None,
                    },
                )
                .await?;
                let provisioned = devices::provision(
                    &db,
                    &Serial::parse(&label)?,
                    DeviceKind::PulseOximeter,
                    Some(patient.id),
                )
                .await?;
                let probe = i < probes;
                if probe {
                    care::add(&db, patient.id, practitioner).await?;
                }
                seeded.push((
                    i,
                    SeededDevice {
                        device_id: provisioned.device.id.0,
                        password: provisioned.mqtt_password,
                        patient_id: patient.id.0,
                        probe,
                    },
                ));
            }
        }));
    }
    let mut seeded = Vec::with_capacity(args.devices);
    for worker in workers {
        seeded.extend(worker.await??);
    }
    seeded.sort_by_key(|(i, _)| *i);
    let seeded: Vec<SeededDevice> = seeded.into_iter().map(|(_, d)| d).collect();
    write_private(&args.out, &serde_json::to_vec(&seeded)?)?;
    println!(
        "seeded {} patients with a pulse oximeter each ({} watched by {}) in {:.1} s; credentials in {}",
        seeded.len(),
        args.probes.min(seeded.len()),
        args.clinician_email,
        started.elapsed().as_secs_f64(),
        args.out.display()
    );
    println!("now run `bedside devices sync` so the broker accepts them");
    Ok(())
}

/// Writes a file only its owner can read: it holds device passwords.
fn write_private(path: &std::path::Path, contents: &[u8]) -> anyhow::Result<()> {
    use std::io::Write as _;
    use std::os::unix::fs::OpenOptionsExt as _;
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)
        .with_context(|| format!("cannot write {}", path.display()))?;
    file.write_all(contents)?;
    Ok(())
}

pub(crate) fn load(path: &std::path::Path) -> anyhow::Result<Vec<SeededDevice>> {
    let bytes = std::fs::read(path).with_context(|| format!("cannot read {}", path.display()))?;
    serde_json::from_slice(&bytes).with_context(|| format!("{} is not a seed file", path.display()))
}
