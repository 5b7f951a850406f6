//! The live hub: committed readings and committed alert transitions,
//! routed in-process to the clinician feeds watching each patient. Nothing
//! reaches the hub before it is stored, so a feed never shows what the
//! database does not hold. The hub itself keeps nothing: a feed that
//! connects or lags catches up from the database (latest values, open
//! alerts, alert events after its sequence number).
//!
//! Events are routed by patient, not broadcast: with 10,000 devices a
//! second, every feed receiving every sample to filter it would fall
//! behind however few patients it watches. Each feed has its own bounded
//! queue; when it is full the event is dropped for that feed and the feed
//! is told it lagged, so it catches up on alerts from the database (samples
//! are simply superseded by the next ones).

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};

use bedside_vitals_store::alerts::Transition;
use bedside_vitals_store::metric::Metric;
use chrono::{DateTime, Utc};
use tokio::sync::mpsc;
use uuid::Uuid;

/// Something that just happened to a patient.
#[derive(Debug, Clone, PartialEq)]
pub enum LiveEvent {
    /// A reading was stored.
    Sample {
        /// Whose.
        patient: Uuid,
        /// What.
        metric: Metric,
        /// Value in the canonical unit.
        value: f64,
        /// When measured.
        time: DateTime<Utc>,
    },
    /// An alert changed (and the change is committed): the alert as it
    /// stands after the transition, and the numbered event.
    Alert(Arc<Transition>),
    /// A patient's NEWS2 changed, scored on stored readings.
    News2 {
        /// Whose.
        patient: Uuid,
        /// The score.
        score: Arc<bedside_alerts::news2::Score>,
        /// The SpO2 scale it used (1 or 2).
        spo2_scale: i16,
    },
}

impl LiveEvent {
    /// A committed alert transition.
    pub fn alert(transition: Transition) -> Self {
        LiveEvent::Alert(Arc::new(transition))
    }

    /// The patient concerned.
    pub fn patient(&self) -> Uuid {
        match self {
            LiveEvent::Sample { patient, .. } | LiveEvent::News2 { patient, .. } => *patient,
            LiveEvent::Alert(transition) => transition.alert.patient_id,
        }
    }
}

/// One feed's end of the hub.
#[derive(Debug)]
struct Subscriber {
    id: u64,
    tx: mpsc::Sender<Arc<LiveEvent>>,
    /// Set when an event could not be queued; cleared when the feed reads it.
    lagged: AtomicBool,
}

/// The routing hub.
#[derive(Debug, Clone)]
pub struct LiveHub {
    routes: Arc<RwLock<HashMap<Uuid, Vec<Arc<Subscriber>>>>>,
    next_id: Arc<AtomicU64>,
    capacity: usize,
}

impl LiveHub {
    /// A hub whose feeds may each fall `capacity` events behind before they
    /// lag (and must catch up from the database).
    pub fn new(capacity: usize) -> Self {
        Self {
            routes: Arc::default(),
            next_id: Arc::new(AtomicU64::new(0)),
            capacity: capacity.max(16),
        }
    }

    /// Routes an event to every feed watching its patient.
    pub fn publish(&self, event: LiveEvent) {
        self.publish_all([event]);
    }

    /// Routes several events under one look at the routing table.
    pub fn publish_all(&self, events: impl IntoIterator<Item = LiveEvent>) {
        let routes = self.routes.read().unwrap_or_else(|e| e.into_inner());
        for event in events {
            let Some(subscribers) = routes.get(&event.patient()) else {
                continue;
            };
            let event = Arc::new(event);
            for subscriber in subscribers {
                if let Err(mpsc::error::TrySendError::Full(_)) =
                    subscriber.tx.try_send(event.clone())
                {
                    subscriber.lagged.store(true, Ordering::Relaxed);
                }
            }
        }
    }

    /// A new feed: a handle to choose patients and its event stream.
    pub fn subscribe(&self) -> (Watcher, Events) {
        let (tx, rx) = mpsc::channel(self.capacity);
        let me = Arc::new(Subscriber {
            id: self.next_id.fetch_add(1, Ordering::Relaxed),
            tx,
            lagged: AtomicBool::new(false),
        });
        (
            Watcher {
                hub: self.clone(),
                me: me.clone(),
                watched: Mutex::default(),
            },
            Events { rx, me },
        )
    }
}

impl Default for LiveHub {
    fn default() -> Self {
        Self::new(4096)
    }
}

/// Chooses which patients a feed receives events for; dropping it
/// unsubscribes from all.
#[derive(Debug)]
pub struct Watcher {
    hub: LiveHub,
    me: Arc<Subscriber>,
    watched: Mutex<HashSet<Uuid>>,
}

impl Watcher {
    /// Starts routing these patients' events to the feed.
    pub fn watch(&self, patients: &[Uuid]) {
        let mut watched = self.watched.lock().unwrap_or_else(|e| e.into_inner());
        let mut routes = self.hub.routes.write().unwrap_or_else(|e| e.into_inner());
        for patient in patients {
            if watched.insert(*patient) {
                routes.entry(*patient).or_default().push(self.me.clone());
            }
        }
    }

    /// Stops routing these patients' events to the feed.
    pub fn unwatch(&self, patients: &[Uuid]) {
        let mut watched = self.watched.lock().unwrap_or_else(|e| e.into_inner());
        let mut routes = self.hub.routes.write().unwrap_or_else(|e| e.into_inner());
        for patient in patients {
            if watched.remove(patient) {
                remove_route(&mut routes, *patient, self.me.id);
            }
        }
    }
}

impl Drop for Watcher {
    fn drop(&mut self) {
        let watched = self.watched.get_mut().unwrap_or_else(|e| e.into_inner());
        let mut routes = self.hub.routes.write().unwrap_or_else(|e| e.into_inner());
        for patient in watched.drain() {
            remove_route(&mut routes, patient, self.me.id);
        }
    }
}

fn remove_route(routes: &mut HashMap<Uuid, Vec<Arc<Subscriber>>>, patient: Uuid, id: u64) {
    if let Some(subscribers) = routes.get_mut(&patient) {
        subscribers.retain(|s| s.id != id);
        if subscribers.is_empty() {
            routes.remove(&patient);
        }
    }
}

/// Why no event came.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RecvError {
    /// Events were dropped because the feed's queue was full.
    Lagged,
    /// The hub is gone.
    Closed,
}

/// A feed's event stream.
#[derive(Debug)]
pub struct Events {
    rx: mpsc::Receiver<Arc<LiveEvent>>,
    me: Arc<Subscriber>,
}

impl Events {
    /// The next event, or `Lagged` once after events were dropped.
    pub async fn recv(&mut self) -> Result<Arc<LiveEvent>, RecvError> {
        if self.me.lagged.swap(false, Ordering::Relaxed) {
            return Err(RecvError::Lagged);
        }
        self.rx.recv().await.ok_or(RecvError::Closed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample(patient: Uuid) -> LiveEvent {
        LiveEvent::Sample {
            patient,
            metric: Metric::HeartRate,
            value: 70.0,
            time: Utc::now(),
        }
    }

    #[tokio::test]
    async fn feeds_receive_only_the_patients_they_watch() {
        let hub = LiveHub::new(16);
        let (a, b) = (Uuid::new_v4(), Uuid::new_v4());
        let (watcher, mut events) = hub.subscribe();
        watcher.watch(&[a]);
        hub.publish_all([sample(b), sample(a)]);
        assert_eq!(events.recv().await.unwrap().patient(), a);
        watcher.unwatch(&[a]);
        hub.publish(sample(a));
        watcher.watch(&[b]);
        hub.publish(sample(b));
        assert_eq!(
            events.recv().await.unwrap().patient(),
            b,
            "a's event after unwatch never came"
        );
        drop(watcher);
        assert!(
            hub.routes.read().unwrap().is_empty(),
            "dropping the watcher unroutes it"
        );
    }

    #[tokio::test]
    async fn a_full_queue_drops_events_and_reports_one_lag() {
        let hub = LiveHub::new(16);
        let patient = Uuid::new_v4();
        let (watcher, mut events) = hub.subscribe();
        watcher.watch(&[patient]);
        hub.publish_all((0..20).map(|_| sample(patient)));
        assert_eq!(events.recv().await, Err(RecvError::Lagged));
        for _ in 0..16 {
            assert!(events.recv().await.is_ok());
        }
        hub.publish(sample(patient));
        assert!(events.recv().await.is_ok(), "the lag is reported once");
    }
}
