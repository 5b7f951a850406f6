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

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::time::Instant;

use bytes::BytesMut;
use rtc::ice::mdns::MulticastDnsMode;
use rtc::peer_connection::RTCPeerConnection;
use rtc::peer_connection::RTCPeerConnectionBuilder;
use rtc::peer_connection::configuration::RTCConfigurationBuilder;
use rtc::peer_connection::configuration::media_engine::MediaEngine;
use rtc::peer_connection::configuration::setting_engine::SettingEngineBuilder;
use rtc::peer_connection::event::RTCPeerConnectionEvent;
use rtc::peer_connection::message::{RTCMessage, TaggedRTCMessage};
use rtc::peer_connection::sdp::RTCSessionDescription;
use rtc::peer_connection::state::RTCPeerConnectionState;
use rtc::peer_connection::transport::{
    CandidateConfig, CandidateHostConfig, RTCDtlsRole, RTCIceCandidate,
};
use rtc::sansio::Protocol as _;
use rtc::shared::{TaggedBytesMut, TransportContext, TransportProtocol};
use tokio::net::UdpSocket;

use crate::demux::Router;

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
    /// An RTP packet from the connection's remote side (decrypted).
    Rtp {
        /// Which connection.
        peer: PeerId,
        /// The engine's id of the track it belongs to.
        track: String,
        /// The packet.
        packet: rtc::rtp::Packet,
    },
}

/// Why the endpoint could not do what was asked.
#[derive(Debug, thiserror::Error)]
pub enum EndpointError {
    /// The socket failed.
    #[error("socket: {0}")]
    Socket(#[from] std::io::Error),
    /// The engine refused (a bad offer, for example).
    #[error("webrtc: {0}")]
    Engine(#[from] rtc::shared::error::Error),
    /// The engine produced no local description.
    #[error("no local description after the answer")]
    NoAnswer,
}

/// The SFU's socket and its connections.
pub struct Endpoint {
    socket: UdpSocket,
    /// The address every connection advertises and the engine is told it
    /// receives on (the engine matches it against its host candidate).
    advertised: SocketAddr,
    router: Router<PeerId>,
    peers: HashMap<PeerId, RTCPeerConnection>,
    next_id: u64,
    events: std::collections::VecDeque<Event>,
}

impl Endpoint {
    /// Binds `bind`. Connections advertise `announce` (a public address
    /// behind 1:1 NAT) with the bound port, or the bound address itself.
    ///
    /// # Errors
    /// When the socket cannot be bound.
    pub async fn bind(bind: SocketAddr, announce: Option<IpAddr>) -> Result<Self, EndpointError> {
        let socket = UdpSocket::bind(bind).await?;
        let local = socket.local_addr()?;
        let advertised = SocketAddr::new(announce.unwrap_or(local.ip()), local.port());
        Ok(Self {
            socket,
            advertised,
            router: Router::new(),
            peers: HashMap::new(),
            next_id: 0,
            events: std::collections::VecDeque::new(),
        })
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
        Ok((id, sdp))
    }

    /// Closes a connection and forgets it.
    pub fn close(&mut self, peer: PeerId) {
        if let Some(mut pc) = self.peers.remove(&peer) {
            let _ = pc.close();
        }
        self.router.remove(&peer);
    }

    /// Runs the socket and the connections until the next event.
    ///
    /// # Errors
    /// When the socket fails.
    pub async fn next_event(&mut self) -> Result<Event, EndpointError> {
        let mut buffer = vec![0u8; 2048];
        loop {
            self.flush().await?;
            if let Some(event) = self.events.pop_front() {
                return Ok(event);
            }
            let deadline = self
                .peers
                .values_mut()
                .filter_map(|pc| pc.poll_timeout())
                .min();
            let sleep = async {
                match deadline {
                    Some(at) => tokio::time::sleep_until(at.into()).await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                received = self.socket.recv_from(&mut buffer) => {
                    let (n, from) = received?;
                    self.deliver(from, &buffer[..n]);
                }
                () = sleep => {
                    let now = Instant::now();
                    for pc in self.peers.values_mut() {
                        if pc.poll_timeout().is_some_and(|at| at <= now) {
                            let _ = pc.handle_timeout(now);
                        }
                    }
                }
            }
        }
    }

    /// Hands a datagram to the connection it belongs to, or drops it.
    fn deliver(&mut self, from: SocketAddr, datagram: &[u8]) {
        let peer = match self.router.route(from, datagram) {
            Ok(peer) => peer,
            Err(reason) => {
                tracing::debug!(%reason, "datagram dropped");
                return;
            }
        };
        let Some(pc) = self.peers.get_mut(&peer) else {
            return;
        };
        let message = TaggedBytesMut {
            now: Instant::now(),
            transport: TransportContext {
                local_addr: self.advertised,
                peer_addr: from,
                transport_protocol: TransportProtocol::UDP,
                ecn: None,
            },
            message: BytesMut::from(datagram),
        };
        if let Err(error) = pc.handle_read(message) {
            tracing::debug!(%error, peer = peer.0, "datagram refused by its connection");
        }
    }

    /// Sends what the connections wrote and collects their events and media.
    async fn flush(&mut self) -> Result<(), EndpointError> {
        let mut gone = Vec::new();
        for (&peer, pc) in &mut self.peers {
            while let Some(out) = pc.poll_write() {
                let to = out.transport.peer_addr;
                self.router.note_sent(&peer, to);
                if let Err(error) = self.socket.send_to(&out.message, to).await {
                    // One unreachable remote must not stop the others.
                    tracing::debug!(%error, peer = peer.0, "send failed");
                }
            }
            while let Some(event) = pc.poll_event() {
                if let RTCPeerConnectionEvent::OnConnectionStateChangeEvent(state) = event {
                    match state {
                        RTCPeerConnectionState::Connected => {
                            self.events.push_back(Event::Connected(peer));
                        }
                        RTCPeerConnectionState::Failed | RTCPeerConnectionState::Closed => {
                            gone.push(peer);
                        }
                        _ => {}
                    }
                }
            }
            while let Some(TaggedRTCMessage { message, .. }) = pc.poll_read() {
                if let RTCMessage::RtpPacket(track, packet) = message {
                    self.events.push_back(Event::Rtp {
                        peer,
                        track,
                        packet,
                    });
                }
            }
        }
        for peer in gone {
            self.close(peer);
            self.events.push_back(Event::Gone(peer));
        }
        Ok(())
    }
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
