//! Building and running the application: bind, serve, drain, close.
//!
//! [`Application::build`] connects the database, applies migrations when
//! configured, and binds the HTTP and metrics listeners (port 0 works and
//! the bound addresses are reported), so tests run exactly what `bedside
//! serve` runs. [`Application::run`] serves until the shutdown future
//! resolves, then stops accepting, lets in-flight requests finish within
//! the configured grace, stops background tasks and closes the pool.

use std::future::Future;
use std::net::SocketAddr;
use std::time::Duration;

use anyhow::Context as _;
use axum::Router;
use axum::routing::get;
use bedside_signaling::{AppState, router};
use sqlx::PgPool;
use sqlx::postgres::PgPoolOptions;
use tokio::net::TcpListener;
use tokio::sync::watch;

use crate::config::Config;
use crate::secrets;

/// A built, bound, not yet running application.
pub struct Application {
    config: Config,
    state: AppState,
    registry: prometheus::Registry,
    http: TcpListener,
    metrics: TcpListener,
}

/// Opens the connection pool.
///
/// # Errors
/// When the database cannot be reached.
pub async fn connect(config: &Config) -> anyhow::Result<PgPool> {
    use std::str::FromStr as _;
    let options = sqlx::postgres::PgConnectOptions::from_str(&config.database.url)
        .with_context(|| {
            format!(
                "bad database URL {}",
                crate::config::redacted_url(&config.database.url)
            )
        })?
        // No statement of Bedside's waits for a lock for long; one that
        // waits 10 s fails (and is retried) instead of holding the ingest
        // path, the alert engine and the pool behind it indefinitely.
        .options([("lock_timeout", "10s")]);
    PgPoolOptions::new()
        .max_connections(config.database.max_connections)
        .acquire_timeout(Duration::from_secs(config.database.acquire_timeout_secs))
        .connect_with(options)
        .await
        .with_context(|| {
            format!(
                "cannot connect to the database at {}",
                crate::config::redacted_url(&config.database.url)
            )
        })
}

/// The whole schema: the records' migrations and the vitals store's, each
/// crate owning its own (records from version 1, vitals from 1001).
pub fn migrator() -> sqlx::migrate::Migrator {
    let mut all: Vec<sqlx::migrate::Migration> =
        bedside_records::MIGRATOR.iter().cloned().collect();
    all.extend(bedside_vitals_store::MIGRATOR.iter().cloned());
    all.sort_by_key(|m| m.version);
    sqlx::migrate::Migrator::with_migrations(all)
}

/// Applies pending migrations.
///
/// # Errors
/// When a migration fails or the applied history differs from the embedded one.
pub async fn migrate(db: &PgPool) -> anyhow::Result<()> {
    migrator()
        .run(db)
        .await
        .context("database migration failed")?;
    Ok(())
}

impl Application {
    /// Connects, migrates (when configured) and binds.
    ///
    /// # Errors
    /// Database, migration, secret-file or bind failures, each with context.
    pub async fn build(config: Config) -> anyhow::Result<Self> {
        let db = connect(&config).await?;
        if config.database.migrate_on_start {
            migrate(&db).await?;
        }
        Self::build_with_pool(config, db).await
    }

    /// Binds with an existing pool (tests hand in their fresh database).
    ///
    /// # Errors
    /// Secret-file or bind failures.
    pub async fn build_with_pool(config: Config, db: PgPool) -> anyhow::Result<Self> {
        let key = secrets::signing_key(&config)?;
        let registry = prometheus::Registry::new();
        let state = AppState::new(db.clone(), config.api_settings()?, &key, &registry);
        let hook_config = config.clone();
        state.set_devices_changed(std::sync::Arc::new(move || {
            let (db, config) = (db.clone(), hook_config.clone());
            Box::pin(async move {
                crate::broker::sync(&db, &config)
                    .await
                    .map(|(_, reloaded)| reloaded)
                    .map_err(|e| format!("{e:#}"))
            })
        }));
        let feedback = if config.visits.rtcp_feedback {
            bedside_sfu::endpoint::RtcpFeedback::On
        } else {
            tracing::warn!(
                "visits.rtcp_feedback is off: lost video packets are not recovered and \
                 browsers' bandwidth estimates stall (for measuring the SFU engine only)"
            );
            bedside_sfu::endpoint::RtcpFeedback::OffForMeasurement
        };
        let sfu = bedside_sfu::rooms::Sfu::spawn(
            config.visits.media_udp,
            config.visits.media_announce_ip,
            feedback,
            bedside_sfu::metrics::SfuMetrics::register(&registry),
        )
        .await
        .with_context(|| {
            format!(
                "cannot open the video socket on {}",
                config.visits.media_udp
            )
        })?;
        tracing::info!(media = %sfu.advertised(), "video visits use this UDP address");
        state.set_sfu(sfu);
        let http = TcpListener::bind(config.http.addr)
            .await
            .with_context(|| format!("cannot listen on {}", config.http.addr))?;
        let metrics = TcpListener::bind(config.metrics.addr)
            .await
            .with_context(|| format!("cannot listen on {}", config.metrics.addr))?;
        Ok(Self {
            config,
            state,
            registry,
            http,
            metrics,
        })
    }

    /// The bound HTTP address.
    pub fn http_addr(&self) -> SocketAddr {
        self.http
            .local_addr()
            .expect("a bound listener has an address")
    }

    /// The bound metrics address.
    pub fn metrics_addr(&self) -> SocketAddr {
        self.metrics
            .local_addr()
            .expect("a bound listener has an address")
    }

    /// The shared state (tests use its keys and pool).
    pub fn state(&self) -> &AppState {
        &self.state
    }

    /// Serves until `shutdown` resolves, then drains and closes.
    ///
    /// # Errors
    /// When a listener fails or TLS material cannot be loaded.
    pub async fn run(
        self,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> anyhow::Result<()> {
        let Application {
            config,
            state,
            registry,
            http,
            metrics,
        } = self;
        let (stop_tx, stop_rx) = watch::channel(false);
        let grace = Duration::from_secs(config.http.shutdown_grace_secs);

        let ingest = if config.ingest.enabled {
            Some(start_ingest(&config, &state, &registry, stop_rx.clone()).await?)
        } else {
            None
        };

        let sweeper = tokio::spawn(crate::app::no_show_sweeper(
            state.clone(),
            Duration::from_secs(config.visits.no_show_sweep_secs.max(1)),
            stop_rx.clone(),
        ));
        let retention = tokio::spawn(crate::app::retention_pass(
            state.clone(),
            config.retention.clone(),
            stop_rx.clone(),
        ));
        let reminders = tokio::spawn(crate::reminders::run(
            crate::reminders::Sender::new(state.clone(), config.reminders.clone())?,
            stop_rx.clone(),
        ));

        let metrics_app = Router::new().route(
            "/metrics",
            get(move || {
                let registry = registry.clone();
                async move { bedside_signaling::metrics::render(&registry) }
            }),
        );
        let metrics_server =
            tokio::spawn(serve_plain(metrics, metrics_app, stopped(stop_rx.clone())));

        let app = router(state.clone());
        let http_server = match (&config.http.tls_cert, &config.http.tls_key) {
            (Some(cert), Some(key)) => {
                let tls = axum_server::tls_rustls::RustlsConfig::from_pem_file(cert, key)
                    .await
                    .with_context(|| {
                        format!(
                            "cannot load TLS certificate {} and key {}",
                            cert.display(),
                            key.display()
                        )
                    })?;
                let handle = axum_server::Handle::new();
                let on_stop = handle.clone();
                let mut rx = stop_rx.clone();
                tokio::spawn(async move {
                    let _ = rx.wait_for(|stop| *stop).await;
                    on_stop.graceful_shutdown(Some(grace));
                });
                let listener = http.into_std()?;
                tokio::spawn(async move {
                    axum_server::from_tcp_rustls(listener, tls)
                        .handle(handle)
                        .serve(app.into_make_service_with_connect_info::<SocketAddr>())
                        .await
                        .map_err(anyhow::Error::from)
                })
            }
            _ => tokio::spawn(serve_plain(http, app, stopped(stop_rx.clone()))),
        };

        shutdown.await;
        tracing::info!(
            grace_secs = grace.as_secs(),
            "shutting down: no new connections, draining requests"
        );
        let _ = stop_tx.send(true);
        let drained = tokio::time::timeout(grace + Duration::from_secs(1), async {
            let _ = http_server.await;
            let _ = metrics_server.await;
            let _ = sweeper.await;
            let _ = retention.await;
            let _ = reminders.await;
            if let Some(tasks) = ingest {
                for task in tasks {
                    let _ = task.await;
                }
            }
        })
        .await;
        if drained.is_err() {
            tracing::warn!("requests still running after the grace period were cut off");
        }
        state.db().close().await;
        tracing::info!("stopped");
        Ok(())
    }
}

/// Prepares the vitals store (partitions for the retention window) and
/// starts the device gateway and the hourly partition maintenance. The
/// gateway reports into `/readyz` as `ingest`.
async fn start_ingest(
    config: &Config,
    state: &AppState,
    registry: &prometheus::Registry,
    stop: watch::Receiver<bool>,
) -> anyhow::Result<Vec<tokio::task::JoinHandle<()>>> {
    use bedside_device_gateway::gateway::{self, GatewaySettings, Health};
    let ingest = &config.ingest;
    let retention = chrono::Duration::days(ingest.retention_days);
    let ahead = chrono::Duration::days(ingest.partitions_ahead_days);
    bedside_vitals_store::partitions::maintain(state.db(), chrono::Utc::now(), retention, ahead)
        .await
        .context("cannot prepare the vitals partitions")?;
    let endpoint = crate::config::mqtt_endpoint(&config.mqtt.url)?;
    let settings = GatewaySettings {
        host: endpoint.host,
        port: endpoint.port,
        tls: config.mqtt_tls()?,
        shared_group: ingest.shared_group.clone(),
        protocol: match config.mqtt.protocol {
            crate::config::MqttProtocol::V311 => bedside_device_gateway::session::Protocol::V311,
            crate::config::MqttProtocol::V5 => bedside_device_gateway::session::Protocol::V5,
        },
        client_id: ingest.client_id.clone(),
        username: config.mqtt.username.clone(),
        password: secrets::gateway_password(config)?,
        batch_messages: ingest.batch_messages,
        batch_age: Duration::from_millis(ingest.batch_age_ms),
        concurrent_batches: ingest.concurrent_batches,
        queue_capacity: gateway::QUEUE_CAPACITY,
        limits: bedside_device_gateway::senml::Limits {
            max_payload_bytes: ingest.max_payload_bytes,
            max_records: ingest.max_records,
            max_future: chrono::Duration::seconds(ingest.max_future_secs),
            max_age: retention,
        },
        rejected_payload_bytes: ingest.rejected_payload_bytes,
        metrics: bedside_device_gateway::metrics::IngestMetrics::register(registry),
    };
    let health = Health::default();
    let check = health.clone();
    state.add_readiness_check("ingest", std::sync::Arc::new(move || check.is_ready()));
    let (committed_tx, committed_rx) = tokio::sync::mpsc::channel(64);
    let (arrived_tx, arrived_rx) = tokio::sync::mpsc::channel(256);
    let gateway = tokio::spawn(gateway::run(
        settings,
        state.db().clone(),
        health,
        stop.clone(),
        gateway::Outlets {
            committed: Some(committed_tx),
            arrived: Some(arrived_tx),
        },
    ));
    let engine_settings = bedside_alerts::engine::EngineSettings {
        shared_stream: ingest.shared_group.is_some(),
        ..Default::default()
    };
    let engine = tokio::spawn(alert_engine(
        state.clone(),
        engine_settings,
        committed_rx,
        arrived_rx,
        EngineMetrics::register(registry),
    ));
    let silence = tokio::spawn(silence_watch(
        state.clone(),
        chrono::Duration::minutes(ingest.device_silence_minutes.max(1)),
        chrono::Duration::minutes(ingest.escalate_unacknowledged_minutes.max(1)),
        stop.clone(),
    ));
    let db = state.db().clone();
    let maintenance_stop = stop;
    let maintenance = tokio::spawn(async move {
        let mut tick = tokio::time::interval(Duration::from_secs(3600));
        tick.tick().await; // the first run happened above
        loop {
            tokio::select! {
                _ = tick.tick() => {}
                _ = stopped(maintenance_stop.clone()) => return,
            }
            if let Err(error) = bedside_vitals_store::partitions::maintain(
                &db,
                chrono::Utc::now(),
                retention,
                ahead,
            )
            .await
            {
                tracing::error!(%error, "vitals partition maintenance failed; retrying in an hour");
            }
        }
    });
    Ok(vec![gateway, engine, silence, maintenance])
}

/// Runs the alert engine: readings are judged as they arrive (the
/// gateway's early look) and again once committed, when they also go to
/// the live hub as samples; committed transitions go to the live hub.
/// Ends when the gateway does (its senders are dropped).
async fn alert_engine(
    state: AppState,
    settings: bedside_alerts::engine::EngineSettings,
    mut committed: tokio::sync::mpsc::Receiver<bedside_device_gateway::gateway::Committed>,
    mut arrived: tokio::sync::mpsc::Receiver<Vec<bedside_vitals_store::store::NewReading>>,
    metrics: EngineMetrics,
) {
    use bedside_alerts::engine::{Evaluator, Source};
    use bedside_signaling::live::LiveEvent;
    use bedside_vitals_store::changes;
    let mut evaluator = Evaluator::new(settings);
    let mut forget = changes::listen(state.db().clone(), changes::ALERT_INPUTS);
    let mut reassigned = changes::listen(state.db().clone(), changes::DEVICE_ASSIGNMENTS);
    let mut arriving = true;
    loop {
        // Biased: what to forget applies before the next evaluation, and
        // committed batches (which the gateway waits on) before early looks.
        let (readings, liveness, source) = tokio::select! {
            biased;
            Some(order) = forget.recv() => {
                evaluator.forget(order);
                continue;
            }
            Some(order) = reassigned.recv() => {
                evaluator.forget_device(order);
                continue;
            }
            batch = committed.recv() => {
                let Some(batch) = batch else { return };
                state
                    .live()
                    .publish_all(batch.readings.iter().map(|r| LiveEvent::Sample {
                        patient: r.patient_id,
                        metric: r.metric,
                        value: r.value,
                        time: r.time,
                    }));
                (batch.readings, batch.liveness, Source::Stored)
            }
            readings = arrived.recv(), if arriving => {
                let Some(mut readings) = readings else {
                    arriving = false;
                    continue;
                };
                // Whatever else has arrived is judged in the same pass.
                while readings.len() < 4096 {
                    match arrived.try_recv() {
                        Ok(more) => readings.extend(more),
                        Err(_) => break,
                    }
                }
                (readings, Vec::new(), Source::Arrived)
            }
        };
        let started = std::time::Instant::now();
        let path = match source {
            Source::Arrived => "arrived",
            Source::Stored => "committed",
        };
        let evaluated = async {
            let mut evaluation = evaluator.evaluate(state.db(), &readings, source).await?;
            evaluation
                .transitions
                .extend(bedside_alerts::engine::on_liveness(state.db(), &liveness).await?);
            Ok::<_, bedside_vitals_store::StoreError>(evaluation)
        };
        match evaluated.await {
            Ok(evaluation) => {
                let transitions = evaluation.transitions;
                state
                    .live()
                    .publish_all(evaluation.news2.into_iter().map(|n| LiveEvent::News2 {
                        patient: n.patient,
                        score: std::sync::Arc::new(n.score),
                        spo2_scale: n.spo2_scale.number(),
                    }));
                let outcome = if transitions.is_empty() {
                    "unchanged"
                } else {
                    "changed"
                };
                metrics
                    .evaluation_seconds
                    .with_label_values(&[path, outcome])
                    .observe(started.elapsed().as_secs_f64());
                metrics.patients_held.set(evaluator.patients_held() as i64);
                for transition in transitions {
                    metrics
                        .transitions
                        .with_label_values(&[transition.event.kind.as_str()])
                        .inc();
                    publish_alert(&state, transition);
                }
            }
            Err(error) => {
                tracing::error!(%error, path, "alert evaluation failed; the next readings evaluate again")
            }
        }
    }
}

/// The alert engine's timings and transitions (labels: transition kinds only).
#[derive(Clone)]
struct EngineMetrics {
    evaluation_seconds: prometheus::HistogramVec,
    transitions: prometheus::IntCounterVec,
    patients_held: prometheus::IntGauge,
}

impl EngineMetrics {
    fn register(registry: &prometheus::Registry) -> Self {
        let metrics = Self {
            evaluation_seconds: prometheus::HistogramVec::new(
                prometheus::HistogramOpts::new(
                    "bedside_alert_evaluation_seconds",
                    "One evaluation pass: thresholds, NEWS2, liveness, committed transitions (path: arrived or committed readings; outcome: whether any alert changed)",
                )
                .buckets(vec![0.0005, 0.001, 0.0025, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25, 0.5, 1.0]),
                &["path", "outcome"],
            )
            .expect("valid metric"),
            patients_held: prometheus::IntGauge::new(
                "bedside_alert_patients_held",
                "Patients whose alert inputs the engine holds in memory",
            )
            .expect("valid metric"),
            transitions: prometheus::IntCounterVec::new(
                prometheus::Opts::new("bedside_alert_transitions_total", "Committed alert transitions"),
                &["transition"],
            )
            .expect("valid metric"),
        };
        let _ = registry.register(Box::new(metrics.evaluation_seconds.clone()));
        let _ = registry.register(Box::new(metrics.transitions.clone()));
        let _ = registry.register(Box::new(metrics.patients_held.clone()));
        metrics
    }
}

/// Every minute: alerts nobody acknowledged in time escalate, and devices
/// silent for longer than the configured time are marked offline and raise
/// their `offline:<device>` alert.
async fn silence_watch(
    state: AppState,
    silence: chrono::Duration,
    escalate_after: chrono::Duration,
    stop: watch::Receiver<bool>,
) {
    let mut tick = tokio::time::interval(Duration::from_secs(60));
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = stopped(stop.clone()) => return,
        }
        match bedside_alerts::engine::escalate_unacknowledged(state.db(), escalate_after).await {
            Ok(events) => {
                for event in events {
                    publish_alert(&state, event);
                }
            }
            Err(error) => tracing::warn!(%error, "escalation check failed"),
        }
        let now = chrono::Utc::now();
        let silent =
            match bedside_vitals_store::liveness::expire_silent(state.db(), now - silence).await {
                Ok(devices) => devices,
                Err(error) => {
                    tracing::warn!(%error, "device silence check failed");
                    continue;
                }
            };
        let mut changes = Vec::new();
        for device in silent {
            let patient = bedside_records::devices::patient_at(
                state.db(),
                bedside_records::ids::DeviceId(device),
                now,
            )
            .await
            .ok()
            .flatten();
            changes.push((device, patient.map(|p| p.0), false));
        }
        match bedside_alerts::engine::on_liveness(state.db(), &changes).await {
            Ok(events) => {
                for event in events {
                    publish_alert(&state, event);
                }
            }
            Err(error) => tracing::error!(%error, "cannot raise offline alerts"),
        }
    }
}

/// Publishes a committed alert transition to the live hub.
fn publish_alert(state: &AppState, transition: bedside_alerts::engine::Transition) {
    state
        .live()
        .publish(bedside_signaling::live::LiveEvent::alert(transition));
}

async fn stopped(mut rx: watch::Receiver<bool>) {
    let _ = rx.wait_for(|stop| *stop).await;
}

async fn serve_plain(
    listener: TcpListener,
    app: Router,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    axum::serve(
        listener,
        app.into_make_service_with_connect_info::<SocketAddr>(),
    )
    .with_graceful_shutdown(shutdown)
    .await
    .context("HTTP server failed")
}

/// Marks booked appointments whose grace period passed as no-shows, every
/// `every` (the records layer audits each change as the system, in the
/// same statement).
pub(crate) async fn no_show_sweeper(
    state: AppState,
    every: Duration,
    mut stop: watch::Receiver<bool>,
) {
    let grace = chrono::Duration::from_std(state.settings().no_show_grace)
        .unwrap_or(chrono::Duration::minutes(15));
    let mut tick = tokio::time::interval(every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = stop.wait_for(|s| *s) => return,
        }
        match bedside_records::appointments::sweep_no_shows(state.db(), chrono::Utc::now(), grace)
            .await
        {
            Ok(changed) => {
                for (appointment, _) in changed {
                    tracing::info!(appointment = %appointment, "marked as no-show");
                }
            }
            Err(error) => tracing::warn!(%error, "no-show sweep failed; retrying next tick"),
        }
    }
}

/// Enforces the retention periods of the audit log and of refused device
/// messages, at start and then hourly. (The vitals' retention is the
/// partition maintenance of the ingest, `ingest.retention_days`.)
pub(crate) async fn retention_pass(
    state: AppState,
    retention: crate::config::RetentionConfig,
    mut stop: watch::Receiver<bool>,
) {
    let mut tick = tokio::time::interval(Duration::from_secs(3600));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = stop.wait_for(|s| *s) => return,
        }
        enforce_retention(&state, &retention).await;
    }
}

/// One retention pass: deletes audit rows and refused device messages
/// older than their configured periods. Failures are logged and retried
/// by the next pass.
pub async fn enforce_retention(state: &AppState, retention: &crate::config::RetentionConfig) {
    let now = chrono::Utc::now();
    let audit_before = now - chrono::Duration::days(retention.audit_days);
    match bedside_records::retention::purge_audit_before(state.db(), audit_before).await {
        Ok(0) => {}
        Ok(n) => tracing::info!(rows = n, "audit rows past their retention deleted"),
        Err(error) => tracing::warn!(%error, "audit retention failed; retrying next hour"),
    }
    let rejected_before = now - chrono::Duration::days(retention.rejected_messages_days);
    match bedside_vitals_store::store::purge_rejected_before(state.db(), rejected_before).await {
        Ok(0) => {}
        Ok(n) => tracing::info!(
            rows = n,
            "refused device messages past their retention deleted"
        ),
        Err(error) => {
            tracing::warn!(%error, "rejected-message retention failed; retrying next hour")
        }
    }
}

/// Resolves on SIGTERM or Ctrl-C.
pub async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    tokio::select! {
        _ = ctrl_c => {}
        _ = terminate => {}
    }
}
