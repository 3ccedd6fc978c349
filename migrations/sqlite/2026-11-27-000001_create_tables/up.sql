-- Identifiers are UUIDs in text form and instants are Unix milliseconds in BIGINT, the same
-- column types as the SQLite schema, so that one set of queries serves both backends.

CREATE TABLE accounts (
    id TEXT PRIMARY KEY,
    email TEXT NOT NULL UNIQUE,
    password_hash TEXT NOT NULL,
    email_verified_at BIGINT,
    created_at BIGINT NOT NULL
);

-- Only the SHA-256 digest of a verification token is stored.
CREATE TABLE email_verification_tokens (
    token_hash BLOB PRIMARY KEY,
    account_id TEXT NOT NULL REFERENCES accounts (id) ON DELETE CASCADE,
    expires_at BIGINT NOT NULL,
    used_at BIGINT
);
CREATE INDEX email_verification_tokens_account_id ON email_verification_tokens (account_id);

-- One row per login session; refresh tokens exist only as digests of the live token and its
-- parent, plus the nonce that derived one from the other.
CREATE TABLE sessions (
    id TEXT PRIMARY KEY,
    account_id TEXT NOT NULL REFERENCES accounts (id) ON DELETE CASCADE,
    created_at BIGINT NOT NULL,
    expires_at BIGINT NOT NULL,
    current_hash BLOB NOT NULL,
    current_issued_at BIGINT NOT NULL,
    current_expires_at BIGINT NOT NULL,
    previous_hash BLOB,
    rotation_nonce BLOB,
    generation BIGINT NOT NULL,
    revoked_at BIGINT,
    revoked_reason TEXT
);
CREATE INDEX sessions_account_id ON sessions (account_id);

-- Emails wait here until delivered; the bodies are cleared once sent or given up on, since
-- they hold single-use links.
CREATE TABLE outbox (
    id TEXT PRIMARY KEY,
    kind TEXT NOT NULL,
    recipient TEXT NOT NULL,
    subject TEXT NOT NULL,
    text_body TEXT,
    html_body TEXT,
    queued_at BIGINT NOT NULL,
    next_attempt_at BIGINT NOT NULL,
    attempts INTEGER NOT NULL DEFAULT 0,
    lease_id TEXT,
    lease_until BIGINT,
    sent_at BIGINT,
    failed_at BIGINT,
    last_error TEXT
);
CREATE INDEX outbox_pending ON outbox (next_attempt_at) WHERE sent_at IS NULL AND failed_at IS NULL;

-- The development signing key generated on first start, shared by every instance on this
-- database. Production deployments configure FLEXAUTH_SIGNING_KEY_FILE instead.
CREATE TABLE signing_keys (
    slot TEXT PRIMARY KEY,
    private_key_pem TEXT NOT NULL,
    created_at BIGINT NOT NULL
);

CREATE TABLE usage_counters (
    account_id TEXT NOT NULL REFERENCES accounts (id) ON DELETE CASCADE,
    day TEXT NOT NULL,
    requests BIGINT NOT NULL,
    PRIMARY KEY (account_id, day)
);
