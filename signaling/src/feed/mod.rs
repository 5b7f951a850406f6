//! The clinician's live feed at `/ws`: one WebSocket per tab, versioned
//! JSON messages (documented in `docs/signaling.md`).
//!
//! 1. The client's first message is `hello` with its access token (browsers
//!    cannot set headers on a WebSocket); anything else, or nothing within
//!    10 s, is answered with an `error` and a close with a reason.
//! 2. `subscribe` names patients. Each is checked with the same policy as
//!    the REST routes (a related clinician or an admin) and audited; the
//!    answer is a `snapshot`: latest values, live alerts and the alert
//!    sequence number it is current to. A client that reconnects passes
//!    `since_seq` and also receives every alert event it missed.
//! 3. Then `sample`s (coalesced per patient and metric, at most four a
//!    second) and `alert`s (each committed transition, never dropped).
//!    The hub routes only the subscribed patients' events to the feed. A
//!    feed that falls behind loses samples but catches up on alerts from
//!    the database; one that falls behind too often is closed with the
//!    reason `too_slow`.
//! 4. `ack_alert` acknowledges an alert (audited); every feed watching that
//!    patient then sees the `acknowledged` event.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;
use std::time::Duration;

use axum::extract::State;
use axum::extract::ws::{CloseFrame, Message, WebSocket, WebSocketUpgrade};
use axum::response::Response;
use bedside_records::audit::{self, AuditEvent, Outcome};
use bedside_records::ids::PatientId;
use bedside_vitals_store::alerts::{self as alert_store, Alert, AlertEvent};
use bedside_vitals_store::metric::Metric;
use bedside_vitals_store::queries;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::app::AppState;
use crate::auth::{Caller, identify};
use crate::extract::RequestMeta;
use crate::live::{LiveEvent, RecvError, Watcher};
use crate::policy::{Access, decide};

mod visit;

/// The protocol version this server speaks.
pub const PROTOCOL_VERSION: u32 = 1;
const HELLO_TIMEOUT: Duration = Duration::from_secs(10);
const SAMPLE_INTERVAL: Duration = Duration::from_millis(250);
/// Room for a browser's SDP offer (a few KiB; more with simulcast). A
/// longer message is refused with `message_too_large`; one beyond
/// `MAX_FRAME_BYTES` closes the socket (it is not even read).
const MAX_MESSAGE_BYTES: usize = 64 * 1024;
const MAX_FRAME_BYTES: usize = 1024 * 1024;

/// How much the socket reads at a time. tungstenite zeroes its whole read
/// buffer (128 KiB by default) before every read, even one that finds
/// nothing, which showed in the SFU load test's profile; the feed's
/// messages are small (an SDP offer is a few KiB) and a larger one is read
/// in several turns.
const READ_BUFFER_BYTES: usize = 16 * 1024;
const MAX_SUBSCRIBED: usize = 200;
/// How often an open feed checks that its session is still live.
const SESSION_CHECK: Duration = Duration::from_secs(30);
/// How many times a feed may lag behind the hub before it is closed.
const MAX_LAGS: u32 = 10;
/// How far below the newest sequence number a replay reaches: events are
/// numbered when their transaction writes them but published when it
/// commits, so a lower number can commit (and be missed) after a higher one.
/// Replaying a margin is harmless: each alert's events are filtered by that
/// alert's own sequence (see `Feed::known`).
const REPLAY_MARGIN: i64 = 1000;

/// Messages from the client. Unknown fields are refused: a field the
/// server does not read (say, another participant's id on a candidate)
/// must not look accepted.
#[derive(Debug, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
pub enum ClientMessage {
    /// Authenticate.
    Hello {
        /// Protocol version the client speaks.
        v: u32,
        /// An access token.
        token: String,
    },
    /// Watch patients; `since_seq` replays alert events after it.
    Subscribe {
        /// Patient ids.
        patients: Vec<Uuid>,
        /// The last alert sequence number the client saw.
        since_seq: Option<i64>,
    },
    /// Stop watching patients.
    Unsubscribe {
        /// Patient ids.
        patients: Vec<Uuid>,
    },
    /// Acknowledge an alert.
    AckAlert {
        /// The alert.
        alert_id: Uuid,
    },
    /// Keep-alive.
    Ping,
    /// Enter a video visit's waiting room (or its call).
    Join {
        /// The appointment.
        appointment_id: Uuid,
    },
    /// Clinician: let a waiting participant in.
    Admit {
        /// Who.
        participant_id: Uuid,
    },
    /// Clinician: turn a waiting participant away.
    Deny {
        /// Who.
        participant_id: Uuid,
    },
    /// Clinician: remove a participant from the call.
    Remove {
        /// Who.
        participant_id: Uuid,
    },
    /// The browser's offer for its connection (what it sends).
    Offer {
        /// SDP.
        sdp: String,
    },
    /// The browser's answer to the server's `offer`.
    Answer {
        /// SDP.
        sdp: String,
    },
    /// A trickled ICE candidate of the browser's.
    Candidate {
        /// As `RTCIceCandidate.toJSON()` gives it.
        candidate: visit::CandidateInit,
    },
    /// The browser has no more candidates.
    EndOfCandidates,
    /// The caller's microphone and camera state.
    Mute {
        /// Microphone on.
        audio: bool,
        /// Camera on.
        video: bool,
    },
    /// The size the caller shows a participant's video at: the simulcast
    /// layer it gets is the smallest at least this tall.
    PreferredLayer {
        /// Whose video.
        participant_id: Uuid,
        /// Its height on the screen, device pixels (1–4320; read wider so
        /// that any number gets `invalid_layer`).
        max_height: u64,
    },
    /// Receive no video (and send none), or video again.
    AudioOnly {
        /// Audio only on.
        enabled: bool,
    },
    /// A chat message to the call.
    Chat {
        /// At most 2000 characters.
        text: String,
    },
    /// Leave the visit (the seat keeps its admission for the grace period).
    Leave,
    /// Clinician: end the visit for everyone.
    EndVisit,
}

/// One latest value in a snapshot.
#[derive(Debug, Serialize)]
pub struct LatestValue {
    metric: Metric,
    value: f64,
    unit: &'static str,
    time: DateTime<Utc>,
}

/// A patient's part of a snapshot.
#[derive(Debug, Serialize)]
pub struct PatientSnapshot {
    patient_id: Uuid,
    latest: Vec<LatestValue>,
}

/// Messages to the client.
#[derive(Debug, Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ServerMessage {
    /// Authenticated.
    Welcome {
        /// Protocol version.
        v: u32,
        /// `admin`, `clinician` or `patient`.
        role: &'static str,
    },
    /// The server's answer to the browser's `offer`.
    Answer {
        /// SDP.
        sdp: String,
    },
    /// The server's offer (tracks added or stopped): answer it.
    Offer {
        /// SDP.
        sdp: String,
    },
    /// The STUN/TURN servers to give `RTCPeerConnection` (sent on joining a
    /// visit, before `joined`).
    IceServers {
        /// As `RTCConfiguration.iceServers`.
        ice_servers: Vec<crate::ice::IceServer>,
    },
    /// The media connection is up.
    MediaConnected,
    /// The media connection failed or closed: send a new `offer`.
    MediaDisconnected,
    /// Who speaks in the call changed (from the audio levels in the
    /// participants' packets).
    Speakers {
        /// The participant whose video gets the big tile, if anyone speaks.
        dominant: Option<Uuid>,
        /// Everyone speaking now.
        speaking: Vec<Uuid>,
    },
    /// The socket's audio-only mode changed (asked for, or forced by a
    /// connection too weak for video).
    AudioOnly {
        /// No video is sent to you; send none.
        enabled: bool,
        /// `chosen` or `weak_connection`, when enabled.
        #[serde(skip_serializing_if = "Option::is_none")]
        reason: Option<&'static str>,
    },
    /// Connection statistics measured by the SFU over the last two
    /// seconds: everyone's for a clinician, one's own for the others.
    Stats {
        /// One entry per participant with a media connection.
        participants: Vec<visit::ConnectionStats>,
    },
    /// The state of newly subscribed patients.
    Snapshot {
        /// Alert sequence number the snapshot is current to.
        seq: i64,
        /// Latest values per patient.
        patients: Vec<PatientSnapshot>,
        /// Live alerts of those patients.
        alerts: Vec<Alert>,
    },
    /// A new reading (coalesced).
    Sample {
        /// Whose.
        patient_id: Uuid,
        /// What.
        metric: Metric,
        /// Value.
        value: f64,
        /// Canonical unit.
        unit: &'static str,
        /// When measured.
        time: DateTime<Utc>,
    },
    /// A patient's NEWS2 changed (scored on stored readings; coalesced).
    News2 {
        /// Whose.
        patient_id: Uuid,
        /// Sum of the parameters observed.
        total: u8,
        /// `low`, `low_medium`, `medium` or `high`.
        band: bedside_alerts::news2::RiskBand,
        /// Parameters with no reading in the freshness window.
        missing: Vec<bedside_alerts::news2::Parameter>,
        /// The SpO2 scale used (1 or 2).
        spo2_scale: i16,
    },
    /// A committed alert transition.
    Alert {
        /// Its sequence number.
        seq: i64,
        /// `opened`, `escalated`, `acknowledged` or `resolved`.
        event: String,
        /// The alert after the transition.
        alert: Alert,
    },
    /// Answer to `ping`.
    Pong,
    /// Something was refused.
    Error {
        /// Stable code.
        code: &'static str,
        /// Human-readable.
        message: String,
        /// The alert an `ack_alert` named, when the refusal is about it.
        #[serde(skip_serializing_if = "Option::is_none")]
        alert_id: Option<Uuid>,
        /// The message type refused, for visit messages.
        #[serde(skip_serializing_if = "Option::is_none")]
        refused: Option<&'static str>,
    },
    /// A visit event (see [`crate::visits::VisitEvent`]).
    #[serde(untagged)]
    Visit(crate::visits::VisitEvent),
}

/// `GET /ws`: upgrades to the feed.
pub(crate) async fn upgrade(
    State(state): State<AppState>,
    meta: RequestMeta,
    ws: WebSocketUpgrade,
) -> Response {
    ws.max_message_size(MAX_FRAME_BYTES)
        .read_buffer_size(READ_BUFFER_BYTES)
        .on_upgrade(move |socket| async move { Feed::new(state, meta, socket).run().await })
}

struct Feed {
    state: AppState,
    meta: RequestMeta,
    socket: WebSocket,
    caller: Option<Caller>,
    patients: BTreeSet<Uuid>,
    /// Which patients the hub routes to this feed (set once authenticated).
    watcher: Option<Watcher>,
    pending_samples: BTreeMap<(Uuid, Metric), (f64, DateTime<Utc>)>,
    /// NEWS2 changes not yet sent, by patient (a newer one supersedes).
    pending_news2: BTreeMap<Uuid, (Arc<bedside_alerts::news2::Score>, i16)>,
    /// The newest sequence number the client has (snapshot or event).
    last_seq: i64,
    /// Per alert, the newest event the client has. One alert's events are
    /// numbered in commit order (its row lock serialises them), while
    /// different alerts' events may commit and be published out of order:
    /// so an event is skipped only when its own alert has a newer one here,
    /// never because another alert's event had a higher number.
    known: HashMap<Uuid, i64>,
    /// The video visit this socket joined, if any.
    visit: visit::VisitSeat,
    /// Messages allowed per second on this socket (a flood is refused).
    budget: visit::MessageBudget,
}

enum Flow {
    Continue,
    Close(&'static str),
}

impl Feed {
    fn new(state: AppState, meta: RequestMeta, socket: WebSocket) -> Self {
        Self {
            state,
            meta,
            socket,
            caller: None,
            patients: BTreeSet::new(),
            watcher: None,
            pending_samples: BTreeMap::new(),
            pending_news2: BTreeMap::new(),
            last_seq: 0,
            known: HashMap::new(),
            visit: visit::VisitSeat::default(),
            budget: visit::MessageBudget::default(),
        }
    }

    async fn send(&mut self, message: &ServerMessage) -> bool {
        let text = serde_json::to_string(message).expect("server messages serialize");
        self.socket.send(Message::Text(text.into())).await.is_ok()
    }

    async fn close(mut self, code: u16, reason: &'static str) {
        let _ = self
            .socket
            .send(Message::Close(Some(CloseFrame {
                code,
                reason: reason.into(),
            })))
            .await;
    }

    async fn error(&mut self, code: &'static str, message: impl Into<String>) -> bool {
        self.send(&ServerMessage::Error {
            code,
            message: message.into(),
            alert_id: None,
            refused: None,
        })
        .await
    }

    /// A refused `ack_alert`, naming the alert so a client with several
    /// acknowledgements in flight knows which one failed.
    async fn ack_error(&mut self, alert_id: Uuid, code: &'static str, message: &str) -> bool {
        self.send(&ServerMessage::Error {
            code,
            message: message.into(),
            alert_id: Some(alert_id),
            refused: None,
        })
        .await
    }

    async fn run(mut self) {
        // 1. hello
        let hello = tokio::time::timeout(HELLO_TIMEOUT, self.socket.recv()).await;
        let token = match hello {
            Ok(Some(Ok(Message::Text(text)))) => match serde_json::from_str::<ClientMessage>(&text)
            {
                Ok(ClientMessage::Hello { v, token }) if v == PROTOCOL_VERSION => token,
                Ok(ClientMessage::Hello { .. }) => {
                    self.error(
                        "unsupported_version",
                        format!("this server speaks version {PROTOCOL_VERSION}"),
                    )
                    .await;
                    return self.close(1002, "unsupported_version").await;
                }
                _ => {
                    self.error(
                        "hello_required",
                        "the first message must be hello with a token",
                    )
                    .await;
                    return self.close(1008, "hello_required").await;
                }
            },
            _ => {
                self.error("hello_required", "no hello within 10 seconds")
                    .await;
                return self.close(1008, "hello_required").await;
            }
        };
        let caller = match identify(&self.state, &token).await {
            // A FHIR client's scoped token is no way into the live feed.
            Ok(identity) => identity.0.ok().filter(|c| !c.is_scoped()),
            Err(_) => None,
        };
        let Some(caller) = caller else {
            self.audit(None, None, "feed.connect", Outcome::Denied)
                .await;
            self.error("unauthenticated", "sign in again").await;
            return self.close(1008, "unauthenticated").await;
        };
        self.caller = Some(caller);
        if !self
            .send(&ServerMessage::Welcome {
                v: PROTOCOL_VERSION,
                role: caller.role_name(),
            })
            .await
        {
            return;
        }
        let closing = self.serve().await;
        self.leave_visit();
        if let Some(reason) = closing {
            self.error(reason, "the socket is closing").await;
            self.close(1008, reason).await;
        }
    }

    /// Messages, hub events, visit events and timers until the socket ends;
    /// `Some(reason)` when the server closes it.
    async fn serve(&mut self) -> Option<&'static str> {
        // 2./3. messages, hub events and the sample timer
        let (watcher, mut hub) = self.state.live().subscribe();
        self.watcher = Some(watcher);
        let mut tick = tokio::time::interval(SAMPLE_INTERVAL);
        // A socket outlives its 15-minute token; it stays open only while
        // the session behind the token does (logout and deactivation end it).
        let mut session_check = tokio::time::interval(SESSION_CHECK);
        session_check.tick().await;
        let mut lags = 0u32;
        loop {
            let flow = tokio::select! {
                incoming = self.socket.recv() => match incoming {
                    Some(Ok(Message::Text(text))) => self.handle(&text).await,
                    Some(Ok(Message::Close(_))) | None | Some(Err(_)) => return None,
                    Some(Ok(_)) => Flow::Continue,
                },
                input = visit::next_input(&mut self.visit) => self.on_visit_input(input).await,
                event = hub.recv() => match event {
                    Ok(event) => self.on_event(&event).await,
                    Err(RecvError::Lagged) => {
                        lags += 1;
                        if lags > MAX_LAGS {
                            Flow::Close("too_slow")
                        } else {
                            self.catch_up().await
                        }
                    }
                    Err(RecvError::Closed) => Flow::Close("shutting_down"),
                },
                _ = tick.tick() => self.flush_samples().await,
                _ = session_check.tick() => self.check_session().await,
            };
            match flow {
                Flow::Continue => {}
                Flow::Close(reason) => return Some(reason),
            }
        }
    }

    /// Whether what the socket's token came from still stands: the staff
    /// session, the patient's join link, the guest's link.
    async fn check_session(&mut self) -> Flow {
        let db = self.state.db();
        let live = match self.caller {
            Some(Caller::Staff { session, .. }) => {
                bedside_records::auth_state::session_is_live(db, session).await
            }
            Some(Caller::Patient { link, .. }) => {
                bedside_records::join_links::is_live(db, link).await
            }
            Some(Caller::Guest { link, .. }) => bedside_records::guest_links::live_guest(db, link)
                .await
                .map(|name| name.is_some()),
            None => Ok(false),
        };
        match live {
            Ok(true) => Flow::Continue,
            Ok(false) => Flow::Close("session_ended"),
            // A database hiccup does not end a socket.
            Err(_) => Flow::Continue,
        }
    }

    async fn handle(&mut self, text: &str) -> Flow {
        match self.budget.take() {
            visit::Budget::Ok => {}
            visit::Budget::Refuse => {
                let sent = self
                    .error("rate_limited", "too many messages; slow down")
                    .await;
                return self.flow(sent);
            }
            visit::Budget::Close => return Flow::Close("rate_limited"),
        }
        if text.len() > MAX_MESSAGE_BYTES {
            let sent = self
                .error(
                    "message_too_large",
                    format!("messages are at most {MAX_MESSAGE_BYTES} bytes"),
                )
                .await;
            return self.flow(sent);
        }
        let message = match serde_json::from_str::<ClientMessage>(text) {
            Ok(m) => m,
            Err(e) => {
                let ok = self
                    .error(
                        "malformed_message",
                        format!(
                            "not a feed message: {}",
                            e.to_string().split(" at line").next().unwrap_or("")
                        ),
                    )
                    .await;
                return if ok {
                    Flow::Continue
                } else {
                    Flow::Close("send_failed")
                };
            }
        };
        let ok = match message {
            ClientMessage::Hello { .. } => {
                self.error("already_authenticated", "hello was already accepted")
                    .await
            }
            ClientMessage::Ping => self.send(&ServerMessage::Pong).await,
            ClientMessage::Subscribe { .. }
            | ClientMessage::AckAlert { .. }
            | ClientMessage::Unsubscribe { .. }
                if !matches!(self.caller, Some(Caller::Staff { .. })) =>
            {
                self.error("forbidden", "live feeds are for staff").await
            }
            ClientMessage::Subscribe {
                patients,
                since_seq,
            } => self.subscribe(patients, since_seq).await,
            ClientMessage::Unsubscribe { patients } => {
                if let Some(watcher) = &self.watcher {
                    watcher.unwatch(&patients);
                }
                for p in patients {
                    self.patients.remove(&p);
                }
                true
            }
            ClientMessage::AckAlert { alert_id } => self.acknowledge(alert_id).await,
            other => return self.visit_message(other).await,
        };
        self.flow(ok)
    }

    /// `Continue` when a send worked, else close.
    fn flow(&self, sent: bool) -> Flow {
        if sent {
            Flow::Continue
        } else {
            Flow::Close("send_failed")
        }
    }

    /// Audits a feed action (a free-standing borrow of state and meta, so
    /// the future does not hold the socket by shared reference).
    async fn audit(
        &mut self,
        caller: Option<&Caller>,
        patient: Option<Uuid>,
        action: &str,
        outcome: Outcome,
    ) {
        audit_feed(&self.state, &self.meta, caller, patient, action, outcome).await;
    }
}

async fn audit_feed(
    state: &AppState,
    meta: &RequestMeta,
    caller: Option<&Caller>,
    patient: Option<Uuid>,
    action: &str,
    outcome: Outcome,
) {
    {
        let event = AuditEvent {
            actor_id: caller.and_then(Caller::user),
            actor_role: caller.map_or("anonymous", Caller::role_name),
            patient_id: patient.map(PatientId),
            action,
            resource: "WS /ws",
            resource_path: "/ws",
            outcome,
            request_id: &meta.request_id,
            client_addr: &meta.client_addr,
        };
        if let Err(error) = audit::record(state.db(), &event).await {
            tracing::error!(%error, "cannot audit a feed action");
        }
    }
}

impl Feed {
    async fn subscribe(&mut self, patients: Vec<Uuid>, since_seq: Option<i64>) -> bool {
        let caller = self.caller.expect("authenticated");
        if self.patients.len() + patients.len() > MAX_SUBSCRIBED {
            return self
                .error(
                    "too_many_patients",
                    format!("at most {MAX_SUBSCRIBED} patients per feed"),
                )
                .await;
        }
        let mut granted = Vec::new();
        for patient in patients {
            let allowed = decide(&self.state, &caller, Access::Patient(PatientId(patient)))
                .await
                .unwrap_or(false);
            self.audit(
                Some(&caller),
                Some(patient),
                "feed.subscribe",
                if allowed {
                    Outcome::Allowed
                } else {
                    Outcome::Denied
                },
            )
            .await;
            if allowed {
                granted.push(patient);
            } else if !self
                .error("forbidden", format!("you may not watch patient {patient}"))
                .await
            {
                return false;
            }
        }
        if granted.is_empty() {
            return true;
        }
        // Routed before the snapshot is read, so nothing committed in
        // between is missed; alerts the snapshot already covers are skipped
        // by their sequence number.
        if let Some(watcher) = &self.watcher {
            watcher.watch(&granted);
        }
        let db = self.state.db();
        let seq = alert_store::latest_seq(db).await.unwrap_or(0);
        let since = Utc::now() - chrono::Duration::hours(24);
        let mut latest = queries::latest_for_patients(db, &granted, since)
            .await
            .unwrap_or_default();
        let snapshot: Vec<PatientSnapshot> = granted
            .iter()
            .map(|patient| PatientSnapshot {
                patient_id: *patient,
                latest: latest
                    .remove(patient)
                    .unwrap_or_default()
                    .into_iter()
                    .map(|l| LatestValue {
                        metric: l.metric,
                        value: l.value,
                        unit: l.metric.unit(),
                        time: l.time,
                    })
                    .collect(),
            })
            .collect();
        let alerts = alert_store::live_for_patients(db, &granted)
            .await
            .unwrap_or_default();
        let ids: Vec<Uuid> = alerts.iter().map(|a| a.id).collect();
        // The snapshot shows these alerts as they are now, so their events
        // so far need not be sent again, except to a reconnecting client
        // that asked for the events after its `since_seq`.
        for (alert, newest) in alert_store::newest_events(db, &ids)
            .await
            .unwrap_or_default()
        {
            let had = since_seq.map_or(newest, |since| newest.min(since));
            let slot = self.known.entry(alert).or_insert(had);
            *slot = (*slot).max(had);
        }
        self.patients.extend(granted.iter().copied());
        self.last_seq = self.last_seq.max(seq);
        self.queue_news2(&granted).await;
        if !self
            .send(&ServerMessage::Snapshot {
                seq,
                patients: snapshot,
                alerts,
            })
            .await
        {
            return false;
        }
        // Replay what a reconnecting client missed.
        match since_seq {
            Some(since) if since < seq => self
                .replay(since.saturating_sub(REPLAY_MARGIN), &granted)
                .await
                .is_ok(),
            _ => true,
        }
    }

    /// Sends the alert events after `since` from the database. Fails with
    /// the reason the feed must close for: `send_failed`, or
    /// `replay_failed` when the database could not say (the client
    /// reconnects and replays from its sequence number, so no alert is
    /// skipped).
    async fn replay(&mut self, since: i64, patients: &[Uuid]) -> Result<(), &'static str> {
        let Ok(events) = alert_store::events_since(self.state.db(), since, patients).await else {
            return Err("replay_failed");
        };
        for event in events {
            let Ok(alert) = alert_store::get(self.state.db(), event.alert_id).await else {
                return Err("replay_failed");
            };
            // An event's alert always exists (foreign key); nothing to send otherwise.
            let Some(alert) = alert else { continue };
            if !self.send_alert(&event, &alert).await {
                return Err("send_failed");
            }
        }
        Ok(())
    }

    /// Sends an alert event unless the client already has it or a newer
    /// event of the same alert.
    async fn send_alert(&mut self, event: &AlertEvent, alert: &Alert) -> bool {
        if self
            .known
            .get(&event.alert_id)
            .is_some_and(|newest| *newest >= event.seq)
        {
            return true;
        }
        self.known.insert(event.alert_id, event.seq);
        self.last_seq = self.last_seq.max(event.seq);
        self.send(&ServerMessage::Alert {
            seq: event.seq,
            event: event.kind.clone(),
            alert: alert.clone(),
        })
        .await
    }

    async fn on_event(&mut self, event: &LiveEvent) -> Flow {
        if !self.patients.contains(&event.patient()) {
            return Flow::Continue;
        }
        let ok = match event {
            LiveEvent::Sample {
                patient,
                metric,
                value,
                time,
            } => {
                self.pending_samples
                    .insert((*patient, *metric), (*value, *time));
                true
            }
            LiveEvent::News2 {
                patient,
                score,
                spo2_scale,
            } => {
                self.pending_news2
                    .insert(*patient, (score.clone(), *spo2_scale));
                true
            }
            LiveEvent::Alert(t) => self.send_alert(&t.event, &t.alert).await,
        };
        if ok {
            Flow::Continue
        } else {
            Flow::Close("send_failed")
        }
    }

    /// After the hub dropped events for this feed: alerts again from the
    /// database, and each patient's current NEWS2 (samples are simply
    /// superseded by the next ones).
    async fn catch_up(&mut self) -> Flow {
        let patients: Vec<Uuid> = self.patients.iter().copied().collect();
        self.queue_news2(&patients).await;
        match self
            .replay(self.last_seq.saturating_sub(REPLAY_MARGIN), &patients)
            .await
        {
            Ok(()) => Flow::Continue,
            Err(reason) => Flow::Close(reason),
        }
    }

    /// Queues the current NEWS2 of `patients` (from the database) to go
    /// out with the next samples. Best effort: on a database error the
    /// next change sends it.
    async fn queue_news2(&mut self, patients: &[Uuid]) {
        let db = self.state.db();
        let since = Utc::now() - chrono::Duration::hours(1);
        let Ok((mut latest, scales)) = futures::try_join!(
            queries::latest_for_patients(db, patients, since),
            alert_store::spo2_scales_for(db, patients),
        ) else {
            return;
        };
        for patient in patients {
            let values = latest.remove(patient).unwrap_or_default();
            let scale = scales
                .iter()
                .find(|(p, _)| p == patient)
                .map_or(1, |(_, s)| *s);
            let score = bedside_alerts::news2::score(
                &bedside_alerts::engine::observations(&values),
                bedside_alerts::news2::SpO2Scale::from_number(scale),
            );
            self.pending_news2
                .insert(*patient, (Arc::new(score), scale));
        }
    }

    async fn flush_samples(&mut self) -> Flow {
        let pending = std::mem::take(&mut self.pending_samples);
        for ((patient_id, metric), (value, time)) in pending {
            let message = ServerMessage::Sample {
                patient_id,
                metric,
                value,
                unit: metric.unit(),
                time,
            };
            if !self.send(&message).await {
                return Flow::Close("send_failed");
            }
        }
        let pending = std::mem::take(&mut self.pending_news2);
        for (patient_id, (score, spo2_scale)) in pending {
            let message = ServerMessage::News2 {
                patient_id,
                total: score.total,
                band: score.band,
                missing: score.missing.clone(),
                spo2_scale,
            };
            if !self.send(&message).await {
                return Flow::Close("send_failed");
            }
        }
        Flow::Continue
    }

    async fn acknowledge(&mut self, alert_id: Uuid) -> bool {
        let caller = self.caller.expect("authenticated");
        let Ok(Some(alert)) = alert_store::get(self.state.db(), alert_id).await else {
            return self.ack_error(alert_id, "not_found", "no such alert").await;
        };
        let allowed = decide(
            &self.state,
            &caller,
            Access::Patient(PatientId(alert.patient_id)),
        )
        .await
        .unwrap_or(false);
        self.audit(
            Some(&caller),
            Some(alert.patient_id),
            "alert.acknowledge",
            if allowed {
                Outcome::Allowed
            } else {
                Outcome::Denied
            },
        )
        .await;
        if !allowed {
            return self
                .ack_error(alert_id, "forbidden", "you may not acknowledge this alert")
                .await;
        }
        let Some(user) = caller.user() else {
            return self.ack_error(alert_id, "forbidden", "staff only").await;
        };
        match alert_store::acknowledge(self.state.db(), alert_id, user.0).await {
            Ok(Some(transition)) => {
                // Committed: now everyone watching hears of it (this feed included, through the hub).
                self.state.live().publish(LiveEvent::alert(transition));
                true
            }
            Ok(None) => {
                self.ack_error(
                    alert_id,
                    "not_open",
                    "the alert is not open (already acknowledged or resolved)",
                )
                .await
            }
            Err(_) => {
                self.ack_error(
                    alert_id,
                    "unavailable",
                    "the alert could not be acknowledged; try again",
                )
                .await
            }
        }
    }
}
