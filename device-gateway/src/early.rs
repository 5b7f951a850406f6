//! The early look: readings decoded and resolved as they arrive, handed
//! to the alert engine before their batch commits.
//!
//! An alert must not wait for a batch to fill and commit under ingest load
//! (hundreds of milliseconds at 10,000 messages a second on a small
//! machine). So the poll task also offers each message here, and this task
//! decodes it the way the commit will ([`crate::gateway::interpret`]) and
//! passes the readings on. It is best effort: when it falls behind, a
//! message skips the early look (counted in
//! `bedside_ingest_early_skipped_total`) and its readings reach the engine
//! once committed, as every reading does. It never acknowledges, stores or
//! refuses anything: the batch path alone does.
//!
//! Each reading's patient comes from an in-memory copy of the devices'
//! assignment history, read once per device and forgotten as soon as the
//! notice of an assignment change arrives ([`bedside_vitals_store::changes`],
//! milliseconds after its commit). A reading that arrives inside that
//! window gets its early look under the previous assignment; its committed
//! evaluation, like its stored row, uses the assignment in the database.

use std::collections::HashMap;

use bedside_records::devices::AssignmentPeriod;
use bedside_vitals_store::changes::{self, Forget};
use bedside_vitals_store::store::NewReading;
use sqlx::PgPool;
use tokio::sync::mpsc;
use uuid::Uuid;

use crate::gateway::{assignment_periods, device_of, interpret, status_device_of};
use crate::metrics::IngestMetrics;
use crate::senml::Limits;
use crate::session::Message;

/// Messages waiting for the early look; beyond this they skip it.
pub(crate) const EARLY_QUEUE: usize = 8192;
/// Messages decoded together (one assignment lookup for the new devices among them).
const CHUNK: usize = 256;

/// Runs until `messages` closes or `out`'s receiver is gone.
pub(crate) async fn run(
    db: PgPool,
    mut messages: mpsc::Receiver<Message>,
    out: mpsc::Sender<Vec<NewReading>>,
    limits: Limits,
    metrics: IngestMetrics,
) {
    let mut forget = changes::listen(db.clone(), changes::DEVICE_ASSIGNMENTS);
    let mut periods: HashMap<Uuid, Vec<AssignmentPeriod>> = HashMap::new();
    let mut chunk = Vec::with_capacity(CHUNK);
    loop {
        tokio::select! {
            biased;
            order = forget.recv() => match order {
                Some(Forget::One(device)) => { periods.remove(&device); }
                Some(Forget::All) => periods.clear(),
                None => {
                    // Cannot happen while this task holds the receiver; without
                    // notices the copy could go stale, so stop looking early.
                    tracing::error!("assignment notices stopped; alerts now wait for commits");
                    return;
                }
            },
            n = messages.recv_many(&mut chunk, CHUNK) => {
                if n == 0 {
                    return;
                }
                // Orders that came meanwhile apply before this chunk is read.
                while let Ok(order) = forget.try_recv() {
                    match order {
                        Forget::One(device) => { periods.remove(&device); }
                        Forget::All => periods.clear(),
                    }
                }
                let readings = look(&db, &chunk, &mut periods, &limits).await;
                if readings.is_none() {
                    metrics.early_skipped.inc_by(chunk.len() as u64);
                }
                chunk.clear();
                if let Some(readings) = readings.filter(|r| !r.is_empty())
                    && out.send(readings).await.is_err()
                {
                    return;
                }
            }
        }
    }
}

/// The readings of `chunk`, reading the assignments of devices not yet
/// known; `None` when the database cannot say (the commit will).
async fn look(
    db: &PgPool,
    chunk: &[Message],
    periods: &mut HashMap<Uuid, Vec<AssignmentPeriod>>,
    limits: &Limits,
) -> Option<Vec<NewReading>> {
    let mut unknown: Vec<Uuid> = chunk
        .iter()
        .filter_map(|p| device_of(&p.topic).or_else(|| status_device_of(&p.topic)))
        .filter(|d| !periods.contains_key(d))
        .collect();
    if !unknown.is_empty() {
        unknown.sort_unstable();
        unknown.dedup();
        match assignment_periods(db, &unknown).await {
            Ok(found) => {
                periods.extend(found);
                // Unregistered devices: remembered as such until a notice.
                for device in unknown {
                    periods.entry(device).or_default();
                }
            }
            Err(error) => {
                tracing::debug!(%error, "early look skipped: cannot read assignments");
                return None;
            }
        }
    }
    let mut readings = Vec::new();
    for message in chunk {
        readings.extend(
            interpret(
                &message.topic,
                &message.payload,
                periods,
                message.received_at,
                limits,
            )
            .readings,
        );
    }
    Some(readings)
}
