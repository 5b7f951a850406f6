//! Rooms: which participant's media goes to whom, and the task that runs
//! the [`Endpoint`] for them.
//!
//! Each participant of a visit has one peer connection. The participant's
//! browser offers it once, with what it sends; after that only the SFU
//! offers (to add or stop the tracks it forwards), one offer at a time, and
//! waits for the answer before the next. So the two sides never offer at
//! the same time (no glare), whatever order participants join, leave and
//! rejoin in: changes made while an offer is out are gathered into the next
//! one.
//!
//! Forwarding to a subscriber starts once the subscriber has answered the
//! offer that added the track, with a keyframe request to the publisher so
//! the subscriber's decoder starts at once. Keyframe requests, the SFU's
//! own and subscribers' (PLI/FIR), reach a publisher at most once per
//! [`KEYFRAME_INTERVAL`] per stream; one made in between is sent when the
//! interval has passed (two subscribers starting together both get a
//! keyframe).
//!
//! Every [`SPEECH_INTERVAL`] the rooms are told who speaks
//! ([`crate::speakers`]) and each simulcast subscription's layer is
//! chosen ([`crate::simulcast`]); every [`STATS_INTERVAL`] each
//! participant's connection statistics go to their room
//! ([`crate::stats`]), and a connection too weak for video is switched to
//! audio only ([`AudioOnlyReason::WeakConnection`]).
//!
//! Invariants: a participant is in one room; media only flows between
//! participants of the same room; a participant who publishes again (a
//! reload, a rejoin) replaces their earlier connection.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use rtc::peer_connection::configuration::media_engine::{MIME_TYPE_H264, MIME_TYPE_VP8};
use rtc::peer_connection::transport::RTCIceCandidateInit;
/// A remote ICE candidate as signaling receives it.
pub use rtc::peer_connection::transport::RTCIceCandidateInit as IceCandidate;
use rtc::rtp_transceiver::RTCRtpSenderId;
use rtc::rtp_transceiver::rtp_sender::{RTCRtpCodec, RtpCodecKind};
use tokio::sync::{mpsc, oneshot};
use uuid::Uuid;

use crate::endpoint::{Endpoint, EndpointError, Event, PeerId, RtcpFeedback};
use crate::metrics::SfuMetrics;
use crate::simulcast;
use crate::speakers::{RoomSpeech, SPEECH_INTERVAL, Speakers};
use crate::stats::{Counters, ParticipantStats, STATS_INTERVAL};

/// At most one keyframe request per publisher stream this often.
pub const KEYFRAME_INTERVAL: Duration = Duration::from_millis(500);

/// What the SFU tells one participant's signaling.
#[derive(Debug, Clone, PartialEq)]
pub enum Signal {
    /// An offer to answer with [`Sfu::answer`] (tracks added or stopped).
    Offer(String),
    /// Media is flowing (ICE and DTLS are up).
    Connected,
    /// The connection failed or closed; publish again to reconnect.
    Disconnected,
    /// Who speaks in the participant's room changed ([`crate::speakers`]).
    Speakers(Speakers),
    /// The connection statistics of everyone in the participant's room
    /// with a connection, every [`STATS_INTERVAL`] (signaling decides who
    /// may see whose).
    Stats(std::sync::Arc<Vec<(Uuid, ParticipantStats)>>),
    /// The participant's audio-only mode changed: `Some` while they receive
    /// no video (and their client should send none), with why.
    AudioOnly(Option<AudioOnlyReason>),
}

/// Why a participant is in audio-only mode.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AudioOnlyReason {
    /// They chose it.
    Chosen,
    /// Their connection was too weak for video: [`WEAK_SAMPLES`] statistics
    /// intervals in a row with [`WEAK_LOSS`] of packets lost either way or a
    /// round trip of [`WEAK_ROUND_TRIP`]. They can ask for video again.
    WeakConnection,
}

/// Packet loss, either way, that makes an interval weak. Above about a
/// tenth, VP8 video freezes more than it plays while Opus still conceals.
pub const WEAK_LOSS: f64 = 0.10;
/// A round trip that makes an interval weak, seconds.
pub const WEAK_ROUND_TRIP: f64 = 1.0;
/// Weak intervals in a row after which video is switched off.
pub const WEAK_SAMPLES: u32 = 3;

/// What a subscriber's audio takes of its estimate before video shares the
/// rest (Opus at its highest and its packet overhead).
const AUDIO_SHARE_BPS: u64 = 64_000;

/// Why the SFU refused.
#[derive(Debug, thiserror::Error)]
pub enum SfuError {
    /// The offer, answer or candidate was refused by the engine.
    #[error("{0}")]
    Refused(#[from] EndpointError),
    /// The participant has no connection (never published, or it closed).
    #[error("no connection for this participant")]
    NotConnected,
    /// An answer came with no offer of the SFU's waiting for it.
    #[error("no offer is waiting for an answer")]
    NoOfferPending,
    /// The SFU task has stopped.
    #[error("the media server stopped")]
    Stopped,
}

enum Command {
    Publish {
        room: Uuid,
        participant: Uuid,
        offer: String,
        signals: mpsc::UnboundedSender<Signal>,
        reply: oneshot::Sender<Result<String, SfuError>>,
    },
    Answer {
        participant: Uuid,
        sdp: String,
        reply: oneshot::Sender<Result<(), SfuError>>,
    },
    Candidate {
        participant: Uuid,
        candidate: RTCIceCandidateInit,
        reply: oneshot::Sender<Result<(), SfuError>>,
    },
    Leave {
        participant: Uuid,
    },
    AudioOnly {
        participant: Uuid,
        enabled: bool,
        reply: oneshot::Sender<Result<(), SfuError>>,
    },
    ShownHeight {
        subscriber: Uuid,
        publisher: Uuid,
        height: u16,
    },
}

/// The handle signaling holds: cheap to clone, every call goes to the SFU
/// task.
#[derive(Clone)]
pub struct Sfu {
    commands: mpsc::UnboundedSender<Command>,
    metrics: SfuMetrics,
    advertised: std::net::SocketAddr,
}

impl Sfu {
    /// Binds the media socket on `bind` (advertising `announce`, see
    /// [`Endpoint::bind`]) and starts the SFU on a thread of its own,
    /// its connections running `feedback` (always [`RtcpFeedback::On`],
    /// except to measure the engine), counting into `metrics`; it stops
    /// when every handle is dropped.
    ///
    /// The SFU's loop owns a single-threaded runtime: a media packet is
    /// received, forwarded and sent without any hand-over between threads,
    /// and the signaling work on the server's runtime does not share its
    /// thread (measured with `scripts/loadtest-visits.sh`: 15.5 → 14.9 µs
    /// per forwarded packet in one run each, within this machine's
    /// run-to-run spread).
    ///
    /// # Errors
    /// When the socket cannot be bound or the thread cannot start.
    pub async fn spawn(
        bind: std::net::SocketAddr,
        announce: Option<std::net::IpAddr>,
        feedback: RtcpFeedback,
        metrics: SfuMetrics,
    ) -> Result<Self, EndpointError> {
        let (commands, receiver) = mpsc::unbounded_channel();
        let (ready, started) = oneshot::channel();
        let task_metrics = metrics.clone();
        std::thread::Builder::new()
            .name("bedside-sfu".to_owned())
            .spawn(move || {
                let runtime = match tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                {
                    Ok(runtime) => runtime,
                    Err(error) => {
                        let _ = ready.send(Err(EndpointError::Socket(error)));
                        return;
                    }
                };
                runtime.block_on(async move {
                    let mut endpoint = match Endpoint::bind(bind, announce).await {
                        Ok(endpoint) => endpoint,
                        Err(error) => {
                            let _ = ready.send(Err(error));
                            return;
                        }
                    };
                    endpoint.set_rtcp_feedback(feedback);
                    endpoint.measure_forward_delay(task_metrics.forward_delay.clone());
                    let advertised = endpoint.advertised();
                    let rooms = Rooms {
                        endpoint,
                        participants: HashMap::new(),
                        by_peer: HashMap::new(),
                        published: HashMap::new(),
                        last_keyframe_request: HashMap::new(),
                        deferred_keyframes: std::collections::HashSet::new(),
                        connected: std::collections::HashSet::new(),
                        speech: HashMap::new(),
                        counters: HashMap::new(),
                        stats_due: Instant::now() + STATS_INTERVAL,
                        metrics: task_metrics,
                    };
                    if ready.send(Ok(advertised)).is_ok() {
                        rooms.run(receiver).await;
                    }
                });
            })?;
        let advertised = started.await.map_err(|_| {
            EndpointError::Socket(std::io::Error::other("the SFU thread ended at start"))
        })??;
        Ok(Self {
            commands,
            metrics,
            advertised,
        })
    }

    /// The address every connection advertises (the one UDP port to open).
    pub fn advertised(&self) -> std::net::SocketAddr {
        self.advertised
    }

    /// The SFU's metrics.
    pub fn metrics(&self) -> &SfuMetrics {
        &self.metrics
    }

    /// Connects `participant` to `room` with the browser's offer (what it
    /// sends) and returns the answer. Later changes arrive as
    /// [`Signal::Offer`]s on `signals`. Publishing again replaces the
    /// participant's earlier connection.
    ///
    /// # Errors
    /// When the offer is refused or the SFU stopped.
    pub async fn publish(
        &self,
        room: Uuid,
        participant: Uuid,
        offer: String,
        signals: mpsc::UnboundedSender<Signal>,
    ) -> Result<String, SfuError> {
        self.call(|reply| Command::Publish {
            room,
            participant,
            offer,
            signals,
            reply,
        })
        .await
    }

    /// The participant's answer to the SFU's last [`Signal::Offer`].
    ///
    /// # Errors
    /// When no offer waits, or the answer is refused.
    pub async fn answer(&self, participant: Uuid, sdp: String) -> Result<(), SfuError> {
        self.call(|reply| Command::Answer {
            participant,
            sdp,
            reply,
        })
        .await
    }

    /// A candidate the participant's browser trickled.
    ///
    /// # Errors
    /// When the participant has no connection or the candidate is refused.
    pub async fn candidate(
        &self,
        participant: Uuid,
        candidate: RTCIceCandidateInit,
    ) -> Result<(), SfuError> {
        self.call(|reply| Command::Candidate {
            participant,
            candidate,
            reply,
        })
        .await
    }

    /// Turns the participant's audio-only mode on (no video forwarded to
    /// them) or off (video resumes on a keyframe). Confirmed, like a switch
    /// made for a weak connection, by [`Signal::AudioOnly`].
    ///
    /// # Errors
    /// When the participant has no connection.
    pub async fn set_audio_only(&self, participant: Uuid, enabled: bool) -> Result<(), SfuError> {
        self.call(|reply| Command::AudioOnly {
            participant,
            enabled,
            reply,
        })
        .await
    }

    /// The height (device pixels) `subscriber` shows `publisher`'s video
    /// at: the simulcast layer it gets is the smallest at least that tall
    /// ([`crate::simulcast`]).
    pub fn show_at(&self, subscriber: Uuid, publisher: Uuid, height: u16) {
        let _ = self.commands.send(Command::ShownHeight {
            subscriber,
            publisher,
            height,
        });
    }

    /// Closes the participant's connection; the others stop receiving it.
    pub fn leave(&self, participant: Uuid) {
        let _ = self.commands.send(Command::Leave { participant });
    }

    async fn call<T>(
        &self,
        command: impl FnOnce(oneshot::Sender<Result<T, SfuError>>) -> Command,
    ) -> Result<T, SfuError> {
        let (reply, answer) = oneshot::channel();
        self.commands
            .send(command(reply))
            .map_err(|_| SfuError::Stopped)?;
        answer.await.map_err(|_| SfuError::Stopped)?
    }
}

/// One participant's connection and where its negotiation stands.
struct Participant {
    room: Uuid,
    peer: PeerId,
    signals: mpsc::UnboundedSender<Signal>,
    /// An offer of the SFU's is out, unanswered.
    offer_out: bool,
    /// Tracks were added or stopped since the last offer.
    offer_needed: bool,
    /// Receiving no video, and why.
    audio_only: Option<AudioOnlyReason>,
    /// Statistics intervals in a row their connection was weak.
    weak_samples: u32,
    /// The height they show each publisher's video at (`preferred_layer`).
    shown_heights: HashMap<Uuid, u16>,
    /// Their bandwidth, estimated from the loss they report.
    bandwidth: simulcast::BandwidthEstimate,
    /// When a layer they receive last moved down for bandwidth.
    last_downgrade: Option<Instant>,
}

/// Whether a subscriber's copy of a track may carry packets now: its offer
/// was answered and its connection is up (before DTLS is up there are no
/// SRTP keys to send with).
/// Whether a video payload starts a keyframe, and the picture height it
/// declares if it does; `None` for a codec whose keyframes are not
/// recognised (VP8 and H.264 are).
fn keyframe_start(mime_type: &str, payload: &[u8]) -> Option<(bool, Option<u16>)> {
    if mime_type.eq_ignore_ascii_case(MIME_TYPE_VP8) {
        Some(
            crate::vp8::Descriptor::parse(payload).map_or((false, None), |descriptor| {
                (
                    descriptor.keyframe,
                    descriptor.size.map(|(_, height)| height),
                )
            }),
        )
    } else if mime_type.eq_ignore_ascii_case(MIME_TYPE_H264) {
        Some(crate::h264::keyframe(payload).map_or((false, None), |start| (true, start.height)))
    } else {
        None
    }
}

fn flowing(sub: &Subscription, connected: &std::collections::HashSet<PeerId>) -> bool {
    sub.active && connected.contains(&sub.peer)
}

/// A track a participant publishes, and who receives it.
struct Published {
    room: Uuid,
    publisher: Uuid,
    kind: RtpCodecKind,
    codec: RTCRtpCodec,
    /// Its layers: one, or a simulcast video's (in the order they opened).
    layers: Vec<LayerMeter>,
    subscriptions: Vec<Subscription>,
}

/// One layer of a published track and what it carries.
struct LayerMeter {
    ssrc: u32,
    /// Payload bytes since the last measurement.
    bytes: u64,
    /// Smoothed bits per second.
    bitrate_bps: u64,
    /// The height its last keyframe declared (VP8).
    height: Option<u16>,
    last_packet: Instant,
}

impl LayerMeter {
    fn new(ssrc: u32) -> Self {
        Self {
            ssrc,
            bytes: 0,
            bitrate_bps: 0,
            height: None,
            last_packet: Instant::now(),
        }
    }

    fn layer(&self) -> simulcast::Layer {
        simulcast::Layer {
            ssrc: self.ssrc,
            bitrate_bps: self.bitrate_bps,
            height: self.height,
            last_packet: self.last_packet,
        }
    }
}

impl Published {
    fn simulcast(&self) -> bool {
        self.layers.len() > 1
    }

    /// The layer a subscription's keyframe requests go to: the one it waits
    /// to switch to, else the one it gets.
    fn keyframe_layer(&self, sub: &Subscription) -> Option<u32> {
        sub.target.or(sub.current)
    }
}

/// One subscriber's copy of a published track.
struct Subscription {
    subscriber: Uuid,
    peer: PeerId,
    sender: RTCRtpSenderId,
    /// Included in an offer the subscriber has been sent.
    offered: bool,
    /// The subscriber answered that offer (see `flowing`).
    active: bool,
    /// No packet forwarded yet (the first one starts the track's numbering),
    /// or none since a pause: the next one re-anchors it.
    fresh: bool,
    /// Video not forwarded: the subscriber is in audio-only mode.
    paused: bool,
    /// The layer forwarded now (`None` until the first keyframe of a
    /// simulcast track's chosen layer).
    current: Option<u32>,
    /// The layer to switch to on its next keyframe, when not `current`.
    target: Option<u32>,
}

struct Rooms {
    endpoint: Endpoint,
    participants: HashMap<Uuid, Participant>,
    by_peer: HashMap<PeerId, Uuid>,
    /// Published tracks by the publisher's connection and the engine's track id.
    published: HashMap<(PeerId, String), Published>,
    last_keyframe_request: HashMap<(PeerId, u32), Instant>,
    /// Keyframe requests held back by the rate limit, sent when it allows.
    deferred_keyframes: std::collections::HashSet<(PeerId, u32)>,
    /// Connections whose ICE and DTLS are up.
    connected: std::collections::HashSet<PeerId>,
    /// Who speaks, by room.
    speech: HashMap<Uuid, RoomSpeech>,
    /// Each participant's counters at the last statistics sample, and when.
    counters: HashMap<Uuid, (Instant, Counters)>,
    /// When the next statistics sample is taken.
    stats_due: Instant,
    metrics: SfuMetrics,
}

enum Next {
    Command(Option<Command>),
    Event(Result<Event, EndpointError>),
    Tick,
}

impl Rooms {
    async fn run(mut self, mut commands: mpsc::UnboundedReceiver<Command>) {
        let mut ticks = tokio::time::interval(SPEECH_INTERVAL);
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            let next = tokio::select! {
                command = commands.recv() => Next::Command(command),
                event = self.endpoint.next_event() => Next::Event(event),
                _ = ticks.tick() => Next::Tick,
            };
            // Media packets change no room and need no offer: the per-room
            // bookkeeping runs after anything else only, not per packet.
            let media = matches!(next, Next::Event(Ok(Event::Rtp { .. })));
            match next {
                Next::Command(Some(command)) => self.command(command),
                Next::Command(None) => return,
                Next::Tick => self.tick(),
                Next::Event(Ok(event)) => self.event(event),
                Next::Event(Err(error)) => {
                    tracing::error!(%error, "the SFU socket failed; video visits stop");
                    return;
                }
            }
            if !media {
                self.negotiate();
                self.count();
            }
        }
    }

    /// Tells each room who speaks when that changed, and every
    /// [`STATS_INTERVAL`] everyone's connection statistics.
    fn tick(&mut self) {
        let mut changes = Vec::new();
        for (room, speech) in &mut self.speech {
            if let Some(speakers) = speech.evaluate() {
                changes.push((*room, speakers));
            }
        }
        for (room, speakers) in changes {
            self.tell_room(room, &Signal::Speakers(speakers));
        }
        self.choose_layers();
        let now = Instant::now();
        if now >= self.stats_due {
            self.stats_due = now + STATS_INTERVAL;
            self.sample_stats(now);
        }
    }

    /// Measures each simulcast layer's bitrate over the last interval and
    /// picks each subscriber's layer ([`simulcast::choose`]); a subscriber
    /// whose layer changes gets it from the new layer's next keyframe,
    /// asked for now.
    fn choose_layers(&mut self) {
        let now = Instant::now();
        let seconds = SPEECH_INTERVAL.as_secs_f64();
        let mut keyframes = Vec::new();
        // Video subscriptions per subscriber: a bandwidth estimate is for
        // everything it receives, shared equally (after audio's share).
        let mut videos: HashMap<PeerId, u64> = HashMap::new();
        for track in self
            .published
            .values()
            .filter(|t| t.kind == RtpCodecKind::Video)
        {
            for sub in &track.subscriptions {
                *videos.entry(sub.peer).or_default() += 1;
            }
        }
        for ((publisher_peer, _), track) in &mut self.published {
            if !track.simulcast() {
                continue;
            }
            for layer in &mut track.layers {
                let measured = (layer.bytes as f64 * 8.0 / seconds) as u64;
                // Smoothed: a keyframe makes one interval's rate jump.
                layer.bitrate_bps = (layer.bitrate_bps + measured) / 2;
                layer.bytes = 0;
            }
            let layers: Vec<simulcast::Layer> =
                track.layers.iter().map(LayerMeter::layer).collect();
            for sub in &mut track.subscriptions {
                if sub.paused || !flowing(sub, &self.connected) {
                    continue;
                }
                let Some(subscriber) = self.participants.get_mut(&sub.subscriber) else {
                    continue;
                };
                let shared = videos.get(&sub.peer).copied().unwrap_or(1).max(1);
                let wants = simulcast::Wants {
                    max_height: subscriber.shown_heights.get(&track.publisher).copied(),
                    bandwidth_bps: subscriber
                        .bandwidth
                        .bps()
                        .map(|bps| bps.saturating_sub(AUDIO_SHARE_BPS) / shared),
                    last_downgrade: subscriber.last_downgrade,
                };
                let Some((ssrc, downgrade)) = simulcast::choose(&layers, sub.current, &wants, now)
                else {
                    continue;
                };
                if downgrade {
                    subscriber.last_downgrade = Some(now);
                }
                let target = (sub.current != Some(ssrc)).then_some(ssrc);
                if target.is_some() && target != sub.target {
                    tracing::debug!(
                        subscriber = sub.peer.0,
                        ssrc,
                        max_height = ?wants.max_height,
                        bandwidth_bps = ?wants.bandwidth_bps,
                        downgrade,
                        "switching simulcast layer at the next keyframe"
                    );
                }
                sub.target = target;
                if let Some(ssrc) = sub.target {
                    // Asked again at every evaluation until it comes (the
                    // rate limit spaces the requests): a request the
                    // publisher missed must not leave the switch pending.
                    keyframes.push((*publisher_peer, ssrc));
                }
            }
        }
        keyframes.sort_unstable();
        keyframes.dedup();
        for (publisher, ssrc) in keyframes {
            self.request_keyframe(publisher, ssrc);
        }
    }

    /// Samples every connection's counters; sends each room the interval's
    /// statistics of its participants and counts them into the metrics.
    fn sample_stats(&mut self, now: Instant) {
        let mut by_room: HashMap<Uuid, Vec<(Uuid, ParticipantStats)>> = HashMap::new();
        for (id, participant) in &self.participants {
            if !self.connected.contains(&participant.peer) {
                continue;
            }
            let Ok(counters) = self.endpoint.stats(participant.peer) else {
                continue;
            };
            let previous = self.counters.insert(*id, (now, counters.clone()));
            let Some((then, before)) = previous else {
                // The first sample only starts the interval.
                continue;
            };
            let stats = ParticipantStats::between(&before, &counters, now.duration_since(then));
            by_room
                .entry(participant.room)
                .or_default()
                .push((*id, stats));
        }
        for (room, mut stats) in by_room {
            // What a subscriber reports lost includes what never reached
            // the SFU from the publishers (it forwards their gaps): only
            // the loss beyond the worst of the others' uplinks is its own.
            let uplinks: Vec<(Uuid, f64)> =
                stats.iter().map(|(id, s)| (*id, s.sending_loss)).collect();
            for (id, entry) in &mut stats {
                let upstream = uplinks
                    .iter()
                    .filter(|(other, _)| other != id)
                    .map(|(_, loss)| *loss)
                    .fold(0.0, f64::max);
                entry.receiving_loss = (entry.receiving_loss - upstream).max(0.0);
            }
            stats.sort_unstable_by_key(|(id, _)| *id);
            for (id, entry) in &stats {
                self.metrics.observe_participant(entry);
                self.judge_connection(*id, entry);
            }
            self.tell_room(room, &Signal::Stats(std::sync::Arc::new(stats)));
        }
    }

    /// Updates a participant's bandwidth estimate from an interval's
    /// statistics, and switches their video off when their connection has
    /// been too weak for it for [`WEAK_SAMPLES`] intervals in a row (one
    /// lossy interval is a hiccup, not a bad network).
    fn judge_connection(&mut self, id: Uuid, stats: &ParticipantStats) {
        let Some(p) = self.participants.get_mut(&id) else {
            return;
        };
        p.bandwidth
            .update(stats.receiving_bps, stats.receiving_loss);
        let weak = stats.sending_loss >= WEAK_LOSS
            || stats.receiving_loss >= WEAK_LOSS
            || stats.round_trip.is_some_and(|rtt| rtt >= WEAK_ROUND_TRIP);
        p.weak_samples = if weak { p.weak_samples + 1 } else { 0 };
        if p.weak_samples >= WEAK_SAMPLES && p.audio_only.is_none() {
            self.metrics.audio_only_switches.inc();
            self.set_audio_only(id, Some(AudioOnlyReason::WeakConnection));
        }
    }

    /// Sends `signal` to every participant of `room` with a connection.
    fn tell_room(&self, room: Uuid, signal: &Signal) {
        for participant in self.participants.values().filter(|p| p.room == room) {
            let _ = participant.signals.send(signal.clone());
        }
    }

    fn count(&self) {
        let mut rooms: Vec<Uuid> = self.participants.values().map(|p| p.room).collect();
        rooms.sort_unstable();
        rooms.dedup();
        self.metrics
            .participants
            .set(i64::try_from(self.participants.len()).unwrap_or(i64::MAX));
        self.metrics
            .rooms
            .set(i64::try_from(rooms.len()).unwrap_or(i64::MAX));
    }

    fn command(&mut self, command: Command) {
        match command {
            Command::Publish {
                room,
                participant,
                offer,
                signals,
                reply,
            } => {
                let _ = reply.send(self.publish(room, participant, &offer, signals));
            }
            Command::Answer {
                participant,
                sdp,
                reply,
            } => {
                let _ = reply.send(self.answer(participant, &sdp));
            }
            Command::Candidate {
                participant,
                candidate,
                reply,
            } => {
                let result = match self.participants.get(&participant) {
                    Some(p) => self
                        .endpoint
                        .add_remote_candidate(p.peer, candidate)
                        .map_err(SfuError::from),
                    None => Err(SfuError::NotConnected),
                };
                let _ = reply.send(result);
            }
            Command::Leave { participant } => self.leave(participant),
            Command::ShownHeight {
                subscriber,
                publisher,
                height,
            } => {
                if let Some(p) = self.participants.get_mut(&subscriber) {
                    p.shown_heights.insert(publisher, height);
                }
            }
            Command::AudioOnly {
                participant,
                enabled,
                reply,
            } => {
                let result = if self.participants.contains_key(&participant) {
                    self.set_audio_only(participant, enabled.then_some(AudioOnlyReason::Chosen));
                    Ok(())
                } else {
                    Err(SfuError::NotConnected)
                };
                let _ = reply.send(result);
            }
        }
    }

    /// Stops or resumes forwarding video to `participant` and tells them.
    /// Resumed video continues its numbering (see [`crate::rewrite`]) and
    /// starts on a keyframe asked of each publisher.
    fn set_audio_only(&mut self, participant: Uuid, reason: Option<AudioOnlyReason>) {
        let Some(p) = self.participants.get_mut(&participant) else {
            return;
        };
        if p.audio_only == reason {
            return;
        }
        p.audio_only = reason;
        p.weak_samples = 0;
        let _ = p.signals.send(Signal::AudioOnly(reason));
        let peer = p.peer;
        for track in self.published.values_mut() {
            if track.kind != RtpCodecKind::Video {
                continue;
            }
            for sub in track
                .subscriptions
                .iter_mut()
                .filter(|sub| sub.peer == peer)
            {
                sub.paused = reason.is_some();
                if !sub.paused {
                    // Resumed on a keyframe of the layer it had (asked for
                    // below), its numbering continued from before the pause.
                    sub.target = sub.current.or(sub.target);
                    sub.current = None;
                    sub.fresh = true;
                }
            }
        }
        if reason.is_none() {
            self.start_flowing(peer);
        }
        tracing::info!(peer = peer.0, ?reason, "audio-only mode changed");
    }

    fn publish(
        &mut self,
        room: Uuid,
        participant: Uuid,
        offer: &str,
        signals: mpsc::UnboundedSender<Signal>,
    ) -> Result<String, SfuError> {
        // A reload or a rejoin replaces the old connection, once the new
        // offer has been accepted (a refused offer leaves it as it was).
        let (peer, answer) = self.endpoint.answer(offer)?;
        self.leave(participant);
        self.participants.insert(
            participant,
            Participant {
                room,
                peer,
                signals,
                offer_out: false,
                offer_needed: false,
                audio_only: None,
                weak_samples: 0,
                shown_heights: HashMap::new(),
                bandwidth: simulcast::BandwidthEstimate::default(),
                last_downgrade: None,
            },
        );
        self.by_peer.insert(peer, participant);
        // What the others already publish.
        let existing: Vec<(PeerId, String)> = self
            .published
            .iter()
            .filter(|(_, track)| track.room == room && track.publisher != participant)
            .map(|(key, _)| key.clone())
            .collect();
        for key in existing {
            self.subscribe(&key, participant);
        }
        tracing::info!(peer = peer.0, "participant connected to the SFU");
        Ok(answer)
    }

    /// Adds an outgoing copy of the published track `key` to `subscriber`'s
    /// connection (sent with the subscriber's next offer).
    fn subscribe(&mut self, key: &(PeerId, String), subscriber: Uuid) {
        let Some(participant) = self.participants.get_mut(&subscriber) else {
            return;
        };
        let Some(track) = self.published.get_mut(key) else {
            return;
        };
        let ssrc = rand::random::<u32>();
        match self.endpoint.add_outgoing_track(
            participant.peer,
            track.kind,
            track.codec.clone(),
            ssrc,
            &track.publisher.to_string(),
        ) {
            Ok(sender) => {
                track.subscriptions.push(Subscription {
                    subscriber,
                    peer: participant.peer,
                    sender,
                    offered: false,
                    active: false,
                    fresh: true,
                    paused: track.kind == RtpCodecKind::Video && participant.audio_only.is_some(),
                    // A single layer flows from its first packet; a
                    // simulcast track's layer is chosen at the next
                    // evaluation and starts on its keyframe.
                    current: (!track.simulcast()).then(|| track.layers[0].ssrc),
                    target: None,
                });
                participant.offer_needed = true;
            }
            Err(error) => tracing::warn!(%error, "could not add a forwarded track"),
        }
    }

    fn answer(&mut self, participant: Uuid, sdp: &str) -> Result<(), SfuError> {
        let p = self
            .participants
            .get_mut(&participant)
            .ok_or(SfuError::NotConnected)?;
        if !p.offer_out {
            return Err(SfuError::NoOfferPending);
        }
        let peer = p.peer;
        self.endpoint.accept_answer(peer, sdp)?;
        p.offer_out = false;
        // The tracks that offer carried now flow; each starts on a keyframe.
        for track in self.published.values_mut() {
            for sub in &mut track.subscriptions {
                if sub.peer == peer && sub.offered {
                    sub.active = true;
                }
            }
        }
        self.start_flowing(peer);
        Ok(())
    }

    /// Asks the publishers of what now flows to `subscriber` for keyframes
    /// (a decoder starts on one), for subscriptions not yet started.
    fn start_flowing(&mut self, subscriber: PeerId) {
        let wanted: Vec<(PeerId, u32)> = self
            .published
            .iter()
            .filter(|(_, track)| track.kind == RtpCodecKind::Video)
            .flat_map(|((publisher, _), track)| {
                track
                    .subscriptions
                    .iter()
                    .filter(|sub| {
                        sub.peer == subscriber
                            && sub.fresh
                            && !sub.paused
                            && flowing(sub, &self.connected)
                    })
                    .filter_map(|sub| track.keyframe_layer(sub))
                    .map(|ssrc| (*publisher, ssrc))
                    .collect::<Vec<_>>()
            })
            .collect();
        for (publisher, ssrc) in wanted {
            self.request_keyframe(publisher, ssrc);
        }
    }

    fn leave(&mut self, participant: Uuid) {
        let Some(p) = self.participants.remove(&participant) else {
            return;
        };
        self.by_peer.remove(&p.peer);
        self.endpoint.close(p.peer);
        self.forget_peer(p.peer);
        self.forget_participant(p.room, participant);
        tracing::info!(peer = p.peer.0, "participant left the SFU");
    }

    /// Drops a participant who has no connection any more from the room's
    /// speech and the statistics.
    fn forget_participant(&mut self, room: Uuid, participant: Uuid) {
        self.counters.remove(&participant);
        for other in self.participants.values_mut().filter(|p| p.room == room) {
            other.shown_heights.remove(&participant);
        }
        if let Some(speech) = self.speech.get_mut(&room) {
            // The others hear of it at the next evaluation.
            speech.forget(participant);
        }
        if !self.participants.values().any(|p| p.room == room) {
            self.speech.remove(&room);
        }
    }

    /// Removes what a closed connection published (the subscribers' copies
    /// stop with their next offer) and received.
    fn forget_peer(&mut self, peer: PeerId) {
        let gone: Vec<(PeerId, String)> = self
            .published
            .keys()
            .filter(|(publisher, _)| *publisher == peer)
            .cloned()
            .collect();
        for key in gone {
            let Some(track) = self.published.remove(&key) else {
                continue;
            };
            for sub in track.subscriptions {
                if self
                    .endpoint
                    .remove_outgoing_track(sub.peer, sub.sender)
                    .is_ok()
                    && let Some(subscriber) = self.participants.get_mut(&sub.subscriber)
                {
                    subscriber.offer_needed = true;
                }
            }
        }
        for track in self.published.values_mut() {
            track.subscriptions.retain(|sub| sub.peer != peer);
        }
        self.last_keyframe_request
            .retain(|(publisher, _), _| *publisher != peer);
        self.deferred_keyframes
            .retain(|(publisher, _)| *publisher != peer);
        self.connected.remove(&peer);
    }

    fn event(&mut self, event: Event) {
        match event {
            Event::Connected(peer) => {
                self.connected.insert(peer);
                if let Some(p) = self
                    .by_peer
                    .get(&peer)
                    .and_then(|id| self.participants.get(id))
                {
                    let _ = p.signals.send(Signal::Connected);
                }
                self.start_flowing(peer);
            }
            Event::Gone(peer) => {
                if let Some(participant) = self.by_peer.remove(&peer)
                    && let Some(p) = self.participants.remove(&participant)
                {
                    let _ = p.signals.send(Signal::Disconnected);
                    self.forget_participant(p.room, participant);
                }
                self.forget_peer(peer);
            }
            Event::Track {
                peer,
                track,
                kind,
                codec,
                ssrc,
                rid,
            } => self.track_opened(peer, track, kind, codec, ssrc, rid),
            Event::Rtp {
                peer,
                track,
                packet,
                received_at,
                audio_level,
            } => self.forward(peer, &track, packet, received_at, audio_level),
            Event::KeyframeWanted { peer, sender } => {
                let source = self.published.iter().find_map(|((publisher, _), track)| {
                    track
                        .subscriptions
                        .iter()
                        .find(|sub| sub.peer == peer && sub.sender == sender)
                        .and_then(|sub| track.keyframe_layer(sub))
                        .map(|ssrc| (*publisher, ssrc))
                });
                if let Some((publisher, ssrc)) = source {
                    self.request_keyframe(publisher, ssrc);
                }
            }
        }
    }

    fn track_opened(
        &mut self,
        peer: PeerId,
        track: String,
        kind: RtpCodecKind,
        codec: RTCRtpCodec,
        ssrc: u32,
        rid: Option<String>,
    ) {
        let Some(&publisher) = self.by_peer.get(&peer) else {
            return;
        };
        let key = (peer, track);
        if let Some(published) = self.published.get_mut(&key) {
            // Another simulcast layer of a track already published: chosen
            // among the others from the next evaluation (`choose_layers`).
            if !published.layers.iter().any(|layer| layer.ssrc == ssrc) {
                tracing::debug!(?rid, "simulcast layer opened");
                published.layers.push(LayerMeter::new(ssrc));
            }
            return;
        }
        let Some(room) = self.participants.get(&publisher).map(|p| p.room) else {
            return;
        };
        self.published.insert(
            key.clone(),
            Published {
                room,
                publisher,
                kind,
                codec,
                layers: vec![LayerMeter::new(ssrc)],
                subscriptions: Vec::new(),
            },
        );
        let others: Vec<Uuid> = self
            .participants
            .iter()
            .filter(|(id, p)| p.room == room && **id != publisher)
            .map(|(id, _)| *id)
            .collect();
        for subscriber in others {
            self.subscribe(&key, subscriber);
        }
    }

    fn forward(
        &mut self,
        peer: PeerId,
        track: &str,
        mut packet: rtc::rtp::Packet,
        received_at: Instant,
        audio_level: Option<u8>,
    ) {
        let ssrc = packet.header.ssrc;
        if !self.deferred_keyframes.is_empty()
            && self.deferred_keyframes.contains(&(peer, ssrc))
            && self
                .last_keyframe_request
                .get(&(peer, ssrc))
                .is_none_or(|last| last.elapsed() >= KEYFRAME_INTERVAL)
        {
            self.request_keyframe(peer, ssrc);
        }
        // Borrowing the key as (PeerId, &str) is not possible with a
        // (PeerId, String) key; the clone is one short string per packet.
        let Some(published) = self.published.get_mut(&(peer, track.to_owned())) else {
            return;
        };
        let simulcast = published.simulcast();
        let Some(layer) = published.layers.iter_mut().find(|layer| layer.ssrc == ssrc) else {
            return;
        };
        layer.bytes += packet.payload.len() as u64;
        layer.last_packet = received_at;
        // Whether this packet starts a keyframe (where a subscriber may
        // switch to this layer, or resume), and the layer's size when it
        // does: read for simulcast tracks and where a subscriber waits for
        // one. VP8 and H.264; other codecs' keyframes are not recognised,
        // so there any packet is taken (the decoder recovers with the
        // keyframe asked for at the same time).
        let waiting = published
            .subscriptions
            .iter()
            .any(|sub| sub.current.is_none() && sub.target == Some(ssrc));
        let keyframe = if !(simulcast || waiting) || published.kind != RtpCodecKind::Video {
            false
        } else {
            match keyframe_start(&published.codec.mime_type, &packet.payload) {
                Some((keyframe, height)) => {
                    if height.is_some() {
                        layer.height = height;
                    }
                    keyframe
                }
                None => true,
            }
        };
        if let Some(level) = audio_level {
            self.speech
                .entry(published.room)
                .or_default()
                .observe(published.publisher, level);
        }
        let bytes = packet.payload.len() as u64;
        // The publisher's header extensions are never forwarded (each
        // subscriber's connection writes its own): dropped once here, so
        // the copy for each subscriber below allocates nothing.
        packet.header.extensions.clear();
        packet.header.extension = false;
        for sub in &mut published.subscriptions {
            if sub.paused || !flowing(sub, &self.connected) {
                continue;
            }
            let switch = if sub.current == Some(ssrc) {
                sub.fresh
            } else if keyframe && sub.target == Some(ssrc) {
                true
            } else {
                continue;
            };
            match self
                .endpoint
                .forward(sub.peer, sub.sender, packet.clone(), switch, received_at)
            {
                Ok(true) => {
                    sub.fresh = false;
                    if sub.current != Some(ssrc) {
                        if sub.current.is_some() {
                            self.metrics.layer_switches.inc();
                        }
                        sub.current = Some(ssrc);
                        sub.target = None;
                    }
                    self.metrics.forwarded_packets.inc();
                    self.metrics.forwarded_bytes.inc_by(bytes);
                }
                Ok(false) => {}
                Err(error) => tracing::debug!(%error, "forwarding failed"),
            }
        }
    }

    /// Asks a publisher for a keyframe, at most once per
    /// [`KEYFRAME_INTERVAL`]: a request within the interval is deferred (sent
    /// with the publisher's first packet after it), never dropped, since the
    /// keyframe the earlier request brings may reach a subscriber whose
    /// copy was not flowing yet.
    fn request_keyframe(&mut self, publisher: PeerId, ssrc: u32) {
        let now = Instant::now();
        if let Some(last) = self.last_keyframe_request.get(&(publisher, ssrc))
            && now.duration_since(*last) < KEYFRAME_INTERVAL
        {
            self.deferred_keyframes.insert((publisher, ssrc));
            return;
        }
        self.deferred_keyframes.remove(&(publisher, ssrc));
        self.last_keyframe_request.insert((publisher, ssrc), now);
        match self.endpoint.request_keyframe(publisher, ssrc) {
            Ok(()) => {
                self.metrics.keyframe_requests.inc();
            }
            Err(error) => tracing::debug!(%error, "keyframe request failed"),
        }
    }

    /// Sends an offer to each participant whose tracks changed, whose
    /// connection is up and who has no offer out. Changes made while the
    /// first connection is still being set up wait for it, so a renegotiation
    /// never overlaps the ICE and DTLS handshakes.
    fn negotiate(&mut self) {
        let due: Vec<Uuid> = self
            .participants
            .iter()
            .filter(|(_, p)| p.offer_needed && !p.offer_out && self.connected.contains(&p.peer))
            .map(|(id, _)| *id)
            .collect();
        for participant in due {
            let Some(p) = self.participants.get_mut(&participant) else {
                continue;
            };
            match self.endpoint.offer(p.peer) {
                Ok(sdp) => {
                    p.offer_out = true;
                    p.offer_needed = false;
                    let _ = p.signals.send(Signal::Offer(sdp));
                    for track in self.published.values_mut() {
                        for sub in &mut track.subscriptions {
                            if sub.peer == p.peer {
                                sub.offered = true;
                            }
                        }
                    }
                }
                Err(error) => {
                    p.offer_needed = false;
                    tracing::warn!(%error, "could not make an offer");
                }
            }
        }
    }
}
