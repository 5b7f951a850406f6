//! The alert engine's async shell: it evaluates the rules of the patients
//! whose readings arrive (as they arrive, and again once committed) and
//! applies the lifecycle in one transaction per evaluation, so every
//! transition is committed before it is returned (and only then pushed to
//! anyone).

use std::collections::{BTreeMap, BTreeSet, HashMap};

use bedside_vitals_store::alerts as store;
use bedside_vitals_store::changes::Forget;
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
    /// Other Bedside processes store readings too (gateways sharing a
    /// subscription): NEWS2 merges the database's latest values in before
    /// it moves an alert. A single gateway sees every reading itself.
    pub shared_stream: bool,
}

impl Default for EngineSettings {
    fn default() -> Self {
        Self {
            news2_freshness: Duration::hours(1),
            shared_stream: false,
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
    /// The readings the condition rests on that are not stored yet (judged
    /// on arrival, attributed from the gateway's copy of the assignments),
    /// as (device, time): the change applies only while each of those
    /// devices was the patient's at that time (see [`apply_all`]). Stored
    /// readings were attributed by the commit itself. Empty: nothing to check.
    pub evidence: Vec<(Uuid, DateTime<Utc>)>,
}

/// Applies several changes in one transaction (one commit, so one WAL
/// flush, however many alerts a batch moves); returns the committed
/// events in order. A change whose evidence no longer holds (a device
/// reassigned meanwhile) commits nothing. Locks are taken in (patient, rule) order, the same
/// order every caller uses, so concurrent appliers cannot deadlock.
///
/// # Errors
/// When the database fails (nothing is then changed).
pub async fn apply_all(
    db: &PgPool,
    mut changes: Vec<Change>,
    at: DateTime<Utc>,
) -> bedside_vitals_store::Result<Vec<Transition>> {
    if changes.is_empty() {
        return Ok(Vec::new());
    }
    changes.sort_by(|a, b| (a.patient, &a.rule).cmp(&(b.patient, &b.rule)));
    let mut tx = db.begin().await?;
    // A reading judged on arrival was attributed from the gateway's copy of
    // the assignments, which a reassignment may have outdated by a few
    // milliseconds: never raise or move an alert for a patient on a reading
    // that was not theirs. (One query for every change's evidence.)
    let evidence: Vec<(usize, Uuid, Uuid, DateTime<Utc>)> = changes
        .iter()
        .enumerate()
        .flat_map(|(i, c)| {
            c.evidence
                .iter()
                .map(move |(device, time)| (i, c.patient, *device, *time))
        })
        .collect();
    let unfounded = store::unfounded(&mut tx, &evidence).await?;
    let mut events = Vec::new();
    for (i, change) in changes.iter().enumerate() {
        if unfounded.contains(&i) {
            continue;
        }
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

pub use bedside_vitals_store::alerts::Transition;

/// The NEWS2 parameters: a reading of any of them re-scores the patient.
const NEWS2_INPUTS: [Metric; 7] = [
    Metric::RespiratoryRate,
    Metric::Spo2,
    Metric::SupplementalOxygen,
    Metric::SystolicBp,
    Metric::HeartRate,
    Metric::Consciousness,
    Metric::BodyTemperature,
];

/// A patient's inputs are read again after this long (plus a spread of up
/// to as much again, by patient) even without a notice, so readings stored
/// by another Bedside process (several gateways sharing a subscription)
/// reach this one's NEWS2 within a minute.
const RELOAD_AFTER: std::time::Duration = std::time::Duration::from_secs(30);
/// At most this many held patients are read again per pass: re-reading
/// thousands at once would hold up the alerts judged in the same pass.
/// (Patients not held at all are always read: they cannot be judged otherwise.)
const RELOADS_PER_PASS: usize = 64;
/// Patients without a reading for this long leave memory.
const IDLE_AFTER: std::time::Duration = std::time::Duration::from_secs(600);

/// A value held per metric: when it was measured, the value, and the
/// device that measured it.
type Values = BTreeMap<Metric, (DateTime<Utc>, f64, Uuid)>;

/// What the engine holds of one patient between readings.
#[derive(Debug)]
struct PatientInputs {
    /// The newest reading of each metric seen (stored or arriving): what
    /// alerts are judged on.
    latest: Values,
    /// The newest stored reading of each metric: what the published NEWS2
    /// is scored on (the live hub shows only what the database holds).
    stored: Values,
    /// The NEWS2 last published for the patient.
    published: Option<news2::Score>,
    /// Threshold overrides by metric (low, high).
    overrides: BTreeMap<Metric, (Option<f64>, Option<f64>)>,
    /// The patient's SpO2 scale.
    scale: SpO2Scale,
    /// Live alerts by rule.
    live: BTreeMap<String, Live>,
    /// When these are to be read from the database again.
    reload_at: std::time::Instant,
    /// A notice said they changed: read them again before judging.
    invalid: bool,
    /// When a reading last came.
    used: std::time::Instant,
}

/// Where readings come from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    /// Decoded on arrival, before their batch commits (the early look).
    Arrived,
    /// Committed to the store.
    Stored,
}

/// A patient's NEWS2 after stored readings changed it.
#[derive(Debug, Clone, PartialEq)]
pub struct News2Update {
    /// Whose.
    pub patient: Uuid,
    /// The score.
    pub score: news2::Score,
    /// The SpO2 scale it used.
    pub spo2_scale: SpO2Scale,
}

/// What one evaluation did.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Evaluation {
    /// Committed alert transitions, in order.
    pub transitions: Vec<Transition>,
    /// Patients whose NEWS2 changed (stored readings only), for the live feeds.
    pub news2: Vec<News2Update>,
}

/// The alert engine's evaluator: thresholds and NEWS2 on every reading,
/// with each active patient's inputs (threshold overrides, SpO2 scale,
/// live alerts, latest values) kept in memory so that a reading that
/// changes nothing costs no query. Whatever changes an input in the
/// database announces it ([`bedside_vitals_store::changes`]), and
/// [`Evaluator::forget`] has it read again. A transition is decided again
/// under the alert's row lock, only if the readings it rests on still
/// belong to the patient ([`apply_all`]), and NEWS2 is re-scored with the
/// database's latest values before it moves an alert; so a stale copy can
/// cost a query but not an alert on the wrong patient or on values another
/// Bedside process has since superseded.
///
/// Readings may be evaluated more than once and out of order (the gateway
/// hands them over on arrival and again once committed): thresholds are
/// judged on the newest value of each metric, never on an older one
/// arriving late, so evaluating again changes nothing.
#[derive(Debug)]
pub struct Evaluator {
    settings: EngineSettings,
    patients: HashMap<Uuid, PatientInputs>,
    swept: std::time::Instant,
}

impl Evaluator {
    /// An evaluator that knows nothing yet.
    pub fn new(settings: EngineSettings) -> Self {
        Self {
            settings,
            patients: HashMap::new(),
            swept: std::time::Instant::now(),
        }
    }

    /// A patient's alert inputs changed (a notice on
    /// [`bedside_vitals_store::changes::ALERT_INPUTS`]): read their
    /// thresholds, settings and live alerts again before judging them next.
    /// The values held stay: some may be readings on their way to the store.
    pub fn forget(&mut self, order: Forget) {
        match order {
            Forget::One(patient) => {
                if let Some(held) = self.patients.get_mut(&patient) {
                    held.invalid = true;
                }
            }
            Forget::All => {
                for held in self.patients.values_mut() {
                    held.invalid = true;
                }
            }
        }
    }

    /// A device's assignments changed (a notice on
    /// [`bedside_vitals_store::changes::DEVICE_ASSIGNMENTS`]): drop every
    /// patient holding a value from it, since a reading judged on arrival
    /// may have been attributed to its previous patient.
    pub fn forget_device(&mut self, order: Forget) {
        match order {
            Forget::One(device) => self.patients.retain(|_, held| {
                !held
                    .latest
                    .values()
                    .chain(held.stored.values())
                    .any(|(_, _, d)| *d == device)
            }),
            Forget::All => self.patients.clear(),
        }
    }

    /// Patients held in memory.
    pub fn patients_held(&self) -> usize {
        self.patients.len()
    }

    /// Evaluates thresholds and NEWS2 for the patients of `readings` and
    /// commits the transitions in one transaction; returns them in order,
    /// and for stored readings, the patients whose NEWS2 changed.
    ///
    /// # Errors
    /// When the database fails (nothing is then changed, and the patients
    /// concerned are read again next time).
    pub async fn evaluate(
        &mut self,
        db: &PgPool,
        readings: &[NewReading],
        source: Source,
    ) -> bedside_vitals_store::Result<Evaluation> {
        let now = Utc::now();
        let clock = std::time::Instant::now();
        if clock.duration_since(self.swept) > IDLE_AFTER / 10 {
            self.patients
                .retain(|_, p| clock.duration_since(p.used) < IDLE_AFTER);
            self.swept = clock;
        }
        let mut touched: BTreeMap<Uuid, BTreeSet<Metric>> = BTreeMap::new();
        for r in readings {
            touched.entry(r.patient_id).or_default().insert(r.metric);
        }
        let mut stale: Vec<Uuid> = touched
            .keys()
            .filter(|p| self.patients.get(p).is_none_or(|held| held.invalid))
            .copied()
            .collect();
        stale.extend(
            touched
                .keys()
                .filter(|p| {
                    self.patients
                        .get(p)
                        .is_some_and(|held| !held.invalid && clock >= held.reload_at)
                })
                .take(RELOADS_PER_PASS)
                .copied(),
        );
        if !stale.is_empty() {
            self.load(db, &stale, now, clock).await?;
        }
        for r in readings {
            if let Some(held) = self.patients.get_mut(&r.patient_id) {
                held.used = clock;
                keep_newest(&mut held.latest, r.metric, (r.time, r.value, r.device_id));
                if source == Source::Stored {
                    keep_newest(&mut held.stored, r.metric, (r.time, r.value, r.device_id));
                }
            }
        }
        let mut to_apply = Vec::new();
        for (patient, metrics) in &touched {
            let Some(held) = self.patients.get(patient) else {
                continue;
            };
            to_apply.extend(self.judge(*patient, held, metrics, now));
        }
        // NEWS2 rests on every parameter, some perhaps stored by another
        // Bedside process since they were read: before NEWS2 moves an
        // alert, merge in the database's latest values and judge again.
        let rescore: Vec<Uuid> = to_apply
            .iter()
            .filter(|c| self.settings.shared_stream && c.rule == "news2")
            .map(|c| c.patient)
            .collect();
        if !rescore.is_empty() {
            let fresh =
                queries::latest_for_patients(db, &rescore, now - self.settings.news2_freshness)
                    .await?;
            to_apply.retain(|c| !rescore.contains(&c.patient));
            for patient in &rescore {
                let Some(held) = self.patients.get_mut(patient) else {
                    continue;
                };
                for l in fresh.get(patient).map(Vec::as_slice).unwrap_or_default() {
                    keep_newest(&mut held.latest, l.metric, (l.time, l.value, l.device_id));
                    keep_newest(&mut held.stored, l.metric, (l.time, l.value, l.device_id));
                }
                let held = &self.patients[patient];
                to_apply.extend(self.judge(*patient, held, &touched[patient], now));
            }
        }
        let concerned: BTreeSet<Uuid> = to_apply.iter().map(|c: &Change| c.patient).collect();
        let submitted: Vec<(Uuid, String)> = to_apply
            .iter()
            .map(|c| (c.patient, c.rule.clone()))
            .collect();
        let transitions = match apply_all(db, to_apply, now).await {
            Ok(transitions) => transitions,
            Err(error) => {
                for patient in concerned {
                    self.patients.remove(&patient);
                }
                return Err(error);
            }
        };
        // Keep the copy of live alerts in step with what was committed. A
        // change that committed nothing means the copy was stale (someone
        // else moved the alert): read that patient again next time.
        for (patient, rule) in submitted {
            let done = transitions
                .iter()
                .find(|t| t.alert.patient_id == patient && t.alert.rule == rule);
            match (done, self.patients.get_mut(&patient)) {
                (Some(t), Some(held)) => match t.event.kind.as_str() {
                    "resolved" => {
                        held.live.remove(&rule);
                    }
                    _ => {
                        held.live.insert(
                            rule,
                            Live {
                                status: Status::Open,
                                severity: parse_severity(&t.event.severity),
                            },
                        );
                    }
                },
                (None, _) => {
                    self.patients.remove(&patient);
                }
                (Some(_), None) => {}
            }
        }
        let mut news2 = Vec::new();
        if source == Source::Stored {
            for (patient, metrics) in &touched {
                if !metrics.iter().any(|m| NEWS2_INPUTS.contains(m)) {
                    continue;
                }
                let Some(held) = self.patients.get_mut(patient) else {
                    continue;
                };
                let score = self.settings.score(&held.stored, held.scale, now);
                if held.published.as_ref() != Some(&score) {
                    held.published = Some(score.clone());
                    news2.push(News2Update {
                        patient: *patient,
                        score,
                        spo2_scale: held.scale,
                    });
                }
            }
        }
        Ok(Evaluation { transitions, news2 })
    }

    /// Reads the inputs of `patients` (new, or held too long), keeping any
    /// newer value already held.
    async fn load(
        &mut self,
        db: &PgPool,
        patients: &[Uuid],
        now: DateTime<Utc>,
        clock: std::time::Instant,
    ) -> bedside_vitals_store::Result<()> {
        // Four independent reads, side by side: this is on an alert's path.
        let (overrides, live, latest, scales) = futures::try_join!(
            store::thresholds_for(db, patients),
            store::live_for_patients(db, patients),
            queries::latest_for_patients(db, patients, now - self.settings.news2_freshness),
            store::spo2_scales_for(db, patients),
        )?;
        for patient in patients {
            // Spread by patient, so patients first seen together are not
            // all read again in the same pass.
            let spread = RELOAD_AFTER.mul_f64((patient.as_u128() % 1000) as f64 / 1000.0);
            let mut held = PatientInputs {
                latest: BTreeMap::new(),
                stored: BTreeMap::new(),
                published: None,
                overrides: BTreeMap::new(),
                scale: SpO2Scale::Scale1,
                live: BTreeMap::new(),
                reload_at: clock + RELOAD_AFTER + spread,
                invalid: false,
                used: clock,
            };
            if let Some(previous) = self.patients.remove(patient) {
                held.latest = previous.latest;
                held.stored = previous.stored;
                held.published = previous.published;
            }
            for l in latest.get(patient).map(Vec::as_slice).unwrap_or_default() {
                keep_newest(&mut held.latest, l.metric, (l.time, l.value, l.device_id));
                keep_newest(&mut held.stored, l.metric, (l.time, l.value, l.device_id));
            }
            self.patients.insert(*patient, held);
        }
        for (patient, name, low, high) in overrides {
            if let (Some(held), Some(metric)) =
                (self.patients.get_mut(&patient), Metric::from_name(&name))
            {
                held.overrides.insert(metric, (low, high));
            }
        }
        for alert in live {
            if let Some(held) = self.patients.get_mut(&alert.patient_id) {
                held.live.insert(
                    alert.rule.clone(),
                    Live {
                        status: parse_status(&alert.status),
                        severity: parse_severity(&alert.severity),
                    },
                );
            }
        }
        for (patient, scale) in scales {
            if let Some(held) = self.patients.get_mut(&patient) {
                held.scale = SpO2Scale::from_number(scale);
            }
        }
        Ok(())
    }

    /// The changes a patient's rules call for after readings of `metrics`,
    /// judged on the newest values held; only those whose alert would move.
    fn judge(
        &self,
        patient: Uuid,
        held: &PatientInputs,
        metrics: &BTreeSet<Metric>,
        now: DateTime<Utc>,
    ) -> Vec<Change> {
        let mut changes = Vec::new();
        let mut consider = |rule: String,
                            condition: Condition,
                            detail: serde_json::Value,
                            evidence: Vec<(Uuid, DateTime<Utc>)>| {
            if rules::decide(held.live.get(&rule).copied(), condition) != Action::Nothing {
                changes.push(Change {
                    patient,
                    rule,
                    condition,
                    detail,
                    evidence,
                });
            }
        };
        for metric in metrics {
            let threshold = held
                .overrides
                .get(metric)
                .map(|(low, high)| Threshold {
                    low: *low,
                    high: *high,
                    severity: Severity::High,
                })
                .or_else(|| rules::clinic_default(*metric));
            let (Some(threshold), Some((time, value, device))) =
                (threshold, held.latest.get(metric))
            else {
                continue;
            };
            let detail = serde_json::json!({
                "metric": metric.name(), "value": value, "unit": metric.unit(),
                "low": threshold.low, "high": threshold.high, "time": time,
            });
            let unstored = held.stored.get(metric) != Some(&(*time, *value, *device));
            consider(
                format!("threshold:{}", metric.name()),
                threshold.evaluate(*value),
                detail,
                if unstored {
                    vec![(*device, *time)]
                } else {
                    Vec::new()
                },
            );
        }
        if metrics.iter().any(|m| NEWS2_INPUTS.contains(m)) {
            let score = self.settings.score(&held.latest, held.scale, now);
            let detail = serde_json::json!({
                "news2": score.total, "band": score.band, "missing": score.missing,
                "parameters": score.parameters, "spo2_scale": held.scale.number(),
            });
            let fresh_since = now - self.settings.news2_freshness;
            let evidence = held
                .latest
                .iter()
                .filter(|(metric, held_value)| {
                    held_value.0 >= fresh_since && held.stored.get(metric) != Some(held_value)
                })
                .map(|(_, (time, _, device))| (*device, *time))
                .collect();
            consider(
                "news2".to_owned(),
                rules::news2_condition(&score),
                detail,
                evidence,
            );
        }
        changes
    }
}

/// Evaluates thresholds and NEWS2 for the stored `readings` with nothing
/// held beforehand (everything read from the database), and commits the
/// transitions; returns them in order.
///
/// # Errors
/// When the database fails (nothing is then changed).
pub async fn on_readings(
    db: &PgPool,
    settings: &EngineSettings,
    readings: &[NewReading],
) -> bedside_vitals_store::Result<Vec<Transition>> {
    Ok(Evaluator::new(*settings)
        .evaluate(db, readings, Source::Stored)
        .await?
        .transitions)
}

/// Keeps the newer of a held value and `value` (by measurement time).
fn keep_newest(held: &mut Values, metric: Metric, value: (DateTime<Utc>, f64, Uuid)) {
    let slot = held.entry(metric).or_insert(value);
    if value.0 > slot.0 {
        *slot = value;
    }
}

impl EngineSettings {
    /// NEWS2 from each parameter's newest value within the freshness window.
    fn score(&self, values: &Values, scale: SpO2Scale, now: DateTime<Utc>) -> news2::Score {
        let fresh_since = now - self.news2_freshness;
        let latest: Vec<queries::Latest> = values
            .iter()
            .filter(|(_, (time, _, _))| *time >= fresh_since)
            .map(|(metric, (time, value, device))| queries::Latest {
                metric: *metric,
                time: *time,
                value: *value,
                device_id: *device,
            })
            .collect();
        news2::score(&observations(&latest), scale)
    }
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
) -> bedside_vitals_store::Result<Vec<Transition>> {
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
                evidence: Vec::new(),
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
) -> bedside_vitals_store::Result<Vec<Transition>> {
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
