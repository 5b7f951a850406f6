//! The visits through Bedside: booked through the API as a clinic would
//! book them, then each participant signs in, joins on `/ws` (the patient
//! through the join link, after consent), the clinician admits the patient,
//! and both publish on one connection and receive the other on it.

use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context as _, bail};
use chrono::Utc;
use futures::{SinkExt as _, StreamExt as _};
use serde_json::{Value, json};
use tokio::sync::watch;
use tokio_tungstenite::tungstenite::Message;

use super::peer::{Connection, Participant, start_sending, stopped};
use crate::http::{login, post};

/// A booked visit: who signs in and where.
#[derive(Debug, Clone)]
pub(crate) struct Booking {
    pub(crate) appointment_id: String,
    pub(crate) clinician_email: String,
    pub(crate) join_token: String,
}

/// Books `visits` video appointments starting now, each with its own
/// clinician (a clinician cannot be in two appointments at once) and
/// patient, through the admin API.
pub(crate) async fn book(
    client: &reqwest::Client,
    base: &str,
    admin_email: &str,
    admin_password: &str,
    clinician_password: &str,
    visits: usize,
) -> anyhow::Result<Vec<Booking>> {
    let admin = login(client, base, admin_email, admin_password).await?;
    let tag = Utc::now().timestamp_millis();
    let start = (Utc::now() + chrono::Duration::minutes(1)).to_rfc3339();
    let mut bookings = Vec::with_capacity(visits);
    for i in 0..visits {
        let clinician_email = format!("visit-{tag}-{i}@loadtest.bedside.test");
        let clinician = post(
            client,
            base,
            &admin,
            "/api/v1/users",
            json!({
                "email": clinician_email, "name": format!("Dr. Visit {i}"), "role": "clinician",
                "password": clinician_password
            }),
        )
        .await?;
        let patient = post(client, base, &admin, "/api/v1/patients", json!({
            "mrn": format!("LV{tag}-{i}"), "given_name": "Visit", "family_name": format!("Patient {i}"),
            "birth_date": "1970-01-01", "sex": "unknown"
        }))
        .await?;
        let appointment = post(client, base, &admin, "/api/v1/appointments", json!({
            "patient_id": patient["id"], "practitioner_id": clinician["practitioner_id"], "start": start,
            "duration_minutes": 60, "kind": "video", "reason": "Visit load test"
        }))
        .await?;
        let appointment_id = appointment["id"]
            .as_str()
            .context("appointment id")?
            .to_owned();
        let link = post(
            client,
            base,
            &admin,
            &format!("/api/v1/appointments/{appointment_id}/join-link"),
            json!({}),
        )
        .await?;
        let join_url = link["join_url"].as_str().context("join url")?;
        let join_token = join_url
            .split_once("#t=")
            .context("a join URL ends with #t=<token>")?
            .1
            .to_owned();
        bookings.push(Booking {
            appointment_id,
            clinician_email,
            join_token,
        });
    }
    Ok(bookings)
}

/// How a participant signs in.
#[derive(Debug, Clone)]
pub(crate) enum Credentials {
    Clinician { email: String, password: String },
    Patient { join_token: String },
}

/// Signs in; the access token for `/ws`.
pub(crate) async fn sign_in(
    client: &reqwest::Client,
    base: &str,
    credentials: &Credentials,
) -> anyhow::Result<String> {
    match credentials {
        Credentials::Clinician { email, password } => login(client, base, email, password).await,
        Credentials::Patient { join_token } => {
            let response = client
                .post(format!("{base}/api/v1/auth/join"))
                .json(&json!({"token": join_token}))
                .send()
                .await?;
            let status = response.status();
            let body: Value = response.json().await?;
            if !status.is_success() {
                bail!("joining with the link failed: {status} {body}");
            }
            let token = body["access_token"]
                .as_str()
                .context("access token")?
                .to_owned();
            let visit: Value = client
                .get(format!("{base}/api/v1/visit"))
                .bearer_auth(&token)
                .send()
                .await?
                .json()
                .await?;
            if visit["consent_required"] == true {
                post(
                    client,
                    base,
                    &token,
                    "/api/v1/visit/consent",
                    json!({
                        "consent_version": visit["consent_version"]
                    }),
                )
                .await?;
            }
            Ok(token)
        }
    }
}

/// One participant's signaling for the whole run: join, admit the other
/// (the clinician), offer once, answer every offer of the SFU, and start
/// sending once the media connection is up. Returns when `stop` turns
/// true (after closing the connection) or on an error.
pub(crate) async fn attend(
    base: String,
    token: String,
    appointment_id: String,
    participant: Arc<Participant>,
    video_packets_per_frame: usize,
    stop: watch::Receiver<bool>,
) -> anyhow::Result<()> {
    let ws_url = format!("{}/ws", base.replacen("http", "ws", 1));
    let (socket, _) = tokio_tungstenite::connect_async(ws_url.as_str())
        .await
        .context("connecting to /ws")?;
    let (mut outbox, mut inbox) = socket.split();
    let say = |message: Value| Message::text(message.to_string());
    outbox
        .send(say(json!({"type": "hello", "v": 1, "token": token})))
        .await?;
    outbox
        .send(say(
            json!({"type": "join", "appointment_id": appointment_id}),
        ))
        .await?;
    let mut connection: Option<Arc<Connection>> = None;
    let mut keepalive = tokio::time::interval(Duration::from_secs(15));
    let mut stopping = stop.clone();
    loop {
        let message = tokio::select! {
            () = stopped(&mut stopping) => break,
            _ = keepalive.tick() => {
                outbox.send(say(json!({"type": "ping"}))).await?;
                continue;
            }
            message = inbox.next() => message,
        };
        let Some(message) = message else {
            bail!("the server closed the socket");
        };
        let Message::Text(text) = message? else {
            continue;
        };
        let message: Value = serde_json::from_str(&text)?;
        match message["type"].as_str().unwrap_or("") {
            "joined" if message["state"] == "admitted" => {
                connection = Some(publish(&mut outbox, &participant).await?);
            }
            "admitted" if connection.is_none() => {
                connection = Some(publish(&mut outbox, &participant).await?);
            }
            "lobby" => {
                for waiting in message["waiting"].as_array().into_iter().flatten() {
                    outbox
                        .send(say(
                            json!({"type": "admit", "participant_id": waiting["participant_id"]}),
                        ))
                        .await?;
                }
            }
            "answer" => {
                let sdp = message["sdp"].as_str().context("answer sdp")?.to_owned();
                connection
                    .as_ref()
                    .context("an answer before an offer")?
                    .accept_answer(sdp)
                    .await?;
                if let Some(connection) = &connection {
                    start_sending(
                        connection.clone(),
                        participant.clone(),
                        video_packets_per_frame,
                        stop.clone(),
                    );
                }
            }
            "offer" => {
                let sdp = message["sdp"].as_str().context("offer sdp")?.to_owned();
                let answer = connection
                    .as_ref()
                    .context("an offer before publishing")?
                    .answer(sdp)
                    .await?;
                outbox
                    .send(say(json!({"type": "answer", "sdp": answer})))
                    .await?;
            }
            "error" => bail!("the server refused a message: {message}"),
            "denied" | "removed" | "replaced" | "visit_ended" => {
                bail!("out of the visit: {message}")
            }
            _ => {}
        }
    }
    if let Some(connection) = connection {
        connection.close().await;
    }
    let _ = outbox.send(say(json!({"type": "leave"}))).await;
    Ok(())
}

/// Creates the participant's connection with its tracks and sends the one
/// offer a participant makes.
async fn publish<S>(
    outbox: &mut S,
    participant: &Arc<Participant>,
) -> anyhow::Result<Arc<Connection>>
where
    S: futures::Sink<Message> + Unpin,
    S::Error: std::error::Error + Send + Sync + 'static,
{
    let connection =
        Arc::new(Connection::new(participant.clone(), std::net::Ipv4Addr::LOCALHOST.into()).await?);
    let tracks = connection.add_tracks().await?;
    *participant.tracks.lock().expect("tracks") = Some(tracks);
    let offer = connection.offer().await?;
    outbox
        .send(Message::text(
            json!({"type": "offer", "sdp": offer}).to_string(),
        ))
        .await?;
    Ok(connection)
}
