-- Staff sign-in through the clinic's OpenID Connect provider.

-- A sign-in in progress: created when the browser is sent to the provider,
-- consumed (deleted) by the callback, valid for ten minutes. The state is
-- stored as its SHA-256; the nonce and PKCE verifier are useless without
-- the provider's code.
CREATE TABLE oidc_logins (
    state_hash     bytea PRIMARY KEY,
    nonce          text NOT NULL,
    pkce_verifier  text NOT NULL,
    next           text NOT NULL,
    created_at     timestamptz NOT NULL DEFAULT now()
);

-- A finished sign-in waiting for the web client to collect its tokens:
-- a one-time code (SHA-256 stored) valid for a minute, so tokens never
-- travel in a URL.
CREATE TABLE oidc_handoffs (
    code_hash   bytea PRIMARY KEY,
    user_id     uuid NOT NULL REFERENCES users (id),
    created_at  timestamptz NOT NULL DEFAULT now()
);

-- Which provider account is which Bedside user: matched once by verified
-- e-mail, then by the provider's stable subject (so a changed e-mail at the
-- provider cannot take over another account).
CREATE TABLE user_identities (
    issuer      text NOT NULL,
    subject     text NOT NULL,
    user_id     uuid NOT NULL REFERENCES users (id),
    created_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (issuer, subject)
);
CREATE INDEX user_identities_user ON user_identities (user_id);
