-- Devices that logged in to an account: only the SHA-256 of the device cookie's token. A
-- device listed here is exempt from the account's failed-login limit.
CREATE TABLE known_devices (
    token_hash BYTEA PRIMARY KEY,
    account_id TEXT NOT NULL REFERENCES accounts (id) ON DELETE CASCADE,
    created_at BIGINT NOT NULL,
    last_seen_at BIGINT NOT NULL
);
CREATE INDEX known_devices_account_id ON known_devices (account_id);
