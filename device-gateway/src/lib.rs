//! # bedside-device-gateway — home devices over MQTT (not built yet)
//!
//! This crate will own the MQTT side of Bedside: a rumqttc session on a
//! persistent QoS 1 subscription to `bedside/v1/devices/+/vitals` and
//! `.../status`, SenML (RFC 8428) decoding in JSON and CBOR, conversion to one
//! canonical UCUM unit per metric, plausibility checks, batching, and
//! acknowledging a message only after the batch holding it has committed
//! (`ARCHITECTURE.md` §3 and §5). Payloads it cannot decode are stored as
//! rejected with their reason and acknowledged, so one bad device never
//! blocks the rest.
//!
//! It must not know about HTTP or WebRTC. Device identities, their MQTT
//! credentials and the broker's password and ACL lines are produced today by
//! `bedside-records` (`devices provision`); this crate will consume them.
//!
//! ## Layout
//! - [`senml`]: the pure payload decoder (RFC 8428 packs in JSON and CBOR
//!   to validated readings in canonical units, and per-record rejections).
//! - [`gateway`]: the MQTT session (rumqttc, persistent QoS 1, manual acks),
//!   batching, one transaction per batch, acknowledgement after commit,
//!   backoff while the database fails.

pub mod gateway;
pub mod senml;
