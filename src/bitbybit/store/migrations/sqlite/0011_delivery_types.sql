-- A delivery carries its event's type (docs/adr/0012-delivery-types.md): the delivery lists
-- show it, and filter on it, from the deliveries alone, not each row joined to its event. The
-- rows already there are given theirs here. (SQLite cannot drop a column's default: the
-- store always writes the type.)
ALTER TABLE deliveries ADD COLUMN event_type TEXT NOT NULL DEFAULT '';
UPDATE deliveries
SET event_type = COALESCE((SELECT ev.type FROM events ev WHERE ev.id = deliveries.event_id), '');

CREATE INDEX deliveries_type ON deliveries (company_id, mode, event_type, created_at, id);
CREATE INDEX deliveries_troubled ON deliveries (company_id, mode, created_at)
    WHERE status = 'failed' OR last_error IS NOT NULL;
