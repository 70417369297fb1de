-- One row per (document, embedding model), modelled on the original's posthog_document_embeddings.
-- ReplacingMergeTree versioned by inserted_at: the worker delivers at least once (a crash between the
-- insert and the Kafka commit re-inserts the batch) and re-materializations re-send the same documents, so
-- rows with the same sorting key are the same embedding, and FINAL keeps the newest insert.
-- The sorting key is the original's with document_id itself instead of cityHash64(document_id): the hash
-- spread rows for sharding, but as a uniqueness key it could (rarely) merge two different traces.
-- `timestamp` is the summary event's, so the same document always lands in the same partition and day.
-- No TTL: the original kept three months; here retention is a deployment choice (ALTER TABLE ... MODIFY
-- TTL), and a TTL on event time would silently drop backfilled or seeded history.
CREATE TABLE IF NOT EXISTS document_embeddings
(
    team_id Int64,
    product LowCardinality(String),
    document_type LowCardinality(String),
    model_name LowCardinality(String),
    rendering LowCardinality(String),
    document_id String,
    timestamp DateTime64(3, 'UTC'),
    inserted_at DateTime64(3, 'UTC') DEFAULT now64(3, 'UTC'),
    content String DEFAULT '',
    embedding Array(Float64)
)
ENGINE = ReplacingMergeTree(inserted_at)
PARTITION BY toMonday(timestamp)
ORDER BY (team_id, toDate(timestamp), product, document_type, model_name, rendering, document_id)
