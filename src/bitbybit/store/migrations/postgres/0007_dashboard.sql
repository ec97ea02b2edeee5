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
