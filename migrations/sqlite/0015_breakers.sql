-- Circuit breakers (see migrations/postgres/0015): states and policies, and calls per second.
CREATE TABLE sluice_breakers (
    module        TEXT    NOT NULL,
    function      TEXT    NOT NULL,
    policy        TEXT,
    state         TEXT    NOT NULL DEFAULT 'closed' CHECK (state IN ('closed', 'open', 'half_open')),
    trips         INTEGER NOT NULL DEFAULT 0,
    reopen_at     INTEGER,
    probes_left   INTEGER NOT NULL DEFAULT 0,
    probes_passed INTEGER NOT NULL DEFAULT 0,
    counted_from  INTEGER NOT NULL,
    version       INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (module, function)
) WITHOUT ROWID;
CREATE TABLE sluice_breaker_calls (
    module   TEXT    NOT NULL,
    function TEXT    NOT NULL,
    second   INTEGER NOT NULL,
    calls    INTEGER NOT NULL,
    failures INTEGER NOT NULL,
    PRIMARY KEY (module, function, second)
) WITHOUT ROWID;
