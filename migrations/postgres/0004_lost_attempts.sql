-- Attempts lost with their node (rescued after the lease expired) are the node's misfortune,
-- not the job's failure: they do not count against max_attempts. A job lost this many times
-- in a row may be what brings nodes down: past the poison limit it is dead-lettered.
ALTER TABLE sluice_jobs ADD COLUMN lost_attempts INTEGER NOT NULL DEFAULT 0;
ALTER TABLE sluice_jobs ADD COLUMN lost_in_a_row INTEGER NOT NULL DEFAULT 0;
