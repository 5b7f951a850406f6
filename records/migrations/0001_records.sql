-- Bedside records: people, devices, appointments, notes, consent, auth state, audit.
-- Times are timestamptz (stored UTC); the clinic's time zone is applied at the edges.

CREATE EXTENSION IF NOT EXISTS btree_gist; -- uuid equality inside GiST exclusion constraints

CREATE TABLE users (
    id              uuid PRIMARY KEY,
    email           text NOT NULL,
    name            text NOT NULL,
    role            text NOT NULL CHECK (role IN ('admin', 'clinician')),
    password_hash   text NOT NULL,              -- argon2id PHC string
    totp_secret     text,                       -- base32; set at enrolment
    totp_enabled    boolean NOT NULL DEFAULT false,
    active          boolean NOT NULL DEFAULT true,
    created_at      timestamptz NOT NULL DEFAULT now()
);
CREATE UNIQUE INDEX users_email_key ON users (lower(email));

CREATE TABLE recovery_codes (
    id          uuid PRIMARY KEY,
    user_id     uuid NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    code_hash   text NOT NULL,                  -- sha256 hex of the code
    used_at     timestamptz
);
CREATE INDEX recovery_codes_user ON recovery_codes (user_id);

CREATE TABLE refresh_tokens (
    id          uuid PRIMARY KEY,
    family_id   uuid NOT NULL,                  -- every rotation of one login shares it
    user_id     uuid NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    token_hash  bytea NOT NULL UNIQUE,          -- sha256 of the opaque token
    created_at  timestamptz NOT NULL DEFAULT now(),
    expires_at  timestamptz NOT NULL,
    rotated_at  timestamptz,                    -- set when exchanged for a successor
    revoked_at  timestamptz
);
CREATE INDEX refresh_tokens_family ON refresh_tokens (family_id);

-- Failed logins, kept briefly, to throttle per account and per client address.
CREATE TABLE login_failures (
    id          bigserial PRIMARY KEY,
    account     text NOT NULL,                  -- lower-cased e-mail as typed
    client_addr text NOT NULL,
    at          timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX login_failures_account ON login_failures (account, at);
CREATE INDEX login_failures_client ON login_failures (client_addr, at);

CREATE TABLE practitioners (
    id              uuid PRIMARY KEY,
    user_id         uuid UNIQUE REFERENCES users (id),
    name            text NOT NULL,
    qualification   text,
    active          boolean NOT NULL DEFAULT true,
    created_at      timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE patients (
    id          uuid PRIMARY KEY,
    mrn         text NOT NULL UNIQUE,           -- the clinic's medical record number
    given_name  text NOT NULL,
    family_name text NOT NULL,
    birth_date  date NOT NULL,
    sex         text NOT NULL CHECK (sex IN ('female', 'male', 'other', 'unknown')),
    email       text,
    phone       text,
    created_at  timestamptz NOT NULL DEFAULT now(),
    updated_at  timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE care_relationships (
    patient_id      uuid NOT NULL REFERENCES patients (id),
    practitioner_id uuid NOT NULL REFERENCES practitioners (id),
    created_at      timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (patient_id, practitioner_id)
);
CREATE INDEX care_relationships_practitioner ON care_relationships (practitioner_id);

CREATE TABLE devices (
    id                  uuid PRIMARY KEY,
    serial              text NOT NULL,
    kind                text NOT NULL CHECK (kind IN ('pulse_oximeter', 'blood_pressure_monitor', 'thermometer', 'scale', 'glucometer')),
    mqtt_username       text NOT NULL UNIQUE,
    mqtt_password_hash  text NOT NULL,          -- Mosquitto's $7$ PBKDF2-SHA512 line format
    created_at          timestamptz NOT NULL DEFAULT now(),
    UNIQUE (kind, serial)
);

-- Which patient a device belonged to, when. A reading belongs to the patient
-- the device was assigned to at the reading's time, so history is kept and
-- periods of one device never overlap.
CREATE TABLE device_assignments (
    id              uuid PRIMARY KEY,
    device_id       uuid NOT NULL REFERENCES devices (id),
    patient_id      uuid NOT NULL REFERENCES patients (id),
    assigned_from   timestamptz NOT NULL,
    assigned_to     timestamptz,
    CHECK (assigned_to IS NULL OR assigned_to > assigned_from),
    CONSTRAINT device_assignments_no_overlap
        EXCLUDE USING gist (device_id WITH =, tstzrange(assigned_from, assigned_to) WITH &&)
);
CREATE INDEX device_assignments_patient ON device_assignments (patient_id);

CREATE TABLE appointments (
    id                  uuid PRIMARY KEY,
    patient_id          uuid NOT NULL REFERENCES patients (id),
    practitioner_id     uuid NOT NULL REFERENCES practitioners (id),
    starts_at           timestamptz NOT NULL,
    ends_at             timestamptz NOT NULL,
    kind                text NOT NULL CHECK (kind IN ('video', 'in_person')),
    reason              text NOT NULL,
    status              text NOT NULL CHECK (status IN ('booked', 'arrived', 'in_progress', 'finished', 'cancelled', 'no_show')),
    arrived_at          timestamptz,
    started_at          timestamptz,
    finished_at         timestamptz,
    created_at          timestamptz NOT NULL DEFAULT now(),
    updated_at          timestamptz NOT NULL DEFAULT now(),
    CHECK (ends_at > starts_at),
    -- A clinician is never double-booked, even under concurrent bookings.
    -- Cancelled and no-show slots free the time again.
    CONSTRAINT appointments_no_double_booking
        EXCLUDE USING gist (practitioner_id WITH =, tstzrange(starts_at, ends_at) WITH &&)
        WHERE (status NOT IN ('cancelled', 'no_show'))
);
CREATE INDEX appointments_practitioner_start ON appointments (practitioner_id, starts_at);
CREATE INDEX appointments_patient_start ON appointments (patient_id, starts_at);
CREATE INDEX appointments_booked_start ON appointments (starts_at) WHERE status = 'booked';

-- Patient join links. Only a hash of the token is stored.
CREATE TABLE join_links (
    id              uuid PRIMARY KEY,
    appointment_id  uuid NOT NULL REFERENCES appointments (id),
    token_hash      bytea NOT NULL UNIQUE,
    created_at      timestamptz NOT NULL DEFAULT now(),
    revoked_at      timestamptz
);
CREATE INDEX join_links_appointment ON join_links (appointment_id);

CREATE TABLE visit_notes (
    id              uuid PRIMARY KEY,
    appointment_id  uuid NOT NULL REFERENCES appointments (id),
    patient_id      uuid NOT NULL REFERENCES patients (id),
    author_id       uuid NOT NULL REFERENCES users (id),
    text            text NOT NULL,
    status          text NOT NULL CHECK (status IN ('draft', 'signed')),
    signed_at       timestamptz,
    amends_note_id  uuid REFERENCES visit_notes (id),
    created_at      timestamptz NOT NULL DEFAULT now(),
    updated_at      timestamptz NOT NULL DEFAULT now(),
    CHECK ((status = 'signed') = (signed_at IS NOT NULL))
);
CREATE INDEX visit_notes_appointment ON visit_notes (appointment_id);
CREATE INDEX visit_notes_patient ON visit_notes (patient_id);

-- A signed note is a legal record: it can neither change nor disappear.
CREATE FUNCTION visit_notes_guard() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF OLD.status = 'signed' THEN
        RAISE EXCEPTION 'signed visit note % is immutable', OLD.id USING ERRCODE = 'check_violation';
    END IF;
    IF TG_OP = 'DELETE' THEN
        RETURN OLD;
    END IF;
    RETURN NEW;
END $$;
CREATE TRIGGER visit_notes_immutable_after_signing
    BEFORE UPDATE OR DELETE ON visit_notes
    FOR EACH ROW EXECUTE FUNCTION visit_notes_guard();

CREATE TABLE consents (
    id                  uuid PRIMARY KEY,
    patient_id          uuid NOT NULL REFERENCES patients (id),
    kind                text NOT NULL CHECK (kind IN ('telemedicine')),
    text_version        text NOT NULL,
    accepted_at         timestamptz NOT NULL DEFAULT now(),
    recorded_by_role    text NOT NULL CHECK (recorded_by_role IN ('patient', 'clinician', 'admin')),
    recorded_by_user    uuid REFERENCES users (id),
    appointment_id      uuid REFERENCES appointments (id)
);
CREATE INDEX consents_patient ON consents (patient_id, accepted_at);

-- Every read or write of health data, allowed or denied. Append-only: the
-- triggers below refuse UPDATE, DELETE and TRUNCATE for every role, owner included.
CREATE TABLE audit_log (
    id          bigserial PRIMARY KEY,
    at          timestamptz NOT NULL DEFAULT now(),
    actor_id    uuid,
    actor_role  text NOT NULL,
    patient_id  uuid,
    action      text NOT NULL,
    resource    text NOT NULL,
    outcome     text NOT NULL CHECK (outcome IN ('allowed', 'denied')),
    request_id  text NOT NULL,
    client_addr text NOT NULL
);
CREATE INDEX audit_log_patient_at ON audit_log (patient_id, at DESC);
CREATE INDEX audit_log_actor_at ON audit_log (actor_id, at DESC);
CREATE INDEX audit_log_at ON audit_log (at DESC);

CREATE FUNCTION audit_log_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'audit_log is append-only (% refused)', TG_OP USING ERRCODE = 'insufficient_privilege';
END $$;
CREATE TRIGGER audit_log_no_update_delete
    BEFORE UPDATE OR DELETE ON audit_log
    FOR EACH ROW EXECUTE FUNCTION audit_log_append_only();
CREATE TRIGGER audit_log_no_truncate
    BEFORE TRUNCATE ON audit_log
    FOR EACH STATEMENT EXECUTE FUNCTION audit_log_append_only();
REVOKE UPDATE, DELETE, TRUNCATE ON audit_log FROM PUBLIC;
