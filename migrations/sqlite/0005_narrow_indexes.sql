-- As in PostgreSQL (migrations/postgres/0005): each index holds only the jobs its reader
-- looks for, so a job's claim and outcome no longer move it within a wide state index.
DROP INDEX sluice_jobs_state;
CREATE INDEX sluice_jobs_fetch ON sluice_jobs (queue, priority, scheduled_at, id)
    WHERE state = 'available';
CREATE INDEX sluice_jobs_running ON sluice_jobs (lease_expires_at)
    WHERE state = 'running';
