DROP TABLE email_changes;
CREATE TABLE audit_events_bound (
    id TEXT PRIMARY KEY,
    account_id TEXT NOT NULL REFERENCES accounts (id) ON DELETE CASCADE,
    kind TEXT NOT NULL,
    at BIGINT NOT NULL,
    ip TEXT,
    user_agent TEXT,
    session_id TEXT,
    key_id TEXT
);
INSERT INTO audit_events_bound (id, account_id, kind, at, ip, user_agent, session_id, key_id)
    SELECT id, account_id, kind, at, ip, user_agent, session_id, key_id FROM audit_events WHERE account_id IN (SELECT id FROM accounts);
DROP TABLE audit_events;
ALTER TABLE audit_events_bound RENAME TO audit_events;
CREATE INDEX audit_events_account_at ON audit_events (account_id, at, id);
ALTER TABLE accounts DROP COLUMN disabled_at;
