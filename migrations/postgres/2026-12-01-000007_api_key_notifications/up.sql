-- Every instance caches active API keys and must drop a key the moment it ends, however it
-- ends: revoked through the API, deleted with its account (the foreign key cascades), or
-- changed by an operator with SQL. A trigger announces each of these on the channel the
-- instances listen on, in the transaction that makes the change, so the announcement is sent
-- exactly when the change commits. Only the columns that end a key count: the once-a-minute
-- update of last_used_at must not empty every cache.
CREATE FUNCTION flexauth_announce_api_key_ended() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('flexauth_api_keys', '');
    RETURN NULL;
END;
$$;

CREATE TRIGGER api_keys_announce_end
    AFTER UPDATE OF revoked_at, expires_at OR DELETE ON api_keys
    FOR EACH STATEMENT EXECUTE FUNCTION flexauth_announce_api_key_ended();
