-- Expired idempotency keys are deleted in small batches, oldest first: an index on their age
-- lets each batch read only the rows it deletes, not the whole table.
CREATE INDEX idempotency_keys_created_at ON idempotency_keys (created_at);
