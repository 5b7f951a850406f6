//! Video-visit rooms: who is in each visit's waiting room and call, and the
//! events each participant's socket is sent when that changes.
//!
//! The registry is plain state behind one lock, with no I/O and no awaits:
//! each operation updates a room and queues [`VisitEvent`]s on the
//! participants' unbounded outboxes, which their sockets drain. Rules:
//! - the clinician of the appointment is admitted on joining (it opens the
//!   room); a patient waits until the clinician admits them;
//! - one seat per person (staff account or patient): joining again from
//!   another tab or after a reload takes the same seat, and the older socket
//!   is told `replaced`;
//! - a person whose socket closed keeps their admission for the rejoin
//!   grace period; after it, or after being removed, they wait again;
//! - ending the visit tells everyone and closes the room.
//!
//! Invariant: events about a call (participants, chat, mute) reach admitted
//! participants only; the waiting list reaches clinicians only.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use bedside_records::ids::AppointmentId;
use chrono::{DateTime, Utc};
use serde::Serialize;
use tokio::sync::mpsc;
use uuid::Uuid;

/// Who sits in a seat: the same person joining again gets the same seat.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Person {
    /// A staff account.
    Staff(Uuid),
    /// A patient (in a visit session).
    Patient(Uuid),
    /// A guest, by their guest link.
    Guest(Uuid),
}

/// A participant's part in the visit.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    /// The appointment's clinician: admits, denies, removes, ends.
    Clinician,
    /// The patient of the appointment.
    Patient,
    /// An interpreter or family member let in by a guest link.
    Guest,
}

/// A participant as others see it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ParticipantView {
    /// Opaque id, stable for the person within this visit.
    pub participant_id: Uuid,
    /// Part in the visit.
    pub role: Role,
    /// Name to show.
    pub name: String,
    /// Microphone on.
    pub audio: bool,
    /// Camera on.
    pub video: bool,
}

/// What a participant's socket is told about its visit.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum VisitEvent {
    /// The join was accepted: in the waiting room or in the call.
    Joined {
        /// The visit.
        appointment_id: Uuid,
        /// The caller's seat.
        participant_id: Uuid,
        /// `waiting` or `admitted`.
        state: &'static str,
        /// Part in the visit.
        role: Role,
    },
    /// Admitted into the call: send your offer.
    Admitted {
        /// Who is in the call now.
        participants: Vec<ParticipantView>,
    },
    /// The clinician did not admit you.
    Denied,
    /// The clinician removed you from the call.
    Removed,
    /// Another tab or a reload took your seat.
    Replaced,
    /// Someone entered the call.
    ParticipantJoined {
        /// Who.
        participant: ParticipantView,
    },
    /// Someone left the call (or their connection dropped).
    ParticipantLeft {
        /// Who.
        participant_id: Uuid,
    },
    /// Clinicians: the waiting room now holds these.
    Lobby {
        /// Waiting, longest waiting first.
        waiting: Vec<ParticipantView>,
    },
    /// Someone's microphone or camera changed.
    Mute {
        /// Who.
        participant_id: Uuid,
        /// Microphone on.
        audio: bool,
        /// Camera on.
        video: bool,
    },
    /// A chat message in the call.
    Chat {
        /// From.
        participant_id: Uuid,
        /// Their name.
        name: String,
        /// The text.
        text: String,
        /// When the server received it.
        at: DateTime<Utc>,
    },
    /// The clinician ended the visit.
    VisitEnded,
}

/// Why a visit operation was refused; `code()` is the documented code.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum VisitError {
    /// The caller has not joined this visit (or was denied, removed, replaced).
    #[error("join the visit first")]
    NotJoined,
    /// Only the clinician may do that.
    #[error("only the visit's clinician may do that")]
    ClinicianOnly,
    /// The caller is in the waiting room.
    #[error("wait to be admitted")]
    NotAdmitted,
    /// No such participant in this visit (or not in the state named).
    #[error("no such participant waiting or in the call")]
    NoSuchParticipant,
}

impl VisitError {
    /// The stable error code.
    pub fn code(self) -> &'static str {
        match self {
            VisitError::NotJoined => "not_joined",
            VisitError::ClinicianOnly => "clinician_only",
            VisitError::NotAdmitted => "not_admitted",
            VisitError::NoSuchParticipant => "no_such_participant",
        }
    }
}

/// A socket's hold on a seat: operations name it, so a socket whose seat
/// was taken by a newer one (a reload) can no longer act for it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ticket {
    /// The visit.
    pub appointment: AppointmentId,
    /// The seat.
    pub participant: Uuid,
    generation: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum SeatState {
    Waiting,
    Admitted,
    /// Denied or removed: joining again waits again.
    Out,
}

struct Seat {
    person: Person,
    view: ParticipantView,
    state: SeatState,
    /// The socket holding the seat; `None` once it closed.
    outbox: Option<mpsc::UnboundedSender<VisitEvent>>,
    generation: u64,
    /// When the socket closed (admission is kept for the grace period).
    left_at: Option<Instant>,
    /// Order of arrival in the waiting room.
    waiting_since: u64,
}

impl Seat {
    fn present(&self) -> bool {
        self.outbox.is_some()
    }

    fn in_call(&self) -> bool {
        self.present() && self.state == SeatState::Admitted
    }

    fn send(&self, event: VisitEvent) {
        if let Some(outbox) = &self.outbox {
            let _ = outbox.send(event);
        }
    }
}

#[derive(Default)]
struct Room {
    seats: HashMap<Uuid, Seat>,
    arrivals: u64,
}

impl Room {
    fn seat_of(&self, person: Person) -> Option<Uuid> {
        self.seats
            .iter()
            .find(|(_, seat)| seat.person == person)
            .map(|(id, _)| *id)
    }

    fn in_call(&self) -> Vec<ParticipantView> {
        let mut views: Vec<ParticipantView> = self
            .seats
            .values()
            .filter(|seat| seat.in_call())
            .map(|seat| seat.view.clone())
            .collect();
        views.sort_by_key(|view| (view.role != Role::Clinician, view.participant_id));
        views
    }

    /// Tells everyone in the call but `except`.
    fn to_call(&self, except: Uuid, event: &VisitEvent) {
        for (id, seat) in &self.seats {
            if *id != except && seat.in_call() {
                seat.send(event.clone());
            }
        }
    }

    /// Sends the waiting list to the clinicians present.
    fn lobby(&self) {
        let mut waiting: Vec<(&Seat, u64)> = self
            .seats
            .values()
            .filter(|seat| seat.present() && seat.state == SeatState::Waiting)
            .map(|seat| (seat, seat.waiting_since))
            .collect();
        waiting.sort_by_key(|(_, since)| *since);
        let event = VisitEvent::Lobby {
            waiting: waiting.iter().map(|(seat, _)| seat.view.clone()).collect(),
        };
        for seat in self.seats.values() {
            if seat.view.role == Role::Clinician && seat.in_call() {
                seat.send(event.clone());
            }
        }
    }

    fn clinician(&self, ticket: &Ticket) -> Result<(), VisitError> {
        let seat = self.holder(ticket)?;
        if seat.view.role != Role::Clinician {
            return Err(VisitError::ClinicianOnly);
        }
        Ok(())
    }

    /// The seat the ticket holds, if it still does.
    fn holder(&self, ticket: &Ticket) -> Result<&Seat, VisitError> {
        self.seats
            .get(&ticket.participant)
            .filter(|seat| seat.generation == ticket.generation && seat.present())
            .ok_or(VisitError::NotJoined)
    }
}

/// Every visit's room.
pub struct Visits {
    rooms: Mutex<HashMap<AppointmentId, Room>>,
    grace: Duration,
    generations: std::sync::atomic::AtomicU64,
}

impl Visits {
    /// Rooms where a dropped participant keeps their admission for `grace`.
    pub fn new(grace: Duration) -> Self {
        Self {
            rooms: Mutex::new(HashMap::new()),
            grace,
            generations: std::sync::atomic::AtomicU64::new(1),
        }
    }

    fn rooms(&self) -> std::sync::MutexGuard<'_, HashMap<AppointmentId, Room>> {
        self.rooms.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Seats `person` in the visit (their earlier seat if they had one)
    /// and says so on `outbox`: admitted (clinician, or a participant back
    /// within the grace period) or waiting.
    pub fn join(
        &self,
        appointment: AppointmentId,
        person: Person,
        role: Role,
        name: String,
        outbox: mpsc::UnboundedSender<VisitEvent>,
    ) -> Ticket {
        let generation = self
            .generations
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let mut rooms = self.rooms();
        let room = rooms.entry(appointment).or_default();
        room.arrivals += 1;
        let arrival = room.arrivals;
        let now = Instant::now();
        let participant = match room.seat_of(person) {
            Some(id) => {
                let grace = self.grace;
                let seat = room.seats.get_mut(&id).expect("found above");
                if let Some(old) = seat.outbox.take() {
                    let _ = old.send(VisitEvent::Replaced);
                }
                let kept = seat.state == SeatState::Admitted
                    && seat
                        .left_at
                        .is_none_or(|left| now.duration_since(left) <= grace);
                seat.state = if role == Role::Clinician || kept {
                    SeatState::Admitted
                } else {
                    SeatState::Waiting
                };
                seat.generation = generation;
                seat.left_at = None;
                seat.waiting_since = arrival;
                seat.outbox = Some(outbox);
                id
            }
            None => {
                let id = Uuid::new_v4();
                room.seats.insert(
                    id,
                    Seat {
                        person,
                        view: ParticipantView {
                            participant_id: id,
                            role,
                            name,
                            audio: true,
                            video: true,
                        },
                        state: if role == Role::Clinician {
                            SeatState::Admitted
                        } else {
                            SeatState::Waiting
                        },
                        outbox: Some(outbox),
                        generation,
                        left_at: None,
                        waiting_since: arrival,
                    },
                );
                id
            }
        };
        let seat = &room.seats[&participant];
        let admitted = seat.state == SeatState::Admitted;
        seat.send(VisitEvent::Joined {
            appointment_id: appointment.0,
            participant_id: participant,
            state: if admitted { "admitted" } else { "waiting" },
            role,
        });
        if admitted {
            self.enter_call(room, participant);
        }
        room.lobby();
        Ticket {
            appointment,
            participant,
            generation,
        }
    }

    /// Tells the participant who is in the call and the others that they came.
    fn enter_call(&self, room: &Room, participant: Uuid) {
        let seat = &room.seats[&participant];
        seat.send(VisitEvent::Admitted {
            participants: room
                .in_call()
                .into_iter()
                .filter(|view| view.participant_id != participant)
                .collect(),
        });
        room.to_call(
            participant,
            &VisitEvent::ParticipantJoined {
                participant: seat.view.clone(),
            },
        );
    }

    /// The clinician admits a waiting participant.
    ///
    /// # Errors
    /// When the ticket is not the clinician's or nobody such waits.
    pub fn admit(&self, ticket: &Ticket, participant: Uuid) -> Result<(), VisitError> {
        let mut rooms = self.rooms();
        let room = rooms
            .get_mut(&ticket.appointment)
            .ok_or(VisitError::NotJoined)?;
        room.clinician(ticket)?;
        let seat = room
            .seats
            .get_mut(&participant)
            .filter(|seat| seat.present() && seat.state == SeatState::Waiting)
            .ok_or(VisitError::NoSuchParticipant)?;
        seat.state = SeatState::Admitted;
        self.enter_call(room, participant);
        room.lobby();
        Ok(())
    }

    /// The clinician turns away a waiting participant.
    ///
    /// # Errors
    /// When the ticket is not the clinician's or nobody such waits.
    pub fn deny(&self, ticket: &Ticket, participant: Uuid) -> Result<(), VisitError> {
        self.send_out(ticket, participant, SeatState::Waiting, VisitEvent::Denied)
    }

    /// The clinician removes a participant from the call.
    ///
    /// # Errors
    /// When the ticket is not the clinician's or nobody such is in the call.
    pub fn remove(&self, ticket: &Ticket, participant: Uuid) -> Result<(), VisitError> {
        self.send_out(
            ticket,
            participant,
            SeatState::Admitted,
            VisitEvent::Removed,
        )
    }

    fn send_out(
        &self,
        ticket: &Ticket,
        participant: Uuid,
        from: SeatState,
        event: VisitEvent,
    ) -> Result<(), VisitError> {
        let mut rooms = self.rooms();
        let room = rooms
            .get_mut(&ticket.appointment)
            .ok_or(VisitError::NotJoined)?;
        room.clinician(ticket)?;
        if participant == ticket.participant {
            return Err(VisitError::NoSuchParticipant);
        }
        let seat = room
            .seats
            .get_mut(&participant)
            .filter(|seat| seat.present() && seat.state == from)
            .ok_or(VisitError::NoSuchParticipant)?;
        seat.state = SeatState::Out;
        seat.send(event);
        seat.outbox = None;
        if from == SeatState::Admitted {
            room.to_call(
                participant,
                &VisitEvent::ParticipantLeft {
                    participant_id: participant,
                },
            );
        }
        room.lobby();
        Ok(())
    }

    /// Whether the ticket's holder is the visit's clinician (present).
    ///
    /// # Errors
    /// When not joined, or not the clinician.
    pub fn check_clinician(&self, ticket: &Ticket) -> Result<(), VisitError> {
        let rooms = self.rooms();
        let room = rooms
            .get(&ticket.appointment)
            .ok_or(VisitError::NotJoined)?;
        room.clinician(ticket)
    }

    /// Whether the ticket's holder is in the call (may send media).
    ///
    /// # Errors
    /// When not joined, or waiting.
    pub fn check_in_call(&self, ticket: &Ticket) -> Result<(), VisitError> {
        let rooms = self.rooms();
        let room = rooms
            .get(&ticket.appointment)
            .ok_or(VisitError::NotJoined)?;
        let seat = room.holder(ticket)?;
        if seat.state != SeatState::Admitted {
            return Err(VisitError::NotAdmitted);
        }
        Ok(())
    }

    /// Whether `other` is another participant in the holder's call (whose
    /// media the holder may receive).
    ///
    /// # Errors
    /// When the holder is not in the call, or `other` is not in it.
    pub fn check_other_in_call(&self, ticket: &Ticket, other: Uuid) -> Result<(), VisitError> {
        self.check_in_call(ticket)?;
        let rooms = self.rooms();
        let room = rooms
            .get(&ticket.appointment)
            .ok_or(VisitError::NotJoined)?;
        match room.seats.get(&other) {
            Some(seat) if other != ticket.participant && seat.state == SeatState::Admitted => {
                Ok(())
            }
            _ => Err(VisitError::NoSuchParticipant),
        }
    }

    /// The holder's microphone and camera state, told to the call.
    ///
    /// # Errors
    /// When not in the call.
    pub fn mute(&self, ticket: &Ticket, audio: bool, video: bool) -> Result<(), VisitError> {
        self.check_in_call(ticket)?;
        let mut rooms = self.rooms();
        let room = rooms
            .get_mut(&ticket.appointment)
            .ok_or(VisitError::NotJoined)?;
        if let Some(seat) = room.seats.get_mut(&ticket.participant) {
            seat.view.audio = audio;
            seat.view.video = video;
        }
        room.to_call(
            ticket.participant,
            &VisitEvent::Mute {
                participant_id: ticket.participant,
                audio,
                video,
            },
        );
        Ok(())
    }

    /// A chat message to everyone in the call, the sender included (so
    /// every participant sees one order).
    ///
    /// # Errors
    /// When not in the call.
    pub fn chat(&self, ticket: &Ticket, text: String) -> Result<(), VisitError> {
        self.check_in_call(ticket)?;
        let rooms = self.rooms();
        let room = rooms
            .get(&ticket.appointment)
            .ok_or(VisitError::NotJoined)?;
        let name = room.seats[&ticket.participant].view.name.clone();
        room.to_call(
            Uuid::nil(),
            &VisitEvent::Chat {
                participant_id: ticket.participant,
                name,
                text,
                at: Utc::now(),
            },
        );
        Ok(())
    }

    /// The ticket's socket closed (or its holder left): the others are
    /// told, and the seat keeps its admission for the grace period.
    /// Returns whether the ticket still held the seat (a replaced socket's
    /// leaving changes nothing).
    pub fn leave(&self, ticket: &Ticket) -> bool {
        let mut rooms = self.rooms();
        let Some(room) = rooms.get_mut(&ticket.appointment) else {
            return false;
        };
        let Some(seat) = room
            .seats
            .get_mut(&ticket.participant)
            .filter(|seat| seat.generation == ticket.generation && seat.present())
        else {
            return false;
        };
        let was_in_call = seat.state == SeatState::Admitted;
        seat.outbox = None;
        seat.left_at = Some(Instant::now());
        if was_in_call {
            room.to_call(
                ticket.participant,
                &VisitEvent::ParticipantLeft {
                    participant_id: ticket.participant,
                },
            );
        }
        room.lobby();
        // Rooms whose participants all left more than a grace period ago
        // are forgotten (a visit nobody ended keeps no memory for ever).
        let grace = self.grace;
        rooms.retain(|_, room| {
            room.seats.values().any(|seat| {
                seat.present() || seat.left_at.is_some_and(|left| left.elapsed() <= grace)
            })
        });
        true
    }

    /// Takes `person` out of the visit (their guest link was revoked):
    /// they are told `removed`, the call `participant_left`. Returns their
    /// seat if they had one (its media must stop).
    pub fn expel(&self, appointment: AppointmentId, person: Person) -> Option<Uuid> {
        let mut rooms = self.rooms();
        let room = rooms.get_mut(&appointment)?;
        let participant = room.seat_of(person)?;
        let seat = room.seats.get_mut(&participant)?;
        let was_in_call = seat.in_call();
        seat.state = SeatState::Out;
        seat.send(VisitEvent::Removed);
        seat.outbox = None;
        if was_in_call {
            room.to_call(
                participant,
                &VisitEvent::ParticipantLeft {
                    participant_id: participant,
                },
            );
        }
        room.lobby();
        Some(participant)
    }

    /// The clinician ends the visit: everyone is told and the room closes.
    /// Returns the participants whose media must stop.
    ///
    /// # Errors
    /// When the ticket is not the clinician's.
    pub fn end(&self, ticket: &Ticket) -> Result<Vec<Uuid>, VisitError> {
        let mut rooms = self.rooms();
        let room = rooms
            .get(&ticket.appointment)
            .ok_or(VisitError::NotJoined)?;
        room.clinician(ticket)?;
        let room = rooms.remove(&ticket.appointment).expect("checked above");
        for seat in room.seats.values() {
            seat.send(VisitEvent::VisitEnded);
        }
        Ok(room.seats.into_keys().collect())
    }

    /// Participants (present or within grace) of a visit, for tests and metrics.
    pub fn participants(&self, appointment: AppointmentId) -> usize {
        self.rooms().get(&appointment).map_or(0, |room| {
            room.seats.values().filter(|s| s.present()).count()
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Socket {
        ticket: Ticket,
        events: mpsc::UnboundedReceiver<VisitEvent>,
    }

    impl Socket {
        fn drain(&mut self) -> Vec<VisitEvent> {
            let mut events = Vec::new();
            while let Ok(event) = self.events.try_recv() {
                events.push(event);
            }
            events
        }
    }

    fn join(visits: &Visits, appointment: AppointmentId, person: Person, role: Role) -> Socket {
        let (outbox, events) = mpsc::unbounded_channel();
        let ticket = visits.join(appointment, person, role, format!("{role:?}"), outbox);
        Socket { ticket, events }
    }

    fn state(events: &[VisitEvent]) -> Option<&'static str> {
        events.iter().find_map(|event| match event {
            VisitEvent::Joined { state, .. } => Some(*state),
            _ => None,
        })
    }

    fn waiting(events: &[VisitEvent]) -> Option<Vec<Uuid>> {
        events.iter().rev().find_map(|event| match event {
            VisitEvent::Lobby { waiting } => {
                Some(waiting.iter().map(|p| p.participant_id).collect())
            }
            _ => None,
        })
    }

    fn setup() -> (Visits, AppointmentId, Socket, Socket) {
        let visits = Visits::new(Duration::from_secs(60));
        let visit = AppointmentId(Uuid::new_v4());
        let clinician = join(
            &visits,
            visit,
            Person::Staff(Uuid::new_v4()),
            Role::Clinician,
        );
        let patient = join(
            &visits,
            visit,
            Person::Patient(Uuid::new_v4()),
            Role::Patient,
        );
        (visits, visit, clinician, patient)
    }

    #[test]
    fn a_patient_waits_until_the_clinician_admits_them() {
        let (visits, _, mut clinician, mut patient) = setup();
        let events = patient.drain();
        assert_eq!(state(&events), Some("waiting"));
        assert!(
            !events
                .iter()
                .any(|e| matches!(e, VisitEvent::Admitted { .. }))
        );
        // A waiting patient can send no media and sees nothing of the call.
        assert_eq!(
            visits.check_in_call(&patient.ticket),
            Err(VisitError::NotAdmitted)
        );
        let seen = clinician.drain();
        assert_eq!(state(&seen), Some("admitted"));
        assert_eq!(waiting(&seen), Some(vec![patient.ticket.participant]));
        // Only the clinician admits.
        assert_eq!(
            visits.admit(&patient.ticket, patient.ticket.participant),
            Err(VisitError::ClinicianOnly)
        );
        visits
            .admit(&clinician.ticket, patient.ticket.participant)
            .unwrap();
        let events = patient.drain();
        let VisitEvent::Admitted { participants } = &events[0] else {
            panic!("{events:?}")
        };
        assert_eq!(participants.len(), 1);
        assert_eq!(participants[0].role, Role::Clinician);
        visits.check_in_call(&patient.ticket).unwrap();
        let seen = clinician.drain();
        assert!(seen.iter().any(|e| matches!(e, VisitEvent::ParticipantJoined { participant } if participant.participant_id == patient.ticket.participant)));
        assert_eq!(waiting(&seen), Some(vec![]));
    }

    #[test]
    fn a_reload_within_the_grace_period_returns_to_the_call_without_admission() {
        let (visits, visit, clinician, patient) = setup();
        let person = visits.rooms()[&visit].seats[&patient.ticket.participant].person;
        visits
            .admit(&clinician.ticket, patient.ticket.participant)
            .unwrap();
        assert!(visits.leave(&patient.ticket));
        let mut again = join(&visits, visit, person, Role::Patient);
        assert_eq!(again.ticket.participant, patient.ticket.participant);
        assert_eq!(state(&again.drain()), Some("admitted"));
        // The old socket's ticket no longer acts for the seat.
        assert!(!visits.leave(&patient.ticket));
        visits.check_in_call(&again.ticket).unwrap();
    }

    #[test]
    fn after_the_grace_period_or_removal_a_participant_waits_again() {
        let visits = Visits::new(Duration::ZERO);
        let visit = AppointmentId(Uuid::new_v4());
        let clinician = join(
            &visits,
            visit,
            Person::Staff(Uuid::new_v4()),
            Role::Clinician,
        );
        let person = Person::Patient(Uuid::new_v4());
        let patient = join(&visits, visit, person, Role::Patient);
        visits
            .admit(&clinician.ticket, patient.ticket.participant)
            .unwrap();
        visits.leave(&patient.ticket);
        std::thread::sleep(Duration::from_millis(2));
        let mut late = join(&visits, visit, person, Role::Patient);
        assert_eq!(state(&late.drain()), Some("waiting"));

        visits
            .admit(&clinician.ticket, late.ticket.participant)
            .unwrap();
        visits
            .remove(&clinician.ticket, late.ticket.participant)
            .unwrap();
        assert!(late.drain().contains(&VisitEvent::Removed));
        assert_eq!(
            visits.check_in_call(&late.ticket),
            Err(VisitError::NotJoined)
        );
        let mut back = join(&visits, visit, person, Role::Patient);
        assert_eq!(state(&back.drain()), Some("waiting"));
    }

    #[test]
    fn a_second_tab_replaces_the_first_and_denial_sends_the_patient_away() {
        let (visits, visit, clinician, mut patient) = setup();
        let person = visits.rooms()[&visit].seats[&patient.ticket.participant].person;
        let mut second = join(&visits, visit, person, Role::Patient);
        assert!(patient.drain().contains(&VisitEvent::Replaced));
        assert_eq!(
            visits.check_in_call(&patient.ticket),
            Err(VisitError::NotJoined)
        );
        visits
            .deny(&clinician.ticket, second.ticket.participant)
            .unwrap();
        assert!(second.drain().contains(&VisitEvent::Denied));
        // Nobody left to admit.
        assert_eq!(
            visits.admit(&clinician.ticket, second.ticket.participant),
            Err(VisitError::NoSuchParticipant)
        );
    }

    #[test]
    fn chat_and_mute_reach_the_call_only_and_ending_tells_everyone() {
        let (visits, visit, mut clinician, mut patient) = setup();
        let mut other = join(
            &visits,
            visit,
            Person::Patient(Uuid::new_v4()),
            Role::Patient,
        );
        visits
            .admit(&clinician.ticket, patient.ticket.participant)
            .unwrap();
        for socket in [&mut clinician, &mut patient, &mut other] {
            socket.drain();
        }
        assert_eq!(
            visits.chat(&other.ticket, "let me in".into()),
            Err(VisitError::NotAdmitted)
        );
        visits.chat(&patient.ticket, "hello".into()).unwrap();
        visits.mute(&patient.ticket, false, true).unwrap();
        let chats = |events: &[VisitEvent]| {
            events
                .iter()
                .filter(|e| matches!(e, VisitEvent::Chat { .. }))
                .count()
        };
        let seen = clinician.drain();
        assert_eq!(chats(&seen), 1);
        assert!(
            seen.iter()
                .any(|e| matches!(e, VisitEvent::Mute { audio: false, .. }))
        );
        assert_eq!(chats(&patient.drain()), 1);
        assert!(other.drain().is_empty(), "the waiting room saw the call");

        assert_eq!(visits.end(&patient.ticket), Err(VisitError::ClinicianOnly));
        let stopped = visits.end(&clinician.ticket).unwrap();
        assert_eq!(stopped.len(), 3);
        for socket in [&mut clinician, &mut patient, &mut other] {
            assert!(socket.drain().contains(&VisitEvent::VisitEnded));
        }
        assert_eq!(visits.participants(visit), 0);
    }
}
