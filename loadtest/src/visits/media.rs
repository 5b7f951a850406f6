//! What the synthetic participants send, and how a receiver tells which
//! packet it got and when it was sent.
//!
//! - Audio: a 441 Hz tone, mono, 48 kHz, encoded once with libopus (the
//!   `opus` crate) into 50 frames of 20 ms. One second holds exactly 441
//!   periods and no shorter run of frames holds a whole number of them, so
//!   the 50 frames loop without a click, all differ, and a receiver can
//!   tell a frame's place in the loop from its bytes alone: Opus payloads
//!   pass through an SFU untouched, while sequence numbers and SSRCs do
//!   not. (At 440 Hz the signal repeats every 100 ms, 44 periods, so
//!   payloads five frames apart could be equal.)
//! - Video: VP8 at 30 frames/s, each frame several RTP packets of about
//!   1,100 bytes, a keyframe every two seconds. The frames are not decoded
//!   by anyone (the receivers are this program), so their bodies are filler;
//!   each packet ends with a probe: the publisher's index, the packet's
//!   number and its send time, which give loss and latency exactly.

use std::collections::HashMap;
use std::time::Duration;

use anyhow::Context as _;

/// Audio frames per second (20 ms each).
pub(crate) const AUDIO_FRAMES_PER_SECOND: u32 = 50;
/// Samples per 20 ms frame at 48 kHz.
const SAMPLES_PER_FRAME: usize = 960;
/// The tone's frequency.
pub(crate) const TONE_HZ: f64 = 441.0;
/// Video frames per second.
pub(crate) const VIDEO_FRAMES_PER_SECOND: u32 = 30;
/// A keyframe every this many frames.
const KEYFRAME_INTERVAL: u64 = 60;
/// Size of each video RTP payload.
const VIDEO_PAYLOAD_BYTES: usize = 1_100;
/// The probe at the end of a video payload: publisher (u32), packet
/// number (u64), send time in nanoseconds since the run's epoch (u64).
const PROBE_BYTES: usize = 20;
/// VP8's RTP clock.
pub(crate) const VIDEO_CLOCK_RATE: u32 = 90_000;

/// The tone, pre-encoded.
#[derive(Debug)]
pub(crate) struct Tone {
    frames: Vec<Vec<u8>>,
    place: HashMap<Vec<u8>, usize>,
}

impl Tone {
    /// Encodes one second of the tone.
    pub(crate) fn encode() -> anyhow::Result<Self> {
        let mut encoder = opus::Encoder::new(48_000, opus::Channels::Mono, opus::Application::Voip)
            .context("creating the Opus encoder")?;
        encoder.set_bitrate(opus::Bitrate::Bits(32_000))?;
        let samples: Vec<i16> = (0..SAMPLES_PER_FRAME * AUDIO_FRAMES_PER_SECOND as usize)
            .map(|n| {
                let t = n as f64 / 48_000.0;
                (f64::sin(2.0 * std::f64::consts::PI * TONE_HZ * t) * 8_000.0) as i16
            })
            .collect();
        // Encode two loops and keep the second: the encoder's first frames
        // are still converging, and the loop must join its own end.
        let mut frames = Vec::new();
        let mut out = vec![0u8; 1_500];
        for _ in 0..2 {
            frames.clear();
            for chunk in samples.chunks(SAMPLES_PER_FRAME) {
                let n = encoder.encode(chunk, &mut out)?;
                frames.push(out[..n].to_vec());
            }
        }
        let mut place = HashMap::new();
        let mut repeated = Vec::new();
        for (i, frame) in frames.iter().enumerate() {
            if place.insert(frame.clone(), i).is_some() {
                repeated.push(frame.clone());
            }
        }
        // A payload that occurs twice has no one place: a receiver waits
        // for one that has (after which it goes by sequence numbers).
        for frame in repeated {
            place.remove(&frame);
        }
        Ok(Self { frames, place })
    }

    /// The payload of audio packet `n`.
    pub(crate) fn frame(&self, n: u64) -> &[u8] {
        &self.frames[(n % self.frames.len() as u64) as usize]
    }

    /// Where in the loop a payload sits, if it is one of the tone's.
    pub(crate) fn place(&self, payload: &[u8]) -> Option<usize> {
        self.place.get(payload).copied()
    }

    /// The loop's length in frames.
    pub(crate) fn len(&self) -> u64 {
        self.frames.len() as u64
    }
}

/// Samples per chunk the tone check looks at: 100 ms (44.1 periods of
/// the tone; the filter is tuned to the tone itself, so the fraction of a
/// period costs little).
const CHECK_CHUNK: usize = 4_800;

/// How much of a decoded signal's power is at the tone's frequency, from
/// 0 to 1: the median over 100 ms chunks, so that a lost packet (a phase
/// jump, since nothing conceals it here) spoils one chunk, not the whole.
pub(crate) fn tone_share(samples: &[i16]) -> f64 {
    let mut shares: Vec<f64> = samples
        .chunks_exact(CHECK_CHUNK)
        .map(chunk_tone_share)
        .collect();
    if shares.is_empty() {
        return 0.0;
    }
    shares.sort_by(f64::total_cmp);
    shares[shares.len() / 2]
}

/// The share of one chunk's power at the tone (Goertzel).
fn chunk_tone_share(samples: &[i16]) -> f64 {
    let n = samples.len() as f64;
    let omega = 2.0 * std::f64::consts::PI * TONE_HZ / 48_000.0;
    let coefficient = 2.0 * omega.cos();
    let (mut s1, mut s2) = (0.0f64, 0.0f64);
    let mut total = 0.0f64;
    for &sample in samples {
        let x = f64::from(sample);
        total += x * x;
        let s0 = x + coefficient * s1 - s2;
        s2 = s1;
        s1 = s0;
    }
    if total == 0.0 {
        return 0.0;
    }
    let at_tone = s1 * s1 + s2 * s2 - coefficient * s1 * s2;
    // A pure sine of amplitude A over N samples gives at_tone = N²·A²/4 and
    // total = N·A²/2, so the share is 2·at_tone/(N·total).
    (2.0 * at_tone / (n * total)).min(1.0)
}

/// One VP8 RTP packet to send.
#[derive(Debug)]
pub(crate) struct VideoPacket {
    pub(crate) payload: Vec<u8>,
    pub(crate) marker: bool,
    pub(crate) timestamp: u32,
}

/// The packets of video frame `frame` of a publisher; `number` is the
/// publisher's running packet number, advanced here.
pub(crate) fn video_frame(
    publisher: u32,
    frame: u64,
    packets_per_frame: usize,
    number: &mut u64,
    sent_ns: u64,
) -> Vec<VideoPacket> {
    let keyframe = frame.is_multiple_of(KEYFRAME_INTERVAL);
    let timestamp = (frame * u64::from(VIDEO_CLOCK_RATE / VIDEO_FRAMES_PER_SECOND)) as u32;
    (0..packets_per_frame)
        .map(|k| {
            let mut payload = vec![0u8; VIDEO_PAYLOAD_BYTES];
            if k == 0 {
                // Payload descriptor: S (start of partition), partition 0.
                payload[0] = 0x10;
                // Frame tag: bit 0 is 0 for a keyframe; version 0, shown.
                payload[1] = if keyframe { 0x10 } else { 0x11 };
                if keyframe {
                    // The keyframe start code and 640x360.
                    payload[4..7].copy_from_slice(&[0x9d, 0x01, 0x2a]);
                    payload[7..9].copy_from_slice(&640u16.to_le_bytes());
                    payload[9..11].copy_from_slice(&360u16.to_le_bytes());
                }
            }
            let probe = Probe {
                publisher,
                number: *number,
                sent_ns,
            };
            *number += 1;
            let at = payload.len() - PROBE_BYTES;
            probe.write(&mut payload[at..]);
            VideoPacket {
                payload,
                marker: k + 1 == packets_per_frame,
                timestamp,
            }
        })
        .collect()
}

/// What a video packet carries at its end.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Probe {
    pub(crate) publisher: u32,
    pub(crate) number: u64,
    pub(crate) sent_ns: u64,
}

impl Probe {
    fn write(&self, out: &mut [u8]) {
        out[..4].copy_from_slice(&self.publisher.to_be_bytes());
        out[4..12].copy_from_slice(&self.number.to_be_bytes());
        out[12..20].copy_from_slice(&self.sent_ns.to_be_bytes());
    }

    /// The probe of a received video payload; `None` for a payload too
    /// short to carry one.
    pub(crate) fn read(payload: &[u8]) -> Option<Self> {
        let at = payload.len().checked_sub(PROBE_BYTES)?;
        let probe = &payload[at..];
        Some(Self {
            publisher: u32::from_be_bytes(probe[..4].try_into().ok()?),
            number: u64::from_be_bytes(probe[4..12].try_into().ok()?),
            sent_ns: u64::from_be_bytes(probe[12..20].try_into().ok()?),
        })
    }
}

/// The audio frame interval.
pub(crate) fn audio_interval() -> Duration {
    Duration::from_secs(1) / AUDIO_FRAMES_PER_SECOND
}

/// The video frame interval.
pub(crate) fn video_interval() -> Duration {
    Duration::from_secs(1) / VIDEO_FRAMES_PER_SECOND
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_tone_decodes_to_itself_and_each_frame_has_a_place() {
        let tone = Tone::encode().unwrap();
        assert_eq!(tone.len(), 50);
        let mut decoder = opus::Decoder::new(48_000, opus::Channels::Mono).unwrap();
        let mut decoded = Vec::new();
        let mut out = vec![0i16; SAMPLES_PER_FRAME];
        for n in 0..100 {
            assert_eq!(tone.place(tone.frame(n)), Some((n % 50) as usize));
            let got = decoder.decode(tone.frame(n), &mut out, false).unwrap();
            decoded.extend_from_slice(&out[..got]);
        }
        assert!(tone_share(&decoded[SAMPLES_PER_FRAME * 10..]) > 0.9);
        // A lost packet spoils its chunk, not the verdict.
        let mut gapped = decoded[SAMPLES_PER_FRAME * 10..].to_vec();
        gapped.drain(SAMPLES_PER_FRAME * 20..SAMPLES_PER_FRAME * 21);
        assert!(tone_share(&gapped) > 0.9);
        // Silence and another frequency are not the tone.
        assert_eq!(tone_share(&[0; 9600]), 0.0);
        let other: Vec<i16> = (0..48_000)
            .map(|n| {
                (f64::sin(2.0 * std::f64::consts::PI * 1000.0 * n as f64 / 48_000.0) * 8000.0)
                    as i16
            })
            .collect();
        assert!(tone_share(&other) < 0.01);
    }

    #[test]
    fn a_video_packet_carries_its_probe_and_keyframes_are_marked() {
        let mut number = 7;
        let packets = video_frame(3, 0, 4, &mut number, 123_456);
        assert_eq!(number, 11);
        assert_eq!(packets.len(), 4);
        assert!(packets[3].marker && !packets[0].marker);
        assert_eq!(packets[0].payload[1] & 1, 0, "frame 0 is a keyframe");
        assert_eq!(
            Probe::read(&packets[2].payload),
            Some(Probe {
                publisher: 3,
                number: 9,
                sent_ns: 123_456
            })
        );
        let delta = video_frame(3, 1, 1, &mut number, 0);
        assert_eq!(delta[0].payload[1] & 1, 1);
        assert_eq!(Probe::read(&[1, 2, 3]), None);
    }
}
