-- The owners' security logs: one row per event, written in the transaction of the change it
-- records where there is one. Listed per account, newest first.
CREATE TABLE audit_events (
    id TEXT PRIMARY KEY,
    account_id TEXT NOT NULL REFERENCES accounts (id) ON DELETE CASCADE,
    kind TEXT NOT NULL,
    at BIGINT NOT NULL,
    ip TEXT,
    user_agent TEXT,
    session_id TEXT,
    key_id TEXT
);
CREATE INDEX audit_events_account_at ON audit_events (account_id, at, id);
