-- Periodic jobs (see migrations/postgres/0012 for how slots are held once). Times are microseconds since the Unix epoch.
CREATE TABLE sluice_cron (
    name         TEXT    PRIMARY KEY,
    schedule     TEXT    NOT NULL,
    timezone     TEXT    NOT NULL,
    misfire      TEXT    NOT NULL CHECK (misfire IN ('skip', 'run_once')),
    queue        TEXT    NOT NULL,
    module       TEXT    NOT NULL,
    function     TEXT    NOT NULL,
    args         TEXT    NOT NULL,
    priority     INTEGER NOT NULL,
    max_attempts INTEGER NOT NULL CHECK (max_attempts > 0),
    last_slot    INTEGER NOT NULL,
    updated_at   INTEGER NOT NULL
);
