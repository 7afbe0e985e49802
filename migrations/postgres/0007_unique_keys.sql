-- Idempotency keys (and, later, unique jobs): an enqueue that names a key already held by a
-- job returns that job instead of inserting another. A key is held until unique_expires_at;
-- an expired key is released by the next enqueue that names it. Only keyed jobs are in the
-- index, so jobs without a key cost nothing more.
ALTER TABLE sluice_jobs ADD COLUMN unique_key TEXT;
ALTER TABLE sluice_jobs ADD COLUMN unique_expires_at TIMESTAMPTZ;
CREATE UNIQUE INDEX sluice_jobs_unique_key ON sluice_jobs (unique_key) WHERE unique_key IS NOT NULL;
