-- As in migrations/postgres/0004: lost attempts do not count; too many in a row poison a job.
ALTER TABLE sluice_jobs ADD COLUMN lost_attempts INTEGER NOT NULL DEFAULT 0;
ALTER TABLE sluice_jobs ADD COLUMN lost_in_a_row INTEGER NOT NULL DEFAULT 0;
