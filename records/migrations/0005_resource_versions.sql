-- FHIR clients update patients and appointments with `If-Match` on a
-- version, so every change to either bumps a version number (and the time
-- FHIR shows as `meta.lastUpdated`). A trigger does it, so no code path
-- that changes a row can forget.
ALTER TABLE patients ADD COLUMN version bigint NOT NULL DEFAULT 1;
ALTER TABLE appointments ADD COLUMN version bigint NOT NULL DEFAULT 1;

CREATE FUNCTION bump_resource_version() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    NEW.version := OLD.version + 1;
    NEW.updated_at := greatest(NEW.updated_at, now());
    RETURN NEW;
END $$;

CREATE TRIGGER patients_version BEFORE UPDATE ON patients
    FOR EACH ROW EXECUTE FUNCTION bump_resource_version();
CREATE TRIGGER appointments_version BEFORE UPDATE ON appointments
    FOR EACH ROW EXECUTE FUNCTION bump_resource_version();
