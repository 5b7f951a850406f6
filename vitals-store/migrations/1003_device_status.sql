-- Device liveness: the last status a device announced (retained `online`,
-- last-will `offline`) and when it was last heard from at all.
CREATE TABLE device_status (
    device_id   uuid PRIMARY KEY,
    online      boolean NOT NULL,
    last_seen   timestamptz NOT NULL,
    changed_at  timestamptz NOT NULL
);
CREATE INDEX device_status_silent ON device_status (last_seen) WHERE online;
