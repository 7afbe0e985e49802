-- Composition (sluice:job@0.2.0): a job's parent, the jobs it waits for, batches, topics.
--
-- A job with dependencies is `held` until each has ended. `waiting_on` counts the
-- dependencies that have not: whoever ends the last one brings it to zero under the job's
-- row lock, so two dependencies ending at once on two nodes cannot both miss the release.
-- `waits_for` is how many it named, so a runner reads dependencies only for jobs that have.
ALTER TABLE sluice_jobs
    ADD COLUMN parent_id  BIGINT,
    ADD COLUMN batch_id   BIGINT,
    ADD COLUMN waits_for  INTEGER NOT NULL DEFAULT 0,
    ADD COLUMN waiting_on INTEGER NOT NULL DEFAULT 0;
ALTER TABLE sluice_jobs DROP CONSTRAINT sluice_jobs_state_check;
ALTER TABLE sluice_jobs ADD CONSTRAINT sluice_jobs_state_check CHECK (state IN
    ('available', 'scheduled', 'running', 'retryable', 'completed', 'discarded', 'cancelled',
     'held'));
-- Held jobs are read by state like the other unsettled ones.
DROP INDEX sluice_jobs_unsettled;
CREATE INDEX sluice_jobs_unsettled ON sluice_jobs (state, id)
    WHERE state IN ('scheduled', 'retryable', 'discarded', 'cancelled', 'held');
-- A held job is unfinished, so a unique job holds its key while held (bit 128).
DROP INDEX sluice_jobs_unique_states;
CREATE UNIQUE INDEX sluice_jobs_unique_states ON sluice_jobs (unique_key)
    WHERE unique_key IS NOT NULL AND unique_states & (CASE state
        WHEN 'available' THEN 1 WHEN 'scheduled' THEN 2 WHEN 'running' THEN 4
        WHEN 'retryable' THEN 8 WHEN 'completed' THEN 16 WHEN 'discarded' THEN 32
        WHEN 'cancelled' THEN 64 WHEN 'held' THEN 128 END)::smallint <> 0;
CREATE INDEX sluice_jobs_children ON sluice_jobs (parent_id, id) WHERE parent_id IS NOT NULL;
CREATE INDEX sluice_jobs_batch ON sluice_jobs (batch_id, id) WHERE batch_id IS NOT NULL;

-- One row per dependency, in the order the job named them. `depends_on` has no foreign key:
-- a dependency deleted by a user resolves as `deleted`. `resolved` is the state it ended in.
CREATE TABLE sluice_dependencies (
    job_id     BIGINT  NOT NULL REFERENCES sluice_jobs (id) ON DELETE CASCADE,
    position   INTEGER NOT NULL,
    depends_on BIGINT  NOT NULL,
    if_failed  TEXT    NOT NULL CHECK (if_failed IN ('cancel', 'run')),
    resolved   TEXT,
    PRIMARY KEY (job_id, position)
);
CREATE INDEX sluice_dependencies_on ON sluice_dependencies (depends_on);

-- A batch: its jobs are named at creation (`total`), counted as they end, and each callback
-- is enqueued once, its job's id recorded in the same update that decides to enqueue it.
CREATE TABLE sluice_batches (
    id           BIGSERIAL   PRIMARY KEY,
    parent_id    BIGINT,
    created_at   TIMESTAMPTZ NOT NULL DEFAULT now(),
    total        INTEGER     NOT NULL,
    completed    INTEGER     NOT NULL DEFAULT 0,
    discarded    INTEGER     NOT NULL DEFAULT 0,
    cancelled    INTEGER     NOT NULL DEFAULT 0,
    callbacks    JSONB       NOT NULL,
    finished_job BIGINT,
    success_job  BIGINT,
    discard_job  BIGINT
);

-- Topics: every subscription of a topic gets its own job for each event published to it.
CREATE TABLE sluice_subscriptions (
    topic        TEXT        NOT NULL,
    queue        TEXT        NOT NULL,
    module       TEXT        NOT NULL,
    function     TEXT        NOT NULL,
    max_attempts INTEGER     NOT NULL CHECK (max_attempts > 0),
    created_at   TIMESTAMPTZ NOT NULL DEFAULT now(),
    PRIMARY KEY (topic, queue, module, function)
);
