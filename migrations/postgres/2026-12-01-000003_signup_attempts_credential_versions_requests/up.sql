-- Every password change moves the credential version on; logins and password changes commit
-- only against the version they checked.
ALTER TABLE accounts ADD COLUMN credential_version BIGINT NOT NULL DEFAULT 0;

-- A verification link belongs to one sign-up attempt and carries the hash of the password
-- chosen in it (NULL for a resent link, confirmed by choosing a password on the page).
ALTER TABLE email_verification_tokens ADD COLUMN password_hash TEXT;
ALTER TABLE email_verification_tokens ADD COLUMN created_at BIGINT NOT NULL DEFAULT 0;
-- Links issued before attempts existed carry no password: the account's stored one may be an
-- earlier sign-up's (someone else's), so whoever confirms with such a link chooses the
-- password. An already verified account keeps none, so no old link can set a password.
DELETE FROM email_verification_tokens
WHERE used_at IS NULL AND account_id IN (SELECT id FROM accounts WHERE email_verified_at IS NOT NULL);

-- When the session last proved the password: its login, or a re-authentication.
ALTER TABLE sessions ADD COLUMN authenticated_at BIGINT NOT NULL DEFAULT 0;
UPDATE sessions SET authenticated_at = created_at;

-- Sign-up, resend and forgot requests wait here for the worker, so the request path does the
-- same work whether or not the address has an account. Rows are deleted once handled.
CREATE TABLE account_requests (
    id TEXT PRIMARY KEY,
    kind TEXT NOT NULL,
    email TEXT NOT NULL,
    password_hash TEXT,
    requested_at BIGINT NOT NULL,
    lease_id TEXT,
    lease_until BIGINT
);
CREATE INDEX account_requests_requested_at ON account_requests (requested_at);
