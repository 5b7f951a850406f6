//! The alert engine against PostgreSQL: a breach opens one alert (never a
//! duplicate), a worse value escalates it, a clinician acknowledges it, a
//! normal value resolves it; NEWS2 rises to the high band; overrides win
//! over clinic defaults; every transition is a numbered event.

use bedside_alerts::engine::{self, EngineSettings};
use bedside_test_support::fresh_database;
use bedside_vitals_store::alerts as store;
use bedside_vitals_store::metric::Metric;
use bedside_vitals_store::partitions;
use bedside_vitals_store::store::{NewReading, insert_batch};
use chrono::{Duration, Utc};
use sqlx::PgPool;
use uuid::Uuid;

/// Stores one reading of each of `values`, taken `seconds_ago`.
async fn store_readings(
    db: &PgPool,
    patient: Uuid,
    device: Uuid,
    values: &[(Metric, f64)],
    seconds_ago: i64,
) -> Vec<NewReading> {
    let time = Utc::now() - Duration::seconds(seconds_ago);
    let readings: Vec<NewReading> = values
        .iter()
        .map(|(metric, value)| NewReading {
            time,
            device_id: device,
            metric: *metric,
            patient_id: patient,
            value: *value,
        })
        .collect();
    insert_batch(db, &readings).await.expect("insert");
    readings
}

/// Stores readings and evaluates them with nothing held beforehand.
async fn ingest(
    db: &PgPool,
    patient: Uuid,
    device: Uuid,
    values: &[(Metric, f64)],
    seconds_ago: i64,
) -> Vec<String> {
    let readings = store_readings(db, patient, device, values, seconds_ago).await;
    engine::on_readings(db, &EngineSettings::default(), &readings)
        .await
        .expect("evaluate")
        .into_iter()
        .map(|t| t.event.kind)
        .collect()
}

#[tokio::test]
async fn a_threshold_alert_opens_once_escalates_is_acknowledged_and_resolves() {
    let (db, _) = fresh_database().await;
    partitions::maintain(&db, Utc::now(), Duration::days(30), Duration::days(7))
        .await
        .unwrap();
    let (patient, device, clinician) = (Uuid::new_v4(), Uuid::new_v4(), Uuid::new_v4());
    assert!(
        ingest(&db, patient, device, &[(Metric::Spo2, 97.0)], 50)
            .await
            .is_empty()
    );
    // 88 % breaches the clinic default (90) and is a red NEWS2 parameter.
    let kinds = ingest(&db, patient, device, &[(Metric::Spo2, 88.0)], 40).await;
    assert_eq!(kinds, vec!["opened", "opened"], "threshold:spo2 and news2");
    let live = store::live_for_patients(&db, &[patient]).await.unwrap();
    assert_eq!(live.len(), 2);
    // Still low: no duplicate.
    assert!(
        ingest(&db, patient, device, &[(Metric::Spo2, 87.0)], 30)
            .await
            .is_empty()
    );
    let spo2 = live.iter().find(|a| a.rule == "threshold:spo2").unwrap();
    let ack = store::acknowledge(&db, spo2.id, clinician)
        .await
        .unwrap()
        .expect("acknowledged");
    assert_eq!(ack.event.kind, "acknowledged");
    assert!(
        store::acknowledge(&db, spo2.id, clinician)
            .await
            .unwrap()
            .is_none(),
        "only open alerts are acknowledged"
    );
    // Back to normal: both resolve automatically.
    let kinds = ingest(&db, patient, device, &[(Metric::Spo2, 96.0)], 20).await;
    assert_eq!(kinds, vec!["resolved", "resolved"]);
    assert!(
        store::live_for_patients(&db, &[patient])
            .await
            .unwrap()
            .is_empty()
    );
    let resolved = store::get(&db, spo2.id).await.unwrap().unwrap();
    assert_eq!(
        (resolved.status.as_str(), resolved.resolved_by),
        ("resolved", None)
    );
    // Events are numbered in order and replayable from any point.
    let events = store::events_since(&db, 0, &[patient]).await.unwrap();
    assert_eq!(events.len(), 5);
    assert!(events.windows(2).all(|w| w[0].seq < w[1].seq));
    assert_eq!(
        store::events_since(&db, events[2].seq, &[patient])
            .await
            .unwrap()
            .len(),
        2
    );
}

#[tokio::test]
async fn news2_escalates_through_the_bands_and_overrides_beat_defaults() {
    let (db, _) = fresh_database().await;
    partitions::maintain(&db, Utc::now(), Duration::days(30), Duration::days(7))
        .await
        .unwrap();
    let (patient, device) = (Uuid::new_v4(), Uuid::new_v4());
    let healthy = [
        (Metric::RespiratoryRate, 16.0),
        (Metric::Spo2, 97.0),
        (Metric::SupplementalOxygen, 0.0),
        (Metric::SystolicBp, 125.0),
        (Metric::HeartRate, 72.0),
        (Metric::Consciousness, 0.0),
        (Metric::BodyTemperature, 36.8),
    ];
    assert!(ingest(&db, patient, device, &healthy, 60).await.is_empty());
    // Pulse 115 (2) + temperature 38.5 (1) + SpO2 95 (1) = 4: still low.
    assert!(
        ingest(
            &db,
            patient,
            device,
            &[
                (Metric::HeartRate, 115.0),
                (Metric::BodyTemperature, 38.5),
                (Metric::Spo2, 95.0)
            ],
            50
        )
        .await
        .is_empty()
    );
    // RR 22 (2) makes 6: medium → a high-severity NEWS2 alert.
    assert_eq!(
        ingest(&db, patient, device, &[(Metric::RespiratoryRate, 22.0)], 40).await,
        vec!["opened"]
    );
    // RR 26 (3) makes 7: high band → escalated to critical (and a threshold alert on RR).
    let kinds = ingest(&db, patient, device, &[(Metric::RespiratoryRate, 26.0)], 30).await;
    assert!(kinds.contains(&"escalated".to_owned()), "{kinds:?}");
    let news2 = store::live_for_patients(&db, &[patient])
        .await
        .unwrap()
        .into_iter()
        .find(|a| a.rule == "news2")
        .unwrap();
    assert_eq!(news2.severity, "critical");
    assert_eq!(news2.detail["news2"], 7);

    // A clinician allows this patient a resting heart rate up to 140.
    store::set_threshold(
        &db,
        patient,
        "heart_rate",
        Some(40.0),
        Some(140.0),
        Uuid::new_v4(),
    )
    .await
    .unwrap();
    let kinds = ingest(&db, patient, device, &[(Metric::HeartRate, 135.0)], 20).await;
    assert!(
        !store::live_for_patients(&db, &[patient])
            .await
            .unwrap()
            .iter()
            .any(|a| a.rule == "threshold:heart_rate"),
        "{kinds:?}"
    );
}

#[tokio::test]
async fn the_rest_api_serves_latest_values_history_news2_and_thresholds() {
    use bedside_test_support::{TestApp, World};
    use reqwest::Method;
    use serde_json::{Value, json};

    let app = TestApp::spawn().await;
    let w = World::seed(&app).await;
    partitions::maintain(&app.db, Utc::now(), Duration::days(30), Duration::days(7))
        .await
        .unwrap();
    let device = Uuid::new_v4();
    ingest(
        &app.db,
        w.patient_a.0,
        device,
        &[(Metric::HeartRate, 70.0), (Metric::RespiratoryRate, 26.0)],
        120,
    )
    .await;
    ingest(
        &app.db,
        w.patient_a.0,
        device,
        &[(Metric::HeartRate, 80.0)],
        60,
    )
    .await;
    let get = |path: String| {
        let (app, token) = (&app, w.clinician_a.token.clone());
        async move {
            crate::support::json(
                crate::support::send(app, Method::GET, &path, Some(&token), None).await,
            )
            .await
        }
    };
    let base = format!("/api/v1/patients/{}", w.patient_a);
    let latest: Vec<Value> =
        serde_json::from_value(get(format!("{base}/vitals/latest")).await).unwrap();
    let hr = latest.iter().find(|v| v["metric"] == "heart_rate").unwrap();
    assert_eq!(
        (hr["value"].as_f64(), hr["unit"].as_str()),
        (Some(80.0), Some("/min"))
    );
    let history = get(format!("{base}/vitals/heart_rate?view=1h")).await;
    let buckets = history["buckets"].as_array().unwrap();
    assert_eq!(
        buckets
            .iter()
            .map(|b| b["count"].as_i64().unwrap())
            .sum::<i64>(),
        2
    );
    assert_eq!(history["view"], "1h");
    let news2 = get(format!("{base}/news2")).await;
    assert_eq!(
        news2["total"], 3,
        "RR 26 scores 3; pulse 80 scores 0: {news2}"
    );
    assert_eq!(news2["band"], "low_medium");
    let thresholds: Vec<Value> =
        serde_json::from_value(get(format!("{base}/thresholds")).await).unwrap();
    assert!(
        thresholds
            .iter()
            .any(|t| t["metric"] == "heart_rate" && t["source"] == "clinic" && t["high"] == 130.0)
    );
    let set = crate::support::send(
        &app,
        Method::PUT,
        &format!("{base}/thresholds/heart_rate"),
        Some(&w.clinician_a.token),
        Some(&json!({"low": 45, "high": 140})),
    )
    .await;
    assert_eq!(set.status(), reqwest::StatusCode::NO_CONTENT);
    let thresholds: Vec<Value> =
        serde_json::from_value(get(format!("{base}/thresholds")).await).unwrap();
    assert!(
        thresholds
            .iter()
            .any(|t| t["metric"] == "heart_rate" && t["source"] == "patient" && t["high"] == 140.0)
    );
    let alerts: Vec<Value> = serde_json::from_value(get(format!("{base}/alerts")).await).unwrap();
    let rr = alerts
        .iter()
        .find(|a| a["rule"] == "threshold:respiratory_rate")
        .expect("the RR alert");
    let ack = crate::support::send(
        &app,
        Method::POST,
        &format!("/api/v1/alerts/{}/acknowledge", rr["id"].as_str().unwrap()),
        Some(&w.clinician_a.token),
        None,
    )
    .await;
    assert_eq!(ack.status(), reqwest::StatusCode::OK);
    assert_eq!(crate::support::json(ack).await["status"], "acknowledged");
}

#[tokio::test]
async fn alerts_nobody_acknowledges_escalate_step_by_step_until_critical() {
    let (db, _) = fresh_database().await;
    partitions::maintain(&db, Utc::now(), Duration::days(30), Duration::days(7))
        .await
        .unwrap();
    let (taken, ignored, device) = (Uuid::new_v4(), Uuid::new_v4(), Uuid::new_v4());
    ingest(&db, taken, device, &[(Metric::Glucose, 300.0)], 30).await;
    ingest(
        &db,
        ignored,
        Uuid::new_v4(),
        &[(Metric::Glucose, 300.0)],
        30,
    )
    .await;
    let taken_alert = store::live_for_patients(&db, &[taken])
        .await
        .unwrap()
        .remove(0);
    store::acknowledge(&db, taken_alert.id, Uuid::new_v4())
        .await
        .unwrap();
    // Not yet: the alerts changed less than a minute ago.
    assert!(
        engine::escalate_unacknowledged(&db, Duration::minutes(1))
            .await
            .unwrap()
            .is_empty()
    );
    let escalated = engine::escalate_unacknowledged(&db, Duration::zero())
        .await
        .unwrap();
    assert_eq!(escalated.len(), 1, "only the unacknowledged one");
    assert_eq!(
        (
            escalated[0].event.kind.as_str(),
            escalated[0].event.severity.as_str()
        ),
        ("escalated", "critical")
    );
    assert!(
        engine::escalate_unacknowledged(&db, Duration::zero())
            .await
            .unwrap()
            .is_empty(),
        "nothing above critical"
    );
    let alert = store::live_for_patients(&db, &[ignored])
        .await
        .unwrap()
        .remove(0);
    assert_eq!(alert.detail["escalated_because"], "unacknowledged");
}

/// The next order from the listener, within a deadline.
async fn next_order(
    forget: &mut tokio::sync::mpsc::UnboundedReceiver<bedside_vitals_store::changes::Forget>,
) -> bedside_vitals_store::changes::Forget {
    tokio::time::timeout(std::time::Duration::from_secs(10), forget.recv())
        .await
        .expect("a notice within 10 s")
        .expect("the listener runs")
}

#[tokio::test]
async fn a_long_lived_evaluator_follows_a_clinicians_threshold_and_spo2_scale_at_once() {
    use bedside_vitals_store::changes::{self, Forget};
    let (db, _) = fresh_database().await;
    partitions::maintain(&db, Utc::now(), Duration::days(30), Duration::days(7))
        .await
        .unwrap();
    let (patient, device, clinician) = (Uuid::new_v4(), Uuid::new_v4(), Uuid::new_v4());
    let mut forget = changes::listen(db.clone(), changes::ALERT_INPUTS);
    assert_eq!(next_order(&mut forget).await, Forget::All, "listening");
    let mut evaluator = engine::Evaluator::new(EngineSettings::default());
    let mut at = 60;
    let mut judge = async |evaluator: &mut engine::Evaluator, values: &[(Metric, f64)]| {
        at -= 1;
        let readings = store_readings(&db, patient, device, values, at).await;
        evaluator
            .evaluate(&db, &readings, engine::Source::Stored)
            .await
            .unwrap()
            .transitions
            .into_iter()
            .map(|t| (t.alert.rule, t.event.kind))
            .collect::<Vec<_>>()
    };
    // 120 /min is inside the clinic default (40–130): nothing.
    assert!(
        judge(&mut evaluator, &[(Metric::HeartRate, 120.0)])
            .await
            .is_empty()
    );
    assert_eq!(
        evaluator.patients_held(),
        1,
        "the patient's inputs are held"
    );

    // The clinician lowers the limit to 110: the held copy is forgotten on
    // the notice, and the same value now opens an alert.
    store::set_threshold(&db, patient, "heart_rate", None, Some(110.0), clinician)
        .await
        .unwrap();
    let order = next_order(&mut forget).await;
    assert_eq!(order, Forget::One(patient));
    evaluator.forget(order);
    assert_eq!(
        judge(&mut evaluator, &[(Metric::HeartRate, 120.0)]).await,
        vec![("threshold:heart_rate".to_owned(), "opened".to_owned())]
    );

    // SpO2 89 % on air: scale 1 scores 3 (a red parameter), so NEWS2 opens.
    let kinds = judge(&mut evaluator, &[(Metric::Spo2, 89.0)]).await;
    assert!(
        kinds.contains(&("news2".to_owned(), "opened".to_owned())),
        "{kinds:?}"
    );
    // The patient has hypercapnic respiratory failure: on scale 2, 89 % is
    // on target and scores 0, so the next reading resolves the NEWS2 alert.
    store::set_spo2_scale(&db, patient, 2, clinician)
        .await
        .unwrap();
    let order = next_order(&mut forget).await;
    assert_eq!(order, Forget::One(patient));
    evaluator.forget(order);
    let kinds = judge(&mut evaluator, &[(Metric::Spo2, 89.0)]).await;
    assert!(
        kinds.contains(&("news2".to_owned(), "resolved".to_owned())),
        "{kinds:?}"
    );
    let resolved = sqlx::query_scalar::<_, serde_json::Value>(
        "SELECT detail FROM alerts WHERE patient_id = $1 AND rule = 'news2'",
    )
    .bind(patient)
    .fetch_one(&db)
    .await
    .unwrap();
    assert_eq!(
        resolved["spo2_scale"], 1,
        "the alert records the scale it was scored on"
    );
}

#[tokio::test]
async fn a_reading_judged_on_arrival_never_alerts_a_patient_it_did_not_belong_to() {
    use bedside_records::domain::{DeviceKind, Serial};
    let (db, _) = fresh_database().await;
    partitions::maintain(&db, Utc::now(), Duration::days(30), Duration::days(7))
        .await
        .unwrap();
    let before = crate::support::new_patient(&db, "EV-1").await.id;
    let after = crate::support::new_patient(&db, "EV-2").await.id;
    let device = bedside_records::devices::provision(
        &db,
        &Serial::parse("OX-EVIDENCE").unwrap(),
        DeviceKind::PulseOximeter,
        Some(before),
    )
    .await
    .unwrap()
    .device
    .id;
    // The oximeter moves to another patient; the gateway's copy of the
    // assignments has not heard yet and attributes a reading to the first.
    bedside_records::devices::assign(&db, device, after)
        .await
        .unwrap();
    let arrived = |patient: bedside_records::ids::PatientId| NewReading {
        time: Utc::now(),
        device_id: device.0,
        metric: Metric::Spo2,
        patient_id: patient.0,
        value: 80.0,
    };
    let mut evaluator = engine::Evaluator::new(EngineSettings::default());
    let misattributed = evaluator
        .evaluate(&db, &[arrived(before)], engine::Source::Arrived)
        .await
        .unwrap();
    assert!(misattributed.transitions.is_empty(), "{misattributed:?}");
    assert!(
        store::live_for_patients(&db, &[before.0])
            .await
            .unwrap()
            .is_empty(),
        "no alert for the device's previous patient"
    );
    // Attributed to the patient who has the device, the same reading alerts.
    let rightful = evaluator
        .evaluate(&db, &[arrived(after)], engine::Source::Arrived)
        .await
        .unwrap();
    let rules: Vec<&str> = rightful
        .transitions
        .iter()
        .map(|t| t.alert.rule.as_str())
        .collect();
    assert!(rules.contains(&"threshold:spo2"), "{rules:?}");
}
