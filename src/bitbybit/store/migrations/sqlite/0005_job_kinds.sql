-- The queue carries jobs of any kind (ADR 0008): webhook deliveries, and the jobs of other
-- channels, whose content and history live in `jobs` and `job_attempts`.
--
-- A queue row names its kind and its target (what concurrency caps and pacing count against: an
-- endpoint, for a webhook). It no longer references `deliveries`, since other kinds' jobs are
-- not deliveries: deleting an endpoint deletes its queue rows itself. (SQLite changes a
-- table's constraints only by building it anew.)
CREATE TABLE delivery_queue_new (
    delivery_id      TEXT PRIMARY KEY,
    target           TEXT NOT NULL,
    due_at           INTEGER NOT NULL,
    lease_owner      TEXT,
    lease_expires_at INTEGER,
    kind             TEXT NOT NULL
) WITHOUT ROWID;
INSERT INTO delivery_queue_new (delivery_id, target, due_at, lease_owner, lease_expires_at, kind)
SELECT delivery_id, endpoint_id, due_at, lease_owner, lease_expires_at, 'webhook'
FROM delivery_queue;
DROP TABLE delivery_queue;
ALTER TABLE delivery_queue_new RENAME TO delivery_queue;
CREATE INDEX delivery_queue_due ON delivery_queue (target, due_at);

CREATE TABLE jobs (
    id               TEXT PRIMARY KEY,
    kind             TEXT NOT NULL,
    target           TEXT NOT NULL,
    company_id       TEXT NOT NULL REFERENCES companies (id) ON DELETE CASCADE,
    mode             TEXT NOT NULL,
    payload          BLOB NOT NULL,
    status           TEXT NOT NULL,
    attempts         INTEGER NOT NULL,
    next_attempt_at  INTEGER NOT NULL,
    last_status_code INTEGER,
    last_error       TEXT,
    created_at       INTEGER NOT NULL,
    updated_at       INTEGER NOT NULL
);
CREATE INDEX jobs_company ON jobs (company_id, mode, kind, created_at);
CREATE INDEX jobs_pending ON jobs (target) WHERE status = 'pending';

CREATE TABLE job_attempts (
    seq           INTEGER PRIMARY KEY AUTOINCREMENT,
    job_id        TEXT NOT NULL REFERENCES jobs (id) ON DELETE CASCADE,
    number        INTEGER NOT NULL,
    started_at    INTEGER NOT NULL,
    latency_ms    INTEGER NOT NULL,
    status_code   INTEGER,
    error         TEXT,
    response_body BLOB,
    worker        TEXT NOT NULL
);
CREATE INDEX job_attempts_job ON job_attempts (job_id, number);
