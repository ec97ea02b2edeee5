-- Webhook endpoints, one delivery per (event, endpoint), and every attempt of each delivery.
CREATE TABLE webhook_endpoints (
    id               TEXT PRIMARY KEY,
    company_id       TEXT NOT NULL REFERENCES companies (id) ON DELETE CASCADE,
    mode             TEXT NOT NULL,
    url              TEXT NOT NULL,
    description      TEXT,
    events           TEXT NOT NULL,
    status           TEXT NOT NULL,
    secret           TEXT NOT NULL,
    next_secret      TEXT,
    next_secret_at   BIGINT,
    multi_signature  BIGINT NOT NULL,
    exhausted_in_row BIGINT NOT NULL,
    status_reason    TEXT,
    created_at       BIGINT NOT NULL,
    updated_at       BIGINT NOT NULL
);
CREATE INDEX webhook_endpoints_company ON webhook_endpoints (company_id, mode);
CREATE INDEX webhook_endpoints_status ON webhook_endpoints (status);

CREATE TABLE deliveries (
    id               TEXT PRIMARY KEY,
    event_id         TEXT NOT NULL REFERENCES events (id),
    endpoint_id      TEXT NOT NULL REFERENCES webhook_endpoints (id) ON DELETE CASCADE,
    company_id       TEXT NOT NULL,
    mode             TEXT NOT NULL,
    status           TEXT NOT NULL,
    attempts         BIGINT NOT NULL,
    next_attempt_at  BIGINT NOT NULL,
    lease_owner      TEXT,
    lease_expires_at BIGINT,
    last_status_code BIGINT,
    last_error       TEXT,
    created_at       BIGINT NOT NULL,
    updated_at       BIGINT NOT NULL
);
CREATE INDEX deliveries_due ON deliveries (endpoint_id, next_attempt_at) WHERE status = 'pending';
CREATE INDEX deliveries_endpoint ON deliveries (endpoint_id, created_at);
CREATE INDEX deliveries_event ON deliveries (event_id);

CREATE TABLE delivery_attempts (
    seq           BIGSERIAL PRIMARY KEY,
    delivery_id   TEXT NOT NULL REFERENCES deliveries (id) ON DELETE CASCADE,
    number        BIGINT NOT NULL,
    started_at    BIGINT NOT NULL,
    latency_ms    BIGINT NOT NULL,
    status_code   BIGINT,
    error         TEXT,
    response_body BYTEA,
    worker        TEXT NOT NULL
);
CREATE INDEX delivery_attempts_delivery ON delivery_attempts (delivery_id, number);
