-- WhatsApp messaging (ADR 0009): connected numbers, templates, tickets, messages in both
-- directions and the history of each outbound message's statuses.

-- A company's WhatsApp Business numbers (live mode; test mode always uses the sandbox). The
-- access token and app secret are sealed like webhook secrets; the verify token is kept only
-- as a hash (it is compared, never sent).
CREATE TABLE whatsapp_numbers (
    phone_number_id   TEXT PRIMARY KEY,
    company_id        TEXT NOT NULL REFERENCES companies (id) ON DELETE CASCADE,
    source            TEXT NOT NULL,
    waba_id           TEXT,
    access_token      TEXT NOT NULL,
    app_secret        TEXT NOT NULL,
    verify_token_hash TEXT NOT NULL,
    pace              DOUBLE PRECISION,
    created_at        BIGINT NOT NULL,
    updated_at        BIGINT NOT NULL
);
CREATE UNIQUE INDEX whatsapp_numbers_company ON whatsapp_numbers (company_id, source);
CREATE INDEX whatsapp_numbers_waba ON whatsapp_numbers (waba_id);
CREATE INDEX whatsapp_numbers_verify ON whatsapp_numbers (verify_token_hash);

CREATE TABLE templates (
    company_id       TEXT NOT NULL REFERENCES companies (id) ON DELETE CASCADE,
    mode             TEXT NOT NULL,
    name             TEXT NOT NULL,
    source           TEXT NOT NULL,
    language         TEXT NOT NULL,
    body             TEXT NOT NULL,
    header_media_url TEXT,
    param_count      BIGINT NOT NULL,
    created_at       BIGINT NOT NULL,
    updated_at       BIGINT NOT NULL,
    PRIMARY KEY (company_id, mode, name)
);

CREATE TABLE tickets (
    id          TEXT PRIMARY KEY,
    company_id  TEXT NOT NULL REFERENCES companies (id) ON DELETE CASCADE,
    mode        TEXT NOT NULL,
    customer_id TEXT NOT NULL REFERENCES customers (id) ON DELETE CASCADE,
    status      TEXT NOT NULL,
    opened_at   BIGINT NOT NULL,
    closed_at   BIGINT,
    updated_at  BIGINT NOT NULL
);
CREATE UNIQUE INDEX tickets_open ON tickets (customer_id) WHERE status = 'open';
CREATE INDEX tickets_company ON tickets (company_id, mode, opened_at);

-- Messages in both directions. `phone` is the customer's number (E.164) whichever way the
-- message went; `wa_id` is WhatsApp's id of it, unique per company, so a callback Meta repeats
-- stores nothing twice (across processes: the index decides). `status` of an outbound message
-- only moves forward; every status reported is kept in `message_statuses`.
CREATE TABLE messages (
    id              TEXT PRIMARY KEY,
    company_id      TEXT NOT NULL REFERENCES companies (id) ON DELETE CASCADE,
    mode            TEXT NOT NULL,
    direction       TEXT NOT NULL,
    phone           TEXT NOT NULL,
    customer_id     TEXT REFERENCES customers (id) ON DELETE SET NULL,
    type            TEXT NOT NULL,
    body            TEXT,
    media_url       TEXT,
    media_id        TEXT,
    template_name   TEXT,
    template_source TEXT,
    params          TEXT,
    source          TEXT NOT NULL,
    status          TEXT NOT NULL,
    error_code      BIGINT,
    error_message   TEXT,
    wa_id           TEXT,
    job_id          TEXT,
    created_at      BIGINT NOT NULL,
    updated_at      BIGINT NOT NULL
);
CREATE UNIQUE INDEX messages_wa_id ON messages (company_id, wa_id) WHERE wa_id IS NOT NULL;
CREATE INDEX messages_conversation ON messages (company_id, mode, phone, created_at);
CREATE INDEX messages_requests ON messages (company_id, mode, direction, created_at);
CREATE INDEX messages_job ON messages (job_id) WHERE job_id IS NOT NULL;

CREATE TABLE message_statuses (
    message_id    TEXT NOT NULL REFERENCES messages (id) ON DELETE CASCADE,
    status        TEXT NOT NULL,
    at            BIGINT NOT NULL,
    error_code    BIGINT,
    error_message TEXT,
    applied       BIGINT NOT NULL,
    recorded_at   BIGINT NOT NULL,
    PRIMARY KEY (message_id, status)
);

-- Statuses Meta reported for a WhatsApp id no message has yet: a callback can overtake the
-- worker recording the send that the id answers. They are applied (and removed) when a
-- message gets that id, so no status is lost to the race and Meta is never asked to retry.
CREATE TABLE unmatched_statuses (
    company_id    TEXT NOT NULL REFERENCES companies (id) ON DELETE CASCADE,
    wa_id         TEXT NOT NULL,
    status        TEXT NOT NULL,
    at            BIGINT NOT NULL,
    error_code    BIGINT,
    error_message TEXT,
    recorded_at   BIGINT NOT NULL,
    PRIMARY KEY (company_id, wa_id, status)
);
