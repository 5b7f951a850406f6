//! What a run observes besides its own counters: publish→commit from
//! PostgreSQL's commit timestamps, and a real clinician feed client on
//! `/ws` that receives the probes' alerts (publish→alert).

use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context as _, bail};
use chrono::{DateTime, Utc};
use futures::{SinkExt as _, StreamExt as _};
use serde_json::{Value, json};
use sqlx::PgPool;
use tokio::sync::watch;
use tokio::time::Instant;
use tokio_tungstenite::tungstenite::Message;
use uuid::Uuid;

use super::swarm::Observations;

/// Publish→commit of every heart-rate reading stored in `window`: each
/// reading's time is the moment its device published it (ms, set just
/// before the publish), and `pg_xact_commit_timestamp(xmin)` is when the
/// gateway's transaction holding it committed. Needs
/// `track_commit_timestamp = on` (the load-test script sets it); `None`
/// when it is off. Nothing polls the database during the run.
pub(crate) async fn commit_latencies(
    db: &PgPool,
    window: (DateTime<Utc>, DateTime<Utc>),
) -> anyhow::Result<Option<Vec<Duration>>> {
    let tracking: String = sqlx::query_scalar("SHOW track_commit_timestamp")
        .fetch_one(db)
        .await?;
    if tracking != "on" {
        return Ok(None);
    }
    let millis: Vec<f64> = sqlx::query_scalar(
        "SELECT extract(epoch FROM pg_xact_commit_timestamp(xmin) - time)::float8 * 1000
         FROM vitals WHERE metric = 'heart_rate' AND time BETWEEN $1 AND $2",
    )
    .bind(window.0)
    .bind(window.1)
    .fetch_all(db)
    .await
    .context("reading commit timestamps")?;
    Ok(Some(
        millis
            .into_iter()
            .map(|ms| Duration::from_secs_f64(ms.max(0.0) / 1000.0))
            .collect(),
    ))
}

/// Seconds from the first reading's publish to the last commit in
/// `window` (from commit timestamps), when they are tracked.
pub(crate) async fn ingest_span(
    db: &PgPool,
    window: (DateTime<Utc>, DateTime<Utc>),
) -> anyhow::Result<Option<f64>> {
    let span: Option<f64> = sqlx::query_scalar(
        "SELECT extract(epoch FROM max(pg_xact_commit_timestamp(xmin)) - min(time))::float8
         FROM vitals WHERE time BETWEEN $1 AND $2 AND current_setting('track_commit_timestamp') = 'on'",
    )
    .bind(window.0)
    .bind(window.1)
    .fetch_one(db)
    .await?;
    Ok(span)
}

/// Alert latencies seen by the feed client.
#[derive(Debug, Default)]
pub(crate) struct AlertLatencies {
    pub(crate) seen: Vec<Duration>,
}

/// A signed-in clinician's live feed, subscribed to the probe patients.
pub(crate) struct Feed {
    socket: tokio_tungstenite::WebSocketStream<
        tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>,
    >,
}

impl Feed {
    /// Signs in over HTTP, opens `/ws`, says hello and subscribes.
    pub(crate) async fn open(
        base: &str,
        email: &str,
        password: &str,
        patients: &[Uuid],
    ) -> anyhow::Result<Self> {
        let token = crate::http::login(&reqwest::Client::new(), base, email, password).await?;
        let ws_url = match base.strip_prefix("http://") {
            Some(rest) => format!("ws://{rest}/ws"),
            None => bail!("the feed client speaks plain ws://: give an http:// base URL"),
        };
        let (mut socket, _) = tokio_tungstenite::connect_async(ws_url.as_str())
            .await
            .with_context(|| format!("cannot open {ws_url}"))?;
        socket
            .send(Message::text(
                json!({"type": "hello", "v": 1, "token": token}).to_string(),
            ))
            .await?;
        let mut feed = Self { socket };
        feed.expect("welcome").await?;
        feed.socket
            .send(Message::text(
                json!({"type": "subscribe", "patients": patients}).to_string(),
            ))
            .await?;
        feed.expect("snapshot").await?;
        Ok(feed)
    }

    async fn expect(&mut self, kind: &str) -> anyhow::Result<Value> {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let message = tokio::time::timeout_at(deadline, self.socket.next())
                .await
                .with_context(|| format!("no {kind} within 10 s"))?
                .with_context(|| format!("the feed closed before {kind}"))??;
            if let Message::Text(text) = message {
                let value: Value = serde_json::from_str(&text)?;
                match value["type"].as_str() {
                    Some(t) if t == kind => return Ok(value),
                    Some("error") => bail!("the feed refused: {value}"),
                    _ => {}
                }
            }
        }
    }

    /// Receives until `stop`, matching each newly opened SpO2 alert to the
    /// probe that caused it.
    pub(crate) async fn watch_alerts(
        mut self,
        observations: Arc<Observations>,
        mut stop: watch::Receiver<bool>,
    ) -> anyhow::Result<AlertLatencies> {
        let mut result = AlertLatencies::default();
        loop {
            let message = tokio::select! {
                m = self.socket.next() => m,
                _ = stop.wait_for(|s| *s) => break,
            };
            let Some(message) = message else {
                bail!("the feed closed during the run")
            };
            let Message::Text(text) = message? else {
                continue;
            };
            let arrived = Instant::now();
            let value: Value = serde_json::from_str(&text)?;
            if value["type"] == "error" {
                bail!("the feed sent an error: {value}");
            }
            if value["type"] != "alert"
                || value["event"] != "opened"
                || value["alert"]["rule"] != "threshold:spo2"
            {
                continue;
            }
            let Some(patient) = value["alert"]["patient_id"]
                .as_str()
                .and_then(|s| s.parse::<Uuid>().ok())
            else {
                continue;
            };
            if let Some(published) = observations
                .alert_probes
                .lock()
                .expect("probes")
                .remove(&patient)
            {
                result
                    .seen
                    .push(arrived.saturating_duration_since(published));
            }
        }
        let _ = self.socket.close(None).await;
        Ok(result)
    }
}
