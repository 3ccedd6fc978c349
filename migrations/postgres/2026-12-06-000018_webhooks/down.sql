DROP INDEX api_keys_unannounced_expiry;
ALTER TABLE api_keys DROP COLUMN expiry_announced_at;
DROP INDEX sessions_current_expires_at;
ALTER TABLE sessions DROP COLUMN expiry_announced_at;
DROP TABLE webhook_attempts;
DROP TABLE webhook_messages;
DROP TABLE webhook_subscriptions;
DROP TABLE webhook_endpoints;
