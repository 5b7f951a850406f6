//! Real WebRTC peers (the `rtc` engine as the remote side, each on its own
//! UDP socket) connect to one SFU endpoint over loopback with real ICE and
//! DTLS-SRTP, and their media arrives from the connection that is theirs,
//! although every connection shares the endpoint's one socket. A datagram
//! routed to the wrong connection fails that connection's checks (ICE
//! integrity, DTLS, SRTP) and is dropped, so a broken router shows as a
//! peer that never connects or whose media never arrives: the tests then
//! time out (checked by breaking the routing on purpose).
//!
//! The browser is the other real peer of the project: the video-visit pages'
//! end-to-end tests drive Chromium against this endpoint once signaling
//! hands it offers.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use bedside_sfu::endpoint::{Endpoint, Event, PeerId};
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
use rtc::rtp_transceiver::rtp_sender::{
    RTCRtpCodec, RTCRtpCodingParameters, RTCRtpEncodingParameters, RtpCodecKind,
};
use rtc::sansio::Protocol as _;
use rtc::shared::{TaggedBytesMut, TransportContext, TransportProtocol};
use tokio::net::UdpSocket;
use tokio::sync::{mpsc, oneshot};

const DEADLINE: Duration = Duration::from_secs(30);

fn vp8() -> RTCRtpCodec {
    RTCRtpCodec {
        mime_type: MIME_TYPE_VP8.to_owned(),
        clock_rate: 90_000,
        channels: 0,
        sdp_fmtp_line: String::new(),
        rtcp_feedback: vec![],
    }
}

/// The test's handle on a remote peer's task.
struct Remote {
    peer: PeerId,
    /// Offers from the SFU (renegotiation), each answered on its oneshot.
    offers: mpsc::UnboundedSender<(String, oneshot::Sender<String>)>,
    /// Each RTP packet the peer receives: its payload's first byte (the
    /// sender's tag) and its sequence number.
    received: mpsc::UnboundedReceiver<(u8, u16)>,
}

/// A remote peer that offers one VP8 track, connects to the SFU and then
/// sends `packets` RTP packets whose payload is `tag` repeated. It answers
/// the SFU's later offers and reports the media it receives.
async fn remote_peer(endpoint: &mut Endpoint, tag: u8, packets: u16) -> Remote {
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
    let offer_sdp = pc.local_description().unwrap().sdp;
    let (peer, answer) = endpoint.answer(&offer_sdp).expect("the SFU answers");
    pc.set_remote_description(
        Instant::now(),
        RTCSessionDescription::answer(answer).unwrap(),
    )
    .unwrap();

    let (offers, mut offers_rx) = mpsc::unbounded_channel::<(String, oneshot::Sender<String>)>();
    let (received_tx, received) = mpsc::unbounded_channel();
    tokio::spawn(async move {
        let mut buffer = vec![0u8; 2048];
        let mut connected = false;
        let mut sent = 0u16;
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
                    let tag = packet.payload.first().copied().unwrap_or(0);
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
            if connected && sent < packets {
                let mut rtp_sender = pc.rtp_sender(sender).unwrap();
                let payload_type = rtp_sender
                    .get_parameters()
                    .rtp_parameters
                    .codecs
                    .first()
                    .map_or(96, |codec| codec.payload_type);
                sent += 1;
                let packet = rtc::rtp::packet::Packet {
                    header: rtc::rtp::header::Header {
                        version: 2,
                        payload_type,
                        // Each sender numbers from its own origin, as real ones do.
                        sequence_number: (u16::from(tag) << 8).wrapping_add(sent),
                        timestamp: u32::from(sent) * 3000,
                        ssrc,
                        ..Default::default()
                    },
                    payload: Bytes::from(vec![tag; 100]),
                };
                let _ = rtp_sender.write_rtp(Instant::now(), packet);
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
                _ = tick.tick() => {}
            }
            if timeout.is_some_and(|at| at <= Instant::now()) {
                let _ = pc.handle_timeout(Instant::now());
            }
        }
    });
    Remote {
        peer,
        offers,
        received,
    }
}

#[tokio::test]
async fn peers_on_one_socket_connect_and_each_ones_media_arrives_as_theirs() {
    let mut endpoint = Endpoint::bind(SocketAddr::from(([127, 0, 0, 1], 0)), None)
        .await
        .unwrap();
    let first = remote_peer(&mut endpoint, 0xA1, 40).await.peer;
    let second = remote_peer(&mut endpoint, 0xB2, 40).await.peer;
    assert_ne!(first, second);
    let expected: HashMap<PeerId, u8> = [(first, 0xA1), (second, 0xB2)].into();

    let mut connected = Vec::new();
    let mut packets: HashMap<PeerId, usize> = HashMap::new();
    let outcome = tokio::time::timeout(DEADLINE, async {
        while connected.len() < 2 || packets.values().filter(|&&n| n >= 20).count() < 2 {
            match endpoint.next_event().await.expect("the socket works") {
                Event::Connected(peer) => connected.push(peer),
                Event::Gone(peer) => panic!("connection {peer:?} failed"),
                Event::Rtp { peer, packet, .. } => {
                    let tag = expected[&peer];
                    assert!(
                        packet.payload.iter().all(|&b| b == tag),
                        "a packet of another peer reached {peer:?}"
                    );
                    *packets.entry(peer).or_default() += 1;
                }
            }
        }
    })
    .await;
    assert!(
        outcome.is_ok(),
        "within {DEADLINE:?}: connected {connected:?}, packets {packets:?}"
    );
    assert_eq!(endpoint.peers(), 2);
}

/// The SFU adds a track to one connection (renegotiated from the SFU's
/// side) and forwards another connection's RTP on it, then switches the
/// track to a third connection's media: the subscriber receives the first
/// publisher's packets, then the second's, numbered as one unbroken stream.
#[tokio::test]
async fn forwarded_media_reaches_a_renegotiated_track_and_a_switch_is_seamless() {
    let mut endpoint = Endpoint::bind(SocketAddr::from(([127, 0, 0, 1], 0)), None)
        .await
        .unwrap();
    let first = remote_peer(&mut endpoint, 0xA1, 1000).await;
    let second = remote_peer(&mut endpoint, 0xC3, 1000).await;
    let mut subscriber = remote_peer(&mut endpoint, 0xB2, 0).await;

    let mut received: Vec<(u8, u16)> = Vec::new();
    let outcome = tokio::time::timeout(DEADLINE, async {
        let mut connected = Vec::new();
        while connected.len() < 3 {
            if let Event::Connected(peer) = endpoint.next_event().await.unwrap() {
                connected.push(peer);
            }
        }
        // A send-only track on the subscriber's connection, offered by the SFU.
        let sender = endpoint
            .add_outgoing_track(subscriber.peer, RtpCodecKind::Video, vp8(), 0x5EED)
            .unwrap();
        let offer = endpoint.offer(subscriber.peer).unwrap();
        let (reply, answer) = oneshot::channel();
        subscriber.offers.send((offer, reply)).unwrap();
        // The endpoint keeps running while the subscriber answers.
        let mut answer = std::pin::pin!(answer);
        let answer = loop {
            tokio::select! {
                answer = &mut answer => break answer.unwrap(),
                event = endpoint.next_event() => { event.unwrap(); }
            }
        };
        endpoint.accept_answer(subscriber.peer, &answer).unwrap();
        // The first publisher's packets, until the subscriber has ten; then
        // the second's (switching on its next packet), until ten more.
        let mut switched = false;
        loop {
            tokio::select! {
                event = endpoint.next_event() => {
                    if let Event::Rtp { peer, packet, .. } = event.unwrap() {
                        if peer == first.peer {
                            endpoint.forward(subscriber.peer, sender, packet, false).unwrap();
                        } else if peer == second.peer && switched {
                            endpoint.forward(subscriber.peer, sender, packet, true).unwrap();
                        }
                    }
                }
                packet = subscriber.received.recv() => {
                    received.push(packet.expect("the subscriber runs"));
                    let from_second = received.iter().filter(|(tag, _)| *tag == 0xC3).count();
                    switched |= received.len() >= 10;
                    if from_second >= 10 {
                        break;
                    }
                }
            }
        }
    })
    .await;
    assert!(
        outcome.is_ok(),
        "within {DEADLINE:?}: received {received:?}"
    );
    // First the first publisher's packets only, then the second's only.
    let switch_at = received.iter().position(|(tag, _)| *tag == 0xC3).unwrap();
    assert!(
        received[..switch_at].iter().all(|(tag, _)| *tag == 0xA1),
        "{received:?}"
    );
    assert!(
        received[switch_at..].iter().all(|(tag, _)| *tag == 0xC3),
        "{received:?}"
    );
    // One stream to the subscriber: each number follows the one before,
    // across the switch (loopback loses nothing at this rate).
    for pair in received.windows(2) {
        assert_eq!(pair[1].1, pair[0].1.wrapping_add(1), "{received:?}");
    }
}
