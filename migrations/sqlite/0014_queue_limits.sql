-- Queue limits (see migrations/postgres/0014): the limits as JSON text, the rate limit's
-- theoretical arrival time, the partition the last claim ended on, each job's partition key
-- and each partition's own rate state.
ALTER TABLE sluice_queues ADD COLUMN limits TEXT;
ALTER TABLE sluice_queues ADD COLUMN rate_tat INTEGER;
ALTER TABLE sluice_queues ADD COLUMN partition_cursor TEXT;
ALTER TABLE sluice_queues ADD COLUMN autoscale TEXT;
ALTER TABLE sluice_jobs ADD COLUMN partition_key TEXT;
CREATE INDEX sluice_jobs_partitions ON sluice_jobs (queue, partition_key, priority, id)
    WHERE state = 'available' AND partition_key IS NOT NULL;
CREATE TABLE sluice_partition_rates (
    queue TEXT    NOT NULL,
    key   TEXT    NOT NULL,
    tat   INTEGER NOT NULL,
    PRIMARY KEY (queue, key)
) WITHOUT ROWID;
