-- Sluice schema, PostgreSQL. The SQLite schema (migrations/sqlite) has the same tables,
-- columns and meaning; timestamps there are integer microseconds since the Unix epoch.

CREATE TABLE sluice_modules (
    name        TEXT        NOT NULL,
    version     INTEGER     NOT NULL CHECK (version > 0),
    digest      TEXT        NOT NULL,
    wasm        BYTEA       NOT NULL,
    functions   JSONB       NOT NULL,
    uploaded_at TIMESTAMPTZ NOT NULL DEFAULT now(),
    PRIMARY KEY (name, version),
    UNIQUE (name, digest)
);

CREATE TABLE sluice_queues (
    name       TEXT        PRIMARY KEY,
    paused     BOOLEAN     NOT NULL DEFAULT false,
    -- Overrides a node's configured concurrency for this queue when set.
    concurrency INTEGER    CHECK (concurrency > 0),
    updated_at TIMESTAMPTZ NOT NULL DEFAULT now()
);

CREATE TABLE sluice_jobs (
    id               BIGSERIAL   PRIMARY KEY,
    queue            TEXT        NOT NULL,
    module           TEXT        NOT NULL,
    -- NULL runs the module's latest version at each attempt (hot upgrade).
    module_version   INTEGER,
    function         TEXT        NOT NULL,
    args             BYTEA       NOT NULL,
    codec            TEXT        NOT NULL CHECK (codec IN ('json', 'postcard')),
    state            TEXT        NOT NULL CHECK (state IN
                         ('available', 'scheduled', 'running', 'retryable',
                          'completed', 'discarded', 'cancelled')),
    priority         SMALLINT    NOT NULL DEFAULT 0,
    attempt          INTEGER     NOT NULL DEFAULT 0,
    max_attempts     INTEGER     NOT NULL CHECK (max_attempts > 0),
    inserted_at      TIMESTAMPTZ NOT NULL DEFAULT now(),
    scheduled_at     TIMESTAMPTZ NOT NULL DEFAULT now(),
    attempted_at     TIMESTAMPTZ,
    -- The lease: which node runs the job, and until when it is presumed alive.
    lease_node       TEXT,
    lease_expires_at TIMESTAMPTZ,
    finalized_at     TIMESTAMPTZ,
    fuel_limit       BIGINT,
    timeout_ms       BIGINT,
    memory_limit     BIGINT,
    output           BYTEA,
    CHECK ((state = 'running') = (lease_node IS NOT NULL AND lease_expires_at IS NOT NULL))
);

-- The fetch path: the next available jobs of a queue, in run order.
CREATE INDEX sluice_jobs_fetch ON sluice_jobs (queue, priority, scheduled_at, id)
    WHERE state = 'available';
-- Staging scheduled and retryable jobs whose time has come.
CREATE INDEX sluice_jobs_due ON sluice_jobs (scheduled_at)
    WHERE state IN ('scheduled', 'retryable');
-- Rescuing jobs whose lease expired, and extending a node's leases.
CREATE INDEX sluice_jobs_leases ON sluice_jobs (lease_node, lease_expires_at)
    WHERE state = 'running';
-- Listing and counting.
CREATE INDEX sluice_jobs_state_queue ON sluice_jobs (state, queue, id);
CREATE INDEX sluice_jobs_module ON sluice_jobs (module, id);
-- Pruning finished jobs.
CREATE INDEX sluice_jobs_finalized ON sluice_jobs (finalized_at)
    WHERE finalized_at IS NOT NULL;

-- The history: one row per finished attempt, written with the job's outcome.
CREATE TABLE sluice_attempts (
    job_id         BIGINT      NOT NULL REFERENCES sluice_jobs (id) ON DELETE CASCADE,
    attempt        INTEGER     NOT NULL,
    node           TEXT        NOT NULL,
    module_version INTEGER,
    started_at     TIMESTAMPTZ NOT NULL,
    finished_at    TIMESTAMPTZ NOT NULL,
    outcome        TEXT        NOT NULL,
    message        TEXT,
    trap_code      TEXT,
    fuel_consumed  BIGINT      NOT NULL DEFAULT 0,
    duration_us    BIGINT      NOT NULL DEFAULT 0,
    peak_memory    BIGINT      NOT NULL DEFAULT 0,
    logs           JSONB,
    PRIMARY KEY (job_id, attempt)
);

CREATE TABLE sluice_nodes (
    id           TEXT        PRIMARY KEY,
    host         TEXT        NOT NULL,
    pid          INTEGER     NOT NULL,
    started_at   TIMESTAMPTZ NOT NULL DEFAULT now(),
    heartbeat_at TIMESTAMPTZ NOT NULL DEFAULT now(),
    queues       JSONB       NOT NULL,
    running      INTEGER     NOT NULL DEFAULT 0
);

-- At most one row: the node that runs the maintenance duties, until its term expires.
CREATE TABLE sluice_leader (
    name       TEXT        PRIMARY KEY DEFAULT 'default',
    node_id    TEXT        NOT NULL,
    elected_at TIMESTAMPTZ NOT NULL,
    expires_at TIMESTAMPTZ NOT NULL
);

-- Wake the nodes that serve a queue when jobs become available in it; NOTIFY is delivered
-- only if the inserting transaction commits, and duplicates within it collapse.
CREATE FUNCTION sluice_notify_inserted() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('sluice_jobs', queue)
        FROM (SELECT DISTINCT queue FROM inserted WHERE state = 'available') AS queues;
    RETURN NULL;
END;
$$;

CREATE TRIGGER sluice_jobs_notify_insert
    AFTER INSERT ON sluice_jobs
    REFERENCING NEW TABLE AS inserted
    FOR EACH STATEMENT EXECUTE FUNCTION sluice_notify_inserted();
