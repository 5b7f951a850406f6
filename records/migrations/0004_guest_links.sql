-- Guest links: a clinician invites an interpreter or a family member into
-- one video visit. Each link is single-use (redeemed once, by the guest who
-- then holds a session scoped to that visit) and revocable (which also
-- ends that guest's session). Only the token's SHA-256 is stored.
CREATE TABLE guest_links (
    id              uuid PRIMARY KEY,
    appointment_id  uuid NOT NULL REFERENCES appointments (id),
    token_hash      bytea NOT NULL UNIQUE,
    -- What the clinician called the guest ("Interpreter", "Daughter").
    label           text NOT NULL CHECK (length(label) BETWEEN 1 AND 80),
    created_by      uuid NOT NULL REFERENCES users (id),
    created_at      timestamptz NOT NULL DEFAULT now(),
    -- The name the guest gave when redeeming the link.
    guest_name      text CHECK (guest_name IS NULL OR length(guest_name) BETWEEN 1 AND 80),
    used_at         timestamptz,
    revoked_at      timestamptz
);
CREATE INDEX guest_links_appointment ON guest_links (appointment_id);
