-- The worker's queue moves out of `deliveries` into a narrow table of its own.
--
-- A delivery is pending exactly while it has a row here: when it is due and who holds its lease.
-- Leasing rewrites only this small row, and `deliveries` is written once per attempt with no
-- indexed column changing, so PostgreSQL can do it as a HOT update (the free space left on each
-- page by the fillfactor is where the new row version goes).
CREATE TABLE delivery_queue (
    delivery_id      TEXT PRIMARY KEY REFERENCES deliveries (id) ON DELETE CASCADE,
    endpoint_id      TEXT NOT NULL,
    due_at           BIGINT NOT NULL,
    lease_owner      TEXT,
    lease_expires_at BIGINT
) WITH (fillfactor = 70);
CREATE INDEX delivery_queue_due ON delivery_queue (endpoint_id, due_at);

INSERT INTO delivery_queue (delivery_id, endpoint_id, due_at, lease_owner, lease_expires_at)
SELECT id, endpoint_id, next_attempt_at, lease_owner, lease_expires_at
FROM deliveries WHERE status = 'pending';

DROP INDEX deliveries_due;
ALTER TABLE deliveries DROP COLUMN lease_owner, DROP COLUMN lease_expires_at;
ALTER TABLE deliveries SET (fillfactor = 70);
