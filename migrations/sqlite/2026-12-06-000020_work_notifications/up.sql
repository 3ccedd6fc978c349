-- PostgreSQL's migration 20 announces new background work to the listening instances. SQLite
-- has no notifications: its workers keep asking every second, which costs a read of a local
-- file, not a round trip. This migration keeps the numbering of both backends the same.
SELECT 1;
