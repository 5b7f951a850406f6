//! # bedside-device-gateway — home devices over MQTT
//!
//! This crate owns the MQTT side of Bedside: a rumqttc session on a
//! persistent QoS 1 subscription to `bedside/v1/devices/+/vitals` and
//! `.../status`, SenML (RFC 8428) decoding in JSON and CBOR, conversion to one
//! canonical UCUM unit per metric, plausibility checks, batching, and
//! acknowledging a message only after the batch holding it has committed
//! (`ARCHITECTURE.md` §3 and §5). Payloads it cannot decode are stored as
//! rejected with their reason and acknowledged, so one bad device never
//! blocks the rest.
//!
//! It must not know about HTTP or WebRTC. Device identities, their MQTT
//! credentials and the broker's password and ACL lines come from
//! `bedside-records` (`devices provision`); this crate resolves each
//! reading's patient from the assignment history there.
//!
//! Invariants: no message is acknowledged before the transaction holding
//! its readings (or its rejection) has committed; a redelivered message
//! stores nothing twice (the store's unique key).
//!
//! ## Layout
//! - [`senml`]: the pure payload decoder (RFC 8428 packs in JSON and CBOR
//!   to validated readings in canonical units, and per-record rejections).
//! - [`session`]: the MQTT session in version 3.1.1 or 5 (rumqttc),
//!   persistent, QoS 1, manual acks.
//! - [`gateway`]: the MQTT side (one session, persistent QoS 1, manual acks),
//!   batching, one transaction per batch, acknowledgement after commit,
//!   backoff while the database fails.
//! - `early`: the early look — readings decoded and resolved as they
//!   arrive, handed to the alert engine before their batch commits (best
//!   effort; committed readings always follow).
//! - [`metrics`]: Prometheus counters (rejections by reason) and timings.

mod early;
pub mod gateway;
pub mod metrics;
pub mod senml;
pub mod session;
