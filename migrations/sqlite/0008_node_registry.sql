-- The node's version and lease (see migrations/postgres/0008).
ALTER TABLE sluice_nodes ADD COLUMN version TEXT NOT NULL DEFAULT '';
ALTER TABLE sluice_nodes ADD COLUMN lease_ms INTEGER NOT NULL DEFAULT 30000;
