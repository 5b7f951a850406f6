//! TURN against a real coturn: the short-lived credentials Bedside hands to
//! browsers (`bedside_signaling::ice`) get a relay allocation, and a peer
//! allowed only relayed candidates reaches the SFU through it; a credential
//! signed with another secret, or expired, gets none.
//!
//! The peer is the webrtc-rs project's async `webrtc` crate (a browser's
//! ICE agent in Rust), with `iceTransportPolicy: "relay"`, as a browser on
//! a network that lets nothing but TURN through would be configured.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bedside_sfu::endpoint::RtcpFeedback;
use bedside_sfu::metrics::SfuMetrics;
use bedside_sfu::rooms::{Sfu, Signal};
use bedside_signaling::ice::{IceSettings, ice_servers};
use bedside_test_support::TurnServer;
use rtc::media_stream::MediaStreamTrack;
use rtc::peer_connection::configuration::{RTCConfigurationBuilder, RTCIceTransportPolicy};
use rtc::peer_connection::transport::RTCIceServer;
use rtc::rtp_transceiver::rtp_sender::{
    RTCRtpCodec, RTCRtpCodingParameters, RTCRtpEncodingParameters, RtpCodecKind,
};
use tokio::sync::{mpsc, watch};
use uuid::Uuid;
use webrtc::media_stream::track_local::TrackLocal;
use webrtc::media_stream::track_local::static_rtp::TrackLocalStaticRTP;
use webrtc::peer_connection::{
    MediaEngine, PeerConnection, PeerConnectionBuilder, PeerConnectionEventHandler,
    RTCIceGatheringState, RTCPeerConnectionState, RTCSessionDescription, Registry,
    register_default_interceptors,
};

const DEADLINE: Duration = Duration::from_secs(30);
const TTL: Duration = Duration::from_secs(3600);

struct Handler {
    gathering: watch::Sender<RTCIceGatheringState>,
    state: watch::Sender<RTCPeerConnectionState>,
}

#[async_trait::async_trait]
impl PeerConnectionEventHandler for Handler {
    async fn on_ice_gathering_state_change(&self, state: RTCIceGatheringState) {
        let _ = self.gathering.send(state);
    }

    async fn on_connection_state_change(&self, state: RTCPeerConnectionState) {
        let _ = self.state.send(state);
    }
}

/// A peer that may use relayed candidates only.
struct RelayOnlyPeer {
    pc: Box<dyn PeerConnection>,
    gathering: watch::Receiver<RTCIceGatheringState>,
    state: watch::Receiver<RTCPeerConnectionState>,
}

impl RelayOnlyPeer {
    /// A peer configured with the ICE servers Bedside handed out, sending
    /// one Opus track.
    async fn new(servers: &[bedside_signaling::ice::IceServer]) -> Self {
        let ice_servers = servers
            .iter()
            .map(|server| RTCIceServer {
                urls: server.urls.clone(),
                username: server.username.clone().unwrap_or_default(),
                credential: server.credential.clone().unwrap_or_default(),
            })
            .collect();
        let mut media = MediaEngine::default();
        media.register_default_codecs().expect("codecs");
        let registry =
            register_default_interceptors(Registry::new(), &mut media).expect("interceptors");
        let (gathering_tx, gathering) = watch::channel(RTCIceGatheringState::New);
        let (state_tx, state) = watch::channel(RTCPeerConnectionState::New);
        let pc = PeerConnectionBuilder::new()
            .with_configuration(
                RTCConfigurationBuilder::new()
                    .with_ice_servers(ice_servers)
                    .with_ice_transport_policy(RTCIceTransportPolicy::Relay)
                    .build(),
            )
            .with_media_engine(media)
            .with_interceptor_registry(registry)
            .with_handler(Arc::new(Handler {
                gathering: gathering_tx,
                state: state_tx,
            }))
            .with_udp_addrs(vec![SocketAddr::from(([127, 0, 0, 1], 0))])
            .build()
            .await
            .expect("a peer connection");
        let track = Arc::new(TrackLocalStaticRTP::new(MediaStreamTrack::new(
            "turn-test".to_owned(),
            "audio".to_owned(),
            "audio".to_owned(),
            RtpCodecKind::Audio,
            vec![RTCRtpEncodingParameters {
                rtp_coding_parameters: RTCRtpCodingParameters {
                    ssrc: Some(0x7u32),
                    ..Default::default()
                },
                codec: RTCRtpCodec {
                    mime_type: "audio/opus".to_owned(),
                    clock_rate: 48_000,
                    channels: 2,
                    ..Default::default()
                },
                ..Default::default()
            }],
        )));
        pc.add_track(track as Arc<dyn TrackLocal>)
            .await
            .expect("a track");
        Self {
            pc: Box::new(pc),
            gathering,
            state,
        }
    }

    /// The offer with every candidate gathered.
    async fn offer(&mut self) -> String {
        let offer = self.pc.create_offer(None).await.expect("an offer");
        self.pc
            .set_local_description(offer)
            .await
            .expect("set the offer");
        tokio::time::timeout(
            DEADLINE,
            self.gathering
                .wait_for(|state| *state == RTCIceGatheringState::Complete),
        )
        .await
        .expect("gathering completes")
        .expect("the peer is alive");
        self.pc
            .local_description()
            .await
            .expect("a local description")
            .sdp
    }
}

fn candidates<'a>(sdp: &'a str, kind: &str) -> Vec<&'a str> {
    sdp.lines()
        .filter(|line| line.starts_with("a=candidate:"))
        .filter(|line| line.contains(&format!(" typ {kind}")))
        .collect()
}

#[tokio::test]
async fn a_relay_only_peer_reaches_the_sfu_through_coturn_with_bedsides_credentials() {
    let turn = TurnServer::start().await;
    let settings = IceSettings {
        stun_urls: vec![],
        turn_urls: vec![turn.url()],
        turn_secret: Some(turn.secret.clone()),
        turn_ttl: TTL,
    };
    let sfu = Sfu::spawn(
        SocketAddr::from(([127, 0, 0, 1], 0)),
        None,
        RtcpFeedback::On,
        SfuMetrics::new(),
    )
    .await
    .expect("the SFU");
    let participant = Uuid::new_v4();
    let now = chrono::Utc::now().timestamp();

    // The credentials Bedside hands out get an allocation: the offer has a
    // relayed candidate on coturn's relay address, and nothing else.
    let mut peer = RelayOnlyPeer::new(&ice_servers(&settings, participant, now)).await;
    let offer = peer.offer().await;
    let relayed = candidates(&offer, "relay");
    assert!(
        !relayed.is_empty() && candidates(&offer, "host").is_empty(),
        "expected relayed candidates only:\n{offer}\ncoturn:\n{}",
        turn.log()
    );

    // Through the relay, ICE and DTLS come up with the SFU on both sides.
    let (signals, mut sfu_side) = mpsc::unbounded_channel();
    let answer = sfu
        .publish(Uuid::new_v4(), participant, offer, signals)
        .await
        .expect("the SFU answers");
    peer.pc
        .set_remote_description(RTCSessionDescription::answer(answer).expect("an answer"))
        .await
        .expect("the answer applies");
    let connected = tokio::time::timeout(DEADLINE, async {
        loop {
            match sfu_side.recv().await {
                Some(Signal::Connected) => return true,
                Some(Signal::Disconnected) | None => return false,
                Some(_) => {}
            }
        }
    })
    .await;
    assert_eq!(
        connected,
        Ok(true),
        "the SFU's side of the relayed connection; coturn:\n{}",
        turn.log()
    );
    tokio::time::timeout(
        DEADLINE,
        peer.state
            .wait_for(|state| *state == RTCPeerConnectionState::Connected),
    )
    .await
    .expect("the peer's side connects")
    .expect("the peer is alive");
    let _ = peer.pc.close().await;

    // A credential signed with another secret, and one whose time is up,
    // are refused by coturn: no relayed candidate.
    let forged = IceSettings {
        turn_secret: Some("not-the-shared-secret".to_owned()),
        ..settings.clone()
    };
    let expired_at = now - 2 * i64::try_from(TTL.as_secs()).expect("small");
    for (what, servers) in [
        ("forged", ice_servers(&forged, participant, now)),
        ("expired", ice_servers(&settings, participant, expired_at)),
    ] {
        let mut peer = RelayOnlyPeer::new(&servers).await;
        let offer = peer.offer().await;
        assert!(
            candidates(&offer, "relay").is_empty(),
            "a {what} credential got a relay:\n{offer}"
        );
        let _ = peer.pc.close().await;
    }
    turn.stop().await;
}
