//! The video-visit half of the `/ws` socket: joining a visit's waiting room,
//! the clinician's admit/deny/remove/end, the browser's SDP and candidates
//! handed to the SFU, mute state and chat. Rooms themselves live in
//! [`crate::visits`]; this module checks who may do what (and audits it),
//! moves the appointment through its lifecycle, and carries messages
//! between the socket, the rooms and the SFU.

use std::time::Instant;

use bedside_records::appointment::AppointmentStatus;
use bedside_records::appointments;
use bedside_records::audit::Outcome;
use bedside_records::consents;
use bedside_records::domain::AppointmentKind;
use bedside_records::ids::AppointmentId;
use bedside_sfu::rooms::{AudioOnlyReason, Signal};
use bedside_sfu::stats::ParticipantStats;
use serde::{Deserialize, Serialize};
use tokio::sync::mpsc;
use uuid::Uuid;

use super::{ClientMessage, Feed, Flow, ServerMessage};
use crate::auth::Caller;
use crate::visits::{Person, Role, Ticket, VisitError, VisitEvent};

/// Longest chat message, in characters.
const MAX_CHAT_CHARS: usize = 2000;
/// The tallest video a client can say it shows (8K).
const MAX_SHOWN_HEIGHT: u16 = 4320;
/// Longest candidate line; real ones are under 200 bytes.
const MAX_CANDIDATE_BYTES: usize = 512;

/// A browser's ICE candidate, as `RTCIceCandidate.toJSON()` gives it.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct CandidateInit {
    candidate: String,
    #[serde(default)]
    sdp_mid: Option<String>,
    #[serde(default, rename = "sdpMLineIndex")]
    sdp_m_line_index: Option<u16>,
    #[serde(default)]
    username_fragment: Option<String>,
}

/// One participant's connection as the `stats` message gives it.
#[derive(Debug, Serialize)]
pub struct ConnectionStats {
    participant_id: Uuid,
    /// What the participant sends, as it reaches the server.
    sending: DirectionStats,
    /// What the server sends them, as they report receiving it.
    receiving: DirectionStats,
    /// Round-trip time to the server, once measured.
    round_trip_ms: Option<f64>,
}

/// One direction of a participant's connection.
#[derive(Debug, Serialize)]
pub(super) struct DirectionStats {
    /// Media bits per second.
    bitrate_bps: u64,
    /// Share of packets lost, 0–1.
    loss: f64,
    /// Interarrival jitter, milliseconds.
    jitter_ms: f64,
}

impl ConnectionStats {
    fn new(participant_id: Uuid, stats: &ParticipantStats) -> Self {
        // Milliseconds to one decimal, ratios to four: what a person reads.
        let ms = |seconds: f64| (seconds * 10_000.0).round() / 10.0;
        let ratio = |share: f64| (share * 10_000.0).round() / 10_000.0;
        Self {
            participant_id,
            sending: DirectionStats {
                bitrate_bps: stats.sending_bps,
                loss: ratio(stats.sending_loss),
                jitter_ms: ms(stats.sending_jitter),
            },
            receiving: DirectionStats {
                bitrate_bps: stats.receiving_bps,
                loss: ratio(stats.receiving_loss),
                jitter_ms: ms(stats.receiving_jitter),
            },
            round_trip_ms: stats.round_trip.map(ms),
        }
    }
}

/// The socket's place in a visit.
#[derive(Default)]
pub(super) struct VisitSeat {
    ticket: Option<Ticket>,
    /// The part the socket's person plays in it.
    role: Option<Role>,
    events: Option<mpsc::UnboundedReceiver<VisitEvent>>,
    media: Option<mpsc::UnboundedReceiver<Signal>>,
}

/// What the socket's visit and media connection have to say.
pub(super) enum VisitInput {
    /// From the room (`None`: the room let go of this socket).
    Event(Option<VisitEvent>),
    /// From the SFU (`None`: the connection is gone).
    Media(Option<Signal>),
}

/// The next input of the socket's visit; pending while it has none.
pub(super) async fn next_input(seat: &mut VisitSeat) -> VisitInput {
    let events = async {
        match &mut seat.events {
            Some(events) => events.recv().await,
            None => std::future::pending().await,
        }
    };
    let media = async {
        match &mut seat.media {
            Some(media) => media.recv().await,
            None => std::future::pending().await,
        }
    };
    tokio::select! {
        event = events => VisitInput::Event(event),
        signal = media => VisitInput::Media(signal),
    }
}

/// A token bucket over a socket's messages: 20 a second sustained, bursts
/// of 100 (joining a call trickles a few dozen candidates at once).
pub(super) struct MessageBudget {
    tokens: f64,
    refilled: Instant,
    refused: u32,
}

/// What the budget says about one message.
pub(super) enum Budget {
    /// Handle it.
    Ok,
    /// Refuse it with `rate_limited`.
    Refuse,
    /// The client keeps flooding: close the socket.
    Close,
}

impl Default for MessageBudget {
    fn default() -> Self {
        Self {
            tokens: Self::BURST,
            refilled: Instant::now(),
            refused: 0,
        }
    }
}

impl MessageBudget {
    const PER_SECOND: f64 = 20.0;
    const BURST: f64 = 100.0;
    /// Refused messages in a row after which the socket is closed.
    const CLOSE_AFTER: u32 = 200;

    pub(super) fn take(&mut self) -> Budget {
        let now = Instant::now();
        let earned = now.duration_since(self.refilled).as_secs_f64() * Self::PER_SECOND;
        self.tokens = (self.tokens + earned).min(Self::BURST);
        self.refilled = now;
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            self.refused = 0;
            Budget::Ok
        } else {
            self.refused += 1;
            if self.refused >= Self::CLOSE_AFTER {
                Budget::Close
            } else {
                Budget::Refuse
            }
        }
    }
}

/// The `type` of a visit message, named in its refusals.
fn type_of(message: &ClientMessage) -> &'static str {
    match message {
        ClientMessage::Join { .. } => "join",
        ClientMessage::Admit { .. } => "admit",
        ClientMessage::Deny { .. } => "deny",
        ClientMessage::Remove { .. } => "remove",
        ClientMessage::Offer { .. } => "offer",
        ClientMessage::Answer { .. } => "answer",
        ClientMessage::Candidate { .. } => "candidate",
        ClientMessage::EndOfCandidates => "end_of_candidates",
        ClientMessage::Mute { .. } => "mute",
        ClientMessage::AudioOnly { .. } => "audio_only",
        ClientMessage::PreferredLayer { .. } => "preferred_layer",
        ClientMessage::Chat { .. } => "chat",
        ClientMessage::Leave => "leave",
        ClientMessage::EndVisit => "end_visit",
        _ => "other",
    }
}

/// A refusal: the documented code and a message for people.
struct Refusal(&'static str, String);

impl From<VisitError> for Refusal {
    fn from(error: VisitError) -> Self {
        Refusal(error.code(), error.to_string())
    }
}

fn refuse(code: &'static str, message: impl Into<String>) -> Refusal {
    Refusal(code, message.into())
}

impl Feed {
    /// Handles one visit message; refusals are `error`s naming the type.
    pub(super) async fn visit_message(&mut self, message: ClientMessage) -> Flow {
        let kind = type_of(&message);
        let outcome = match message {
            ClientMessage::Join { appointment_id } => self.join_visit(appointment_id).await,
            ClientMessage::Admit { participant_id } => self.admit(participant_id).await,
            ClientMessage::Deny { participant_id } => self
                .ticket()
                .and_then(|t| Ok(self.state.visits().deny(&t, participant_id)?)),
            ClientMessage::Remove { participant_id } => self.ticket().and_then(|t| {
                self.state.visits().remove(&t, participant_id)?;
                if let Some(sfu) = self.state.sfu() {
                    sfu.leave(participant_id);
                }
                Ok(())
            }),
            ClientMessage::Offer { sdp } => self.publish(sdp).await,
            ClientMessage::Answer { sdp } => self.answer(sdp).await,
            ClientMessage::Candidate { candidate } => self.candidate(candidate).await,
            ClientMessage::EndOfCandidates => self
                .ticket()
                .and_then(|t| Ok(self.state.visits().check_in_call(&t)?)),
            ClientMessage::Mute { audio, video } => self
                .ticket()
                .and_then(|t| Ok(self.state.visits().mute(&t, audio, video)?)),
            ClientMessage::AudioOnly { enabled } => self.audio_only(enabled).await,
            ClientMessage::PreferredLayer {
                participant_id,
                max_height,
            } => self.preferred_layer(participant_id, max_height),
            ClientMessage::Chat { text } => self.chat(text),
            ClientMessage::Leave => {
                self.leave_visit();
                Ok(())
            }
            ClientMessage::EndVisit => self.end_visit().await,
            _ => Ok(()),
        };
        match outcome {
            Ok(()) => Flow::Continue,
            Err(Refusal(code, message)) => {
                let sent = self
                    .send(&ServerMessage::Error {
                        code,
                        message,
                        alert_id: None,
                        refused: Some(kind),
                    })
                    .await;
                self.flow(sent)
            }
        }
    }

    fn ticket(&self) -> Result<Ticket, Refusal> {
        self.visit.ticket.ok_or(VisitError::NotJoined.into())
    }

    async fn join_visit(&mut self, appointment_id: Uuid) -> Result<(), Refusal> {
        if self.visit.ticket.is_some() {
            return Err(refuse(
                "already_joined",
                "this socket has joined a visit; leave it first",
            ));
        }
        let caller = self.caller.expect("authenticated");
        let appointment =
            match appointments::get(self.state.db(), AppointmentId(appointment_id)).await {
                Ok(appointment) => appointment,
                Err(bedside_records::RecordsError::NotFound(_)) => {
                    return Err(refuse("not_found", "no such visit"));
                }
                Err(_) => return Err(refuse("unavailable", "try again")),
            };
        let seat = match caller {
            Caller::Staff {
                user,
                practitioner: Some(practitioner),
                ..
            } if practitioner == appointment.practitioner_id => Some((
                Person::Staff(user.0),
                Role::Clinician,
                appointment.practitioner_name.clone(),
            )),
            Caller::Patient {
                appointment: own,
                patient,
                ..
            } if own == appointment.id => Some((
                Person::Patient(patient.0),
                Role::Patient,
                appointment.patient_name.clone(),
            )),
            Caller::Guest {
                appointment: own,
                link,
            } if own == appointment.id => {
                // A revoked link ends the guest's access, also on a socket
                // opened before the revocation.
                match bedside_records::guest_links::live_guest(self.state.db(), link).await {
                    Ok(Some(name)) => Some((Person::Guest(link), Role::Guest, name)),
                    Ok(None) => None,
                    Err(_) => return Err(refuse("unavailable", "try again")),
                }
            }
            _ => None,
        };
        let Some((person, role, name)) = seat else {
            self.audit(
                Some(&caller),
                Some(appointment.patient_id.0),
                "visit.join",
                Outcome::Denied,
            )
            .await;
            return Err(refuse("forbidden", "this is not your visit"));
        };
        if appointment.kind != AppointmentKind::Video {
            return Err(refuse("not_a_video_visit", "this appointment is in person"));
        }
        if appointment.status.is_final() {
            return Err(refuse("visit_over", "this visit has ended"));
        }
        if role == Role::Patient {
            let version = &self.state.settings().consent_version;
            match consents::has_accepted(self.state.db(), appointment.patient_id, version).await {
                Ok(true) => {}
                Ok(false) => {
                    return Err(refuse(
                        "consent_required",
                        "accept the consent text on the visit page first",
                    ));
                }
                Err(_) => return Err(refuse("unavailable", "try again")),
            }
        }
        self.audit(
            Some(&caller),
            Some(appointment.patient_id.0),
            "visit.join",
            Outcome::Allowed,
        )
        .await;
        let (outbox, events) = mpsc::unbounded_channel();
        let ticket = self
            .state
            .visits()
            .join(appointment.id, person, role, name, outbox);
        let ice_servers = crate::ice::ice_servers(
            &self.state.settings().ice,
            ticket.participant,
            chrono::Utc::now().timestamp(),
        );
        if !self.send(&ServerMessage::IceServers { ice_servers }).await {
            return Err(refuse("send_failed", "the socket failed"));
        }
        self.visit.ticket = Some(ticket);
        self.visit.role = Some(role);
        self.visit.events = Some(events);
        tracing::info!(appointment = %appointment.id, participant = %ticket.participant, ?role, "joined a visit");
        Ok(())
    }

    async fn admit(&mut self, participant: Uuid) -> Result<(), Refusal> {
        let ticket = self.ticket()?;
        self.state.visits().admit(&ticket, participant)?;
        let caller = self.caller.expect("authenticated");
        let db = self.state.db().clone();
        let patient = appointments::get(&db, ticket.appointment)
            .await
            .ok()
            .map(|a| a.patient_id.0);
        self.audit(Some(&caller), patient, "visit.admit", Outcome::Allowed)
            .await;
        // The first admission starts the visit (a patient who came in
        // through the link has arrived already; one let in otherwise is
        // marked arrived on the way).
        if let Ok(appointment) = appointments::get(&db, ticket.appointment).await {
            let steps: &[AppointmentStatus] = match appointment.status {
                AppointmentStatus::Booked => {
                    &[AppointmentStatus::Arrived, AppointmentStatus::InProgress]
                }
                AppointmentStatus::Arrived => &[AppointmentStatus::InProgress],
                _ => &[],
            };
            for step in steps {
                if let Err(error) = appointments::transition(
                    &db,
                    ticket.appointment,
                    *step,
                    chrono::Utc::now(),
                    self.no_show_grace(),
                )
                .await
                {
                    tracing::warn!(%error, "could not move the visit on");
                    break;
                }
            }
        }
        Ok(())
    }

    fn no_show_grace(&self) -> chrono::Duration {
        chrono::Duration::from_std(self.state.settings().no_show_grace)
            .unwrap_or(chrono::Duration::minutes(15))
    }

    async fn publish(&mut self, sdp: String) -> Result<(), Refusal> {
        let ticket = self.ticket()?;
        self.state.visits().check_in_call(&ticket)?;
        let sfu = self.media()?;
        let (signals, media) = mpsc::unbounded_channel();
        let answer = sfu
            .publish(ticket.appointment.0, ticket.participant, sdp, signals)
            .await
            .map_err(|error| refuse("sdp_rejected", format!("the offer was refused: {error}")))?;
        self.visit.media = Some(media);
        if self.send(&ServerMessage::Answer { sdp: answer }).await {
            Ok(())
        } else {
            Err(refuse("send_failed", "the socket failed"))
        }
    }

    fn preferred_layer(&mut self, publisher: Uuid, max_height: u64) -> Result<(), Refusal> {
        let ticket = self.ticket()?;
        self.state.visits().check_in_call(&ticket)?;
        let Some(max_height) = u16::try_from(max_height)
            .ok()
            .filter(|height| (1..=MAX_SHOWN_HEIGHT).contains(height))
        else {
            return Err(refuse(
                "invalid_layer",
                format!("max_height must be 1 to {MAX_SHOWN_HEIGHT}"),
            ));
        };
        // Only about someone in the same call (the SFU keeps what it is
        // told per participant).
        self.state
            .visits()
            .check_other_in_call(&ticket, publisher)?;
        let sfu = self.media()?;
        sfu.show_at(ticket.participant, publisher, max_height);
        Ok(())
    }

    /// The SFU, or the refusal for a server without video.
    fn media(&self) -> Result<bedside_sfu::rooms::Sfu, Refusal> {
        self.state
            .sfu()
            .cloned()
            .ok_or_else(|| refuse("media_unavailable", "video is not available on this server"))
    }

    async fn audio_only(&mut self, enabled: bool) -> Result<(), Refusal> {
        let ticket = self.ticket()?;
        self.state.visits().check_in_call(&ticket)?;
        let sfu = self.media()?;
        sfu.set_audio_only(ticket.participant, enabled)
            .await
            .map_err(|error| match error {
                bedside_sfu::rooms::SfuError::NotConnected => {
                    refuse("not_connected", "send an offer first")
                }
                _ => refuse("media_unavailable", "the media server is not available"),
            })
    }

    async fn answer(&mut self, sdp: String) -> Result<(), Refusal> {
        let ticket = self.ticket()?;
        self.state.visits().check_in_call(&ticket)?;
        let sfu = self.media()?;
        sfu.answer(ticket.participant, sdp)
            .await
            .map_err(|error| match error {
                bedside_sfu::rooms::SfuError::NoOfferPending => refuse(
                    "no_offer_pending",
                    "no offer of the server's waits for an answer",
                ),
                bedside_sfu::rooms::SfuError::NotConnected => {
                    refuse("not_connected", "send an offer first")
                }
                other => refuse("sdp_rejected", format!("the answer was refused: {other}")),
            })
    }

    async fn candidate(&mut self, candidate: CandidateInit) -> Result<(), Refusal> {
        let ticket = self.ticket()?;
        self.state.visits().check_in_call(&ticket)?;
        if candidate.candidate.len() > MAX_CANDIDATE_BYTES {
            return Err(refuse("candidate_rejected", "the candidate is too long"));
        }
        if candidate.candidate.is_empty() {
            // The end-of-candidates form of the browser's event.
            return Ok(());
        }
        let sfu = self.media()?;
        // Host candidates hidden behind mDNS names cannot be used by the SFU
        // (it learns the address from the browser's checks instead): not the
        // browser's mistake, so not an error.
        let mdns = candidate
            .candidate
            .split_whitespace()
            .nth(4)
            .is_some_and(|address| address.ends_with(".local"));
        match sfu
            .candidate(ticket.participant, rtc_candidate(candidate))
            .await
        {
            Ok(()) => Ok(()),
            Err(_) if mdns => Ok(()),
            Err(error) => Err(refuse("candidate_rejected", format!("{error}"))),
        }
    }

    fn chat(&mut self, text: String) -> Result<(), Refusal> {
        let ticket = self.ticket()?;
        let text = text.trim().to_owned();
        if text.is_empty() || text.chars().count() > MAX_CHAT_CHARS {
            return Err(refuse(
                "invalid_chat",
                format!("a chat message has 1 to {MAX_CHAT_CHARS} characters"),
            ));
        }
        Ok(self.state.visits().chat(&ticket, text)?)
    }

    async fn end_visit(&mut self) -> Result<(), Refusal> {
        let ticket = self.ticket()?;
        self.state.visits().check_clinician(&ticket)?;
        // Recorded before anyone is told, so what they then read is final.
        let caller = self.caller.expect("authenticated");
        let db = self.state.db().clone();
        let appointment = appointments::get(&db, ticket.appointment).await.ok();
        self.audit(
            Some(&caller),
            appointment.as_ref().map(|a| a.patient_id.0),
            "visit.end",
            Outcome::Allowed,
        )
        .await;
        if appointment.is_some_and(|a| a.status == AppointmentStatus::InProgress)
            && let Err(error) = appointments::transition(
                &db,
                ticket.appointment,
                AppointmentStatus::Finished,
                chrono::Utc::now(),
                self.no_show_grace(),
            )
            .await
        {
            tracing::warn!(%error, "could not mark the visit finished");
        }
        let stopped = self.state.visits().end(&ticket)?;
        if let Some(sfu) = self.state.sfu() {
            for participant in stopped {
                sfu.leave(participant);
            }
        }
        Ok(())
    }

    /// Gives up the socket's seat (the socket closed, or `leave`): the
    /// others are told and its media connection closes.
    pub(super) fn leave_visit(&mut self) {
        let seat = std::mem::take(&mut self.visit);
        if let Some(ticket) = seat.ticket
            && self.state.visits().leave(&ticket)
            && let Some(sfu) = self.state.sfu()
        {
            sfu.leave(ticket.participant);
        }
    }

    pub(super) async fn on_visit_input(&mut self, input: VisitInput) -> Flow {
        match input {
            VisitInput::Event(event) => self.on_visit_event(event).await,
            VisitInput::Media(signal) => self.on_media_signal(signal).await,
        }
    }

    /// Passes a visit event on; the ones that end the socket's part in the
    /// visit also drop its seat (the SFU side was closed by whoever acted).
    async fn on_visit_event(&mut self, event: Option<VisitEvent>) -> Flow {
        let Some(event) = event else {
            // The room let go of this socket (after the event saying why).
            self.visit = VisitSeat::default();
            return Flow::Continue;
        };
        let ends = matches!(
            event,
            VisitEvent::Denied
                | VisitEvent::Removed
                | VisitEvent::Replaced
                | VisitEvent::VisitEnded
        );
        let sent = self.send(&ServerMessage::Visit(event)).await;
        if ends {
            self.visit = VisitSeat::default();
        }
        self.flow(sent)
    }

    /// Passes the SFU's offers and connection changes on.
    async fn on_media_signal(&mut self, signal: Option<Signal>) -> Flow {
        let message = match signal {
            Some(Signal::Offer(sdp)) => ServerMessage::Offer { sdp },
            Some(Signal::Connected) => ServerMessage::MediaConnected,
            Some(Signal::AudioOnly(reason)) => ServerMessage::AudioOnly {
                enabled: reason.is_some(),
                reason: reason.map(|reason| match reason {
                    AudioOnlyReason::Chosen => "chosen",
                    AudioOnlyReason::WeakConnection => "weak_connection",
                }),
            },
            Some(Signal::Speakers(speakers)) => ServerMessage::Speakers {
                dominant: speakers.dominant,
                speaking: speakers.speaking,
            },
            Some(Signal::Stats(all)) => {
                // A clinician sees everyone's connection (to tell a patient
                // their network is the problem); the others their own.
                let everyone = self.visit.role == Some(Role::Clinician);
                let own = self.visit.ticket.map(|ticket| ticket.participant);
                let participants: Vec<ConnectionStats> = all
                    .iter()
                    .filter(|(id, _)| everyone || Some(*id) == own)
                    .map(|(id, stats)| ConnectionStats::new(*id, stats))
                    .collect();
                if participants.is_empty() {
                    return Flow::Continue;
                }
                ServerMessage::Stats { participants }
            }
            Some(Signal::Disconnected) | None => {
                self.visit.media = None;
                ServerMessage::MediaDisconnected
            }
        };
        let sent = self.send(&message).await;
        self.flow(sent)
    }
}

/// The engine's form of a browser candidate.
fn rtc_candidate(candidate: CandidateInit) -> bedside_sfu::rooms::IceCandidate {
    bedside_sfu::rooms::IceCandidate {
        candidate: candidate.candidate,
        sdp_mid: candidate.sdp_mid,
        sdp_mline_index: candidate.sdp_m_line_index,
        username_fragment: candidate.username_fragment,
        url: None,
    }
}
