-- Every instance remembers the sessions that ended recently, so that an access token of an
-- ended session is refused at once without a database read per request. A trigger records
-- each ending (a revocation, or the deletion of a live session with its account) in the
-- transaction that ends the session; the instances on this file read the new rows a few times
-- a second (SQLite has no notifications), and this instance at once after it ends a session.
CREATE TABLE session_endings (
    session_id TEXT PRIMARY KEY,
    ended_at BIGINT NOT NULL
);
CREATE INDEX session_endings_ended_at ON session_endings (ended_at);

CREATE TRIGGER sessions_record_revocation
    AFTER UPDATE OF revoked_at ON sessions
    FOR EACH ROW WHEN OLD.revoked_at IS NULL AND NEW.revoked_at IS NOT NULL
BEGIN
    INSERT OR IGNORE INTO session_endings (session_id, ended_at)
        VALUES (NEW.id, CAST((julianday('now') - 2440587.5) * 86400000 AS INTEGER));
END;

CREATE TRIGGER sessions_record_deletion
    AFTER DELETE ON sessions
    FOR EACH ROW WHEN OLD.revoked_at IS NULL
BEGIN
    INSERT OR IGNORE INTO session_endings (session_id, ended_at)
        VALUES (OLD.id, CAST((julianday('now') - 2440587.5) * 86400000 AS INTEGER));
END;
