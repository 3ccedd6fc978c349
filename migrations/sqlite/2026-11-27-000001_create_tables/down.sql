DROP TABLE usage_counters;
DROP TABLE signing_keys;
DROP TABLE outbox;
DROP TABLE sessions;
DROP TABLE email_verification_tokens;
DROP TABLE accounts;
