//! # loadtest — measures a running Bedside from outside
//!
//! It talks to the server only over its public interfaces, as clients
//! would, and prints figures; it never fails a test run. Today it measures
//! HTTP latency and throughput (`loadtest http seed`, `loadtest http run`);
//! device swarms (MQTT ingest) and synthetic visits (SFU) join it with the
//! vitals and video issues.

mod http;
mod stats;

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
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    match Cli::parse().command {
        Command::Http { action } => http::run(action).await,
    }
}
