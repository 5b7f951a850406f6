//! Latency summaries.

use std::time::Duration;

/// Percentiles of a set of latencies.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Summary {
    pub(crate) count: usize,
    pub(crate) p50: Duration,
    pub(crate) p90: Duration,
    pub(crate) p99: Duration,
    pub(crate) max: Duration,
}

/// Summarises latencies (nearest-rank percentiles).
pub(crate) fn summarise(mut latencies: Vec<Duration>) -> Option<Summary> {
    if latencies.is_empty() {
        return None;
    }
    latencies.sort_unstable();
    let at = |q: f64| {
        let rank = ((q * latencies.len() as f64).ceil() as usize).clamp(1, latencies.len());
        latencies[rank - 1]
    };
    Some(Summary {
        count: latencies.len(),
        p50: at(0.50),
        p90: at(0.90),
        p99: at(0.99),
        max: *latencies.last().expect("non-empty"),
    })
}

/// The median of some values.
pub(crate) fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(f64::total_cmp);
    let n = values.len();
    if n == 0 {
        return f64::NAN;
    }
    if n % 2 == 1 {
        values[n / 2]
    } else {
        (values[n / 2 - 1] + values[n / 2]) / 2.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nearest_rank_percentiles() {
        let ms = |n| Duration::from_millis(n);
        let s = summarise((1..=100).map(ms).collect()).unwrap();
        assert_eq!(
            (s.p50, s.p90, s.p99, s.max),
            (ms(50), ms(90), ms(99), ms(100))
        );
        assert!(summarise(vec![]).is_none());
        assert_eq!(median(vec![3.0, 1.0, 2.0]), 2.0);
        assert_eq!(median(vec![4.0, 1.0, 2.0, 3.0]), 2.5);
    }
}
