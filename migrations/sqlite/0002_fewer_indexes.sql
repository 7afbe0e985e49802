-- Fewer writes per job, as in migrations/postgres/0002: one index on (state, queue,
-- priority, scheduled_at, id) serves the fetch path, counting and listing by state and
-- queue, and finding a node's running jobs. The history keeps its foreign key here: SQLite
-- checks it with one lookup and no row lock.
DROP INDEX sluice_jobs_fetch;
DROP INDEX sluice_jobs_leases;
DROP INDEX sluice_jobs_state_queue;
DROP INDEX sluice_jobs_module;
CREATE INDEX sluice_jobs_state ON sluice_jobs (state, queue, priority, scheduled_at, id);
