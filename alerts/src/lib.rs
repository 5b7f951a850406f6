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
//! - [`engine`]: the async shell run after each committed batch: it
//!   evaluates the batch's patients and commits every transition (one
//!   transaction per rule, under a row lock) before returning it, so a
//!   transition is stored before anyone is told.
//!
//! It must not know about transports (MQTT, HTTP, WebSocket).

pub mod engine;
pub mod news2;
pub mod rules;
