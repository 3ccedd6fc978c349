-- Signing keys become a ring: a rotated key is stored in advance and signs from
-- `activates_at` (NULL: since it was created); a retired key stops signing at `retired_at`
-- and is kept until the tokens it signed have expired. `private_key_pem` holds either a PEM
-- or, with a key-encryption key configured, the sealed key.
ALTER TABLE signing_keys ADD COLUMN activates_at BIGINT;
ALTER TABLE signing_keys ADD COLUMN retired_at BIGINT;
