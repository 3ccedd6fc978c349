ALTER TABLE accounts DROP COLUMN clients_forgotten_at;
