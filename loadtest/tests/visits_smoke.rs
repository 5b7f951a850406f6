//! `loadtest visits` end to end at its smallest: one visit for a few
//! seconds through a real Bedside (the test harness's application on port
//! 0, its SFU on loopback), without Janus. It keeps the load test's flow
//! working as the server changes — booking, consent, admission,
//! negotiation, media both ways, the figures and the tone check — and
//! measures nothing (the figures of a debug build on a busy machine mean
//! nothing; `scripts/loadtest-visits.sh` measures).

use bedside_records::domain::StaffRole;
use bedside_test_support::{TestApp, world};
use serde_json::Value;

#[tokio::test(flavor = "multi_thread")]
async fn one_visit_runs_through_bedside_and_reports_its_figures() {
    let app = TestApp::spawn().await;
    let email = "smoke.admin@bedside.test";
    world::staff(&app, StaffRole::Admin, email, "Smoke Admin").await;
    let dir = tempfile::tempdir().expect("temporary directory");
    let json = dir.path().join("visits.json");
    let output = tokio::process::Command::new(env!("CARGO_BIN_EXE_loadtest"))
        .args(["visits", "--base", &app.base])
        .arg("--metrics")
        .arg(format!("http://{}/metrics", app.metrics_addr))
        // The application runs in this process: its CPU is this process's.
        .arg("--bedside-pid")
        .arg(std::process::id().to_string())
        .args([
            "--admin-email",
            email,
            "--visits",
            "1",
            "--seconds",
            "5",
            "--runs",
            "1",
        ])
        .arg("--json")
        .arg(&json)
        .env("LOADTEST_ADMIN_PASSWORD", world::PASSWORD)
        .output()
        .await
        .expect("the loadtest binary runs");
    assert!(
        output.status.success(),
        "loadtest visits failed\n--- stdout ---\n{}\n--- stderr ---\n{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    let report: Value =
        serde_json::from_str(&std::fs::read_to_string(&json).expect("the JSON report"))
            .expect("valid JSON");
    let runs = report["runs"].as_array().expect("runs");
    assert_eq!(runs.len(), 1, "{report:#}");
    let bedside = &runs[0];
    assert_eq!(bedside["sfu"], "bedside", "{report:#}");
    // Both participants received both of the other's tracks, and media flowed.
    assert_eq!(bedside["participants"], 2, "{report:#}");
    assert_eq!(bedside["receiving"], 2, "{report:#}");
    assert!(
        bedside["forwarded_packets_per_second"]
            .as_f64()
            .unwrap_or(0.0)
            > 100.0,
        "{report:#}"
    );
    assert!(
        bedside["latency_p50_ms"]
            .as_f64()
            .is_some_and(|ms| ms > 0.0),
        "{report:#}"
    );
    // The audio each side decoded is the other's tone.
    assert_eq!(bedside["tone_checked"], 2, "{report:#}");
    assert_eq!(bedside["tone_ok"], 2, "{report:#}");
}
