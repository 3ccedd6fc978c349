-- One row per rate-limit key (a limit and what it counts: an address, an account, a session,
-- a recipient): the start of the current fixed window and the attempts in it. One upsert per
-- attempt keeps every instance on the same count; a row from an old window starts over.
CREATE TABLE rate_limits (
    key TEXT PRIMARY KEY,
    window_start BIGINT NOT NULL,
    hits BIGINT NOT NULL
);
