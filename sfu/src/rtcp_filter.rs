//! The RTCP that crosses the engine: what the SFU tells publishers and
//! what it hears from subscribers. An interceptor, one per connection, on
//! the wire side of the receiver-report generator (so it sees its output).
//!
//! **Outward: keeps browsers tagging their simulcast layers**, so that a
//! renegotiated connection still knows them. A browser's simulcast layers
//! are named only by the RTP stream id (RID) header extension on their
//! packets: the SDP declares no SSRCs for them. The engine (rtc 0.21) binds
//! a layer's SSRC from the RID of its first packets, and forgets every such
//! binding whenever a remote description is applied, which the SFU does
//! each time it renegotiates to add or stop another participant's tracks.
//! Chromium (libwebrtc `RTPSender`) stops putting MID and RID on a stream's
//! packets as soon as a reception report block acknowledges that SSRC, so
//! after the first report and the next renegotiation nothing could name the
//! layer again and the engine dropped all of its packets
//! (`docs/sfu-engine-notes.md` §8). So the report blocks of simulcast
//! layers (streams whose packets carry a RID) are withheld from the SFU's
//! RTCP: the browser never sees them acknowledged and goes on tagging every
//! packet (a few bytes each). The publisher loses nothing it steers by: its
//! congestion control reads loss and delay from the transport-wide feedback
//! the SFU sends on every packet, and its round-trip time from the report
//! blocks of its audio, which stay. Streams without a RID (audio, a single
//! video encoding, whose SSRC the SDP declares) are reported as before.
//!
//! **Inward: lets keyframe requests through.** The engine's chain ends in a
//! terminus that stops all inbound RTCP not marked for the application, so
//! without this a subscriber's picture loss indication or full intra
//! request never reached the SFU, and a decoder that lost its picture
//! waited for the publisher's next periodic keyframe. Compound packets
//! holding a PLI or FIR are marked; the rest (reports, NACKs, transport
//! feedback) stay with the interceptors that act on them.
//!
//! Invariants: a report block is withheld only for an SSRC whose first
//! packet since it was (re)bound carried a RID; a compound packet left with
//! nothing in it is dropped rather than sent empty (the engine reserves an
//! empty RTCP list).

use std::collections::{HashMap, HashSet, VecDeque};
use std::time::Instant;

use rtc::interceptor::{Attribute, Interceptor, Packet, StreamInfo, TaggedPacket};
use rtc::rtcp::payload_feedbacks::full_intra_request::FullIntraRequest;
use rtc::rtcp::payload_feedbacks::picture_loss_indication::PictureLossIndication;
use rtc::rtcp::receiver_report::ReceiverReport;
use rtc::rtcp::sender_report::SenderReport;
use rtc::sansio::Protocol;
use rtc::shared::error::Error;

/// The RTP stream id header extension (RFC 8852).
const RID_URI: &str = "urn:ietf:params:rtp-hdrext:sdes:rtp-stream-id";

/// The interceptor; one per peer connection (see the module header).
#[derive(Default)]
pub struct RtcpFilter {
    /// Video streams bound but not yet seen: the RID extension id their
    /// first packet is checked for.
    undecided: HashMap<u32, u8>,
    /// Streams whose packets carry a RID: never acknowledged.
    layers: HashSet<u32>,
    reads: VecDeque<TaggedPacket>,
    writes: VecDeque<TaggedPacket>,
}

impl RtcpFilter {
    /// Whether the SSRC is a simulcast layer (its reports are withheld).
    #[must_use]
    pub fn is_layer(&self, ssrc: u32) -> bool {
        self.layers.contains(&ssrc)
    }

    fn observe(&mut self, header: &rtc::rtp::header::Header) {
        if let Some(rid_id) = self.undecided.remove(&header.ssrc)
            && header.get_extension(rid_id).is_some()
        {
            self.layers.insert(header.ssrc);
        }
    }

    /// The packets of a compound RTCP packet, without the report blocks
    /// of layers; packets left with nothing to say are left out.
    fn without_layer_reports(
        &self,
        packets: Vec<Box<dyn rtc::rtcp::Packet>>,
    ) -> Vec<Box<dyn rtc::rtcp::Packet>> {
        let mut kept: Vec<Box<dyn rtc::rtcp::Packet>> = Vec::with_capacity(packets.len());
        for packet in packets {
            if let Some(report) = packet.as_any().downcast_ref::<ReceiverReport>() {
                if report.reports.iter().any(|block| self.is_layer(block.ssrc)) {
                    let mut report = report.clone();
                    report.reports.retain(|block| !self.is_layer(block.ssrc));
                    // A receiver report with no blocks says nothing (its
                    // extensions aside, which the SFU does not send).
                    if !report.reports.is_empty() || !report.profile_extensions.is_empty() {
                        kept.push(Box::new(report));
                    }
                    continue;
                }
            } else if let Some(report) = packet.as_any().downcast_ref::<SenderReport>()
                && report.reports.iter().any(|block| self.is_layer(block.ssrc))
            {
                let mut report = report.clone();
                report.reports.retain(|block| !self.is_layer(block.ssrc));
                kept.push(Box::new(report));
                continue;
            }
            kept.push(packet);
        }
        kept
    }
}

/// Whether an RTCP packet asks for a keyframe (PLI or FIR).
fn is_keyframe_request(packet: &dyn rtc::rtcp::Packet) -> bool {
    let any = packet.as_any();
    any.is::<PictureLossIndication>() || any.is::<FullIntraRequest>()
}

impl Protocol<TaggedPacket, TaggedPacket, ()> for RtcpFilter {
    type Rout = TaggedPacket;
    type Wout = TaggedPacket;
    type Eout = ();
    type Error = Error;
    type Time = Instant;

    fn handle_read(&mut self, mut msg: TaggedPacket) -> Result<(), Self::Error> {
        match &msg.message.packet {
            Packet::Rtp(packet) if !self.undecided.is_empty() => self.observe(&packet.header),
            Packet::Rtcp(packets)
                if packets
                    .iter()
                    .any(|packet| is_keyframe_request(packet.as_ref())) =>
            {
                msg.message.add(Attribute::DeliverToApplication);
            }
            _ => {}
        }
        self.reads.push_back(msg);
        Ok(())
    }

    fn poll_read(&mut self) -> Option<Self::Rout> {
        self.reads.pop_front()
    }

    fn handle_write(&mut self, mut msg: TaggedPacket) -> Result<(), Self::Error> {
        if !self.layers.is_empty()
            && let Packet::Rtcp(packets) = &mut msg.message.packet
        {
            let kept = self.without_layer_reports(std::mem::take(packets));
            if kept.is_empty() {
                return Ok(());
            }
            *packets = kept;
        }
        self.writes.push_back(msg);
        Ok(())
    }

    fn poll_write(&mut self) -> Option<Self::Wout> {
        self.writes.pop_front()
    }
}

impl Interceptor for RtcpFilter {
    fn bind_local_stream(&mut self, _info: &StreamInfo) {}

    fn unbind_local_stream(&mut self, _info: &StreamInfo) {}

    /// A video stream that negotiated the RID extension is decided by its
    /// first packet. A layer bound again (after a renegotiation) stays a
    /// layer: its packets still carry their RID, since it was never
    /// acknowledged.
    fn bind_remote_stream(&mut self, info: &StreamInfo) {
        if self.layers.contains(&info.ssrc) || !info.mime_type.starts_with("video/") {
            return;
        }
        if let Some(id) = info
            .rtp_header_extensions
            .iter()
            .find(|extension| extension.uri == RID_URI)
            .and_then(|extension| u8::try_from(extension.id).ok())
        {
            self.undecided.insert(info.ssrc, id);
        }
    }

    fn unbind_remote_stream(&mut self, info: &StreamInfo) {
        self.undecided.remove(&info.ssrc);
        self.layers.remove(&info.ssrc);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rtc::interceptor::{AttributedPacket, RTPHeaderExtension};
    use rtc::rtcp::reception_report::ReceptionReport;
    use rtc::shared::TransportContext;

    const RID_ID: u8 = 10;

    fn tagged(packet: Packet) -> TaggedPacket {
        TaggedPacket {
            now: Instant::now(),
            transport: TransportContext::default(),
            message: AttributedPacket::new(packet),
        }
    }

    fn video_stream(ssrc: u32) -> StreamInfo {
        StreamInfo {
            ssrc,
            mime_type: "video/VP8".to_owned(),
            clock_rate: 90_000,
            rtp_header_extensions: vec![RTPHeaderExtension {
                uri: RID_URI.to_owned(),
                id: u16::from(RID_ID),
            }],
            ..Default::default()
        }
    }

    fn rtp(ssrc: u32, rid: Option<&'static [u8]>) -> TaggedPacket {
        let mut packet = rtc::rtp::Packet::default();
        packet.header.ssrc = ssrc;
        if let Some(rid) = rid {
            packet
                .header
                .set_extension(RID_ID, bytes::Bytes::from_static(rid))
                .expect("extension");
        }
        tagged(Packet::Rtp(packet))
    }

    fn receiver_report(ssrcs: &[u32]) -> TaggedPacket {
        tagged(Packet::Rtcp(vec![Box::new(ReceiverReport {
            ssrc: 1,
            reports: ssrcs
                .iter()
                .map(|&ssrc| ReceptionReport {
                    ssrc,
                    ..Default::default()
                })
                .collect(),
            ..Default::default()
        })]))
    }

    /// The SSRCs the report blocks that leave the interceptor are about.
    fn sent_blocks(filter: &mut RtcpFilter, report: TaggedPacket) -> Option<Vec<u32>> {
        filter.handle_write(report).expect("write");
        let sent = filter.poll_write()?;
        let Packet::Rtcp(packets) = sent.message.packet else {
            panic!("not RTCP");
        };
        Some(
            packets
                .iter()
                .filter_map(|p| p.as_any().downcast_ref::<ReceiverReport>())
                .flat_map(|r| r.reports.iter().map(|b| b.ssrc))
                .collect(),
        )
    }

    fn read(filter: &mut RtcpFilter, packet: TaggedPacket) {
        filter.handle_read(packet).expect("read");
        assert!(filter.poll_read().is_some(), "every packet read passes");
    }

    #[test]
    fn a_layer_is_not_acknowledged_and_other_streams_are() {
        let mut filter = RtcpFilter::default();
        filter.bind_remote_stream(&video_stream(100)); // a simulcast layer
        filter.bind_remote_stream(&video_stream(200)); // one encoding, no RID
        read(&mut filter, rtp(100, Some(b"h")));
        read(&mut filter, rtp(200, None));
        assert!(filter.is_layer(100));
        assert!(!filter.is_layer(200));
        assert_eq!(
            sent_blocks(&mut filter, receiver_report(&[100, 200, 300])),
            Some(vec![200, 300])
        );
    }

    #[test]
    fn a_report_about_layers_only_is_not_sent() {
        let mut filter = RtcpFilter::default();
        filter.bind_remote_stream(&video_stream(100));
        read(&mut filter, rtp(100, Some(b"l")));
        assert_eq!(sent_blocks(&mut filter, receiver_report(&[100])), None);
    }

    #[test]
    fn a_layer_bound_again_after_renegotiation_stays_a_layer() {
        let mut filter = RtcpFilter::default();
        filter.bind_remote_stream(&video_stream(100));
        read(&mut filter, rtp(100, Some(b"m")));
        filter.bind_remote_stream(&video_stream(100));
        read(&mut filter, rtp(100, Some(b"m")));
        assert!(filter.is_layer(100));
        filter.unbind_remote_stream(&video_stream(100));
        assert!(!filter.is_layer(100));
    }

    #[test]
    fn audio_is_never_taken_for_a_layer() {
        let mut filter = RtcpFilter::default();
        let mut audio = video_stream(100);
        audio.mime_type = "audio/opus".to_owned();
        filter.bind_remote_stream(&audio);
        read(&mut filter, rtp(100, Some(b"h")));
        assert!(!filter.is_layer(100));
    }

    /// Whether inbound RTCP gets past the engine's terminus to the SFU.
    fn delivered(packets: Vec<Box<dyn rtc::rtcp::Packet>>) -> bool {
        let mut filter = RtcpFilter::default();
        filter
            .handle_read(tagged(Packet::Rtcp(packets)))
            .expect("read");
        let read = filter.poll_read().expect("every packet read passes");
        read.message.has(&Attribute::DeliverToApplication)
    }

    #[test]
    fn keyframe_requests_reach_the_sfu_and_reports_stay_in_the_engine() {
        let pli = PictureLossIndication {
            sender_ssrc: 1,
            media_ssrc: 2,
        };
        let fir = FullIntraRequest {
            sender_ssrc: 1,
            media_ssrc: 0,
            fir: vec![],
        };
        let report = || -> Box<dyn rtc::rtcp::Packet> { Box::new(ReceiverReport::default()) };
        assert!(delivered(vec![report(), Box::new(pli)]));
        assert!(delivered(vec![Box::new(fir)]));
        assert!(!delivered(vec![report()]));
    }
}
