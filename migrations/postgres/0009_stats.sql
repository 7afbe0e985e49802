-- Per-minute figures for charts, by queue: attempts completed and failed, and a histogram of
-- queue wait (from when a job was due to when its attempt started; bucket bounds in
-- src/store/mod.rs, STATS_WAIT_BOUNDS_MS). Each node adds what it counted every few seconds
-- (one upsert per queue and minute), so a chart reads a few rows per minute, never the jobs.
CREATE TABLE sluice_stats (
    minute     TIMESTAMPTZ NOT NULL,
    queue      TEXT        NOT NULL,
    completed  BIGINT      NOT NULL DEFAULT 0,
    failed     BIGINT      NOT NULL DEFAULT 0,
    wait_0     BIGINT      NOT NULL DEFAULT 0,
    wait_1     BIGINT      NOT NULL DEFAULT 0,
    wait_2     BIGINT      NOT NULL DEFAULT 0,
    wait_3     BIGINT      NOT NULL DEFAULT 0,
    wait_4     BIGINT      NOT NULL DEFAULT 0,
    wait_5     BIGINT      NOT NULL DEFAULT 0,
    wait_6     BIGINT      NOT NULL DEFAULT 0,
    wait_7     BIGINT      NOT NULL DEFAULT 0,
    wait_8     BIGINT      NOT NULL DEFAULT 0,
    wait_9     BIGINT      NOT NULL DEFAULT 0,
    wait_10    BIGINT      NOT NULL DEFAULT 0,
    wait_11    BIGINT      NOT NULL DEFAULT 0,
    wait_12    BIGINT      NOT NULL DEFAULT 0,
    wait_13    BIGINT      NOT NULL DEFAULT 0,
    wait_14    BIGINT      NOT NULL DEFAULT 0,
    wait_15    BIGINT      NOT NULL DEFAULT 0,
    PRIMARY KEY (minute, queue)
);
