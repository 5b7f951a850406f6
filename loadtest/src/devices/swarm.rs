//! The simulated devices: each its own MQTT connection with its own
//! credentials (as a real home device has), publishing QoS 1 SenML packs
//! of two readings on a fixed schedule.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::bail;
use rumqttc::{AsyncClient, Event, MqttOptions, Packet, QoS};
use tokio::task::JoinHandle;
use tokio::time::Instant;
use uuid::Uuid;

use super::seed::SeededDevice;

/// SpO2 of an alert probe: below the clinic default low threshold (90 %).
pub(crate) const PROBE_SPO2: f64 = 86.0;

/// One connected device.
pub(crate) struct Device {
    pub(crate) seeded: SeededDevice,
    client: AsyncClient,
    topic: String,
    /// Packs handed to the client.
    pub(crate) sent: AtomicU64,
    /// Packs the broker acknowledged (PUBACK).
    pub(crate) acked: AtomicU64,
    connected: AtomicBool,
    /// Last reading time used (ms since the epoch): times stay unique per device.
    last_time_ms: AtomicU64,
}

/// The whole swarm and its event-loop tasks.
pub(crate) struct Swarm {
    pub(crate) devices: Vec<Arc<Device>>,
    loops: Vec<JoinHandle<()>>,
    /// Connection failures seen after the first connection (reconnects).
    pub(crate) connection_errors: Arc<AtomicUsize>,
}

/// What the publishers share with the observers.
#[derive(Default)]
pub(crate) struct Observations {
    /// Alert probes in flight: patient → when the out-of-range reading was published.
    pub(crate) alert_probes: Mutex<HashMap<Uuid, Instant>>,
    /// Alert probes injected.
    pub(crate) probes_injected: AtomicUsize,
}

impl Swarm {
    /// Connects every device, `per_second` new connections a second, and
    /// waits (up to `deadline`) until all are connected.
    pub(crate) async fn connect(
        seeded: Vec<SeededDevice>,
        host: &str,
        port: u16,
        per_second: usize,
        deadline: Duration,
    ) -> anyhow::Result<Self> {
        let connected = Arc::new(AtomicUsize::new(0));
        let connection_errors = Arc::new(AtomicUsize::new(0));
        let total = seeded.len();
        let mut devices = Vec::with_capacity(total);
        let mut loops = Vec::with_capacity(total);
        let pace = Duration::from_secs_f64(1.0 / per_second.max(1) as f64);
        let started = Instant::now();
        for (i, seeded) in seeded.into_iter().enumerate() {
            let id = seeded.device_id.to_string();
            let mut options = MqttOptions::new(format!("loadtest-{id}"), host, port);
            options
                .set_credentials(&id, &seeded.password)
                .set_keep_alive(Duration::from_secs(60))
                .set_clean_session(true)
                .set_inflight(16);
            let (client, mut eventloop) = AsyncClient::new(options, 16);
            let device = Arc::new(Device {
                topic: format!("bedside/v1/devices/{id}/vitals"),
                seeded,
                client,
                sent: AtomicU64::new(0),
                acked: AtomicU64::new(0),
                connected: AtomicBool::new(false),
                last_time_ms: AtomicU64::new(0),
            });
            let (me, connected, errors) =
                (device.clone(), connected.clone(), connection_errors.clone());
            loops.push(tokio::spawn(async move {
                let mut ever = false;
                loop {
                    match eventloop.poll().await {
                        Ok(Event::Incoming(Packet::ConnAck(_))) => {
                            if !me.connected.swap(true, Ordering::Relaxed) && !ever {
                                connected.fetch_add(1, Ordering::Relaxed);
                            }
                            ever = true;
                        }
                        Ok(Event::Incoming(Packet::PubAck(_))) => {
                            me.acked.fetch_add(1, Ordering::Relaxed);
                        }
                        Ok(_) => {}
                        Err(_) => {
                            me.connected.store(false, Ordering::Relaxed);
                            if ever {
                                errors.fetch_add(1, Ordering::Relaxed);
                            }
                            tokio::time::sleep(Duration::from_millis(500)).await;
                        }
                    }
                }
            }));
            devices.push(device);
            tokio::time::sleep_until(started + pace * (i as u32 + 1)).await;
        }
        let until = Instant::now() + deadline;
        while connected.load(Ordering::Relaxed) < total {
            if Instant::now() > until {
                bail!(
                    "only {} of {total} devices connected within {deadline:?} (broker limits? ulimit -n?)",
                    connected.load(Ordering::Relaxed)
                );
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        Ok(Self {
            devices,
            loops,
            connection_errors,
        })
    }

    /// Every device publishes one pack per `devices / rate` seconds, phases
    /// spread evenly, from `start` until `end`. Every `probe_every`-th pack of
    /// a probe device carries an out-of-range SpO2.
    pub(crate) fn publish(
        &self,
        rate: f64,
        start: Instant,
        end: Instant,
        probe_every: u64,
        observations: Arc<Observations>,
    ) -> Vec<JoinHandle<()>> {
        let n = self.devices.len();
        let period = Duration::from_secs_f64(n as f64 / rate);
        self.devices
            .iter()
            .enumerate()
            .map(|(i, device)| {
                let device = device.clone();
                let observations = observations.clone();
                let first = start + period.mul_f64(i as f64 / n as f64);
                tokio::spawn(async move {
                    let mut ticks = tokio::time::interval_at(first, period);
                    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
                    let mut sequence = 0u64;
                    loop {
                        let at = ticks.tick().await;
                        if at >= end {
                            return;
                        }
                        sequence += 1;
                        let probe = device.seeded.probe && sequence.is_multiple_of(probe_every);
                        let time_ms = device.next_time_ms();
                        let payload = pack(time_ms, sequence, probe);
                        let published = Instant::now();
                        if probe {
                            observations
                                .alert_probes
                                .lock()
                                .expect("probes")
                                .insert(device.seeded.patient_id, published);
                            observations.probes_injected.fetch_add(1, Ordering::Relaxed);
                        }
                        if device
                            .client
                            .publish(&device.topic, QoS::AtLeastOnce, false, payload)
                            .await
                            .is_err()
                        {
                            return; // event loop gone: the run is ending
                        }
                        device.sent.fetch_add(1, Ordering::Relaxed);
                    }
                })
            })
            .collect()
    }

    /// Packs handed to clients and packs the broker acknowledged.
    pub(crate) fn totals(&self) -> (u64, u64) {
        self.devices.iter().fold((0, 0), |(s, a), d| {
            (
                s + d.sent.load(Ordering::Relaxed),
                a + d.acked.load(Ordering::Relaxed),
            )
        })
    }

    /// Disconnects everyone.
    pub(crate) async fn close(self) {
        for device in &self.devices {
            let _ = device.client.try_disconnect();
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
        for task in self.loops {
            task.abort();
        }
    }
}

impl Device {
    fn next_time_ms(&self) -> u64 {
        let now = chrono::Utc::now().timestamp_millis().max(0) as u64;
        let mut last = self.last_time_ms.load(Ordering::Relaxed);
        loop {
            let next = now.max(last + 1);
            match self.last_time_ms.compare_exchange(
                last,
                next,
                Ordering::Relaxed,
                Ordering::Relaxed,
            ) {
                Ok(_) => return next,
                Err(actual) => last = actual,
            }
        }
    }
}

/// A pulse oximeter's SenML pack: heart rate and SpO2 at one time.
pub(crate) fn pack(time_ms: u64, sequence: u64, probe: bool) -> Vec<u8> {
    let heart_rate = 64 + sequence % 20;
    let spo2 = if probe {
        PROBE_SPO2
    } else {
        96.0 + (sequence % 4) as f64
    };
    format!(
        r#"[{{"bn":"","bt":{}.{:03},"n":"heart_rate","u":"/min","v":{heart_rate}}},{{"n":"spo2","u":"%","v":{spo2}}}]"#,
        time_ms / 1000,
        time_ms % 1000
    )
    .into_bytes()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn packs_are_senml_with_two_readings_at_one_time() {
        let pack: serde_json::Value =
            serde_json::from_slice(&pack(1_763_900_000_007, 3, false)).expect("valid JSON");
        assert_eq!(pack[0]["bt"].as_f64(), Some(1_763_900_000.007));
        assert_eq!(pack[0]["n"], "heart_rate");
        assert_eq!(pack[1]["n"], "spo2");
        assert!(pack[1]["v"].as_f64().unwrap() >= 96.0);
        let probe: serde_json::Value =
            serde_json::from_slice(&super::pack(1, 3, true)).expect("valid JSON");
        assert_eq!(probe[1]["v"].as_f64(), Some(PROBE_SPO2));
    }
}
