-- The jobs page filtered to available jobs reads newest first by id; the claim's index
-- (sluice_jobs_fetch) is in run order, so without this a large backlog was read whole and
-- sorted. Only available jobs enter it: enqueues add one entry, claims and outcomes none.
CREATE INDEX sluice_jobs_available_by_id ON sluice_jobs (id) WHERE state = 'available';
