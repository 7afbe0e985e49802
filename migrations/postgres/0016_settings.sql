-- Settings every node obeys that are not a queue's or a function's (the retention of
-- finished jobs, by state), as JSON by name. The config file seeds what is absent.
CREATE TABLE sluice_settings (
    key        TEXT        PRIMARY KEY,
    value      JSONB       NOT NULL,
    updated_at TIMESTAMPTZ NOT NULL DEFAULT now()
);
