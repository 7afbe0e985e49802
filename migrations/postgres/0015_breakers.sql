-- Circuit breakers (src/breakers.rs): one row per module and function with the breaker's
-- state, and rows whose function is `*` holding a policy for all of a module's functions.
-- `version` makes each change a compare-and-set: nodes change a breaker without a lock.
CREATE TABLE sluice_breakers (
    module        TEXT    NOT NULL,
    function      TEXT    NOT NULL,
    policy        JSONB,
    state         TEXT    NOT NULL DEFAULT 'closed' CHECK (state IN ('closed', 'open', 'half_open')),
    trips         INTEGER NOT NULL DEFAULT 0,
    reopen_at     BIGINT,
    probes_left   INTEGER NOT NULL DEFAULT 0,
    probes_passed INTEGER NOT NULL DEFAULT 0,
    counted_from  BIGINT  NOT NULL,
    version       BIGINT  NOT NULL DEFAULT 0,
    PRIMARY KEY (module, function)
);
-- Calls and failures per second of the functions a policy covers, as nodes report them;
-- a breaker reads its window from here. Microseconds since the epoch, like the states.
CREATE TABLE sluice_breaker_calls (
    module   TEXT   NOT NULL,
    function TEXT   NOT NULL,
    second   BIGINT NOT NULL,
    calls    BIGINT NOT NULL,
    failures BIGINT NOT NULL,
    PRIMARY KEY (module, function, second)
);
