-- A delivery carries its event's type (docs/adr/0012-delivery-types.md): the delivery lists of
-- the API and the dashboard show it, and filter on it, from the deliveries alone. Before, each
-- row listed was joined to its event, and a filter by a rare type either walked the company's
-- deliveries newest first, looking each one's event up, until a page of them matched, or looked
-- each event of the type's deliveries up in every week's partition of `deliveries`.
--
-- The type is written once, with the delivery, and never changes (nor does an event's type).
-- The rows already there are given theirs here: one pass over the deliveries, with the count
-- trigger off for it (the type is no key of `delivery_counts`: the pass changes no count).
ALTER TABLE deliveries ADD COLUMN event_type TEXT NOT NULL DEFAULT '';
ALTER TABLE deliveries DISABLE TRIGGER deliveries_counted_update;
UPDATE deliveries d SET event_type = ev.type FROM events ev WHERE ev.id = d.event_id;
ALTER TABLE deliveries ENABLE TRIGGER deliveries_counted_update;
ALTER TABLE deliveries ALTER COLUMN event_type DROP DEFAULT;

-- A filter by type reads a page's worth of rows, whatever the type's share of the history.
CREATE INDEX deliveries_type ON deliveries (company_id, mode, event_type, created_at, id);

-- The chart's failures per minute (the deliveries failed, or whose last attempt failed), read
-- from their few index entries, while its deliveries per minute are counted from
-- deliveries_history alone: neither reads the table.
CREATE INDEX deliveries_troubled ON deliveries (company_id, mode, created_at)
    WHERE status = 'failed' OR last_error IS NOT NULL;
