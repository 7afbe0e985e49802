-- Unique jobs, after River: a job built with unique options holds its key while its state is
-- one of `unique_states` (bits in the order of JobState::ALL: available 1, scheduled 2,
-- running 4, retryable 8, completed 16, discarded 32, cancelled 64). A partial unique index
-- over the key, whose predicate reads the state's bit, enforces it: a job that leaves those
-- states leaves the index, and the next enqueue of the same call is a new job. Idempotency
-- keys (no states, held until they expire) keep an index of their own.
ALTER TABLE sluice_jobs ADD COLUMN unique_states SMALLINT;
DROP INDEX sluice_jobs_unique_key;
CREATE UNIQUE INDEX sluice_jobs_unique_key ON sluice_jobs (unique_key)
    WHERE unique_key IS NOT NULL AND unique_states IS NULL;
CREATE UNIQUE INDEX sluice_jobs_unique_states ON sluice_jobs (unique_key)
    WHERE unique_key IS NOT NULL AND unique_states & (CASE state
        WHEN 'available' THEN 1 WHEN 'scheduled' THEN 2 WHEN 'running' THEN 4
        WHEN 'retryable' THEN 8 WHEN 'completed' THEN 16 WHEN 'discarded' THEN 32
        WHEN 'cancelled' THEN 64 END)::smallint <> 0;
