-- When the account last forgot the clients it knew (a reset, a password change, an undone
-- address change, a disable, a global logout): only logins after it exempt a client address
-- from the per-account login limit. Its known devices are deleted at the same moment.
ALTER TABLE accounts ADD COLUMN clients_forgotten_at BIGINT;
