"""Trace clustering, the pure core: cluster a lookback's summary embeddings, name clusters, link days.

``algorithm`` reduces (PCA by default, UMAP optionally) and clusters (HDBSCAN, or k-means by silhouette) the
L2-normalised embeddings, ranks members by distance to their centroid and lays them out in 2-D; ``naming``
names clusters offline by class-based TF-IDF; ``lineage`` gives clusters ids that stay stable from day to
day. Nothing here touches Dagster, the store or the network: the daily asset in ``defs`` reads the
embeddings, calls this package and writes the result.
"""

from trace_summaries.cluster.algorithm import (
    NOISE_LABEL,
    Cluster,
    Clustering,
    ClusterParams,
    Item,
    Member,
    Method,
    Reducer,
    TooFewItems,
    cluster_items,
    sample_items,
)
from trace_summaries.cluster.lineage import (
    CENTROID_THRESHOLD,
    JACCARD_THRESHOLD,
    ClusterLineage,
    CurrentCluster,
    LineageResult,
    LineageState,
    PreviousCluster,
    current_clusters,
    link_clusters,
    match_lineage,
)
from trace_summaries.cluster.naming import NOISE_TITLE, ClusterName, class_tfidf, name_clusters_offline

__all__ = [
    "CENTROID_THRESHOLD",
    "JACCARD_THRESHOLD",
    "NOISE_LABEL",
    "NOISE_TITLE",
    "Cluster",
    "ClusterLineage",
    "ClusterName",
    "ClusterParams",
    "Clustering",
    "CurrentCluster",
    "Item",
    "LineageResult",
    "LineageState",
    "Member",
    "Method",
    "PreviousCluster",
    "Reducer",
    "TooFewItems",
    "class_tfidf",
    "cluster_items",
    "current_clusters",
    "link_clusters",
    "match_lineage",
    "name_clusters_offline",
    "sample_items",
]
