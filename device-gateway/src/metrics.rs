//! The gateway's Prometheus metrics. Labels are reason codes and outcomes,
//! never device or patient ids (no patient data in metric labels).

use prometheus::{Histogram, HistogramOpts, IntCounter, IntCounterVec, IntGauge, Opts, Registry};

/// Counters and timings of the ingest path.
#[derive(Debug, Clone)]
pub struct IngestMetrics {
    /// MQTT messages taken into a batch.
    pub messages: IntCounter,
    /// Readings stored (new rows).
    pub readings_stored: IntCounter,
    /// Readings already stored (redeliveries absorbed by the unique key).
    pub readings_duplicate: IntCounter,
    /// Messages or records refused, by reason code.
    pub rejected: IntCounterVec,
    /// Failed commits (each retried).
    pub commit_failures: IntCounter,
    /// Seconds from a batch's first message arriving to its commit.
    pub batch_latency: Histogram,
    /// Seconds a batch's transaction took.
    pub commit_seconds: Histogram,
    /// Messages per batch.
    pub batch_messages: Histogram,
    /// Messages that skipped the early look for the alert engine (it was
    /// behind, or the database could not say whose they were): their
    /// alerts come after their batch commits.
    pub early_skipped: IntCounter,
    /// Messages received and not yet acknowledged to the broker (waiting
    /// for a batch, committing, or their acknowledgement queued). A broker
    /// that keeps its in-flight window bounds this by that window, give or
    /// take redelivered copies after a reconnect (counted while both are
    /// held).
    pub unacknowledged: IntGauge,
}

impl IngestMetrics {
    /// Creates the metrics and registers them in `registry` (a second
    /// registration of the same names is ignored, as in tests).
    pub fn register(registry: &Registry) -> Self {
        let latency_buckets = vec![
            0.005, 0.01, 0.02, 0.03, 0.05, 0.075, 0.1, 0.15, 0.25, 0.5, 1.0, 2.5, 5.0,
        ];
        let metrics = Self {
            messages: IntCounter::new(
                "bedside_ingest_messages_total",
                "MQTT messages taken into a batch",
            )
            .expect("valid metric"),
            readings_stored: IntCounter::new(
                "bedside_ingest_readings_stored_total",
                "Readings stored as new rows",
            )
            .expect("valid metric"),
            readings_duplicate: IntCounter::new(
                "bedside_ingest_readings_duplicate_total",
                "Readings already stored (redelivered messages)",
            )
            .expect("valid metric"),
            rejected: IntCounterVec::new(
                Opts::new(
                    "bedside_ingest_rejected_total",
                    "Messages or records refused, by reason",
                ),
                &["reason"],
            )
            .expect("valid metric"),
            commit_failures: IntCounter::new(
                "bedside_ingest_commit_failures_total",
                "Batch commits that failed and were retried",
            )
            .expect("valid metric"),
            batch_latency: Histogram::with_opts(
                HistogramOpts::new(
                    "bedside_ingest_batch_latency_seconds",
                    "From a batch's first message arriving to its commit",
                )
                .buckets(latency_buckets.clone()),
            )
            .expect("valid metric"),
            commit_seconds: Histogram::with_opts(
                HistogramOpts::new(
                    "bedside_ingest_commit_seconds",
                    "Duration of a batch's transaction",
                )
                .buckets(latency_buckets),
            )
            .expect("valid metric"),
            batch_messages: Histogram::with_opts(
                HistogramOpts::new("bedside_ingest_batch_messages", "Messages per batch").buckets(
                    vec![1.0, 5.0, 10.0, 25.0, 50.0, 100.0, 250.0, 500.0, 1000.0],
                ),
            )
            .expect("valid metric"),
            early_skipped: IntCounter::new(
                "bedside_ingest_early_skipped_total",
                "Messages whose alerts waited for their batch to commit (early look skipped)",
            )
            .expect("valid metric"),
            unacknowledged: IntGauge::new(
                "bedside_ingest_unacknowledged_messages",
                "Messages received from the broker and not yet acknowledged",
            )
            .expect("valid metric"),
        };
        for collector in [
            Box::new(metrics.messages.clone()) as Box<dyn prometheus::core::Collector>,
            Box::new(metrics.readings_stored.clone()),
            Box::new(metrics.readings_duplicate.clone()),
            Box::new(metrics.rejected.clone()),
            Box::new(metrics.commit_failures.clone()),
            Box::new(metrics.batch_latency.clone()),
            Box::new(metrics.commit_seconds.clone()),
            Box::new(metrics.batch_messages.clone()),
            Box::new(metrics.early_skipped.clone()),
            Box::new(metrics.unacknowledged.clone()),
        ] {
            let _ = registry.register(collector);
        }
        metrics
    }
}
