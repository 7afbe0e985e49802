-- What the dashboard needs. A signed-in browser holds a session's text in an HttpOnly
-- cookie; the store keeps the text's SHA-256 and that of the token it was exchanged for, so
-- revoking the token ends its sessions (the join finds no token) and a token made again
-- under the same name does not revive them.
CREATE TABLE sluice_sessions (
    hash       TEXT        PRIMARY KEY,
    token_hash TEXT        NOT NULL,
    created_at TIMESTAMPTZ NOT NULL DEFAULT now(),
    expires_at TIMESTAMPTZ NOT NULL
);
CREATE INDEX sluice_sessions_expiry ON sluice_sessions (expires_at);

-- The dead letter's forensics: the node's and queue's state, written (as JSON) only with
-- the attempt that discarded its job.
ALTER TABLE sluice_attempts ADD COLUMN context JSONB;

-- The states an operator goes looking for, which are few among many completed jobs: the
-- jobs page filtered by one of them, and the dead letters, read this instead of walking
-- every job. `state` already appears in other indexes' predicates, so no update that was
-- HOT stops being one; a completed job never enters it.
CREATE INDEX sluice_jobs_unsettled ON sluice_jobs (state, id)
    WHERE state IN ('scheduled', 'retryable', 'discarded', 'cancelled');
