-- Exact counts kept as rows change, so that a numbered page's `total` is read from a few rows
-- instead of counted over a company's whole history (docs/adr/0011-kept-counts.md).
--
-- Each statement that inserts, updates or deletes events or deliveries adds one row per key it
-- changed to `*_count_changes`, with the change (`n`, negative for rows that went or left the
-- key), through the triggers below: no code path can forget them, and concurrent writers never
-- wait on one another (nothing is updated in place). The workers fold the changes into
-- `*_counts`, a row a key, every few seconds (`store.sql.counts.fold`). Dropping a week's
-- partitions fires no trigger: the drop subtracts the week's counts itself, in its own
-- transaction (`store.partitions.drop`).
--
-- events: per company, mode, type and UTC day of `created_at` (a time filter adds the exact
-- count of its two partial days); deliveries: per company, mode, endpoint and status.
CREATE TABLE event_counts (
    company_id TEXT NOT NULL,
    mode       TEXT NOT NULL,
    type       TEXT NOT NULL,
    day        INTEGER NOT NULL,
    n          BIGINT NOT NULL,
    PRIMARY KEY (company_id, mode, type, day)
);
CREATE TABLE event_count_changes (
    company_id TEXT NOT NULL,
    mode       TEXT NOT NULL,
    type       TEXT NOT NULL,
    day        INTEGER NOT NULL,
    n          BIGINT NOT NULL
);
CREATE INDEX event_count_changes_key ON event_count_changes (company_id, mode, type, day)
    INCLUDE (n);

CREATE TABLE delivery_counts (
    company_id  TEXT NOT NULL,
    mode        TEXT NOT NULL,
    endpoint_id TEXT NOT NULL,
    status      TEXT NOT NULL,
    n           BIGINT NOT NULL,
    PRIMARY KEY (company_id, mode, endpoint_id, status)
);
CREATE TABLE delivery_count_changes (
    company_id  TEXT NOT NULL,
    mode        TEXT NOT NULL,
    endpoint_id TEXT NOT NULL,
    status      TEXT NOT NULL,
    n           BIGINT NOT NULL
);
CREATE INDEX delivery_count_changes_key
    ON delivery_count_changes (company_id, mode, endpoint_id, status) INCLUDE (n);

CREATE FUNCTION count_events() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'INSERT' THEN
        INSERT INTO event_count_changes (company_id, mode, type, day, n)
        SELECT company_id, mode, type, (created_at / 86400000)::int, count(*)
        FROM new_rows GROUP BY 1, 2, 3, 4;
    ELSIF TG_OP = 'DELETE' THEN
        INSERT INTO event_count_changes (company_id, mode, type, day, n)
        SELECT company_id, mode, type, (created_at / 86400000)::int, -count(*)
        FROM old_rows GROUP BY 1, 2, 3, 4;
    ELSE
        INSERT INTO event_count_changes (company_id, mode, type, day, n)
        SELECT company_id, mode, type, day, sum(n) FROM (
            SELECT company_id, mode, type, (created_at / 86400000)::int AS day, 1 AS n
            FROM new_rows
            UNION ALL
            SELECT company_id, mode, type, (created_at / 86400000)::int, -1 FROM old_rows
        ) changed GROUP BY 1, 2, 3, 4 HAVING sum(n) <> 0;
    END IF;
    RETURN NULL;
END $$;

CREATE TRIGGER events_counted_insert AFTER INSERT ON events
    REFERENCING NEW TABLE AS new_rows FOR EACH STATEMENT EXECUTE FUNCTION count_events();
CREATE TRIGGER events_counted_update AFTER UPDATE ON events
    REFERENCING OLD TABLE AS old_rows NEW TABLE AS new_rows
    FOR EACH STATEMENT EXECUTE FUNCTION count_events();
CREATE TRIGGER events_counted_delete AFTER DELETE ON events
    REFERENCING OLD TABLE AS old_rows FOR EACH STATEMENT EXECUTE FUNCTION count_events();

CREATE FUNCTION count_deliveries() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'INSERT' THEN
        INSERT INTO delivery_count_changes (company_id, mode, endpoint_id, status, n)
        SELECT company_id, mode, endpoint_id, status, count(*) FROM new_rows GROUP BY 1, 2, 3, 4;
    ELSIF TG_OP = 'DELETE' THEN
        INSERT INTO delivery_count_changes (company_id, mode, endpoint_id, status, n)
        SELECT company_id, mode, endpoint_id, status, -count(*) FROM old_rows GROUP BY 1, 2, 3, 4;
    ELSE
        -- Most updates (an attempt recorded) keep the status: they change no count.
        INSERT INTO delivery_count_changes (company_id, mode, endpoint_id, status, n)
        SELECT company_id, mode, endpoint_id, status, sum(n) FROM (
            SELECT company_id, mode, endpoint_id, status, 1 AS n FROM new_rows
            UNION ALL
            SELECT company_id, mode, endpoint_id, status, -1 FROM old_rows
        ) changed GROUP BY 1, 2, 3, 4 HAVING sum(n) <> 0;
    END IF;
    RETURN NULL;
END $$;

CREATE TRIGGER deliveries_counted_insert AFTER INSERT ON deliveries
    REFERENCING NEW TABLE AS new_rows FOR EACH STATEMENT EXECUTE FUNCTION count_deliveries();
CREATE TRIGGER deliveries_counted_update AFTER UPDATE ON deliveries
    REFERENCING OLD TABLE AS old_rows NEW TABLE AS new_rows
    FOR EACH STATEMENT EXECUTE FUNCTION count_deliveries();
CREATE TRIGGER deliveries_counted_delete AFTER DELETE ON deliveries
    REFERENCING OLD TABLE AS old_rows FOR EACH STATEMENT EXECUTE FUNCTION count_deliveries();

-- What the tables hold now.
INSERT INTO event_counts (company_id, mode, type, day, n)
SELECT company_id, mode, type, (created_at / 86400000)::int, count(*)
FROM events GROUP BY 1, 2, 3, 4;
INSERT INTO delivery_counts (company_id, mode, endpoint_id, status, n)
SELECT company_id, mode, endpoint_id, status, count(*) FROM deliveries GROUP BY 1, 2, 3, 4;
