-- Webhook endpoints, added by the operator (`flexauth webhooks add`). The signing secret is
-- sealed with the key-encryption key when one is set; during a rotation the previous secret
-- signs beside the new one until `previous_secret_until`.
CREATE TABLE webhook_endpoints (
    id TEXT PRIMARY KEY,
    url TEXT NOT NULL,
    secret TEXT NOT NULL,
    previous_secret TEXT,
    previous_secret_until BIGINT,
    created_at BIGINT NOT NULL,
    failing_since BIGINT,
    disabled_at BIGINT
);

-- The event types each endpoint receives; `*` for all of them.
CREATE TABLE webhook_subscriptions (
    event_type TEXT NOT NULL,
    endpoint_id TEXT NOT NULL REFERENCES webhook_endpoints (id) ON DELETE CASCADE,
    PRIMARY KEY (event_type, endpoint_id)
);

-- One message per event and endpoint, written in the transaction of the change that caused
-- the event. No foreign key to the account: `account.deleted` outlives its account. A
-- delivered message is deleted (its attempts stay in webhook_attempts); one given up on is
-- kept for the operator until the purge.
CREATE TABLE webhook_messages (
    id TEXT PRIMARY KEY,
    endpoint_id TEXT NOT NULL REFERENCES webhook_endpoints (id) ON DELETE CASCADE,
    event_id TEXT NOT NULL,
    event_type TEXT NOT NULL,
    occurred_at BIGINT NOT NULL,
    account_id TEXT NOT NULL,
    email TEXT,
    session_id TEXT,
    key_id TEXT,
    factor_id TEXT,
    reason TEXT,
    ip TEXT,
    user_agent TEXT,
    queued_at BIGINT NOT NULL,
    next_attempt_at BIGINT NOT NULL,
    attempts INTEGER NOT NULL DEFAULT 0,
    lease_id TEXT,
    lease_until BIGINT,
    failed_at BIGINT
);
CREATE INDEX webhook_messages_due ON webhook_messages (endpoint_id, next_attempt_at) WHERE failed_at IS NULL;
CREATE INDEX webhook_messages_failed ON webhook_messages (failed_at) WHERE failed_at IS NOT NULL;

-- Every attempt, for `flexauth webhooks deliveries`.
CREATE TABLE webhook_attempts (
    id TEXT PRIMARY KEY,
    endpoint_id TEXT NOT NULL REFERENCES webhook_endpoints (id) ON DELETE CASCADE,
    event_id TEXT NOT NULL,
    event_type TEXT NOT NULL,
    attempt INTEGER NOT NULL,
    at BIGINT NOT NULL,
    duration_ms BIGINT NOT NULL,
    status INTEGER,
    error TEXT,
    result TEXT NOT NULL
);
CREATE INDEX webhook_attempts_endpoint ON webhook_attempts (endpoint_id, at);
CREATE INDEX webhook_attempts_at ON webhook_attempts (at);

-- When the end of a session that expired (never revoked) was announced as `session.ended`. The
-- purge finds the sessions that expired by their refresh token's expiry, which is never later
-- than the session's own.
ALTER TABLE sessions ADD COLUMN expiry_announced_at BIGINT;
CREATE INDEX sessions_current_expires_at ON sessions (current_expires_at);

-- When the expiry of an API key (never revoked) was announced as `api_key.revoked`.
ALTER TABLE api_keys ADD COLUMN expiry_announced_at BIGINT;
CREATE INDEX api_keys_unannounced_expiry ON api_keys (expires_at)
    WHERE revoked_at IS NULL AND expiry_announced_at IS NULL AND expires_at IS NOT NULL;
