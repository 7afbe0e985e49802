-- Queue limits every node obeys (src/limits.rs): the limits themselves as JSON, and the
-- state a claim keeps under a lock on the queue's row: the rate limit's theoretical arrival
-- time (GCRA, microseconds since the epoch) and the partition the last claim ended on, so
-- the next one starts after it and keys take turns.
ALTER TABLE sluice_queues ADD COLUMN limits JSONB;
ALTER TABLE sluice_queues ADD COLUMN rate_tat BIGINT;
ALTER TABLE sluice_queues ADD COLUMN partition_cursor TEXT;
-- Autoscaling of the queue's concurrency on each node (src/limits.rs, Autoscale).
ALTER TABLE sluice_queues ADD COLUMN autoscale JSONB;
-- The partition a job counts in, on a queue that had partitions when it was enqueued.
ALTER TABLE sluice_jobs ADD COLUMN partition_key TEXT;
-- Each partition's next jobs, in enqueue order (a retried job keeps its place ahead of the
-- jobs enqueued after it); only partitioned jobs are in it, so a queue without partitions
-- pays nothing for it.
CREATE INDEX sluice_jobs_partitions ON sluice_jobs (queue, partition_key, priority, id)
    WHERE state = 'available' AND partition_key IS NOT NULL;
-- Each partition's own rate limit state; a row whose time has passed means the same as none.
CREATE TABLE sluice_partition_rates (
    queue TEXT   NOT NULL,
    key   TEXT   NOT NULL,
    tat   BIGINT NOT NULL,
    PRIMARY KEY (queue, key)
);
