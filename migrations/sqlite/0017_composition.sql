-- no-transaction
-- Composition (sluice:job@0.2.0): a job's parent, the jobs it waits for, batches, topics.
-- Same tables, columns and meaning as migrations/postgres/0017_composition.sql.
--
-- The new `held` state needs a new CHECK on sluice_jobs, which SQLite can only get by
-- rebuilding the table (https://www.sqlite.org/lang_altertable.html#otheralter): foreign keys
-- off (outside any transaction, or dropping the table would cascade to the attempts), then
-- the copy in one transaction. The copy names its columns, so a rerun after a crash between
-- the commit and sqlx's record of it copies the same rows again.
PRAGMA foreign_keys = OFF;
BEGIN;
CREATE TABLE sluice_jobs_rebuilt (
    id               INTEGER PRIMARY KEY AUTOINCREMENT,
    queue            TEXT    NOT NULL,
    module           TEXT    NOT NULL,
    module_version   INTEGER,
    function         TEXT    NOT NULL,
    args             BLOB    NOT NULL,
    codec            TEXT    NOT NULL CHECK (codec IN ('json', 'postcard')),
    state            TEXT    NOT NULL CHECK (state IN
                         ('available', 'scheduled', 'running', 'retryable',
                          'completed', 'discarded', 'cancelled', 'held')),
    priority         INTEGER NOT NULL DEFAULT 0,
    attempt          INTEGER NOT NULL DEFAULT 0,
    max_attempts     INTEGER NOT NULL CHECK (max_attempts > 0),
    inserted_at      INTEGER NOT NULL,
    scheduled_at     INTEGER NOT NULL,
    attempted_at     INTEGER,
    lease_node       TEXT,
    lease_expires_at INTEGER,
    finalized_at     INTEGER,
    fuel_limit       INTEGER,
    timeout_ms       INTEGER,
    memory_limit     INTEGER,
    output           BLOB,
    cancel_requested_at INTEGER,
    lost_attempts    INTEGER NOT NULL DEFAULT 0,
    lost_in_a_row    INTEGER NOT NULL DEFAULT 0,
    unique_key       TEXT,
    unique_expires_at INTEGER,
    unique_states    INTEGER,
    partition_key    TEXT,
    parent_id        INTEGER,
    batch_id         INTEGER,
    waits_for        INTEGER NOT NULL DEFAULT 0,
    waiting_on       INTEGER NOT NULL DEFAULT 0,
    CHECK ((state = 'running') = (lease_node IS NOT NULL AND lease_expires_at IS NOT NULL))
);
INSERT INTO sluice_jobs_rebuilt (id, queue, module, module_version, function, args, codec,
    state, priority, attempt, max_attempts, inserted_at, scheduled_at, attempted_at,
    lease_node, lease_expires_at, finalized_at, fuel_limit, timeout_ms, memory_limit, output,
    cancel_requested_at, lost_attempts, lost_in_a_row, unique_key, unique_expires_at,
    unique_states, partition_key)
SELECT id, queue, module, module_version, function, args, codec,
    state, priority, attempt, max_attempts, inserted_at, scheduled_at, attempted_at,
    lease_node, lease_expires_at, finalized_at, fuel_limit, timeout_ms, memory_limit, output,
    cancel_requested_at, lost_attempts, lost_in_a_row, unique_key, unique_expires_at,
    unique_states, partition_key
FROM sluice_jobs;
-- Ids are never reused, even those of pruned jobs above the highest kept.
DELETE FROM sqlite_sequence WHERE name = 'sluice_jobs_rebuilt';
INSERT INTO sqlite_sequence (name, seq)
    SELECT 'sluice_jobs_rebuilt', seq FROM sqlite_sequence WHERE name = 'sluice_jobs';
DROP TABLE sluice_jobs;
ALTER TABLE sluice_jobs_rebuilt RENAME TO sluice_jobs;

CREATE INDEX sluice_jobs_due ON sluice_jobs (scheduled_at)
    WHERE state IN ('scheduled', 'retryable');
CREATE INDEX sluice_jobs_finalized ON sluice_jobs (finalized_at)
    WHERE finalized_at IS NOT NULL;
CREATE INDEX sluice_jobs_fetch ON sluice_jobs (queue, priority, scheduled_at, id)
    WHERE state = 'available';
CREATE INDEX sluice_jobs_running ON sluice_jobs (lease_expires_at)
    WHERE state = 'running';
CREATE INDEX sluice_jobs_unsettled ON sluice_jobs (state, id)
    WHERE state IN ('scheduled', 'retryable', 'discarded', 'cancelled', 'held');
CREATE INDEX sluice_jobs_available_by_id ON sluice_jobs (id) WHERE state = 'available';
CREATE UNIQUE INDEX sluice_jobs_unique_key ON sluice_jobs (unique_key)
    WHERE unique_key IS NOT NULL AND unique_states IS NULL;
CREATE UNIQUE INDEX sluice_jobs_unique_states ON sluice_jobs (unique_key)
    WHERE unique_key IS NOT NULL AND unique_states & (CASE state
        WHEN 'available' THEN 1 WHEN 'scheduled' THEN 2 WHEN 'running' THEN 4
        WHEN 'retryable' THEN 8 WHEN 'completed' THEN 16 WHEN 'discarded' THEN 32
        WHEN 'cancelled' THEN 64 WHEN 'held' THEN 128 END) <> 0;
CREATE INDEX sluice_jobs_partitions ON sluice_jobs (queue, partition_key, priority, id)
    WHERE state = 'available' AND partition_key IS NOT NULL;
CREATE INDEX sluice_jobs_children ON sluice_jobs (parent_id, id) WHERE parent_id IS NOT NULL;
CREATE INDEX sluice_jobs_batch ON sluice_jobs (batch_id, id) WHERE batch_id IS NOT NULL;

CREATE TABLE sluice_dependencies (
    job_id     INTEGER NOT NULL REFERENCES sluice_jobs (id) ON DELETE CASCADE,
    position   INTEGER NOT NULL,
    depends_on INTEGER NOT NULL,
    if_failed  TEXT    NOT NULL CHECK (if_failed IN ('cancel', 'run')),
    resolved   TEXT,
    PRIMARY KEY (job_id, position)
);
CREATE INDEX sluice_dependencies_on ON sluice_dependencies (depends_on);

CREATE TABLE sluice_batches (
    id           INTEGER PRIMARY KEY AUTOINCREMENT,
    parent_id    INTEGER,
    created_at   INTEGER NOT NULL,
    total        INTEGER NOT NULL,
    completed    INTEGER NOT NULL DEFAULT 0,
    discarded    INTEGER NOT NULL DEFAULT 0,
    cancelled    INTEGER NOT NULL DEFAULT 0,
    callbacks    TEXT    NOT NULL,
    finished_job INTEGER,
    success_job  INTEGER,
    discard_job  INTEGER
);

CREATE TABLE sluice_subscriptions (
    topic        TEXT    NOT NULL,
    queue        TEXT    NOT NULL,
    module       TEXT    NOT NULL,
    function     TEXT    NOT NULL,
    max_attempts INTEGER NOT NULL CHECK (max_attempts > 0),
    created_at   INTEGER NOT NULL,
    PRIMARY KEY (topic, queue, module, function)
);
PRAGMA foreign_key_check;
COMMIT;
PRAGMA foreign_keys = ON;
