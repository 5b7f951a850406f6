//! The alert rules as pure functions, and the lifecycle decision each
//! evaluation leads to.
//!
//! A *rule* names what is watched for one patient: a threshold on one
//! metric, the NEWS2 score, or one device going offline. Evaluating a rule
//! gives a [`Condition`]: clear, or breached with a severity. The lifecycle
//! ([`decide`]) turns the condition and the alert currently open for that
//! patient and rule (at most one: alerts are deduplicated) into an action:
//! open, escalate, resolve, or nothing. Acknowledging is a person's act and
//! does not stop escalation: a worse condition escalates an acknowledged
//! alert back to open.

use serde::{Deserialize, Serialize};

use bedside_vitals_store::metric::Metric;

use crate::news2::{RiskBand, Score};

/// How urgent an alert is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Severity {
    /// Worth a look (a device went quiet).
    Low,
    /// Urgent review (NEWS2 low–medium: a single red parameter).
    Medium,
    /// Urgent response (NEWS2 5–6, a threshold breached).
    High,
    /// Emergency response (NEWS2 7 or more).
    Critical,
}

impl Severity {
    /// The stored spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            Severity::Low => "low",
            Severity::Medium => "medium",
            Severity::High => "high",
            Severity::Critical => "critical",
        }
    }

    /// One step more urgent (critical stays critical).
    pub fn raised(self) -> Severity {
        match self {
            Severity::Low => Severity::Medium,
            Severity::Medium => Severity::High,
            Severity::High | Severity::Critical => Severity::Critical,
        }
    }
}

/// What an evaluation found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Condition {
    /// Nothing wrong.
    Clear,
    /// Something wrong, this urgent.
    Breached(Severity),
}

/// A threshold on one metric: alert when a value is below `low` or above `high`.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Threshold {
    /// Alert below this (exclusive).
    pub low: Option<f64>,
    /// Alert above this (exclusive).
    pub high: Option<f64>,
    /// How urgent a breach is.
    pub severity: Severity,
}

impl Threshold {
    /// Evaluates one value.
    pub fn evaluate(&self, value: f64) -> Condition {
        let below = self.low.is_some_and(|low| value < low);
        let above = self.high.is_some_and(|high| value > high);
        if below || above {
            Condition::Breached(self.severity)
        } else {
            Condition::Clear
        }
    }
}

/// The clinic's default threshold for a metric, before any per-patient
/// override; `None` for metrics that need a clinician's per-patient limits
/// (weight). Defaults sit just outside the NEWS2 red bands, so a threshold
/// alert means a value NEWS2 alone would also call dangerous.
pub fn clinic_default(metric: Metric) -> Option<Threshold> {
    let t = |low: Option<f64>, high: Option<f64>| {
        Some(Threshold {
            low,
            high,
            severity: Severity::High,
        })
    };
    match metric {
        Metric::HeartRate => t(Some(40.0), Some(130.0)),
        Metric::Spo2 => t(Some(90.0), None),
        Metric::RespiratoryRate => t(Some(8.0), Some(25.0)),
        Metric::BodyTemperature => t(Some(35.0), Some(39.0)),
        Metric::SystolicBp => t(Some(90.0), Some(180.0)),
        Metric::DiastolicBp => t(None, Some(110.0)),
        Metric::Glucose => t(Some(70.0), Some(250.0)),
        // Any level below alert (new confusion, voice, pain, unresponsive).
        Metric::Consciousness => t(None, Some(0.0)),
        Metric::BodyWeight | Metric::SupplementalOxygen => None,
    }
}

/// The NEWS2 condition: clear while the risk is low.
pub fn news2_condition(score: &Score) -> Condition {
    match score.band {
        RiskBand::Low => Condition::Clear,
        RiskBand::LowMedium => Condition::Breached(Severity::Medium),
        RiskBand::Medium => Condition::Breached(Severity::High),
        RiskBand::High => Condition::Breached(Severity::Critical),
    }
}

/// Where an existing alert stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Status {
    /// Raised, nobody has taken it.
    Open,
    /// A clinician has taken it.
    Acknowledged,
    /// Over. Final.
    Resolved,
}

/// The alert currently live (open or acknowledged) for a patient and rule.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Live {
    /// Its status (never resolved: resolved alerts are not live).
    pub status: Status,
    /// Its severity.
    pub severity: Severity,
}

/// What to do after an evaluation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// Nothing changes.
    Nothing,
    /// Open a new alert with this severity.
    Open(Severity),
    /// Raise the live alert to this severity (and reopen it if acknowledged).
    Escalate(Severity),
    /// The condition cleared: resolve the live alert automatically.
    Resolve,
}

/// The lifecycle decision for one rule of one patient.
pub fn decide(live: Option<Live>, condition: Condition) -> Action {
    match (live, condition) {
        (None, Condition::Clear) => Action::Nothing,
        (None, Condition::Breached(severity)) => Action::Open(severity),
        (Some(_), Condition::Clear) => Action::Resolve,
        (Some(live), Condition::Breached(severity)) if severity > live.severity => {
            Action::Escalate(severity)
        }
        // Same or better but still breached: the alert stands as it is (an
        // improving patient is not de-escalated while the alert is live).
        (Some(_), Condition::Breached(_)) => Action::Nothing,
    }
}

/// Whether an alert left open (unacknowledged) since `opened_secs_ago`
/// must escalate because nobody took it within `after_secs`.
pub fn unacknowledged_escalation(
    live: Live,
    opened_secs_ago: u64,
    after_secs: u64,
) -> Option<Severity> {
    (live.status == Status::Open
        && opened_secs_ago >= after_secs
        && live.severity < Severity::Critical)
        .then(|| live.severity.raised())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::news2::{Observations, SpO2Scale, score};

    const OPEN_HIGH: Live = Live {
        status: Status::Open,
        severity: Severity::High,
    };
    const ACK_MEDIUM: Live = Live {
        status: Status::Acknowledged,
        severity: Severity::Medium,
    };

    #[test]
    fn thresholds_are_exclusive_at_their_limits() {
        let spo2 = Threshold {
            low: Some(90.0),
            high: None,
            severity: Severity::High,
        };
        assert_eq!(spo2.evaluate(90.0), Condition::Clear);
        assert_eq!(spo2.evaluate(89.9), Condition::Breached(Severity::High));
        let hr = Threshold {
            low: Some(40.0),
            high: Some(130.0),
            severity: Severity::High,
        };
        assert_eq!(hr.evaluate(130.0), Condition::Clear);
        assert_eq!(hr.evaluate(131.0), Condition::Breached(Severity::High));
        assert_eq!(hr.evaluate(39.0), Condition::Breached(Severity::High));
        let none = Threshold {
            low: None,
            high: None,
            severity: Severity::Low,
        };
        assert_eq!(none.evaluate(1e9), Condition::Clear);
    }

    #[test]
    fn clinic_defaults_fire_on_dangerous_values_only() {
        let breached = |m: Metric, v: f64| clinic_default(m).map(|t| t.evaluate(v));
        assert_eq!(
            breached(Metric::Spo2, 88.0),
            Some(Condition::Breached(Severity::High))
        );
        assert_eq!(breached(Metric::Spo2, 96.0), Some(Condition::Clear));
        assert_eq!(breached(Metric::Consciousness, 0.0), Some(Condition::Clear));
        assert_eq!(
            breached(Metric::Consciousness, 2.0),
            Some(Condition::Breached(Severity::High))
        );
        assert_eq!(breached(Metric::BodyWeight, 300.0), None);
    }

    #[test]
    fn the_lifecycle_opens_escalates_and_resolves_without_duplicates() {
        assert_eq!(decide(None, Condition::Clear), Action::Nothing);
        assert_eq!(
            decide(None, Condition::Breached(Severity::High)),
            Action::Open(Severity::High)
        );
        // Already open at the same or a higher severity: no duplicate.
        assert_eq!(
            decide(Some(OPEN_HIGH), Condition::Breached(Severity::High)),
            Action::Nothing
        );
        assert_eq!(
            decide(Some(OPEN_HIGH), Condition::Breached(Severity::Medium)),
            Action::Nothing
        );
        // Worse: escalate, also when acknowledged.
        assert_eq!(
            decide(Some(OPEN_HIGH), Condition::Breached(Severity::Critical)),
            Action::Escalate(Severity::Critical)
        );
        assert_eq!(
            decide(Some(ACK_MEDIUM), Condition::Breached(Severity::High)),
            Action::Escalate(Severity::High)
        );
        // Cleared: resolve, whatever the status.
        assert_eq!(decide(Some(OPEN_HIGH), Condition::Clear), Action::Resolve);
        assert_eq!(decide(Some(ACK_MEDIUM), Condition::Clear), Action::Resolve);
    }

    #[test]
    fn unacknowledged_alerts_escalate_after_the_configured_time() {
        assert_eq!(unacknowledged_escalation(OPEN_HIGH, 299, 300), None);
        assert_eq!(
            unacknowledged_escalation(OPEN_HIGH, 300, 300),
            Some(Severity::Critical)
        );
        assert_eq!(
            unacknowledged_escalation(ACK_MEDIUM, 10_000, 300),
            None,
            "acknowledged alerts are someone's"
        );
        let critical = Live {
            status: Status::Open,
            severity: Severity::Critical,
        };
        assert_eq!(
            unacknowledged_escalation(critical, 10_000, 300),
            None,
            "nothing above critical"
        );
    }

    #[test]
    fn news2_bands_map_to_severities() {
        let base = Observations {
            respiration_rate: Some(16.0),
            spo2: Some(97.0),
            on_oxygen: Some(false),
            systolic_bp: Some(125.0),
            pulse: Some(72.0),
            consciousness: Some(crate::news2::Consciousness::Alert),
            temperature: Some(36.8),
        };
        let c = |o: Observations| news2_condition(&score(&o, SpO2Scale::Scale1));
        assert_eq!(c(base), Condition::Clear);
        assert_eq!(
            c(Observations {
                respiration_rate: Some(7.0),
                ..base
            }),
            Condition::Breached(Severity::Medium)
        );
        assert_eq!(
            c(Observations {
                respiration_rate: Some(26.0),
                spo2: Some(92.0),
                pulse: Some(100.0),
                ..base
            }),
            Condition::Breached(Severity::High)
        );
        assert_eq!(
            c(Observations {
                respiration_rate: Some(26.0),
                spo2: Some(90.0),
                pulse: Some(120.0),
                ..base
            }),
            Condition::Breached(Severity::Critical)
        );
    }
}
