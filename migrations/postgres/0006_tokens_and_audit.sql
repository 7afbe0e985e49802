-- API tokens and the audit log. A token is stored only as the SHA-256 of its text: tokens
-- are long and random, so a fast hash is enough, and the store never holds a usable secret.
CREATE TABLE sluice_tokens (
    name       TEXT        PRIMARY KEY,
    role       TEXT        NOT NULL CHECK (role IN ('read', 'operate', 'admin')),
    hash       TEXT        NOT NULL UNIQUE,
    created_at TIMESTAMPTZ NOT NULL DEFAULT now()
);

-- Who did what, when: every action through the API or the CLI but enqueueing (counted in
-- the metrics instead: it is the hot path).
CREATE TABLE sluice_audit (
    id     BIGSERIAL   PRIMARY KEY,
    at     TIMESTAMPTZ NOT NULL DEFAULT now(),
    actor  TEXT        NOT NULL,
    action TEXT        NOT NULL,
    target TEXT        NOT NULL
);
