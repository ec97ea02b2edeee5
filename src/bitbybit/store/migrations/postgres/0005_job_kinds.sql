-- The queue carries jobs of any kind (ADR 0008): webhook deliveries, and the jobs of other
-- channels, whose content and history live in `jobs` and `job_attempts`.
--
-- A queue row names its kind and its target (what concurrency caps and pacing count against: an
-- endpoint, for a webhook). It no longer references `deliveries`, since other kinds' jobs are
-- not deliveries: deleting an endpoint deletes its queue rows itself.
ALTER TABLE delivery_queue DROP CONSTRAINT delivery_queue_delivery_id_fkey;
ALTER TABLE delivery_queue RENAME COLUMN endpoint_id TO target;
ALTER TABLE delivery_queue ADD COLUMN kind TEXT NOT NULL DEFAULT 'webhook';
ALTER TABLE delivery_queue ALTER COLUMN kind DROP DEFAULT;

CREATE TABLE jobs (
    id               TEXT PRIMARY KEY,
    kind             TEXT NOT NULL,
    target           TEXT NOT NULL,
    company_id       TEXT NOT NULL REFERENCES companies (id) ON DELETE CASCADE,
    mode             TEXT NOT NULL,
    payload          BYTEA NOT NULL,
    status           TEXT NOT NULL,
    attempts         BIGINT NOT NULL,
    next_attempt_at  BIGINT NOT NULL,
    last_status_code BIGINT,
    last_error       TEXT,
    created_at       BIGINT NOT NULL,
    updated_at       BIGINT NOT NULL
) WITH (fillfactor = 70);
CREATE INDEX jobs_company ON jobs (company_id, mode, kind, created_at);
CREATE INDEX jobs_pending ON jobs (target) WHERE status = 'pending';

CREATE TABLE job_attempts (
    seq           BIGSERIAL PRIMARY KEY,
    job_id        TEXT NOT NULL REFERENCES jobs (id) ON DELETE CASCADE,
    number        BIGINT NOT NULL,
    started_at    BIGINT NOT NULL,
    latency_ms    BIGINT NOT NULL,
    status_code   BIGINT,
    error         TEXT,
    response_body BYTEA,
    worker        TEXT NOT NULL
);
CREATE INDEX job_attempts_job ON job_attempts (job_id, number);
