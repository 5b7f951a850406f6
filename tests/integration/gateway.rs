//! The device gateway against a real Mosquitto and PostgreSQL: readings
//! published by a device are stored exactly once, bad ones are kept as
//! rejected with their reason, and messages sent while the gateway is away
//! arrive when it comes back (persistent session, ack after commit).

use std::time::Duration;

use bedside_device_gateway::gateway::{self, GatewaySettings, Health};
use bedside_device_gateway::metrics::IngestMetrics;
use bedside_device_gateway::senml::Limits;
use bedside_device_gateway::session::Protocol;
use bedside_records::domain::{DeviceKind, Serial};
use bedside_records::patients;
use bedside_test_support::{
    Broker, GATEWAY_PASSWORD, GATEWAY_USER, fresh_database, publish, publish_lines,
    publish_retained, wait_for,
};
use sqlx::PgPool;
use tokio::sync::watch;

async fn count(db: &PgPool, sql: &'static str) -> i64 {
    sqlx::query_scalar(sql).fetch_one(db).await.expect("count")
}

/// Waits until the vitals table holds exactly `rows` rows.
async fn wait_for_rows(db: &PgPool, rows: i64, what: &'static str, within: Duration) {
    wait_for(what, within, || {
        let db = db.clone();
        async move { (count(&db, "SELECT count(*) FROM vitals").await == rows).then_some(()) }
    })
    .await;
}

/// Gateway settings against a broker from [`Broker::for_registry`], with a
/// fresh client id so tests never share a session.
fn settings(port: u16, batch_messages: usize, batch_age: Duration) -> GatewaySettings {
    GatewaySettings {
        host: "127.0.0.1".into(),
        port,
        client_id: format!("bedside-gateway-test-{}", uuid::Uuid::new_v4().simple()),
        username: GATEWAY_USER.into(),
        password: GATEWAY_PASSWORD.into(),
        batch_messages,
        batch_age,
        concurrent_batches: 2,
        queue_capacity: gateway::QUEUE_CAPACITY,
        tls: None,
        shared_group: None,
        protocol: Protocol::V311,
        limits: Limits::default(),
        rejected_payload_bytes: 4096,
        metrics: IngestMetrics::register(&prometheus::Registry::new()),
    }
}

/// A patient with a pulse oximeter assigned from now on.
async fn patient_with_oximeter(
    db: &PgPool,
    mrn: &str,
    serial: &str,
) -> (patients::Patient, bedside_records::devices::Provisioned) {
    let patient = crate::support::new_patient(db, mrn).await;
    let device = bedside_records::devices::provision(
        db,
        &Serial::parse(serial).unwrap(),
        DeviceKind::PulseOximeter,
        Some(patient.id),
    )
    .await
    .unwrap();
    (patient, device)
}

fn start(
    settings: &GatewaySettings,
    db: &PgPool,
) -> (watch::Sender<bool>, tokio::task::JoinHandle<()>, Health) {
    start_with(settings, db, gateway::Outlets::default())
}

fn start_with(
    settings: &GatewaySettings,
    db: &PgPool,
    outlets: gateway::Outlets,
) -> (watch::Sender<bool>, tokio::task::JoinHandle<()>, Health) {
    let (stop, stopped) = watch::channel(false);
    let health = Health::default();
    let handle = tokio::spawn(gateway::run(
        settings.clone(),
        db.clone(),
        health.clone(),
        stopped,
        outlets,
    ));
    (stop, handle, health)
}

#[tokio::test]
async fn readings_are_stored_once_bad_ones_rejected_and_nothing_lost_while_away() {
    let (db, _) = fresh_database().await;
    bedside_vitals_store::partitions::maintain(
        &db,
        chrono::Utc::now(),
        chrono::Duration::days(365),
        chrono::Duration::days(14),
    )
    .await
    .expect("partitions");
    let (patient, device) = patient_with_oximeter(&db, "GW-1", "OX-GW-1").await;
    let broker = Broker::for_registry(&db, None).await;
    let settings = settings(broker.port, 100, Duration::from_millis(50));
    let (stop, handle, health) = start(&settings, &db);
    let user = device.device.mqtt_username.clone();
    let topic = format!("bedside/v1/devices/{user}/vitals");
    // Whole seconds after the device's assignment began (readings before it belong to nobody).
    let t = chrono::Utc::now().timestamp() + 1;
    let pack =
        format!(r#"[{{"bt":{t},"n":"heart_rate","u":"beat/min","v":72}},{{"n":"spo2","v":97}}]"#);

    let password = device.mqtt_password.clone();
    let port = broker.port;

    // The gateway subscribes when it connects; until then the broker has no
    // session to queue for. Publishing the same pack until it is stored also
    // shows redelivery is harmless: the pack has fixed times, so however many
    // copies arrive, two rows result.
    wait_for(
        "the first pack to be stored",
        Duration::from_secs(20),
        || {
            let (db, pack, topic, user, password) = (
                db.clone(),
                pack.clone(),
                topic.clone(),
                user.clone(),
                password.clone(),
            );
            async move {
                assert!(publish(port, &user, &password, &topic, &pack).await);
                (count(&db, "SELECT count(*) FROM vitals").await >= 2).then_some(())
            }
        },
    )
    .await;
    assert!(publish(port, &user, &password, &topic, &pack).await);
    assert!(health.is_ready());

    // A malformed message and a pack with one good and one bad record.
    assert!(publish(port, &user, &password, &topic, "[{\"n\": ").await);
    let mixed = format!(
        r#"[{{"bt":{t},"n":"body_temperature","u":"Cel","v":37.1,"t":5}},{{"n":"heart_rate","u":"furlong","v":70,"t":5}}]"#
    );
    assert!(publish(port, &user, &password, &topic, &mixed).await);
    // Counted once its commit has returned, a moment after the rows show.
    let stored = settings.metrics.readings_stored.clone();
    wait_for(
        "the mixed pack to be handled",
        Duration::from_secs(20),
        || {
            let (db, stored) = (db.clone(), stored.get());
            async move {
                (count(&db, "SELECT count(*) FROM rejected_messages").await >= 2 && stored >= 3)
                    .then_some(())
            }
        },
    )
    .await;
    assert_eq!(
        count(&db, "SELECT count(*) FROM vitals").await,
        3,
        "duplicates absorbed, the good record of the mixed pack kept"
    );
    let reasons: Vec<String> =
        sqlx::query_scalar("SELECT reason FROM rejected_messages ORDER BY reason")
            .fetch_all(&db)
            .await
            .unwrap();
    assert_eq!(
        reasons,
        vec!["malformed_payload".to_owned(), "unknown_unit".to_owned()]
    );
    // The same refusals are counted by reason for the operator's dashboards.
    let rejected = |reason: &str| settings.metrics.rejected.with_label_values(&[reason]).get();
    assert_eq!(
        (rejected("malformed_payload"), rejected("unknown_unit")),
        (1, 1)
    );
    assert_eq!(settings.metrics.readings_stored.get(), 3);
    let owner: Vec<uuid::Uuid> = sqlx::query_scalar("SELECT DISTINCT patient_id FROM vitals")
        .fetch_all(&db)
        .await
        .unwrap();
    assert_eq!(
        owner,
        vec![patient.id.0],
        "readings belong to the device's patient"
    );

    // The gateway goes away; the device keeps publishing; nothing is lost.
    stop.send(true).unwrap();
    handle.await.unwrap();
    for i in 0..20 {
        let reading = format!(
            r#"[{{"bt":{t},"n":"heart_rate","v":{},"t":{}}}]"#,
            60 + i,
            100 + i
        );
        assert!(publish(port, &user, &password, &topic, &reading).await);
    }
    let (stop, handle, _health) = start(&settings, &db);
    wait_for_rows(
        &db,
        23,
        "the readings sent while away",
        Duration::from_secs(20),
    )
    .await;
    stop.send(true).unwrap();
    handle.await.unwrap();
    broker.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_database_outage_loses_nothing_and_stores_nothing_twice() {
    let pg = tokio::task::spawn_blocking(bedside_test_support::OwnPostgres::start)
        .await
        .unwrap();
    let admin = sqlx::postgres::PgPoolOptions::new()
        .max_connections(1)
        .connect(&pg.url("postgres"))
        .await
        .unwrap();
    sqlx::query("CREATE DATABASE bedside")
        .execute(&admin)
        .await
        .unwrap();
    admin.close().await;
    let db = sqlx::postgres::PgPoolOptions::new()
        .max_connections(4)
        .acquire_timeout(Duration::from_secs(2))
        .connect(&pg.url("bedside"))
        .await
        .unwrap();
    bedside_server::app::migrator().run(&db).await.unwrap();
    bedside_vitals_store::partitions::maintain(
        &db,
        chrono::Utc::now(),
        chrono::Duration::days(30),
        chrono::Duration::days(7),
    )
    .await
    .unwrap();
    let (_, device) = patient_with_oximeter(&db, "OUT-1", "OX-OUT").await;
    let broker = Broker::for_registry(&db, None).await;
    let settings = settings(broker.port, 10, Duration::from_millis(20));
    let (stop, handle, health) = start(&settings, &db);
    let user = device.device.mqtt_username.clone();
    let topic = format!("bedside/v1/devices/{user}/vitals");
    let t0 = chrono::Utc::now().timestamp() + 1;
    let reading = |i: i64| {
        format!(
            r#"[{{"bt":{t0},"n":"heart_rate","v":{},"t":{i}}}]"#,
            60 + i % 40
        )
    };
    let (port, password) = (broker.port, device.mqtt_password.clone());
    // The gateway is subscribed once a first reading is stored (repeats are absorbed).
    wait_for("the first reading", Duration::from_secs(20), || {
        let (db, topic, user, password, first) = (
            db.clone(),
            topic.clone(),
            user.clone(),
            password.clone(),
            reading(0),
        );
        async move {
            publish(port, &user, &password, &topic, &first).await;
            (count(&db, "SELECT count(*) FROM vitals").await >= 1).then_some(())
        }
    })
    .await;
    for i in 1..20 {
        assert!(publish(port, &user, &password, &topic, &reading(i)).await);
    }
    wait_for_rows(&db, 20, "20 readings", Duration::from_secs(20)).await;

    // The database goes down; the device keeps publishing (the broker holds
    // what the gateway does not acknowledge); the gateway reports it cannot store.
    tokio::task::block_in_place(|| pg.crash());
    for i in 20..50 {
        assert!(publish(port, &user, &password, &topic, &reading(i)).await);
    }
    wait_for("the gateway to notice", Duration::from_secs(30), || {
        let health = health.clone();
        async move { (!health.is_storing()).then_some(()) }
    })
    .await;
    tokio::task::block_in_place(|| pg.resume());
    wait_for(
        "every reading, exactly once",
        Duration::from_secs(60),
        || {
            let db = db.clone();
            async move {
                // Pooled connections died with the server: a failed count just means "not yet".
                let n: Option<i64> = sqlx::query_scalar("SELECT count(*) FROM vitals")
                    .fetch_one(&db)
                    .await
                    .ok();
                (n == Some(50)).then_some(())
            }
        },
    )
    .await;
    assert!(health.is_storing());
    let distinct = count(&db, "SELECT count(DISTINCT time) FROM vitals").await;
    assert_eq!(distinct, 50);
    stop.send(true).unwrap();
    handle.await.unwrap();
    broker.stop().await;
}

/// Partitions ahead, a patient with an oximeter, and `n` one-line packs a
/// second apart starting a second from now.
async fn ingest_fixture(
    db: &PgPool,
    mrn: &str,
    n: i64,
) -> (bedside_records::devices::Provisioned, Vec<String>) {
    bedside_vitals_store::partitions::maintain(
        db,
        chrono::Utc::now(),
        chrono::Duration::days(365),
        chrono::Duration::days(14),
    )
    .await
    .expect("partitions");
    let (_, device) = patient_with_oximeter(db, mrn, &format!("OX-{mrn}")).await;
    let t = chrono::Utc::now().timestamp() + 1;
    let packs = (0..n)
        .map(|i| {
            format!(
                r#"[{{"bt":{},"n":"heart_rate","u":"/min","v":{}}}]"#,
                t + i,
                60 + i % 30
            )
        })
        .collect();
    (device, packs)
}

/// Delivers `packs` (one reading each) as the device: the first is repeated
/// until stored (the gateway subscribes only once connected), then the rest
/// go in one session; returns once the table holds one row per pack.
async fn deliver(
    db: &PgPool,
    port: u16,
    device: &bedside_records::devices::Provisioned,
    packs: &[String],
) {
    let user = device.device.mqtt_username.clone();
    let topic = format!("bedside/v1/devices/{user}/vitals");
    let password = device.mqtt_password.clone();
    wait_for(
        "the first pack to be stored",
        Duration::from_secs(20),
        || {
            let (db, user, password, topic, pack) = (
                db.clone(),
                user.clone(),
                password.clone(),
                topic.clone(),
                packs[0].clone(),
            );
            async move {
                assert!(publish(port, &user, &password, &topic, &pack).await);
                (count(&db, "SELECT count(*) FROM vitals").await >= 1).then_some(())
            }
        },
    )
    .await;
    assert!(publish_lines(port, &user, &password, &topic, &packs[1..]).await);
    let expected = packs.len() as i64;
    wait_for_rows(
        db,
        expected,
        "every pack to be stored",
        Duration::from_secs(20),
    )
    .await;
}

/// A broker that does not wait for acknowledgements (no in-flight window,
/// as Mosquitto 2.0.11 behaves under a backlog) floods the gateway far
/// beyond its channels. The gateway must slow down, not stop: its batch
/// task once waited on rumqttc's full request channel for acknowledgements
/// that only the poll task drains, while the poll task waited on the batch
/// task's full channel, and ingest froze for good.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_broker_sending_beyond_its_window_slows_the_gateway_but_never_stops_it() {
    let (db, _) = fresh_database().await;
    let (device, _) = ingest_fixture(&db, "GW-FLOOD", 0).await;
    // 3000 packs a tenth of a millisecond apart (a second apart would reach beyond the
    // gateway's limit on future times).
    let t = chrono::Utc::now().timestamp() + 1;
    let packs: Vec<String> = (0..3000)
        .map(|i| format!(r#"[{{"bt":{t}.{i:04},"n":"heart_rate","u":"/min","v":70}}]"#))
        .collect();
    let broker = Broker::for_registry_with(&db, "max_inflight_messages 0\n").await;
    let mut flood = settings(broker.port, 50, Duration::from_millis(20));
    flood.queue_capacity = 16;
    let metrics = flood.metrics.clone();
    let (stop, handle, _) = start(&flood, &db);
    deliver(&db, broker.port, &device, &packs).await;
    // Every message was acknowledged once stored (none is left held).
    wait_for(
        "every message to be acknowledged",
        Duration::from_secs(20),
        || {
            let held = metrics.unacknowledged.get();
            async move { (held == 0).then_some(()) }
        },
    )
    .await;
    stop.send(true).unwrap();
    handle.await.unwrap();
    broker.stop().await;
}

#[tokio::test]
async fn the_gateway_speaks_tls_to_the_broker_when_the_url_says_mqtts() {
    let (db, _) = fresh_database().await;
    let (device, packs) = ingest_fixture(&db, "GW-TLS", 20).await;
    let broker = Broker::with_tls(&db).await;
    let (tls_port, ca) = broker.tls.clone().expect("a TLS listener");
    // The client configuration exactly as `bedside serve` builds it from its settings.
    let mut config = bedside_server::config::Config::default();
    config.mqtt.url = format!("mqtts://localhost:{tls_port}");
    config.mqtt.ca_file = Some(ca);
    let mut tls_settings = settings(tls_port, 50, Duration::from_millis(20));
    tls_settings.host = "localhost".into();
    tls_settings.tls = config.mqtt_tls().expect("TLS settings");
    let (stop, handle, health) = start(&tls_settings, &db);
    wait_for(
        "the gateway to connect over TLS",
        Duration::from_secs(20),
        || {
            let health = health.clone();
            async move { health.is_connected().then_some(()) }
        },
    )
    .await;
    // Published on the plain listener, received over the TLS session.
    deliver(&db, broker.port, &device, &packs).await;
    stop.send(true).unwrap();
    handle.await.unwrap();
    broker.stop().await;
}

#[tokio::test]
async fn gateways_in_a_shared_group_split_the_stream_and_store_each_reading_once() {
    let (db, _) = fresh_database().await;
    let (device, packs) = ingest_fixture(&db, "GW-SHARE", 200).await;
    let broker = Broker::for_registry(&db, None).await;
    let group = |mut s: GatewaySettings| {
        s.shared_group = Some("bedside".into());
        s.protocol = Protocol::V5;
        s
    };
    let first = group(settings(broker.port, 20, Duration::from_millis(20)));
    let second = group(settings(broker.port, 20, Duration::from_millis(20)));
    let (stop_first, first_handle, first_health) = start(&first, &db);
    let (stop_second, second_handle, second_health) = start(&second, &db);
    wait_for("both gateways to connect", Duration::from_secs(20), || {
        let (a, b) = (first_health.clone(), second_health.clone());
        async move { (a.is_connected() && b.is_connected()).then_some(()) }
    })
    .await;
    deliver(&db, broker.port, &device, &packs).await;
    // A gateway counts its batch once the commit has returned, a moment
    // after the rows are visible to `deliver`: wait for the counts.
    let stored = || {
        (
            first.metrics.readings_stored.get(),
            second.metrics.readings_stored.get(),
        )
    };
    wait_for(
        "both gateways to count what they stored",
        Duration::from_secs(20),
        || {
            let (a, b) = stored();
            async move { (a + b >= 200).then_some(()) }
        },
    )
    .await;
    let (a, b) = stored();
    assert_eq!(a + b, 200, "each reading stored by exactly one gateway");
    assert!(a > 0 && b > 0, "the broker split the stream: {a} and {b}");
    for (stop, handle) in [(stop_first, first_handle), (stop_second, second_handle)] {
        stop.send(true).unwrap();
        handle.await.unwrap();
    }
    broker.stop().await;
}

/// Publishes a one-reading pack stamped now, as the device, until the
/// early look hands on a reading for `patient`; returns its time.
async fn publish_until_early(
    arrived: &mut tokio::sync::mpsc::Receiver<Vec<bedside_vitals_store::store::NewReading>>,
    port: u16,
    device: &bedside_records::devices::Provisioned,
    patient: uuid::Uuid,
) -> chrono::DateTime<chrono::Utc> {
    let user = &device.device.mqtt_username;
    let topic = format!("bedside/v1/devices/{user}/vitals");
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    loop {
        assert!(
            tokio::time::Instant::now() < deadline,
            "no early reading for the patient within 20 s"
        );
        let t = chrono::Utc::now().timestamp_millis() as f64 / 1000.0;
        let pack = format!(r#"[{{"bt":{t},"n":"heart_rate","u":"/min","v":71}}]"#);
        assert!(publish(port, user, &device.mqtt_password, &topic, &pack).await);
        let until = tokio::time::Instant::now() + Duration::from_millis(500);
        while let Ok(Some(readings)) = tokio::time::timeout_at(until, arrived.recv()).await {
            if let Some(r) = readings.iter().find(|r| r.patient_id == patient) {
                return r.time;
            }
        }
    }
}

#[tokio::test]
async fn arriving_readings_reach_the_alert_engine_before_commit_with_their_current_patient() {
    let (db, _) = fresh_database().await;
    bedside_vitals_store::partitions::maintain(
        &db,
        chrono::Utc::now(),
        chrono::Duration::days(365),
        chrono::Duration::days(14),
    )
    .await
    .expect("partitions");
    let (first, device) = patient_with_oximeter(&db, "GW-EARLY-1", "OX-GW-EARLY").await;
    let (second, _) = patient_with_oximeter(&db, "GW-EARLY-2", "OX-GW-EARLY-2").await;
    let broker = Broker::for_registry(&db, None).await;
    // Batches close only at 10,000 messages or after ten minutes: nothing
    // commits during the test, so whatever arrives came by the early look.
    let settings = settings(broker.port, 10_000, Duration::from_secs(600));
    let (arrived_tx, mut arrived) = tokio::sync::mpsc::channel(64);
    let (committed_tx, mut committed) = tokio::sync::mpsc::channel(64);
    let (stop, handle, _) = start_with(
        &settings,
        &db,
        gateway::Outlets {
            committed: Some(committed_tx),
            arrived: Some(arrived_tx),
        },
    );
    publish_until_early(&mut arrived, broker.port, &device, first.id.0).await;
    assert_eq!(
        count(&db, "SELECT count(*) FROM vitals").await,
        0,
        "nothing committed yet"
    );

    // The device goes to another patient: the gateway's copy of its
    // assignments is forgotten on the database's notice, and readings are
    // then attributed to the new patient (without the notice they never would).
    bedside_records::devices::assign(&db, device.device.id, second.id)
        .await
        .unwrap();
    let reassigned: chrono::DateTime<chrono::Utc> =
        sqlx::query_scalar("SELECT assigned_from FROM device_assignments WHERE patient_id = $1")
            .bind(second.id.0)
            .fetch_one(&db)
            .await
            .unwrap();
    let time = publish_until_early(&mut arrived, broker.port, &device, second.id.0).await;
    assert!(time >= reassigned);
    assert_eq!(
        count(&db, "SELECT count(*) FROM vitals").await,
        0,
        "still nothing committed"
    );

    // Stopping flushes the batch: the stored rows follow the stored assignments.
    stop.send(true).unwrap();
    handle.await.unwrap();
    let batch = committed.recv().await.expect("the flushed batch");
    assert!(!batch.readings.is_empty());
    let misattributed: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM vitals v JOIN device_assignments a ON a.device_id = v.device_id
         AND v.time >= a.assigned_from AND (a.assigned_to IS NULL OR v.time < a.assigned_to)
         WHERE v.patient_id <> a.patient_id",
    )
    .fetch_one(&db)
    .await
    .unwrap();
    assert_eq!(misattributed, 0);
    broker.stop().await;
}

#[tokio::test]
async fn an_mqtt5_gateway_keeps_its_session_and_loses_nothing_while_away() {
    let (db, _) = fresh_database().await;
    let (device, packs) = ingest_fixture(&db, "GW-V5", 40).await;
    let broker = Broker::for_registry(&db, None).await;
    let mut v5 = settings(broker.port, 10, Duration::from_millis(20));
    v5.protocol = Protocol::V5;
    let (stop, handle, _) = start(&v5, &db);
    deliver(&db, broker.port, &device, &packs[..20]).await;
    stop.send(true).unwrap();
    handle.await.unwrap();
    // Away: the broker queues for the session (MQTT 5 sessions end at
    // disconnect unless given an expiry; the gateway asks for none).
    let topic = format!("bedside/v1/devices/{}/vitals", device.device.mqtt_username);
    assert!(
        publish_lines(
            broker.port,
            &device.device.mqtt_username,
            &device.mqtt_password,
            &topic,
            &packs[20..]
        )
        .await
    );
    let (stop, handle, _) = start(&v5, &db);
    wait_for_rows(
        &db,
        40,
        "the packs sent while away",
        Duration::from_secs(20),
    )
    .await;
    stop.send(true).unwrap();
    handle.await.unwrap();
    assert_eq!(
        count(&db, "SELECT count(*) FROM vitals").await,
        40,
        "nothing twice"
    );
    broker.stop().await;
}

#[tokio::test]
async fn a_broker_restart_loses_nothing_and_the_gateway_reconnects_by_itself() {
    let (db, _) = fresh_database().await;
    let (device, packs) = ingest_fixture(&db, "GW-RESTART", 60).await;
    let mut broker = Broker::shipped(&db).await;
    let settings = settings(broker.port, 10, Duration::from_millis(20));
    let (stop, handle, health) = start(&settings, &db);
    deliver(&db, broker.port, &device, &packs[..20]).await;
    let (user, password) = (&device.device.mqtt_username, &device.mqtt_password);
    let topic = format!("bedside/v1/devices/{user}/vitals");

    // The gateway is away while devices publish; the broker restarts (as a
    // service manager restarts it) with those readings queued for the
    // gateway's persistent session.
    stop.send(true).unwrap();
    handle.await.unwrap();
    assert!(publish_lines(broker.port, user, password, &topic, &packs[20..40]).await);
    broker.restart().await;
    let (stop, handle, health_again) = start(&settings, &db);
    wait_for_rows(
        &db,
        40,
        "the readings queued across the restart",
        Duration::from_secs(20),
    )
    .await;
    drop(health);

    // The broker restarts under a connected gateway: it notices, reconnects
    // with backoff by itself, and what devices send next is stored.
    broker.restart().await;
    wait_for("the gateway to reconnect", Duration::from_secs(30), || {
        let (db, health, packs, topic) = (
            db.clone(),
            health_again.clone(),
            packs.clone(),
            topic.clone(),
        );
        let (user, password) = (user.clone(), password.clone());
        let port = broker.port;
        async move {
            if !health.is_connected() {
                return None;
            }
            assert!(publish_lines(port, &user, &password, &topic, &packs[40..]).await);
            (count(&db, "SELECT count(*) FROM vitals").await == 60).then_some(())
        }
    })
    .await;
    stop.send(true).unwrap();
    handle.await.unwrap();
    assert_eq!(
        count(&db, "SELECT count(*) FROM vitals").await,
        60,
        "nothing lost, nothing twice"
    );
    broker.stop().await;
}

#[tokio::test]
async fn a_gateway_killed_after_commit_but_before_ack_stores_nothing_twice_on_redelivery() {
    let (db, url) = fresh_database().await;
    let (device, packs) = ingest_fixture(&db, "GW-CRASH", 30).await;
    let broker = Broker::for_registry(&db, None).await;
    let mut settings = settings(broker.port, 5, Duration::from_millis(20));
    settings.concurrent_batches = 1;

    // The gateway that will crash runs in a runtime of its own, with its own
    // pool, so that dropping the runtime ends it the way a killed process
    // ends: no drain, no acknowledgement, the broker connection just gone.
    // Its committed-batch outlet holds one batch and is never read: the
    // gateway acknowledges a batch only after handing it on, so from the
    // second batch on, batches commit and then wait, unacknowledged.
    let crashing = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    let (committed_tx, committed_rx) = tokio::sync::mpsc::channel(1);
    {
        let (settings, url) = (settings.clone(), url.clone());
        crashing.spawn(async move {
            let pool = sqlx::PgPool::connect(&url).await.unwrap();
            let (_stop, stopped) = watch::channel(false);
            gateway::run(
                settings,
                pool,
                Health::default(),
                stopped,
                gateway::Outlets {
                    committed: Some(committed_tx),
                    arrived: None,
                },
            )
            .await;
        });
    }
    let (user, password) = (&device.device.mqtt_username, &device.mqtt_password);
    let topic = format!("bedside/v1/devices/{user}/vitals");
    // The device's retained `online` reaches the gateway once it has
    // subscribed: that status change is the first batch handed on (and
    // acknowledged); everything after it is published to a live session.
    let status = format!("bedside/v1/devices/{user}/status");
    assert!(publish_retained(broker.port, user, password, &status, "online").await);
    wait_for("the gateway to subscribe", Duration::from_secs(20), || {
        let db = db.clone();
        async move { (count(&db, "SELECT count(*) FROM device_status").await == 1).then_some(()) }
    })
    .await;
    assert!(publish_lines(broker.port, user, password, &topic, &packs).await);
    // A batch of readings commits and waits to be handed on, unacknowledged;
    // the rest waits behind it.
    wait_for(
        "a committed batch of readings",
        Duration::from_secs(20),
        || {
            let db = db.clone();
            async move { (count(&db, "SELECT count(*) FROM vitals").await >= 1).then_some(()) }
        },
    )
    .await;
    let committed_before_the_crash = count(&db, "SELECT count(*) FROM vitals").await;
    assert!(
        (1..30).contains(&committed_before_the_crash),
        "{committed_before_the_crash}"
    );
    crashing.shutdown_background();
    drop(committed_rx);

    // A new gateway with the same client id resumes the session: the broker
    // redelivers what was never acknowledged, and the unique key absorbs it.
    let (stop, handle, _) = start(&settings, &db);
    wait_for_rows(&db, 30, "every reading", Duration::from_secs(20)).await;
    stop.send(true).unwrap();
    handle.await.unwrap();
    assert_eq!(
        count(&db, "SELECT count(*) FROM vitals").await,
        30,
        "nothing stored twice"
    );
    assert_eq!(
        settings.metrics.readings_stored.get(),
        30,
        "each reading a new row once"
    );
    assert!(
        settings.metrics.readings_duplicate.get() >= 1,
        "the committed, unacknowledged batch was redelivered and absorbed"
    );
    broker.stop().await;
}
