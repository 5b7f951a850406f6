//! Who is speaking in a room, from the audio levels publishers put in their
//! packets (RFC 6464, `urn:ietf:params:rtp-hdrext:ssrc-audio-level`).
//!
//! Browsers measure the level of every audio frame before encoding it and
//! send it in a header extension as −dBov (0 is the loudest, 127 silence),
//! so the SFU knows who speaks without decoding anything.
//!
//! The rule, evaluated every [`SPEECH_INTERVAL`]: a frame louder than
//! [`SPEECH_LEVEL`] is voiced; a participant with a voiced frame in the
//! last [`SPEECH_WINDOW`] intervals is speaking. The dominant speaker is the
//! one with the most voiced frames in that window; they keep the floor on a
//! tie, and lose it when silent for the whole window or when someone else
//! has had more voiced frames for [`TAKEOVER_INTERVALS`] evaluations in a
//! row (a cough does not move the highlight).
//!
//! Invariants: the dominant speaker, when there is one, is speaking; only
//! participants of the room are named.

use std::collections::{HashMap, VecDeque};
use std::time::Duration;

use uuid::Uuid;

/// How often the speakers are evaluated.
pub const SPEECH_INTERVAL: Duration = Duration::from_millis(500);

/// A frame at least this loud (in −dBov, so a *lower* number) is voiced:
/// −50 dBov is quiet speech close to a laptop microphone; room noise is
/// quieter than −60.
pub const SPEECH_LEVEL: u8 = 50;

/// Intervals a participant's voiced frames count for.
pub const SPEECH_WINDOW: usize = 2;

/// Evaluations in a row another speaker must lead for before taking the
/// floor from a dominant speaker who still speaks.
pub const TAKEOVER_INTERVALS: u32 = 2;

/// Who speaks in a room, as the clients are told.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Speakers {
    /// The one whose video is highlighted.
    pub dominant: Option<Uuid>,
    /// Everyone speaking now, sorted (the dominant speaker among them).
    pub speaking: Vec<Uuid>,
}

/// One participant's voiced frames: the interval being counted, then the
/// finished ones, newest first.
#[derive(Debug, Default)]
struct Voice {
    current: u32,
    finished: VecDeque<u32>,
}

impl Voice {
    fn recent(&self) -> u32 {
        self.finished.iter().sum()
    }
}

/// The speech of one room's participants.
#[derive(Debug, Default)]
pub struct RoomSpeech {
    voices: HashMap<Uuid, Voice>,
    announced: Speakers,
    /// Who leads while someone else holds the floor, and for how many
    /// evaluations in a row.
    challenger: Option<(Uuid, u32)>,
}

impl RoomSpeech {
    /// A packet of `participant`'s with audio level `level` (−dBov; the
    /// extension's 7 bits, so 0–127).
    pub fn observe(&mut self, participant: Uuid, level: u8) {
        let voice = self.voices.entry(participant).or_default();
        if level <= SPEECH_LEVEL {
            voice.current += 1;
        }
    }

    /// `participant` left the room.
    pub fn forget(&mut self, participant: Uuid) {
        self.voices.remove(&participant);
        if self.challenger.is_some_and(|(who, _)| who == participant) {
            self.challenger = None;
        }
    }

    /// Closes the current interval; returns who speaks now if that changed
    /// since the last time it returned something.
    pub fn evaluate(&mut self) -> Option<Speakers> {
        for voice in self.voices.values_mut() {
            voice
                .finished
                .push_front(std::mem::take(&mut voice.current));
            voice.finished.truncate(SPEECH_WINDOW);
        }
        let mut speaking: Vec<(Uuid, u32)> = self
            .voices
            .iter()
            .map(|(who, voice)| (*who, voice.recent()))
            .filter(|(_, recent)| *recent > 0)
            .collect();
        speaking.sort_unstable_by_key(|(who, _)| *who);
        let loudest = speaking
            .iter()
            .max_by_key(|(who, recent)| (*recent, std::cmp::Reverse(*who)))
            .copied();
        let holder = self
            .announced
            .dominant
            .and_then(|who| speaking.iter().find(|(w, _)| *w == who).copied());
        let dominant = match (holder, loudest) {
            (None, loudest) => {
                self.challenger = None;
                loudest.map(|(who, _)| who)
            }
            (Some((held, held_recent)), Some((leader, leader_recent)))
                if leader != held && leader_recent > held_recent =>
            {
                let led = match self.challenger {
                    Some((who, times)) if who == leader => times + 1,
                    _ => 1,
                };
                if led >= TAKEOVER_INTERVALS {
                    self.challenger = None;
                    Some(leader)
                } else {
                    self.challenger = Some((leader, led));
                    Some(held)
                }
            }
            (Some((held, _)), _) => {
                self.challenger = None;
                Some(held)
            }
        };
        let now = Speakers {
            dominant,
            speaking: speaking.into_iter().map(|(who, _)| who).collect(),
        };
        if now == self.announced {
            return None;
        }
        self.announced = now.clone();
        Some(now)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn speak(room: &mut RoomSpeech, who: Uuid, voiced: u32, level: u8) {
        for _ in 0..voiced {
            room.observe(who, level);
        }
        // Silence between the words.
        room.observe(who, 127);
    }

    #[test]
    fn silence_names_nobody_and_a_voice_becomes_dominant() {
        let (a, b) = (Uuid::new_v4(), Uuid::new_v4());
        let mut room = RoomSpeech::default();
        speak(&mut room, a, 0, 127);
        speak(&mut room, b, 0, 90);
        assert_eq!(room.evaluate(), None, "nobody spoke: nothing changed");
        speak(&mut room, a, 5, 30);
        assert_eq!(
            room.evaluate(),
            Some(Speakers {
                dominant: Some(a),
                speaking: vec![a],
            })
        );
        speak(&mut room, a, 5, 30);
        assert_eq!(room.evaluate(), None, "still a: no new announcement");
    }

    #[test]
    fn a_short_burst_of_speech_does_not_take_the_floor_but_a_sustained_one_does() {
        let (a, b) = (Uuid::new_v4(), Uuid::new_v4());
        let mut room = RoomSpeech::default();
        speak(&mut room, a, 10, 30);
        assert_eq!(room.evaluate().and_then(|s| s.dominant), Some(a));
        // b coughs: more voiced frames than a for one interval.
        speak(&mut room, a, 3, 30);
        speak(&mut room, b, 20, 10);
        let after_cough = room.evaluate().expect("b now speaks too");
        assert_eq!(after_cough.dominant, Some(a));
        assert_eq!(after_cough.speaking.len(), 2);
        // b keeps talking and a falls quiet: b takes over.
        speak(&mut room, a, 1, 30);
        speak(&mut room, b, 20, 10);
        let switched = room.evaluate().expect("the floor changed");
        assert_eq!(switched.dominant, Some(b));
    }

    #[test]
    fn the_floor_is_released_after_a_window_of_silence_and_on_leaving() {
        let (a, b) = (Uuid::new_v4(), Uuid::new_v4());
        let mut room = RoomSpeech::default();
        speak(&mut room, a, 4, 40);
        speak(&mut room, b, 1, 45);
        assert_eq!(room.evaluate().and_then(|s| s.dominant), Some(a));
        for _ in 0..SPEECH_WINDOW {
            speak(&mut room, a, 0, 127);
            speak(&mut room, b, 1, 45);
            room.evaluate();
        }
        assert_eq!(
            room.announced.dominant,
            Some(b),
            "a was silent for the window"
        );
        room.forget(b);
        assert_eq!(
            room.evaluate(),
            Some(Speakers::default()),
            "b left and a is silent"
        );
    }

    #[test]
    fn quiet_noise_is_not_speech() {
        let a = Uuid::new_v4();
        let mut room = RoomSpeech::default();
        speak(&mut room, a, 50, SPEECH_LEVEL + 1);
        assert_eq!(room.evaluate(), None);
    }
}
