-- Unique jobs (see migrations/postgres/0013): the states that hold a job's unique key, as
-- bits in the order of JobState::ALL; idempotency keys (no states) keep their own index.
ALTER TABLE sluice_jobs ADD COLUMN unique_states INTEGER;
DROP INDEX sluice_jobs_unique_key;
CREATE UNIQUE INDEX sluice_jobs_unique_key ON sluice_jobs (unique_key)
    WHERE unique_key IS NOT NULL AND unique_states IS NULL;
CREATE UNIQUE INDEX sluice_jobs_unique_states ON sluice_jobs (unique_key)
    WHERE unique_key IS NOT NULL AND unique_states & (CASE state
        WHEN 'available' THEN 1 WHEN 'scheduled' THEN 2 WHEN 'running' THEN 4
        WHEN 'retryable' THEN 8 WHEN 'completed' THEN 16 WHEN 'discarded' THEN 32
        WHEN 'cancelled' THEN 64 END) <> 0;
