-- Cancelling a running job is a request: the node running it interrupts the attempt and
-- records it as `cancelled` through the usual fenced outcome, so an attempt that completed
-- first stays completed. A job whose node died with a request pending is cancelled by rescue.
ALTER TABLE sluice_jobs ADD COLUMN cancel_requested_at TIMESTAMPTZ;
