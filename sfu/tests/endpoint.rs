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

use bedside_sfu::endpoint::{Endpoint, Event, PeerId, RtcpFeedback};
use rtc::rtp_transceiver::RTCRtpSenderId;
use rtc::rtp_transceiver::rtp_sender::RtpCodecKind;
use rtc::sdp::extmap::TRANSPORT_CC_URI;
use tokio::sync::oneshot;

use support::{DEADLINE, Remote, vp8};

mod support;

/// A remote peer answered by the endpoint directly.
async fn remote_peer(endpoint: &mut Endpoint, tag: u8, packets: u16) -> (PeerId, Remote) {
    let offering = support::Offering::new(tag, packets).await;
    let (peer, answer) = endpoint.answer(&offering.offer).expect("the SFU answers");
    (peer, offering.start(answer))
}

/// Runs the endpoint until `count` connections are up.
async fn all_connected(endpoint: &mut Endpoint, count: usize) {
    let mut connected = 0;
    while connected < count {
        if let Event::Connected(_) = endpoint.next_event().await.unwrap() {
            connected += 1;
        }
    }
}

/// A send-only video track (SSRC 0x5EED) on the subscriber's connection,
/// offered by the SFU and answered by the subscriber.
async fn outgoing_video_track(
    endpoint: &mut Endpoint,
    subscriber_peer: PeerId,
    subscriber: &Remote,
) -> RTCRtpSenderId {
    let sender = endpoint
        .add_outgoing_track(
            subscriber_peer,
            RtpCodecKind::Video,
            vp8(),
            0x5EED,
            "publisher",
        )
        .unwrap();
    let offer = endpoint.offer(subscriber_peer).unwrap();
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
    endpoint.accept_answer(subscriber_peer, &answer).unwrap();
    sender
}

#[tokio::test]
async fn peers_on_one_socket_connect_and_each_ones_media_arrives_as_theirs() {
    let mut endpoint = Endpoint::bind(SocketAddr::from(([127, 0, 0, 1], 0)), None)
        .await
        .unwrap();
    let first = remote_peer(&mut endpoint, 0xA1, 40).await.0;
    let second = remote_peer(&mut endpoint, 0xB2, 40).await.0;
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
                        packet.payload.last() == Some(&tag),
                        "a packet of another peer reached {peer:?}"
                    );
                    *packets.entry(peer).or_default() += 1;
                }
                Event::Track { .. } | Event::KeyframeWanted { .. } => {}
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
    let (first, _first) = remote_peer(&mut endpoint, 0xA1, 1000).await;
    let (second, _second) = remote_peer(&mut endpoint, 0xC3, 1000).await;
    let (subscriber_peer, mut subscriber) = remote_peer(&mut endpoint, 0xB2, 0).await;

    let mut received: Vec<(u8, u16)> = Vec::new();
    let outcome = tokio::time::timeout(DEADLINE, async {
        all_connected(&mut endpoint, 3).await;
        let sender = outgoing_video_track(&mut endpoint, subscriber_peer, &subscriber).await;
        // The first publisher's packets, until the subscriber has ten; then
        // the second's (switching on its next packet), until ten more.
        let mut switched = false;
        loop {
            tokio::select! {
                event = endpoint.next_event() => {
                    if let Event::Rtp { peer, packet, .. } = event.unwrap() {
                        if peer == first {
                            endpoint.forward(subscriber_peer, sender, packet, false, std::time::Instant::now()).unwrap();
                        } else if peer == second && switched {
                            endpoint.forward(subscriber_peer, sender, packet, true, std::time::Instant::now()).unwrap();
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

/// A subscriber's picture loss indication for a track the SFU sends it
/// reaches the SFU as a keyframe request for that track (the rooms then ask
/// the publisher): the engine's interceptor chain stops inbound RTCP unless
/// something lets it through.
#[tokio::test]
async fn a_subscribers_picture_loss_indication_asks_for_a_keyframe() {
    let mut endpoint = Endpoint::bind(SocketAddr::from(([127, 0, 0, 1], 0)), None)
        .await
        .unwrap();
    let (publisher, _publisher) = remote_peer(&mut endpoint, 0xA1, 1000).await;
    let (subscriber_peer, mut subscriber) = remote_peer(&mut endpoint, 0xB2, 0).await;

    let mut asked = 0;
    let outcome = tokio::time::timeout(DEADLINE, async {
        all_connected(&mut endpoint, 2).await;
        let sender = outgoing_video_track(&mut endpoint, subscriber_peer, &subscriber).await;
        // Once the subscriber receives the track, it asks for a keyframe
        // with each packet it gets (as a decoder that cannot start would)
        // until the SFU hears it.
        loop {
            tokio::select! {
                event = endpoint.next_event() => match event.unwrap() {
                    Event::Rtp { peer, packet, .. } if peer == publisher => {
                        endpoint.forward(subscriber_peer, sender, packet, false, std::time::Instant::now()).unwrap();
                    }
                    Event::KeyframeWanted { peer, sender: wanted } => {
                        assert_eq!((peer, wanted), (subscriber_peer, sender));
                        break;
                    }
                    _ => {}
                },
                packet = subscriber.received.recv() => {
                    packet.expect("the subscriber runs");
                    subscriber.keyframe_requests.send(0x5EED).unwrap();
                    asked += 1;
                }
            }
        }
    })
    .await;
    assert!(
        outcome.is_ok(),
        "within {DEADLINE:?}: the subscriber asked {asked} times, the SFU never heard"
    );
    assert!(asked > 0);
}

/// The congestion-feedback lines of the SFU's answer, for a connection
/// made with `feedback`, to an offer that asks for transport-wide
/// congestion feedback on its VP8 track (as browsers' offers do).
async fn answered_congestion_feedback(feedback: RtcpFeedback) -> Vec<String> {
    let mut endpoint = Endpoint::bind(SocketAddr::from(([127, 0, 0, 1], 0)), None)
        .await
        .unwrap();
    endpoint.set_rtcp_feedback(feedback);
    let offering = support::Offering::new(0xB2, 0).await;
    let rtpmap = "a=rtpmap:96 VP8/90000\r\n";
    assert!(offering.offer.contains(rtpmap), "{}", offering.offer);
    let offer = offering.offer.replace(
        rtpmap,
        &format!(
            "{rtpmap}a=rtcp-fb:96 transport-cc\r\n\
             a=extmap:5 {TRANSPORT_CC_URI}\r\n"
        ),
    );
    let (_, answer) = endpoint.answer(&offer).expect("the SFU answers");
    answer
        .lines()
        .filter(|line| line.ends_with(" transport-cc") || line.contains(TRANSPORT_CC_URI))
        .map(str::to_owned)
        .collect()
}

/// Calls get transport-wide congestion feedback (browsers' bandwidth
/// estimates depend on it); the setting for measuring the engine without
/// RTCP feedback declines it. (Only this part of the setting shows in the
/// SDP: NACK is answered as the codec offers it either way, and reports
/// are not negotiated.)
#[tokio::test]
async fn congestion_feedback_is_answered_unless_switched_off_for_measurement() {
    let on = answered_congestion_feedback(RtcpFeedback::On).await;
    assert_eq!(on.len(), 2, "{on:?}");
    let off = answered_congestion_feedback(RtcpFeedback::OffForMeasurement).await;
    assert!(off.is_empty(), "{off:?}");
}
