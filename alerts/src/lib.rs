//! # bedside-alerts — the alert engine, in one place
//!
//! This crate owns the rules that turn observations into alerts: the NEWS2
//! early-warning score ([`news2`]), per-patient thresholds, and device
//! offline detection, and the alert lifecycle (open → acknowledged →
//! resolved, dedupe per patient and rule, escalation).
//!
//! ## Layout and invariants
//! - The rules are pure functions of observations and time, with no I/O,
//!   tested band by band ([`news2`] follows the Royal College of
//!   Physicians' 2017 chart exactly).
//! - [`rules`]: thresholds (clinic defaults, per-patient overrides), the
//!   NEWS2 condition, and the lifecycle decision (open, escalate, resolve;
//!   never a duplicate live alert for a patient and rule).
//! - [`engine`]: the async shell. Its [`engine::Evaluator`] judges every
//!   reading as it arrives (and again once committed) against each active
//!   patient's inputs held in memory, so a reading that changes nothing
//!   costs no query; a transition is decided again under the alert's row
//!   lock and committed before it is returned, so it is stored before
//!   anyone is told.
//!
//! It must not know about transports (MQTT, HTTP, WebSocket).

pub mod engine;
pub mod news2;
pub mod rules;
