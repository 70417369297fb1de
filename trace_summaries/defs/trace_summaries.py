"""The `trace_summaries` asset: one structured summary per sampled trace, written as events."""

import dataclasses
import statistics
import time
from collections.abc import Callable, Mapping
from typing import Any, Literal

import dagster as dg
from pydantic import Field

from trace_summaries.defs.io_managers import StoredSamples
from trace_summaries.defs.partition_failures import settle_partition_failures
from trace_summaries.defs.partition_sets import TEAM_HOUR
from trace_summaries.defs.resources import LLMResource
from trace_summaries.sample import TeamHourSample
from trace_summaries.summarize import Summarizer, chat_messages
from trace_summaries.summarize.context_window import text_budget_chars
from trace_summaries.summarize.pacing import CallPacer, endpoint_identity, warm_start
from trace_summaries.summarize.partition import (
    ORIGINAL_RENDERING,
    PIPELINE_RENDERING,
    PartitionSummaries,
    summarize_partitions_sync,
)
from trace_summaries.summarize.prompts import NOTABLE_LINES_RESERVE_CHARS
from trace_summaries.summarize.verify import SummaryVerifier, faithfulness, make_verifier
from trace_summaries.text_repr import RenderOptions
from trace_summaries.text_repr.redaction import RedactionConfig

PROGRESS_EVERY_S = 5.0


class TraceSummariesConfig(dg.Config):
    mode: Literal["minimal", "detailed"] = "detailed"
    model: str | None = None  # None: the resource's model (TRACE_SUMMARIES_LLM_MODEL)
    # None: the resource's TRACE_SUMMARIES_LLM_CONCURRENCY / _MAX_ATTEMPTS. batch_size: at most this many LLM
    # calls in flight for the step, shared by all the partitions of a ranged run; the step paces itself below
    # it to what the endpoint serves (summarize/pacing.py). The `llm` pool (dagster.yaml) bounds how many
    # steps call the LLM at once.
    batch_size: int | None = Field(default=None, ge=1)
    max_attempts: int | None = Field(default=None, ge=1)
    # "compact": nested, de-duplicated, with feedback and metric details (fewer tokens, more signal);
    # "original": exactly the original system's rendering, for comparison.
    rendering: Literal["compact", "original"] = "compact"
    max_text_length: int = 2_000_000
    # PII redaction before any text reaches the summarizer (off by default); extra kinds as name -> regex.
    redact_pii: bool = False
    redaction_patterns: dict[str, str] = Field(default_factory=dict)
    # Check every summary item against the lines it cites (summarize/verify.py): one more LLM call per trace
    # with an endpoint, the (weak) lexical check without one. Off by default.
    verify: bool = False


@dg.asset(
    partitions_def=TEAM_HOUR,
    backfill_policy=dg.BackfillPolicy.single_run(),
    io_manager_key="summary_events_io_manager",
    pool="llm",
    kinds={"openai", "clickhouse"},
    group_name="trace_summaries",
)
def trace_summaries(
    context: dg.AssetExecutionContext,
    config: TraceSummariesConfig,
    sampled_traces: StoredSamples,
    llm: LLMResource,
) -> dict[str, PartitionSummaries]:
    """Renders each sampled trace, summarizes it, and emits one `$ai_trace_summary` event per trace.

    The samples arrive unread (``StoredSamples``): each partition's is read when the summarizing needs its
    traces to keep the step's calls busy, and each trace is let go as its call ends, so a ranged run holds
    about one partition's sample at a time, never the range's (``summarize_partitions_sync``)."""
    setup = summarize_setup(config, llm, remembered=lambda endpoint: last_pacing_limit(context, endpoint))
    failures = {
        key: "no sample: sampled_traces failed for this partition"
        for key in context.partition_keys
        if key not in sampled_traces
    }
    progress = _ProgressLog(context)
    summarized = setup.summarize(sampled_traces, on_progress=progress.partition)
    results: dict[str, PartitionSummaries] = {}
    report: list[str] = []
    for key, summaries in summarized.items():
        report.append(f"{key}: {summaries.counts()} {summaries.reasons('failed') or ''}")
        systemic = summaries.systemic_failure()
        if systemic is not None:
            failures[key] = systemic_failure_message(systemic, config, llm)
            continue
        results[key] = summaries
    if report:
        context.log.info("\n".join(report))
    metadata = summary_metadata(list(results.values())) | setup.metadata()
    try:
        metadata.update(settle_partition_failures(context, failures, report_check=True))
    except dg.Failure as failure:
        raise dg.Failure(description=failure.description, metadata=metadata) from None
    context.add_output_metadata(metadata)
    return results


def systemic_failure_message(reason: str, config: TraceSummariesConfig, llm: LLMResource) -> str:
    """Why a partition failed when every one of its traces failed the same way, and what to check."""
    if reason == "deadline_exceeded":
        return (
            f"every trace failed with '{reason}': the endpoint did not answer within "
            f"TRACE_SUMMARIES_LLM_TRACE_DEADLINE_S (model {config.model or llm.model!r}); check that it "
            "serves, or raise the deadline"
        )
    return (
        f"every trace failed with '{reason}': check the LLM configuration "
        f"(OPENAI_API_KEY, OPENAI_BASE_URL, model {config.model or llm.model!r})"
    )


@dataclasses.dataclass
class SummarizeSetup:
    """What a step summarizes with, from its config and the LLM resource: the summarizer, the rendering
    fitted to the model's context window, redaction, and the pacer of its calls (shared by the partition
    assets and the explicit-window job)."""

    config: TraceSummariesConfig
    summarizer: Summarizer
    render: RenderOptions
    redaction: RedactionConfig
    pacer: CallPacer
    batch_size: int
    context_tokens: int
    max_length: int
    # Set when the config asks to verify the summaries (``verify: true``).
    verifier: SummaryVerifier | None = None
    # The endpoint and model the calls go to (``pacing.endpoint_identity``); None for the offline summarizer.
    endpoint: str | None = None

    def summarize(
        self,
        samples: Mapping[str, TeamHourSample],
        on_progress: Callable[[str], Callable[[int, int, int], None] | None] | None = None,
    ) -> dict[str, PartitionSummaries]:
        return summarize_partitions_sync(
            samples,
            self.summarizer,
            mode=self.config.mode,
            batch_size=self.batch_size,
            pacer=self.pacer,
            render=self.render,
            on_progress=on_progress,
            redaction=self.redaction,
            verifier=self.verifier,
        )

    def metadata(self) -> dict[str, Any]:
        endpoint = {"llm_endpoint": self.endpoint} if self.endpoint is not None else {}
        return (
            self.pacer.stats().metadata()
            | endpoint
            | {
                "llm_context_tokens": self.context_tokens,
                "text_max_chars": self.max_length,
            }
        )


def summarize_setup(
    config: TraceSummariesConfig,
    llm: LLMResource,
    remembered: Callable[[str], int | None] | None = None,
) -> SummarizeSetup:
    """``remembered(endpoint)``: the limit the last step on that endpoint and model ended at, if known; the
    step's pacer then starts warm (``pacing.warm_start``) instead of at one call."""
    base = PIPELINE_RENDERING if config.rendering == "compact" else ORIGINAL_RENDERING
    # Fit every trace into the model's context: the text gets what the fixed prompt and the answer leave.
    window = llm.context_window(config.model)
    max_length = config.max_text_length
    if window is not None:
        version = llm.settings().prompt_version
        messages = chat_messages("", None, config.mode, version)
        prompt_chars = sum(len(m["content"]) for m in messages) + NOTABLE_LINES_RESERVE_CHARS
        budget = text_budget_chars(
            window.tokens, answer_tokens=llm.max_output_tokens, prompt_chars=prompt_chars
        )
        max_length = min(max_length, budget)
    summarizer = llm.summarizer(
        model=config.model,
        max_attempts=config.max_attempts,
        bounded_output=window is not None and window.reported_by_endpoint,
    )
    batch_size = config.batch_size or llm.concurrency
    endpoint = endpoint_identity(llm.base_url, summarizer.model) if llm.has_endpoint else None
    initial = warm_start(batch_size, remembered(endpoint) if remembered and endpoint else None)
    return SummarizeSetup(
        config=config,
        summarizer=summarizer,
        render=dataclasses.replace(base, max_length=max_length),
        redaction=RedactionConfig(enabled=config.redact_pii, extra_patterns=config.redaction_patterns),
        pacer=CallPacer(batch_size, initial=initial),
        batch_size=batch_size,
        context_tokens=window.tokens if window else 0,
        max_length=max_length,
        verifier=make_verifier(summarizer) if config.verify else None,
        endpoint=endpoint,
    )


def last_pacing_limit(context: dg.AssetExecutionContext, endpoint: str) -> int | None:
    """The LLM limit the asset's latest materialization ended at, when it called the same endpoint and
    model: one read of the asset's record (its latest materialization, whatever the partition), so a run
    starts where the runs before it left the endpoint instead of at one call."""
    event = context.instance.get_latest_materialization_event(context.asset_key)
    materialization = event.asset_materialization if event is not None else None
    if materialization is None:
        return None
    metadata = materialization.metadata
    same = metadata.get("llm_endpoint")
    final = metadata.get("llm_concurrency_final")
    if same is None or same.value != endpoint or final is None or not isinstance(final.value, int):
        return None
    return final.value


class _ProgressLog:
    """Progress for a user watching the run, at most one entry every few seconds for the whole step.

    Every log entry is an event-log write (~20 ms); a ranged run of hundreds of small partitions would
    otherwise spend more time logging than summarizing.
    """

    def __init__(self, context: dg.AssetExecutionContext, every_s: float = PROGRESS_EVERY_S) -> None:
        self._context = context
        self._every_s = every_s
        self._last = time.monotonic()
        self._numbers = {key: number for number, key in enumerate(context.partition_keys, start=1)}
        self._partitions = len(self._numbers)

    def partition(self, key: str) -> Callable[[int, int, int], None]:
        number = self._numbers[key]

        def log(done: int, total: int, failed: int) -> None:
            now = time.monotonic()
            if now - self._last < self._every_s:
                return
            self._last = now
            self._context.log.info(
                f"{key} (partition {number}/{self._partitions}): summarized {done}/{total}, {failed} failed"
            )

        return log


def summary_metadata(results: list[PartitionSummaries]) -> dict[str, Any]:
    outcomes = [outcome for result in results for outcome in result.outcomes]
    latencies = sorted(o.latency_s for o in outcomes if o.latency_s is not None and o.status == "generated")
    skipped: dict[str, int] = {}
    failed: dict[str, int] = {}
    for result in results:
        for reason, count in result.reasons("skipped").items():
            skipped[reason] = skipped.get(reason, 0) + count
        for reason, count in result.reasons("failed").items():
            failed[reason] = failed.get(reason, 0) + count
    generated = [o for o in outcomes if o.status == "generated"]
    return _base_metadata(results, outcomes, generated, latencies, skipped, failed) | verification_metadata(
        outcomes
    )


def verification_metadata(outcomes: list[Any]) -> dict[str, Any]:
    """With ``verify: true``, the partitions' faithfulness (supported items among the items with a verdict;
    null when no item got one), the items by verdict, and what the verification calls cost (included in
    ``input_tokens``, ``output_tokens`` and ``cost_usd`` too). Nothing when no trace was verified."""
    verified = [o for o in outcomes if o.verified]
    if not verified:
        return {}
    supported = sum(o.items_supported for o in verified)
    unsupported = sum(o.items_unsupported for o in verified)
    score = faithfulness(supported, unsupported)
    return {
        "verified_traces": len(verified),
        "faithfulness": round(score, 4) if score is not None else dg.MetadataValue.null(),
        "items_supported": supported,
        "items_unsupported": unsupported,
        "items_unverifiable": sum(o.items_unverifiable for o in verified),
        "verification_input_tokens": sum(o.verification_input_tokens for o in verified),
        "verification_output_tokens": sum(o.verification_output_tokens for o in verified),
        "verification_cost_usd": round(sum(o.verification_cost_usd for o in verified), 6),
    }


def _base_metadata(
    results: list[PartitionSummaries],
    outcomes: list[Any],
    generated: list[Any],
    latencies: list[float],
    skipped: dict[str, int],
    failed: dict[str, int],
) -> dict[str, Any]:
    return {
        "partitions": len(results),
        "queried": len(outcomes),
        "generated": len(generated),
        "skipped": sum(skipped.values()),
        "failed": sum(failed.values()),
        "skipped_by_reason": dg.MetadataValue.json(skipped),
        "failed_by_reason": dg.MetadataValue.json(failed),
        "input_tokens": sum(o.input_tokens for o in outcomes),
        "output_tokens": sum(o.output_tokens for o in outcomes),
        "cost_usd": round(sum(o.cost_usd for o in outcomes), 6),
        "llm_latency_p50_s": round(statistics.median(latencies), 3) if latencies else 0.0,
        "llm_latency_p95_s": round(latencies[int(0.95 * (len(latencies) - 1))], 3) if latencies else 0.0,
        "line_refs_invalid": sum(o.line_refs_invalid for o in outcomes),
        "summary_warnings": sum(o.warnings for o in outcomes),
        "leaked_prompt_examples": sum(o.leaked_prompt_examples for o in outcomes),
        "summaries": dg.MetadataValue.md(summaries_table(results)),
        "dagster/row_count": len(generated),
    }


# The summaries table in a materialization's metadata: every summary up to these bounds (the event log keeps
# metadata in its own rows; a range of hundreds of partitions must not write megabytes per materialization).
TABLE_MAX_ROWS = 500
TABLE_MAX_CHARS = 60_000
_CELL_CHARS = 120


def summaries_table(
    results: list[PartitionSummaries], max_rows: int = TABLE_MAX_ROWS, max_chars: int = TABLE_MAX_CHARS
) -> str:
    """A Markdown table of every summary (partition, title, first bullet, trace id, provider) for a person
    reading the materialization in the UI; past ``max_rows`` rows or ``max_chars`` characters, a last line
    says how many summaries were left out."""
    events = [(result, event) for result in results for event in result.events]
    if not events:
        return "_no summaries generated_"
    lines = [
        "| window | team | title | first bullet | trace id | provider |",
        "| --- | --- | --- | --- | --- | --- |",
    ]
    size = sum(len(line) + 1 for line in lines)
    shown = 0
    for result, event in events:
        props = event.properties
        first = props.bullets[0] if props.bullets else None
        bullet = f"{first.text} ({first.line_refs})" if first is not None else ""
        cells = [
            result.window_start.strftime("%Y-%m-%d %H:%M"),
            str(result.team_id),
            props.title,
            bullet,
            f"`{props.trace_id}`",
            f"{props.provider} {props.model}".strip(),
        ]
        line = "| " + " | ".join(_cell(cell) for cell in cells) + " |"
        if shown == max_rows or size + len(line) + 1 > max_chars:
            break
        lines.append(line)
        size += len(line) + 1
        shown += 1
    if shown < len(events):
        lines.append(f"\n_{len(events) - shown} more summaries not shown (table bounded at {shown})._")
    return "\n".join(lines)


def _cell(text: str) -> str:
    """One table cell: on one line, pipes escaped, at most ``_CELL_CHARS`` characters."""
    flat = " ".join(str(text).split()).replace("|", "\\|")
    return flat if len(flat) <= _CELL_CHARS else flat[: _CELL_CHARS - 1] + "…"
