-- Every instance remembers the sessions that ended recently, so that an access token of an
-- ended session is refused at once without a database read per request. A session ends by
-- revocation (logout, a reset, reuse detection, a disable...) or by being deleted while live
-- (an erased account). A trigger records each ending here and announces it on the channel the
-- instances listen on, in the transaction that ends the session; an instance that lost its
-- listening connection reads the recent endings again when it is back. Ended sessions purged
-- later (already revoked) are not recorded again.
CREATE TABLE session_endings (
    session_id TEXT PRIMARY KEY,
    ended_at BIGINT NOT NULL
);
CREATE INDEX session_endings_ended_at ON session_endings (ended_at);

CREATE FUNCTION flexauth_record_session_end() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    ended TEXT;
BEGIN
    IF TG_OP = 'DELETE' THEN
        ended := OLD.id;
    ELSE
        ended := NEW.id;
    END IF;
    INSERT INTO session_endings (session_id, ended_at)
        VALUES (ended, (extract(epoch FROM clock_timestamp()) * 1000)::bigint)
        ON CONFLICT (session_id) DO NOTHING;
    PERFORM pg_notify('flexauth_sessions', ended);
    RETURN NULL;
END;
$$;

CREATE TRIGGER sessions_record_revocation
    AFTER UPDATE OF revoked_at ON sessions
    FOR EACH ROW WHEN (OLD.revoked_at IS NULL AND NEW.revoked_at IS NOT NULL)
    EXECUTE FUNCTION flexauth_record_session_end();

CREATE TRIGGER sessions_record_deletion
    AFTER DELETE ON sessions
    FOR EACH ROW WHEN (OLD.revoked_at IS NULL)
    EXECUTE FUNCTION flexauth_record_session_end();
