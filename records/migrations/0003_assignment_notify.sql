-- The device gateway resolves each arriving reading's patient from an
-- in-memory copy of the assignment history (for the alert engine's early
-- look, before the reading's batch commits). Every change to a device's
-- assignments, from any process, announces the device on
-- `bedside_device_assignments` so that copy is forgotten at once.
CREATE FUNCTION notify_device_assignments() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'DELETE' THEN
        PERFORM pg_notify('bedside_device_assignments', OLD.device_id::text);
    ELSE
        PERFORM pg_notify('bedside_device_assignments', NEW.device_id::text);
    END IF;
    RETURN NULL;
END $$;

CREATE TRIGGER device_assignments_notify AFTER INSERT OR UPDATE OR DELETE ON device_assignments
    FOR EACH ROW EXECUTE FUNCTION notify_device_assignments();
