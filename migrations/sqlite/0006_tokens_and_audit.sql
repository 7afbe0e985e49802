-- API tokens and the audit log (see migrations/postgres/0006). Times are microseconds since
-- the Unix epoch.
CREATE TABLE sluice_tokens (
    name       TEXT    PRIMARY KEY,
    role       TEXT    NOT NULL CHECK (role IN ('read', 'operate', 'admin')),
    hash       TEXT    NOT NULL UNIQUE,
    created_at INTEGER NOT NULL
);

CREATE TABLE sluice_audit (
    id     INTEGER PRIMARY KEY AUTOINCREMENT,
    at     INTEGER NOT NULL,
    actor  TEXT    NOT NULL,
    action TEXT    NOT NULL,
    target TEXT    NOT NULL
);
