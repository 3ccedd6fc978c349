-- Passkeys are second factors too: their credential id (base64url) is unique, since a
-- passwordless login finds the passkey by it; their public key and signature counter are
-- kept in `secret`, as the WebAuthn adapter stores them (public, stored as they are).
ALTER TABLE mfa_factors ADD COLUMN credential_id TEXT;
CREATE UNIQUE INDEX mfa_factors_credential ON mfa_factors (credential_id);

-- Passkey ceremonies in progress: the state between the options sent to the browser and its
-- answer. Single use (taken by the request that finishes it) and short-lived, and stored, so
-- that any instance finishes a ceremony another began. A second-step ceremony names its
-- login challenge; a passwordless one names no account until its passkey is known.
CREATE TABLE passkey_ceremonies (
    id TEXT PRIMARY KEY,
    purpose TEXT NOT NULL,
    account_id TEXT REFERENCES accounts (id) ON DELETE CASCADE,
    challenge_hash TEXT,
    state TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    expires_at BIGINT NOT NULL
);
CREATE INDEX passkey_ceremonies_expiry ON passkey_ceremonies (expires_at);
CREATE INDEX mfa_challenges_expiry ON mfa_challenges (expires_at);
