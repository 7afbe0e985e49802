-- Idempotency keys (see migrations/postgres/0007). Times are microseconds since the Unix epoch.
ALTER TABLE sluice_jobs ADD COLUMN unique_key TEXT;
ALTER TABLE sluice_jobs ADD COLUMN unique_expires_at INTEGER;
CREATE UNIQUE INDEX sluice_jobs_unique_key ON sluice_jobs (unique_key) WHERE unique_key IS NOT NULL;
