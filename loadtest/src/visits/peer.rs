//! A synthetic participant: one or two WebRTC connections made with the
//! webrtc-rs project's async `webrtc` crate, sending the tone and the VP8
//! stream of [`super::media`] and recording every packet it receives.
//!
//! The same participant talks to Bedside (one connection that sends and
//! receives) and to Janus (a publishing and a subscribing connection): only
//! the signaling differs ([`super::bedside`], [`super::janus`]).

use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use rtc::media_stream::MediaStreamTrack;
use rtc::rtp_transceiver::rtp_sender::{
    RTCRtpCodec, RTCRtpCodingParameters, RTCRtpEncodingParameters, RtpCodecKind,
};
use tokio::sync::watch;
use webrtc::media_stream::track_local::TrackLocal;
use webrtc::media_stream::track_local::static_rtp::TrackLocalStaticRTP;
use webrtc::media_stream::track_remote::{TrackRemote, TrackRemoteEvent};
use webrtc::peer_connection::{
    MediaEngine, PeerConnection, PeerConnectionBuilder, PeerConnectionEventHandler,
    RTCIceGatheringState, RTCPeerConnectionState, RTCSessionDescription, Registry,
    register_default_interceptors,
};

use super::media::{self, Probe, Tone};

/// Opus and VP8 payload types (the defaults of both engines and browsers).
const OPUS_PAYLOAD_TYPE: u8 = 111;
const VP8_PAYLOAD_TYPE: u8 = 96;
/// Audio send times kept per publisher, by packet number (20 s of audio).
const SENT_RING: usize = 1_024;
/// Received audio packets decoded for the tone check (after the first
/// second, which the decoder needs to settle).
const TONE_CHECK_PACKETS: std::ops::Range<u64> = 50..200;

/// What every participant shares: the clock of the run and the tone.
#[derive(Debug)]
pub(crate) struct Shared {
    pub(crate) epoch: Instant,
    pub(crate) tone: Tone,
}

impl Shared {
    fn now_ns(&self) -> u64 {
        self.epoch.elapsed().as_nanos() as u64
    }
}

/// A participant's outgoing media, as its partner's receiver needs to
/// know it: how many packets were sent and, for audio, when.
#[derive(Debug)]
pub(crate) struct Sent {
    pub(crate) index: u32,
    pub(crate) audio_packets: AtomicU64,
    pub(crate) video_packets: AtomicU64,
    audio_number: Box<[AtomicU64]>,
    audio_sent_ns: Box<[AtomicU64]>,
}

impl Sent {
    pub(crate) fn new(index: u32) -> Self {
        let ring = || (0..SENT_RING).map(|_| AtomicU64::new(u64::MAX)).collect();
        Self {
            index,
            audio_packets: AtomicU64::new(0),
            video_packets: AtomicU64::new(0),
            audio_number: ring(),
            audio_sent_ns: ring(),
        }
    }

    fn note_audio(&self, number: u64, sent_ns: u64) {
        let slot = number as usize % SENT_RING;
        self.audio_sent_ns[slot].store(sent_ns, Ordering::Relaxed);
        self.audio_number[slot].store(number, Ordering::Release);
        self.audio_packets.store(number + 1, Ordering::Release);
    }

    fn audio_sent_ns(&self, number: u64) -> Option<u64> {
        let slot = number as usize % SENT_RING;
        (self.audio_number[slot].load(Ordering::Acquire) == number)
            .then(|| self.audio_sent_ns[slot].load(Ordering::Relaxed))
    }
}

/// Kind of a received packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    Audio,
    Video,
}

/// One received packet: whose, which, and how late.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Received {
    pub(crate) kind: Kind,
    pub(crate) publisher: u32,
    pub(crate) number: u64,
    pub(crate) latency_ns: u64,
}

/// What a participant received.
#[derive(Debug, Default)]
pub(crate) struct Reception {
    pub(crate) packets: Mutex<Vec<Received>>,
    /// Share of the decoded audio's power at the tone, once measured.
    pub(crate) tone_share: Mutex<Option<f64>>,
    pub(crate) audio_started: AtomicBool,
    pub(crate) video_started: AtomicBool,
}

/// A participant's side of the run.
#[derive(Debug)]
pub(crate) struct Participant {
    pub(crate) shared: Arc<Shared>,
    pub(crate) sent: Arc<Sent>,
    /// The partner's outgoing media (1:1 visits).
    pub(crate) partner: Arc<Sent>,
    pub(crate) reception: Arc<Reception>,
    /// Its outgoing tracks, between adding them and starting to send.
    pub(crate) tracks: Mutex<Option<Tracks>>,
}

/// One WebRTC connection.
pub(crate) struct Connection {
    pc: Box<dyn PeerConnection>,
    gathering: watch::Receiver<RTCIceGatheringState>,
    state: watch::Receiver<RTCPeerConnectionState>,
}

struct Handler {
    participant: Arc<Participant>,
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

    async fn on_track(&self, track: Arc<dyn TrackRemote>) {
        let participant = self.participant.clone();
        tokio::spawn(async move {
            let kind = track.kind().await;
            receive(participant, track, kind).await;
        });
    }
}

/// Records every packet of one received track.
async fn receive(participant: Arc<Participant>, track: Arc<dyn TrackRemote>, kind: RtpCodecKind) {
    let shared = &participant.shared;
    let reception = &participant.reception;
    let mut audio = AudioNumbering::default();
    let mut decoder = opus::Decoder::new(48_000, opus::Channels::Mono).ok();
    let mut decoded: Vec<i16> = Vec::new();
    let mut frame = vec![0i16; 5_760];
    while let Some(event) = track.poll().await {
        let TrackRemoteEvent::OnRtpPacket(packet) = event else {
            continue;
        };
        let now_ns = shared.now_ns();
        let received = match kind {
            RtpCodecKind::Video => {
                let Some(probe) = Probe::read(&packet.payload) else {
                    continue;
                };
                reception.video_started.store(true, Ordering::Relaxed);
                Received {
                    kind: Kind::Video,
                    publisher: probe.publisher,
                    number: probe.number,
                    latency_ns: now_ns.saturating_sub(probe.sent_ns),
                }
            }
            _ => {
                let partner = &participant.partner;
                let Some(number) = audio.number(
                    packet.header.sequence_number,
                    &packet.payload,
                    &shared.tone,
                    partner,
                ) else {
                    continue;
                };
                reception.audio_started.store(true, Ordering::Relaxed);
                if let Some(decoder) = decoder.as_mut()
                    && TONE_CHECK_PACKETS.contains(&audio.count)
                {
                    // A packet that does not decode adds nothing (and so
                    // lowers the share of the chunk it falls in).
                    if let Ok(n) = decoder.decode(&packet.payload, &mut frame, false) {
                        decoded.extend_from_slice(&frame[..n]);
                    }
                    if audio.count + 1 == TONE_CHECK_PACKETS.end {
                        *reception.tone_share.lock().expect("tone") =
                            Some(media::tone_share(&decoded));
                    }
                }
                audio.count += 1;
                let Some(sent_ns) = partner.audio_sent_ns(number) else {
                    continue;
                };
                Received {
                    kind: Kind::Audio,
                    publisher: partner.index,
                    number,
                    latency_ns: now_ns.saturating_sub(sent_ns),
                }
            }
        };
        reception.packets.lock().expect("packets").push(received);
    }
}

/// Turns received audio sequence numbers (rewritten by the SFU) into the
/// publisher's packet numbers: the first packet is placed by its payload's
/// place in the tone's loop (the newest sent packet with that place), the
/// rest by their sequence distance from it.
#[derive(Debug, Default)]
struct AudioNumbering {
    /// Packet number minus extended sequence number.
    offset: Option<i64>,
    last_extended: i64,
    count: u64,
}

impl AudioNumbering {
    fn number(
        &mut self,
        sequence: u16,
        payload: &[u8],
        tone: &Tone,
        partner: &Sent,
    ) -> Option<u64> {
        let extended = match self.offset {
            None => i64::from(sequence),
            Some(_) => {
                let delta = i64::from(sequence.wrapping_sub(self.last_extended as u16) as i16);
                self.last_extended + delta
            }
        };
        if self.offset.is_none() {
            let place = tone.place(payload)? as u64;
            let sent = partner.audio_packets.load(Ordering::Acquire);
            let newest = sent.checked_sub(1)?;
            let back = (newest + tone.len() - place) % tone.len();
            let number = newest.checked_sub(back)?;
            self.offset = Some(number as i64 - extended);
        }
        self.last_extended = self.last_extended.max(extended);
        u64::try_from(extended + self.offset?).ok()
    }
}

impl Connection {
    /// A new connection on address `ip` with Opus and VP8 and the default
    /// interceptors (NACK, RTCP reports, TWCC), as a browser would have.
    pub(crate) async fn new(participant: Arc<Participant>, ip: IpAddr) -> anyhow::Result<Self> {
        let mut media = MediaEngine::default();
        media.register_default_codecs()?;
        let registry = register_default_interceptors(Registry::new(), &mut media)?;
        let (gathering_tx, gathering) = watch::channel(RTCIceGatheringState::New);
        let (state_tx, state) = watch::channel(RTCPeerConnectionState::New);
        let pc = PeerConnectionBuilder::new()
            .with_media_engine(media)
            .with_interceptor_registry(registry)
            .with_handler(Arc::new(Handler {
                participant,
                gathering: gathering_tx,
                state: state_tx,
            }))
            .with_udp_addrs(vec![SocketAddr::new(ip, 0)])
            .build()
            .await?;
        Ok(Self {
            pc: Box::new(pc),
            gathering,
            state,
        })
    }

    /// Adds the participant's audio and video tracks.
    pub(crate) async fn add_tracks(&self) -> anyhow::Result<Tracks> {
        let audio = self.add_track(RtpCodecKind::Audio, "audio").await?;
        let video = self.add_track(RtpCodecKind::Video, "video").await?;
        Ok(Tracks { audio, video })
    }

    async fn add_track(
        &self,
        kind: RtpCodecKind,
        label: &str,
    ) -> anyhow::Result<(Arc<TrackLocalStaticRTP>, u32)> {
        let ssrc = rand_ssrc();
        let codec = RTCRtpCodec {
            mime_type: match kind {
                RtpCodecKind::Audio => "audio/opus",
                _ => "video/VP8",
            }
            .to_owned(),
            clock_rate: match kind {
                RtpCodecKind::Audio => 48_000,
                _ => media::VIDEO_CLOCK_RATE,
            },
            channels: if kind == RtpCodecKind::Audio { 2 } else { 0 },
            ..Default::default()
        };
        let track = Arc::new(TrackLocalStaticRTP::new(MediaStreamTrack::new(
            "loadtest".to_owned(),
            format!("{label}-{ssrc}"),
            label.to_owned(),
            kind,
            vec![RTCRtpEncodingParameters {
                rtp_coding_parameters: RTCRtpCodingParameters {
                    ssrc: Some(ssrc),
                    ..Default::default()
                },
                codec,
                ..Default::default()
            }],
        )));
        self.pc
            .add_track(track.clone() as Arc<dyn TrackLocal>)
            .await?;
        Ok((track, ssrc))
    }

    /// Creates an offer and returns it with every local candidate in it.
    pub(crate) async fn offer(&self) -> anyhow::Result<String> {
        let offer = self.pc.create_offer(None).await?;
        self.pc.set_local_description(offer).await?;
        self.gathered_local().await
    }

    /// Applies the remote answer.
    pub(crate) async fn accept_answer(&self, sdp: String) -> anyhow::Result<()> {
        self.pc
            .set_remote_description(RTCSessionDescription::answer(sdp)?)
            .await?;
        Ok(())
    }

    /// Answers a remote offer; the answer carries every local candidate.
    pub(crate) async fn answer(&self, sdp: String) -> anyhow::Result<String> {
        self.pc
            .set_remote_description(RTCSessionDescription::offer(sdp)?)
            .await?;
        let answer = self.pc.create_answer(None).await?;
        self.pc.set_local_description(answer).await?;
        self.gathered_local().await
    }

    async fn gathered_local(&self) -> anyhow::Result<String> {
        let mut gathering = self.gathering.clone();
        tokio::time::timeout(
            Duration::from_secs(10),
            gathering.wait_for(|state| *state == RTCIceGatheringState::Complete),
        )
        .await
        .context("ICE gathering did not complete in 10 s")??;
        Ok(self
            .pc
            .local_description()
            .await
            .context("no local description")?
            .sdp)
    }

    /// Waits until the connection is up.
    pub(crate) async fn connected(&self, within: Duration) -> anyhow::Result<()> {
        let mut state = self.state.clone();
        let reached = tokio::time::timeout(
            within,
            state.wait_for(|s| {
                matches!(
                    s,
                    RTCPeerConnectionState::Connected | RTCPeerConnectionState::Failed
                )
            }),
        )
        .await
        .context("the media connection did not come up in time")??
        .to_owned();
        if reached == RTCPeerConnectionState::Failed {
            bail!("the media connection failed");
        }
        Ok(())
    }

    pub(crate) async fn close(&self) {
        let _ = self.pc.close().await;
    }
}

impl std::fmt::Debug for Tracks {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tracks")
            .field("audio_ssrc", &self.audio.1)
            .field("video_ssrc", &self.video.1)
            .finish()
    }
}

/// Starts the participant's sender once `connection` is up (a track
/// written to before then refuses the packet).
pub(crate) fn start_sending(
    connection: Arc<Connection>,
    participant: Arc<Participant>,
    video_packets_per_frame: usize,
    stop: watch::Receiver<bool>,
) {
    let Some(tracks) = participant.tracks.lock().expect("tracks").take() else {
        return;
    };
    tokio::spawn(async move {
        if let Err(error) = connection.connected(Duration::from_secs(30)).await {
            eprintln!("participant {}: {error:#}", participant.sent.index);
            return;
        }
        send(participant, tracks, video_packets_per_frame, stop).await;
    });
}

/// Resolves once `stop` turns true (or its sender is gone).
pub(crate) async fn stopped(stop: &mut watch::Receiver<bool>) {
    let _ = stop.wait_for(|stop| *stop).await;
}

/// A participant's outgoing tracks and their SSRCs.
pub(crate) struct Tracks {
    audio: (Arc<TrackLocalStaticRTP>, u32),
    video: (Arc<TrackLocalStaticRTP>, u32),
}

fn rand_ssrc() -> u32 {
    // Distinct enough for one run: the low bits of a v4 UUID.
    uuid::Uuid::new_v4().as_u128() as u32
}

/// Sends the tone and the video on `tracks` until `stop` turns true.
pub(crate) async fn send(
    participant: Arc<Participant>,
    tracks: Tracks,
    video_packets_per_frame: usize,
    mut stop: watch::Receiver<bool>,
) {
    let shared = &participant.shared;
    let sent = &participant.sent;
    let mut audio_tick = tokio::time::interval(media::audio_interval());
    let mut video_tick = tokio::time::interval(media::video_interval());
    let (mut audio_number, mut video_frame, mut video_number) = (0u64, 0u64, 0u64);
    let (mut audio_sequence, mut video_sequence) = (rand_ssrc() as u16, rand_ssrc() as u16);
    let header =
        |payload_type, sequence_number, timestamp, ssrc, marker| rtc::rtp::header::Header {
            version: 2,
            payload_type,
            sequence_number,
            timestamp,
            ssrc,
            marker,
            ..Default::default()
        };
    loop {
        tokio::select! {
            () = stopped(&mut stop) => return,
            _ = audio_tick.tick() => {
                let sent_ns = shared.now_ns();
                let packet = rtc::rtp::Packet {
                    header: header(
                        OPUS_PAYLOAD_TYPE,
                        audio_sequence,
                        (audio_number * 960) as u32,
                        tracks.audio.1,
                        false,
                    ),
                    payload: bytes::Bytes::copy_from_slice(shared.tone.frame(audio_number)),
                };
                sent.note_audio(audio_number, sent_ns);
                if tracks.audio.0.write_rtp(packet).await.is_err() {
                    return;
                }
                audio_number += 1;
                audio_sequence = audio_sequence.wrapping_add(1);
            }
            _ = video_tick.tick() => {
                let sent_ns = shared.now_ns();
                for packet in media::video_frame(sent.index, video_frame, video_packets_per_frame, &mut video_number, sent_ns) {
                    let packet = rtc::rtp::Packet {
                        header: header(VP8_PAYLOAD_TYPE, video_sequence, packet.timestamp, tracks.video.1, packet.marker),
                        payload: packet.payload.into(),
                    };
                    if tracks.video.0.write_rtp(packet).await.is_err() {
                        return;
                    }
                    video_sequence = video_sequence.wrapping_add(1);
                }
                sent.video_packets.store(video_number, Ordering::Release);
                video_frame += 1;
            }
        }
    }
}
