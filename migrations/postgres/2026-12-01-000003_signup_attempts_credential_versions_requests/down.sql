DROP TABLE account_requests;
ALTER TABLE sessions DROP COLUMN authenticated_at;
ALTER TABLE email_verification_tokens DROP COLUMN created_at;
ALTER TABLE email_verification_tokens DROP COLUMN password_hash;
ALTER TABLE accounts DROP COLUMN credential_version;
