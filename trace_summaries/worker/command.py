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

from trace_summaries.config import KafkaConfig, StoreConfig, load
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
)
from trace_summaries.worker.document_embeddings import ensure_embeddings_table
from trace_summaries.worker.embedder import EmbeddingUnavailable, OpenAIEmbedder
from trace_summaries.worker.search import (
    DEFAULT_SEARCH_LIMIT,
    DEFAULT_SEARCH_MODEL,
    search_similar_traces,
)

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
        type=_positive_seconds,
        metavar="SECONDS",
        help="exit 0 once no message came for SECONDS (counted from the last message, or from getting the "
        "partitions), after committing what was stored; for scripts, tests and cron-style runs",
    )


def _positive_seconds(value: str) -> float:
    """argparse type: a finite number of seconds > 0 (argparse names the option in its error)."""
    try:
        seconds = float(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number of seconds, got {value!r}") from None
    if not (math.isfinite(seconds) and seconds > 0):
        raise argparse.ArgumentTypeError(f"must be a positive number of seconds, got {value!r}")
    return seconds


def run_worker(args: argparse.Namespace) -> int:
    """Runs until SIGTERM or SIGINT (or, with ``--exit-when-idle``, until the topic is idle that long);
    the batch in hand is stored and committed before exiting."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    kafka = load(KafkaConfig)
    kafka_config = kafka.client_config()
    store = TraceStore(load(StoreConfig).dsn)
    ensure_embeddings_table(store)
    consumer_config: dict[str, int] = {}
    if args.session_timeout_ms:
        consumer_config["session.timeout.ms"] = args.session_timeout_ms
    worker = EmbeddingWorker(
        kafka_config,
        args.topic or kafka.topic,
        args.group_id,
        store=store,
        embedder=OpenAIEmbedder.from_env(),
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
    parser.add_argument("--mode", help="only summaries of this mode, e.g. detailed (default: all)")
    parser.add_argument(
        "--model",
        default=DEFAULT_SEARCH_MODEL,
        help="embedding model the summaries were embedded with (default: %(default)s)",
    )
    parser.add_argument("--json", action="store_true", help="one JSON object per result")


def run_search(args: argparse.Namespace) -> int:
    team_id = parse_team_key(args.team)
    store = TraceStore(load(StoreConfig).dsn)
    try:
        hits = search_similar_traces(
            store,
            OpenAIEmbedder.from_env(),
            team_id=team_id,
            query=args.query,
            model=args.model,
            mode=args.mode,
            limit=args.limit,
        )
    except EmbeddingUnavailable as exc:
        print(f"error: cannot embed the query: {exc}", file=sys.stderr)
        return 1
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    for hit in hits:
        if args.json:
            print(
                json.dumps(
                    {
                        "trace_id": hit.trace_id,
                        "title": hit.title,
                        "distance": hit.distance,
                        "document_type": hit.document_type,
                        "rendering": hit.rendering,
                        "timestamp": hit.timestamp.isoformat(),
                    }
                )
            )
        else:
            print(f"{hit.distance:.4f}  {hit.trace_id}  {hit.title}")
    if not hits and not args.json:
        print(f"no embedded summaries for team {team_id} and model {args.model}", file=sys.stderr)
    return 0
