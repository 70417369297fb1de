"""One evaluation of a schedule, as the daemon makes it, for the tests of what it requests."""

from __future__ import annotations

from datetime import datetime

import dagster as dg

from trace_summaries.defs.resources import ClickHouseResource
from trace_summaries.defs.schedules import hourly_trace_summaries_schedule
from trace_summaries.store import TraceStore
from trace_summaries_tests.support.clock import TICK


def tick(instance: dg.DagsterInstance, store: TraceStore) -> list[dg.RunRequest]:
    """The run requests of the hourly schedule's tick at ``clock.TICK`` (the one for ``clock.HOUR``)."""
    return evaluate(hourly_trace_summaries_schedule, instance, store, TICK)


def evaluate(
    schedule: dg.ScheduleDefinition, instance: dg.DagsterInstance, store: TraceStore, at: datetime
) -> list[dg.RunRequest]:
    """The run requests of ``schedule``'s tick at ``at`` (asserting it requested runs, not a skip)."""
    # Closed here, in order: an open context keeps its instance current for Dagster after the test.
    with dg.build_schedule_context(
        instance=instance,
        scheduled_execution_time=at,
        resources={"clickhouse": ClickHouseResource(dsn=store.dsn)},
    ) as context:
        result = schedule(context)
    assert isinstance(result, list), result
    return result
