"""Offline cluster names: class-based TF-IDF (c-TF-IDF, as in BERTopic) over the members' summary texts.

No LLM, no network: each cluster's members' texts are concatenated into one class document, and a term
scores high for a cluster when it is frequent there and rare in the other clusters:

    score(t, c) = tf(t, c) / words(c) * log(1 + A / f(t))

with ``tf(t, c)`` the count of term ``t`` in cluster ``c``, ``words(c)`` the terms of ``c``, ``A`` the
average number of terms per class and ``f(t)`` the count of ``t`` over all classes (noise included, so words
common to everything score low everywhere). Terms are lowercase words of unicode letters and digits, at
least 3 characters long, not starting with a digit, not stop words (sklearn's English list plus words every
trace summary uses: "user", "asks", "tool", model names...), and bigrams of two such words adjacent in a
line. Titles take the top 3 terms that share no word with a better one (a bigram nearly as strong as its
word replaces it); ties go to the alphabetically first term, so names are deterministic.
"""

from __future__ import annotations

import functools
import math
import re
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass

from trace_summaries.cluster.algorithm import NOISE_LABEL, Cluster, Clustering, Item

NOISE_TITLE = "Unclustered (noise)"
TITLE_TERMS = 3
DESCRIPTION_TERMS = 6
MIN_TOKEN_LENGTH = 3
# A bigram replaces its word in a name when it scores at least this share of the word's score.
BIGRAM_SHARE = 0.75

# Words every summary of an LLM trace uses, so they name no cluster: the roles and verbs of a conversation,
# of tool use, and the names of models (which say which model ran, not what the trace was about).
SUMMARY_STOP_WORDS = frozenset(
    {
        "user", "users", "asks", "asked", "ask", "asking", "answer", "answers", "answered", "final",
        "gives", "give", "given", "tool", "tools", "call", "calls", "called", "calling", "assistant",
        "response", "responds", "responded", "reply", "replies", "replied", "request", "requests",
        "requested", "provides", "provided", "provide", "returns", "returned", "return", "message",
        "messages", "trace", "traces", "model", "models", "llm", "output", "input", "result", "results",
        "uses", "used", "using", "says", "said", "explains", "explained", "then", "also", "via",
        "gpt", "claude", "haiku", "sonnet", "opus", "mini", "nano", "turbo", "gemini", "flash", "llama",
        "mistral", "openai", "anthropic",
    }
)  # fmt: skip


@functools.cache
def stop_words() -> frozenset[str]:
    """scikit-learn's English stop words and the summaries' own; sklearn is imported on the first call, not
    with the definitions (see ``algorithm.py``)."""
    from sklearn.feature_extraction.text import ENGLISH_STOP_WORDS

    return frozenset(ENGLISH_STOP_WORDS) | SUMMARY_STOP_WORDS


_WORD = re.compile(r"[^\W_]+")


@dataclass(frozen=True)
class ClusterName:
    """A cluster's short title and a one-sentence description."""

    title: str
    description: str


def _keep(token: str) -> bool:
    """A token is a term when long enough, not a stop word and not a number (or version like ``4o``)."""
    return len(token) >= MIN_TOKEN_LENGTH and not token[0].isdigit() and token not in stop_words()


def terms(text: str) -> list[str]:
    """The unigrams and bigrams of a text: kept words, and pairs of kept words adjacent in a line."""
    result: list[str] = []
    for line in text.lower().splitlines():
        previous: str | None = None
        for token in _WORD.findall(line):
            if not _keep(token):
                previous = None
                continue
            result.append(token)
            if previous is not None:
                result.append(f"{previous} {token}")
            previous = token
    return result


def class_tfidf(documents: Mapping[int, str]) -> dict[int, list[tuple[str, float]]]:
    """Each class's terms with their c-TF-IDF score, best first (ties alphabetically)."""
    counts = {label: Counter(terms(text)) for label, text in documents.items()}
    overall: Counter[str] = Counter()
    for counter in counts.values():
        overall.update(counter)
    totals = {label: sum(counter.values()) for label, counter in counts.items()}
    average = sum(totals.values()) / len(totals) if totals else 0.0
    scored: dict[int, list[tuple[str, float]]] = {}
    for label, counter in counts.items():
        total = totals[label]
        scores = [
            (term, count / total * math.log(1.0 + average / overall[term])) for term, count in counter.items()
        ]
        scored[label] = sorted(scores, key=lambda pair: (-pair[1], pair[0]))
    return scored


def _distinct(ranked: list[tuple[str, float]], limit: int) -> list[str]:
    """The best terms sharing no word with a better chosen term (no "refund" after "refund order").

    A word gives way to a bigram containing it that scores at least ``BIGRAM_SHARE`` of the word's score
    ("charged twice" rather than "charged" when the two almost always go together).
    """
    bigrams: dict[str, list[tuple[str, float]]] = {}
    for term, score in ranked:
        if " " in term:
            for word in term.split():
                bigrams.setdefault(word, []).append((term, score))
    chosen: list[str] = []
    used: set[str] = set()
    for term, score in ranked:
        if " " not in term:
            term = next(
                (
                    bigram
                    for bigram, bigram_score in bigrams.get(term, [])
                    if bigram_score >= BIGRAM_SHARE * score and not set(bigram.split()) & used
                ),
                term,
            )
        words = set(term.split())
        if words & used:
            continue
        chosen.append(term)
        used |= words
        if len(chosen) == limit:
            break
    return chosen


def _nearest_title(cluster: Cluster, items_by_trace_id: Mapping[str, Item]) -> str | None:
    """The title of the best-ranked member whose item is known (rank 1: nearest the centroid)."""
    for member in cluster.members:
        item = items_by_trace_id.get(member.trace_id)
        if item is not None and item.title.strip():
            return item.title.strip()
    return None


def name_clusters_offline(
    clustering: Clustering, items_by_trace_id: Mapping[str, Item]
) -> dict[int, ClusterName]:
    """A name for every cluster of ``clustering`` (noise included), from its members' ``text``.

    Members missing from ``items_by_trace_id`` add no text. A cluster with no usable term is titled by its
    nearest member's title, or ``Cluster <label>``.
    """
    documents = {
        cluster.label: "\n".join(
            items_by_trace_id[member.trace_id].text
            for member in cluster.members
            if member.trace_id in items_by_trace_id
        )
        for cluster in clustering.clusters
    }
    scored = class_tfidf(documents)
    names: dict[int, ClusterName] = {}
    for cluster in clustering.clusters:
        nearest = _nearest_title(cluster, items_by_trace_id)
        example = f'; e.g. "{nearest}"' if nearest else ""
        top = _distinct(scored.get(cluster.label, []), DESCRIPTION_TERMS)
        if cluster.label == NOISE_LABEL:
            names[cluster.label] = ClusterName(
                title=NOISE_TITLE,
                description=f"{cluster.size} traces close to no cluster, most anomalous first{example}",
            )
            continue
        if top:
            title = " / ".join(top[:TITLE_TERMS])
            description = f"Distinctive terms: {', '.join(top)}{example}"
        else:
            title = nearest or f"Cluster {cluster.label}"
            description = f"{cluster.size} traces with no distinctive terms{example}"
        names[cluster.label] = ClusterName(title=title, description=description)
    return names
