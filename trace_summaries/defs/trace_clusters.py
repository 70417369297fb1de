"""The `trace_clusters` asset: once a day per team, clusters of the team's summaries of the last 7 days,
named, with lineage from the previous day, written as one `$ai_trace_clusters` event and shown in the UI.

Partitioned day x team (the same dynamic `teams` set as the summaries); it depends on the summaries of the
day's windows, but reads what it needs from ClickHouse: the summary embeddings of the lookback (the worker
writes them), their traces' events for cost and errors, and the previous day's event for lineage. The day's
partition exists from the day's start (`end_offset=1`), so the current day can be clustered by hand; the
daily schedule clusters yesterday once its last window has been summarized and embedded.
"""

import time
from collections import Counter
from collections.abc import Mapping, Sequence
from datetime import UTC, date, datetime, timedelta
from typing import Any, Literal

import dagster as dg
from pydantic import Field

from trace_summaries.cluster import (
    Clustering,
    ClusterParams,
    Item,
    TooFewItems,
    cluster_items,
    match_lineage,
    name_clusters_offline,
)
from trace_summaries.cluster.clusters_event import build_clusters_event, clustering_run_id, rounded_centroid
from trace_summaries.cluster.inputs import (
    Lookback,
    TraceMetrics,
    count_items,
    read_items,
    read_metrics,
    read_previous_run,
    replace_clusters_event,
)
from trace_summaries.cluster.llm_naming import NamingReport, name_clusters_with_llm
from trace_summaries.cluster.picture import clusters_table, scatter_markdown, scatter_png
from trace_summaries.config import ScheduleConfig, embedding_models, load
from trace_summaries.defs.jobs import max_runtime_tags
from trace_summaries.defs.partition_sets import TEAM_DAY, TEAMS_NAME
from trace_summaries.defs.resources import ClickHouseResource, LLMResource
from trace_summaries.defs.schedules import wanted_teams

DAY = timedelta(days=1)
NOISE_ID = "noise"


class TraceClustersConfig(dg.Config):
    """The anchor's algorithm and parameters (PostHog's trace_clustering) as defaults; PCA, not UMAP, reduces
    by default (bench/README.md: UMAP costs ~20 s and 200 MB more at 1,500 items on 2 cores)."""

    lookback_days: int = Field(default=7, ge=1, le=90)
    mode: Literal["minimal", "detailed"] = "detailed"
    # Unset: the first configured embedding model (`TRACE_SUMMARIES_EMBEDDING_MODELS`), as search uses.
    embedding_model: str | None = None
    max_items: int = Field(default=1500, ge=2, le=50_000)
    min_items: int = Field(default=20, ge=3)
    method: Literal["hdbscan", "kmeans"] = "hdbscan"
    reducer: Literal["pca", "umap"] = "pca"
    max_dimensions: int = Field(default=100, ge=2, le=1024)
    n_neighbors: int = Field(default=15, ge=2)
    min_dist: float = Field(default=0.0, ge=0.0)
    layout_min_dist: float = Field(default=0.1, ge=0.0)
    min_samples: int = Field(default=5, ge=1)
    min_cluster_size: int = Field(default=5, ge=2)
    min_cluster_share: float = Field(default=0.01, ge=0.0, le=1.0)
    k_min: int = Field(default=2, ge=2)
    k_max: int = Field(default=10, ge=2)
    random_state: int = 42
    # auto: the LLM when an endpoint is configured (OPENAI_API_KEY or OPENAI_BASE_URL), else offline names.
    naming: Literal["auto", "offline", "llm"] = "auto"
    # The naming model; unset, the summaries' (TRACE_SUMMARIES_LLM_MODEL).
    naming_model: str | None = None

    def params(self) -> ClusterParams:
        return ClusterParams(
            method=self.method,
            reducer=self.reducer,
            max_dimensions=self.max_dimensions,
            n_neighbors=self.n_neighbors,
            min_dist=self.min_dist,
            layout_min_dist=self.layout_min_dist,
            min_samples=self.min_samples,
            min_cluster_size=self.min_cluster_size,
            min_cluster_share=self.min_cluster_share,
            k_min=self.k_min,
            k_max=self.k_max,
            random_state=self.random_state,
            max_items=self.max_items,
            min_items=self.min_items,
        )


# The day's windows of the summaries: the time dimension maps by time window, the team to itself.
SUMMARIES_OF_THE_DAY = dg.MultiPartitionMapping(
    {
        "hour": dg.DimensionPartitionMapping("day", dg.TimeWindowPartitionMapping()),
        "team": dg.DimensionPartitionMapping("team", dg.IdentityPartitionMapping()),
    }
)


def day_and_team(partition_key: str) -> tuple[date, int]:
    """``2026-11-20|7`` (dimensions in name order: day, team) -> the day and the team id."""
    day, separator, team = partition_key.partition("|")
    if not separator:
        raise ValueError(f"{partition_key!r} is not a day|team partition key")
    return date.fromisoformat(day), int(team)


def _metrics(members: Sequence[str], metrics: Mapping[str, TraceMetrics]) -> dict[str, Any]:
    known = [metrics[trace] for trace in members if trace in metrics]
    count = len(known)
    total_cost = sum(m.cost_usd for m in known)
    total_tokens = sum(m.tokens for m in known)
    return {
        "size": len(members),
        "traces_with_events": count,
        "total_cost_usd": round(total_cost, 8),
        "avg_cost_usd": round(total_cost / count, 8) if count else 0.0,
        "total_tokens": total_tokens,
        "avg_tokens": round(total_tokens / count, 1) if count else 0.0,
        "avg_latency_s": round(sum(m.latency_s for m in known) / count, 3) if count else 0.0,
        "error_rate": round(sum(m.failed for m in known) / count, 4) if count else 0.0,
    }


def cluster_objects(
    clustering: Clustering,
    items: Sequence[Item],
    metrics: Mapping[str, TraceMetrics],
    lineage_by_label: Mapping[int, Any],
    names: Mapping[int, Any],
) -> list[dict[str, Any]]:
    """The ``$ai_clusters`` list: per cluster its stable id, name, ranked members with their 2-D position,
    centroid (embedding space, for tomorrow's lineage), metrics and lineage."""
    timestamps = {item.trace_id: item.timestamp for item in items}
    objects = []
    for cluster in clustering.clusters:
        lineage = lineage_by_label.get(cluster.label)
        trace_ids = [member.trace_id for member in cluster.members]
        name = names.get(cluster.label)
        objects.append(
            {
                "id": NOISE_ID if lineage is None else lineage.id,
                "label": cluster.label,
                "size": len(cluster.members),
                "title": name.title if name else "",
                "description": name.description if name else "",
                "members": [
                    {
                        "trace_id": member.trace_id,
                        "distance": round(float(member.distance), 6),
                        "rank": member.rank,
                        "x": round(float(member.x), 5),
                        "y": round(float(member.y), 5),
                        "timestamp": timestamps[member.trace_id].isoformat(),
                    }
                    for member in cluster.members
                ],
                "centroid": rounded_centroid(cluster.centroid),
                "metrics": _metrics(trace_ids, metrics),
                "lineage": {} if lineage is None else _lineage_json(lineage),
            }
        )
    return objects


def _lineage_json(lineage: Any) -> dict[str, Any]:
    return {
        "state": lineage.state,
        "previous_ids": list(lineage.previous_ids),
        "size_change": lineage.size_change,
        "merged_from": list(lineage.merged_from),
        "split_from": lineage.split_from,
    }


@dg.asset(
    partitions_def=TEAM_DAY,
    deps=[dg.AssetDep("trace_summaries", partition_mapping=SUMMARIES_OF_THE_DAY)],
    group_name="trace_clusters",
    kinds={"clickhouse", "scikitlearn"},
)
def trace_clusters(
    context: dg.AssetExecutionContext,
    config: TraceClustersConfig,
    clickhouse: ClickHouseResource,
    llm: LLMResource,
) -> dg.MaterializeResult:
    """Clusters of the team's summaries of the lookback ending with the partition's day; one
    `$ai_trace_clusters` event per day, replaced on re-materialization; too few summaries: skipped, with
    the reason in the metadata (and no event for the day)."""
    started = time.perf_counter()
    day, team_id = day_and_team(context.partition_key)
    window_end = datetime(day.year, day.month, day.day, tzinfo=UTC) + DAY
    window_start = window_end - config.lookback_days * DAY
    model_name = config.embedding_model or embedding_models()[0]
    with clickhouse.session() as client:
        lookback = Lookback(team_id, model_name, config.mode, window_start, window_end)
        available = count_items(client, lookback)
        items = read_items(client, lookback, max_items=config.max_items)
        previous = read_previous_run(client, team_id=team_id, window_end=window_end - DAY)
    base: dict[str, Any] = {
        "clustering_run_id": clustering_run_id(team_id, window_end),
        "window": f"{window_start.isoformat()} .. {window_end.isoformat()}",
        "embedding_model": model_name,
        "items_available": available,
        "items_analyzed": len(items),
    }
    try:
        clustering = cluster_items(items, config.params())
    except TooFewItems as exc:
        with clickhouse.session() as client:
            replace_clusters_event(client, team_id=team_id, window_end=window_end, event=None)
        context.log.info(f"skipped: {exc}")
        return dg.MaterializeResult(metadata={**base, "skipped": str(exc), "clusters": 0})

    by_id = {item.trace_id: item for item in items}
    names = name_clusters_offline(clustering, by_id)
    naming: NamingReport | None = None
    if config.naming == "llm" or (config.naming == "auto" and llm.has_endpoint):
        names, naming = name_clusters_with_llm(
            clustering, by_id, llm.settings(model=config.naming_model), names
        )
        if naming.failures:
            context.log.warning(
                f"{naming.failures} of {naming.calls} naming calls failed: {naming.errors[:3]}"
            )
    analyzed = frozenset(by_id)
    lineage = match_lineage(
        clustering,
        previous.clusters if previous else [],
        shared=analyzed & previous.analyzed if previous else frozenset(),
        day=day,
    )
    with clickhouse.session() as client:
        metrics = read_metrics(
            client, team_id=team_id, trace_ids=sorted(analyzed), start=window_start, end=window_end
        )
    clusters = cluster_objects(clustering, items, metrics, lineage.by_label, names)
    event = build_clusters_event(
        team_id=team_id,
        day=day,
        window_start=window_start,
        window_end=window_end,
        total_items=len(items),
        clusters=clusters,
        params={
            **config.model_dump(),
            "embedding_model": model_name,
            "reducer_used": clustering.reducer_used,
        },
        gone=lineage.gone,
        split_into=lineage.split_into,
    )
    with clickhouse.session() as client:
        replace_clusters_event(client, team_id=team_id, window_end=window_end, event=event)

    real = [cluster for cluster in clusters if cluster["label"] != -1]
    states = Counter(cluster["lineage"].get("state", "new") for cluster in real)
    titles = {item.trace_id: item.title for item in items}
    plot = scatter_png(
        clusters, title=f"team {team_id}, {len(items)} traces of {window_start:%Y-%m-%d}..{day}"
    )
    return dg.MaterializeResult(
        metadata={
            **base,
            "clusters": len(real),
            "noise": sum(cluster["size"] for cluster in clusters if cluster["label"] == -1),
            "reducer": clustering.reducer_used,
            "naming": "offline"
            if naming is None
            else f"llm: {naming.calls - naming.failures} of {naming.calls} clusters named",
            **(
                {}
                if naming is None
                else {
                    "naming_tokens": naming.input_tokens + naming.output_tokens,
                    "naming_cost_usd": naming.cost_usd if naming.cost_usd is not None else "unknown price",
                }
            ),
            "lineage": dg.MetadataValue.json({**dict(states), "gone": list(lineage.gone)}),
            "plot": dg.MetadataValue.md(scatter_markdown(plot)),
            "table": dg.MetadataValue.md(clusters_table(clusters, titles)),
            "seconds": round(time.perf_counter() - started, 2),
        }
    )


trace_clusters_job = dg.define_asset_job(
    "trace_clusters_job",
    selection=[trace_clusters],
    executor_def=dg.in_process_executor,
    tags=max_runtime_tags(),
)


@dg.schedule(
    name="daily_trace_clusters_schedule",
    # 01:30 UTC: the day's last window is summarized at 00:15 (the hourly schedule) and embedded soon after.
    cron_schedule="30 1 * * *",
    execution_timezone="UTC",
    job=trace_clusters_job,
    default_status=dg.DefaultScheduleStatus.RUNNING,
)
def daily_trace_clusters_schedule(
    context: dg.ScheduleEvaluationContext, clickhouse: ClickHouseResource
) -> dg.SkipReason | list[dg.RunRequest]:
    """Yesterday, for every scheduled team (the hourly schedule's set); run keys make a tick idempotent."""
    registered = set(context.instance.get_dynamic_partitions(TEAMS_NAME))
    teams = sorted(wanted_teams(context, clickhouse) & registered, key=int)
    day = (context.scheduled_execution_time.astimezone(UTC) - DAY).date()
    if day.isoformat() < load(ScheduleConfig).start_date[:10]:
        return dg.SkipReason(f"{day} is before the partitions' start date")
    if not teams:
        return dg.SkipReason(f"no scheduled team for {day} (allowlist empty, discovery off?)")
    return [
        dg.RunRequest(
            run_key=f"{day}|{team}",
            partition_key=dg.MultiPartitionKey({"day": day.isoformat(), "team": team}),
            tags={"trace_summaries/trigger": "schedule"},
        )
        for team in teams
    ]
