-- Vitals: one row per reading. Unique on (device, metric, time) so a
-- redelivered MQTT message stores nothing twice.
--
-- With TimescaleDB (the extension already created in this database, or
-- available and preloaded) the table is a hypertable with compression and
-- retention policies. On plain PostgreSQL it is range-partitioned by time
-- into weekly partitions that the server creates ahead and drops when they
-- fall out of retention (vitals_store::partitions). Queries are the same on
-- both (date_bin, not time_bucket).

DO $$
DECLARE
    timescale boolean :=
        EXISTS (SELECT 1 FROM pg_extension WHERE extname = 'timescaledb')
        OR (EXISTS (SELECT 1 FROM pg_available_extensions WHERE name = 'timescaledb')
            AND current_setting('shared_preload_libraries') LIKE '%timescaledb%');
BEGIN
    IF timescale THEN
        CREATE EXTENSION IF NOT EXISTS timescaledb;
    END IF;
    EXECUTE format(
        'CREATE TABLE vitals (
            time        timestamptz NOT NULL,
            device_id   uuid NOT NULL,
            metric      text NOT NULL,
            patient_id  uuid NOT NULL,
            value       double precision NOT NULL,
            received_at timestamptz NOT NULL DEFAULT now(),
            UNIQUE (device_id, metric, time)
        ) %s',
        CASE WHEN timescale THEN '' ELSE 'PARTITION BY RANGE (time)' END);
    IF timescale THEN
        PERFORM create_hypertable('vitals', 'time', chunk_time_interval => interval '1 day');
        ALTER TABLE vitals SET (timescaledb.compress, timescaledb.compress_segmentby = 'patient_id, metric',
                                timescaledb.compress_orderby = 'time DESC');
        PERFORM add_compression_policy('vitals', interval '7 days');
        PERFORM add_retention_policy('vitals', interval '365 days');
    END IF;
END $$;

CREATE INDEX vitals_patient_metric_time ON vitals (patient_id, metric, time DESC);

-- Messages and records the gateway could not use, with their reason, so a
-- bad device is visible and one bad message never blocks the rest.
CREATE TABLE rejected_messages (
    id           bigserial PRIMARY KEY,
    received_at  timestamptz NOT NULL DEFAULT now(),
    device_id    uuid,
    topic        text NOT NULL,
    reason       text NOT NULL,
    detail       text NOT NULL,
    record_index integer,
    payload      bytea NOT NULL           -- truncated to a bounded size by the gateway
);
CREATE INDEX rejected_messages_device ON rejected_messages (device_id, received_at DESC);
CREATE INDEX rejected_messages_received ON rejected_messages (received_at DESC);
