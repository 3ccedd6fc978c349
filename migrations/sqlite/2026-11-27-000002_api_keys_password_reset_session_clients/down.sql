DROP TABLE api_keys;
DROP TABLE password_reset_tokens;
ALTER TABLE sessions DROP COLUMN ip;
ALTER TABLE sessions DROP COLUMN user_agent;
