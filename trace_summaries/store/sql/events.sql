-- PostHog-shaped events table. Ordered by (team_id, timestamp) because every query of the pipeline is
-- "one team, one time window". `ai_trace_id` is materialized at insert so sampling and fetching never
-- parse JSON to find a trace; for rows whose JSON is malformed it falls back to a regex, so such a row is
-- still attributed to its trace and reported instead of silently vanishing.
CREATE TABLE IF NOT EXISTS events
(
    uuid UUID,
    event String,
    properties String,
    timestamp DateTime64(6, 'UTC'),
    team_id Int64,
    distinct_id String,
    person_id UUID DEFAULT toUUID('00000000-0000-0000-0000-000000000000'),
    created_at DateTime64(6, 'UTC') DEFAULT now64(6, 'UTC'),
    ai_trace_id String MATERIALIZED if(
        isValidJSON(properties),
        JSONExtractString(properties, '$ai_trace_id'),
        extract(properties, '"\\$ai_trace_id"\\s*:\\s*"([^"]*)"')
    )
)
ENGINE = MergeTree
PARTITION BY toYYYYMM(timestamp)
ORDER BY (team_id, timestamp, event, uuid)
