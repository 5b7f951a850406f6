-- The battery level a device last reported (a SenML record named
-- `battery`), for the dashboards' device status.
ALTER TABLE device_status
    ADD COLUMN battery_percent real CHECK (battery_percent BETWEEN 0 AND 100),
    ADD COLUMN battery_at      timestamptz;
