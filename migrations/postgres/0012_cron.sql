-- Periodic jobs: the call each entry enqueues, its schedule, and the newest slot handled.
-- The leader inserts a slot's job and moves `last_slot` in one transaction, conditional on
-- `last_slot` being what it read; the job's unique key (`cron:NAME:SLOT`) holds a slot
-- once even if two nodes believe they lead.
CREATE TABLE sluice_cron (
    name         TEXT        PRIMARY KEY,
    schedule     TEXT        NOT NULL,
    timezone     TEXT        NOT NULL,
    misfire      TEXT        NOT NULL CHECK (misfire IN ('skip', 'run_once')),
    queue        TEXT        NOT NULL,
    module       TEXT        NOT NULL,
    function     TEXT        NOT NULL,
    args         TEXT        NOT NULL,
    priority     SMALLINT    NOT NULL,
    max_attempts INTEGER     NOT NULL CHECK (max_attempts > 0),
    last_slot    TIMESTAMPTZ NOT NULL,
    updated_at   TIMESTAMPTZ NOT NULL
);
