-- Companies, API keys, rate limits, idempotency, customers, products, orders, events.
-- Times are integer milliseconds since the epoch; money is integer hundredths.
CREATE TABLE companies (
    id          TEXT PRIMARY KEY,
    name        TEXT NOT NULL,
    country     TEXT NOT NULL,
    created_at  BIGINT NOT NULL
);

CREATE TABLE api_keys (
    id           TEXT PRIMARY KEY,
    company_id   TEXT NOT NULL REFERENCES companies (id) ON DELETE CASCADE,
    mode         TEXT NOT NULL CHECK (mode IN ('live', 'test')),
    key_hash     TEXT NOT NULL UNIQUE,
    prefix       TEXT NOT NULL,
    scopes       TEXT NOT NULL,
    ip_allowlist TEXT NOT NULL DEFAULT '[]',
    name         TEXT,
    created_at   BIGINT NOT NULL,
    expires_at   BIGINT,
    revoked_at   BIGINT
);
CREATE INDEX api_keys_company ON api_keys (company_id, mode);

CREATE TABLE rate_limits (
    key_id       TEXT NOT NULL,
    window_start BIGINT NOT NULL,
    count        BIGINT NOT NULL,
    PRIMARY KEY (key_id, window_start)
);

CREATE TABLE idempotency_keys (
    company_id   TEXT NOT NULL,
    mode         TEXT NOT NULL,
    key          TEXT NOT NULL,
    request_hash TEXT NOT NULL,
    status_code  BIGINT NOT NULL,
    body         BYTEA NOT NULL,
    created_at   BIGINT NOT NULL,
    PRIMARY KEY (company_id, mode, key)
);

CREATE TABLE counters (
    company_id TEXT NOT NULL,
    mode       TEXT NOT NULL,
    name       TEXT NOT NULL,
    value      BIGINT NOT NULL,
    PRIMARY KEY (company_id, mode, name)
);

CREATE TABLE customers (
    id           TEXT PRIMARY KEY,
    company_id   TEXT NOT NULL REFERENCES companies (id) ON DELETE CASCADE,
    mode         TEXT NOT NULL,
    email        TEXT,
    email_key    TEXT,
    phone_number TEXT,
    first_name   TEXT,
    last_name    TEXT,
    image_url    TEXT,
    tags         TEXT NOT NULL,
    addresses    TEXT NOT NULL,
    source       TEXT NOT NULL,
    search_text  TEXT NOT NULL,
    created_at   BIGINT NOT NULL,
    updated_at   BIGINT NOT NULL
);
CREATE UNIQUE INDEX customers_email ON customers (company_id, mode, email_key)
    WHERE email_key IS NOT NULL;
CREATE UNIQUE INDEX customers_phone ON customers (company_id, mode, phone_number)
    WHERE phone_number IS NOT NULL;
CREATE INDEX customers_updated ON customers (company_id, mode, updated_at);

CREATE TABLE products (
    id          TEXT PRIMARY KEY,
    company_id  TEXT NOT NULL REFERENCES companies (id) ON DELETE CASCADE,
    mode        TEXT NOT NULL,
    product_id  TEXT NOT NULL,
    name        TEXT NOT NULL,
    description TEXT,
    media       TEXT,
    status      TEXT,
    options     TEXT NOT NULL,
    tags        TEXT NOT NULL,
    types       TEXT NOT NULL,
    search_text TEXT NOT NULL,
    created_at  BIGINT NOT NULL,
    updated_at  BIGINT NOT NULL
);
CREATE INDEX products_updated ON products (company_id, mode, updated_at);

CREATE TABLE variants (
    id                     TEXT PRIMARY KEY,
    product_id             TEXT NOT NULL REFERENCES products (id) ON DELETE CASCADE,
    company_id             TEXT NOT NULL,
    mode                   TEXT NOT NULL,
    position               BIGINT NOT NULL,
    key                    TEXT NOT NULL,
    price_cents            BIGINT NOT NULL,
    compare_at_price_cents BIGINT,
    inventory_sku          TEXT,
    media                  TEXT
);
CREATE INDEX variants_product ON variants (product_id, position);

CREATE TABLE orders (
    id                 TEXT PRIMARY KEY,
    company_id         TEXT NOT NULL REFERENCES companies (id) ON DELETE CASCADE,
    mode               TEXT NOT NULL,
    order_id           TEXT NOT NULL,
    order_number       BIGINT NOT NULL,
    status             TEXT NOT NULL,
    fulfillment_status TEXT NOT NULL,
    financial_status   TEXT NOT NULL,
    total_cents        BIGINT NOT NULL,
    currency           TEXT,
    customer_id        TEXT,
    customer           TEXT,
    line_items         TEXT NOT NULL,
    shipping_address   TEXT,
    notes              TEXT,
    tags               TEXT NOT NULL,
    search_text        TEXT NOT NULL,
    created_at         BIGINT NOT NULL,
    updated_at         BIGINT NOT NULL
);
CREATE UNIQUE INDEX orders_number ON orders (company_id, mode, order_number);
CREATE INDEX orders_updated ON orders (company_id, mode, updated_at);

CREATE TABLE events (
    seq        BIGSERIAL PRIMARY KEY,
    id         TEXT NOT NULL UNIQUE,
    company_id TEXT NOT NULL,
    mode       TEXT NOT NULL,
    type       TEXT NOT NULL,
    payload    BYTEA NOT NULL,
    created_at BIGINT NOT NULL
);
CREATE INDEX events_company ON events (company_id, mode, created_at);
