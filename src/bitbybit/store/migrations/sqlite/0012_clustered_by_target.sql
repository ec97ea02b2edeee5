-- The worker's rows are stored by endpoint (docs/adr/0015-sqlite-rows-clustered-by-target.md).
--
-- A table with a rowid keeps its rows in the order they were written, and an event's deliveries
-- are written together: with ten endpoints, one endpoint's deliveries are one row in ten of every
-- page. A batch of that endpoint's results then wrote ten times the pages it would alone (each
-- page copied whole into the WAL, then into the database), so a healthy endpoint beside slow
-- ones drained at two thirds of its rate alone. Keyed by (endpoint, id), both tables keep an
-- endpoint's rows together, and every statement of the worker's names both.
--
-- `deliveries` keeps its id unique (the attempts reference it, and the API finds a delivery by
-- it). Migrations run with foreign keys off (SQLite's procedure for rebuilding a table): dropping
-- the old table deletes no attempt, and the attempts then reference the new one.
CREATE TABLE deliveries_by_endpoint (
    id               TEXT NOT NULL UNIQUE,
    event_id         TEXT NOT NULL REFERENCES events (id),
    endpoint_id      TEXT NOT NULL REFERENCES webhook_endpoints (id) ON DELETE CASCADE,
    company_id       TEXT NOT NULL,
    mode             TEXT NOT NULL,
    status           TEXT NOT NULL,
    event_type       TEXT NOT NULL,
    attempts         INTEGER NOT NULL,
    next_attempt_at  INTEGER NOT NULL,
    last_status_code INTEGER,
    last_error       TEXT,
    created_at       INTEGER NOT NULL,
    updated_at       INTEGER NOT NULL,
    PRIMARY KEY (endpoint_id, id)
) WITHOUT ROWID;
INSERT INTO deliveries_by_endpoint (id, event_id, endpoint_id, company_id, mode, status,
    event_type, attempts, next_attempt_at, last_status_code, last_error, created_at, updated_at)
SELECT id, event_id, endpoint_id, company_id, mode, status,
    event_type, attempts, next_attempt_at, last_status_code, last_error, created_at, updated_at
FROM deliveries;
DROP TABLE deliveries;
ALTER TABLE deliveries_by_endpoint RENAME TO deliveries;
CREATE INDEX deliveries_endpoint ON deliveries (endpoint_id, created_at);
CREATE INDEX deliveries_event ON deliveries (event_id);
CREATE INDEX deliveries_history ON deliveries (company_id, mode, created_at, id);
CREATE INDEX deliveries_unsettled ON deliveries (company_id, mode, status, created_at, id)
    WHERE status <> 'succeeded';
CREATE INDEX deliveries_type ON deliveries (company_id, mode, event_type, created_at, id);
CREATE INDEX deliveries_troubled ON deliveries (company_id, mode, created_at)
    WHERE status = 'failed' OR last_error IS NOT NULL;

-- The queue, keyed by (target, job): a target's jobs together, found by both.
CREATE TABLE delivery_queue_by_target (
    delivery_id      TEXT NOT NULL,
    target           TEXT NOT NULL,
    due_at           INTEGER NOT NULL,
    lease_owner      TEXT,
    lease_expires_at INTEGER,
    kind             TEXT NOT NULL,
    PRIMARY KEY (target, delivery_id)
) WITHOUT ROWID;
INSERT INTO delivery_queue_by_target (delivery_id, target, due_at, lease_owner,
    lease_expires_at, kind)
SELECT delivery_id, target, due_at, lease_owner, lease_expires_at, kind FROM delivery_queue;
DROP TABLE delivery_queue;
ALTER TABLE delivery_queue_by_target RENAME TO delivery_queue;
CREATE INDEX delivery_queue_due ON delivery_queue (target, due_at);
