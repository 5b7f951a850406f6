//! The same visits through Janus (its videoroom plugin), the peer SFU the
//! figures are compared with: a room per visit, each participant publishes
//! on one connection and subscribes to the other on a second one, as
//! Janus's own clients do. Signaling is Janus's WebSocket API
//! (`janus-protocol`).

use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context as _, bail};
use futures::stream::{SplitSink, SplitStream};
use futures::{SinkExt as _, StreamExt as _};
use serde_json::{Value, json};
use tokio::net::TcpStream;
use tokio::sync::watch;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest as _;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

use super::peer::{Connection, Participant, start_sending, stopped};

type Socket = WebSocketStream<MaybeTlsStream<TcpStream>>;

/// One Janus API session over its own WebSocket.
pub(crate) struct Session {
    outbox: SplitSink<Socket, Message>,
    inbox: SplitStream<Socket>,
    id: u64,
    transactions: u64,
}

impl Session {
    /// Connects and creates a session.
    pub(crate) async fn open(url: &str) -> anyhow::Result<Self> {
        let mut request = url.into_client_request()?;
        request
            .headers_mut()
            .insert("Sec-WebSocket-Protocol", "janus-protocol".parse()?);
        let (socket, _) = tokio_tungstenite::connect_async(request)
            .await
            .context("connecting to Janus")?;
        let (outbox, inbox) = socket.split();
        let mut session = Self {
            outbox,
            inbox,
            id: 0,
            transactions: 0,
        };
        let created = session.call(json!({"janus": "create"})).await?;
        session.id = created["data"]["id"].as_u64().context("session id")?;
        Ok(session)
    }

    /// Attaches a videoroom handle.
    pub(crate) async fn attach(&mut self) -> anyhow::Result<u64> {
        let attached = self
            .call(json!({"janus": "attach", "plugin": "janus.plugin.videoroom"}))
            .await?;
        attached["data"]["id"].as_u64().context("handle id")
    }

    /// A plugin request on `handle`, with an optional JSEP; its answer
    /// (synchronous `success` or the asynchronous `event`).
    pub(crate) async fn message(
        &mut self,
        handle: u64,
        body: Value,
        jsep: Option<Value>,
    ) -> anyhow::Result<Value> {
        let mut request = json!({"janus": "message", "handle_id": handle, "body": body});
        if let Some(jsep) = jsep {
            request["jsep"] = jsep;
        }
        let reply = self.call(request).await?;
        if let Some(error) = reply["plugindata"]["data"].get("error") {
            bail!("videoroom refused: {error}");
        }
        Ok(reply)
    }

    /// Tells Janus that every candidate of `handle`'s connection was in
    /// its SDP (the participants gather before they send it).
    pub(crate) async fn candidates_complete(&mut self, handle: u64) -> anyhow::Result<()> {
        self.call(
            json!({"janus": "trickle", "handle_id": handle, "candidate": {"completed": true}}),
        )
        .await?;
        Ok(())
    }

    /// Sends a request and waits for its reply (skipping `ack`s, except
    /// for a trickle, and other transactions' or handles' events).
    async fn call(&mut self, mut request: Value) -> anyhow::Result<Value> {
        self.transactions += 1;
        let transaction = self.transactions.to_string();
        request["transaction"] = json!(transaction);
        if self.id != 0 {
            request["session_id"] = json!(self.id);
        }
        // A trickle's only reply is its `ack`.
        let ack_is_reply = request["janus"] == "trickle";
        self.outbox.send(Message::text(request.to_string())).await?;
        let reply = tokio::time::timeout(Duration::from_secs(30), async {
            while let Some(message) = self.inbox.next().await {
                let Message::Text(text) = message? else {
                    continue;
                };
                let reply: Value = serde_json::from_str(&text)?;
                if reply["transaction"] == transaction && (ack_is_reply || reply["janus"] != "ack")
                {
                    return Ok(reply);
                }
            }
            bail!("Janus closed the socket")
        })
        .await
        .context("no reply from Janus in 30 s")??;
        if reply["janus"] == "error" {
            bail!("Janus refused {request}: {}", reply["error"]);
        }
        Ok(reply)
    }

    /// Keeps the session alive and discards events until `stop`.
    pub(crate) async fn idle(mut self, mut stop: watch::Receiver<bool>) {
        let mut keepalive = tokio::time::interval(Duration::from_secs(20));
        loop {
            tokio::select! {
                () = stopped(&mut stop) => break,
                _ = keepalive.tick() => {
                    let message = json!({"janus": "keepalive", "session_id": self.id, "transaction": "keepalive"});
                    if self.outbox.send(Message::text(message.to_string())).await.is_err() {
                        return;
                    }
                }
                message = self.inbox.next() => if message.is_none() { return },
            }
        }
        let message = json!({"janus": "destroy", "session_id": self.id, "transaction": "destroy"});
        let _ = self.outbox.send(Message::text(message.to_string())).await;
    }
}

/// Creates the videoroom of visit `room`.
pub(crate) async fn create_room(
    session: &mut Session,
    handle: u64,
    room: u64,
) -> anyhow::Result<()> {
    session
        .message(
            handle,
            json!({
                "request": "create", "room": room, "publishers": 2,
                "audiocodec": "opus", "videocodec": "vp8", "bitrate": 0
            }),
            None,
        )
        .await?;
    Ok(())
}

/// A participant published in its room.
pub(crate) struct Published {
    session: Session,
    subscriber_handle: u64,
    room: u64,
    publisher_connection: Arc<Connection>,
}

/// Joins `room` as publisher `feed` and starts sending once connected.
pub(crate) async fn publish(
    url: &str,
    ip: IpAddr,
    room: u64,
    feed: u64,
    participant: Arc<Participant>,
    video_packets_per_frame: usize,
    stop: watch::Receiver<bool>,
) -> anyhow::Result<Published> {
    let mut session = Session::open(url).await?;
    let publisher_handle = session.attach().await?;
    let subscriber_handle = session.attach().await?;
    let connection = Arc::new(Connection::new(participant.clone(), ip).await?);
    let tracks = connection.add_tracks().await?;
    *participant.tracks.lock().expect("tracks") = Some(tracks);
    let offer = connection.offer().await?;
    let joined = session
        .message(
            publisher_handle,
            json!({"request": "joinandconfigure", "room": room, "ptype": "publisher", "id": feed,
                   "display": format!("participant {feed}"), "audio": true, "video": true}),
            Some(json!({"type": "offer", "sdp": offer})),
        )
        .await?;
    let answer = joined["jsep"]["sdp"]
        .as_str()
        .with_context(|| format!("Janus did not answer the publisher: {joined}"))?;
    connection.accept_answer(answer.to_owned()).await?;
    session.candidates_complete(publisher_handle).await?;
    start_sending(
        connection.clone(),
        participant,
        video_packets_per_frame,
        stop,
    );
    Ok(Published {
        session,
        subscriber_handle,
        room,
        publisher_connection: connection,
    })
}

/// Subscribes to the partner's feed; the session then idles until `stop`.
pub(crate) async fn subscribe(
    published: Published,
    ip: IpAddr,
    partner_feed: u64,
    participant: Arc<Participant>,
    stop: watch::Receiver<bool>,
) -> anyhow::Result<Vec<Arc<Connection>>> {
    let Published {
        mut session,
        subscriber_handle,
        room,
        publisher_connection,
    } = published;
    let connection = Arc::new(Connection::new(participant, ip).await?);
    // Janus offers a feed only once its publisher's media is up.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    let attached = loop {
        let joined = session
            .message(
                subscriber_handle,
                json!({"request": "join", "room": room, "ptype": "subscriber", "streams": [{"feed": partner_feed}]}),
                None,
            )
            .await;
        match joined {
            Err(error)
                if error.to_string().contains("No such feed")
                    && tokio::time::Instant::now() < deadline =>
            {
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
            joined => break joined?,
        }
    };
    let offer = attached["jsep"]["sdp"]
        .as_str()
        .with_context(|| format!("Janus sent no offer to the subscriber: {attached}"))?;
    let answer = connection.answer(offer.to_owned()).await?;
    session
        .message(
            subscriber_handle,
            json!({"request": "start"}),
            Some(json!({"type": "answer", "sdp": answer})),
        )
        .await?;
    session.candidates_complete(subscriber_handle).await?;
    tokio::spawn(session.idle(stop));
    Ok(vec![publisher_connection, connection])
}
