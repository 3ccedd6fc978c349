-- The purge finds the few rows that are due among many by an index, so a pass costs what it
-- deletes, not the size of the tables (tests/contract/plans.rs reads the plans on PostgreSQL).
CREATE INDEX audit_events_at ON audit_events (at);
CREATE INDEX sessions_revoked_at ON sessions (revoked_at) WHERE revoked_at IS NOT NULL;
CREATE INDEX email_verification_tokens_used_at ON email_verification_tokens (used_at) WHERE used_at IS NOT NULL;
CREATE INDEX email_verification_tokens_expires_at ON email_verification_tokens (expires_at);
CREATE INDEX password_reset_tokens_used_at ON password_reset_tokens (used_at) WHERE used_at IS NOT NULL;
CREATE INDEX password_reset_tokens_expires_at ON password_reset_tokens (expires_at);
CREATE INDEX accounts_unverified_created_at ON accounts (created_at) WHERE email_verified_at IS NULL;
CREATE INDEX known_devices_last_seen_at ON known_devices (last_seen_at);
CREATE INDEX rate_limits_window_start ON rate_limits (window_start);
CREATE INDEX mfa_factors_unconfirmed_created_at ON mfa_factors (created_at) WHERE confirmed_at IS NULL;
