//! Per-participant connection statistics: what a clinician sees when a
//! patient says "you froze", and what Prometheus aggregates.
//!
//! The SFU is one end of every participant's connection, so it measures
//! both directions without asking the browser: the participant's uplink
//! from the packets it receives from them (bitrate, loss, jitter), their
//! downlink from what it sends them and what their receiver reports say
//! (bitrate, loss, jitter), and the round-trip time from ICE consent checks.
//!
//! Counters come from the engine's `getStats` ([`Counters::from_report`]);
//! rates and loss are over the interval between two samples
//! ([`ParticipantStats::between`]).

use std::collections::HashMap;
use std::time::Duration;

use rtc::rtp_transceiver::rtp_sender::RtpCodecKind;
use rtc::statistics::report::{RTCStatsReport, RTCStatsReportEntry};
use rtc::statistics::stats::ice_candidate_pair::RTCStatsIceCandidatePairState;
use rtc::statistics::stats::rtp_stream::RTCRtpStreamStats;

/// How often statistics are sampled and sent.
pub const STATS_INTERVAL: Duration = Duration::from_secs(2);

/// What the participant's last receiver report said of one stream the SFU
/// sends them.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RemoteReport {
    /// The stream.
    pub ssrc: u32,
    /// The highest sequence number received (extended), which grows by the
    /// packets expected.
    pub highest: u64,
    /// Packets lost since the stream began.
    pub lost: u64,
    /// Interarrival jitter, seconds.
    pub jitter: f64,
}

/// One connection's cumulative counters at one instant.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Counters {
    /// Payload bytes received from the participant.
    pub bytes_in: u64,
    /// Packets received from them.
    pub packets_in: u64,
    /// Packets of theirs lost on the way (from the sequence numbers).
    pub lost_in: u64,
    /// Interarrival jitter of their audio at the SFU, seconds (the worst
    /// stream's if there is no audio).
    pub jitter_in: f64,
    /// Payload bytes sent to the participant.
    pub bytes_out: u64,
    /// Their receiver reports, by stream. (rtc keeps a stream's last report
    /// after the stream ends, so only what changed between two samples
    /// counts.)
    pub reports: Vec<RemoteReport>,
    /// Round-trip time, seconds, if measured.
    pub round_trip: Option<f64>,
}

impl Counters {
    /// The counters of one connection's stats report.
    ///
    /// rtc 0.21 reports jitter in RTP timestamp units (as RTCP carries it)
    /// rather than seconds; it is converted with the clock rate of the
    /// stream's codec. It computes no round-trip time from RTCP, so the
    /// round trip is the one its ICE consent checks measure on the selected
    /// pair.
    pub fn from_report(report: &RTCStatsReport) -> Self {
        let clock_rates: HashMap<&str, u32> = report
            .iter()
            .filter_map(|entry| match entry {
                RTCStatsReportEntry::Codec(codec) => {
                    Some((codec.stats.id.as_str(), codec.clock_rate))
                }
                _ => None,
            })
            .collect();
        let seconds = |units: f64, stream: &RTCRtpStreamStats| {
            let rate = clock_rates
                .get(stream.codec_id.as_str())
                .copied()
                .filter(|rate| *rate > 0)
                .unwrap_or(match stream.kind {
                    RtpCodecKind::Audio => 48_000,
                    _ => 90_000,
                });
            units / f64::from(rate)
        };
        let mut counters = Self::default();
        let mut audio_jitter = None;
        for entry in report.iter() {
            match entry {
                RTCStatsReportEntry::InboundRtp(inbound) => {
                    let received = &inbound.received_rtp_stream_stats;
                    let jitter = seconds(received.jitter, &received.rtp_stream_stats);
                    counters.bytes_in += inbound.bytes_received;
                    counters.packets_in += received.packets_received;
                    counters.lost_in += u64::try_from(received.packets_lost).unwrap_or(0);
                    counters.jitter_in = counters.jitter_in.max(jitter);
                    if received.rtp_stream_stats.kind == RtpCodecKind::Audio {
                        audio_jitter = Some(jitter);
                    }
                }
                RTCStatsReportEntry::OutboundRtp(outbound) => {
                    counters.bytes_out += outbound.sent_rtp_stream_stats.bytes_sent;
                }
                RTCStatsReportEntry::RemoteInboundRtp(remote) => {
                    let received = &remote.received_rtp_stream_stats;
                    counters.reports.push(RemoteReport {
                        ssrc: received.rtp_stream_stats.ssrc,
                        // rtc puts the report's extended highest sequence
                        // number here.
                        highest: received.packets_received,
                        lost: u64::try_from(received.packets_lost).unwrap_or(0),
                        jitter: seconds(received.jitter, &received.rtp_stream_stats),
                    });
                }
                RTCStatsReportEntry::IceCandidatePair(pair)
                    if pair.nominated
                        && pair.state == RTCStatsIceCandidatePairState::Succeeded
                        && pair.current_round_trip_time > 0.0 =>
                {
                    counters.round_trip = Some(pair.current_round_trip_time);
                }
                _ => {}
            }
        }
        if let Some(jitter) = audio_jitter {
            // Audio's jitter is what a listener hears; video's is smoothed
            // by the frame buffer.
            counters.jitter_in = jitter;
        }
        counters
    }
}

/// One participant's connection over the last interval.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ParticipantStats {
    /// What they send reaches the SFU at this rate, bits/s.
    pub sending_bps: u64,
    /// Share of their packets lost on the way to the SFU (0–1).
    pub sending_loss: f64,
    /// Jitter of their packets at the SFU, seconds.
    pub sending_jitter: f64,
    /// The SFU sends them this much, bits/s.
    pub receiving_bps: u64,
    /// Share of packets lost on the way to them, as their receiver reports
    /// say (0–1). The rooms take out what was already missing from what
    /// the publishers sent (see `rooms`): the SFU forwards a publisher's
    /// gaps, and the subscriber reports them as its own loss.
    pub receiving_loss: f64,
    /// Jitter of what they receive, as they report it, seconds.
    pub receiving_jitter: f64,
    /// Round-trip time between them and the SFU, seconds, once measured.
    pub round_trip: Option<f64>,
}

impl ParticipantStats {
    /// The statistics of the interval `elapsed` long that ended at `now`,
    /// which began at `before` (counters only grow; a smaller one, after a
    /// stream was replaced, counts as no change).
    pub fn between(before: &Counters, now: &Counters, elapsed: Duration) -> Self {
        let seconds = elapsed.as_secs_f64().max(1e-3);
        let rate = |from: u64, to: u64| {
            let bits = to.saturating_sub(from).saturating_mul(8);
            // Rounded to whole bits per second.
            (bits as f64 / seconds).round() as u64
        };
        let received = now.packets_in.saturating_sub(before.packets_in);
        let lost = now.lost_in.saturating_sub(before.lost_in);
        let expected = received + lost;
        // Downlink: the streams with a new report since `before` (a stream
        // new in this sample starts counting at the next).
        let (mut expected_out, mut lost_out, mut jitter_out) = (0u64, 0u64, 0f64);
        for report in &now.reports {
            let Some(earlier) = before.reports.iter().find(|r| r.ssrc == report.ssrc) else {
                continue;
            };
            let grew = report.highest.saturating_sub(earlier.highest);
            if grew == 0 {
                continue;
            }
            expected_out += grew;
            lost_out += report.lost.saturating_sub(earlier.lost);
            jitter_out = jitter_out.max(report.jitter);
        }
        Self {
            sending_bps: rate(before.bytes_in, now.bytes_in),
            sending_loss: if expected == 0 {
                0.0
            } else {
                lost as f64 / expected as f64
            },
            sending_jitter: now.jitter_in,
            receiving_bps: rate(before.bytes_out, now.bytes_out),
            receiving_loss: if expected_out == 0 {
                0.0
            } else {
                (lost_out as f64 / expected_out as f64).min(1.0)
            },
            receiving_jitter: jitter_out,
            round_trip: now.round_trip,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rates_and_loss_are_over_the_interval() {
        let before = Counters {
            bytes_in: 1_000,
            packets_in: 90,
            lost_in: 2,
            bytes_out: 10_000,
            ..Counters::default()
        };
        let report = |ssrc, highest, lost, jitter| RemoteReport {
            ssrc,
            highest,
            lost,
            jitter,
        };
        let before = Counters {
            reports: vec![report(1, 1_000, 10, 0.001), report(2, 70_000, 500, 0.002)],
            ..before
        };
        let now = Counters {
            bytes_in: 251_000,
            packets_in: 186,
            lost_in: 6,
            jitter_in: 0.004,
            bytes_out: 510_000,
            reports: vec![
                // 100 expected, 2 lost.
                report(1, 1_100, 12, 0.006),
                // Ended long ago: its last report stays, and counts for nothing.
                report(2, 70_000, 500, 0.5),
                // New: counted from the next sample.
                report(3, 30_000, 9_000, 0.9),
            ],
            round_trip: Some(0.045),
        };
        let stats = ParticipantStats::between(&before, &now, Duration::from_secs(2));
        assert_eq!(stats.sending_bps, 1_000_000);
        assert_eq!(stats.receiving_bps, 2_000_000);
        assert!((stats.sending_loss - 0.04).abs() < 1e-9, "4 of 100");
        assert!((stats.receiving_loss - 0.02).abs() < 1e-9, "2 of 100");
        assert_eq!(stats.sending_jitter, 0.004);
        assert_eq!(stats.receiving_jitter, 0.006);
        assert_eq!(stats.round_trip, Some(0.045));
    }

    #[test]
    fn a_replaced_stream_does_not_make_counters_go_backwards() {
        let before = Counters {
            bytes_in: 5_000,
            packets_in: 50,
            lost_in: 5,
            ..Counters::default()
        };
        let now = Counters::default();
        let stats = ParticipantStats::between(&before, &now, Duration::from_secs(2));
        assert_eq!(stats.sending_bps, 0);
        assert_eq!(stats.sending_loss, 0.0);
        assert_eq!(stats.round_trip, None);
    }

    #[test]
    fn an_empty_report_has_no_traffic() {
        let counters = Counters::from_report(&RTCStatsReport::default());
        assert_eq!(counters, Counters::default());
    }
}
