DROP INDEX mfa_challenges_expiry;
DROP TABLE passkey_ceremonies;
DROP INDEX mfa_factors_credential;
ALTER TABLE mfa_factors DROP COLUMN credential_id;
