//! The MQTT session in either protocol version: MQTT 3.1.1 or MQTT 5
//! (rumqttc's `v5` client), behind one small interface so the rest of the
//! gateway does not care which.
//!
//! Both versions get the same session: a stable client id, a persistent
//! session (3.1.1 `clean session = false`; 5 `clean start = false` with a
//! session that never expires, since an expiry of 0, MQTT 5's default,
//! would end it at every disconnect), QoS 1 subscriptions and manual acks.
//! MQTT 5 is the version in which shared subscriptions
//! (`$share/<group>/<filter>`) are part of the standard.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;

/// Which MQTT version the gateway speaks.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Protocol {
    /// MQTT 3.1.1.
    #[default]
    V311,
    /// MQTT 5.
    V5,
}

/// Where and as whom to connect.
#[derive(Debug, Clone)]
pub(crate) struct Endpoint<'a> {
    pub(crate) protocol: Protocol,
    pub(crate) client_id: &'a str,
    pub(crate) host: &'a str,
    pub(crate) port: u16,
    pub(crate) username: &'a str,
    pub(crate) password: &'a str,
    pub(crate) tls: Option<Arc<rustls::ClientConfig>>,
    pub(crate) max_packet_bytes: usize,
    /// Requests the client may queue for the event loop.
    pub(crate) queue: usize,
}

/// A message received, whichever version brought it.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Message {
    pub(crate) topic: String,
    pub(crate) payload: Bytes,
    /// When it arrived: the time of its records that carry none (SenML
    /// relative time 0), the same for the early look and the commit.
    pub(crate) received_at: chrono::DateTime<chrono::Utc>,
    /// Which connection to the broker brought it (the gateway counts them):
    /// its acknowledgement is good on that connection only.
    pub(crate) connection: u64,
    /// What acknowledging it needs: its packet id and QoS (0 needs none).
    pkid: u16,
    qos: u8,
}

/// What acknowledging a message takes, without the message itself.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Ack {
    /// The connection the message arrived on.
    pub(crate) connection: u64,
    pkid: u16,
    qos: u8,
}

impl Message {
    /// A message that has just arrived.
    fn arrived(topic: String, payload: Bytes, pkid: u16, qos: u8) -> Self {
        Self {
            topic,
            payload,
            received_at: chrono::Utc::now(),
            connection: 0,
            pkid,
            qos,
        }
    }

    /// Its acknowledgement.
    pub(crate) fn ack(&self) -> Ack {
        Ack {
            connection: self.connection,
            pkid: self.pkid,
            qos: self.qos,
        }
    }
}

/// What the event loop reports.
#[derive(Debug)]
pub(crate) enum SessionEvent {
    /// Connected (again): subscribe.
    Connected,
    /// A message.
    Message(Message),
    /// Something the gateway need not act on.
    Other,
    /// The connection failed; the next poll reconnects.
    Failed(String),
}

/// The handle that subscribes and acknowledges.
#[derive(Clone)]
pub(crate) enum Client {
    V311(rumqttc::AsyncClient),
    V5(rumqttc::v5::AsyncClient),
}

/// The event loop, driven by one task.
pub(crate) enum EventLoop {
    V311(Box<rumqttc::EventLoop>),
    V5(Box<rumqttc::v5::EventLoop>),
}

/// A client and its event loop (nothing connects before the first poll).
pub(crate) fn session(endpoint: Endpoint<'_>) -> (Client, EventLoop) {
    let transport = endpoint.tls.as_ref().map(|tls| {
        rumqttc::Transport::tls_with_config(rumqttc::TlsConfiguration::Rustls(tls.clone()))
    });
    match endpoint.protocol {
        Protocol::V311 => {
            let mut options =
                rumqttc::MqttOptions::new(endpoint.client_id, endpoint.host, endpoint.port);
            options
                .set_keep_alive(Duration::from_secs(30))
                .set_clean_session(false)
                .set_credentials(endpoint.username, endpoint.password)
                .set_manual_acks(true)
                .set_max_packet_size(endpoint.max_packet_bytes, 64 * 1024);
            if let Some(transport) = transport {
                options.set_transport(transport);
            }
            let (client, eventloop) = rumqttc::AsyncClient::new(options, endpoint.queue);
            (Client::V311(client), EventLoop::V311(Box::new(eventloop)))
        }
        Protocol::V5 => {
            let mut options =
                rumqttc::v5::MqttOptions::new(endpoint.client_id, endpoint.host, endpoint.port);
            options
                .set_keep_alive(Duration::from_secs(30))
                .set_clean_start(false)
                .set_session_expiry_interval(Some(u32::MAX))
                .set_credentials(endpoint.username, endpoint.password)
                .set_manual_acks(true)
                .set_max_packet_size(Some(
                    u32::try_from(endpoint.max_packet_bytes).unwrap_or(u32::MAX),
                ));
            if let Some(transport) = transport {
                options.set_transport(transport);
            }
            let (client, eventloop) = rumqttc::v5::AsyncClient::new(options, endpoint.queue);
            (Client::V5(client), EventLoop::V5(Box::new(eventloop)))
        }
    }
}

impl EventLoop {
    /// The next event (reconnecting first after a failure).
    pub(crate) async fn next(&mut self) -> SessionEvent {
        match self {
            EventLoop::V311(eventloop) => {
                use rumqttc::{Event, Packet};
                match eventloop.poll().await {
                    Ok(Event::Incoming(Packet::ConnAck(_))) => SessionEvent::Connected,
                    Ok(Event::Incoming(Packet::Publish(p))) => SessionEvent::Message(
                        Message::arrived(p.topic, p.payload, p.pkid, p.qos as u8),
                    ),
                    Ok(_) => SessionEvent::Other,
                    Err(error) => SessionEvent::Failed(error.to_string()),
                }
            }
            EventLoop::V5(eventloop) => {
                use rumqttc::v5::Event;
                use rumqttc::v5::mqttbytes::v5::Packet;
                match eventloop.poll().await {
                    Ok(Event::Incoming(Packet::ConnAck(_))) => SessionEvent::Connected,
                    Ok(Event::Incoming(Packet::Publish(p))) => {
                        SessionEvent::Message(Message::arrived(
                            // Topics are UTF-8 by the protocol (the broker checks).
                            String::from_utf8_lossy(&p.topic).into_owned(),
                            p.payload,
                            p.pkid,
                            p.qos as u8,
                        ))
                    }
                    Ok(_) => SessionEvent::Other,
                    Err(error) => SessionEvent::Failed(error.to_string()),
                }
            }
        }
    }
}

impl Client {
    /// Queues a QoS 1 subscription without waiting (the poll task calls
    /// this and must never wait on its own event loop).
    pub(crate) fn try_subscribe(&self, filter: &str) -> Result<(), String> {
        match self {
            Client::V311(c) => c
                .try_subscribe(filter, rumqttc::QoS::AtLeastOnce)
                .map_err(|e| e.to_string()),
            Client::V5(c) => c
                .try_subscribe(filter, rumqttc::v5::mqttbytes::QoS::AtLeastOnce)
                .map_err(|e| e.to_string()),
        }
    }

    /// Acknowledges a message (nothing to do at QoS 0).
    pub(crate) async fn ack(&self, message: &Ack) -> Result<(), String> {
        match self {
            Client::V311(c) => {
                let qos = match message.qos {
                    0 => return Ok(()),
                    1 => rumqttc::QoS::AtLeastOnce,
                    _ => rumqttc::QoS::ExactlyOnce,
                };
                // Only the packet id and QoS make the acknowledgement.
                let mut publish = rumqttc::Publish::new("", qos, Vec::<u8>::new());
                publish.pkid = message.pkid;
                c.ack(&publish).await.map_err(|e| e.to_string())
            }
            Client::V5(c) => {
                use rumqttc::v5::mqttbytes::QoS;
                let qos = match message.qos {
                    0 => return Ok(()),
                    1 => QoS::AtLeastOnce,
                    _ => QoS::ExactlyOnce,
                };
                let mut publish =
                    rumqttc::v5::mqttbytes::v5::Publish::new("", qos, Vec::<u8>::new(), None);
                publish.pkid = message.pkid;
                c.ack(&publish).await.map_err(|e| e.to_string())
            }
        }
    }
}
