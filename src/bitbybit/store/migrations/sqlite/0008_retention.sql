-- Retention (docs/retention.md): old settled jobs of other channels are removed in small
-- batches, oldest first, across every company. This index lets each batch read only the rows
-- it looks at, from where the last batch stopped, instead of every company's jobs. (Events are
-- found per company through events_company, which the lists already keep, so the API's write
-- path gets no index of retention's.)
CREATE INDEX jobs_created ON jobs (created_at, id);
