//! The appointment lifecycle as a pure state machine, and the overlap rule.
//!
//! ```text
//! booked ──arrive──▶ arrived ──start──▶ in_progress ──finish──▶ finished
//!   │ └──cancel──▶ cancelled
//!   └──(start + grace passed)──▶ no_show
//! ```
//!
//! No I/O and no clock: callers pass `now`, so the rules are tested with
//! plain values and the no-show sweep with virtual time.

use chrono::{DateTime, Duration, Utc};
use serde::{Deserialize, Serialize};

/// Where an appointment is in its lifecycle.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum AppointmentStatus {
    /// Booked, patient not yet there.
    Booked,
    /// The patient has arrived (for a video visit: is in the waiting room).
    Arrived,
    /// The visit is being held.
    InProgress,
    /// The visit took place. Final.
    Finished,
    /// Cancelled before it took place. Final.
    Cancelled,
    /// The patient did not come within the grace period. Final.
    NoShow,
}

impl AppointmentStatus {
    /// Every status.
    pub const ALL: [AppointmentStatus; 6] = [
        Self::Booked,
        Self::Arrived,
        Self::InProgress,
        Self::Finished,
        Self::Cancelled,
        Self::NoShow,
    ];

    /// The stored and wire spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Booked => "booked",
            Self::Arrived => "arrived",
            Self::InProgress => "in_progress",
            Self::Finished => "finished",
            Self::Cancelled => "cancelled",
            Self::NoShow => "no_show",
        }
    }

    /// Parses the stored spelling.
    pub fn parse(raw: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|s| s.as_str() == raw)
    }

    /// Whether the appointment can change no more.
    pub fn is_final(self) -> bool {
        matches!(self, Self::Finished | Self::Cancelled | Self::NoShow)
    }

    /// Whether the slot still holds the clinician's time (cancelled and
    /// no-show slots free it; the database's exclusion constraint agrees).
    pub fn holds_slot(self) -> bool {
        !matches!(self, Self::Cancelled | Self::NoShow)
    }
}

impl std::fmt::Display for AppointmentStatus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl sqlx::Type<sqlx::Postgres> for AppointmentStatus {
    fn type_info() -> sqlx::postgres::PgTypeInfo {
        <&str as sqlx::Type<sqlx::Postgres>>::type_info()
    }
    fn compatible(ty: &sqlx::postgres::PgTypeInfo) -> bool {
        <&str as sqlx::Type<sqlx::Postgres>>::compatible(ty)
    }
}

impl<'q> sqlx::Encode<'q, sqlx::Postgres> for AppointmentStatus {
    fn encode_by_ref(
        &self,
        buf: &mut sqlx::postgres::PgArgumentBuffer,
    ) -> Result<sqlx::encode::IsNull, sqlx::error::BoxDynError> {
        <&str as sqlx::Encode<sqlx::Postgres>>::encode_by_ref(&self.as_str(), buf)
    }
}

impl<'r> sqlx::Decode<'r, sqlx::Postgres> for AppointmentStatus {
    fn decode(value: sqlx::postgres::PgValueRef<'r>) -> Result<Self, sqlx::error::BoxDynError> {
        let text = <&str as sqlx::Decode<sqlx::Postgres>>::decode(value)?;
        Self::parse(text).ok_or_else(|| format!("unknown appointment status {text:?}").into())
    }
}

/// Why a transition was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum TransitionError {
    /// The lifecycle has no edge from `from` to `to`.
    #[error("an appointment that is {from} cannot become {to}")]
    NotAllowed {
        /// Current status.
        from: AppointmentStatus,
        /// Requested status.
        to: AppointmentStatus,
    },
    /// A no-show was requested before the grace period after the start ran out.
    #[error("a patient is a no-show only after the grace period past the start")]
    NoShowTooEarly,
    /// Only a booked appointment can be rescheduled.
    #[error("an appointment that is {0} can no longer be rescheduled")]
    NotBooked(AppointmentStatus),
}

/// The facts a transition depends on besides the two statuses.
#[derive(Debug, Clone, Copy)]
pub struct TransitionContext {
    /// The appointment's start.
    pub starts_at: DateTime<Utc>,
    /// The current time.
    pub now: DateTime<Utc>,
    /// How long after the start a booked patient still counts as late, not absent.
    pub no_show_grace: Duration,
}

/// Decides whether an appointment may move from `from` to `to`.
///
/// # Errors
/// [`TransitionError::NotAllowed`] for every pair not on the lifecycle
/// (including staying in the same status), and
/// [`TransitionError::NoShowTooEarly`] for a no-show inside the grace period.
pub fn transition(
    from: AppointmentStatus,
    to: AppointmentStatus,
    ctx: TransitionContext,
) -> Result<AppointmentStatus, TransitionError> {
    use AppointmentStatus::*;
    match (from, to) {
        (Booked, Arrived)
        | (Arrived, InProgress)
        | (InProgress, Finished)
        | (Booked, Cancelled) => Ok(to),
        (Booked, NoShow) if is_no_show_due(ctx.starts_at, ctx.now, ctx.no_show_grace) => Ok(to),
        (Booked, NoShow) => Err(TransitionError::NoShowTooEarly),
        _ => Err(TransitionError::NotAllowed { from, to }),
    }
}

/// Whether a still-booked appointment has become a no-show: the grace
/// period after its start has fully passed.
pub fn is_no_show_due(starts_at: DateTime<Utc>, now: DateTime<Utc>, grace: Duration) -> bool {
    now >= starts_at + grace
}

/// Whether two half-open periods `[a_start, a_end)` and `[b_start, b_end)`
/// overlap. Back-to-back appointments (one ends as the next starts) do not.
pub fn overlaps(
    a_start: DateTime<Utc>,
    a_end: DateTime<Utc>,
    b_start: DateTime<Utc>,
    b_end: DateTime<Utc>,
) -> bool {
    a_start < b_end && b_start < a_end
}

#[cfg(test)]
mod tests {
    use super::AppointmentStatus::*;
    use super::*;
    use chrono::TimeZone;

    fn at(h: u32, m: u32) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 11, 23, h, m, 0).unwrap()
    }

    fn ctx(now: DateTime<Utc>) -> TransitionContext {
        TransitionContext {
            starts_at: at(10, 0),
            now,
            no_show_grace: Duration::minutes(15),
        }
    }

    #[test]
    fn every_pair_of_statuses_is_decided_as_the_lifecycle_says() {
        let allowed = [
            (Booked, Arrived),
            (Arrived, InProgress),
            (InProgress, Finished),
            (Booked, Cancelled),
            (Booked, NoShow),
        ];
        let late = ctx(at(10, 30));
        for from in AppointmentStatus::ALL {
            for to in AppointmentStatus::ALL {
                let result = transition(from, to, late);
                if allowed.contains(&(from, to)) {
                    assert_eq!(result, Ok(to), "{from} -> {to}");
                } else {
                    assert_eq!(
                        result,
                        Err(TransitionError::NotAllowed { from, to }),
                        "{from} -> {to}"
                    );
                }
            }
        }
    }

    #[test]
    fn final_statuses_have_no_way_out() {
        for from in AppointmentStatus::ALL.into_iter().filter(|s| s.is_final()) {
            for to in AppointmentStatus::ALL {
                assert!(transition(from, to, ctx(at(23, 0))).is_err());
            }
        }
    }

    #[test]
    fn no_show_only_after_the_grace_period() {
        assert_eq!(
            transition(Booked, NoShow, ctx(at(10, 14))),
            Err(TransitionError::NoShowTooEarly)
        );
        assert_eq!(transition(Booked, NoShow, ctx(at(10, 15))), Ok(NoShow));
        assert!(!is_no_show_due(at(10, 0), at(9, 0), Duration::minutes(15)));
        assert!(!is_no_show_due(
            at(10, 0),
            at(10, 14),
            Duration::minutes(15)
        ));
        assert!(is_no_show_due(at(10, 0), at(10, 15), Duration::minutes(15)));
    }

    #[test]
    fn overlap_is_half_open() {
        // back to back
        assert!(!overlaps(at(9, 0), at(9, 30), at(9, 30), at(10, 0)));
        assert!(!overlaps(at(9, 30), at(10, 0), at(9, 0), at(9, 30)));
        // one minute into the next
        assert!(overlaps(at(9, 0), at(9, 31), at(9, 30), at(10, 0)));
        // containment both ways
        assert!(overlaps(at(9, 0), at(11, 0), at(9, 30), at(10, 0)));
        assert!(overlaps(at(9, 30), at(10, 0), at(9, 0), at(11, 0)));
        // identical
        assert!(overlaps(at(9, 0), at(9, 30), at(9, 0), at(9, 30)));
    }

    #[test]
    fn cancelled_and_no_show_free_the_slot() {
        for s in AppointmentStatus::ALL {
            assert_eq!(s.holds_slot(), !matches!(s, Cancelled | NoShow));
            assert_eq!(AppointmentStatus::parse(s.as_str()), Some(s));
        }
    }
}
