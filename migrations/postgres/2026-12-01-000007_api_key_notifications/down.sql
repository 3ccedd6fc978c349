DROP TRIGGER api_keys_announce_end ON api_keys;
DROP FUNCTION flexauth_announce_api_key_ended();
