//! Rooms through the SFU's handle, with real `rtc` peers over loopback:
//! each participant receives the others of its room and nobody else's, the
//! SFU's renegotiation reaches every participant whatever the order of
//! joining, and a participant who reconnects is received again.

use std::collections::HashMap;
use std::net::SocketAddr;

use bedside_sfu::endpoint::RtcpFeedback;
use bedside_sfu::metrics::SfuMetrics;
use bedside_sfu::rooms::{AudioOnlyReason, Sfu, Signal, WEAK_SAMPLES};
use tokio::sync::{mpsc, oneshot};
use uuid::Uuid;

use support::{DEADLINE, Offering};

mod support;

/// What the test sees of one participant: the tags of the packets it
/// received, in order.
struct Participant {
    id: Uuid,
    received: mpsc::UnboundedReceiver<(u8, u16)>,
    /// The SFU's signals other than offers (which `join` answers).
    signals: mpsc::UnboundedReceiver<Signal>,
}

/// Connects a participant sending `packets` packets tagged `tag` to `room`,
/// and answers the SFU's offers for it as its signaling would.
async fn join(sfu: &Sfu, room: Uuid, id: Uuid, tag: u8, packets: u16) -> Participant {
    join_with(sfu, room, id, Offering::new(tag, packets).await).await
}

/// [`join`] for a peer made some other way.
async fn join_with(sfu: &Sfu, room: Uuid, id: Uuid, offering: Offering) -> Participant {
    let (signals, mut signal_rx) = mpsc::unbounded_channel();
    let answer = sfu
        .publish(room, id, offering.offer.clone(), signals)
        .await
        .expect("the SFU answers");
    let remote = offering.start(answer);
    let offers = remote.offers.clone();
    let handle = sfu.clone();
    let (others, other_signals) = mpsc::unbounded_channel();
    tokio::spawn(async move {
        while let Some(signal) = signal_rx.recv().await {
            if let Signal::Offer(offer) = signal {
                let (reply, answer) = oneshot::channel();
                if offers.send((offer, reply)).is_err() {
                    return;
                }
                let Ok(answer) = answer.await else { return };
                handle.answer(id, answer).await.expect("answer accepted");
            } else {
                let _ = others.send(signal);
            }
        }
    });
    Participant {
        id,
        received: remote.received,
        signals: other_signals,
    }
}

/// Collects what each participant receives until `done` says so.
async fn collect(
    participants: &mut [&mut Participant],
    mut done: impl FnMut(&HashMap<Uuid, Vec<u8>>) -> bool,
) -> HashMap<Uuid, Vec<u8>> {
    let mut seen: HashMap<Uuid, Vec<u8>> = participants.iter().map(|p| (p.id, vec![])).collect();
    let outcome = tokio::time::timeout(DEADLINE, async {
        while !done(&seen) {
            for p in participants.iter_mut() {
                while let Ok((tag, _)) = p.received.try_recv() {
                    seen.get_mut(&p.id).unwrap().push(tag);
                }
            }
            tokio::time::sleep(std::time::Duration::from_millis(5)).await;
        }
    })
    .await;
    assert!(
        outcome.is_ok(),
        "within {DEADLINE:?}, packets by receiver and tag: {:?}",
        tally(&seen)
    );
    seen
}

/// Per participant, how many packets of each tag it received.
fn tally(seen: &HashMap<Uuid, Vec<u8>>) -> HashMap<Uuid, std::collections::BTreeMap<u8, usize>> {
    seen.iter()
        .map(|(who, tags)| {
            let mut counts = std::collections::BTreeMap::new();
            for tag in tags {
                *counts.entry(*tag).or_default() += 1;
            }
            (*who, counts)
        })
        .collect()
}

fn count(seen: &HashMap<Uuid, Vec<u8>>, who: Uuid, tag: u8) -> usize {
    seen[&who].iter().filter(|&&t| t == tag).count()
}

async fn sfu() -> Sfu {
    Sfu::spawn(
        SocketAddr::from(([127, 0, 0, 1], 0)),
        None,
        RtcpFeedback::On,
        SfuMetrics::new(),
    )
    .await
    .unwrap()
}

#[tokio::test]
async fn participants_receive_their_room_only_and_a_reconnection_is_received_again() {
    let sfu = sfu().await;
    let (visit, other_visit) = (Uuid::new_v4(), Uuid::new_v4());
    let mut clinician = join(&sfu, visit, Uuid::new_v4(), 0xC1, 3000).await;
    let mut patient = join(&sfu, visit, Uuid::new_v4(), 0xA7, 3000).await;
    let mut stranger = join(&sfu, other_visit, Uuid::new_v4(), 0x5E, 3000).await;
    let (c, p, s) = (clinician.id, patient.id, stranger.id);

    let seen = collect(&mut [&mut clinician, &mut patient, &mut stranger], |seen| {
        count(seen, c, 0xA7) >= 20 && count(seen, p, 0xC1) >= 20
    })
    .await;
    // Only the other participant of one's own room.
    assert!(seen[&c].iter().all(|&t| t == 0xA7), "{:?}", tally(&seen));
    assert!(seen[&p].iter().all(|&t| t == 0xC1), "{:?}", tally(&seen));
    assert!(seen[&s].is_empty(), "{:?}", tally(&seen));

    // A third participant joins late: it receives both, both receive it.
    let mut guest = join(&sfu, visit, Uuid::new_v4(), 0x6E, 3000).await;
    let g = guest.id;
    collect(&mut [&mut clinician, &mut patient, &mut guest], |seen| {
        count(seen, g, 0xA7) >= 20
            && count(seen, g, 0xC1) >= 20
            && count(seen, c, 0x6E) >= 20
            && count(seen, p, 0x6E) >= 20
    })
    .await;

    // The patient's page reloads: a new connection for the same participant
    // replaces the old one, and the others receive it again.
    drop(patient);
    let mut patient = join(&sfu, visit, p, 0xA8, 3000).await;
    let seen = collect(&mut [&mut clinician, &mut patient], |seen| {
        count(seen, c, 0xA8) >= 20 && count(seen, p, 0xC1) >= 20
    })
    .await;
    assert!(
        !seen[&p].contains(&0x5E),
        "the other visit leaked: {:?}",
        tally(&seen)
    );
    // A refused offer (garbage) leaves the participant's connection as it was.
    let (signals, _ignored) = mpsc::unbounded_channel();
    assert!(
        sfu.publish(visit, c, "not an offer".into(), signals)
            .await
            .is_err()
    );
    collect(&mut [&mut clinician], |seen| count(seen, c, 0xA8) >= 20).await;

    // Four connections (the replaced one is gone) in two rooms, and the
    // forwarded packets counted.
    assert_eq!(sfu.metrics().participants.get(), 4);
    assert_eq!(sfu.metrics().rooms.get(), 2);
    assert!(sfu.metrics().forwarded_packets.get() >= 160);
}

#[tokio::test]
async fn each_participant_gets_the_connection_statistics_of_its_room() {
    let sfu = sfu().await;
    let (visit, other_visit) = (Uuid::new_v4(), Uuid::new_v4());
    let mut clinician = join(&sfu, visit, Uuid::new_v4(), 0xC1, 3000).await;
    let patient = join(&sfu, visit, Uuid::new_v4(), 0xA7, 3000).await;
    let stranger = join(&sfu, other_visit, Uuid::new_v4(), 0x5E, 3000).await;
    let (p, s) = (patient.id, stranger.id);

    // Each sends 100 packets of 100 bytes a second and receives the
    // other's: both directions carry traffic in the statistics.
    let stats = tokio::time::timeout(DEADLINE, async {
        loop {
            let Some(signal) = clinician.signals.recv().await else {
                panic!("the clinician's signals ended");
            };
            let Signal::Stats(stats) = signal else {
                continue;
            };
            assert!(
                stats.iter().all(|(id, _)| *id != s),
                "another visit's participant in the statistics"
            );
            let flowing = stats.len() == 2
                && stats
                    .iter()
                    .all(|(_, st)| st.sending_bps > 0 && st.receiving_bps > 0);
            if flowing {
                return stats;
            }
        }
    })
    .await
    .expect("statistics with traffic both ways within the deadline");
    let (_, patient_stats) = stats.iter().find(|(id, _)| *id == p).expect("the patient");
    // 100 payload bytes, 100 times a second: 80 kbit/s, with slack for
    // the start of the interval and the pacing of the test's peers.
    assert!(
        (20_000..=200_000).contains(&patient_stats.sending_bps),
        "{patient_stats:?}"
    );
    assert!(patient_stats.sending_loss < 0.5, "{patient_stats:?}");
    assert!(
        patient_stats
            .round_trip
            .is_some_and(|rtt| rtt > 0.0 && rtt < 1.0),
        "{patient_stats:?}"
    );
    assert!(sfu.metrics().participant_round_trip.get_sample_count() > 0);
    drop((patient, stranger));
}

/// The next audio-only signal `participant` gets, within the deadline.
async fn next_audio_only(participant: &mut Participant) -> Option<AudioOnlyReason> {
    tokio::time::timeout(DEADLINE, async {
        loop {
            match participant.signals.recv().await {
                Some(Signal::AudioOnly(mode)) => return mode,
                Some(_) => {}
                None => panic!("the participant's signals ended"),
            }
        }
    })
    .await
    .expect("an audio-only signal within the deadline")
}

#[tokio::test]
async fn audio_only_stops_video_to_a_participant_and_a_weak_connection_forces_it() {
    let sfu = sfu().await;
    let visit = Uuid::new_v4();
    let mut clinician = join(&sfu, visit, Uuid::new_v4(), 0xC1, 6000).await;
    // A patient whose uplink loses one packet in four.
    let lossy = Offering::new(0xA7, 6000).await.lossy(4);
    let mut patient = join_with(&sfu, visit, Uuid::new_v4(), lossy).await;
    let c = clinician.id;
    collect(&mut [&mut clinician], |seen| count(seen, c, 0xA7) >= 20).await;

    // The clinician chooses audio only: the patient's video stops reaching
    // them (the test's tracks are video)...
    sfu.set_audio_only(c, true).await.expect("connected");
    assert_eq!(
        next_audio_only(&mut clinician).await,
        Some(AudioOnlyReason::Chosen)
    );
    while clinician.received.try_recv().is_ok() {}
    // Absence needs a window: 300 ms is 30 packets of the patient's.
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    let mut during = 0;
    while clinician.received.try_recv().is_ok() {
        during += 1;
    }
    // (a packet or two may have been in flight when the mode changed)
    assert!(
        during <= 2,
        "{during} video packets reached an audio-only participant"
    );
    // ...and resumes when they ask for it again.
    sfu.set_audio_only(c, false).await.expect("connected");
    assert_eq!(next_audio_only(&mut clinician).await, None);
    collect(&mut [&mut clinician], |seen| count(seen, c, 0xA7) >= 20).await;

    // The patient's 25 % loss keeps every interval weak: after WEAK_SAMPLES
    // of them in a row their video is switched off for them.
    assert_eq!(
        next_audio_only(&mut patient).await,
        Some(AudioOnlyReason::WeakConnection),
        "forced after {WEAK_SAMPLES} weak intervals"
    );
    assert_eq!(sfu.metrics().audio_only_switches.get(), 1);
    // Nobody else is affected.
    collect(&mut [&mut clinician], |seen| count(seen, c, 0xA7) >= 20).await;

    // Unknown participants are refused.
    assert!(sfu.set_audio_only(Uuid::new_v4(), true).await.is_err());
}
