//! The clinician's live feed end to end: a device publishes over a real
//! Mosquitto, the gateway stores the reading, the alert engine commits an
//! alert, and both arrive on the clinician's WebSocket; acknowledging on
//! the socket updates everyone. Strangers and bad tokens are refused.

use std::time::Duration;

use bedside_records::domain::{DeviceKind, Serial};
use bedside_test_support::{Broker, TestApp, World, free_port, publish};
use futures::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::Message;

pub(crate) type Socket =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

pub(crate) async fn connect(app: &TestApp) -> Socket {
    let url = app.base.replace("http://", "ws://") + "/ws";
    tokio_tungstenite::connect_async(url)
        .await
        .expect("websocket")
        .0
}

pub(crate) async fn say(socket: &mut Socket, message: Value) {
    socket
        .send(Message::Text(message.to_string().into()))
        .await
        .expect("send");
}

/// The next JSON message satisfying `matches`, within a deadline.
pub(crate) async fn next(
    socket: &mut Socket,
    what: &str,
    matches: impl Fn(&Value) -> bool,
) -> Value {
    tokio::time::timeout(Duration::from_secs(20), async {
        loop {
            match socket.next().await {
                Some(Ok(Message::Text(text))) => {
                    let value: Value = serde_json::from_str(&text).expect("json");
                    if matches(&value) {
                        return value;
                    }
                }
                Some(Ok(_)) => {}
                other => panic!("socket ended while waiting for {what}: {other:?}"),
            }
        }
    })
    .await
    .unwrap_or_else(|_| panic!("timed out waiting for {what}"))
}

#[tokio::test]
async fn a_published_reading_and_its_alert_reach_the_clinicians_feed() {
    let broker_port = free_port();
    let app = TestApp::spawn_with(move |c| {
        c.ingest.enabled = true;
        c.ingest.batch_age_ms = 20;
        c.mqtt.url = format!("mqtt://127.0.0.1:{broker_port}");
        c.mqtt.password = bedside_test_support::GATEWAY_PASSWORD.into();
    })
    .await;
    let w = World::seed(&app).await;
    let device = bedside_records::devices::provision(
        &app.db,
        &Serial::parse("OX-FEED").unwrap(),
        DeviceKind::PulseOximeter,
        Some(w.patient_a),
    )
    .await
    .unwrap();
    let broker = Broker::for_registry(&app.db, Some(broker_port)).await;
    bedside_test_support::wait_for("the gateway to connect", Duration::from_secs(30), || {
        let (client, url) = (app.client.clone(), app.url("/readyz"));
        async move {
            client
                .get(url)
                .send()
                .await
                .ok()?
                .status()
                .is_success()
                .then_some(())
        }
    })
    .await;

    let mut feed = connect(&app).await;
    say(
        &mut feed,
        json!({"type": "hello", "v": 1, "token": w.clinician_a.token}),
    )
    .await;
    let welcome = next(&mut feed, "welcome", |m| m["type"] == "welcome").await;
    assert_eq!(welcome["role"], "clinician");
    say(
        &mut feed,
        json!({"type": "subscribe", "patients": [w.patient_a, w.patient_b]}),
    )
    .await;
    let refused = next(&mut feed, "a refusal for the stranger", |m| {
        m["type"] == "error"
    })
    .await;
    assert_eq!(refused["code"], "forbidden");
    let snapshot = next(&mut feed, "the snapshot", |m| m["type"] == "snapshot").await;
    assert_eq!(
        snapshot["patients"].as_array().unwrap().len(),
        1,
        "only patient A"
    );
    let open: Vec<&Value> = snapshot["alerts"].as_array().unwrap().iter().collect();
    assert_eq!(open.len(), 1, "the world's open glucose alert: {open:?}");
    assert_eq!(open[0]["rule"], "threshold:glucose");

    // SpO2 85 %: stored, then a sample and an alert on the feed.
    let user = device.device.mqtt_username.clone();
    let topic = format!("bedside/v1/devices/{user}/vitals");
    let from_the_oximeter = |pack: &'static str| {
        let (user, password, topic) = (user.clone(), device.mqtt_password.clone(), topic.clone());
        async move { publish(broker.port, &user, &password, &topic, pack).await }
    };
    assert!(from_the_oximeter(r#"[{"n":"spo2","u":"%","v":85}]"#).await);
    // Alerts go out at once, samples and NEWS2 on the next coalescing tick:
    // take all three in whatever order they come.
    let (mut sample, mut alert, mut news2) = (None, None, None);
    while sample.is_none() || alert.is_none() || news2.is_none() {
        let m = next(&mut feed, "the sample, the alert and the NEWS2", |m| {
            m["type"] == "sample" || m["type"] == "alert" || m["type"] == "news2"
        })
        .await;
        if m["type"] == "sample" {
            sample = Some(m);
        } else if m["type"] == "news2" && m["total"] == 0 {
            // Subscribing also sends each patient's NEWS2 as it stands: none
            // of the seven parameters measured yet.
            assert_eq!(m["missing"].as_array().unwrap().len(), 7, "{m}");
        } else if m["type"] == "news2" {
            news2 = Some(m);
        } else if m["alert"]["rule"] == "threshold:spo2" {
            alert = Some(m);
        }
    }
    let (sample, alert, news2) = (sample.unwrap(), alert.unwrap(), news2.unwrap());
    // SpO2 85 % scores 3 on scale 1, a red parameter: the low–medium band,
    // partial (only SpO2 measured).
    assert_eq!(news2["patient_id"], json!(w.patient_a));
    assert_eq!(
        (
            news2["total"].as_u64(),
            news2["band"].as_str(),
            news2["spo2_scale"].as_i64()
        ),
        (Some(3), Some("low_medium"), Some(1))
    );
    assert!(news2["missing"].as_array().unwrap().len() >= 5, "{news2}");
    assert_eq!(
        (sample["metric"].as_str(), sample["value"].as_f64()),
        (Some("spo2"), Some(85.0))
    );
    assert_eq!(sample["patient_id"], json!(w.patient_a));
    assert_eq!(alert["event"], "opened");
    let stored: i64 = sqlx::query_scalar("SELECT count(*) FROM alerts WHERE status = 'open'")
        .fetch_one(&app.db)
        .await
        .unwrap();
    assert!(stored >= 1, "the alert was committed before it was sent");

    // The oximeter reports its battery: the patient's device status shows
    // it online with its level (the battery is no vital sign: no sample).
    assert!(from_the_oximeter(r#"[{"n":"battery","u":"%EL","v":64}]"#).await);
    let path = format!("/api/v1/patients/{}/devices/status", w.patient_a);
    let oximeter = bedside_test_support::wait_for(
        "the battery level in the device status",
        Duration::from_secs(20),
        || {
            let (app, path, token) = (&app, path.clone(), w.clinician_a.token.clone());
            async move {
                let devices: Value =
                    crate::support::send(app, reqwest::Method::GET, &path, Some(&token), None)
                        .await
                        .json()
                        .await
                        .ok()?;
                devices
                    .as_array()?
                    .iter()
                    .find(|d| d["serial"] == "OX-FEED" && d["battery_percent"] == json!(64.0))
                    .cloned()
            }
        },
    )
    .await;
    assert_eq!(
        (&oximeter["kind"], &oximeter["online"]),
        (&json!("pulse_oximeter"), &json!(true))
    );

    // A second clinician tab watching the same patient sees the acknowledgement.
    let mut second = connect(&app).await;
    say(
        &mut second,
        json!({"type": "hello", "v": 1, "token": w.clinician_a.token}),
    )
    .await;
    say(
        &mut second,
        json!({"type": "subscribe", "patients": [w.patient_a]}),
    )
    .await;
    let snap = next(&mut second, "the second snapshot", |m| {
        m["type"] == "snapshot"
    })
    .await;
    assert!(
        snap["alerts"]
            .as_array()
            .unwrap()
            .iter()
            .any(|a| a["rule"] == "threshold:spo2"),
        "open alerts are in the snapshot"
    );
    say(
        &mut feed,
        json!({"type": "ack_alert", "alert_id": alert["alert"]["id"]}),
    )
    .await;
    let acked = next(&mut second, "the acknowledgement", |m| {
        m["type"] == "alert" && m["event"] == "acknowledged"
    })
    .await;
    assert_eq!(acked["alert"]["acknowledged_by"], json!(w.clinician_a.user));
    // Acknowledging it again is refused, naming the alert.
    say(
        &mut second,
        json!({"type": "ack_alert", "alert_id": alert["alert"]["id"]}),
    )
    .await;
    let refused = next(&mut second, "the refusal", |m| m["type"] == "error").await;
    assert_eq!(
        (&refused["code"], &refused["alert_id"]),
        (&json!("not_open"), &alert["alert"]["id"])
    );

    // Reconnecting with the last sequence number replays what was missed.
    let seq = alert["seq"].as_i64().unwrap();
    let mut third = connect(&app).await;
    say(
        &mut third,
        json!({"type": "hello", "v": 1, "token": w.clinician_a.token}),
    )
    .await;
    say(
        &mut third,
        json!({"type": "subscribe", "patients": [w.patient_a], "since_seq": seq}),
    )
    .await;
    let replayed = next(&mut third, "the replayed acknowledgement", |m| {
        m["type"] == "alert" && m["event"] == "acknowledged"
    })
    .await;
    assert!(replayed["seq"].as_i64().unwrap() > seq);

    // The device announces it is going offline (as its last will would):
    // an offline alert for its patient; back online resolves it.
    let status = format!("bedside/v1/devices/{user}/status");
    assert!(
        publish(
            broker.port,
            &user,
            &device.mqtt_password,
            &status,
            "offline"
        )
        .await
    );
    let offline = next(&mut feed, "the offline alert", |m| {
        m["type"] == "alert"
            && m["alert"]["rule"]
                .as_str()
                .is_some_and(|r| r.starts_with("offline:"))
    })
    .await;
    assert_eq!(
        (
            offline["event"].as_str(),
            offline["alert"]["severity"].as_str()
        ),
        (Some("opened"), Some("low"))
    );
    assert!(publish(broker.port, &user, &device.mqtt_password, &status, "online").await);
    let back = next(&mut feed, "the offline alert resolving", |m| {
        m["type"] == "alert"
            && m["event"] == "resolved"
            && m["alert"]["rule"] == offline["alert"]["rule"]
    })
    .await;
    assert_eq!(back["alert"]["status"], "resolved");
    broker.stop().await;
}

#[tokio::test]
async fn the_feed_refuses_a_missing_or_bad_hello_with_a_reason() {
    let app = TestApp::spawn().await;
    let w = World::seed(&app).await;
    for first in [
        json!({"type": "subscribe", "patients": []}),
        json!({"type": "hello", "v": 1, "token": "forged"}),
    ] {
        let mut socket = connect(&app).await;
        say(&mut socket, first.clone()).await;
        let error = next(&mut socket, "the error", |m| m["type"] == "error").await;
        assert!(
            ["hello_required", "unauthenticated"].contains(&error["code"].as_str().unwrap()),
            "{first}: {error}"
        );
        let close = tokio::time::timeout(Duration::from_secs(10), socket.next())
            .await
            .expect("closed");
        match close {
            Some(Ok(Message::Close(Some(frame)))) => {
                assert!(!frame.reason.is_empty(), "a close has a reason")
            }
            other => panic!("{first}: expected a close frame, got {other:?}"),
        }
    }
    let mut socket = connect(&app).await;
    say(
        &mut socket,
        json!({"type": "hello", "v": 1, "token": w.admin.token}),
    )
    .await;
    next(&mut socket, "welcome", |m| m["type"] == "welcome").await;
    socket
        .send(Message::Text("{not json".into()))
        .await
        .unwrap();
    let error = next(&mut socket, "the malformed-message error", |m| {
        m["type"] == "error"
    })
    .await;
    assert_eq!(error["code"], "malformed_message");
    say(&mut socket, json!({"type": "ping"})).await;
    next(&mut socket, "pong after a bad message", |m| {
        m["type"] == "pong"
    })
    .await;
}
