//! Per-subscriber sequence numbers and timestamps for one outgoing track.
//!
//! What a subscriber receives on one track may come from several sources
//! over time: another simulcast layer of the same publisher, or another
//! publisher. Each source numbers its packets and stamps its timestamps
//! from its own random origin, and a receiver's jitter buffer sees a jump
//! as loss or reordering (freezes, a stalled decoder). So each outgoing
//! track maps every source onto one continuous space:
//!
//! - within a source, a fixed offset: packets keep their order and gaps
//!   (a real loss stays a loss the receiver can NACK, and a retransmission
//!   maps to the same number it first had);
//! - at a switch (the caller switches only on a keyframe), the new source's
//!   first packet follows the last one sent (`sequence + 1`), with a
//!   timestamp advanced by the wall-clock time since then at the codec's
//!   clock rate (at least 1), so playout timing stays right;
//! - packets that still arrive from a source after the switch are dropped,
//!   and so are the new source's packets older than the one switched on;
//! - a switch to the current source re-anchors it the same way: forwarding
//!   that resumes after a pause (audio-only mode lifted) continues the
//!   numbering rather than jumping by what was skipped.
//!
//! Invariant: on one track, the output sequence numbers of successive
//! in-order packets increase by one across any number of switches.

use std::time::Instant;

/// Numbers one outgoing track's packets, whatever their source.
#[derive(Debug, Clone)]
pub struct Rewriter {
    clock_rate: u32,
    state: Option<State>,
}

#[derive(Debug, Clone, Copy)]
struct State {
    source: u32,
    /// The source's sequence number the track started or switched on: its
    /// older packets (late, or retransmitted) would take numbers already
    /// used for the previous source, so they are dropped.
    first_sequence: u16,
    sequence_offset: u16,
    timestamp_offset: u32,
    /// The newest packet sent (in sequence order), output numbering.
    last_sequence: u16,
    last_timestamp: u32,
    last_sent: Instant,
}

/// A packet's numbering on the outgoing track.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Numbering {
    /// Sequence number.
    pub sequence: u16,
    /// RTP timestamp.
    pub timestamp: u32,
}

impl Rewriter {
    /// A track for a codec with this RTP clock rate (90,000 for video,
    /// 48,000 for Opus).
    pub fn new(clock_rate: u32) -> Self {
        Self {
            clock_rate,
            state: None,
        }
    }

    /// The outgoing numbering of a packet from `source` (its SSRC) with
    /// `sequence` and `timestamp`, forwarded at `now`. The first packet
    /// ever starts the track on its source. A packet from another source
    /// switches the track to it when `switch` is set (the caller's choice:
    /// a keyframe of the layer or publisher it wants now) and is dropped
    /// (`None`) otherwise. `switch` on a packet of the current source
    /// re-anchors it (see the module's notes): set it only on the first
    /// packet after a pause.
    pub fn rewrite(
        &mut self,
        source: u32,
        sequence: u16,
        timestamp: u32,
        now: Instant,
        switch: bool,
    ) -> Option<Numbering> {
        let state = match self.state {
            None => self.state.insert(State {
                source,
                first_sequence: sequence,
                sequence_offset: 0,
                timestamp_offset: 0,
                last_sequence: sequence,
                last_timestamp: timestamp,
                last_sent: now,
            }),
            Some(ref mut state) if state.source == source && !switch => state,
            Some(_) if !switch => return None,
            Some(ref mut state) => {
                let elapsed = now.saturating_duration_since(state.last_sent);
                let ticks = (elapsed.as_secs_f64() * f64::from(self.clock_rate)).round();
                // At least one tick: the new source's first frame is later.
                let advance = u32::try_from(ticks as u64).unwrap_or(u32::MAX).max(1);
                let next_sequence = state.last_sequence.wrapping_add(1);
                let next_timestamp = state.last_timestamp.wrapping_add(advance);
                state.source = source;
                state.first_sequence = sequence;
                state.sequence_offset = next_sequence.wrapping_sub(sequence);
                state.timestamp_offset = next_timestamp.wrapping_sub(timestamp);
                state
            }
        };
        if is_newer(state.first_sequence, sequence) {
            return None;
        }
        let out = Numbering {
            sequence: sequence.wrapping_add(state.sequence_offset),
            timestamp: timestamp.wrapping_add(state.timestamp_offset),
        };
        if is_newer(out.sequence, state.last_sequence) {
            state.last_sequence = out.sequence;
            state.last_timestamp = out.timestamp;
            state.last_sent = now;
        }
        Some(out)
    }

    /// The source the track forwards now, if it has started.
    pub fn source(&self) -> Option<u32> {
        self.state.map(|state| state.source)
    }
}

/// Whether sequence number `a` comes after `b` (RFC 3550 wrap-around).
fn is_newer(a: u16, b: u16) -> bool {
    a != b && a.wrapping_sub(b) < 0x8000
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use proptest::prelude::*;

    use super::*;

    #[test]
    fn a_switch_continues_the_numbering_and_the_clock() {
        let start = Instant::now();
        let mut track = Rewriter::new(90_000);
        let a = |seq, ts, ms, switch, track: &mut Rewriter| {
            track.rewrite(0xA, seq, ts, start + Duration::from_millis(ms), switch)
        };
        let first = a(100, 5000, 0, false, &mut track).unwrap();
        assert_eq!(
            first,
            Numbering {
                sequence: 100,
                timestamp: 5000
            }
        );
        assert_eq!(a(101, 8000, 33, false, &mut track).unwrap().sequence, 101);
        // Another source, not asked for: dropped.
        assert_eq!(
            track.rewrite(0xB, 7, 1, start + Duration::from_millis(40), false),
            None
        );
        // Switched to it 67 ms after the last packet sent: next number, clock advanced.
        let switched = track
            .rewrite(0xB, 60_000, 123, start + Duration::from_millis(100), true)
            .unwrap();
        assert_eq!(switched.sequence, 102);
        assert_eq!(switched.timestamp, 8000 + 67 * 90);
        assert_eq!(track.source(), Some(0xB));
        // The new source keeps its own gaps and order.
        let next = track.rewrite(0xB, 60_002, 3123, start + Duration::from_millis(133), false);
        assert_eq!(next.unwrap().sequence, 104);
        let late = track.rewrite(0xB, 60_001, 1623, start + Duration::from_millis(140), false);
        assert_eq!(late.unwrap().sequence, 103, "a late packet keeps its place");
        // The old source's stragglers are dropped now.
        assert_eq!(a(102, 11000, 150, false, &mut track), None);
        // So are the new source's packets from before the switch: their
        // numbers were the old source's.
        let before = track.rewrite(0xB, 59_999, 0, start + Duration::from_millis(150), false);
        assert_eq!(before, None);
    }

    #[test]
    fn resuming_a_paused_source_continues_where_it_stopped() {
        let start = Instant::now();
        let mut track = Rewriter::new(90_000);
        let at = |ms| start + Duration::from_millis(ms);
        assert_eq!(
            track.rewrite(7, 500, 9000, at(0), false).unwrap().sequence,
            500
        );
        // Paused for two seconds (packets 501..=560 not forwarded), then
        // resumed on a keyframe.
        let resumed = track
            .rewrite(7, 561, 9000 + 180_000, at(2000), true)
            .unwrap();
        assert_eq!(resumed.sequence, 501, "no gap for the receiver to NACK");
        assert_eq!(
            resumed.timestamp,
            9000 + 180_000,
            "the clock still moved on"
        );
        assert_eq!(
            track
                .rewrite(7, 562, 9000 + 183_000, at(2033), false)
                .unwrap()
                .sequence,
            502
        );
    }

    #[test]
    fn numbering_wraps_around_like_rtp() {
        let now = Instant::now();
        let mut track = Rewriter::new(48_000);
        assert_eq!(
            track
                .rewrite(1, 65_535, u32::MAX, now, false)
                .unwrap()
                .sequence,
            65_535
        );
        let wrapped = track.rewrite(1, 0, 959, now, false).unwrap();
        assert_eq!(
            wrapped,
            Numbering {
                sequence: 0,
                timestamp: 959
            }
        );
        let switched = track.rewrite(2, 40_000, 10, now, true).unwrap();
        assert_eq!(switched.sequence, 1);
        assert_eq!(switched.timestamp, 960, "at least one tick later");
    }

    proptest! {
        /// However often the source switches, in-order packets leave
        /// numbered one after another.
        #[test]
        fn in_order_packets_are_numbered_consecutively_across_switches(
            runs in proptest::collection::vec((any::<u16>(), any::<u32>(), 1usize..20), 1..20)
        ) {
            let start = Instant::now();
            let mut track = Rewriter::new(90_000);
            let mut previous: Option<u16> = None;
            let mut at = 0u64;
            // Each run is another source (a layer or publisher switched to).
            for (source, (first_sequence, first_timestamp, packets)) in runs.into_iter().enumerate() {
                let source = source as u32;
                for i in 0..packets {
                    at += 20;
                    let out = track.rewrite(
                        source,
                        first_sequence.wrapping_add(i as u16),
                        first_timestamp.wrapping_add(i as u32 * 1800),
                        start + Duration::from_millis(at),
                        i == 0,
                    );
                    let out = out.expect("the current source or a switch is never dropped");
                    if let Some(previous) = previous {
                        prop_assert_eq!(out.sequence, previous.wrapping_add(1));
                    }
                    previous = Some(out.sequence);
                }
            }
        }
    }
}
