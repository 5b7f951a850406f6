-- Alerts: per-patient thresholds, the alerts themselves, and every
-- transition as an event whose sequence number the live feed replays from.

-- Per-patient overrides of the clinic's default thresholds (which live in
-- code, bedside_alerts::rules::clinic_default).
CREATE TABLE alert_thresholds (
    patient_id  uuid NOT NULL,
    metric      text NOT NULL,
    low         double precision,
    high        double precision,
    updated_by  uuid,
    updated_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (patient_id, metric),
    CHECK (low IS NULL OR high IS NULL OR low < high)
);

CREATE TABLE alerts (
    id               uuid PRIMARY KEY,
    patient_id       uuid NOT NULL,
    rule             text NOT NULL,     -- 'threshold:<metric>', 'news2', 'offline:<device id>'
    severity         text NOT NULL CHECK (severity IN ('low', 'medium', 'high', 'critical')),
    status           text NOT NULL CHECK (status IN ('open', 'acknowledged', 'resolved')),
    opened_at        timestamptz NOT NULL,
    updated_at       timestamptz NOT NULL,
    acknowledged_at  timestamptz,
    acknowledged_by  uuid,
    resolved_at      timestamptz,
    resolved_by      uuid,              -- NULL with resolved_at set: resolved automatically
    detail           jsonb NOT NULL DEFAULT '{}'
);
-- No duplicate live alert for the same patient and rule, even when two
-- evaluations race.
CREATE UNIQUE INDEX alerts_one_live_per_rule ON alerts (patient_id, rule) WHERE status <> 'resolved';
CREATE INDEX alerts_patient_opened ON alerts (patient_id, opened_at DESC);

CREATE TABLE alert_events (
    seq       bigserial PRIMARY KEY,
    alert_id  uuid NOT NULL REFERENCES alerts (id),
    at        timestamptz NOT NULL DEFAULT now(),
    kind      text NOT NULL CHECK (kind IN ('opened', 'escalated', 'acknowledged', 'resolved')),
    severity  text NOT NULL,
    actor     uuid
);
CREATE INDEX alert_events_alert ON alert_events (alert_id, seq);
