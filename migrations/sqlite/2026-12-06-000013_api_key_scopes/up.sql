-- What a key may do at the operator's API: scopes of the vocabulary the operator declares
-- (FLEXAUTH_API_KEY_SCOPES), space-separated; empty for a key that carries none.
ALTER TABLE api_keys ADD COLUMN scopes TEXT NOT NULL DEFAULT '';
