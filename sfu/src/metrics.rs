//! The SFU's Prometheus metrics. No labels: counts over the whole SFU,
//! never a room's, participant's or patient's id.

use prometheus::{Histogram, HistogramOpts, IntCounter, IntGauge, Registry};

/// Counters and gauges the SFU task keeps up to date.
#[derive(Debug, Clone)]
pub struct SfuMetrics {
    /// RTP packets sent on to subscribers.
    pub forwarded_packets: IntCounter,
    /// Their payload bytes.
    pub forwarded_bytes: IntCounter,
    /// Keyframe requests (PLI) sent to publishers, after rate limiting.
    pub keyframe_requests: IntCounter,
    /// Participants with a connection.
    pub participants: IntGauge,
    /// Rooms with at least one connection.
    pub rooms: IntGauge,
    /// Time from the SFU reading a media datagram to its forwarded copies
    /// leaving the socket (time queued in the kernel before the read is not
    /// in it).
    pub forward_delay: Histogram,
}

impl SfuMetrics {
    /// Unregistered metrics (tests, or a server without a registry).
    pub fn new() -> Self {
        let counter = |name: &str, help: &str| IntCounter::new(name, help).expect("valid metric");
        let gauge = |name: &str, help: &str| IntGauge::new(name, help).expect("valid metric");
        Self {
            forwarded_packets: counter(
                "bedside_sfu_forwarded_packets_total",
                "RTP packets the SFU sent on to subscribers",
            ),
            forwarded_bytes: counter(
                "bedside_sfu_forwarded_bytes_total",
                "Payload bytes of the RTP packets the SFU sent on",
            ),
            keyframe_requests: counter(
                "bedside_sfu_keyframe_requests_total",
                "Keyframe requests (PLI) the SFU sent to publishers",
            ),
            participants: gauge(
                "bedside_sfu_participants",
                "Video-visit participants with a media connection",
            ),
            rooms: gauge("bedside_sfu_rooms", "Video visits with a media connection"),
            forward_delay: Histogram::with_opts(
                HistogramOpts::new(
                    "bedside_sfu_forward_delay_seconds",
                    "Time from reading a media packet to its forwarded copies being sent",
                )
                .buckets(vec![
                    0.000_025, 0.000_05, 0.000_1, 0.000_25, 0.000_5, 0.001, 0.002_5, 0.005, 0.01,
                    0.025, 0.05, 0.1,
                ]),
            )
            .expect("valid metric"),
        }
    }

    /// Creates the metrics and registers them in `registry` (a second
    /// registration of the same names is ignored, as in tests).
    pub fn register(registry: &Registry) -> Self {
        let metrics = Self::new();
        let _ = registry.register(Box::new(metrics.forwarded_packets.clone()));
        let _ = registry.register(Box::new(metrics.forwarded_bytes.clone()));
        let _ = registry.register(Box::new(metrics.keyframe_requests.clone()));
        let _ = registry.register(Box::new(metrics.participants.clone()));
        let _ = registry.register(Box::new(metrics.rooms.clone()));
        let _ = registry.register(Box::new(metrics.forward_delay.clone()));
        metrics
    }
}

impl Default for SfuMetrics {
    fn default() -> Self {
        Self::new()
    }
}
