-- The resource servers that may introspect tokens (POST /v1/auth/introspect), registered by
-- the operator with 'flexauth clients create'. Only the SHA-256 of each secret is stored.
CREATE TABLE introspection_clients (
    id TEXT PRIMARY KEY,
    name TEXT NOT NULL,
    secret_hash BLOB NOT NULL UNIQUE,
    created_at BIGINT NOT NULL
);
