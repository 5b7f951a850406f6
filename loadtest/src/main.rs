//! # loadtest — measures a running Bedside from outside
//!
//! It talks to the server only over its public interfaces, as clients
//! would, and prints figures; it never fails a test run. Today it measures
//! HTTP latency and throughput (`loadtest http seed`, `loadtest http run`)
//! and device swarms through MQTT (`loadtest devices seed`, `loadtest
//! devices run`) and concurrent video visits through the SFU, side by side
//! with Janus (`loadtest visits`), and FHIR search and `$everything` over
//! a patient with a million readings (`loadtest fhir seed`, `loadtest fhir run`).
//! `loadtest devices seed` and `loadtest fhir seed` alone write to the
//! database directly, as a bulk import would: registering 10,000 devices one
//! API call at a time would rewrite the broker's files 10,000 times, and a
//! million readings are history, not ingest.

mod cpu;
mod devices;
mod fhir;
mod http;
mod stats;
mod visits;

use clap::{Parser, Subcommand};

/// Measures a running Bedside from outside.
#[derive(Debug, Parser)]
#[command(name = "loadtest", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// HTTP API benchmarks.
    Http {
        #[command(subcommand)]
        action: http::HttpAction,
    },
    /// MQTT device swarms (ingest throughput, latency, exactly-once).
    Devices {
        #[command(subcommand)]
        action: devices::DevicesAction,
    },
    /// Concurrent 1:1 video visits through Bedside's SFU and through Janus.
    Visits(visits::VisitsArgs),
    /// FHIR search latency and `$everything` memory over a long history.
    Fhir {
        #[command(subcommand)]
        action: fhir::FhirAction,
    },
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    match Cli::parse().command {
        Command::Http { action } => http::run(action).await,
        Command::Devices { action } => devices::run(action).await,
        Command::Visits(args) => visits::run(args).await,
        Command::Fhir { action } => fhir::run(action).await,
    }
}
