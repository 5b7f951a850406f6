//! The vital signs Bedside stores, their LOINC codes, canonical UCUM units,
//! unit conversions and plausible ranges.
//!
//! Every reading is stored in one canonical unit per metric, so queries and
//! alert rules never convert. A unit is accepted when it is the canonical
//! unit or a listed alternative with a conversion; anything else is refused
//! by name (`unknown_unit`) rather than guessed.

use serde::{Deserialize, Serialize};

/// A stored metric.
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    Hash,
    PartialOrd,
    Ord,
    Serialize,
    Deserialize,
    utoipa::ToSchema,
)]
#[serde(rename_all = "snake_case")]
pub enum Metric {
    /// Heart rate (pulse), LOINC 8867-4, `/min`.
    HeartRate,
    /// Oxygen saturation by pulse oximetry, LOINC 59408-5, `%`.
    Spo2,
    /// Respiratory rate, LOINC 9279-1, `/min`.
    RespiratoryRate,
    /// Body temperature, LOINC 8310-5, `Cel`.
    BodyTemperature,
    /// Systolic blood pressure, LOINC 8480-6, `mm[Hg]`.
    SystolicBp,
    /// Diastolic blood pressure, LOINC 8462-4, `mm[Hg]`.
    DiastolicBp,
    /// Body weight, LOINC 29463-7, `kg`.
    BodyWeight,
    /// Glucose (blood, by meter), LOINC 2339-0, `mg/dL`.
    Glucose,
    /// Whether the patient is on supplemental oxygen (NEWS2 "air or
    /// oxygen"): 1 on oxygen, 0 on air. LOINC 3150-0 (inhaled oxygen concentration) family.
    SupplementalOxygen,
    /// Level of consciousness, ACVPU coded 0 alert, 1 new confusion, 2 voice,
    /// 3 pain, 4 unresponsive. LOINC 67775-7.
    Consciousness,
}

/// How a unit converts to the canonical one: `canonical = value * scale + offset`.
#[derive(Debug, Clone, Copy, PartialEq)]
struct Conversion {
    unit: &'static str,
    scale: f64,
    offset: f64,
}

const fn same(unit: &'static str) -> Conversion {
    Conversion {
        unit,
        scale: 1.0,
        offset: 0.0,
    }
}

const fn conv(unit: &'static str, scale: f64, offset: f64) -> Conversion {
    Conversion {
        unit,
        scale,
        offset,
    }
}

/// Why a value was refused.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ValueError {
    /// The unit is neither canonical nor a known alternative for the metric.
    #[error("unit {unit:?} is not accepted for {metric}")]
    UnknownUnit {
        /// The metric.
        metric: &'static str,
        /// The unit as sent.
        unit: String,
    },
    /// NaN or infinite.
    #[error("the value is not a finite number")]
    NotFinite,
    /// Outside what a living patient can show.
    #[error("{value} {unit} is outside the plausible range {min}–{max} for {metric}")]
    Implausible {
        /// The metric.
        metric: &'static str,
        /// The converted value.
        value: f64,
        /// Canonical unit.
        unit: &'static str,
        /// Lower bound.
        min: f64,
        /// Upper bound.
        max: f64,
    },
}

impl Metric {
    /// Every metric.
    pub const ALL: [Metric; 10] = [
        Metric::HeartRate,
        Metric::Spo2,
        Metric::RespiratoryRate,
        Metric::BodyTemperature,
        Metric::SystolicBp,
        Metric::DiastolicBp,
        Metric::BodyWeight,
        Metric::Glucose,
        Metric::SupplementalOxygen,
        Metric::Consciousness,
    ];

    /// Bedside's name (stored, and accepted as a SenML name).
    pub fn name(self) -> &'static str {
        match self {
            Metric::HeartRate => "heart_rate",
            Metric::Spo2 => "spo2",
            Metric::RespiratoryRate => "respiratory_rate",
            Metric::BodyTemperature => "body_temperature",
            Metric::SystolicBp => "systolic_bp",
            Metric::DiastolicBp => "diastolic_bp",
            Metric::BodyWeight => "body_weight",
            Metric::Glucose => "glucose",
            Metric::SupplementalOxygen => "supplemental_oxygen",
            Metric::Consciousness => "consciousness",
        }
    }

    /// The LOINC code (also accepted as a SenML name).
    pub fn loinc(self) -> &'static str {
        match self {
            Metric::HeartRate => "8867-4",
            Metric::Spo2 => "59408-5",
            Metric::RespiratoryRate => "9279-1",
            Metric::BodyTemperature => "8310-5",
            Metric::SystolicBp => "8480-6",
            Metric::DiastolicBp => "8462-4",
            Metric::BodyWeight => "29463-7",
            Metric::Glucose => "2339-0",
            Metric::SupplementalOxygen => "3150-0",
            Metric::Consciousness => "67775-7",
        }
    }

    /// The canonical UCUM unit values are stored in.
    pub fn unit(self) -> &'static str {
        self.conversions()[0].unit
    }

    /// Looks a metric up by Bedside name or LOINC code.
    pub fn from_name(name: &str) -> Option<Metric> {
        Metric::ALL
            .into_iter()
            .find(|m| m.name() == name || m.loinc() == name)
    }

    /// Accepted units, canonical first.
    fn conversions(self) -> &'static [Conversion] {
        const PER_MIN: &[Conversion] = &[
            same("/min"),
            same("1/min"),
            same("beat/min"),
            same("beats/min"),
            same("{beats}/min"),
            conv("Hz", 60.0, 0.0),
        ];
        const BREATHS: &[Conversion] = &[
            same("/min"),
            same("1/min"),
            same("breaths/min"),
            same("{breaths}/min"),
            conv("Hz", 60.0, 0.0),
        ];
        const PERCENT: &[Conversion] = &[same("%"), conv("/", 100.0, 0.0), conv("1", 100.0, 0.0)];
        const CELSIUS: &[Conversion] = &[
            same("Cel"),
            conv("[degF]", 5.0 / 9.0, -32.0 * 5.0 / 9.0),
            conv("K", 1.0, -273.15),
        ];
        const MM_HG: &[Conversion] = &[
            same("mm[Hg]"),
            same("mmHg"),
            conv("kPa", 7.500_615_75, 0.0),
            conv("Pa", 0.007_500_615_75, 0.0),
        ];
        const KG: &[Conversion] = &[
            same("kg"),
            conv("g", 0.001, 0.0),
            conv("[lb_av]", 0.453_592_37, 0.0),
            conv("lb", 0.453_592_37, 0.0),
        ];
        // Glucose: 1 mmol/L = 18.0156 mg/dL (molar mass 180.156 g/mol).
        const GLUCOSE: &[Conversion] = &[same("mg/dL"), conv("mmol/L", 18.0156, 0.0)];
        const FLAG: &[Conversion] = &[same("1"), same("/")];
        const ACVPU: &[Conversion] = &[same("{ACVPU}"), same("1")];
        match self {
            Metric::HeartRate => PER_MIN,
            Metric::RespiratoryRate => BREATHS,
            Metric::Spo2 => PERCENT,
            Metric::BodyTemperature => CELSIUS,
            Metric::SystolicBp | Metric::DiastolicBp => MM_HG,
            Metric::BodyWeight => KG,
            Metric::Glucose => GLUCOSE,
            Metric::SupplementalOxygen => FLAG,
            Metric::Consciousness => ACVPU,
        }
    }

    /// The plausible range in the canonical unit: what a living patient can
    /// show, wide enough never to refuse a real emergency.
    pub fn plausible(self) -> (f64, f64) {
        match self {
            Metric::HeartRate => (20.0, 300.0),
            Metric::Spo2 => (0.0, 100.0),
            Metric::RespiratoryRate => (1.0, 80.0),
            Metric::BodyTemperature => (25.0, 45.0),
            Metric::SystolicBp => (40.0, 300.0),
            Metric::DiastolicBp => (20.0, 200.0),
            Metric::BodyWeight => (0.3, 500.0),
            Metric::Glucose => (10.0, 1500.0),
            Metric::SupplementalOxygen => (0.0, 1.0),
            Metric::Consciousness => (0.0, 4.0),
        }
    }

    /// Converts `value` in `unit` (the canonical unit when `None`) to the
    /// canonical unit and checks it is finite and plausible.
    ///
    /// # Errors
    /// [`ValueError`] naming what is wrong.
    pub fn normalise(self, value: f64, unit: Option<&str>) -> Result<f64, ValueError> {
        if !value.is_finite() {
            return Err(ValueError::NotFinite);
        }
        let conversion = match unit {
            None => self.conversions()[0],
            Some(u) => *self
                .conversions()
                .iter()
                .find(|c| c.unit == u)
                .ok_or_else(|| ValueError::UnknownUnit {
                    metric: self.name(),
                    unit: u.chars().take(32).collect(),
                })?,
        };
        let canonical = value * conversion.scale + conversion.offset;
        if !canonical.is_finite() {
            return Err(ValueError::NotFinite);
        }
        let (min, max) = self.plausible();
        // Conversions leave rounding dust; compare with a little tolerance.
        let epsilon = 1e-9 * max.abs().max(1.0);
        if canonical < min - epsilon || canonical > max + epsilon {
            return Err(ValueError::Implausible {
                metric: self.name(),
                value: canonical,
                unit: self.unit(),
                min,
                max,
            });
        }
        Ok(canonical.clamp(min, max))
    }
}

impl std::fmt::Display for Metric {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn names_codes_and_units_round_trip() {
        for m in Metric::ALL {
            assert_eq!(Metric::from_name(m.name()), Some(m));
            assert_eq!(Metric::from_name(m.loinc()), Some(m));
            assert_eq!(
                m.normalise(m.plausible().0, Some(m.unit())),
                Ok(m.plausible().0)
            );
        }
        assert_eq!(Metric::from_name("pulse_rate"), None);
    }

    #[test]
    fn conversions_match_reference_points() {
        let close = |a: f64, b: f64| (a - b).abs() < 1e-6;
        assert!(close(
            Metric::BodyTemperature
                .normalise(98.6, Some("[degF]"))
                .unwrap(),
            37.0
        ));
        assert!(close(
            Metric::BodyTemperature
                .normalise(310.15, Some("K"))
                .unwrap(),
            37.0
        ));
        assert!(close(
            Metric::BodyWeight
                .normalise(154.0, Some("[lb_av]"))
                .unwrap(),
            69.853_224_98
        ));
        assert!(close(
            Metric::Glucose.normalise(5.5, Some("mmol/L")).unwrap(),
            99.0858
        ));
        assert!(close(
            Metric::HeartRate.normalise(72.0, Some("beat/min")).unwrap(),
            72.0
        ));
        assert!(close(
            Metric::HeartRate.normalise(1.2, Some("Hz")).unwrap(),
            72.0
        ));
        assert!(close(
            Metric::Spo2.normalise(0.97, Some("/")).unwrap(),
            97.0
        ));
        assert!(close(
            Metric::SystolicBp.normalise(16.0, Some("kPa")).unwrap(),
            120.009_852
        ));
    }

    #[test]
    fn refusals_name_the_problem() {
        assert!(matches!(
            Metric::HeartRate.normalise(f64::NAN, None),
            Err(ValueError::NotFinite)
        ));
        assert!(matches!(
            Metric::HeartRate.normalise(f64::INFINITY, None),
            Err(ValueError::NotFinite)
        ));
        assert!(matches!(
            Metric::HeartRate.normalise(72.0, Some("furlong")),
            Err(ValueError::UnknownUnit { .. })
        ));
        assert!(matches!(
            Metric::Spo2.normalise(101.0, None),
            Err(ValueError::Implausible { .. })
        ));
        assert!(matches!(
            Metric::HeartRate.normalise(19.0, None),
            Err(ValueError::Implausible { .. })
        ));
        assert!(
            Metric::BodyWeight
                .normalise(f64::MAX, Some("[lb_av]"))
                .is_err()
        );
    }

    proptest! {
        // Fahrenheit and Celsius agree over the whole plausible range.
        #[test]
        fn fahrenheit_round_trips(c in 25.0f64..45.0) {
            let f = c * 9.0 / 5.0 + 32.0;
            let back = Metric::BodyTemperature.normalise(f, Some("[degF]")).unwrap();
            prop_assert!((back - c).abs() < 1e-9);
        }

        // Pounds and kilograms agree, and conversion is monotonic.
        #[test]
        fn pounds_convert_monotonically(a in 1.0f64..1000.0, b in 1.0f64..1000.0) {
            let ka = Metric::BodyWeight.normalise(a, Some("[lb_av]"));
            let kb = Metric::BodyWeight.normalise(b, Some("[lb_av]"));
            if let (Ok(ka), Ok(kb)) = (ka, kb) {
                prop_assert_eq!(a < b, ka < kb);
                prop_assert!((ka / a - 0.453_592_37).abs() < 1e-12);
            }
        }

        // mmol/L to mg/dL is linear with the glucose factor.
        #[test]
        fn glucose_is_linear(mmol in 0.6f64..80.0) {
            let mg = Metric::Glucose.normalise(mmol, Some("mmol/L")).unwrap();
            prop_assert!((mg - mmol * 18.0156).abs() < 1e-9);
        }

        // Any finite value either normalises into the plausible range or is refused.
        #[test]
        fn normalised_values_are_always_plausible(v in proptest::num::f64::ANY, idx in 0usize..10) {
            let m = Metric::ALL[idx];
            if let Ok(x) = m.normalise(v, None) {
                let (lo, hi) = m.plausible();
                prop_assert!(x.is_finite() && x >= lo && x <= hi);
            }
        }
    }
}
