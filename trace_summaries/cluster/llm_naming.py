"""Cluster names from an LLM: one call per cluster, strict JSON ``{title, description}``.

The model sees the titles and first bullets of the members nearest the cluster's centroid and, for contrast,
of a few of the nearest traces that are not members, so the name says what sets the cluster apart rather
than what all the team's traces share. A call that fails (endpoint error, invalid JSON, an empty title)
falls back to the offline name of that cluster and is counted; naming never fails the run. Noise is not
named by the model.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import openai

from trace_summaries.cluster.algorithm import Clustering, Item
from trace_summaries.cluster.naming import ClusterName
from trace_summaries.summarize.endpoint import LLMSettings
from trace_summaries.summarize.llm import NO_API_KEY
from trace_summaries.summarize.pricing import estimate_cost_usd

MEMBERS_SHOWN = 8
CONTRAST_SHOWN = 4
_TITLE_MAX = 80
_DESCRIPTION_MAX = 300
_MAX_OUTPUT_TOKENS = 300
CONTENT_RETRIES = 1

SYSTEM_PROMPT = (
    "You name groups of traces of an LLM application, for an engineer scanning a dashboard. You get the "
    "summaries of traces in one group, nearest to its center first, and of a few nearby traces that are NOT "
    "in the group. Answer with JSON only: a title of at most 8 words saying what the group's traces have in "
    "common that the others do not (the task, the failure, the kind of user request), and a description of "
    "one or two sentences. Use only what the summaries say."
)


def _schema(bounded: bool) -> dict[str, Any]:
    title: dict[str, Any] = {"type": "string"}
    description: dict[str, Any] = {"type": "string"}
    if bounded:  # a grammar-constrained server must close its strings; OpenAI's strict mode takes no lengths
        title["maxLength"] = _TITLE_MAX
        description["maxLength"] = _DESCRIPTION_MAX
    return {
        "type": "json_schema",
        "json_schema": {
            "name": "cluster_name",
            "strict": True,
            "schema": {
                "type": "object",
                "properties": {"title": title, "description": description},
                "required": ["title", "description"],
                "additionalProperties": False,
            },
        },
    }


@dataclass(slots=True)
class NamingReport:
    """What naming cost and how it went, for the run's metadata."""

    calls: int = 0
    failures: int = 0
    input_tokens: int = 0
    output_tokens: int = 0
    cost_usd: float | None = 0.0
    errors: list[str] = field(default_factory=list)


def _line(item: Item) -> str:
    lines = [line for line in item.text.splitlines() if line.strip()]
    detail = lines[1] if len(lines) > 1 else ""
    return f"- {item.title or '(untitled)'}" + (f" — {detail[:160]}" if detail else "")


def user_prompt(members: Sequence[Item], contrast: Sequence[Item]) -> str:
    parts = ["Traces in the group:", *(_line(item) for item in members)]
    if contrast:
        parts += ["", "Nearby traces not in the group:", *(_line(item) for item in contrast)]
    return "\n".join(parts)


def _contrast(
    clustering: Clustering, label: int, items: Mapping[str, Item], centroid: Sequence[float]
) -> list[Item]:
    members = {m.trace_id for c in clustering.clusters if c.label == label for m in c.members}
    others = sorted(trace for trace in items if trace not in members)
    if not others:
        return []
    vectors = np.asarray([items[trace].vector for trace in others], dtype=float)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True) + 1e-12
    similarity = vectors @ np.asarray(centroid, dtype=float)
    order = np.argsort(-similarity, kind="stable")[:CONTRAST_SHOWN]
    return [items[others[index]] for index in order]


def name_clusters_with_llm(
    clustering: Clustering,
    items: Mapping[str, Item],
    settings: LLMSettings,
    fallback: Mapping[int, ClusterName],
) -> tuple[dict[int, ClusterName], NamingReport]:
    """A name per real cluster from the endpoint in ``settings``, ``fallback``'s where a call fails."""
    client = openai.OpenAI(
        api_key=settings.api_key or NO_API_KEY,
        base_url=settings.base_url or None,
        timeout=settings.timeout_s,
        max_retries=max(0, settings.max_attempts - 1),
    )
    response_format = _schema(bounded=bool(settings.base_url))
    names = dict(fallback)
    report = NamingReport()
    try:
        for cluster in clustering.clusters:
            if cluster.label == -1:
                continue
            members = [items[m.trace_id] for m in cluster.members[:MEMBERS_SHOWN]]
            contrast = _contrast(clustering, cluster.label, items, cluster.centroid)
            report.calls += 1
            request: dict[str, Any] = {
                "model": settings.model,
                "messages": [
                    {"role": "system", "content": SYSTEM_PROMPT},
                    {"role": "user", "content": user_prompt(members, contrast)},
                ],
                "response_format": response_format,
                "max_tokens": _MAX_OUTPUT_TOKENS,
                "temperature": 0,
            }
            name, error = _ask(client, request, report)
            if name is None:
                report.failures += 1
                report.errors.append(f"cluster {cluster.label}: {error}"[:300])
                continue
            names[cluster.label] = name
    finally:
        client.close()
    report.cost_usd = estimate_cost_usd(
        settings.model, report.input_tokens, report.output_tokens, settings.prices
    )
    return names, report


def _ask(
    client: openai.OpenAI, request: dict[str, Any], report: NamingReport
) -> tuple[ClusterName | None, str]:
    """One name, asking again once when the answer is unusable (a refusal, JSON cut off at the cap or
    invalid), as real models sometimes answer; endpoint errors are the SDK's retries' to handle."""
    error = ""
    for _ in range(1 + CONTENT_RETRIES):
        try:
            completion = client.chat.completions.create(**request)
        except openai.OpenAIError as exc:
            return None, f"{type(exc).__name__}: {exc}"
        if completion.usage is not None:
            report.input_tokens += completion.usage.prompt_tokens
            report.output_tokens += completion.usage.completion_tokens
        message = completion.choices[0].message if completion.choices else None
        name = _parse(message.content if message else None)
        if name is not None:
            return name, ""
        error = "the answer is not a JSON name" + (" (a refusal)" if message and message.refusal else "")
    return None, error


def _parse(content: str | None) -> ClusterName | None:
    text = (content or "").strip()
    start, end = text.find("{"), text.rfind("}")  # a model may wrap its JSON in a fence or a sentence
    try:
        answer = json.loads(text[start : end + 1] if 0 <= start < end else text)
    except json.JSONDecodeError:
        return None
    if not isinstance(answer, dict):
        return None
    title = " ".join(str(answer.get("title") or "").split())[: 2 * _TITLE_MAX]
    description = " ".join(str(answer.get("description") or "").split())[: 2 * _DESCRIPTION_MAX]
    return ClusterName(title=title, description=description) if title else None
