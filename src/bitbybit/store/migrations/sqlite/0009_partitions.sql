-- PostgreSQL partitions its history tables by week in this version (docs/retention.md,
-- "PostgreSQL: a week at a time"). SQLite has no partitioning: its retention removes old rows in small batches, and
-- its schema does not change.
SELECT 1;
