-- The credential version of the account when the password of a login challenge was checked:
-- a password reset or change before the second step ends the challenge, as it ends sessions.
-- A challenge from before this column reads as version 0 and ends too (5 minutes at most).
ALTER TABLE mfa_challenges ADD COLUMN credential_version BIGINT NOT NULL DEFAULT 0;
