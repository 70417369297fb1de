"""Resources: thin handles on the outside world, configured from the environment."""


import os
from collections.abc import Iterator
from contextlib import contextmanager

import dagster as dg
from clickhouse_connect.driver.client import Client

from trace_summaries import settings
from trace_summaries.store import TraceStore


class ClickHouseResource(dg.ConfigurableResource):
    """The trace store. ``dsn`` is ``chdb:///<dir>`` (embedded) or ``http(s)://user:pass@host:port/db``."""

    dsn: str

    @property
    def store(self) -> TraceStore:
        return TraceStore(self.dsn)

    @contextmanager
    def session(self) -> Iterator[Client]:
        with self.store.session() as client:
            yield client


def clickhouse_resource() -> ClickHouseResource:
    """The DSN goes through ``EnvVar`` when set (it may carry a password); else the embedded default."""
    if os.environ.get(settings.CLICKHOUSE_DSN):
        return ClickHouseResource(dsn=dg.EnvVar(settings.CLICKHOUSE_DSN))
    return ClickHouseResource(dsn=settings.clickhouse_dsn())


@dg.definitions
def resources() -> dg.Definitions:
    from trace_summaries.defs.io_managers import sample_io_manager

    return dg.Definitions(
        resources={"clickhouse": clickhouse_resource(), "sample_io_manager": sample_io_manager()}
    )
