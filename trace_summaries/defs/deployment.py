"""What a deployment binds, from its configuration: the resources and IO managers every asset uses.

The configuration is built once, when the code location loads, so a misconfigured deployment fails at
start-up with every invalid variable named, instead of at the first schedule tick, sensor or run.
"""

import dagster as dg

from trace_summaries.config import load_config
from trace_summaries.defs.io_managers import sample_io_manager, summary_events_io_manager
from trace_summaries.defs.resources import clickhouse_resource, kafka_resource, llm_resource


@dg.definitions
def resources() -> dg.Definitions:
    config = load_config()
    clickhouse = clickhouse_resource(config)
    return dg.Definitions(
        resources={
            "clickhouse": clickhouse,
            "llm": llm_resource(config),
            "kafka": kafka_resource(config),
            "sample_io_manager": sample_io_manager(config),
            "summary_events_io_manager": summary_events_io_manager(clickhouse),
        }
    )
