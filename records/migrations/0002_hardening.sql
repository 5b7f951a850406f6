-- Hardening after review of the foundation.

-- TOTP replay protection: the last 30-second step a code was accepted for.
-- A code is accepted only for a later step, so each code works once.
ALTER TABLE users ADD COLUMN totp_last_step bigint;

-- The concrete resource of an audited request (its path: ids only, never
-- names, since query strings are not included), beside the route template.
ALTER TABLE audit_log ADD COLUMN resource_path text NOT NULL DEFAULT '';

-- At most one live join link per appointment, also under concurrent issues.
CREATE UNIQUE INDEX join_links_one_live ON join_links (appointment_id) WHERE revoked_at IS NULL;
