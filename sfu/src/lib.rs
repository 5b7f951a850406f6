//! # bedside-sfu — the selective forwarding unit of video visits (being built)
//!
//! This crate owns the media plane of a video visit: one room of WebRTC
//! peer connections per visit, built on the webrtc-rs project's sans-IO `rtc`
//! core, with every connection sharing one UDP socket that the SFU
//! demultiplexes itself (see `ARCHITECTURE.md` §3a). It will forward Opus and
//! VP8 tracks between participants with per-subscriber SSRC, sequence number
//! and timestamp rewriting, pick simulcast layers from each subscriber's
//! bandwidth estimate, handle RTCP (PLI/FIR/NACK) and report per-participant
//! statistics.
//!
//! It must not know about HTTP routes or SQL: signaling hands it SDP and ICE
//! candidates, and it hands back answers, candidates and events.
//!
//! Built so far (the video-visit issue builds the rest):
//! - [`demux`]: which peer connection each datagram on the shared socket
//!   belongs to. Invariant: a datagram reaches a connection only through a
//!   binding request for that connection's ufrag, or from an address that
//!   connection learned that way or sent to itself; everything else is
//!   dropped with its reason.
//! - [`endpoint`]: the one UDP socket and the loop that drives every peer
//!   connection on it (answers offers, routes datagrams, timers, events),
//!   and forwarding RTP onto send-only tracks it adds by renegotiation.
//!   Every connection has rtc's NACK (generator and responder, RTX for
//!   video) and RTCP sender/receiver report interceptors. Only connections
//!   something happened to are polled for output;
//! - [`rooms`]: a room per visit and the loop that runs the endpoint for
//!   it, on a thread of its own with a single-threaded runtime: each participant's published tracks forwarded to every other
//!   participant of the room, renegotiation driven by the SFU alone (no
//!   glare), keyframe requests on subscription and from subscribers,
//!   rate-limited.
//! - [`rtcp_filter`]: withholds the reception reports of browsers'
//!   simulcast layers, so their packets keep the RTP stream id that the
//!   engine needs to know them again after each renegotiation, and lets
//!   subscribers' keyframe requests through the engine to the SFU.
//! - [`metrics`]: Prometheus counters, gauges and histograms, with no
//!   label but a direction (never a room, participant or patient).
//! - [`simulcast`]: which layer of a published video each subscriber
//!   gets, from the size it shows it at and its bandwidth estimate.
//! - [`h264`]: keyframes in H.264 payloads and the picture height their
//!   SPS declares (what [`vp8`] is for VP8).
//! - [`vp8`]: keyframes, their size, and picture ID / TL0PICIDX rewriting
//!   in VP8 payloads, so a layer switch is seamless for the decoder.
//! - [`speakers`]: who speaks in a room, from the audio levels (RFC 6464)
//!   browsers put in their packets; the dominant speaker changes only after
//!   a sustained lead.
//! - [`stats`]: each participant's bitrate, loss, jitter and round-trip
//!   time in both directions, sampled from the engine every two seconds,
//!   sent to the room's signaling and counted into Prometheus histograms.
//! - [`rewrite`]: one outgoing track's sequence numbers and timestamps,
//!   continuous across layer and publisher switches (the endpoint's
//!   forwarding keeps one per outgoing track).

pub mod demux;
pub mod endpoint;
pub mod h264;
pub mod metrics;
pub mod rewrite;
pub mod rooms;
pub mod rtcp_filter;
pub mod simulcast;
pub mod speakers;
pub mod stats;
pub mod vp8;
