"""Cluster a team's summary embeddings: reduce, cluster, rank members, lay out in 2-D.

The anchor is PostHog's ``trace_clustering``: at most ~1,500 summaries of the lookback, L2-normalised,
reduced (UMAP to at most 100 dimensions there), clustered by HDBSCAN (``eom``, ``min_samples=5``, a minimum
cluster size of 1% of the items), noise kept as cluster ``-1``. Two deliberate differences:

* The default reducer is PCA (``min(max_dimensions, n_items - 1, embedding dimensions)`` components), not
  UMAP: at 1,500 items UMAP costs ~23 s and ~200 MB on a small machine against ~0.4 s for PCA, and on
  well-separated summaries both recover the same groups. ``reducer="umap"`` keeps the original behaviour
  (``umap-learn`` is imported only then).
* ``method="kmeans"`` is an alternative to HDBSCAN: k from ``k_min`` to ``k_max`` chosen by silhouette.

Everything is deterministic for the same set of items, whatever their order: items are sorted by trace id
before anything else, every estimator gets a fixed ``random_state``, PCA uses the exact (full) SVD, and every
tie is broken by trace id or label. Centroids are computed in the ORIGINAL embedding space (the reduced
spaces differ from run to run), which is what day-to-day lineage compares.
"""

from __future__ import annotations

import hashlib
import math
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal

import numpy as np
import numpy.typing as npt

# scikit-learn is imported where it is used: this module is loaded with the definitions by every run process,
# and importing sklearn costs ~1.5 s of CPU there (a third of loading the code location), which the hourly
# summary runs, that never cluster, would pay each (bench/README.md, Scale: benchmark 16).

Method = Literal["hdbscan", "kmeans"]
Reducer = Literal["pca", "umap"]
FloatArray = npt.NDArray[np.float64]

NOISE_LABEL = -1
_METHODS: tuple[str, ...] = ("hdbscan", "kmeans")
_REDUCERS: tuple[str, ...] = ("pca", "umap")
# k-means restarts per k: enough for stable centroids on ~1,500 points, cheap (9 values of k).
_KMEANS_N_INIT = 10


@dataclass(frozen=True)
class ClusterParams:
    """How to cluster; the defaults are the anchor's, except the reducer (PCA, see the module docstring).

    ``min_cluster_size`` is a floor: HDBSCAN's minimum cluster size is
    ``max(min_cluster_size, ceil(min_cluster_share * n_items))``. ``n_neighbors``/``min_dist`` are UMAP's for
    the clustering space, ``layout_min_dist`` UMAP's for the 2-D layout (both only with ``reducer="umap"``).
    """

    method: Method = "hdbscan"
    reducer: Reducer = "pca"
    max_dimensions: int = 100
    n_neighbors: int = 15
    min_dist: float = 0.0
    layout_min_dist: float = 0.1
    min_samples: int = 5
    min_cluster_size: int = 5
    min_cluster_share: float = 0.01
    k_min: int = 2
    k_max: int = 10
    random_state: int = 42
    max_items: int = 1500
    min_items: int = 20

    def __post_init__(self) -> None:
        """Reject parameters the algorithm cannot run with, at construction rather than mid-run."""
        if self.method not in _METHODS:
            raise ValueError(f"method must be one of {_METHODS}, got {self.method!r}")
        if self.reducer not in _REDUCERS:
            raise ValueError(f"reducer must be one of {_REDUCERS}, got {self.reducer!r}")
        if self.max_dimensions < 2:
            raise ValueError(f"max_dimensions must be at least 2, got {self.max_dimensions}")
        if not 2 <= self.k_min <= self.k_max:
            raise ValueError(f"need 2 <= k_min <= k_max, got k_min={self.k_min}, k_max={self.k_max}")
        if self.min_samples < 1 or self.min_cluster_size < 2 or self.n_neighbors < 2:
            raise ValueError("min_samples must be >= 1, min_cluster_size and n_neighbors >= 2")
        if not 0.0 <= self.min_cluster_share < 1.0:
            raise ValueError(f"min_cluster_share must be in [0, 1), got {self.min_cluster_share}")
        # At least 3 items: PCA to n_items - 1 >= 2 dimensions, and k-means needs k_min < n_items.
        if self.min_items < max(3, self.k_min + 1) or self.max_items < self.min_items:
            raise ValueError(
                f"need max(3, k_min + 1) <= min_items <= max_items, got min_items={self.min_items}, "
                f"max_items={self.max_items}"
            )


@dataclass(frozen=True)
class Item:
    """One embedded summary: its trace, its embedding, and the text the offline namer reads.

    ``vector`` may be a tuple or a numpy array (it need not be normalised; the algorithm normalises it). With
    an array, two items do not compare with ``==``; nothing here compares items.
    """

    trace_id: str
    vector: tuple[float, ...] | npt.NDArray[np.floating[Any]]
    title: str
    text: str
    timestamp: datetime


class TooFewItems(ValueError):
    """Too few summaries to cluster; ``reason`` says how many there were and how many are needed."""

    def __init__(self, n_items: int, min_items: int) -> None:
        self.n_items = n_items
        self.min_items = min_items
        self.reason = f"{n_items} summaries embedded in the lookback, at least {min_items} needed"
        super().__init__(self.reason)


@dataclass(frozen=True)
class Member:
    """One item's place in a cluster.

    ``distance`` is the cosine distance (1 - cosine) in the original embedding space: to the cluster's own
    centroid for a real cluster; for noise, to the NEAREST real cluster's centroid (to the centroid of all
    items when there is no real cluster), the anomaly score its ranking uses. ``rank`` is 1-based: 1 is the
    nearest member of a real cluster, and the most anomalous (largest distance) member of the noise. ``x``,
    ``y`` are the 2-D layout for a scatter plot.
    """

    trace_id: str
    distance: float
    rank: int
    x: float
    y: float
    timestamp: datetime


@dataclass(frozen=True)
class Cluster:
    """A cluster (``label >= 0``) or the noise (``label == -1``), its members ranked.

    ``centroid`` is the L2-normalised mean of the members' normalised embeddings, in the original embedding
    space (for the noise: of the noise members), so centroids of different days are comparable.
    """

    label: int
    members: tuple[Member, ...]
    centroid: tuple[float, ...]

    @property
    def size(self) -> int:
        """The number of members."""
        return len(self.members)

    @property
    def trace_ids(self) -> frozenset[str]:
        """The members' trace ids (what lineage compares across days)."""
        return frozenset(member.trace_id for member in self.members)


@dataclass(frozen=True)
class Clustering:
    """The result of one run.

    ``clusters``: real clusters by size (largest first), then label, the noise (if any) last. Labels are
    renumbered ``0..k-1`` in that order, so label 0 is the largest cluster. ``n_items`` items were clustered
    (after sampling) out of ``n_input``; ``dimensions`` is the size of the reduced space the clustering ran
    in; ``chosen_k`` is the k the silhouette chose (k-means only).
    """

    clusters: list[Cluster]
    n_items: int
    reducer_used: Reducer
    dimensions: int
    method: Method
    chosen_k: int | None
    n_input: int

    @property
    def noise(self) -> Cluster | None:
        """The noise cluster, or None when every item is in a real cluster."""
        return next((cluster for cluster in self.clusters if cluster.label == NOISE_LABEL), None)

    @property
    def real_clusters(self) -> list[Cluster]:
        """The clusters without the noise, in order."""
        return [cluster for cluster in self.clusters if cluster.label != NOISE_LABEL]


def _stable_hash(trace_id: str) -> bytes:
    """A hash of the trace id that is the same in every process (unlike ``hash``, which is salted)."""
    return hashlib.sha256(trace_id.encode("utf-8")).digest()


def sample_items(items: Iterable[Item], max_items: int) -> list[Item]:
    """Keep at most ``max_items`` items, the same ones whatever the input order; sorted by trace id.

    The kept items are those with the smallest SHA-256 of their trace id: a uniform, reproducible sample, and
    a stable one across days (a trace kept today is kept tomorrow if it is still in the window and the window
    holds no more items), which helps lineage's overlap.
    """
    if max_items < 0:
        raise ValueError(f"max_items must be >= 0, got {max_items}")
    ordered = sorted(items, key=lambda item: (_stable_hash(item.trace_id), item.trace_id))
    return sorted(ordered[:max_items], key=lambda item: item.trace_id)


def _normalised_matrix(items: Sequence[Item]) -> FloatArray:
    """Stack the vectors as float64 rows of unit length; reject ragged, non-finite or zero vectors."""
    rows = [np.asarray(item.vector, dtype=np.float64).ravel() for item in items]
    dims = {row.shape[0] for row in rows}
    if len(dims) != 1:
        raise ValueError(f"embeddings of different lengths: {sorted(dims)}")
    matrix = np.vstack(rows)
    if not np.all(np.isfinite(matrix)):
        raise ValueError("embeddings contain NaN or infinite values")
    norms = np.linalg.norm(matrix, axis=1)
    if np.any(norms == 0.0):
        zero = [items[i].trace_id for i in np.flatnonzero(norms == 0.0)[:3]]
        raise ValueError(f"zero embedding vectors (e.g. traces {zero})")
    normalised: FloatArray = matrix / norms[:, None]
    return normalised


def _unit(vector: FloatArray) -> FloatArray:
    """The vector scaled to length 1 (unchanged if it is zero)."""
    norm = float(np.linalg.norm(vector))
    return vector / norm if norm > 0.0 else vector


def _import_umap() -> Any:
    """Import ``umap`` lazily: it is optional, slow to import, and only needed for ``reducer="umap"``."""
    try:
        import umap
    except ImportError as error:
        raise ImportError(
            'reducer="umap" needs the optional package umap-learn: pip install umap-learn '
            '(or use the default reducer="pca")'
        ) from error
    return umap


def _reduce(matrix: FloatArray, params: ClusterParams) -> FloatArray:
    """The space the clustering runs in: PCA (exact SVD) or UMAP (cosine), at most ``max_dimensions``."""
    from sklearn.decomposition import PCA

    n_items, n_dims = matrix.shape
    if params.reducer == "pca":
        components = min(params.max_dimensions, n_items - 1, n_dims)
        pca = PCA(n_components=components, svd_solver="full", random_state=params.random_state)
        reduced: FloatArray = np.asarray(pca.fit_transform(matrix), dtype=np.float64)
        return reduced
    # UMAP's spectral initialisation needs n_components < n_items - 1.
    components = max(2, min(params.max_dimensions, n_items - 2, n_dims))
    reducer = _import_umap().UMAP(
        n_components=components,
        n_neighbors=min(params.n_neighbors, n_items - 1),
        min_dist=params.min_dist,
        metric="cosine",
        random_state=params.random_state,
    )
    return np.asarray(reducer.fit_transform(matrix), dtype=np.float64)


def _layout(matrix: FloatArray, params: ClusterParams) -> FloatArray:
    """2-D coordinates for a scatter plot: PCA to 2 dimensions, or UMAP (``layout_min_dist``)."""
    from sklearn.decomposition import PCA

    if params.reducer == "pca":
        pca = PCA(n_components=2, svd_solver="full", random_state=params.random_state)
        return np.asarray(pca.fit_transform(matrix), dtype=np.float64)
    reducer = _import_umap().UMAP(
        n_components=2,
        n_neighbors=min(params.n_neighbors, matrix.shape[0] - 1),
        min_dist=params.layout_min_dist,
        metric="cosine",
        random_state=params.random_state,
    )
    return np.asarray(reducer.fit_transform(matrix), dtype=np.float64)


def _hdbscan_labels(reduced: FloatArray, params: ClusterParams) -> npt.NDArray[np.int64]:
    """HDBSCAN labels (``-1`` = noise) with the anchor's settings."""
    from sklearn.cluster import HDBSCAN

    n_items = reduced.shape[0]
    min_cluster_size = max(params.min_cluster_size, math.ceil(params.min_cluster_share * n_items))
    model = HDBSCAN(
        min_cluster_size=min(min_cluster_size, n_items),
        min_samples=min(params.min_samples, n_items - 1),
        cluster_selection_method="eom",
        copy=True,
    )
    return np.asarray(model.fit_predict(reduced), dtype=np.int64)


def _kmeans_labels(reduced: FloatArray, params: ClusterParams) -> tuple[npt.NDArray[np.int64], int]:
    """k-means labels for the k in ``[k_min, k_max]`` with the best silhouette (the smaller k on a tie)."""
    from sklearn.cluster import KMeans
    from sklearn.metrics import silhouette_score

    n_items = reduced.shape[0]
    best: tuple[float, int, npt.NDArray[np.int64]] | None = None
    for k in range(params.k_min, min(params.k_max, n_items - 1) + 1):
        model = KMeans(n_clusters=k, n_init=_KMEANS_N_INIT, random_state=params.random_state)
        labels = np.asarray(model.fit_predict(reduced), dtype=np.int64)
        if len(np.unique(labels)) < 2:
            continue
        score = float(silhouette_score(reduced, labels))
        if best is None or score > best[0]:
            best = (score, k, labels)
    if best is None:
        # Every k collapsed to one cluster (identical points): one cluster, no noise.
        return np.zeros(n_items, dtype=np.int64), 1
    return best[2], best[1]


def _renumber(labels: npt.NDArray[np.int64]) -> npt.NDArray[np.int64]:
    """Renumber real clusters ``0..k-1`` by size (largest first), then by their original label."""
    real = [int(label) for label in np.unique(labels) if label != NOISE_LABEL]
    order = sorted(real, key=lambda label: (-int(np.sum(labels == label)), label))
    mapping = {old: new for new, old in enumerate(order)}
    return np.array([mapping.get(int(label), NOISE_LABEL) for label in labels], dtype=np.int64)


def _cosine_distances(rows: FloatArray, centroid: FloatArray) -> FloatArray:
    """1 - cosine between unit rows and a unit centroid, clipped to [0, 2] against rounding."""
    distances: FloatArray = np.clip(1.0 - rows @ centroid, 0.0, 2.0)
    return distances


def cluster_items(items: Sequence[Item], params: ClusterParams | None = None) -> Clustering:
    """Cluster the summaries of a lookback window; see the module docstring for the algorithm.

    Raises ``TooFewItems`` below ``params.min_items`` (before sampling), ``ValueError`` on duplicate trace
    ids or unusable vectors. Above ``params.max_items`` the items are sampled with ``sample_items``.
    """
    params = params or ClusterParams()
    n_input = len(items)
    if n_input < params.min_items:
        raise TooFewItems(n_input, params.min_items)
    trace_ids = [item.trace_id for item in items]
    if len(set(trace_ids)) != n_input:
        duplicated = sorted(trace_id for trace_id, count in Counter(trace_ids).items() if count > 1)[:3]
        raise ValueError(f"duplicate trace ids (e.g. {duplicated}): each trace must appear once")
    chosen = sample_items(items, params.max_items)

    matrix = _normalised_matrix(chosen)
    reduced = _reduce(matrix, params)
    chosen_k: int | None = None
    if params.method == "hdbscan":
        raw_labels = _hdbscan_labels(reduced, params)
    else:
        raw_labels, chosen_k = _kmeans_labels(reduced, params)
    labels = _renumber(raw_labels)
    layout = _layout(matrix, params)

    centroids: dict[int, FloatArray] = {}
    for label in sorted(set(labels.tolist())):
        centroids[label] = _unit(matrix[labels == label].mean(axis=0))
    real_labels = [label for label in sorted(centroids) if label != NOISE_LABEL]

    clusters: list[Cluster] = []
    for label in [*real_labels, *([NOISE_LABEL] if NOISE_LABEL in centroids else [])]:
        indices = np.flatnonzero(labels == label)
        rows = matrix[indices]
        if label != NOISE_LABEL:
            distances = _cosine_distances(rows, centroids[label])
            order = sorted(
                range(len(indices)), key=lambda i: (float(distances[i]), chosen[indices[i]].trace_id)
            )
        else:
            references = [centroids[other] for other in real_labels] or [_unit(matrix.mean(axis=0))]
            distances = np.min(np.column_stack([_cosine_distances(rows, ref) for ref in references]), axis=1)
            order = sorted(
                range(len(indices)), key=lambda i: (-float(distances[i]), chosen[indices[i]].trace_id)
            )
        members = tuple(
            Member(
                trace_id=chosen[indices[i]].trace_id,
                distance=float(distances[i]),
                rank=rank,
                x=float(layout[indices[i], 0]),
                y=float(layout[indices[i], 1]),
                timestamp=chosen[indices[i]].timestamp,
            )
            for rank, i in enumerate(order, start=1)
        )
        clusters.append(
            Cluster(label=label, members=members, centroid=tuple(float(v) for v in centroids[label]))
        )

    return Clustering(
        clusters=clusters,
        n_items=len(chosen),
        reducer_used=params.reducer,
        dimensions=int(reduced.shape[1]),
        method=params.method,
        chosen_k=chosen_k,
        n_input=n_input,
    )
