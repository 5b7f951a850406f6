//! Simulated home devices for the demo: each a real MQTT client publishing
//! SenML through the broker with its own credentials, as a device would.
//!
//! Most patients are stable (small variation around healthy values). The
//! first patient deteriorates so that NEWS2 climbs into the high band over
//! about three minutes; one device drops off the network after a while
//! (it just disappears, so the broker publishes its last will, `offline`).
//! `bedside demo` writes the devices' credentials to
//! `<data_dir>/demo-devices.json` (mode 0600) for this command only.

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::Context as _;
use rumqttc::{AsyncClient, LastWill, MqttOptions, QoS};
use serde::{Deserialize, Serialize};
use tokio::sync::watch;

use crate::config::{Config, mqtt_endpoint};

/// One simulated device's identity.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SimDevice {
    /// Device id (also its MQTT username).
    pub device_id: String,
    /// `pulse_oximeter`, `blood_pressure_monitor`, `thermometer` or `scale`.
    pub kind: String,
    /// Its MQTT password.
    pub password: String,
    /// Which demo patient (0 deteriorates).
    pub patient_index: usize,
}

/// Where `demo` keeps the simulated devices' credentials.
pub fn credentials_file(config: &Config) -> PathBuf {
    config.data_dir.join("demo-devices.json")
}

/// Writes the credentials file (0600).
///
/// # Errors
/// When the file cannot be written.
pub fn save(path: &Path, devices: &[SimDevice]) -> anyhow::Result<()> {
    use std::io::Write as _;
    use std::os::unix::fs::OpenOptionsExt as _;
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)?;
    file.write_all(serde_json::to_string_pretty(devices)?.as_bytes())?;
    Ok(())
}

/// The readings a device sends at `t` seconds into the simulation, as a SenML pack.
pub fn pack(device: &SimDevice, t: f64) -> Option<String> {
    // Deterioration of patient 0 over 180 s; gentle variation for everyone.
    let f = if device.patient_index == 0 {
        (t / 180.0).clamp(0.0, 1.0)
    } else {
        0.0
    };
    let wobble = ((t / 7.0) + device.patient_index as f64).sin();
    let now = chrono::Utc::now().timestamp_millis() as f64 / 1000.0;
    let records = match device.kind.as_str() {
        "pulse_oximeter" => vec![
            ("heart_rate", "/min", 76.0 + 49.0 * f + 3.0 * wobble),
            ("spo2", "%", (97.0 - 11.0 * f + 0.6 * wobble).min(100.0)),
            ("respiratory_rate", "/min", 16.0 + 11.0 * f + wobble),
        ],
        "blood_pressure_monitor" => vec![
            ("systolic_bp", "mm[Hg]", 124.0 - 30.0 * f + 4.0 * wobble),
            ("diastolic_bp", "mm[Hg]", 79.0 + 2.0 * wobble),
            ("heart_rate", "/min", 74.0 + 3.0 * wobble),
        ],
        "thermometer" => vec![("body_temperature", "Cel", 36.9 + 1.9 * f + 0.1 * wobble)],
        "scale" => vec![("body_weight", "kg", 71.5 + 0.2 * wobble)],
        _ => return None,
    };
    // Each device also reports its battery, draining slowly from a level of
    // its own (the first device of each patient starts lowest).
    let battery = (92.0 - 12.0 * device.patient_index as f64 - t / 600.0).clamp(8.0, 100.0);
    let mut records = records;
    records.push(("battery", "%EL", battery));
    let body: Vec<String> = records
        .iter()
        .enumerate()
        .map(|(i, (n, u, v))| {
            if i == 0 {
                format!(r#"{{"bt":{now:.3},"n":"{n}","u":"{u}","v":{:.1}}}"#, v)
            } else {
                format!(r#"{{"n":"{n}","u":"{u}","v":{:.1}}}"#, v)
            }
        })
        .collect();
    Some(format!("[{}]", body.join(",")))
}

/// Runs every simulated device until `shutdown`.
///
/// # Errors
/// When the credentials file is missing (run `bedside demo` first) or the broker URL is invalid.
pub async fn run(
    config: &Config,
    every: Duration,
    mut shutdown: watch::Receiver<bool>,
) -> anyhow::Result<()> {
    let path = credentials_file(config);
    let devices: Vec<SimDevice> =
        serde_json::from_str(&std::fs::read_to_string(&path).with_context(|| {
            format!(
                "no simulated devices in {}: run `bedside demo` on a fresh database first",
                path.display()
            )
        })?)?;
    let endpoint = mqtt_endpoint(&config.mqtt.url)?;
    let (host, port) = (endpoint.host, endpoint.port);
    let tls = config.mqtt_tls()?;
    // The last blood-pressure cuff drops off the network after 90 s.
    let dropping = devices
        .iter()
        .rposition(|d| d.kind == "blood_pressure_monitor");
    let mut tasks = Vec::new();
    for (i, device) in devices.into_iter().enumerate() {
        let (host, stop) = (host.clone(), shutdown.clone());
        let drop_after = (Some(i) == dropping).then_some(Duration::from_secs(90));
        tasks.push(tokio::spawn(simulate_device(
            device,
            (host, port, tls.clone()),
            every,
            drop_after,
            stop,
        )));
    }
    println!("simulating {} devices against {}:{port}", tasks.len(), host);
    let _ = shutdown.wait_for(|s| *s).await;
    for task in tasks {
        task.abort();
    }
    Ok(())
}

async fn simulate_device(
    device: SimDevice,
    (host, port, tls): (String, u16, Option<std::sync::Arc<rustls::ClientConfig>>),
    every: Duration,
    drop_after: Option<Duration>,
    mut stop: watch::Receiver<bool>,
) {
    let status = format!("bedside/v1/devices/{}/status", device.device_id);
    let topic = format!("bedside/v1/devices/{}/vitals", device.device_id);
    let mut options = MqttOptions::new(format!("sim-{}", device.device_id), host, port);
    options
        .set_credentials(&device.device_id, &device.password)
        .set_keep_alive(Duration::from_secs(15))
        .set_last_will(LastWill::new(&status, "offline", QoS::AtLeastOnce, true));
    if let Some(tls) = tls {
        options.set_transport(rumqttc::Transport::tls_with_config(
            rumqttc::TlsConfiguration::Rustls(tls),
        ));
    }
    let (client, mut eventloop) = AsyncClient::new(options, 16);
    let poller = tokio::spawn(async move {
        loop {
            if eventloop.poll().await.is_err() {
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
        }
    });
    let _ = client
        .publish(&status, QoS::AtLeastOnce, true, "online")
        .await;
    let started = tokio::time::Instant::now();
    let mut tick = tokio::time::interval(every);
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = stop.wait_for(|s| *s) => break,
        }
        let elapsed = started.elapsed();
        if drop_after.is_some_and(|d| elapsed >= d) {
            // Vanish without DISCONNECT: the broker announces the last will.
            poller.abort();
            return;
        }
        if let Some(payload) = pack(&device, elapsed.as_secs_f64()) {
            let _ = client
                .publish(&topic, QoS::AtLeastOnce, false, payload)
                .await;
        }
    }
    let _ = client.disconnect().await;
    poller.abort();
}

#[cfg(test)]
mod tests {
    use super::*;

    fn device(kind: &str, patient_index: usize) -> SimDevice {
        SimDevice {
            device_id: "d".into(),
            kind: kind.into(),
            password: "p".into(),
            patient_index,
        }
    }

    #[test]
    fn the_deteriorating_patient_reaches_news2_high_within_three_minutes() {
        use bedside_vitals_store::metric::Metric;
        let now = chrono::Utc::now();
        let mut obs = Vec::new();
        for d in [device("pulse_oximeter", 0), device("thermometer", 0)] {
            let pack = pack(&d, 180.0).unwrap();
            let decoded = bedside_device_gateway::senml::decode(
                pack.as_bytes(),
                bedside_device_gateway::senml::Format::Json,
                now,
                &Default::default(),
            )
            .unwrap();
            assert!(decoded.rejections.is_empty(), "{:?}", decoded.rejections);
            assert!(
                decoded.battery.is_some(),
                "every device reports its battery"
            );
            obs.extend(decoded.readings.into_iter().map(|r| {
                bedside_vitals_store::queries::Latest {
                    metric: r.metric,
                    time: r.time,
                    value: r.value,
                    device_id: uuid::Uuid::nil(),
                }
            }));
        }
        let score = bedside_alerts::news2::score(
            &bedside_alerts::engine::observations(&obs),
            bedside_alerts::news2::SpO2Scale::Scale1,
        );
        assert_eq!(
            score.band,
            bedside_alerts::news2::RiskBand::High,
            "{score:?}"
        );
        assert!(obs.iter().any(|l| l.metric == Metric::Spo2));
        // A stable patient stays low.
        let stable = pack(&device("pulse_oximeter", 3), 180.0).unwrap();
        let decoded = bedside_device_gateway::senml::decode(
            stable.as_bytes(),
            bedside_device_gateway::senml::Format::Json,
            now,
            &Default::default(),
        )
        .unwrap();
        let latest: Vec<_> = decoded
            .readings
            .into_iter()
            .map(|r| bedside_vitals_store::queries::Latest {
                metric: r.metric,
                time: r.time,
                value: r.value,
                device_id: uuid::Uuid::nil(),
            })
            .collect();
        let score = bedside_alerts::news2::score(
            &bedside_alerts::engine::observations(&latest),
            bedside_alerts::news2::SpO2Scale::Scale1,
        );
        assert_eq!(score.total, 0);
    }
}
