//! # bedside-server — the `bedside` binary and the wiring behind it
//!
//! This crate owns configuration ([`config`]), the command line
//! ([`cli`]), building and running the application ([`app`]: bind the
//! listeners, serve, drain on shutdown, close the pool), secrets generated on
//! first start ([`secrets`]), the demo clinic ([`demo`]), and the Mosquitto
//! files for provisioned devices ([`broker`]). It holds no business rules:
//! those live in `bedside-records` and `bedside-signaling`.
//!
//! The library form exists so the integration tests start exactly the
//! application the binary starts (`app::Application::build` on port 0).

pub mod app;
pub mod broker;
pub mod cli;
pub mod config;
pub mod demo;
pub mod reminders;
pub mod secrets;
pub mod simulate;
pub mod telemetry;
