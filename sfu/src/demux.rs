//! Routing datagrams on the SFU's one UDP socket to their peer connection.
//!
//! Every peer connection of every visit shares one socket (one port for a
//! clinic to open; `ARCHITECTURE.md` §3a), and the `rtc` engine has no
//! demultiplexer of its own: once ICE has chosen a path, a peer connection
//! accepts any non-STUN datagram handed to it. So which connection a datagram
//! reaches is decided here, and only here:
//!
//! 1. A STUN binding request goes to the connection whose local ICE ufrag is
//!    the first half of its USERNAME (`<our ufrag>:<their ufrag>`, RFC 8445
//!    §7.2.2), and its source address is remembered for that connection
//!    unless another connection already has it. The connection checks
//!    MESSAGE-INTEGRITY itself.
//! 2. Anything else (DTLS, SRTP/SRTCP, STUN responses to the SFU's own
//!    checks) goes by source address: one remembered from a binding request,
//!    or one the connection sent to ([`Router::note_sent`]), again never
//!    taken from another connection that has it. An address stays with the
//!    first connection that learned it until that connection closes, so a
//!    participant cannot claim another's address by listing it as a
//!    candidate or by spoofing it. (Addresses a connection stops using are
//!    forgotten only when it closes: a bounded, per-connection table that
//!    follows the selected pair is still to do.)
//! 3. Everything else is dropped with the reason ([`Unroutable`]), never
//!    handed to a connection that did not ask for it.
//!
//! What kind of datagram it is follows RFC 7983's first-byte ranges.

use std::collections::HashMap;
use std::hash::Hash;
use std::net::SocketAddr;

use rtc::stun::attributes::ATTR_USERNAME;
use rtc::stun::message::{BINDING_REQUEST, Message, is_stun_message};
use rtc::stun::textattrs::TextAttribute;

/// What a datagram carries, by its first byte (RFC 7983 §7).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// STUN (0–3) with the magic cookie.
    Stun,
    /// DTLS (20–63).
    Dtls,
    /// TURN channel data (64–79): the SFU is no TURN server.
    TurnChannel,
    /// RTP or RTCP (128–191), protected by SRTP/SRTCP.
    Rtp,
    /// Nothing a WebRTC peer sends.
    Unknown,
}

impl Kind {
    /// The kind of `datagram`.
    pub fn of(datagram: &[u8]) -> Self {
        match datagram.first() {
            Some(0..=3) if is_stun_message(datagram) => Kind::Stun,
            Some(20..=63) => Kind::Dtls,
            Some(64..=79) => Kind::TurnChannel,
            Some(128..=191) => Kind::Rtp,
            _ => Kind::Unknown,
        }
    }
}

/// Why a datagram reached no connection.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Unroutable {
    /// Not STUN, DTLS or SRTP.
    #[error("not a WebRTC datagram (first byte {0:?})")]
    NotWebRtc(Option<u8>),
    /// A STUN message that does not parse.
    #[error("malformed STUN: {0}")]
    MalformedStun(String),
    /// A STUN message that is not a binding request, from an unknown address.
    #[error("STUN other than a binding request from an unknown address")]
    UnexpectedStun,
    /// A binding request without a usable USERNAME (`<ufrag>:<ufrag>`).
    #[error("binding request without a usable USERNAME")]
    NoUsername,
    /// A binding request for a ufrag no connection has.
    #[error("binding request for an unknown ufrag")]
    UnknownUfrag,
    /// A non-STUN datagram from an address no connection knows.
    #[error("datagram from an unknown address")]
    UnknownAddress,
}

/// The local ufrag a STUN binding request is addressed to.
///
/// # Errors
/// [`Unroutable::MalformedStun`] when it does not parse,
/// [`Unroutable::UnexpectedStun`] when it is not a binding request, and
/// [`Unroutable::NoUsername`] when it has no `<ours>:<theirs>` USERNAME.
pub fn binding_request_ufrag(datagram: &[u8]) -> Result<String, Unroutable> {
    let mut message = Message::new();
    message
        .unmarshal_binary(datagram)
        .map_err(|error| Unroutable::MalformedStun(error.to_string()))?;
    if message.typ != BINDING_REQUEST {
        return Err(Unroutable::UnexpectedStun);
    }
    let username =
        TextAttribute::get_from_as(&message, ATTR_USERNAME).map_err(|_| Unroutable::NoUsername)?;
    match username.text.split_once(':') {
        Some((ours, theirs)) if !ours.is_empty() && !theirs.is_empty() => Ok(ours.to_owned()),
        _ => Err(Unroutable::NoUsername),
    }
}

/// Which connection each datagram belongs to. `K` names a connection.
#[derive(Debug)]
pub struct Router<K> {
    by_ufrag: HashMap<String, K>,
    by_address: HashMap<SocketAddr, K>,
}

impl<K> Default for Router<K> {
    fn default() -> Self {
        Self {
            by_ufrag: HashMap::new(),
            by_address: HashMap::new(),
        }
    }
}

impl<K: Clone + Eq + Hash> Router<K> {
    /// A router that knows no connection.
    pub fn new() -> Self {
        Self::default()
    }

    /// A connection whose local description carries `ufrag` (unique per
    /// connection: the SFU chooses it). An ICE restart registers the new one.
    pub fn add(&mut self, ufrag: &str, connection: K) {
        self.by_ufrag.insert(ufrag.to_owned(), connection);
    }

    /// The connection sent a datagram to `to` (its own connectivity checks):
    /// replies from there are its.
    pub fn note_sent(&mut self, connection: &K, to: SocketAddr) {
        self.learn(to, connection);
    }

    /// `address` is `connection`'s, unless another connection has it.
    fn learn(&mut self, address: SocketAddr, connection: &K) {
        self.by_address
            .entry(address)
            .or_insert_with(|| connection.clone());
    }

    /// Forgets a connection: its ufrags and addresses.
    pub fn remove(&mut self, connection: &K) {
        self.by_ufrag.retain(|_, c| c != connection);
        self.by_address.retain(|_, c| c != connection);
    }

    /// The connection `datagram` from `from` belongs to.
    ///
    /// # Errors
    /// [`Unroutable`] says why it belongs to none (drop it).
    pub fn route(&mut self, from: SocketAddr, datagram: &[u8]) -> Result<K, Unroutable> {
        match Kind::of(datagram) {
            Kind::Stun => match binding_request_ufrag(datagram) {
                Ok(ufrag) => {
                    let connection = self
                        .by_ufrag
                        .get(&ufrag)
                        .cloned()
                        .ok_or(Unroutable::UnknownUfrag)?;
                    self.learn(from, &connection);
                    Ok(connection)
                }
                // Responses to our own checks carry no USERNAME: by address.
                Err(Unroutable::UnexpectedStun) => self
                    .by_address
                    .get(&from)
                    .cloned()
                    .ok_or(Unroutable::UnexpectedStun),
                Err(other) => Err(other),
            },
            Kind::Dtls | Kind::Rtp => self
                .by_address
                .get(&from)
                .cloned()
                .ok_or(Unroutable::UnknownAddress),
            Kind::TurnChannel | Kind::Unknown => {
                Err(Unroutable::NotWebRtc(datagram.first().copied()))
            }
        }
    }

    /// Connections known (for metrics and tests).
    pub fn connections(&self) -> usize {
        self.by_ufrag
            .values()
            .chain(self.by_address.values())
            .collect::<std::collections::HashSet<_>>()
            .len()
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;
    use rtc::stun::message::{BINDING_SUCCESS, Setter, TransactionId};

    use super::*;

    fn stun(typ: rtc::stun::message::MessageType, username: Option<&str>) -> Vec<u8> {
        let mut setters: Vec<Box<dyn Setter>> = vec![Box::new(typ), Box::new(TransactionId::new())];
        if let Some(username) = username {
            setters.push(Box::new(TextAttribute::new(
                ATTR_USERNAME,
                username.to_owned(),
            )));
        }
        let mut message = Message::new();
        message.build(&setters).unwrap();
        message.raw
    }

    fn addr(port: u16) -> SocketAddr {
        SocketAddr::from(([192, 0, 2, 1], port))
    }

    /// A DTLS ClientHello's first bytes (content type 22, version 1.2).
    const DTLS: &[u8] = &[22, 0xfe, 0xfd, 0, 0, 0, 0, 0, 0, 0, 0, 0, 10];
    /// An SRTP packet's first bytes (version 2, PT 96).
    const RTP: &[u8] = &[0x80, 96, 0, 1, 0, 0, 0, 1, 0, 0, 0, 42];

    #[test]
    fn kinds_follow_rfc_7983() {
        assert_eq!(Kind::of(&stun(BINDING_REQUEST, Some("a:b"))), Kind::Stun);
        assert_eq!(Kind::of(DTLS), Kind::Dtls);
        assert_eq!(Kind::of(RTP), Kind::Rtp);
        assert_eq!(Kind::of(&[64, 0, 0, 4]), Kind::TurnChannel);
        assert_eq!(Kind::of(&[]), Kind::Unknown);
        assert_eq!(Kind::of(&[255, 1, 2]), Kind::Unknown);
        // First byte in STUN's range but no magic cookie: not STUN.
        assert_eq!(
            Kind::of(&[0, 1, 0, 0, 1, 2, 3, 4, 0, 0, 0, 0]),
            Kind::Unknown
        );
    }

    #[test]
    fn a_binding_request_names_its_connection_by_ufrag_and_teaches_the_address() {
        let mut router = Router::new();
        router.add("alice", 1);
        router.add("bob", 2);
        let request = stun(BINDING_REQUEST, Some("bob:browser"));
        assert_eq!(router.route(addr(5000), &request), Ok(2));
        // From then on, DTLS and SRTP from that address are bob's.
        assert_eq!(router.route(addr(5000), DTLS), Ok(2));
        assert_eq!(router.route(addr(5000), RTP), Ok(2));
        // Nobody else's.
        assert_eq!(
            router.route(addr(5001), RTP),
            Err(Unroutable::UnknownAddress)
        );
    }

    #[test]
    fn replies_to_our_own_checks_go_where_we_sent_them() {
        let mut router = Router::new();
        router.add("alice", 1);
        let reply = stun(BINDING_SUCCESS, None);
        assert_eq!(
            router.route(addr(6000), &reply),
            Err(Unroutable::UnexpectedStun)
        );
        router.note_sent(&1, addr(6000));
        assert_eq!(router.route(addr(6000), &reply), Ok(1));
    }

    #[test]
    fn hostile_and_malformed_datagrams_reach_no_connection() {
        let mut router = Router::new();
        router.add("alice", 1);
        router.note_sent(&1, addr(7000));
        let unknown = stun(BINDING_REQUEST, Some("mallory:x"));
        assert_eq!(
            router.route(addr(7001), &unknown),
            Err(Unroutable::UnknownUfrag)
        );
        for username in [None, Some("alice"), Some(":x"), Some("alice:")] {
            assert_eq!(
                router.route(addr(7001), &stun(BINDING_REQUEST, username)),
                Err(Unroutable::NoUsername),
                "{username:?}"
            );
        }
        // A truncated binding request: the header promises more than arrives.
        let mut truncated = stun(BINDING_REQUEST, Some("alice:x"));
        truncated.truncate(truncated.len() - 3);
        assert!(matches!(
            router.route(addr(7001), &truncated),
            Err(Unroutable::MalformedStun(_))
        ));
        assert_eq!(
            router.route(addr(7000), &[64, 0, 0, 0]),
            Err(Unroutable::NotWebRtc(Some(64)))
        );
        assert_eq!(
            router.route(addr(7000), &[]),
            Err(Unroutable::NotWebRtc(None))
        );
        // An unknown address learned nothing from the refusals.
        assert_eq!(
            router.route(addr(7001), RTP),
            Err(Unroutable::UnknownAddress)
        );
    }

    #[test]
    fn an_address_stays_with_the_connection_that_learned_it() {
        let mut router = Router::new();
        router.add("alice", 1);
        router.add("mallory", 2);
        let alice = addr(8100);
        assert_eq!(
            router.route(alice, &stun(BINDING_REQUEST, Some("alice:x"))),
            Ok(1)
        );
        // Mallory lists alice's address as a candidate (her connection
        // checks it) and sends a binding request from it (spoofed).
        router.note_sent(&2, alice);
        assert_eq!(
            router.route(alice, &stun(BINDING_REQUEST, Some("mallory:x"))),
            Ok(2)
        );
        // Alice's media still reaches alice's connection only.
        assert_eq!(router.route(alice, RTP), Ok(1));
        assert_eq!(router.route(alice, DTLS), Ok(1));
        // Once alice's connection closes, the address is free again.
        router.remove(&1);
        router.note_sent(&2, alice);
        assert_eq!(router.route(alice, RTP), Ok(2));
    }

    #[test]
    fn a_removed_connection_is_forgotten_entirely() {
        let mut router = Router::new();
        router.add("alice", 1);
        router.add("bob", 2);
        assert_eq!(
            router.route(addr(8000), &stun(BINDING_REQUEST, Some("alice:x"))),
            Ok(1)
        );
        router.note_sent(&1, addr(8001));
        assert_eq!(router.connections(), 2);
        router.remove(&1);
        assert_eq!(router.connections(), 1);
        assert_eq!(
            router.route(addr(8000), RTP),
            Err(Unroutable::UnknownAddress)
        );
        assert_eq!(
            router.route(addr(8001), DTLS),
            Err(Unroutable::UnknownAddress)
        );
        assert_eq!(
            router.route(addr(8002), &stun(BINDING_REQUEST, Some("alice:x"))),
            Err(Unroutable::UnknownUfrag)
        );
    }

    proptest! {
        /// No datagram makes routing panic, and an unknown sender never
        /// reaches a connection without a binding request for its ufrag.
        #[test]
        fn arbitrary_datagrams_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..600)) {
            let mut router = Router::new();
            router.add("alice", 1);
            let routed = router.route(addr(9000), &bytes);
            if routed.is_ok() {
                prop_assert_eq!(binding_request_ufrag(&bytes), Ok("alice".to_owned()));
            }
        }

        /// A STUN header with arbitrary attribute bytes never panics the parser.
        #[test]
        fn arbitrary_stun_bodies_never_panic(body in proptest::collection::vec(any::<u8>(), 0..300)) {
            let mut datagram = stun(BINDING_REQUEST, None);
            let length = u16::try_from(body.len()).unwrap();
            datagram[2..4].copy_from_slice(&length.to_be_bytes());
            datagram.extend_from_slice(&body);
            let _ = binding_request_ufrag(&datagram);
        }
    }
}
