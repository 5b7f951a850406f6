-- A Bedside user has at most one account per identity provider: a second
-- provider account with the same e-mail must not be linked to them (it
-- would take the user over).
CREATE UNIQUE INDEX user_identities_one_per_issuer ON user_identities (issuer, user_id);

-- A finished sign-in's hand-off code is exchanged only by the browser that
-- started the sign-in: the SHA-256 of that browser's state cookie.
ALTER TABLE oidc_handoffs ADD COLUMN browser_hash bytea NOT NULL DEFAULT '\x'::bytea;
