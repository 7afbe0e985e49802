-- As in migrations/postgres/0003: cancelling a running job is a request its node acts on.
ALTER TABLE sluice_jobs ADD COLUMN cancel_requested_at INTEGER;
