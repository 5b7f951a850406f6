-- The latest reading of every metric of every patient, kept current by the
-- statement that stores readings (store::insert_batch). NEWS2 after every
-- batch, the live feed's snapshot and the dashboard read it. Searching the
-- readings of the last hour instead cost one query per patient per batch
-- and stopped ingest well below 10,000 messages a second.
-- fillfactor 70 leaves room on each page so updates stay HOT (no index churn).
CREATE TABLE vitals_latest (
    patient_id uuid NOT NULL,
    metric     text NOT NULL,
    time       timestamptz NOT NULL,
    value      double precision NOT NULL,
    device_id  uuid NOT NULL,
    PRIMARY KEY (patient_id, metric)
) WITH (fillfactor = 70);

INSERT INTO vitals_latest (patient_id, metric, time, value, device_id)
SELECT DISTINCT ON (patient_id, metric) patient_id, metric, time, value, device_id
FROM vitals
ORDER BY patient_id, metric, time DESC;
