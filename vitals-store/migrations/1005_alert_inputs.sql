-- Per-patient NEWS2 settings, and change notifications for the alert
-- engine's in-memory inputs.
--
-- SpO2 scale 2 is for patients with hypercapnic respiratory failure, and
-- only a clinician decides it (RCP 2017): scale 1 unless a row says 2.
CREATE TABLE patient_news2_settings (
    patient_id  uuid PRIMARY KEY,
    spo2_scale  smallint NOT NULL DEFAULT 1 CHECK (spo2_scale IN (1, 2)),
    updated_by  uuid,
    updated_at  timestamptz NOT NULL DEFAULT now()
);

-- The alert engine keeps each active patient's thresholds, NEWS2 settings
-- and live alerts in memory so that a reading which changes nothing costs
-- no query. Whatever changes them (a clinician in any Bedside process, an
-- admin in psql) announces the patient on `bedside_alert_inputs`, and the
-- engine forgets that patient and reads them again on their next reading.
-- Of the alerts, only what people do is announced (acknowledging, resolving
-- by hand): the engine records its own transitions itself, and a notice for
-- each would have it re-read the patient on the very path an alert takes.
-- (With several Bedside processes, one's copy may then miss another's
-- transition; every transition is decided again under the alert's row lock,
-- so that costs a query, and the copy is re-read, never a wrong alert.)
CREATE FUNCTION notify_alert_inputs() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'DELETE' THEN
        PERFORM pg_notify('bedside_alert_inputs', OLD.patient_id::text);
    ELSE
        PERFORM pg_notify('bedside_alert_inputs', NEW.patient_id::text);
    END IF;
    RETURN NULL;
END $$;

CREATE TRIGGER alert_thresholds_notify AFTER INSERT OR UPDATE OR DELETE ON alert_thresholds
    FOR EACH ROW EXECUTE FUNCTION notify_alert_inputs();
CREATE TRIGGER patient_news2_settings_notify AFTER INSERT OR UPDATE OR DELETE ON patient_news2_settings
    FOR EACH ROW EXECUTE FUNCTION notify_alert_inputs();
CREATE TRIGGER alerts_notify AFTER UPDATE ON alerts
    FOR EACH ROW
    WHEN (NEW.acknowledged_by IS DISTINCT FROM OLD.acknowledged_by
          OR NEW.resolved_by IS DISTINCT FROM OLD.resolved_by)
    EXECUTE FUNCTION notify_alert_inputs();
