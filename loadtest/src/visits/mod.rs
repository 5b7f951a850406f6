//! `loadtest visits`: N concurrent 1:1 video visits through Bedside's
//! signaling and SFU and, in the same run and with the same load, through
//! Janus's videoroom, so the figures come with a ratio.
//!
//! Every participant is a WebRTC peer made with the `webrtc` crate
//! ([`peer`]) sending Opus audio (a 441 Hz tone encoded with libopus) and a
//! VP8 stream ([`media`]), and receiving its partner's. After every
//! participant receives both of its partner's tracks and a warm-up, a
//! window of `--seconds` is measured:
//!
//! - forwarded packets/s: packets the receivers got in the window;
//! - the SFU process's CPU time per forwarded packet (`/proc`), and its
//!   resident memory per participant (growth from before the visits);
//! - latency from the publisher's send to the subscriber's receipt
//!   (every video packet carries its send time; audio packets are matched
//!   to their send time by their place in the tone and their sequence);
//! - for Bedside, the SFU's own share of it (from reading a datagram to
//!   sending its forwarded copies, from its
//!   `bedside_sfu_forward_delay_seconds` histogram; kernel queueing before
//!   the read is not in it);
//! - loss: packets sent in the window that no receiver got;
//! - the media check: received audio decodes to the tone sent (checked on
//!   seconds 1 to 4 of each participant's received audio, before the
//!   window).
//!
//! `scripts/loadtest-visits.sh` starts Bedside and Janus and runs this.

mod bedside;
mod janus;
mod media;
mod peer;

use std::collections::HashSet;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use clap::Args;
use serde::Serialize;
use tokio::sync::watch;

use crate::cpu::{process_context_switches, process_cpu_seconds, process_rss_bytes};
use crate::stats::{median, summarise};
use peer::{Kind, Participant, Reception, Sent, Shared};

/// `loadtest visits`
#[derive(Debug, Args)]
pub(crate) struct VisitsArgs {
    /// Bedside's base URL (plain HTTP on loopback).
    #[arg(long, default_value = "http://127.0.0.1:8080")]
    base: String,
    /// Bedside's Prometheus endpoint (for the SFU's own forwarding delay).
    #[arg(long)]
    metrics: Option<String>,
    /// The `bedside` process (for its CPU time and memory).
    #[arg(long)]
    bedside_pid: u32,
    /// An admin who books the visits.
    #[arg(long, default_value = "admin@demo.bedside.test")]
    admin_email: String,
    /// Their password.
    #[arg(long, env = "LOADTEST_ADMIN_PASSWORD")]
    admin_password: String,
    /// Janus's WebSocket API, e.g. ws://127.0.0.1:8188 (omit to measure
    /// Bedside alone).
    #[arg(long)]
    janus: Option<String>,
    /// The `janus` process.
    #[arg(long)]
    janus_pid: Option<u32>,
    /// The address the participants use with Janus: the address Janus
    /// gathers its candidates on (libnice leaves out loopback, so not
    /// 127.0.0.1); needed with --janus.
    #[arg(long)]
    janus_peer_ip: Option<std::net::IpAddr>,
    /// Concurrent 1:1 visits.
    #[arg(long, default_value_t = 50)]
    visits: usize,
    /// Length of the measured window of each run.
    #[arg(long, default_value_t = 30)]
    seconds: u64,
    /// Runs (each measures Bedside, then Janus); medians are printed.
    #[arg(long, default_value_t = 3)]
    runs: usize,
    /// RTP packets per video frame (30 frames/s, about 1,100 bytes each).
    #[arg(long, default_value_t = 4)]
    video_packets_per_frame: usize,
    /// Also write the results as JSON here.
    #[arg(long)]
    json: Option<std::path::PathBuf>,
}

/// The figures of one SFU in one run.
#[derive(Debug, Clone, Serialize)]
struct Figures {
    sfu: &'static str,
    visits: usize,
    participants: usize,
    /// Participants that received both of their partner's tracks.
    receiving: usize,
    forwarded_packets_per_second: f64,
    cpu_us_per_forwarded_packet: f64,
    cpu_cores: f64,
    /// Cores this load generator used meanwhile (on the same machine).
    generator_cores: f64,
    /// The SFU process's threads going to sleep or being preempted, per
    /// second (each is a wake-up later).
    context_switches_per_second: f64,
    latency_p50_ms: f64,
    latency_p99_ms: f64,
    latency_max_ms: f64,
    /// The SFU's own in-to-out delay (Bedside only; histogram buckets).
    sfu_delay_p50_ms: Option<f64>,
    sfu_delay_p99_ms: Option<f64>,
    loss_percent: f64,
    /// Resident memory growth per participant: measured in each SFU's
    /// first run only (in later runs the process reuses what the previous
    /// run's visits freed, and grows by nothing).
    memory_mib_per_participant: Option<f64>,
    /// Receivers whose decoded audio is the tone (≥ 90 % of its power).
    tone_ok: usize,
    tone_checked: usize,
    /// The lowest share of a receiver's decoded power at the tone.
    tone_min_share: f64,
}

/// Runs the visits load test.
pub(crate) async fn run(args: VisitsArgs) -> anyhow::Result<()> {
    let shared = Arc::new(Shared {
        epoch: Instant::now(),
        tone: media::Tone::encode()?,
    });
    let mut all = Vec::new();
    for run in 1..=args.runs {
        let bedside = measure_bedside(&args, &shared, run).await?;
        print_row(run, &bedside);
        all.push(bedside);
        if let Some(url) = &args.janus {
            let pid = args
                .janus_pid
                .context("--janus-pid is needed with --janus")?;
            let ip = args
                .janus_peer_ip
                .context("--janus-peer-ip is needed with --janus")?;
            let janus = measure_janus(&args, &shared, url, pid, ip, run).await?;
            print_row(run, &janus);
            all.push(janus);
        }
    }
    summarise_runs(&args, &all)
}

/// The participants of `visits` 1:1 visits: 2i and 2i+1 are partners.
fn participants(shared: &Arc<Shared>, visits: usize) -> Vec<Arc<Participant>> {
    let sent: Vec<Arc<Sent>> = (0..2 * visits as u32)
        .map(|i| Arc::new(Sent::new(i)))
        .collect();
    (0..2 * visits)
        .map(|i| {
            Arc::new(Participant {
                shared: shared.clone(),
                sent: sent[i].clone(),
                partner: sent[i ^ 1].clone(),
                reception: Arc::new(Reception::default()),
                tracks: std::sync::Mutex::new(None),
            })
        })
        .collect()
}

async fn measure_bedside(
    args: &VisitsArgs,
    shared: &Arc<Shared>,
    run: usize,
) -> anyhow::Result<Figures> {
    let base = args.base.trim_end_matches('/').to_owned();
    let client = reqwest::Client::new();
    let rss_before = process_rss_bytes(args.bedside_pid).context("reading bedside's memory")?;
    let password = "loadtest-visit-clinician";
    let bookings = bedside::book(
        &client,
        &base,
        &args.admin_email,
        &args.admin_password,
        password,
        args.visits,
    )
    .await?;
    let people = participants(shared, args.visits);
    let (stop_tx, stop) = watch::channel(false);
    let mut tasks = Vec::new();
    for (i, participant) in people.iter().enumerate() {
        let booking = &bookings[i / 2];
        let credentials = if i % 2 == 0 {
            bedside::Credentials::Clinician {
                email: booking.clinician_email.clone(),
                password: password.to_owned(),
            }
        } else {
            bedside::Credentials::Patient {
                join_token: booking.join_token.clone(),
            }
        };
        let token = bedside::sign_in(&client, &base, &credentials).await?;
        tasks.push(tokio::spawn(bedside::attend(
            base.clone(),
            token,
            booking.appointment_id.clone(),
            participant.clone(),
            args.video_packets_per_frame,
            stop.clone(),
        )));
    }
    let metrics = args.metrics.clone();
    let figures = measure_window(
        args,
        run == 1,
        "bedside",
        &people,
        args.bedside_pid,
        rss_before,
        || {
            let metrics = metrics.clone();
            async move {
                match metrics {
                    Some(url) => forward_delay_histogram(&url).await.ok(),
                    None => None,
                }
            }
        },
    )
    .await;
    stop_tx.send(true)?;
    for task in tasks {
        match tokio::time::timeout(Duration::from_secs(10), task).await {
            Ok(Ok(Err(error))) => eprintln!("a participant failed: {error:#}"),
            Ok(Err(error)) => eprintln!("a participant panicked: {error}"),
            _ => {}
        }
    }
    figures
}

async fn measure_janus(
    args: &VisitsArgs,
    shared: &Arc<Shared>,
    url: &str,
    pid: u32,
    ip: std::net::IpAddr,
    run: usize,
) -> anyhow::Result<Figures> {
    let rss_before = process_rss_bytes(pid).context("reading janus's memory")?;
    let people = participants(shared, args.visits);
    let (stop_tx, stop) = watch::channel(false);
    let room = |visit: usize| (run * 100_000 + visit) as u64;
    let feed = |participant: usize| participant as u64 + 1;
    {
        let mut admin = janus::Session::open(url).await?;
        let handle = admin.attach().await?;
        for visit in 0..args.visits {
            janus::create_room(&mut admin, handle, room(visit)).await?;
        }
        tokio::spawn(admin.idle(stop.clone()));
    }
    let mut published = Vec::new();
    for (i, participant) in people.iter().enumerate() {
        published.push(
            janus::publish(
                url,
                ip,
                room(i / 2),
                feed(i),
                participant.clone(),
                args.video_packets_per_frame,
                stop.clone(),
            )
            .await?,
        );
    }
    let mut connections = Vec::new();
    for (i, published) in published.into_iter().enumerate() {
        connections.extend(
            janus::subscribe(published, ip, feed(i ^ 1), people[i].clone(), stop.clone()).await?,
        );
    }
    let figures = measure_window(
        args,
        run == 1,
        "janus",
        &people,
        pid,
        rss_before,
        || async { None },
    )
    .await;
    stop_tx.send(true)?;
    for connection in connections {
        connection.close().await;
    }
    figures
}

/// Waits until everyone receives, warms up, measures the window, and
/// computes the figures.
async fn measure_window<F, Fut>(
    args: &VisitsArgs,
    first_run: bool,
    sfu: &'static str,
    people: &[Arc<Participant>],
    pid: u32,
    rss_before: u64,
    sfu_delay: F,
) -> anyhow::Result<Figures>
where
    F: Fn() -> Fut,
    Fut: std::future::Future<Output = Option<Vec<(f64, u64)>>>,
{
    let receiving = |people: &[Arc<Participant>]| {
        people
            .iter()
            .filter(|p| {
                p.reception.audio_started.load(Ordering::Relaxed)
                    && p.reception.video_started.load(Ordering::Relaxed)
            })
            .count()
    };
    let deadline = Instant::now() + Duration::from_secs(120);
    while receiving(people) < people.len() {
        if Instant::now() > deadline {
            bail!(
                "{sfu}: only {} of {} participants receive their partner after 120 s",
                receiving(people),
                people.len()
            );
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    tokio::time::sleep(Duration::from_secs(3)).await;
    let marks = |people: &[Arc<Participant>]| -> Vec<(u64, u64)> {
        people
            .iter()
            .map(|p| {
                (
                    p.sent.audio_packets.load(Ordering::Acquire),
                    p.sent.video_packets.load(Ordering::Acquire),
                )
            })
            .collect()
    };
    let delay_before = sfu_delay().await;
    let cpu_before = process_cpu_seconds(pid).context("reading the SFU's CPU time")?;
    let switches_before = process_context_switches(pid).unwrap_or(0);
    let generator_before = process_cpu_seconds(std::process::id()).unwrap_or(0.0);
    let started = Instant::now();
    let start_marks = marks(people);
    tokio::time::sleep(Duration::from_secs(args.seconds)).await;
    let end_marks = marks(people);
    let cpu = process_cpu_seconds(pid).context("reading the SFU's CPU time")? - cpu_before;
    let switches = process_context_switches(pid)
        .unwrap_or(0)
        .saturating_sub(switches_before);
    let generator = process_cpu_seconds(std::process::id()).unwrap_or(0.0) - generator_before;
    let seconds = started.elapsed().as_secs_f64();
    let delay_after = sfu_delay().await;
    let rss = process_rss_bytes(pid).unwrap_or(rss_before);
    // Let the window's last packets arrive.
    tokio::time::sleep(Duration::from_secs(1)).await;

    let mut latencies = Vec::new();
    let (mut expected, mut got) = (0u64, 0u64);
    for person in people {
        let partner = person.partner.index as usize;
        let (audio_from, video_from) = start_marks[partner];
        let (audio_to, video_to) = end_marks[partner];
        expected += (audio_to - audio_from) + (video_to - video_from);
        let mut seen = HashSet::new();
        for packet in person.reception.packets.lock().expect("packets").iter() {
            let (from, to) = match packet.kind {
                Kind::Audio => (audio_from, audio_to),
                Kind::Video => (video_from, video_to),
            };
            if packet.publisher as usize == partner
                && (from..to).contains(&packet.number)
                && seen.insert((packet.kind == Kind::Video, packet.number))
            {
                latencies.push(Duration::from_nanos(packet.latency_ns));
            }
        }
        got += seen.len() as u64;
    }
    let latency = summarise(latencies).context("no packet arrived in the window")?;
    let tone: Vec<f64> = people
        .iter()
        .filter_map(|p| *p.reception.tone_share.lock().expect("tone"))
        .collect();
    let (sfu_delay_p50_ms, sfu_delay_p99_ms) = match (delay_before, delay_after) {
        (Some(before), Some(after)) => histogram_percentiles(&before, &after),
        _ => (None, None),
    };
    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    Ok(Figures {
        sfu,
        visits: args.visits,
        participants: people.len(),
        receiving: receiving(people),
        forwarded_packets_per_second: got as f64 / seconds,
        cpu_us_per_forwarded_packet: cpu * 1e6 / got.max(1) as f64,
        cpu_cores: cpu / seconds,
        generator_cores: generator / seconds,
        context_switches_per_second: switches as f64 / seconds,
        latency_p50_ms: ms(latency.p50),
        latency_p99_ms: ms(latency.p99),
        latency_max_ms: ms(latency.max),
        sfu_delay_p50_ms,
        sfu_delay_p99_ms,
        loss_percent: 100.0 * (expected.saturating_sub(got)) as f64 / expected.max(1) as f64,
        memory_mib_per_participant: first_run.then(|| {
            rss.saturating_sub(rss_before) as f64 / people.len() as f64 / (1024.0 * 1024.0)
        }),
        tone_ok: tone.iter().filter(|share| **share >= 0.9).count(),
        tone_checked: tone.len(),
        tone_min_share: tone.iter().copied().fold(1.0, f64::min),
    })
}

/// The cumulative buckets (upper bound in seconds, count) of Bedside's
/// forwarding-delay histogram.
async fn forward_delay_histogram(url: &str) -> anyhow::Result<Vec<(f64, u64)>> {
    let text = reqwest::get(url).await?.text().await?;
    Ok(parse_histogram(&text, "bedside_sfu_forward_delay_seconds"))
}

fn parse_histogram(text: &str, name: &str) -> Vec<(f64, u64)> {
    let prefix = format!("{name}_bucket{{le=\"");
    text.lines()
        .filter_map(|line| {
            let rest = line.strip_prefix(&prefix)?;
            let (bound, rest) = rest.split_once("\"}")?;
            let bound = if bound == "+Inf" {
                f64::INFINITY
            } else {
                bound.parse().ok()?
            };
            Some((bound, rest.trim().parse().ok()?))
        })
        .collect()
}

/// p50 and p99 (as bucket upper bounds, in ms) of what a histogram
/// counted between two scrapes.
fn histogram_percentiles(
    before: &[(f64, u64)],
    after: &[(f64, u64)],
) -> (Option<f64>, Option<f64>) {
    let deltas: Vec<(f64, u64)> = after
        .iter()
        .map(|(bound, count)| {
            let earlier = before
                .iter()
                .find(|(b, _)| b == bound)
                .map_or(0, |(_, c)| *c);
            (*bound, count.saturating_sub(earlier))
        })
        .collect();
    let total = deltas.last().map_or(0, |(_, count)| *count);
    if total == 0 {
        return (None, None);
    }
    let at = |q: f64| {
        let rank = (q * total as f64).ceil() as u64;
        deltas
            .iter()
            .find(|(_, count)| *count >= rank)
            .map(|(bound, _)| bound * 1000.0)
    };
    (at(0.50), at(0.99))
}

fn print_row(run: usize, f: &Figures) {
    let optional = |v: Option<f64>| v.map_or("-".to_owned(), |v| format!("{v:.2}"));
    println!(
        "run {run} {:8} visits {:3} receiving {:3}/{:3}  {:8.0} pkt/s  {:6.2} µs/pkt  {:4.2} cores (generator {:4.2})  {:6.0} switches/s  latency p50 {:6.2} p99 {:6.2} max {:7.2} ms  sfu p50 {} p99 {} ms  loss {:6.3} %  {} MiB/participant  tone {}/{} (min {:.2})",
        f.sfu,
        f.visits,
        f.receiving,
        f.participants,
        f.forwarded_packets_per_second,
        f.cpu_us_per_forwarded_packet,
        f.cpu_cores,
        f.generator_cores,
        f.context_switches_per_second,
        f.latency_p50_ms,
        f.latency_p99_ms,
        f.latency_max_ms,
        optional(f.sfu_delay_p50_ms),
        optional(f.sfu_delay_p99_ms),
        f.loss_percent,
        optional(f.memory_mib_per_participant),
        f.tone_ok,
        f.tone_checked,
        f.tone_min_share,
    );
}

/// Medians per SFU over the runs, the ratio, and the JSON file.
fn summarise_runs(args: &VisitsArgs, all: &[Figures]) -> anyhow::Result<()> {
    let of = |sfu: &str, pick: fn(&Figures) -> f64| -> f64 {
        median(all.iter().filter(|f| f.sfu == sfu).map(pick).collect())
    };
    println!("\nmedians over {} runs:", args.runs);
    println!(
        "{:8} {:>12} {:>10} {:>10} {:>10} {:>8} {:>14}",
        "sfu", "pkt/s", "µs/pkt", "p50 ms", "p99 ms", "loss %", "MiB/particip.*"
    );
    for sfu in ["bedside", "janus"] {
        if !all.iter().any(|f| f.sfu == sfu) {
            continue;
        }
        println!(
            "{:8} {:>12.0} {:>10.2} {:>10.2} {:>10.2} {:>8.3} {:>14.2}",
            sfu,
            of(sfu, |f| f.forwarded_packets_per_second),
            of(sfu, |f| f.cpu_us_per_forwarded_packet),
            of(sfu, |f| f.latency_p50_ms),
            of(sfu, |f| f.latency_p99_ms),
            of(sfu, |f| f.loss_percent),
            all.iter()
                .find(|f| f.sfu == sfu)
                .and_then(|f| f.memory_mib_per_participant)
                .unwrap_or(f64::NAN),
        );
    }
    println!("* resident memory growth per participant, first run");
    // Each run measured Bedside, then Janus: pair them by run.
    let ratios: Vec<f64> = all
        .iter()
        .filter(|f| f.sfu == "bedside")
        .zip(all.iter().filter(|f| f.sfu == "janus"))
        .map(|(bedside, janus)| {
            bedside.cpu_us_per_forwarded_packet / janus.cpu_us_per_forwarded_packet
        })
        .collect();
    let ratio = (!ratios.is_empty()).then(|| median(ratios));
    if let Some(ratio) = ratio {
        println!(
            "CPU per forwarded packet, Bedside / Janus (median of per-run ratios): {ratio:.2}"
        );
    }
    if let Some(path) = &args.json {
        let report = serde_json::json!({"runs": all, "cpu_ratio_bedside_over_janus": ratio});
        std::fs::write(path, serde_json::to_string_pretty(&report)?)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn histogram_percentiles_come_from_the_window_only() {
        let text = "# HELP x\nbedside_sfu_forward_delay_seconds_bucket{le=\"0.0001\"} 10\n\
                    bedside_sfu_forward_delay_seconds_bucket{le=\"0.001\"} 20\n\
                    bedside_sfu_forward_delay_seconds_bucket{le=\"+Inf\"} 20\n\
                    bedside_sfu_forward_delay_seconds_sum 0.01\n";
        let before = parse_histogram(text, "bedside_sfu_forward_delay_seconds");
        assert_eq!(before.len(), 3);
        let after = vec![(0.0001, 10), (0.001, 118), (f64::INFINITY, 120)];
        // 100 new: 0 under 0.1 ms, 98 under 1 ms, 2 above.
        let (p50, p99) = histogram_percentiles(&before, &after);
        assert_eq!(p50, Some(1.0));
        assert_eq!(p99, Some(f64::INFINITY));
        assert_eq!(histogram_percentiles(&before, &before), (None, None));
    }
}
