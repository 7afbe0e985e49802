-- Settings every node obeys (see migrations/postgres/0016), as JSON text by name.
CREATE TABLE sluice_settings (
    key        TEXT    PRIMARY KEY,
    value      TEXT    NOT NULL,
    updated_at INTEGER NOT NULL
) WITHOUT ROWID;
