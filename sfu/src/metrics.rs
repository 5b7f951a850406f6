//! The SFU's Prometheus metrics: counts over the whole SFU, never a room's,
//! participant's or patient's id (the only label is a direction).

use prometheus::{Histogram, HistogramOpts, HistogramVec, IntCounter, IntGauge, Registry};

use crate::stats::ParticipantStats;

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
    /// Participants' bitrate per statistics interval, by `direction`
    /// (`sending`: participant → SFU, `receiving`: SFU → participant).
    pub participant_bitrate: HistogramVec,
    /// Participants' packet loss per interval (0–1), by `direction`.
    pub participant_loss: HistogramVec,
    /// Participants' jitter, seconds, by `direction`.
    pub participant_jitter: HistogramVec,
    /// Participants' round-trip time to the SFU, seconds.
    pub participant_round_trip: Histogram,
    /// Participants switched to audio-only mode for a weak connection.
    pub audio_only_switches: IntCounter,
    /// Subscribers moved to another simulcast layer (on its keyframe).
    pub layer_switches: IntCounter,
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
            audio_only_switches: counter(
                "bedside_sfu_audio_only_switches_total",
                "Participants switched to audio only because their connection was too weak for video",
            ),
            layer_switches: counter(
                "bedside_sfu_layer_switches_total",
                "Subscribers moved to another simulcast layer of a video",
            ),
            participant_bitrate: HistogramVec::new(
                HistogramOpts::new(
                    "bedside_sfu_participant_bitrate_bits_per_second",
                    "Video-visit participants' media bitrate over each statistics interval",
                )
                .buckets(vec![
                    16e3, 32e3, 64e3, 128e3, 256e3, 512e3, 1e6, 2e6, 4e6, 8e6,
                ]),
                &["direction"],
            )
            .expect("valid metric"),
            participant_loss: HistogramVec::new(
                HistogramOpts::new(
                    "bedside_sfu_participant_loss_ratio",
                    "Share of video-visit participants' packets lost over each statistics interval",
                )
                .buckets(vec![0.001, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5]),
                &["direction"],
            )
            .expect("valid metric"),
            participant_jitter: HistogramVec::new(
                HistogramOpts::new(
                    "bedside_sfu_participant_jitter_seconds",
                    "Interarrival jitter of video-visit participants' media",
                )
                .buckets(vec![0.001, 0.002_5, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25]),
                &["direction"],
            )
            .expect("valid metric"),
            participant_round_trip: Histogram::with_opts(
                HistogramOpts::new(
                    "bedside_sfu_participant_round_trip_seconds",
                    "Round-trip time between video-visit participants and the SFU",
                )
                .buckets(vec![
                    0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.2, 0.3, 0.5, 1.0,
                ]),
            )
            .expect("valid metric"),
        }
    }

    /// Counts one participant's statistics interval.
    pub fn observe_participant(&self, stats: &ParticipantStats) {
        let directions = [
            (
                "sending",
                stats.sending_bps,
                stats.sending_loss,
                stats.sending_jitter,
            ),
            (
                "receiving",
                stats.receiving_bps,
                stats.receiving_loss,
                stats.receiving_jitter,
            ),
        ];
        for (direction, bps, loss, jitter) in directions {
            self.participant_bitrate
                .with_label_values(&[direction])
                .observe(bps as f64);
            self.participant_loss
                .with_label_values(&[direction])
                .observe(loss);
            self.participant_jitter
                .with_label_values(&[direction])
                .observe(jitter);
        }
        if let Some(round_trip) = stats.round_trip {
            self.participant_round_trip.observe(round_trip);
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
        let _ = registry.register(Box::new(metrics.participant_bitrate.clone()));
        let _ = registry.register(Box::new(metrics.participant_loss.clone()));
        let _ = registry.register(Box::new(metrics.participant_jitter.clone()));
        let _ = registry.register(Box::new(metrics.participant_round_trip.clone()));
        let _ = registry.register(Box::new(metrics.audio_only_switches.clone()));
        let _ = registry.register(Box::new(metrics.layer_switches.clone()));
        metrics
    }
}

impl Default for SfuMetrics {
    fn default() -> Self {
        Self::new()
    }
}
