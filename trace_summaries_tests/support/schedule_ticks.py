"""One evaluation of the hourly schedule, as the daemon makes it, for the tests of what it requests."""

from __future__ import annotations

import dagster as dg

from trace_summaries.defs.resources import ClickHouseResource
from trace_summaries.defs.schedules import hourly_trace_summaries_schedule
from trace_summaries.store import TraceStore
from trace_summaries_tests.support.clock import TICK


def tick(instance: dg.DagsterInstance, store: TraceStore) -> list[dg.RunRequest]:
    """The run requests of the tick at ``clock.TICK`` (the one for ``clock.HOUR``)."""
    # Closed here, in order: an open context keeps its instance current for Dagster after the test.
    with dg.build_schedule_context(
        instance=instance,
        scheduled_execution_time=TICK,
        resources={"clickhouse": ClickHouseResource(dsn=store.dsn)},
    ) as context:
        result = hourly_trace_summaries_schedule(context)
    assert isinstance(result, list), result
    return result
