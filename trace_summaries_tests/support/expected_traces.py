"""An oracle for end-to-end tests: which traces the pipeline must summarize, computed independently of the
pipeline's own sampling code (a trace belongs to the hour of its first `$ai_*` event; the README's guards
of at most 50 events and 2,000,000 property characters; the 100-trace cap is never reached in tests)."""

EXPECTED_TRACES_SQL = """
SELECT team_id, toStartOfHour(first_seen) AS hour, trace_id
FROM (
    SELECT team_id, ai_trace_id AS trace_id, min(timestamp) AS first_seen,
           count() AS events, sum(length(properties)) AS chars
    FROM events
    WHERE team_id IN {teams:Array(Int64)} AND event IN {event_types:Array(String)} AND ai_trace_id != ''
    GROUP BY team_id, ai_trace_id
)
WHERE first_seen >= {start:DateTime64(6, 'UTC')} AND first_seen < {end:DateTime64(6, 'UTC')}
  AND events <= 50 AND chars <= 2000000
"""
