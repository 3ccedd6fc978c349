ALTER TABLE signing_keys DROP COLUMN retired_at;
ALTER TABLE signing_keys DROP COLUMN activates_at;
