-- What the dashboard needs (see migrations/postgres/0010). Times are microseconds since the
-- Unix epoch.
CREATE TABLE sluice_sessions (
    hash       TEXT    PRIMARY KEY,
    token_hash TEXT    NOT NULL,
    created_at INTEGER NOT NULL,
    expires_at INTEGER NOT NULL
);
CREATE INDEX sluice_sessions_expiry ON sluice_sessions (expires_at);

ALTER TABLE sluice_attempts ADD COLUMN context TEXT;

CREATE INDEX sluice_jobs_unsettled ON sluice_jobs (state, id)
    WHERE state IN ('scheduled', 'retryable', 'discarded', 'cancelled');
