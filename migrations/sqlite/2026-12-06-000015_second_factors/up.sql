-- Second factors: TOTP authenticators (and, later, passkeys) of an account. A TOTP secret is
-- stored sealed with the key-encryption key when one is set. last_step is the newest TOTP time
-- step accepted: a code is accepted only for a later step, with a compare-and-swap, so a code
-- is never accepted twice on any instance. A factor counts once confirmed_at is set.
CREATE TABLE mfa_factors (
    id TEXT PRIMARY KEY,
    account_id TEXT NOT NULL REFERENCES accounts (id) ON DELETE CASCADE,
    kind TEXT NOT NULL,
    name TEXT NOT NULL,
    secret TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    confirmed_at BIGINT,
    last_step BIGINT,
    last_used_at BIGINT
);
CREATE INDEX mfa_factors_account ON mfa_factors (account_id);

-- Single-use recovery codes, stored as SHA-256 digests; a new set replaces the old one.
CREATE TABLE mfa_recovery_codes (
    code_hash BLOB PRIMARY KEY,
    account_id TEXT NOT NULL REFERENCES accounts (id) ON DELETE CASCADE,
    created_at BIGINT NOT NULL,
    used_at BIGINT
);
CREATE INDEX mfa_recovery_codes_account ON mfa_recovery_codes (account_id);

-- The second step of a login: a right password on an account with a factor yields a
-- challenge, not tokens. Only the digest of its token is stored; it is spent by the step
-- that succeeds, and dies after its lifetime or too many wrong codes.
CREATE TABLE mfa_challenges (
    token_hash BLOB PRIMARY KEY,
    account_id TEXT NOT NULL REFERENCES accounts (id) ON DELETE CASCADE,
    created_at BIGINT NOT NULL,
    expires_at BIGINT NOT NULL,
    failures INTEGER NOT NULL DEFAULT 0,
    user_agent TEXT,
    ip TEXT
);
CREATE INDEX mfa_challenges_account ON mfa_challenges (account_id);

-- How each session's login was made (RFC 8176 amr values, space-separated), kept across
-- refreshes, and when it last proved a second factor (for the operations that need one).
ALTER TABLE sessions ADD COLUMN amr TEXT NOT NULL DEFAULT 'pwd';
ALTER TABLE sessions ADD COLUMN second_factor_at BIGINT;
