//! What the SFU reads and rewrites in a VP8 RTP payload (RFC 7741): whether
//! a packet starts a keyframe, the frame size a keyframe declares, and the
//! picture ID and TL0PICIDX of the payload descriptor.
//!
//! Switching a subscriber between simulcast layers (separate encoders)
//! must happen on a keyframe, and the picture IDs and TL0PICIDX of the new
//! layer must continue the old one's: a receiver's reference finder treats
//! a picture ID that jumps back as an old frame and drops it (a frozen
//! picture). [`Descriptor::rewrite`] writes them in place; nothing else in
//! the payload changes and its length never does.
//!
//! Parsing never panics: a payload too short for what its bits announce is
//! [`Vp8Error::Truncated`].

/// Why a payload could not be read.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum Vp8Error {
    /// Shorter than its descriptor says it is.
    #[error("the VP8 payload is truncated")]
    Truncated,
}

/// Where the payload descriptor's fields are, and what they say.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Descriptor {
    /// The packet starts a frame (S set, partition 0).
    pub starts_frame: bool,
    /// The frame it starts is a keyframe (only meaningful with `starts_frame`).
    pub keyframe: bool,
    /// The keyframe's width and height, when this packet starts one.
    pub size: Option<(u16, u16)>,
    /// The picture ID and whether it is the 15-bit form, with its offset.
    picture_id: Option<(u16, bool, usize)>,
    /// TL0PICIDX and its offset.
    tl0_pic_idx: Option<(u8, usize)>,
}

impl Descriptor {
    /// Reads the descriptor and, for the first packet of a frame, the VP8
    /// payload header after it.
    ///
    /// # Errors
    /// When the payload is shorter than its bits say.
    pub fn parse(payload: &[u8]) -> Result<Self, Vp8Error> {
        let first = *payload.first().ok_or(Vp8Error::Truncated)?;
        let extended = first & 0x80 != 0;
        let start = first & 0x10 != 0;
        let partition = first & 0x07;
        let mut at = 1;
        let mut picture_id = None;
        let mut tl0_pic_idx = None;
        if extended {
            let flags = *payload.get(at).ok_or(Vp8Error::Truncated)?;
            at += 1;
            let (has_picture_id, has_tl0, has_tid_or_key) =
                (flags & 0x80 != 0, flags & 0x40 != 0, flags & 0x30 != 0);
            if has_picture_id {
                let high = *payload.get(at).ok_or(Vp8Error::Truncated)?;
                if high & 0x80 != 0 {
                    let low = *payload.get(at + 1).ok_or(Vp8Error::Truncated)?;
                    picture_id = Some((u16::from(high & 0x7f) << 8 | u16::from(low), true, at));
                    at += 2;
                } else {
                    picture_id = Some((u16::from(high), false, at));
                    at += 1;
                }
            }
            if has_tl0 {
                tl0_pic_idx = Some((*payload.get(at).ok_or(Vp8Error::Truncated)?, at));
                at += 1;
            }
            if has_tid_or_key {
                at += 1;
            }
        }
        let starts_frame = start && partition == 0;
        let header = payload.get(at..).ok_or(Vp8Error::Truncated)?;
        let (keyframe, size) = if starts_frame {
            let tag = *header.first().ok_or(Vp8Error::Truncated)?;
            // RFC 6386 §9.1: the frame tag's lowest bit is 0 for a keyframe,
            // which then carries a start code and its dimensions.
            let keyframe = tag & 0x01 == 0;
            let size = if keyframe && header.len() >= 10 && header[3..6] == [0x9d, 0x01, 0x2a] {
                let width = u16::from_le_bytes([header[6], header[7]]) & 0x3fff;
                let height = u16::from_le_bytes([header[8], header[9]]) & 0x3fff;
                Some((width, height))
            } else {
                None
            };
            (keyframe, size)
        } else {
            (false, None)
        };
        Ok(Self {
            starts_frame,
            keyframe: starts_frame && keyframe,
            size,
            picture_id,
            tl0_pic_idx,
        })
    }

    /// The picture ID, if the descriptor has one.
    pub fn picture_id(&self) -> Option<u16> {
        self.picture_id.map(|(id, _, _)| id)
    }

    /// The TL0PICIDX, if the descriptor has one.
    pub fn tl0_pic_idx(&self) -> Option<u8> {
        self.tl0_pic_idx.map(|(idx, _)| idx)
    }

    /// Writes `picture_id` (modulo the field's width) and `tl0_pic_idx` into
    /// `payload`, the one this descriptor was parsed from, where it has
    /// those fields.
    pub fn rewrite(&self, payload: &mut [u8], picture_id: u16, tl0_pic_idx: u8) {
        if let Some((_, long, at)) = self.picture_id {
            if long {
                let id = picture_id & 0x7fff;
                payload[at] = 0x80 | (id >> 8) as u8;
                payload[at + 1] = (id & 0xff) as u8;
            } else {
                payload[at] = (picture_id & 0x7f) as u8;
            }
        }
        if let Some((_, at)) = self.tl0_pic_idx {
            payload[at] = tl0_pic_idx;
        }
    }
}

/// Keeps one outgoing video track's picture IDs and TL0PICIDX continuous
/// across its sources (simulcast layers): within a source a fixed offset,
/// at a switch the new source's first frame follows the last one sent.
#[derive(Debug, Clone, Copy, Default)]
pub struct PictureNumbering {
    offsets: Option<(u16, u8)>,
    /// The last picture ID and TL0PICIDX sent (output numbering).
    last: (u16, u8),
}

impl PictureNumbering {
    /// The output picture ID and TL0PICIDX for a packet whose descriptor
    /// is `descriptor`; `switched`: the packet is the first of a new source
    /// (see [`crate::rewrite::Rewriter`]). `None` when the descriptor has
    /// neither field.
    pub fn map(&mut self, descriptor: &Descriptor, switched: bool) -> Option<(u16, u8)> {
        let (id, tl0) = (descriptor.picture_id(), descriptor.tl0_pic_idx());
        if id.is_none() && tl0.is_none() {
            return None;
        }
        let (id, tl0) = (id.unwrap_or(0), tl0.unwrap_or(0));
        let offsets = match self.offsets {
            Some(offsets) if !switched => offsets,
            Some(_) => {
                let next = (self.last.0.wrapping_add(1), self.last.1.wrapping_add(1));
                let offsets = (next.0.wrapping_sub(id), next.1.wrapping_sub(tl0));
                self.offsets = Some(offsets);
                offsets
            }
            None => *self.offsets.insert((0, 0)),
        };
        let out = (
            id.wrapping_add(offsets.0) & 0x7fff,
            tl0.wrapping_add(offsets.1),
        );
        self.last = out;
        Some(out)
    }

    /// Whether any rewriting is needed (a switch happened).
    pub fn shifted(&self) -> bool {
        self.offsets.is_some_and(|offsets| offsets != (0, 0))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A first packet of a keyframe of `width`×`height` with a 15-bit
    /// picture ID and a TL0PICIDX, as Chrome sends them.
    fn keyframe(picture_id: u16, tl0: u8, width: u16, height: u16) -> Vec<u8> {
        let mut payload = vec![
            0x90,
            0xe0,
            0x80 | (picture_id >> 8) as u8,
            picture_id as u8,
            tl0,
            0x20,
        ];
        // Frame tag (keyframe, shown), start code, dimensions.
        payload.extend_from_slice(&[0x50, 0x42, 0x00, 0x9d, 0x01, 0x2a]);
        payload.extend_from_slice(&width.to_le_bytes());
        payload.extend_from_slice(&height.to_le_bytes());
        payload.extend_from_slice(&[0u8; 20]);
        payload
    }

    #[test]
    fn a_keyframe_is_recognised_with_its_size_and_numbers() {
        let payload = keyframe(0x1234, 7, 1280, 720);
        let descriptor = Descriptor::parse(&payload).unwrap();
        assert!(descriptor.starts_frame && descriptor.keyframe);
        assert_eq!(descriptor.size, Some((1280, 720)));
        assert_eq!(descriptor.picture_id(), Some(0x1234));
        assert_eq!(descriptor.tl0_pic_idx(), Some(7));
    }

    #[test]
    fn delta_frames_and_continuation_packets_are_not_keyframes() {
        let mut delta = keyframe(5, 1, 640, 360);
        delta[6] |= 0x01;
        let descriptor = Descriptor::parse(&delta).unwrap();
        assert!(descriptor.starts_frame && !descriptor.keyframe);
        assert_eq!(descriptor.size, None);
        let mut continuation = keyframe(5, 1, 640, 360);
        continuation[0] &= !0x10;
        assert!(!Descriptor::parse(&continuation).unwrap().keyframe);
        // No extension at all: a plain keyframe start.
        let plain = [
            0x10, 0x00, 0x00, 0x00, 0x9d, 0x01, 0x2a, 0x40, 0x01, 0xb4, 0x00,
        ];
        let descriptor = Descriptor::parse(&plain).unwrap();
        assert!(descriptor.keyframe);
        assert_eq!(descriptor.size, Some((320, 180)));
        assert_eq!(descriptor.picture_id(), None);
    }

    #[test]
    fn truncated_payloads_are_errors_never_panics() {
        for payload in [
            &[][..],
            &[0x80],
            &[0x90, 0x80],
            &[0x90, 0x80, 0x81],
            &[0x90, 0x40],
            &[0x10],
        ] {
            assert_eq!(
                Descriptor::parse(payload),
                Err(Vp8Error::Truncated),
                "{payload:?}"
            );
        }
    }

    #[test]
    fn rewriting_changes_only_the_numbers() {
        let mut payload = keyframe(0x7ffe, 200, 320, 180);
        let original = payload.clone();
        let descriptor = Descriptor::parse(&payload).unwrap();
        descriptor.rewrite(&mut payload, 0x0102, 9);
        let again = Descriptor::parse(&payload).unwrap();
        assert_eq!(again.picture_id(), Some(0x0102));
        assert_eq!(again.tl0_pic_idx(), Some(9));
        assert_eq!(payload.len(), original.len());
        assert_eq!(payload[5..], original[5..]);
    }

    #[test]
    fn numbering_continues_across_a_switch() {
        let mut numbering = PictureNumbering::default();
        let low = |id, tl0| Descriptor::parse(&keyframe(id, tl0, 320, 180)).unwrap();
        let high = |id, tl0| Descriptor::parse(&keyframe(id, tl0, 1280, 720)).unwrap();
        assert_eq!(numbering.map(&low(100, 10), false), Some((100, 10)));
        assert!(!numbering.shifted());
        assert_eq!(numbering.map(&low(101, 11), false), Some((101, 11)));
        // The high layer's encoder numbers on its own.
        assert_eq!(numbering.map(&high(30_000, 250), true), Some((102, 12)));
        assert!(numbering.shifted());
        assert_eq!(numbering.map(&high(30_001, 251), false), Some((103, 13)));
        // Picture IDs wrap at 15 bits.
        let mut wrapping = PictureNumbering::default();
        assert_eq!(wrapping.map(&low(0x7fff, 0), false), Some((0x7fff, 0)));
        assert_eq!(wrapping.map(&low(0, 1), false), Some((0, 1)));
    }
}
