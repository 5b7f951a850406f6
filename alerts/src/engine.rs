//! The alert engine's async shell: after a batch of readings commits, it
//! evaluates the rules of the patients in the batch and applies the
//! lifecycle in one transaction per batch, so every transition is committed
//! before it is returned (and only then pushed to anyone).

use std::collections::{BTreeMap, BTreeSet};

use bedside_vitals_store::alerts::{self as store, AlertEvent};
use bedside_vitals_store::metric::Metric;
use bedside_vitals_store::queries;
use bedside_vitals_store::store::NewReading;
use chrono::{DateTime, Duration, Utc};
use sqlx::PgPool;
use uuid::Uuid;

use crate::news2::{self, Consciousness, Observations, SpO2Scale};
use crate::rules::{self, Action, Condition, Live, Severity, Status, Threshold};

/// How the engine judges.
#[derive(Debug, Clone, Copy)]
pub struct EngineSettings {
    /// NEWS2 uses each parameter's latest reading no older than this.
    pub news2_freshness: Duration,
}

impl Default for EngineSettings {
    fn default() -> Self {
        Self {
            news2_freshness: Duration::hours(1),
        }
    }
}

fn parse_severity(s: &str) -> Severity {
    match s {
        "critical" => Severity::Critical,
        "high" => Severity::High,
        "medium" => Severity::Medium,
        _ => Severity::Low,
    }
}

fn parse_status(s: &str) -> Status {
    match s {
        "acknowledged" => Status::Acknowledged,
        "resolved" => Status::Resolved,
        _ => Status::Open,
    }
}

/// A rule's new condition for a patient, to be applied to its live alert.
#[derive(Debug, Clone)]
pub struct Change {
    /// Whose.
    pub patient: Uuid,
    /// `threshold:<metric>`, `news2` or `offline:<device>`.
    pub rule: String,
    /// What the rule says now.
    pub condition: Condition,
    /// Shown with the alert.
    pub detail: serde_json::Value,
}

/// Applies `condition` to the patient's live alert for `rule` in one
/// transaction; returns the committed event, if anything changed.
///
/// # Errors
/// When the database fails (nothing is then changed).
pub async fn apply(
    db: &PgPool,
    patient: Uuid,
    rule: &str,
    condition: Condition,
    detail: &serde_json::Value,
    at: DateTime<Utc>,
) -> bedside_vitals_store::Result<Option<AlertEvent>> {
    let change = Change {
        patient,
        rule: rule.to_owned(),
        condition,
        detail: detail.clone(),
    };
    Ok(apply_all(db, vec![change], at).await?.pop())
}

/// Applies several changes in one transaction (one commit, so one WAL
/// flush, however many alerts a batch moves); returns the committed
/// events in order. Locks are taken in (patient, rule) order, the same
/// order every caller uses, so concurrent appliers cannot deadlock.
///
/// # Errors
/// When the database fails (nothing is then changed).
pub async fn apply_all(
    db: &PgPool,
    mut changes: Vec<Change>,
    at: DateTime<Utc>,
) -> bedside_vitals_store::Result<Vec<AlertEvent>> {
    if changes.is_empty() {
        return Ok(Vec::new());
    }
    changes.sort_by(|a, b| (a.patient, &a.rule).cmp(&(b.patient, &b.rule)));
    let mut tx = db.begin().await?;
    let mut events = Vec::new();
    for change in &changes {
        let live = store::live_for_update(&mut tx, change.patient, &change.rule).await?;
        let state = live.as_ref().map(|a| Live {
            status: parse_status(&a.status),
            severity: parse_severity(&a.severity),
        });
        let event = match (rules::decide(state, change.condition), &live) {
            (Action::Nothing, _) => None,
            (Action::Open(severity), _) => Some(
                store::open(
                    &mut tx,
                    change.patient,
                    &change.rule,
                    severity.as_str(),
                    &change.detail,
                    at,
                )
                .await?,
            ),
            (Action::Escalate(severity), Some(alert)) => {
                Some(store::escalate(&mut tx, alert.id, severity.as_str(), &change.detail).await?)
            }
            (Action::Resolve, Some(alert)) => Some(store::resolve(&mut tx, alert.id, None).await?),
            (Action::Escalate(_) | Action::Resolve, None) => None,
        };
        events.extend(event);
    }
    tx.commit().await?;
    Ok(events)
}

/// Evaluates thresholds and NEWS2 for the patients of a committed batch.
/// Returns the committed transitions, oldest first.
///
/// # Errors
/// When the database fails (nothing of the batch is then changed).
pub async fn on_readings(
    db: &PgPool,
    settings: &EngineSettings,
    readings: &[NewReading],
) -> bedside_vitals_store::Result<Vec<AlertEvent>> {
    // The newest reading of each metric per patient in this batch.
    let mut newest: BTreeMap<Uuid, BTreeMap<Metric, &NewReading>> = BTreeMap::new();
    for r in readings {
        let slot = newest
            .entry(r.patient_id)
            .or_default()
            .entry(r.metric)
            .or_insert(r);
        if r.time > slot.time {
            *slot = r;
        }
    }
    let mut to_apply = Vec::new();
    let now = Utc::now();
    // This runs for every committed batch: read the batch's overrides, live
    // alerts and latest values once, and apply only the rules whose alert
    // would change (`apply_all` decides again under the row locks).
    let patients: Vec<Uuid> = newest.keys().copied().collect();
    // Three independent reads, side by side: this is on every alert's path.
    let (overrides, live, latest) = futures::try_join!(
        store::thresholds_for(db, &patients),
        store::live_for_patients(db, &patients),
        queries::latest_for_patients(db, &patients, now - settings.news2_freshness),
    )?;
    let changes = |patient: Uuid, rule: &str, condition: Condition| {
        let state = live
            .iter()
            .find(|a| a.patient_id == patient && a.rule == rule)
            .map(|a| Live {
                status: parse_status(&a.status),
                severity: parse_severity(&a.severity),
            });
        rules::decide(state, condition) != Action::Nothing
    };
    for (patient, metrics) in newest {
        for (metric, reading) in &metrics {
            let threshold = overrides
                .iter()
                .find(|(p, m, _, _)| *p == patient && m == metric.name())
                .map(|(_, _, low, high)| Threshold {
                    low: *low,
                    high: *high,
                    severity: Severity::High,
                })
                .or_else(|| rules::clinic_default(*metric));
            let Some(threshold) = threshold else { continue };
            let detail = serde_json::json!({
                "metric": metric.name(), "value": reading.value, "unit": metric.unit(),
                "low": threshold.low, "high": threshold.high, "time": reading.time,
            });
            let rule = format!("threshold:{}", metric.name());
            let condition = threshold.evaluate(reading.value);
            if changes(patient, &rule, condition) {
                to_apply.push(Change {
                    patient,
                    rule,
                    condition,
                    detail,
                });
            }
        }
        let news2_inputs = [
            Metric::RespiratoryRate,
            Metric::Spo2,
            Metric::SupplementalOxygen,
            Metric::SystolicBp,
            Metric::HeartRate,
            Metric::Consciousness,
            Metric::BodyTemperature,
        ];
        if metrics.keys().any(|m| news2_inputs.contains(m)) {
            let observations =
                observations(latest.get(&patient).map(Vec::as_slice).unwrap_or_default());
            let score = news2::score(&observations, SpO2Scale::Scale1);
            let detail = serde_json::json!({"news2": score.total, "band": score.band, "missing": score.missing, "parameters": score.parameters});
            let condition = rules::news2_condition(&score);
            if changes(patient, "news2", condition) {
                to_apply.push(Change {
                    patient,
                    rule: "news2".to_owned(),
                    condition,
                    detail,
                });
            }
        }
    }
    // One transaction for the whole batch: under ingest load each commit
    // waits for a WAL flush, and an alert queued behind a dozen separate
    // commits arrived hundreds of milliseconds late.
    apply_all(db, to_apply, now).await
}

/// Applies device liveness changes: `offline:<device>` alerts (low
/// severity) for the patient each device belongs to now; coming back
/// online resolves them. Devices assigned to nobody raise nothing.
///
/// # Errors
/// When the database fails (nothing is then changed).
pub async fn on_liveness(
    db: &PgPool,
    changes: &[(Uuid, Option<Uuid>, bool)],
) -> bedside_vitals_store::Result<Vec<AlertEvent>> {
    let changes = changes
        .iter()
        .filter_map(|(device, patient, online)| {
            Some(Change {
                patient: (*patient)?,
                rule: format!("offline:{device}"),
                condition: if *online {
                    Condition::Clear
                } else {
                    Condition::Breached(Severity::Low)
                },
                detail: serde_json::json!({"device_id": device, "online": online}),
            })
        })
        .collect();
    apply_all(db, changes, Utc::now()).await
}

/// Raises the severity of alerts nobody acknowledged within `after` (one
/// step per period: escalating resets the clock), committing each before
/// returning it.
///
/// # Errors
/// When the database fails; escalations committed before it stand.
pub async fn escalate_unacknowledged(
    db: &PgPool,
    after: Duration,
) -> bedside_vitals_store::Result<Vec<AlertEvent>> {
    let now = Utc::now();
    let mut events = Vec::new();
    for alert in store::stale_open(db, now - after).await? {
        let live = Live {
            status: parse_status(&alert.status),
            severity: parse_severity(&alert.severity),
        };
        let waited = (now - alert.updated_at).num_seconds().max(0) as u64;
        let Some(severity) =
            rules::unacknowledged_escalation(live, waited, after.num_seconds().max(0) as u64)
        else {
            continue;
        };
        let mut tx = db.begin().await?;
        // Re-check under the lock: someone may have acknowledged it meanwhile.
        let Some(current) = store::live_for_update(&mut tx, alert.patient_id, &alert.rule).await?
        else {
            continue;
        };
        if current.id != alert.id
            || current.status != "open"
            || current.updated_at != alert.updated_at
        {
            continue;
        }
        let mut detail = alert.detail.clone();
        detail["escalated_because"] = serde_json::json!("unacknowledged");
        events.push(store::escalate(&mut tx, alert.id, severity.as_str(), &detail).await?);
        tx.commit().await?;
    }
    Ok(events)
}

/// NEWS2 inputs from the latest reading of each metric (consciousness is
/// stored as ACVPU 0–4: anything above alert scores as confusion or worse,
/// oxygen as 0/1).
pub fn observations(latest: &[queries::Latest]) -> Observations {
    let value = |m: Metric| latest.iter().find(|l| l.metric == m).map(|l| l.value);
    Observations {
        respiration_rate: value(Metric::RespiratoryRate),
        spo2: value(Metric::Spo2),
        on_oxygen: value(Metric::SupplementalOxygen).map(|v| v >= 0.5),
        systolic_bp: value(Metric::SystolicBp),
        pulse: value(Metric::HeartRate),
        consciousness: value(Metric::Consciousness).map(|v| {
            if v < 0.5 {
                Consciousness::Alert
            } else {
                Consciousness::NewConfusion
            }
        }),
        temperature: value(Metric::BodyTemperature),
    }
}

/// The distinct patients of a batch (for feeds that fan out by patient).
pub fn patients_of(readings: &[NewReading]) -> BTreeSet<Uuid> {
    readings.iter().map(|r| r.patient_id).collect()
}
