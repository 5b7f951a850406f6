//! # bedside-vitals-store — readings in PostgreSQL or TimescaleDB
//!
//! This crate owns the `vitals` table (one row per reading, unique on
//! device, metric and time, so a redelivered message stores nothing twice),
//! `vitals_latest` (each patient's latest value per metric, updated by the
//! same statement that stores a batch, so it never disagrees with `vitals`)
//! and the `rejected_messages` table, their migrations ([`MIGRATOR`]),
//! idempotent batch inserts, the range and `date_bin`-bucketed queries the
//! dashboards use, and retention.
//!
//! ## Two backends, one set of queries
//! When the `timescaledb` extension is there (created, or available and
//! preloaded) the migration makes `vitals` a hypertable with compression
//! after 7 days and a 365-day retention policy. On plain PostgreSQL it is
//! range-partitioned by week; [`partitions`] creates partitions ahead of
//! time and drops those that fall out of retention. Every query uses plain
//! SQL (`date_bin`, `DISTINCT ON`), so both backends answer the same.
//!
//! ## Layout
//! - [`metric`]: metrics, LOINC codes, canonical units, conversions (pure).
//! - [`store`]: batch insert and rejected messages.
//! - [`queries`]: latest values, raw ranges, bucketed views.
//! - [`observations`]: keyset-paged search, read by key and last-n, for
//!   the FHIR API.
//! - [`partitions`]: backend detection, partitions ahead, retention.
//! - [`changes`]: notices that tell in-memory copies what to forget.
//! - [`erasure`]: the vitals' part of erasing a patient.
//!
//! It must not know about MQTT or HTTP.

pub mod alerts;
pub mod changes;
pub mod erasure;
pub mod liveness;
pub mod metric;
pub mod observations;
pub mod partitions;
pub mod queries;
pub mod store;

/// The vitals schema (migration versions from 1001, beside the records').
pub static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations");

/// What a store operation can fail with.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The database failed or refused.
    #[error("database error")]
    Database(#[from] sqlx::Error),
    /// A batch's columns disagree in length (a caller bug).
    #[error("batch columns have different lengths")]
    RaggedBatch,
}

/// Result alias.
pub type Result<T, E = StoreError> = std::result::Result<T, E>;
