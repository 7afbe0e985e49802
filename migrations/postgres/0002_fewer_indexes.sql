-- Fewer writes per job. A job changes state twice per attempt (claimed, finished), and in
-- PostgreSQL each change writes a new row version plus an entry in every index of the
-- table, since state appears in them all. One index on (state, queue, priority,
-- scheduled_at, id) now serves the fetch path, counting and listing by state and queue,
-- and finding a node's running jobs; the job id serves the rest. Listing by module scans.
DROP INDEX sluice_jobs_fetch;
DROP INDEX sluice_jobs_leases;
DROP INDEX sluice_jobs_state_queue;
DROP INDEX sluice_jobs_module;
CREATE INDEX sluice_jobs_state ON sluice_jobs (state, queue, priority, scheduled_at, id);

-- The history's foreign key checked and share-locked the job row for every attempt
-- recorded, in the statement that had just updated it. Deleting a job still deletes its
-- history: after each DELETE statement, in one set-based statement of its own (which also
-- sees an attempt recorded by a transaction that committed while the DELETE waited).
ALTER TABLE sluice_attempts DROP CONSTRAINT sluice_attempts_job_id_fkey;

CREATE FUNCTION sluice_forget_attempts() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    DELETE FROM sluice_attempts AS a USING deleted WHERE a.job_id = deleted.id;
    RETURN NULL;
END;
$$;

CREATE TRIGGER sluice_jobs_forget_attempts
    AFTER DELETE ON sluice_jobs
    REFERENCING OLD TABLE AS deleted
    FOR EACH STATEMENT EXECUTE FUNCTION sluice_forget_attempts();
