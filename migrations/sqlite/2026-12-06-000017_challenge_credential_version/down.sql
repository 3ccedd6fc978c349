ALTER TABLE mfa_challenges DROP COLUMN credential_version;
