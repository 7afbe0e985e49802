-- Sluice schema, SQLite. Same tables, columns and meaning as migrations/postgres;
-- timestamps are integer microseconds since the Unix epoch, JSON is TEXT.

CREATE TABLE sluice_modules (
    name        TEXT    NOT NULL,
    version     INTEGER NOT NULL CHECK (version > 0),
    digest      TEXT    NOT NULL,
    wasm        BLOB    NOT NULL,
    functions   TEXT    NOT NULL,
    uploaded_at INTEGER NOT NULL,
    PRIMARY KEY (name, version),
    UNIQUE (name, digest)
);

CREATE TABLE sluice_queues (
    name        TEXT    PRIMARY KEY,
    paused      INTEGER NOT NULL DEFAULT 0,
    concurrency INTEGER CHECK (concurrency > 0),
    updated_at  INTEGER NOT NULL
);

CREATE TABLE sluice_jobs (
    id               INTEGER PRIMARY KEY AUTOINCREMENT,
    queue            TEXT    NOT NULL,
    module           TEXT    NOT NULL,
    module_version   INTEGER,
    function         TEXT    NOT NULL,
    args             BLOB    NOT NULL,
    codec            TEXT    NOT NULL CHECK (codec IN ('json', 'postcard')),
    state            TEXT    NOT NULL CHECK (state IN
                         ('available', 'scheduled', 'running', 'retryable',
                          'completed', 'discarded', 'cancelled')),
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
    CHECK ((state = 'running') = (lease_node IS NOT NULL AND lease_expires_at IS NOT NULL))
);

CREATE INDEX sluice_jobs_fetch ON sluice_jobs (queue, priority, scheduled_at, id)
    WHERE state = 'available';
CREATE INDEX sluice_jobs_due ON sluice_jobs (scheduled_at)
    WHERE state IN ('scheduled', 'retryable');
CREATE INDEX sluice_jobs_leases ON sluice_jobs (lease_node, lease_expires_at)
    WHERE state = 'running';
CREATE INDEX sluice_jobs_state_queue ON sluice_jobs (state, queue, id);
CREATE INDEX sluice_jobs_module ON sluice_jobs (module, id);
CREATE INDEX sluice_jobs_finalized ON sluice_jobs (finalized_at)
    WHERE finalized_at IS NOT NULL;

CREATE TABLE sluice_attempts (
    job_id         INTEGER NOT NULL REFERENCES sluice_jobs (id) ON DELETE CASCADE,
    attempt        INTEGER NOT NULL,
    node           TEXT    NOT NULL,
    module_version INTEGER,
    started_at     INTEGER NOT NULL,
    finished_at    INTEGER NOT NULL,
    outcome        TEXT    NOT NULL,
    message        TEXT,
    trap_code      TEXT,
    fuel_consumed  INTEGER NOT NULL DEFAULT 0,
    duration_us    INTEGER NOT NULL DEFAULT 0,
    peak_memory    INTEGER NOT NULL DEFAULT 0,
    logs           TEXT,
    PRIMARY KEY (job_id, attempt)
);

CREATE TABLE sluice_nodes (
    id           TEXT    PRIMARY KEY,
    host         TEXT    NOT NULL,
    pid          INTEGER NOT NULL,
    started_at   INTEGER NOT NULL,
    heartbeat_at INTEGER NOT NULL,
    queues       TEXT    NOT NULL,
    running      INTEGER NOT NULL DEFAULT 0
);

CREATE TABLE sluice_leader (
    name       TEXT    PRIMARY KEY DEFAULT 'default',
    node_id    TEXT    NOT NULL,
    elected_at INTEGER NOT NULL,
    expires_at INTEGER NOT NULL
);
