//! The MQTT side: one persistent QoS 1 session, batches committed before
//! their messages are acknowledged.
//!
//! ```text
//!  broker ──publish──▶ [poll task] ──channel (bounded)──▶ [batch task] ──▶ PostgreSQL
//!     ▲                                                       │ commit
//!     └──── PUBACK ◀── [ack task] ◀──queue (unbounded)────────┘
//! ```
//!
//! - The poll task only drives rumqttc's event loop and forwards publishes:
//!   a task that both polls and acks can deadlock when the request channel
//!   fills (rumqtt issue 1025).
//! - Acknowledgements go through their own task, so the batch task never
//!   waits on rumqttc's request channel. That channel is drained only by the
//!   poll task, which may itself be waiting for the batch task to take
//!   messages: if the batch task also waited there, the two would stop for
//!   good. That is not only theory: rumqttc's event loop sends at most one
//!   acknowledgement per turn while it reads up to ten messages, and a
//!   broker that sends beyond its in-flight window (Mosquitto 2.0.11, the
//!   version in Debian 12, does under a backlog; fixed upstream in 2.0.13,
//!   "various fixes around inflight quota management") fills both channels.
//!   `bedside_ingest_unacknowledged_messages` shows how many messages the
//!   gateway holds unacknowledged, which a broker that keeps its window
//!   bounds by `max_inflight_messages`.
//! - The batch task closes a batch on size, or on age when nothing more is
//!   queued, and hands it to a commit task that decodes each message,
//!   resolves which patient each reading belongs to, and stores the
//!   readings and the refusals in one transaction. A few batches commit at
//!   once (`concurrent_batches`) so round trips and WAL flushes overlap;
//!   the batch task queues each batch's acknowledgements (for the ack task)
//!   only after its commit, in the order the batches were closed. If the
//!   database fails it
//!   keeps the batch, retries with backoff, and acknowledges nothing: the
//!   broker stops sending beyond its in-flight window, and a crash loses
//!   nothing because unacknowledged messages are redelivered (the unique key
//!   absorbs the duplicates).
//! - A message that cannot be used is stored as rejected with its reason and
//!   acknowledged, so one bad device never blocks the rest.

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use bedside_records::devices::{self, AssignmentPeriod};
use bedside_vitals_store::liveness;
use bedside_vitals_store::store::{self, NewReading, Rejected};
use chrono::{DateTime, Utc};
use sqlx::PgPool;
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;
use uuid::Uuid;

use crate::metrics::IngestMetrics;
use crate::senml::{self, Format, Limits};
use crate::session::{self, Ack, Client, Message, Protocol, SessionEvent};

/// The server's [`GatewaySettings::queue_capacity`]: above the largest
/// in-flight window a broker grants (65,535 is MQTT's own limit on packet ids).
pub const QUEUE_CAPACITY: usize = 65_536;

/// The topic filter for readings.
pub const VITALS_FILTER: &str = "bedside/v1/devices/+/vitals";
/// The topic filter for CBOR readings.
pub const VITALS_CBOR_FILTER: &str = "bedside/v1/devices/+/vitals/cbor";
/// The topic filter for device status (retained `online`, last will `offline`).
pub const STATUS_FILTER: &str = "bedside/v1/devices/+/status";

/// The topic filters the gateway subscribes to, shared in `group` when given.
/// (Shared subscriptions receive no retained messages: a device's retained
/// `online` is then seen only when it is published, not on subscribing.)
pub fn filters(group: Option<&str>) -> Vec<String> {
    [VITALS_FILTER, VITALS_CBOR_FILTER, STATUS_FILTER]
        .iter()
        .map(|filter| match group {
            Some(group) => format!("$share/{group}/{filter}"),
            None => (*filter).to_owned(),
        })
        .collect()
}

/// What a committed batch changed, for the alert engine and the live feeds.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Committed {
    /// The readings stored (redelivered duplicates included: evaluating twice is harmless).
    pub readings: Vec<NewReading>,
    /// Devices whose liveness changed: (device, its patient now, online).
    pub liveness: Vec<(Uuid, Option<Uuid>, bool)>,
}

/// Where the gateway hands on what it reads.
#[derive(Debug, Default)]
pub struct Outlets {
    /// Each committed batch's readings and liveness changes, in commit
    /// order. A full channel slows ingest; it never drops a batch.
    pub committed: Option<mpsc::Sender<Committed>>,
    /// Readings as they arrive, decoded and resolved, before their batch
    /// commits: best effort, for alerts that must not wait for a commit
    /// (see the `early` module). Every reading also follows in `committed`.
    pub arrived: Option<mpsc::Sender<Vec<NewReading>>>,
}

/// How the gateway connects and batches.
#[derive(Debug, Clone)]
pub struct GatewaySettings {
    /// Broker host.
    pub host: String,
    /// Broker port.
    pub port: u16,
    /// Stable client id: the broker keeps this session's queue while we are away.
    pub client_id: String,
    /// Username.
    pub username: String,
    /// Password.
    pub password: String,
    /// MQTT 3.1.1 or 5.
    pub protocol: Protocol,
    /// TLS to the broker (`mqtts://`): whom to trust. `None`: plain TCP.
    pub tls: Option<Arc<rustls::ClientConfig>>,
    /// Subscribe as `$share/<group>/…` so several gateways (one per Bedside
    /// node, each with its own client id) split the devices' stream: an
    /// MQTT 5 feature (Mosquitto 2 also honours it for 3.1.1 clients, but
    /// the server's configuration asks for MQTT 5).
    pub shared_group: Option<String>,
    /// A batch closes at this many messages. Must not exceed the broker's
    /// in-flight window for this client (Mosquitto's `max_inflight_messages`),
    /// since no message is acknowledged before its batch commits.
    pub batch_messages: usize,
    /// A batch closes when its oldest message has waited this long.
    pub batch_age: Duration,
    /// Batches committing at once. `batch_messages` times one more than
    /// this must fit the broker's in-flight window, or the broker stops
    /// sending while batches commit.
    pub concurrent_batches: usize,
    /// Messages the poll task may hand ahead of the batch task, and
    /// acknowledgements rumqttc's request channel may hold
    /// ([`QUEUE_CAPACITY`] in the server; tests make it small to show that
    /// full channels slow the gateway down without stopping it).
    pub queue_capacity: usize,
    /// Payload and time limits for decoding.
    pub limits: Limits,
    /// Most bytes of a refused payload kept in `rejected_messages`.
    pub rejected_payload_bytes: usize,
    /// Where counts and timings go.
    pub metrics: IngestMetrics,
}

/// Whether the gateway is connected to the broker and able to store.
#[derive(Debug, Clone)]
pub struct Health {
    connected: Arc<AtomicBool>,
    storing: Arc<AtomicBool>,
}

impl Default for Health {
    fn default() -> Self {
        Self {
            connected: Arc::new(AtomicBool::new(false)),
            // Until a commit fails there is no reason to think it would.
            storing: Arc::new(AtomicBool::new(true)),
        }
    }
}

impl Health {
    /// Connected to the broker and the last commit (if any) succeeded.
    pub fn is_ready(&self) -> bool {
        self.is_connected() && self.is_storing()
    }
    /// Whether the MQTT session is up.
    pub fn is_connected(&self) -> bool {
        self.connected.load(Ordering::Relaxed)
    }
    /// Whether the last commit attempt succeeded.
    pub fn is_storing(&self) -> bool {
        self.storing.load(Ordering::Relaxed)
    }
    fn set_connected(&self, up: bool) {
        self.connected.store(up, Ordering::Relaxed);
    }
    fn set(&self, ready: bool) {
        self.storing.store(ready, Ordering::Relaxed);
    }
}

/// The device id in a readings topic, if the topic is one.
pub fn device_of(topic: &str) -> Option<Uuid> {
    let rest = topic.strip_prefix("bedside/v1/devices/")?;
    let (id, tail) = rest.split_once('/')?;
    if tail != "vitals" && tail != "vitals/cbor" {
        return None;
    }
    Uuid::parse_str(id).ok()
}

/// Runs the gateway until `shutdown` turns true, then flushes its batch.
/// Readings go to `outlets` as they arrive and once committed.
/// Connection and database failures are retried with backoff for as long
/// as it runs; it never gives up on its own.
pub async fn run(
    settings: GatewaySettings,
    db: PgPool,
    health: Health,
    mut shutdown: watch::Receiver<bool>,
    outlets: Outlets,
) {
    let Outlets { committed, arrived } = outlets;
    let filters = filters(settings.shared_group.as_deref());
    // The poll task waits when the batch task falls `queue_capacity` messages
    // behind (it then stops reading, and TCP pushes back on the broker);
    // the batch task waits only for commits, never for the poll task (its
    // acknowledgements go to the ack task), so the two cannot wait on each
    // other. A broker that keeps its in-flight window never lets either
    // channel get near full.
    let (client, mut eventloop) = session::session(session::Endpoint {
        protocol: settings.protocol,
        client_id: &settings.client_id,
        host: &settings.host,
        port: settings.port,
        username: &settings.username,
        password: &settings.password,
        tls: settings.tls.clone(),
        max_packet_bytes: settings.limits.max_payload_bytes + 1024,
        queue: settings.queue_capacity.max(1),
    });
    // Each message travels with the moment it arrived: a batch's age counts
    // from its first message's arrival, not from when the batch task got to it.
    let (tx, rx) = mpsc::channel::<(Message, Instant)>(settings.queue_capacity.max(1));

    // The early look has its own bounded queue that the poll task never
    // waits on: a message that finds it full just skips the early look.
    let early = arrived.map(|arrived| {
        let (early_tx, early_rx) = mpsc::channel::<Message>(crate::early::EARLY_QUEUE);
        tokio::spawn(crate::early::run(
            db.clone(),
            early_rx,
            arrived,
            settings.limits,
            settings.metrics.clone(),
        ));
        early_tx
    });
    let early_skipped = settings.metrics.early_skipped.clone();
    let unacknowledged = settings.metrics.unacknowledged.clone();
    // Connections to the broker so far. An acknowledgement is sent only on
    // the connection its message arrived on: after a reconnect the broker
    // redelivers what was unacknowledged (same packet ids), and the
    // redelivered copy is acknowledged once committed again. Sending the
    // old one too would acknowledge the packet id twice, and the second
    // could hit a new message the broker gave that id meanwhile, before it
    // is stored. (rumqttc likewise drops the acknowledgements still in its
    // request channel when a connection fails.)
    let connection = Arc::new(AtomicU64::new(0));
    let poll_connection = connection.clone();
    let poll_client = client.clone();
    let poll_health = health.clone();
    let mut poll_shutdown = shutdown.clone();
    let poller = tokio::spawn(async move {
        let mut backoff = Duration::from_millis(100);
        loop {
            let event = tokio::select! {
                e = eventloop.next() => e,
                _ = stopped(&mut poll_shutdown) => return,
            };
            match event {
                SessionEvent::Connected => {
                    backoff = Duration::from_millis(100);
                    poll_health.set_connected(true);
                    tracing::info!("connected to the MQTT broker");
                    // Subscribing again on every connection is harmless with a
                    // persistent session and needed when the broker lost it.
                    for filter in &filters {
                        if let Err(error) = poll_client.try_subscribe(filter) {
                            tracing::error!(%error, "cannot queue the subscription");
                        }
                    }
                }
                SessionEvent::Message(mut message) => {
                    message.connection = poll_connection.load(Ordering::Relaxed);
                    unacknowledged.inc();
                    if let Some(early) = &early
                        && early.try_send(message.clone()).is_err()
                    {
                        early_skipped.inc();
                    }
                    if tx.send((message, Instant::now())).await.is_err() {
                        return;
                    }
                }
                SessionEvent::Other => {}
                SessionEvent::Failed(error) => {
                    // Acknowledgements still queued for the failed connection
                    // are void from now on.
                    poll_connection.fetch_add(1, Ordering::Relaxed);
                    poll_health.set_connected(false);
                    tracing::warn!(%error, retry_in_ms = backoff.as_millis() as u64, "MQTT connection failed");
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(Duration::from_secs(10));
                }
            }
        }
    });

    let (acks, ack_queue) = mpsc::unbounded_channel();
    let acker = tokio::spawn(acknowledge_in_order(
        client,
        ack_queue,
        connection,
        settings.metrics.unacknowledged.clone(),
    ));
    let mut batcher = Batcher {
        settings: Arc::new(settings),
        db,
        acks,
        health,
        pending: Vec::new(),
        opened: None,
        in_flight: VecDeque::new(),
        rx,
        committed,
    };
    batcher.run(&mut shutdown).await;
    // The poll task stopped with the shutdown signal, so the acknowledgements
    // of the batches stored while draining never reach the broker: it
    // redelivers those messages to the next gateway, and the unique key
    // absorbs them. Draining still spares it the messages never stored.
    drop(batcher);
    let _ = acker.await;
    poller.abort();
}

/// Hands acknowledgements to the event loop in the order they were queued
/// (MQTT wants them in the order the messages arrived), waiting for room in
/// its request channel: this task alone ever waits there. Those of an
/// earlier connection than `connection` are dropped (see `run`).
async fn acknowledge_in_order(
    client: Client,
    mut queue: mpsc::UnboundedReceiver<Ack>,
    connection: Arc<AtomicU64>,
    unacknowledged: prometheus::IntGauge,
) {
    let mut chunk = Vec::with_capacity(1024);
    while queue.recv_many(&mut chunk, 1024).await > 0 {
        for ack in chunk.drain(..) {
            unacknowledged.dec();
            if ack.connection != connection.load(Ordering::Relaxed) {
                continue;
            }
            if let Err(error) = client.ack(&ack).await {
                // Only once the event loop is gone (shutdown): the broker
                // redelivers the rest, and the unique key absorbs it.
                tracing::debug!(%error, "acknowledgements stop");
                return;
            }
        }
    }
}

/// Resolves once shutdown is signalled (holding no lock guard across awaits).
async fn stopped(rx: &mut watch::Receiver<bool>) {
    let _ = rx.wait_for(|s| *s).await;
}

/// A batch whose transaction has committed, ready to be acknowledged.
struct Stored {
    messages: Vec<Message>,
    changes: Committed,
}

struct Batcher {
    settings: Arc<GatewaySettings>,
    db: PgPool,
    /// Acknowledgements, in order, to the ack task (never waits).
    acks: mpsc::UnboundedSender<Ack>,
    health: Health,
    pending: Vec<Message>,
    opened: Option<Instant>,
    /// Batches committing, oldest first. Up to `concurrent_batches` commit at
    /// once (their round trips and WAL flushes overlap); they are
    /// acknowledged and handed on strictly in the order they were closed,
    /// since MQTT wants acknowledgements in the order messages arrived.
    in_flight: VecDeque<JoinHandle<Stored>>,
    rx: mpsc::Receiver<(Message, Instant)>,
    committed: Option<mpsc::Sender<Committed>>,
}

/// The oldest in-flight batch once it has committed; never while there is none.
async fn oldest_committed(
    in_flight: &mut VecDeque<JoinHandle<Stored>>,
) -> Result<Stored, tokio::task::JoinError> {
    match in_flight.front_mut() {
        Some(handle) => handle.await,
        None => std::future::pending().await,
    }
}

impl Batcher {
    async fn run(&mut self, shutdown: &mut watch::Receiver<bool>) {
        loop {
            let deadline = self.opened.map(|t| t + self.settings.batch_age);
            let timer = async {
                match deadline {
                    Some(d) => tokio::time::sleep_until(d.into()).await,
                    None => std::future::pending().await,
                }
            };
            // Biased: committed batches are acknowledged first, then messages
            // already waiting are taken; a batch closes on age only when
            // nothing more is queued. Otherwise, behind a backlog every
            // message is already "old", batches would shrink to a few
            // messages each and the commit rate would fall exactly when it
            // is needed most.
            tokio::select! {
                biased;
                _ = stopped(shutdown) => break,
                done = oldest_committed(&mut self.in_flight) => {
                    self.in_flight.pop_front();
                    self.acknowledge(done).await;
                }
                message = self.rx.recv() => match message {
                    Some((message, arrived)) => {
                        self.opened.get_or_insert(arrived);
                        self.pending.push(message);
                        if self.pending.len() >= self.settings.batch_messages {
                            self.close_batch().await;
                        }
                    }
                    None => break,
                },
                _ = timer => self.close_batch().await,
            }
        }
        // Drain: store what we hold so the broker need not redeliver it.
        self.close_batch().await;
        while !self.in_flight.is_empty() {
            self.finish_oldest().await;
        }
    }

    /// Waits for the oldest in-flight batch to commit and queues its acknowledgements.
    async fn finish_oldest(&mut self) {
        if let Some(handle) = self.in_flight.pop_front() {
            let done = handle.await;
            self.acknowledge(done).await;
        }
    }

    /// Starts committing the pending batch, first waiting for room among
    /// the batches in flight.
    async fn close_batch(&mut self) {
        let opened = self.opened.take();
        if self.pending.is_empty() {
            return;
        }
        while self.in_flight.len() >= self.settings.concurrent_batches.max(1) {
            self.finish_oldest().await;
        }
        let messages = std::mem::take(&mut self.pending);
        let (db, settings, health) = (self.db.clone(), self.settings.clone(), self.health.clone());
        self.in_flight.push_back(tokio::spawn(async move {
            store_with_retry(&db, messages, &settings, &health, opened).await
        }));
    }

    /// Hands a committed batch to the alert engine and queues its acknowledgements.
    async fn acknowledge(&mut self, done: Result<Stored, tokio::task::JoinError>) {
        let Stored { messages, changes } = match done {
            Ok(stored) => stored,
            Err(error) => {
                // Only a panic in the commit task gets here. Its messages stay
                // unacknowledged: the broker redelivers them after a reconnect.
                tracing::error!(%error, "a batch's commit task failed; its messages will be redelivered");
                return;
            }
        };
        // Committed readings go on to the alert engine and the live feeds.
        // A slow consumer slows ingest rather than losing an alert; a gone
        // one (shutdown) is ignored.
        if let Some(committed) = &self.committed
            && (!changes.readings.is_empty() || !changes.liveness.is_empty())
        {
            let _ = committed.send(changes).await;
        }
        for message in messages {
            // Fails only once the ack task is gone (shutdown): the broker
            // then redelivers, and the unique key absorbs it.
            let _ = self.acks.send(message.ack());
        }
    }
}

/// Stores a batch, retrying with backoff while the database fails; it does
/// not give up (nothing is acknowledged meanwhile, so the broker holds the
/// rest).
async fn store_with_retry(
    db: &PgPool,
    messages: Vec<Message>,
    settings: &GatewaySettings,
    health: &Health,
    opened: Option<Instant>,
) -> Stored {
    let metrics = &settings.metrics;
    let mut backoff = Duration::from_millis(100);
    loop {
        let started = Instant::now();
        match commit(db, &messages, settings).await {
            Ok((stored, changes)) => {
                health.set(true);
                metrics
                    .commit_seconds
                    .observe(started.elapsed().as_secs_f64());
                if let Some(opened) = opened {
                    metrics
                        .batch_latency
                        .observe(opened.elapsed().as_secs_f64());
                }
                metrics.batch_messages.observe(messages.len() as f64);
                metrics.messages.inc_by(messages.len() as u64);
                metrics.readings_stored.inc_by(stored);
                metrics
                    .readings_duplicate
                    .inc_by((changes.readings.len() as u64).saturating_sub(stored));
                tracing::debug!(messages = messages.len(), stored, "batch committed");
                return Stored { messages, changes };
            }
            Err(error) => {
                health.set(false);
                metrics.commit_failures.inc();
                tracing::error!(%error, retry_in_ms = backoff.as_millis() as u64, "cannot store a batch; holding it");
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(Duration::from_secs(5));
            }
        }
    }
}

/// Decodes, resolves and stores one batch in one transaction. Returns the
/// number of new rows and the batch's readings.
async fn commit(
    db: &PgPool,
    batch: &[Message],
    settings: &GatewaySettings,
) -> Result<(u64, Committed), sqlx::Error> {
    let received_at = Utc::now();
    let device_ids: Vec<Uuid> = {
        let mut ids: Vec<Uuid> = batch
            .iter()
            .filter_map(|p| device_of(&p.topic).or_else(|| status_device_of(&p.topic)))
            .collect();
        ids.sort_unstable();
        ids.dedup();
        ids
    };
    let periods = assignment_periods(db, &device_ids).await?;
    let mut readings = Vec::new();
    let mut refusals: Vec<Rejected<'_>> = Vec::new();
    let mut announced: Vec<(Uuid, bool)> = Vec::new();
    let mut batteries: Vec<(Uuid, f64, DateTime<Utc>)> = Vec::new();
    for message in batch {
        let payload = &message.payload[..];
        let kept = &payload[..payload.len().min(settings.rejected_payload_bytes)];
        let said = interpret(
            &message.topic,
            payload,
            &periods,
            message.received_at,
            &settings.limits,
        );
        readings.extend(said.readings);
        announced.extend(said.announced);
        batteries.extend(said.battery.map(|(d, b)| (d, b.percent, b.time)));
        refusals.extend(said.refusals.into_iter().map(|r| Rejected {
            device_id: r.device_id,
            topic: &message.topic,
            reason: r.reason,
            detail: r.detail,
            record_index: r.record_index,
            payload: kept,
        }));
    }
    // Every device that sent anything is alive; announcements set the status.
    let heard: Vec<Uuid> = {
        let mut heard: Vec<Uuid> = batch
            .iter()
            .filter_map(|p| device_of(&p.topic))
            .filter(|d| periods.contains_key(d))
            .collect();
        heard.sort_unstable();
        heard.dedup();
        heard
    };
    let mut tx = db.begin().await?;
    let stored = store::insert_batch(&mut *tx, &readings)
        .await
        .map_err(into_sqlx)?;
    store::insert_rejected(&mut *tx, &refusals)
        .await
        .map_err(into_sqlx)?;
    let mut liveness_changes: Vec<(Uuid, bool)> = liveness::seen(&mut *tx, &heard, received_at)
        .await
        .map_err(into_sqlx)?
        .into_iter()
        .map(|d| (d, true))
        .collect();
    liveness::battery(&mut *tx, &batteries)
        .await
        .map_err(into_sqlx)?;
    for (device, online) in announced {
        if !periods.contains_key(&device) {
            continue; // not a registered device
        }
        if liveness::announce(&mut *tx, device, online, received_at)
            .await
            .map_err(into_sqlx)?
        {
            liveness_changes.push((device, online));
        }
    }
    tx.commit().await?;
    let current_patient = |device: &Uuid| {
        periods
            .get(device)
            .and_then(|ps| ps.iter().find(|p| p.contains(received_at)))
            .map(|p| p.patient.0)
    };
    let liveness = liveness_changes
        .into_iter()
        .map(|(d, online)| (d, current_patient(&d), online))
        .collect();
    for refused in &refusals {
        settings
            .metrics
            .rejected
            .with_label_values(&[refused.reason])
            .inc();
        tracing::debug!(reason = refused.reason, "reading refused");
    }
    Ok((stored, Committed { readings, liveness }))
}

/// The assignment periods of `devices` by device: registered devices only,
/// an unassigned one with an empty list.
pub(crate) async fn assignment_periods(
    db: &PgPool,
    devices: &[Uuid],
) -> Result<HashMap<Uuid, Vec<AssignmentPeriod>>, sqlx::Error> {
    let history = devices::assignment_history(db, devices)
        .await
        .map_err(|e| match e {
            bedside_records::RecordsError::Database(e) => e,
            other => sqlx::Error::Protocol(other.to_string()),
        })?;
    let mut periods: HashMap<Uuid, Vec<AssignmentPeriod>> = HashMap::new();
    for (device, period) in history {
        periods.entry(device).or_default().extend(period);
    }
    Ok(periods)
}

/// One refused message or record, before it is stored with its topic and payload.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Refusal {
    device_id: Option<Uuid>,
    reason: &'static str,
    detail: String,
    record_index: Option<i32>,
}

/// What one message says once decoded and resolved.
#[derive(Debug, Default, PartialEq)]
pub(crate) struct Interpreted {
    /// Readings with the patient each belongs to.
    pub(crate) readings: Vec<NewReading>,
    /// What was refused, and why.
    pub(crate) refusals: Vec<Refusal>,
    /// A status message: the device and whether it says it is online.
    pub(crate) announced: Option<(Uuid, bool)>,
    /// The device's battery level, when the pack reported one.
    pub(crate) battery: Option<(Uuid, senml::Battery)>,
}

/// Decodes one message and resolves each reading's patient from the
/// devices' assignment `periods` (registered devices only; an unassigned
/// one has an empty list). Pure: the batch's commit and the early look
/// for the alert engine ([`crate::early`]) read messages the same way.
pub(crate) fn interpret(
    topic: &str,
    payload: &[u8],
    periods: &HashMap<Uuid, Vec<AssignmentPeriod>>,
    received_at: DateTime<Utc>,
    limits: &Limits,
) -> Interpreted {
    let mut out = Interpreted::default();
    let mut refuse = |device_id, reason, detail: String, record_index| {
        out.refusals.push(Refusal {
            device_id,
            reason,
            detail,
            record_index,
        });
    };
    if let Some(device) = status_device_of(topic) {
        match std::str::from_utf8(payload).map(|s| s.trim().to_ascii_lowercase()) {
            Ok(s) if s == "online" => out.announced = Some((device, true)),
            Ok(s) if s == "offline" => out.announced = Some((device, false)),
            // An empty retained message clears the status: nothing to record.
            Ok(s) if s.is_empty() => {}
            _ => refuse(
                Some(device),
                "malformed_status",
                "status is online or offline".into(),
                None,
            ),
        }
        return out;
    }
    let Some(device) = device_of(topic) else {
        refuse(None, "unknown_topic", String::new(), None);
        return out;
    };
    let Some(device_periods) = periods.get(&device) else {
        refuse(Some(device), "unknown_device", String::new(), None);
        return out;
    };
    let Some(format) = Format::detect(topic, payload) else {
        refuse(
            Some(device),
            "malformed_payload",
            "neither a JSON nor a CBOR array".into(),
            None,
        );
        return out;
    };
    let decoded = match senml::decode(payload, format, received_at, limits) {
        Ok(decoded) => decoded,
        Err(error) => {
            refuse(Some(device), error.reason.as_str(), error.detail, None);
            return out;
        }
    };
    out.battery = decoded.battery.map(|b| (device, b));
    for rejection in decoded.rejections {
        refuse(
            Some(device),
            rejection.reason.as_str(),
            rejection.detail,
            i32::try_from(rejection.index).ok(),
        );
    }
    for reading in decoded.readings {
        match device_periods.iter().find(|p| p.contains(reading.time)) {
            Some(period) => out.readings.push(NewReading {
                time: reading.time,
                device_id: device,
                metric: reading.metric,
                patient_id: period.patient.0,
                value: reading.value,
            }),
            None => refuse(
                Some(device),
                "unassigned_device",
                "no patient had the device at that time".into(),
                None,
            ),
        }
    }
    out
}

/// The device id in a status topic.
pub fn status_device_of(topic: &str) -> Option<Uuid> {
    let id = topic
        .strip_prefix("bedside/v1/devices/")?
        .strip_suffix("/status")?;
    Uuid::parse_str(id).ok()
}

fn into_sqlx(error: bedside_vitals_store::StoreError) -> sqlx::Error {
    match error {
        bedside_vitals_store::StoreError::Database(e) => e,
        other => sqlx::Error::Protocol(other.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_shared_group_prefixes_every_filter() {
        assert_eq!(filters(None)[0], VITALS_FILTER);
        assert_eq!(
            filters(Some("bedside")),
            vec![
                format!("$share/bedside/{VITALS_FILTER}"),
                format!("$share/bedside/{VITALS_CBOR_FILTER}"),
                format!("$share/bedside/{STATUS_FILTER}"),
            ]
        );
    }

    #[test]
    fn device_ids_come_only_from_readings_topics() {
        let id = Uuid::new_v4();
        assert_eq!(
            device_of(&format!("bedside/v1/devices/{id}/vitals")),
            Some(id)
        );
        assert_eq!(
            device_of(&format!("bedside/v1/devices/{id}/vitals/cbor")),
            Some(id)
        );
        assert_eq!(device_of(&format!("bedside/v1/devices/{id}/status")), None);
        assert_eq!(device_of("bedside/v1/devices/not-a-uuid/vitals"), None);
        assert_eq!(device_of(&format!("other/{id}/vitals")), None);
    }
}
