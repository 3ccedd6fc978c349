-- Each instance's background work (mail, account requests, webhook messages, the signing key
-- ring) waits for these announcements instead of asking the database every second: a trigger
-- announces, on the channel the instances listen on, that a queue received work or that the
-- stored keys changed, in the transaction that made the change, so the announcement is sent
-- exactly when the change commits. Statement-level triggers with transition tables announce
-- once per statement, and only when it wrote a row: the fan-out of an event to webhook
-- endpoints inserts nothing when nobody subscribes, and must then wake nobody. PostgreSQL
-- folds identical announcements of one transaction into one.
CREATE FUNCTION flexauth_announce_work() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF EXISTS (SELECT 1 FROM changed) THEN
        PERFORM pg_notify('flexauth_work', TG_ARGV[0]);
    END IF;
    RETURN NULL;
END;
$$;

CREATE TRIGGER outbox_announce_work AFTER INSERT ON outbox
    REFERENCING NEW TABLE AS changed
    FOR EACH STATEMENT EXECUTE FUNCTION flexauth_announce_work('mail');
CREATE TRIGGER account_requests_announce_work AFTER INSERT ON account_requests
    REFERENCING NEW TABLE AS changed
    FOR EACH STATEMENT EXECUTE FUNCTION flexauth_announce_work('requests');
CREATE TRIGGER webhook_messages_announce_work AFTER INSERT ON webhook_messages
    REFERENCING NEW TABLE AS changed
    FOR EACH STATEMENT EXECUTE FUNCTION flexauth_announce_work('webhooks');
-- A statement-level trigger with transition tables names one event; a key rotation inserts,
-- retires updates, and a revoked key may be deleted.
CREATE TRIGGER signing_keys_announce_insert AFTER INSERT ON signing_keys
    REFERENCING NEW TABLE AS changed
    FOR EACH STATEMENT EXECUTE FUNCTION flexauth_announce_work('keys');
CREATE TRIGGER signing_keys_announce_update AFTER UPDATE ON signing_keys
    REFERENCING NEW TABLE AS changed
    FOR EACH STATEMENT EXECUTE FUNCTION flexauth_announce_work('keys');
CREATE TRIGGER signing_keys_announce_delete AFTER DELETE ON signing_keys
    REFERENCING OLD TABLE AS changed
    FOR EACH STATEMENT EXECUTE FUNCTION flexauth_announce_work('keys');
