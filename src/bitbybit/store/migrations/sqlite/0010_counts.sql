-- PostgreSQL keeps exact counts of events and deliveries as rows change in this version
-- (docs/adr/0011-kept-counts.md). SQLite counts what a page asks for from an index, as before:
-- its schema does not change.
SELECT 1;
