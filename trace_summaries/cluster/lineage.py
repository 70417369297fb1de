"""Stable cluster ids from day to day: link today's clusters to yesterday's and say what became of each.

Two runs over 7-day lookbacks one day apart share about 6 days of traces, so the natural link is membership:
today's cluster C and yesterday's P are linked when the Jaccard index of their members, counted only over
the traces both runs could have seen (``shared``, the overlap of the two windows' items), is at least
``JACCARD_THRESHOLD`` (0.3). Restricting to ``shared`` keeps the traces that entered or left the window
from diluting the overlap; 0.3 rather than 0.5 because HDBSCAN moves border points and noise from day to day
and a cluster that lost a third of its members to a split is still, in part, the same cluster.

When neither C nor P has any trace in ``shared`` (the windows do not overlap, or sampling kept disjoint
traces), membership says nothing, and they are linked when the cosine of their centroids (computed in the
original embedding space, comparable across runs) is at least ``CENTROID_THRESHOLD`` (0.97). It is high on
purpose: multilingual-e5 compresses cosines (unrelated texts often score 0.8), so only near-identical
centroids mean the same topic. A cluster with shared traces is never linked by centroid.

States of a current cluster, in order of precedence:

* ``merged``: linked to two or more previous clusters; ``merged_from`` lists them all (sorted).
* ``split``: linked to exactly one previous cluster, which is linked to two or more current clusters;
  ``split_from`` names it, and ``LineageResult.split_into`` lists all its children's ids.
* ``continuing``: exactly one link each way; ``size_change`` = its size - the previous size.
* ``new``: no link; a new id ``"<YYYYMMDD>-<n>"``, n = 1, 2... in the clustering's order.

Ids: links are taken strongest first (Jaccard, or centroid cosine, then the number of shared members in
common, then the previous id and the current order as tie-breakers) and each link hands the previous id to
the current cluster when neither has been paired yet. So a merged cluster keeps the id of its strongest
parent, the strongest child of a split keeps the parent's id, and in many-to-many cases no id is given twice;
a linked cluster left without an id (its parents' ids went to stronger links) gets a new one but keeps its
state. Previous clusters with no link are ``gone``. Noise (label -1) never takes part.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import date
from typing import Literal

from trace_summaries.cluster.algorithm import NOISE_LABEL, Clustering

JACCARD_THRESHOLD = 0.3
CENTROID_THRESHOLD = 0.97

LineageState = Literal["new", "continuing", "merged", "split"]


@dataclass(frozen=True)
class CurrentCluster:
    """Today's cluster as lineage sees it: its label, members and centroid (original embedding space)."""

    label: int
    trace_ids: frozenset[str]
    centroid: tuple[float, ...]


@dataclass(frozen=True)
class PreviousCluster:
    """Yesterday's cluster: its stable id, members, centroid and size (members may have been sampled)."""

    id: str
    trace_ids: frozenset[str]
    centroid: tuple[float, ...]
    size: int


@dataclass(frozen=True)
class ClusterLineage:
    """What a current cluster is: its stable id, state and the previous clusters it is linked to.

    ``previous_ids`` are all linked previous ids (sorted). ``size_change`` is the size minus the summed sizes
    of the linked previous clusters for ``continuing`` and ``merged``, None for ``new`` and ``split``.
    """

    id: str
    state: LineageState
    previous_ids: tuple[str, ...] = ()
    size_change: int | None = None
    merged_from: tuple[str, ...] = ()
    split_from: str | None = None


@dataclass(frozen=True)
class LineageResult:
    """Lineage of every current (non-noise) cluster by label, the gone ids, and each split's children."""

    by_label: dict[int, ClusterLineage]
    gone: list[str] = field(default_factory=list)
    split_into: dict[str, list[str]] = field(default_factory=dict)


def current_clusters(clustering: Clustering) -> list[CurrentCluster]:
    """The real clusters of a run in its order (noise left out), as ``link_clusters`` takes them."""
    return [
        CurrentCluster(label=cluster.label, trace_ids=cluster.trace_ids, centroid=cluster.centroid)
        for cluster in clustering.real_clusters
    ]


def match_lineage(
    clustering: Clustering, previous: Sequence[PreviousCluster], *, shared: frozenset[str], day: date
) -> LineageResult:
    """``link_clusters`` for a whole run: today's real clusters of ``clustering`` against ``previous``."""
    return link_clusters(current_clusters(clustering), previous, shared, day)


def _cosine(a: Sequence[float], b: Sequence[float]) -> float:
    """Cosine of two vectors (0 when either is zero or their lengths differ)."""
    if len(a) != len(b):
        return 0.0
    norm = math.sqrt(sum(x * x for x in a)) * math.sqrt(sum(y * y for y in b))
    return sum(x * y for x, y in zip(a, b, strict=True)) / norm if norm > 0.0 else 0.0


def _link_strength(
    current: CurrentCluster, previous: PreviousCluster, shared: frozenset[str]
) -> float | None:
    """The link's strength (Jaccard over shared traces, or centroid cosine as fallback), None if unlinked."""
    current_shared = current.trace_ids & shared
    previous_shared = previous.trace_ids & shared
    if current_shared or previous_shared:
        jaccard = len(current_shared & previous_shared) / len(current_shared | previous_shared)
        return jaccard if jaccard >= JACCARD_THRESHOLD else None
    cosine = _cosine(current.centroid, previous.centroid)
    return cosine if cosine >= CENTROID_THRESHOLD else None


def _new_ids(day: date, taken: Iterable[str]) -> Iterator[str]:
    """``<YYYYMMDD>-1``, ``-2``... skipping ids already used (a rerun whose previous run was today's)."""
    used = set(taken)
    n = 0
    while True:
        n += 1
        candidate = f"{day:%Y%m%d}-{n}"
        if candidate not in used:
            yield candidate


def link_clusters(
    current: Sequence[CurrentCluster],
    previous: Sequence[PreviousCluster],
    shared: frozenset[str],
    day: date,
) -> LineageResult:
    """Link today's clusters (in the clustering's order) to yesterday's; see the module docstring."""
    today = [cluster for cluster in current if cluster.label != NOISE_LABEL]
    labels = [cluster.label for cluster in today]
    if len(set(labels)) != len(labels):
        raise ValueError(f"duplicate current labels: {labels}")
    previous_ids = [cluster.id for cluster in previous]
    if len(set(previous_ids)) != len(previous_ids):
        raise ValueError(f"duplicate previous ids: {previous_ids}")

    # (strength, common shared members, current index, previous index) for every link.
    links: list[tuple[float, int, int, int]] = []
    for c_index, c in enumerate(today):
        for p_index, p in enumerate(previous):
            strength = _link_strength(c, p, shared)
            if strength is not None:
                common = len(c.trace_ids & p.trace_ids & shared)
                links.append((strength, common, c_index, p_index))
    parents: dict[int, list[int]] = {c_index: [] for c_index in range(len(today))}
    children: dict[int, list[int]] = {p_index: [] for p_index in range(len(previous))}
    for _strength, _common, c_index, p_index in links:
        parents[c_index].append(p_index)
        children[p_index].append(c_index)

    # Hand out previous ids strongest link first; each id and each current cluster is paired at most once.
    inherited: dict[int, int] = {}
    paired_previous: set[int] = set()
    ordered = sorted(links, key=lambda link: (-link[0], -link[1], previous[link[3]].id, link[2]))
    for _strength, _common, c_index, p_index in ordered:
        if c_index not in inherited and p_index not in paired_previous:
            inherited[c_index] = p_index
            paired_previous.add(p_index)

    fresh = _new_ids(day, previous_ids)
    ids = {
        c_index: previous[inherited[c_index]].id if c_index in inherited else next(fresh)
        for c_index in range(len(today))
    }

    result: dict[int, ClusterLineage] = {}
    for c_index, c in enumerate(today):
        linked = sorted(previous[p_index].id for p_index in parents[c_index])
        size = len(c.trace_ids)
        if len(parents[c_index]) >= 2:
            lineage = ClusterLineage(
                id=ids[c_index],
                state="merged",
                previous_ids=tuple(linked),
                size_change=size - sum(previous[p_index].size for p_index in parents[c_index]),
                merged_from=tuple(linked),
            )
        elif len(parents[c_index]) == 1 and len(children[parents[c_index][0]]) >= 2:
            lineage = ClusterLineage(
                id=ids[c_index],
                state="split",
                previous_ids=tuple(linked),
                split_from=previous[parents[c_index][0]].id,
            )
        elif len(parents[c_index]) == 1:
            lineage = ClusterLineage(
                id=ids[c_index],
                state="continuing",
                previous_ids=tuple(linked),
                size_change=size - previous[parents[c_index][0]].size,
            )
        else:
            lineage = ClusterLineage(id=ids[c_index], state="new")
        result[c.label] = lineage

    gone = sorted(previous[p_index].id for p_index, kids in children.items() if not kids)
    split_into = {
        previous[p_index].id: [ids[c_index] for c_index in sorted(kids)]
        for p_index, kids in sorted(children.items(), key=lambda pair: previous[pair[0]].id)
        if len(kids) >= 2
    }
    return LineageResult(by_label=result, gone=gone, split_into=split_into)
