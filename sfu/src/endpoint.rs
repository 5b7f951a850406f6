//! One UDP socket serving every peer connection (`ARCHITECTURE.md` §3a).
//!
//! The `rtc` engine is sans-IO: each [`RTCPeerConnection`] is a state
//! machine fed datagrams and timer ticks, and asked for datagrams to send,
//! events and media. The endpoint owns the socket and the loop: it answers
//! a browser's offer with a connection whose ICE ufrag it chose (so
//! [`Router`] can find it), routes every datagram that arrives, sends what
//! the connections write, drives their timers, and hands their events and
//! media on as [`Event`]s.
//!
//! Every connection advertises the same host candidate: the socket's port
//! at the announced address (the clinic's public address behind 1:1 NAT, or
//! the bound one). Invariant: a connection is fed only datagrams the
//! router assigned to it.
//!
//! Only the connections something happened to (a datagram, a timer, a call
//! on them) are polled for output, and each connection's next timer is
//! cached, so a forwarded packet polls its publisher's and its subscribers'
//! connections and no other (finding the earliest timer still looks at
//! every connection's cached instant once per turn of the loop).

use std::collections::{HashMap, HashSet};
use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::time::Instant;

use bytes::BytesMut;
use prometheus::Histogram;
use rtc::ice::mdns::MulticastDnsMode;
use rtc::interceptor::{Registry, Slot};
use rtc::media_stream::MediaStreamTrack;
use rtc::peer_connection::RTCPeerConnection;
use rtc::peer_connection::RTCPeerConnectionBuilder;
use rtc::peer_connection::configuration::RTCConfigurationBuilder;
use rtc::peer_connection::configuration::interceptor_registry::{
    configure_nack, configure_rtcp_reports, configure_simulcast_extension_headers,
    configure_twcc_receiver_only,
};
use rtc::peer_connection::configuration::media_engine::MediaEngine;
use rtc::peer_connection::configuration::setting_engine::SettingEngineBuilder;
use rtc::peer_connection::event::{RTCPeerConnectionEvent, RTCTrackEvent};
use rtc::peer_connection::message::{RTCMessage, TaggedRTCMessage};
use rtc::peer_connection::sdp::RTCSessionDescription;
use rtc::peer_connection::state::RTCPeerConnectionState;
use rtc::peer_connection::transport::{
    CandidateConfig, CandidateHostConfig, RTCDtlsRole, RTCIceCandidate, RTCIceCandidateInit,
};
use rtc::rtcp::payload_feedbacks::full_intra_request::FullIntraRequest;
use rtc::rtcp::payload_feedbacks::picture_loss_indication::PictureLossIndication;
use rtc::rtp_transceiver::rtp_sender::{
    RTCRtpCodec, RTCRtpCodingParameters, RTCRtpEncodingParameters, RTCRtpHeaderExtensionCapability,
    RTCRtpRtxParameters, RtpCodecKind,
};
use rtc::rtp_transceiver::{
    RTCRtpReceiverId, RTCRtpSenderId, RTCRtpTransceiverDirection, RTCRtpTransceiverInit,
};
use rtc::sansio::Protocol as _;
use rtc::shared::{TaggedBytesMut, TransportContext, TransportProtocol};
use tokio::net::UdpSocket;

use crate::demux::Router;
use crate::rewrite::Rewriter;
use crate::rtcp_filter::RtcpFilter;

/// Names one peer connection of this endpoint.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct PeerId(pub u64);

/// What the endpoint's connections report.
#[derive(Debug)]
pub enum Event {
    /// The connection's ICE and DTLS are up: media can flow.
    Connected(PeerId),
    /// The connection failed or closed; it has been removed.
    Gone(PeerId),
    /// The remote side started sending a track (its first packet came).
    Track {
        /// Which connection.
        peer: PeerId,
        /// The engine's id of the track (as in [`Event::Rtp`]).
        track: String,
        /// Audio or video.
        kind: RtpCodecKind,
        /// The codec its first packet used.
        codec: RTCRtpCodec,
        /// The SSRC of its first packet.
        ssrc: u32,
        /// The simulcast layer's RTP stream id, if it is one.
        rid: Option<String>,
    },
    /// The remote side asked for a keyframe (PLI or FIR) on an outgoing track.
    KeyframeWanted {
        /// Which connection.
        peer: PeerId,
        /// Which outgoing track.
        sender: RTCRtpSenderId,
    },
    /// An RTP packet from the connection's remote side (decrypted).
    Rtp {
        /// Which connection.
        peer: PeerId,
        /// The engine's id of the track it belongs to.
        track: String,
        /// The packet.
        packet: rtc::rtp::Packet,
        /// When the datagram that carried it was read from the socket (for
        /// [`Endpoint::forward`]'s delay measurement).
        received_at: Instant,
        /// The audio level the publisher measured (RFC 6464: −dBov, 0–127),
        /// when the packet carries one.
        audio_level: Option<u8>,
    },
}

/// The RTP header extension carrying a frame's audio level (RFC 6464).
pub const AUDIO_LEVEL_URI: &str = "urn:ietf:params:rtp-hdrext:ssrc-audio-level";

/// Why the endpoint could not do what was asked.
#[derive(Debug, thiserror::Error)]
pub enum EndpointError {
    /// The socket failed.
    #[error("socket: {0}")]
    Socket(#[from] std::io::Error),
    /// The engine refused (a bad offer, for example).
    #[error("webrtc: {0}")]
    Engine(#[from] rtc::shared::error::Error),
    /// Bound to every interface with no address to announce.
    #[error("bound to an unspecified address: configure the address to announce")]
    Unannounced,
    /// The engine produced no local description.
    #[error("no local description after the answer")]
    NoAnswer,
    /// No such connection (closed, or never opened here).
    #[error("no connection {0:?}")]
    NoPeer(PeerId),
    /// No such outgoing track on the connection.
    #[error("no outgoing track on that connection")]
    NoSender,
    /// The outgoing track's codec was not negotiated with the remote side.
    #[error("the remote side did not accept the track's codec")]
    CodecNotNegotiated,
}

/// What forwarding on one outgoing track needs besides the engine.
struct Outgoing {
    /// Sequence numbers and timestamps (see [`crate::rewrite`]).
    numbering: Rewriter,
    /// The SSRC chosen for it (keyframe requests name it).
    ssrc: u32,
    /// The track's SSRC and negotiated payload type, looked up on the first
    /// packet after each negotiation rather than on every packet.
    header: Option<(u32, u8)>,
    /// VP8: picture IDs continuous across the sources forwarded on it.
    pictures: Option<crate::vp8::PictureNumbering>,
}

/// The connection `peer` among `peers`, marked as touched: whatever is
/// done with it may make it write, time or report something.
fn connection<'a>(
    peers: &'a mut HashMap<PeerId, RTCPeerConnection>,
    touched: &mut HashSet<PeerId>,
    peer: PeerId,
) -> Result<&'a mut RTCPeerConnection, EndpointError> {
    let pc = peers.get_mut(&peer).ok_or(EndpointError::NoPeer(peer))?;
    touched.insert(peer);
    Ok(pc)
}

/// Kernel buffer asked for each direction of the media socket. Linux's
/// default (208 KiB) holds about 7 ms of 50 visits' media: a pause of the
/// loop that long (a burst of DTLS handshakes) dropped packets. Linux caps
/// the request at `net.core.rmem_max` / `wmem_max`.
const SOCKET_BUFFER_BYTES: usize = 4 << 20;

/// The media socket, non-blocking, with large kernel buffers.
fn media_socket(bind: SocketAddr) -> std::io::Result<UdpSocket> {
    use socket2::{Domain, Protocol, Socket, Type};
    let socket = Socket::new(Domain::for_address(bind), Type::DGRAM, Some(Protocol::UDP))?;
    if let Err(error) = socket.set_recv_buffer_size(SOCKET_BUFFER_BYTES) {
        tracing::warn!(%error, "cannot enlarge the media socket's receive buffer");
    }
    if let Err(error) = socket.set_send_buffer_size(SOCKET_BUFFER_BYTES) {
        tracing::warn!(%error, "cannot enlarge the media socket's send buffer");
    }
    socket.set_nonblocking(true)?;
    socket.bind(&bind.into())?;
    UdpSocket::from_std(socket.into())
}

/// Datagrams read from the socket in one go before the connections they
/// went to are polled (a video frame arrives as a burst of packets).
const READ_BATCH: usize = 32;

/// Room for the largest datagram the SFU accepts (browsers keep RTP under
/// about 1200 bytes; a bigger datagram is cut short and fails its checks).
const MAX_DATAGRAM: usize = 2048;

/// The receive buffer, empty, with room for one datagram.
fn reserve_datagram(buffer: &mut BytesMut) -> &mut BytesMut {
    debug_assert!(buffer.is_empty(), "each datagram is split off");
    buffer.reserve(MAX_DATAGRAM);
    buffer
}

/// The SSRC and the payload type negotiated for its codec of an outgoing track.
fn outgoing_header(
    pc: &mut RTCPeerConnection,
    sender: RTCRtpSenderId,
) -> Result<(u32, u8), EndpointError> {
    let mut rtp_sender = pc.rtp_sender(sender).ok_or(EndpointError::NoSender)?;
    let track = rtp_sender.track();
    let ssrc = track.ssrcs().next().ok_or(EndpointError::NoSender)?;
    let (mime, fmtp) = track
        .codec(ssrc)
        .map(|codec| (codec.mime_type.clone(), codec.sdp_fmtp_line.clone()))
        .ok_or(EndpointError::NoSender)?;
    let codecs = &rtp_sender.get_parameters().rtp_parameters.codecs;
    let same_codec = codecs
        .iter()
        .filter(|codec| codec.rtp_codec.mime_type.eq_ignore_ascii_case(&mime));
    // Of several payload types for the codec (H.264's profiles and
    // packetization modes), the one whose format parameters match; else
    // the first.
    let payload_type = same_codec
        .clone()
        .find(|codec| same_format(&codec.rtp_codec.sdp_fmtp_line, &fmtp))
        .or_else(|| same_codec.clone().next())
        .map(|codec| codec.payload_type)
        .ok_or(EndpointError::CodecNotNegotiated)?;
    Ok((ssrc, payload_type))
}

/// Whether two `a=fmtp` lines describe the same stream format: the same
/// packetization mode and H.264 profile (`profile-level-id`'s first two
/// bytes; the level may differ, RFC 6184 §8.2.2), and otherwise the same
/// parameters.
fn same_format(a: &str, b: &str) -> bool {
    fn parameters(line: &str) -> Vec<(String, String)> {
        let mut parameters: Vec<(String, String)> = line
            .split(';')
            .filter_map(|pair| {
                let (key, value) = pair.split_once('=')?;
                let key = key.trim().to_ascii_lowercase();
                let value = value.trim().to_ascii_lowercase();
                match key.as_str() {
                    "profile-level-id" => Some((key, value.chars().take(4).collect())),
                    "level-asymmetry-allowed" => None,
                    _ => Some((key, value)),
                }
            })
            .collect();
        // Absent, H.264's packetization mode is 0 (RFC 6184 §8.1).
        if !parameters
            .iter()
            .any(|(key, _)| key == "packetization-mode")
        {
            parameters.push(("packetization-mode".to_owned(), "0".to_owned()));
        }
        parameters.sort();
        parameters
    }
    parameters(a) == parameters(b)
}

/// Whether connections run the engine's RTCP feedback: NACK (asking
/// publishers again for lost packets, resending to subscribers from a
/// buffer), RTCP sender and receiver reports and transport-wide congestion
/// feedback to publishers.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RtcpFeedback {
    /// What calls need.
    On,
    /// Only to measure what the engine costs without it (see
    /// `docs/sfu-engine-notes.md` §7): lost packets stay lost, and
    /// browsers' bandwidth estimates stay low, so they send less and fewer
    /// simulcast layers. Keyframe requests are still relayed.
    OffForMeasurement,
}

/// The SFU's socket and its connections.
pub struct Endpoint {
    socket: UdpSocket,
    /// The address every connection advertises and the engine is told it
    /// receives on (the engine matches it against its host candidate).
    advertised: SocketAddr,
    router: Router<PeerId>,
    peers: HashMap<PeerId, RTCPeerConnection>,
    /// Each outgoing track's numbering and header (see `forward`).
    outgoing: HashMap<(PeerId, RTCRtpSenderId), Outgoing>,
    /// Each incoming stream's receiver, by SSRC (keyframe requests go there).
    incoming: HashMap<(PeerId, u32), RTCRtpReceiverId>,
    /// The header extension id negotiated for audio levels, by incoming
    /// audio stream.
    audio_level_ids: HashMap<(PeerId, u32), u8>,
    next_id: u64,
    events: std::collections::VecDeque<Event>,
    /// Connections to poll for output at the next flush.
    touched: HashSet<PeerId>,
    /// Each connection's next timer, as it said after its last flush.
    timers: HashMap<PeerId, Instant>,
    /// The sleep until the earliest of `timers`, kept across loop turns
    /// (re-armed only when that instant changes).
    timer: Pin<Box<tokio::time::Sleep>>,
    timer_at: Option<Instant>,
    /// When the first datagram not yet polled out of each connection was read.
    arrived: HashMap<PeerId, Instant>,
    /// Read times of the packets forwarded since the last flush, and the
    /// histogram their read-to-send delay goes to.
    forwarded_arrivals: Vec<Instant>,
    forward_delay: Option<Histogram>,
    /// Whether connections made from now on run RTCP feedback.
    feedback: RtcpFeedback,
    receive_buffer: BytesMut,
    /// Datagrams the connections wrote, waiting for the socket (kept here
    /// so that a cancelled flush loses none).
    outbox: std::collections::VecDeque<(SocketAddr, BytesMut)>,
}

impl Endpoint {
    /// Binds `bind`. Connections advertise `announce` (a public address
    /// behind 1:1 NAT) with the bound port, or the bound address itself.
    ///
    /// # Errors
    /// When the socket cannot be bound.
    pub async fn bind(bind: SocketAddr, announce: Option<IpAddr>) -> Result<Self, EndpointError> {
        let socket = media_socket(bind)?;
        let local = socket.local_addr()?;
        let advertised = SocketAddr::new(announce.unwrap_or(local.ip()), local.port());
        if advertised.ip().is_unspecified() {
            // A candidate at 0.0.0.0 reaches nobody.
            return Err(EndpointError::Unannounced);
        }
        Ok(Self {
            socket,
            advertised,
            router: Router::new(),
            peers: HashMap::new(),
            outgoing: HashMap::new(),
            incoming: HashMap::new(),
            audio_level_ids: HashMap::new(),
            next_id: 0,
            events: std::collections::VecDeque::new(),
            touched: HashSet::new(),
            timers: HashMap::new(),
            timer: Box::pin(tokio::time::sleep(std::time::Duration::ZERO)),
            timer_at: None,
            arrived: HashMap::new(),
            forwarded_arrivals: Vec::new(),
            forward_delay: None,
            feedback: RtcpFeedback::On,
            receive_buffer: BytesMut::new(),
            outbox: std::collections::VecDeque::new(),
        })
    }

    /// Records, for every forwarded packet, the time from the endpoint
    /// reading its datagram to the forwarded datagrams leaving the socket
    /// (time queued in the kernel before the read is not in it).
    pub fn measure_forward_delay(&mut self, histogram: Histogram) {
        self.forward_delay = Some(histogram);
    }

    /// Whether connections answered from now on run RTCP feedback
    /// ([`RtcpFeedback::On`] unless told otherwise).
    pub fn set_rtcp_feedback(&mut self, feedback: RtcpFeedback) {
        self.feedback = feedback;
    }

    /// The address and port every connection advertises.
    pub fn advertised(&self) -> SocketAddr {
        self.advertised
    }

    /// Connections open.
    pub fn peers(&self) -> usize {
        self.peers.len()
    }

    /// Answers a remote offer with a new connection on this socket.
    ///
    /// # Errors
    /// When the offer is not valid SDP or the engine refuses it.
    pub fn answer(&mut self, offer_sdp: &str) -> Result<(PeerId, String), EndpointError> {
        let id = PeerId(self.next_id);
        self.next_id += 1;
        // The ufrag names the connection on the shared socket; the password
        // authenticates the remote side's checks (RFC 8445 §5.3: at least
        // 24 and 128 bits of randomness).
        let ufrag = random_token(16);
        let password = random_token(32);
        let mut media = MediaEngine::default();
        media.register_default_codecs()?;
        // Browsers put each audio frame's level in this extension: who
        // speaks, without decoding (see `crate::speakers`).
        media.register_header_extension(
            RTCRtpHeaderExtensionCapability {
                uri: AUDIO_LEVEL_URI.to_owned(),
            },
            RtpCodecKind::Audio,
            None,
        )?;
        let feedback = self.feedback == RtcpFeedback::On;
        // NACK: lost packets are asked again of publishers and resent to
        // subscribers from a buffer (over RTX where negotiated; the engine
        // unwraps a publisher's RTX into its stream). RTCP sender and
        // receiver reports: lip sync, round-trip time and loss for both
        // sides and for the SFU's statistics.
        let mut interceptors = Registry::new();
        if feedback {
            interceptors = configure_rtcp_reports(configure_nack(interceptors, &mut media));
        }
        // Simulcast: browsers tell their layers apart by RTP stream id (and
        // the m-line by MID) in header extensions.
        configure_simulcast_extension_headers(&mut media)?;
        // Transport-wide congestion feedback on what publishers send: their
        // send-side bandwidth estimate, and with it how many simulcast
        // layers they can send, depends on it.
        if feedback {
            interceptors = configure_twcc_receiver_only(interceptors, &mut media)?;
        }
        // Simulcast layers stay tagged with their RID after a renegotiation,
        // and subscribers' keyframe requests reach the SFU (see
        // `crate::rtcp_filter`). On the wire side of the receiver reports,
        // so that it sees what they generate.
        let interceptors = interceptors.with(
            Slot::Custom(Slot::ReceiverReport.slot() - 500),
            RtcpFilter::default(),
        );
        let settings = SettingEngineBuilder::new()
            .with_ice_credentials(ufrag.clone(), password)
            // mDNS would send queries out of the shared socket.
            .with_multicast_dns_mode(MulticastDnsMode::Disabled)
            .with_answering_dtls_role(RTCDtlsRole::Server)
            .build();
        let mut pc = RTCPeerConnectionBuilder::new()
            .with_configuration(RTCConfigurationBuilder::new().build())
            .with_media_engine(media)
            .with_setting_engine(settings)
            .with_interceptor_registry(interceptors)
            .build(Instant::now())?;
        let candidate = CandidateHostConfig {
            base_config: CandidateConfig {
                network: "udp".to_owned(),
                address: self.advertised.ip().to_string(),
                port: self.advertised.port(),
                component: 1,
                ..Default::default()
            },
            ..Default::default()
        }
        .new_candidate_host()?;
        pc.add_local_candidate(RTCIceCandidate::from(&candidate).to_json()?)?;
        pc.set_remote_description(
            Instant::now(),
            RTCSessionDescription::offer(offer_sdp.to_owned())?,
        )?;
        let answer = pc.create_answer(None)?;
        pc.set_local_description(Instant::now(), answer)?;
        let sdp = pc.local_description().ok_or(EndpointError::NoAnswer)?.sdp;
        self.router.add(&ufrag, id);
        self.peers.insert(id, pc);
        self.touched.insert(id);
        Ok((id, sdp))
    }

    /// Adds an outgoing track to a connection, to forward another
    /// participant's media on: send-only, one SSRC chosen here, in the
    /// media stream `stream` (the remote side groups a participant's audio
    /// and video by it). It takes effect once the remote side has answered
    /// the next [`Endpoint::offer`].
    ///
    /// # Errors
    /// When the connection does not exist or is closed.
    pub fn add_outgoing_track(
        &mut self,
        peer: PeerId,
        kind: RtpCodecKind,
        codec: RTCRtpCodec,
        ssrc: u32,
        stream: &str,
    ) -> Result<RTCRtpSenderId, EndpointError> {
        let pc = connection(&mut self.peers, &mut self.touched, peer)?;
        let clock_rate = codec.clock_rate;
        let vp8 = codec
            .mime_type
            .eq_ignore_ascii_case(rtc::peer_connection::configuration::media_engine::MIME_TYPE_VP8);
        let track = MediaStreamTrack::new(
            stream.to_owned(),
            format!("forwarded-{ssrc}"),
            format!("forwarded-{ssrc}"),
            kind,
            vec![RTCRtpEncodingParameters {
                rtp_coding_parameters: RTCRtpCodingParameters {
                    ssrc: Some(ssrc),
                    // Retransmissions of video go on their own stream.
                    rtx: (kind == RtpCodecKind::Video).then(|| RTCRtpRtxParameters {
                        ssrc: rand::random(),
                    }),
                    ..Default::default()
                },
                codec,
                ..Default::default()
            }],
        );
        let transceiver = pc.add_transceiver_from_track(
            track,
            Some(RTCRtpTransceiverInit {
                direction: RTCRtpTransceiverDirection::Sendonly,
                streams: vec![],
                send_encodings: vec![],
            }),
        )?;
        let sender = RTCRtpSenderId::from(transceiver);
        self.outgoing.insert(
            (peer, sender),
            Outgoing {
                numbering: Rewriter::new(clock_rate),
                ssrc,
                header: None,
                pictures: vp8.then(crate::vp8::PictureNumbering::default),
            },
        );
        Ok(sender)
    }

    /// Stops an outgoing track (its publisher left): the remote side sees
    /// it end after answering the next [`Endpoint::offer`].
    ///
    /// # Errors
    /// When the connection or the track does not exist.
    pub fn remove_outgoing_track(
        &mut self,
        peer: PeerId,
        sender: RTCRtpSenderId,
    ) -> Result<(), EndpointError> {
        let pc = connection(&mut self.peers, &mut self.touched, peer)?;
        self.outgoing
            .remove(&(peer, sender))
            .ok_or(EndpointError::NoSender)?;
        pc.remove_track(sender)?;
        Ok(())
    }

    /// Asks the remote side for a keyframe (PLI) on its stream `ssrc`.
    ///
    /// # Errors
    /// When the connection or the stream does not exist.
    pub fn request_keyframe(&mut self, peer: PeerId, ssrc: u32) -> Result<(), EndpointError> {
        let pc = connection(&mut self.peers, &mut self.touched, peer)?;
        let receiver = *self
            .incoming
            .get(&(peer, ssrc))
            .ok_or(EndpointError::NoSender)?;
        pc.rtp_receiver(receiver)
            .ok_or(EndpointError::NoSender)?
            .write_rtcp(
                Instant::now(),
                vec![Box::new(PictureLossIndication {
                    sender_ssrc: 0,
                    media_ssrc: ssrc,
                })],
            )?;
        Ok(())
    }

    /// A trickled candidate of the remote side. The SFU also learns remote
    /// addresses from connectivity checks (peer-reflexive), so a candidate
    /// that never arrives costs nothing.
    ///
    /// # Errors
    /// When the connection does not exist or the candidate is not valid.
    pub fn add_remote_candidate(
        &mut self,
        peer: PeerId,
        candidate: RTCIceCandidateInit,
    ) -> Result<(), EndpointError> {
        connection(&mut self.peers, &mut self.touched, peer)?.add_remote_candidate(candidate)?;
        Ok(())
    }

    /// A new offer for a connection (after tracks were added): the remote
    /// side answers it through [`Endpoint::accept_answer`].
    ///
    /// # Errors
    /// When the connection does not exist or the engine refuses.
    pub fn offer(&mut self, peer: PeerId) -> Result<String, EndpointError> {
        let pc = connection(&mut self.peers, &mut self.touched, peer)?;
        let offer = pc.create_offer(None)?;
        pc.set_local_description(Instant::now(), offer)?;
        Ok(pc.local_description().ok_or(EndpointError::NoAnswer)?.sdp)
    }

    /// The remote side's answer to [`Endpoint::offer`].
    ///
    /// # Errors
    /// When the connection does not exist or the answer is refused.
    pub fn accept_answer(&mut self, peer: PeerId, answer_sdp: &str) -> Result<(), EndpointError> {
        let pc = connection(&mut self.peers, &mut self.touched, peer)?;
        pc.set_remote_description(
            Instant::now(),
            RTCSessionDescription::answer(answer_sdp.to_owned())?,
        )?;
        // A negotiation may change payload types: look them up again.
        for ((owner, _), track) in &mut self.outgoing {
            if *owner == peer {
                track.header = None;
            }
        }
        Ok(())
    }

    /// Sends `packet` (another participant's) on an outgoing track: its
    /// SSRC becomes the track's and its payload type the one negotiated for
    /// the track's codec on this connection (matched by codec name and, of
    /// several, by format parameters: H.264's profile and packetization
    /// mode); header extensions, whose ids
    /// were negotiated with the publisher, are dropped; sequence number and
    /// timestamp continue the track's own numbering ([`crate::rewrite`]).
    /// `switch`: a packet from another source than the track's current one
    /// switches the track to it (a keyframe of the source wanted now);
    /// without it such a packet is not sent. `received_at`: when the
    /// packet's datagram was read ([`Event::Rtp`]). Returns whether it was sent.
    ///
    /// # Errors
    /// When the connection or the track does not exist, or the remote side
    /// did not accept the codec.
    pub fn forward(
        &mut self,
        peer: PeerId,
        sender: RTCRtpSenderId,
        mut packet: rtc::rtp::Packet,
        switch: bool,
        received_at: Instant,
    ) -> Result<bool, EndpointError> {
        let pc = connection(&mut self.peers, &mut self.touched, peer)?;
        let track = self
            .outgoing
            .get_mut(&(peer, sender))
            .ok_or(EndpointError::NoSender)?;
        let (ssrc, payload_type) = match track.header {
            Some(header) => header,
            None => *track.header.insert(outgoing_header(pc, sender)?),
        };
        let now = Instant::now();
        let previous_source = track.numbering.source();
        let source = packet.header.ssrc;
        let Some(out) = track.numbering.rewrite(
            packet.header.ssrc,
            packet.header.sequence_number,
            packet.header.timestamp,
            now,
            switch,
        ) else {
            return Ok(false);
        };
        packet.header.ssrc = ssrc;
        packet.header.payload_type = payload_type;
        packet.header.sequence_number = out.sequence;
        packet.header.timestamp = out.timestamp;
        packet.header.extension = false;
        packet.header.extensions.clear();
        if let Some(pictures) = &mut track.pictures
            && let Ok(descriptor) = crate::vp8::Descriptor::parse(&packet.payload)
        {
            // A switch to another layer re-anchors the picture IDs (a
            // resumed layer keeps its own: after a keyframe the gap is
            // harmless); the payload is copied only once they differ from
            // the source's.
            let switched = switch && previous_source.is_some_and(|previous| previous != source);
            if let Some((picture_id, tl0)) = pictures.map(&descriptor, switched)
                && pictures.shifted()
            {
                let mut payload = BytesMut::from(&packet.payload[..]);
                descriptor.rewrite(&mut payload, picture_id, tl0);
                packet.payload = payload.freeze();
            }
        }
        pc.rtp_sender(sender)
            .ok_or(EndpointError::NoSender)?
            .write_rtp(now, packet)?;
        if self.forward_delay.is_some() {
            self.forwarded_arrivals.push(received_at);
        }
        Ok(true)
    }

    /// The connection's cumulative counters now (see [`crate::stats`]).
    ///
    /// # Errors
    /// When the connection does not exist.
    pub fn stats(&mut self, peer: PeerId) -> Result<crate::stats::Counters, EndpointError> {
        let pc = self
            .peers
            .get_mut(&peer)
            .ok_or(EndpointError::NoPeer(peer))?;
        let report = pc.get_stats(Instant::now(), rtc::statistics::StatsSelector::None);
        Ok(crate::stats::Counters::from_report(&report))
    }

    /// Closes a connection and forgets it.
    pub fn close(&mut self, peer: PeerId) {
        if let Some(mut pc) = self.peers.remove(&peer) {
            let _ = pc.close();
        }
        self.router.remove(&peer);
        self.outgoing.retain(|(owner, _), _| *owner != peer);
        self.incoming.retain(|(owner, _), _| *owner != peer);
        self.audio_level_ids.retain(|(owner, _), _| *owner != peer);
        self.touched.remove(&peer);
        self.timers.remove(&peer);
        self.arrived.remove(&peer);
    }

    /// Runs the socket and the connections until the next event.
    ///
    /// Dropping the future before it returns (in a `select!`) loses
    /// nothing: datagrams to send and events already taken from the
    /// connections stay queued, and a receive either completed or did not
    /// happen.
    ///
    /// # Errors
    /// When the socket fails.
    pub async fn next_event(&mut self) -> Result<Event, EndpointError> {
        // One receive buffer kept across calls: each datagram is received
        // into its spare room and split off to be handed to its connection
        // as is, with no copy. The engine drops it once decrypted, so by the
        // next datagram the room is free again and `reserve` reclaims it
        // rather than allocating. A cancelled call drops the buffer, and the
        // next allocates a new one.
        let mut buffer = std::mem::take(&mut self.receive_buffer);
        let event = self.next_event_with(&mut buffer).await;
        self.receive_buffer = buffer;
        event
    }

    async fn next_event_with(&mut self, buffer: &mut BytesMut) -> Result<Event, EndpointError> {
        loop {
            // Events already collected go first: what handling them writes
            // (forwarded packets) is then sent in one batch with the rest.
            if let Some(event) = self.events.pop_front() {
                return Ok(event);
            }
            self.flush().await?;
            if let Some(event) = self.events.pop_front() {
                return Ok(event);
            }
            let deadline = self.timers.values().min().copied();
            if deadline != self.timer_at {
                if let Some(at) = deadline {
                    self.timer.as_mut().reset(at.into());
                }
                self.timer_at = deadline;
            }
            let armed = deadline.is_some();
            let timer = &mut self.timer;
            let fired = async move {
                if armed {
                    timer.await;
                } else {
                    std::future::pending::<()>().await;
                }
            };
            tokio::select! {
                received = self.socket.recv_buf_from(reserve_datagram(buffer)) => {
                    let (_, from) = received?;
                    self.deliver(from, buffer.split());
                    // Whatever else already waits, without waiting for more.
                    for _ in 1..READ_BATCH {
                        match self.socket.try_recv_buf_from(reserve_datagram(buffer)) {
                            Ok((_, from)) => self.deliver(from, buffer.split()),
                            Err(error) if error.kind() == std::io::ErrorKind::WouldBlock => break,
                            Err(error) => return Err(error.into()),
                        }
                    }
                }
                () = fired => {
                    let now = Instant::now();
                    // Re-arm after this turn even if the earliest timer stays.
                    self.timer_at = None;
                    let due: Vec<PeerId> = self
                        .timers
                        .iter()
                        .filter(|(_, at)| **at <= now)
                        .map(|(peer, _)| *peer)
                        .collect();
                    for peer in due {
                        self.timers.remove(&peer);
                        if let Some(pc) = self.peers.get_mut(&peer) {
                            self.touched.insert(peer);
                            if let Err(error) = pc.handle_timeout(now) {
                                tracing::debug!(%error, "a connection's timer failed");
                            }
                        }
                    }
                }
            }
        }
    }

    /// Hands a datagram to the connection it belongs to, or drops it.
    fn deliver(&mut self, from: SocketAddr, datagram: BytesMut) {
        let peer = match self.router.route(from, &datagram) {
            Ok(peer) => peer,
            Err(reason) => {
                tracing::debug!(%reason, "datagram dropped");
                return;
            }
        };
        let Some(pc) = self.peers.get_mut(&peer) else {
            return;
        };
        let now = Instant::now();
        self.touched.insert(peer);
        self.arrived.entry(peer).or_insert(now);
        let message = TaggedBytesMut {
            now,
            transport: TransportContext {
                local_addr: self.advertised,
                peer_addr: from,
                transport_protocol: TransportProtocol::UDP,
                ecn: None,
            },
            message: datagram,
        };
        if let Err(error) = pc.handle_read(message) {
            tracing::debug!(%error, peer = peer.0, "datagram refused by its connection");
        }
    }

    /// Sends what the touched connections wrote and collects their events
    /// and media.
    async fn flush(&mut self) -> Result<(), EndpointError> {
        if self.touched.is_empty() && self.outbox.is_empty() {
            return Ok(());
        }
        let touched: Vec<PeerId> = self.touched.iter().copied().collect();
        // Events and media first, without awaiting: a cancelled flush must
        // not lose a connection's end (it would never be closed).
        let mut gone = Vec::new();
        for &peer in &touched {
            let Some(pc) = self.peers.get_mut(&peer) else {
                continue;
            };
            let received_at = self.arrived.remove(&peer).unwrap_or_else(Instant::now);
            while let Some(event) = pc.poll_event() {
                match event {
                    RTCPeerConnectionEvent::OnIceConnectionStateChangeEvent(state) => {
                        tracing::debug!(peer = peer.0, ?state, "ICE state");
                    }
                    RTCPeerConnectionEvent::OnConnectionStateChangeEvent(state) => match state {
                        RTCPeerConnectionState::Connected => {
                            tracing::debug!(peer = peer.0, "connected");
                            self.events.push_back(Event::Connected(peer));
                        }
                        RTCPeerConnectionState::Failed | RTCPeerConnectionState::Closed
                            if !gone.contains(&peer) =>
                        {
                            gone.push(peer);
                        }
                        _ => {}
                    },
                    RTCPeerConnectionEvent::OnTrack(RTCTrackEvent::OnOpen(init)) => {
                        if let Some(event) = track_opened(
                            pc,
                            peer,
                            init,
                            &mut self.incoming,
                            &mut self.audio_level_ids,
                        ) {
                            self.events.push_back(event);
                        }
                    }
                    _ => {}
                }
            }
            // `poll_media_read`, not `poll_read`: the engine moved every
            // datagram's media through its pipeline in `handle_read` (and
            // `poll_event` above moves what events queue), and `poll_read`
            // sweeps the whole pipeline and interceptor chain again on
            // every call, the last one finding nothing. The SFU negotiates
            // no data channels, the other kind `poll_read` interleaves.
            while let Some(TaggedRTCMessage { message, .. }) = pc.poll_media_read() {
                match message {
                    RTCMessage::RtpPacket(track, packet) => {
                        let audio_level = self
                            .audio_level_ids
                            .get(&(peer, packet.header.ssrc))
                            .and_then(|id| audio_level(&packet.header, *id));
                        self.events.push_back(Event::Rtp {
                            peer,
                            track,
                            packet,
                            received_at,
                            audio_level,
                        });
                    }
                    RTCMessage::RtcpPacket(_, packets) => {
                        for media_ssrc in keyframe_requests(&packets) {
                            // Which of this connection's outgoing tracks it names.
                            let sender =
                                self.outgoing.iter().find_map(|((owner, sender), track)| {
                                    (*owner == peer && track.ssrc == media_ssrc).then_some(*sender)
                                });
                            if let Some(sender) = sender {
                                self.events
                                    .push_back(Event::KeyframeWanted { peer, sender });
                            }
                        }
                    }
                    _ => {}
                }
            }
        }
        for peer in gone {
            self.close(peer);
            self.events.push_back(Event::Gone(peer));
        }
        // Then the datagrams, queued and sent after the events of a read
        // batch were handled; a cancelled flush leaves the queue for the
        // next one.
        for peer in touched {
            let Some(pc) = self.peers.get_mut(&peer) else {
                continue;
            };
            while let Some(out) = pc.poll_write() {
                let to = out.transport.peer_addr;
                self.router.note_sent(&peer, to);
                self.outbox.push_back((to, out.message));
            }
            match pc.poll_timeout() {
                Some(at) => self.timers.insert(peer, at),
                None => self.timers.remove(&peer),
            };
            self.touched.remove(&peer);
        }
        while let Some((to, datagram)) = self.outbox.front() {
            match self.socket.try_send_to(datagram, *to) {
                Ok(_) => {}
                Err(error) if error.kind() == std::io::ErrorKind::WouldBlock => {
                    self.socket.writable().await?;
                    continue;
                }
                // One unreachable remote must not stop the others.
                Err(error) => tracing::debug!(%error, %to, "send failed"),
            }
            self.outbox.pop_front();
        }
        if let Some(histogram) = &self.forward_delay {
            let now = Instant::now();
            for arrived in self.forwarded_arrivals.drain(..) {
                histogram.observe(now.duration_since(arrived).as_secs_f64());
            }
        }
        Ok(())
    }
}

/// The event for a track that opened, remembering its receiver for
/// keyframe requests; `None` when the engine no longer knows the receiver.
fn track_opened(
    pc: &mut RTCPeerConnection,
    peer: PeerId,
    init: rtc::peer_connection::event::RTCTrackEventInit,
    incoming: &mut HashMap<(PeerId, u32), RTCRtpReceiverId>,
    audio_level_ids: &mut HashMap<(PeerId, u32), u8>,
) -> Option<Event> {
    let mut receiver = pc.rtp_receiver(init.receiver_id)?;
    let track = receiver.track();
    let codec = track.codec(init.ssrc)?.clone();
    let kind = track.kind();
    incoming.insert((peer, init.ssrc), init.receiver_id);
    if kind == RtpCodecKind::Audio
        && let Some(id) = receiver
            .get_parameters()
            .rtp_parameters
            .header_extensions
            .iter()
            .find(|extension| extension.uri == AUDIO_LEVEL_URI)
            .and_then(|extension| u8::try_from(extension.id).ok())
    {
        audio_level_ids.insert((peer, init.ssrc), id);
    }
    Some(Event::Track {
        peer,
        track: init.track_id,
        kind,
        codec,
        ssrc: init.ssrc,
        rid: init.rid,
    })
}

/// The level in a packet's audio-level extension `id` (RFC 6464 §3: the
/// low 7 bits of its first byte; the top bit is the sender's voice flag).
fn audio_level(header: &rtc::rtp::header::Header, id: u8) -> Option<u8> {
    header
        .get_extension(id)
        .and_then(|data| data.first().copied())
        .map(|byte| byte & 0x7f)
}

/// The media SSRCs that PLIs and FIRs in a compound RTCP packet ask
/// keyframes of.
fn keyframe_requests(packets: &[Box<dyn rtc::rtcp::Packet>]) -> Vec<u32> {
    let mut wanted = Vec::new();
    for packet in packets {
        let any = packet.as_any();
        if let Some(pli) = any.downcast_ref::<PictureLossIndication>() {
            wanted.push(pli.media_ssrc);
        } else if let Some(fir) = any.downcast_ref::<FullIntraRequest>() {
            wanted.extend(fir.fir.iter().map(|entry| entry.ssrc));
        }
    }
    wanted.sort_unstable();
    wanted.dedup();
    wanted
}

/// `len` random characters from ICE's alphabet (RFC 8445 §5.3: ALPHA, DIGIT, `+`, `/`).
fn random_token(len: usize) -> String {
    use rand::Rng as _;
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut rng = rand::thread_rng();
    (0..len)
        .map(|_| char::from(ALPHABET[rng.gen_range(0..ALPHABET.len())]))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::same_format;

    #[test]
    fn h264_formats_match_on_profile_and_packetization_mode_not_level() {
        let baseline_31 = "level-asymmetry-allowed=1;packetization-mode=1;profile-level-id=42001f";
        let baseline_40 = "packetization-mode=1;profile-level-id=42e028;level-asymmetry-allowed=1";
        let baseline_mode_0 =
            "level-asymmetry-allowed=1;packetization-mode=0;profile-level-id=42001f";
        let high = "level-asymmetry-allowed=1;packetization-mode=1;profile-level-id=64001f";
        assert!(same_format(baseline_31, baseline_31));
        assert!(!same_format(baseline_31, baseline_mode_0));
        assert!(!same_format(baseline_31, high));
        // The constraint flags are part of the profile: 42e0 is not 4200.
        assert!(!same_format(baseline_31, baseline_40));
        assert!(same_format(
            "profile-level-id=42e01f;packetization-mode=1",
            baseline_40
        ));
        // No packetization mode means mode 0.
        assert!(same_format("profile-level-id=42001f", baseline_mode_0));
    }

    #[test]
    fn other_codecs_match_on_all_their_parameters() {
        assert!(same_format("", ""));
        assert!(same_format(
            "minptime=10;useinbandfec=1",
            "useinbandfec=1; minptime=10"
        ));
        assert!(!same_format("profile-id=0", "profile-id=2"));
    }
}
