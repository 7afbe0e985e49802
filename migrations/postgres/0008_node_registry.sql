-- What the nodes page shows of each node: the Sluice version it runs, and its lease, by which
-- its health is judged (late after a missed heartbeat, dead once a lease has passed).
ALTER TABLE sluice_nodes ADD COLUMN version TEXT NOT NULL DEFAULT '';
ALTER TABLE sluice_nodes ADD COLUMN lease_ms BIGINT NOT NULL DEFAULT 30000;
