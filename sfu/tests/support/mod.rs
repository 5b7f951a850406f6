//! A remote WebRTC peer for the SFU's tests: the `rtc` engine on its own
//! UDP socket, sending tagged VP8 packets and reporting what it receives.

#![allow(dead_code, unreachable_pub)]

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use rtc::media_stream::MediaStreamTrack;
use rtc::peer_connection::RTCPeerConnectionBuilder;
use rtc::peer_connection::configuration::RTCConfigurationBuilder;
use rtc::peer_connection::configuration::media_engine::{MIME_TYPE_VP8, MediaEngine};
use rtc::peer_connection::configuration::setting_engine::SettingEngineBuilder;
use rtc::peer_connection::event::RTCPeerConnectionEvent;
use rtc::peer_connection::message::RTCMessage;
use rtc::peer_connection::sdp::RTCSessionDescription;
use rtc::peer_connection::state::RTCPeerConnectionState;
use rtc::peer_connection::transport::{CandidateConfig, CandidateHostConfig, RTCIceCandidate};
use rtc::rtcp::payload_feedbacks::picture_loss_indication::PictureLossIndication;
use rtc::rtp_transceiver::rtp_sender::{
    RTCRtpCodec, RTCRtpCodingParameters, RTCRtpEncodingParameters, RtpCodecKind,
};
use rtc::sansio::Protocol as _;
use rtc::shared::{TaggedBytesMut, TransportContext, TransportProtocol};
use tokio::net::UdpSocket;
use tokio::sync::{mpsc, oneshot};

pub const DEADLINE: Duration = Duration::from_secs(30);

pub fn vp8() -> RTCRtpCodec {
    RTCRtpCodec {
        mime_type: MIME_TYPE_VP8.to_owned(),
        clock_rate: 90_000,
        channels: 0,
        sdp_fmtp_line: String::new(),
        rtcp_feedback: vec![],
    }
}

/// The test's handle on a remote peer's task.
pub struct Remote {
    /// Offers from the SFU (renegotiation), each answered on its oneshot.
    pub offers: mpsc::UnboundedSender<(String, oneshot::Sender<String>)>,
    /// Each RTP packet the peer receives: its payload's last byte (the
    /// sender's tag) and its sequence number.
    pub received: mpsc::UnboundedReceiver<(u8, u16)>,
    /// Media SSRCs the peer asks a keyframe of (a picture loss
    /// indication), as a browser whose decoder lost its picture does.
    pub keyframe_requests: mpsc::UnboundedSender<u32>,
}

/// A remote peer that has made its offer and waits for the answer.
pub struct Offering {
    pc: rtc::peer_connection::RTCPeerConnection,
    socket: UdpSocket,
    local: SocketAddr,
    sender: rtc::rtp_transceiver::RTCRtpSenderId,
    ssrc: u32,
    tag: u8,
    packets: u16,
    /// Every how many packets a sequence number is skipped (0: never), as
    /// if lost on the way.
    skip_every: u16,
    /// Its offer: one send-only-in-practice VP8 track.
    pub offer: String,
}

impl Offering {
    /// A remote peer that offers one VP8 track; once answered it connects and
    /// sends `packets` RTP packets whose payload is `tag` repeated. It answers
    /// the SFU's later offers and reports the media it receives.
    pub async fn new(tag: u8, packets: u16) -> Self {
        let socket = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let local = socket.local_addr().unwrap();
        let mut media = MediaEngine::default();
        media.register_default_codecs().unwrap();
        let mut pc = RTCPeerConnectionBuilder::new()
            .with_configuration(RTCConfigurationBuilder::new().build())
            .with_media_engine(media)
            .with_setting_engine(SettingEngineBuilder::new().build())
            .build(Instant::now())
            .unwrap();
        let ssrc = 1000 + u32::from(tag);
        let sender = pc
            .add_track(MediaStreamTrack::new(
                format!("stream-{tag}"),
                format!("video-{tag}"),
                format!("video-{tag}"),
                RtpCodecKind::Video,
                vec![RTCRtpEncodingParameters {
                    rtp_coding_parameters: RTCRtpCodingParameters {
                        ssrc: Some(ssrc),
                        ..Default::default()
                    },
                    codec: vp8(),
                    ..Default::default()
                }],
            ))
            .unwrap();
        let candidate = CandidateHostConfig {
            base_config: CandidateConfig {
                network: "udp".to_owned(),
                address: local.ip().to_string(),
                port: local.port(),
                component: 1,
                ..Default::default()
            },
            ..Default::default()
        }
        .new_candidate_host()
        .unwrap();
        pc.add_local_candidate(RTCIceCandidate::from(&candidate).to_json().unwrap())
            .unwrap();
        let offer = pc.create_offer(None).unwrap();
        pc.set_local_description(Instant::now(), offer).unwrap();
        let offer = pc.local_description().unwrap().sdp;
        Offering {
            pc,
            socket,
            local,
            sender,
            ssrc,
            tag,
            packets,
            skip_every: 0,
            offer,
        }
    }

    /// Makes the peer's uplink look lossy to the SFU: every `every`th
    /// sequence number is skipped, so one packet in `every` is never seen.
    pub fn lossy(mut self, every: u16) -> Self {
        self.skip_every = every;
        self
    }

    /// Applies the SFU's answer and starts the peer's task.
    pub fn start(self, answer: String) -> Remote {
        let Offering {
            mut pc,
            socket,
            local,
            sender,
            ssrc,
            tag,
            packets,
            skip_every,
            ..
        } = self;
        pc.set_remote_description(
            Instant::now(),
            RTCSessionDescription::answer(answer).unwrap(),
        )
        .unwrap();

        let (offers, mut offers_rx) =
            mpsc::unbounded_channel::<(String, oneshot::Sender<String>)>();
        let (received_tx, received) = mpsc::unbounded_channel();
        let (keyframe_requests, mut keyframe_requests_rx) = mpsc::unbounded_channel::<u32>();
        tokio::spawn(async move {
            let mut buffer = vec![0u8; 2048];
            let mut connected = false;
            let mut sent = 0u16;
            // Each sender numbers from its own origin, as real ones do.
            let mut sequence = u16::from(tag) << 8;
            let started = Instant::now();
            let mut tick = tokio::time::interval(Duration::from_millis(10));
            while started.elapsed() < DEADLINE {
                while let Some(out) = pc.poll_write() {
                    let _ = socket.send_to(&out.message, out.transport.peer_addr).await;
                }
                while let Some(event) = pc.poll_event() {
                    if let RTCPeerConnectionEvent::OnConnectionStateChangeEvent(
                        RTCPeerConnectionState::Connected,
                    ) = event
                    {
                        connected = true;
                    }
                }
                while let Some(message) = pc.poll_read() {
                    if let RTCMessage::RtpPacket(_, packet) = message.message {
                        let tag = packet.payload.last().copied().unwrap_or(0);
                        let _ = received_tx.send((tag, packet.header.sequence_number));
                    }
                }
                while let Ok((offer, reply)) = offers_rx.try_recv() {
                    pc.set_remote_description(
                        Instant::now(),
                        RTCSessionDescription::offer(offer).unwrap(),
                    )
                    .unwrap();
                    let answer = pc.create_answer(None).unwrap();
                    pc.set_local_description(Instant::now(), answer).unwrap();
                    let _ = reply.send(pc.local_description().unwrap().sdp);
                }
                while let Ok(media_ssrc) = keyframe_requests_rx.try_recv() {
                    let pli = PictureLossIndication {
                        sender_ssrc: ssrc,
                        media_ssrc,
                    };
                    let _ = pc
                        .rtp_sender(sender)
                        .unwrap()
                        .write_rtcp(Instant::now(), vec![Box::new(pli)]);
                }
                let timeout = pc.poll_timeout();
                tokio::select! {
                    received = socket.recv_from(&mut buffer) => {
                        let Ok((n, from)) = received else { continue };
                        let _ = pc.handle_read(TaggedBytesMut {
                            now: Instant::now(),
                            transport: TransportContext {
                                local_addr: local,
                                peer_addr: from,
                                transport_protocol: TransportProtocol::UDP,
                                ecn: None,
                            },
                            message: BytesMut::from(&buffer[..n]),
                        });
                    }
                    _ = tick.tick() => {
                    // One packet per tick: a paced sender, whatever it receives.
                    if connected && sent < packets {
                        sent += 1;
                        sequence = sequence.wrapping_add(1);
                        if skip_every > 0 && sequence % skip_every == 0 {
                            sequence = sequence.wrapping_add(1);
                        }
                        send_tagged(&mut pc, sender, ssrc, tag, sent, sequence);
                    }
                }
                }
                if timeout.is_some_and(|at| at <= Instant::now()) {
                    let _ = pc.handle_timeout(Instant::now());
                }
            }
        });
        Remote {
            offers,
            received,
            keyframe_requests,
        }
    }
}

/// Sends the `sent`th packet of a sender tagged `tag`.
fn send_tagged(
    pc: &mut rtc::peer_connection::RTCPeerConnection,
    sender: rtc::rtp_transceiver::RTCRtpSenderId,
    ssrc: u32,
    tag: u8,
    sent: u16,
    sequence: u16,
) {
    let mut rtp_sender = pc.rtp_sender(sender).unwrap();
    let payload_type = rtp_sender
        .get_parameters()
        .rtp_parameters
        .codecs
        .first()
        .map_or(96, |codec| codec.payload_type);
    let packet = rtc::rtp::packet::Packet {
        header: rtc::rtp::header::Header {
            version: 2,
            payload_type,
            sequence_number: sequence,
            timestamp: u32::from(sent) * 3000,
            ssrc,
            ..Default::default()
        },
        payload: vp8_frame(sent, tag),
    };
    let _ = rtp_sender.write_rtp(Instant::now(), packet);
}

/// Every how many packets the peer's "video" is a keyframe.
pub const KEYFRAME_EVERY: u16 = 30;

/// A one-packet VP8 frame (RFC 7741 descriptor, RFC 6386 frame header) as
/// the SFU parses it: a keyframe every [`KEYFRAME_EVERY`] packets, else a
/// delta frame; `tag` fills the rest (its last byte names the sender).
fn vp8_frame(sent: u16, tag: u8) -> Bytes {
    let keyframe = sent % KEYFRAME_EVERY == 1;
    // S=1, partition 0; then the frame tag (bit 0: 0 for a keyframe), and
    // for a keyframe the start code and a 320x180 size.
    let mut payload = vec![0x10, if keyframe { 0x50 } else { 0x51 }, 0x00, 0x00];
    payload.extend_from_slice(&[0x9d, 0x01, 0x2a, 0x40, 0x01, 0xb4, 0x00]);
    payload.resize(100, tag);
    Bytes::from(payload)
}
