//! The command line of `bedside`.

use std::io::Read as _;
use std::path::PathBuf;

use anyhow::Context as _;
use bedside_records::domain::{BoundedText, DeviceKind, Email, NewPassword, Serial, StaffRole};
use bedside_records::ids::PatientId;
use clap::{Parser, Subcommand};

use crate::app::{self, Application};
use crate::config::Config;
use crate::{broker, demo, telemetry};

/// Bedside: video visits, home-device vitals and records for a clinic.
#[derive(Debug, Parser)]
#[command(name = "bedside", version, about = "Bedside: video visits, home-device vitals and records for a clinic.", long_about = None)]
pub struct Cli {
    /// Configuration file (TOML). Default: `bedside.toml` when present.
    /// Environment variables `BEDSIDE_<SECTION>__<KEY>` override it.
    #[arg(long, short, global = true, env = "BEDSIDE_CONFIG")]
    pub config: Option<PathBuf>,
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// Subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the server: HTTP API and web client, metrics, background tasks.
    /// Stops gracefully on SIGTERM or Ctrl-C.
    Serve,
    /// Apply the database migrations embedded in this binary.
    Migrate,
    /// Seed a demo clinic (an admin, two clinicians, six patients with
    /// devices, today's appointments) and print how to sign in.
    Demo,
    /// Run the demo clinic's simulated home devices (real MQTT clients
    /// publishing through the broker); one patient deteriorates, one device
    /// drops off. Needs `bedside demo` first. Stops on Ctrl-C or SIGTERM.
    Simulate {
        /// Seconds between readings of each device.
        #[arg(long, default_value_t = 5)]
        every: u64,
    },
    /// Inspect the configuration.
    Config {
        /// What to do with it.
        #[command(subcommand)]
        action: ConfigAction,
    },
    /// Manage staff accounts.
    Users {
        /// What to do.
        #[command(subcommand)]
        action: UsersAction,
    },
    /// Manage home devices.
    Devices {
        /// What to do.
        #[command(subcommand)]
        action: DevicesAction,
    },
}

/// `bedside config ...`
#[derive(Debug, Subcommand)]
pub enum ConfigAction {
    /// Print the effective configuration (defaults, file, environment) with secrets redacted.
    Print,
}

/// `bedside users ...`
#[derive(Debug, Subcommand)]
pub enum UsersAction {
    /// Create an admin or clinician account. The password is read from
    /// standard input (one line), so it never appears in the process list.
    Create {
        /// `admin` or `clinician`.
        #[arg(long)]
        role: String,
        /// Login e-mail.
        #[arg(long)]
        email: String,
        /// Display name.
        #[arg(long)]
        name: String,
        /// A clinician's qualification.
        #[arg(long)]
        qualification: Option<String>,
    },
}

/// `bedside devices ...`
#[derive(Debug, Subcommand)]
pub enum DevicesAction {
    /// Register a device, create its MQTT identity, and rewrite the broker's
    /// password and ACL files (`mqtt.password_file`, `mqtt.acl_file`) so the
    /// device may publish only below `bedside/v1/devices/<its id>/`.
    /// Prints the device's MQTT credentials once.
    Provision {
        /// Serial number as printed on the device.
        #[arg(long)]
        serial: String,
        /// pulse_oximeter, blood_pressure_monitor, thermometer, scale or glucometer.
        #[arg(long)]
        kind: String,
        /// Assign it to this patient (id) from now on.
        #[arg(long)]
        patient: Option<String>,
    },
    /// Rewrite the broker's password and ACL files from the database and
    /// reload the broker (after a restore, a bulk import, or a hand-edited
    /// file).
    Sync,
}

/// Runs a parsed command line.
///
/// # Errors
/// Whatever the command fails with, with context for the operator.
pub async fn run(cli: Cli) -> anyhow::Result<()> {
    let config = Config::load(cli.config.as_deref())?;
    telemetry::init(&config.log);
    match cli.command {
        Command::Serve => serve(config).await,
        Command::Migrate => {
            let db = app::connect(&config).await?;
            app::migrate(&db).await?;
            println!("migrations applied");
            Ok(())
        }
        Command::Demo => {
            let db = app::connect(&config).await?;
            app::migrate(&db).await?;
            let summary = demo::seed(&db, &config).await?;
            broker::sync(&db, &config).await?;
            print_demo(&config, &summary);
            Ok(())
        }
        Command::Simulate { every } => {
            let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
            tokio::spawn(async move {
                app::shutdown_signal().await;
                let _ = stop_tx.send(true);
            });
            crate::simulate::run(
                &config,
                std::time::Duration::from_secs(every.max(1)),
                stop_rx,
            )
            .await
        }
        Command::Config {
            action: ConfigAction::Print,
        } => {
            print!("{}", config.to_redacted_toml());
            Ok(())
        }
        Command::Users {
            action:
                UsersAction::Create {
                    role,
                    email,
                    name,
                    qualification,
                },
        } => {
            let mut password = String::new();
            std::io::stdin()
                .read_to_string(&mut password)
                .context("cannot read the password from standard input")?;
            let password = password.lines().next().unwrap_or_default().to_owned();
            let new = bedside_records::users::NewUser {
                email: Email::parse("email", &email)?,
                name: BoundedText::parse("name", &name, 200)?,
                role: StaffRole::parse(&role)?,
                password_hash: bedside_signaling::auth::password::hash(
                    NewPassword::parse(&password)?.expose(),
                ),
                qualification: qualification
                    .as_deref()
                    .map(|q| BoundedText::parse("qualification", q, 200))
                    .transpose()?,
            };
            let db = app::connect(&config).await?;
            let user = bedside_records::users::create(&db, &new).await?;
            println!("created {} {} ({})", user.role, user.id, user.email);
            Ok(())
        }
        Command::Devices {
            action:
                DevicesAction::Provision {
                    serial,
                    kind,
                    patient,
                },
        } => {
            let serial = Serial::parse(&serial)?;
            let kind = DeviceKind::parse(&kind)?;
            let patient = patient
                .map(|p| {
                    p.parse::<PatientId>()
                        .map_err(|_| anyhow::anyhow!("--patient must be a patient id (UUID)"))
                })
                .transpose()?;
            let db = app::connect(&config).await?;
            let provisioned =
                bedside_records::devices::provision(&db, &serial, kind, patient).await?;
            let (done, _) = broker::sync(&db, &config).await?;
            println!("device      {}", provisioned.device.id);
            println!("mqtt user   {}", provisioned.device.mqtt_username);
            println!("mqtt pass   {}   (shown once)", provisioned.mqtt_password);
            println!(
                "topic       bedside/v1/devices/{}/vitals",
                provisioned.device.id
            );
            println!();
            println!("# password file line");
            println!("{}", provisioned.password_line);
            println!("# ACL lines");
            print!("{}", provisioned.acl);
            println!("# broker: {done}");
            if config.mqtt.broker_pid_file.is_none() {
                println!(
                    "# reload Mosquitto to apply: kill -HUP <mosquitto pid> (or set mqtt.broker_pid_file)"
                );
            }
            Ok(())
        }
        Command::Devices {
            action: DevicesAction::Sync,
        } => {
            let db = app::connect(&config).await?;
            let (done, _) = broker::sync(&db, &config).await?;
            println!("{done}");
            Ok(())
        }
    }
}

async fn serve(config: Config) -> anyhow::Result<()> {
    let application = Application::build(config.clone()).await?;
    tracing::info!(http = %application.http_addr(), metrics = %application.metrics_addr(), "bedside is serving");
    println!(
        "bedside listening on {} (metrics on {})",
        application.http_addr(),
        application.metrics_addr()
    );
    application.run(app::shutdown_signal()).await
}

fn print_demo(config: &Config, summary: &demo::DemoSummary) {
    if summary.already_seeded {
        println!("The demo clinic exists already.");
    } else {
        println!("Seeded the demo clinic.");
    }
    println!(
        "Sign in at {}/login with (password {:?} for all):",
        config.public_base_url.trim_end_matches('/'),
        demo::DEMO_PASSWORD
    );
    for (role, email) in &summary.accounts {
        println!("  {role:<10} {email}");
    }
    if let Some(link) = &summary.open_join_link {
        println!("A patient's join link, open now: {link}");
    }
}
