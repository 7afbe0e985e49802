-- Per-minute figures for charts (see migrations/postgres/0009). `minute` is microseconds since
-- the Unix epoch, at the start of the minute.
CREATE TABLE sluice_stats (
    minute     INTEGER NOT NULL,
    queue      TEXT    NOT NULL,
    completed  INTEGER NOT NULL DEFAULT 0,
    failed     INTEGER NOT NULL DEFAULT 0,
    wait_0     INTEGER NOT NULL DEFAULT 0,
    wait_1     INTEGER NOT NULL DEFAULT 0,
    wait_2     INTEGER NOT NULL DEFAULT 0,
    wait_3     INTEGER NOT NULL DEFAULT 0,
    wait_4     INTEGER NOT NULL DEFAULT 0,
    wait_5     INTEGER NOT NULL DEFAULT 0,
    wait_6     INTEGER NOT NULL DEFAULT 0,
    wait_7     INTEGER NOT NULL DEFAULT 0,
    wait_8     INTEGER NOT NULL DEFAULT 0,
    wait_9     INTEGER NOT NULL DEFAULT 0,
    wait_10    INTEGER NOT NULL DEFAULT 0,
    wait_11    INTEGER NOT NULL DEFAULT 0,
    wait_12    INTEGER NOT NULL DEFAULT 0,
    wait_13    INTEGER NOT NULL DEFAULT 0,
    wait_14    INTEGER NOT NULL DEFAULT 0,
    wait_15    INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (minute, queue)
);
