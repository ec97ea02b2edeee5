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
    next_secret_at   INTEGER,
    multi_signature  INTEGER NOT NULL,
    exhausted_in_row INTEGER NOT NULL,
    status_reason    TEXT,
    created_at       INTEGER NOT NULL,
    updated_at       INTEGER NOT NULL
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
    attempts         INTEGER NOT NULL,
    next_attempt_at  INTEGER NOT NULL,
    lease_owner      TEXT,
    lease_expires_at INTEGER,
    last_status_code INTEGER,
    last_error       TEXT,
    created_at       INTEGER NOT NULL,
    updated_at       INTEGER NOT NULL
);
CREATE INDEX deliveries_due ON deliveries (endpoint_id, next_attempt_at) WHERE status = 'pending';
CREATE INDEX deliveries_endpoint ON deliveries (endpoint_id, created_at);
CREATE INDEX deliveries_event ON deliveries (event_id);

CREATE TABLE delivery_attempts (
    seq           INTEGER PRIMARY KEY AUTOINCREMENT,
    delivery_id   TEXT NOT NULL REFERENCES deliveries (id) ON DELETE CASCADE,
    number        INTEGER NOT NULL,
    started_at    INTEGER NOT NULL,
    latency_ms    INTEGER NOT NULL,
    status_code   INTEGER,
    error         TEXT,
    response_body BLOB,
    worker        TEXT NOT NULL
);
CREATE INDEX delivery_attempts_delivery ON delivery_attempts (delivery_id, number);
