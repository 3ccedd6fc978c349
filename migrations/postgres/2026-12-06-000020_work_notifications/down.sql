DROP TRIGGER signing_keys_announce_delete ON signing_keys;
DROP TRIGGER signing_keys_announce_update ON signing_keys;
DROP TRIGGER signing_keys_announce_insert ON signing_keys;
DROP TRIGGER webhook_messages_announce_work ON webhook_messages;
DROP TRIGGER account_requests_announce_work ON account_requests;
DROP TRIGGER outbox_announce_work ON outbox;
DROP FUNCTION flexauth_announce_work();
