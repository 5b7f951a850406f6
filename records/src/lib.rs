//! # bedside-records — the clinic's records and the rules that keep them right
//!
//! This crate owns the relational heart of Bedside: users (admins and
//! clinicians) and their auth state, practitioners, patients, care
//! relationships, devices and their assignment history, appointments and
//! their lifecycle, patient join links, visit notes, consent, and the audit
//! log. It owns the schema migrations for those tables ([`MIGRATOR`]).
//!
//! ## Layout
//! - Pure cores, no I/O: [`domain`] (validated value types: parse, don't
//!   validate), [`appointment`] (the appointment state machine and the
//!   overlap rule), [`mosquitto`] (broker password-file and ACL lines).
//! - Stores over a `PgPool`, one module per concept: [`users`], [`patients`],
//!   [`practitioners`], [`care`], [`devices`], [`appointments`],
//!   [`join_links`], [`guest_links`], [`notes`], [`consents`], [`audit`], [`auth_state`],
//!   [`erasure`] (a patient's identity, on a recorded request), [`retention`],
//!   [`reminders`] (the reminder outbox), [`calendar_feeds`], [`oidc`] (sign-in
//!   through the clinic's identity provider).
//! - [`fhir`]: the HL7 FHIR R4 view of these records and of the vitals —
//!   pure mapping from rows to resources, search-parameter parsing, Bundles
//!   and the CapabilityStatement. The HTTP routes live in the signaling crate.
//!
//! ## Invariants (enforced by the database, not only by this code)
//! - A clinician is never double-booked: an exclusion constraint over
//!   `(practitioner, [start, end))` for live appointments, so concurrent
//!   bookings cannot both win.
//! - A device's assignment periods never overlap; history is kept.
//! - A signed visit note never changes; corrections are amendments.
//! - The audit log is append-only: triggers refuse UPDATE, DELETE and TRUNCATE,
//!   except the retention pass deleting rows older than the configured period.
//! - An erased patient stays as a pseudonymous shell (ids intact, identity gone).
//! - Secrets are stored only as hashes (passwords as argon2id by the caller,
//!   refresh and join tokens as SHA-256, device MQTT passwords as Mosquitto's
//!   PBKDF2-SHA512).
//!
//! This crate knows nothing about HTTP or media; the signaling crate decides
//! who may call what and records the audit rows through [`audit`].

pub mod appointment;
pub mod appointments;
pub mod audit;
pub mod auth_state;
pub mod calendar_feeds;
pub mod care;
pub mod consents;
pub mod devices;
pub mod domain;
pub mod erasure;
mod error;
pub mod fhir;
pub mod guest_links;
pub mod ids;
pub mod join_links;
pub mod mosquitto;
pub mod notes;
pub mod oidc;
pub mod patients;
pub mod practitioners;
pub mod reminders;
pub mod retention;
pub mod users;

pub use error::RecordsError;

/// The records schema, embedded in the binary.
pub static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations");

/// Result alias for the stores of this crate.
pub type Result<T, E = RecordsError> = std::result::Result<T, E>;
