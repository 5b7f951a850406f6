-- Data-protection requests and retention.
--
-- Erasure (GDPR art. 17) keeps the patient row as a pseudonymous shell so
-- every foreign key and audit row stays intact; what identifies the person
-- is overwritten in one transaction (records::erasure). The request itself
-- is recorded, with who carried it out and when.

ALTER TABLE patients ADD COLUMN erased_at timestamptz;

CREATE TABLE erasure_requests (
    id              uuid PRIMARY KEY,
    patient_id      uuid NOT NULL REFERENCES patients (id),
    -- When the person asked, and the clinic's reference for the request
    -- (a ticket or letter number; no personal data).
    received_on     date NOT NULL,
    reference       text NOT NULL CHECK (length(reference) BETWEEN 1 AND 100),
    -- What happened to the readings: deleted, or kept under the
    -- pseudonymous id (configuration, recorded per request).
    vitals          text NOT NULL CHECK (vitals IN ('deleted', 'pseudonymised')),
    carried_out_by  uuid NOT NULL REFERENCES users (id),
    carried_out_at  timestamptz NOT NULL DEFAULT now()
);
CREATE UNIQUE INDEX erasure_requests_one_per_patient ON erasure_requests (patient_id);

-- A signed note never changes, except that an erasure overwrites its text
-- (the transaction that erases sets bedside.erasing to the patient's id).
CREATE OR REPLACE FUNCTION visit_notes_guard() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'UPDATE' AND current_setting('bedside.erasing', true) = OLD.patient_id::text THEN
        RETURN NEW;
    END IF;
    IF OLD.status = 'signed' THEN
        RAISE EXCEPTION 'signed visit note % is immutable', OLD.id USING ERRCODE = 'check_violation';
    END IF;
    IF TG_OP = 'DELETE' THEN
        RETURN OLD;
    END IF;
    RETURN NEW;
END $$;

-- The audit log stays append-only, with one exception: the retention pass
-- deletes rows older than the configured period (it sets
-- bedside.audit_purge_before in its own transaction). Nothing newer can go,
-- no row can change, and TRUNCATE stays refused.
CREATE OR REPLACE FUNCTION audit_log_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    purge_before text := current_setting('bedside.audit_purge_before', true);
BEGIN
    IF TG_OP = 'DELETE' AND purge_before IS NOT NULL AND purge_before <> ''
       AND OLD.at < purge_before::timestamptz THEN
        RETURN OLD;
    END IF;
    RAISE EXCEPTION 'audit_log is append-only (% refused)', TG_OP USING ERRCODE = 'insufficient_privilege';
END $$;
