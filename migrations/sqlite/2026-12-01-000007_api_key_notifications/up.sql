-- PostgreSQL announces ended API keys to the instances' caches with a trigger. An SQLite
-- database serves one process, which caches no keys: nothing to announce. This migration
-- keeps the two trees numbered alike.
SELECT 1;
