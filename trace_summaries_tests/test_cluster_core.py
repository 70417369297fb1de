"""The pure core of trace clustering: recovering known groups, determinism, ranking, sampling, lineage, names.

The synthetic embeddings imitate multilingual-e5's compressed cosines: every group centre leans on one
common direction (centres at cosine ~0.86 of each other), members sit at cosine ~0.92 of their centre, so
unrelated summaries are still at ~0.8, as with the real model.
"""

from __future__ import annotations

import random
import sys
import time
from datetime import UTC, date, datetime, timedelta

import numpy as np
import numpy.typing as npt
import pytest
from sklearn.metrics import adjusted_rand_score

from trace_summaries.cluster import (
    CENTROID_THRESHOLD,
    NOISE_LABEL,
    NOISE_TITLE,
    Clustering,
    ClusterParams,
    CurrentCluster,
    Item,
    PreviousCluster,
    TooFewItems,
    cluster_items,
    link_clusters,
    name_clusters_offline,
    sample_items,
)

DIM = 384
START = datetime(2026, 12, 1, tzinfo=UTC)
FloatArray = npt.NDArray[np.float64]


def _unit(vector: FloatArray) -> FloatArray:
    return vector / np.linalg.norm(vector)


def synthetic(
    groups: int = 6, per_group: int = 40, outliers: int = 0, seed: int = 7
) -> tuple[list[Item], dict[str, int]]:
    """Items in ``groups`` tight groups (plus isolated ``outliers``, truth -1) and the true group of each."""
    rng = np.random.default_rng(seed)
    common = _unit(rng.normal(size=DIM))
    items: list[Item] = []
    truth: dict[str, int] = {}

    def add(vector: FloatArray, group: int) -> None:
        trace_id = f"{int(rng.integers(0, 2**62)):016x}"
        index = len(items)
        items.append(Item(trace_id, _unit(vector), f"title {index}", "", START + timedelta(minutes=index)))
        truth[trace_id] = group

    for group in range(groups):
        centre = _unit(common + 0.4 * _unit(rng.normal(size=DIM)))
        for _ in range(per_group):
            add(centre + 0.3 * rng.normal(size=DIM) / np.sqrt(DIM), group)
    for _ in range(outliers):
        add(common + 0.8 * _unit(rng.normal(size=DIM)), NOISE_LABEL)
    return items, truth


def labels_of(clustering: Clustering) -> dict[str, int]:
    return {member.trace_id: cluster.label for cluster in clustering.clusters for member in cluster.members}


def ari(clustering: Clustering, truth: dict[str, int]) -> float:
    found = labels_of(clustering)
    ids = sorted(truth)
    return float(adjusted_rand_score([truth[i] for i in ids], [found[i] for i in ids]))


# (a) recovery of well-separated groups


def test_synthetic_groups_look_like_e5_cosines() -> None:
    items, truth = synthetic()
    matrix = np.vstack([np.asarray(item.vector) for item in items])
    groups = np.array([truth[item.trace_id] for item in items])
    cosines = matrix @ matrix.T
    same = cosines[groups[:, None] == groups[None, :]]
    other = cosines[groups[:, None] != groups[None, :]]
    assert 0.85 < float(np.median(same[same < 0.999])) < 0.97
    assert 0.7 < float(np.median(other)) < 0.9, "unrelated summaries are still close, as with e5"


def test_hdbscan_with_pca_recovers_the_groups() -> None:
    items, truth = synthetic(outliers=6)
    clustering = cluster_items(items)
    score = ari(clustering, truth)
    assert score >= 0.9, score
    assert len(clustering.real_clusters) == 6
    assert clustering.method == "hdbscan" and clustering.reducer_used == "pca" and clustering.chosen_k is None
    assert clustering.dimensions == 100
    assert clustering.n_items == clustering.n_input == 246


def test_kmeans_finds_k_by_silhouette_and_recovers_the_groups() -> None:
    items, truth = synthetic()
    clustering = cluster_items(items, ClusterParams(method="kmeans"))
    assert clustering.chosen_k == 6
    assert clustering.noise is None
    assert ari(clustering, truth) >= 0.9


def test_clusters_are_ordered_by_size_with_the_noise_last() -> None:
    items, _truth = synthetic(groups=3, per_group=30, outliers=4)
    # Make sizes differ: drop 10 members of the first group (ids of group 0 are the first 30 items).
    clustering = cluster_items(items[10:])
    sizes = [cluster.size for cluster in clustering.real_clusters]
    assert sizes == sorted(sizes, reverse=True) and len(sizes) == 3 and sizes[-1] < 25
    assert [cluster.label for cluster in clustering.real_clusters] == list(range(len(sizes)))
    assert clustering.clusters[-1].label == NOISE_LABEL


# (b) determinism


def test_same_items_in_any_order_give_the_same_clustering() -> None:
    items, _truth = synthetic(outliers=5)
    first = cluster_items(items)
    again = cluster_items(items)
    shuffled = list(items)
    random.Random(3).shuffle(shuffled)
    as_tuples = [
        Item(item.trace_id, tuple(float(v) for v in item.vector), item.title, item.text, item.timestamp)
        for item in shuffled
    ]
    assert first == again
    assert cluster_items(shuffled) == first
    assert cluster_items(as_tuples) == first


# (c) ranking


def test_members_are_ranked_by_distance_to_their_centroid_in_the_embedding_space() -> None:
    items, _truth = synthetic(outliers=6)
    clustering = cluster_items(items)
    vectors = {item.trace_id: _unit(np.asarray(item.vector, dtype=np.float64)) for item in items}
    for cluster in clustering.real_clusters:
        members = cluster.members
        assert [member.rank for member in members] == list(range(1, len(members) + 1))
        distances = [member.distance for member in members]
        assert distances == sorted(distances)
        centroid = _unit(np.mean([vectors[member.trace_id] for member in members], axis=0))
        assert np.allclose(cluster.centroid, centroid)
        expected = [1.0 - float(vectors[member.trace_id] @ centroid) for member in members]
        assert np.allclose(distances, expected)
        assert members[0].distance == pytest.approx(min(expected))


def test_noise_is_ranked_most_anomalous_first() -> None:
    items, _truth = synthetic(outliers=6)
    clustering = cluster_items(items)
    noise = clustering.noise
    assert noise is not None and noise.size >= 6
    vectors = {item.trace_id: _unit(np.asarray(item.vector, dtype=np.float64)) for item in items}
    centroids = [np.asarray(cluster.centroid) for cluster in clustering.real_clusters]
    anomaly = [
        min(1.0 - float(vectors[member.trace_id] @ centroid) for centroid in centroids)
        for member in noise.members
    ]
    assert np.allclose([member.distance for member in noise.members], anomaly)
    assert anomaly == sorted(anomaly, reverse=True)
    assert noise.members[0].rank == 1


def test_every_member_has_a_layout_position_and_its_timestamp() -> None:
    items, _truth = synthetic(groups=3, per_group=20)
    clustering = cluster_items(items)
    timestamps = {item.trace_id: item.timestamp for item in items}
    members = [member for cluster in clustering.clusters for member in cluster.members]
    assert sorted(member.trace_id for member in members) == sorted(timestamps)
    assert all(np.isfinite(member.x) and np.isfinite(member.y) for member in members)
    assert all(member.timestamp == timestamps[member.trace_id] for member in members)
    assert len({(round(member.x, 6), round(member.y, 6)) for member in members}) > 50


# (d) too few items, sampling


def test_fewer_than_the_minimum_raises_too_few_items_with_a_reason() -> None:
    items, _truth = synthetic(groups=1, per_group=19)
    with pytest.raises(TooFewItems) as raised:
        cluster_items(items)
    assert raised.value.reason == "19 summaries embedded in the lookback, at least 20 needed"
    assert str(raised.value) == raised.value.reason
    assert isinstance(raised.value, ValueError)


def test_duplicate_trace_ids_are_rejected() -> None:
    items, _truth = synthetic(groups=2, per_group=15)
    with pytest.raises(ValueError, match="duplicate trace ids"):
        cluster_items([*items, items[0]])


def test_more_than_max_items_are_sampled_deterministically() -> None:
    items, _truth = synthetic()
    params = ClusterParams(max_items=100)
    clustering = cluster_items(items, params)
    assert clustering.n_items == 100 and clustering.n_input == 240
    kept = set(labels_of(clustering))
    assert kept == {item.trace_id for item in sample_items(items, 100)}
    shuffled = list(reversed(items))
    assert cluster_items(shuffled, params) == clustering
    sample = sample_items(shuffled, 100)
    assert [item.trace_id for item in sample] == sorted(item.trace_id for item in sample)
    # A smaller sample is a subset of a larger one: the same traces stay in from day to day.
    assert {item.trace_id for item in sample_items(items, 50)} <= kept


def test_the_default_cap_of_1500_items_runs_in_seconds_with_pca() -> None:
    items, truth = synthetic(groups=15, per_group=110, seed=11)
    started = time.perf_counter()
    clustering = cluster_items(items)
    elapsed = time.perf_counter() - started
    assert clustering.n_input == 1650 and clustering.n_items == 1500
    assert ari(clustering, {trace_id: truth[trace_id] for trace_id in labels_of(clustering)}) >= 0.9
    assert elapsed < 15.0, f"{elapsed:.1f} s"


def test_umap_without_umap_learn_says_how_to_install_it(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "umap", None)
    items, _truth = synthetic(groups=2, per_group=15)
    with pytest.raises(ImportError, match="pip install umap-learn"):
        cluster_items(items, ClusterParams(reducer="umap"))


def test_invalid_parameters_are_rejected_at_construction() -> None:
    with pytest.raises(ValueError, match="method"):
        ClusterParams(method="dbscan")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="k_min"):
        ClusterParams(k_min=5, k_max=3)


# (e) lineage

DAY = date(2026, 12, 6)


def ids(prefix: str, n: int) -> frozenset[str]:
    return frozenset(f"{prefix}{i}" for i in range(n))


def axis(i: int, dim: int = 8) -> tuple[float, ...]:
    return tuple(1.0 if j == i else 0.0 for j in range(dim))


def current(
    label: int, trace_ids: frozenset[str], centroid: tuple[float, ...] | None = None
) -> CurrentCluster:
    return CurrentCluster(label, trace_ids, centroid or axis(label % 8))


def previous(
    id_: str, trace_ids: frozenset[str], centroid: tuple[float, ...] | None = None
) -> PreviousCluster:
    return PreviousCluster(id_, trace_ids, centroid or axis(7), len(trace_ids))


def test_the_same_cluster_continues_with_its_id() -> None:
    members = ids("a", 20)
    result = link_clusters([current(0, members)], [previous("p-a", members)], members, DAY)
    lineage = result.by_label[0]
    assert (lineage.id, lineage.state, lineage.size_change, lineage.previous_ids) == (
        "p-a",
        "continuing",
        0,
        ("p-a",),
    )
    assert result.gone == [] and result.split_into == {}


def test_a_grown_cluster_continues_with_its_size_change() -> None:
    old = ids("a", 20)
    grown = old | ids("new", 7)  # the 7 new traces entered today's window: not shared
    result = link_clusters([current(0, grown)], [previous("p-a", old)], old, DAY)
    assert result.by_label[0].state == "continuing" and result.by_label[0].size_change == 7


def test_traces_outside_the_shared_window_do_not_dilute_the_overlap() -> None:
    kept = ids("a", 10)
    old = kept | ids("left", 30)  # left the window today
    now = kept | ids("entered", 30)  # entered it today
    result = link_clusters([current(0, now)], [previous("p-a", old)], kept, DAY)
    assert result.by_label[0].id == "p-a"
    unrestricted = link_clusters([current(0, now)], [previous("p-a", old)], old | now, DAY)
    assert unrestricted.by_label[0].state == "new" and unrestricted.gone == ["p-a"]


def test_two_previous_clusters_merge_into_one() -> None:
    a, b = ids("a", 30), ids("b", 20)
    result = link_clusters([current(0, a | b)], [previous("p-a", a), previous("p-b", b)], a | b, DAY)
    lineage = result.by_label[0]
    assert lineage.state == "merged"
    assert lineage.id == "p-a", "the larger overlap keeps its id"
    assert lineage.merged_from == ("p-a", "p-b")
    assert lineage.size_change == 0
    assert result.gone == []


def test_one_previous_cluster_splits_into_two() -> None:
    a, b = ids("a", 30), ids("b", 20)
    result = link_clusters([current(0, a), current(1, b)], [previous("p-ab", a | b)], a | b, DAY)
    first, second = result.by_label[0], result.by_label[1]
    assert (first.state, second.state) == ("split", "split")
    assert first.id == "p-ab", "the larger child keeps the parent's id"
    assert second.id == "20261206-1"
    assert first.split_from == second.split_from == "p-ab"
    assert result.split_into == {"p-ab": ["p-ab", "20261206-1"]}


def test_new_clusters_get_dated_ids_in_order_and_unlinked_previous_ones_are_gone() -> None:
    a, b, c = ids("a", 20), ids("b", 20), ids("c", 20)
    shared = a | b | c
    result = link_clusters(
        [current(0, b), current(1, a), current(2, c)],
        [previous("p-a", a), previous("p-x", ids("x", 9))],
        shared,
        DAY,
    )
    assert result.by_label[1].id == "p-a" and result.by_label[1].state == "continuing"
    assert (result.by_label[0].id, result.by_label[0].state) == ("20261206-1", "new")
    assert (result.by_label[2].id, result.by_label[2].state) == ("20261206-2", "new")
    assert result.gone == ["p-x"]


def test_a_weak_overlap_does_not_link() -> None:
    a = ids("a", 20)
    now = frozenset(list(sorted(a))[:5]) | ids("b", 20)  # J = 5 / 40
    result = link_clusters([current(0, now)], [previous("p-a", a)], a | now, DAY)
    assert result.by_label[0].state == "new" and result.gone == ["p-a"]


def test_the_centroid_links_clusters_without_shared_traces() -> None:
    close = tuple(float(v) for v in _unit(np.array(axis(0)) + 0.1 * np.array(axis(1))))
    far = tuple(float(v) for v in _unit(np.array(axis(0)) + 0.6 * np.array(axis(1))))
    assert float(np.dot(close, axis(0))) >= CENTROID_THRESHOLD > float(np.dot(far, axis(0)))
    result = link_clusters(
        [current(0, ids("a", 10), close), current(1, ids("b", 10), axis(3))],
        [previous("p-0", ids("x", 12), axis(0)), previous("p-far", ids("y", 12), far)],
        frozenset(),
        DAY,
    )
    assert (result.by_label[0].id, result.by_label[0].state, result.by_label[0].size_change) == (
        "p-0",
        "continuing",
        -2,
    )
    assert result.by_label[1].state == "new"
    assert result.gone == ["p-far"]


def test_a_cluster_with_shared_traces_is_never_linked_by_its_centroid() -> None:
    shared = ids("a", 10)
    result = link_clusters(
        [current(0, shared, axis(0))], [previous("p-0", ids("x", 10), axis(0))], shared | ids("x", 10), DAY
    )
    assert result.by_label[0].state == "new"


def test_many_to_many_gives_each_previous_id_once() -> None:
    a, b, c = ids("a", 20), ids("b", 20), ids("c", 20)
    # Yesterday: P1 = a+b, P2 = c. Today: C0 = a (split child of P1), C1 = b+c (merge of P1 and P2).
    result = link_clusters(
        [current(0, a), current(1, b | c)], [previous("p1", a | b), previous("p2", c)], a | b | c, DAY
    )
    c0, c1 = result.by_label[0], result.by_label[1]
    assert c1.state == "merged" and c1.merged_from == ("p1", "p2")
    assert c0.state == "split" and c0.split_from == "p1"
    assert {c0.id, c1.id} == {"p1", "p2"}
    assert result.split_into == {"p1": [c0.id, c1.id]}


def test_noise_never_takes_part_in_lineage() -> None:
    a = ids("a", 20)
    result = link_clusters([current(NOISE_LABEL, a)], [previous("p-a", a)], a, DAY)
    assert result.by_label == {} and result.gone == ["p-a"]


# (f) offline names


def test_class_tfidf_names_use_distinctive_words_not_stop_words() -> None:
    rng = np.random.default_rng(5)
    refund = [
        "User asks why their order was charged twice\n- The assistant explains the refund for the order",
        "Customer charged twice for one order asks for a refund\n- Tool call to the billing API",
        "Refund request: order charged twice by GPT-4o-mini checkout bot\n- Final answer gives refund steps",
    ]
    sql = [
        "User asks for a SQL query of revenue by month\n- The assistant writes a query on the revenue table",
        "SQL query joining the revenue table with customers\n- Tool calls run the query",
        "Revenue table SQL query fails on a missing column\n- Claude Haiku fixes the SQL query",
    ]
    items: list[Item] = []
    for axis_index, (topic, texts) in enumerate((("refund", refund), ("sql", sql))):
        for i in range(12):
            text = texts[i % 3]
            centre = np.zeros(DIM)
            centre[axis_index] = 1.0
            vector = _unit(centre + 0.05 * rng.normal(size=DIM))
            items.append(Item(f"{topic}-{i:02d}", vector, text.splitlines()[0], text, START))
    by_id = {item.trace_id: item for item in items}
    clustering = cluster_items(items)
    names = name_clusters_offline(clustering, by_id)
    titles = {
        cluster.members[0].trace_id.split("-")[0]: names[cluster.label].title
        for cluster in clustering.real_clusters
    }
    assert set(titles) == {"refund", "sql"}
    refund_title, sql_title = titles["refund"].split(" / "), titles["sql"].split(" / ")
    assert len(refund_title) == 3 and len(sql_title) == 3
    assert any(word in " ".join(refund_title) for word in ("refund", "charged", "twice"))
    assert any(word in " ".join(sql_title) for word in ("sql", "revenue", "query"))
    assert "charged twice" in refund_title, "a bigram nearly as strong as its word replaces it"
    for title in (*refund_title, *sql_title):
        for word in title.split():
            assert word not in {
                "user",
                "asks",
                "the",
                "for",
                "tool",
                "call",
                "calls",
                "gpt",
                "claude",
                "haiku",
            }
            assert word not in {"mini", "final", "answer", "gives", "assistant"} and not word[0].isdigit()
    for cluster in clustering.real_clusters:
        description = names[cluster.label].description
        assert description.startswith("Distinctive terms: ")
        assert f'e.g. "{by_id[cluster.members[0].trace_id].title}"' in description
    assert names == name_clusters_offline(clustering, by_id)


def test_noise_is_named_unclustered() -> None:
    items, _truth = synthetic(groups=2, per_group=20, outliers=5)
    clustering = cluster_items(items)
    names = name_clusters_offline(clustering, {item.trace_id: item for item in items})
    assert names[NOISE_LABEL].title == NOISE_TITLE
    # Texts are empty here: real clusters fall back to their nearest member's title.
    for cluster in clustering.real_clusters:
        assert (
            names[cluster.label].title == f"title {items.index(_by_id(items, cluster.members[0].trace_id))}"
        )


def _by_id(items: list[Item], trace_id: str) -> Item:
    return next(item for item in items if item.trace_id == trace_id)
