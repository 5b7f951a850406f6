//! # bedside-signaling — Bedside's HTTP edge
//!
//! This crate owns everything a browser or another system talks to over
//! HTTP: the REST API under `/api/v1` with its generated OpenAPI document,
//! authentication (passwords, TOTP, access and refresh tokens, patient join
//! links), the one place that decides authorization ([`policy`]), auditing
//! of every access to health data, security headers, request ids, body and
//! rate limits, Prometheus metrics by route template, health and readiness,
//! and serving the built web client. The WebSocket signaling protocol and
//! live feeds join it with the video-visit and vitals issues.
//!
//! ## Layout
//! - [`app`]: [`AppState`], [`Settings`] and [`router`] wiring the routes and layers.
//! - [`error`]: the one error shape (`code`, `message`, `request_id`, `field`).
//! - [`extract`]: extractors that turn malformed input into that shape.
//! - [`auth`]: password hashing, tokens, TOTP, and the [`auth::Caller`] extractor.
//! - [`policy`]: who may do what, and the audit row each decision writes.
//! - `routes/`: one module per resource.
//! - `fhir`: the HL7 FHIR R4 API under `/fhir` (resources from
//!   `bedside_records::fhir`, access through the same policy and audit).
//! - [`feed`]: the `/ws` socket: live vitals feed and video-visit signaling.
//! - [`visits`]: the video-visit rooms (waiting room, admission, grace).
//! - [`ice`]: the STUN/TURN servers and short-lived TURN credentials browsers get.
//! - [`metrics`], [`openapi`], `layers`, `web`.
//!
//! ## Invariants
//! - A handler reaches health data only after [`policy::Ctx::allow`] (or
//!   `allow_list` plus `audit_list`) has decided and written the audit row;
//!   a denied attempt is audited too.
//! - No SQL here: data comes from `bedside-records`.
//! - Error responses never carry internals; the cause chain is logged once.
//! - Personal data is never logged: handlers log ids only.

pub mod app;
pub mod auth;
pub mod error;
pub mod extract;
pub mod feed;
mod fhir;
pub mod ice;
mod layers;
pub mod live;
pub mod metrics;
pub mod openapi;
pub mod policy;
mod routes;
pub mod visits;
mod web;

pub use app::{AppState, Settings, router};
