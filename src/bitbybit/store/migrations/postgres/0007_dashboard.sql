-- The dashboard (issue 12): company users who sign in, their server-side sessions, labels on
-- API-key allowlist entries, and the indexes the delivery history pages by.

-- A person who signs in to one company's dashboard. Emails are kept lower-cased and are unique
-- across companies (signing in names no company). Passwords are argon2id hashes.
CREATE TABLE users (
    id            TEXT PRIMARY KEY,
    company_id    TEXT NOT NULL REFERENCES companies (id) ON DELETE CASCADE,
    email         TEXT NOT NULL UNIQUE,
    password_hash TEXT NOT NULL,
    role          TEXT NOT NULL CHECK (role IN ('admin', 'viewer')),
    created_at    BIGINT NOT NULL,
    updated_at    BIGINT NOT NULL
);
CREATE INDEX users_company ON users (company_id);

-- A signed-in browser. The cookie carries a random token; only its SHA-256 is kept here, so a
-- copy of the database signs nobody in. A session ends when revoked (logout), after
-- BITBYBIT_SESSION_IDLE of no use, or at expires_at whatever the use.
CREATE TABLE dashboard_sessions (
    token_hash   TEXT PRIMARY KEY,
    user_id      TEXT NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    company_id   TEXT NOT NULL,
    csrf_token   TEXT NOT NULL,
    mode         TEXT NOT NULL CHECK (mode IN ('live', 'test')),
    created_at   BIGINT NOT NULL,
    last_seen_at BIGINT NOT NULL,
    expires_at   BIGINT NOT NULL,
    revoked_at   BIGINT
);
CREATE INDEX dashboard_sessions_user ON dashboard_sessions (user_id);

-- A label per allowlist entry ({"203.0.113.0/24": "office"}); entries without one are absent.
ALTER TABLE api_keys ADD COLUMN ip_labels TEXT NOT NULL DEFAULT '{}';

-- The delivery and event history the dashboard pages through, newest first, by keyset
-- ((created_at, id) after or before a cursor: never OFFSET, never COUNT over the big table).
-- A tenant's deliveries in time order: the unfiltered list, a time range, the chart.
CREATE INDEX deliveries_history ON deliveries (company_id, mode, created_at, id);
-- The status filter for the few (pending, failed, held); succeeded, the bulk, is read from
-- deliveries_history. An indexed status makes the update that settles a delivery (pending to
-- succeeded or failed) a non-HOT update on PostgreSQL, where before it could be HOT (ADR 0004;
-- retries keep their status and stay HOT). Measured: recording results in batches of 500
-- took 29-33 microseconds a delivery, against 27-31 without this index. Without it, a status
-- with few or no rows would be looked for by reading the company's deliveries, or everyone's.
CREATE INDEX deliveries_unsettled ON deliveries (company_id, mode, status, created_at, id)
    WHERE status <> 'succeeded';
-- Events of one type, newest first; the deliveries of a rare type are found from here
-- through deliveries_event, those of a common one by walking deliveries_history.
CREATE INDEX events_type ON events (company_id, mode, type, created_at, id);
