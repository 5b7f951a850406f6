//! Keyframes in H.264 RTP payloads (RFC 6184), and their picture size.
//!
//! A subscriber may switch to another simulcast layer, or resume one, only
//! where a decoder can start: at a keyframe. In H.264 that is an IDR
//! picture, which browsers send right after its parameter sets (SPS, PPS).
//! The packet that starts one holds the SPS or the IDR slice's first bytes:
//! as a single NAL unit, inside an aggregation packet (STAP-A), or as the
//! first fragment of a fragmented unit (FU-A). The SPS also gives the
//! picture size, which ranks a publisher's layers ([`crate::simulcast`]).
//!
//! Invariant: parsing never panics; a payload that is not well-formed is
//! simply not a keyframe (forwarding it is the decoder's business).

use h264_reader::nal::sps::SeqParameterSet;
use h264_reader::rbsp::{BitReader, decode_nal};

/// NAL unit types (ITU-T H.264 Table 7-1, RFC 6184 §5.4).
const IDR_SLICE: u8 = 5;
const SPS: u8 = 7;
const STAP_A: u8 = 24;
const FU_A: u8 = 28;

/// A packet that starts a keyframe.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Keyframe {
    /// The picture height its SPS declares, if the SPS is in this packet
    /// and could be read.
    pub height: Option<u16>,
}

fn nal_type(header: u8) -> u8 {
    header & 0x1F
}

/// Whether `payload` starts a keyframe, and its height where it says.
#[must_use]
pub fn keyframe(payload: &[u8]) -> Option<Keyframe> {
    let &header = payload.first()?;
    match nal_type(header) {
        STAP_A => {
            let mut found = None;
            let mut rest = &payload[1..];
            while let [high, low, tail @ ..] = rest {
                let size = usize::from(u16::from_be_bytes([*high, *low]));
                let Some(unit) = tail.get(..size) else { break };
                if let Some(frame) = single(unit) {
                    // An SPS's height wins over an IDR slice's none.
                    found = Some(match found {
                        Some(Keyframe { height: Some(h) }) => Keyframe { height: Some(h) },
                        _ => frame,
                    });
                }
                rest = &tail[size..];
            }
            found
        }
        FU_A => {
            let &fu_header = payload.get(1)?;
            let starts = fu_header & 0x80 != 0;
            (starts && matches!(nal_type(fu_header), IDR_SLICE | SPS))
                .then_some(Keyframe { height: None })
        }
        _ => single(payload),
    }
}

/// One whole NAL unit: a keyframe's SPS (with its height) or IDR slice.
fn single(unit: &[u8]) -> Option<Keyframe> {
    match nal_type(*unit.first()?) {
        SPS => Some(Keyframe {
            height: sps_height(unit),
        }),
        IDR_SLICE => Some(Keyframe { height: None }),
        _ => None,
    }
}

/// The picture height an SPS NAL unit (header byte included) declares.
fn sps_height(unit: &[u8]) -> Option<u16> {
    let rbsp = decode_nal(unit).ok()?;
    let sps = SeqParameterSet::from_bits(BitReader::new(&*rbsp)).ok()?;
    let (_, height) = sps.pixel_dimensions().ok()?;
    u16::try_from(height).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An SPS NAL unit (header 0x67) of a 64x64 High-profile stream, with
    /// its emulation prevention bytes (the two 0x03 after 0x00 0x00).
    const SPS_64: &[u8] = &[
        0x67, 0x64, 0x00, 0x0A, 0xAC, 0x72, 0x84, 0x44, 0x26, 0x84, 0x00, 0x00, 0x03, 0x00, 0x04,
        0x00, 0x00, 0x03, 0x00, 0xCA, 0x3C, 0x48, 0x96, 0x11, 0x80,
    ];
    const PPS: &[u8] = &[0x68, 0xEE, 0x3C, 0x80];
    const IDR_START: &[u8] = &[0x65, 0x88, 0x84, 0x00];
    const NON_IDR: &[u8] = &[0x41, 0x9A, 0x02];

    fn stap_a(units: &[&[u8]]) -> Vec<u8> {
        let mut payload = vec![0x78]; // F=0, NRI=3, type 24
        for unit in units {
            payload.extend_from_slice(&u16::try_from(unit.len()).unwrap().to_be_bytes());
            payload.extend_from_slice(unit);
        }
        payload
    }

    #[test]
    fn an_sps_and_its_picture_height_start_a_keyframe() {
        assert_eq!(keyframe(SPS_64), Some(Keyframe { height: Some(64) }));
        assert_eq!(
            keyframe(&stap_a(&[SPS_64, PPS])),
            Some(Keyframe { height: Some(64) })
        );
        assert_eq!(
            keyframe(&stap_a(&[SPS_64, PPS, IDR_START])),
            Some(Keyframe { height: Some(64) })
        );
    }

    #[test]
    fn an_idr_slice_starts_a_keyframe_only_at_its_first_fragment() {
        assert_eq!(keyframe(IDR_START), Some(Keyframe { height: None }));
        // FU-A: indicator (NRI 3, type 28), header (S, E, type).
        let first = [0x7C, 0x80 | IDR_SLICE, 0x88, 0x84];
        let middle = [0x7C, IDR_SLICE, 0x01, 0x02];
        assert_eq!(keyframe(&first), Some(Keyframe { height: None }));
        assert_eq!(keyframe(&middle), None);
    }

    #[test]
    fn other_pictures_and_parameter_sets_alone_are_not_keyframes() {
        assert_eq!(keyframe(NON_IDR), None);
        assert_eq!(keyframe(PPS), None);
        assert_eq!(keyframe(&stap_a(&[PPS, NON_IDR])), None);
        let first_of_other = [0x7C, 0x80 | 1, 0x9A];
        assert_eq!(keyframe(&first_of_other), None);
    }

    #[test]
    fn malformed_payloads_are_not_keyframes_and_never_panic() {
        assert_eq!(keyframe(&[]), None);
        assert_eq!(keyframe(&[0x7C]), None); // FU-A without its header
        // A STAP-A whose size runs past the end, and one cut inside a size.
        assert_eq!(keyframe(&[0x78, 0x00, 0x40, 0x67]), None);
        assert_eq!(keyframe(&[0x78, 0x00]), None);
        // An SPS that cannot be read is still a keyframe, of unknown size.
        assert_eq!(keyframe(&[0x67, 0xFF]), Some(Keyframe { height: None }));
    }

    proptest::proptest! {
        #[test]
        fn any_payload_is_parsed_without_panicking(payload in proptest::collection::vec(proptest::num::u8::ANY, 0..64)) {
            let _ = keyframe(&payload);
        }
    }
}
