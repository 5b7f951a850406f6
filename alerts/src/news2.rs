//! NEWS2, the National Early Warning Score 2 (Royal College of Physicians,
//! 2017), as a pure function of the latest observations.
//!
//! Each parameter scores 0–3 by the bands of the chart; the aggregate is
//! their sum. The clinical risk is low (0–4), low–medium (a red score of 3
//! in any single parameter while the aggregate is below 5), medium (5–6) or
//! high (7 or more). SpO2 has two scales: scale 1 by default, scale 2 for
//! patients with hypercapnic respiratory failure (target 88–92 %), where
//! saturations of 93 % or more score only while on oxygen.
//!
//! Measurements arrive as real numbers; the chart's bands are written for
//! whole numbers (and tenths of a degree for temperature), so values are
//! rounded half up to that precision before banding: 20.4 breaths/min is 20,
//! 20.5 is 21.

use serde::{Deserialize, Serialize};

/// Level of consciousness on the ACVPU scale. New confusion scores like
/// voice, pain and unresponsive.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Consciousness {
    /// Alert.
    Alert,
    /// New confusion.
    NewConfusion,
    /// Responds to voice.
    Voice,
    /// Responds to pain.
    Pain,
    /// Unresponsive.
    Unresponsive,
}

/// Which SpO2 scale applies to the patient.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SpO2Scale {
    /// Scale 1: everyone else.
    #[default]
    Scale1,
    /// Scale 2: hypercapnic respiratory failure, prescribed target 88–92 %.
    Scale2,
}

impl SpO2Scale {
    /// The scale stored as its number (1 or 2); anything else is scale 1.
    pub fn from_number(n: i16) -> Self {
        if n == 2 {
            SpO2Scale::Scale2
        } else {
            SpO2Scale::Scale1
        }
    }

    /// The scale's number.
    pub fn number(self) -> i16 {
        match self {
            SpO2Scale::Scale1 => 1,
            SpO2Scale::Scale2 => 2,
        }
    }
}

/// The latest value of each NEWS2 parameter, when known and fresh.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Observations {
    /// Breaths per minute.
    pub respiration_rate: Option<f64>,
    /// Oxygen saturation, %.
    pub spo2: Option<f64>,
    /// Whether the patient is on supplemental oxygen.
    pub on_oxygen: Option<bool>,
    /// Systolic blood pressure, mmHg.
    pub systolic_bp: Option<f64>,
    /// Pulse, beats per minute.
    pub pulse: Option<f64>,
    /// ACVPU.
    pub consciousness: Option<Consciousness>,
    /// Body temperature, °C.
    pub temperature: Option<f64>,
}

/// A NEWS2 parameter.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Parameter {
    /// Respiration rate.
    RespirationRate,
    /// SpO2 (scale 1 or 2).
    Spo2,
    /// Air or oxygen.
    AirOrOxygen,
    /// Systolic blood pressure.
    SystolicBp,
    /// Pulse.
    Pulse,
    /// Consciousness.
    Consciousness,
    /// Temperature.
    Temperature,
}

/// The clinical risk band of a score.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RiskBand {
    /// Aggregate 0–4, no single red score.
    Low,
    /// A single parameter scores 3 (aggregate below 5): urgent ward-based review.
    LowMedium,
    /// Aggregate 5–6: urgent response.
    Medium,
    /// Aggregate 7 or more: emergency response.
    High,
}

/// A computed score.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Score {
    /// Sum of the parameter scores that could be computed.
    pub total: u8,
    /// Each computed parameter's score.
    pub parameters: Vec<(Parameter, u8)>,
    /// Parameters with no fresh observation: the score is partial while any are missing.
    pub missing: Vec<Parameter>,
    /// Whether any single parameter scored 3.
    pub single_parameter_red: bool,
    /// The clinical risk band.
    pub band: RiskBand,
}

impl Score {
    /// Whether every parameter was observed.
    pub fn is_complete(&self) -> bool {
        self.missing.is_empty()
    }
}

fn round0(v: f64) -> f64 {
    (v + 0.5).floor()
}

fn round1(v: f64) -> f64 {
    (v * 10.0 + 0.5).floor() / 10.0
}

/// Respiration rate: ≤8 → 3, 9–11 → 1, 12–20 → 0, 21–24 → 2, ≥25 → 3.
pub fn respiration_rate(per_minute: f64) -> u8 {
    match round0(per_minute) {
        v if v <= 8.0 => 3,
        v if v <= 11.0 => 1,
        v if v <= 20.0 => 0,
        v if v <= 24.0 => 2,
        _ => 3,
    }
}

/// SpO2 scale 1: ≤91 → 3, 92–93 → 2, 94–95 → 1, ≥96 → 0.
pub fn spo2_scale1(percent: f64) -> u8 {
    match round0(percent) {
        v if v <= 91.0 => 3,
        v if v <= 93.0 => 2,
        v if v <= 95.0 => 1,
        _ => 0,
    }
}

/// SpO2 scale 2: ≤83 → 3, 84–85 → 2, 86–87 → 1, 88–92 → 0, and ≥93 → 0 on
/// air; on oxygen 93–94 → 1, 95–96 → 2, ≥97 → 3.
pub fn spo2_scale2(percent: f64, on_oxygen: bool) -> u8 {
    match round0(percent) {
        v if v <= 83.0 => 3,
        v if v <= 85.0 => 2,
        v if v <= 87.0 => 1,
        v if v <= 92.0 => 0,
        _ if !on_oxygen => 0,
        v if v <= 94.0 => 1,
        v if v <= 96.0 => 2,
        _ => 3,
    }
}

/// Air → 0, oxygen → 2.
pub fn air_or_oxygen(on_oxygen: bool) -> u8 {
    if on_oxygen { 2 } else { 0 }
}

/// Systolic BP: ≤90 → 3, 91–100 → 2, 101–110 → 1, 111–219 → 0, ≥220 → 3.
pub fn systolic_bp(mm_hg: f64) -> u8 {
    match round0(mm_hg) {
        v if v <= 90.0 => 3,
        v if v <= 100.0 => 2,
        v if v <= 110.0 => 1,
        v if v <= 219.0 => 0,
        _ => 3,
    }
}

/// Pulse: ≤40 → 3, 41–50 → 1, 51–90 → 0, 91–110 → 1, 111–130 → 2, ≥131 → 3.
pub fn pulse(per_minute: f64) -> u8 {
    match round0(per_minute) {
        v if v <= 40.0 => 3,
        v if v <= 50.0 => 1,
        v if v <= 90.0 => 0,
        v if v <= 110.0 => 1,
        v if v <= 130.0 => 2,
        _ => 3,
    }
}

/// Alert → 0; new confusion, voice, pain or unresponsive → 3.
pub fn consciousness(level: Consciousness) -> u8 {
    if level == Consciousness::Alert { 0 } else { 3 }
}

/// Temperature: ≤35.0 → 3, 35.1–36.0 → 1, 36.1–38.0 → 0, 38.1–39.0 → 1, ≥39.1 → 2.
pub fn temperature(celsius: f64) -> u8 {
    match round1(celsius) {
        v if v <= 35.0 => 3,
        v if v <= 36.0 => 1,
        v if v <= 38.0 => 0,
        v if v <= 39.0 => 1,
        _ => 2,
    }
}

/// Scores the observations on the patient's SpO2 scale.
pub fn score(obs: &Observations, scale: SpO2Scale) -> Score {
    let mut parameters = Vec::with_capacity(7);
    let mut missing = Vec::new();
    let mut add = |p: Parameter, s: Option<u8>| match s {
        Some(s) => parameters.push((p, s)),
        None => missing.push(p),
    };
    add(
        Parameter::RespirationRate,
        obs.respiration_rate.map(respiration_rate),
    );
    // Scale 2 needs to know about oxygen only above 92 %; without it, such a
    // reading cannot be scored.
    let spo2 = match (obs.spo2, scale, obs.on_oxygen) {
        (None, _, _) => None,
        (Some(v), SpO2Scale::Scale1, _) => Some(spo2_scale1(v)),
        (Some(v), SpO2Scale::Scale2, Some(o2)) => Some(spo2_scale2(v, o2)),
        (Some(v), SpO2Scale::Scale2, None) if round0(v) <= 92.0 => Some(spo2_scale2(v, false)),
        (Some(_), SpO2Scale::Scale2, None) => None,
    };
    add(Parameter::Spo2, spo2);
    add(Parameter::AirOrOxygen, obs.on_oxygen.map(air_or_oxygen));
    add(Parameter::SystolicBp, obs.systolic_bp.map(systolic_bp));
    add(Parameter::Pulse, obs.pulse.map(pulse));
    add(
        Parameter::Consciousness,
        obs.consciousness.map(consciousness),
    );
    add(Parameter::Temperature, obs.temperature.map(temperature));
    let total: u8 = parameters.iter().map(|(_, s)| s).sum();
    let single_parameter_red = parameters.iter().any(|(_, s)| *s == 3);
    let band = match total {
        t if t >= 7 => RiskBand::High,
        t if t >= 5 => RiskBand::Medium,
        _ if single_parameter_red => RiskBand::LowMedium,
        _ => RiskBand::Low,
    };
    Score {
        total,
        parameters,
        missing,
        single_parameter_red,
        band,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// (value, expected score) at and either side of every band boundary.
    fn check(f: impl Fn(f64) -> u8, table: &[(f64, u8)]) {
        for &(value, expected) in table {
            assert_eq!(f(value), expected, "value {value}");
        }
    }

    #[test]
    fn respiration_rate_bands() {
        check(
            respiration_rate,
            &[
                (0.0, 3),
                (8.0, 3),
                (8.4, 3),
                (8.5, 1),
                (9.0, 1),
                (11.0, 1),
                (12.0, 0),
                (20.0, 0),
                (20.5, 2),
                (21.0, 2),
                (24.0, 2),
                (25.0, 3),
                (60.0, 3),
            ],
        );
    }

    #[test]
    fn spo2_scale1_bands() {
        check(
            spo2_scale1,
            &[
                (50.0, 3),
                (91.0, 3),
                (92.0, 2),
                (93.0, 2),
                (94.0, 1),
                (95.0, 1),
                (95.5, 0),
                (96.0, 0),
                (100.0, 0),
            ],
        );
    }

    #[test]
    fn spo2_scale2_bands_on_air_and_on_oxygen() {
        let air = |v| spo2_scale2(v, false);
        check(
            air,
            &[
                (83.0, 3),
                (84.0, 2),
                (85.0, 2),
                (86.0, 1),
                (87.0, 1),
                (88.0, 0),
                (92.0, 0),
                (93.0, 0),
                (100.0, 0),
            ],
        );
        let o2 = |v| spo2_scale2(v, true);
        check(
            o2,
            &[
                (83.0, 3),
                (84.0, 2),
                (86.0, 1),
                (88.0, 0),
                (92.0, 0),
                (93.0, 1),
                (94.0, 1),
                (95.0, 2),
                (96.0, 2),
                (97.0, 3),
                (100.0, 3),
            ],
        );
    }

    #[test]
    fn air_or_oxygen_scores() {
        assert_eq!((air_or_oxygen(false), air_or_oxygen(true)), (0, 2));
    }

    #[test]
    fn systolic_bp_bands() {
        check(
            systolic_bp,
            &[
                (60.0, 3),
                (90.0, 3),
                (91.0, 2),
                (100.0, 2),
                (101.0, 1),
                (110.0, 1),
                (111.0, 0),
                (219.0, 0),
                (220.0, 3),
                (260.0, 3),
            ],
        );
    }

    #[test]
    fn pulse_bands() {
        check(
            pulse,
            &[
                (30.0, 3),
                (40.0, 3),
                (41.0, 1),
                (50.0, 1),
                (51.0, 0),
                (90.0, 0),
                (91.0, 1),
                (110.0, 1),
                (111.0, 2),
                (130.0, 2),
                (131.0, 3),
                (200.0, 3),
            ],
        );
    }

    #[test]
    fn consciousness_scores() {
        assert_eq!(consciousness(Consciousness::Alert), 0);
        for level in [
            Consciousness::NewConfusion,
            Consciousness::Voice,
            Consciousness::Pain,
            Consciousness::Unresponsive,
        ] {
            assert_eq!(consciousness(level), 3);
        }
    }

    #[test]
    fn temperature_bands() {
        check(
            temperature,
            &[
                (33.0, 3),
                (35.0, 3),
                (35.04, 3),
                (35.05, 1),
                (35.1, 1),
                (36.0, 1),
                (36.1, 0),
                (38.0, 0),
                (38.1, 1),
                (39.0, 1),
                (39.1, 2),
                (41.0, 2),
            ],
        );
    }

    fn healthy() -> Observations {
        Observations {
            respiration_rate: Some(16.0),
            spo2: Some(97.0),
            on_oxygen: Some(false),
            systolic_bp: Some(125.0),
            pulse: Some(72.0),
            consciousness: Some(Consciousness::Alert),
            temperature: Some(36.8),
        }
    }

    #[test]
    fn aggregate_and_bands() {
        let s = score(&healthy(), SpO2Scale::Scale1);
        assert_eq!((s.total, s.band, s.is_complete()), (0, RiskBand::Low, true));
        // A single red parameter: low-medium even with a low aggregate.
        let s = score(
            &Observations {
                respiration_rate: Some(7.0),
                ..healthy()
            },
            SpO2Scale::Scale1,
        );
        assert_eq!(
            (s.total, s.band, s.single_parameter_red),
            (3, RiskBand::LowMedium, true)
        );
        // 4 without a red score is low.
        let s = score(
            &Observations {
                pulse: Some(115.0),
                temperature: Some(38.5),
                spo2: Some(95.0),
                ..healthy()
            },
            SpO2Scale::Scale1,
        );
        assert_eq!((s.total, s.band), (4, RiskBand::Low));
        // 5 and 6 are medium, whatever the single scores.
        let s = score(
            &Observations {
                on_oxygen: Some(true),
                spo2: Some(93.0),
                pulse: Some(95.0),
                ..healthy()
            },
            SpO2Scale::Scale1,
        );
        assert_eq!((s.total, s.band), (5, RiskBand::Medium));
        let s = score(
            &Observations {
                respiration_rate: Some(26.0),
                spo2: Some(92.0),
                pulse: Some(100.0),
                ..healthy()
            },
            SpO2Scale::Scale1,
        );
        assert_eq!((s.total, s.band), (6, RiskBand::Medium));
        // 7 or more is high.
        let s = score(
            &Observations {
                respiration_rate: Some(26.0),
                spo2: Some(90.0),
                pulse: Some(120.0),
                ..healthy()
            },
            SpO2Scale::Scale1,
        );
        assert_eq!((s.total, s.band), (8, RiskBand::High));
    }

    #[test]
    fn scale2_spares_a_retainer_on_air_but_not_on_oxygen() {
        let retainer = Observations {
            spo2: Some(89.0),
            ..healthy()
        };
        assert_eq!(score(&retainer, SpO2Scale::Scale1).total, 3);
        assert_eq!(score(&retainer, SpO2Scale::Scale2).total, 0);
        let over_oxygenated = Observations {
            spo2: Some(98.0),
            on_oxygen: Some(true),
            ..healthy()
        };
        assert_eq!(score(&over_oxygenated, SpO2Scale::Scale2).total, 3 + 2);
    }

    #[test]
    fn missing_parameters_are_named_and_the_rest_still_counts() {
        let s = score(
            &Observations {
                pulse: Some(135.0),
                ..Observations::default()
            },
            SpO2Scale::Scale1,
        );
        assert_eq!(s.total, 3);
        assert_eq!(s.missing.len(), 6);
        assert!(s.missing.contains(&Parameter::Temperature));
        assert!(!s.is_complete());
        // Scale 2 above 92 % cannot be scored without knowing about oxygen.
        let s = score(
            &Observations {
                spo2: Some(95.0),
                ..Observations::default()
            },
            SpO2Scale::Scale2,
        );
        assert!(s.missing.contains(&Parameter::Spo2));
    }
}
