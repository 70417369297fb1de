"""`trace-summaries embedding-worker` and `trace-summaries search`: the CLI side of the embeddings.

``trace_summaries.cli`` registers the sub-commands with ``add_*_arguments`` and dispatches to ``run_*``.
Settings come from the environment (``trace_summaries.config``, ``kafka_config``, ``OPENAI_*``); the
flags only tune behaviour.
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import signal
import sys
import threading
from types import FrameType

from trace_summaries.config import KafkaConfig, SettingError, StoreConfig, embedding_models, load
from trace_summaries.partitions import parse_team_key
from trace_summaries.queue.kafka_config import (
    redacted_kafka_config,
)
from trace_summaries.store import TraceStore
from trace_summaries.worker.consumer import (
    DEFAULT_BATCH_SIZE,
    DEFAULT_BATCH_TIMEOUT_S,
    DEFAULT_GROUP_ID,
    EmbeddingWorker,
    ensure_topic,
)
from trace_summaries.worker.document_embeddings import ensure_embeddings_table
from trace_summaries.worker.embedder import EmbeddingRejected, EmbeddingUnavailable
from trace_summaries.worker.embedders import EmbedderByModel
from trace_summaries.worker.search import DEFAULT_SEARCH_LIMIT, SearchHit, search_similar_traces

logger = logging.getLogger(__name__)


def add_worker_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--topic",
        help="requests topic (default: $KAFKA_TOPIC_EMBEDDING_REQUESTS or document_embeddings_input)",
    )
    parser.add_argument("--group-id", default=DEFAULT_GROUP_ID, help="consumer group (default: %(default)s)")
    parser.add_argument(
        "--batch-size",
        type=int,
        default=DEFAULT_BATCH_SIZE,
        help="most messages per batch (default: %(default)s)",
    )
    parser.add_argument(
        "--batch-timeout",
        type=float,
        default=DEFAULT_BATCH_TIMEOUT_S,
        help="longest wait in seconds to fill a batch (default: %(default)s)",
    )
    parser.add_argument(
        "--instance-id",
        help="static group membership id, e.g. the pod name: a restarted worker with the "
        "same id takes its partitions back at once instead of after a rebalance",
    )
    parser.add_argument(
        "--session-timeout-ms",
        type=int,
        help="consumer group session timeout; how long a crashed worker holds its partitions "
        "(librdkafka default: 45000)",
    )
    parser.add_argument(
        "--exit-when-idle",
        type=_positive_number,
        metavar="SECONDS",
        help="exit 0 once no message came for SECONDS (counted from the last message, or from getting the "
        "partitions), after committing what was stored; for scripts, tests and cron-style runs",
    )


def _positive_number(value: str) -> float:
    """argparse type: a finite number > 0 (seconds or hours; argparse names the option in its error)."""
    try:
        number = float(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {value!r}") from None
    if not (math.isfinite(number) and number > 0):
        raise argparse.ArgumentTypeError(f"must be a positive number, got {value!r}")
    return number


def run_worker(args: argparse.Namespace) -> int:
    """Runs until SIGTERM or SIGINT (or, with ``--exit-when-idle``, until the topic is idle that long);
    the batch in hand is stored and committed before exiting."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    kafka = load(KafkaConfig)
    kafka_config = kafka.client_config()
    store = TraceStore(load(StoreConfig).dsn)
    ensure_embeddings_table(store)
    topic = args.topic or kafka.topic
    ensure_topic(kafka_config, topic)
    consumer_config: dict[str, int] = {}
    if args.session_timeout_ms:
        consumer_config["session.timeout.ms"] = args.session_timeout_ms
    worker = EmbeddingWorker(
        kafka_config,
        topic,
        args.group_id,
        store=store,
        embedder=EmbedderByModel(),
        batch_size=args.batch_size,
        batch_timeout_s=args.batch_timeout,
        instance_id=args.instance_id,
        consumer_config=consumer_config,
    )
    logger.info("Kafka %s, store %s", redacted_kafka_config(kafka_config), store.describe())

    stop = threading.Event()

    def request_stop(signum: int, _frame: FrameType | None) -> None:
        logger.info("%s received: finishing the current batch", signal.Signals(signum).name)
        stop.set()

    previous = {sig: signal.signal(sig, request_stop) for sig in (signal.SIGTERM, signal.SIGINT)}
    try:
        worker.run(stop, exit_when_idle_s=args.exit_when_idle)
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    return 0


def add_search_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--team", required=True, help="team id to search in")
    parser.add_argument("query", help="what the traces should be about, in plain words")
    parser.add_argument(
        "--limit", type=int, default=DEFAULT_SEARCH_LIMIT, help="number of results (default: %(default)s)"
    )
    parser.add_argument(
        "--hours",
        type=_positive_number,
        metavar="HOURS",
        help="only summaries of windows that ended in the last HOURS (default: all)",
    )
    parser.add_argument("--mode", help="only summaries of this mode, e.g. detailed (default: all)")
    parser.add_argument(
        "--model",
        help="embedding model the summaries were embedded with (default: the first of "
        "$TRACE_SUMMARIES_EMBEDDING_MODELS, else the local model, or the API model with an OPENAI_API_KEY)",
    )
    parser.add_argument("--json", action="store_true", help="the results as a JSON list of objects")


def run_search(args: argparse.Namespace) -> int:
    try:
        team_id = parse_team_key(args.team)
        model = args.model or embedding_models()[0]
        store = TraceStore(load(StoreConfig).dsn)
        hits = search_similar_traces(
            store,
            EmbedderByModel(),
            team_id=team_id,
            query=args.query,
            model=model,
            mode=args.mode,
            limit=args.limit,
            hours=args.hours,
        )
    except EmbeddingUnavailable as exc:
        print(f"error: cannot embed the query: {exc}", file=sys.stderr)
        return 1
    except (ValueError, SettingError, EmbeddingRejected) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if args.json:
        print(json.dumps([hit.as_json(rank) for rank, hit in enumerate(hits, start=1)], indent=2))
        return 0
    if not hits:
        print(f"no embedded summaries for team {team_id} and model {model}", file=sys.stderr)
        return 0
    print(results_table(hits))
    return 0


_TABLE_COLUMNS = ("#", "distance", "window", "trace id", "title", "first bullet")
_TITLE_WIDTH = 60
_BULLET_WIDTH = 80


def results_table(hits: list[SearchHit]) -> str:
    """A fixed-width table, nearest first: rank, distance, window (UTC), trace id, title, first bullet."""
    rows = [
        (
            str(rank),
            f"{hit.distance:.4f}",
            _window(hit),
            hit.trace_id,
            _clip(hit.title, _TITLE_WIDTH),
            _clip(hit.first_bullet, _BULLET_WIDTH),
        )
        for rank, hit in enumerate(hits, start=1)
    ]
    widths = [max(len(cell) for cell in column) for column in zip(_TABLE_COLUMNS, *rows, strict=True)]
    lines = ["  ".join(cell.ljust(width) for cell, width in zip(_TABLE_COLUMNS, widths, strict=True))]
    lines.append("  ".join("-" * width for width in widths))
    lines += ["  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)) for row in rows]
    return "\n".join(line.rstrip() for line in lines)


def _window(hit: SearchHit) -> str:
    end = hit.window_end.strftime("%Y-%m-%d %H:%M")
    if hit.window_start is None:
        return f"until {end}"
    start = hit.window_start.strftime("%Y-%m-%d %H:%M")
    if hit.window_start.date() == hit.window_end.date():
        return f"{start}-{hit.window_end.strftime('%H:%M')}"
    return f"{start}-{end}"


def _clip(text: str, width: int) -> str:
    text = " ".join(text.split())
    return text if len(text) <= width else text[: width - 1] + "…"
