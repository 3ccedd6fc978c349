-- An operator can disable an account: no new login, every session and key ended.
ALTER TABLE accounts ADD COLUMN disabled_at BIGINT;

-- Security events outlive an erased account, under a replaced account id, so they no longer
-- follow the account row.
ALTER TABLE audit_events DROP CONSTRAINT audit_events_account_id_fkey;

-- A requested change of address. Only digests of its two links are stored: the confirmation
-- sent to the new address, and the undo link sent to the old one.
CREATE TABLE email_changes (
    token_hash BYTEA PRIMARY KEY,
    undo_hash BYTEA NOT NULL UNIQUE,
    account_id TEXT NOT NULL REFERENCES accounts (id) ON DELETE CASCADE,
    old_email TEXT NOT NULL,
    new_email TEXT NOT NULL,
    requested_at BIGINT NOT NULL,
    expires_at BIGINT NOT NULL,
    undo_expires_at BIGINT NOT NULL,
    confirmed_at BIGINT,
    undone_at BIGINT
);
CREATE INDEX email_changes_account ON email_changes (account_id);
