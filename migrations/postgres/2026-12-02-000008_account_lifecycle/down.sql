DROP TABLE email_changes;
DELETE FROM audit_events WHERE account_id NOT IN (SELECT id FROM accounts);
ALTER TABLE audit_events ADD CONSTRAINT audit_events_account_id_fkey FOREIGN KEY (account_id) REFERENCES accounts (id) ON DELETE CASCADE;
ALTER TABLE accounts DROP COLUMN disabled_at;
