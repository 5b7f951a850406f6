-- Appointment reminders go through an outbox. The planner inserts one row
-- per appointment, channel, lead time and start (so a rescheduled visit gets
-- new rows and the old ones are skipped); the sender claims due rows with a
-- lease, sends, and marks them sent. A sender that dies holding a claim
-- loses it when the lease runs out and the row is sent again, with the same
-- Message-ID: nothing is lost, and the one message that can be repeated is
-- recognisably the same message.
CREATE TABLE reminder_outbox (
    id               uuid PRIMARY KEY,
    appointment_id   uuid NOT NULL REFERENCES appointments (id),
    channel          text NOT NULL CHECK (channel IN ('email', 'sms')),
    lead_minutes     integer NOT NULL CHECK (lead_minutes > 0),
    -- The start this reminder is about.
    starts_at        timestamptz NOT NULL,
    due_at           timestamptz NOT NULL,
    status           text NOT NULL DEFAULT 'pending'
                     CHECK (status IN ('pending', 'sending', 'sent', 'skipped', 'failed')),
    attempts         integer NOT NULL DEFAULT 0,
    -- When the row may next be claimed: its due time, the end of a claim's
    -- lease, or a retry's backoff.
    next_attempt_at  timestamptz NOT NULL,
    sent_at          timestamptz,
    last_error       text,
    created_at       timestamptz NOT NULL DEFAULT now(),
    UNIQUE (appointment_id, channel, lead_minutes, starts_at)
);
CREATE INDEX reminder_outbox_claimable ON reminder_outbox (next_attempt_at)
    WHERE status IN ('pending', 'sending');

-- A clinician's calendar feed: a secret URL (only its token's SHA-256 is
-- stored) that calendar applications subscribe to. One live feed per
-- clinician; a new one revokes the old.
CREATE TABLE calendar_feeds (
    id               uuid PRIMARY KEY,
    practitioner_id  uuid NOT NULL REFERENCES practitioners (id),
    token_hash       bytea NOT NULL UNIQUE,
    created_at       timestamptz NOT NULL DEFAULT now(),
    revoked_at       timestamptz
);
CREATE UNIQUE INDEX calendar_feeds_one_live ON calendar_feeds (practitioner_id)
    WHERE revoked_at IS NULL;
