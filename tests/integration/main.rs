//! Bedside's integration tests: the real application on port 0 against a
//! real PostgreSQL (and a real Mosquitto where a test needs the broker),
//! driven over HTTP as a client would. One test binary keeps the build fast.

mod alerts;
mod appointments;
mod auth_flows;
mod authz_matrix;
mod bad_input;
mod fhir;
mod gateway;
mod http_basics;
mod live_feed;
mod log_redaction;
mod oidc;
mod privacy;
mod records_rules;
mod reminders;
mod support;
mod turn;
mod visit_signaling;
mod vitals_store;
