//! The live hub: committed readings and committed alert transitions,
//! broadcast in-process to every open clinician feed. Nothing reaches the
//! hub before it is stored, so a feed never shows what the database does
//! not hold. The hub itself keeps nothing: a feed that connects or lags
//! catches up from the database (latest values, open alerts, alert events
//! after its sequence number).

use std::sync::Arc;

use bedside_vitals_store::alerts::AlertEvent;
use bedside_vitals_store::metric::Metric;
use chrono::{DateTime, Utc};
use tokio::sync::broadcast;
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
    /// An alert changed (and the change is committed).
    Alert {
        /// Whose.
        patient: Uuid,
        /// The numbered transition.
        event: AlertEvent,
    },
}

impl LiveEvent {
    /// The patient concerned.
    pub fn patient(&self) -> Uuid {
        match self {
            LiveEvent::Sample { patient, .. } | LiveEvent::Alert { patient, .. } => *patient,
        }
    }
}

/// The broadcast hub.
#[derive(Debug, Clone)]
pub struct LiveHub {
    tx: broadcast::Sender<Arc<LiveEvent>>,
}

impl LiveHub {
    /// A hub whose subscribers may fall `capacity` events behind before they
    /// lag (and must catch up from the database).
    pub fn new(capacity: usize) -> Self {
        Self {
            tx: broadcast::channel(capacity.max(16)).0,
        }
    }
    /// Publishes an event to every current subscriber.
    pub fn publish(&self, event: LiveEvent) {
        let _ = self.tx.send(Arc::new(event));
    }
    /// A new subscription.
    pub fn subscribe(&self) -> broadcast::Receiver<Arc<LiveEvent>> {
        self.tx.subscribe()
    }
}

impl Default for LiveHub {
    fn default() -> Self {
        Self::new(4096)
    }
}
