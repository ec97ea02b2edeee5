-- SQLite stores the worker's rows by endpoint in this version
-- (docs/adr/0015-sqlite-rows-clustered-by-target.md). PostgreSQL's tables keep no row order
-- (a heap), and its schema does not change; the statements that now name a job's target with
-- its id use the same indexes as before.
SELECT 1;
