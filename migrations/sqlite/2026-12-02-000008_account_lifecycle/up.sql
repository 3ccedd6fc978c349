-- An operator can disable an account: no new login, every session and key ended.
ALTER TABLE accounts ADD COLUMN disabled_at BIGINT;

-- Security events outlive an erased account, under a replaced account id, so they no longer
-- follow the account row.
-- (SQLite cannot drop a constraint: the table is rebuilt without it.)
CREATE TABLE audit_events_unbound (
    id TEXT PRIMARY KEY,
    account_id TEXT NOT NULL,
    kind TEXT NOT NULL,
    at BIGINT NOT NULL,
    ip TEXT,
    user_agent TEXT,
    session_id TEXT,
    key_id TEXT
);
INSERT INTO audit_events_unbound (id, account_id, kind, at, ip, user_agent, session_id, key_id)
    SELECT id, account_id, kind, at, ip, user_agent, session_id, key_id FROM audit_events;
DROP TABLE audit_events;
ALTER TABLE audit_events_unbound RENAME TO audit_events;
CREATE INDEX audit_events_account_at ON audit_events (account_id, at, id);

-- A requested change of address. Only digests of its two links are stored: the confirmation
-- sent to the new address, and the undo link sent to the old one.
CREATE TABLE email_changes (
    token_hash BLOB PRIMARY KEY,
    undo_hash BLOB NOT NULL UNIQUE,
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
