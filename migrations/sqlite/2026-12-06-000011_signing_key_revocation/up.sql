-- A revoked signing key (a leaked one) is neither published nor trusted for anything from the
-- moment every instance reads the keys again (within a second): `flexauth keys revoke`.
ALTER TABLE signing_keys ADD COLUMN revoked_at BIGINT;
